"""make bench's arithmetic: medians and container/baseline ratios."""

from __future__ import annotations

import pytest
from mpikit.bench import stats


def result(latency: float, bandwidth: float) -> dict:
    return {"latency_us": latency, "bandwidth_MBps": bandwidth}


def test_pingpong_medians() -> None:
    raw = {"a": {"buffer": {8: [result(1, 10), result(3, 30), result(2, 20)]}}}
    assert stats.pingpong_medians(raw) == {"a": {"buffer": {8: {"latency_us": 2, "bandwidth_MBps": 20, "runs": 3}}}}


def test_ratios_against_the_same_runs_baseline() -> None:
    sizes = {s: {"latency_us": 2.0, "bandwidth_MBps": 100.0} for s in stats.SIZES}
    slower = {s: {"latency_us": 2.2, "bandwidth_MBps": 90.0} for s in stats.SIZES}
    pingpong = {"native": {"buffer": sizes, "pickle": sizes}, "docker": {"buffer": slower, "pickle": sizes}}
    rows = stats.pingpong_ratios(pingpong, {"native": None, "docker": "native", "missing": "native"})
    assert len(rows) == 2 * len(stats.SIZES)
    buffer = [r for r in rows if r["api"] == "buffer"]
    assert all(r["latency_ratio"] == pytest.approx(1.1) and r["bandwidth_ratio"] == pytest.approx(0.9)
               for r in buffer)
    assert not any(stats.meets(r) for r in buffer)
    assert all(stats.meets(r) for r in rows if r["api"] == "pickle")


def test_wall_ratio_and_medians() -> None:
    walls = stats.wall_medians({"a": [3.0, 1.0, 2.0], "b": [1.0, 1.0, 1.0]})
    assert walls["a"]["median_s"] == 2.0 and walls["a"]["runs"] == [3.0, 1.0, 2.0]
    assert stats.wall_ratio(walls, "a", "b") == 2.0
    assert stats.wall_ratio(walls, "a", "c") is None


def test_human_sizes() -> None:
    assert [stats.human(s) for s in stats.SIZES] == ["8 B", "64 KiB", "1 MiB", "4 MiB"]


def test_cluster_ranks_are_spread_evenly_over_the_nodes() -> None:
    """srun fills a node's declared CPUs first (4 ranks on 2 nodes of 4 CPUs: 3 and 1); the bench's
    "2 x 2" must be 2 and 2, for the baseline and every mode alike."""
    from mpikit.bench import scenarios
    from mpikit.config import ROOT
    assert scenarios.per_node(4, 2) == {"SLURM_NTASKS_PER_NODE": "2"}
    assert scenarios.per_node(32, 2) == {"SLURM_NTASKS_PER_NODE": "16"}
    assert scenarios.per_node(5, 2) == {} and scenarios.per_node(4, None) == {}
    for mode in ("srun", "sandbox", "join"):
        line = scenarios.mode_build(ROOT / "build" / "x.sif", "pmix", mode)(4, "scripts/mpi/startup.py", [], 2).argv
        assert "SLURM_NTASKS_PER_NODE=2" in line and "--nodes=2" in line, line
        # More ranks than the nodes' CPUs: srun refuses the variable, and --overcommit spreads them evenly.
        line = scenarios.mode_build(ROOT / "build" / "x.sif", "pmix", mode)(32, "scripts/mpi/startup.py", [], 2).argv
        assert "--overcommit" in line and not any("SLURM_NTASKS_PER_NODE" in a for a in line), line
