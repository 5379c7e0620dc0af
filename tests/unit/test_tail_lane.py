"""The tail lane (tests/integration/conftest.py: TAIL_MODULES, in_tail): which tests run in a session of their own
beside the cluster's last tests, and the time per test module that then counts them (tests/conftest.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

TESTS = Path(__file__).resolve().parents[1]


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


integration = load("integration_conftest", TESTS / "integration" / "conftest.py")
top = load("top_conftest", TESTS / "conftest.py")


def item(nodeid: str, *markers: str) -> SimpleNamespace:
    return SimpleNamespace(nodeid=nodeid, get_closest_marker=lambda name: name if name in markers else None)


def test_a_native_or_docker_test_of_a_tail_module_runs_in_the_lane() -> None:
    assert integration.in_tail(item("tests/integration/test_examples.py::test_example[rank-2-docker]", "docker"))
    assert integration.in_tail(item("tests/integration/test_failures.py::test_a_users_pool_script[native-0]"))


@pytest.mark.parametrize("marker", ["sif", "cluster", "prebuilt", "last"])
def test_a_test_of_a_sif_the_cluster_or_a_build_stays_in_the_session(marker: str) -> None:
    """The sif fixture copies build/test/mpi.sif anew while cluster jobs beside the lane run it; a build's test
    waits for the build; a last test ends what the session started."""
    assert not integration.in_tail(item("tests/integration/test_examples.py::test_x", marker))


def test_the_unit_tests_stay_in_the_session() -> None:
    """The hooks that give a lane's verdicts (pytest_pyfunc_call, pytest_runtest_setup) are the integration
    tests' conftest's, and pytest calls them for the tests of its folder only: a unit test the lane ran would run
    again in the session."""
    assert not integration.in_tail(item("tests/unit/test_examples.py::test_x"))


def test_a_module_outside_the_tail_stays_in_the_session() -> None:
    assert not integration.in_tail(item("tests/integration/test_lines.py::test_join_runs_16_ranks"))
    assert not integration.in_tail(item("tests/integration/test_examples_more.py::test_x"))


def test_every_tail_module_exists_and_none_uses_the_cluster() -> None:
    for name in integration.TAIL_MODULES:
        text = (TESTS / "integration" / name).read_text()
        assert "cluster: str" not in text and "in_cluster(" not in text, name


def test_no_test_beside_the_lane_looks_for_leftovers_of_the_scripts_it_runs() -> None:
    """leftovers(script) looks at every process of this host (the cluster's ranks too) and every container: only
    the lane's own modules call it, and those the session runs before the lane starts (alphabetically before
    test_cluster.py, whose last test before the late ones starts it)."""
    calling = {path.name for path in (TESTS / "integration").glob("test_*.py") if "leftovers(" in path.read_text()}
    before = {name for name in calling if name <= Path(integration.CLUSTER_MODULE).name}
    assert calling - before <= set(integration.TAIL_MODULES), calling - before - set(integration.TAIL_MODULES)
    for name in before:
        assert "prebuilt" not in (TESTS / "integration" / name).read_text(), f"{name} has a late test"


def test_the_tail_comes_before_the_late_test_that_moves_the_default_images_tag() -> None:
    """test_stale.py's late test waits for make reproduce and make twin REQUIREMENTS=... (prebuilt): the session
    meets it after the tail's verdicts, so the lane's Docker tests have ended when it moves the tag."""
    order = integration.LATE_ORDER
    text = (TESTS / "integration" / "test_stale.py").read_text()
    marks = re.findall(r'@pytest\.mark\.prebuilt\(([^)]*)\)', text)
    assert marks, "test_stale.py's late test is marked prebuilt"
    for mark in marks:
        names = re.findall(r'"(\w+)"', mark)
        assert max(order.index(n) for n in names) > order.index("tail"), mark


def test_the_tail_is_a_lane_of_tests_in_the_open() -> None:
    assert "tail" in integration.FOREGROUND and "tail" in integration.BESIDE
    assert "tail" in integration.LANE_TESTS
    when, steps = integration.PREBUILDS["tail"]
    assert when == "cluster" and steps[0][0] == "tests/scripts/lane_tests.py"
    assert steps[0][-1] == "@" + str(integration.PREBUILD / "tail-items.txt")


def test_the_time_per_module_counts_what_a_lane_ran() -> None:
    title, lines = top.module_table(
        {"tests/integration/test_examples.py": 0.4, "tests/integration/test_cluster.py": 266.0,
         "tests/unit/test_x.py": 0.2},
        {"tests/integration/test_examples.py": 80.6}, {"tests/integration/test_examples.py": 58,
                                                        "tests/integration/test_cluster.py": 60,
                                                        "tests/unit/test_x.py": 3})
    assert title == "time per test module (267 s in all; 81 s more in lanes beside the session)"
    assert re.fullmatch(r" +266 s +60 tests  tests/integration/test_cluster.py", lines[0])
    assert re.fullmatch(r" +81 s +58 tests  tests/integration/test_examples.py  \(81 s of it in a lane\)", lines[1])
    assert lines[2] == "   and 1 module(s) under 1 s each"


def test_without_lanes_the_table_is_as_before() -> None:
    title, lines = top.module_table({"tests/integration/test_bench.py": 293.2}, {},
                                    {"tests/integration/test_bench.py": 3})
    assert title == "time per test module (293 s in all)"
    assert lines == ["     293 s     3 tests  tests/integration/test_bench.py"]


@pytest.mark.parametrize(("problem", "there", "warm"), [
    (None, {"mpi4py-kit:trixie", "debian:trixie-slim"}, True), (None, {"debian:trixie-slim"}, False),
    (None, {"mpi4py-kit:trixie"}, False), ("no engine", {"mpi4py-kit:trixie", "debian:trixie-slim"}, False)])
def test_the_lane_runs_only_in_a_session_that_starts_warm(problem, there: set[str], warm: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Warm: the kit's image and its base there. In a cold run the builds are the longest path, and the lane's
    tests beside the session's took the CPU the tests waiting for those builds needed."""
    monkeypatch.setattr(integration.docker, "engine_problem", lambda: problem)
    monkeypatch.setattr(integration.docker, "image_exists", lambda image: image in there)
    integration.warm_start.cache_clear()
    try:
        assert integration.warm_start() is warm
    finally:
        integration.warm_start.cache_clear()
