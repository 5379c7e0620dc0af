"""A long, healthy job: every rank takes part in an Allreduce every 0.1 s
for up to 10 minutes. Used to take a node away mid-job."""

import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
print(f"rank {comm.Get_rank()} started", flush=True)
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    comm.allreduce(1)
    time.sleep(0.1)
