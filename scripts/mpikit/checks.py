"""Output checks for the examples, shared by `make smoke` and the tests.

A check reads content, never order: which ranks reported, the seed's
recognisable lines, the example's own "check passed" verdict, no traceback.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


RANK_LINE = re.compile(r"^rank: (\d+) has PID: \d+ on host: (\S+)$", re.M)


def hosts_of(out: str) -> set[str]:
    """The hosts named in rank.py's 'rank: R has PID: P on host: H' lines."""
    return {m.group(2) for m in RANK_LINE.finditer(out)}


def _ranks(pattern: str, text: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(pattern, text, flags=re.M)]


def _expect_ranks(verdict: Verdict, what: str, found: list[int], np: int) -> None:
    if sorted(found) != list(range(np)):
        verdict.problems.append(f"{what}: expected ranks 0..{np - 1} once each, got {sorted(found)}")


def mpi_library(out: str) -> str | None:
    """The MPI library rank.py says every rank runs on (MPI.Get_library_version, first line)."""
    found = re.search(r"^check passed: .*; MPI library on every rank: (.+)$", out, flags=re.M)
    return found.group(1).strip() if found else None


def check_rank(out: str, np: int, size: int | None = None) -> Verdict:
    v = Verdict()
    _expect_ranks(v, "'rank: R has PID: P on host: H' lines", [int(m.group(1)) for m in RANK_LINE.finditer(out)], np)
    hosts = hosts_of(out)
    v.summary = f"{np} ranks on {len(hosts)} host(s)"
    return v


def check_p2p(out: str, np: int, size: int | None = None) -> Verdict:
    v = Verdict()
    hello = re.findall(r"^rank 1: Hello, world$", out, flags=re.M)
    if len(hello) != 1:
        v.problems.append(f"expected one line 'rank 1: Hello, world', found {len(hello)}")
    v.summary = "rank 1 got 'Hello, world'"
    return v


def check_bcast(out: str, np: int, size: int | None = None) -> Verdict:
    v = Verdict()
    found = []
    for m in re.finditer(r"^Rank: (\d+), data: (\{.*\})$", out, flags=re.M):
        rank, data = int(m.group(1)), ast.literal_eval(m.group(2))
        found.append(rank)
        if data != {"key1": [7, 2.72, 2 + 3j, rank], "key2": ("abc", "xyz")}:
            v.problems.append(f"rank {rank} printed wrong data {data}")
    _expect_ranks(v, "'Rank: R, data: {...}' lines", found, np)
    v.summary = f"all {np} ranks got the dict"
    return v


def check_scatter(out: str, np: int, size: int | None = None) -> Verdict:
    v = Verdict()
    parts = re.findall(r"^rank (\d+): (\d+) values, average \S+$", out, flags=re.M)
    _expect_ranks(v, "'rank R: N values' lines", [int(r) for r, _ in parts], np)
    total = sum(int(n) for _, n in parts)
    if size is not None and total != size:
        v.problems.append(f"the ranks received {total} values in all, expected {size}")
    average = re.findall(r"^Full Average: (\S+)$", out, flags=re.M)
    if len(average) != 1:
        v.problems.append(f"expected one 'Full Average: X' line, found {len(average)}")
    v.summary = f"{total} values over {np} ranks, Full Average {average[0] if average else '?'}"
    return v


def check_pool(out: str, np: int, size: int | None = None) -> Verdict:
    v = Verdict()
    workers = _ranks(r"^worker rank (\d+) on host \S+ ran \d+ tasks$", out)
    if sorted(workers) != list(range(1, np)):
        v.problems.append(f"'worker rank R ... ran N tasks' lines: expected workers 1..{np - 1} once each, "
                          f"got {sorted(workers)}")
    hosts = set(re.findall(r"^worker rank \d+ on host (\S+) ran", out, flags=re.M))
    v.summary = f"{np - 1} workers on {len(hosts)} host(s) ran the tasks"
    return v


CHECKS = {"rank": check_rank, "p2p": check_p2p, "bcast": check_bcast, "scatter": check_scatter,
          "pool": check_pool}


def check_run(example: str, out: str, err: str, returncode: int, np: int,
              size: int | None = None) -> Verdict:
    """Everything a good run of `example` with `np` ranks must show."""
    verdict = CHECKS[example](out, np, size)
    if returncode != 0:
        verdict.problems.insert(0, f"exit status {returncode}")
    if "Traceback" in out + err:
        verdict.problems.append("a traceback was printed")
    if len(re.findall(r"^check passed: ", out, flags=re.M)) != 1:
        verdict.problems.append("the example's own 'check passed' line is missing")
    return verdict
