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


def pytest_runtest_logreport(report) -> None:
    module = report.nodeid.split("::")[0]
    _module_seconds[module] = _module_seconds.get(module, 0.0) + report.duration
    _module_tests.setdefault(module, set()).add(report.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    """The time of each test module, slowest first, and their sum (docs/testing.md keeps a dated table of
    these, cold and warm); pytest's --durations (make test passes 15) names the slowest steps above it."""
    if not _module_seconds:
        return
    total = sum(_module_seconds.values())
    terminalreporter.write_sep("=", f"time per test module ({total:.0f} s in all)")
    quick = 0
    for module, seconds in sorted(_module_seconds.items(), key=lambda kv: -kv[1]):
        if seconds < 1:
            quick += 1
            continue
        terminalreporter.write_line(f"{seconds:8.0f} s  {len(_module_tests[module]):4d} tests  {module}")
    if quick:
        terminalreporter.write_line(f"   and {quick} module(s) under 1 s each")
