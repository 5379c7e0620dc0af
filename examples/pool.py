r"""A pool of workers with mpi4py.futures: rank 0 hands out tasks, the other ranks run them.

Teaches: MPIPoolExecutor runs Python functions in other MPI processes through
the concurrent.futures interface (submit, map). Started with
`python -m mpi4py.futures`, rank 0 runs this script and every other rank
serves as a worker, so the pool needs no new processes (no MPI_Comm_spawn)
and works under srun as well as mpiexec.

Run it with 4 ranks (1 client and 3 workers; it needs at least 2):
    make run-pool NP=4
    mpiexec --oversubscribe -n 4 python -m mpi4py.futures examples/pool.py
    docker run --rm --init --shm-size=1g --cap-add SYS_PTRACE -v "$PWD":/work -w /work \
        -e OMPI_MCA_pml=ob1 -e 'OMPI_MCA_btl=^ofi,uct' -e OMPI_MCA_btl_tcp_if_include=lo \
        -e 'OMPI_MCA_mtl=^ofi' -e 'OMPI_MCA_osc=^ucx' mpi4py-kit:trixie mpiexec \
        --oversubscribe -n 4 python -m mpi4py.futures examples/pool.py
    apptainer exec --env OMPI_MCA_pml=ob1 --env 'OMPI_MCA_btl=^ofi,uct' \
        --env OMPI_MCA_btl_tcp_if_include=lo --env 'OMPI_MCA_mtl=^ofi' \
        --env 'OMPI_MCA_osc=^ucx' mpi.sif mpiexec --oversubscribe -n 4 python \
        -m mpi4py.futures examples/pool.py
    srun --ntasks=4 --mpi=pmix apptainer exec mpi.sif python -m mpi4py.futures \
        examples/pool.py

The mpiexec line leaves out the kit's one-node settings, the docker line is root's (a
user's adds --user UID:GID), and the srun line starts Apptainer once per rank; make line
RUNTIME=native, docker or srun prints the kit's own.

Self-check: every result equals the one computed on rank 0 alone, and every
worker rank ran at least one task.
"""

import socket
import sys
import time
from collections import Counter

from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor

TASKS = 48


def collatz_steps(n: int) -> int:
    """How many 3n+1 steps take n to 1: a small task with a checkable answer."""
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def task(n: int) -> tuple[int, int, int, str]:
    time.sleep(0.01)  # long enough that every worker gets a share of the tasks
    return n, collatz_steps(n), MPI.COMM_WORLD.Get_rank(), socket.gethostname()


if __name__ == "__main__":
    size = MPI.COMM_WORLD.Get_size()
    if size < 2:
        print(f"error: pool.py needs at least 2 ranks (1 client, 1 worker), got {size}: "
              "run it with NP=2 or more (make run-pool NP=4)", file=sys.stderr)
        sys.exit(1)
    with MPIPoolExecutor() as pool:
        results = list(pool.map(task, range(1, TASKS + 1)))
    ran = Counter((rank, host) for _, _, rank, host in results)
    for (rank, host), count in sorted(ran.items()):
        print(f"worker rank {rank} on host {host} ran {count} tasks", flush=True)
    wrong = [n for n, steps, _, _ in results if steps != collatz_steps(n)]
    workers = sorted({rank for rank, _ in ran})
    if wrong or workers != list(range(1, size)):
        print(f"check FAILED: wrong results for {wrong}; workers that ran tasks: {workers}", file=sys.stderr)
        sys.exit(1)
    print(f"check passed: {TASKS} tasks on {len(workers)} workers, every result right", flush=True)
