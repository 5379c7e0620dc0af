"""Checks the image's compiled modules against the interpreter that runs this script (in the image):
every .pyc under the folders given is the one this Python would write for its source: its magic number,
its flags and what they check (checked-hash: the source's hash, as /opt/venv's; timestamp: the source's
mtime and size, as Debian's standard library), and the same code object as compiling the source here.

The Dockerfile compiles /opt/venv and the standard library on the build host's platform (install.sh hooks
and stdlib); this proves the image's interpreter takes those files as its own (tests/integration/
test_image.py, and test_arm64.py for another platform).

    python bytecode_check.py PATH [PATH ...]    prints "N .pyc files match", or each mismatch (exit 1)

A PATH is a folder (every .pyc under it) or a module's .py file (its .pyc, where this Python looks for it).
"""

import importlib.util
import marshal
import sys
from pathlib import Path

CHECKED_HASH = 0b11  # PEP 552: hash-based, checked
TIMESTAMP = 0  # PEP 552: the source's mtime and size


def problems(pyc: Path) -> list[str]:
    source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
    if not source.is_file():
        return [f"{pyc}: no source {source}"]
    data, text = pyc.read_bytes(), source.read_bytes()
    found = []
    if data[:4] != importlib.util.MAGIC_NUMBER:
        found.append(f"{pyc}: magic {data[:4].hex()}, this Python's is {importlib.util.MAGIC_NUMBER.hex()}")
    flags = int.from_bytes(data[4:8], "little")
    if flags == CHECKED_HASH:
        if data[8:16] != importlib.util.source_hash(text):
            found.append(f"{pyc}: the source hash differs from this Python's for {source}")
    elif flags == TIMESTAMP:
        stat = source.stat()
        mtime, size = int.from_bytes(data[8:12], "little"), int.from_bytes(data[12:16], "little")
        if (mtime, size) != (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF):
            found.append(f"{pyc}: records mtime {mtime} and size {size}, but {source} has "
                         f"{int(stat.st_mtime)} and {stat.st_size} (stale: compiled again at each import)")
    else:
        found.append(f"{pyc}: flags {data[4:8].hex()}, neither checked-hash nor timestamp")
    if marshal.loads(data[16:]) != compile(text, str(source), "exec", dont_inherit=True):
        found.append(f"{pyc}: its code differs from this Python's compile of {source}")
    return found


def main(paths: list[str]) -> int:
    count, found = 0, []
    for path in map(Path, paths):
        if path.suffix == ".py":
            pyc = Path(importlib.util.cache_from_source(str(path)))
            if not pyc.is_file():
                found.append(f"{path}: not compiled ({pyc} is missing)")
                continue
            pycs = [pyc]
        else:
            pycs = sorted(path.rglob("__pycache__/*.pyc"))
        for pyc in pycs:
            count += 1
            found += problems(pyc)
    for line in found:
        print(line)
    if count == 0:
        print(f"no .pyc files under {', '.join(paths)}")
        return 1
    print(f"{count} .pyc files match" if not found else f"{len(found)} problem(s) in {count} .pyc files")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
