"""The CPU that entering the image costs each rank, per APPTAINER_MODE, measured on one node.

    python3 enter_cpu.py WRAPPER SIF TASKS MODE [MODE ...]

For each mode, TASKS copies of the kit's wrapper (scripts/launch/apptainer-rank.sh) start at once, as
srun starts a node's tasks (one job step, SLURM_LOCALID 0..TASKS-1), and each runs `sleep 1` in the
image: alive at once, as ranks are (--sharens ends its shared namespace with the first process, and a
`true` that exits at once took it from the others).
The CPU of everything they run is read back from RUSAGE_CHILDREN: user + system seconds of the waited-for
children and their descendants. One task alone is measured first (its own step), so the figure per rank
after a node's first is (CPU(TASKS) - CPU(1)) / (TASKS - 1). In join the node's first rank runs the image
itself (the holder) and the others enter it, so the first figure is an Apptainer start and the figure per
rank is what joining costs; its watcher, in its own session, only waits and is not among these children.
Prints one line: ENTER-CPU {"mode": {"first_ms": ..., "per_rank_ms": ..., "tasks": ...}, ...}.
Runs with the node's own python3; no MPI is started.
"""

import json
import os
import resource
import subprocess
import sys


def cpu_of(wrapper: str, sif: str, mode: str, tasks: int, job: int) -> float:
    """CPU seconds of `tasks` wrappers started at once in job step `job`.0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [subprocess.Popen([wrapper, mode, sif, "--", "sleep", "1"],
                              env={**os.environ, "SLURM_JOB_ID": str(job), "SLURM_STEP_ID": "0",
                                   "SLURM_NODEID": "0", "SLURM_STEP_TASKS_PER_NODE": str(tasks),
                                   "SLURM_LOCALID": str(i)}) for i in range(tasks)]
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"enter_cpu: {mode}: a task failed (exit statuses {codes})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    wrapper, sif, tasks, modes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    found = {}
    for n, mode in enumerate(modes):
        first = cpu_of(wrapper, sif, mode, 1, 990000 + 2 * n)
        many = cpu_of(wrapper, sif, mode, tasks, 990001 + 2 * n)
        found[mode] = {"tasks": tasks, "first_ms": first * 1000, "all_ms": many * 1000,
                       "per_rank_ms": (many - first) / (tasks - 1) * 1000}
    print("ENTER-CPU " + json.dumps(found), flush=True)


if __name__ == "__main__":
    main()
