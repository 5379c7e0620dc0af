"""The multi-node path on a real Slurm cluster (containers): srun --mpi=pmix
starts NP ranks in the SIF across 2 nodes, and they form ONE communicator."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from conftest import (
    ROOT,
    assert_example,
    clean_env,
    explain,
    in_cluster,
    kit,
    leftovers,
    make,
    make_then,
    make_then_ctrl_c,
    user_processes,
)
from mpikit import cluster as cluster_module
from mpikit import docker
from mpikit.config import EXAMPLES
from mpikit.launch import MODES

SCATTER_SIZE = 999_983


@pytest.mark.parametrize("np", [2, 4, 5])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_across_two_nodes(name: str, np: int, cluster: str) -> None:
    args = f"--size {SCATTER_SIZE} --seed {np}" if name == "scatter" else ""
    proc = kit("run", name, "--np", str(np), "--runtime", "cluster", "--sif", cluster, "--args", args,
               timeout=300)
    command = f"make run-{name} NP={np} RUNTIME=cluster SIF={cluster}" + (f" ARGS='{args}'" if args else "")
    assert_example(name, proc, np, command, SCATTER_SIZE if name == "scatter" else None, hosts={"node1", "node2"})
    # The default APPTAINER_MODE=join: each rank enters the node's unpacked image through the kit's wrapper.
    assert "--mpi=pmix" in proc.stderr and "scripts/launch/apptainer-rank.sh join " in proc.stderr, \
        explain(proc, command)
    assert "not possible" not in proc.stderr, explain(proc, command)
    if name == "pool" and np >= 4:  # srun puts ranks 0, 1 on node1 and 2, 3 on node2: workers on both
        assert re.search(r"^worker rank \d+ on host node1 ", proc.stdout, re.M) and re.search(
            r"^worker rank \d+ on host node2 ", proc.stdout, re.M), explain(proc, command)


def test_batch_job_completes_with_the_expected_output(cluster: str) -> None:
    """make cluster-batch: sbatch --wait the shipped batch script, then read its output file."""
    proc = kit("batch", "--script", "examples/rank.py", "--np", "4", "--sif", cluster, timeout=300)
    command = f"make cluster-batch SCRIPT=examples/rank.py NP=4 SIF={cluster}"
    assert proc.returncode == 0, explain(proc, command)
    assert re.search(r"^job \d+: 4 ranks on node\[1-2\]", proc.stdout, re.M), explain(proc, command)
    assert_example("rank", proc, 4, command)


def test_auto_picks_srun_inside_an_allocation(cluster: str) -> None:
    """On the cluster, as a user would: salloc, then make; auto chooses srun + Apptainer."""
    proc = in_cluster("salloc", "--nodes=2", "--ntasks=4", "make", "--no-print-directory", "run-rank",
                      f"SIF={cluster}")
    command = f"salloc --nodes=2 --ntasks=4 make run-rank SIF={cluster}   (on the cluster)"
    assert "runtime: srun (auto: inside Slurm allocation" in proc.stderr, explain(proc, command)
    assert_example("rank", proc, 4, command, hosts={"node1", "node2"})


def test_apptainer_runtime_on_one_node(cluster: str) -> None:
    proc = in_cluster("make", "--no-print-directory", "run-bcast", "RUNTIME=apptainer", "NP=3", f"SIF={cluster}")
    command = f"make run-bcast RUNTIME=apptainer NP=3 SIF={cluster}   (on the cluster's login node)"
    assert "apptainer exec" in proc.stderr and "mpiexec" in proc.stderr, explain(proc, command)
    assert_example("bcast", proc, 3, command)


# ---- PMIx compatibility: an image whose PMIx differs from the cluster's ----

@pytest.mark.parametrize("name", ["rank", "scatter"])
def test_bookworm_image_pmix4_under_slurm_pmix5(name: str, cluster: str, sif_bookworm: str) -> None:
    """BASE=bookworm (Open MPI 4.1, PMIx 4.2) under Slurm 24.11 built with PMIx 5: one communicator."""
    args = f"--size {SCATTER_SIZE} --seed 4" if name == "scatter" else ""
    proc = kit("run", name, "--np", "4", "--runtime", "cluster", "--sif", sif_bookworm, "--args", args,
               timeout=300)
    command = f"make run-{name} NP=4 RUNTIME=cluster SIF={sif_bookworm}" + (f" ARGS='{args}'" if args else "")
    assert_example(name, proc, 4, command, SCATTER_SIZE if name == "scatter" else None, hosts={"node1", "node2"})


# ---- make doctor on the cluster ----

@pytest.mark.parametrize("image", ["trixie", "bookworm"])
def test_doctor_reports_the_fit(image: str, request, cluster: str) -> None:
    sif = cluster if image == "trixie" else request.getfixturevalue("sif_bookworm")
    proc = make("doctor", "RUNTIME=cluster", f"SIF={sif}", timeout=300)
    command = f"make doctor RUNTIME=cluster SIF={sif}"
    out = proc.stdout
    assert proc.returncode == 0, explain(proc, command)
    assert re.search(r"ok +slurm-wlm [\d.]+; srun --mpi=list: .*pmix.* \(pmix_v5\)", out), explain(proc, command)
    assert "2 ranks form one communicator (ranks [0, 1] of 2) on node1, node2" in out, explain(proc, command)
    pmix = {"trixie": "5.0.7", "bookworm": "4.2.2"}[image]
    assert re.search(rf"ok +Slurm PMIx \(pmix_v5\) and the image's PMIx {pmix}", out), explain(proc, command)
    # apptainer exec --sharens: ranks of a node share a user namespace, so CMA works between them.
    assert "CMA single-copy shared memory works between ranks on one host" in out, explain(proc, command)
    # Which mode each node can use, and the busy-polling the kit prevents on the test cluster.
    for node in ("node1", "node2"):
        assert f"ok       {node}: APPTAINER_MODE=join works" in out, explain(proc, command)
    assert "OMPI_MCA_mpi_yield_when_idle=1" in out, explain(proc, command)
    if image == "bookworm":
        assert "for an exact PMIx match with this Slurm build the image with BASE=trixie" in out, explain(
            proc, command)


def test_doctor_explains_rank_0_of_1(cluster: str) -> None:
    """srun without PMIx: every task starts its own world of 1; doctor names it and the fix."""
    proc = make("doctor", "RUNTIME=cluster", f"SIF={cluster}", "SRUN_MPI=none", timeout=300)
    command = f"make doctor RUNTIME=cluster SIF={cluster} SRUN_MPI=none"
    assert proc.returncode != 0, explain(proc, command)
    assert "PROBLEM  launcher/PMI mismatch: 2 tasks each say 'rank 0 of 1'" in proc.stdout, explain(proc, command)
    assert "fix: launch with srun --mpi=pmix" in proc.stdout, explain(proc, command)
    # The example says the same on its own.
    proc = kit("run", "rank", "--np", "2", "--runtime", "cluster", "--sif", cluster, "--srun-mpi", "none",
               timeout=120)
    assert proc.returncode != 0 and "MPI sees a world of 1" in proc.stderr, explain(
        proc, f"make run-rank NP=2 RUNTIME=cluster SIF={cluster} SRUN_MPI=none")


# ---- failures end cleanly in the cluster ----

def squeue(settle: float = 30) -> str:
    """Jobs left in the queue, once those completing (CG) have had `settle` s to finish."""
    deadline = time.monotonic() + settle
    while True:
        jobs = in_cluster("squeue", "-h", "-o", "%i %j %T", timeout=30).stdout.strip()
        if not jobs or time.monotonic() > deadline:
            return jobs
        time.sleep(1)


def instances_left() -> list[str]:
    """Apptainer instances the cluster's user still has on a compute node (APPTAINER_MODE=instance)."""
    found = []
    for node in cluster_module.COMPUTE:
        proc = docker.run("exec", "-u", cluster_module.USER, node, "apptainer", "instance", "list", check=False)
        assert proc.returncode == 0, f"apptainer instance list on {node} failed: {proc.stderr.strip()}"
        found += [f"{node}: {line}" for line in proc.stdout.splitlines()[1:] if line.strip()]
    return found


# Apptainer's FUSE mount of a SIF (exec, sharens) outlives a starter that srun killed when the cluster
# tracks a step's processes by group, as this one does (a cgroup would take it): Apptainer's, not the kit's;
# docs/failures.md says so. Every other process of the user must go.
SIF_MOUNT = "squashfuse_ll"


def nothing_left(script: str, mode: str) -> None:
    """No Slurm job, no rank, no Apptainer instance, no process of the user (a join holder or its
    watcher) and no join state remains of a run of `script` in APPTAINER_MODE `mode`."""
    assert (left := squeue()) == "", "a Slurm job remained: " + left
    assert (left := leftovers(script)) == [], f"ranks remained: {left}"
    assert (left := instances_left()) == [], f"Apptainer instances remained: {left}"
    left = user_processes(ignore=SIF_MOUNT if mode in ("exec", "sharens") else "")
    if mode in ("exec", "sharens"):
        for node in cluster_module.COMPUTE:  # what the next tests would find: gone, as a cgroup would do
            docker.run("exec", node, "pkill", "-u", cluster_module.USER, "-x", SIF_MOUNT, check=False)
    assert left == [], f"processes of {cluster_module.USER} remained: {left}"


# Failures end cleanly in every APPTAINER_MODE: what a mode starts besides the ranks (an instance
# per node) must go with them, whether a rank raises, TIMEOUT fires, the user presses Ctrl-C or
# the job is cancelled with scancel.
@pytest.mark.parametrize("mode", MODES)
def test_exception_in_one_rank_aborts_the_cluster_job(mode: str, cluster: str) -> None:
    start = time.monotonic()
    proc = kit("run", "--script", "tests/scripts/fail_on_rank1.py", "--np", "4", "--runtime", "cluster",
               "--sif", cluster, "--timeout", "120", "--apptainer-mode", mode, timeout=180)
    elapsed = time.monotonic() - start
    command = (f"make run SCRIPT=tests/scripts/fail_on_rank1.py NP=4 RUNTIME=cluster SIF={cluster} "
               f"APPTAINER_MODE={mode}")
    assert proc.returncode != 0, explain(proc, command)
    assert "ValueError: rank 1 failed on purpose" in proc.stderr, explain(proc, command)
    assert "timed out" not in proc.stderr and elapsed < 20, f"took {elapsed:.1f} s" + explain(proc, command)
    nothing_left("tests/scripts/fail_on_rank1.py", mode)


@pytest.mark.parametrize("mode", MODES)
def test_timeout_names_the_ranks_and_cancels_the_job(mode: str, cluster: str) -> None:
    proc = kit("run", "--script", "tests/scripts/hang.py", "--np", "4", "--runtime", "cluster",
               "--sif", cluster, "--timeout", "10", "--apptainer-mode", mode, timeout=120)
    command = (f"make run SCRIPT=tests/scripts/hang.py NP=4 RUNTIME=cluster SIF={cluster} TIMEOUT=10 "
               f"APPTAINER_MODE={mode}")
    assert proc.returncode == 1, explain(proc, command)
    assert "timed out after 10 s (TIMEOUT=10); ranks still running: 0, 1, 2, 3" in proc.stderr, explain(proc, command)
    nothing_left("tests/scripts/hang.py", mode)


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_cancels_the_slurm_job(mode: str, cluster: str) -> None:
    done = make_then_ctrl_c("run", "SCRIPT=tests/scripts/hang.py", "NP=4", "RUNTIME=cluster", f"SIF={cluster}",
                            f"APPTAINER_MODE={mode}", ranks=4)
    command = (f"make run SCRIPT=tests/scripts/hang.py NP=4 RUNTIME=cluster SIF={cluster} APPTAINER_MODE={mode}, "
               "then Ctrl-C")
    assert done.returncode != 0, explain(done, command)
    assert "interrupted: every rank and container this run started was stopped" in done.stderr, explain(
        done, command)
    nothing_left("tests/scripts/hang.py", mode)


@pytest.mark.parametrize("mode", MODES)
def test_scancel_ends_the_run(mode: str, cluster: str) -> None:
    """An administrator's (or the user's own) scancel while the ranks run: make ends non-zero, without
    a traceback, and the job's ranks and instances go with it (srun's SIGTERM, the Slurm epilog)."""
    done = make_then("run", "SCRIPT=tests/scripts/hang.py", "NP=4", "RUNTIME=cluster", f"SIF={cluster}",
                     f"APPTAINER_MODE={mode}", ranks=4, what="scancel",
                     interrupt=lambda proc: subprocess.run(cluster_module.cancel_all(), capture_output=True,
                                                           timeout=60))
    command = (f"make run SCRIPT=tests/scripts/hang.py NP=4 RUNTIME=cluster SIF={cluster} APPTAINER_MODE={mode}, "
               f"then scancel -u {cluster_module.USER}")
    assert done.returncode != 0 and "Traceback" not in done.stderr, explain(done, command)
    nothing_left("tests/scripts/hang.py", mode)


def test_a_node_lost_mid_job_fails_the_job_and_returns_to_service(cluster: str) -> None:
    """docker stop node2 while a 4-rank job runs on both nodes: the job must end non-zero within
    60 s; once node2 is started again Slurm returns it to service (ReturnToService=2) and the next
    job runs on both nodes."""
    command = f"make run SCRIPT=tests/scripts/steady.py NP=4 RUNTIME=cluster SIF={cluster}, then docker stop node2"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "kit"), "run",
                             "--script", "tests/scripts/steady.py", "--np", "4", "--runtime", "cluster",
                             "--sif", cluster, "--timeout", "300"],
                            cwd=ROOT, env=clean_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    node2 = f"{cluster_module.PREFIX}-node2"
    try:
        started: set[str] = set()
        assert proc.stdout is not None
        while len(started) < 4 and (line := proc.stdout.readline()):
            started.update(re.findall(r"^rank (\d+) started", line))
        assert started == {"0", "1", "2", "3"}, f"ranks did not start: {started}; {command}"
        lost = time.monotonic()
        subprocess.run([docker.command(), "stop", "-t", "2", node2], check=True, capture_output=True)
        out, err = proc.communicate(timeout=120)
        elapsed = time.monotonic() - lost
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        assert proc.returncode != 0, explain(done, command)
        assert elapsed < 60, f"the job took {elapsed:.0f} s to fail after node2 stopped" + explain(done, command)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([docker.command(), "start", node2], capture_output=True)
    cluster_module.wait_ready(180)
    again = kit("run", "rank", "--np", "4", "--runtime", "cluster", "--sif", cluster, timeout=300)
    assert_example("rank", again, 4, f"make run-rank NP=4 RUNTIME=cluster SIF={cluster} (after node2 returned)",
                   hosts={"node1", "node2"})


# ---- security of the test cluster ----

def test_no_host_port_and_an_internal_network(cluster: str) -> None:
    client = docker.command()
    for name in cluster_module.NODES:
        ports = subprocess.run([client, "port", name], capture_output=True, text=True).stdout.strip()
        assert ports == "", f"{name} publishes ports on the host: {ports}"
        bindings = subprocess.run([client, "inspect", "--format", "{{json .HostConfig.PortBindings}}", name],
                                  capture_output=True, text=True).stdout.strip()
        assert bindings in ("{}", "null"), f"{name} has port bindings {bindings}"
    internal = subprocess.run([client, "network", "inspect", "--format", "{{.Internal}}", cluster_module.NETWORK],
                              capture_output=True, text=True).stdout.strip()
    assert internal == "true", f"{cluster_module.NETWORK} is not --internal"


def test_munge_key_is_per_cluster_and_never_in_the_repository_or_image(cluster: str) -> None:
    client = docker.command()
    key = subprocess.run([client, "exec", cluster_module.CONTROLLER, "stat", "-c", "%U %a %s",
                          "/etc/munge/munge.key"], capture_output=True, text=True).stdout.split()
    assert key == ["munge", "400", "1024"], f"munge key owner/mode/size: {key}"
    image = cluster_module.node_image(cluster_module.current() or cluster_module.DEFAULT_CLUSTER)
    baked = subprocess.run([client, "run", "--rm", "--entrypoint", "sh", image, "-c",
                            "ls /etc/munge/munge.key /run/munge-key 2>/dev/null"], capture_output=True, text=True)
    assert baked.stdout.strip() == "", f"a munge key is baked into the node image: {baked.stdout}"
    tracked = subprocess.run(["git", "ls-files", "--others", "--cached"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert not [f for f in tracked if "munge" in f and f.endswith(".key")], "a munge key is in the repository"


def test_apptainer_runs_unprivileged_without_setuid(cluster: str) -> None:
    proc = in_cluster("apptainer", "exec", cluster, "id", "-u")
    assert proc.returncode == 0 and proc.stdout.strip() == "1000", explain(proc, f"apptainer exec {cluster} id -u")
    suid = subprocess.run([docker.command(), "exec", f"{cluster_module.PREFIX}-node1", "sh", "-c",
                           "find / -xdev -perm -4000 -path '*apptainer*' 2>/dev/null"],
                          capture_output=True, text=True).stdout.strip()
    assert suid == "", f"setuid Apptainer starter installed: {suid}"


@pytest.mark.parametrize("runtime", ["apptainer", "srun"])
def test_exception_aborts_under_the_apptainer_and_srun_runtimes(runtime: str, cluster: str) -> None:
    """On the login node as a user: RUNTIME=apptainer (mpiexec in the SIF) and, in an allocation,
    RUNTIME=srun; a rank that raises ends the job with its traceback and no Slurm job is left."""
    make_line = ["make", "--no-print-directory", "run", "SCRIPT=tests/scripts/fail_on_rank1.py", "NP=3",
                 f"RUNTIME={runtime}", f"SIF={cluster}", "TIMEOUT=120"]
    argv = make_line if runtime == "apptainer" else ["salloc", "--nodes=2", "--ntasks=3", *make_line]
    start = time.monotonic()
    proc = in_cluster(*argv, timeout=240)
    elapsed = time.monotonic() - start
    command = " ".join(argv) + "   (on the cluster's login node)"
    assert proc.returncode != 0, explain(proc, command)
    assert "ValueError: rank 1 failed on purpose" in proc.stderr, explain(proc, command)
    assert "timed out" not in proc.stderr and elapsed < 30, f"took {elapsed:.0f} s" + explain(proc, command)
    assert (left := squeue()) == "", "a Slurm job remained: " + left
    assert (left := leftovers("tests/scripts/fail_on_rank1.py")) == [], f"ranks remained: {left}"


@pytest.mark.parametrize("runtime", ["apptainer", "srun"])
def test_timeout_under_the_apptainer_and_srun_runtimes(runtime: str, cluster: str) -> None:
    """TIMEOUT stops a hang under RUNTIME=apptainer (naming the ranks, found in /proc) and RUNTIME=srun
    inside an allocation; no rank or Slurm job step is left running."""
    make_line = ["make", "--no-print-directory", "run", "SCRIPT=tests/scripts/hang.py", "NP=3",
                 f"RUNTIME={runtime}", f"SIF={cluster}", "TIMEOUT=10"]
    argv = make_line if runtime == "apptainer" else ["salloc", "--nodes=2", "--ntasks=3", *make_line]
    proc = in_cluster(*argv, timeout=240)
    command = " ".join(argv) + "   (on the cluster's login node)"
    assert proc.returncode != 0, explain(proc, command)
    stopped = "ranks still running: 0, 1, 2; stopped every rank" if runtime == "apptainer" else "stopped every rank"
    assert "error: timed out after 10 s (TIMEOUT=10); " in proc.stderr and stopped in proc.stderr, explain(
        proc, command)
    assert (left := squeue()) == "", "a Slurm job remained: " + left
    assert (left := leftovers("tests/scripts/hang.py")) == [], f"ranks remained: {left}"


@pytest.mark.last(1)
def test_cluster_down_removes_everything(cluster: str) -> None:
    """make cluster-down removes every container, the network and the volumes; afterwards the cluster
    runtime says how to start it instead of failing obscurely."""
    proc = make("cluster-down", timeout=300)
    assert proc.returncode == 0, explain(proc, "make cluster-down")
    left = docker.run("ps", "-a", "--filter", f"name=^{cluster_module.PREFIX}-", "--format", "{{.Names}}").stdout
    assert left.strip() == "", f"containers left: {left}"
    volumes = docker.run("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert not {cluster_module.KEY_VOLUME, cluster_module.HOME_VOLUME} & set(volumes), volumes
    proc = make("run-rank", "RUNTIME=cluster", timeout=60)
    assert proc.returncode != 0 and "make cluster-up" in proc.stderr, explain(proc, "make run-rank RUNTIME=cluster")


# ---- pools, dynamic processes and threads under srun ----

def test_a_users_pool_with_futures_spans_both_nodes(cluster: str) -> None:
    command = f"make run SCRIPT=tests/scripts/my_pool.py NP=4 FUTURES=1 RUNTIME=cluster SIF={cluster}"
    proc = kit("run", "--script", "tests/scripts/my_pool.py", "--np", "4", "--futures", "1", "--runtime", "cluster",
               "--sif", cluster, "--timeout", "120", timeout=180)
    assert proc.returncode == 0, explain(proc, command)
    assert "pool results: [0, 1, 4, 9, 16, 25, 36, 49]" in proc.stdout, explain(proc, command)
    assert "pool hosts: node1 node2" in proc.stdout, explain(proc, command)


def test_a_spawning_pool_under_srun_fails_fast_and_says_why(cluster: str) -> None:
    """Slurm's PMIx server cannot spawn: the pool's manager thread fails, and the job ends in seconds."""
    command = f"make run SCRIPT=tests/scripts/my_pool.py NP=1 RUNTIME=cluster SIF={cluster}"
    start = time.monotonic()
    proc = kit("run", "--script", "tests/scripts/my_pool.py", "--np", "1", "--runtime", "cluster",
               "--sif", cluster, "--timeout", "120", timeout=180)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0 and "timed out" not in proc.stderr, explain(proc, command)
    assert "Spawn" in proc.stderr and "FUTURES=1" in proc.stderr and "RUNTIME=apptainer" in proc.stderr, explain(
        proc, command)
    assert elapsed < 30, f"took {elapsed:.0f} s" + explain(proc, command)
    assert (left := squeue()) == "", "a Slurm job remained: " + left


@pytest.mark.parametrize("runtime", ["cluster", "apptainer", "srun"])
def test_exception_in_another_thread_aborts_on_the_cluster(runtime: str, cluster: str) -> None:
    script = "tests/scripts/thread_fails.py"
    if runtime == "cluster":
        argv = [sys.executable, str(ROOT / "scripts" / "kit"), "run", "--script", script, "--np", "4",
                "--runtime", "cluster", "--sif", cluster, "--timeout", "120"]

        def run() -> subprocess.CompletedProcess:
            return subprocess.run(argv, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=180)
    else:
        make_line = ["make", "--no-print-directory", "run", f"SCRIPT={script}", "NP=3", f"RUNTIME={runtime}",
                     f"SIF={cluster}", "TIMEOUT=120"]
        argv = make_line if runtime == "apptainer" else ["salloc", "--nodes=2", "--ntasks=3", *make_line]

        def run() -> subprocess.CompletedProcess:
            return in_cluster(*argv, timeout=180)
    start = time.monotonic()
    proc = run()
    elapsed = time.monotonic() - start
    command = " ".join(argv)
    assert proc.returncode != 0 and "timed out" not in proc.stderr, explain(proc, command)
    assert "RuntimeError: worker thread of rank 1 failed on purpose" in proc.stderr, explain(proc, command)
    assert elapsed < 30, f"took {elapsed:.0f} s" + explain(proc, command)
    assert (left := squeue()) == "", "a Slurm job remained: " + left
    assert (left := leftovers(script)) == [], f"ranks remained: {left}"


@pytest.mark.parametrize("futures", ["0", "1"])
def test_pools_under_the_apptainer_runtime_on_one_node(futures: str, cluster: str) -> None:
    """On the login node, mpiexec inside the SIF: a pool spawns its workers (NP=1) or uses the ranks."""
    np = "1" if futures == "0" else "3"
    argv = ["make", "--no-print-directory", "run", "SCRIPT=tests/scripts/my_pool.py", f"NP={np}",
            f"FUTURES={futures}", "RUNTIME=apptainer", f"SIF={cluster}", "TIMEOUT=120"]
    proc = in_cluster(*argv, timeout=180)
    assert proc.returncode == 0 and "pool results: [0, 1, 4, 9, 16, 25, 36, 49]" in proc.stdout, explain(
        proc, " ".join(argv) + "   (on the cluster's login node)")


def test_doctor_says_srun_cannot_spawn(cluster: str) -> None:
    proc = make("doctor", "RUNTIME=cluster", f"SIF={cluster}", timeout=300)
    command = f"make doctor RUNTIME=cluster SIF={cluster}"
    assert re.search(r"info +dynamic processes do not work under srun: MPI_Comm_spawn failed", proc.stdout), explain(
        proc, command)
