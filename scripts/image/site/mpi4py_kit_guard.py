"""Guards for launch lines typed by hand: the wiring mistakes that otherwise fail silently.

1. srun started N > 1 tasks, but MPI gives each a world of 1: the launcher and the MPI did not
   agree on a PMI (srun --mpi=none or pmi2 with the image's Open MPI), and the job would run
   N independent copies of itself, each doing the whole work, all "successfully". Every task says
   so in one line and exits with status 3 as soon as mpi4py.MPI is imported.
2. mpi4py loaded an MPI library that is not the image's while the bind model (HOST_MPI) is off:
   the host's MPI came in by accident (an LD_LIBRARY_PATH or MPI4PY_LIBMPI from the host). A warning.

Installed into the image's Python (and the kit's venv) by mpi4py_kit_guard.pth; applies to every
Python program, not only the kit's examples. MPI4PY_KIT_GUARD=0 turns both off.

"Tasks in this step" is SLURM_STEP_NUM_TASKS (or PMI_SIZE from Slurm's pmi2 plugin), never
SLURM_NTASKS, which a batch script's serial steps and an salloc shell inherit. Only the process
srun started is judged: the first Python of a task marks the environment with its PID, so a
Python that a rank starts (a subprocess) inherits the mark and is left alone. mpiexec's own ranks
(OMPI_COMM_WORLD_SIZE) are never judged against Slurm's counts.
"""

import os
import sys

SWITCH = "MPI4PY_KIT_GUARD"
MARK = "MPI4PY_KIT_GUARD_TASK"  # set by the task's first Python; children inherit it
BIND = "MPI4PY_KIT_HOST_MPI"  # set by the kit's bind model (HOST_MPI) inside the container
STACK = "/opt/mpi4py-kit/stack.env"  # only the image has it: the library check applies there


def step_tasks(environ) -> int:
    """How many tasks the launcher started in this step, 0 when no Slurm step started this process."""
    if "OMPI_COMM_WORLD_SIZE" in environ:  # Open MPI's mpiexec started it: its world is the truth
        return 0
    for name in ("SLURM_STEP_NUM_TASKS", "PMI_SIZE"):
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def unwired_message(tasks: int, mpi_type: str) -> str:
    plugin = f" (srun --mpi={mpi_type})" if mpi_type else ""
    return (f"mpi4py-kit: srun started {tasks} tasks, but MPI sees a world of 1 in each{plugin}: the ranks are "
            f"not wired together, and each would run the whole job alone. Launch with srun --mpi=pmix (the "
            f"image's Open MPI), or where this Slurm has no pmix plugin use the bind model (make doctor says "
            f"which); {SWITCH}=0 runs anyway.")


def foreign_library_message(path: str) -> str:
    return (f"mpi4py-kit: warning: mpi4py loaded {path}, not the image's MPI, and the bind model (HOST_MPI) is "
            f"not on: the host's MPI came in by accident (LD_LIBRARY_PATH or MPI4PY_LIBMPI from the host?); "
            f"unset it, or bind the site's MPI on purpose with HOST_MPI (make bind-plan); {SWITCH}=0 hides this.")


def loaded_libmpi(maps: str) -> str:
    """The MPI library mapped into this process, from /proc/self/maps ('' if none)."""
    for line in maps.splitlines():
        path = line.split()[-1] if line.split() else ""
        name = path.rpartition("/")[2]
        if name.startswith(("libmpi.so", "libmpi_abi.so")):
            return path
    return ""


def is_image_library(path: str) -> bool:
    """The image's Open MPI lives in the system's library folder (/usr/lib/<triplet>/)."""
    return path.startswith(("/usr/lib/", "/lib/"))


def _check(mpi) -> None:
    if not mpi.Is_initialized() or mpi.Is_finalized():
        return
    tasks = step_tasks(os.environ)
    if tasks > 1 and mpi.COMM_WORLD.Get_size() == 1:
        print(unwired_message(tasks, os.environ.get("SLURM_MPI_TYPE", "")), file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(3)  # before the program runs: a world of 1 here is N copies of the job
    if os.path.exists(STACK) and not os.environ.get(BIND):
        try:
            with open("/proc/self/maps") as maps:
                path = loaded_libmpi(maps.read())
        except OSError:
            return
        if path and not is_image_library(path):
            print(foreign_library_message(path), file=sys.stderr, flush=True)


class _Loader:
    """mpi4py.MPI's own loader, then the check, once the module (and MPI_Init) has run."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        try:
            _check(module)
        except Exception as exc:  # a guard must never break a program it does not judge
            print(f"mpi4py-kit: the launch guard could not check this run ({exc!r})", file=sys.stderr)

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _Watch:
    """A finder that sees mpi4py.MPI being imported and puts the check after its loader."""

    def find_spec(self, name, path=None, target=None):
        if name != "mpi4py.MPI":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install(environ=os.environ) -> bool:
    """Watch for mpi4py.MPI in this process if it is a task that srun started; True if watching."""
    if environ.get(SWITCH, "1") == "0":
        return False
    mine = str(os.getpid())
    mark = environ.get(MARK)
    if mark is not None and mark != mine:
        return False  # started by a rank (or by the task's first Python): not a task of the step
    environ[MARK] = mine
    if step_tasks(environ) <= 1 and not os.path.exists(STACK):
        return False
    sys.meta_path.insert(0, _Watch())
    return True


def self_check() -> int:
    """The build's check (both recipes): mpi4py loads the image's own MPI library. Exit status 0 or 1."""
    from mpi4py import MPI

    with open("/proc/self/maps") as maps:
        path = loaded_libmpi(maps.read())
    print(f"mpi4py loads {path or '(no libmpi mapped)'}: {MPI.Get_library_version().splitlines()[0].strip()}")
    if not is_image_library(path):
        print(f"error: mpi4py does not load the image's own MPI library but {path!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # python -m mpi4py_kit_guard: the build's check
    sys.exit(self_check())
install()
