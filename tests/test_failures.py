"""Failures end cleanly under every local runtime: a rank that raises aborts
the job, a hang is stopped by TIMEOUT naming the ranks still running, and
Ctrl-C leaves no rank, process or container behind. Each test induces it."""

from __future__ import annotations

import re
import time

import pytest
from conftest import explain, leftovers, make, make_then_ctrl_c

RUNTIMES = ["native", "docker"]
FAIL = "tests/scripts/fail_on_rank1.py"
HANG = "tests/scripts/hang.py"


@pytest.fixture
def runtime_ready(request, runtime):
    if runtime == "docker":
        request.getfixturevalue("docker_image")
    return runtime


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exception_in_one_rank_aborts_the_job(runtime_ready: str) -> None:
    command = f"make run SCRIPT={FAIL} NP=3 RUNTIME={runtime_ready}"
    start = time.monotonic()
    proc = make("run", f"SCRIPT={FAIL}", "NP=3", f"RUNTIME={runtime_ready}", "TIMEOUT=120", timeout=150)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0, explain(proc, command)
    assert "ValueError: rank 1 failed on purpose" in proc.stderr, "no traceback of the failing rank" + explain(
        proc, command)
    assert "MPI_ABORT was invoked on rank 1" in proc.stderr, explain(proc, command)
    assert "timed out" not in proc.stderr, explain(proc, command)
    # The promise: the whole job ends within 10 s of the exception (plus container start).
    assert elapsed < 10 + (5 if runtime_ready == "docker" else 0), f"took {elapsed:.1f} s" + explain(proc, command)
    assert leftovers(FAIL) == [], explain(proc, command)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_timeout_stops_a_hang_and_names_the_ranks(runtime_ready: str) -> None:
    command = f"make run SCRIPT={HANG} NP=3 RUNTIME={runtime_ready} TIMEOUT=8"
    proc = make("run", f"SCRIPT={HANG}", "NP=3", f"RUNTIME={runtime_ready}", "TIMEOUT=8", timeout=60)
    assert proc.returncode != 0, explain(proc, command)
    assert re.search(r"^error: timed out after 8 s \(TIMEOUT=8\); ranks still running: 0, 1, 2; stopped every rank",
                     proc.stderr, re.M), explain(proc, command)
    assert leftovers(HANG) == [], explain(proc, command)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ctrl_c_stops_every_rank_and_container(runtime_ready: str) -> None:
    """Ctrl-C in a terminal sends SIGINT to make's whole process group."""
    command = f"make run SCRIPT={HANG} NP=3 RUNTIME={runtime_ready}, then Ctrl-C"
    done = make_then_ctrl_c("run", f"SCRIPT={HANG}", "NP=3", f"RUNTIME={runtime_ready}", ranks=3)
    assert done.returncode != 0, explain(done, command)
    assert "interrupted: every rank and container this run started was stopped" in done.stderr, explain(
        done, command)
    assert leftovers(HANG) == [], explain(done, command)
