"""cluster.require_up, which every run on the test cluster asks first: one `docker inspect` of the three containers
says whether they run and which checkout they share; each way it can fail is one line naming what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpikit import cluster, docker
from mpikit.config import ROOT
from mpikit.ui import MissingPrerequisite, RunError


def fake_docker(tmp_path: Path, monkeypatch, body: str) -> Path:
    """A docker command that logs its arguments and runs `body` (sh)."""
    script = tmp_path / "docker"
    script.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/calls\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr(docker, "command", lambda: str(script))
    monkeypatch.setattr(docker, "client", lambda: str(script))
    return tmp_path / "calls"


def inspect_says(*lines: str, stderr: str = "", status: int = 0) -> str:
    out = "".join(f"echo '{line}'\n" for line in lines)
    return f'if [ "$1" = inspect ]; then\n{out}echo "{stderr}" >&2; exit {status}; fi\nexit 1'


def test_a_running_cluster_of_this_checkout_costs_one_docker_command(tmp_path, monkeypatch) -> None:
    calls = fake_docker(tmp_path, monkeypatch, inspect_says(
        f"/mpikit-slurmctld|true|{ROOT}", f"/mpikit-node1|true|{ROOT}", f"/mpikit-node2|true|{ROOT}"))
    cluster.require_up()
    assert len(calls.read_text().splitlines()) == 1


@pytest.mark.parametrize("lines", [
    (),  # none of the containers
    (f"/mpikit-slurmctld|true|{ROOT}", f"/mpikit-node1|true|{ROOT}"),  # node2 gone
    (f"/mpikit-slurmctld|true|{ROOT}", f"/mpikit-node1|false|{ROOT}", f"/mpikit-node2|true|{ROOT}"),  # node1 stopped
])
def test_a_cluster_not_wholly_running_says_how_to_start_it(lines, tmp_path, monkeypatch) -> None:
    fake_docker(tmp_path, monkeypatch, inspect_says(*lines, stderr="Error: No such object: mpikit-node2",
                                                    status=1 if len(lines) < 3 else 0))
    with pytest.raises(RunError, match=r"^the test cluster is not running; start it with: make cluster-up$"):
        cluster.require_up()


def test_a_cluster_of_another_checkout_is_named(tmp_path, monkeypatch) -> None:
    fake_docker(tmp_path, monkeypatch, inspect_says(
        "/mpikit-slurmctld|true|/elsewhere", "/mpikit-node1|true|/elsewhere", "/mpikit-node2|true|/elsewhere"))
    with pytest.raises(RunError, match=r"shares another checkout \(/elsewhere\) at /shared, not this one"):
        cluster.require_up()


def test_an_engine_that_does_not_answer_is_said_as_such(tmp_path, monkeypatch) -> None:
    fake_docker(tmp_path, monkeypatch, 'echo "Cannot connect to the Docker daemon" >&2; exit 1')
    with pytest.raises(MissingPrerequisite, match=r"RUNTIME=cluster needs a Docker engine, but .* failed: Cannot "
                                                  r"connect to the Docker daemon"):
        cluster.require_up()
