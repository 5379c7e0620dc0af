r"""Rank 0 broadcasts a dict to every rank; each rank appends its own rank.

Teaches: comm.bcast(obj, root=0) sends one Python object from the root to all
ranks. Non-root ranks pass None and get the root's object back; each rank then
owns an independent copy it can change.

Run it with 4 ranks:
    make run-bcast NP=4
    mpiexec --oversubscribe -n 4 python -m mpi4py examples/broadcast.py
    docker run --rm --init --shm-size=1g --cap-add SYS_PTRACE -v "$PWD":/work -w /work \
        -e OMPI_MCA_pml=ob1 -e 'OMPI_MCA_btl=^ofi,uct' -e OMPI_MCA_btl_tcp_if_include=lo \
        -e 'OMPI_MCA_mtl=^ofi' -e 'OMPI_MCA_osc=^ucx' mpi4py-kit:trixie mpiexec \
        --oversubscribe -n 4 python -m mpi4py examples/broadcast.py
    apptainer exec --env OMPI_MCA_pml=ob1 --env 'OMPI_MCA_btl=^ofi,uct' \
        --env OMPI_MCA_btl_tcp_if_include=lo --env 'OMPI_MCA_mtl=^ofi' \
        --env 'OMPI_MCA_osc=^ucx' mpi.sif mpiexec --oversubscribe -n 4 python -m mpi4py \
        examples/broadcast.py
    srun --ntasks=4 --mpi=pmix apptainer exec mpi.sif python -m mpi4py examples/broadcast.py

The mpiexec line leaves out the kit's one-node settings, the docker line is root's (a
user's adds --user UID:GID), and the srun line starts Apptainer once per rank; make line
RUNTIME=native, docker or srun prints the kit's own.

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
