"""Where a short job's time goes, measured inside every rank: importing numpy and
mpi4py (without starting MPI), MPI_Init, a barrier, a scatter of --size values
from rank 0 (as examples/scatter_gather.py does it) and MPI_Finalize. The time
before Python starts (the launcher, the container, mounting the image) is the
job's wall time, measured outside, less these. Rank 0 prints one line:
`PHASES {json}` with the slowest rank's seconds for each phase.

    srun -N2 -n4 python scripts/mpi/phases.py --size 10000000
"""

import argparse
import json
import os
import sys
import time

start = time.perf_counter()
os.environ["MPI4PY_RC_INITIALIZE"] = "false"  # import mpi4py.MPI without MPI_Init: timed on its own
# The imports are a timed phase, so they follow the clock's start.
import numpy as np  # noqa: E402

# The same phase: mpi4py.MPI without MPI_Init.
from mpi4py import MPI  # noqa: E402

imported = time.perf_counter()
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--size", type=int, default=10_000_000)
args = parser.parse_args()

MPI.Init()
initialised = time.perf_counter()
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
comm.Barrier()
barrier = time.perf_counter()
counts = np.array([args.size // size + (r < args.size % size) for r in range(size)])
data = np.random.default_rng(1).normal(size=args.size) if rank == 0 else None
part = np.empty(counts[rank])
comm.Scatterv([data, counts, MPI.DOUBLE] if rank == 0 else None, part, root=0)
total = comm.reduce(part.sum(), root=0)
scattered = time.perf_counter()
phases = {"import": imported - start, "init": initialised - imported, "barrier": barrier - initialised,
          "scatter": scattered - barrier}
slowest = comm.reduce(phases, op=lambda a, b: {k: max(a[k], b[k]) for k in a}, root=0)
if rank == 0 and not np.isclose(total, data.sum()):
    sys.exit(f"scatter lost values: {total} != {data.sum()}")
before = time.perf_counter()
MPI.Finalize()
if rank == 0:
    slowest["finalize"] = time.perf_counter() - before
    print("PHASES " + json.dumps(slowest), flush=True)
