"""What runs is what the checkout builds (issue 33): after a committed change to a build input, make run
rebuilds the default image with one line naming the input, make image then finds it up to date, make doctor
names the stale image first; a named stale image runs with a one-line notice. The same for the default SIF
(here one built for another BASE) under RUNTIME=cluster, and no false alarm on the cluster's login node,
whose copy of the checkout has no git."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, assert_example, clean_env, explain, in_cluster, make, wait_for_prebuild
from mpikit import config, docker

IMAGE = f"{config.image_name()}:{config.default_base()}"
NAMED = "mpi4py-kit-stale-test:trixie"
EDITED = "examples/rank.py"


def in_clone(clone: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=clone, capture_output=True, text=True,
                          timeout=timeout, env=clean_env())


@pytest.fixture
def clone_with_an_edit(tmp_path: Path, docker_image: str):
    """A clone of this checkout with one committed change to an example, as a `git pull` brings; the default
    image tag is this checkout's build again afterwards (the clone's build moves it meanwhile). The background
    builds that read that tag have ended first: make reproduce compares that image, the users' environments are
    built on it, and make twin REQUIREMENTS=... makes the kit's SIF from it (in the cold run of 2026-12-07 it made
    that SIF from this clone's build, and the twins differed in this very edit)."""
    wait_for_prebuild("reproduce")
    wait_for_prebuild("envs")
    wait_for_prebuild("envtwin")
    before = docker.image_id(IMAGE)
    clone = tmp_path / "kit"
    git = ["git", "-c", "user.name=kit test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    with open(clone / EDITED, "a") as f:
        f.write("# a comment a pull brought\n")
    subprocess.run([*git, "-C", str(clone), "commit", "-qam", "an example changed"], check=True, timeout=60)
    try:
        yield clone
    finally:
        theirs = docker.image_id(IMAGE)
        if before:
            docker.run("tag", before, IMAGE)
        docker.run("rmi", NAMED, check=False)
        if theirs and theirs != before:
            docker.run("rmi", theirs, check=False)


# make reproduce and make twin REQUIREMENTS=... (in the background) read the default image: this test moves its tag
# meanwhile, so it runs after them (the later of the two in LATE_ORDER places it).
@pytest.mark.prebuilt("reproduce", "envtwin")
def test_a_changed_input_rebuilds_the_default_image_with_its_reason(clone_with_an_edit: Path) -> None:
    clone = clone_with_an_edit
    before = docker.image_id(IMAGE)
    proc = in_clone(clone, "doctor", "RUNTIME=docker", timeout=300)
    command = f"make doctor RUNTIME=docker   (in {clone}, after a commit to {EDITED})"
    assert f"PROBLEM  image {IMAGE} is stale ({EDITED} changed since it was built)" in proc.stdout, \
        explain(proc, command)
    assert "fix: rebuild it: make image BASE=trixie" in proc.stdout, explain(proc, command)

    proc = in_clone(clone, "run-rank", "NP=2", "RUNTIME=docker")
    command = f"make run-rank NP=2 RUNTIME=docker   (in {clone}, after a commit to {EDITED})"
    assert f"image {IMAGE} is stale ({EDITED} changed since it was built): rebuilding it first" in proc.stderr, \
        explain(proc, command)
    assert_example("rank", proc, 2, command)
    assert docker.image_id(IMAGE) != before, "the run did not rebuild the image"

    for args, said in ((["image"], f"image {IMAGE} is up to date"),
                       (["doctor", "RUNTIME=docker"], f"ok       image {IMAGE} was built from this checkout's inputs")):
        proc = in_clone(clone, *args, timeout=300)
        assert said in proc.stdout + proc.stderr, explain(proc, f"make {' '.join(args)}   (in {clone}, after the run)")

    # This checkout's build under a name of the user's: stale for the clone, it runs as it is, with one line.
    docker.run("tag", before, NAMED)
    proc = in_clone(clone, "run-rank", "NP=2", "RUNTIME=docker", f"IMAGE={NAMED}")
    command = f"make run-rank NP=2 RUNTIME=docker IMAGE={NAMED}   (in {clone})"
    notice = (f"note: image {NAMED} is not this checkout's build ({EDITED} changed since it was built); it runs as "
              f"it is (you named it); this checkout's build: make image IMAGE={NAMED} BASE=trixie")
    assert notice in proc.stderr.splitlines(), explain(proc, command)
    assert "building" not in proc.stderr, explain(proc, command)
    assert_example("rank", proc, 2, command)


@pytest.fixture
def default_sif_for_another_base(sif_bookworm: str):
    """The default SIF (mpi.sif, which make run-* with RUNTIME=cluster uses) as left by a run with
    BASE=bookworm: this checkout's build for another base. A SIF already there is put back after."""
    default, kept = ROOT / "mpi.sif", ROOT / "build" / "test" / "mpi.sif.kept"
    if default.exists():
        default.replace(kept)
    shutil.copyfile(ROOT / sif_bookworm, default)
    try:
        yield default
    finally:
        default.unlink(missing_ok=True)
        if kept.exists():
            kept.replace(default)


def test_a_stale_default_sif_is_rebuilt_and_a_current_one_is_quiet(default_sif_for_another_base: Path,
                                                                    cluster: str) -> None:
    why = "built for BASE=bookworm, not trixie"
    proc = make("doctor", "RUNTIME=cluster", timeout=300)
    command = "make doctor RUNTIME=cluster   (mpi.sif built with BASE=bookworm)"
    assert f"PROBLEM  {default_sif_for_another_base} is stale ({why})" in proc.stdout, explain(proc, command)
    assert "fix: rebuild it: make sif BASE=trixie" in proc.stdout, explain(proc, command)

    proc = make("run-rank", "NP=2", "RUNTIME=cluster", timeout=600)
    command = "make run-rank NP=2 RUNTIME=cluster   (mpi.sif built with BASE=bookworm)"
    assert f"{default_sif_for_another_base} is stale ({why}): rebuilding it first (make sif)" in proc.stderr, \
        explain(proc, command)
    assert_example("rank", proc, 2, command)
    labels = docker.image_labels(IMAGE) or {}
    from mpikit import sif

    assert sif.labels(default_sif_for_another_base)[config.SOURCE_LABEL] == labels[config.SOURCE_LABEL]

    # On the login node: the same checkout at /shared, without git; the SIF is current there too.
    proc = in_cluster("make", "--no-print-directory", "run-rank", "RUNTIME=apptainer", "NP=2")
    command = "make run-rank RUNTIME=apptainer NP=2   (on the cluster's login node, /shared/mpi.sif)"
    assert "stale" not in proc.stderr and "note:" not in proc.stderr, explain(proc, command)
    assert_example("rank", proc, 2, command)
