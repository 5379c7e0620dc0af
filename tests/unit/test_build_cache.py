"""What decides whether an image or a SIF is rebuilt: the inputs digest (the image's
label), the SIF cache's entries per base and platform, and the SIF's stamped arch."""

from __future__ import annotations

from pathlib import Path

from mpikit import apptainer, config, docker


def test_the_image_digest_changes_with_the_platform_the_base_and_the_labels() -> None:
    labels = config.stack_labels("trixie", "linux/arm64")
    digest = docker.inputs_digest("trixie", "linux/arm64", "sha256:b", labels)
    assert digest == docker.inputs_digest("trixie", "linux/arm64", "sha256:b", dict(labels))
    assert len({digest,
                docker.inputs_digest("trixie", "linux/amd64", "sha256:b", labels),
                docker.inputs_digest("trixie", "linux/arm64", "sha256:other", labels),
                docker.inputs_digest("trixie", "linux/arm64", "sha256:b", {**labels, "x": "1"}),
                docker.inputs_digest("trixie", "linux/arm64", "sha256:b", labels, ("--no-cache",))}) == 5


def test_a_new_sif_replaces_only_its_own_base_and_platform_and_legacy_names(tmp_path: Path) -> None:
    names = ["trixie-amd64-0123456789abcdef.sif", "trixie-arm64-fedcba9876543210.sif",
             "trixie-0123456789abcdef.sif", "bookworm-arm64-0123456789abcdef.sif", "trixie-notes.sif"]
    for name in names:
        (tmp_path / name).write_text("")
    stale = apptainer.stale_cache_entries(tmp_path, "trixie", "arm64")
    assert [p.name for p in stale] == ["trixie-0123456789abcdef.sif", "trixie-arm64-fedcba9876543210.sif"]


def test_the_sifs_architecture_from_sif_list() -> None:
    listing = """------------------------------------------------------------------------------
ID   |GROUP   |LINK    |SIF POSITION (start-end)  |TYPE
------------------------------------------------------------------------------
1    |1       |NONE    |32176-32288               |Def.FILE
2    |1       |NONE    |32288-36360               |JSON.Generic
4    |1       |NONE    |36864-72687616            |FS (Squashfs/*System/arm64)
"""
    assert apptainer.sif_arch(listing) == "arm64"
    assert apptainer.sif_arch(listing.replace("arm64", "amd64")) == "amd64"
    assert apptainer.sif_arch("FATAL: could not open image") is None


def test_the_hosts_base_is_never_made_for_the_platform_make_exported(monkeypatch) -> None:
    """make exports PLATFORM=linux/arm64 to the kit's environment; base-image.sh reads PLATFORM, so the
    host's own base (the Apptainer helper's, the cluster's) must be asked for with PLATFORM cleared."""
    from mpikit import platforms

    seen = []
    monkeypatch.setenv("PLATFORM", "linux/arm64")
    monkeypatch.setattr(docker, "_buildkit_client", lambda: "docker")
    monkeypatch.setattr(docker.subprocess, "run", lambda argv, env: seen.append((argv[-1], env["PLATFORM"]))
                        or docker.subprocess.CompletedProcess(argv, 0))
    other = next(p for p in platforms.SUPPORTED if p != platforms.host())
    assert docker.ensure_base("trixie") == "debian:trixie-slim"
    assert docker.ensure_base("trixie", other) == platforms.base_image("trixie", other)
    assert seen == [("debian:trixie-slim", ""), (platforms.base_image("trixie", other), other)]


def test_a_second_make_sif_of_the_same_inputs_reuses_the_first(tmp_path: Path, monkeypatch) -> None:
    """The cache is keyed before the `singularity` shim (a fresh temporary folder each run) goes on PATH:
    keyed after, on a host without Apptainer, every make sif was a cold build (half an hour for arm64)."""
    monkeypatch.setattr(apptainer, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(apptainer, "STAGE", tmp_path / "stage")
    monkeypatch.setattr(apptainer, "stage_for", lambda base, platform: tmp_path / "stage" / f"{base}-{platform[6:]}")
    monkeypatch.setattr(apptainer, "ensure_helper", lambda: apptainer.helper_image())
    for name, fake in {"ensure_emulation": lambda platform: None, "engine_problem": lambda: None,
                       "ensure_base": lambda base, platform=None: platform, "image_id": lambda name: f"id:{name}",
                       "command": lambda: "docker"}.items():
        monkeypatch.setattr(apptainer.docker, name, fake)
    built, reused = [], []

    def build(base, args, how, stage):
        (stage / "mpi.sif").write_text(f"{base} {args}")
        built.append(base)

    monkeypatch.setattr(apptainer, "build_arguments", lambda base, ca, platform, stage: {"PLATFORM": platform})
    monkeypatch.setattr(apptainer, "_build", build)
    monkeypatch.setattr(apptainer, "_check_arch", lambda staged, arch: None)
    monkeypatch.setattr(apptainer, "_reuse", lambda cached, sif, stage: reused.append(cached))
    for sif in ("first.sif", "second.sif"):
        apptainer.build_sif("trixie", tmp_path / sif, None, "linux/arm64")
    assert built == ["trixie"] and len(reused) == 1, (built, reused)
    assert reused[0] == apptainer.cache_entry("trixie", "linux/arm64") and reused[0].is_file()
    assert reused[0].name.startswith("trixie-arm64-")


def test_another_platforms_sif_compiles_on_the_hosts_base(tmp_path: Path, monkeypatch) -> None:
    """Apptainer.def's builder stage starts from the host's base and cross-compiles for ARCH; the
    other stages start from the target's. On the host's own platform all three share one archive."""
    from mpikit import platforms

    saved = []
    monkeypatch.setattr(docker, "engine_problem", lambda: None)
    monkeypatch.setattr(docker, "ensure_base", lambda base, platform=None:
                        platforms.base_image(base, platform or platforms.host()))
    def save(*argv: str) -> None:  # docker save -o ARCHIVE IMAGE
        Path(argv[2]).write_text("")
        saved.append(argv[-1])

    monkeypatch.setattr(docker, "run", save)
    other = next(p for p in platforms.SUPPORTED if p != platforms.host())
    args = apptainer.build_arguments("trixie", None, other, tmp_path)
    assert args["ARCH"] == platforms.arch(other) and args["FROM"] == str(tmp_path / "base.tar")
    assert args["BUILDER_FROM"] == str(tmp_path / "builder-base.tar")
    assert saved == [platforms.base_image("trixie", other), "debian:trixie-slim"]
    saved.clear()
    own = apptainer.build_arguments("trixie", None, platforms.host(), tmp_path)
    assert own["ARCH"] == platforms.arch(platforms.host())
    assert own["FROM"] == own["BUILDER_FROM"] == str(tmp_path / "base.tar") and saved == ["debian:trixie-slim"]


def test_sif_from_auto_is_the_image_where_an_engine_answers() -> None:
    import pytest
    from mpikit.ui import UsageError

    assert apptainer.sif_source("auto", engine=True) == "image"
    assert apptainer.sif_source("auto", engine=False) == "recipe"
    assert apptainer.sif_source("recipe", engine=True) == "recipe"
    assert apptainer.sif_source("image", engine=False) == "image"  # then refused for want of an engine, by name
    with pytest.raises(UsageError, match="SIF_FROM='docker'"):
        apptainer.sif_source("docker", engine=True)


def test_the_image_recipe_is_the_final_stages_run_time_sections_of_apptainer_def() -> None:
    definition = (config.ROOT / "Apptainer.def").read_text()
    recipe = apptainer.image_recipe(definition)
    header = recipe.partition("\n%")[0]
    assert "Bootstrap: docker-archive\nFrom: {{ IMAGE_ARCHIVE }}" in header
    final = apptainer.final_stage_sections(definition)
    made = apptainer.final_stage_sections(recipe)
    assert list(made) == [name for name in final if name in apptainer.RUN_TIME_SECTIONS]
    assert set(made) == set(apptainer.RUN_TIME_SECTIONS), "Apptainer.def's final stage lost a run-time section"
    for name in made:
        assert made[name] == final[name], name
    # Nothing that builds: no %post, no %files, no stage of the recipe's.
    assert "%post" not in recipe and "%files" not in recipe and "Stage:" not in recipe
    assert apptainer.template_names(recipe)[0] == "IMAGE_ARCHIVE"
    known = set(apptainer.label_arguments("trixie", "linux/amd64"))
    assert set(apptainer.template_names(recipe)) - {"IMAGE_ARCHIVE"} <= known


def test_final_stage_sections_are_verbatim_as_apptainer_reads_them() -> None:
    """A comment between two sections belongs to the first, as in Apptainer's parser (it ends up in the SIF's
    environment file when it follows %environment), so the twins' files are byte for byte the same."""
    definition = ("Bootstrap: docker\nFrom: a\nStage: one\n\n%post\n    echo one\n\n"
                  "Bootstrap: docker\nFrom: b\nStage: final\n\n%files from one\n    /x /x\n\n"
                  "# a comment about the labels\n%labels\n    k v\n\n%test\n    true\n")
    assert apptainer.final_stage_sections(definition) == {
        "files": "    /x /x\n\n# a comment about the labels\n", "labels": "    k v\n\n", "test": "    true\n"}


def test_the_cache_keeps_the_newest_environments_sifs(tmp_path: Path) -> None:
    import os

    names = [f"trixie-amd64-env-{i:016x}.sif" for i in range(5)] + ["trixie-amd64-image-0123456789abcdef.sif"]
    for age, name in enumerate(names):
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (1000 + age, 1000 + age))
    # A new one is about to be stored: the newest ENV_SIFS_KEPT - 1 stay beside it.
    kept = apptainer.ENV_SIFS_KEPT - 1
    assert [p.name for p in apptainer.stale_cache_entries(tmp_path, "trixie", "amd64", "env")] == names[:5 - kept]


def test_the_cache_keeps_one_sif_of_each_source(tmp_path: Path) -> None:
    names = ["trixie-amd64-0123456789abcdef.sif", "trixie-amd64-image-fedcba9876543210.sif",
             "trixie-arm64-image-0123456789abcdef.sif", "trixie-0123456789abcdef.sif"]
    for name in names:
        (tmp_path / name).write_text("")
    assert [p.name for p in apptainer.stale_cache_entries(tmp_path, "trixie", "amd64", "image")] == \
        ["trixie-amd64-image-fedcba9876543210.sif"]
    assert [p.name for p in apptainer.stale_cache_entries(tmp_path, "trixie", "amd64")] == \
        ["trixie-0123456789abcdef.sif", "trixie-amd64-0123456789abcdef.sif"]
