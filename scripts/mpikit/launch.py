"""The one author of launch lines: mpiexec, docker run/exec, apptainer exec,
srun and sbatch argv are written here and nowhere else.

Runtimes, the test cluster, doctor and bench compose these functions and
pass options for their variants (a baseline without a container, without
--sharens, ...); the docstrings' and README's run lines are rendered here
too (runtimes.user_lines, from these functions), so what the docs teach is what the kit runs.
Pure functions: no process is started in this module.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# How every rank runs a script: mpi4py's runner calls MPI_Abort when a rank
# raises, so one failing rank ends the whole job (with its traceback) instead
# of leaving the others waiting forever.
RANK_RUNNER = ("-m", "mpi4py")
# FUTURES=1 (and the pool example): rank 0 runs the script, every other rank serves
# as a worker of mpi4py.futures' MPIPoolExecutor; no process is spawned.
FUTURES_RUNNER = ("-m", "mpi4py.futures")
# Docker's default 64 MB /dev/shm is too small for Open MPI's shared-memory
# transport with several ranks and large messages (make doctor flags it).
DOCKER_SHM_SIZE = "1g"
# CMA single-copy (process_vm_readv) between ranks: Docker's seccomp profile
# refuses it without this capability (make doctor shows EPERM).
DOCKER_CAPS = ("SYS_PTRACE",)


@dataclass(frozen=True)
class Program:
    """What each rank runs: PYTHON [RUNNER] SCRIPT ARGS."""

    script: str  # as the rank sees it (relative to its working directory, or absolute)
    args: tuple[str, ...] = ()
    python: str = "python"
    runner: tuple[str, ...] = RANK_RUNNER

    def argv(self) -> list[str]:
        return [self.python, *self.runner, self.script, *self.args]


def mpiexec(np: int, command: Sequence[str], *, oversubscribe: bool = True) -> list[str]:
    # Oversubscribe on one machine: Open MPI counts physical cores as slots and
    # refuses NP beyond them ("not enough slots") even where the OS has more threads.
    return ["mpiexec", *(["--oversubscribe"] if oversubscribe else []), "-n", str(np), *command]


def docker_run(image: str, command: Sequence[str], *, workdir: str | None = None, mount: str | None = None,
               client: str = "docker", name: str | None = None, init: bool = False,
               user: str | None = None, env: Sequence[str] = (), interactive: bool = False,
               options: Sequence[str] = ()) -> list[str]:
    """docker run --rm with the settings ranks need (/dev/shm, CMA); `mount` is bound at `workdir`; `options`: more
    of docker run's own."""
    argv = [client, "run", "--rm", *(["-it"] if interactive else [])]
    if init:  # an init reaps and forwards signals: Ctrl-C and TIMEOUT stop every rank
        argv.append("--init")
    if name:
        argv += ["--name", name]
    argv.append(f"--shm-size={DOCKER_SHM_SIZE}")
    for cap in DOCKER_CAPS:
        argv += ["--cap-add", cap]
    if mount and workdir:
        argv += ["-v", f"{mount}:{workdir}", "-w", workdir]
    if user:
        argv += ["--user", user]
    for var in env:
        argv += ["-e", var]
    return [*argv, *options, image, *command]


def docker_exec(container: str, command: Sequence[str], *, client: str = "docker", user: str | None = None,
                workdir: str | None = None, env: Sequence[str] = (), interactive: bool = False) -> list[str]:
    argv = [client, "exec"]
    if interactive:
        argv.append("-it")
    if user:
        argv += ["-u", user]
    if workdir:
        argv += ["-w", workdir]
    for var in env:
        argv += ["-e", var]
    return [*argv, container, *command]


# How srun's ranks enter the image (APPTAINER_MODE; docs/performance.md has the measurements):
#   exec      each rank its own `apptainer exec SIF`: its own user namespace and FUSE mount of the SIF
#   sharens   `apptainer exec --sharens SIF` (Apptainer 1.3+): the ranks of a node share one namespace
#             and one mount, so Open MPI's CMA single-copy works between them
#   sandbox   the SIF unpacked once per node on local disk, then `apptainer exec --sharens FOLDER`
#   join      the same folder; the node's first rank of a job step runs it (the holder), and the node's
#             other ranks enter its namespaces with nsenter (milliseconds instead of an Apptainer start);
#             sandbox where that is refused
#   instance  one `apptainer instance` per node and job step that every rank joins
# sandbox, join and instance need a step before the first rank of a node: WRAPPER does it on each task.
MODES = ("exec", "sharens", "sandbox", "join", "instance")
# The default: as fast as sandbox where a node has one rank or two, faster from 4 (docs/performance.md's curve).
DEFAULT_MODE = "join"
WRAPPED = ("sandbox", "join", "instance")
WRAPPER = "scripts/launch/apptainer-rank.sh"  # under the repository


@dataclass(frozen=True)
class Apptainer:
    """How a rank enters the image: `apptainer exec [options] SIF`, or the wrapper for the per-node modes."""

    image: str  # the SIF
    command: str = "apptainer"
    mode: str = "exec"
    binds: tuple[str, ...] = ()  # SRC[:DST[:OPTS]]
    env: tuple[tuple[str, str], ...] = ()  # --env NAME=VALUE inside the container
    wrapper: str = WRAPPER  # its path as the ranks see it (the WRAPPED modes)

    def options(self) -> list[str]:
        argv = []
        for bind in self.binds:
            argv += ["--bind", bind]
        for name, value in self.env:
            argv += ["--env", f"{name}={value}"]
        return argv

    def prefix(self) -> list[str]:
        if self.mode in WRAPPED:
            return [self.wrapper, self.mode, self.image, *self.options(), "--"]
        return [self.command, "exec", *(["--sharens"] if self.mode == "sharens" else []), *self.options(),
                self.image]

    def run(self, command: Sequence[str]) -> list[str]:
        return [*self.prefix(), *command]


def srun(np: int | None, command: Sequence[str], *, mpi: str | None, nodes: int | None = None,
         extra: Sequence[str] = ()) -> list[str]:
    """srun [--nodes=N] [--ntasks=NP] --mpi=PLUGIN COMMAND: Slurm starts the ranks and wires them (PMI)."""
    argv = ["srun"]
    if nodes:
        argv.append(f"--nodes={nodes}")
    if np is not None:
        argv.append(f"--ntasks={np}")
    argv += list(extra)
    if mpi:
        argv.append(f"--mpi={mpi}")
    return [*argv, *command]


def ranks_in_sif(np: int | None, program: Program, *, mpi: str | None, container: Apptainer | None,
                 nodes: int | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The hybrid model's line: srun starts NP ranks, each in the container (or bare, for a baseline)."""
    command = container.run(program.argv()) if container else program.argv()
    return srun(np, command, mpi=mpi, nodes=nodes, extra=extra)


def sbatch(script: str, script_args: Sequence[str], *, np: int, nodes: int | None, output: str,
           wait: bool = True) -> list[str]:
    argv = ["sbatch"]
    if wait:
        argv.append("--wait")
    argv.append(f"--ntasks={np}")
    if nodes:
        argv.append(f"--nodes={nodes}")
    return [*argv, f"--output={output}", "--parsable", script, *script_args]


def show(argv: Sequence[str]) -> str:
    """An argv as the line a user can paste into a shell."""
    return " ".join(shlex.quote(a) for a in argv)


# A value the kit adds to a variable the user already has (PATH=DIR:$PATH): expanded when the kit runs
# the line, and left for the user's shell to expand in the line it prints.
USERS_PATH = "$PATH"


def with_users_path(folder: str) -> str:
    return f"{folder}:{USERS_PATH}"


def environment(added: Mapping[str, str], base: Mapping[str, str]) -> dict[str, str]:
    """The environment a line runs with: `base` (the user's) and what the kit adds."""
    return {**base, **{k: v.replace(USERS_PATH, base.get("PATH", "")) for k, v in added.items()}}


def assignment(name: str, value: str) -> str:
    """NAME=VALUE as a shell takes it; a value that extends the user's PATH keeps "$PATH" for the shell."""
    if value.endswith(USERS_PATH):
        return f'{name}={shlex.quote(value.removesuffix(USERS_PATH))}"$PATH"'
    return f"{name}={shlex.quote(value)}"


def show_env(added: Mapping[str, str], argv: Sequence[str]) -> str:
    """NAME=VALUE ... ARGV: the line with the environment the kit adds, as a shell takes it."""
    return " ".join([*(assignment(k, v) for k, v in added.items()), show(argv)])


def batch_script(srun_argv: Sequence[str], added: Mapping[str, str], *, np: int, nodes: int | None,
                 folder: str | None, made_by: str, yield_if_overcommitted: Mapping[str, str] | None = None,
                 check: Sequence[str] = ()) -> str:
    """A Slurm batch script around the kit's srun line (make sbatch; slurm/example.sbatch is its output).
    `folder`: where the line's relative paths start (None: the folder sbatch was run from); `check`: a command
    that must pass first (apptainer verify of the SIF, with VERIFY_KEY)."""
    lines = ["#!/bin/bash",
             f"# Written by `{made_by}` (mpi4py-kit):",
             "# the kit's own srun line, the one make line prints, in a batch script. Submit it with",
             "# sbatch FILE; sbatch's options override the #SBATCH lines.",
             "#SBATCH --job-name=mpi4py-kit",
             f"#SBATCH --ntasks={np}",
             *([f"#SBATCH --nodes={nodes}"] if nodes else []),
             "#SBATCH --output=mpi4py-kit-%j.out",
             "#",
             "# Outputs: write them to $TMPDIR (node-local, gone after the job) or $SCRATCH (shared, kept), not",
             "# to the working directory, which may be read-only on compute nodes (docs/clusters.md).",
             "set -euo pipefail",
             f"cd {shlex.quote(folder)}  # the folder the line's paths are relative to" if folder else
             'cd "$SLURM_SUBMIT_DIR"  # submit it from the kit\'s folder: the line\'s paths start there',
             'echo "job $SLURM_JOB_ID: $SLURM_NTASKS ranks on $SLURM_JOB_NODELIST"']
    if yield_if_overcommitted:
        assigned = " ".join(assignment(k, v) for k, v in yield_if_overcommitted.items())
        lines += ["# More ranks than CPUs (sbatch --overcommit): Open MPI must yield instead of busy-polling.",
                  f'if [ "${{SLURM_OVERCOMMIT:-0}}" = 1 ]; then export {assigned}; fi']
    if check:
        lines += ["# The site's rule: the image must verify with its key before any rank starts (set -e ends the job).",
                  show(check)]
    lines += [f"export {assignment(k, v)}" for k, v in added.items()]
    lines.append(show(srun_argv))
    return "\n".join(lines) + "\n"
