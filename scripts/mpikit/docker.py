"""The Docker engine and image: find a client, check the engine, build."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .config import ROOT, RunError, UsageError, stack_labels


def say(message: str) -> None:
    """Progress and decisions go to stderr, so stdout stays the job's output."""
    print(message, file=sys.stderr, flush=True)


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


def require_engine(knob: str = "RUNTIME=docker") -> str:
    problem = engine_problem()
    if problem:
        raise UsageError(f"{knob} needs a Docker engine, but {problem}; start Docker "
                         "(sudo systemctl start docker, or Docker Desktop) or use RUNTIME=native")
    return client()  # type: ignore[return-value]


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
    raise RunError("no docker client here can build with BuildKit: install the buildx plugin "
                   "(package docker-buildx or docker-buildx-plugin) and retry make image")


HELPER_CONTEXT = ROOT / "scripts"
HELPER_DOCKERFILE = HELPER_CONTEXT / "apptainer" / "Dockerfile"


def build_quietly(image: str, target: str, build_args: dict[str, str] | None = None) -> None:
    """Build a helper image (scripts/apptainer/Dockerfile, no secrets) with BuildKit, printing only errors."""
    cmd = [_buildkit_client(), "build", "-q", "--target", target, "-t", image, "-f", str(HELPER_DOCKERFILE)]
    for key, value in (build_args or {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    cmd.append(str(HELPER_CONTEXT))
    proc = subprocess.run(cmd, env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise RunError(f"building {image} failed; rerun to see why: DOCKER_BUILDKIT=1 {' '.join(cmd)}")


def image_exists(image: str) -> bool:
    docker = client()
    return bool(docker) and subprocess.run(
        [docker, "image", "inspect", image], capture_output=True).returncode == 0


def build_image(base: str, image: str, ca_cert: str | None, context: Path = ROOT,
                extra: tuple[str, ...] = ()) -> float:
    """Build `image` from the Dockerfile for `base`, making the base if needed; returns seconds taken."""
    require_engine("building the image")
    docker = _buildkit_client()
    env = {**os.environ, "DOCKER_BUILDKIT": "1", "DOCKER": docker}
    base_script = ROOT / "scripts" / "base-image.sh"
    if subprocess.run(["bash", str(base_script), base], env=env).returncode != 0:
        raise RunError(f"no base image debian:{base}-slim; see above, then retry: "
                       f"bash scripts/base-image.sh {base}")
    cmd = [docker, "build", *extra, "--build-arg", f"BASE={base}", "-t", image]
    for key, value in stack_labels(base).items():
        cmd += ["--label", f"{key}={value}"]
    if ca_cert:
        cmd += ["--secret", f"id=ca_cert,src={ca_cert}"]
    cmd.append(str(context))
    say(f"building image {image} (BASE={base}{', CA bundle ' + ca_cert if ca_cert else ''}); "
        "a cold build takes about 3 minutes")
    say("+ " + " ".join(cmd))
    start = time.monotonic()
    if subprocess.run(cmd, env=env).returncode != 0:
        raise RunError(f"the image build failed; rerun it to see why: DOCKER_BUILDKIT=1 {' '.join(cmd)}")
    elapsed = time.monotonic() - start
    say(f"built {image} in {elapsed:.0f} s")
    return elapsed


def default_ca_cert() -> str | None:
    """The CA bundle the host's pip is told to trust (a proxy's CA), if any:
    PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, then pip's config files."""
    candidates = [os.environ.get(var) for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")]
    parser = configparser.ConfigParser()
    parser.read([os.environ.get("PIP_CONFIG_FILE") or "/etc/pip.conf",
                 Path.home() / ".config" / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"])
    candidates += [parser.get(section, "cert", fallback=None) for section in ("global", "install")]
    return next((path for path in candidates if path and Path(path).is_file()), None)


def which(name: str) -> str | None:
    return shutil.which(name)
