"""The integration tests' PATH (tests/integration/conftest.py: shim_target): PATH's python3 is bypassed only when
it is a script (a version manager's shim) that starts the tests' own interpreter; an interpreter of its own, or a
script that starts another one, is left as it is."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
spec = importlib.util.spec_from_file_location("integration_conftest", CONFTEST)
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)

BASE = getattr(sys, "_base_executable", sys.executable)


def script(tmp_path: Path, target: str) -> str:
    shim = tmp_path / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
    shim.chmod(0o755)
    return str(shim)


def test_a_shim_that_starts_this_interpreter_is_bypassed(tmp_path) -> None:
    assert conftest.shim_target(script(tmp_path, BASE), BASE)


def test_a_shim_that_starts_another_interpreter_is_left(tmp_path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    fake = other / "python"
    fake.write_text('#!/bin/sh\necho /usr/bin/some-other-python\n')
    fake.chmod(0o755)
    assert not conftest.shim_target(script(tmp_path, str(fake)), BASE)


def test_the_interpreter_itself_or_none_is_left(tmp_path) -> None:
    assert not conftest.shim_target(BASE, BASE)
    assert not conftest.shim_target(None, BASE)
    link = tmp_path / "python3"
    link.symlink_to(Path(BASE).resolve())
    assert not conftest.shim_target(str(link), BASE)
