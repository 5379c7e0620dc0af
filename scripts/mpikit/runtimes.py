"""Running ranks: for each runtime, the launch line (from launch.py) with the
environment fixes it needs, and `execute`, which runs it with a time limit and
stops every rank, container and Slurm job on a timeout or Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
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
    apptainer_mode: str = launch.DEFAULT_MODE  # how srun's ranks enter the image (launch.MODES)
    env: dict[str, str] = field(default_factory=dict)  # more environment for the ranks (doctor's probe)

    def program(self, script: str | None = None, python: str = "python") -> Program:
        return Program(script or self.script.relative_to(self.workdir).as_posix(), tuple(self.args), python=python,
                       runner=launch.FUTURES_RUNNER if self.futures else launch.RANK_RUNNER)


@dataclass
class Launch:
    argv: list[str]
    added: dict[str, str] = field(default_factory=dict)  # what the kit adds to the user's environment
    cleanup: list[list[str]] = field(default_factory=list)  # run after a timeout or Ctrl-C
    # Which ranks are still running, given the launcher's session id (for the timeout message).
    live_ranks: Callable[[int], list[int] | None] | None = None

    @property
    def env(self) -> dict[str, str]:
        return launch.environment(self.added, os.environ)

    def line(self) -> str:
        """What the kit runs, environment included, as a shell takes it: the `+` line and make line."""
        return launch.show_env(self.added, self.argv)


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


# Ranks that outnumber the cores they run on: Open MPI busy-polls while it waits unless told to yield,
# and mpiexec --oversubscribe tells it, srun cannot (docs/performance.md: 33.8 s against 0.37 s for the
# same 2,000 Allgathers, 4 ranks on 2 shared cores).
YIELD_MCA = {"OMPI_MCA_mpi_yield_when_idle": "1"}


def slurm_cpus(cpus_per_node: str) -> int:
    """The allocation's CPUs from SLURM_JOB_CPUS_PER_NODE ('4(x2),2' is 4 + 4 + 2); 0 if unreadable."""
    total = 0
    for part in cpus_per_node.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            return 0
        total += int(m.group(1)) * int(m.group(2) or 1)
    return total


def oversubscribed(np: int, environ: dict[str, str]) -> bool:
    """Will srun's ranks outnumber the allocation's CPUs (or was the allocation made with --overcommit)?"""
    cpus = slurm_cpus(environ.get("SLURM_JOB_CPUS_PER_NODE", ""))
    return environ.get("SLURM_OVERCOMMIT") == "1" or (cpus > 0 and np > cpus)


def yield_fixes(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in YIELD_MCA.items() if k not in environ}


def native_launch(job: Job) -> Launch:
    bin_dir = venv.VENV / "bin"  # made ready by prepare.ready
    added = {**root_fixes(os.geteuid()), **one_node_fixes(dict(os.environ)),
             "PATH": launch.with_users_path(str(bin_dir)), **job.env}
    return Launch(launch.mpiexec(job.np, job.program().argv()), added, live_ranks=procs.local_ranks)


def docker_user(euid: int, uid: int, gid: int) -> tuple[str | None, tuple[str, ...]]:
    """Files the job writes belong to the user who ran it (the image's own user when root)."""
    return (None, ()) if euid == 0 else (f"{uid}:{gid}", ("HOME=/tmp",))


def docker_env(euid: int, uid: int, gid: int, environ: dict[str, str]) -> tuple[str | None, tuple[str, ...]]:
    """docker run's --user and -e settings: the user's uid (HOME=/tmp) and the one-node settings."""
    user, env = docker_user(euid, uid, gid)
    # Inside the container it is Linux, whatever the host.
    return user, env + tuple(f"{k}={v}" for k, v in one_node_fixes(environ, "linux").items())


def docker_launch(job: Job, paste: bool = False) -> Launch:
    """`paste`: the line for a user (make line), without the container name the kit stops it by."""
    client = "docker" if paste else docker.command()
    name = None if paste else f"mpikit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    user, env = docker_env(os.geteuid(), os.getuid(), os.getgid(), dict(os.environ))
    env += tuple(f"{k}={v}" for k, v in job.env.items())
    argv = launch.docker_run(job.image, launch.mpiexec(job.np, job.program().argv()), workdir="/work",
                             mount=str(job.workdir), client=client, name=name, init=True, user=user, env=env,
                             options=() if paste else docker.background_weight())
    scan = launch.docker_exec(name, ["python", "-c", procs.RANK_SCAN], client=client)
    if name is None:
        return Launch(argv)
    return Launch(argv, cleanup=[[client, "rm", "-f", name]], live_ranks=lambda _: procs.ranks_from(scan))


def shell_launch(runtime: str, image: str, sif: Path, command: str | None, interactive: bool) -> Launch:
    """make shell: bash in the image, with make run's mount (the current folder at /work), user and
    environment; `command`: bash -c COMMAND instead of an interactive shell."""
    bash = ["bash", "-c", command] if command else ["bash"]
    if runtime == "docker":
        user, env = docker_env(os.geteuid(), os.getuid(), os.getgid(), dict(os.environ))
        return Launch(launch.docker_run(image, bash, workdir="/work", mount=str(Path.cwd()), client=docker.command(),
                                        init=True, user=user, env=env, interactive=interactive))
    fixes = {**root_fixes(os.geteuid()), **one_node_fixes(dict(os.environ), "linux")}
    container = launch.Apptainer(str(sif), command=host_apptainer() or "apptainer", env=tuple(fixes.items()))
    return Launch(container.run(bash))


def apptainer_launch(job: Job) -> Launch:
    """One node, the launcher inside the image: apptainer exec --env ... SIF mpiexec ..."""
    assert job.sif is not None
    fixes = {**root_fixes(os.geteuid()), **one_node_fixes(dict(os.environ), "linux"), **job.env}
    container = launch.Apptainer(str(job.sif), command=host_apptainer() or "apptainer", env=tuple(fixes.items()))
    argv = container.run(launch.mpiexec(job.np, job.program().argv()))
    return Launch(argv, live_ranks=procs.local_ranks)


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
    # srun passes the environment to every task, and Apptainer into the image.
    added = yield_fixes(dict(os.environ)) if oversubscribed(job.np, dict(os.environ)) else {}
    return Launch(argv, {**added, **job.env})


def with_bind(container: launch.Apptainer, plan: bind.Plan | None) -> launch.Apptainer:
    """The bind model: the same container, with the site's MPI bound in and chosen (bind.py says why)."""
    if plan is None:
        return container
    return replace(container, binds=plan.binds_options(), env=tuple(plan.env.items()))


def cluster_container(sif: Path, plan: bind.Plan | None = None, mode: str = launch.DEFAULT_MODE) -> launch.Apptainer:
    """How ranks on the test cluster's nodes enter the SIF (the nodes' Apptainer 1.4 has --sharens)."""
    return with_bind(launch.Apptainer(cluster.shared_path(sif), mode=mode,
                                      wrapper=f"{cluster.SHARED}/{launch.WRAPPER}"), plan)


def cluster_nodes(job: Job) -> int:
    return job.nodes or min(job.np, len(cluster.COMPUTE))


def cluster_overcommits(job: Job) -> bool:
    """More ranks than the test cluster's nodes declare CPUs: srun refuses them without --overcommit."""
    return job.np > cluster_nodes(job) * cluster.cpus_per_node()


def cluster_srun(job: Job, container: launch.Apptainer | None, python: str = "python",
                 env: dict[str, str] | None = None) -> Launch:
    """The srun line as typed on the test cluster's login node, from /shared, with its environment. The
    nodes share this machine's cores, so the ranks always outnumber them: Open MPI must yield (YIELD_MCA),
    in the container's line and the bare baselines alike. bench passes other containers (or none), the
    nodes' own python for its baselines, and more environment."""
    program = job.program(job.script.relative_to(ROOT).as_posix(), python)
    extra = ("--overcommit",) if cluster_overcommits(job) else ()
    line = launch.ranks_in_sif(job.np, program, mpi=job.mpi, container=container, nodes=cluster_nodes(job),
                               extra=extra)
    return Launch(line, {**YIELD_MCA, **job.env, **(env or {})})


def cluster_line(job: Job, container: launch.Apptainer | None, python: str = "python",
                 env: dict[str, str] | None = None) -> list[str]:
    """cluster_srun's line, run on the login node as the user (docker exec -e passes its environment)."""
    srun = cluster_srun(job, container, python, env)
    return cluster.on_login(srun.argv, env=tuple(f"{k}={v}" for k, v in srun.added.items()))


def cluster_launch(job: Job) -> Launch:
    """srun on the test cluster's login node; /shared there is this repository."""
    assert job.sif is not None
    line = cluster_line(job, cluster_container(job.sif, job.bind, job.apptainer_mode))
    return Launch(line, cleanup=[cluster.cancel_all(), *cluster.stop_instances()],
                  live_ranks=lambda _: cluster.live_ranks(job.np))


LAUNCHERS: dict[str, Callable[[Job], Launch]] = {
    "native": native_launch, "docker": docker_launch, "apptainer": apptainer_launch,
    "srun": srun_launch, "cluster": cluster_launch}


def launch_for(job: Job, paste: bool = False) -> Launch:
    """The launch of `job`; `paste`: as a user would type it (make line), not as the kit tracks it."""
    if paste and job.runtime == "docker":
        return docker_launch(job, paste=True)
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


# ---- the run lines the docs teach (each example's docstring, the README, docs/) ----

def user_lines(example_file: str, np: int, image: str, make_target: str, extra_args: Sequence[str] = (),
               futures: bool = False) -> dict[str, str]:
    """The lines a user types to run examples/<example_file> with np ranks, by launcher: the kit's own
    launches, rendered for the kit's folder ("$PWD") and a user whose environment sets none of the kit's
    settings. Three are shorter than the kit's, and the docs say so (SHORTER): mpiexec without the kit's
    one-node settings, docker run as root (a user's line adds --user), and srun with one plain
    apptainer exec per rank (the kit's APPTAINER_MODE enters the image faster); make line prints each."""
    program = Program(f"examples/{example_file}", tuple(extra_args),
                      runner=launch.FUTURES_RUNNER if futures else launch.RANK_RUNNER)
    ranks = launch.mpiexec(np, program.argv())
    _, env = docker_env(0, 0, 0, {})
    docker_line = launch.docker_run(image, ranks, workdir="/work", mount="$PWD", init=True, env=env)
    one_node = tuple(one_node_fixes({}, "linux").items())
    return {
        "make": f"make {make_target} NP={np}",
        "mpiexec": show(ranks),
        "docker": show(docker_line).replace("'$PWD:/work'", '"$PWD":/work'),
        "apptainer": show(launch.Apptainer("mpi.sif", env=one_node).run(ranks)),
        "srun": srun_line(program, np, "exec"),
    }


# What the docs say after the lines of user_lines (the examples' docstrings hold it, a unit test checks).
SHORTER = ("The mpiexec line leaves out the kit's one-node settings, the docker line is root's (a user's adds "
           "--user UID:GID), and the srun line starts Apptainer once per rank; make line RUNTIME=native, docker "
           "or srun prints the kit's own.")


def srun_line(program: Program, np: int, mode: str) -> str:
    """The srun line for `program` with `mode` (APPTAINER_MODE), as typed from the kit's folder."""
    return show(launch.ranks_in_sif(np, program, mpi="pmix", container=launch.Apptainer("mpi.sif", mode=mode)))
