"""An uncaught exception in any thread of an MPI program ends the whole job.

`python -m mpi4py` aborts the job when the main thread raises; an exception in
another thread (mpi4py.futures' manager thread when a spawn fails, a worker
thread of the user's) only prints a traceback, and every rank then waits
until the job's time limit. Installed into the image's Python and the kit's
venv by mpi4py_kit_abort.pth, this hook prints that traceback and then calls
MPI_Abort, once MPI is initialized. MPI4PY_KIT_THREAD_ABORT=0 turns it off.
"""

import os
import sys
import threading

HINT_SPAWN = ("mpi4py-kit: this launcher cannot start new MPI processes (MPI_Comm_spawn): Slurm's srun "
              "does not support it. Run the pool with FUTURES=1 (python -m mpi4py.futures: the workers "
              "are the job's own ranks), or on one node with RUNTIME=apptainer (Open MPI's own mpiexec).")


def _abort_job(args):
    _default(args)  # "Exception in thread ..." and the traceback, as Python prints it
    if args.exc_type is SystemExit:
        return
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return
    if os.environ.get("SLURM_STEP_ID") is not None and "Spawn" in _frames(args.exc_traceback):
        print(HINT_SPAWN, file=sys.stderr)
    print(f"mpi4py-kit: thread {getattr(args.thread, 'name', '?')} raised {args.exc_type.__name__}: "
          "aborting the MPI job", file=sys.stderr, flush=True)
    mpi.COMM_WORLD.Abort(1)


def _frames(tb):
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return " ".join(names)


if os.environ.get("MPI4PY_KIT_THREAD_ABORT", "1") != "0":
    _default = threading.excepthook
    threading.excepthook = _abort_job
