"""make bench QUICK=1, make bench-curve QUICK=1 and make bench-build QUICK=1: every
scenario and mode runs and the results are written, as JSON and PNG plots. Timings vary from run to run
and are never asserted; the structure users and docs/performance.md read is."""

from __future__ import annotations

import json

from conftest import ROOT, explain, make
from mpikit import launch
from mpikit.bench import stats

PNG = b"\x89PNG\r\n\x1a\n"


def test_quick_bench_measures_every_scenario(cluster: str) -> None:
    proc = make("bench", "QUICK=1", f"SIF={cluster}", timeout=1800)
    command = f"make bench QUICK=1 SIF={cluster}"
    assert proc.returncode == 0, explain(proc, command)
    results = json.loads((ROOT / "results" / "bench.json").read_text())
    assert results["quick"] is True and results["apptainer_mode"] == "sandbox"
    scenarios = set(results["pingpong"])
    assert {"native", "docker", "cluster-native-1node", "cluster-apptainer-1node", "cluster-apptainer-nosharens",
            "cluster-apptainer-mpiexec", "cluster-native-2nodes", "cluster-apptainer-2nodes",
            "cluster-bind-2nodes"} <= scenarios <= set(results["scenarios"])
    for name in scenarios:
        for api in stats.APIS:
            sizes = results["pingpong"][name][api]
            assert sorted(int(s) for s in sizes) == list(stats.SIZES), (name, api)
            assert all(v["latency_us"] > 0 and v["bandwidth_MBps"] > 0 for v in sizes.values()), (name, api)
    # Every container scenario has a ratio against its same-run baseline, per API and size.
    compared = {(r["scenario"], r["baseline"]) for r in results["ratios"]}
    assert {("docker", "native"), ("cluster-apptainer-2nodes", "cluster-native-2nodes"),
            ("cluster-bind-2nodes", "cluster-native-2nodes")} <= compared
    assert len(results["ratios"]) == len(stats.APIS) * len(stats.SIZES) * len(compared)
    whole = {"native", "docker", "cluster-native-2nodes", "cluster-apptainer-2nodes", "cluster-bind-2nodes"}
    # Start-up also of the native line with Open MPI's defaults, against the kit's native line.
    assert set(results["startup"]) == whole | {"native-openmpi-defaults"}
    assert results["scenarios"]["native-openmpi-defaults"]["baseline"] == "native"
    assert set(results["scatters"]["scatter10M"]) - {"size"} == whole
    assert set(results["job_ratios"]) == set(stats.JOB_RATIOS)
    assert results["job_ratios"]["startup_2nodes_apptainer_vs_srun"] > 0
    assert results["job_ratios"]["scatter100M_2nodes_apptainer_vs_srun"] is None  # not measured with QUICK=1
    assert results["took_s"]["total"] >= results["took_s"]["measuring"] > 0
    for plot in ("bench.png", "bench-ratios.png"):
        assert (ROOT / "results" / plot).read_bytes()[:8] == PNG, plot
    assert "container / baseline ratios" in proc.stdout, explain(proc, command)


def test_quick_bench_curve_measures_every_mode(cluster: str) -> None:
    proc = make("bench-curve", "QUICK=1", f"SIF={cluster}", timeout=1800)
    command = f"make bench-curve QUICK=1 SIF={cluster}"
    assert proc.returncode == 0, explain(proc, command)
    results = json.loads((ROOT / "results" / "bench-curve.json").read_text())
    assert results["modes"] == ["srun", *launch.MODES]
    for mode in results["modes"]:
        for workload, points in results["curve"][mode].items():
            assert sorted(int(r) for r in points) == results["ranks_per_node"], (mode, workload)
    breakdown = results["breakdown"]
    assert {"srun", "sandbox", "srun, no CMA", "sharens, no CMA"} <= set(breakdown)
    assert all(breakdown[m]["import"] > 0 and breakdown[m]["wall"] > 0 for m in results["modes"])
    assert results["sandbox"]["first_job_s"] > 0
    assert (ROOT / "results" / "bench-curve.png").read_bytes()[:8] == PNG
    assert "where a 2 nodes x 2 ranks scatter of 10M values spends its time" in proc.stdout, explain(proc, command)


def test_quick_bench_build_states_the_image_facts(sif: str) -> None:
    proc = make("bench-build", "QUICK=1", f"SIF={sif}", timeout=1800)
    command = f"make bench-build QUICK=1 SIF={sif}"
    assert proc.returncode == 0, explain(proc, command)
    results = json.loads((ROOT / "results" / "bench-build.json").read_text())
    image = results["image"]
    assert results["quick"] is True and image["cold_build_s"] is None  # a cold build only without QUICK
    assert image["docker_image_mb"] > 0 and image["sif_mb"] > 0 and image["rebuild_after_example_edit_s"] > 0
    assert f"SIF {image['sif_mb']:.0f} MB" in proc.stdout, explain(proc, command)
