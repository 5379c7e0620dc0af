r"""Rank 0 broadcasts a dict to every rank; each rank appends its own rank.

Teaches: comm.bcast(obj, root=0) sends one Python object from the root to all
ranks. Non-root ranks pass None and get the root's object back; each rank then
owns an independent copy it can change.

Run it with 4 ranks:
    make run-bcast NP=4
    mpiexec --oversubscribe -n 4 python -m mpi4py examples/broadcast.py
    docker run --rm --shm-size=1g --cap-add SYS_PTRACE -v "$PWD":/work -w /work \
        mpi4py-kit:trixie mpiexec --oversubscribe -n 4 python -m mpi4py examples/broadcast.py
    apptainer exec mpi.sif mpiexec --oversubscribe -n 4 python -m mpi4py examples/broadcast.py
    srun --ntasks=4 --mpi=pmix apptainer exec --sharens mpi.sif python -m mpi4py examples/broadcast.py

Self-check: every rank compares what it holds with the expected dict, and
rank 0 counts how many ranks got it right.
"""

import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
size = comm.Get_size()
rank = comm.Get_rank()

ORIGINAL = {"key1": [7, 2.72, 2 + 3j], "key2": ("abc", "xyz")}

# Create the data on rank 0 only; the other ranks start with nothing.
if rank == 0:
    data = {"key1": list(ORIGINAL["key1"]), "key2": ORIGINAL["key2"]}
else:
    data = None

data = comm.bcast(data, root=0)

# Each rank's copy is its own: appending here changes no other rank's data.
data["key1"].append(rank)
print(f"Rank: {rank}, data: {data}", flush=True)

expected = {"key1": [*ORIGINAL["key1"], rank], "key2": ORIGINAL["key2"]}
good = comm.reduce(int(data == expected), op=MPI.SUM, root=0)
if rank == 0:
    if good != size:
        print(f"check FAILED: {size - good} of {size} ranks hold wrong data", file=sys.stderr)
        comm.Abort(1)
    print(f"check passed: all {size} ranks received the broadcast", flush=True)
