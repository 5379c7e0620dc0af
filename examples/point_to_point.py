r"""Rank 0 sends 'Hello, world' to rank 1 with a blocking send and receive.

Teaches: comm.send(obj, dest=...) and comm.recv(source=...) move any
picklable Python object between two ranks; both calls block until matched, so
a receive with no matching send hangs. Ranks above 1 are bystanders.

Run it with 4 ranks (it needs at least 2):
    make run-p2p NP=4
    mpiexec --oversubscribe -n 4 python -m mpi4py examples/point_to_point.py
    docker run --rm --init --shm-size=1g --cap-add SYS_PTRACE -v "$PWD":/work -w /work \
        -e OMPI_MCA_pml=ob1 -e 'OMPI_MCA_btl=^ofi,uct' -e OMPI_MCA_btl_tcp_if_include=lo \
        -e 'OMPI_MCA_mtl=^ofi' -e 'OMPI_MCA_osc=^ucx' mpi4py-kit:trixie mpiexec \
        --oversubscribe -n 4 python -m mpi4py examples/point_to_point.py
    apptainer exec --env OMPI_MCA_pml=ob1 --env 'OMPI_MCA_btl=^ofi,uct' \
        --env OMPI_MCA_btl_tcp_if_include=lo --env 'OMPI_MCA_mtl=^ofi' \
        --env 'OMPI_MCA_osc=^ucx' mpi.sif mpiexec --oversubscribe -n 4 python -m mpi4py \
        examples/point_to_point.py
    srun --ntasks=4 --mpi=pmix apptainer exec mpi.sif python -m mpi4py \
        examples/point_to_point.py

The mpiexec line leaves out the kit's one-node settings, the docker line is root's (a
user's adds --user UID:GID), and the srun line starts Apptainer once per rank; make line
RUNTIME=native, docker or srun prints the kit's own.

Self-check: rank 1 checks the text it received and every rank agrees on the
verdict (allreduce), so a wrong message fails the whole job.
"""

import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
size = comm.Get_size()
rank = comm.Get_rank()

if size < 2:
    # A lone rank 0 would wait forever for a partner: refuse instead of hanging.
    print(f"error: point_to_point.py needs at least 2 ranks, got {size}: "
          "run it with NP=2 or more (make run-p2p NP=2)", file=sys.stderr)
    sys.exit(1)

MESSAGE = "Hello, world"
ok = True
if rank == 0:
    comm.send(MESSAGE, dest=1, tag=0)
elif rank == 1:
    s = comm.recv(source=0, tag=0)
    print(f"rank {rank}: {s}", flush=True)
    ok = s == MESSAGE

if not comm.allreduce(ok, op=MPI.LAND):
    if rank == 1:
        print(f"check FAILED: rank 1 received {s!r}, expected {MESSAGE!r}", file=sys.stderr)
    sys.exit(1)
if rank == 0:
    print(f"check passed: rank 1 received {MESSAGE!r} from rank 0 ({size} ranks)", flush=True)
