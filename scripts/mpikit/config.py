"""The project's facts, each read from its one source: versions.env for the
stack pins, requirements/*.txt for Python pins, EXAMPLES for the examples and
BUILD_INPUTS for what the image is built from."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import platforms

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"
REQUIREMENTS = ROOT / "requirements"
MPI_PROGRAMS = ROOT / "scripts" / "mpi"  # the MPI programs the kit runs itself (probe, benchmarks)
# The kit's cache outside the checkout: built SIFs, verified signatures, the locks builds share.
CACHE = Path(os.environ.get("MPIKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "mpi4py-kit")

# What the image is built from, besides its recipe (Dockerfile or Apptainer.def):
# both recipes copy exactly these, .dockerignore admits exactly these, and every image and SIF
# records their digests (SOURCE_LABEL), so one built from others is stale. Folders count with
# everything under them.
BUILD_INPUTS = ("versions.env", "requirements/build.txt", "requirements/build-abi.txt", "requirements/image.txt",
                "requirements/sbom.txt", "scripts/image/install.sh", "scripts/image/without-rocm.sh",
                "scripts/image/sbom.py", "scripts/image/site", "examples")
RECIPES = ("Dockerfile", "Apptainer.def")
# The test clusters make cluster-up can build (CLUSTER=...), by their nodes' Debian; one runs at a time.
CLUSTERS = {"trixie": "Slurm 24.11 with PMIx 5", "forky": "Slurm 26.05, built without PMIx: srun --mpi=pmi2"}


@dataclass(frozen=True)
class Example:
    name: str  # make run-<name>
    file: str  # under examples/
    min_ranks: int = 1
    smoke_args: tuple[str, ...] = ()  # arguments that keep `make smoke` quick
    futures: bool = False  # runs under python -m mpi4py.futures: rank 0 the client, the others workers

    @property
    def path(self) -> Path:
        return EXAMPLES_DIR / self.file

    @property
    def smoke_size(self) -> int | None:
        """The --size among smoke_args: how many values the checks must count."""
        args = list(self.smoke_args)
        return int(args[args.index("--size") + 1]) if "--size" in args else None


# The one list of examples: the Makefile, smoke checks, docs and tests read it.
EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in (
        Example("rank", "rank.py"),
        Example("p2p", "point_to_point.py", min_ranks=2),
        Example("bcast", "broadcast.py"),
        Example("scatter", "scatter_gather.py", smoke_args=("--size", "1000000", "--seed", "1")),
        Example("pool", "pool.py", min_ranks=2, futures=True),
    )
}


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines with # comments (versions.env, the image's stack.env)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@functools.cache
def read_versions() -> dict[str, str]:
    return parse_env_file((ROOT / "versions.env").read_text())


def supported_bases() -> list[str]:
    return read_versions()["SUPPORTED_BASES"].split(",")


def default_base() -> str:
    return read_versions()["DEFAULT_BASE"]


def image_name() -> str:
    return read_versions()["IMAGE_NAME"]


def python_pins(requirements_file: str = "image.txt") -> dict[str, str]:
    """name -> version from a hash-pinned requirements file."""
    text = (REQUIREMENTS / requirements_file).read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", text, flags=re.M))


def upstream_version(deb_version: str) -> str:
    """A Debian package version without epoch and revision: 4.1.4-3+b1 -> 4.1.4."""
    return re.sub(r"-[^-]*$", "", deb_version.split(":")[-1])


def stack_pins(base: str) -> dict[str, str]:
    """The pinned versions of the image built for `base` (Apptainer.def's build arguments)."""
    versions, pins = read_versions(), python_pins()
    return {"BASE": base, "OPENMPI_DEB": versions[f"OPENMPI_DEB_{base}"],
            "PMIX_DEB": versions[f"PMIX_DEB_{base}"], "MPI4PY_VERSION": pins["mpi4py"],
            "NUMPY_VERSION": pins["numpy"]}


LABEL_PREFIX = "io.github.mpi4py-kit"
# The SBOM inside every image and SIF (scripts/image/sbom.py writes it; both recipes' label
# io.github.mpi4py-kit.sbom names it; a unit test holds the four equal).
SBOM_LABEL = f"{LABEL_PREFIX}.sbom"
SBOM_PATH = "/opt/mpi4py-kit/sbom.cdx.json"


# What the checkout builds, recorded in every image and SIF the kit makes (Docker labels; Apptainer.def's
# %labels; a SIF made from the image has the image's): the digest of SOURCE_FILES_LABEL's list, and
# the list itself (each recipe and build input with its own digest), so a stale build can say which
# input changed (scripts/mpikit/provenance.py judges).
SOURCE_LABEL = f"{LABEL_PREFIX}.source"
SOURCE_FILES_LABEL = f"{LABEL_PREFIX}.source-files"


def stack_labels(base: str, platform: str | None = None) -> dict[str, str]:
    """The labels an image built for `base` and `platform` (default: the host's) carries, Docker
    and SIF alike: the platform, the pinned versions and what the checkout builds."""
    pins, platform = stack_pins(base), platform or platforms.host()
    return {f"{LABEL_PREFIX}.base": base, f"{LABEL_PREFIX}.platform": platform,
            f"{LABEL_PREFIX}.openmpi": pins["OPENMPI_DEB"],
            f"{LABEL_PREFIX}.pmix": pins["PMIX_DEB"], f"{LABEL_PREFIX}.mpi4py": pins["MPI4PY_VERSION"],
            f"{LABEL_PREFIX}.numpy": pins["NUMPY_VERSION"], **source_labels(base, platform)}


def source_parts(root: Path = ROOT) -> dict[str, str]:
    """What the checkout builds, name by name: each recipe and build input, path -> the first 12 hex digits
    of its SHA-256. Contents only: not SOURCE_DATE_EPOCH, which a copy without git (the test cluster's
    /shared, a tarball) reads from file times; a commit that moves it changes a file anyway."""
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            for path in [root / name for name in RECIPES] + build_input_files(root)}


def encode_parts(parts: dict[str, str]) -> str:
    """The parts as one label value, name:digest,...: no space or "=", which Apptainer's %labels line and
    its build-argument file would split on."""
    return ",".join(f"{name}:{value}" for name, value in sorted(parts.items()))


def decode_parts(text: str) -> dict[str, str]:
    return dict(item.rsplit(":", 1) for item in text.split(",") if ":" in item)


def source_digest(base: str, platform: str, parts: dict[str, str]) -> str:
    """The digest SOURCE_LABEL holds: the parts, for this base and platform."""
    text = f"BASE={base}\0PLATFORM={platform}\0{encode_parts(parts)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_labels(base: str, platform: str, parts: dict[str, str] | None = None) -> dict[str, str]:
    parts = source_parts() if parts is None else parts
    return {SOURCE_LABEL: source_digest(base, platform, parts), SOURCE_FILES_LABEL: encode_parts(parts)}


def build_input_files(root: Path = ROOT) -> list[Path]:
    """Every file BUILD_INPUTS names, folders expanded, in a stable order."""
    files: list[Path] = []
    for name in BUILD_INPUTS:
        path = root / name
        files += sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if path.is_dir() else [path]
    return files


def source_date_epoch(root: Path = ROOT) -> str:
    """The build's time, SOURCE_DATE_EPOCH: the last commit that touched a recipe or a build input, so
    two builds of the same inputs write the same dates (the SBOM's, the user's password date). Outside
    a git checkout (a copied tree), the newest of their modification times."""
    names = [*RECIPES, *BUILD_INPUTS]
    try:
        proc = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%ct", "--", *names],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip().isdigit():
            return proc.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass  # no git: the files' own times below
    times = [p.stat().st_mtime for name in names for p in [root / name, *(root / name).rglob("*")]
             if p.is_file()]
    return str(int(max(times))) if times else "1"


def inputs_digest(recipe: str, items: Iterable[str]) -> str:
    """sha256 (16 hex digits) of what a build is made from: its recipe (Dockerfile or Apptainer.def),
    every build input's path and bytes, then `items` (base, platform, labels or pins, the builder)."""
    h = hashlib.sha256()
    for path in [ROOT / recipe, *build_input_files()]:
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for item in items:
        h.update(item.encode() + b"\0")
    return h.hexdigest()[:16]


def results_dir() -> Path:
    """Where make bench, bench-curve and bench-build write (MPIKIT_RESULTS moves it: the tests use their own)."""
    return Path(os.environ.get("MPIKIT_RESULTS") or ROOT / "results")
