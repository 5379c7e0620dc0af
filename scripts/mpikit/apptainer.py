"""Apptainer, through spython: build a SIF from Apptainer.def, inspect it, run
a command in it; and the Apptainer-in-Docker helper for hosts without one.

spython runs a command named `singularity` and nothing else. Where the host
has only `apptainer`, a private bin folder maps the name; where the host has
no Apptainer at all (this CI machine, macOS and Windows laptops), the same
name runs Apptainer inside a container (scripts/apptainer/Dockerfile) with
the repository mounted at its own path, and the kit says so. That shim, and
the chdir the build needs (%files paths are relative to the current folder,
and spython takes no cwd), live in this adapter and nowhere else.

Built SIFs are cached outside the checkout by a digest of everything they are
built from, so an unchanged recipe is not rebuilt (its %test still runs).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from . import config, docker, platforms
from .choose import host_apptainer
from .config import ROOT
from .launch import show
from .ui import MissingPrerequisite, RunError, UsageError, say

HELPER_DOCKERFILE = ROOT / "scripts" / "apptainer" / "Dockerfile"
HELPER_BASE = "trixie"  # sid's Apptainer needs glibc 2.38: trixie or later
# What nested, unprivileged Apptainer needs from Docker (verified on Docker 20.10):
# mounts (SYS_ADMIN, no seccomp/apparmor filters, writable /proc/sys) and FUSE.
HELPER_OPTIONS = ("--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
                  "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
                  "--device", "/dev/fuse")
STAGE = ROOT / "build" / "sif"
CACHE = Path(os.environ.get("MPIKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "mpi4py-kit")


def helper_image(base: str = HELPER_BASE) -> str:
    return f"mpi4py-kit-apptainer:{base}"


@functools.cache
def supports_sharens(apptainer: str) -> bool:
    """--sharens exists from Apptainer 1.3 on (older installs reject the flag). When the answer cannot be
    read, the kit says so: the srun modes then run each rank with a plain apptainer exec."""
    try:
        proc = subprocess.run([apptainer, "exec", "--help"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"warning: `{apptainer} exec --help` gave no answer ({exc}), so whether this Apptainer has --sharens "
            "(1.3 and later) is unknown: the ranks run each in a plain apptainer exec (APPTAINER_MODE=exec)")
        return False
    if "--sharens" not in proc.stdout:
        say(f"warning: this Apptainer has no --sharens (`{apptainer} exec --help`; it came with Apptainer 1.3): "
            "the ranks run each in a plain apptainer exec (APPTAINER_MODE=exec), slower to start")
        return False
    return True


def ensure_helper(base: str = HELPER_BASE) -> str:
    """The Apptainer-in-Docker image for `base`: built once (about a minute), then a cached rebuild."""
    docker.require_engine("Apptainer in a container (no Apptainer on this host)")
    # Only a Linux host's own /dev/fuse is the engine's; Docker Desktop (macOS, Windows)
    # runs containers in a VM whose kernel provides it.
    if sys.platform.startswith("linux") and not Path("/dev/fuse").exists():
        raise MissingPrerequisite("no /dev/fuse on this host, which Apptainer in a container needs; "
                                  "install Apptainer on the host instead")
    image = helper_image(base)
    if not docker.image_exists(image):
        say(f"building {image}: Apptainer from Debian sid in a {base} container (about a minute)")
    docker.ensure_base(base)
    docker.build_quietly(image, HELPER_DOCKERFILE, build_args={"BASE": base}, context=HELPER_DOCKERFILE.parent)
    return image


def helper_argv(*apptainer_args: str) -> list[str]:
    """`apptainer ARGS` inside the helper, with the repository at its own path."""
    return [docker.command(), "run", "--rm", *HELPER_OPTIONS, "-v", f"{ROOT}:{ROOT}",
            "-w", str(ROOT), helper_image(), *apptainer_args]


def apptainer_argv(*args: str) -> list[str]:
    """`apptainer ARGS` on this host, or in the helper when the host has none."""
    host = host_apptainer()
    return [host, *args] if host else helper_argv(*args)


@contextlib.contextmanager
def _singularity_on_path() -> Iterator[str]:
    """Put a `singularity` that works on PATH for spython; yields how it runs."""
    with tempfile.TemporaryDirectory(prefix="mpikit-bin-") as tmp:
        host = host_apptainer()
        if host:
            command, how = [host], f"the host's {host}"
        else:
            ensure_helper()
            command, how = helper_argv(), f"Apptainer inside the container {helper_image()} (no Apptainer here)"
        # For builds stderr joins stdout: spython streams stdout only, and Apptainer
        # reports its progress and its errors on stderr. Other commands keep them apart
        # (inspect's JSON is on stdout).
        shim = Path(tmp) / "singularity"
        shim.write_text("#!/bin/sh\n"
                        f'if [ "$1" = build ]; then exec {show(command)} "$@" 2>&1; fi\n'
                        f'exec {show(command)} "$@"\n')
        shim.chmod(0o755)
        old_path, old_cwd = os.environ.get("PATH", ""), Path.cwd()
        os.environ["PATH"] = f"{tmp}{os.pathsep}{old_path}"
        os.chdir(ROOT)  # %files paths in Apptainer.def are relative to the repository
        try:
            yield how
        finally:
            os.environ["PATH"] = old_path
            os.chdir(old_cwd)


def _client():
    from spython.main import Client  # in .venv (requirements/dev.txt); commands that build re-run there

    return Client


def inspect_labels(sif: Path) -> dict[str, str]:
    """The SIF's labels (spython's Client.inspect)."""
    with _singularity_on_path():
        result = _client().inspect(str(sif), quiet=True)
    if not isinstance(result, dict):
        raise RunError(f"apptainer inspect {sif} failed: {result}")
    labels = result.get("attributes", {}).get("labels", {})
    return labels if isinstance(labels, dict) else {}


def execute(sif: Path, argv: list[str]) -> tuple[int, str]:
    """Run argv in the SIF (spython's Client.execute): (exit status, output)."""
    with _singularity_on_path():
        result = _client().execute(str(sif), argv, return_result=True, quiet=True)
    message = result.get("message", "")
    return result.get("return_code", 1), "".join(message) if isinstance(message, list) else str(message)


# ---- building the SIF ----

def stage_for(base: str, platform: str) -> Path:
    """Where one build's staged files go (base archive, CA bundle, arguments, the SIF): a folder
    per base and platform, so an arm64 build (about half an hour cold, partly emulated) and the host's SIF
    builds can run at the same time without taking each other's files."""
    return STAGE / f"{base}-{platforms.arch(platform)}"


def build_arguments(base: str, ca_cert: str | None, platform: str | None = None,
                    stage: Path | None = None) -> dict[str, str]:
    """Apptainer.def's {{ ARGS }}: where the base comes from, and the pins and platform for %labels.
    The SIF's architecture is the base's: Apptainer reads it from the root's /bin/sh."""
    platform = platform or platforms.host()
    stage = stage or stage_for(base, platform)
    # The builder stage runs on the host's own platform and cross-compiles for ARCH (install.sh).
    args = {**config.stack_pins(base), "PLATFORM": platform, "CA_CERT": "/dev/null", "BOOTSTRAP": "docker",
            "FROM": platforms.base_image(base, platform), "ARCH": platforms.arch(platform),
            "BUILDER_BOOTSTRAP": "docker", "BUILDER_FROM": platforms.base_image(base, platforms.host()),
            "SOURCE_DATE_EPOCH": config.source_date_epoch(), "BUILD_DATE": build_date(config.source_date_epoch())}
    if docker.engine_problem() is None:
        # The same local bases the Docker image uses (pulled or debootstrapped).
        archive = _save_base(base, platform, stage / "base.tar")
        args.update(BOOTSTRAP="docker-archive", FROM=archive, BUILDER_BOOTSTRAP="docker-archive",
                    BUILDER_FROM=archive)
        if not platforms.is_host(platform):
            args["BUILDER_FROM"] = _save_base(base, platforms.host(), stage / "builder-base.tar")
    if ca_cert:
        staged = stage / "ca.pem"
        shutil.copyfile(ca_cert, staged)
        staged.chmod(0o644)
        args["CA_CERT"] = _as_built(staged)
    return args


def build_date(epoch: str) -> str:
    """SOURCE_DATE_EPOCH as Apptainer writes its org.label-schema.build-date label (Go's layout
    Monday_2_January_2006_15:04:05_MST, in UTC): Thursday_3_December_2026_8:35:45_UTC."""
    when = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    return f"{when:%A}_{when.day}_{when:%B}_{when.year}_{when.hour}:{when:%M:%S}_UTC"


def _save_base(base: str, platform: str, archive: Path) -> str:
    docker.run("save", "-o", str(archive), docker.ensure_base(base, platform))
    archive.chmod(0o644)
    return _as_built(archive)


def _as_built(path: Path) -> str:
    """A staged file as Apptainer.def names it: relative to the repository (the build runs there), since
    the SIF keeps the name (its definition's From: line, a label), and a checkout's own path would make
    two checkouts' builds of the same inputs differ."""
    return os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else str(path)


def cache_entry(base: str, platform: str) -> Path:
    """Where the build of these inputs is cached: named by base, arch and the digest of the recipe, the
    build inputs, the pins, the platform, the base image and the Apptainer that builds. Called before
    the `singularity` shim goes on PATH: a digest that saw the shim's temporary folder would differ on
    every run, and nothing would ever be reused."""
    host = host_apptainer()
    items = [*(f"{k}={v}" for k, v in sorted(config.stack_pins(base).items())), f"platform={platform}",
             f"base={docker.image_id(platforms.base_image(base, platform)) or 'registry'}",
             f"builder={docker.image_id(platforms.base_image(base, platforms.host())) or 'registry'}",
             f"apptainer={host or docker.image_id(helper_image())}",
             f"SOURCE_DATE_EPOCH={config.source_date_epoch()}"]
    digest = config.inputs_digest("Apptainer.def", items)
    return CACHE / "sif" / f"{base}-{platforms.arch(platform)}-{digest}.sif"


def stale_cache_entries(folder: Path, base: str, arch: str) -> list[Path]:
    """The cached builds a new build for base and arch replaces: its own older ones, and
    those named before the cache was keyed on the platform (BASE-DIGEST.sif, host builds)."""
    return sorted(p for p in folder.glob(f"{base}-*.sif")
                  if p.name.startswith(f"{base}-{arch}-") or re.fullmatch(rf"{base}-[0-9a-f]{{16}}\.sif", p.name))


def build_sif(base: str, sif: Path, ca_cert: str | None, platform: str | None = None) -> None:
    """make sif: build Apptainer.def for `base` and `platform` into `sif`, or reuse the cached build
    of the same inputs (the cache keeps one build per base and platform)."""
    platform = platform or platforms.host()
    docker.ensure_emulation(platform)  # another platform's %post and %test run under qemu
    stage = stage_for(base, platform)
    stage.mkdir(parents=True, exist_ok=True)
    for folder in (STAGE, stage):
        folder.chmod(0o777)  # the unprivileged builder writes here
    # The helper and the base first: the digest names their images.
    if not host_apptainer():
        ensure_helper()
    if docker.engine_problem() is None:
        docker.ensure_base(base, platform)
        docker.ensure_base(base)  # the builder stage's, on the host's platform
    cached, arch = cache_entry(base, platform), platforms.arch(platform)
    with _singularity_on_path() as how:
        try:
            if cached.is_file():
                _reuse(cached, sif, stage)
                return
            args = build_arguments(base, ca_cert, platform, stage)
            _build(base, args, how, stage)
            _check_arch(stage / "mpi.sif", arch)
            cached.parent.mkdir(parents=True, exist_ok=True)
            for old in stale_cache_entries(cached.parent, base, arch):
                old.unlink()  # one cached build per base and platform: the newest
            shutil.copyfile(stage / "mpi.sif", cached)
            # A copy, so the SIF belongs to whoever ran make (the builder's uid wrote the staged one).
            shutil.copyfile(stage / "mpi.sif", sif)
            say(f"built {sif} ({sif.stat().st_size / 1e6:.0f} MB, {arch}; %test passed at the end of the build; "
                f"cached as {cached})")
        finally:
            for leftover in ("base.tar", "builder-base.tar", "ca.pem", "sif.args", "mpi.sif"):
                (stage / leftover).unlink(missing_ok=True)


def require_cached(base: str, platform: str | None = None) -> Path:
    """The cached SIF built from the checkout's inputs for `base` and `platform`; a refusal naming
    make sif when there is none (or its bases or helper are missing, so that nothing can match)."""
    platform = platform or platforms.host()
    cached = cache_entry(base, platform)
    if not cached.is_file():
        again = f"make sif BASE={base}" + (f" PLATFORM={platform}" if not platforms.is_host(platform) else "")
        raise UsageError(f"no SIF built from these inputs to compare with (expected {cached}); build it first: "
                         f"{again}")
    return cached


def build_fresh(base: str, ca_cert: str | None, platform: str | None = None) -> tuple[Path, Path, float]:
    """make reproduce-sif: Apptainer.def built once more from the same inputs, into a scratch folder of
    its own; the cache and the user's SIF untouched. Returns (the cached build of these inputs, the new
    one, seconds). Refuses when nothing is cached for these inputs: there is nothing to compare with."""
    platform = platform or platforms.host()
    cached, arch = require_cached(base, platform), platforms.arch(platform)
    docker.ensure_emulation(platform)
    # make sif's own folder: the SIF records the staged base's path, so a rebuild staged elsewhere would differ.
    stage = stage_for(base, platform)
    stage.mkdir(parents=True, exist_ok=True)
    for folder in (STAGE, stage):
        folder.chmod(0o777)  # the unprivileged builder writes here
    rebuilt = stage / "rebuilt.sif"
    rebuilt.unlink(missing_ok=True)
    start = time.monotonic()
    with _singularity_on_path() as how:
        try:
            _build(base, build_arguments(base, ca_cert, platform, stage), how, stage)
            _check_arch(stage / "mpi.sif", arch)
            (stage / "mpi.sif").rename(rebuilt)
        finally:
            for leftover in ("base.tar", "builder-base.tar", "ca.pem", "sif.args", "mpi.sif"):
                (stage / leftover).unlink(missing_ok=True)
    return cached, rebuilt, time.monotonic() - start


def sif_arch(listing: str) -> str | None:
    """The architecture stamped on a SIF's system partition, from `apptainer sif list`
    (a row like `4 |1 |NONE |36864-72687616 |FS (Squashfs/*System/arm64)`)."""
    found = re.search(r"FS \([^)/]+/\*System/([^)\s]+)\)", listing)
    return found.group(1) if found else None


def _check_arch(staged: Path, arch: str) -> None:
    """Apptainer stamps the architecture of the root's /bin/sh; a host of another one refuses
    the SIF (or needs emulation), so a SIF for `arch` must say `arch`."""
    proc = subprocess.run(["singularity", "sif", "list", str(staged)], capture_output=True, text=True)
    got = sif_arch(proc.stdout)
    if got != arch:
        raise RunError(f"the SIF built for {arch} says {got or 'no architecture'} on its system partition "
                       f"(apptainer sif list {staged}: {(proc.stdout + proc.stderr).strip()[-200:]}); "
                       "rebuild its base: docker rmi the base image, then make sif again")


def _build(base: str, args: dict[str, str], how: str, stage: Path) -> None:
    arg_file = stage / "sif.args"
    arg_file.write_text("".join(f"{k}={v}\n" for k, v in args.items()))
    arg_file.chmod(0o644)
    staged = stage / "mpi.sif"
    options = ["--fakeroot", "--force", "--build-arg-file", str(arg_file)]
    platform = args["PLATFORM"]
    if not platforms.is_host(platform):
        # The build's target: which image a registry's manifest list gives (Bootstrap: docker), and
        # no "does not match build arch" warning. Only for another platform: host builds stay as they were.
        options += ["--arch", platforms.arch(platform)]
    took = ("a few minutes" if platforms.is_host(platform) else
            "mpi4py cross-compiled on this host, the rest under qemu emulation: about half an hour cold")
    say(f"building the SIF from Apptainer.def (BASE={base}, PLATFORM={platform}) with {how}; {took}, "
        "%test runs at the end")
    say(f"+ singularity build {' '.join(options)} {staged} Apptainer.def")
    _, lines = _client().build(recipe="Apptainer.def", image=str(staged), sudo=False, stream=True,
                               options=options, quiet=True)
    try:
        for line in lines:
            print(line, end="", flush=True)
    except subprocess.CalledProcessError as exc:
        raise RunError(f"the SIF build failed (exit status {exc.returncode}); rerun: make sif BASE={base} "
                       f"PLATFORM={platform}") from None


def _reuse(cached: Path, sif: Path, stage: Path) -> None:
    say(f"the SIF's inputs are unchanged: reusing {cached}")
    staged = stage / "mpi.sif"  # under the repository, where Apptainer in a container sees it too
    shutil.copyfile(cached, staged)
    staged.chmod(0o644)
    proc = subprocess.run(["singularity", "test", str(staged)], capture_output=True, text=True)
    if proc.returncode != 0:
        cached.unlink(missing_ok=True)
        raise RunError(f"the cached SIF failed its %test ({(proc.stdout + proc.stderr).strip()[-300:]}); "
                       f"it was dropped from the cache; rerun: make sif SIF={sif}")
    shutil.copyfile(staged, sif)
    say(f"%test passed; wrote {sif} ({sif.stat().st_size / 1e6:.0f} MB)")
