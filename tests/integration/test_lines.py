"""What users copy and type, on the test cluster: hand-typed srun lines meet the image's launch guard,
the line make line prints and the script make sbatch prints run as the kit runs them, and
APPTAINER_MODE=join enters one holder per node and step, cleans up, and falls back where refused."""

from __future__ import annotations

import re
import time

import pytest
from conftest import assert_example, explain, in_cluster, kit, make, user_processes
from mpikit import cluster as cluster_module
from mpikit import docker

USER_SCRIPT = "tests/scripts/size_then_sleep.py"
NAMESPACES = "tests/scripts/namespaces.py"


# ---- the launch guard, inside the image ----

@pytest.mark.parametrize("mpi", ["none", "pmi2"])
def test_a_hand_typed_line_with_the_wrong_pmi_stops_at_once(mpi: str, cluster: str) -> None:
    """The design card's line with a PMI the image's Open MPI cannot use: every task would run the
    user's whole script alone; the guard stops each at once, naming the fix."""
    line = f"srun --mpi={mpi} -N2 -n4 apptainer exec {cluster} python {USER_SCRIPT}"
    start = time.monotonic()
    proc = in_cluster("bash", "-c", line, timeout=120)
    elapsed = time.monotonic() - start
    command = f"{line}   (typed on the cluster's login node)"
    assert proc.returncode != 0, explain(proc, command)
    assert elapsed < 10, f"took {elapsed:.1f} s" + explain(proc, command)
    said = [x for x in proc.stderr.splitlines() if "srun started 4 tasks, but MPI sees a world of 1 in each" in x]
    assert len(said) == 4 and all("srun --mpi=pmix" in x for x in said), explain(proc, command)
    assert " done" not in proc.stdout, "the script ran on" + explain(proc, command)


def test_the_guard_can_be_turned_off_and_leaves_right_lines_alone(cluster: str) -> None:
    off = f"srun --mpi=none -N2 -n2 apptainer exec --env MPI4PY_KIT_GUARD=0 {cluster} python {USER_SCRIPT} 0"
    proc = in_cluster("bash", "-c", off, timeout=120)
    assert proc.returncode == 0 and proc.stdout.count(" of 1 on ") == 2, explain(proc, off)
    right = f"srun --mpi=pmix -N2 -n4 apptainer exec {cluster} python {USER_SCRIPT} 0"
    proc = in_cluster("bash", "-c", right, timeout=120)
    assert proc.returncode == 0 and proc.stdout.count(" of 4 on ") == 4, explain(proc, right)
    assert "mpi4py-kit:" not in proc.stderr, explain(proc, right)


def test_no_false_alarm_for_serial_steps_subprocesses_and_singletons(cluster: str) -> None:
    """In a batch job of 4 tasks: a serial python in the batch script, a Python a rank starts, and
    a singleton with no launcher all import mpi4py.MPI and run."""
    script = "\n".join([
        "#!/bin/bash",
        "set -e",
        "cd /shared",
        f"apptainer exec {cluster} python -c 'from mpi4py import MPI; print(\"serial\", MPI.COMM_WORLD.Get_size())'",
        f"srun --mpi=pmix apptainer exec {cluster} python tests/scripts/starts_a_python.py",
    ])
    proc = in_cluster("bash", "-c", f"sbatch --wait -N2 -n4 -o /home/{cluster_module.USER}/guard-%j.out "
                                    f"--parsable <<'EOF'\n{script}\nEOF", timeout=180)
    command = "sbatch --wait -N2 -n4 of a script with a serial step and ranks that start a Python"
    assert proc.returncode == 0, explain(proc, command)
    out = in_cluster("bash", "-c", f"cat /home/{cluster_module.USER}/guard-{proc.stdout.strip()}.out").stdout
    assert out.count("serial 1") == 1 and out.count("child 1") == 4, out
    assert "mpi4py-kit:" not in out, out
    singleton = in_cluster("apptainer", "exec", cluster, "python", "-c",
                           "from mpi4py import MPI; print(MPI.COMM_WORLD.Get_size())", timeout=60)
    assert singleton.returncode == 0 and singleton.stdout.strip() == "1", explain(singleton, "a singleton")


def test_a_host_mpi_loaded_by_accident_is_named(cluster: str) -> None:
    """The site's Open MPI put first by hand, without the bind model: each rank warns once."""
    line = (f"srun --mpi=pmix -N2 -n2 apptainer exec --bind /opt/site/openmpi "
            f"--env LD_LIBRARY_PATH=/opt/site/openmpi/lib --env OPAL_PREFIX=/opt/site/openmpi "
            f"{cluster} python {USER_SCRIPT} 0")
    proc = in_cluster("bash", "-c", line, timeout=120)
    warned = [x for x in proc.stderr.splitlines() if "mpi4py loaded /opt/site/openmpi/lib/libmpi.so" in x]
    assert len(warned) == 2 and "HOST_MPI" in warned[0], explain(proc, line)


# ---- make line and make sbatch ----

def test_make_lines_line_runs_on_the_login_node(cluster: str) -> None:
    proc = make("line", "RUNTIME=cluster", "NP=4", f"SCRIPT={USER_SCRIPT}", "ARGS=0", f"SIF={cluster}", timeout=120)
    command = f"make line RUNTIME=cluster NP=4 SCRIPT={USER_SCRIPT} ARGS=0 SIF={cluster}"
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1, explain(proc, command)
    line = proc.stdout.strip()
    assert line.startswith("OMPI_MCA_mpi_yield_when_idle=1 srun --nodes=2 --ntasks=4 --mpi=pmix "), line
    ran = in_cluster("bash", "-c", line, timeout=120)
    assert ran.returncode == 0 and ran.stdout.count(" of 4 on ") == 4, explain(ran, f"{line}   (pasted)")
    assert {m for m in re.findall(r" on (node\d)", ran.stdout)} == {"node1", "node2"}, explain(ran, line)


def test_make_sbatchs_script_runs_with_sbatch_wait(cluster: str) -> None:
    proc = make("sbatch", "RUNTIME=cluster", "NP=4", "SCRIPT=examples/rank.py", f"SIF={cluster}", timeout=120)
    command = f"make sbatch RUNTIME=cluster NP=4 SCRIPT=examples/rank.py SIF={cluster}"
    assert proc.returncode == 0 and proc.stdout.startswith("#!/bin/bash\n"), explain(proc, command)
    assert "#SBATCH --ntasks=4" in proc.stdout, explain(proc, command)
    out = f"/home/{cluster_module.USER}/sbatch-%j.out"
    ran = in_cluster("bash", "-c", f"sbatch --wait --parsable -o {out} <<'EOF'\n{proc.stdout}EOF", timeout=300)
    assert ran.returncode == 0, explain(ran, f"{command} | sbatch --wait")
    text = in_cluster("cat", out.replace("%j", ran.stdout.strip())).stdout
    done = type(ran)(ran.args, 0, text, "")
    assert_example("rank", done, 4, f"{command} | sbatch --wait", hosts={"node1", "node2"})


# ---- APPTAINER_MODE=join ----

def test_join_runs_16_ranks_on_both_nodes_and_leaves_nothing(cluster: str) -> None:
    proc = kit("run", "rank", "--np", "16", "--runtime", "cluster", "--sif", cluster, "--apptainer-mode", "join",
               timeout=300)
    command = f"make run-rank RUNTIME=cluster NP=16 APPTAINER_MODE=join SIF={cluster}"
    assert_example("rank", proc, 16, command, hosts={"node1", "node2"})
    assert "srun --overcommit" in proc.stderr and "apptainer-rank.sh join " in proc.stderr, explain(proc, command)
    assert "not possible" not in proc.stderr, explain(proc, command)
    assert (left := user_processes()) == [], f"left on the nodes: {left}"


def test_join_puts_a_nodes_ranks_in_one_holder_per_step(cluster: str) -> None:
    """Two steps of one job at once: each node's ranks of a step share one mount namespace, the steps
    never share one, and each rank runs the image's Python with its environment, in its own folder."""
    line = make("line", "RUNTIME=cluster", "NP=4", f"SCRIPT={NAMESPACES}", "ARGS=3", f"SIF={cluster}",
                "APPTAINER_MODE=join", timeout=120).stdout.strip()
    assert " join " in line, line
    step = line.replace("srun ", "srun --overlap ", 1)  # steps that share the allocation run at once
    both = f"salloc -N2 -n4 bash -c '{step} & {step} & wait'"
    proc = in_cluster("bash", "-c", both, timeout=300)
    rows = re.findall(r"rank (\d+) of 4 step (\S+) host (\S+) mnt (\S+) python (\S+) cwd (\S+) nousersite (\S+) "
                      r"from ([\d.]+) to ([\d.]+)", proc.stdout)
    assert len(rows) == 8, explain(proc, both)
    # The two steps' ranks were alive at the same time (namespace numbers of finished steps are reused).
    assert max(float(r[7]) for r in rows) < min(float(r[8]) for r in rows), f"the steps did not overlap: {rows}"
    assert {r[4] for r in rows} == {"/opt/venv"} and {r[5] for r in rows} == {"/shared"}, rows
    assert {r[6] for r in rows} == {"1"}, rows  # the image's %environment (PYTHONNOUSERSITE) was applied
    by_place: dict[tuple[str, str], set[str]] = {}
    for _, step, host, mnt, *_ in rows:
        by_place.setdefault((step, host), set()).add(mnt)
    assert len({step for step, _ in by_place}) == 2, rows
    assert all(len(mnts) == 1 for mnts in by_place.values()), f"ranks of one node and step in several holders: {rows}"
    all_mnts = [next(iter(m)) for m in by_place.values()]
    assert len(set(all_mnts)) == len(all_mnts), f"two steps or nodes shared a holder: {by_place}"
    assert (left := user_processes()) == [], f"left on the nodes: {left}"


def on_node1(*command: str, timeout: int = 120):
    return docker.run("exec", "-u", cluster_module.USER, "-w", cluster_module.SHARED, cluster_module.COMPUTE[0],
                      *command, check=False, timeout=timeout)


def test_ranks_outlive_their_nodes_holder(cluster: str) -> None:
    """The holder is a rank like the others and may end first: the node's other ranks, in its namespaces,
    go on reading the image, and nothing is left afterwards."""
    wrapper = f"{cluster_module.SHARED}/scripts/launch/apptainer-rank.sh"
    line = (f"srun --nodes=2 --ntasks-per-node=3 {wrapper} join {cluster_module.SHARED}/{cluster} -- "
            "python tests/scripts/outlive_holder.py 3")
    proc = in_cluster("bash", "-c", line, timeout=120)
    command = f"{line}   (on the cluster's login node)"
    assert proc.returncode == 0, explain(proc, command)
    assert sorted(re.findall(r"^holder on (\S+) ends", proc.stdout, re.M)) == ["node1", "node2"], explain(
        proc, command)
    joined = re.findall(r"^joined task on (\S+) read the image after its holder ended: numpy \S+ from /opt/venv$",
                        proc.stdout, re.M)
    assert sorted(joined) == ["node1", "node1", "node2", "node2"], explain(proc, command)
    assert (left := user_processes()) == [], f"left on the nodes: {left}"


def test_join_never_enters_a_stale_or_foreign_holder(cluster: str) -> None:
    """A holder.pid naming root's PID 1 or another process of the user is not a verified holder: the
    rank starts its own, and runs in the image."""
    wrapper = f"{cluster_module.SHARED}/scripts/launch/apptainer-rank.sh"
    sif = f"{cluster_module.SHARED}/{cluster}"
    for foreign in ("1", "$other"):
        script = (f"sleep 60 >/dev/null 2>&1 & other=$!; base=/tmp/mpi4py-kit-$(id -u); "
                  f"mkdir -p -m 0700 $base/join-999.0; echo {foreign} > $base/join-999.0/holder.pid; "
                  f"SLURM_JOB_ID=999 SLURM_STEP_ID=0 {wrapper} join {sif} -- python -c "
                  "'import sys; print(\"in\", sys.prefix)'; kill $other")
        proc = on_node1("bash", "-c", script)
        assert proc.returncode == 0 and proc.stdout.strip() == "in /opt/venv", explain(proc, script)
    assert (left := user_processes()) == [], f"left on the nodes: {left}"


def test_a_node_that_cannot_join_says_so_and_runs_as_sandbox(cluster: str) -> None:
    """Without nsenter on PATH (a folder of links to every command but nsenter), and with an nsenter
    that is refused (as under setuid Apptainer), the job runs all the same, saying why once a node."""
    farm = "/tmp/no-nsenter"
    make_farm = (f"rm -rf {farm} && mkdir {farm} && for f in /usr/bin/* /bin/*; do ln -sf $f {farm}/; done && "
                 f"rm {farm}/nsenter")
    refused = "/tmp/refused-nsenter"
    make_refused = (f"rm -rf {refused} && mkdir {refused} && printf '#!/bin/sh\\necho \"nsenter: reassociate to "
                    f"namespace ns/user failed: Operation not permitted\" >&2\\nexit 1\\n' > {refused}/nsenter && "
                    f"chmod +x {refused}/nsenter")
    for node in cluster_module.COMPUTE:
        for setup in (make_farm, make_refused):
            assert docker.run("exec", "-u", cluster_module.USER, node, "sh", "-c", setup,
                              check=False).returncode == 0
    line = make("line", "RUNTIME=cluster", "NP=4", f"SCRIPT={USER_SCRIPT}", "ARGS=0", f"SIF={cluster}",
                "APPTAINER_MODE=join", timeout=120).stdout.strip()
    wrapper = f"{cluster_module.SHARED}/scripts/launch/apptainer-rank.sh"
    for path, why in ((f"{farm}:/usr/sbin:/sbin", "no nsenter (util-linux) on PATH"),
                      (f"{refused}:/usr/bin:/bin:/usr/sbin:/sbin", "nsenter cannot enter the holder's namespaces")):
        srun = line.replace(f" {wrapper} ", f" env PATH={path} {wrapper} ", 1)  # Slurm resets a task's PATH
        # Two ranks on each node: a node's only rank has nothing to join and runs as sandbox unasked.
        srun = srun.replace("srun ", "srun --ntasks-per-node=2 ", 1)
        proc = in_cluster("bash", "-c", srun, timeout=120)
        assert proc.returncode == 0 and proc.stdout.count(" of 4 on ") == 4, explain(proc, srun)
        said = [x for x in proc.stderr.splitlines() if "APPTAINER_MODE=join is not possible on node" in x]
        assert len(said) == 2 and all(why in x and "runs APPTAINER_MODE=sandbox" in x for x in said), explain(
            proc, srun)
    assert (left := user_processes()) == [], f"left on the nodes: {left}"
    for node in cluster_module.COMPUTE:
        docker.run("exec", "-u", cluster_module.USER, node, "rm", "-rf", farm, refused, check=False)


def test_join_works_with_futures_and_the_bind_model(cluster: str) -> None:
    proc = kit("run", "--script", "tests/scripts/my_pool.py", "--np", "4", "--futures", "1", "--runtime", "cluster",
               "--sif", cluster, "--apptainer-mode", "join", "--timeout", "120", timeout=180)
    command = (f"make run SCRIPT=tests/scripts/my_pool.py NP=4 FUTURES=1 RUNTIME=cluster APPTAINER_MODE=join "
               f"SIF={cluster}")
    assert proc.returncode == 0 and "pool hosts: node1 node2" in proc.stdout, explain(proc, command)
    proc = kit("run", "--script", "tests/scripts/which_mpi.py", "--np", "4", "--runtime", "cluster", "--sif",
               cluster, "--apptainer-mode", "join", "--host-mpi", "/opt/site/mpich", "--timeout", "120", timeout=300)
    command = (f"make run SCRIPT=tests/scripts/which_mpi.py NP=4 RUNTIME=cluster APPTAINER_MODE=join "
               f"HOST_MPI=/opt/site/mpich SIF={cluster}")
    assert proc.returncode == 0 and proc.stdout.count("MPICH") >= 4, explain(proc, command)
    assert "mpi4py-kit: warning" not in proc.stderr, explain(proc, command)
    assert (left := user_processes()) == [], f"left on the nodes: {left}"
