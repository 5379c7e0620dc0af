"""A newcomer's machine: a clean debian:trixie-slim container (the kit's own
local base) with only git, make and python3, a non-root user who clones the
repository and types the README's two commands. No Docker engine inside, so
the main job runs natively and the container tests are skipped, with the reason.

The clone is of what is committed (HEAD), as a fresh clone would be. pip in
the container trusts this host's proxy CA when there is one; a real newcomer
has no proxy and needs nothing of the kind.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, assert_example, explain
from mpikit import docker, knobs

USER = "newcomer"


class Machine:
    """A long-running container; each step is a docker exec, as root or as the newcomer."""

    def __init__(self, bundle: Path) -> None:
        self.name = f"mpikit-newcomer-{uuid.uuid4().hex[:8]}"
        options = ["--shm-size=1g", "-v", f"{bundle.parent}:/bundle:ro"]  # /dev/shm as on a real machine
        ca = knobs.pip_ca_cert(os.environ, Path.home())
        if ca:
            options += ["-v", f"{ca}:/etc/mpikit-proxy-ca.pem:ro", "-e", "PIP_CERT=/etc/mpikit-proxy-ca.pem"]
        docker.run("run", "-d", "--name", self.name, *options, "debian:trixie-slim", "sleep", "infinity")

    def __call__(self, script: str, user: str = USER, timeout: int = 900,
                 workdir: str = f"/home/{USER}/kit") -> subprocess.CompletedProcess:
        argv = [docker.command(), "exec", "-u", user, "-w", workdir if user == USER else "/",
                self.name, "bash", "-c", script]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def remove(self) -> None:
        docker.run("rm", "-f", self.name, check=False)


@pytest.fixture
def machine(docker_image: str, tmp_path: Path):
    bundle = tmp_path / "kit.bundle"
    subprocess.run(["git", "-C", str(ROOT), "bundle", "create", str(bundle), "HEAD"], check=True,
                   capture_output=True)
    tmp_path.chmod(0o755)
    bundle.chmod(0o644)
    box = Machine(bundle)
    try:
        yield box
    finally:
        box.remove()


def step(box: Machine, script: str, user: str = USER, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = box(script, user, timeout)
    assert "Traceback" not in proc.stdout + proc.stderr, "a Python traceback" + explain(proc, script)
    return proc


def test_the_readme_commands_on_a_fresh_machine(machine: Machine) -> None:
    setup = step(machine, "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
                 "apt-get install -y -qq --no-install-recommends git make python3 >/dev/null && "
                 f"useradd --create-home {USER}", user="root", timeout=600)
    assert setup.returncode == 0, explain(setup, "apt-get install git make python3; useradd")
    clone = machine(f"git clone -q /bundle/kit.bundle /home/{USER}/kit", user=USER, workdir=f"/home/{USER}")
    assert clone.returncode == 0, explain(clone, "git clone")
    readme = (ROOT / "README.md").read_text()
    main_job = next(line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("make run-scatter"))
    test_command = next(line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("make test"))

    # Without python3-venv: one error line naming the package, the exit status of a missing
    # prerequisite, and no half-made .venv.
    first = step(machine, main_job)
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert first.returncode != 0 and len(errors) == 1 and "python3-venv" in errors[0], explain(first, main_job)
    assert "Error 3" in first.stderr, explain(first, main_job)
    leftover = machine("test -e .venv && echo LEFT || echo NONE")
    assert leftover.stdout.strip() == "NONE", "a half-made .venv was left behind"

    installed = step(machine, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null",
                     user="root")
    assert installed.returncode == 0, explain(installed, "apt-get install python3-venv")

    run = step(machine, main_job)
    assert "runtime: native (auto: no Docker engine" in run.stderr, explain(run, main_job)
    assert_example("scatter", run, 4, main_job + "   (newcomer, after installing python3-venv)", 100_000_000)

    tests = step(machine, test_command + " PYTEST_ARGS='-q -p no:cacheprovider'", timeout=1500)
    command = f"{test_command}   (newcomer, non-root, no Docker engine)"
    assert tests.returncode == 0, explain(tests, command)
    summary = tests.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary, explain(tests, command)
    assert re.search(r"SKIPPED .*no Docker engine", tests.stdout), "container tests must say why they skip" + \
        explain(tests, command)
    assert shlex.split(test_command) == ["make", "test"]
