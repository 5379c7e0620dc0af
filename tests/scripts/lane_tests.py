"""Runs tests of the suite in a background lane of the test session, after the build they need, and
records each test's verdict for the session to give as its own (tests/integration/conftest.py: the
emulated arm64 tests run here right after the arm64 image and SIF, on the core qemu would otherwise leave
idle, instead of one after another at the session's end).

    python tests/scripts/lane_tests.py RECORD.json PYTEST_ARGS...

RECORD.json: node ID -> {"outcome": "passed" | "failed" | "skipped", "seconds": setup + call + teardown,
"text": what pytest said of a failure or skip}. The exit status is pytest's. The tests run in a session of
their own (MPIKIT_LANE=1): it starts no background builds and leaves the CPU weights alone.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LANE = "MPIKIT_LANE"  # tests/integration/conftest.py reads it: a lane's session starts no lanes of its own


class Recorder:
    """Each test's verdict from its setup, call and teardown reports: the first failure or skip decides."""

    def __init__(self) -> None:
        self.verdicts: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        verdict = self.verdicts.setdefault(report.nodeid, {"outcome": "passed", "seconds": 0.0, "text": ""})
        verdict["seconds"] += report.duration
        if report.outcome != "passed" and verdict["outcome"] == "passed":
            verdict["outcome"] = report.outcome
            verdict["text"] = f"{report.when}: {report.longreprtext}"


def main(record: Path, args: list[str]) -> int:
    os.environ[LANE] = "1"
    os.chdir(ROOT)
    record.unlink(missing_ok=True)
    recorder = Recorder()
    code = int(pytest.main(["-p", "no:cacheprovider", *args], plugins=[recorder]))
    record.write_text(json.dumps(recorder.verdicts, indent=1) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
