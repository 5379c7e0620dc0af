"""make bench's report, rendered from a real QUICK run's results/bench.json (kept as test data):
the printed table and the markdown for docs/performance.md read every section the run wrote."""

from __future__ import annotations

from pathlib import Path

from mpikit.bench import report

RESULTS = report.load(Path(__file__).parent / "data" / "bench-quick.json")


def test_the_table_has_every_scenario_and_every_whole_job() -> None:
    text = report.table(RESULTS)
    for name in RESULTS["scenarios"]:
        assert f"  {name}" in text, name
    assert "startup: 4-rank init/barrier/finalize wall time" in text
    for name, walls in RESULTS["scatters"].items():
        assert f"{name}: scatter_gather.py --size {walls['size']:,} with 4 ranks, wall time" in text
    assert "container / baseline ratios" in text and "x" in text.split("startup:")[1]


def test_the_markdown_tables_read_the_same_results() -> None:
    pingpong = report.pingpong_markdown(RESULTS)
    assert "pairs meet them" in pingpong and all(f"`{name}`" in pingpong for name in RESULTS["pingpong"])
    jobs = report.jobs_markdown(RESULTS)
    assert "start-up (init, barrier, finalize): `cluster-apptainer-2nodes` / `cluster-native-2nodes`" in jobs
    assert "scatter of 10,000,000 values" in jobs and "`job_ratios`" in jobs
