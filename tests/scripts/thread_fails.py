"""A user script whose helper thread dies: on rank 1 a worker thread raises
while every rank's main thread waits in a receive that never completes. The
job must end (MPI_Abort) within seconds, with that thread's traceback."""

import threading

from mpi4py import MPI

comm = MPI.COMM_WORLD
print(f"rank {comm.Get_rank()} started", flush=True)
comm.Barrier()


def work() -> None:
    raise RuntimeError(f"worker thread of rank {comm.Get_rank()} failed on purpose")


if comm.Get_rank() == 1:
    threading.Thread(target=work, name="worker").start()
comm.recv(source=MPI.ANY_SOURCE)  # never satisfied: only the abort ends this rank
