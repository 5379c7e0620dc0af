"""Bad input through the Makefile: one clear error line, a non-zero exit,
fast, and nothing built, started or written."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from conftest import (
    PREBUILD_CONTAINER_PREFIXES,
    PREBUILD_IMAGE_PREFIXES,
    PREBUILD_IMAGES,
    PREBUILD_PATHS,
    ROOT,
    explain,
    leftovers,
    make,
)
from mpikit import docker
from mpikit.ui import EXIT_MISSING, EXIT_USAGE

CASES = [
    # (make arguments, words the error line must contain)
    (["run-scatter", "NP=0"], "NP must be a whole number"),
    (["sif", "SIF_FROM=docker"], "unknown SIF_FROM='docker'; choose one of: auto, image, recipe"),
    (["run-scatter", "NP=-1"], "NP must be a whole number"),
    (["run-scatter", "NP=abc"], "NP must be a whole number"),
    (["run-scatter", "NP=2.5"], "NP must be a whole number"),
    (["run-nosuch"], "unknown example 'nosuch'"),
    (["run-p2p", "NP=1"], "needs at least 2 ranks"),
    (["run", "SCRIPT=no/such/script.py"], "does not exist"),
    (["run", "SCRIPT=README.md"], "is not a Python file"),
    (["run", "SCRIPT=../outside.py"], "does not exist"),
    (["run", f"SCRIPT={os.__file__}"], "is outside"),  # exists, but containers could not see it
    (["run"], "name an example"),
    (["run-rank", "RUNTIME=bogus"], "unknown RUNTIME='bogus'"),
    (["run-rank", "BASE=jessie"], "unsupported BASE='jessie'"),
    (["image", "BASE=jessie"], "unsupported BASE='jessie'"),
    (["run-rank", "TIMEOUT=soon"], "TIMEOUT must be a whole number"),
    (["run-scatter", "ARGS=--size '12"], "cannot split ARGS"),
    (["run-rank", "CA_CERT=/no/such/ca.pem"], "CA_CERT='/no/such/ca.pem' is not a readable file"),
    (["image", "CA_CERT=/no/such/ca.pem"], "is not a readable file"),
    (["run-rank", "IMAGE=Not A Name"], "is not a valid image name"),
    (["run-rank", "SIF=mpi.img"], "must name a .sif file"),
    (["sif", "SIF=no/such/dir/mpi.sif"], "does not exist"),
    (["run-rank", "SRUN_MPI=pmix;ls"], "is not an srun --mpi plugin name"),
    (["doctor", "NP=zero"], "NP must be a whole number"),
    (["doctor", "RUNTIME=bogus"], "unknown RUNTIME='bogus'"),
    (["doctor", "LAUNCH=nosuchlauncher -n 2"], "is not a command on PATH"),
    (["bench", "QUICK=yes"], "QUICK must be 0 or 1"),
    (["bench", "NP=abc"], "NP must be a whole number"),
    (["test-fast", "PYTEST_ARGS=-k 'unclosed"], "cannot split PYTEST_ARGS"),
    (["run-rank", "FUTURES=1"], "FUTURES=1 is for pool scripts"),
    (["run-pool", "NP=1"], "needs at least 2 ranks"),
    (["run-rank", "HOST_MPI=site/mpich"], "must be the absolute path"),
    (["run-rank", "RUNTIME=native", "HOST_MPI=/opt/site/mpich"], "HOST_MPI is for RUNTIME=srun or cluster"),
    (["run-rank", "APPTAINER_MODE=fast"], "unknown APPTAINER_MODE='fast'"),
    (["cluster-up", "CLUSTER=buster"], "unknown CLUSTER='buster'"),
    (["bind-plan"], "make bind-plan needs HOST_MPI"),
    (["line"], "make line needs SCRIPT="),
    (["sbatch", "SCRIPT=examples/rank.py", "NODES=0"], "NODES must be a whole number"),
    (["keypair"], "make keypair needs KEY="),
    (["keypair", "KEY=build/key.pem"], "is inside the repository"),
    (["sign", "KEY=/no/such/key.pem"], "is not a readable private key file"),
    (["verify"], "make verify needs VERIFY_KEY="),
    (["verify", "VERIFY_KEY=README.md"], "is not PEM"),
    (["sbom", "RUNTIME=apptainer", "SIF=examples/no-such.sif"], "examples/no-such.sif: build it first (make sif SIF="),
    (["run-rank", "VERIFY_KEY=/no/such/key.pub"], "is not a readable public key"),
    # REQUIREMENTS (tests/envs/): what would break the image's MPI, refused before anything is built.
    (["run-rank", "RUNTIME=docker", "REQUIREMENTS=tests/envs/mpich.txt"], "line 2: mpich brings an MPI of its own"),
    (["image", "REQUIREMENTS=tests/envs/mpi4py.txt"], "mpi4py: the image's mpi4py"),
    (["sif", "REQUIREMENTS=tests/envs/old-numpy.txt"], "numpy==2.2.6 conflicts with the image's numpy"),
    (["run-rank", "REQUIREMENTS=tests/envs/environment.yml"], "is a conda environment, which brings its own MPI"),
    (["run-rank", "REQUIREMENTS=tests/envs/no-such.txt"], "REQUIREMENTS=tests/envs/no-such.txt: no such file"),
    (["run-rank", "REQUIREMENTS=../requirements.txt"], "is outside the current folder"),
    (["run-rank", "RUNTIME=native", "REQUIREMENTS=tests/envs/science.txt"], "RUNTIME=native runs the kit's own"),
    (["reproduce-sif", "REQUIREMENTS=tests/envs/science.txt"], "make reproduce-sif does not take REQUIREMENTS yet"),
    (["run-rank", "RUNTIME=docker", "IMAGE=mpi4py-kit:trixie", "REQUIREMENTS=tests/envs/science.txt"],
     "REQUIREMENTS and IMAGE= together are not taken"),
    (["lock", "REQUIREMENTS=tests/envs/science.txt"], "give the loose file, named *.in (my.in)"),
    (["lock", "REQUIREMENTS=tests/envs/with-local.in"], "line 3 (./tests/envs/mpirank) is a local package"),
    (["shell", "RUNTIME=docker"], "make shell needs a terminal (standard input is not one)"),
    (["shell", "RUNTIME=srun", "COMMAND=true"], "make shell opens a shell in the image on this machine"),
]


def from_background(fields: list[str]) -> bool:
    """A container or image line (ID, image, and a container's name) that the background lanes make."""
    image, name = fields[1], "".join(fields[2:3])
    return image in PREBUILD_IMAGES or image.startswith(PREBUILD_IMAGE_PREFIXES) or \
        (bool(name) and name.startswith(PREBUILD_CONTAINER_PREFIXES))


def snapshot() -> tuple[str, str]:
    """What a failed command must not change: the work tree and Docker's state, less what the session's
    background builds change meanwhile (conftest.PREBUILD_PATHS and PREBUILD_IMAGES: none of the commands
    refused here builds for another platform or builds a SIF)."""
    tree = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
                          cwd=ROOT, capture_output=True, text=True).stdout
    tree = "".join(line for line in tree.splitlines(keepends=True)
                   if not line[3:].startswith(PREBUILD_PATHS))
    client = docker.client()
    state = ""
    if client and docker.engine_problem() is None:
        # Each line: ID, image, and the container's name (containers) or nothing (images).
        for listing in (["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}} {{.Names}}"],
                        ["images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"]):
            out = subprocess.run([client, *listing], capture_output=True, text=True).stdout
            kept = [line for line in out.splitlines(keepends=True) if not from_background(line.split())]
            state += "".join(sorted(kept))
    return tree, state


def assert_clean_refusal(proc: subprocess.CompletedProcess, words: str, command: str,
                         elapsed: float, status: int = EXIT_USAGE) -> None:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    # make exits 2 whenever a recipe fails and names the kit's own status: "make: *** [...] Error N".
    assert proc.returncode != 0 and f"] Error {status}" in proc.stderr, explain(proc, command)
    assert len(errors) == 1 and words in errors[0], explain(proc, command)
    assert "Traceback" not in proc.stdout + proc.stderr, explain(proc, command)
    assert proc.stdout.strip() == "", "nothing may run before the knobs are checked" + explain(proc, command)
    assert elapsed < 20, f"refusing bad input took {elapsed:.1f} s" + explain(proc, command)


@pytest.mark.parametrize("args,words", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_refused(args: list[str], words: str) -> None:
    before = snapshot()
    start = time.monotonic()
    proc = make(*args, timeout=60)
    elapsed = time.monotonic() - start
    assert_clean_refusal(proc, words, "make " + " ".join(args), elapsed)
    assert snapshot() == before, "a refused command changed files or Docker state"


@pytest.mark.parametrize("runtime,words", [("apptainer", "RUNTIME=apptainer needs apptainer on PATH"),
                                           ("srun", "RUNTIME=srun needs srun and apptainer on PATH")])
def test_apptainer_runtimes_without_apptainer(runtime: str, words: str) -> None:
    """This host (like a laptop) has no Apptainer: a clear refusal, not a crash."""
    if shutil.which("apptainer") or shutil.which("singularity"):
        pytest.skip("this host has Apptainer; the refusal cannot happen here")
    before = snapshot()
    start = time.monotonic()
    proc = make("run-rank", f"RUNTIME={runtime}", timeout=60)
    assert_clean_refusal(proc, words, f"make run-rank RUNTIME={runtime}", time.monotonic() - start, EXIT_MISSING)
    assert snapshot() == before


def test_docker_runtime_without_an_engine() -> None:
    """RUNTIME=docker when no engine answers (DOCKER_HOST points nowhere)."""
    args = ["run-rank", "RUNTIME=docker"]
    before = snapshot()
    start = time.monotonic()
    proc = make(*args, timeout=60, DOCKER_HOST="unix:///nonexistent/docker.sock")
    elapsed = time.monotonic() - start
    assert_clean_refusal(proc, "needs a Docker engine", "DOCKER_HOST=unix:///nonexistent "
                         "make " + " ".join(args), elapsed, EXIT_MISSING)
    assert snapshot() == before


def test_missing_named_image(docker_image: str) -> None:
    args = ["run-rank", "RUNTIME=docker", "IMAGE=mpi4py-kit:no-such-tag"]
    before = snapshot()
    start = time.monotonic()
    proc = make(*args, timeout=60)
    assert_clean_refusal(proc, "not found; build it with: make image IMAGE=mpi4py-kit:no-such-tag",
                         "make " + " ".join(args), time.monotonic() - start)
    assert snapshot() == before


def test_timeout_stops_a_hung_job(tmp_path) -> None:
    """TIMEOUT= ends a job that never finishes, with the command in the message."""
    folder = ROOT / "tests" / "_hang"
    folder.mkdir(exist_ok=True)
    (folder / "hang.py").write_text(
        "import time\nfrom mpi4py import MPI\n"
        "if MPI.COMM_WORLD.Get_rank() == 1:\n    time.sleep(600)\nMPI.COMM_WORLD.Barrier()\n")
    try:
        start = time.monotonic()
        proc = make("run", "SCRIPT=tests/_hang/hang.py", "NP=2", "RUNTIME=native", "TIMEOUT=5",
                    timeout=120)
        elapsed = time.monotonic() - start
    finally:
        (folder / "hang.py").unlink()
        folder.rmdir()
    command = "make run SCRIPT=tests/_hang/hang.py NP=2 RUNTIME=native TIMEOUT=5"
    assert proc.returncode != 0, explain(proc, command)
    assert "timed out after 5 s" in proc.stderr and "mpiexec" in proc.stderr, explain(proc, command)
    assert elapsed < 60, explain(proc, command)
    assert leftovers("tests/_hang/hang.py", settle=5) == [], "ranks were left running after the timeout"
