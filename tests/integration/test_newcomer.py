"""A newcomer's machine: a clean debian:trixie-slim container (the kit's own local base) with only git, make
and python3, a non-root user who clones the repository and types the README's two commands. No Docker engine
inside, so the main job runs natively and the container tests are skipped, with the reason.

The clone is of what is committed (HEAD), as a fresh clone would be. pip in the container trusts this host's
proxy CA when there is one; a real newcomer has no proxy and needs nothing of the kind.

The steps are tests/scripts/newcomer.py's, which the session runs beside the other tests (they wait mostly on
apt and pip); this test judges what it recorded, or runs it here when the session did not.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
from conftest import PREBUILD, ROOT, assert_example, clean_env, explain, wait_for_prebuild

pytestmark = pytest.mark.prebuilt("newcomer")
RECORD = PREBUILD / "newcomer.json"


def step(record: dict, name: str) -> subprocess.CompletedProcess:
    """A recorded step as a finished process; a step that was not reached fails the test here."""
    steps = record["steps"]
    assert name in steps, f"the newcomer's step {name!r} did not run; the steps that did: " + \
        "; ".join(f"{n}: exit status {s['code']}\n{s['stdout']}\n{s['stderr']}" for n, s in steps.items())
    s = steps[name]
    proc = subprocess.CompletedProcess(s["script"], s["code"], s["stdout"], s["stderr"])
    assert "Traceback" not in proc.stdout + proc.stderr, "a Python traceback" + explain(proc, s["script"])
    return proc


def test_the_readme_commands_on_a_fresh_machine(docker_image: str) -> None:
    if wait_for_prebuild("newcomer") != 0:  # the session did not run it, or it failed: here, in the open
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / "newcomer.py"), str(RECORD)], cwd=ROOT,
                       env=clean_env(), check=True, timeout=3000)
    record = json.loads(RECORD.read_text())
    main_job, test_command = record["main_job"], record["test_command"]

    setup = step(record, "setup")
    assert setup.returncode == 0, explain(setup, "apt-get install git make python3; useradd")
    clone = step(record, "clone")
    assert clone.returncode == 0, explain(clone, "git clone")

    # Without python3-venv: one error line naming the package, the exit status of a missing
    # prerequisite, and no half-made .venv.
    first = step(record, "first")
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert first.returncode != 0 and len(errors) == 1 and "python3-venv" in errors[0], explain(first, main_job)
    assert "Error 3" in first.stderr, explain(first, main_job)
    leftover = step(record, "leftover")
    assert leftover.stdout.strip() == "NONE", "a half-made .venv was left behind"

    installed = step(record, "install")
    assert installed.returncode == 0, explain(installed, "apt-get install python3-venv")

    run = step(record, "run")
    assert "runtime: native (auto: no Docker engine" in run.stderr, explain(run, main_job)
    assert_example("scatter", run, 4, main_job + "   (newcomer, after installing python3-venv)", 100_000_000)

    tests = step(record, "tests")
    command = f"{test_command}   (newcomer, non-root, no Docker engine)"
    assert tests.returncode == 0, explain(tests, command)
    summary = tests.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary, explain(tests, command)
    assert re.search(r"SKIPPED .*no Docker engine", tests.stdout), "container tests must say why they skip" + \
        explain(tests, command)
    assert shlex.split(test_command) == ["make", "test"]
