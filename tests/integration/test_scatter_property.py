"""Property-based: the scatter/gather example, run as users run it, over
hypothesis-chosen sizes and rank counts (sizes below, at and above NP, primes,
remainders). Every element reaches exactly one rank: the per-rank counts are
the even split and add up to --size, and the gathered, count-weighted average
equals numpy.average of the whole array to 1e-12 (a value lost or counted
twice moves it by about 1e-6 or more at these sizes)."""

from __future__ import annotations

from conftest import assert_example, explain, kit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(np=st.integers(min_value=1, max_value=6), size=st.integers(min_value=1, max_value=200_000),
       seed=st.integers(min_value=0, max_value=2**31))
def test_every_element_reaches_exactly_one_rank(np: int, size: int, seed: int) -> None:
    args = f"--size {size} --seed {seed}"
    proc = kit("run", "scatter", "--np", str(np), "--runtime", "native", "--args", args, timeout=120)
    command = f"make run-scatter NP={np} RUNTIME=native ARGS='{args}'"
    assert_example("scatter", proc, np, command, size)
    counts = sorted(int(line.split()[2]) for line in proc.stdout.splitlines() if line.startswith("rank "))
    assert counts == sorted(size // np + (r < size % np) for r in range(np)), f"uneven split {counts}" + explain(
        proc, command)
