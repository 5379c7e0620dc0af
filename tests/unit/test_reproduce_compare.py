"""make reproduce's judgement: two file systems (tar streams, as docker export writes them) compared by
path, type, mode, owner, link target and content; packages the mirror moved named first and their files
left out; the SIF's root partition found from its header."""

from __future__ import annotations

import io
import json
import struct
import tarfile

import pytest
from mpikit import reproduce, sif
from mpikit.config import SBOM_PATH


def tar_of(files: dict[str, object], **changes) -> io.BytesIO:
    """A tar stream: {path: bytes (a file) | ("->", target) | ("=>", target) | None (a folder)}."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, what in files.items():
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = 0o644, 0, 0, 1
            for key, value in changes.get(name, {}).items():
                setattr(info, key, value)
            data = None
            if what is None:
                info.type, info.mode = tarfile.DIRTYPE, changes.get(name, {}).get("mode", 0o755)
            elif isinstance(what, tuple):
                info.type = tarfile.SYMTYPE if what[0] == "->" else tarfile.LNKTYPE
                info.linkname = what[1]
            else:
                data = bytes(what)
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    out.seek(0)
    return out


BASE = {"etc": None, "etc/passwd": b"root:x:0:0\n", "bin": ("->", "usr/bin"), "usr": None, "usr/bin": None,
        "usr/bin/python3": b"\x7fELF...", "usr/bin/python": ("=>", "usr/bin/python3")}


def manifest(files=BASE, **changes) -> reproduce.Manifest:
    return reproduce.from_tar(tar_of(files, **changes))


def test_the_same_file_system_has_no_difference_whatever_the_times() -> None:
    assert reproduce.compare(manifest(), reproduce.from_tar(tar_of(BASE, **{"etc/passwd": {"mtime": 99}}))) == []


@pytest.mark.parametrize("files, changes, said", [
    ({**BASE, "etc/passwd": b"root:x:0:0:\n"}, {}, "/etc/passwd: file 0644 0:0 11 B"),
    (BASE, {"etc/passwd": {"mode": 0o600}}, "/etc/passwd: file 0644 0:0 11 B sha256 "),
    (BASE, {"etc/passwd": {"uid": 1000}}, "| file 0644 1000:0"),
    ({**BASE, "bin": ("->", "usr/sbin")}, {}, "/bin: symlink 0644 0:0 -> usr/bin | symlink 0644 0:0 -> usr/sbin"),
    ({**BASE, "var": None}, {}, "/var: only in the second build"),
    ({k: v for k, v in BASE.items() if k != "etc/passwd"}, {}, "/etc/passwd: only in the first build"),
    ({**BASE, "usr/bin/python3": b"\x7fELF,,,"}, {}, "/usr/bin/python:"),  # a hard link follows its file
])
def test_each_kind_of_difference_is_named(files: dict, changes: dict, said: str) -> None:
    differ = reproduce.compare(manifest(), manifest(files, **changes))
    assert any(line.startswith(said) or said in line for line in differ), differ


def sbom_with(version: str) -> bytes:
    return json.dumps({"components": [
        {"name": "bash", "version": version, "purl": f"pkg:deb/debian/bash@{version}?arch=amd64",
         "properties": [{"name": "mpi4py-kit:kind", "value": "deb"}]},
        {"name": "numpy", "version": "2.3.5", "purl": "pkg:pypi/numpy@2.3.5",
         "properties": [{"name": "mpi4py-kit:path", "value": "/opt/venv"}]}]}).encode()


def test_packages_the_mirror_moved_are_named_and_their_files_left_out() -> None:
    def image(version: str, content: bytes, other: bytes) -> reproduce.Manifest:
        return manifest({**BASE, SBOM_PATH.lstrip("/"): sbom_with(version),
                         "var/lib/dpkg/info/bash.list": b"/.\n/usr/bin/bash\n",
                         "var/lib/dpkg/info/bash.md5sums": version.encode(),
                         "var/lib/dpkg/status": version.encode(), "usr/bin/bash": content, "etc/other": other})

    moved, differ = reproduce.report(image("5.2-1", b"old", b"x"), image("5.2-2", b"new", b"x"))
    assert moved == [("pkg:deb/debian/bash", "5.2-1", "5.2-2")]
    assert differ == []  # bash's files, dpkg's record of it and the SBOM are the moved package's
    moved, differ = reproduce.report(image("5.2-1", b"old", b"x"), image("5.2-2", b"new", b"y"))
    assert [line.split(":")[0] for line in differ] == ["/etc/other"]  # the rest is still compared


def test_a_python_distribution_pypi_moved_is_named_and_its_files_left_out() -> None:
    """A user's environment rebuilt from a loose requirements file (make reproduce REQUIREMENTS=...): a release
    since the first build changes that distribution's files (its RECORD says which); the rest is compared."""
    site = "opt/venv/lib/python3.13/site-packages"

    def image(version: str, other: bytes) -> reproduce.Manifest:
        sbom = json.dumps({"components": [{"name": "tqdm", "version": version, "purl": f"pkg:pypi/tqdm@{version}",
                                           "properties": [{"name": "mpi4py-kit:path", "value": "/opt/venv"}]}]})
        info = f"{site}/tqdm-{version}.dist-info"
        record = f"tqdm/__init__.py,sha256=x,1\ntqdm-{version}.dist-info/RECORD,,\n../../../bin/tqdm,sha256=y,2\n"
        return manifest({**BASE, SBOM_PATH.lstrip("/"): sbom.encode(), f"{site}/tqdm/__init__.py": version.encode(),
                         f"{info}/RECORD": record.encode(), f"{info}/METADATA": version.encode(),
                         "opt/venv/bin/tqdm": version.encode(), "etc/other": other})

    moved, differ = reproduce.report(image("4.67.1", b"x"), image("4.68.0", b"x"))
    assert moved == [("pkg:pypi/tqdm (/opt/venv)", "4.67.1", "4.68.0")]
    assert differ == [], differ
    moved, differ = reproduce.report(image("4.67.1", b"x"), image("4.68.0", b"y"))
    assert [line.split(":")[0] for line in differ] == ["/etc/other"]


@pytest.mark.parametrize("text, loose", [
    ("tqdm\n", ["tqdm"]),
    ("tqdm>=4\n", ["tqdm"]),
    ("tqdm==4.67.1\n", ["tqdm"]),
    ("tqdm==4.67.1 --hash=sha256:" + "a" * 64 + "\n", []),
    ("tqdm==4.67.1 \\\n    --hash=sha256:" + "a" * 64 + "\n./mypkg\n", []),
])
def test_what_a_rebuild_may_resolve_differently_is_named(tmp_path, text: str, loose: list[str]) -> None:
    from mpikit import environment

    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "pyproject.toml").write_text("[project]\nname = 'mypkg'\nversion = '1'\n")
    (tmp_path / "req.txt").write_text(text)
    assert environment.unpinned(environment.read("req.txt", tmp_path)) == loose


def test_no_package_moved_compares_everything() -> None:
    a = manifest({**BASE, SBOM_PATH.lstrip("/"): sbom_with("1")})
    b = manifest({**BASE, SBOM_PATH.lstrip("/"): sbom_with("1"), "tmp": None})
    assert reproduce.report(a, b) == ([], ["/tmp: only in the second build (dir 0755 0:0)"])


def sif_head(partitions: list[tuple[int, int, int, int]]) -> bytes:
    """A SIF's header and descriptors: [(data type, parttype, offset, size)], sif.go's packed layout."""
    descriptors = b""
    for kind, parttype, offset, size in partitions:
        extra = struct.pack("<ii3s", 1, parttype, b"amd").ljust(384, b"\0")
        descriptors += struct.pack("<i?IIIqqqqqqq128s384s", kind, True, 1, 1, 0, offset, size, size, 0, 0, 0, 0,
                                   b"name", extra)
    header = struct.pack("<32s10s3s3s16s8q", b"#!/usr/bin/env run-singularity\n", b"SIF_MAGIC\0", b"01\0",
                         b"00\0", b"\0" * 16, 0, 0, 0, len(partitions), 4096, len(descriptors), 8192, 100)
    return header.ljust(4096, b"\0") + descriptors


def test_the_root_partition_is_found_in_the_header() -> None:
    head = sif_head([(0x4001, 0, 5000, 10), (0x4004, 2, 45056, 182382592)])
    assert sif.root_partition(head) == (45056, 182382592)


@pytest.mark.parametrize("head, said", [
    (b"#!/bin/sh\n" * 10, "not a SIF file"),
    (sif_head([(0x4001, 0, 5000, 10)]), "no primary system partition"),
])
def test_what_is_not_a_sif_with_a_root_is_said(head: bytes, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        sif.root_partition(head)


def test_the_build_date_label_is_written_as_apptainer_writes_it() -> None:
    """Apptainer 1.4's own stamp of 2026-12-03 08:35:45 UTC read Thursday_3_December_2026_8:35:45_UTC."""
    import calendar

    from mpikit import apptainer

    epoch = calendar.timegm((2026, 12, 3, 8, 35, 45))
    assert apptainer.build_date(str(epoch)) == "Thursday_3_December_2026_8:35:45_UTC"
    assert apptainer.build_date("315532800") == "Tuesday_1_January_1980_0:00:00_UTC"


def _manifest(entries: dict[str, reproduce.Entry]) -> reproduce.Manifest:
    return reproduce.Manifest(entries, {})


def _file(content: str, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> reproduce.Entry:
    import hashlib

    return reproduce.Entry("file", mode, *owner, "", hashlib.sha256(content.encode()).hexdigest(), len(content))


def test_the_twins_are_compared_everywhere_but_apptainers_own_metadata() -> None:
    recipe = _manifest({"opt/venv/x.py": _file("x"), ".singularity.d/labels.json": _file("a"),
                        ".singularity.d/runscript": _file("exec python"),
                        "home/mpi/.bashrc": _file("rc", owner=(1000, 1000)),
                        ".singularity.d/env/90-environment.sh": _file("export A=1")})
    image = _manifest({"opt/venv/x.py": _file("x"), ".singularity.d/labels.json": _file("a and Docker's"),
                       ".singularity.d/env/10-docker2singularity.sh": _file("export PATH=..."),
                       ".singularity.d/runscript": _file("exec python"), "home/mpi/.bashrc": _file("rc"),
                       ".singularity.d/env/90-environment.sh": _file("export A=1")})
    differences, owners = reproduce.twin_report(recipe, image)
    assert differences == [] and owners == ["/home/mpi/.bashrc: 1000:1000 in the recipe's"]


@pytest.mark.parametrize("change", [
    {"opt/venv/x.py": _file("y")},  # content
    {"opt/venv/x.py": _file("x", mode=0o664)},  # mode (a umask of 002 in one build)
    {"opt/sbom-tool": reproduce.Entry("dir", 0o755, 0, 0, "", "", 0)},  # only in one
    {".singularity.d/runscript": _file("exec python3")},  # a run-time file of the definition
    {"home/mpi/.bashrc": _file("rc", owner=(1000, 0))},  # an owner that is not root's on the image's side
])
def test_a_twin_difference_is_reported(change: dict) -> None:
    base = {"opt/venv/x.py": _file("x"), ".singularity.d/runscript": _file("exec python"),
            "home/mpi/.bashrc": _file("rc", owner=(1000, 1000))}
    differences, _ = reproduce.twin_report(_manifest(base), _manifest({**base, **change}))
    assert len(differences) == 1 and differences[0].startswith("/" + next(iter(change))), differences


def test_apptainers_placeholders_in_dev_are_not_the_recipes() -> None:
    """The SIF made from an image holds the empty files Apptainer writes in place of device nodes (and /dev/fd's
    links); one built on another SIF (an environment's, Bootstrap: localimage) has none: at run time Apptainer
    mounts its own /dev over both. Something else in /dev still counts."""
    empty = _file("")
    recipe = _manifest({"opt/venv/x.py": _file("x")})
    image = _manifest({"opt/venv/x.py": _file("x"), "dev/null": empty, "dev/zero": empty,
                       "dev/pts": reproduce.Entry("dir", 0o755, 0, 0, "", "", 0),
                       "dev/fd": reproduce.Entry("symlink", 0o777, 0, 0, "/proc/self/fd", "", 0)})
    assert reproduce.twin_report(recipe, image) == ([], [])
    image.entries["dev/my-data"] = _file("bytes")
    differences, _ = reproduce.twin_report(recipe, image)
    assert [line.split(":")[0] for line in differences] == ["/dev/my-data"]
