"""The multi-node path on a real Slurm cluster (containers): srun --mpi=pmix
starts NP ranks in the SIF across 2 nodes, and they form ONE communicator."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import REQUIRE_CONTAINERS, explain, kit, make
from mpikit import cluster as cluster_module
from mpikit import docker
from mpikit.checks import check_run
from mpikit.config import EXAMPLES

SCATTER_SIZE = 999_983


@pytest.fixture(scope="module")
def cluster(sif: str):
    problem = docker.engine_problem()
    if problem:
        if REQUIRE_CONTAINERS:
            pytest.fail(f"REQUIRE_CONTAINERS=1 but there is no Docker engine: {problem}")
        pytest.skip(f"no Docker engine for the test cluster ({problem})")
    proc = make("cluster-up", timeout=900)
    assert proc.returncode == 0, explain(proc, "make cluster-up")
    again = make("cluster-up", timeout=300)
    assert again.returncode == 0 and "already up" in again.stderr, explain(again, "make cluster-up (again)")
    yield sif
    proc = make("cluster-down", timeout=300)
    assert proc.returncode == 0, explain(proc, "make cluster-down")
    # Once down, the cluster runtime says how to start it instead of failing obscurely.
    proc = make("run-rank", "RUNTIME=cluster", timeout=60)
    assert proc.returncode != 0 and "make cluster-up" in proc.stderr, explain(proc, "make run-rank RUNTIME=cluster")


@pytest.mark.parametrize("np", [2, 4, 5])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_across_two_nodes(name: str, np: int, cluster: str) -> None:
    args = f"--size {SCATTER_SIZE} --seed {np}" if name == "scatter" else ""
    proc = kit("run", name, "--np", str(np), "--runtime", "cluster", "--sif", cluster, "--args", args,
               timeout=300)
    command = f"make run-{name} NP={np} RUNTIME=cluster SIF={cluster}" + (f" ARGS='{args}'" if args else "")
    verdict = check_run(name, proc.stdout, proc.stderr, proc.returncode, np,
                        SCATTER_SIZE if name == "scatter" else None)
    assert verdict.ok, "; ".join(verdict.problems) + explain(proc, command)
    assert "--mpi=pmix" in proc.stderr and "apptainer exec" in proc.stderr, explain(proc, command)
    if name == "rank":
        hosts = set(re.findall(r"^rank: \d+ has PID: \d+ on host: (\S+)$", proc.stdout, re.M))
        assert hosts == {"node1", "node2"}, f"ranks ran on {hosts}, expected both nodes" + explain(proc, command)


def test_batch_job_completes_with_the_expected_output(cluster: str) -> None:
    """make cluster-batch: sbatch --wait the shipped batch script, then read its output file."""
    proc = kit("batch", "--script", "examples/rank.py", "--np", "4", "--sif", cluster, timeout=300)
    command = f"make cluster-batch SCRIPT=examples/rank.py NP=4 SIF={cluster}"
    assert proc.returncode == 0, explain(proc, command)
    assert re.search(r"^job \d+: 4 ranks on node\[1-2\]", proc.stdout, re.M), explain(proc, command)
    verdict = check_run("rank", proc.stdout, proc.stderr, proc.returncode, 4)
    assert verdict.ok, "; ".join(verdict.problems) + explain(proc, command)


def in_cluster(*command: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """A command on the cluster's login node, as its user, in /shared (this repository)."""
    return subprocess.run(cluster_module.login_argv(*command), capture_output=True, text=True, timeout=timeout)


def test_auto_picks_srun_inside_an_allocation(cluster: str) -> None:
    """On the cluster, as a user would: salloc, then make; auto chooses srun + Apptainer."""
    proc = in_cluster("salloc", "--nodes=2", "--ntasks=4", "make", "--no-print-directory", "run-rank",
                      f"SIF={cluster}")
    command = f"salloc --nodes=2 --ntasks=4 make run-rank SIF={cluster}   (on the cluster)"
    assert "runtime: srun (auto: inside Slurm allocation" in proc.stderr, explain(proc, command)
    verdict = check_run("rank", proc.stdout, proc.stderr, proc.returncode, 4)
    assert verdict.ok, "; ".join(verdict.problems) + explain(proc, command)
    hosts = set(re.findall(r"^rank: \d+ has PID: \d+ on host: (\S+)$", proc.stdout, re.M))
    assert hosts == {"node1", "node2"}, explain(proc, command)


def test_apptainer_runtime_on_one_node(cluster: str) -> None:
    proc = in_cluster("make", "--no-print-directory", "run-bcast", "RUNTIME=apptainer", "NP=3", f"SIF={cluster}")
    command = f"make run-bcast RUNTIME=apptainer NP=3 SIF={cluster}   (on the cluster's login node)"
    assert "apptainer exec" in proc.stderr and "mpiexec" in proc.stderr, explain(proc, command)
    verdict = check_run("bcast", proc.stdout, proc.stderr, proc.returncode, 3)
    assert verdict.ok, "; ".join(verdict.problems) + explain(proc, command)
