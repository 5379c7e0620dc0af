"""Running ranks: for each runtime, the launch line (from launch.py) with the
environment fixes it needs, and `execute`, which runs it with a time limit and
stops every rank, container and Slurm job on a timeout or Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import apptainer, bind, cluster, docker, launch, procs, venv
from .choose import host_apptainer
from .config import ROOT
from .launch import Program, show
from .ui import RunError

LOCAL = ("native", "docker", "apptainer")  # one machine, the image's (or venv's) own mpiexec


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
    futures: bool = False  # python -m mpi4py.futures instead of python -m mpi4py
    bind: bind.Plan | None = None  # the bind model (HOST_MPI): the site's MPI instead of the image's
    apptainer_mode: str = "sandbox"  # how srun's ranks enter the image (launch.MODES; knobs.py's default)

    def program(self, script: str | None = None, python: str = "python") -> Program:
        return Program(script or self.script.relative_to(self.workdir).as_posix(), tuple(self.args), python=python,
                       runner=launch.FUTURES_RUNNER if self.futures else launch.RANK_RUNNER)


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cleanup: list[list[str]] = field(default_factory=list)  # run after a timeout or Ctrl-C
    # Which ranks are still running, given the launcher's session id (for the timeout message).
    live_ranks: Callable[[int], list[int] | None] | None = None


# Open MPI on one machine (native, docker, apptainer): shared memory, and TCP on loopback only.
# TCP on every address offers Docker's bridges (docker0, br-*) too, and a spawned job's connection
# from one of them is dropped as unexpected, so MPI_Comm_spawn (mpi4py.futures) hung. The fabric
# components (OFI, UCX) probe for network hardware at every MPI_Init and find none to use on one
# machine; without them a native job starts in well under half the time (docs/performance.md).
ONE_NODE_MCA = {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "^ofi,uct", "OMPI_MCA_btl_tcp_if_include": "lo",
                "OMPI_MCA_mtl": "^ofi", "OMPI_MCA_osc": "^ucx"}


def one_node_fixes(environ: dict[str, str], system: str = sys.platform) -> dict[str, str]:
    """ONE_NODE_MCA, but for the settings the user gave themselves (theirs win). macOS names its
    loopback interface lo0 (the native runtime on a Mac)."""
    fixes = {name: value for name, value in ONE_NODE_MCA.items() if name not in environ}
    if system == "darwin" and "OMPI_MCA_btl_tcp_if_include" in fixes:
        fixes["OMPI_MCA_btl_tcp_if_include"] = "lo0"
    return fixes


def root_fixes(euid: int) -> dict[str, str]:
    """Open MPI refuses to start as root; allow it only where root is real."""
    if euid == 0:
        return {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    return {}


def native_launch(job: Job) -> Launch:
    bin_dir = venv.ensure(venv.NATIVE) / "bin"
    env = {**os.environ, **root_fixes(os.geteuid()), **one_node_fixes(dict(os.environ)),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return Launch(launch.mpiexec(job.np, job.program().argv()), env, live_ranks=procs.local_ranks)


def docker_user(euid: int, uid: int, gid: int) -> tuple[str | None, tuple[str, ...]]:
    """Files the job writes belong to the user who ran it (the image's own user when root)."""
    return (None, ()) if euid == 0 else (f"{uid}:{gid}", ("HOME=/tmp",))


def docker_launch(job: Job) -> Launch:
    client = docker.command()
    name = f"mpikit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    user, env = docker_user(os.geteuid(), os.getuid(), os.getgid())
    # Inside the container it is Linux, whatever the host.
    env += tuple(f"{k}={v}" for k, v in one_node_fixes(dict(os.environ), "linux").items())
    argv = launch.docker_run(job.image, launch.mpiexec(job.np, job.program().argv()), workdir="/work",
                             mount=str(job.workdir), client=client, name=name, init=True, user=user, env=env)
    scan = launch.docker_exec(name, ["python", "-c", procs.RANK_SCAN], client=client)
    return Launch(argv, dict(os.environ), cleanup=[[client, "rm", "-f", name]],
                  live_ranks=lambda _: procs.ranks_from(scan))


def apptainer_launch(job: Job) -> Launch:
    """One node, the launcher inside the image: apptainer exec SIF mpiexec ..."""
    assert job.sif is not None
    container = launch.Apptainer(str(job.sif), command=host_apptainer() or "apptainer")
    argv = container.run(launch.mpiexec(job.np, job.program().argv()))
    env = {**os.environ, **root_fixes(os.geteuid()), **one_node_fixes(dict(os.environ))}
    return Launch(argv, env, live_ranks=procs.local_ranks)


def srun_launch(job: Job) -> Launch:
    """The hybrid model on a real cluster: Slurm starts the ranks through PMIx,
    each rank runs in the SIF; the working directory is visible (Apptainer binds it)."""
    assert job.sif is not None
    command = host_apptainer() or "apptainer"
    mode = job.apptainer_mode
    if mode != "exec" and not apptainer.supports_sharens(command):
        mode = "exec"  # Apptainer before 1.3: no --sharens, which the other modes use too
    container = with_bind(launch.Apptainer(str(job.sif), command=command, mode=mode,
                                           wrapper=str(ROOT / launch.WRAPPER)), job.bind)
    argv = launch.ranks_in_sif(job.np, job.program(), mpi=job.mpi, container=container, nodes=job.nodes)
    return Launch(argv, dict(os.environ))


def with_bind(container: launch.Apptainer, plan: bind.Plan | None) -> launch.Apptainer:
    """The bind model: the same container, with the site's MPI bound in and chosen (bind.py says why)."""
    if plan is None:
        return container
    return replace(container, binds=plan.binds_options(), env=tuple(plan.env.items()))


def cluster_container(sif: Path, plan: bind.Plan | None = None, mode: str = "sandbox") -> launch.Apptainer:
    """How ranks on the test cluster's nodes enter the SIF (the nodes' Apptainer 1.4 has --sharens)."""
    return with_bind(launch.Apptainer(cluster.shared_path(sif), mode=mode,
                                      wrapper=f"{cluster.SHARED}/{launch.WRAPPER}"), plan)


def cluster_line(job: Job, container: launch.Apptainer | None, python: str = "python",
                 extra: tuple[str, ...] = (), env: tuple[str, ...] = ()) -> list[str]:
    """The srun line on the test cluster's login node; bench passes other containers (or none), the
    nodes' own python for its baselines, srun options (--overcommit) and environment."""
    program = job.program(job.script.relative_to(ROOT).as_posix(), python)
    line = launch.ranks_in_sif(job.np, program, mpi=job.mpi, container=container,
                               nodes=job.nodes or min(job.np, len(cluster.COMPUTE)), extra=extra)
    return cluster.on_login(line, env=env)


def cluster_launch(job: Job) -> Launch:
    """srun on the test cluster's login node; /shared there is this repository."""
    assert job.sif is not None
    line = cluster_line(job, cluster_container(job.sif, job.bind, job.apptainer_mode))
    return Launch(line, dict(os.environ), cleanup=[cluster.cancel_all(), *cluster.stop_instances()],
                  live_ranks=lambda _: cluster.live_ranks(job.np))


LAUNCHERS: dict[str, Callable[[Job], Launch]] = {
    "native": native_launch, "docker": docker_launch, "apptainer": apptainer_launch,
    "srun": srun_launch, "cluster": cluster_launch}


def launch_for(job: Job) -> Launch:
    return LAUNCHERS[job.runtime](job)


def timeout_message(timeout: int, live: list[int] | None, argv: list[str]) -> str:
    still = ("ranks still running: " + ", ".join(map(str, live)) if live
             else "no rank was still running (the launcher hung)" if live == [] else "")
    return (f"timed out after {timeout} s (TIMEOUT={timeout}); {still + '; ' if still else ''}"
            f"stopped every rank: {show(argv)}")


def execute(run: Launch, timeout: int | None, capture: bool = False,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the launch; a hang past `timeout` or Ctrl-C stops every rank."""
    proc = subprocess.Popen(run.argv, env=run.env, cwd=cwd, start_new_session=True,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE if capture else None, text=True)

    def stop() -> None:
        for cmd in run.cleanup:
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
            live = run.live_ranks(proc.pid) if run.live_ranks else None
        finally:
            stop()
        raise RunError(timeout_message(timeout or 0, live, run.argv)) from None
    except KeyboardInterrupt:
        stop()
        raise
    return subprocess.CompletedProcess(run.argv, proc.returncode, out, err)
