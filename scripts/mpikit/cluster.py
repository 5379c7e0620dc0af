"""A real Slurm cluster in containers: controller + 2 compute nodes, munge with
a key made per cluster, PMIx, Apptainer, and the repository shared at /shared
(bind-mounted, like a cluster file system). No port is published to the host."""

from __future__ import annotations

import subprocess
import time

from . import apptainer, docker, runtimes
from .config import ROOT, RunError, stack_pins
from .docker import say

PREFIX = "mpikit"
NETWORK = f"{PREFIX}-net"
KEY_VOLUME = f"{PREFIX}-munge"
HOME_VOLUME = f"{PREFIX}-home"  # the user's home, shared by every node as on a real cluster
NODE_BASE = "trixie"  # the nodes' Debian: Slurm 24.11 with PMIx 5
NODE_IMAGE = f"mpi4py-kit-slurm:{NODE_BASE}"
CONTROLLER = f"{PREFIX}-slurmctld"
NODES = {CONTROLLER: ("slurmctld", "controller"),
         f"{PREFIX}-node1": ("node1", "compute"),
         f"{PREFIX}-node2": ("node2", "compute")}
USER = "hpcuser"
SHARED = "/shared"


def _docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([docker.client() or "docker", *args], capture_output=capture, text=True)
    if check and proc.returncode != 0:
        raise RunError(f"docker {' '.join(args)} failed: {(proc.stderr or '').strip()}")
    return proc


def running() -> list[str]:
    out = _docker("ps", "--filter", f"name=^{PREFIX}-", "--format", "{{.Names}}", check=False).stdout
    return sorted(out.split())


def sinfo() -> str:
    proc = _docker("exec", CONTROLLER, "sinfo", "-h", "-N", "-o", "%N %t", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def wait_ready(timeout: int = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = dict(line.split() for line in sinfo().splitlines() if line.strip())
        if set(states) == {"node1", "node2"} and all(s.startswith(("idle", "mix", "alloc")) for s in states.values()):
            return
        time.sleep(2)
    raise RunError(f"the cluster's nodes did not become idle within {timeout} s (sinfo: {sinfo() or 'no answer'}); "
                   "see: docker logs mpikit-node1; make cluster-down && make cluster-up")


def up() -> None:
    """Start the cluster (idempotent): image, network, key, three nodes."""
    docker.require_engine("make cluster-up")
    if len(running()) == len(NODES) and sinfo():
        say("cluster: already up: " + ", ".join(running()))
        wait_ready()
        return
    down(quiet=True)
    apptainer.ensure_helper()  # the base image and the apptainer stage, cached
    say(f"cluster: building {NODE_IMAGE} (Slurm, munge, PMIx, Apptainer; about a minute the first time)")
    docker.build_quietly(NODE_IMAGE, "slurm-node", {"OPENMPI_DEB": stack_pins(NODE_BASE)["OPENMPI_DEB"]})
    say("cluster: network, and a munge key made for this cluster only")
    _docker("network", "create", "--internal", NETWORK)
    _docker("volume", "create", KEY_VOLUME)
    _docker("run", "--rm", "--entrypoint", "sh", "-v", f"{KEY_VOLUME}:/key", NODE_IMAGE, "-c",
            "dd if=/dev/urandom of=/key/munge.key bs=1024 count=1 2>/dev/null")
    for name, (host, role) in NODES.items():
        say(f"cluster: starting {host} ({role})")
        # --init: an init that reaps orphaned processes, as on a real node (slurmd as PID 1 does
        # not, and an unreaped rank keeps its job COMPLETING forever).
        _docker("run", "-d", "--init", "--name", name, "--hostname", host, "--network", NETWORK,
                *apptainer.HELPER_OPTIONS, f"--shm-size={runtimes.DOCKER_SHM_SIZE}",
                "-v", f"{KEY_VOLUME}:/run/munge-key:ro",
                "-v", f"{HOME_VOLUME}:/home/{USER}",
                "-v", f"{ROOT}:{SHARED}:ro", NODE_IMAGE, role)
    wait_ready()
    say("cluster: up: slurmctld + node1 + node2 (make cluster-shell; make run-scatter RUNTIME=cluster)")


def down(quiet: bool = False) -> None:
    """Remove every container, the network and the volumes the cluster made."""
    names = _docker("ps", "-aq", "--filter", f"name=^{PREFIX}-", check=False).stdout.split()
    if names:
        _docker("rm", "-f", *names)
    _docker("network", "rm", NETWORK, check=False)
    _docker("volume", "rm", KEY_VOLUME, HOME_VOLUME, check=False)
    if not quiet:
        say("cluster: down (containers, network, munge key and home volume removed)")


def require_up() -> None:
    docker.require_engine("RUNTIME=cluster")
    if len(running()) != len(NODES) or not sinfo():
        raise RunError("the test cluster is not running; start it with: make cluster-up")


def login_argv(*command: str, env: tuple[str, ...] = ()) -> list[str]:
    """COMMAND on the controller (the login node), as the user, in /shared."""
    options = [arg for var in env for arg in ("-e", var)]
    return [docker.client() or "docker", "exec", "-u", USER, "-w", SHARED, *options, CONTROLLER, *command]


def srun_argv(np: int, sif: str, script: str, args: list[str], mpi: str = "pmix",
              nodes: int | None = None) -> list[str]:
    """The hybrid model: the host Slurm starts NP ranks through PMIx, each in the SIF."""
    return login_argv("srun", f"--nodes={nodes or min(np, 2)}", f"--ntasks={np}", f"--mpi={mpi}",
                      "apptainer", "exec", *runtimes.APPTAINER_RANK_OPTIONS, sif, *runtimes.RANK_PYTHON,
                      script, *args)


def batch_argv(np: int, sif: str, script: str, args: list[str]) -> list[str]:
    """sbatch slurm/example.sbatch, waiting for the job; the output file lands in the shared home."""
    return login_argv("sbatch", "--wait", f"--ntasks={np}", f"--nodes={min(np, 2)}",
                      f"--output=/home/{USER}/mpi4py-kit-%j.out", "--parsable",
                      f"{SHARED}/slurm/example.sbatch", script, *args, env=(f"SIF={sif}",))


def job_output(job_id: str) -> str:
    return _docker(*login_argv("cat", f"/home/{USER}/mpi4py-kit-{job_id}.out")[1:], check=False).stdout


def live_ranks(expected: int) -> list[int] | None:
    """Global task ids (ranks) of the running job steps on the compute nodes. A node's
    listing is occasionally empty for a moment, so fewer than `expected` is asked again."""
    ranks: set[int] = set()
    for _attempt in range(3):
        for name, (_, role) in NODES.items():
            if role != "compute":
                continue
            proc = _docker("exec", name, "scontrol", "listpids", check=False)
            for fields in (line.split() for line in proc.stdout.splitlines()[1:]):
                # PID JOBID STEPID LOCALID GLOBALID; batch and extern steps carry no rank.
                if len(fields) == 5 and fields[2].isdigit() and fields[4].isdigit():
                    ranks.add(int(fields[4]))
        if len(ranks) >= expected:
            break
        time.sleep(0.5)
    return sorted(ranks)
