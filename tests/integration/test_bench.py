"""make bench QUICK=1, make bench-curve QUICK=1 and make bench-build QUICK=1: every
scenario and mode runs and the results are written, as JSON and PNG plots. Timings vary from run to run
and are never asserted; the structure users and docs/performance.md read is."""

from __future__ import annotations

import json

import pytest
from conftest import explain, make
from mpikit import docker, environment, launch
from mpikit.bench import stats

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory):
    """The bench writes its results here (MPIKIT_RESULTS), never into the working tree's results/."""
    return tmp_path_factory.mktemp("results")


def test_quick_bench_measures_every_scenario(cluster: str, results) -> None:
    proc = make("bench", "QUICK=1", f"SIF={cluster}", timeout=1800, MPIKIT_RESULTS=str(results))
    command = f"make bench QUICK=1 SIF={cluster}"
    assert proc.returncode == 0, explain(proc, command)
    found = json.loads((results / "bench.json").read_text())
    assert found["quick"] is True and found["apptainer_mode"] == "join"
    scenarios = set(found["pingpong"])
    assert {"native", "docker", "cluster-native-1node", "cluster-apptainer-1node", "cluster-apptainer-nosharens",
            "cluster-apptainer-mpiexec", "cluster-native-2nodes", "cluster-apptainer-2nodes",
            "cluster-bind-2nodes", "cluster-bind-abi-mpich-2nodes", "cluster-bind-abi-impi-2nodes"} <= scenarios \
        <= set(found["scenarios"])
    assert "MPI-5 standard ABI: the site's Intel(R) MPI Library" in found["scenarios"]["cluster-bind-abi-impi-2nodes"][
        "what"]
    for name in scenarios:
        for api in stats.APIS:
            sizes = found["pingpong"][name][api]
            assert sorted(int(s) for s in sizes) == list(stats.SIZES), (name, api)
            assert all(v["latency_us"] > 0 and v["bandwidth_MBps"] > 0 for v in sizes.values()), (name, api)
    # Every container scenario has a ratio against its same-run baseline, per API and size.
    compared = {(r["scenario"], r["baseline"]) for r in found["ratios"]}
    assert {("docker", "native"), ("cluster-apptainer-2nodes", "cluster-native-2nodes"),
            ("cluster-bind-2nodes", "cluster-native-2nodes")} <= compared
    assert len(found["ratios"]) == len(stats.APIS) * len(stats.SIZES) * len(compared)
    whole = {"native", "docker", "cluster-native-2nodes", "cluster-apptainer-2nodes", "cluster-bind-2nodes",
             "cluster-bind-abi-mpich-2nodes", "cluster-bind-abi-impi-2nodes"}
    # Start-up also of the native line with Open MPI's defaults, against the kit's native line.
    assert set(found["startup"]) == whole | {"native-openmpi-defaults"}
    assert found["scenarios"]["native-openmpi-defaults"]["baseline"] == "native"
    assert set(found["scatters"]["scatter10M"]) - {"size"} == whole
    assert set(found["job_ratios"]) == set(stats.JOB_RATIOS)
    assert found["job_ratios"]["startup_2nodes_apptainer_vs_srun"] > 0
    assert found["job_ratios"]["scatter100M_2nodes_apptainer_vs_srun"] is None  # not measured with QUICK=1
    assert found["took_s"]["total"] >= found["took_s"]["measuring"] > 0
    for plot in ("bench.png", "bench-ratios.png"):
        assert (results / plot).read_bytes()[:8] == PNG, plot
    assert "container / baseline: latency x, bandwidth x" in proc.stdout, explain(proc, command)


def test_quick_bench_curve_measures_every_mode(cluster: str, results) -> None:
    proc = make("bench-curve", "QUICK=1", f"SIF={cluster}", timeout=1800, MPIKIT_RESULTS=str(results))
    command = f"make bench-curve QUICK=1 SIF={cluster}"
    assert proc.returncode == 0, explain(proc, command)
    found = json.loads((results / "bench-curve.json").read_text())
    assert found["modes"] == ["srun", *launch.MODES]
    for mode in found["modes"]:
        for workload, points in found["curve"][mode].items():
            assert sorted(int(r) for r in points) == found["ranks_per_node"], (mode, workload)
    breakdown = found["breakdown"]
    assert {"srun", "sandbox", "srun, no CMA", "sharens, no CMA"} <= set(breakdown)
    assert all(breakdown[m]["import"] > 0 and breakdown[m]["wall"] > 0 for m in found["modes"])
    assert found["sandbox"]["first_job_s"] > 0
    assert (results / "bench-curve.png").read_bytes()[:8] == PNG
    assert "10M scatter, 2 nodes x 2 ranks, median s" in proc.stdout, explain(proc, command)
    # the CPU that entering the image costs each rank, every container mode
    assert set(found["enter_cpu"]) == set(launch.MODES)
    assert all(v["per_rank_ms"] > 0 for v in found["enter_cpu"].values())


def test_quick_bench_build_states_the_image_facts(sif: str, results) -> None:
    proc = make("bench-build", "QUICK=1", f"SIF={sif}", timeout=1800, MPIKIT_RESULTS=str(results))
    command = f"make bench-build QUICK=1 SIF={sif}"
    assert proc.returncode == 0, explain(proc, command)
    found = json.loads((results / "bench-build.json").read_text())
    image = found["image"]
    assert found["quick"] is True and image["cold_build_s"] is None  # a cold build only without QUICK
    assert image["docker_image_mb"] > 0 and image["sif_mb"] > 0 and image["rebuild_after_example_edit_s"] > 0
    assert f"SIF {image['sif_mb']:.0f} MB" in proc.stdout, explain(proc, command)
    # A user's environment (REQUIREMENTS) on that image: built, nothing of the kit's image rebuilt, nothing left.
    env = found["environment"]
    assert env["env_image_s"] > 0 and env["env_image_mb"] > image["docker_image_mb"] * 0.9, env
    assert env["kit_image_rebuilt"] is False and env["env_sif_s"] is None, env
    assert "; the kit's image not rebuilt" in proc.stdout, explain(proc, command)
    assert not [name for name in docker.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
                if name.startswith("mpi4py-kit-env:") and docker.image_label(name, environment.REQUIREMENTS_LABEL)
                == "build/bench-build-env/requirements.txt"], "make bench-build left its environment's image"
