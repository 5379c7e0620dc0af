"""A rank that starts a Python of its own, which imports mpi4py.MPI too: without the rank's PMI
variables it is a singleton, a world of 1, while SLURM_STEP_NUM_TASKS still says 4. The launch guard
judges the rank srun started, never the Python the rank starts."""

import os
import subprocess
import sys

from mpi4py import MPI

child = "from mpi4py import MPI; print('child', MPI.COMM_WORLD.Get_size(), flush=True)"
print(f"rank {MPI.COMM_WORLD.Get_rank()} of {MPI.COMM_WORLD.Get_size()}", flush=True)
env = {k: v for k, v in os.environ.items() if not k.startswith(("PMIX_", "OMPI_", "PMI_"))}
sys.exit(subprocess.run([sys.executable, "-c", child], env=env).returncode)
