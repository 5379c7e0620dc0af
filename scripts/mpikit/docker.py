"""The Docker engine and images: find a client, check the engine, build."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .config import ROOT, stack_labels
from .ui import MissingPrerequisite, RunError, say


def _clients() -> list[str]:
    """`docker` executables: $DOCKER first, then every one on PATH."""
    found = [os.environ["DOCKER"]] if os.environ.get("DOCKER") else []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "docker"
        if os.access(candidate, os.X_OK) and str(candidate) not in found:
            found.append(str(candidate))
    return found


def client() -> str | None:
    clients = _clients()
    return clients[0] if clients else None


def command() -> str:
    """The docker command for argv: the client found, else plain `docker` (its error then says why)."""
    return client() or "docker"


def engine_problem() -> str | None:
    """None when a Docker engine answers, else why not (one line)."""
    docker = client()
    if docker is None:
        return "no docker command on PATH"
    try:
        proc = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return f"'{docker} info' did not answer within 20 s"
    if proc.returncode != 0 or not proc.stdout.strip():
        last = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"'{docker} info' failed: {last}"
    return None


def require_engine(what: str = "RUNTIME=docker") -> str:
    problem = engine_problem()
    if problem:
        raise MissingPrerequisite(f"{what} needs a Docker engine, but {problem}; start Docker "
                                  "(sudo systemctl start docker, or Docker Desktop) or use RUNTIME=native")
    return command()


def run(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """`docker ARGS`, captured; a failure raises RunError naming the command when `check`."""
    proc = subprocess.run([command(), *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RunError(f"docker {' '.join(args)} failed: {(proc.stderr or '').strip()}")
    return proc


def _buildkit_client() -> str:
    """A client that builds with BuildKit (the Dockerfile uses RUN --mount).

    Current clients need the buildx plugin; clients before 23.0 carry BuildKit
    themselves and use it when DOCKER_BUILDKIT=1.
    """
    for docker in _clients():
        if subprocess.run([docker, "buildx", "version"], capture_output=True).returncode == 0:
            return docker
        version = subprocess.run([docker, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True).stdout.strip()
        if version and version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return docker
    raise MissingPrerequisite("no docker client here can build with BuildKit: install the buildx plugin "
                              "(package docker-buildx or docker-buildx-plugin) and retry make image")


def build_quietly(image: str, dockerfile: Path, target: str | None = None,
                  build_args: dict[str, str] | None = None, context: Path | None = None) -> None:
    """Build a helper image (no secrets) with BuildKit, printing only errors."""
    cmd = [_buildkit_client(), "build", "-q", "-t", image, "-f", str(dockerfile)]
    if target:
        cmd += ["--target", target]
    for key, value in (build_args or {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    cmd.append(str(context or dockerfile.parent))
    proc = subprocess.run(cmd, env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise RunError(f"building {image} failed; rerun to see why: DOCKER_BUILDKIT=1 {' '.join(cmd)}")


def image_exists(image: str) -> bool:
    docker = client()
    return bool(docker) and subprocess.run(
        [docker, "image", "inspect", image], capture_output=True).returncode == 0


def image_id(image: str) -> str | None:
    proc = subprocess.run([command(), "image", "inspect", "--format", "{{.Id}}", image],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def ensure_base(base: str) -> str:
    """The local debian:BASE-slim the recipes start from: present, pulled, or debootstrapped."""
    name = f"debian:{base}-slim"
    env = {**os.environ, "DOCKER": command()}
    if subprocess.run(["bash", str(ROOT / "scripts" / "image" / "base-image.sh"), base], env=env).returncode != 0:
        raise RunError(f"no base image {name}; see above, then retry: bash scripts/image/base-image.sh {base}")
    return name


def build_image(base: str, image: str, ca_cert: str | None, context: Path = ROOT,
                extra: tuple[str, ...] = ()) -> float:
    """Build `image` from the Dockerfile for `base`, making the base if needed; returns seconds taken."""
    require_engine("building the image")
    docker = _buildkit_client()
    ensure_base(base)
    cmd = [docker, "build", *extra, "--build-arg", f"BASE={base}", "-t", image]
    for key, value in stack_labels(base).items():
        cmd += ["--label", f"{key}={value}"]
    if ca_cert:
        cmd += ["--secret", f"id=ca_cert,src={ca_cert}"]
    cmd.append(str(context))
    say(f"building image {image} (BASE={base}{', CA bundle ' + ca_cert if ca_cert else ''}); "
        "a cold build takes a few minutes (docs/image.md)")
    say("+ " + " ".join(cmd))
    start = time.monotonic()
    if subprocess.run(cmd, env={**os.environ, "DOCKER_BUILDKIT": "1"}).returncode != 0:
        raise RunError(f"the image build failed; rerun it to see why: DOCKER_BUILDKIT=1 {' '.join(cmd)}")
    elapsed = time.monotonic() - start
    say(f"built {image} in {elapsed:.0f} s")
    return elapsed
