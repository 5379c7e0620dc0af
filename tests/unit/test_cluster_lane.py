"""The test cluster started by the session (tests/integration/conftest.py: PREBUILDS["cluster"], due()): with the
session when it starts warm (the kit's image and its base there), otherwise by the cluster fixture as before; and
what it makes is left out of test_bad_input.py's checks that a refused command changes nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from mpikit import apptainer, cluster

CONFTEST = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
spec = importlib.util.spec_from_file_location("integration_conftest", CONFTEST)
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)


@pytest.mark.parametrize(("warm", "when", "due"), [
    (True, "start", True), (True, "image", False), (False, "start", False), (False, "image", False),
    (True, "bench", False), (True, "cluster", False)])
def test_the_cluster_starts_with_the_session_only_when_it_starts_warm(
        warm: bool, when: str, due: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Warm: the kit's image and its base there. Cold, the cluster fixture starts the cluster, as it did."""
    monkeypatch.setattr(conftest, "warm_start", lambda: warm)
    assert conftest.PREBUILDS["cluster"] == ("warm", (["cluster-up"],))
    assert conftest.due("warm", when) is due


@pytest.mark.parametrize(("there", "warm"), [({"mpi4py-kit:trixie", "debian:trixie-slim"}, True),
                                             ({"debian:trixie-slim"}, False), ({"mpi4py-kit:trixie"}, False)])
def test_a_warm_start_has_the_kits_image_and_its_base(there: set[str], warm: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest.docker, "engine_problem", lambda: None)
    monkeypatch.setattr(conftest.docker, "image_exists", lambda image: image in there)
    conftest.warm_start.cache_clear()
    try:
        assert conftest.warm_start() is warm
    finally:
        conftest.warm_start.cache_clear()


def test_without_an_engine_no_start_is_warm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest.docker, "engine_problem", lambda: "no engine")
    monkeypatch.setattr(conftest.docker, "image_exists", lambda image: True)
    conftest.warm_start.cache_clear()
    try:
        assert not conftest.warm_start()
    finally:
        conftest.warm_start.cache_clear()


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
