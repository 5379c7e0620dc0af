"""Every example x NP in 1..5 x runtime, through the same scripts/kit call as
`make run-NAME NP=.. RUNTIME=..`, checked by content (mpikit.checks)."""

from __future__ import annotations

import pytest
from conftest import ROOT, assert_example, explain, kit, make
from mpikit.config import EXAMPLES

RUNTIMES = ["native", "docker"]
# A prime size: no rank count from 2 to 5 divides it, so the remainder matters.
SCATTER_SIZE = 999_983


def run_example(name: str, np: int, runtime: str, args: str = ""):
    return kit("run", name, "--np", str(np), "--runtime", runtime, "--args", args, timeout=240)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("np", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example(name: str, np: int, runtime_ready: str) -> None:
    runtime = runtime_ready
    example = EXAMPLES[name]
    args = f"--size {SCATTER_SIZE} --seed {np}" if name == "scatter" else ""
    proc = run_example(name, np, runtime, args)
    command = f"make run-{name} NP={np} RUNTIME={runtime}" + (f" ARGS='{args}'" if args else "")
    if np < example.min_ranks:
        assert proc.returncode == 2, explain(proc, command)
        assert f"needs at least {example.min_ranks} ranks" in proc.stderr, explain(proc, command)
        return
    assert_example(name, proc, np, command, SCATTER_SIZE if name == "scatter" else None)
    assert f"runtime: {runtime}" in proc.stderr, "the run must say which runtime it used"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_scatter_at_the_seeds_size(runtime_ready: str) -> None:
    """The default 100,000,000 values, as on the centre's page, with 4 ranks."""
    proc = run_example("scatter", 4, runtime_ready)
    assert_example("scatter", proc, 4, f"make run-scatter NP=4 RUNTIME={runtime_ready}", 100_000_000)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_point_to_point_refuses_one_rank_itself(runtime_ready: str) -> None:
    """Run directly (not through the kit's own NP check), the example refuses
    to wait for a partner that does not exist: clear message, non-zero, no hang."""
    proc = kit("run", "--script", "examples/point_to_point.py", "--np", "1",
               "--runtime", runtime_ready, timeout=60)
    command = f"make run SCRIPT=examples/point_to_point.py NP=1 RUNTIME={runtime_ready}"
    assert proc.returncode != 0, explain(proc, command)
    assert "needs at least 2 ranks" in proc.stderr, explain(proc, command)
    assert "Traceback" not in proc.stdout + proc.stderr, explain(proc, command)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_users_own_script_with_args(runtime_ready: str) -> None:
    """make run SCRIPT=... ARGS=...: a user's script in a subfolder, with arguments."""
    folder = ROOT / "tests" / "_user_script"
    folder.mkdir(exist_ok=True)
    script = folder / "sum_ranks.py"
    script.write_text(
        "import sys\nfrom mpi4py import MPI\n"
        "comm = MPI.COMM_WORLD\n"
        "total = comm.allreduce(comm.Get_rank() * int(sys.argv[1]))\n"
        "if comm.Get_rank() == 0:\n"
        "    print(f'total: {total} size: {comm.Get_size()}')\n")
    try:
        proc = kit("run", "--script", "tests/_user_script/sum_ranks.py", "--np", "3",
                   "--runtime", runtime_ready, "--args", "10", timeout=120)
    finally:
        script.unlink()
        folder.rmdir()
    command = f"make run SCRIPT=tests/_user_script/sum_ranks.py NP=3 ARGS=10 RUNTIME={runtime_ready}"
    assert proc.returncode == 0, explain(proc, command)
    assert "total: 30 size: 3" in proc.stdout, explain(proc, command)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_smoke_target(runtime_ready: str) -> None:
    proc = make("smoke", "NP=3", f"RUNTIME={runtime_ready}", timeout=600)
    command = f"make smoke NP=3 RUNTIME={runtime_ready}"
    assert proc.returncode == 0, explain(proc, command)
    assert proc.stdout.count("PASS ") == len(EXAMPLES), explain(proc, command)
    assert f"smoke: {len(EXAMPLES)} passed, 0 failed" in proc.stdout, explain(proc, command)
