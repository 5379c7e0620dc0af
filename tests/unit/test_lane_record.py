"""tests/scripts/lane_tests.py's record: each test's verdict from its setup, call and teardown reports, as the
session gives it (tests/integration/conftest.py: pytest_pyfunc_call)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lane_tests.py"
spec = importlib.util.spec_from_file_location("lane_tests", SCRIPT)
lane_tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lane_tests)

NODE = "tests/integration/test_arm64.py::test_x"


def report(when: str, outcome: str, duration: float, text: str = "") -> SimpleNamespace:
    return SimpleNamespace(nodeid=NODE, when=when, outcome=outcome, duration=duration, longreprtext=text)


def record(*reports: SimpleNamespace) -> dict:
    recorder = lane_tests.Recorder()
    for r in reports:
        recorder.pytest_runtest_logreport(r)
    return recorder.verdicts[NODE]


def test_a_test_that_passed_everywhere_passed_and_its_seconds_add_up() -> None:
    verdict = record(report("setup", "passed", 1.5), report("call", "passed", 2.0), report("teardown", "passed", 0.5))
    assert verdict == {"outcome": "passed", "seconds": pytest.approx(4.0), "text": ""}


def test_a_failed_call_is_a_failure_with_what_pytest_said() -> None:
    verdict = record(report("setup", "passed", 1), report("call", "failed", 2, "AssertionError: 3 != 4"),
                     report("teardown", "passed", 0))
    assert verdict["outcome"] == "failed" and verdict["text"] == "call: AssertionError: 3 != 4"


@pytest.mark.parametrize("when", ["setup", "teardown"])
def test_a_failed_setup_or_teardown_fails_the_test(when: str) -> None:
    reports = {w: report(w, "passed", 0) for w in ("setup", "call", "teardown")}
    reports[when] = report(when, "failed", 0, "fixture broke")
    verdict = record(*reports.values())
    assert verdict["outcome"] == "failed" and verdict["text"] == f"{when}: fixture broke"


def test_the_first_problem_decides_a_later_one_does_not_replace_it() -> None:
    verdict = record(report("setup", "skipped", 0, "no engine"), report("teardown", "failed", 0, "later"))
    assert verdict["outcome"] == "skipped" and verdict["text"] == "setup: no engine"
