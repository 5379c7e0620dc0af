"""Reading Slurm's answers, wherever they come from (this node, the test cluster's login node)."""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Sequence
from typing import Protocol

from .ui import UsageError, say


class Plan(Protocol):
    """What the plugin choice reads of the bind model's plan (bind.Plan), without importing bind."""

    prefix: str
    srun_mpi: str
    srun_mpi_why: str


def parse_mpi_list(text: str) -> tuple[list[str], list[str]]:
    """`srun --mpi=list` -> (plugin types, specific pmix versions like pmix_v5)."""
    versions = re.findall(r"\bpmix_v\d+\b", text)
    plugins = [line.strip() for line in text.splitlines()
               if re.fullmatch(r"\s*[a-z][a-z0-9_]*\s*", line) and line.strip() not in versions]
    return plugins, sorted(set(versions))


# ---- which --mpi plugin srun's ranks get ----

BIND_INSTEAD = ("the bind model: HOST_MPI=<prefix of the site's MPICH-ABI MPI> (make bind-plan shows what it "
                "binds), which srun wires with pmi2; or one node with RUNTIME=apptainer (mpiexec inside the image)")


def plugin(srun_mpi: str, plan: Plan | None) -> str:
    """SRUN_MPI, or (auto) pmix for the image's Open MPI and the site MPI's own choice with HOST_MPI."""
    if srun_mpi != "auto":
        return srun_mpi
    return plan.srun_mpi if plan else "pmix"


def fit_plugin(srun_mpi: str, plan: Plan | None, offered: Sequence[str]) -> str:
    """The --mpi plugin for srun's ranks (SRUN_MPI, or auto), refused in one line when this Slurm
    (srun --mpi=list: `offered`) lacks the plugin auto needs: a Slurm built without PMIx (Debian forky's)
    cannot start the image's Open MPI, only a site MPI that speaks PMI-2. Nothing offered (srun --mpi=list
    gave no answer, which offered_plugins says out loud): the plugin is passed on, and srun judges it."""
    want = plugin(srun_mpi, plan)
    if srun_mpi != "auto" or want in offered or not offered:
        return want
    listed = ", ".join(offered)
    if plan is None:
        raise UsageError(f"this Slurm has no pmix plugin (srun --mpi=list: {listed}), and the image's Open MPI "
                         f"starts only through PMIx: use {BIND_INSTEAD}")
    raise UsageError(f"HOST_MPI={plan.prefix}: srun --mpi={want} is needed ({plan.srun_mpi_why}), but this Slurm "
                     f"offers only {listed} (srun --mpi=list): use a site MPI that speaks one of them")


@functools.cache
def offered_plugins(runtime: str) -> tuple[str, ...]:
    """srun --mpi=list where srun's ranks start: this node, or the test cluster's login node. When it gives
    no answer the plugin cannot be checked before the launch, and the kit says so. Asked once per command:
    the bind plan's key and the plugin check both read it (a second `srun --mpi=list` through docker exec
    cost about 0.1 s of every cluster run)."""
    from . import cluster

    def ask() -> list[str]:
        argv = cluster.on_login(["srun", "--mpi=list"]) if runtime == "cluster" else ["srun", "--mpi=list"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            said = (proc.stderr or proc.stdout).strip().splitlines()[-1:] if proc.returncode else []
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc, said = None, [str(exc)]
        plugins = parse_mpi_list(proc.stdout)[0] if proc is not None and proc.returncode == 0 else []
        if not plugins:
            say(f"warning: srun --mpi=list gave no plugins ({said[0] if said else 'no output'}), so the --mpi plugin "
                "is not checked before the launch: srun itself will refuse one this Slurm lacks")
        return plugins

    return tuple(cluster.login_plugins(ask) if runtime == "cluster" else ask())
