"""A user script that fails: rank 1 raises while rank 0 waits for a message
it will never get. Under `python -m mpi4py` the job must abort, not hang."""

import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
print(f"rank {comm.Get_rank()} started", flush=True)
comm.Barrier()
if comm.Get_rank() == 1:
    time.sleep(0.5)
    raise ValueError("rank 1 failed on purpose")
comm.recv(source=1)  # never satisfied: only the abort ends this rank
