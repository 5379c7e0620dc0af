"""A user script that hangs: every rank but 0 waits for a message rank 0 never
sends. TIMEOUT must stop it and name the ranks still running."""

import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
print(f"rank {comm.Get_rank()} started", flush=True)
if comm.Get_rank() == 0:
    time.sleep(3600)
else:
    comm.recv(source=0)
