"""A user's own script: every rank says which libmpi file it loaded (a legacy
libmpi.so.N or the MPI-5 standard ABI's libmpi_abi.so.1), what
MPI_Get_library_version calls it, and which mpi4py extension runs on it (its
file name, which names the variant, and its SHA-256), so a test can check each
rank."""

import hashlib
import os
import socket

from mpi4py import MPI

comm = MPI.COMM_WORLD
with open("/proc/self/maps") as maps:
    files = sorted({line.split()[-1] for line in maps if "/libmpi.so" in line or "/libmpi_abi.so" in line})
library = MPI.Get_library_version().strip().splitlines()[0]
with open(MPI.__file__, "rb") as extension:
    digest = hashlib.sha256(extension.read()).hexdigest()
print(f"rank {comm.Get_rank()} of {comm.Get_size()} on {socket.gethostname()}: {', '.join(files)}: {library} "
      f"[{os.path.basename(MPI.__file__)} sha256={digest}]", flush=True)
comm.Barrier()
