"""The test Slurm cluster in containers: controller + 2 compute nodes, munge
with a key made per cluster, PMIx, Apptainer, and the repository shared at
/shared (bind-mounted read-only, like a cluster file system). No port is
published to the host. Launch lines come from launch.py; this module only
says where they run (the login node) and manages the containers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence

from . import apptainer, docker, launch
from .config import ROOT, stack_pins
from .ui import RunError, say

PREFIX = "mpikit"
NETWORK = f"{PREFIX}-net"
KEY_VOLUME = f"{PREFIX}-munge"
HOME_VOLUME = f"{PREFIX}-home"  # the user's home, shared by every node as on a real cluster
NODE_BASE = "trixie"  # the nodes' Debian: Slurm 24.11 with PMIx 5
NODE_IMAGE = f"mpi4py-kit-slurm:{NODE_BASE}"
NODE_DOCKERFILE = ROOT / "scripts" / "cluster" / "Dockerfile"
CONTROLLER = f"{PREFIX}-slurmctld"
NODES = {CONTROLLER: ("slurmctld", "controller"),
         f"{PREFIX}-node1": ("node1", "compute"),
         f"{PREFIX}-node2": ("node2", "compute")}
COMPUTE = [name for name, (_, role) in NODES.items() if role == "compute"]
USER = "hpcuser"
SHARED = "/shared"


def running() -> list[str]:
    out = docker.run("ps", "--filter", f"name=^{PREFIX}-", "--format", "{{.Names}}", check=False).stdout
    return sorted(out.split())


def sinfo() -> str:
    proc = docker.run("exec", CONTROLLER, "sinfo", "-h", "-N", "-o", "%N %t", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def nodes_ready(sinfo_text: str) -> bool:
    """Both compute nodes idle (or busy) in `sinfo -h -N -o '%N %t'`."""
    states = dict(line.split() for line in sinfo_text.splitlines() if len(line.split()) == 2)
    return set(states) == {"node1", "node2"} and all(s.startswith(("idle", "mix", "alloc")) for s in states.values())


def wait_ready(timeout: int = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nodes_ready(sinfo()):
            return
        time.sleep(2)
    raise RunError(f"the cluster's nodes did not become idle within {timeout} s (sinfo: {sinfo() or 'no answer'}); "
                   f"see: docker logs {COMPUTE[0]}; make cluster-down && make cluster-up")


def is_up() -> bool:
    return len(running()) == len(NODES) and bool(sinfo())


def up() -> None:
    """Start the cluster (idempotent): image, network, key, three nodes."""
    docker.require_engine("make cluster-up")
    if is_up():
        say("cluster: already up: " + ", ".join(running()))
        wait_ready()
        return
    down(quiet=True)
    apptainer.ensure_helper(NODE_BASE)  # the base image and Apptainer, cached
    say(f"cluster: building {NODE_IMAGE} (Slurm, munge, PMIx, Apptainer; about a minute the first time)")
    docker.build_quietly(NODE_IMAGE, NODE_DOCKERFILE, context=ROOT / "scripts",
                         build_args={"BASE": NODE_BASE, "OPENMPI_DEB": stack_pins(NODE_BASE)["OPENMPI_DEB"]})
    say("cluster: network, and a munge key made for this cluster only")
    docker.run("network", "create", "--internal", NETWORK)
    docker.run("volume", "create", KEY_VOLUME)
    docker.run("run", "--rm", "--entrypoint", "sh", "-v", f"{KEY_VOLUME}:/key", NODE_IMAGE, "-c",
               "dd if=/dev/urandom of=/key/munge.key bs=1024 count=1 2>/dev/null")
    for name, (host, role) in NODES.items():
        say(f"cluster: starting {host} ({role})")
        # --init: an init that reaps orphaned processes, as on a real node (slurmd as PID 1 does
        # not, and an unreaped rank keeps its job COMPLETING forever).
        docker.run("run", "-d", "--init", "--name", name, "--hostname", host, "--network", NETWORK,
                   *apptainer.HELPER_OPTIONS, f"--shm-size={launch.DOCKER_SHM_SIZE}",
                   "-v", f"{KEY_VOLUME}:/run/munge-key:ro",
                   "-v", f"{HOME_VOLUME}:/home/{USER}",
                   "-v", f"{ROOT}:{SHARED}:ro", NODE_IMAGE, role)
    wait_ready()
    say("cluster: up: slurmctld + node1 + node2 (make cluster-shell; make run-scatter RUNTIME=cluster)")


def down(quiet: bool = False) -> None:
    """Remove every container, the network and the volumes the cluster made."""
    names = docker.run("ps", "-aq", "--filter", f"name=^{PREFIX}-", check=False).stdout.split()
    if names:
        docker.run("rm", "-f", *names)
    docker.run("network", "rm", NETWORK, check=False)
    docker.run("volume", "rm", KEY_VOLUME, HOME_VOLUME, check=False)
    if not quiet:
        say("cluster: down (containers, network, munge key and home volume removed)")


def require_up() -> None:
    docker.require_engine("RUNTIME=cluster")
    if not is_up():
        raise RunError("the test cluster is not running; start it with: make cluster-up")


def on_login(command: Sequence[str], env: Sequence[str] = (), interactive: bool = False) -> list[str]:
    """COMMAND on the controller (the login node), as the user, in /shared."""
    return launch.docker_exec(CONTROLLER, command, client=docker.command(), user=USER, workdir=SHARED,
                              env=env, interactive=interactive)


def on_node(node: str, command: Sequence[str], user: str | None = USER) -> list[str]:
    return launch.docker_exec(node, command, client=docker.command(), user=user, workdir=SHARED)


def shared_path(path) -> str:
    """Where a file of this repository is on the cluster's nodes."""
    return f"{SHARED}/{path.relative_to(ROOT).as_posix()}"


def cancel_all() -> list[str]:
    return launch.docker_exec(CONTROLLER, ["scancel", "-u", USER], client=docker.command())


def job_output(job_id: str) -> str:
    proc = subprocess.run(on_login(["cat", f"/home/{USER}/mpi4py-kit-{job_id}.out"]), capture_output=True, text=True)
    return proc.stdout


def parse_listpids(text: str) -> set[int]:
    """Global task ids (ranks) in `scontrol listpids` output: PID JOBID STEPID LOCALID GLOBALID;
    the batch and extern steps carry no rank."""
    ranks = set()
    for fields in (line.split() for line in text.splitlines()[1:]):
        if len(fields) == 5 and fields[2].isdigit() and fields[4].isdigit():
            ranks.add(int(fields[4]))
    return ranks


def live_ranks(expected: int) -> list[int] | None:
    """Ranks of the running job steps on the compute nodes. A node's listing is
    occasionally empty for a moment, so fewer than `expected` is asked again."""
    ranks: set[int] = set()
    for _attempt in range(3):
        for name in COMPUTE:
            ranks |= parse_listpids(docker.run("exec", name, "scontrol", "listpids", check=False).stdout)
        if len(ranks) >= expected:
            break
        time.sleep(0.5)
    return sorted(ranks)
