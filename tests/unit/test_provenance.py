"""Is the image or SIF about to run this checkout's build? The judgement from labels, the SIF's labels read
in place, and what the run path and doctor do with each verdict (issue 33)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from mpikit import apptainer, config, docker, prepare, provenance, sif
from mpikit.doctor import judge as doctor_judge
from mpikit.knobs import Settings

PARTS = {"Dockerfile": "aaaaaaaaaaaa", "Apptainer.def": "bbbbbbbbbbbb", "versions.env": "cccccccccccc",
         "examples/rank.py": "dddddddddddd"}


def built(base: str = "trixie", platform: str = "linux/amd64", parts: dict[str, str] = PARTS) -> dict[str, str]:
    """The labels the kit puts on a build of `parts` (the same function the builds call)."""
    return {provenance.KIT_LABEL: base, provenance.PLATFORM_LABEL: platform,
            **config.source_labels(base, platform, parts)}


def verdict(labels, parts=PARTS, base="trixie", platform="linux/amd64") -> provenance.Verdict:
    return provenance.judge(labels, base, platform, parts)


def test_a_build_of_the_checkouts_inputs_is_current() -> None:
    assert verdict(built()).state == provenance.CURRENT


def test_an_edited_input_makes_it_stale_and_is_named() -> None:
    now = {**PARTS, "examples/rank.py": "eeeeeeeeeeee"}
    found = verdict(built(), now)
    assert found.state == provenance.STALE
    assert found.why == "examples/rank.py changed since it was built"


def test_new_and_removed_inputs_are_named() -> None:
    now = {k: v for k, v in PARTS.items() if k != "examples/rank.py"} | {"examples/pool.py": "ffffffffffff"}
    assert verdict(built(), now).why == "examples/pool.py (new), examples/rank.py (removed) changed since it was built"


def test_many_changes_are_counted_not_listed() -> None:
    now = {k: "0" * 12 for k in PARTS} | {"a": "1", "b": "2"}
    why = verdict(built(), now).why
    assert why.endswith("and 2 more changed since it was built") and why.count(",") == 3


def test_the_digest_covers_base_and_platform() -> None:
    """The same files for another base or platform are another build."""
    digests = {config.source_digest(base, platform, PARTS)
               for base in ("trixie", "bookworm") for platform in ("linux/amd64", "linux/arm64")}
    assert len(digests) == 4


@pytest.mark.parametrize("labels, said", [
    (built(base="bookworm"), "built for BASE=bookworm, not trixie"),
    (built(platform="linux/arm64"), "built for PLATFORM=linux/arm64, not linux/amd64"),
    ({provenance.KIT_LABEL: "trixie", provenance.PLATFORM_LABEL: "linux/amd64"},
     "built before the kit recorded its inputs"),
])
def test_another_base_platform_or_an_older_kits_build_is_stale(labels: dict, said: str) -> None:
    found = verdict(labels)
    assert found.state == provenance.STALE and said in found.why


@pytest.mark.parametrize("labels", [None, {}, {"org.opencontainers.image.title": "somebody's"}])
def test_a_build_without_the_kits_labels_is_unlabelled(labels) -> None:
    assert verdict(labels).state == provenance.UNLABELLED


def test_the_parts_survive_a_label_and_have_nothing_apptainer_splits_on() -> None:
    text = config.encode_parts(config.source_parts())
    assert " " not in text and "=" not in text and "\n" not in text
    assert config.decode_parts(text) == config.source_parts()


def test_the_parts_are_every_recipe_and_build_input() -> None:
    expected = {*config.RECIPES, *(p.relative_to(config.ROOT).as_posix() for p in config.build_input_files())}
    assert set(config.source_parts()) == expected


def test_an_edit_in_a_copy_of_the_tree_is_found(tmp_path: Path) -> None:
    for name in (*config.RECIPES, *config.BUILD_INPUTS):
        source, target = config.ROOT / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    before = config.source_parts(tmp_path)
    labels = {provenance.KIT_LABEL: "trixie", **config.source_labels("trixie", "linux/amd64", before)}
    (tmp_path / "versions.env").write_text((tmp_path / "versions.env").read_text() + "# a new pin\n")
    after = config.source_parts(tmp_path)  # contents only: the copy's file times do not count
    assert provenance.judge(labels, "trixie", "linux/amd64", after).why == "versions.env changed since it was built"


def test_every_build_records_the_checkouts_source() -> None:
    """Docker's labels (stack_labels), Apptainer.def's %labels and the arguments that fill them agree."""
    labels = config.stack_labels("trixie", "linux/amd64")
    assert labels[config.SOURCE_LABEL] == config.source_digest("trixie", "linux/amd64", config.source_parts())
    args = apptainer.label_arguments("trixie", "linux/amd64")
    definition = (config.ROOT / "Apptainer.def").read_text()
    for key, name in ((config.SOURCE_LABEL, "SOURCE"), (config.SOURCE_FILES_LABEL, "SOURCE_FILES")):
        assert f"    {key} {{{{ {name} }}}}\n" in definition
        assert args[name] == labels[key]


# ---- a SIF's labels, read from its metadata object without Apptainer ----

def sif_file(path: Path, objects: list[tuple[int, str, bytes]]) -> Path:
    """A SIF with these (data type, name, content) objects, in sif.go's packed layout."""
    descriptors, data, offset = b"", b"", 8192
    for kind, name, content in objects:
        descriptors += struct.pack("<i?IIIqqqqqqq128s384s", kind, True, 1, 0, 0, offset + len(data), len(content),
                                   len(content), 0, 0, 0, 0, name.encode(), b"\0" * 384)
        data += content
    header = struct.pack("<32s10s3s3s16s8q", b"#!/usr/bin/env run-singularity\n", b"SIF_MAGIC\0", b"01\0",
                         b"00\0", b"\0" * 16, 0, 0, 0, len(objects), 4096, len(descriptors), offset, len(data))
    path.write_bytes(header.ljust(4096, b"\0") + descriptors.ljust(4096, b"\0") + data)
    return path


def test_a_sifs_labels_are_read_from_its_inspect_metadata(tmp_path: Path) -> None:
    meta = json.dumps({"data": {"attributes": {"labels": {"a": "1", config.SOURCE_LABEL: "x"}}}}).encode()
    path = sif_file(tmp_path / "a.sif", [(0x4001, "", b"Bootstrap: docker\n"),
                                         (sif.DATA_GENERIC_JSON, "oci-config.json", b"{}"),
                                         (sif.DATA_GENERIC_JSON, sif.INSPECT_METADATA, meta)])
    assert sif.labels(path) == {"a": "1", config.SOURCE_LABEL: "x"}


def test_a_sif_without_metadata_has_no_labels_and_a_non_sif_is_refused(tmp_path: Path) -> None:
    assert sif.labels(sif_file(tmp_path / "a.sif", [(0x4001, "", b"Bootstrap: docker\n")])) is None
    (tmp_path / "b.sif").write_text("#!/bin/sh\n" * 20)
    with pytest.raises(ValueError, match="not a SIF"):
        sif.labels(tmp_path / "b.sif")
    found = provenance.sif_verdict(tmp_path / "b.sif", "trixie", "linux/amd64")
    assert found.state == provenance.UNLABELLED and "cannot be read" in found.why


# ---- what the run path and doctor do with each verdict ----

@pytest.fixture
def seen(monkeypatch) -> dict:
    """ensure_image and ensure_sif with the engine, the builds and what they say replaced by records."""
    record: dict = {"said": [], "built": []}
    monkeypatch.setattr(prepare, "say", lambda text: record["said"].append(text))
    monkeypatch.setattr(docker, "image_exists", lambda image: record.get("exists", True))
    monkeypatch.setattr(docker, "build_image", lambda *a, **k: record["built"].append(("image", a[1])))
    monkeypatch.setattr(apptainer, "build_sif", lambda *a, **k: record["built"].append(("sif", a[1])))
    monkeypatch.setattr(prepare.venv, "reexec_inside", lambda: None)
    monkeypatch.setattr(provenance, "image_verdict", lambda *a: record["verdict"])
    monkeypatch.setattr(provenance, "sif_verdict", lambda *a: record["verdict"])
    return record


STALE = provenance.Verdict(provenance.STALE, "examples/rank.py changed since it was built")
UNLABELLED = provenance.Verdict(provenance.UNLABELLED, "it has no io.github.mpi4py-kit.base label")


def settings(**kw) -> Settings:
    s = Settings(command="run", raw={}, base="trixie", platform="linux/amd64", image="mpi4py-kit:trixie",
                 sif=Path("/tmp/x/mpi.sif"))
    for key, value in kw.items():
        setattr(s, key, value)
    return s


def test_a_stale_default_image_is_rebuilt_with_its_reason(seen: dict) -> None:
    seen["verdict"] = STALE
    prepare.ensure_image(settings())
    assert seen["built"] == [("image", "mpi4py-kit:trixie")]
    assert seen["said"] == ["image mpi4py-kit:trixie is stale (examples/rank.py changed since it was built): "
                            "rebuilding it first"]


def test_a_current_image_costs_no_build_and_no_word(seen: dict) -> None:
    seen["verdict"] = provenance.Verdict(provenance.CURRENT, "")
    prepare.ensure_image(settings())
    assert seen["built"] == [] and seen["said"] == []


@pytest.mark.parametrize("verdict_, named, said", [
    (STALE, True, "(you named it)"),
    (UNLABELLED, False, "(not built by this kit: it is never replaced)"),
])
def test_a_named_or_foreign_image_runs_with_one_line(seen: dict, verdict_, named: bool, said: str) -> None:
    seen["verdict"] = verdict_
    prepare.ensure_image(settings(image="lab/mpi:old" if named else "mpi4py-kit:trixie", image_is_default=not named))
    assert seen["built"] == [] and len(seen["said"]) == 1
    assert said in seen["said"][0] and seen["said"][0].startswith("note: image ")
    assert "this checkout's build: make image" + (" IMAGE=lab/mpi:old" if named else "") in seen["said"][0]


def test_a_stale_default_sif_is_rebuilt_unless_its_signature_decides(seen: dict, tmp_path: Path) -> None:
    path = tmp_path / "mpi.sif"
    path.write_text("")
    seen["verdict"] = STALE
    prepare.ensure_sif(settings(sif=path))
    assert seen["built"] == [("sif", path)] and "is stale (examples/rank.py changed" in seen["said"][0]
    seen["built"], seen["said"] = [], []
    prepare.ensure_sif(settings(sif=path, verify_key=tmp_path / "key.pem"))
    assert seen["built"] == [] and "(VERIFY_KEY: its signature decides)" in seen["said"][0]
    assert "make sign SIF=" in seen["said"][0]


def test_make_line_builds_nothing_and_says_so_once(seen: dict, tmp_path: Path) -> None:
    seen["verdict"] = STALE
    prepare.note_stale(settings(), "docker")
    assert seen["built"] == [] and seen["said"] == [
        "note: image mpi4py-kit:trixie is stale (examples/rank.py changed since it was built); make run rebuilds "
        "it first, or now: make image BASE=trixie"]


@pytest.mark.parametrize("found, replaced, level", [
    (None, True, "info"),
    (provenance.Verdict(provenance.CURRENT, ""), True, "ok"),
    (STALE, True, "PROBLEM"),
    (STALE, False, "info"),
    (UNLABELLED, True, "info"),
])
def test_doctor_reports_a_stale_build_as_a_problem_and_a_kept_one_as_information(found, replaced, level) -> None:
    finding = doctor_judge.build("image mpi4py-kit:trixie", found, replaced, "make image BASE=trixie", "you named it")
    assert finding.level == level
    if level == "PROBLEM":
        assert "examples/rank.py changed" in finding.text and finding.fix.startswith("rebuild it: make image")
