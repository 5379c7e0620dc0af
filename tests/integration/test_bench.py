"""make bench QUICK=1: every scenario runs and the results are written, as
JSON and a PNG plot. Timings vary from run to run and are never asserted."""

from __future__ import annotations

import json

from conftest import ROOT, explain, make


def test_quick_bench_measures_every_scenario(cluster: str) -> None:
    proc = make("bench", "QUICK=1", f"SIF={cluster}", timeout=1800)
    command = f"make bench QUICK=1 SIF={cluster}"
    assert proc.returncode == 0, explain(proc, command)
    results = json.loads((ROOT / "results" / "bench.json").read_text())
    assert results["quick"] is True
    scenarios = set(results["scenarios"])
    assert {"native", "docker", "cluster-native-1node", "cluster-apptainer-1node", "cluster-apptainer-nosharens",
            "cluster-apptainer-mpiexec", "cluster-native-2nodes", "cluster-apptainer-2nodes"} <= scenarios
    for name in scenarios:
        for api in ("buffer", "pickle"):
            sizes = results["pingpong"][name][api]
            assert sorted(int(s) for s in sizes) == [8, 65536, 1048576, 4194304], (name, api)
            assert all(v["latency_us"] > 0 and v["bandwidth_MBps"] > 0 for v in sizes.values()), (name, api)
    # Every container scenario has a ratio against its same-run baseline, per API and size.
    compared = {(r["scenario"], r["baseline"]) for r in results["ratios"]}
    assert ("docker", "native") in compared and ("cluster-apptainer-2nodes", "cluster-native-2nodes") in compared
    assert len(results["ratios"]) == 2 * 4 * len(compared)
    assert set(results["startup"]) == set(results["scatter"]) == {
        "native", "docker", "cluster-native-2nodes", "cluster-apptainer-2nodes"}
    image = results["image"]
    assert image["docker_image_mb"] > 0 and image["sif_mb"] > 0 and image["rebuild_after_example_edit_s"] > 0
    assert (ROOT / "results" / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "container / baseline ratios" in proc.stdout, explain(proc, command)
