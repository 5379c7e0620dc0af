"""A user's own script, not an example: it says its rank and the world's size, works for 20 s,
then says done. Launched with the wrong PMI, every task would do the whole job alone."""

import socket
import sys
import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
print(f"rank {comm.Get_rank()} of {comm.Get_size()} on {socket.gethostname()}", flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 20)
print(f"rank {comm.Get_rank()} done", flush=True)
