"""make sif: the Apptainer twin builds unprivileged through spython, runs its
%test, carries the pins as labels, shows its %help and runs the examples."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REQUIRE_CONTAINERS, ROOT, explain, make
from mpikit import apptainer, config, docker
from mpikit.checks import check_run

SIF = "build/test/mpi.sif"


def in_sif(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """apptainer ARGS on the host's Apptainer, else inside the helper container."""
    host = apptainer.host_apptainer()
    cmd = [host, *args] if host else apptainer.helper_argv(*args)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sif(docker_image: str) -> str:
    if apptainer.host_apptainer() is None and docker.engine_problem():
        if REQUIRE_CONTAINERS:
            pytest.fail("REQUIRE_CONTAINERS=1 but there is neither Apptainer nor a Docker engine")
        pytest.skip("neither Apptainer nor a Docker engine to build a SIF with")
    (ROOT / "build" / "test").mkdir(parents=True, exist_ok=True)
    proc = make("sif", f"SIF={SIF}", timeout=1800)
    assert proc.returncode == 0, explain(proc, f"make sif SIF={SIF}")
    assert "Running testscript" in proc.stdout + proc.stderr, "the definition's %test did not run"
    assert (ROOT / SIF).is_file()
    return SIF


def test_labels_carry_the_pinned_versions(sif: str) -> None:
    proc = in_sif("inspect", "--json", "--labels", sif)
    assert proc.returncode == 0, explain(proc, f"apptainer inspect --json --labels {sif}")
    data = json.loads(proc.stdout)
    labels = data.get("data", {}).get("attributes", {}).get("labels", data)
    for key, value in config.stack_labels(config.default_base()).items():
        assert labels.get(key) == value, f"label {key}: {labels.get(key)!r} != {value!r}"


def test_run_help_shows_the_cluster_command(sif: str) -> None:
    proc = in_sif("run-help", sif)
    assert "srun --ntasks=4 --mpi=pmix apptainer exec mpi.sif" in proc.stdout, \
        explain(proc, f"apptainer run-help {sif}")


def test_the_scatter_example_runs_in_the_sif(sif: str) -> None:
    proc = in_sif("exec", sif, "mpiexec", "--oversubscribe", "-n", "3", "python",
                  "examples/scatter_gather.py", "--size", "1001", "--seed", "3")
    verdict = check_run("scatter", proc.stdout, proc.stderr, proc.returncode, 3, 1001)
    assert verdict.ok, "; ".join(verdict.problems) + explain(proc, f"apptainer exec {sif} mpiexec -n 3 ...")


def test_bad_sif_names_are_refused() -> None:
    proc = make("sif", "SIF=mpi.img", timeout=60)
    assert proc.returncode == 2 and "must name a .sif file" in proc.stderr, explain(proc, "make sif SIF=mpi.img")
    proc = make("sif", "SIF=no/such/dir/mpi.sif", timeout=60)
    assert proc.returncode == 2 and "does not exist" in proc.stderr, explain(proc, "make sif SIF=no/such/dir/mpi.sif")
