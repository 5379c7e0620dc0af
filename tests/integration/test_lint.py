"""Linters as tests: ruff, shellcheck and hadolint; every suppression says why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, explain

BIN = Path(sys.executable).parent


def shell_scripts() -> list[str]:
    found = [str(p) for p in [*ROOT.rglob("*.sh"), *ROOT.rglob("*.sbatch")] if ".venv" not in p.parts]
    found += [str(p) for p in (ROOT / ".ci").glob("*") if p.is_file()]
    return sorted(found)


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff() -> None:
    proc = run([str(BIN / "ruff"), "check", "scripts", "tests", "examples", "scripts/kit"])
    assert proc.returncode == 0, explain(proc, ".venv/bin/ruff check scripts tests examples")


def test_shellcheck() -> None:
    scripts = shell_scripts()
    assert scripts, "no shell scripts found"
    proc = run([str(BIN / "shellcheck"), *scripts])
    assert proc.returncode == 0, explain(proc, ".venv/bin/shellcheck " + " ".join(scripts))


def test_hadolint() -> None:
    files = ["Dockerfile", "scripts/apptainer/Dockerfile", "scripts/cluster/Dockerfile"]
    proc = run([str(BIN / "hadolint"), *files])
    assert proc.returncode == 0, explain(proc, ".venv/bin/hadolint " + " ".join(files))


SUPPRESSION = re.compile(r"#\s*(noqa|shellcheck (disable|source)|hadolint ignore)")


def test_every_suppression_is_explained() -> None:
    """A linter exception must be preceded by a comment that says why (not another directive)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    unexplained = []
    for name in files:
        path = ROOT / name
        if name.startswith("requirements/") or not path.is_file() or path.suffix in (".txt", ".png"):
            continue
        lines = path.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if SUPPRESSION.search(line) and name != "tests/integration/test_lint.py":
                before = lines[i - 1].strip() if i else ""
                if not before.startswith("#") or SUPPRESSION.search(before):
                    unexplained.append(f"{name}:{i + 1}: {line.strip()}")
    assert not unexplained, "linter exceptions without a comment above saying why:\n" + "\n".join(unexplained)
