"""Launching ranks: one function per runtime builds the exact command and the
environment fixes it needs; `execute` runs it with a time limit and cleans up."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import docker
from .config import REQUIREMENTS, ROOT, RunError

RUNTIMES = ("auto", "native", "docker", "apptainer", "srun", "cluster")
VENV = Path(os.environ.get("MPIKIT_VENV", ROOT / ".venv"))
# Docker's default 64 MB /dev/shm is too small for Open MPI's shared-memory
# transport with several ranks and large messages.
DOCKER_SHM_SIZE = "1g"
# How every rank runs a script: mpi4py's runner calls MPI_Abort when a rank
# raises, so one failing rank ends the whole job (with its traceback) instead
# of leaving the others waiting forever.
RANK_PYTHON = ("python", "-m", "mpi4py")
# srun starts each rank as its own unprivileged `apptainer exec`: without
# --sharens, ranks on a node sit in separate user namespaces, each with its own
# squashfuse mount of the SIF, and Open MPI's CMA single-copy between them
# fails with EPERM. Measured on the test cluster (2 nodes, 4 ranks, medians of
# 5, the scatter example at 10,000,000 values): no container 1.40 s, --sharens
# 2.02 s, without it 5.16 s (and very uneven run to run). --sharens (Apptainer
# 1.3+) starts the ranks of one node in one namespace, and CMA works.
# It re-parents one rank per node under Apptainer's init, so Slurm must track
# processes by cgroup (usual) or process group; the test cluster uses pgid.
APPTAINER_RANK_OPTIONS = ("--sharens",)


@dataclass
class Job:
    script: Path  # absolute path, under `workdir`
    args: list[str]
    np: int
    runtime: str  # resolved: one of LAUNCHERS
    image: str = ""
    workdir: Path = field(default_factory=Path.cwd)
    timeout: int | None = None
    sif: Path | None = None  # the Apptainer image, for runtimes that use one
    mpi: str = "pmix"  # srun --mpi plugin, for srun and cluster
    nodes: int | None = None  # srun --nodes, for srun and cluster (None: Slurm's choice / up to 2)


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cleanup: list[list[str]] = field(default_factory=list)  # run after a timeout or Ctrl-C
    # Which ranks are still running, given the launcher's session id (for the timeout message).
    live_ranks: Callable[[int], list[int] | None] | None = None


# Lists the MPI ranks among the processes this kernel shows (a rank carries
# PMIX_RANK in its environment); with an argument, only that session's.
# Runs with any Python: the host's, or the image's through docker exec.
RANK_SCAN = r"""
import os, sys
sid = int(sys.argv[1]) if len(sys.argv) > 1 else None
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if sid is not None and os.getsid(int(pid)) != sid:
            continue
        env = open("/proc/%s/environ" % pid, "rb").read().split(b"\0")
    except OSError:
        continue
    rank = [e[10:] for e in env if e.startswith(b"PMIX_RANK=")]
    if rank:
        print(int(rank[0]))
"""


def _ranks_from(argv: list[str]) -> list[int] | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sorted({int(x) for x in proc.stdout.split() if x.isdigit()}) if proc.returncode == 0 else None


def local_ranks(session: int) -> list[int] | None:
    return _ranks_from([sys.executable, "-c", RANK_SCAN, str(session)])


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
    return Launch([*local_mpiexec(job.np), *RANK_PYTHON, str(rel), *job.args], env, live_ranks=local_ranks)


def docker_launch(job: Job) -> Launch:
    client = docker.client() or "docker"
    name = f"mpikit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    argv = [client, "run", "--rm", "--init", "--name", name,
            f"--shm-size={DOCKER_SHM_SIZE}",
            # CMA single-copy (process_vm_readv) between ranks: Docker's seccomp
            # profile refuses it without this capability (make doctor shows EPERM).
            "--cap-add", "SYS_PTRACE",
            "-v", f"{job.workdir}:/work", "-w", "/work"]
    if os.geteuid() != 0:
        # Files the job writes belong to the user who ran it.
        argv += ["--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
    rel = job.script.relative_to(job.workdir)
    argv += [job.image, *local_mpiexec(job.np), *RANK_PYTHON, rel.as_posix(), *job.args]
    return Launch(argv, dict(os.environ), cleanup=[[client, "rm", "-f", name]],
                  live_ranks=lambda _: _ranks_from([client, "exec", name, "python", "-c", RANK_SCAN]))


def cluster_launch(job: Job) -> Launch:
    """srun in the test cluster's controller; /shared there is this repository."""
    from . import cluster

    assert job.sif is not None
    script = job.script.relative_to(ROOT).as_posix()
    sif = f"{cluster.SHARED}/{job.sif.relative_to(ROOT).as_posix()}"
    argv = cluster.srun_argv(job.np, sif, script, job.args, job.mpi, job.nodes)
    stop = [docker.client() or "docker", "exec", cluster.CONTROLLER, "scancel", "-u", cluster.USER]
    return Launch(argv, dict(os.environ), cleanup=[stop], live_ranks=lambda _: cluster.live_ranks(job.np))


def apptainer_launch(job: Job) -> Launch:
    """One node, the launcher inside the image: apptainer exec SIF mpiexec ..."""
    from .apptainer import host_apptainer

    assert job.sif is not None
    rel = job.script.relative_to(job.workdir).as_posix()
    argv = [host_apptainer() or "apptainer", "exec", str(job.sif), *local_mpiexec(job.np), *RANK_PYTHON,
            rel, *job.args]
    return Launch(argv, {**os.environ, **root_fixes()}, live_ranks=local_ranks)


def srun_launch(job: Job) -> Launch:
    """The hybrid model on a real cluster: Slurm starts the ranks through PMIx,
    each rank runs in the SIF; the working directory is visible (Apptainer binds it)."""
    from .apptainer import host_apptainer, supports_sharens

    assert job.sif is not None
    rel = job.script.relative_to(job.workdir).as_posix()
    apptainer = host_apptainer() or "apptainer"
    options = list(APPTAINER_RANK_OPTIONS) if supports_sharens(apptainer) else []
    nodes = [f"--nodes={job.nodes}"] if job.nodes else []
    argv = ["srun", *nodes, f"--ntasks={job.np}", f"--mpi={job.mpi}", apptainer, "exec", *options,
            str(job.sif), *RANK_PYTHON, rel, *job.args]
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
        try:
            live = launch.live_ranks(proc.pid) if launch.live_ranks else None
        finally:
            stop()
        still = ("ranks still running: " + ", ".join(map(str, live)) if live
                 else "no rank was still running (the launcher hung)" if live == [] else "")
        raise RunError(f"timed out after {timeout} s (TIMEOUT={timeout}); {still + '; ' if still else ''}"
                       f"stopped every rank: {show(launch.argv)}") from None
    except KeyboardInterrupt:
        stop()
        raise
    return subprocess.CompletedProcess(launch.argv, proc.returncode, out, err)
