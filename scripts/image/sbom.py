"""The image's SBOM: a CycloneDX 1.6 JSON document of everything installed, written at the
end of the build, inside the image, by cyclonedx-python-lib (a throwaway folder on
PYTHONPATH that never ships).

    python sbom.py write OUTPUT --base BASE --sources SOURCES --lock image.txt [--lock ...]

Lists:
  - every Debian package dpkg-query -W shows (name, version, architecture, source), purl
    pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-BASE;
  - every Python distribution in the venv and in the bind model's second mpi4py (ABI_MPI4PY),
    read with importlib.metadata per folder (the image has no pip), purl pkg:pypi/NAME@VERSION
    with the SHA-256 of the artifact it came from: a wheel pip checked against the lock, or the
    sdist the builder compiled (SOURCES). A hash the lock does not list fails the build;
  - the MPI stack as components of their own (Open MPI, PMIx, UCX, libfabric, each mpi4py
    variant with its ABI), each depending on the packages that carry it.

Deterministic: the time is SOURCE_DATE_EPOCH, the serial number a UUID of the content, and
the library sorts components; two builds of the same inputs write the same bytes.
No import of the kit's host code: this runs in the image with the image's Python.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

# Where the document lives in every image and SIF (the recipes' io.github.mpi4py-kit.sbom label
# names it; a unit test holds the three equal to the kit's config.SBOM_PATH).
SBOM_PATH = "/opt/mpi4py-kit/sbom.cdx.json"
# The bind model's second mpi4py (scripts/mpikit/bind.py ABI_MPI4PY).
ABI_MPI4PY = "/opt/venv/mpi4py-abi"
# dpkg-query's fields, tab-separated, one package per line.
DPKG_FORMAT = "${binary:Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n"
# The MPI stack: a component each, found by the Debian packages that carry it (regular expressions
# over package names; the library's soname differs between bases: libpmix2 and libpmix2t64).
STACK = {
    "openmpi": ("Open MPI", r"^(openmpi-bin|openmpi-common|libopenmpi\d+(t64)?)$"),
    "pmix": ("PMIx", r"^(libpmix\d+(t64)?)$"),
    "ucx": ("UCX", r"^(libucx\d+)$"),
    "libfabric": ("libfabric", r"^(libfabric\d+)$"),
}
# mpi4py's extension variants and the ABI each loads. The venv's own build (no variant in its
# file name) links the image's Open MPI; the second mpi4py carries the wheel's mpich and openmpi
# variants and the kit's standard-ABI build (bind.VARIANTS and bind.FAMILIES, held equal by a test).
VARIANT_ABI = {
    "": "Open MPI ABI (libmpi.so.40), the image's own Open MPI",
    "openmpi": "Open MPI ABI (libmpi.so.40)",
    "mpich": "MPICH ABI (libmpi.so.12)",
    "mpiabi": "MPI-5 standard ABI (libmpi_abi.so.1)",
}
PROPERTY = "mpi4py-kit"  # the prefix of this document's own properties


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    arch: str
    source: str
    source_version: str


@dataclass(frozen=True)
class Dist:
    name: str  # as its metadata spells it
    version: str
    folder: str  # the sys.path entry it was found in
    artifact_sha256: str | None  # from direct_url.json (pip installed a checked file)
    files: tuple[str, ...] = field(default=(), compare=False)  # paths relative to folder


def parse_dpkg(text: str) -> list[Deb]:
    """dpkg-query -W -f=DPKG_FORMAT's lines; a package built from a source of its own name leaves
    source:Package empty on old dpkg, and a source version equal to its own."""
    debs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, version, arch, source, source_version = (line.split("\t") + [""] * 5)[:5]
        name = name.split(":")[0]  # binary:Package carries :ARCH for multiarch packages
        debs.append(Deb(name, version, arch, source.split(" ")[0] or name, source_version or version))
    return debs


def normalize(name: str) -> str:
    """A Python project name in its PEP 503 form (what the lock writes and purls use)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, tuple[str, set[str]]]:
    """requirements/*.txt written by pip-compile: {normalized name: (version, {sha256, ...})}."""
    pins: dict[str, tuple[str, set[str]]] = {}
    current = None
    for line in text.splitlines():
        found = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if found:
            current = normalize(found.group(1))
            pins[current] = (found.group(2), set())
        elif current and line.startswith(" "):
            pins[current][1].update(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        else:
            current = None
    return pins


@dataclass(frozen=True)
class Source:
    """A file the build installed from or compiled: where it went (venv, abi: ABI_MPI4PY, sdist: compiled)."""
    name: str  # normalized
    version: str
    file: str
    sha256: str
    place: str


def parse_sources(text: str) -> list[Source]:
    """The build's record of its Python artifacts (install.sh): lines `NAME VERSION FILE SHA256 PLACE`.
    A wheel's hash is in its direct_url.json only from pip 23.1 on; bookworm's pip writes none."""
    sources = []
    for line in text.splitlines():
        if line.strip():
            name, version, file, sha256, place = line.split()
            sources.append(Source(normalize(name), version, file, sha256, place))
    return sources


def archive_sha256(direct_url: dict) -> str | None:
    """The SHA-256 pip recorded for the file a distribution came from (PEP 610): `hashes` since pip 23.1,
    only the older `hash` ("sha256=...") before, as bookworm's pip writes it."""
    info = direct_url.get("archive_info", {})
    if info.get("hashes", {}).get("sha256"):
        return info["hashes"]["sha256"]
    alg, _, value = info.get("hash", "").partition("=")
    return value if alg == "sha256" and value else None


def find_dists(folders: list[str]) -> list[Dist]:
    """Every distribution in each folder, as importlib.metadata reads it there."""
    dists = []
    for folder in folders:
        for dist in importlib.metadata.distributions(path=[folder]):
            direct = dist.read_text("direct_url.json")
            sha256 = archive_sha256(json.loads(direct)) if direct else None
            dists.append(Dist(dist.metadata["Name"], dist.version, folder, sha256,
                              tuple(str(f) for f in dist.files or ())))
    return sorted(dists, key=lambda d: (normalize(d.name), d.folder))


def artifact(dist: Dist, lock: dict[str, tuple[str, set[str]]], sources: list[Source]) -> tuple[str, str]:
    """(SHA-256 of what dist was installed from, how): the checked wheel (pip's record, else the build's),
    else the sdist the builder compiled. Raises ValueError when the lock does not vouch for it: an SBOM
    must not guess."""
    key = normalize(dist.name)
    if key not in lock:
        raise ValueError(f"{dist.name} {dist.version} in {dist.folder} is in no lock file")
    version, hashes = lock[key]
    if version != dist.version:
        raise ValueError(f"{dist.name} in {dist.folder} is {dist.version}, the lock pins {version}")
    if dist.artifact_sha256 in hashes:
        return dist.artifact_sha256, "wheel"
    place = "abi" if dist.folder.rstrip("/") == ABI_MPI4PY else "venv"
    mine = [s for s in sources if s.name == key and s.version == dist.version]
    for source in [s for s in mine if s.place == place] + [s for s in mine if s.place == "sdist"]:
        if source.sha256 in hashes:
            return source.sha256, ("wheel" if source.place != "sdist" else
                                   f"built in the image from the sdist {source.file}")
    raise ValueError(f"{dist.name} {dist.version} in {dist.folder}: installed from an artifact the lock does "
                     f"not list (sha256 {dist.artifact_sha256})")


def variants(dists: list[Dist]) -> list[tuple[Dist, str, str]]:
    """mpi4py's compiled MPI extensions: (its distribution, file relative to the folder, variant)."""
    found = []
    for dist in dists:
        if normalize(dist.name) != "mpi4py":
            continue
        for file in dist.files:
            hit = re.fullmatch(r"mpi4py/MPI(?:\.(mpich|openmpi|mpiabi))?\.cpython-[^/]+\.so", file)
            if hit:
                found.append((dist, file, hit.group(1) or ""))
        if dist.folder.rstrip("/") == ABI_MPI4PY:
            # The standard-ABI variant is the kit's own build, beside the wheel's (RECORD does not list it).
            for path in sorted(Path(dist.folder, "mpi4py").glob("MPI.mpiabi.*.so")):
                found.append((dist, f"mpi4py/{path.name}", "mpiabi"))
    return found


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(debs: list[Deb], dists: list[Dist], lock: dict[str, tuple[str, set[str]]],
          sources: list[Source], base: str, platform: str, epoch: int,
          file_hash=sha256_file):
    """The Bom: the image as metadata.component, every package, the MPI stack."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    def props(**values: str) -> list:
        return [Property(name=f"{PROPERTY}:{k.replace('_', '-')}", value=v) for k, v in sorted(values.items())]

    components, deb_refs = [], {}
    for deb in sorted(set(debs), key=lambda d: (d.name, d.arch)):
        purl = PackageURL("deb", "debian", deb.name, deb.version,
                          {"arch": deb.arch, "distro": f"debian-{base}"})
        ref = f"deb:{deb.name}:{deb.arch}"
        deb_refs[deb.name] = ref
        extra = {"source": f"{deb.source} {deb.source_version}"} if (deb.source, deb.source_version) != \
            (deb.name, deb.version) else {}
        components.append(Component(name=deb.name, version=deb.version, purl=purl, bom_ref=ref,
                                    properties=props(kind="deb", arch=deb.arch, **extra)))
    dist_refs = {}
    for dist in dists:
        sha256, how = artifact(dist, lock, sources)
        ref = f"pypi:{normalize(dist.name)}@{dist.version}:{dist.folder}"
        dist_refs[(normalize(dist.name), dist.folder)] = ref
        components.append(Component(
            name=dist.name, version=dist.version, bom_ref=ref,
            purl=PackageURL("pypi", None, normalize(dist.name), dist.version),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha256)],
            properties=props(kind="pypi", path=dist.folder, artifact=how)))
    dependencies = {}
    by_name = {d.name: d for d in debs}
    stack_refs = {}
    for key, (title, pattern) in STACK.items():
        carriers = sorted(d.name for d in debs if re.match(pattern, d.name))
        if not carriers:
            continue
        # The upstream version: the package's without its epoch and Debian revision.
        version = re.sub(r"-[^-]*$", "", by_name[carriers[0]].version.split(":")[-1])
        ref = f"mpi-stack:{key}"
        stack_refs[key] = ref
        components.append(Component(name=title, version=version, bom_ref=ref, type=ComponentType.FRAMEWORK,
                                    properties=props(kind="mpi-stack", debs=" ".join(carriers))))
        dependencies[ref] = [deb_refs[c] for c in carriers]
    for dist, file, variant in variants(dists):
        path = Path(dist.folder, file)
        ref = f"mpi-stack:mpi4py-{variant or 'image'}:{dist.folder}"
        components.append(Component(
            name=f"mpi4py.MPI ({variant or 'the image build'})", version=dist.version, bom_ref=ref,
            type=ComponentType.LIBRARY, hashes=[HashType(alg=HashAlgorithm.SHA_256, content=file_hash(path))],
            properties=props(kind="mpi-stack", abi=VARIANT_ABI[variant], path=str(path))))
        dependencies[ref] = [dist_refs[(normalize(dist.name), dist.folder)]] + \
            ([stack_refs["openmpi"]] if variant == "" and "openmpi" in stack_refs else [])
    image = Component(name="mpi4py-kit", version=f"{base}-{platform}", type=ComponentType.CONTAINER,
                      bom_ref="mpi4py-kit", properties=props(base=base, platform=platform))
    when = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    bom = Bom(components=components, metadata=BomMetaData(component=image, timestamp=when))
    refs = {c.bom_ref.value: c for c in components}
    # The image holds every package and the stack; the stack's parts hold the packages that carry them.
    bom.register_dependency(image, [c for c in components if c.bom_ref.value not in
                                    {n for needs in dependencies.values() for n in needs}])
    for ref, needs in sorted(dependencies.items()):
        bom.register_dependency(refs[ref], [refs[n] for n in needs])
    return bom


def render(bom) -> str:
    """The JSON, with a serial number that is a UUID of everything else (the same inputs, the same bytes)."""
    from cyclonedx.output.json import JsonV1Dot6

    bom.serial_number = uuid.UUID(int=0)
    text = JsonV1Dot6(bom).output_as_string(indent=1)
    bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, "mpi4py-kit:sbom:" + hashlib.sha256(text.encode()).hexdigest())
    return JsonV1Dot6(bom).output_as_string(indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write"])
    parser.add_argument("output")
    parser.add_argument("--base", required=True)
    parser.add_argument("--platform", required=True)
    parser.add_argument("--sources", required=True, help="the build's record of its Python artifacts")
    parser.add_argument("--lock", action="append", required=True, help="a requirements/*.txt the image used")
    args = parser.parse_args(argv)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or 0)
    if not epoch:
        print("error: SOURCE_DATE_EPOCH is not set; the kit passes the last commit time of the build inputs",
              file=sys.stderr)
        return 1
    debs = parse_dpkg(subprocess.run(["dpkg-query", "-W", "-f", DPKG_FORMAT], check=True,
                                     capture_output=True, text=True).stdout)
    import sysconfig

    dists = find_dists([sysconfig.get_paths()["purelib"], ABI_MPI4PY])
    lock: dict[str, tuple[str, set[str]]] = {}
    for file in args.lock:
        lock.update(parse_lock(Path(file).read_text()))
    sources = parse_sources(Path(args.sources).read_text())
    try:
        bom = build(debs, dists, lock, sources, args.base, args.platform, epoch)
    except ValueError as exc:
        print(f"error: the SBOM cannot vouch for a package: {exc}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(bom))
    print(f"SBOM: {out}: {len(debs)} Debian packages, {len(dists)} Python distributions "
          f"({', '.join(f'{d.name} {d.version}' for d in dists)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
