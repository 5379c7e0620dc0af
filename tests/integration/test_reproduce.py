"""make reproduce: the image rebuilt from the same inputs without the build cache has the same files
(every path's type, mode, owner, link target and content). The user's image stays as it was, and the
scratch rebuild is removed when the two match."""

from __future__ import annotations

from conftest import explain, make
from mpikit import config, docker


def test_a_rebuild_without_the_cache_has_the_same_files(docker_image: str) -> None:
    before = docker.image_id(docker_image)
    proc = make("reproduce", timeout=2400)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, explain(proc, "make reproduce")
    if "the Debian mirror moved" in out:
        # Not the same inputs (a package moved on the mirror since the image was built): the rest must match.
        assert proc.returncode != 0 and "the rest is identical" in out, explain(proc, "make reproduce")
    else:
        assert proc.returncode == 0 and "identical:" in out, explain(proc, "make reproduce")
        assert not docker.image_exists(f"mpi4py-kit-reproduce:{config.default_base()}"), \
            "the scratch rebuild is left behind although it matched"
    assert docker.image_id(docker_image) == before, "make reproduce changed the user's image"


def test_an_image_to_compare_with_is_required(docker_image: str) -> None:
    proc = make("reproduce", "IMAGE=mpi4py-kit:no-such-tag", timeout=60)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "no image mpi4py-kit:no-such-tag" in errors[0], \
        explain(proc, "make reproduce IMAGE=mpi4py-kit:no-such-tag")
    assert "Traceback" not in proc.stdout + proc.stderr
