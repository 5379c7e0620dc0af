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


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch) -> None:
    """No controller seen, and the plugins' cache in the test's own folder."""
    monkeypatch.setattr(cluster, "_seen", {})
    monkeypatch.setattr(cluster, "PLUGINS", tmp_path / "cluster-mpi-list")


def inspect_says(*lines: str, stderr: str = "", status: int = 0) -> str:
    out = "".join(f"echo '{line}'\n" for line in lines)
    return f'if [ "$1" = inspect ]; then\n{out}echo "{stderr}" >&2; exit {status}; fi\nexit 1'


def test_a_running_cluster_of_this_checkout_costs_one_docker_command(tmp_path, monkeypatch) -> None:
    calls = fake_docker(tmp_path, monkeypatch, inspect_says(*(f"/{name}|true|c0ffee|{ROOT}" for name in cluster.NODES)))
    cluster.require_up()
    assert len(calls.read_text().splitlines()) == 1


@pytest.mark.parametrize("lines", [
    (),  # none of the containers
    (f"/mpikit-slurmctld|true|c0ffee|{ROOT}", f"/mpikit-node1|true|c0ffee|{ROOT}"),  # node2 gone
    (f"/mpikit-slurmctld|true|c0ffee|{ROOT}", f"/mpikit-node1|false|c1|{ROOT}", f"/mpikit-node2|true|c2|{ROOT}"),
])
def test_a_cluster_not_wholly_running_says_how_to_start_it(lines, tmp_path, monkeypatch) -> None:
    fake_docker(tmp_path, monkeypatch, inspect_says(*lines, stderr="Error: No such object: mpikit-node2",
                                                    status=1 if len(lines) < 3 else 0))
    with pytest.raises(RunError, match=r"^the test cluster is not running; start it with: make cluster-up$"):
        cluster.require_up()


def test_a_cluster_of_another_checkout_is_named(tmp_path, monkeypatch) -> None:
    fake_docker(tmp_path, monkeypatch, inspect_says(*(f"/{name}|true|c0ffee|/elsewhere" for name in cluster.NODES)))
    with pytest.raises(RunError, match=r"shares another checkout \(/elsewhere\) at /shared, not this one"):
        cluster.require_up()


def test_an_engine_that_does_not_answer_is_said_as_such(tmp_path, monkeypatch) -> None:
    fake_docker(tmp_path, monkeypatch, 'echo "Cannot connect to the Docker daemon" >&2; exit 1')
    with pytest.raises(MissingPrerequisite, match=r"RUNTIME=cluster needs a Docker engine, but .* failed: Cannot "
                                                  r"connect to the Docker daemon"):
        cluster.require_up()


def test_the_login_nodes_plugins_are_asked_once_per_controller(tmp_path, monkeypatch) -> None:
    """srun --mpi=list on the login node is kept for the controller container it came from: asked again for
    another container (a cluster started again), never kept when it gave nothing."""
    asked: list[int] = []

    def ask(plugins: list[str]):
        return lambda: asked.append(1) or plugins

    def seen(ident: str) -> None:
        fake_docker(tmp_path, monkeypatch, inspect_says(
            f"/mpikit-slurmctld|true|{ident}|{ROOT}", f"/mpikit-node1|true|x|{ROOT}", f"/mpikit-node2|true|y|{ROOT}"))
        cluster.require_up()

    seen("first")
    assert cluster.login_plugins(ask(["pmix", "pmi2"])) == ["pmix", "pmi2"] and len(asked) == 1
    assert cluster.login_plugins(ask(["never"])) == ["pmix", "pmi2"] and len(asked) == 1
    seen("second")
    assert cluster.login_plugins(ask(["pmi2"])) == ["pmi2"] and len(asked) == 2
    seen("third")
    assert cluster.login_plugins(ask([])) == [] and cluster.login_plugins(ask([])) == [] and len(asked) == 4


def test_without_a_controller_seen_the_plugins_are_asked_every_time(tmp_path, monkeypatch) -> None:
    asked: list[int] = []
    for _ in range(2):
        assert cluster.login_plugins(lambda: asked.append(1) or ["pmix"]) == ["pmix"]
    assert len(asked) == 2 and not (tmp_path / "cluster-mpi-list").exists()
