"""doctor's word on APPTAINER_MODE=join per node, and on ranks that outnumber the CPUs."""

from __future__ import annotations

from mpikit.doctor import judge


def test_each_node_says_whether_it_can_join() -> None:
    out = ("rank 0 ...\napptainer-rank.sh: APPTAINER_MODE=join is not possible on node2: no nsenter (util-linux) "
           "on PATH; this node runs APPTAINER_MODE=sandbox\n")
    found = judge.join_modes(out, ["node1", "node2"])
    assert [f.level for f in found] == ["ok", "info"]
    assert found[0].text.startswith("node1: APPTAINER_MODE=join works")
    assert "node2: APPTAINER_MODE=join is not possible (no nsenter (util-linux) on PATH)" in found[1].text
    assert all(f.level == "ok" for f in judge.join_modes("", ["node1", "node2"]))


def test_busy_polling_is_named_where_ranks_outnumber_the_cpus() -> None:
    assert judge.busy_polling("srun", 8, 4, False).level == "warning"
    assert "OMPI_MCA_mpi_yield_when_idle=1" in judge.busy_polling("srun", 2, 4, True).fix
    assert judge.busy_polling("srun", 4, 4, False).level == "ok"
    assert "yield_when_idle=1" in judge.busy_polling("cluster", 4, 8, False).text
