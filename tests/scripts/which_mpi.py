"""A user's own script: every rank says which libmpi file it loaded and what
MPI_Get_library_version calls it, so a test can check each rank."""

import socket

from mpi4py import MPI

comm = MPI.COMM_WORLD
with open("/proc/self/maps") as maps:
    files = sorted({line.split()[-1] for line in maps if "/libmpi.so" in line})
library = MPI.Get_library_version().strip().splitlines()[0]
print(f"rank {comm.Get_rank()} of {comm.Get_size()} on {socket.gethostname()}: {', '.join(files)}: {library}",
      flush=True)
comm.Barrier()
