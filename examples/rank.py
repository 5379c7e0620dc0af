r"""Every rank reports its rank, its process ID and the host it runs on.

Teaches: MPI.COMM_WORLD is the communicator holding every process of the job;
Get_size() is how many there are, Get_rank() is this process's number in it;
MPI.Get_library_version() says which MPI library the rank actually runs on.

Run it with 4 ranks:
    make run-rank NP=4
    mpiexec --oversubscribe -n 4 python -m mpi4py examples/rank.py
    docker run --rm --init --shm-size=1g --cap-add SYS_PTRACE -v "$PWD":/work -w /work \
        -e OMPI_MCA_pml=ob1 -e 'OMPI_MCA_btl=^ofi,uct' -e OMPI_MCA_btl_tcp_if_include=lo \
        -e 'OMPI_MCA_mtl=^ofi' -e 'OMPI_MCA_osc=^ucx' mpi4py-kit:trixie mpiexec \
        --oversubscribe -n 4 python -m mpi4py examples/rank.py
    apptainer exec --env OMPI_MCA_pml=ob1 --env 'OMPI_MCA_btl=^ofi,uct' \
        --env OMPI_MCA_btl_tcp_if_include=lo --env 'OMPI_MCA_mtl=^ofi' \
        --env 'OMPI_MCA_osc=^ucx' mpi.sif mpiexec --oversubscribe -n 4 python -m mpi4py \
        examples/rank.py
    srun --ntasks=4 --mpi=pmix apptainer exec mpi.sif python -m mpi4py examples/rank.py

The mpiexec line leaves out the kit's one-node settings, the docker line is root's (a
user's adds --user UID:GID), and the srun line starts Apptainer once per rank; make line
RUNTIME=native, docker or srun prints the kit's own.

Self-check: rank 0 gathers every report; ranks 0..size-1 must each appear once,
and every rank must run on the same MPI library, which the last line names.
If the launcher started several tasks but each one sees a world of size 1
("rank 0 of 1"), the launcher and MPI disagree on PMI: the check says so.
"""

import os
import socket
import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
size = comm.Get_size()
rank = comm.Get_rank()
pid = os.getpid()
host = socket.gethostname()

# flush=True writes the whole line at once, so lines of different ranks never mix.
print(f"rank: {rank} has PID: {pid} on host: {host}", flush=True)

# srun sets SLURM_STEP_NUM_TASKS; a world of 1 under a multi-task step means
# every task started its own singleton MPI job.
launched = int(os.environ.get("SLURM_STEP_NUM_TASKS", "1"))
if size == 1 and launched > 1 and "OMPI_COMM_WORLD_SIZE" not in os.environ:
    print(f"check FAILED: srun started {launched} tasks but MPI sees a world of 1: "
          "use srun --mpi=pmix and an image whose Open MPI has PMIx (make doctor)",
          file=sys.stderr)
    sys.exit(1)

# Some MPIs end the string with its C terminator; keep it out of the printed line.
library = MPI.Get_library_version().strip("\x00 \n").splitlines()[0]
reports = comm.gather((rank, host, pid, library), root=0)
if rank == 0:
    ranks = sorted(r for r, _, _, _ in reports)
    hosts = sorted({h for _, h, _, _ in reports})
    libraries = sorted({lib for _, _, _, lib in reports})
    if ranks != list(range(size)) or len({(h, p) for _, h, p, _ in reports}) != size:
        print(f"check FAILED: expected ranks 0..{size - 1} once each, got {ranks}",
              file=sys.stderr)
        comm.Abort(1)
    if len(libraries) != 1:
        print(f"check FAILED: the ranks run on different MPI libraries: {libraries}", file=sys.stderr)
        comm.Abort(1)
    print(f"check passed: {size} ranks on {len(hosts)} host(s): {', '.join(hosts)}; "
          f"MPI library on every rank: {library}", flush=True)
