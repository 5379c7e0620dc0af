"""Launching ranks: one function per runtime builds the exact command and the
environment fixes it needs; `execute` runs it with a time limit and cleans up."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import docker
from .config import REQUIREMENTS, ROOT, RunError

RUNTIMES = ("auto", "native", "docker", "apptainer", "srun", "cluster")
VENV = Path(os.environ.get("MPIKIT_VENV", ROOT / ".venv"))
# Docker's default 64 MB /dev/shm is too small for Open MPI's shared-memory
# transport with several ranks and large messages.
DOCKER_SHM_SIZE = "1g"


@dataclass
class Job:
    script: Path  # absolute path, under `workdir`
    args: list[str]
    np: int
    runtime: str  # resolved: native or docker
    image: str = ""
    workdir: Path = field(default_factory=Path.cwd)
    timeout: int | None = None
    sif: Path | None = None  # the Apptainer image, for runtimes that use one


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cleanup: list[list[str]] = field(default_factory=list)  # run after a timeout or Ctrl-C


def local_mpiexec(np: int) -> list[str]:
    # Oversubscribe on one machine: Open MPI counts physical cores as slots and
    # refuses NP beyond them ("not enough slots") even where the OS has more threads.
    return ["mpiexec", "--oversubscribe", "-n", str(np)]


def root_fixes() -> dict[str, str]:
    """Open MPI refuses to start as root; allow it only where root is real."""
    if os.geteuid() == 0:
        return {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    return {}


def _requirements_digest(*names: str) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update((REQUIREMENTS / name).read_bytes())
    return h.hexdigest()


def ensure_venv(*requirement_files: str) -> Path:
    """The native runtime's venv, created or updated to match requirements/."""
    files = requirement_files or ("native.txt",)
    stamp = VENV / f".mpikit-{'+'.join(f.removesuffix('.txt') for f in files)}"
    digest = _requirements_digest(*files)
    if stamp.is_file() and stamp.read_text() == digest and (VENV / "bin" / "python").exists():
        return VENV
    docker.say(f"preparing {VENV} with {', '.join(files)} from PyPI (once; about 10 s)")
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    cmd = [str(VENV / "bin" / "pip"), "install", "-q", "--require-hashes"]
    for f in files:
        cmd += ["-r", str(REQUIREMENTS / f)]
    if subprocess.run(cmd).returncode != 0:
        raise RunError(f"installing the native runtime failed; rerun to see why: {' '.join(cmd)}")
    stamp.write_text(digest)
    return VENV


def native_launch(job: Job) -> Launch:
    venv = ensure_venv("native.txt")
    env = {**os.environ, **root_fixes(),
           "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    rel = job.script.relative_to(job.workdir)
    return Launch([*local_mpiexec(job.np), "python", str(rel), *job.args], env)


def docker_launch(job: Job) -> Launch:
    client = docker.client() or "docker"
    name = f"mpikit-{os.getpid()}-{int(time.time())}"
    argv = [client, "run", "--rm", "--init", "--name", name,
            f"--shm-size={DOCKER_SHM_SIZE}",
            # CMA single-copy (process_vm_readv) needs ptrace rights between the
            # ranks; without it Open MPI silently copies twice: 8 GB/s instead
            # of 22 GB/s at 4 MiB on the development machine.
            "--cap-add", "SYS_PTRACE",
            "-v", f"{job.workdir}:/work", "-w", "/work"]
    if os.geteuid() != 0:
        # Files the job writes belong to the user who ran it.
        argv += ["--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
    rel = job.script.relative_to(job.workdir)
    argv += [job.image, *local_mpiexec(job.np), "python", rel.as_posix(), *job.args]
    return Launch(argv, dict(os.environ), cleanup=[[client, "rm", "-f", name]])


def cluster_launch(job: Job) -> Launch:
    """srun in the test cluster's controller; /shared there is this repository."""
    from . import cluster

    assert job.sif is not None
    script = job.script.relative_to(ROOT).as_posix()
    sif = f"{cluster.SHARED}/{job.sif.relative_to(ROOT).as_posix()}"
    argv = cluster.srun_argv(job.np, sif, script, job.args)
    stop = [docker.client() or "docker", "exec", cluster.CONTROLLER, "scancel", "-u", cluster.USER]
    return Launch(argv, dict(os.environ), cleanup=[stop])


def apptainer_launch(job: Job) -> Launch:
    """One node, the launcher inside the image: apptainer exec SIF mpiexec ..."""
    from .apptainer import host_apptainer

    assert job.sif is not None
    rel = job.script.relative_to(job.workdir).as_posix()
    argv = [host_apptainer() or "apptainer", "exec", str(job.sif), *local_mpiexec(job.np), "python", rel, *job.args]
    return Launch(argv, {**os.environ, **root_fixes()})


def srun_launch(job: Job) -> Launch:
    """The hybrid model on a real cluster: Slurm starts the ranks through PMIx,
    each rank runs in the SIF; the working directory is visible (Apptainer binds it)."""
    from .apptainer import host_apptainer

    assert job.sif is not None
    rel = job.script.relative_to(job.workdir).as_posix()
    argv = ["srun", f"--ntasks={job.np}", "--mpi=pmix", host_apptainer() or "apptainer", "exec",
            str(job.sif), "python", rel, *job.args]
    return Launch(argv, dict(os.environ))


LAUNCHERS = {"native": native_launch, "docker": docker_launch, "apptainer": apptainer_launch,
             "srun": srun_launch, "cluster": cluster_launch}


def show(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def execute(launch: Launch, timeout: int | None, capture: bool = False,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the launch; a hang past `timeout` or Ctrl-C stops every rank."""
    proc = subprocess.Popen(launch.argv, env=launch.env, cwd=cwd, start_new_session=True,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE if capture else None, text=True)

    def stop() -> None:
        for cmd in launch.cleanup:
            subprocess.run(cmd, capture_output=True)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop()
        raise RunError(f"timed out after {timeout} s (TIMEOUT={timeout}); stopped: {show(launch.argv)}") from None
    except KeyboardInterrupt:
        stop()
        raise
    return subprocess.CompletedProcess(launch.argv, proc.returncode, out, err)
