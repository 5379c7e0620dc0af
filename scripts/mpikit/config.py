"""The project's facts, each read from its one source: versions.env for the
stack pins, requirements/*.txt for Python pins, and EXAMPLES below for the
list of examples."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"
REQUIREMENTS = ROOT / "requirements"


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class RunError(Exception):
    """Something failed while running: printed as one line, exit status 1."""


@dataclass(frozen=True)
class Example:
    name: str  # make run-<name>
    file: str  # under examples/
    min_ranks: int = 1
    smoke_args: tuple[str, ...] = ()  # arguments that keep `make smoke` quick

    @property
    def path(self) -> Path:
        return EXAMPLES_DIR / self.file

    @property
    def smoke_size(self) -> int | None:
        """The --size among smoke_args: how many values the checks must count."""
        args = list(self.smoke_args)
        return int(args[args.index("--size") + 1]) if "--size" in args else None


# The one list of examples: the Makefile, smoke checks and tests read it.
EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in (
        Example("rank", "rank.py"),
        Example("p2p", "point_to_point.py", min_ranks=2),
        Example("bcast", "broadcast.py"),
        Example("scatter", "scatter_gather.py", smoke_args=("--size", "1000000", "--seed", "1")),
    )
}


def read_versions() -> dict[str, str]:
    """versions.env as a dict (KEY=VALUE lines; # comments)."""
    values: dict[str, str] = {}
    for line in (ROOT / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def supported_bases() -> list[str]:
    return read_versions()["SUPPORTED_BASES"].split(",")


def default_base() -> str:
    return read_versions()["DEFAULT_BASE"]


def python_pins(requirements_file: str = "image.txt") -> dict[str, str]:
    """name -> version from a hash-pinned requirements file."""
    text = (REQUIREMENTS / requirements_file).read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", text, flags=re.M))


def stack_pins(base: str) -> dict[str, str]:
    """The pinned versions of the image built for `base` (Apptainer.def's build arguments)."""
    versions, pins = read_versions(), python_pins()
    return {"BASE": base, "OPENMPI_DEB": versions[f"OPENMPI_DEB_{base}"],
            "PMIX_DEB": versions[f"PMIX_DEB_{base}"], "MPI4PY_VERSION": pins["mpi4py"],
            "NUMPY_VERSION": pins["numpy"]}


def stack_labels(base: str) -> dict[str, str]:
    """The labels an image built for `base` carries (Docker and SIF alike): the pinned versions."""
    pins = stack_pins(base)
    prefix = "io.github.mpi4py-kit"
    return {f"{prefix}.base": base, f"{prefix}.openmpi": pins["OPENMPI_DEB"], f"{prefix}.pmix": pins["PMIX_DEB"],
            f"{prefix}.mpi4py": pins["MPI4PY_VERSION"], f"{prefix}.numpy": pins["NUMPY_VERSION"]}
