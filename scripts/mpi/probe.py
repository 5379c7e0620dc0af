"""The doctor's probe: an MPI job run under the runtime being checked.

Every rank prints one line `MPIKIT-PROBE {json}` describing what it sees:
the machine it runs on (uname -m: x86_64, or aarch64 under emulation too),
its mount namespace (APPTAINER_MODE=join: one per node),
its rank and world size (a world of 1 under a multi-task launch is the
launcher/PMI mismatch), the MPI library and the libmpi/libpmix files it
loaded, where mpi4py was imported from, /dev/shm, and whether single-copy
shared memory (CMA, process_vm_readv) works between two ranks on one host.
With --spawn, rank 0 instead tries to start one new MPI process
(MPI_Comm_spawn, what mpi4py.futures' MPIPoolExecutor does) and reports
whether the launcher supports it.

Standalone on purpose: it runs with the image's Python, without the kit.
"""

import ctypes
import json
import os
import platform
import socket
import sys

MARK = "MPIKIT-PROBE "
PR_SET_PTRACER, PR_SET_PTRACER_ANY = 0x59616D61, ctypes.c_ulong(-1)


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def emit(report):
    print(MARK + json.dumps(report, sort_keys=True), flush=True)


def read_file(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def read_link(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def loaded_libraries():
    maps = read_file("/proc/self/maps") or ""
    paths = {line.split()[-1] for line in maps.splitlines() if line.count(" /")}
    # libmpi: a legacy ABI's libmpi.so.N or the MPI-5 standard ABI's libmpi_abi.so.1
    return {name: sorted(p for p in paths if f"/{name}.so" in p or (name == "libmpi" and "/libmpi_abi.so" in p))
            for name in ("libmpi", "libpmix")}


def abi_version(libmpi):
    """MPI_Abi_get_version of the loaded library, "major.minor", or "" (legacy libraries may answer 0.x)."""
    for path in libmpi:
        try:
            function = ctypes.CDLL(path).MPI_Abi_get_version
        except (OSError, AttributeError):
            continue
        major, minor = ctypes.c_int(-1), ctypes.c_int(-1)
        if function(ctypes.byref(major), ctypes.byref(minor)) == 0:
            return f"{major.value}.{minor.value}"
    return ""


def cma_read(pid, address, length):
    """Read `length` bytes at `address` in process `pid`, as Open MPI's CMA path does."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(length)
    local, remote = IOVec(ctypes.addressof(buf), length), IOVec(address, length)
    got = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if got != length:
        err = ctypes.get_errno()
        return f"failed: process_vm_readv: {os.strerror(err)} (errno {err})", None
    return "ok", buf.raw


def try_spawn(MPI):
    """Start one child process with MPI_Comm_spawn and part again: 'ok', or why not."""
    child_code = "from mpi4py import MPI; MPI.Comm.Get_parent().Disconnect()"
    try:
        child = MPI.COMM_SELF.Spawn(sys.executable, ["-c", child_code], maxprocs=1)
        child.Disconnect()
    except Exception as exc:  # report it; the doctor explains
        return f"failed: {type(exc).__name__}: {exc}"
    return "ok"


def main():
    report = {"pid": os.getpid(), "host": socket.gethostname(), "machine": platform.machine(),
              "python": sys.version.split()[0],
              "prefix": sys.prefix, "pythonpath": os.environ.get("PYTHONPATH", ""),
              "nousersite": os.environ.get("PYTHONNOUSERSITE", ""),
              "launched_tasks": os.environ.get("SLURM_STEP_NUM_TASKS"),
              "mntns": read_link("/proc/self/ns/mnt"),
              "stack": read_file("/opt/mpi4py-kit/stack.env")}
    try:
        import mpi4py
        from mpi4py import MPI
    except Exception as exc:  # report it; the doctor explains
        report["error"] = f"import mpi4py failed: {type(exc).__name__}: {exc}"
        emit(report)
        return
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    shm = os.statvfs("/dev/shm") if os.path.isdir("/dev/shm") else None
    loaded = loaded_libraries()
    # The extension's name says its variant: MPI.mpiabi.<suffix>.so, MPI.mpich...; MPI.<suffix>.so is a
    # build against one MPI (the image's own).
    extension = os.path.basename(MPI.__file__).split(".")
    report.update(rank=rank, size=size, mpi4py=mpi4py.__version__, mpi4py_file=mpi4py.__file__,
                  mpi4py_variant=extension[1] if len(extension) > 3 else "",
                  library=MPI.Get_library_version().strip().splitlines()[0], abi=abi_version(loaded["libmpi"]),
                  shm_bytes=shm.f_frsize * shm.f_blocks if shm else 0,
                  ptrace_scope=read_file("/proc/sys/kernel/yama/ptrace_scope"), **loaded)
    if "--spawn" in sys.argv[1:]:
        if rank == 0:
            report["spawn"] = try_spawn(MPI)
        emit(report)
        return
    if size >= 2:
        # Rank 0 exposes a buffer; rank 1 reads it directly if both share a host.
        payload = b"mpi4py-kit CMA probe"
        if rank == 0:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0)  # as Open MPI does under Yama
            buf = ctypes.create_string_buffer(payload)
            comm.send((report["host"], os.getpid(), ctypes.addressof(buf)), dest=1)
        elif rank == 1:
            host, pid, address = comm.recv(source=0)
            if host != report["host"]:
                report["cma"] = "n/a: ranks 0 and 1 run on different hosts"
            else:
                status, data = cma_read(pid, address, len(payload))
                report["cma"] = status if data in (None, payload) else "failed: read the wrong bytes"
        comm.Barrier()  # rank 0 keeps its buffer until rank 1 has read it
    emit(report)


if __name__ == "__main__":
    main()
