"""Shared fixtures: run scripts/kit and make exactly as users do.

REQUIRE_CONTAINERS=1 (set by .ci/run) turns a missing Docker engine into a
failure instead of a skip.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

# The kit's package lives in scripts/, put on sys.path just above.
from mpikit import config, docker  # noqa: E402

REQUIRE_CONTAINERS = os.environ.get("REQUIRE_CONTAINERS") == "1"
# Knobs the Makefile exports; a test states its own, never inherits the caller's.
KNOBS = ("NP", "RUNTIME", "BASE", "IMAGE", "SCRIPT", "ARGS", "TIMEOUT", "CA_CERT", "SRUN_MPI", "SIF", "LAUNCH",
         "QUICK", "PYTEST_ARGS")


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


def make_then_ctrl_c(*args: str, ranks: int) -> subprocess.CompletedProcess:
    """`make ARGS` until `ranks` ranks print 'rank N started', then Ctrl-C: a
    terminal sends SIGINT to the whole foreground process group."""
    proc = subprocess.Popen(["make", "--no-print-directory", *args], cwd=ROOT, env=clean_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    started: set[str] = set()
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while len(started) < ranks and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        started.update(re.findall(r"^rank (\d+) started", line))
    if len(started) < ranks:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"only ranks {sorted(started)} started: make {' '.join(args)}")
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"Ctrl-C did not end the run within 30 s: make {' '.join(args)}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def leftovers(script: str, settle: float = 30) -> list[str]:
    """Processes (here or on the cluster's nodes, which this host sees) or containers still running
    `script`, once `settle` seconds have passed for them to go."""
    deadline = time.monotonic() + settle
    while True:
        found = subprocess.run(["pgrep", "-af", script], capture_output=True, text=True).stdout.splitlines()
        if docker.engine_problem() is None:
            ps = subprocess.run([docker.client(), "ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.Command}}"],
                                capture_output=True, text=True).stdout
            found += [f"container {line}" for line in ps.splitlines() if script in line]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(1)


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


def build_test_sif(sif: str, base: str) -> str:
    """`make sif` from the current Apptainer.def into the tests' own file."""
    (ROOT / "build" / "test").mkdir(parents=True, exist_ok=True)
    proc = make("sif", f"SIF={sif}", f"BASE={base}", timeout=1800)
    assert proc.returncode == 0, explain(proc, f"make sif SIF={sif} BASE={base}")
    assert "Running testscript" in proc.stdout + proc.stderr, "the definition's %test did not run"
    assert (ROOT / sif).is_file()
    return sif


@pytest.fixture(scope="session")
def sif(docker_image: str) -> str:
    return build_test_sif("build/test/mpi.sif", config.default_base())


@pytest.fixture(scope="session")
def sif_bookworm(docker_image: str) -> str:
    """The PMIx 4 image, for clusters whose Slurm speaks another PMIx than the default image."""
    return build_test_sif("build/test/mpi-bookworm.sif", "bookworm")


@pytest.fixture(scope="session")
def cluster(sif: str):
    """The test Slurm cluster, started once (make cluster-up, twice: idempotent) and removed at the end."""
    problem = docker.engine_problem()
    if problem:
        if REQUIRE_CONTAINERS:
            pytest.fail(f"REQUIRE_CONTAINERS=1 but there is no Docker engine: {problem}")
        pytest.skip(f"no Docker engine for the test cluster ({problem})")
    proc = make("cluster-up", timeout=900)
    assert proc.returncode == 0, explain(proc, "make cluster-up")
    again = make("cluster-up", timeout=300)
    assert again.returncode == 0 and "already up" in again.stderr, explain(again, "make cluster-up (again)")
    yield sif
    proc = make("cluster-down", timeout=300)
    assert proc.returncode == 0, explain(proc, "make cluster-down")
    # Once down, the cluster runtime says how to start it instead of failing obscurely.
    proc = make("run-rank", "RUNTIME=cluster", timeout=60)
    assert proc.returncode != 0 and "make cluster-up" in proc.stderr, explain(proc, "make run-rank RUNTIME=cluster")
