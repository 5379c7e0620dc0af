"""PLATFORM: the host's platform, the names an image for another platform gets
(never the host's), and whether this host can emulate it (binfmt_misc)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpikit import platforms


@pytest.mark.parametrize("machine,want", [("x86_64", "linux/amd64"), ("AMD64", "linux/amd64"),
                                          ("aarch64", "linux/arm64"), ("arm64", "linux/arm64"),
                                          ("riscv64", "linux/riscv64")])
def test_host_platform_from_the_machine(machine: str, want: str) -> None:
    assert platforms.host(machine) == want


def test_the_hosts_names_are_unchanged_and_another_platforms_carry_its_arch() -> None:
    assert platforms.image_tag("mpi4py-kit", "trixie", "linux/amd64", "x86_64") == "mpi4py-kit:trixie"
    assert platforms.image_tag("mpi4py-kit", "trixie", "linux/arm64", "x86_64") == "mpi4py-kit:trixie-arm64"
    assert platforms.sif_name("linux/amd64", "x86_64") == "mpi.sif"
    assert platforms.sif_name("linux/arm64", "x86_64") == "mpi-arm64.sif"
    # On an Apple-silicon Mac arm64 is the host's own, and amd64 the emulated one.
    assert platforms.image_tag("mpi4py-kit", "trixie", "linux/arm64", "arm64") == "mpi4py-kit:trixie"
    assert platforms.sif_name("linux/amd64", "arm64") == "mpi-amd64.sif"


def test_the_base_for_another_platform_never_takes_the_hosts_name() -> None:
    assert platforms.base_image("trixie", "linux/amd64", "x86_64") == "debian:trixie-slim"
    assert platforms.base_image("trixie", "linux/arm64", "x86_64") == "arm64v8/debian:trixie-slim"
    assert platforms.base_image("trixie", "linux/amd64", "aarch64") == "amd64/debian:trixie-slim"


def binfmt(tmp_path: Path, status: str = "enabled", entry: str | None = None) -> Path:
    (tmp_path / "status").write_text(status + "\n")
    if entry is not None:
        (tmp_path / "qemu-aarch64").write_text(entry)
    return tmp_path


REGISTERED = ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\noffset 0\n"
              "magic 7f454c460201010000000000000000000200b700\n")


def test_emulation_works_with_qemu_registered_with_the_f_flag(tmp_path: Path) -> None:
    assert platforms.emulation_problem("linux/arm64", binfmt(tmp_path, entry=REGISTERED.format(flags="PF"))) is None


@pytest.mark.parametrize("status,entry,says", [
    (None, None, "binfmt_misc is not mounted"),
    ("disabled", None, "binfmt_misc is disabled"),
    ("enabled", None, "no qemu-aarch64 interpreter is registered"),
    ("enabled", REGISTERED.format(flags="P").replace("enabled\n", "disabled\n"), "registered but disabled"),
    ("enabled", REGISTERED.format(flags="P"), "without the F flag (flags: P)"),
])
def test_emulation_problems_say_what_is_missing(tmp_path: Path, status, entry, says: str) -> None:
    folder = tmp_path if status is None else binfmt(tmp_path, status, entry)
    problem = platforms.emulation_problem("linux/arm64", folder)
    assert problem is not None and says in problem
