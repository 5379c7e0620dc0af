"""The PLATFORM knob: unset means the host's; another platform gets its own image
and SIF names, and what emulation does not cover is refused in one line."""

from __future__ import annotations

import pytest
from mpikit import config, knobs, platforms
from mpikit.ui import UsageError

HOST = platforms.host()
OTHER = next(p for p in platforms.SUPPORTED if p != HOST)  # linux/arm64 here, linux/amd64 on a Mac
EMULATED = platforms.EMULATED_BASES[0]


def read(command: str, example: str = "", **given: str):
    return knobs.read(command, knobs.raw_values({}, given), config.ROOT, example=example)


def test_unset_means_this_hosts_platform_and_the_usual_names() -> None:
    assert knobs.parse_platform("", machine="x86_64") == "linux/amd64"
    assert knobs.parse_platform("", machine="arm64") == "linux/arm64"
    s = read("run", "rank", RUNTIME="docker")
    assert s.platform == HOST
    assert s.image == f"{config.image_name()}:{config.default_base()}"
    assert s.sif == config.ROOT / "mpi.sif"


def test_another_platform_has_its_own_image_and_sif() -> None:
    s = read("run", "scatter", RUNTIME="docker", PLATFORM=OTHER)
    arch = platforms.arch(OTHER)
    assert (s.platform, s.image, s.image_is_default) == (OTHER, f"{config.image_name()}:{EMULATED}-{arch}", True)
    assert s.sif == config.ROOT / f"mpi-{arch}.sif"
    assert read("sif", PLATFORM=OTHER).sif == config.ROOT / f"mpi-{arch}.sif"
    # Names given by the user stay theirs.
    assert read("image", PLATFORM=OTHER, IMAGE="me/mpi:arm").image == "me/mpi:arm"
    assert read("sif", PLATFORM=OTHER, SIF="mine.sif").sif == config.ROOT / "mine.sif"


def test_an_unknown_platform_is_refused() -> None:
    with pytest.raises(UsageError, match=r"unsupported PLATFORM='linux/s390x'; choose one of: linux/amd64, "):
        read("image", PLATFORM="linux/s390x")


@pytest.mark.parametrize("command,example,given,says", [
    ("run", "scatter", {"RUNTIME": "native"}, "runs under emulation in Docker only .* not RUNTIME=native: "
     "make run-scatter PLATFORM=.* RUNTIME=docker"),
    ("smoke", "", {}, "not RUNTIME=auto: make smoke PLATFORM=.* RUNTIME=docker"),
    ("doctor", "", {"RUNTIME": "apptainer"}, "not RUNTIME=apptainer: make doctor"),
    ("batch", "", {}, "make cluster-batch uses the test cluster"),
    ("bench", "", {}, "make bench measures this"),
    ("bench-build", "", {}, "make bench-build measures this"),
    ("image", "", {"BASE": "bookworm"}, "is built for BASE=trixie only; drop BASE=bookworm: make image PLATFORM="),
    ("sif", "", {"BASE": "bookworm"}, "drop BASE=bookworm: make sif PLATFORM="),
    ("run", "rank", {"RUNTIME": "docker", "BASE": "bookworm"}, "drop BASE=bookworm: make run-rank PLATFORM="),
])
def test_what_emulation_does_not_cover_is_refused_in_one_line(command, example, given, says) -> None:
    with pytest.raises(UsageError, match=says) as caught:
        read(command, example, PLATFORM=OTHER, **given)
    assert "\n" not in str(caught.value)


def test_the_hosts_own_platform_named_explicitly_restricts_nothing() -> None:
    assert read("run", "rank", RUNTIME="native", PLATFORM=HOST, BASE="bookworm").base == "bookworm"
    assert read("bench", PLATFORM=HOST).platform == HOST
