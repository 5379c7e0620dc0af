"""A SIF file's header and descriptors, read without Apptainer and without unpacking anything (sif.go's
layout: little-endian and packed): where the root file system lies, and the labels the build recorded."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

SIF_MAGIC = b"SIF_MAGIC\0"
_HEADER = struct.Struct("<32s10s3s3s16s8q")  # launch, magic, version, arch, id, created..data size
_DESCRIPTOR = struct.Struct("<i?IIIqqqqqqq128s384s")  # type, used, ids, offset, size, ... name, extra
DATA_PARTITION = 0x4004
DATA_GENERIC_JSON = 0x4006
FS_SQUASH, PART_PRIMARY_SYSTEM = 1, 2
# Apptainer's metadata object (what apptainer inspect reads): {"data": {"attributes": {"labels": {...}}}}.
INSPECT_METADATA = "inspect-metadata.json"
HEAD = 1 << 16  # the header and descriptors of any SIF the kit builds (they end at 4096 + 48 * 585)
MAX_METADATA = 1 << 22


@dataclass(frozen=True)
class Descriptor:
    kind: int
    offset: int
    size: int
    name: str
    extra: bytes


def descriptors(head: bytes) -> list[Descriptor]:
    """The used descriptors of the SIF whose first bytes are `head`."""
    if len(head) < _HEADER.size or head[32:42] != SIF_MAGIC:
        raise ValueError("not a SIF file (no SIF_MAGIC at byte 32)")
    fields = _HEADER.unpack_from(head)
    total, offset = fields[8], fields[9]
    found = []
    for i in range(total):
        start = offset + i * _DESCRIPTOR.size
        if start + _DESCRIPTOR.size > len(head):
            raise ValueError("the SIF's descriptors run past what was read")
        d = _DESCRIPTOR.unpack_from(head, start)
        if d[1]:
            found.append(Descriptor(d[0], d[5], d[6], d[12].rstrip(b"\0").decode(errors="replace"), d[13]))
    return found


def root_partition(head: bytes) -> tuple[int, int]:
    """(offset, size) of the SIF's primary system partition (the root file system) from the start of the file."""
    for d in descriptors(head):
        fstype, parttype = struct.unpack_from("<ii", d.extra)
        if d.kind == DATA_PARTITION and parttype == PART_PRIMARY_SYSTEM:
            if fstype != FS_SQUASH:
                raise ValueError(f"the SIF's root file system is not squashfs (type {fstype})")
            return d.offset, d.size
    raise ValueError("the SIF has no primary system partition")


def labels(path: Path) -> dict[str, str] | None:
    """The labels the SIF's build recorded (as apptainer inspect --labels shows them), read from its
    metadata object: a few kilobytes, in milliseconds. None when the SIF has no such object (a build by
    an old Singularity); ValueError when the file is not a SIF."""
    with path.open("rb") as f:
        head = f.read(HEAD)
        for d in descriptors(head):
            if d.kind == DATA_GENERIC_JSON and d.name == INSPECT_METADATA and 0 < d.size <= MAX_METADATA:
                f.seek(d.offset)
                try:
                    meta = json.loads(f.read(d.size))
                except ValueError:
                    raise ValueError(f"the SIF's {INSPECT_METADATA} is not JSON") from None
                found = meta.get("data", {}).get("attributes", {}).get("labels") or {}
                return {str(k): str(v) for k, v in found.items()}
    return None
