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
THREAD = "tests/scripts/thread_fails.py"
POOL = "tests/scripts/my_pool.py"


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


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exception_in_another_thread_aborts_the_job(runtime_ready: str) -> None:
    """A worker thread raises while every main thread waits: the job ends in seconds, with its traceback."""
    command = f"make run SCRIPT={THREAD} NP=3 RUNTIME={runtime_ready}"
    start = time.monotonic()
    proc = make("run", f"SCRIPT={THREAD}", "NP=3", f"RUNTIME={runtime_ready}", "TIMEOUT=120", timeout=150)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0 and "timed out" not in proc.stderr, explain(proc, command)
    assert "RuntimeError: worker thread of rank 1 failed on purpose" in proc.stderr, explain(proc, command)
    assert "thread worker raised RuntimeError: aborting the MPI job" in proc.stderr, explain(proc, command)
    assert elapsed < 30, f"took {elapsed:.1f} s" + explain(proc, command)
    assert leftovers(THREAD) == [], explain(proc, command)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("futures", ["0", "1"])
def test_a_users_pool_script(futures: str, runtime_ready: str) -> None:
    """FUTURES=1: the job's ranks are the workers. FUTURES=0 with NP=1: the pool spawns them, which
    Open MPI's mpiexec supports; natively this host has Docker bridges, whose addresses made spawn hang."""
    np = "4" if futures == "1" else "1"
    command = f"make run SCRIPT={POOL} NP={np} FUTURES={futures} RUNTIME={runtime_ready}"
    start = time.monotonic()
    proc = make("run", f"SCRIPT={POOL}", f"NP={np}", f"FUTURES={futures}", f"RUNTIME={runtime_ready}",
                "TIMEOUT=120", timeout=150)
    assert proc.returncode == 0, explain(proc, command)
    assert "pool results: [0, 1, 4, 9, 16, 25, 36, 49]" in proc.stdout, explain(proc, command)
    assert ("-m mpi4py.futures" in proc.stderr) == (futures == "1"), explain(proc, command)
    assert time.monotonic() - start < 60, explain(proc, command)
