"""The kit's venv is never left half-made, and a missing python3-venv is one clear line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mpikit import venv
from mpikit.ui import MissingPrerequisite, RunError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(venv, "VENV", tmp_path / ".venv")
    return tmp_path / ".venv"


def test_no_ensurepip_is_a_missing_prerequisite(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(venv, "venv_module_problem", lambda: "install the package python3-venv")
    with pytest.raises(MissingPrerequisite, match="python3-venv"):
        venv.ensure()
    assert not home.exists()


def test_an_incomplete_venv_is_made_again(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "bin").mkdir(parents=True)  # what an interrupted `python3 -m venv` leaves
    calls: list[list[str]] = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            assert not home.exists(), "the incomplete venv must be gone before a new one is made"
            (home / "bin").mkdir(parents=True)
            (home / "bin" / "python").write_text("")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(venv, "venv_module_problem", lambda: None)
    monkeypatch.setattr(venv.subprocess, "run", fake_run)
    assert venv.ensure() == home
    assert (home / venv.COMPLETE).is_file() and venv.is_ready()
    assert [c[1:3] for c in calls] == [["-m", "venv"], ["-m", "pip"]]


def test_a_failed_first_install_leaves_nothing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(cmd, **kw):
        if cmd[1:3] == ["-m", "venv"]:
            (home / "bin").mkdir(parents=True)
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, 1, "", "")

    monkeypatch.setattr(venv, "venv_module_problem", lambda: None)
    monkeypatch.setattr(venv.subprocess, "run", fake_run)
    with pytest.raises(RunError, match=r"installing native\.txt"):
        venv.ensure()
    assert not home.exists()



@pytest.fixture
def pip_that_succeeds(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python3 -m venv` makes the interpreter, pip installs whatever it is given."""
    def fake_run(cmd, **kw):
        if cmd[1:3] == ["-m", "venv"]:
            (home / "bin").mkdir(parents=True)
            (home / "bin" / "python").write_text("")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(venv, "venv_module_problem", lambda: None)
    monkeypatch.setattr(venv.subprocess, "run", fake_run)
    monkeypatch.setattr(venv, "compile_kit", lambda: None)


def test_the_tools_venv_is_the_native_one_too(home: Path, pip_that_succeeds, monkeypatch: pytest.MonkeyPatch) -> None:
    """make test makes the venv with the tools (native.txt and dev.txt): a native run after it installs nothing
    and writes nothing (.venv stays as it is)."""
    venv.ensure(venv.TOOLS)
    assert venv.is_ready(venv.TOOLS) and venv.is_ready(venv.NATIVE)
    before = {p.name: p.stat().st_mtime_ns for p in home.iterdir()}
    monkeypatch.setattr(venv.subprocess, "run", lambda cmd, **kw: pytest.fail(f"ran {cmd}"))
    assert venv.ensure(venv.NATIVE) == home
    assert {p.name: p.stat().st_mtime_ns for p in home.iterdir()} == before


def test_the_native_venv_is_not_the_tools_one(pip_that_succeeds) -> None:
    venv.ensure(venv.NATIVE)
    assert venv.is_ready(venv.NATIVE) and not venv.is_ready(venv.TOOLS)
