"""The launch-line builder for every runtime: the exact argv users see printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpikit import apptainer, choose, cluster, docker, launch, runtimes, venv
from mpikit.config import EXAMPLES, ROOT

SIF = ROOT / "build" / "x.sif"


@pytest.fixture(autouse=True)
def no_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Launchers look at the host (docker client, apptainer, the venv): give them fixed answers."""
    monkeypatch.setattr(docker, "command", lambda: "docker")
    monkeypatch.setattr(venv, "VENV", Path("/venv"))
    monkeypatch.setattr(runtimes, "host_apptainer", lambda: "/usr/bin/apptainer")
    monkeypatch.setattr(apptainer, "supports_sharens", lambda command: True)
    monkeypatch.setattr(choose, "host_apptainer", lambda: "/usr/bin/apptainer")


def job(runtime: str, np: int = 3, **kw) -> runtimes.Job:
    return runtimes.Job(EXAMPLES["rank"].path, ["--x", "1"], np, runtime, "img:tag", ROOT, 60, SIF, **kw)


def test_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtimes.os, "geteuid", lambda: 0)
    run = runtimes.launch_for(job("native"))
    assert run.argv == ["mpiexec", "--oversubscribe", "-n", "3", "python", "-m", "mpi4py", "examples/rank.py",
                        "--x", "1"]
    assert run.env["PATH"].startswith("/venv/bin:") and run.env["OMPI_ALLOW_RUN_AS_ROOT"] == "1"
    # the + line: what the kit adds, pasteable (the venv's PATH keeps the user's "$PATH" for the shell)
    assert run.line().startswith("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ")
    assert 'PATH=/venv/bin:"$PATH" mpiexec --oversubscribe -n 3' in run.line()
    assert "OMPI_MCA_btl='^ofi,uct'" in run.line()


def test_a_printed_line_does_in_a_shell_what_the_kit_does(tmp_path: Path) -> None:
    """The + line, run by bash, gets the environment the kit gives the launcher."""
    added = {"A": "x y", "B": "^ofi,uct", "PATH": launch.with_users_path(str(tmp_path))}
    line = launch.show_env(added, ["sh", "-c", 'printf "%s|%s|%s" "$A" "$B" "$PATH"'])
    import subprocess
    out = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}).stdout
    assert out == f"x y|^ofi,uct|{tmp_path}:/usr/bin:/bin"
    assert launch.environment(added, {"PATH": "/usr/bin:/bin"})["PATH"] == f"{tmp_path}:/usr/bin:/bin"


def test_root_override_only_for_root() -> None:
    assert runtimes.root_fixes(1000) == {}
    assert set(runtimes.root_fixes(0)) == {"OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"}


def test_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtimes.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(runtimes.os, "getuid", lambda: 1000)
    monkeypatch.setattr(runtimes.os, "getgid", lambda: 100)
    monkeypatch.setattr(runtimes.os, "environ", {"OMPI_MCA_pml": "ucx"})  # the user's own choice wins
    run = runtimes.launch_for(job("docker"))
    name = run.argv[run.argv.index("--name") + 1]
    mca = [arg for var in runtimes.ONE_NODE_MCA if var != "OMPI_MCA_pml"
           for arg in ("-e", f"{var}={runtimes.ONE_NODE_MCA[var]}")]
    assert run.argv == ["docker", "run", "--rm", "--init", "--name", name, "--shm-size=1g", "--cap-add",
                        "SYS_PTRACE", "-v", f"{ROOT}:/work", "-w", "/work", "--user", "1000:100", "-e", "HOME=/tmp",
                        *mca, "img:tag", "mpiexec", "--oversubscribe", "-n", "3", "python", "-m", "mpi4py",
                        "examples/rank.py", "--x", "1"]
    assert run.cleanup == [["docker", "rm", "-f", name]]


def test_docker_as_root_keeps_the_images_user() -> None:
    assert runtimes.docker_user(0, 0, 0) == (None, ())


def test_apptainer_one_node() -> None:
    run = runtimes.launch_for(job("apptainer"))
    settings = [arg for k, v in runtimes.one_node_fixes({}, "linux").items() for arg in ("--env", f"{k}={v}")]
    roots = [arg for k, v in runtimes.root_fixes(runtimes.os.geteuid()).items() for arg in ("--env", f"{k}={v}")]
    assert run.argv == ["/usr/bin/apptainer", "exec", *roots, *settings, str(SIF), "mpiexec", "--oversubscribe",
                        "-n", "3", "python", "-m", "mpi4py", "examples/rank.py", "--x", "1"]
    assert run.added == {}  # everything is in the line itself


def test_srun_hybrid(monkeypatch: pytest.MonkeyPatch) -> None:
    run = runtimes.launch_for(job("srun", mpi="pmix_v5", apptainer_mode="sharens"))
    assert run.argv == ["srun", "--ntasks=3", "--mpi=pmix_v5", "/usr/bin/apptainer", "exec", "--sharens",
                        str(SIF), "python", "-m", "mpi4py", "examples/rank.py", "--x", "1"]
    default = runtimes.launch_for(job("srun")).argv  # the kit's default: join, by the wrapper
    assert default[3:7] == [str(ROOT / launch.WRAPPER), "join", str(SIF), "--"]
    monkeypatch.setattr(apptainer, "supports_sharens", lambda command: False)  # Apptainer before 1.3
    assert "--sharens" not in runtimes.launch_for(job("srun", apptainer_mode="sharens")).argv


def test_cluster_runs_srun_on_the_login_node() -> None:
    run = runtimes.launch_for(job("cluster", np=5))
    # the nodes share this machine's cores: Open MPI yields instead of busy-polling, always
    assert run.argv == ["docker", "exec", "-u", "hpcuser", "-w", "/shared", "-e", "OMPI_MCA_mpi_yield_when_idle=1",
                        cluster.CONTROLLER, "srun", "--nodes=2", "--ntasks=5", "--mpi=pmix",
                        "/shared/scripts/launch/apptainer-rank.sh", "join", "/shared/build/x.sif", "--", "python",
                        "-m", "mpi4py", "examples/rank.py", "--x", "1"]
    assert run.cleanup[0] == ["docker", "exec", cluster.CONTROLLER, "scancel", "-u", "hpcuser"]
    assert "--nodes=1" in runtimes.launch_for(job("cluster", np=1)).argv
    # more ranks than the nodes declare CPUs: srun --overcommit, which a real cluster's srun never gets on its own
    assert "--overcommit" in runtimes.launch_for(job("cluster", np=2 * cluster.cpus_per_node() + 1)).argv
    assert "--overcommit" not in run.argv
    login = runtimes.cluster_srun(job("cluster", np=4), None)  # make line: as typed on the login node
    assert login.line() == ("OMPI_MCA_mpi_yield_when_idle=1 srun --nodes=2 --ntasks=4 --mpi=pmix python -m mpi4py "
                            "examples/rank.py --x 1")


def test_srun_yields_only_where_the_allocation_is_oversubscribed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtimes.slurm_cpus("4(x2),2") == 10 and runtimes.slurm_cpus("") == 0
    assert runtimes.oversubscribed(11, {"SLURM_JOB_CPUS_PER_NODE": "4(x2),2"})
    assert not runtimes.oversubscribed(10, {"SLURM_JOB_CPUS_PER_NODE": "4(x2),2"})
    assert runtimes.oversubscribed(2, {"SLURM_JOB_CPUS_PER_NODE": "4", "SLURM_OVERCOMMIT": "1"})
    assert not runtimes.oversubscribed(64, {})  # outside an allocation nothing is known: nothing is added
    monkeypatch.setattr(runtimes.os, "environ", {"SLURM_JOB_CPUS_PER_NODE": "2"})
    assert runtimes.launch_for(job("srun", np=3)).added == runtimes.YIELD_MCA
    monkeypatch.setattr(runtimes.os, "environ", {"SLURM_JOB_CPUS_PER_NODE": "4"})
    assert runtimes.launch_for(job("srun", np=3)).added == {}


def test_bench_baselines_are_variants_of_the_same_line() -> None:
    bare = runtimes.cluster_line(job("cluster", np=2, nodes=2), None, python="python3")
    assert bare[bare.index("srun"):] == ["srun", "--nodes=2", "--ntasks=2", "--mpi=pmix", "python3", "-m",
                                         "mpi4py", "examples/rank.py", "--x", "1"]


def test_sbatch_and_apptainer_options() -> None:
    assert launch.sbatch("job.sbatch", ["a.py", "-v"], np=4, nodes=2, output="o-%j.out") == [
        "sbatch", "--wait", "--ntasks=4", "--nodes=2", "--output=o-%j.out", "--parsable", "job.sbatch", "a.py", "-v"]
    box = launch.Apptainer("i.sif", binds=("/opt/site:/opt/site:ro",), env=(("A", "1"),))
    sandbox = launch.Apptainer("i.sif", mode="sandbox", binds=("/a:/a:ro",), wrapper="/repo/w.sh")
    assert sandbox.run(["python"]) == ["/repo/w.sh", "sandbox", "i.sif", "--bind", "/a:/a:ro", "--", "python"]
    assert box.run(["true"]) == ["apptainer", "exec", "--bind", "/opt/site:/opt/site:ro", "--env", "A=1",
                                 "i.sif", "true"]


def test_user_lines_teach_the_kits_own_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = runtimes.user_lines("rank.py", 4, "mpi4py-kit:trixie", "run-rank")
    assert lines["make"] == "make run-rank NP=4"
    # the docker line is the kit's own as root (no --user), less its container name and with "$PWD"
    monkeypatch.setattr(runtimes.os, "geteuid", lambda: 0)
    monkeypatch.setattr(runtimes.os, "environ", {})
    kits = runtimes.launch_for(runtimes.Job(EXAMPLES["rank"].path, [], 4, "docker", "mpi4py-kit:trixie",
                                            ROOT)).argv
    name = kits.index("--name")
    kits = kits[:name] + kits[name + 2:]
    kits[kits.index(f"{ROOT}:/work")] = "$PWD:/work"
    assert lines["docker"] == launch.show(kits).replace("'$PWD:/work'", '"$PWD":/work')
    assert lines["srun"] == "srun --ntasks=4 --mpi=pmix apptainer exec mpi.sif python -m mpi4py examples/rank.py"


def test_timeout_message_names_the_ranks() -> None:
    assert runtimes.timeout_message(8, [0, 2], ["mpiexec", "-n", "3"]) == (
        "timed out after 8 s (TIMEOUT=8); ranks still running: 0, 2; stopped every rank: mpiexec -n 3")
    assert "no rank was still running (the launcher hung)" in runtimes.timeout_message(8, [], ["x"])
    assert runtimes.timeout_message(8, None, ["x"]) == "timed out after 8 s (TIMEOUT=8); stopped every rank: x"


def test_futures_runner_and_one_node_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    run = runtimes.launch_for(job("native", futures=True))
    assert run.argv[4:7] == ["python", "-m", "mpi4py.futures"]
    assert run.env["OMPI_MCA_btl_tcp_if_include"] == "lo" and run.env["OMPI_MCA_mtl"] == "^ofi"
    assert "OMPI_MCA_btl_tcp_if_include" not in runtimes.one_node_fixes({"OMPI_MCA_btl_tcp_if_include": "eth0"})
    assert "--env" in (a := runtimes.launch_for(job("apptainer")).argv) and "OMPI_MCA_btl_tcp_if_include=lo" in a
    cluster_line = runtimes.launch_for(job("cluster", futures=True)).argv
    assert cluster_line[-5:] == ["-m", "mpi4py.futures", "examples/rank.py", "--x", "1"]


@pytest.mark.parametrize("mode,head", [
    ("exec", ["apptainer", "exec", "/shared/build/x.sif"]),
    ("sharens", ["apptainer", "exec", "--sharens", "/shared/build/x.sif"]),
    ("sandbox", ["/shared/scripts/launch/apptainer-rank.sh", "sandbox", "/shared/build/x.sif", "--"]),
    ("join", ["/shared/scripts/launch/apptainer-rank.sh", "join", "/shared/build/x.sif", "--"]),
    ("instance", ["/shared/scripts/launch/apptainer-rank.sh", "instance", "/shared/build/x.sif", "--"]),
])
def test_each_apptainer_mode_on_the_cluster(mode: str, head: list[str]) -> None:
    run = runtimes.launch_for(job("cluster", np=4, apptainer_mode=mode))
    start = run.argv.index("--mpi=pmix") + 1
    assert run.argv[start:start + len(head)] == head
    assert run.argv[start + len(head):] == ["python", "-m", "mpi4py", "examples/rank.py", "--x", "1"]
    # Ctrl-C and TIMEOUT also stop instances, which live in their own session.
    assert any(c[-4:] == ["apptainer", "instance", "stop", "--all"] for c in run.cleanup)


def test_srun_modes_fall_back_without_sharens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apptainer, "supports_sharens", lambda command: False)  # Apptainer before 1.3
    run = runtimes.launch_for(job("srun", apptainer_mode="sandbox"))
    assert run.argv[run.argv.index("--mpi=pmix") + 1:][:3] == ["/usr/bin/apptainer", "exec", str(SIF)]
