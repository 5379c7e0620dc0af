"""The test Slurm cluster in containers: controller + 2 compute nodes, munge
with a key made per cluster, PMIx, Apptainer, and the repository shared at
/shared (bind-mounted read-only, like a cluster file system). No port is
published to the host. Launch lines come from launch.py; this module only
says where they run (the login node) and manages the containers."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import apptainer, config, docker, launch, venv
from .config import CLUSTERS, REQUIREMENTS, ROOT, python_pins, stack_pins
from .ui import RunError, UsageError, say

PREFIX = "mpikit"
NETWORK = f"{PREFIX}-net"
KEY_VOLUME = f"{PREFIX}-munge"
HOME_VOLUME = f"{PREFIX}-home"  # the user's home, shared by every node as on a real cluster
SCRATCH_VOLUME = f"{PREFIX}-scratch"  # /scratch: shared by every node, writable by the user, the jobs' TMPDIR
VOLUMES = (KEY_VOLUME, HOME_VOLUME, SCRATCH_VOLUME)
DEFAULT_CLUSTER = "trixie"
# Clusters whose nodes also carry the image's Open MPI outside any container: make bench's baseline.
BASELINE_CLUSTER = "trixie"
LABEL = "io.github.mpi4py-kit.cluster"
NODE_DIR = ROOT / "scripts" / "cluster"
CONTEXT = ROOT / "build" / "cluster"  # the node image's build context, staged by stage_context()
CONTROLLER = f"{PREFIX}-slurmctld"
NODES = {CONTROLLER: ("slurmctld", "controller"),
         f"{PREFIX}-node1": ("node1", "compute"),
         f"{PREFIX}-node2": ("node2", "compute")}
COMPUTE = [name for name, (_, role) in NODES.items() if role == "compute"]
USER = "hpcuser"
SHARED = "/shared"


def cpus_per_node() -> int:
    """The CPUs each compute node declares to Slurm (slurm.conf's NodeName line); they share this machine's."""
    found = re.search(r"^NodeName=\S+ CPUs=(\d+)", (NODE_DIR / "slurm.conf").read_text(), re.M)
    if not found:
        raise RunError(f"{NODE_DIR / 'slurm.conf'} declares no CPUs= on its NodeName line")
    return int(found.group(1))


def running() -> list[str]:
    """The cluster's containers that run: its own names only (other kit containers share the prefix)."""
    out = docker.run("ps", "--filter", f"name=^{PREFIX}-", "--format", "{{.Names}}", check=False).stdout
    return sorted(name for name in out.split() if name in NODES)


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


def shared_source() -> str | None:
    """The checkout the running cluster's nodes see at /shared (None: no controller)."""
    proc = docker.run("inspect", "--format", '{{range .Mounts}}{{if eq .Destination "' + SHARED + '"}}{{.Source}}'
                      "{{end}}{{end}}", CONTROLLER, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def shares_another_checkout() -> str | None:
    """The other checkout a running cluster shares at /shared (a cluster started from another clone),
    or None when it shares this one: its nodes would run that checkout's files, not these."""
    source = shared_source()
    return source if source and Path(source).resolve() != ROOT.resolve() else None


def node_image(name: str) -> str:
    return f"mpi4py-kit-slurm:{name}"


def current() -> str | None:
    """Which cluster is up (its nodes' Debian), from the label cluster-up put on the controller."""
    proc = docker.run("inspect", "--format", f'{{{{ index .Config.Labels "{LABEL}" }}}}', CONTROLLER, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def stage_context() -> Path:
    """The node image's build context: its own folder, without-rocm.sh, and the site MPIs' wheels
    (requirements/site.txt, hash-checked; downloaded once)."""
    wheels = CONTEXT / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for path in NODE_DIR.iterdir():
        shutil.copy2(path, CONTEXT / path.name)
    shutil.copy2(ROOT / "scripts" / "image" / "without-rocm.sh", CONTEXT / "without-rocm.sh")
    # A wheel's file name spells its project with underscores (impi-rt: impi_rt-2021.18.1-...whl).
    if not all(list(wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
               for name, version in python_pins("site.txt").items()):
        say("cluster: downloading the site MPIs' wheels (requirements/site.txt, hash-checked)")
        pip = [str(venv.ensure(venv.NATIVE) / "bin" / "python"), "-m", "pip"]
        cmd = [*pip, "download", "--require-hashes", "-q", "--no-deps", "--only-binary", ":all:",
               "--platform", "manylinux_2_28_x86_64", "-r", str(REQUIREMENTS / "site.txt"), "-d", str(wheels)]
        if subprocess.run(cmd).returncode != 0:
            raise RunError(f"downloading the site MPIs failed; rerun to see why: {' '.join(cmd)}")
    return CONTEXT


def build_images(name: str = DEFAULT_CLUSTER) -> str:
    """The images the cluster `name` runs, built or found up to date in the cache: the Apptainer helper (its
    base and Apptainer) and the node image; returns the node image's tag."""
    apptainer.ensure_helper(name)  # the base image and Apptainer, cached
    image = node_image(name)
    say(f"cluster: building {image} ({CLUSTERS[name]}, munge, Apptainer, the site MPIs; a few minutes the "
        "first time)")
    pin = stack_pins(name)["OPENMPI_DEB"] if name == BASELINE_CLUSTER else ""
    docker.build_quietly(image, NODE_DIR / "Dockerfile", context=stage_context(),
                         build_args={"BASE": name, "OPENMPI_DEB": pin})
    return image


def up(name: str = DEFAULT_CLUSTER) -> None:
    """Start the cluster `name` (idempotent): images, network, key, volumes, three nodes."""
    docker.require_engine("make cluster-up")
    other = shares_another_checkout() if is_up() else None
    if other:
        say(f"cluster: the running cluster shares another checkout ({other}) at {SHARED}: starting it again "
            f"for this one ({ROOT})")
    elif is_up():
        if current() not in (None, name):
            raise UsageError(f"the {current()} cluster is up, and one runs at a time: make cluster-down, then "
                             f"make cluster-up CLUSTER={name}")
        say(f"cluster: already up ({name}): " + ", ".join(running()))
        wait_ready()
        return
    down(quiet=True)
    image = build_images(name)
    say("cluster: network, volumes, and a munge key made for this cluster only")
    docker.run("network", "create", "--internal", NETWORK)
    for volume in VOLUMES:
        docker.run("volume", "create", volume)
    docker.run("run", "--rm", "--entrypoint", "sh", "-v", f"{KEY_VOLUME}:/key", image, "-c",
               "dd if=/dev/urandom of=/key/munge.key bs=1024 count=1 2>/dev/null")
    sandboxes = sandbox_options(user_uid())
    for container, (host, role) in NODES.items():
        say(f"cluster: starting {host} ({role})")
        # --init: an init that reaps orphaned processes, as on a real node (slurmd as PID 1 does
        # not, and an unreaped rank keeps its job COMPLETING forever).
        docker.run("run", "-d", "--init", "--name", container, "--hostname", host, "--network", NETWORK,
                   "--label", f"{LABEL}={name}", *sandboxes,
                   *apptainer.HELPER_OPTIONS, f"--shm-size={launch.DOCKER_SHM_SIZE}",
                   "-v", f"{KEY_VOLUME}:/run/munge-key:ro",
                   "-v", f"{HOME_VOLUME}:/home/{USER}",
                   "-v", f"{SCRATCH_VOLUME}:/scratch",
                   "-v", f"{ROOT}:{SHARED}:ro", image, role)
    wait_ready()
    say(f"cluster: up ({name}: {CLUSTERS[name]}): slurmctld + node1 + node2 (make cluster-shell; "
        "make run-scatter RUNTIME=cluster)")


def user_uid() -> int:
    """The cluster user's uid, as the helper image the nodes start from creates it (scripts/apptainer/Dockerfile)."""
    dockerfile = ROOT / "scripts" / "apptainer" / "Dockerfile"
    found = re.search(rf"useradd\b[^\n]*--uid (\d+)[^\n]*\b{USER}\b", dockerfile.read_text())
    if not found:
        raise RunError(f"{dockerfile} creates no user {USER} with --uid")
    return int(found.group(1))


def sandbox_options(uid: int) -> list[str]:
    """docker run's options for a node's sandbox folder: in memory, the user's own (scripts/launch/apptainer-rank.sh's
    default, /tmp/mpi4py-kit-UID, where APPTAINER_MODE=sandbox and join unpack each SIF, 326 MB and 8,700 files
    for mpi.sif). In the container's own layer, a full test run's sandboxes (1.6 GB and 42,000 files a node) took
    cluster-down 30 to 43 s to delete; in memory they go with the container. Only this folder: Open MPI's session
    files stay on the node's disk-backed /tmp, as before."""
    return ["--tmpfs", f"/tmp/mpi4py-kit-{uid}:rw,exec,nosuid,nodev,uid={uid},gid={uid},mode=0700"]


def down(quiet: bool = False) -> None:
    """Remove every container, the network and the volumes the cluster made."""
    found = docker.run("ps", "-a", "--filter", f"name=^{PREFIX}-", "--format", "{{.Names}}", check=False).stdout
    names = [name for name in found.split() if name in NODES]
    if names:
        docker.run("rm", "-f", *names)
    docker.run("network", "rm", NETWORK, check=False)
    docker.run("volume", "rm", *VOLUMES, check=False)
    if quiet:
        return
    left = [f"container {name}" for name in docker.run("ps", "-a", "--filter", f"name=^{PREFIX}-", "--format",
                                                      "{{.Names}}", check=False).stdout.split() if name in NODES]
    left += [f"network {NETWORK}"] if docker.run("network", "inspect", NETWORK, check=False).returncode == 0 else []
    volumes = set(docker.run("volume", "ls", "--format", "{{.Name}}", check=False).stdout.split())
    left += [f"volume {v}" for v in VOLUMES if v in volumes]
    if left:
        raise RunError(f"cluster-down could not remove {', '.join(left)}; see: docker ps -a, docker volume ls "
                       "(a container still using a volume keeps it)")
    say("cluster: down (containers, network, munge key, home and scratch volumes removed)")


def versions() -> str:
    """The running cluster's Slurm and PMIx, as its packages say."""
    proc = docker.run("exec", CONTROLLER, "dpkg-query", "-W", "-f", "${Package} ${Version}\n", "slurmctld",
                      "libpmix2*", check=False)
    found = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line and line.split(" ", 1)[1])
    slurm = found.get("slurmctld", "?")
    pmix = next((f"PMIx {v}" for k, v in found.items() if k.startswith("libpmix2")), "no PMIx")
    return f"{current() or '?'} cluster: Slurm {slurm}, {pmix}"


def inspect_nodes() -> dict[str, tuple[bool, str | None]] | None:
    """Each of the cluster's containers that exists: (running, the source of its /shared mount), in one `docker
    inspect` (a make run on the cluster asked docker ps, docker exec sinfo and docker inspect before: 0.16 s of
    its 1.6 s). None: the engine gave no answer at all."""
    mount = '{{range .Mounts}}{{if eq .Destination "' + SHARED + '"}}{{.Source}}{{end}}{{end}}'
    try:
        proc = subprocess.run([docker.command(), "inspect", "--format",
                               "{{.Name}}|{{.State.Running}}|{{.Id}}|" + mount, *NODES],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = {}
    for line in proc.stdout.splitlines():
        name, state, ident, source = [*line.split("|", 3), "", "", ""][:4]
        found[name.lstrip("/")] = (state == "true", source or None)
        if name.lstrip("/") == CONTROLLER:
            _seen["controller"] = ident
    return found if found or "No such" in proc.stderr else None


_seen: dict[str, str] = {}  # what this command's require_up saw: the controller container's ID
PLUGINS = config.CACHE / "cluster-mpi-list"  # srun --mpi=list on the login node: "CONTROLLER-ID plugin ..."


def login_plugins(ask: Callable[[], list[str]]) -> list[str]:
    """srun --mpi=list on the login node (`ask` asks it), kept for the controller container it came from: a
    running cluster's Slurm does not change, and asking through docker exec cost every make run 0.09 s. Asked
    again for another container (a cluster started again) or when this command has not seen the controller."""
    ident = _seen.get("controller")
    if ident:
        try:
            kept, *plugins = PLUGINS.read_text().split()
            if kept == ident and plugins:
                return plugins
        except (OSError, ValueError):
            pass
    plugins = ask()
    if ident and plugins:
        try:
            PLUGINS.parent.mkdir(parents=True, exist_ok=True)
            PLUGINS.write_text(" ".join([ident, *plugins]) + "\n")
        except OSError:
            pass  # a cache it could not write: asked again next time
    return plugins


def require_up() -> None:
    """The cluster runs, for this checkout. Its containers running is enough: each one's main process is
    slurmctld or slurmd (node-entry.sh), and cluster-up waited until both nodes answered sinfo."""
    found = inspect_nodes()
    if found is None:
        docker.require_engine("RUNTIME=cluster")  # says why the engine did not answer
        found = {}
    if not all(found.get(name, (False, None))[0] for name in NODES):
        raise RunError("the test cluster is not running; start it with: make cluster-up")
    source = found[CONTROLLER][1]
    if source and Path(source).resolve() != ROOT.resolve():
        raise RunError(f"the test cluster shares another checkout ({source}) at {SHARED}, not this one ({ROOT}): "
                       "make cluster-up here starts it for this one")


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


def stop_instances() -> list[list[str]]:
    """Stop the user's Apptainer instances on every compute node (APPTAINER_MODE=instance, after a
    timeout or Ctrl-C): an instance is its own session, so stopping the job's processes misses it."""
    return [launch.docker_exec(node, ["apptainer", "instance", "stop", "--all"], client=docker.command(), user=USER)
            for node in COMPUTE]


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
