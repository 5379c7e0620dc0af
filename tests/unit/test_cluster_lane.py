"""The test cluster started by the session (tests/integration/conftest.py: PREBUILDS["cluster"], due()): with the
session when the kit's base image is there, otherwise once the kit's image is built; and what it makes is left out
of test_bad_input.py's checks that a refused command changes nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from mpikit import apptainer, cluster

CONFTEST = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
spec = importlib.util.spec_from_file_location("integration_conftest", CONFTEST)
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)


@pytest.mark.parametrize(("base_there", "when", "due"), [
    (True, "start", True), (True, "image", True), (False, "start", False), (False, "image", True),
    (True, "bench", False), (True, "cluster", False)])
def test_the_cluster_starts_with_the_session_only_on_the_base_it_builds_on(
        base_there: bool, when: str, due: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(conftest.docker, "image_exists", lambda image: asked.append(image) or base_there)
    assert conftest.PREBUILDS["cluster"] == ("base", (["cluster-up"],))
    assert conftest.due("base", when) is due
    assert set(asked) <= {"debian:trixie-slim"}


def test_other_builds_start_when_they_say() -> None:
    assert conftest.due("image", "image") and not conftest.due("image", "start")


def test_what_the_cluster_makes_is_left_out_of_the_nothing_changed_checks() -> None:
    """Its containers (by name), its images and its build context (build/cluster/, the site MPIs' wheels)."""
    assert all(name.startswith(conftest.PREBUILD_CONTAINER_PREFIXES) for name in cluster.NODES)
    assert cluster.node_image(cluster.DEFAULT_CLUSTER) in conftest.PREBUILD_IMAGES
    assert apptainer.helper_image(cluster.DEFAULT_CLUSTER) in conftest.PREBUILD_IMAGES
    assert cluster.CONTEXT.relative_to(conftest.ROOT).as_posix() + "/" in conftest.PREBUILD_PATHS


def test_the_tests_of_the_cluster_wait_for_it_where_they_are() -> None:
    assert conftest.PREBUILT_BY_FIXTURE["cluster"] == "cluster" and "cluster" in conftest.BESIDE
