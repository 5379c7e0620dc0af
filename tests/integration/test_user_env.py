"""REQUIREMENTS=file (issue 30), as users run it: a requirements file with scipy, pandas and a local package whose
C extension calls MPI (compiled with the image's mpicc) gives a derived image, built on the kit's without
rebuilding it, that runs under Docker and, as a SIF, across the test cluster's two nodes; h5py is built
parallel and 4 ranks on 2 nodes write one file collectively; a second MPI that arrives as a dependency is
refused when the build resolves the file, with nothing tagged."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, explain, make, prebuild_log, wait_for_prebuild
from mpikit import bind, config, docker, environment, knobs
from mpikit.checks import mpi_library

SCIENCE = "tests/envs/science.txt"
SCRIPT = "tests/scripts/uses_environment.py"
# The environments are built in the background from the session's first image (conftest.PREBUILDS "envs"); each
# fixture's own make image then finds its image built, or builds it in the open.
pytestmark = pytest.mark.prebuilt("envs")


def derived_names(requirements: str) -> tuple[str, str]:
    """The image and SIF the kit names for `requirements` (the same functions make run calls)."""
    base, platform = config.default_base(), knobs.parse_platform("")
    reqs = environment.read(requirements, ROOT)
    digest = environment.digest(reqs, base, platform, ROOT)
    return (environment.image_name(digest, base, platform),
            str(environment.sif_path(digest, base, platform).relative_to(ROOT)))


def assert_ran(proc: subprocess.CompletedProcess, np: int, command: str, hosts: int = 1) -> None:
    out = proc.stdout + proc.stderr
    ranks = sorted(int(r) for r in re.findall(r"^rank: (\d+) of (?:\d+) on ", proc.stdout, re.M))
    assert proc.returncode == 0 and ranks == list(range(np)), explain(proc, command)
    assert f"check passed: {np} ranks imported scipy and pandas" in proc.stdout, explain(proc, command)
    assert "Traceback" not in out, explain(proc, command)
    seen = re.search(r"\(hosts: ([^)]*)\)", proc.stdout)
    assert seen and len(seen.group(1).split(", ")) == hosts, explain(proc, command)


@pytest.fixture(scope="module")
def science(docker_image: str) -> str:
    """The derived image for tests/envs/science.txt, built once (make image REQUIREMENTS=...), on the kit's."""
    wait_for_prebuild("envs")
    image, _ = derived_names(SCIENCE)
    before = docker.image_id(docker_image)
    proc = make("image", f"REQUIREMENTS={SCIENCE}", timeout=1800)
    command = f"make image REQUIREMENTS={SCIENCE}"
    assert proc.returncode == 0 and docker.image_exists(image), explain(proc, command)
    assert docker.image_id(docker_image) == before, "the kit's own image was rebuilt"
    return image


def test_the_environment_runs_under_docker(science: str) -> None:
    command = f"make run SCRIPT={SCRIPT} NP=2 RUNTIME=docker REQUIREMENTS={SCIENCE}"
    proc = make("run", f"SCRIPT={SCRIPT}", "NP=2", "RUNTIME=docker", f"REQUIREMENTS={SCIENCE}", timeout=300)
    assert_ran(proc, 2, command)
    assert f"environment: {science} ({SCIENCE}, on " in proc.stderr and "is built already" in proc.stderr, \
        explain(proc, command)
    # The kit's mpi4py and numpy are the ones imported, from the kit's own venv.
    probe = ("import mpi4py, numpy, scipy; print(mpi4py.__file__, mpi4py.__version__, numpy.__version__, "
             "scipy.__file__)")
    seen = subprocess.run([docker.command(), "run", "--rm", science, "python", "-c", probe], capture_output=True,
                          text=True, timeout=120)
    pins = config.python_pins()
    assert seen.stdout.split()[1:3] == [pins["mpi4py"], pins["numpy"]], explain(seen, f"docker run {science}")
    assert seen.stdout.startswith("/opt/venv/lib/") and " /opt/venv/lib/" in seen.stdout, explain(seen, "probe")


def test_the_environment_builds_and_runs_on_the_bookworm_image(docker_image: str) -> None:
    """BASE=bookworm (Python 3.11, Open MPI 4.1): the same file gives an image of its own, named for that base
    and built on the kit's bookworm image, whose mpicc compiles the C extension; 2 ranks import scipy and
    pandas and the extension's MPI_Comm_rank agrees with mpi4py's."""
    wait_for_prebuild("envs")
    command = f"make run SCRIPT={SCRIPT} NP=2 RUNTIME=docker BASE=bookworm REQUIREMENTS={SCIENCE}"
    proc = make("run", f"SCRIPT={SCRIPT}", "NP=2", "RUNTIME=docker", "BASE=bookworm", f"REQUIREMENTS={SCIENCE}",
                timeout=1800)
    assert_ran(proc, 2, command)
    assert re.search(rf"environment: (building )?mpi4py-kit-env:bookworm-[0-9a-f]{{12}} (\({SCIENCE}, on|from "
                     rf"{SCIENCE} on) mpi4py-kit:bookworm", proc.stderr), explain(proc, command)


def test_make_shell_runs_a_command_in_the_environment(science: str) -> None:
    """Without a terminal, make shell runs COMMAND in the image as make run's ranks see it (/work mounted)."""
    command = "python -c 'import scipy, os; print(scipy.__version__, os.getcwd())'"
    proc = make("shell", "RUNTIME=docker", f"REQUIREMENTS={SCIENCE}", f"COMMAND={command}", timeout=300)
    shown = f"make shell RUNTIME=docker REQUIREMENTS={SCIENCE} COMMAND=\"{command}\""
    assert proc.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+ /work\n", proc.stdout), explain(proc, shown)
    assert f" {science} bash -c " in proc.stderr, explain(proc, shown)


def linked(image: str) -> str:
    """The environment's list of its packages that link an MPI (bind.LINKED), as derive.sh wrote it."""
    proc = subprocess.run([docker.command(), "run", "--rm", image, "cat", bind.LINKED], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, explain(proc, f"docker run --rm {image} cat {bind.LINKED}")
    return proc.stdout


def test_the_runtime_image_has_no_compiler_but_the_mpi_extension_is_linked_to_its_open_mpi(science: str) -> None:
    # The environment lists its local package's C extension as linked to the image's libmpi; scipy and pandas
    # link none.
    assert re.fullmatch(r"mpirank \S+ libmpi\.so\.40\n", linked(science)), linked(science)
    script = ("for tool in gcc cc g++ c++; do command -v $tool && exit 1; done; "
              "ldd $(python -c 'import mpirank._rank as m; print(m.__file__)') "
              "| grep -Eq 'libmpi.so.40 => /(usr/)?lib/'")
    proc = subprocess.run([docker.command(), "run", "--rm", science, "bash", "-c", script], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, explain(proc, f"docker run --rm {science} bash -c {script!r}")


def test_the_environment_runs_across_the_clusters_nodes(science: str, cluster: str) -> None:
    _, sif = derived_names(SCIENCE)
    made = make("sif", f"REQUIREMENTS={SCIENCE}", timeout=900)
    assert made.returncode == 0 and f"environment SIF: {ROOT / sif}" in made.stderr, explain(
        made, f"make sif REQUIREMENTS={SCIENCE}")
    command = f"make run SCRIPT={SCRIPT} NP=4 RUNTIME=cluster REQUIREMENTS={SCIENCE}"
    proc = make("run", f"SCRIPT={SCRIPT}", "NP=4", "RUNTIME=cluster", f"REQUIREMENTS={SCIENCE}", timeout=900)
    assert_ran(proc, 4, command, hosts=2)
    assert (ROOT / sif).is_file(), f"no {sif}" + explain(proc, command)
    # make line names the environment's SIF, as make run used it.
    line = make("line", f"SCRIPT={SCRIPT}", "NP=4", "RUNTIME=cluster", f"REQUIREMENTS={SCIENCE}", timeout=120)
    assert line.returncode == 0 and sif in line.stdout, explain(line, command.replace("make run", "make line"))


def test_make_bench_env_measures_the_environments_start_up_against_the_kits(science: str, cluster: str,
                                                                          tmp_path) -> None:
    """make bench-env QUICK=1 REQUIREMENTS=... (issue 30's start-up figure): the environment's SIF and the kit's,
    each started on the cluster's 2 nodes with 2 ranks each, the ratio and its interval written and printed against
    the 1.05x target (QUICK: one run each; the quoted figure is a full run's, docs/performance.md)."""
    command = f"make bench-env QUICK=1 REQUIREMENTS={SCIENCE}"
    proc = make("bench-env", "QUICK=1", f"REQUIREMENTS={SCIENCE}", timeout=900, MPIKIT_RESULTS=str(tmp_path))
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, explain(proc, command)
    found = json.loads((tmp_path / "bench-env.json").read_text())
    assert found["quick"] is True and found["requirements"] == SCIENCE, found
    walls = found["startup"]
    assert set(walls) == {"cluster-kit-2nodes", "cluster-env-2nodes"}, walls
    assert all(len(w["runs"]) == 1 and w["median_s"] > 0 for w in walls.values()), walls
    ratio = walls["cluster-env-2nodes"]["median_s"] / walls["cluster-kit-2nodes"]["median_s"]
    assert found["ratio"] == pytest.approx(ratio) and found["interval"][0] <= ratio <= found["interval"][1], found
    # The environment's SIF is the one make sif REQUIREMENTS=... made (scipy and pandas: bigger than the kit's).
    _, sif = derived_names(SCIENCE)
    sizes = found["sif_mb"]
    assert sizes["cluster-env-2nodes"] == pytest.approx((ROOT / sif).stat().st_size / 1e6), sizes
    assert sizes["cluster-env-2nodes"] > sizes["cluster-kit-2nodes"], sizes
    assert "| at most 1.05x |" in proc.stdout, explain(proc, command)


# ---- the kit's guarantees carry over: the SBOM lists the user's packages, the SIF is signed and verified ----

def test_the_environments_sbom_lists_every_package_in_its_image(science: str, tmp_path) -> None:
    """make sbom REQUIREMENTS=...: reconciled with the derived image as test_sbom.py reconciles the kit's (every
    Debian package and distribution, nothing more), schema-valid, each user's distribution vouched for by its
    installation report: a wheel's or sdist's hash, or the local folder it was built from."""
    from test_sbom import in_image, packages, written

    command = f"make sbom RUNTIME=docker REQUIREMENTS={SCIENCE}"
    doc = written(make("sbom", "RUNTIME=docker", f"REQUIREMENTS={SCIENCE}", timeout=300,
                       MPIKIT_RESULTS=str(tmp_path)), command)
    debs, dists = packages(doc)
    dpkg = in_image(science, "dpkg-query", "-W", "-f", "${binary:Package}\\t${Version}\\t${Architecture}\\n")
    assert debs == {(n.split(":")[0], v, a) for n, v, a in (line.split("\t") for line in dpkg.splitlines())}
    found = in_image(science, "sh", "-c", "ls -d /opt/venv/lib/python3*/site-packages/*.dist-info "
                                          "/opt/venv/mpi4py-abi/*.dist-info")
    listed = {(re.sub(r"[-_.]+", "-", info.rsplit("-", 1)[0]).lower(), info.rsplit("-", 1)[1], folder)
              for folder, _, info in (p.removesuffix(".dist-info").rpartition("/") for p in found.split())}
    assert dists == listed
    assert {"scipy", "pandas", "mpirank"} <= {name for name, _, _ in dists}
    by = {c["name"].lower(): c for c in doc["components"] if c.get("purl", "").startswith("pkg:pypi/")}
    artifact = {c: next(p["value"] for p in by[c]["properties"] if p["name"] == "mpi4py-kit:artifact") for c in by}
    assert artifact["mpirank"] == "built in the image from the local folder tests/envs/mpirank", artifact
    assert artifact["scipy"] == "wheel" and re.fullmatch(r"[0-9a-f]{64}", by["scipy"]["hashes"][0]["content"])
    environment = {p["name"]: p["value"] for p in doc["metadata"]["component"]["properties"]}
    assert environment["mpi4py-kit:environment"].startswith("requirements.txt sha256:"), environment


def test_the_environments_sif_is_signed_and_verified(science: str, cluster: str, tmp_path) -> None:
    """make sign and make verify with REQUIREMENTS act on the environment's SIF, and a run with VERIFY_KEY
    checks it before its ranks start on the cluster's nodes."""
    key = tmp_path / "lab.pem"
    made = make("keypair", f"KEY={key}", timeout=60)
    assert made.returncode == 0, explain(made, f"make keypair KEY={key}")
    _, sif = derived_names(SCIENCE)
    # Unsigned to start with, whatever an earlier run in this checkout signed: make sif copies it again from the
    # SIF cache, which signing never touches (a second key's signature beside the first would not verify alone).
    (ROOT / sif).unlink(missing_ok=True)
    built = make("sif", f"REQUIREMENTS={SCIENCE}", timeout=900)
    assert built.returncode == 0 and (ROOT / sif).is_file(), explain(built, f"make sif REQUIREMENTS={SCIENCE}")
    public = ROOT / "build" / "test" / "lab.pem.pub"  # where the cluster sees it (/shared)
    public.parent.mkdir(parents=True, exist_ok=True)
    public.write_bytes(Path(f"{key}.pub").read_bytes())
    signed = make("sign", f"REQUIREMENTS={SCIENCE}", f"KEY={key}", timeout=300)
    assert signed.returncode == 0 and f"signed {ROOT / sif}" in signed.stderr, \
        explain(signed, f"make sign REQUIREMENTS={SCIENCE} KEY={key}")
    checked = make("verify", f"REQUIREMENTS={SCIENCE}", f"VERIFY_KEY={public.relative_to(ROOT)}", timeout=300)
    assert checked.returncode == 0 and f"verified: {ROOT / sif} is signed" in checked.stderr, \
        explain(checked, f"make verify REQUIREMENTS={SCIENCE} VERIFY_KEY={public.relative_to(ROOT)}")
    command = f"make run SCRIPT={SCRIPT} NP=2 RUNTIME=cluster REQUIREMENTS={SCIENCE} VERIFY_KEY=build/test/lab.pem.pub"
    proc = make("run", f"SCRIPT={SCRIPT}", "NP=2", "RUNTIME=cluster", f"REQUIREMENTS={SCIENCE}",
                f"VERIFY_KEY={public.relative_to(ROOT)}", timeout=900)
    assert_ran(proc, 2, command, hosts=2)


# ---- parallel h5py: built from its sdist against HDF5 with MPI, written collectively across nodes ----

H5PY = "tests/envs/h5py.txt"
H5PY_SCRIPT = "tests/scripts/h5py_collective.py"


@pytest.fixture(scope="module")
def h5py_env(docker_image: str) -> str:
    wait_for_prebuild("envs")
    image, _ = derived_names(H5PY)
    proc = make("image", f"REQUIREMENTS={H5PY}", timeout=2400)
    command = f"make image REQUIREMENTS={H5PY}"
    assert proc.returncode == 0 and docker.image_exists(image), explain(proc, command)
    return image


def assert_written(proc: subprocess.CompletedProcess, np: int, command: str, hosts: int) -> None:
    ranks = sorted(int(r) for r in re.findall(r"^rank: (\d+) of \d+ on \S+: wrote values", proc.stdout, re.M))
    assert proc.returncode == 0 and ranks == list(range(np)), explain(proc, command)
    done = re.search(r"^check passed: (\d+) ranks wrote one HDF5 file collectively .* \(hosts: ([^)]*)\)$",
                     proc.stdout, re.M)
    assert done and int(done.group(1)) == np and len(done.group(2).split(", ")) == hosts, explain(proc, command)
    assert "Traceback" not in proc.stdout + proc.stderr, explain(proc, command)


def test_parallel_h5py_writes_one_file_collectively_under_docker(h5py_env: str) -> None:
    command = f"make run SCRIPT={H5PY_SCRIPT} NP=4 RUNTIME=docker REQUIREMENTS={H5PY} ARGS=1000"
    proc = make("run", f"SCRIPT={H5PY_SCRIPT}", "NP=4", "RUNTIME=docker", f"REQUIREMENTS={H5PY}", "ARGS=1000",
                timeout=300)
    assert_written(proc, 4, command, hosts=1)


def test_parallel_h5py_writes_one_file_collectively_across_the_clusters_nodes(h5py_env: str, cluster: str) -> None:
    command = f"make run SCRIPT={H5PY_SCRIPT} NP=4 RUNTIME=cluster REQUIREMENTS={H5PY}"
    proc = make("run", f"SCRIPT={H5PY_SCRIPT}", "NP=4", "RUNTIME=cluster", f"REQUIREMENTS={H5PY}", timeout=900)
    assert_written(proc, 4, command, hosts=2)
    assert "/scratch/" in proc.stdout, "not written on the cluster's shared scratch" + explain(proc, command)


# ---- the bind model with an environment: the site's MPI must be of the family its compiled packages link ----

def test_the_bind_model_refuses_a_site_mpi_of_another_family_for_the_h5py_environment(h5py_env: str,
                                                                                      cluster: str) -> None:
    """h5py's extensions load the image's libmpi.so.40 through HDF5: with a site MPICH (standard ABI) they would
    run beside it. Refused before any rank starts, in one line naming the package and both libraries; make
    bind-plan says the same."""
    for target, extra in (("run", (f"SCRIPT={H5PY_SCRIPT}", "NP=2")), ("bind-plan", ())):
        command = f"make {target} {' '.join(extra)} RUNTIME=cluster REQUIREMENTS={H5PY} HOST_MPI=/opt/site/mpich"
        proc = make(target, *extra, "RUNTIME=cluster", f"REQUIREMENTS={H5PY}", "HOST_MPI=/opt/site/mpich",
                    timeout=900)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode != 0 and len(errors) == 1, explain(proc, command)
        assert re.search(r"h5py \S+ in this environment was compiled against libmpi\.so\.40 \(the image's Open MPI\), "
                         r"but the bind model loads /opt/site/mpich/lib/libmpi_abi\.so\.1", errors[0]), \
            explain(proc, command)
        assert "rank: " not in proc.stdout and "Traceback" not in proc.stderr, explain(proc, command)
    # make doctor names it as its PROBLEM, from the environment's SIF, before its probe starts a rank.
    command = f"make doctor RUNTIME=cluster REQUIREMENTS={H5PY} HOST_MPI=/opt/site/mpich"
    proc = make("doctor", "RUNTIME=cluster", f"REQUIREMENTS={H5PY}", "HOST_MPI=/opt/site/mpich", timeout=900)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, explain(proc, command)
    sif = Path(derived_names(H5PY)[1]).name
    assert re.search(rf"ok +\S*/{re.escape(sif)} was built from this checkout's inputs", proc.stdout), \
        explain(proc, command)
    assert re.search(r"PROBLEM  HOST_MPI=/opt/site/mpich: h5py \S+ in this environment was compiled against "
                     r"libmpi\.so\.40", proc.stdout), explain(proc, command)
    assert "ranks form one communicator" not in proc.stdout, explain(proc, command)


def test_the_h5py_environment_runs_on_a_site_open_mpi_through_the_bind_model(h5py_env: str, cluster: str) -> None:
    """The same family: h5py's HDF5 and mpi4py load the site's Open MPI 5.0.11 (one libmpi.so.40 per process), and
    4 ranks on 2 nodes write one file collectively; make bind-plan lists h5py as linked to the site's family."""
    site = "/opt/site/openmpi"
    command = f"make run SCRIPT={H5PY_SCRIPT} NP=4 RUNTIME=cluster REQUIREMENTS={H5PY} HOST_MPI={site}"
    proc = make("run", f"SCRIPT={H5PY_SCRIPT}", "NP=4", "RUNTIME=cluster", f"REQUIREMENTS={H5PY}",
                f"HOST_MPI={site}", timeout=900)
    assert_written(proc, 4, command, hosts=2)
    assert f"bind model: the site's MPI {site}/lib/libmpi.so.40 (Open MPI v5.0.11" in proc.stderr, \
        explain(proc, command)
    plan = make("bind-plan", "RUNTIME=cluster", f"REQUIREMENTS={H5PY}", f"HOST_MPI={site}", timeout=600)
    assert plan.returncode == 0 and re.search(r"^linked h5py \S+  \(libmpi\.so\.40, Open MPI ABI \(libmpi\.so\.40\): "
                                              r"the site's family, loads the site's library\)$", plan.stdout, re.M), \
        explain(plan, f"make bind-plan RUNTIME=cluster REQUIREMENTS={H5PY} HOST_MPI={site}")


def test_a_pure_python_environment_runs_on_a_site_mpich(cluster: str) -> None:
    """Nothing in tests/envs/pure.txt links an MPI: its SIF runs with a site MPICH, and every rank reports it."""
    pure = "tests/envs/pure.txt"
    command = f"make run-rank NP=4 RUNTIME=cluster REQUIREMENTS={pure} HOST_MPI=/opt/site/mpich"
    proc = make("run-rank", "NP=4", "RUNTIME=cluster", f"REQUIREMENTS={pure}", "HOST_MPI=/opt/site/mpich",
                timeout=900)
    ranks = sorted(int(r) for r in re.findall(r"^rank: (\d+)\b", proc.stdout, re.M))
    assert proc.returncode == 0 and ranks == [0, 1, 2, 3], explain(proc, command)
    assert "bind model: the site's MPI /opt/site/mpich/lib/libmpi_abi.so.1" in proc.stderr, explain(proc, command)
    assert (mpi_library(proc.stdout) or "").startswith("MPICH Version:"), explain(proc, command)
    assert linked(derived_names(pure)[0]) == "", "tests/envs/pure.txt links no MPI"


def test_a_second_mpi_brought_by_a_dependency_is_refused_and_nothing_is_tagged(docker_image: str) -> None:
    requirements = "tests/envs/needs-mpich.txt"
    image, _ = derived_names(requirements)
    command = f"make image REQUIREMENTS={requirements}"
    proc = make("image", f"REQUIREMENTS={requirements}", timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, explain(proc, command)
    assert "error: REQUIREMENTS: mpich " in out and "brings an MPI of its own" in out, explain(proc, command)
    assert "error: the environment's build failed" in out and "Traceback" not in out, explain(proc, command)
    assert not docker.image_exists(image), f"{image} was tagged"


def test_make_lock_pins_a_loose_file_with_hashes_for_the_images_python(docker_image: str) -> None:
    """make lock REQUIREMENTS=my.in: my.txt beside it, every package pinned with its hashes, resolved for the
    image's Python (not the host's), numpy at the image's pin when a package needs it, owned by the caller."""
    folder = ROOT / "build" / "test" / "lock"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "my.in").write_text("# a loose file, as a user writes one\ntqdm\nnumexpr  # needs numpy\n")
    loose = "build/test/lock/my.in"
    command = f"make lock REQUIREMENTS={loose}"
    proc = make("lock", f"REQUIREMENTS={loose}", timeout=900)
    assert proc.returncode == 0, explain(proc, command)
    locked = folder / "my.txt"
    assert "lock: wrote build/test/lock/my.txt (3 packages" in proc.stderr, explain(proc, command)
    text = locked.read_text()
    entries = re.split(r"\n(?=\S+==)", text)
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", text, re.M))
    assert set(pins) == {"tqdm", "numexpr", "numpy"}, text
    assert pins["numpy"] == config.python_pins()["numpy"], text  # the image's numpy, never another
    for entry in entries[1:]:
        assert "--hash=sha256:" in entry, f"a pin without its hashes in {locked}:\n{entry}"
    python = docker.run("run", "--rm", "--entrypoint", "python3", docker_image, "-c",
                        "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()
    assert f"autogenerated by pip-compile with Python {python}\n" in text, text  # the image's Python
    assert f"#    make lock REQUIREMENTS={loose}\n" in text, text
    assert locked.stat().st_uid == os.getuid(), "the lock belongs to the caller, not the container's root"


@pytest.mark.prebuilt("envtwin")
def test_the_environments_sif_built_by_apptainer_has_the_files_of_the_one_made_from_its_image(
        docker_image: str) -> None:
    """The twin rule for an environment: `make twin REQUIREMENTS=...` makes the environment's SIF from its image
    (Dockerfile.env) and builds the other with Apptainer alone (Apptainer.env.def on the kit's SIF), and the two
    have the same files. Run in the background (conftest.PREBUILDS "envtwin", after the environments are built);
    this reads that run's output, or runs it in the open when no background run was started or it failed."""
    pure = "tests/envs/pure.txt"
    command = f"make twin REQUIREMENTS={pure}"
    if wait_for_prebuild("envtwin") == 0:
        proc = subprocess.CompletedProcess(["make", "twin"], 0, prebuild_log("envtwin"), "")
    else:
        proc = make("twin", f"REQUIREMENTS={pure}", timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "the twins have the same files" in out, explain(proc, command)
    assert "comparing the root file systems of the SIF built from scripts/image/Apptainer.env.def" in out, \
        explain(proc, command)
    # Apptainer built the environment on the kit's SIF, nothing of the kit's again: its own %post ran derive.sh's
    # steps, and the kit's SIF came from make sif (its cache).
    assert re.search(r"building the SIF for the environment from build/env/[0-9a-f]{16}/Apptainer\.def", out), \
        explain(proc, command)
    assert "derive.sh install" in out and "derive.sh finish" in out, explain(proc, command)
    assert "Traceback" not in out, explain(proc, command)


@pytest.mark.prebuilt("envtwin")
def test_a_hash_pinned_environment_is_rebuilt_to_the_same_files(docker_image: str) -> None:
    """make reproduce REQUIREMENTS=...: the environment's image rebuilt on the same kit image without the build
    cache has the same files (tests/envs/pure.txt is pinned with its hash); the scratch image goes, the kit's
    image and the environment's stay. Run in the background after the twin (conftest.PREBUILDS "envtwin")."""
    pure = "tests/envs/pure.txt"
    command = f"make reproduce REQUIREMENTS={pure}"
    image = derived_names(pure)[0]
    before = docker.image_id(docker_image), docker.image_id(image)
    if wait_for_prebuild("envtwin") == 0:
        proc = subprocess.CompletedProcess(["make", "reproduce"], 0, prebuild_log("envtwin"), "")
    else:
        proc = make("reproduce", f"REQUIREMENTS={pure}", timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"rebuilding {image} (" in out and "identical:" in out, explain(proc, command)
    assert "note: not pinned" not in out and "Traceback" not in out, explain(proc, command)
    assert (docker.image_id(docker_image), docker.image_id(image)) == before, "an image changed"
    assert not docker.image_exists(f"mpi4py-kit-reproduce:env-{image.rpartition('-')[2]}"), "the rebuild is left"
