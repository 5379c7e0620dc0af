"""The newest Slurm: the same test cluster built from Debian forky (Slurm 26.05,
PMIx 7.0.0~rc1), started after the default cluster is down (one runs at a
time). The short suite: rank and scatter with both images, and the bind model."""

from __future__ import annotations

import re

import pytest
from conftest import assert_example, explain, kit, make, need_engine
from mpikit import cluster as cluster_module

pytestmark = pytest.mark.last(2)
SCATTER_SIZE = 999_983


@pytest.fixture(scope="module")
def forky(sif: str, sif_bookworm: str):
    need_engine("the forky cluster")
    make("cluster-down", timeout=300)
    proc = make("cluster-up", "CLUSTER=forky", timeout=2400)
    assert proc.returncode == 0, explain(proc, "make cluster-up CLUSTER=forky")
    yield {"trixie": sif, "bookworm": sif_bookworm}
    make("cluster-down", timeout=300)


def test_one_cluster_at_a_time(forky: dict) -> None:
    proc = make("cluster-up", timeout=120)
    assert proc.returncode == 2 and "the forky cluster is up, and one runs at a time" in proc.stderr, explain(
        proc, "make cluster-up   (while forky is up)")


def test_doctor_prints_the_slurm_and_pmix_and_the_fit(forky: dict) -> None:
    proc = make("doctor", "RUNTIME=cluster", f"SIF={forky['trixie']}", timeout=300)
    command = f"make doctor RUNTIME=cluster SIF={forky['trixie']}"
    assert re.search(r"info +forky cluster: Slurm 26\.05\.\S+, PMIx 7\.0\.0~rc1", proc.stdout), explain(proc, command)
    assert re.search(r"ok +Slurm PMIx \(pmix_v\d+\) and the image's PMIx 5\.0\.7", proc.stdout), explain(proc, command)
    assert cluster_module.current() == "forky"


@pytest.mark.parametrize("image", ["trixie", "bookworm"])
@pytest.mark.parametrize("name", ["rank", "scatter"])
def test_both_images_under_slurm_26(name: str, image: str, forky: dict) -> None:
    args = f"--size {SCATTER_SIZE} --seed 4" if name == "scatter" else ""
    proc = kit("run", name, "--np", "4", "--runtime", "cluster", "--sif", forky[image], "--args", args,
               "--timeout", "240", timeout=300)
    command = f"make run-{name} NP=4 RUNTIME=cluster SIF={forky[image]}   (forky cluster)"
    assert_example(name, proc, 4, command, SCATTER_SIZE if name == "scatter" else None, hosts={"node1", "node2"})


@pytest.mark.parametrize("site", ["/opt/site/mpich", "/opt/site/openmpi"])
@pytest.mark.parametrize("name", ["rank", "scatter"])
def test_the_bind_model_under_slurm_26(name: str, site: str, forky: dict) -> None:
    args = f"--size {SCATTER_SIZE} --seed 4" if name == "scatter" else ""
    proc = kit("run", name, "--np", "4", "--runtime", "cluster", "--sif", forky["trixie"], "--host-mpi", site,
               "--args", args, "--timeout", "240", timeout=300)
    command = f"make run-{name} NP=4 RUNTIME=cluster HOST_MPI={site} SIF={forky['trixie']}   (forky cluster)"
    assert_example(name, proc, 4, command, SCATTER_SIZE if name == "scatter" else None, hosts={"node1", "node2"})
    assert f"bind model: the site's MPI {site}" in proc.stderr, explain(proc, command)
