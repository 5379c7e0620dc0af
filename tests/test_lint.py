"""Linters as tests: ruff, shellcheck and hadolint, with no exceptions."""

from __future__ import annotations

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
    files = ["Dockerfile", "scripts/apptainer/Dockerfile"]
    proc = run([str(BIN / "hadolint"), *files])
    assert proc.returncode == 0, explain(proc, ".venv/bin/hadolint " + " ".join(files))
