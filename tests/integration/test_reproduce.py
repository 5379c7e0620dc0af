"""make reproduce: the image rebuilt from the same inputs without the build cache has the same files
(every path's type, mode, owner, link target and content). The user's image stays as it was, and the
scratch rebuild is removed when the two match.

make reproduce runs in the background from the moment the image is built (conftest.PREBUILDS): a cold
rebuild is minutes of compiling that the other tests overlap. This test reads that run's exit status and
output, or runs make reproduce itself when no background run was started."""

from __future__ import annotations

import subprocess

import pytest
from conftest import explain, make, prebuild_log, wait_for_prebuild
from mpikit import config, docker

pytestmark = pytest.mark.prebuilt("reproduce")


def test_a_rebuild_without_the_cache_has_the_same_files(docker_image: str) -> None:
    code = wait_for_prebuild("reproduce")
    if code == 0:
        proc = subprocess.CompletedProcess(["make", "reproduce"], code, prebuild_log("reproduce"), "")
    else:  # not started, or it failed: the verdict is this run's, in the open
        proc = make("reproduce", timeout=2400)
    out = proc.stdout + proc.stderr
    # The image it compared with (its ID, as make reproduce names it) is still the user's image.
    before = docker.image_id(docker_image)
    assert f"rebuilding {docker_image} ({before[:19]})" in out, explain(proc, "make reproduce")
    assert "Traceback" not in out, explain(proc, "make reproduce")
    if "the Debian mirror moved" in out:
        # Not the same inputs (a package moved on the mirror since the image was built): the rest must match.
        assert proc.returncode != 0 and "the rest is identical" in out, explain(proc, "make reproduce")
    else:
        assert proc.returncode == 0 and "identical:" in out, explain(proc, "make reproduce")
        assert not docker.image_exists(f"mpi4py-kit-reproduce:{config.default_base()}"), \
            "the scratch rebuild is left behind although it matched"


def test_an_image_to_compare_with_is_required(docker_image: str) -> None:
    proc = make("reproduce", "IMAGE=mpi4py-kit:no-such-tag", timeout=60)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "no image mpi4py-kit:no-such-tag" in errors[0], \
        explain(proc, "make reproduce IMAGE=mpi4py-kit:no-such-tag")
    assert "Traceback" not in proc.stdout + proc.stderr
