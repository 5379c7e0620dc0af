"""A user script that hangs: every rank but 0 waits for a message rank 0 never
sends. TIMEOUT must stop it and name the ranks still running.

The waiting ranks poll their receive and sleep between polls instead of
blocking in comm.recv: Open MPI's blocking receive spins (sched_yield in a
loop), and three spinning ranks held both of this machine's cores for the
whole hang, about 130 s of a test run's cluster, Docker and native hangs,
taken from the tests and builds running beside them. The job hangs all the
same: no rank ends before the kit stops it."""

import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
print(f"rank {comm.Get_rank()} started", flush=True)
if comm.Get_rank() == 0:
    time.sleep(3600)
else:
    request = comm.irecv(source=0)
    while not request.Test():
        time.sleep(0.05)
