"""make reproduce: rebuild the image (or the SIF) from the same inputs without any build cache, and
compare the two file systems: every path, its type, mode, owner, link target and content hash.

The record of a build is its SBOM (/opt/mpi4py-kit/sbom.cdx.json): when the Debian mirror has moved
since the first build, the packages that moved are named first (the two SBOMs compared), and the
files they own are left out of the comparison of the rest.
"""

from __future__ import annotations

import csv
import hashlib
import json
import posixpath
import re
import stat
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from . import sif as sif_format
from .config import SBOM_PATH
from .ui import RunError

# What the comparison reads from each side besides the entries: the SBOM and dpkg's file lists.
KEPT = (SBOM_PATH.lstrip("/"),)
DPKG_INFO = "var/lib/dpkg/info/"


@dataclass(frozen=True)
class Entry:
    kind: str  # file, dir, symlink, hardlink, char, block, fifo
    mode: int  # permission bits, setuid/setgid/sticky included
    uid: int
    gid: int
    link: str  # a symlink's or hard link's target; "" for others
    sha256: str  # a regular file's content; "" for others
    size: int

    def describe(self) -> str:
        what = {"symlink": f"-> {self.link}", "hardlink": f"=> {self.link}",
                "file": f"{self.size} B sha256 {self.sha256[:12]}"}.get(self.kind, "")
        return f"{self.kind} {self.mode:04o} {self.uid}:{self.gid} {what}".rstrip()


@dataclass
class Manifest:
    entries: dict[str, Entry]
    kept: dict[str, bytes]  # the contents of KEPT files and dpkg's *.list files

    def sbom(self) -> dict | None:
        raw = self.kept.get(SBOM_PATH.lstrip("/"))
        return json.loads(raw) if raw else None

    def owned_by(self, package: str) -> set[str]:
        """The paths dpkg lists for `package` (any architecture), and dpkg's own files for it."""
        paths = set()
        for name, raw in self.kept.items():
            stem = PurePosixPath(name).name.split(".")[0]
            if name.startswith(DPKG_INFO) and name.endswith(".list") and stem.split(":")[0] == package:
                paths |= {line.strip().lstrip("/") for line in raw.decode(errors="replace").splitlines()
                          if line.strip() and line.strip() != "/."}
        paths |= {p for p in self.entries if p.startswith(DPKG_INFO) and
                  PurePosixPath(p).name.split(".")[0].split(":")[0] == package}
        return paths


    def installed_by_pip(self, distribution: str) -> set[str]:
        """The paths a Python distribution's RECORD lists (any version of it), its .dist-info folder's included."""
        paths = set()
        for name, raw in self.kept.items():
            info = PurePosixPath(name).parent  # NAME-VERSION.dist-info, NAME with "_" for "-"
            named = re.sub(r"[-_.]+", "-", info.name.removesuffix(".dist-info").split("-", 1)[0]).lower()
            if not name.endswith(".dist-info/RECORD") or named != distribution:
                continue
            paths |= {str(info)} | {p for p in self.entries if p.startswith(f"{info}/")}
            for row in csv.reader(raw.decode(errors="replace").splitlines()):
                if row and row[0]:
                    paths.add(posixpath.normpath(str(info.parent / row[0])))
        return paths


def _keep(name: str) -> bool:
    return name in KEPT or (name.startswith(DPKG_INFO) and name.endswith(".list")) or \
        name.endswith(".dist-info/RECORD")


def _clean(name: str) -> str:
    name = name[2:] if name.startswith("./") else name
    return name.strip("/")


def _hash_blocks(blocks: Iterable[bytes], keep: bool) -> tuple[str, bytes | None]:
    """(SHA-256 of the blocks, their bytes when `keep`)."""
    h, kept = hashlib.sha256(), bytearray()
    for block in blocks:
        h.update(block)
        if keep:
            kept += block
    return h.hexdigest(), bytes(kept) if keep else None


def _hash(f: IO[bytes] | None, keep: bool) -> tuple[str, bytes | None]:
    if f is None:
        return _hash_blocks([], keep)

    def blocks() -> Iterator[bytes]:
        while block := f.read(1 << 20):
            yield block

    return _hash_blocks(blocks(), keep)


def from_tar(stream: IO[bytes]) -> Manifest:
    """The manifest of a file system in a tar stream (docker export's), read once, in order."""
    entries, kept = {}, {}
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = _clean(member.name)
            if not name:
                continue
            digest, link = "", ""
            if member.isreg():
                digest, data = _hash(tar.extractfile(member), _keep(name))
                if data is not None:
                    kept[name] = data
                kind = "file"
            elif member.issym():
                kind, link = "symlink", member.linkname
            elif member.islnk():
                kind, link = "hardlink", _clean(member.linkname)
            elif member.isdir():
                kind = "dir"
            elif member.ischr():
                kind = "char"
            elif member.isblk():
                kind = "block"
            else:
                kind = "fifo"
            entries[name] = Entry(kind, stat.S_IMODE(member.mode), member.uid, member.gid, link, digest, member.size)
    # A hard link is the same file as its target: compared by what it points to.
    for name, entry in entries.items():
        if entry.kind == "hardlink" and entry.link in entries:
            target = entries[entry.link]
            entries[name] = Entry("file", entry.mode, entry.uid, entry.gid, "", target.sha256, target.size)
    return Manifest(entries, kept)


def from_squashfs(path: str, offset: int) -> Manifest:
    """The manifest of a SIF's root file system: the squashfs partition at `offset`, read in place
    (PySquashfsImage), nothing unpacked."""
    from PySquashfsImage import SquashFsImage

    entries, kept = {}, {}
    with SquashFsImage.from_file(path, offset=offset) as image:
        for node in image:
            name = _clean(node.path)
            if not name:
                continue
            digest, link, kind = "", "", "fifo"
            if node.is_file:
                digest, data = _hash_blocks(node.iter_bytes(), _keep(name))
                if data is not None:
                    kept[name] = data
                kind = "file"
            elif node.is_symlink:
                kind, link = "symlink", node.readlink()
            elif node.is_dir:
                kind = "dir"
            elif node.is_char_device:
                kind = "char"
            elif node.is_block_device:
                kind = "block"
            entries[name] = Entry(kind, stat.S_IMODE(node.mode), node.uid, node.gid, link, digest,
                                  node.size if node.is_file else 0)
    return Manifest(entries, kept)


def packages(sbom: dict | None) -> dict[str, str]:
    """{purl without version: version} of the SBOM's Debian and Python packages."""
    found = {}
    for component in (sbom or {}).get("components", []):
        purl = component.get("purl", "")
        if purl.startswith(("pkg:deb/", "pkg:pypi/")):
            path = next((p["value"] for p in component.get("properties", []) if p["name"] == "mpi4py-kit:path"), "")
            found[purl.split("@")[0] + (f" ({path})" if path else "")] = component.get("version", "")
    return found


def moved(first: Manifest, second: Manifest) -> list[tuple[str, str, str]]:
    """The packages whose versions differ between the two builds' SBOMs: (package, first, second);
    a package in one only shows "absent" on the other side."""
    a, b = packages(first.sbom()), packages(second.sbom())
    return sorted((name, a.get(name, "absent"), b.get(name, "absent"))
                  for name in set(a) | set(b) if a.get(name) != b.get(name))


def compare(first: Manifest, second: Manifest, skip: Iterable[str] = ()) -> list[str]:
    """Every path that differs, with how: only in one, or its type, mode, owner, link or content."""
    skipped = set(skip)
    out = []
    for name in sorted(set(first.entries) | set(second.entries)):
        if name in skipped:
            continue
        a, b = first.entries.get(name), second.entries.get(name)
        if a is None or b is None:
            out.append(f"/{name}: only in the {'second' if a is None else 'first'} build "
                       f"({(a or b).describe()})")
        elif a != b:
            out.append(f"/{name}: {a.describe()} | {b.describe()}")
    return out


def moved_paths(first: Manifest, second: Manifest, packages_moved: Iterable[tuple[str, str, str]]) -> set[str]:
    """What the moved Debian packages own on either side, and the records that name their versions."""
    paths = {SBOM_PATH.lstrip("/"), "var/lib/dpkg/status", "var/lib/dpkg/status-old", "var/lib/dpkg/available"}
    for purl, _, _ in packages_moved:
        name = purl.split(" ")[0].rsplit("/", 1)[-1].split("?")[0]
        if purl.startswith("pkg:deb/debian/"):
            paths |= first.owned_by(name) | second.owned_by(name)
        elif purl.startswith("pkg:pypi/"):
            paths |= first.installed_by_pip(name) | second.installed_by_pip(name)
    return paths


def report(first: Manifest, second: Manifest) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(packages that moved, differing paths outside them)."""
    packages_moved = moved(first, second)
    skip = moved_paths(first, second, packages_moved) if packages_moved else set()
    return packages_moved, compare(first, second, skip)


# ---- the twin rule: a SIF made from the image against one built from Apptainer.def ----

# Apptainer's metadata folder. A SIF made from the image also records the image's ENV and labels there as
# Apptainer records any Docker image's (env/10-docker2singularity.sh, labels.json, the generated definition);
# the files the definition's run-time sections write must be the same bytes in both.
METADATA = ".singularity.d"
RUN_TIME_FILES = (".singularity.d/env/90-environment.sh", ".singularity.d/runscript", ".singularity.d/runscript.help",
                  ".singularity.d/test")


def dev_placeholder(name: str, entry: Entry) -> bool:
    """What Apptainer leaves in /dev and mounts its own /dev over at run time: unpacking an image unprivileged
    it writes an empty file in place of each device node (its "creating empty file in place of device"
    warnings), with the image's /dev/fd-style links and folders; a SIF it builds from another SIF
    (Bootstrap: localimage) has none of them. A file with content there still counts."""
    if not name.startswith("dev/"):
        return False
    return (entry.kind == "file" and entry.size == 0) or entry.kind == "dir" or \
        (entry.kind == "symlink" and entry.link.startswith("/proc/self/"))


def twin_report(recipe: Manifest, image: Manifest) -> tuple[list[str], list[str]]:
    """(differences, owners given to root) between a SIF built from Apptainer.def (`recipe`) and one made from
    the Docker image (`image`). Every path is compared (type, mode, owner, link, content) but Apptainer's
    metadata folder, where only the run-time files count, and Apptainer's placeholders in /dev. One difference
    is Apptainer's, not the recipes': unpacking an image unprivileged gives every file to root (0:0), so a path
    that differs in its owner alone, with root's on the image's side, is listed apart as the second item, not
    as a difference."""
    skip = {name for name in set(recipe.entries) | set(image.entries)
            if (name == METADATA or name.startswith(METADATA + "/")) and name not in RUN_TIME_FILES}
    skip |= {name for manifest in (recipe, image) for name, entry in manifest.entries.items()
             if dev_placeholder(name, entry)}
    differences, owners = [], []
    for line, name in zip(compare(recipe, image, skip), _differing(recipe, image, skip)):
        a, b = recipe.entries.get(name), image.entries.get(name)
        if a and b and (b.uid, b.gid) == (0, 0) and \
                (a.kind, a.mode, a.link, a.sha256, a.size) == (b.kind, b.mode, b.link, b.sha256, b.size):
            owners.append(f"/{name}: {a.uid}:{a.gid} in the recipe's")
        else:
            differences.append(line)
    return differences, owners


def _differing(first: Manifest, second: Manifest, skipped: set[str]) -> list[str]:
    """The names compare() reports, in its order."""
    return [name for name in sorted(set(first.entries) | set(second.entries))
            if name not in skipped and first.entries.get(name) != second.entries.get(name)]


def lines(items: Iterator[str] | list[str], limit: int = 60) -> list[str]:
    items = list(items)
    return items[:limit] + ([f"... and {len(items) - limit} more"] if len(items) > limit else [])


# ---- reading each side ----

def image_manifest(image: str) -> Manifest:
    """The file system of a Docker image, flattened (docker export of a container never started)."""
    from . import docker

    with docker.created(image) as cid:
        proc = subprocess.Popen([docker.command(), "export", cid], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        manifest = from_tar(proc.stdout)
        if proc.wait() != 0:
            raise RunError(f"docker export {cid} ({image}) failed")
        return manifest


def sif_manifest(sif: Path) -> Manifest:
    with sif.open("rb") as f:
        offset, _ = sif_format.root_partition(f.read(sif_format.HEAD))
    return from_squashfs(str(sif), offset)


def image_id_difference(first: str, second: str) -> str:
    """Why two images of the same file system have different IDs: their configs' times, and which
    layers differ (their tars hold each file's modification time, which this Docker's BuildKit keeps)."""
    from . import docker

    def facts(image: str) -> dict:
        return json.loads(docker.run("image", "inspect", image).stdout)[0]

    a, b = facts(first), facts(second)
    la, lb = a.get("RootFS", {}).get("Layers", []), b.get("RootFS", {}).get("Layers", [])
    same = sum(1 for x, y in zip(la, lb) if x == y)
    return (f"the configs record each build's time (Created {a.get('Created', '?')[:19]} and "
            f"{b.get('Created', '?')[:19]}), and {len(la) - same} of {len(la)} layers differ "
            f"({same} the same); a layer's tar holds each file's modification time, which "
            "Docker 20.10's BuildKit neither clamps nor rewrites (SOURCE_DATE_EPOCH and rewrite-timestamp "
            "came with BuildKit 0.11 and 0.13)")
