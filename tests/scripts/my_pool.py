"""A user's pool script, as a newcomer writes it: MPIPoolExecutor().map over
8 items, printing the hosts that did the work. Under python -m mpi4py.futures
(FUTURES=1) the workers are the job's ranks 1..NP-1; under python -m mpi4py
the executor spawns them (MPI_Comm_spawn)."""

import socket

from mpi4py.futures import MPIPoolExecutor


def square(x: int) -> tuple[int, str]:
    return x * x, socket.gethostname()


if __name__ == "__main__":
    with MPIPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(square, range(8)))
    assert [r for r, _ in results] == [x * x for x in range(8)], results
    print(f"pool results: {[r for r, _ in results]}", flush=True)
    print(f"pool hosts: {' '.join(sorted({h for _, h in results}))}", flush=True)
