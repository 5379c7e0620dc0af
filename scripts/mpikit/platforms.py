"""Which machine the image is for (PLATFORM): the host's own, or another one
built and run under emulation (qemu-user through binfmt_misc).

The names that depend on it live here: the image tag, the SIF file, the base
image. An image for another platform never takes the host's names, so an
arm64 build cannot overwrite the amd64 image or SIF. Pure functions, apart
from reading the host's machine and its binfmt_misc registrations.
"""

from __future__ import annotations

import platform as _platform
from pathlib import Path

SUPPORTED = ("linux/amd64", "linux/arm64")
# Bases built and tested under emulation; the others are native-only (the
# arm64 build takes about half an hour on 2 cores, partly emulated: one base is enough).
EMULATED_BASES = ("trixie",)
# What the kernel (uname -m, Python's platform.machine()) calls each architecture.
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
# Docker's official per-architecture repositories (arm64v8/debian, amd64/debian):
# the base for another platform has the name a registry would serve it under.
ARCH_REPOSITORY = {"amd64": "amd64", "arm64": "arm64v8"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def host(machine: str | None = None) -> str:
    """The host's platform as Docker names it: x86_64 -> linux/amd64, aarch64 or arm64 (macOS) -> linux/arm64.
    A Mac runs Linux images in Docker Desktop's VM, of the Mac's own architecture."""
    machine = (machine if machine is not None else _platform.machine()).lower()
    arch = next((a for a, m in MACHINE.items() if machine in (a, m)), machine)
    return f"linux/{arch}"


def arch(platform: str) -> str:
    """linux/arm64 -> arm64."""
    return platform.rpartition("/")[2]


def is_host(platform: str, machine: str | None = None) -> bool:
    return platform == host(machine)


def image_tag(name: str, base: str, platform: str, machine: str | None = None) -> str:
    """The default image: NAME:BASE for the host, NAME:BASE-ARCH for another platform."""
    return f"{name}:{base}" if is_host(platform, machine) else f"{name}:{base}-{arch(platform)}"


def sif_name(platform: str, machine: str | None = None) -> str:
    """The default SIF: mpi.sif for the host, mpi-ARCH.sif for another platform."""
    return "mpi.sif" if is_host(platform, machine) else f"mpi-{arch(platform)}.sif"


def base_image(base: str, platform: str, machine: str | None = None) -> str:
    """The Debian base the recipes start from: debian:BASE-slim for the host,
    e.g. arm64v8/debian:BASE-slim for another platform."""
    if is_host(platform, machine):
        return f"debian:{base}-slim"
    return f"{ARCH_REPOSITORY[arch(platform)]}/debian:{base}-slim"


def emulation_problem(platform: str, binfmt: Path = BINFMT) -> str | None:
    """Why this Linux host cannot run `platform`'s binaries, or None when it can.

    Emulation needs qemu-user registered in binfmt_misc with the F flag (the
    interpreter is opened at registration, so it works inside containers and
    user namespaces, as Docker builds and Apptainer's --fakeroot need).
    """
    machine = MACHINE.get(arch(platform), arch(platform))
    if not (binfmt / "status").is_file():
        return f"binfmt_misc is not mounted at {binfmt}"
    if (binfmt / "status").read_text().strip() != "enabled":
        return "binfmt_misc is disabled"
    entry = binfmt / f"qemu-{machine}"
    if not entry.is_file():
        return f"no qemu-{machine} interpreter is registered in {binfmt}"
    lines = entry.read_text().splitlines()
    if "enabled" not in lines:
        return f"the qemu-{machine} interpreter is registered but disabled"
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if "F" not in flags:
        return (f"qemu-{machine} is registered without the F flag (flags: {flags or 'none'}), so containers "
                "cannot find the interpreter; qemu-user-static registers it with F")
    return None
