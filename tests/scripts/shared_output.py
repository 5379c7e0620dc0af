"""Jobs write where a cluster lets them: the last rank (on the other node) writes a
file into $TMPDIR, the shared scratch, and rank 0 reads it back; then all ranks
write and read one file together with MPI-IO, each its own block."""

import os
import socket

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
folder = os.environ["TMPDIR"]
note = os.path.join(folder, f"note-{os.environ.get('SLURM_JOB_ID', 'local')}.txt")
if rank == size - 1:
    with open(note, "w") as f:
        f.write(f"written by rank {rank} on {socket.gethostname()}\n")
comm.Barrier()
if rank == 0:
    with open(note) as f:
        print(f"rank 0 on {socket.gethostname()} read: {f.read().strip()}", flush=True)
    os.remove(note)

path = os.path.join(folder, f"mpiio-{os.environ.get('SLURM_JOB_ID', 'local')}.bin")
block = np.full(1024, rank, dtype="i4")
fh = MPI.File.Open(comm, path, MPI.MODE_CREATE | MPI.MODE_RDWR)
fh.Write_at_all(rank * block.nbytes, block)
fh.Sync()
comm.Barrier()
back = np.empty(1024, dtype="i4")
fh.Read_at_all(((rank + 1) % size) * block.nbytes, back)  # the next rank's block, written on its node
fh.Close()
good = comm.allreduce(int((back == (rank + 1) % size).all()))
if rank == 0:
    MPI.File.Delete(path)
    print(f"MPI-IO: {good} of {size} ranks read their neighbour's block from {folder}", flush=True)
