"""make lock REQUIREMENTS=my.in: a user's loose requirements locked to my.txt beside it, every package
pinned with its hashes, resolved where it will be installed. pip-compile (the tool make lock runs for the
kit's own requirements/*.txt) runs in a container of the kit's image, so it resolves for the image's Python
and platform (the host's Python may be another version), with the kit's pins as constraints (numpy, when a
package needs it, is locked at the image's version; mpi4py is never added). Then pip checks the lock against
the image's own /opt/venv in the same container (--dry-run, --require-hashes), and only a lock that passes
replaces my.txt. Without REQUIREMENTS, make lock refreshes the kit's own files, as before.

The image has no pip: the tools (Debian's python3-venv, pip-tools from requirements/lock-tools.txt) are a
layer of their own on the kit's image, `mpi4py-kit-lock:<the image's tag>`, built once and found in Docker's
build cache after (apt and pip, which each make lock ran before); a rebuilt kit image or a new
lock-tools.txt builds it again.

A local package (./mypkg) cannot be in a locked file: pip refuses hash-checking for a folder, and one line
with a hash puts the whole file in hash-checking mode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import config, docker, environment
from .ui import RunError, UsageError, say

TOOLS = config.REQUIREMENTS / "lock-tools.txt"  # pip-tools, hash-pinned (make lock refreshes it)
CA_IN_CONTAINER = "/kit/ca.pem"
WORK = "/work"  # the current folder, in the container
TOOLS_VENV = "/opt/lock-tools"

# The tools' layer on the kit's image (python3-venv: the runtime image leaves it out), built from stdin with
# lock-tools.txt as the whole context; the CA bundle for a proxy is a build secret, in no layer.
TOOLS_DOCKERFILE = f"""ARG KIT_IMAGE
FROM ${{KIT_IMAGE}}
USER root
COPY lock-tools.txt /kit/lock-tools.txt
RUN --mount=type=secret,id=ca_cert,required=false set -eu; \\
    export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONFIG_FILE=/dev/null; \\
    export PIP_NO_CACHE_DIR=1; \\
    if [ -s /run/secrets/ca_cert ]; then export PIP_CERT=/run/secrets/ca_cert; fi; \\
    apt-get update -qq; apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; \\
    rm -rf /var/lib/apt/lists/*; \\
    python3 -m venv {TOOLS_VENV}; {TOOLS_VENV}/bin/pip install -q --require-hashes -r /kit/lock-tools.txt
"""

# Runs as root in the tools' image; the lock is written in the container's /tmp and reaches the current
# folder only after pip has checked it.
SCRIPT = rf"""set -eu
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1
mkdir -p /kit && printf '%s' "$LOCK_CONSTRAINTS" > /kit/image-pins.txt  # named in the lock's "via" lines
cd "$LOCK_WORK"
[ ! -f "$LOCK_OUT" ] || cp "$LOCK_OUT" /tmp/lock.txt  # the pins it has are kept where they still fit
echo "lock: pip-compile for $(python3 -V) on $(uname -m), the kit's pins as constraints"
CUSTOM_COMPILE_COMMAND="make lock REQUIREMENTS=$LOCK_IN" {TOOLS_VENV}/bin/pip-compile -q --generate-hashes \
  --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -c /kit/image-pins.txt \
  -o /tmp/lock.txt "$LOCK_IN"
echo "lock: pip installs it into the image's /opt/venv (a dry run, every hash required)"
{TOOLS_VENV}/bin/pip --python /opt/venv/bin/python install -q --dry-run --require-hashes \
  -c /kit/image-pins.txt -r /tmp/lock.txt
cp /tmp/lock.txt "$LOCK_OUT"
chown "$LOCK_OWNER" "$LOCK_OUT"
"""


def output_for(reqs: environment.Requirements, cwd: Path) -> Path:
    """Where the lock of `reqs` goes (my.in -> my.txt, beside it); refused in one line for a file that is
    not a loose *.in or names a local package."""
    shown = reqs.path.relative_to(cwd.resolve()).as_posix()
    if reqs.path.suffix != ".in":
        raise UsageError(f"make lock REQUIREMENTS={shown}: give the loose file, named *.in (my.in); its lock is "
                         f"written beside it as *.txt, the file make image REQUIREMENTS= then takes")
    for item in reqs.items:
        if item.local is not None:
            raise UsageError(f"make lock REQUIREMENTS={shown}: line {item.line} ({item.text}) is a local package, "
                             "which pip cannot hash-check (no --hash for a folder); lock the packages from PyPI "
                             "alone, or give the loose file itself as REQUIREMENTS")
    return reqs.path.with_suffix(".txt")


def tools_image(image: str) -> str:
    """The tools' image for the kit's `image` (mpi4py-kit:trixie -> mpi4py-kit-lock:trixie)."""
    name, _, tag = image.rpartition(":")
    return f"{name}-lock:{tag}"


def tools_build_argv(client: str, image: str, context: Path, ca_cert: str | None) -> list[str]:
    """docker build of the tools' image on `image`, the Dockerfile on stdin, `context` holding lock-tools.txt."""
    argv = [client, "build", "-q", "-t", tools_image(image), "--build-arg", f"KIT_IMAGE={image}", "-f", "-"]
    if ca_cert:
        argv += ["--secret", f"id=ca_cert,src={ca_cert}"]
    return [*argv, str(context)]


def ensure_tools(client: str, image: str, ca_cert: str | None) -> str:
    """The tools' image, built (or found in the build cache: a second or two) for `image`."""
    with tempfile.TemporaryDirectory(prefix="mpi4py-kit-lock-") as context:
        shutil.copy(TOOLS, Path(context) / "lock-tools.txt")
        argv = tools_build_argv(client, image, Path(context), ca_cert)
        proc = subprocess.run(argv, input=TOOLS_DOCKERFILE, text=True, capture_output=True,
                              env={**os.environ, "DOCKER_BUILDKIT": "1"})
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise RunError(f"building {tools_image(image)} (python3-venv and pip-tools on {image}) failed; rerun to "
                       f"see why: DOCKER_BUILDKIT=1 {' '.join(argv)} < (the Dockerfile in scripts/mpikit/lock.py)")
    return tools_image(image)


def docker_argv(client: str, image: str, reqs: environment.Requirements, out: Path, cwd: Path,
                ca_cert: str | None) -> list[str]:
    """The container of the tools' `image` that locks `reqs` into `out`: the current folder at /work
    (read-write: the lock is written there), the CA bundle read-only."""
    rel = reqs.path.relative_to(cwd.resolve()).as_posix()
    env = {"LOCK_CONSTRAINTS": environment.constraints(), "LOCK_WORK": WORK,
           "LOCK_IN": rel, "LOCK_OUT": out.relative_to(cwd.resolve()).as_posix(),
           "LOCK_OWNER": f"{os.getuid()}:{os.getgid()}"}
    argv = [client, "run", "--rm", "--user", "0", "-v", f"{cwd.resolve()}:{WORK}"]
    if ca_cert:
        argv += ["-v", f"{ca_cert}:{CA_IN_CONTAINER}:ro", "-e", f"PIP_CERT={CA_IN_CONTAINER}"]
    for name, value in env.items():
        argv += ["-e", f"{name}={value}"]
    return [*argv, "--entrypoint", "sh", image, "-c", SCRIPT]


def lock(reqs: environment.Requirements, out: Path, image: str, cwd: Path, ca_cert: str | None) -> None:
    """Lock `reqs` into `out` (output_for's) in a container of `image` (built already)."""
    client = docker.require_engine("make lock REQUIREMENTS=")
    shown = reqs.path.relative_to(cwd.resolve()).as_posix()
    say(f"lock: {shown} -> {out.relative_to(cwd.resolve()).as_posix()}, resolved in {image} (pip-tools beside it: "
        f"{tools_image(image)})")
    tools = ensure_tools(docker._buildkit_client(), image, ca_cert)
    proc = subprocess.run(docker_argv(client, tools, reqs, out, cwd, ca_cert))
    if proc.returncode != 0:
        raise RunError(f"locking {shown} failed (pip's error is above); nothing was written; after a fix: "
                       f"make lock REQUIREMENTS={shown}")
    pinned = sum(1 for line in out.read_text().splitlines() if "==" in line and not line.startswith("#"))
    say(f"lock: wrote {out.relative_to(cwd.resolve()).as_posix()} ({pinned} packages, each with its hashes); "
        f"build with: make image REQUIREMENTS={out.relative_to(cwd.resolve()).as_posix()}")
