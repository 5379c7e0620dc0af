"""doctor's word on APPTAINER_MODE=join per node, and on ranks that outnumber the CPUs."""

from __future__ import annotations

from mpikit.doctor import judge


def probes(*places: tuple[str, str]) -> list[dict]:
    return [{"host": host, "mntns": mnt} for host, mnt in places]


def test_each_node_says_whether_it_can_join() -> None:
    out = ("rank 0 ...\napptainer-rank.sh: APPTAINER_MODE=join is not possible on node2: no nsenter (util-linux) "
           "on PATH; this node runs APPTAINER_MODE=sandbox\n")
    found = judge.join_modes(out, probes(("node1", "mnt:[1]"), ("node1", "mnt:[1]"), ("node2", "mnt:[2]"),
                                         ("node2", "mnt:[3]")))
    assert [f.level for f in found] == ["ok", "info"]
    assert found[0].text.startswith("node1: APPTAINER_MODE=join works")
    assert "node2: APPTAINER_MODE=join is not possible (no nsenter (util-linux) on PATH)" in found[1].text


def test_joining_is_judged_by_the_ranks_namespaces_not_by_silence() -> None:
    """A node is "join works" only where its ranks shared one mount namespace; two ranks in two without a
    word from the wrapper is a problem; a node with one rank proved nothing."""
    found = judge.join_modes("", probes(("node1", "mnt:[1]"), ("node1", "mnt:[1]"), ("node2", "mnt:[2]"),
                                        ("node2", "mnt:[3]"), ("node3", "mnt:[4]")))
    assert [(f.level, f.text.split(":")[0]) for f in found] == [("ok", "node1"), ("PROBLEM", "node2"),
                                                                ("info", "node3")]
    assert "2 ranks in 2 mount namespaces" in found[1].text and "make run-rank" in found[1].fix
    assert "only one rank" in found[2].text
    # A probe from before the namespace was reported: said so, not passed.
    assert judge.join_modes("", [{"host": "node1"}, {"host": "node1"}])[0].level == "info"


def test_busy_polling_is_named_where_ranks_outnumber_the_cpus() -> None:
    assert judge.busy_polling("srun", 8, 4, False).level == "warning"
    assert "OMPI_MCA_mpi_yield_when_idle=1" in judge.busy_polling("srun", 2, 4, True).fix
    assert judge.busy_polling("srun", 4, 4, False).level == "ok"
    assert "yield_when_idle=1" in judge.busy_polling("cluster", 4, 8, False).text
