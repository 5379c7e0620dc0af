"""make sbom: the CycloneDX SBOM an image or SIF carries (scripts/image/sbom.py wrote it during the
build, at the path its io.github.mpi4py-kit.sbom label names), copied out, checked against the
CycloneDX schema and summarised."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

from . import docker
from . import sif as sif_format
from .config import SBOM_LABEL, SBOM_PATH
from .ui import RunError, UsageError


def from_image(image: str) -> bytes:
    """The SBOM inside a Docker image, copied out of a stopped container (nothing runs)."""
    path = docker.image_label(image, SBOM_LABEL)
    if not path:
        raise UsageError(f"{image} has no {SBOM_LABEL} label: it was built before images carried an SBOM; "
                         "rebuild it: make image")
    with docker.created(image) as cid:
        proc = subprocess.run([docker.command(), "cp", f"{cid}:{path}", "-"], capture_output=True)
    if proc.returncode != 0:
        raise RunError(f"docker cp {image}:{path} - failed: {proc.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        member = tar.next()
        data = tar.extractfile(member) if member else None
        if data is None:
            raise RunError(f"{image}: {path} is not a file")
        return data.read()


def from_sif(sif: Path) -> bytes:
    """The SBOM inside a SIF, read from its root file system in place (no Apptainer needed)."""
    from PySquashfsImage import SquashFsImage

    with sif.open("rb") as f:
        head = f.read(sif_format.HEAD)
    try:
        offset, _ = sif_format.root_partition(head)
    except ValueError as exc:
        raise UsageError(f"{sif}: {exc}") from None
    with SquashFsImage.from_file(str(sif), offset=offset) as image:
        node = image.select(SBOM_PATH)
        if node is None:
            raise UsageError(f"{sif} has no {SBOM_PATH}: it was built before images carried an SBOM; "
                             "rebuild it: make sif")
        return node.read_bytes()


def validate(text: str) -> str | None:
    """None when the document is valid CycloneDX 1.6 JSON, else the schema's complaint."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(error)[:500]


def kinds(doc: dict) -> dict[str, list[dict]]:
    """The components by this kit's mpi4py-kit:kind property: deb, pypi, mpi-stack."""
    out: dict[str, list[dict]] = {}
    for component in doc.get("components", []):
        kind = next((p["value"] for p in component.get("properties", []) if p["name"] == "mpi4py-kit:kind"), "")
        out.setdefault(kind, []).append(component)
    return out


def summary(doc: dict) -> list[str]:
    by = kinds(doc)
    stack = [c for c in by.get("mpi-stack", []) if not c["name"].startswith("mpi4py.MPI")]
    variants = [c for c in by.get("mpi-stack", []) if c["name"].startswith("mpi4py.MPI")]

    def prop(c: dict, name: str) -> str:
        return next((p["value"] for p in c.get("properties", []) if p["name"] == f"mpi4py-kit:{name}"), "")

    dists = sorted(f"{c['name']} {c['version']} in {prop(c, 'path')}" for c in by.get("pypi", []))
    return [f"{len(by.get('deb', []))} Debian packages, {len(dists)} Python distributions ({', '.join(dists)})",
            "MPI stack: " + ", ".join(f"{c['name']} {c['version']}" for c in sorted(stack, key=lambda c: c["name"])),
            "mpi4py variants: " + "; ".join(f"{prop(c, 'path')}: {prop(c, 'abi')}"
                                             for c in sorted(variants, key=lambda c: prop(c, "path")))]


def write(data: bytes, out: Path) -> list[str]:
    """Check the document, write it to `out`, and say what it holds."""
    text = data.decode()
    problem = validate(text)
    if problem:
        raise RunError(f"the SBOM does not validate against the CycloneDX 1.6 schema: {problem}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return summary(json.loads(text))
