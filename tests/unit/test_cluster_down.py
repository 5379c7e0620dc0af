"""cluster-down's first step (cluster.clear_node_tmp): the kit's folders in each compute node's /tmp removed from
inside the nodes, side by side, and never for longer than its time limit (a node that does not answer is left to
`docker rm -f`)."""

from __future__ import annotations

import time
from pathlib import Path

from mpikit import cluster, docker


def fake_docker(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "docker"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n{body}\n")
    script.chmod(0o755)
    return script


def test_each_node_removes_the_kits_folders_side_by_side(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(docker, "command", lambda: str(fake_docker(tmp_path, "sleep 1")))
    start = time.monotonic()
    cluster.clear_node_tmp(["mpikit-node1", "mpikit-node2"])
    assert time.monotonic() - start < 1.9  # both at once: one second, not two
    calls = sorted((tmp_path / "calls").read_text().splitlines())
    assert calls == [f"exec mpikit-node{n} sh -c rm -rf {cluster.NODE_TMP_GLOB}" for n in (1, 2)]
    assert cluster.NODE_TMP_GLOB == "/tmp/mpi4py-kit-*"  # scripts/launch/apptainer-rank.sh's default base


def test_a_node_that_does_not_answer_is_left_after_the_time_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(docker, "command", lambda: str(fake_docker(tmp_path, "exec sleep 30")))
    start = time.monotonic()
    cluster.clear_node_tmp(["mpikit-node1"], timeout=0.5)
    assert time.monotonic() - start < 5
