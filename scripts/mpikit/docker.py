"""The Docker engine and images: find a client, check the engine, build."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from . import config, platforms
from .config import LABEL_PREFIX, ROOT, stack_labels
from .ui import MissingPrerequisite, RunError, say

# The digest of everything an image is built from, stored on the image itself (outside
# the checkout): a build whose inputs are unchanged is skipped, which is what keeps
# the arm64 image (about half an hour cold, partly emulated) out of every CI run's time.
INPUTS_LABEL = f"{LABEL_PREFIX}.inputs"


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


# make test's background builds and lanes (MPIKIT_BACKGROUND=1, tests/integration/conftest.py) run their containers
# at a low CPU weight (Docker's default is 1024): niceness does not reach the engine's children, and the tests in the
# open come first. The emulated arm64 tests' qemu took a whole core at the default weight beside them.
BACKGROUND_CPU_SHARES = "64"


def background_weight() -> list[str]:
    """docker run's options for a container of a background build or lane; none otherwise."""
    return ["--cpu-shares", BACKGROUND_CPU_SHARES] if os.environ.get("MPIKIT_BACKGROUND") == "1" else []


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


@contextlib.contextmanager
def created(image: str) -> Iterator[str]:
    """A container of `image`, created and never started (to copy or export its files), then removed."""
    cid = run("create", image).stdout.strip()
    try:
        yield cid
    finally:
        run("rm", cid, check=False)


def image_exists(image: str) -> bool:
    docker = client()
    return bool(docker) and subprocess.run(
        [docker, "image", "inspect", image], capture_output=True).returncode == 0


def image_id(image: str) -> str | None:
    proc = subprocess.run([command(), "image", "inspect", "--format", "{{.Id}}", image],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def image_labels(image: str) -> dict[str, str] | None:
    """The image's labels (one docker image inspect); None when there is no such image."""
    proc = subprocess.run([command(), "image", "inspect", "--format", "{{json .Config.Labels}}", image],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    try:
        return dict(json.loads(proc.stdout) or {})
    except ValueError:
        return None


def image_label(image: str, key: str) -> str | None:
    proc = subprocess.run([command(), "image", "inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}', image],
                          capture_output=True, text=True)
    value = proc.stdout.strip() if proc.returncode == 0 else ""
    return value if value and value != "<no value>" else None


def ensure_emulation(platform: str) -> None:
    """Another platform's binaries run here through qemu-user in binfmt_misc; as root
    the kit registers it (scripts/provision.sh emulation), otherwise it says how.
    Only a Linux host can be checked: Docker Desktop emulates inside its own VM."""
    if platforms.is_host(platform) or not sys.platform.startswith("linux"):
        return
    problem = platforms.emulation_problem(platform)
    machine = platforms.MACHINE.get(platforms.arch(platform), platforms.arch(platform))
    provision = f"bash scripts/provision.sh emulation {machine}"
    if problem and os.geteuid() == 0:
        say(f"PLATFORM={platform} needs qemu emulation ({problem}): registering it with {provision}")
        subprocess.run(["bash", str(ROOT / "scripts" / "provision.sh"), "emulation", machine])
        problem = platforms.emulation_problem(platform)
    if problem:
        raise MissingPrerequisite(f"PLATFORM={platform} needs qemu emulation on this {platforms.host()} host, "
                                  f"but {problem}; as root: {provision}")


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """One process at a time past this point, on this machine (an flock in the kit's cache): two builds that
    start together (make test builds the arm64 image beside the host's) make a missing base once, and the
    second then finds it, instead of both importing one and the first build's digest naming a replaced base."""
    folder = config.CACHE / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_base(base: str, platform: str | None = None) -> str:
    """The local base the recipes start from (debian:BASE-slim, or arm64v8/debian:BASE-slim
    for another platform): present, pulled, or debootstrapped."""
    platform = platform or platforms.host()
    name = platforms.base_image(base, platform)
    # PLATFORM is set here alone: make exports the user's PLATFORM=linux/arm64 to the kit, and the
    # host's own base (the Apptainer helper's, the cluster's) must not be built for it.
    env = {**os.environ, "DOCKER": command(), "PLATFORM": ""}
    if not platforms.is_host(platform):
        # base-image.sh builds another platform's base with BuildKit, which records its platform.
        env.update(DOCKER=_buildkit_client(), DOCKER_BUILDKIT="1", PLATFORM=platform)
    with locked(f"base-{name.replace('/', '_').replace(':', '_')}"):
        made = subprocess.run(["bash", str(ROOT / "scripts" / "image" / "base-image.sh"), base, name], env=env)
    if made.returncode != 0:
        retry = "" if platforms.is_host(platform) else f"PLATFORM={platform} "
        raise RunError(f"no base image {name}; see above, then retry: {retry}bash scripts/image/base-image.sh "
                       f"{base} {name}")
    return name


def inputs_digest(base: str, platform: str, base_id: str, labels: dict[str, str], extra: tuple[str, ...] = ()) -> str:
    """The image's build-inputs digest: the Dockerfile and build inputs, the base image, the platform,
    the labels and the extra build options."""
    return config.inputs_digest("Dockerfile", [f"BASE={base}", f"PLATFORM={platform}", f"base={base_id}", *extra,
                                               *(f"{k}={v}" for k, v in sorted(labels.items()))])


def build_plan(base: str, platform: str, context: Path = ROOT, extra: tuple[str, ...] = ()
               ) -> tuple[str, str, dict[str, str], str, str]:
    """What a build of `base` for `platform` starts from: (base image, builder's base image, labels,
    the inputs digest, SOURCE_DATE_EPOCH); makes the bases when missing."""
    emulated = not platforms.is_host(platform)
    base_image = ensure_base(base, platform)
    # The builder stage runs on the host's platform and cross-compiles for another (install.sh).
    builder_image = base_image if not emulated else ensure_base(base)
    labels = stack_labels(base, platform)
    bases = image_id(base_image) or base_image
    if emulated:
        bases += "+" + (image_id(builder_image) or builder_image)
    epoch = config.source_date_epoch(context)
    digest = inputs_digest(base, platform, bases, labels, (*extra, f"SOURCE_DATE_EPOCH={epoch}"))
    return base_image, builder_image, labels, digest, epoch


def build_image(base: str, image: str, ca_cert: str | None, context: Path = ROOT,
                extra: tuple[str, ...] = (), platform: str | None = None, fresh: bool = False) -> float:
    """Build `image` from the Dockerfile for `base` and `platform`, making the base if needed;
    returns seconds taken (0 when the image is already built from the same inputs). `fresh`: every
    step again, without the build cache (make reproduce; the image carries the same inputs label)."""
    require_engine("building the image")
    platform = platform or platforms.host()
    emulated = not platforms.is_host(platform)
    ensure_emulation(platform)
    docker = _buildkit_client()
    base_image, builder_image, labels, digest, epoch = build_plan(base, platform, context, extra)
    if not fresh and context == ROOT and image_label(image, INPUTS_LABEL) == digest:
        say(f"image {image} is up to date: built from these same inputs (label {INPUTS_LABEL}={digest}); "
            "not rebuilt")
        return 0.0
    if fresh:
        extra = (*extra, "--no-cache")
    cmd = [docker, "build", *extra, "--build-arg", f"BASE={base}", "--build-arg", f"BASE_IMAGE={base_image}",
           "--build-arg", f"BUILDER_IMAGE={builder_image}", "--build-arg", f"SOURCE_DATE_EPOCH={epoch}"]
    if emulated:
        cmd += ["--platform", platform]
    cmd += ["-t", image]
    for key, value in {**labels, INPUTS_LABEL: digest}.items():
        cmd += ["--label", f"{key}={value}"]
    if ca_cert:
        cmd += ["--secret", f"id=ca_cert,src={ca_cert}"]
    cmd.append(str(context))
    how = ("built on this host (mpi4py cross-compiled), only apt and the last checks under qemu emulation "
           "(docs/arm.md)" if emulated else "a cold build takes a few minutes (docs/image.md)")
    say(f"building image {image} (BASE={base}, PLATFORM={platform}{', CA bundle ' + ca_cert if ca_cert else ''}); "
        + how)
    say("+ " + " ".join(cmd))
    start = time.monotonic()
    if subprocess.run(cmd, env={**os.environ, "DOCKER_BUILDKIT": "1"}).returncode != 0:
        raise RunError(f"the image build failed; rerun it to see why: DOCKER_BUILDKIT=1 {' '.join(cmd)}")
    elapsed = time.monotonic() - start
    say(f"built {image} in {elapsed:.0f} s")
    return elapsed
