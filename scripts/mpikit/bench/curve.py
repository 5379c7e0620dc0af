"""`make bench-curve`: how a job's time grows with ranks per node, for each way
srun's ranks can enter the image (APPTAINER_MODE) against bare srun, on the
test cluster's 2 nodes; and where a short job's time goes (scripts/mpi/phases.py).

Modes: srun (bare srun, the nodes' own Open MPI and Python: the baseline),
exec, sharens, sandbox, join, instance (launch.MODES). Also the CPU that entering
the image costs each rank (scripts/mpi/enter_cpu.py), a recorded figure. Every figure is a median over
runs with the modes interleaved. One-time costs: a sandbox is unpacked once per
node and reused across jobs, so its unpack is reported on its own; an instance
is started in every job, so its start is in the job's figure.
Output: results/bench-curve.json and results/bench-curve.png.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from .. import cluster, config, docker, launch
from ..config import MPI_PROGRAMS, ROOT
from ..ui import say
from .scenarios import Scenario, mode_build
from .stats import slope

RESULTS = config.results_dir()
MODES = ("srun", *launch.MODES)
PHASES = (MPI_PROGRAMS / "phases.py").relative_to(ROOT).as_posix()
STARTUP = (MPI_PROGRAMS / "startup.py").relative_to(ROOT).as_posix()
SCATTER = "examples/scatter_gather.py"


def scenario(sif: Path, mpi: str, mode: str, env: dict[str, str] | None = None) -> Scenario:
    return Scenario(mode, None if mode == "srun" else "srun", mode, mode_build(sif, mpi, mode, env), nodes=2)


def clear_sandboxes() -> None:
    for node in cluster.COMPUTE:
        docker.run("exec", node, "rm", "-rf", f"/tmp/mpi4py-kit-{1000}", check=False)


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (this VM's, which the nodes share): root only."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def curve(sif: Path, mpi: str, rpns: tuple[int, ...], workloads: dict[str, tuple[list[str], int]], run) -> dict:
    """mode -> workload -> ranks per node -> {median_s, runs}, modes interleaved at each point."""
    found: dict = {mode: {w: {} for w in workloads} for mode in MODES}
    for rpn in rpns:
        for workload, (args, runs) in workloads.items():
            script = STARTUP if workload == "startup" else SCATTER
            times: dict[str, list[float]] = {m: [] for m in MODES}
            for repeat in range(runs):
                for mode in MODES:
                    say(f"bench-curve: {workload}, {rpn} ranks per node, {mode} ({repeat + 1}/{runs})")
                    times[mode].append(run(scenario(sif, mpi, mode), 2 * rpn, script, args)[1])
            for mode in MODES:
                found[mode][workload][rpn] = {"median_s": statistics.median(times[mode]), "runs": times[mode]}
    return found


def breakdown(sif: Path, mpi: str, runs: int, run, cold_modes: tuple[str, ...] = MODES) -> dict:
    """At 2 nodes x 2 ranks, scatter of 10M values: the wall time and, inside the ranks, import, MPI_Init,
    barrier, scatter, finalize; the launch (before Python runs) is the wall time less those. Then the same
    without single-copy (OMPI_MCA_smsc=^cma) and from a cold page cache (cold_modes: each empties the
    whole machine's page cache, which slows whatever else runs)."""
    args = ["--size", "10000000"]
    variants = {mode: scenario(sif, mpi, mode) for mode in MODES}
    variants.update({f"{m}, no CMA": scenario(sif, mpi, m, {"OMPI_MCA_smsc": "^cma"}) for m in ("srun", "sharens")})
    samples: dict[str, list[dict]] = {name: [] for name in variants}
    for repeat in range(runs):
        for name, s in variants.items():
            say(f"bench-curve: phases, {name} ({repeat + 1}/{runs})")
            out, wall = run(s, 4, PHASES, args)
            phases = json.loads(next(line for line in out.splitlines() if line.startswith("PHASES "))[7:])
            phases["wall"] = wall
            phases["launch"] = wall - sum(v for k, v in phases.items() if k != "wall")
            samples[name].append(phases)
    found = {name: {k: statistics.median(s[k] for s in rows) for k in rows[0]} for name, rows in samples.items()}
    cold = {}
    for mode in cold_modes:
        if not drop_page_cache():
            cold = {"note": "not measured: emptying the page cache needs root"}
            break
        say(f"bench-curve: phases from a cold page cache, {mode}")
        out, wall = run(scenario(sif, mpi, mode), 4, PHASES, args)
        cold[mode] = {"wall": wall, **json.loads(next(line for line in out.splitlines()
                                                       if line.startswith("PHASES "))[7:])}
    found["cold page cache"] = cold
    return found


def sandbox_unpack(sif: Path, mpi: str, run, runs: int = 3) -> dict:
    """The sandbox's one-time cost: the first job after the folders are removed, against the median of the
    next `runs`."""
    clear_sandboxes()
    first = run(scenario(sif, mpi, "sandbox"), 2, STARTUP, [])[1]
    again = statistics.median(run(scenario(sif, mpi, "sandbox"), 2, STARTUP, [])[1] for _ in range(runs))
    return {"first_job_s": first, "reused_s": again, "unpack_s": first - again}


ENTER_CPU = (MPI_PROGRAMS / "enter_cpu.py").relative_to(ROOT).as_posix()


def enter_cpu(sif: Path, tasks: int, runs: int) -> dict:
    """CPU to enter the image per rank, each container mode, on node1 (scripts/mpi/enter_cpu.py): the
    median over `runs`. The sandbox is unpacked before, so no mode pays that once-per-node cost here."""
    node = cluster.COMPUTE[0]
    wrapper = f"{cluster.SHARED}/{launch.WRAPPER}"
    argv = cluster.on_node(node, ["python3", f"{cluster.SHARED}/{ENTER_CPU}", wrapper, cluster.shared_path(sif),
                                  str(tasks), *launch.MODES])
    samples: dict[str, list[dict]] = {}
    for repeat in range(runs):
        say(f"bench-curve: CPU to enter the image, {tasks} tasks on {node}, every mode ({repeat + 1}/{runs})")
        out = docker.run(*argv[1:], check=True, timeout=900).stdout
        line = next(x for x in out.splitlines() if x.startswith("ENTER-CPU "))
        for mode, figures in json.loads(line[len("ENTER-CPU "):]).items():
            samples.setdefault(mode, []).append(figures)
    return {mode: {key: statistics.median(s[key] for s in rows) for key in ("first_ms", "per_rank_ms")}
            | {"tasks": tasks, "runs": [s["per_rank_ms"] for s in rows]} for mode, rows in samples.items()}


def slopes(found: dict, workload: str = "startup") -> dict[str, float]:
    """Seconds each extra rank per node adds (least squares over the curve), per mode."""
    return {mode: slope({rpn: v["median_s"] for rpn, v in found[mode][workload].items()}) for mode in MODES}


def run_all(sif: Path, mpi: str, quick: bool, run) -> dict:
    """QUICK proves every part runs, every mode at every point, once each (figures not for quoting): the
    curve at 1 and 2 ranks per node, and the cold page cache for bare srun and one container mode only."""
    rpns = (1, 2) if quick else (1, 2, 4, 8, 16)
    workloads = {"startup": ([], 1 if quick else 5), "scatter10M": (["--size", "10000000", "--seed", "1"],
                                                                     1 if quick else 3)}
    if not quick:
        workloads["scatter100M"] = (["--size", "100000000", "--seed", "1"], 2)
    results = {"quick": quick, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
               "cluster": cluster.versions(), "modes": list(MODES), "ranks_per_node": list(rpns)}
    results["sandbox"] = sandbox_unpack(sif, mpi, run, 1 if quick else 3)
    results["enter_cpu"] = enter_cpu(sif, 4 if quick else 8, 1 if quick else 3)
    results["curve"] = curve(sif, mpi, rpns, workloads, run)
    results["slope_s_per_rank_per_node"] = slopes(results["curve"])
    results["breakdown"] = breakdown(sif, mpi, 1 if quick else 5, run, ("srun", "sharens") if quick else MODES)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench-curve.json").write_text(json.dumps(results, indent=1) + "\n")
    return results
