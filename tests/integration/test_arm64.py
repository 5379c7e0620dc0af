"""PLATFORM=linux/arm64 on this amd64 host: the image builds under qemu emulation
(rebuilt only when its inputs change: their digest is a label on the image,
outside the checkout), the smoke checks and the scatter pass in it, doctor says
the ranks ran on aarch64, the host's own image is untouched, and what emulation
does not cover is refused in one line. make sif PLATFORM=linux/arm64 makes (or
reuses from its cache) a SIF stamped arm64, from the arm64 image, whose %test
passes under emulation.

The image and the SIF are built in the background from the session's start
(conftest.PREBUILDS); these tests run after the others and first wait for it."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import (
    REQUIRE_CONTAINERS,
    assert_example,
    explain,
    kit,
    make,
    need_engine,
    stdlib_check,
    wait_for_prebuild,
)
from mpikit import apptainer, config, docker, platforms
from mpikit.config import EXAMPLES, LABEL_PREFIX, ROOT

PLATFORM = "linux/arm64"
ARCH = platforms.arch(PLATFORM)
IMAGE = platforms.image_tag(config.image_name(), "trixie", PLATFORM)
ON_ARM = platforms.is_host(PLATFORM)


def emulated(test):
    """Marks a test that runs the arm64 image under emulation (the fixture builds it). A cold
    arm64 build takes about half an hour on 2 cores, partly emulated: pytest.ini's 1800 s ceiling is for native
    steps."""
    marks = (pytest.mark.docker, pytest.mark.emulated, pytest.mark.prebuilt("arm64"), pytest.mark.timeout(5400),
             pytest.mark.skipif(ON_ARM, reason="arm64 is this host's own platform: the other tests cover it"),
             pytest.mark.usefixtures("arm64_image"))
    for mark in marks:
        test = mark(test)
    return test


def inspect(image: str) -> dict:
    proc = subprocess.run([docker.client(), "image", "inspect", image], capture_output=True, text=True)
    assert proc.returncode == 0, explain(proc, f"docker image inspect {image}")
    return json.loads(proc.stdout)[0]


@pytest.fixture(scope="module")
def arm64_image() -> str:
    """make image PLATFORM=linux/arm64: cold the first time, then reused while its inputs stay the same."""
    need_engine("the emulated arm64 image")
    problem = platforms.emulation_problem(PLATFORM)
    if problem:
        message = f"this host cannot emulate arm64 ({problem}); as root: bash scripts/provision.sh emulation"
        if REQUIRE_CONTAINERS:
            pytest.fail(message)
        pytest.skip(message)
    wait_for_prebuild("arm64")
    start = time.monotonic()
    proc = kit("image", "--platform", PLATFORM, timeout=5000)
    assert proc.returncode == 0, explain(proc, f"make image PLATFORM={PLATFORM}")
    print(f"make image PLATFORM={PLATFORM}: {time.monotonic() - start:.0f} s")
    return IMAGE


@pytest.mark.parametrize("command,knobs,words", [
    ("smoke", (), "runs under emulation in Docker only"),
    ("run-rank", ("RUNTIME=native",), "not RUNTIME=native: make run-rank PLATFORM=linux/arm64 RUNTIME=docker"),
    ("image", ("BASE=bookworm",), "is built for BASE=trixie only"),
    ("sif", ("BASE=bookworm",), "is built for BASE=trixie only"),
    ("cluster-batch", (), "make cluster-batch uses the test cluster"),
])
def test_what_emulation_does_not_cover_is_refused_in_one_line(command: str, knobs: tuple[str, ...],
                                                              words: str) -> None:
    if ON_ARM:
        pytest.skip("arm64 is this host's own platform: nothing is emulated")
    proc = make(command, f"PLATFORM={PLATFORM}", *knobs, timeout=60)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    line = f"make {command} PLATFORM={PLATFORM} {' '.join(knobs)}"
    assert proc.returncode != 0 and "] Error 2" in proc.stderr, explain(proc, line)
    assert len(errors) == 1 and words in errors[0], explain(proc, line)
    assert proc.stdout.strip() == "" and "Traceback" not in proc.stderr, explain(proc, line)


@emulated
def test_the_image_is_arm64_and_says_so() -> None:
    facts = inspect(IMAGE)
    labels = facts["Config"]["Labels"]
    assert facts["Architecture"] == ARCH, facts["Architecture"]
    assert {k: labels.get(k) for k in config.stack_labels("trixie", PLATFORM)} == \
        config.stack_labels("trixie", PLATFORM)
    assert labels.get(f"{LABEL_PREFIX}.inputs"), "the image carries no digest of its inputs"
    proc = subprocess.run([docker.client(), "run", "--rm", IMAGE, "uname", "-m"], capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.strip() == platforms.MACHINE[ARCH], explain(proc, f"docker run --rm {IMAGE} uname -m")


@emulated
def test_unchanged_inputs_are_not_rebuilt() -> None:
    start = time.monotonic()
    proc = kit("image", "--platform", PLATFORM, timeout=600)
    took = time.monotonic() - start
    assert proc.returncode == 0 and f"image {IMAGE} is up to date" in proc.stderr, \
        explain(proc, f"make image PLATFORM={PLATFORM} (again)")
    assert took < 60, f"an up-to-date image took {took:.0f} s to check"


@emulated
def test_the_hosts_own_image_and_base_keep_their_names() -> None:
    """An arm64 build never takes the host's names (mpi4py-kit:trixie, debian:trixie-slim)."""
    host_arch = platforms.arch(platforms.host())
    for image in (f"{config.image_name()}:trixie", "debian:trixie-slim"):
        if docker.image_exists(image):
            assert inspect(image)["Architecture"] == host_arch, image
    assert inspect(platforms.base_image("trixie", PLATFORM))["Architecture"] == ARCH


@emulated
def test_the_bytecode_compiled_on_the_build_host_is_the_arm64_interpreters_own() -> None:
    """The Dockerfile compiles /opt/venv on the build host's platform (amd64 here, install.sh hooks); the
    arm64 interpreter finds each .pyc where it looks, with its magic number, the source's hash and the code it
    would compile itself (tests/scripts/bytecode_check.py; amd64's are the twin test's)."""
    site = "/opt/venv/lib/python3.13/site-packages"
    paths = [f"{site}/mpi4py", f"{site}/numpy/_core", f"{site}/mpi4py_kit_abort.py", f"{site}/mpi4py_kit_guard.py"]
    argv = [docker.client(), "run", "--rm", *docker.background_weight(),  # the arm64 lane's low CPU weight
            "-v", f"{ROOT / 'tests' / 'scripts'}:/check:ro", IMAGE, "python", "-S", "/check/bytecode_check.py", *paths]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    command = " ".join(argv)
    assert proc.returncode == 0 and " .pyc files match" in proc.stdout, explain(proc, command)
    assert int(proc.stdout.split()[-4]) > 100, explain(proc, command)  # mpi4py's, numpy core's, the hooks


@emulated
def test_the_standard_library_compiled_on_the_build_host_is_the_arm64_interpreters_own() -> None:
    """The arm64 image's standard library is compiled on the build host's platform too (the stdlib stage,
    from the target's own files): every tenth module Debian compiles (in name order) has its .pyc, current
    for its source and the code the arm64 interpreter compiles itself (test_image checks all of amd64's; a
    compile under qemu is slow)."""
    proc, command = stdlib_check(IMAGE, pick="awk 'NR % 10 == 1'", timeout=600)
    assert proc.returncode == 0 and " .pyc files match" in proc.stdout, explain(proc, command)
    assert int(proc.stdout.split()[-4]) > 50, explain(proc, command)


@emulated
def test_smoke_passes_under_emulation() -> None:
    start = time.monotonic()
    proc = make("smoke", f"PLATFORM={PLATFORM}", "RUNTIME=docker", "NP=2", timeout=1800)
    print(f"make smoke PLATFORM={PLATFORM} RUNTIME=docker NP=2: {time.monotonic() - start:.0f} s")
    assert f"smoke: {len(EXAMPLES)} passed, 0 failed" in proc.stdout, \
        explain(proc, f"make smoke PLATFORM={PLATFORM} RUNTIME=docker NP=2")


@emulated
def test_the_scatter_runs_under_emulation() -> None:
    command = f'make run-scatter PLATFORM={PLATFORM} RUNTIME=docker NP=2 ARGS="--size 1000000"'
    proc = make("run-scatter", f"PLATFORM={PLATFORM}", "RUNTIME=docker", "NP=2", "ARGS=--size 1000000",
                timeout=900)
    assert_example("scatter", proc, 2, command, size=1_000_000)
    assert f" {IMAGE} " in proc.stderr, explain(proc, command)  # the arm64 image ran, not the host's


@emulated
def test_doctor_reports_the_ranks_on_aarch64_under_emulation() -> None:
    proc = make("doctor", f"PLATFORM={PLATFORM}", "RUNTIME=docker", timeout=900)
    command = f"make doctor PLATFORM={PLATFORM} RUNTIME=docker"
    assert proc.returncode == 0 and "doctor: 0 problem(s), ready to run" in proc.stdout, explain(proc, command)
    assert f"the ranks ran on aarch64 ({PLATFORM}), emulated by qemu-user" in proc.stdout, explain(proc, command)
    assert "2 ranks form one communicator (ranks [0, 1] of 2)" in proc.stdout, explain(proc, command)


@emulated
@pytest.mark.sif
def test_make_sif_builds_a_sif_stamped_arm64() -> None:
    """Made from the arm64 image (SIF_FROM=auto: the image, where an engine answers), which a test of the twin
    rule proves gives the files Apptainer.def gives (test_twin.py); then reused from the cache outside the
    checkout while its inputs stay the same, and its %test (2 ranks of rank.py) runs under emulation either
    way."""
    sif = ROOT / "build" / "test" / "mpi-arm64.sif"
    sif.parent.mkdir(parents=True, exist_ok=True)
    command = f"make sif PLATFORM={PLATFORM} SIF={sif.relative_to(ROOT)}"
    start = time.monotonic()
    proc = make("sif", f"PLATFORM={PLATFORM}", f"SIF={sif.relative_to(ROOT)}", timeout=5400)
    print(f"{command}: {time.monotonic() - start:.0f} s")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and sif.is_file(), explain(proc, command)
    assert "Running testscript" in out or "%test passed" in out, "the %test did not run" + explain(proc, command)
    listing = subprocess.run(apptainer.apptainer_argv("sif", "list", str(sif)), capture_output=True, text=True,
                             timeout=300)
    assert apptainer.sif_arch(listing.stdout) == ARCH, explain(listing, f"apptainer sif list {sif}")
    labels = apptainer.inspect_labels(sif)
    expected = config.stack_labels("trixie", PLATFORM)
    assert {k: labels.get(k) for k in expected} == expected, labels
