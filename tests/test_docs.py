"""The docs and recipes say what is true: run lines name their own file, the
one list of examples matches examples/, the twin recipes agree on the pins."""

from __future__ import annotations

import ast
import re
import subprocess

import pytest
from conftest import ROOT, make
from mpikit import config
from mpikit.config import EXAMPLES


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_docstring_run_lines_name_the_file(name: str) -> None:
    example = EXAMPLES[name]
    doc = ast.get_docstring(ast.parse(example.path.read_text()))
    assert doc, f"{example.file} has no module docstring"
    run_lines = [line.strip() for line in doc.splitlines()
                 if re.match(r"\s*(make|mpiexec|docker|apptainer|srun) ", line)]
    kinds = {line.split()[0] for line in run_lines}
    assert kinds >= {"make", "mpiexec", "docker", "apptainer", "srun"}, f"{example.file}: run lines {run_lines}"
    for line in run_lines:
        if line.startswith("make "):
            assert line.startswith(f"make run-{name} "), f"{example.file}: {line}"
        else:
            assert f"examples/{example.file}" in line, f"{example.file}: '{line}' names another file"
    assert "check" in doc.lower(), f"{example.file}: the docstring must say what it checks"


def test_every_example_file_is_listed_once() -> None:
    files = sorted(p.name for p in config.EXAMPLES_DIR.glob("*.py"))
    assert files == sorted(e.file for e in EXAMPLES.values())


def test_examples_stay_small() -> None:
    for example in EXAMPLES.values():
        code = [line for line in example.path.read_text().split('"""', 2)[-1].splitlines()
                if line.strip() and not line.strip().startswith("#")]
        assert len(code) <= 60, f"{example.file} has {len(code)} lines of code; keep examples to one idea"


def test_the_twin_recipes_agree_on_the_default_base() -> None:
    base = config.default_base()
    assert re.search(rf"^ARG BASE={base}$", (ROOT / "Dockerfile").read_text(), re.M)
    assert re.search(rf"^\s*BASE={base}$", (ROOT / "Apptainer.def").read_text(), re.M)


def test_the_twin_recipes_set_the_same_environment() -> None:
    """Dockerfile ENV and Apptainer.def %environment: the same variables, same values."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    docker_env = dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", dockerfile, re.M))))
    section = (ROOT / "Apptainer.def").read_text().split("%environment", 1)[1].split("\n%", 1)[0]
    apptainer_env = dict(re.findall(r"^\s*export (\w+)=(\S+)", section, re.M))
    assert docker_env == apptainer_env and "PYTHONNOUSERSITE" in docker_env, (docker_env, apptainer_env)


def test_every_supported_base_has_pins() -> None:
    versions = config.read_versions()
    for base in config.supported_bases():
        assert versions.get(f"OPENMPI_DEB_{base}") and versions.get(f"PMIX_DEB_{base}"), base


def test_locked_requirements_match_their_inputs() -> None:
    """requirements/*.in name the versions; the hashed .txt locks must agree (make lock)."""
    for source in ("image", "native", "build"):
        source_text = (config.REQUIREMENTS / f"{source}.in").read_text()
        wanted = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", source_text, re.M))
        locked = config.python_pins(f"{source}.txt")
        for name, version in wanted.items():
            assert locked.get(name) == version, f"{source}.txt pins {name}=={locked.get(name)}, .in says {version}"
        # Every locked requirement carries hashes (pip --require-hashes).
        text = (config.REQUIREMENTS / f"{source}.txt").read_text()
        for block in re.split(r"\n(?=[A-Za-z])", text):
            if "==" in block.split("\n")[0]:
                assert "--hash=sha256:" in block, f"{source}.txt: {block.splitlines()[0]} has no hash"


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make run-scatter NP=4" in first_screen
    assert "make test" in first_screen


def test_every_make_target_in_the_readme_exists() -> None:
    help_text = make("help").stdout
    targets = set(re.findall(r"^  (\S+)", help_text, re.M))
    readme = (ROOT / "README.md").read_text()
    # Commands: at the start of a code line (after an optional "$ ") or in `inline code`.
    for target in set(re.findall(r"(?:^(?:\$ )?|`)make ([a-z][a-z0-9-]*)", readme, re.M)):
        if target == "run-nosuch" or target.endswith("-"):  # a bad name on purpose; `make run-*`
            continue
        assert target in targets, f"README mentions 'make {target}', which make help does not list"


def test_default_timeout_is_one_fact() -> None:
    """The Makefile's TIMEOUT default and the kit's (for direct scripts/kit calls) agree."""
    from mpikit.cli import DEFAULT_TIMEOUT

    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^TIMEOUT +\?= *{DEFAULT_TIMEOUT}##", makefile, re.M), "Makefile TIMEOUT default drifted"


def test_every_pip_install_checks_hashes() -> None:
    """Python packages install only from the hash-pinned locks (or from wheels built from them)."""
    files = subprocess.run(["git", "ls-files", "scripts", "Dockerfile", "Apptainer.def", "Makefile", ".ci"],
                           cwd=ROOT, capture_output=True, text=True).stdout.split()
    installs = []
    for name in files:
        text = (ROOT / name).read_text(errors="replace").replace("\\\n", " ")  # join continued lines
        for line in text.splitlines():
            if re.search(r"""pip\b["')\s,]+(\S+\s+)*?["']?(install|wheel)\b""", line) and "pip.conf" not in line:
                installs.append((name, line.strip()))
                assert "--require-hashes" in line or "--no-index" in line, f"{name}: pip without hashes: {line}"
    assert len(installs) >= 4, f"expected the image's and the venv's pip installs, found {installs}"
