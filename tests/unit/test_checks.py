"""The output checks shared by make smoke and the tests, on made-up outputs."""

from __future__ import annotations

from mpikit.checks import check_run, hosts_of

RANK = "rank: 1 has PID: 11 on host: b\nrank: 0 has PID: 10 on host: a\ncheck passed: 2 ranks on 2 host(s): a, b\n"


def test_rank_in_any_order() -> None:
    verdict = check_run("rank", RANK, "", 0, 2)
    assert verdict.ok and verdict.summary == "2 ranks on 2 host(s)"
    assert hosts_of(RANK) == {"a", "b"}


def test_missing_or_doubled_ranks() -> None:
    doubled = RANK.replace("rank: 1 has PID: 11", "rank: 0 has PID: 11")
    assert "expected ranks 0..1 once each, got [0, 0]" in check_run("rank", doubled, "", 0, 2).problems[0]


def test_exit_status_traceback_and_own_check() -> None:
    verdict = check_run("rank", RANK.replace("check passed", "check FAILED"), "Traceback (most recent", 1, 2)
    assert verdict.problems[0] == "exit status 1"
    assert "a traceback was printed" in verdict.problems
    assert "the example's own 'check passed' line is missing" in verdict.problems


def test_p2p_and_bcast() -> None:
    assert check_run("p2p", "rank 1: Hello, world\ncheck passed: x\n", "", 0, 3).ok
    assert not check_run("p2p", "rank 1: Hello\ncheck passed: x\n", "", 0, 3).ok
    good = ("Rank: 0, data: {'key1': [7, 2.72, (2+3j), 0], 'key2': ('abc', 'xyz')}\n"
            "Rank: 1, data: {'key1': [7, 2.72, (2+3j), 1], 'key2': ('abc', 'xyz')}\ncheck passed: x\n")
    assert check_run("bcast", good, "", 0, 2).ok
    assert "rank 1 printed wrong data" in check_run("bcast", good.replace("(2+3j), 1", "(2+3j), 0"), "", 0, 2
                                                    ).problems[0]


def test_scatter_counts_every_value() -> None:
    out = "rank 0: 2 values, average 1.0\nrank 1: 1 values, average 2.0\nFull Average: 1.33\ncheck passed: x\n"
    assert check_run("scatter", out, "", 0, 2, 3).ok
    assert "received 3 values in all, expected 4" in check_run("scatter", out, "", 0, 2, 4).problems[0]


def test_the_mpi_library_rank_py_names() -> None:
    from mpikit.checks import mpi_library

    out = "check passed: 2 ranks on 1 host(s): a; MPI library on every rank: MPICH Version: 5.0.2\n"
    assert mpi_library(out) == "MPICH Version: 5.0.2"
    assert mpi_library(RANK) is None
