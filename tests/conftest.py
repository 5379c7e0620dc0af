"""Both test layers import the kit's package from scripts/, as scripts/kit does."""

import sys
from pathlib import Path

# The kit writes no bytecode into the checkout (a refused command must change nothing),
# and neither do the tests' own imports of it.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


# ---- where the time went: every test's setup, call and teardown, summed per test module ----

_module_seconds: dict[str, float] = {}
_module_tests: dict[str, set[str]] = {}
# Tests a lane ran beside the session (tests/integration/conftest.py gives their verdicts): the lane's time for them.
_module_lane_seconds: dict[str, float] = {}
LANE_SECONDS = "lane_seconds"  # the user property the integration tests' conftest records it in


def pytest_runtest_logreport(report) -> None:
    module = report.nodeid.split("::")[0]
    _module_seconds[module] = _module_seconds.get(module, 0.0) + report.duration
    _module_tests.setdefault(module, set()).add(report.nodeid)
    if report.when == "call":
        lane = sum(value for name, value in report.user_properties if name == LANE_SECONDS)
        if lane:
            _module_lane_seconds[module] = _module_lane_seconds.get(module, 0.0) + lane


def pytest_terminal_summary(terminalreporter) -> None:
    """The time of each test module, slowest first, and their sum (docs/testing.md keeps a dated table of
    these, cold and warm); pytest's --durations (make test passes 15) names the slowest steps above it."""
    if not _module_seconds:
        return
    title, lines = module_table(_module_seconds, _module_lane_seconds,
                                {module: len(tests) for module, tests in _module_tests.items()})
    terminalreporter.write_sep("=", title)
    for line in lines:
        terminalreporter.write_line(line)


def module_table(seconds: dict[str, float], lane: dict[str, float], tests: dict[str, int]) -> tuple[str, list[str]]:
    """The time per test module, slowest first: a title with the sums, and a line a module. A module's time is
    its tests' time in the session and, for those a lane ran beside the session, their time there (said on its
    line): the session took them in a moment, the lane did not."""
    total, beside = sum(seconds.values()), sum(lane.values())
    title = f"time per test module ({total:.0f} s in all" + (
        f"; {beside:.0f} s more in lanes beside the session)" if beside >= 1 else ")")
    lines, quick = [], 0
    for module, own in sorted(seconds.items(), key=lambda kv: -(kv[1] + lane.get(kv[0], 0.0))):
        there = lane.get(module, 0.0)
        if own + there < 1:
            quick += 1
            continue
        lines.append(f"{own + there:8.0f} s  {tests[module]:4d} tests  {module}"
                     + (f"  ({there:.0f} s of it in a lane)" if there >= 1 else ""))
    if quick:
        lines.append(f"   and {quick} module(s) under 1 s each")
    return title, lines
