"""Reading Slurm's answers in the test cluster: node states and the ranks still running."""

from mpikit import cluster


def test_nodes_ready() -> None:
    assert cluster.nodes_ready("node1 idle\nnode2 mix\n")
    assert not cluster.nodes_ready("node1 idle\nnode2 down*\n")
    assert not cluster.nodes_ready("node1 idle\n")
    assert not cluster.nodes_ready("")


def test_listpids_keeps_only_ranks() -> None:
    text = ("PID      JOBID    STEPID   LOCALID GLOBALID\n"
            "101      7        batch    0       0\n"
            "102      7        0        0       2\n"
            "103      7        0        1       3\n"
            "104      7        extern   -       -\n")
    assert cluster.parse_listpids(text) == {2, 3}
