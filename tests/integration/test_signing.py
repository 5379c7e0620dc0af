"""Signed SIFs on the test cluster: make keypair, make sign and make verify round trip; with VERIFY_KEY a
run refuses, in one line and before any rank starts, a SIF that is unsigned, changed by one byte in the
middle of its root file system (its mtime put back), or signed with another key; the signed original runs,
and make sbatch's script checks it on the cluster too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, assert_example, explain, in_cluster, kit, make
from mpikit import apptainer
from mpikit import cluster as cluster_module

TEST = ROOT / "build" / "test"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two key pairs made by make keypair, outside the repository; their public halves copied where the
    cluster sees them (/shared/build/test)."""
    folder = tmp_path_factory.mktemp("keys")
    found = {}
    for name in ("site", "other"):
        proc = make("keypair", f"KEY={folder / name}.pem", timeout=60)
        assert proc.returncode == 0, explain(proc, f"make keypair KEY={folder / name}.pem")
        found[name] = folder / f"{name}.pem"
        shutil.copyfile(folder / f"{name}.pem.pub", TEST / f"{name}.pem.pub")
    return found


def fs_range(sif: Path) -> tuple[int, int]:
    """The root file system's byte range in the SIF (apptainer sif list: 45056-178536448 ... FS)."""
    listing = subprocess.run(apptainer.apptainer_argv("sif", "list", str(sif)), capture_output=True, text=True,
                             timeout=120).stdout
    start, end = re.search(r"\|(\d+)-(\d+)\s+\|FS", listing).groups()
    return int(start), int(end)


@pytest.fixture(scope="module")
def signed(cluster: str, keys: dict[str, Path]) -> str:
    sif = TEST / "signed.sif"
    shutil.copyfile(ROOT / cluster, sif)
    proc = make("sign", f"KEY={keys['site']}", f"SIF={sif.relative_to(ROOT)}", timeout=300)
    assert proc.returncode == 0, explain(proc, f"make sign KEY={keys['site']} SIF={sif}")
    return sif.relative_to(ROOT).as_posix()


def test_sign_and_verify_round_trip(signed: str, keys: dict[str, Path]) -> None:
    proc = make("verify", f"SIF={signed}", f"VERIFY_KEY={keys['site']}.pub", timeout=300)
    assert proc.returncode == 0 and "verified:" in proc.stderr, explain(proc, f"make verify SIF={signed}")
    proc = make("verify", f"SIF={signed}", f"VERIFY_KEY={keys['other']}.pub", timeout=300)
    assert proc.returncode != 0 and "does not verify" in proc.stderr, explain(proc, "make verify with another key")


def refused(sif: str, key: str) -> None:
    command = f"make run-rank RUNTIME=cluster NP=4 SIF={sif} VERIFY_KEY={key}"
    proc = kit("run", "rank", "--np", "4", "--runtime", "cluster", "--sif", sif, "--verify-key", key, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and f"{sif} is refused" in errors[0], explain(proc, command)
    assert "no rank was started" in errors[0] and "rank:" not in proc.stdout, explain(proc, command)
    assert "+ " not in proc.stderr, "a launch line was run" + explain(proc, command)


def test_the_signed_sif_runs_and_a_changed_one_is_refused(signed: str, keys: dict[str, Path]) -> None:
    public = "build/test/site.pem.pub"
    proc = kit("run", "rank", "--np", "4", "--runtime", "cluster", "--sif", signed, "--verify-key", public,
               timeout=300)
    assert_example("rank", proc, 4, f"make run-rank RUNTIME=cluster NP=4 SIF={signed} VERIFY_KEY={public}",
                   hosts={"node1", "node2"})
    assert "verified: " in proc.stderr, explain(proc, "the signed SIF")
    tampered = TEST / "tampered.sif"
    shutil.copyfile(ROOT / signed, tampered)
    start, end = fs_range(tampered)
    before = tampered.stat()
    with open(tampered, "r+b") as f:
        f.seek((start + end) // 2)
        byte = f.read(1)
        f.seek((start + end) // 2)
        f.write(bytes([byte[0] ^ 1]))
    os.utime(tampered, ns=(before.st_atime_ns, before.st_mtime_ns))
    refused("build/test/tampered.sif", public)
    refused(signed, "build/test/other.pem.pub")  # signed, but not by the key the site trusts
    unsigned = TEST / "unsigned.sif"
    shutil.copyfile(ROOT / signed.replace("signed", "mpi"), unsigned)
    refused("build/test/unsigned.sif", public)
    for path in (tampered, unsigned):
        path.unlink()


def test_make_sbatchs_script_checks_the_signature_on_the_cluster(signed: str) -> None:
    public = "build/test/site.pem.pub"
    proc = make("sbatch", "RUNTIME=cluster", "NP=2", "SCRIPT=examples/rank.py", f"SIF={signed}",
                f"VERIFY_KEY={public}", timeout=120)
    assert proc.returncode == 0 and f"apptainer verify --key /shared/{public} /shared/{signed}" in proc.stdout, \
        explain(proc, "make sbatch ... VERIFY_KEY")
    out = f"/home/{cluster_module.USER}/signed-%j.out"
    ran = in_cluster("bash", "-c", f"sbatch --wait --parsable -o {out} <<'EOF'\n{proc.stdout}EOF", timeout=300)
    text = in_cluster("cat", out.replace("%j", ran.stdout.strip())).stdout
    assert ran.returncode == 0 and "Verified signature(s)" in text, explain(ran, text)
    assert_example("rank", subprocess.CompletedProcess([], 0, text, ""), 2, "make sbatch ... | sbatch --wait")
