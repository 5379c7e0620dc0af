"""Integration tests: run scripts/kit and make exactly as users do.

Markers, set here from the fixtures a test uses: docker (a Docker engine and
the image), sif (a SIF built by make sif), cluster (the test Slurm cluster).
`pytest -m "not docker"` runs what needs no container. REQUIRE_CONTAINERS=1
(set by .ci/run) turns a missing Docker engine into a failure instead of a skip.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mpikit import config, docker, knobs, platforms, procs
from mpikit.checks import check_run, hosts_of

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_CONTAINERS = os.environ.get("REQUIRE_CONTAINERS") == "1"
MARKED_BY_FIXTURE = {"docker_image": ("docker",), "sif": ("docker", "sif"), "sif_bookworm": ("docker", "sif"),
                     "cluster": ("docker", "sif", "cluster")}

# The slow builds only a few tests need, each a chain of kit command lines run in the background, so they use
# what the other tests leave of the CPU instead of a stretch of their own: the emulated arm64 image and its SIF
# (most of it qemu running apt and pip on one core), Apptainer.def built again for the twin test, the bookworm
# image and SIF, and make reproduce's rebuild without the cache. "start": when the session begins (the arm64
# chain is long and mostly one core); "image": once the default image is built (the docker_image fixture), so
# the tests' first image gets the CPU first and no background build retags it; "bench": once test_bench.py's
# last test has run (with the image when the session has none); "cluster": once test_cluster.py's last test
# before the late ones has run (not at all when the session has none). A test marked prebuilt(name)
# runs after the others (prebuilt(name, late=False): where it is) and first waits for the build; each then runs
# its own make line, which finds the build done (up to date, or the SIF cache), or reads the background
# command's own output (make reproduce). A background build that failed costs time, never a verdict: the
# test's own line builds it again in the open.
PREBUILD = ROOT / "build" / "prebuild"
# Builds that start together run one after another, in this order (the first needed first): three compiles of
# mpi4py side by side starved the tests' own builds (the cluster's image, make bench-build's) of the CPU.
PREBUILDS: dict[str, tuple[str, tuple[list[str], ...]]] = {
    # Then the emulated tests themselves (LANE_TESTS), on the core qemu leaves: 132 s at the end of a warm run.
    "arm64": ("start", (["image", "--platform", "linux/arm64"],
                        ["sif", "--platform", "linux/arm64", "--sif", str(PREBUILD / "mpi-arm64.sif")],
                        ["tests/scripts/lane_tests.py", str(PREBUILD / "arm64-tests.json"),
                         "tests/integration/test_arm64.py", "-m", "emulated"])),
    # First of the image's builds: a test of test_bind.py and one of test_cluster.py, in the run's middle, need
    # its SIF (a cold run that built the environments first kept test_bind.py waiting 9 minutes for it).
    "bookworm": ("image", (["image", "--base", "bookworm"],
                           ["sif", "--base", "bookworm", "--sif", str(PREBUILD / "mpi-bookworm.sif")])),
    # The users' environments test_user_env.py runs (REQUIREMENTS), and the SIFs its cluster tests run (92, 70
    # and 63 s of those tests in the cold run of 2026-12-07): parallel h5py compiles for minutes. Before
    # Apptainer.def: the tests that wait for it are many (test_user_env, test_stale), and in that cold run, last
    # in turn, it was the run's longest path (its tests waited 394 s).
    "envs": ("image", (["image", "--requirements", "tests/envs/h5py.txt"],
                       ["image", "--requirements", "tests/envs/science.txt"],
                       ["image", "--requirements", "tests/envs/pure.txt"],
                       ["image", "--base", "bookworm", "--requirements", "tests/envs/science.txt"],
                       ["sif", "--requirements", "tests/envs/science.txt"],
                       ["sif", "--requirements", "tests/envs/h5py.txt"],
                       ["sif", "--requirements", "tests/envs/pure.txt"])),
    # After make bench-build (test_bench.py), which builds on the build cache as it stands: a build without
    # the cache beside or before it left the cache's entries for the same steps unused, and bench-build
    # compiled mpi4py again (17 minutes in a cold run).
    "reproduce": ("bench", (["reproduce"],)),
    # The forky cluster's images, for test_forky.py at the very end (87 s of a cold run's last minutes).
    "forky": ("bench", (["tests/scripts/cluster_images.py", "forky"],)),
    # An environment's twin SIFs (make twin REQUIREMENTS=...: one made from its image, one built by Apptainer on
    # the kit's SIF), then its image rebuilt without the cache (make reproduce REQUIREMENTS=...): after the
    # environments' builds (AFTER), whose image they use, beside the image's last build.
    "envtwin": ("bench", (["twin", "--requirements", "tests/envs/pure.txt"],
                          ["reproduce", "--requirements", "tests/envs/pure.txt"])),
    # Last of the image's builds: only test_twin.py waits for it (15 s of tests after it).
    "recipe": ("image", (["sif", "--sif-from", "recipe", "--sif", str(PREBUILD / "mpi-recipe.sif")],)),
    # The README's two commands on a newcomer's machine (test_newcomer.py): a script, not a kit command.
    "newcomer": ("image", (["tests/scripts/newcomer.py", str(PREBUILD / "newcomer.json")],)),
    # The tail: tests of the native and Docker runtimes (TAIL_MODULES) in a session of their own beside the
    # cluster's last tests, once test_cluster.py's tests are done (TRIGGERS). Builds nothing.
    "tail": ("cluster", (["tests/scripts/lane_tests.py", str(PREBUILD / "tail-tests.json"),
                          "@" + str(PREBUILD / "tail-items.txt")],)),
}
# Lanes whose last step runs tests (tests/scripts/lane_tests.py), with the file that step records their verdicts
# in: a test recorded there is not run again; the session gives the recorded verdict as its own (a failure with
# what pytest said in the lane). A test the lane did not record (its build failed first) runs in the open.
LANE_TESTS = {"arm64": PREBUILD / "arm64-tests.json", "tail": PREBUILD / "tail-tests.json"}
# A lane's own test session (tests/scripts/lane_tests.py sets it) starts no lanes and leaves the CPU weights.
IN_LANE = os.environ.get("MPIKIT_LANE") == "1"
# Lanes that run on their own beside the builds above instead of after them: they build nothing and wait
# mostly on the network (apt and pip in a clean container), so they need not queue behind the compiles.
BESIDE = {"newcomer", "tail"}
# Lanes of tests in the open, beside the session's own: at the tests' CPU weight, not a background build's.
FOREGROUND = {"tail"}
# The tail lane (issue 29). Past test_cluster.py, a warm run's session ran one test at a time with 20 to 50% of the
# 2 cores idle for its last 10 minutes (vmstat; the background builds were done). These modules' tests use only the
# native and Docker runtimes; those of them that need neither the cluster, nor a SIF (the `sif` fixture copies
# build/test/mpi.sif anew, which cluster jobs beside it run), nor a background build run in the lane, beside the
# session's tests of the cluster (test_lines.py, test_signing.py, ...), which touch nothing of theirs: their
# checks of what is left look at the cluster's nodes, and no test beside them runs a script of test_failures.py's
# leftovers check (test_bad_input.py and test_cluster.py, which do, have ended). The session then meets them first
# of the late tests, waits for the lane and gives its verdicts; so test_stale.py's late test, which moves the default
# image's tag, runs after them.
TAIL_MODULES = ("test_doctor.py", "test_examples.py", "test_failures.py", "test_image.py", "test_lint.py",
                "test_rank_wrapper.py", "test_scatter_property.py")
TAIL_EXCLUDED_MARKERS = ("sif", "cluster", "prebuilt", "last")


def in_tail(item: pytest.Item) -> bool:
    """Whether the tail lane may run `item`: a test of TAIL_MODULES that needs no SIF, cluster or other build.
    (Not the unit tests: this file's hooks, which give a lane's verdicts, reach only the tests of its folder.)"""
    path = item.nodeid.split("::")[0]
    return (path.startswith("tests/integration/") and path.rsplit("/", 1)[-1] in TAIL_MODULES
            and not any(item.get_closest_marker(marker) for marker in TAIL_EXCLUDED_MARKERS))


# The order the background builds end in on a fresh machine (expected from the cold run of 2026-12-07's figures,
# the bookworm image first of the image's builds, then the environments and their SIFs, Apptainer.def last: the
# newcomer's machine about 8 minutes in, the bookworm image 19, make reproduce 24, the environments 29, the forky
# images 29, the emulated arm64 chain with its tests 30, Apptainer.def 41): the late tests run in this order, so
# those whose build is done run while the others still build. The tail lane (4 minutes of tests in a warm run, from
# test_cluster.py's end) before make twin REQUIREMENTS=...'s: test_stale.py's late test, which moves the default
# image's tag, must follow it, and the session runs the environments' tests meanwhile (a warm run's session waited
# 14 s for the lane with it first).
LATE_ORDER = ("newcomer", "bookworm", "reproduce", "envs", "forky", "arm64", "tail", "envtwin", "recipe")
assert set(LATE_ORDER) == set(PREBUILDS), "every background build has its place in LATE_ORDER"
# A background build that starts only once another has ended (when the session started that one): it uses what
# the other builds.
AFTER = {"envtwin": "envs"}


def late_rank(item: pytest.Item) -> int:
    """A late test's place: after every build it waits for (a test of no known build: first)."""
    names = [name for mark in item.iter_markers("prebuilt") for name in mark.args]
    return max((LATE_ORDER.index(n) + 1 for n in names if n in LATE_ORDER), default=0)


# Fixtures whose tests need a background build, beside the tests marked for one.
PREBUILT_BY_FIXTURE = {"sif_bookworm": "bookworm"}
# What the background builds change while other tests run, which a test of "nothing changed" must leave out:
# their files, the images they make and the Apptainer helper's containers.
PREBUILD_PATHS = ("build/prebuild/", "build/sif/", "build/env/", "build/test/mpi-arm64.sif")
PREBUILD_IMAGES = ("mpi4py-kit:trixie-arm64", "arm64v8/debian:trixie-slim", "mpi4py-kit-apptainer:trixie",
                   "mpi4py-kit:bookworm", "debian:bookworm-slim", "mpi4py-kit-reproduce:trixie",
                   "debian:forky-slim", "mpi4py-kit-apptainer:forky", "mpi4py-kit-slurm:forky")
PREBUILD_IMAGE_PREFIXES = ("mpi4py-kit-env:",)  # the environments' images, named by their content
PREBUILD_CONTAINER_PREFIXES = ("mpikit-newcomer-",)  # the newcomer's machine (tests/scripts/newcomer.py)


class Prebuild:
    """One background build: its process while it runs, its exit status and times once it has ended."""

    def __init__(self, name: str) -> None:
        self.name, self.done = name, threading.Event()
        self.proc: subprocess.Popen | None = None
        self.code: int | None = None
        self.started = self.ended = 0.0
        self.waited = 0.0  # how long a test waited for it


_prebuilds: dict[str, Prebuild] = {}
_stopping = threading.Event()
_prebuilds_wanted: set[str] = set()
_bench_last: list[str] = []  # the node ID of the session's last test_bench.py test, if it has one
_cluster_last: list[str] = []  # the node ID of test_cluster.py's last test before the late ones (the tail's start)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last, late = [], []
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("runtime") == "docker":
            names.add("docker_image")
        for fixture, markers in MARKED_BY_FIXTURE.items():
            if fixture in names:
                for marker in markers:
                    item.add_marker(marker)
        for fixture, name in PREBUILT_BY_FIXTURE.items():
            if fixture in names:
                item.add_marker(pytest.mark.prebuilt(name, late=False))
        if not IN_LANE and item.nodeid.startswith(CLUSTER_MODULE) and not item.get_closest_marker("last") \
                and not any(mark.kwargs.get("late", True) for mark in item.iter_markers("prebuilt")):
            _cluster_last[:] = [item.nodeid]
        if item.get_closest_marker("last"):
            last.append(item)
        elif any(mark.kwargs.get("late", True) for mark in item.iter_markers("prebuilt")):
            late.append(item)
    # Tests of a background build run after the rest, which the build overlaps, and before the last ones; among
    # them, those whose build ends first come first (LATE_ORDER), so none waits while another's build is done.
    # The tail lane's tests (in_tail), when the session has cluster tests to run them beside and starts warm: late.
    if _cluster_last and not IN_LANE and warm_start():
        for item in items:
            if item not in last and item not in late and in_tail(item):
                item.add_marker(pytest.mark.prebuilt("tail"))
                late.append(item)
    late.sort(key=late_rank)
    for item in late:
        items.remove(item)
        items.append(item)
    # Tests that end what the session started run at the very end, in the order their marker gives:
    # last(1) takes the default cluster down, last(2) then starts and tests the forky cluster.
    last.sort(key=lambda item: item.get_closest_marker("last").args[0] if item.get_closest_marker("last").args else 1)
    for item in last:
        items.remove(item)
        items.append(item)


# BuildKit runs every build step in a cgroup under this one (cgroup v1's cpu controller, as Docker 20.10 here;
# cgroup v2 hosts name the same folder without the controller). Niceness does not reach a build (the steps are
# the engine's children, not the kit's), so while background builds run the session gives Docker's builds a low
# CPU weight against the tests' own processes and containers, and puts it back at the end.
BUILDKIT_CGROUPS = (Path("/sys/fs/cgroup/cpu/docker/buildkit/cpu.shares"),
                    Path("/sys/fs/cgroup/docker/buildkit/cpu.weight"))
BUILDKIT_WEIGHT = {"cpu.shares": "64", "cpu.weight": "5"}
BUILDKIT_DEFAULT = {"cpu.shares": "1024", "cpu.weight": "100"}  # what a session that was killed leaves is undone
_weights: dict[Path, str] = {}


def _yield_builds() -> None:
    for knob in BUILDKIT_CGROUPS:
        if os.geteuid() != 0 or not knob.parent.parent.is_dir():
            continue
        try:
            knob.parent.mkdir(exist_ok=True)
            now = knob.read_text().strip()
            _weights[knob] = BUILDKIT_DEFAULT[knob.name] if now == BUILDKIT_WEIGHT[knob.name] else now
            knob.write_text(BUILDKIT_WEIGHT[knob.name])
        except OSError as exc:
            print(f"\nbackground builds keep their CPU weight ({knob}: {exc})")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note the background builds the selected tests need and start those that start with the session, when an
    engine answers (without one those tests skip or fail on their own, and nothing is started)."""
    wanted = {name for item in session.items for mark in item.iter_markers("prebuilt") for name in mark.args}
    if IN_LANE or not wanted or session.config.option.collectonly or docker.engine_problem() is not None:
        return
    if platforms.is_host("linux/arm64") or platforms.emulation_problem("linux/arm64"):
        wanted.discard("arm64")
    _prebuilds_wanted.update(wanted)
    for record in LANE_TESTS.values():
        record.unlink(missing_ok=True)  # an earlier session's verdicts are never given
    _bench_last[:] = [item.nodeid for item in session.items if item.nodeid.startswith(BENCH_MODULE)][-1:]
    if "tail" in wanted:  # the lane's session runs these (pytest reads its arguments from the file, one a line)
        (PREBUILD / "tail-items.txt").parent.mkdir(parents=True, exist_ok=True)
        (PREBUILD / "tail-items.txt").write_text("".join(item.nodeid + "\n" for item in session.items
                                                         if "tail" in prebuilt_names(item)))
    PREBUILD.mkdir(parents=True, exist_ok=True)
    _yield_builds()
    start_prebuilds("start")


BENCH_MODULE = "tests/integration/test_bench.py"
CLUSTER_MODULE = "tests/integration/test_cluster.py"


def prebuilt_names(item: pytest.Item) -> list[str]:
    return [name for mark in item.iter_markers("prebuilt") for name in mark.args]


def pytest_runtest_logfinish(nodeid: str) -> None:
    if _bench_last and nodeid == _bench_last[0]:
        start_prebuilds("bench")
    if _cluster_last and nodeid == _cluster_last[0]:
        start_prebuilds("cluster")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test of a lane of tests in the open (FOREGROUND) waits for that lane first, then takes its verdict."""
    for name in prebuilt_names(item):
        if name in FOREGROUND:
            wait_for_prebuild(name)


def start_prebuilds(when: str) -> None:
    """Start the wanted background builds that start `when` ("start", "image", "bench" or "cluster"), each once,
    one after another in PREBUILDS' order (a thread of this session runs them), those of BESIDE each on its own."""
    names = [name for name, (after, _) in PREBUILDS.items()
             if after == when and name in _prebuilds_wanted and name not in _prebuilds]
    for name in names:
        _prebuilds[name] = Prebuild(name)
    beside = [name for name in names if name in BESIDE]
    in_turn = [name for name in names if name not in BESIDE]
    for lane in [in_turn, *([name] for name in beside)]:
        if lane:
            threading.Thread(target=_run_in_turn, args=(lane,), daemon=True).start()
    if in_turn:
        print(f"\nbackground builds started, in turn: {', '.join(in_turn)} (logs: {PREBUILD}/NAME.log)")
    if beside:
        print(f"\nstarted beside them: {', '.join(beside)} (logs: {PREBUILD}/NAME.log)")


@functools.cache
def warm_start() -> bool:
    """Whether the session starts with the kit's image built (a warm run): then the tail lane runs beside the
    session's tests. In a cold run the builds are the longest path, and the lane took the CPU the tests waiting for
    those builds needed: the cold run at 8f85b62 took 3009 s (the environments' tests waited 576 s, 355 s at
    ccefa10); there the tail's tests stay where they are."""
    base = config.default_base()
    return docker.engine_problem() is None and all(
        docker.image_exists(image) for image in (f"{config.image_name()}:{base}",
                                                 platforms.base_image(base, platforms.host())))


def command(argv: list[str]) -> list[str]:
    """A lane's step: a script of the tests (tests/scripts/NAME.py ARGS) or a kit command (scripts/kit ARGS)."""
    if argv[0].startswith("tests/scripts/"):
        return [str(ROOT / argv[0]), *argv[1:]]
    return [str(ROOT / "scripts" / "kit"), *argv]


def _run_in_turn(names: list[str]) -> None:
    for name in names:
        build = _prebuilds[name]
        before = _prebuilds.get(AFTER.get(name, ""))
        if before is not None:
            before.done.wait()
        if not _stopping.is_set():
            lines = " && ".join(shlex.join([sys.executable, *command(argv)]) for argv in PREBUILDS[name][1])
            with open(PREBUILD / f"{name}.log", "w") as log:
                build.started = time.monotonic()
                low = name not in FOREGROUND
                build.proc = subprocess.Popen([*(["nice", "-n", "19"] if low else []), "sh", "-c", lines], cwd=ROOT,
                                              env=clean_env(**({"MPIKIT_BACKGROUND": "1"} if low else {})),
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True)
                build.code = build.proc.wait()
                build.ended = time.monotonic()
        build.done.set()


def lane_verdict(item: pytest.Item) -> tuple[str, dict] | None:
    """The lane of this session that ran `item`, and the verdict it recorded; or None."""
    for name, record in LANE_TESTS.items():
        build = _prebuilds.get(name)
        if build is not None and build.done.is_set() and record.is_file():
            verdict = json.loads(record.read_text()).get(item.nodeid)
            if verdict is not None:
                return name, verdict
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """A test its lane ran already (its fixtures have waited for that lane) is not run again: its verdict is
    the lane's."""
    found = lane_verdict(pyfuncitem)
    if found is None:
        return None
    name, verdict = found
    _lane_given.append(verdict["seconds"])
    # The time it took there, for the time per test module (tests/conftest.py), which this call's few ms would hide.
    pyfuncitem.user_properties.append(("lane_seconds", verdict["seconds"]))
    if verdict["outcome"] == "failed":
        pytest.fail(f"failed in the background lane {name} (log: {PREBUILD / (name + '.log')}):\n{verdict['text']}",
                    pytrace=False)
    if verdict["outcome"] == "skipped":
        pytest.skip(f"skipped in its background lane: {verdict['text']}")
    return True


_lane_given: list[float] = []  # the lane's seconds for each test whose verdict the session gave


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A background build still running when the session ends (a failure, -x, Ctrl-C) is stopped, and the
    ones after it are not started."""
    _stopping.set()
    for build in _prebuilds.values():
        if build.proc is not None and build.proc.poll() is None:
            os.killpg(build.proc.pid, signal.SIGTERM)
    for knob, weight in _weights.items():
        try:
            knob.write_text(weight)
        except OSError:
            pass


def pytest_terminal_summary(terminalreporter) -> None:
    """The background builds' own times, which no test module's time includes (only the waits for them)."""
    if _lane_given:
        terminalreporter.write_line(f"{len(_lane_given)} tests ran in a background lane ({sum(_lane_given):.0f} s "
                                    "there); their verdicts are the lane's")
    for name, build in _prebuilds.items():
        if build.ended:
            terminalreporter.write_line(
                f"{build.ended - build.started:8.0f} s  background build {name} (exit status {build.code}, beside "
                f"the tests; a test waited {build.waited:.0f} s for it; log {PREBUILD / (name + '.log')})")


def wait_for_prebuild(name: str, timeout: float = 3600) -> int | None:
    """Wait for the background build `name` to end, if it was started, and return its exit status (None when it
    was not started or did not run: the caller then runs its line in the open). Its log is
    build/prebuild/NAME.log."""
    build = _prebuilds.get(name)
    if build is None:
        return None
    start = time.monotonic()
    if not build.done.wait(timeout):
        proc = build.proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        build.done.wait(60)
    build.waited += time.monotonic() - start
    print(f"background build {name}: exit status {build.code}, waited {build.waited:.0f} s "
          f"(log: {PREBUILD / (name + '.log')})")
    return build.code


def prebuild_log(name: str) -> str:
    return (PREBUILD / f"{name}.log").read_text(errors="replace")


def shim_target(python3: str | None, base: str) -> bool:
    """Whether `python3` (PATH's) is a version manager's shim, a script, that starts `base` (the interpreter that
    made .venv and runs the tests): then the tests' make may start `base` directly, the same interpreter."""
    if python3 is None or os.path.realpath(python3) == os.path.realpath(base):
        return False
    with open(python3, "rb") as head:
        if head.read(2) != b"#!":
            return False  # an interpreter of its own, perhaps another one: leave it
    proc = subprocess.run([python3, "-c", "import sys; print(getattr(sys, '_base_executable', sys.executable))"],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode == 0 and os.path.realpath(proc.stdout.strip()) == os.path.realpath(base)


@functools.cache
def direct_python_path() -> str:
    """PATH for the tests' make and kit commands: where PATH's python3 is a shim for the tests' own interpreter
    (pyenv's, on this project's CI machines), a folder with that interpreter as python3 comes first. Each make
    starts `python3 scripts/kit`, and the shim cost 0.11 s and as much CPU a start (0.18 s against 0.07 s), in
    hundreds of makes a run; the interpreter is the same one."""
    path = os.environ.get("PATH", "")
    base = getattr(sys, "_base_executable", sys.executable)
    if not shim_target(shutil.which("python3", path=path), base):
        return path
    folder = tempfile.mkdtemp(prefix="mpikit-python3-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.symlink(os.path.realpath(base), os.path.join(folder, "python3"))
    return f"{folder}{os.pathsep}{path}"


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without any knob: a test states its own, never inherits them; PATH's python3
    without a shim (direct_python_path)."""
    env = {k: v for k, v in os.environ.items() if k not in knobs.BY_NAME and not k.startswith("MAKE")}
    env["PATH"] = direct_python_path()
    env.update(overrides)
    return env


def kit(*args: str, timeout: int = 180, **env: str) -> subprocess.CompletedProcess:
    """scripts/kit ARGS, from the repository root, with a time limit."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "kit"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=clean_env(**env))


def make(*args: str, timeout: int = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=clean_env(**env))


def explain(proc: subprocess.CompletedProcess, command: str) -> str:
    return (f"\ncommand: {command}\nexit status: {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")


def assert_example(name: str, proc: subprocess.CompletedProcess, np: int, command: str,
                   size: int | None = None, hosts: set[str] | None = None) -> None:
    """The example's run is good by content (mpikit.checks), and ran on `hosts` when given."""
    verdict = check_run(name, proc.stdout, proc.stderr, proc.returncode, np, size)
    assert verdict.ok, "; ".join(verdict.problems) + explain(proc, command)
    if hosts is not None and name == "rank":
        assert hosts_of(proc.stdout) == hosts, f"ranks ran on {hosts_of(proc.stdout)}, expected {hosts}" + explain(
            proc, command)


def make_then_ctrl_c(*args: str, ranks: int) -> subprocess.CompletedProcess:
    """`make ARGS` until `ranks` ranks print 'rank N started', then Ctrl-C: a
    terminal sends SIGINT to the whole foreground process group."""
    return make_then(*args, ranks=ranks, interrupt=lambda proc: os.killpg(proc.pid, signal.SIGINT),
                     what="Ctrl-C")


def make_then(*args: str, ranks: int, interrupt: Callable[[subprocess.Popen], object],
              what: str) -> subprocess.CompletedProcess:
    """`make ARGS` until `ranks` ranks print 'rank N started', then `interrupt(proc)`; the run must
    end within 30 s of it."""
    # A terminal's job gets SIGINT's default action even where this test runs with SIGINT ignored
    # (a non-interactive shell's background job inherits SIG_IGN, and Python then keeps it).
    proc = subprocess.Popen(["make", "--no-print-directory", *args], cwd=ROOT, env=clean_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started: set[str] = set()
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while len(started) < ranks and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        started.update(re.findall(r"^rank (\d+) started", line))
    if len(started) < ranks:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"only ranks {sorted(started)} started: make {' '.join(args)}")
    interrupt(proc)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"{what} did not end the run within 30 s: make {' '.join(args)}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def leftovers(script: str, settle: float = 30) -> list[str]:
    """Processes (here or on the cluster's nodes, which this host sees) or containers still running
    `script`, once `settle` seconds have passed for them to go."""
    deadline = time.monotonic() + settle
    while True:
        found = procs.matching(script)
        assert found is not None, "this host has no /proc to look for leftover processes in"
        if docker.engine_problem() is None:
            ps = docker.run("ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.Command}}", check=False).stdout
            found += [f"container {line}" for line in ps.splitlines() if script in line]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def in_cluster(*command: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """A command on the test cluster's login node, as its user, in /shared (this repository)."""
    from mpikit import cluster

    return subprocess.run(cluster.on_login(command), capture_output=True, text=True, timeout=timeout)


def user_processes(settle: float = 10, ignore: str = "") -> list[str]:
    """The cluster user's processes and APPTAINER_MODE=join state left on the compute nodes, once
    `settle` seconds have passed for them to go (a join watcher looks every 0.2 s). A process whose command
    line holds `ignore` (when given) is not counted: waiting for one that stays by design was 10 s a test."""
    from mpikit import cluster

    deadline = time.monotonic() + settle
    while True:
        found = []
        for node in cluster.COMPUTE:
            ps = docker.run("exec", node, "ps", "-u", cluster.USER, "-o", "pid=,args=", check=False).stdout
            found += [f"{node}: {line.strip()}" for line in ps.splitlines()
                      if line.strip() and not (ignore and ignore in line)]
            state = docker.run("exec", node, "sh", "-c", "ls -d /tmp/mpi4py-kit-*/join-* 2>/dev/null",
                               check=False).stdout
            found += [f"{node}: {path}" for path in state.split()]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def need_engine(what: str) -> None:
    problem = docker.engine_problem()
    if problem:
        if REQUIRE_CONTAINERS:
            pytest.fail(f"REQUIRE_CONTAINERS=1 but there is no Docker engine for {what}: {problem}")
        pytest.skip(f"no Docker engine for {what} ({problem}); as root: bash scripts/provision.sh docker")


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The default image, rebuilt from the current recipe (cached layers make it quick)."""
    need_engine("the image")
    base = config.default_base()
    proc = kit("image", "--base", base, timeout=1800)
    assert proc.returncode == 0, explain(proc, f"make image BASE={base}")
    start_prebuilds("image")
    if not _bench_last:
        start_prebuilds("bench")
    return f"{config.image_name()}:{base}"


@pytest.fixture
def runtime_ready(request: pytest.FixtureRequest, runtime: str) -> str:
    """The parametrised runtime, with the image built when it is docker."""
    if runtime == "docker":
        request.getfixturevalue("docker_image")
    return runtime


def build_test_sif(sif: str, base: str) -> str:
    """`make sif` from the current Apptainer.def into the tests' own file; its %test must pass
    (at the end of the build, or on the cached build of the same inputs)."""
    (ROOT / "build" / "test").mkdir(parents=True, exist_ok=True)
    proc = make("sif", f"SIF={sif}", f"BASE={base}", timeout=1800)
    assert proc.returncode == 0, explain(proc, f"make sif SIF={sif} BASE={base}")
    out = proc.stdout + proc.stderr
    assert "Running testscript" in out or "%test passed" in out, "the definition's %test did not run" + explain(
        proc, f"make sif SIF={sif} BASE={base}")
    assert (ROOT / sif).is_file()
    return sif


@pytest.fixture(scope="session")
def sif(docker_image: str) -> str:
    return build_test_sif("build/test/mpi.sif", config.default_base())


@pytest.fixture(scope="session")
def sif_bookworm(docker_image: str) -> str:
    """The PMIx 4 image, for clusters whose Slurm speaks another PMIx than the default image."""
    wait_for_prebuild("bookworm")
    return build_test_sif("build/test/mpi-bookworm.sif", "bookworm")


@pytest.fixture(scope="session")
def cluster(sif: str):
    """The test Slurm cluster, started once (make cluster-up, twice: idempotent). The last test
    (test_cluster.py, marked last) takes it down and checks what that leaves."""
    need_engine("the test cluster")
    proc = make("cluster-up", timeout=900)
    assert proc.returncode == 0, explain(proc, "make cluster-up")
    again = make("cluster-up", timeout=300)
    assert again.returncode == 0 and "already up" in again.stderr, explain(again, "make cluster-up (again)")
    yield sif
    make("cluster-down", timeout=300)  # harmless when the last test has done it already


# The files Debian's own scripts byte-compile when Python installs (install.sh stdlib compiles them instead).
STDLIB_SOURCES = ("dpkg -L $(dpkg-query -W -f='${db:Status-Status} ${Package}\\n' 'libpython3.*-minimal' "
                  "'libpython3.*-stdlib' | awk '$1 == \"installed\" { print $2 }') python3-minimal python3 "
                  "| grep -E '^/usr/(lib/python3[.][0-9]+|share/python3)/.*[.]py$' | sort -u")


def stdlib_check(image: str, *, pick: str = "cat", timeout: int = 120) -> tuple[subprocess.CompletedProcess, str]:
    """Every standard-library module Debian compiles has its .pyc, current for its source (timestamp mode:
    mtime and size) and the code the image's own Python compiles (tests/scripts/bytecode_check.py)."""
    command = f"{STDLIB_SOURCES} | {pick} | xargs python -S /check/bytecode_check.py"
    # In the arm64 lane (MPIKIT_BACKGROUND=1), at the lane's low CPU weight.
    argv = [docker.client(), "run", "--rm", *docker.background_weight(),
            "-v", f"{ROOT / 'tests' / 'scripts'}:/check:ro", image, "bash", "-o", "pipefail", "-c", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout), " ".join(argv)
