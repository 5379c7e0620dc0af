"""The bind model on the test cluster: the same SIF, with a site's own MPI
loaded instead of the image's. The nodes carry three site MPIs (scripts/cluster/
Dockerfile): /opt/site/mpich (MPICH 5: the MPI-5 standard ABI, libmpi_abi.so.1,
beside the MPICH ABI; PMI-2 only, its libfabric installed for the whole node,
linked against Slurm's libpmi2), /opt/site/impi (Intel MPI 2021.18: the standard
ABI beside the MPICH ABI; it opens Slurm's libpmi2 and its own libfabric with
dlopen) and /opt/site/openmpi (Open MPI 5.0.11, not the image's 5.0.7; Open MPI
ABI only). HOST_MPI_ABI=auto takes the standard ABI where there is one: one
mpi4py extension, byte for byte, runs on both vendors'; HOST_MPI_ABI=legacy
keeps the MPICH ABI tested."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, assert_example, explain, kit, make
from mpikit import bind
from mpikit.checks import mpi_library
from mpikit.config import EXAMPLES, python_pins

# Intel MPI's version as requirements/site.txt pins it (impi-rt==2021.18.1): its ranks must report it.
IMPI = python_pins("site.txt")["impi-rt"]
MPICH = python_pins("site.txt")["mpich"]
SITES = {"/opt/site/mpich": ("MPICH Version:", "pmi2"), "/opt/site/openmpi": ("Open MPI v5.0.11", "pmix"),
         "/opt/site/impi": (f"Intel(R) MPI Library {IMPI} ", "pmi2")}
# (site, HOST_MPI_ABI) -> the library the kit must load: the standard ABI's where the site has it (auto), and
# the MPICH ABI's when the legacy family is forced (the path Cray-like sites, without the standard ABI, take).
RUNS = {("/opt/site/mpich", "auto"): "libmpi_abi.so.1", ("/opt/site/impi", "auto"): "libmpi_abi.so.1",
        ("/opt/site/openmpi", "auto"): "libmpi.so.40", ("/opt/site/mpich", "legacy"): "libmpi.so.12"}
SCATTER_SIZE = 999_983


def run(name: str, np: int, site: str, sif: str, *extra: str) -> subprocess.CompletedProcess:
    args = f"--size {SCATTER_SIZE} --seed {np}" if name == "scatter" else ""
    return kit("run", name, "--np", str(np), "--runtime", "cluster", "--sif", sif, "--host-mpi", site,
               "--args", args, "--timeout", "240", *extra, timeout=300)


@pytest.mark.parametrize("np", [2, 4, 5])
@pytest.mark.parametrize("site,abi", list(RUNS))
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_example_on_each_site_mpi(name: str, site: str, abi: str, np: int, cluster: str) -> None:
    proc = run(name, np, site, cluster, "--host-mpi-abi", abi)
    command = f"make run-{name} NP={np} RUNTIME=cluster HOST_MPI={site} HOST_MPI_ABI={abi} SIF={cluster}"
    assert_example(name, proc, np, command, SCATTER_SIZE if name == "scatter" else None, hosts={"node1", "node2"})
    version, plugin = SITES[site]
    assert f"bind model: the site's MPI {site}/lib/{RUNS[site, abi]}" in proc.stderr, explain(proc, command)
    standard = RUNS[site, abi] == bind.STANDARD
    assert ("; MPI-5 standard ABI 1." if standard else "; legacy ") in proc.stderr, explain(proc, command)
    assert f"--mpi={plugin}" in proc.stderr and f"--bind {site}:{site}:ro" in proc.stderr, explain(proc, command)
    if name == "rank":  # every rank reports the library it runs on
        assert (mpi_library(proc.stdout) or "").startswith(version), explain(proc, command)


def which_mpi(site: str, sif: str, abi: str = "auto") -> list[tuple[str, str, str, str, str, str]]:
    """make run SCRIPT=tests/scripts/which_mpi.py NP=4: per rank (rank, node, libmpi file, library, the mpi4py
    extension's file name and SHA-256); 4 ranks, both nodes."""
    proc = kit("run", "--script", "tests/scripts/which_mpi.py", "--np", "4", "--runtime", "cluster", "--sif", sif,
               "--host-mpi", site, "--host-mpi-abi", abi, "--timeout", "120", timeout=240)
    command = (f"make run SCRIPT=tests/scripts/which_mpi.py NP=4 RUNTIME=cluster HOST_MPI={site} HOST_MPI_ABI={abi} "
               f"SIF={sif}")
    assert proc.returncode == 0, explain(proc, command)
    lines = re.findall(r"^rank (\d) of 4 on (node\d): (\S+): (.*) \[(\S+) sha256=(\w+)\]$", proc.stdout, re.M)
    assert sorted(int(r) for r, *_ in lines) == [0, 1, 2, 3], explain(proc, command)
    assert {line[1] for line in lines} == {"node1", "node2"}, explain(proc, command)
    for _, _, path, library, _, _ in lines:
        assert path.startswith(site + "/") and library.startswith(SITES[site][0]), explain(proc, command)
    return lines


@pytest.mark.parametrize("site,abi", list(RUNS))
def test_a_users_own_script_runs_on_the_site_library(site: str, abi: str, cluster: str) -> None:
    for _, _, path, _, extension, _ in which_mpi(site, cluster, abi):
        assert f"/{RUNS[site, abi]}" in path, path
        want = {"libmpi_abi.so.1": "MPI.mpiabi.", "libmpi.so.12": "MPI.mpich.", "libmpi.so.40": "MPI.cpython-"}
        assert extension.startswith(want[RUNS[site, abi]]), extension


def test_one_mpi4py_extension_byte_for_byte_runs_on_two_vendors_standard_abi(cluster: str) -> None:
    """The issue's proof: MPICH 5.0.2 and Intel MPI 2021.18.1, each through its libmpi_abi.so.1, run the same
    MPI.mpiabi extension file (the same SHA-256 on every rank of both runs)."""
    mpich, impi = which_mpi("/opt/site/mpich", cluster), which_mpi("/opt/site/impi", cluster)
    assert all(re.match(rf"MPICH Version:\s*{re.escape(MPICH)}\b", line[3]) for line in mpich), mpich
    assert all(line[3].startswith(f"Intel(R) MPI Library {IMPI} ") for line in impi), impi
    extensions = {(line[4], line[5]) for line in mpich + impi}
    assert len(extensions) == 1 and next(iter(extensions))[0].startswith("MPI.mpiabi."), extensions


def test_bind_plan_says_what_and_why(cluster: str) -> None:
    proc = make("bind-plan", "RUNTIME=cluster", "HOST_MPI=/opt/site/mpich", "HOST_MPI_ABI=legacy", f"SIF={cluster}",
                timeout=180)
    command = f"make bind-plan RUNTIME=cluster HOST_MPI=/opt/site/mpich HOST_MPI_ABI=legacy SIF={cluster}"
    assert proc.returncode == 0, explain(proc, command)
    out = proc.stdout
    assert "site MPI: /opt/site/mpich/lib/libmpi.so.12 (MPICH ABI" in out, explain(proc, command)
    assert re.search(r"^abi    mpich  \(HOST_MPI_ABI=legacy\)$", out, re.M), explain(proc, command)
    assert re.search(r"^bind   /opt/site/mpich  \(the site MPI", out, re.M), explain(proc, command)
    # Slurm's libpmi2, which the image lacks, and the node's libfabric, the site's fabric library.
    assert re.search(rf"^bind   \S+/libpmi2\.so\.0 -> {bind.HOST_LIB}/libpmi2\.so\.0  \(the site's fabric or process-"
                     r"management library, which the site MPI was built against; not in the image\)", out, re.M), \
        explain(proc, command)
    fabric = rf"^bind   /opt/site/fabric/lib/libfabric\.so\.1 -> {bind.HOST_LIB}/libfabric\.so\.1  \(.*the image's copy"
    assert re.search(fabric, out, re.M), explain(proc, command)
    assert re.search(r"^image  libc\.so\.6  \(the C library", out, re.M), explain(proc, command)
    assert "srun   --mpi=pmi2  (an MPICH without a PMIx client" in out, explain(proc, command)
    assert re.search(r"^loads  /opt/site/mpich/lib/libmpi\.so\.12: MPICH Version:.*; legacy MPICH ABI", out, re.M), \
        explain(proc, command)


@pytest.mark.parametrize("site,vendor", [("/opt/site/impi", "Intel\\(R\\) MPI Library"), ("/opt/site/mpich", "MPICH")])
def test_bind_plan_names_the_standard_abi_and_its_version(site: str, vendor: str, cluster: str) -> None:
    proc = make("bind-plan", "RUNTIME=cluster", f"HOST_MPI={site}", f"SIF={cluster}", timeout=180)
    command = f"make bind-plan RUNTIME=cluster HOST_MPI={site} SIF={cluster}"
    out = proc.stdout
    assert proc.returncode == 0, explain(proc, command)
    assert re.search(rf"^site MPI: {site}/lib/libmpi_abi\.so\.1 \(MPI-5 standard ABI .*, version 1\.\d+", out, re.M), \
        explain(proc, command)
    assert re.search(r"^abi    standard  \(auto: the standard ABI is preferred over the legacy libmpi\.so\.12", out,
                     re.M), explain(proc, command)
    assert re.search(r"^env    MPI4PY_MPIABI=mpiabi  \(", out, re.M), explain(proc, command)
    assert re.search(rf"^env    MPI4PY_LIBMPI={site}/lib/libmpi_abi\.so\.1  \(", out, re.M), explain(proc, command)
    assert re.search(rf"^loads  {site}/lib/libmpi_abi\.so\S*: {vendor}.*; MPI-5 standard ABI 1\.\d+  \(", out, re.M), \
        explain(proc, command)


@pytest.fixture
def bad_prefixes():
    """Prefixes under the repository, which the nodes see at /shared: one with no libmpi, one with
    the libmpi.so.20 of an old Open MPI (an ABI the image's mpi4py cannot load)."""
    folder = ROOT / "tests" / "_bad_mpi"
    (folder / "empty" / "lib").mkdir(parents=True, exist_ok=True)
    (folder / "old" / "lib").mkdir(parents=True, exist_ok=True)
    (folder / "old" / "lib" / "libmpi.so.20").write_bytes(b"")
    # Not MPI at all: zlib under the standard ABI's name (the nodes and the image both have it, so it loads).
    (folder / "notmpi" / "lib").mkdir(parents=True, exist_ok=True)
    zlib = next(p for p in (Path("/lib/x86_64-linux-gnu/libz.so.1"), Path("/usr/lib/x86_64-linux-gnu/libz.so.1"))
                if p.exists())
    shutil.copyfile(zlib, folder / "notmpi" / "lib" / "libmpi_abi.so.1")
    yield "/shared/tests/_bad_mpi"
    shutil.rmtree(folder)


@pytest.mark.parametrize("prefix,words", [
    ("/opt/site/nosuch", "HOST_MPI=/opt/site/nosuch is not a folder on node1 of the test cluster"),
    ("{bad}/empty", "has no lib/libmpi_abi.so.1, lib/libmpi.so.40 or lib/libmpi.so.12"),
    ("{bad}/old", "has libmpi.so.20, an ABI the image's mpi4py cannot load"),
    ("{bad}/notmpi", "/lib/libmpi_abi.so.1 is not an MPI library ("),
])
def test_a_bad_host_mpi_is_one_line_and_nothing_launched(prefix: str, words: str, cluster: str,
                                                         bad_prefixes: str) -> None:
    prefix = prefix.format(bad=bad_prefixes)
    proc = kit("run", "rank", "--np", "2", "--runtime", "cluster", "--sif", cluster, "--host-mpi", prefix, timeout=120)
    command = f"make run-rank NP=2 RUNTIME=cluster HOST_MPI={prefix} SIF={cluster}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and words in errors[0], explain(proc, command)
    assert "+ " not in proc.stderr and "Traceback" not in proc.stderr, "something was launched" + explain(proc, command)


def test_an_open_mpi_of_another_major_is_refused(cluster: str, sif_bookworm: str) -> None:
    """The bookworm image's mpi4py is built against Open MPI 4; the site's Open MPI is 5."""
    proc = kit("run", "rank", "--np", "2", "--runtime", "cluster", "--sif", sif_bookworm,
               "--host-mpi", "/opt/site/openmpi", timeout=120)
    command = f"make run-rank NP=2 RUNTIME=cluster HOST_MPI=/opt/site/openmpi SIF={sif_bookworm}"
    assert proc.returncode == 2 and "the site's Open MPI 5 cannot run the image's mpi4py, built against Open MPI 4" \
        in proc.stderr, explain(proc, command)


def test_mpich_with_pmi2_given_runs_every_example(cluster: str) -> None:
    """A site whose Slurm offers only pmi2 (SRUN_MPI=pmi2): the site's MPICH runs there."""
    for name in EXAMPLES:
        proc = run(name, 4, "/opt/site/mpich", cluster, "--srun-mpi", "pmi2")
        command = f"make run-{name} NP=4 RUNTIME=cluster HOST_MPI=/opt/site/mpich SRUN_MPI=pmi2 SIF={cluster}"
        assert_example(name, proc, 4, command, SCATTER_SIZE if name == "scatter" else None, hosts={"node1", "node2"})
        assert "--mpi=pmi2" in proc.stderr, explain(proc, command)


def test_bind_plan_names_what_intel_mpi_opens_with_dlopen(cluster: str) -> None:
    """ldd shows Intel MPI needing only the C library: the plan must find Slurm's libpmi2 on the node,
    bind it and name it in I_MPI_PMI_LIBRARY, or every rank fails in MPI_Init."""
    proc = make("bind-plan", "RUNTIME=cluster", "HOST_MPI=/opt/site/impi", f"SIF={cluster}", timeout=180)
    command = f"make bind-plan RUNTIME=cluster HOST_MPI=/opt/site/impi SIF={cluster}"
    out = proc.stdout
    assert proc.returncode == 0, explain(proc, command)
    assert "site MPI: /opt/site/impi/lib/libmpi_abi.so.1 (MPI-5 standard ABI" in out and ", Intel MPI)" in out, \
        explain(proc, command)
    assert re.search(rf"^bind   \S+/libpmi2\.so\.0 -> {bind.HOST_LIB}/libpmi2\.so\.0  \(Slurm's PMI-2 .*dlopen",
                     out, re.M), explain(proc, command)
    assert re.search(rf"^env    I_MPI_PMI_LIBRARY={bind.HOST_LIB}/libpmi2\.so\.0  \(", out, re.M), \
        explain(proc, command)
    assert re.search(r"^srun   --mpi=pmi2  \(Intel MPI", out, re.M), explain(proc, command)
    assert re.search(rf"^loads  /opt/site/impi/lib/libmpi_abi\.so\S*: Intel\(R\) MPI Library {re.escape(IMPI)} ",
                     out, re.M), explain(proc, command)


def test_doctor_with_pmi2_names_the_bind_model(cluster: str) -> None:
    proc = make("doctor", "RUNTIME=cluster", f"SIF={cluster}", "SRUN_MPI=pmi2", timeout=300)
    command = f"make doctor RUNTIME=cluster SIF={cluster} SRUN_MPI=pmi2"
    assert proc.returncode == 2, explain(proc, command)  # doctor's 1, as make reports a failed recipe
    assert "PROBLEM  SRUN_MPI=pmi2: the image's Open MPI" in proc.stdout, explain(proc, command)
    assert "HOST_MPI=<prefix of the site's MPICH-ABI MPI>" in proc.stdout, explain(proc, command)


@pytest.mark.parametrize("site", list(SITES))
def test_doctor_checks_the_bind_model(site: str, cluster: str) -> None:
    proc = make("doctor", "RUNTIME=cluster", f"SIF={cluster}", f"HOST_MPI={site}", timeout=300)
    command = f"make doctor RUNTIME=cluster SIF={cluster} HOST_MPI={site}"
    out = proc.stdout
    version, plugin = SITES[site]
    assert proc.returncode == 0, explain(proc, command)
    assert re.search(rf"ok +HOST_MPI={site}: {site}/lib/libmpi(_abi)?\.so\.[.\d]+ loads inside the image with the "
                     rf"planned binds: {re.escape(version)}", out), explain(proc, command)
    assert re.search(rf"ok +srun --mpi={plugin}: .*this Slurm offers it", out), explain(proc, command)
    # Per rank: the library, its ABI (the standard's with its version where the site has it) and mpi4py's variant.
    abi, variant = ((r"MPI-5 standard ABI 1\.\d+", "mpiabi") if site != "/opt/site/openmpi" else
                    (r"legacy Open MPI ABI \(libmpi\.so\.40\)", "the image build"))
    for rank in (0, 1):
        assert re.search(rf"ok +rank {rank} on node\d: {site}/lib/libmpi(_abi)?\.so[.\d]*: {re.escape(version)}.*; "
                         rf"ABI: {abi}; mpi4py variant: {variant}$", out, re.M), explain(proc, command)


def test_doctor_tells_an_accident_from_the_bind_model(cluster: str) -> None:
    """The site's Open MPI put in front by hand (LD_LIBRARY_PATH into the container) is an accident:
    doctor says so, and names HOST_MPI for doing it on purpose."""
    launch = ("srun --nodes=2 --ntasks=2 --mpi=pmix apptainer exec --bind /opt/site/openmpi "
              f"--env LD_LIBRARY_PATH=/opt/site/openmpi/lib {cluster}")
    argv = ["make", "--no-print-directory", "doctor", f"LAUNCH={launch}"]
    from test_cluster import in_cluster

    proc = in_cluster(*argv)
    command = " ".join(argv) + "   (on the cluster's login node)"
    assert proc.returncode == 2, explain(proc, command)  # doctor's 1, as make reports a failed recipe
    assert "PROBLEM  mpi4py runs on Open MPI v5.0.11" in proc.stdout, explain(proc, command)
    assert "If it is your site's MPI on purpose, use the bind model instead: HOST_MPI=" in proc.stdout, explain(
        proc, command)


def test_jobs_write_shared_output_and_mpi_io_across_nodes(cluster: str) -> None:
    proc = kit("run", "--script", "tests/scripts/shared_output.py", "--np", "4", "--runtime", "cluster",
               "--sif", cluster, "--timeout", "120", timeout=240)
    command = f"make run SCRIPT=tests/scripts/shared_output.py NP=4 RUNTIME=cluster SIF={cluster}"
    assert proc.returncode == 0, explain(proc, command)
    assert re.search(r"^rank 0 on node1 read: written by rank 3 on node2$", proc.stdout, re.M), explain(proc, command)
    assert "MPI-IO: 4 of 4 ranks read their neighbour's block from /scratch/hpcuser" in proc.stdout, explain(
        proc, command)
