"""make bench's repetitions (bench.Plan): the full run's are the ones docs/performance.md states; QUICK runs
every scenario once, without the untimed warm-up."""

import re

from mpikit import bench
from mpikit.config import ROOT

DOC = re.sub(r"\s+", " ", (ROOT / "docs" / "performance.md").read_text())


def test_the_full_plan_is_what_the_performance_page_states() -> None:
    full = bench.Plan(quick=False)
    batches = full.pingpong_args[full.pingpong_args.index("--batches") + 1]
    (ten, ten_runs), (hundred, hundred_runs) = full.scatters["scatter10M"], full.scatters["scatter100M"]
    assert (ten, hundred) == (10_000_000, 100_000_000)
    stated = (f"ping-pong: of {batches} timed batches, then of {full.pingpong_runs} runs; start-up: "
              f"{full.startup_runs} runs; scatter: {ten_runs} runs of 10M values, {hundred_runs} of 100M")
    assert stated in DOC
    assert full.warm_up and "Each scenario first runs once untimed" in DOC
    # make bench-env: its own count, for a target closer to 1.
    runs = full.env_startup_runs
    assert f"each scenario once untimed (each node's first start of a SIF unpacks it) and then {runs} runs" in DOC


def test_quick_runs_each_scenario_once_without_a_warm_up() -> None:
    quick = bench.Plan(quick=True)
    assert (quick.pingpong_runs, quick.startup_runs, quick.env_startup_runs, quick.warm_up) == (1, 1, 1, False)
    assert quick.scatters == {"scatter10M": (10_000_000, 1)}
    # One short batch per size and API: every size still runs (the test of make bench QUICK=1 checks them all),
    # in less time than one batch of the full run.
    args = dict(zip(quick.pingpong_args[::2], quick.pingpong_args[1::2]))
    full = dict(zip(bench.Plan(quick=False).pingpong_args[::2], bench.Plan(quick=False).pingpong_args[1::2]))
    assert set(args) == {"--batches", "--seconds"} and int(args["--batches"]) == 1
    assert 0 < float(args["--seconds"]) < float(full["--seconds"])
    assert "`QUICK=1` runs every scenario and every part once, without that untimed run" in DOC
