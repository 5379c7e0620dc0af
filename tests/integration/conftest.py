"""Integration tests: run scripts/kit and make exactly as users do.

Markers, set here from the fixtures a test uses: docker (a Docker engine and
the image), sif (a SIF built by make sif), cluster (the test Slurm cluster).
`pytest -m "not docker"` runs what needs no container. REQUIRE_CONTAINERS=1
(set by .ci/run) turns a missing Docker engine into a failure instead of a skip.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mpikit import config, docker, knobs, procs
from mpikit.checks import check_run, hosts_of

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_CONTAINERS = os.environ.get("REQUIRE_CONTAINERS") == "1"
MARKED_BY_FIXTURE = {"docker_image": ("docker",), "sif": ("docker", "sif"), "sif_bookworm": ("docker", "sif"),
                     "cluster": ("docker", "sif", "cluster")}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last = []
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("runtime") == "docker":
            names.add("docker_image")
        for fixture, markers in MARKED_BY_FIXTURE.items():
            if fixture in names:
                for marker in markers:
                    item.add_marker(marker)
        if item.get_closest_marker("last"):
            last.append(item)
    # Tests that end what the session started run at the very end, in the order their marker gives:
    # last(1) takes the default cluster down, last(2) then starts and tests the forky cluster.
    last.sort(key=lambda item: item.get_closest_marker("last").args[0] if item.get_closest_marker("last").args else 1)
    for item in last:
        items.remove(item)
        items.append(item)


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without any knob: a test states its own, never inherits them."""
    env = {k: v for k, v in os.environ.items() if k not in knobs.BY_NAME and not k.startswith("MAKE")}
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


def user_processes(settle: float = 10) -> list[str]:
    """The cluster user's processes and APPTAINER_MODE=join state left on the compute nodes, once
    `settle` seconds have passed for them to go (a join watcher looks every 0.2 s)."""
    from mpikit import cluster

    deadline = time.monotonic() + settle
    while True:
        found = []
        for node in cluster.COMPUTE:
            ps = docker.run("exec", node, "ps", "-u", cluster.USER, "-o", "pid=,args=", check=False).stdout
            found += [f"{node}: {line.strip()}" for line in ps.splitlines() if line.strip()]
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
