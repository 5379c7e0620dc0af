"""Each rank says which mount namespace it runs in, which Python, its step, and when it ran (ARGV[1]:
seconds to stay, so that steps started together overlap): APPTAINER_MODE=join
puts the ranks of one node and step into one holder's namespaces, and never another step's."""

import os
import socket
import sys
import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
started = time.time()
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)  # steps that run at once overlap here
step = f"{os.environ.get('SLURM_JOB_ID')}.{os.environ.get('SLURM_STEP_ID')}"
print(f"rank {comm.Get_rank()} of {comm.Get_size()} step {step} host {socket.gethostname()} "
      f"mnt {os.readlink('/proc/self/ns/mnt')} python {sys.prefix} cwd {os.getcwd()} "
      f"nousersite {os.environ.get('PYTHONNOUSERSITE')} from {started:.3f} to {time.time():.3f}", flush=True)
