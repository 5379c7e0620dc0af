"""The SIF: built from Apptainer.def through spython, unprivileged (--fakeroot).

spython calls a command named `singularity`. Where the host has only
`apptainer`, a private bin folder maps the name; where the host has no
Apptainer at all (this CI machine, macOS and Windows laptops), the same name
runs Apptainer inside a container (scripts/apptainer/Dockerfile) with the
repository mounted at its own path, and the kit says so.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import docker
from .config import ROOT, RunError, stack_pins
from .docker import say

HELPER_IMAGE = "mpi4py-kit-apptainer:trixie"
# What nested, unprivileged Apptainer needs from Docker (verified on Docker 20.10):
# mounts (SYS_ADMIN, no seccomp/apparmor filters, writable /proc/sys) and FUSE.
HELPER_OPTIONS = ["--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
                  "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
                  "--device", "/dev/fuse"]
STAGE = ROOT / "build" / "sif"


def host_apptainer() -> str | None:
    return shutil.which("apptainer") or shutil.which("singularity")


def supports_sharens(apptainer: str) -> bool:
    """--sharens exists from Apptainer 1.3 on (older installs reject the flag)."""
    try:
        text = subprocess.run([apptainer, "exec", "--help"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--sharens" in text


def ensure_helper() -> None:
    """The Apptainer-in-Docker image: built once (about a minute), then a cached rebuild."""
    docker.require_engine("building a SIF without Apptainer on this host")
    if not Path("/dev/fuse").exists():
        raise RunError("no /dev/fuse on this host, which Apptainer in a container needs; "
                       "install Apptainer on the host instead")
    if not docker.image_exists(HELPER_IMAGE):
        say(f"building {HELPER_IMAGE}: Apptainer from Debian sid in a trixie container (about a minute)")
    if subprocess.run(["bash", str(ROOT / "scripts" / "base-image.sh"), "trixie"]).returncode != 0:
        raise RunError("no debian:trixie-slim base image; retry: bash scripts/base-image.sh trixie")
    docker.build_quietly(HELPER_IMAGE, "apptainer")


def helper_argv(*apptainer_args: str) -> list[str]:
    """`apptainer ARGS` inside the helper, with the repository at its own path."""
    return [docker.client() or "docker", "run", "--rm", *HELPER_OPTIONS, "-v", f"{ROOT}:{ROOT}",
            "-w", str(ROOT), HELPER_IMAGE, *apptainer_args]


@contextlib.contextmanager
def singularity_command() -> Iterator[str]:
    """Put a `singularity` that works on PATH for spython; yields how it runs."""
    with tempfile.TemporaryDirectory(prefix="mpikit-bin-") as tmp:
        shim = Path(tmp) / "singularity"
        host = host_apptainer()
        if host:
            command = [host]
            how = f"the host's {host}"
        else:
            ensure_helper()
            command = helper_argv()
            how = f"Apptainer inside the container {HELPER_IMAGE} (no Apptainer on this host)"
        # stderr joins stdout: spython streams stdout only, and Apptainer
        # reports its progress and its errors on stderr.
        shim.write_text(f'#!/bin/sh\nexec {" ".join(shlex.quote(a) for a in command)} "$@" 2>&1\n')
        shim.chmod(0o755)
        old_path = os.environ.get("PATH", "")
        os.environ["PATH"] = f"{tmp}{os.pathsep}{old_path}"
        try:
            yield how
        finally:
            os.environ["PATH"] = old_path


def build_arguments(base: str, ca_cert: str | None) -> dict[str, str]:
    """Apptainer.def's {{ ARGS }}: where the base comes from, and the pins for %labels."""
    args = {**stack_pins(base), "CA_CERT": "/dev/null", "BOOTSTRAP": "docker", "FROM": f"debian:{base}-slim"}
    if docker.engine_problem() is None:
        # The same local base the Docker image uses (pulled or debootstrapped).
        if subprocess.run(["bash", str(ROOT / "scripts" / "base-image.sh"), base]).returncode != 0:
            raise RunError(f"no base image debian:{base}-slim; retry: bash scripts/base-image.sh {base}")
        archive = STAGE / "base.tar"
        subprocess.run([docker.client(), "save", "-o", str(archive), f"debian:{base}-slim"], check=True)
        archive.chmod(0o644)
        args.update(BOOTSTRAP="docker-archive", FROM=str(archive))
    if ca_cert:
        staged = STAGE / "ca.pem"
        shutil.copyfile(ca_cert, staged)
        staged.chmod(0o644)
        args["CA_CERT"] = str(staged)
    return args


def build_sif(base: str, sif: Path, ca_cert: str | None) -> None:
    from spython.main import Client  # in .venv (requirements/dev.txt)

    with singularity_command() as how:
        STAGE.mkdir(parents=True, exist_ok=True)
        STAGE.chmod(0o777)  # the unprivileged builder writes here
        try:
            args = build_arguments(base, ca_cert)
            arg_file = STAGE / "sif.args"
            arg_file.write_text("".join(f"{k}={v}\n" for k, v in args.items()))
            arg_file.chmod(0o644)
            staged_sif = STAGE / "mpi.sif"
            options = ["--fakeroot", "--force", "--build-arg-file", str(arg_file)]
            say(f"building {sif} from Apptainer.def (BASE={base}) with {how}; about 3 minutes, "
                "%test runs at the end")
            say(f"+ singularity build {' '.join(options)} {staged_sif} Apptainer.def")
            os.chdir(ROOT)  # %files paths are relative to the repository
            _, lines = Client.build(recipe="Apptainer.def", image=str(staged_sif), sudo=False,
                                    stream=True, options=options, quiet=True)
            try:
                for line in lines:
                    print(line, end="", flush=True)
            except subprocess.CalledProcessError as exc:
                raise RunError(f"the SIF build failed (exit status {exc.returncode}); rerun: make sif "
                               f"BASE={base}") from None
            # A copy, so the SIF belongs to whoever ran make (the builder's uid wrote the staged one).
            shutil.copyfile(staged_sif, sif)
            say(f"built {sif} ({sif.stat().st_size / 1e6:.0f} MB)")
        finally:
            for leftover in ("base.tar", "ca.pem", "sif.args", "mpi.sif"):
                (STAGE / leftover).unlink(missing_ok=True)
