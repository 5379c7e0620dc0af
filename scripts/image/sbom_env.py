"""The SBOM of a user's environment on the kit's image (REQUIREMENTS; scripts/image/derive.sh runs this in the
environment's image, beside sbom.py): the kit's document, with the Debian packages read again and a component for
each distribution pip put in, with the SHA-256 of the file it came from as pip's installation reports
(--report) record it, or the local folder or sdist it was built from. Standard library only (the environment's
image has no SBOM tool), and deterministic: the kit's time, a serial number that is a UUID of the content.

    python sbom_env.py SBOM --base BASE --environment TEXT --report REPORT [--report ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sbom import ABI_MPI4PY, DPKG_FORMAT, PROPERTY, Deb, Dist, archive_sha256, find_dists, normalize, parse_dpkg


@dataclass(frozen=True)
class Installed:
    """A distribution pip installed into the environment, as its installation report says."""
    name: str  # normalized
    version: str
    sha256: str | None  # of the file it came from (None: a local folder)
    how: str  # the mpi4py-kit:artifact property


def parse_reports(reports: list[dict], src: str = "/env/src/") -> dict[str, Installed]:
    """The installation reports (--report) -> {normalized name: Installed}. A wheel or sdist from the index carries
    its archive's hash; a local folder (file://.../src/PATH) is named by its path under the user's folder."""
    found = {}
    for report in reports:
        for item in report.get("install", []):
            meta, info = item["metadata"], item.get("download_info", {})
            url = info.get("url", "")
            sha256 = archive_sha256(info)
            if "dir_info" in info:
                folder = url.removeprefix("file://")
                how = f"built in the image from the local folder {folder.removeprefix(src)}"
            elif url.endswith(".whl"):
                how = "wheel"
            else:
                how = f"built in the image from the sdist {url.rsplit('/', 1)[-1]}"
            found[normalize(meta["name"])] = Installed(normalize(meta["name"]), meta["version"], sha256, how)
    return found


def purl_part(text: str) -> str:
    """A purl's name or version as packageurl writes it (the kit's document): percent-encoded, ':' kept."""
    return quote(text).replace("%3A", ":")


def deb_component(deb: Deb, base: str) -> dict:
    """A Debian package's component, as build() writes it."""
    props = [{"name": f"{PROPERTY}:arch", "value": deb.arch}, {"name": f"{PROPERTY}:kind", "value": "deb"}]
    if (deb.source, deb.source_version) != (deb.name, deb.version):
        props.append({"name": f"{PROPERTY}:source", "value": f"{deb.source} {deb.source_version}"})
    return {"bom-ref": f"deb:{deb.name}:{deb.arch}", "name": deb.name, "type": "library", "version": deb.version,
            "purl": f"pkg:deb/debian/{purl_part(deb.name)}@{purl_part(deb.version)}?arch={deb.arch}"
                    f"&distro=debian-{base}",
            "properties": sorted(props, key=lambda p: p["name"])}


def dist_component(dist: Dist, installed: Installed) -> dict:
    component = {"bom-ref": f"pypi:{normalize(dist.name)}@{dist.version}:{dist.folder}", "name": dist.name,
                 "type": "library", "version": dist.version,
                 "purl": f"pkg:pypi/{purl_part(normalize(dist.name))}@{purl_part(dist.version)}",
                 "properties": [{"name": f"{PROPERTY}:artifact", "value": installed.how},
                                {"name": f"{PROPERTY}:kind", "value": "pypi"},
                                {"name": f"{PROPERTY}:path", "value": dist.folder}]}
    if installed.sha256:
        component["hashes"] = [{"alg": "SHA-256", "content": installed.sha256}]
    return component


def extend(doc: dict, debs: list[Deb], dists: list[Dist], installed: dict[str, Installed], base: str,
           environment: str) -> dict:
    """The kit's document for the environment's image: its Debian packages as they are now, the kit's own
    distributions kept, every other one from pip's reports (raises ValueError for one nobody installed: an SBOM
    must not guess). The kit's MPI stack and mpi4py variants stay as they were."""
    doc = json.loads(json.dumps(doc))
    components = [c for c in doc["components"] if not c["bom-ref"].startswith("deb:")]
    known = {c["bom-ref"] for c in components}
    added = [deb_component(deb, base) for deb in sorted(set(debs), key=lambda d: (d.name, d.arch))]
    for dist in dists:
        ref = f"pypi:{normalize(dist.name)}@{dist.version}:{dist.folder}"
        if ref in known:
            continue
        mine = installed.get(normalize(dist.name))
        if mine is None or mine.version != dist.version:
            raise ValueError(f"{dist.name} {dist.version} in {dist.folder}: no installation report names it")
        added.append(dist_component(dist, mine))
    present = {f"pypi:{normalize(d.name)}@{d.version}:{d.folder}" for d in dists}
    gone = sorted(ref for ref in known if ref.startswith("pypi:") and ref not in present)
    if gone:
        raise ValueError(f"the kit's {', '.join(gone)} is no longer installed")
    doc["components"] = sorted(components + added, key=lambda c: c["bom-ref"])
    refs = {c["bom-ref"] for c in doc["components"]}
    depends = {d["ref"]: d for d in doc.get("dependencies", []) if d["ref"] in refs or d["ref"] == "mpi4py-kit"}
    for component in added:
        depends.setdefault(component["bom-ref"], {"ref": component["bom-ref"]})
    inner = {n for d in depends.values() if d["ref"] != "mpi4py-kit" for n in d.get("dependsOn", [])}
    for d in depends.values():
        kept = sorted(n for n in d.pop("dependsOn", []) if n in refs)
        if kept:
            d["dependsOn"] = kept
    top = depends.setdefault("mpi4py-kit", {"ref": "mpi4py-kit"})
    top["dependsOn"] = sorted(ref for ref in refs if ref not in inner)
    doc["dependencies"] = sorted(depends.values(), key=lambda d: d["ref"])
    image = doc["metadata"]["component"]
    image["properties"] = sorted([p for p in image.get("properties", []) if p["name"] != f"{PROPERTY}:environment"]
                                 + [{"name": f"{PROPERTY}:environment", "value": environment}],
                                 key=lambda p: p["name"])
    doc["serialNumber"] = "urn:uuid:" + str(uuid.UUID(int=0))
    text = json.dumps(doc, indent=1, sort_keys=True)
    doc["serialNumber"] = "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "mpi4py-kit:sbom:" +
                                                        hashlib.sha256(text.encode()).hexdigest()))
    return doc


def run(args) -> int:
    path = Path(args.output)
    doc = json.loads(path.read_text())
    debs = parse_dpkg(subprocess.run(["dpkg-query", "-W", "-f", DPKG_FORMAT], check=True,
                                     capture_output=True, text=True).stdout)
    import sysconfig

    dists = find_dists([sysconfig.get_paths()["purelib"], ABI_MPI4PY])
    installed = parse_reports([json.loads(Path(r).read_text()) for r in args.report])
    try:
        doc = extend(doc, debs, dists, installed, args.base, args.environment)
    except ValueError as exc:
        print(f"error: the SBOM cannot vouch for a package: {exc}", file=sys.stderr)
        return 1
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"SBOM: {path}: {len(debs)} Debian packages, {len(dists)} Python distributions")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the kit's SBOM in the image, rewritten for the environment")
    parser.add_argument("--base", required=True)
    parser.add_argument("--environment", required=True, help="what the environment was built from")
    parser.add_argument("--report", action="append", required=True, help="an installation report of pip (--report)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
