"""The run lines the docs teach (each example's docstring, rendered by
runtimes.user_lines and held equal to it by the unit tests) run as written:
natively with the kit's venv on PATH, with Docker, and on the test cluster's
login node with Apptainer and srun (the SIF named mpi.sif there is the tests')."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import ROOT, assert_example
from mpikit import cluster as cluster_module
from mpikit import config, runtimes, venv
from mpikit.config import EXAMPLES

NAMES = ["rank", "p2p"]
IMAGE = f"{config.image_name()}:{config.default_base()}"


def lines(name: str) -> dict[str, str]:
    return runtimes.user_lines(EXAMPLES[name].file, 4, IMAGE, f"run-{name}")


def shell(line: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)


@pytest.mark.parametrize("name", NAMES)
def test_the_mpiexec_line(name: str) -> None:
    """With the kit's venv on PATH, as `make venv` leaves it (and Open MPI's root override when root)."""
    bin_dir = venv.ensure(venv.NATIVE) / "bin"
    env = {**os.environ, **runtimes.root_fixes(os.geteuid()), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    line = lines(name)["mpiexec"]
    assert_example(name, shell(line, env), 4, line)


@pytest.mark.parametrize("name", NAMES)
def test_the_docker_line(name: str, docker_image: str) -> None:
    line = lines(name)["docker"]
    assert_example(name, shell(line), 4, line)


@pytest.mark.parametrize("kind", ["apptainer", "srun"])
@pytest.mark.parametrize("name", NAMES)
def test_the_apptainer_and_srun_lines_on_the_cluster(name: str, kind: str, cluster: str) -> None:
    line = lines(name)[kind].replace("mpi.sif", cluster)
    proc = subprocess.run(cluster_module.on_login(["bash", "-c", line]), capture_output=True, text=True, timeout=300)
    assert_example(name, proc, 4, f"{line}   (on the cluster's login node)")
