"""Which runtime runs the ranks: the policy as one pure function of what the
host offers (choose), and the look at the host that feeds it (look)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from .ui import MissingPrerequisite


@dataclass(frozen=True)
class Host:
    slurm_job: str | None  # SLURM_JOB_ID: inside an allocation
    srun: bool  # srun on PATH
    apptainer: str | None  # the apptainer (or singularity) command, if any
    docker_problem: Callable[[], str | None]  # None when an engine answers; asked only when needed


@dataclass(frozen=True)
class Choice:
    runtime: str
    why: str


def choose(requested: str, host: Host) -> Choice:
    """auto prefers srun inside a Slurm allocation with Apptainer, then Apptainer,
    then Docker when an engine answers, then the native venv."""
    if requested == "srun":
        missing = ("no apptainer on PATH" if not host.apptainer else
                   "no srun on PATH" if not host.srun else None)
        if missing:
            raise MissingPrerequisite(f"RUNTIME=srun needs srun and apptainer on PATH ({missing}); on a cluster: "
                                      "module load apptainer, or use RUNTIME=cluster for the test cluster")
        return Choice("srun", f"RUNTIME=srun (allocation {host.slurm_job})" if host.slurm_job
                      else "RUNTIME=srun (srun asks for an allocation)")
    if requested == "apptainer":
        if not host.apptainer:
            raise MissingPrerequisite("RUNTIME=apptainer needs apptainer on PATH; install it "
                                      "(or module load apptainer), or use RUNTIME=docker")
        return Choice("apptainer", "RUNTIME=apptainer")
    if requested in ("cluster", "native"):
        return Choice(requested, "RUNTIME=cluster: srun in the test Slurm cluster" if requested == "cluster"
                      else "RUNTIME=native")
    if requested == "docker":
        problem = host.docker_problem()
        if problem:
            raise MissingPrerequisite(f"RUNTIME=docker needs a Docker engine, but {problem}; start Docker "
                                      "(sudo systemctl start docker, or Docker Desktop) or use RUNTIME=native")
        return Choice("docker", "RUNTIME=docker")
    # auto
    if host.apptainer and host.slurm_job and host.srun:
        return Choice("srun", f"auto: inside Slurm allocation {host.slurm_job} with Apptainer")
    if host.apptainer:
        slurm = "no srun on PATH" if host.slurm_job else "not inside a Slurm allocation"
        return Choice("apptainer", f"auto: apptainer on PATH ({slurm})")
    problem = host.docker_problem()
    if problem is None:
        return Choice("docker", "auto: a Docker engine answers")
    return Choice("native", f"auto: no Docker engine ({problem}), so a local venv with Open MPI from PyPI")


def host_apptainer() -> str | None:
    return shutil.which("apptainer") or shutil.which("singularity")


def look() -> Host:
    from . import docker

    return Host(slurm_job=os.environ.get("SLURM_JOB_ID") or None, srun=shutil.which("srun") is not None,
                apptainer=host_apptainer(), docker_problem=docker.engine_problem)
