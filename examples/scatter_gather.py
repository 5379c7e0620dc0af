r"""Rank 0 scatters a large numpy array, each rank averages its part, and the
averages are gathered back to rank 0, which prints the full average.

Teaches: the buffer API (capitalised Scatterv/Gather) moves numpy arrays
without pickling. Scatterv takes per-rank counts, so EVERY element reaches a
rank whatever the array size and the number of ranks (the plain Scatter with
size // NP elements each would drop the remainder). Rank 0 weights each part's
average by its count.

Memory: the default --size 100000000 float64 values is 800 MB on rank 0, plus
800 MB / NP for each rank's part: about 1.6 GB in all on one node.

Run it with 4 ranks:
    make run-scatter NP=4
    mpiexec --oversubscribe -n 4 python -m mpi4py examples/scatter_gather.py
    docker run --rm --init --shm-size=1g --cap-add SYS_PTRACE -v "$PWD":/work -w /work \
        -e OMPI_MCA_pml=ob1 -e 'OMPI_MCA_btl=^ofi,uct' -e OMPI_MCA_btl_tcp_if_include=lo \
        -e 'OMPI_MCA_mtl=^ofi' -e 'OMPI_MCA_osc=^ucx' mpi4py-kit:trixie mpiexec \
        --oversubscribe -n 4 python -m mpi4py examples/scatter_gather.py
    apptainer exec --env OMPI_MCA_pml=ob1 --env 'OMPI_MCA_btl=^ofi,uct' \
        --env OMPI_MCA_btl_tcp_if_include=lo --env 'OMPI_MCA_mtl=^ofi' \
        --env 'OMPI_MCA_osc=^ucx' mpi.sif mpiexec --oversubscribe -n 4 python -m mpi4py \
        examples/scatter_gather.py
    srun --ntasks=4 --mpi=pmix apptainer exec mpi.sif python -m mpi4py \
        examples/scatter_gather.py

The mpiexec line leaves out the kit's one-node settings, the docker line is root's (a
user's adds --user UID:GID), and the srun line starts Apptainer once per rank; make line
RUNTIME=native, docker or srun prints the kit's own.

Self-check: rank 0 asserts the gathered average equals numpy.average of the
whole array (relative tolerance 1e-12) and that the counts add up to --size.
"""

import argparse
import sys

import numpy as np
from mpi4py import MPI

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--size", type=int, default=100_000_000, help="values to scatter")
parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible data)")
args = parser.parse_args()
if args.size < 1:
    parser.error(f"--size must be at least 1, got {args.size}")

comm = MPI.COMM_WORLD
size = comm.Get_size()
rank = comm.Get_rank()

# Split args.size values as evenly as possible: the first (size % NP) ranks get one more.
counts = np.array([args.size // size + (r < args.size % size) for r in range(size)])
displs = np.concatenate(([0], np.cumsum(counts)[:-1]))

data = None
if rank == 0:
    data = np.random.default_rng(args.seed).normal(loc=10, scale=5, size=args.size)

partial = np.empty(counts[rank], dtype="d")
comm.Scatterv([data, counts, displs, MPI.DOUBLE], partial, root=0)

local_average = np.array([partial.mean() if partial.size else 0.0])
print(f"rank {rank}: {partial.size} values, average {local_average[0]:.6f}", flush=True)

averages = np.empty(size, dtype="d") if rank == 0 else None
comm.Gather(local_average, averages, root=0)

if rank == 0:
    full_average = np.average(averages, weights=counts)
    print("Full Average:", full_average, flush=True)
    expected = np.average(data)
    if counts.sum() != args.size or not np.isclose(full_average, expected, rtol=1e-12, atol=0):
        print(f"check FAILED: gathered average {full_average!r} != numpy.average {expected!r}",
              file=sys.stderr)
        comm.Abort(1)
    print(f"check passed: {args.size} values over {size} ranks, average matches numpy.average", flush=True)
