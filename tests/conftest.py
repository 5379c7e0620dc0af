"""Shared fixtures: run scripts/kit and make exactly as users do.

REQUIRE_CONTAINERS=1 (set by .ci/run) turns a missing Docker engine into a
failure instead of a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from mpikit import config, docker  # noqa: E402

REQUIRE_CONTAINERS = os.environ.get("REQUIRE_CONTAINERS") == "1"
# Knobs the Makefile exports; a test states its own, never inherits the caller's.
KNOBS = ("NP", "RUNTIME", "BASE", "IMAGE", "SCRIPT", "ARGS", "TIMEOUT", "CA_CERT", "PYTEST_ARGS")


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KNOBS and not k.startswith("MAKE")}
    env.update(overrides)
    return env


def kit(*args: str, timeout: int = 180, **env: str) -> subprocess.CompletedProcess:
    """scripts/kit ARGS, from the repository root, with a time limit."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "kit"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=clean_env(**env))


def make(*args: str, timeout: int = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=clean_env(**env))


def explain(proc: subprocess.CompletedProcess, command: str) -> str:
    return (f"\ncommand: {command}\nexit status: {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The default image, rebuilt from the current recipe (cached layers make it quick)."""
    problem = docker.engine_problem()
    if problem:
        if REQUIRE_CONTAINERS:
            pytest.fail(f"REQUIRE_CONTAINERS=1 but there is no Docker engine: {problem}")
        pytest.skip(f"no Docker engine ({problem}); run scripts/provision.sh docker")
    base = config.default_base()
    proc = kit("image", "--base", base, timeout=1800)
    assert proc.returncode == 0, explain(proc, f"make image BASE={base}")
    return f"{config.read_versions()['IMAGE_NAME']}:{base}"


TEST_SIF = "build/test/mpi.sif"


@pytest.fixture(scope="session")
def sif(docker_image: str) -> str:
    """A SIF built by `make sif` from the current Apptainer.def (the tests' own copy)."""
    (ROOT / "build" / "test").mkdir(parents=True, exist_ok=True)
    proc = make("sif", f"SIF={TEST_SIF}", timeout=1800)
    assert proc.returncode == 0, explain(proc, f"make sif SIF={TEST_SIF}")
    assert "Running testscript" in proc.stdout + proc.stderr, "the definition's %test did not run"
    assert (ROOT / TEST_SIF).is_file()
    return TEST_SIF
