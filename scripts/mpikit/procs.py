"""Processes on this machine, read from /proc: the MPI ranks of a session (for
the TIMEOUT message) and leftovers of a script (for the tests).

Linux only: where there is no /proc (a Mac host), every function answers None,
"cannot tell", and callers say less instead of failing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROC = Path("/proc")

# Lists the MPI ranks among the processes this kernel shows (a rank carries
# PMIX_RANK in its environment); with an argument, only that session's.
# Runs with any Python: the host's, or the image's through docker exec.
RANK_SCAN = r"""
import os, sys
sid = int(sys.argv[1]) if len(sys.argv) > 1 else None
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if sid is not None and os.getsid(int(pid)) != sid:
            continue
        env = open("/proc/%s/environ" % pid, "rb").read().split(b"\0")
    except OSError:
        continue
    rank = [e[10:] for e in env if e.startswith(b"PMIX_RANK=")]
    if rank:
        print(int(rank[0]))
"""


def available() -> bool:
    return (PROC / "self" / "stat").exists()


def ranks_from(argv: list[str]) -> list[int] | None:
    """Run a RANK_SCAN (here, or in a container) and read the ranks it prints."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sorted({int(x) for x in proc.stdout.split() if x.isdigit()}) if proc.returncode == 0 else None


def local_ranks(session: int) -> list[int] | None:
    """The ranks still running in `session` on this machine (None: cannot tell here)."""
    if not available():
        return None
    return ranks_from([sys.executable, "-c", RANK_SCAN, str(session)])


def matching(text: str) -> list[str] | None:
    """`pid command line` of every process (but this one) whose command line contains `text`."""
    if not available():
        return None
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name} {cmdline}")
    return found
