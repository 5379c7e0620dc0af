"""Apptainer, through spython: build a SIF from Apptainer.def, inspect it, run
a command in it; and the Apptainer-in-Docker helper for hosts without one.

spython runs a command named `singularity` and nothing else. Where the host
has only `apptainer`, a private bin folder maps the name; where the host has
no Apptainer at all (this CI machine, macOS and Windows laptops), the same
name runs Apptainer inside a container (scripts/apptainer/Dockerfile) with
the repository mounted at its own path, and the kit says so. That shim, and
the chdir the build needs (%files paths are relative to the current folder,
and spython takes no cwd), live in this adapter and nowhere else.

A SIF is made one of two ways (SIF_FROM): from the kit's Docker image of the
same BASE and PLATFORM (unpacked and squashed under Apptainer.def's run-time
sections: no build step runs again, and what Docker runs is what Apptainer
runs), or from Apptainer.def itself, every stage built again (where there is no
Docker engine, as on most login nodes). A test builds both on every CI run
and holds their root file systems equal (tests/integration/test_twin.py).

Built SIFs are cached outside the checkout by a digest of everything they are
built from, so an unchanged recipe or image is not made again (its %test still runs).
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
CACHE = config.CACHE


# SIF_FROM: how make sif makes the SIF; auto is image where a Docker engine answers, else recipe.
SOURCES = ("auto", "image", "recipe")
# The sections of Apptainer.def's final stage that describe the SIF at run time rather than build it:
# a SIF made from the image carries these, so both ways give the same environment, labels, help,
# %test and runscript.
RUN_TIME_SECTIONS = ("environment", "labels", "help", "test", "runscript")
IMAGE_RECIPE_HEADER = """\
# Made by scripts/mpikit/apptainer.py from Apptainer.def for make sif SIF_FROM=image: the kit's Docker
# image (docker save) under the run-time sections of Apptainer.def's final stage. Nothing is built here.
Bootstrap: docker-archive
From: {{ IMAGE_ARCHIVE }}
"""


def sif_source(asked: str, engine: bool) -> str:
    """What SIF_FROM=`asked` means here: auto is the image where a Docker engine answers (`engine`),
    since the image's build cache makes it at once; else Apptainer.def."""
    if asked not in SOURCES:
        raise UsageError(f"unknown SIF_FROM={asked!r}; choose one of: {', '.join(SOURCES)}")
    if asked == "auto":
        return "image" if engine else "recipe"
    return asked


def final_stage_sections(definition: str) -> dict[str, str]:
    """{section: body} of the definition's last stage (the one after its last Bootstrap: line), each body
    verbatim as Apptainer reads it: every line up to the next section, comments included."""
    final = re.split(r"(?m)^(?=Bootstrap:)", definition)[-1]
    sections: dict[str, str] = {}
    current = None
    for line in final.splitlines(keepends=True):
        if line.startswith("%"):
            current = line[1:].split()[0]
            sections[current] = sections.get(current, "")
        elif current:
            sections[current] += line
    return sections


def image_recipe(definition: str) -> str:
    """The definition a SIF made from the image is built from: a docker-archive header and the
    run-time sections of `definition`'s final stage, in its order and verbatim, so Apptainer writes the
    same environment, runscript, help and test files into both SIFs (the twin test compares them)."""
    sections = final_stage_sections(definition)
    body = "".join(f"%{name}\n{sections[name]}" for name in sections if name in RUN_TIME_SECTIONS)
    return IMAGE_RECIPE_HEADER + "\n" + body


def template_names(definition: str) -> list[str]:
    """The {{ NAME }} arguments a definition uses, in order, once each."""
    return list(dict.fromkeys(re.findall(r"{{\s*(\w+)\s*}}", definition)))


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
    # One build at a time: two at once (make test's background builds beside its tests) each made an image of
    # their own, the tag moved to the second, and every SIF cached under the first one's ID was built again.
    with docker.locked(f"helper-{base}"):
        docker.build_quietly(image, HELPER_DOCKERFILE, build_args={"BASE": base}, context=HELPER_DOCKERFILE.parent)
    return image


def helper_argv(*apptainer_args: str) -> list[str]:
    """`apptainer ARGS` inside the helper, with the repository at its own path. MPIKIT_BACKGROUND=1 (make test's
    background builds) gives the container a low CPU weight: niceness does not reach the engine's children."""
    return [docker.command(), "run", "--rm", *HELPER_OPTIONS, *docker.background_weight(), "-v", f"{ROOT}:{ROOT}",
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
    args = {**label_arguments(base, platform), "CA_CERT": "/dev/null", "BOOTSTRAP": "docker",
            "FROM": platforms.base_image(base, platform), "ARCH": platforms.arch(platform),
            "BUILDER_BOOTSTRAP": "docker", "BUILDER_FROM": platforms.base_image(base, platforms.host())}
    if docker.engine_problem() is None:
        # The same local bases the Docker image uses (pulled or debootstrapped).
        archive = _save_base(base, platform, stage / "base.tar")
        args.update(BOOTSTRAP="docker-archive", FROM=archive, BUILDER_BOOTSTRAP="docker-archive",
                    BUILDER_FROM=archive)
        if not platforms.is_host(platform):
            args["BUILDER_FROM"] = _save_base(base, platforms.host(), stage / "builder-base.tar")
    if ca_cert:
        args["CA_CERT"] = _stage_ca(ca_cert, stage)
    return args


def _stage_ca(ca_cert: str, stage: Path) -> str:
    """The CA bundle copied where the (unprivileged) builder reads it; its name as a definition gives it."""
    staged = stage / "ca.pem"
    shutil.copyfile(ca_cert, staged)
    staged.chmod(0o644)
    return _as_built(staged)


def label_arguments(base: str, platform: str) -> dict[str, str]:
    """The arguments the final stage's %labels and %post name: the pins, the platform, the inputs' time,
    what the checkout builds (config.SOURCE_LABEL, SOURCE_FILES_LABEL)."""
    epoch, source = config.source_date_epoch(), config.source_labels(base, platform)
    return {**config.stack_pins(base), "PLATFORM": platform, "SOURCE_DATE_EPOCH": epoch,
            "BUILD_DATE": build_date(epoch), "SOURCE": source[config.SOURCE_LABEL],
            "SOURCE_FILES": source[config.SOURCE_FILES_LABEL]}


def build_date(epoch: str) -> str:
    """SOURCE_DATE_EPOCH as Apptainer writes its org.label-schema.build-date label (Go's layout
    Monday_2_January_2006_15:04:05_MST, in UTC): Thursday_3_December_2026_8:35:45_UTC."""
    when = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    return f"{when:%A}_{when.day}_{when:%B}_{when.year}_{when.hour}:{when:%M:%S}_UTC"


def _save_base(base: str, platform: str, archive: Path) -> str:
    return _save(docker.ensure_base(base, platform), archive)


def _save(image: str, archive: Path) -> str:
    """`docker save` of `image` into the stage, readable by the builder (docker save writes 0600 as root; the
    builder in the helper is uid 1000), named as Apptainer.def names it."""
    docker.run("save", "-o", str(archive), image)
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
             f"SOURCE_DATE_EPOCH={config.source_date_epoch()}",
             # The Dockerfile too (the SIF's source label names it): else an edit to it alone would leave a
             # cached SIF whose label never matches, rebuilt on every run.
             f"source={config.source_labels(base, platform)[config.SOURCE_LABEL]}"]
    digest = config.inputs_digest("Apptainer.def", items)
    return CACHE / "sif" / f"{base}-{platforms.arch(platform)}-{digest}.sif"


def image_cache_entry(base: str, platform: str, image_id: str, kind: str = "image") -> Path:
    """Where the SIF made from the image `image_id` is cached: named by base, arch, `kind` ("image", the kit's;
    "env", a user's environment) and the digest of the image's ID, the recipe its run-time sections come from,
    the platform and the Apptainer."""
    host = host_apptainer()
    items = [f"image={image_id}", f"platform={platform}", f"apptainer={host or docker.image_id(helper_image())}",
             f"SOURCE_DATE_EPOCH={config.source_date_epoch()}"]
    digest = config.inputs_digest("Apptainer.def", items)
    return CACHE / "sif" / f"{base}-{platforms.arch(platform)}-{kind}-{digest}.sif"


ENV_SIFS_KEPT = 3  # users' environments' SIFs cached per base and platform: the newest


def stale_cache_entries(folder: Path, base: str, arch: str, source: str = "recipe") -> list[Path]:
    """The cached builds a new build for base, arch and source replaces: its own older ones, and for
    the recipe those named before the cache was keyed on the platform (BASE-DIGEST.sif, host builds).
    The cache keeps one of each source, so the twin test finds both."""
    if source == "image":
        return sorted(folder.glob(f"{base}-{arch}-image-*.sif"))
    if source == "env":  # several environments in use at once: all but the newest few
        found = sorted(folder.glob(f"{base}-{arch}-env-*.sif"), key=lambda p: p.stat().st_mtime, reverse=True)
        return sorted(found[ENV_SIFS_KEPT - 1:])
    return sorted(p for p in folder.glob(f"{base}-*.sif")
                  if re.fullmatch(rf"{base}-{arch}-[0-9a-f]{{16}}\.sif", p.name)
                  or re.fullmatch(rf"{base}-[0-9a-f]{{16}}\.sif", p.name))


def build_sif(base: str, sif: Path, ca_cert: str | None, platform: str | None = None, source: str = "recipe") -> None:
    """make sif: make the SIF for `base` and `platform` into `sif` from the image or from Apptainer.def
    (`source`, SIF_FROM), or reuse the cached build of the same inputs (the cache keeps one build per base,
    platform and source)."""
    platform = platform or platforms.host()
    if sif_source(source, docker.engine_problem() is None) == "image":
        build_sif_from_image(base, sif, ca_cert, platform)
        return
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


def build_sif_from_image(base: str, sif: Path, ca_cert: str | None, platform: str, image: str | None = None
                         ) -> None:
    """make sif SIF_FROM=image: the kit's image for `base` and `platform` (built first, as make image builds
    it: nothing when it is up to date) saved, unpacked and squashed under Apptainer.def's run-time sections.
    Only %test runs (under qemu for another platform): a minute or two, where Apptainer.def runs every stage
    again (about half an hour for arm64, most of it emulated). `image`: another image, built already (a
    user's environment on the kit's: REQUIREMENTS), made into `sif` the same way and cached apart (the
    newest ENV_SIFS_KEPT per base and platform)."""
    docker.require_engine("make sif SIF_FROM=image (the SIF made from the kit's Docker image)")
    docker.ensure_emulation(platform)  # %test runs the image's own binaries
    derived = image is not None
    if image is None:
        image = platforms.image_tag(config.image_name(), base, platform)
        docker.build_image(base, image, ca_cert, platform=platform)
    if not host_apptainer():
        ensure_helper()
    image_id = docker.image_id(image) or image
    kind = "env" if derived else "image"
    cached, arch = image_cache_entry(base, platform, image_id, kind), platforms.arch(platform)
    # Its own: a recipe build of the same base, or the kit's own SIF, may run beside it.
    # An environment's own too (named by its image): two environments' SIFs may be made at the same time.
    stage = STAGE / (f"{base}-{arch}-{kind}" + (f"-{image_id.removeprefix('sha256:')[:12]}" if derived else ""))
    stage.mkdir(parents=True, exist_ok=True)
    for folder in (STAGE, stage):
        folder.chmod(0o777)  # the unprivileged builder writes here
    with _singularity_on_path() as how:
        try:
            if cached.is_file():
                _reuse(cached, sif, stage)
                return
            archive = _save(image, stage / "image.tar")
            recipe = stage / "from-image.def"
            text = image_recipe((ROOT / "Apptainer.def").read_text())
            recipe.write_text(text)
            recipe.chmod(0o644)
            known = {**label_arguments(base, platform), "IMAGE_ARCHIVE": archive}
            args = {name: known[name] for name in template_names(text)}
            _build(base, args, how, stage, recipe=_as_built(recipe),
                   what=f"from the image {image} (docker save, unpacked and squashed; nothing is built again)",
                   took="a minute or two")
            _check_arch(stage / "mpi.sif", arch)
            cached.parent.mkdir(parents=True, exist_ok=True)
            for old in stale_cache_entries(cached.parent, base, arch, kind):
                old.unlink()
            shutil.copyfile(stage / "mpi.sif", cached)
            sif.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stage / "mpi.sif", sif)
            say(f"built {sif} from {image} ({sif.stat().st_size / 1e6:.0f} MB, {arch}; %test passed at the end of "
                f"the build; cached as {cached})")
        finally:
            for leftover in ("image.tar", "from-image.def", "sif.args", "mpi.sif"):
                (stage / leftover).unlink(missing_ok=True)
            if derived:
                _remove_empty(stage)


ENV_RECIPE = "Apptainer.def"  # scripts/image/Apptainer.env.def's name in a staged environment's context


def build_env_sif_from_recipe(base: str, sif: Path, ca_cert: str | None, platform: str, context: Path,
                              labels: dict[str, str], kit_source: str = "auto") -> None:
    """A user's environment's SIF built by Apptainer (SIF_FROM=recipe, or no Docker engine): the environment's
    staged `context` (environment.stage: its recipe, scripts/image/Apptainer.env.def, derive.sh and the user's
    files) on the kit's SIF for `base` (made as make sif makes it, SIF_FROM=`kit_source`: from the cache when
    its inputs are unchanged), the twin of the derived image's Dockerfile.env. `labels`: ENV_DIGEST and
    REQUIREMENTS for the recipe's %labels. Not cached: the SIF is named by its content already."""
    if not platforms.is_host(platform):
        raise UsageError(f"a user's environment is built on the host's platform only (PLATFORM={platform})")
    # The environment's own (named by its digest): two environments may be built at the same time.
    stage = STAGE / f"{base}-{platforms.arch(platform)}-env-recipe-{labels.get('ENV_DIGEST', 'unset')[:12]}"
    stage.mkdir(parents=True, exist_ok=True)
    for folder in (STAGE, stage):
        folder.chmod(0o777)  # the unprivileged builder writes here
    kit_sif = stage / "kit.sif"
    try:
        build_sif(base, kit_sif, ca_cert, platform, kit_source)
        kit_sif.chmod(0o644)
        known = {"KIT_SIF": _as_built(kit_sif), "CONTEXT": _as_built(context), "CA_CERT": "/dev/null", **labels}
        if ca_cert:
            known["CA_CERT"] = _stage_ca(ca_cert, stage)
        # Only the names the recipe uses: Apptainer refuses an argument a definition does not take.
        args = {name: known[name] for name in template_names((context / ENV_RECIPE).read_text())}
        for path in context.rglob("*"):  # the unprivileged builder reads the staged context
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        context.chmod(0o755)
        with _singularity_on_path() as how:
            recipe = _as_built(context / ENV_RECIPE)
            _build(base, args, how, stage, recipe=recipe, platform=platform,
                   what=f"for the environment from {recipe} (scripts/image/Apptainer.env.def) on the kit's SIF",
                   took="a few minutes (the compilers, then your packages)",
                   rerun=f"make sif REQUIREMENTS={labels.get('REQUIREMENTS', '...')} SIF_FROM=recipe")
            _check_arch(stage / "mpi.sif", platforms.arch(platform))
        sif.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stage / "mpi.sif", sif)
        say(f"built {sif} from {_as_built(context / ENV_RECIPE)} on the kit's SIF ({sif.stat().st_size / 1e6:.0f} MB)")
    finally:
        for leftover in ("kit.sif", "ca.pem", "sif.args", "mpi.sif"):
            (stage / leftover).unlink(missing_ok=True)
        _remove_empty(stage)


def _remove_empty(folder: Path) -> None:
    """An environment's staging folder, once its build's files are gone (one per environment would pile up)."""
    try:
        folder.rmdir()
    except OSError:
        pass  # something else is still in it: left as it is


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


def _build(base: str, args: dict[str, str], how: str, stage: Path, recipe: str = "Apptainer.def",
           what: str = "from Apptainer.def", took: str | None = None, platform: str | None = None,
           rerun: str | None = None) -> None:
    arg_file = stage / "sif.args"
    arg_file.write_text("".join(f"{k}={v}\n" for k, v in args.items()))
    arg_file.chmod(0o644)
    staged = stage / "mpi.sif"
    options = ["--fakeroot", "--force", "--build-arg-file", str(arg_file)]
    platform = platform or args["PLATFORM"]
    if not platforms.is_host(platform):
        # The build's target: which image a registry's manifest list gives (Bootstrap: docker), and
        # no "does not match build arch" warning. Only for another platform: host builds stay as they were.
        options += ["--arch", platforms.arch(platform)]
    took = took or ("a few minutes" if platforms.is_host(platform) else
                    "/opt/venv built on this host (mpi4py cross-compiled), the final stage under qemu emulation "
                    "(docs/arm.md)")
    say(f"building the SIF {what} (BASE={base}, PLATFORM={platform}) with {how}; {took}, %test runs at the end")
    say(f"+ singularity build {' '.join(options)} {staged} {recipe}")
    _, lines = _client().build(recipe=recipe, image=str(staged), sudo=False, stream=True,
                               options=options, quiet=True)
    try:
        for line in lines:
            print(line, end="", flush=True)
    except subprocess.CalledProcessError as exc:
        source = "image" if recipe != "Apptainer.def" else "recipe"
        rerun = rerun or f"make sif BASE={base} PLATFORM={platform} SIF_FROM={source}"
        raise RunError(f"the SIF build failed (exit status {exc.returncode}); rerun: {rerun}") from None


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
    os.utime(cached)  # used now: the cache keeps the newest environments' SIFs
    sif.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(staged, sif)
    say(f"%test passed; wrote {sif} ({sif.stat().st_size / 1e6:.0f} MB)")
