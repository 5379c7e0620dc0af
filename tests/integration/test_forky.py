"""The newest Slurm: the same test cluster built from Debian forky (Slurm 26.05),
started after the default cluster is down (one runs at a time). Debian builds
that Slurm without PMIx (bug #1149781), so forky is also the site with no pmix
plugin: the image's own Open MPI is refused in one line that names the bind
model, and the site's MPICH runs the trixie image through srun --mpi=pmi2 (the
bookworm image's glibc is older than forky's libraries need: refused by name)."""

from __future__ import annotations

import re

import pytest
from conftest import assert_example, explain, kit, make, need_engine, wait_for_prebuild
from mpikit import cluster as cluster_module

# Last, after the default cluster's tests; its images are built in the background meanwhile (conftest.PREBUILDS).
pytestmark = [pytest.mark.last(2), pytest.mark.prebuilt("forky")]
SCATTER_SIZE = 999_983


@pytest.fixture(scope="module")
def forky(sif: str, sif_bookworm: str):
    need_engine("the forky cluster")
    wait_for_prebuild("forky")  # its images: cluster-up then finds them built (or builds them, in the open)
    make("cluster-down", timeout=300)
    proc = make("cluster-up", "CLUSTER=forky", timeout=2400)
    assert proc.returncode == 0, explain(proc, "make cluster-up CLUSTER=forky")
    yield {"trixie": sif, "bookworm": sif_bookworm}
    make("cluster-down", timeout=300)


def test_one_cluster_at_a_time(forky: dict) -> None:
    proc = make("cluster-up", timeout=120)
    assert proc.returncode == 2 and "the forky cluster is up, and one runs at a time" in proc.stderr, explain(
        proc, "make cluster-up   (while forky is up)")


def test_doctor_prints_the_slurm_and_says_it_has_no_pmix(forky: dict) -> None:
    """Debian forky builds Slurm 26.05 without PMIx (bug #1149781): srun --mpi=list is pmi2 and cray_shasta.
    doctor says so before launching anything and names what works: the bind model."""
    proc = make("doctor", "RUNTIME=cluster", f"SIF={forky['trixie']}", timeout=300)
    command = f"make doctor RUNTIME=cluster SIF={forky['trixie']}"
    assert re.search(r"info +forky cluster: Slurm 26\.05\.\S+", proc.stdout), explain(proc, command)
    assert re.search(r"PROBLEM +this Slurm has no pmix plugin \(srun --mpi=list: [a-z0-9_, ]*pmi2", proc.stdout), \
        explain(proc, command)
    assert "HOST_MPI=" in proc.stdout and proc.returncode != 0 and "Traceback" not in proc.stderr, \
        explain(proc, command)
    assert cluster_module.current() == "forky"


@pytest.mark.parametrize("image", ["trixie", "bookworm"])
def test_the_images_own_open_mpi_is_refused_in_one_line(image: str, forky: dict) -> None:
    """No pmix plugin: the hybrid model cannot start, so the kit says why and what works, fast."""
    proc = make("run-rank", "NP=4", "RUNTIME=cluster", f"SIF={forky[image]}", timeout=120)
    command = f"make run-rank NP=4 RUNTIME=cluster SIF={forky[image]}   (forky cluster)"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, explain(proc, command)
    assert "no pmix plugin" in errors[0] and "HOST_MPI=" in errors[0], explain(proc, command)
    assert not any(line.startswith("+ ") for line in proc.stderr.splitlines()), \
        explain(proc, command)  # refused before any launch line ran
    assert "Traceback" not in proc.stderr, explain(proc, command)


@pytest.mark.parametrize("name,abi", [("rank", "auto"), ("scatter", "auto"), ("rank", "legacy")])
def test_the_site_mpich_runs_the_trixie_image_under_slurm_26(name: str, abi: str, forky: dict) -> None:
    """Where the bind model is the only way: MPICH's standard ABI (auto), and its MPICH ABI forced."""
    args = f"--size {SCATTER_SIZE} --seed 4" if name == "scatter" else ""
    proc = kit("run", name, "--np", "4", "--runtime", "cluster", "--sif", forky["trixie"], "--host-mpi",
               "/opt/site/mpich", "--host-mpi-abi", abi, "--args", args, "--timeout", "240", timeout=300)
    command = (f"make run-{name} NP=4 RUNTIME=cluster HOST_MPI=/opt/site/mpich HOST_MPI_ABI={abi} "
               f"SIF={forky['trixie']}   (forky cluster)")
    assert_example(name, proc, 4, command, SCATTER_SIZE if name == "scatter" else None, hosts={"node1", "node2"})
    # the kit names the library it bound, its ABI and the plugin it chose; rank.py also prints each rank's library
    assert "srun --mpi=pmi2" in proc.stderr and "(MPICH Version:" in proc.stderr, explain(proc, command)
    library = "libmpi_abi.so.1 (MPICH Version:" if abi == "auto" else "libmpi.so.12 (MPICH Version:"
    abi_words = "; MPI-5 standard ABI 1." if abi == "auto" else "; legacy MPICH ABI (libmpi.so.12))"
    assert library in proc.stderr and abi_words in proc.stderr, explain(proc, command)
    assert name != "rank" or "MPI library on every rank: MPICH Version:" in proc.stdout, explain(proc, command)


def test_the_bookworm_image_is_too_old_for_forkys_libraries(forky: dict) -> None:
    """forky's libpmi2 needs glibc 2.38; bookworm has 2.36. The bind model cannot bind a C library in,
    so the kit names the library and the way out, in one line, before srun starts a rank."""
    proc = make("run-rank", "NP=4", "RUNTIME=cluster", "HOST_MPI=/opt/site/mpich", f"SIF={forky['bookworm']}",
                timeout=300)
    command = f"make run-rank NP=4 RUNTIME=cluster HOST_MPI=/opt/site/mpich SIF={forky['bookworm']}   (forky)"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, explain(proc, command)
    assert re.search(r"libpmi2\.so\.0 needs glibc 2\.\d+, newer than the image's", errors[0]), explain(proc, command)
    assert "srun" not in "".join(line for line in proc.stderr.splitlines() if line.startswith("+ ")), \
        explain(proc, command)
    assert "Traceback" not in proc.stderr, explain(proc, command)


def test_a_site_open_mpi_is_refused_where_slurm_has_no_pmix(forky: dict) -> None:
    proc = make("run-rank", "NP=4", "RUNTIME=cluster", "HOST_MPI=/opt/site/openmpi", f"SIF={forky['trixie']}",
                timeout=300)
    command = f"make run-rank NP=4 RUNTIME=cluster HOST_MPI=/opt/site/openmpi SIF={forky['trixie']}   (forky)"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, explain(proc, command)
    assert "srun --mpi=pmix is needed" in errors[0] and "offers only" in errors[0], explain(proc, command)
