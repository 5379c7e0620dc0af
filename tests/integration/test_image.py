"""Facts about the Docker image: each test runs one command in it and checks one fact."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import explain, stdlib_check
from mpikit import config, docker, knobs


def in_image(image: str, *cmd: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([docker.client(), "run", "--rm", *options, image, *cmd],
                          capture_output=True, text=True, timeout=120)


def test_runs_as_a_non_root_user(docker_image: str) -> None:
    proc = in_image(docker_image, "id", "-u")
    assert proc.returncode == 0 and proc.stdout.strip() not in ("", "0"), explain(proc, "id -u")


def test_user_site_packages_cannot_shadow_the_image(docker_image: str, tmp_path) -> None:
    """A numpy planted in ~/.local (a bind-mounted cluster home) must not be imported."""
    info = in_image(docker_image, "python", "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
    site = tmp_path / ".local" / "lib" / f"python{info.stdout.strip()}" / "site-packages" / "numpy"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("raise SystemExit('user site numpy was imported')\n")
    tmp_path.chmod(0o755)
    for p in tmp_path.rglob("*"):
        p.chmod(0o755)
    proc = in_image(docker_image, "python", "-c", "import numpy; print(numpy.__file__)",
                    options=("-v", f"{tmp_path}:/home/mpi", "-e", "HOME=/home/mpi"))
    assert proc.returncode == 0 and proc.stdout.startswith("/opt/venv/"), explain(proc, "import numpy")
    env = in_image(docker_image, "printenv", "PYTHONNOUSERSITE")
    assert env.stdout.strip() == "1"


def test_mpi4py_uses_the_images_open_mpi(docker_image: str) -> None:
    versions = config.read_versions()
    want = config.upstream_version(versions[f"OPENMPI_DEB_{config.default_base()}"])
    proc = in_image(docker_image, "python", "-m", "mpi4py", "--mpi-lib-version")
    assert f"Open MPI v{want}" in proc.stdout and "Debian" in proc.stdout, explain(proc, "mpi4py --mpi-lib-version")
    ldd = in_image(docker_image, "sh", "-c", "ldd /opt/venv/lib/python3*/site-packages/mpi4py/MPI*.so")
    assert re.search(r"libmpi\.so\.\d+ => (/usr)?/lib/x86_64-linux-gnu/|libmpi\.so\.\d+ => (/usr)?/lib/aarch64",
                     ldd.stdout), explain(ldd, "ldd mpi4py/MPI*.so")


def test_open_mpi_has_pmix_and_slurm_support(docker_image: str) -> None:
    """Debian builds Open MPI against the external PMIx with Slurm support:
    what lets the host's srun start the ranks (srun --mpi=pmix)."""
    proc = in_image(docker_image, "ompi_info", "--parsable", "--config")
    assert proc.returncode == 0, explain(proc, "ompi_info --config")
    configure = next(line for line in proc.stdout.splitlines() if "--with-" in line)
    assert "'--with-pmix=external'" in configure, configure
    assert "'--with-slurm'" in configure, configure


def test_labels_carry_the_pinned_versions(docker_image: str) -> None:
    proc = subprocess.run([docker.client(), "image", "inspect", docker_image],
                          capture_output=True, text=True, check=True)
    labels = json.loads(proc.stdout)[0]["Config"]["Labels"]
    for key, value in config.stack_labels(config.default_base()).items():
        assert labels.get(key) == value, f"label {key}: {labels.get(key)!r} != {value!r}"


def test_manifest_matches_the_pins(docker_image: str) -> None:
    proc = in_image(docker_image, "cat", "/opt/mpi4py-kit/stack.env")
    manifest = dict(line.split("=", 1) for line in proc.stdout.split())
    base = config.default_base()
    versions, pins = config.read_versions(), config.python_pins()
    assert manifest["BASE"] == base
    assert manifest["OPENMPI_DEB"] == versions[f"OPENMPI_DEB_{base}"]
    assert manifest["PMIX_DEB"] == versions[f"PMIX_DEB_{base}"]
    assert manifest["MPI4PY_VERSION"] == pins["mpi4py"]
    assert manifest["NUMPY_VERSION"] == pins["numpy"]
    installed = in_image(docker_image, "python", "-c",
                         "import mpi4py, numpy; print(mpi4py.__version__, numpy.__version__)")
    assert installed.stdout.split() == [pins["mpi4py"], pins["numpy"]]


def test_no_compilers_or_build_tools_are_shipped(docker_image: str) -> None:
    proc = in_image(docker_image, "sh", "-c", "command -v gcc cc mpicc cython pip; ls /kit /tmp/wheels 2>&1")
    assert "gcc" not in proc.stdout and "cython" not in proc.stdout and "No such file" in proc.stdout, \
        explain(proc, "command -v gcc cc mpicc cython pip")


def test_the_standard_library_is_compiled_for_the_images_python(docker_image: str) -> None:
    """The runtime step skips Debian's byte-compile, and the stdlib stage compiles the same files (on the
    build host's platform in the Dockerfile): none missing, none stale (a stale .pyc is compiled again in
    memory at every import of every rank, never written: the image is read-only to them)."""
    proc, command = stdlib_check(docker_image)
    assert proc.returncode == 0 and " .pyc files match" in proc.stdout, explain(proc, command)
    assert int(proc.stdout.split()[-4]) > 500, explain(proc, command)


def test_default_command_runs_the_rank_example(docker_image: str) -> None:
    proc = subprocess.run([docker.client(), "run", "--rm", docker_image], capture_output=True,
                          text=True, timeout=120)
    assert "check passed: 2 ranks" in proc.stdout, explain(proc, f"docker run --rm {docker_image}")


def test_no_ca_bundle_in_any_layer(docker_image: str, tmp_path) -> None:
    """The proxy CA passed as a build secret must not be in any layer."""
    ca = knobs.pip_ca_cert(os.environ, Path.home())
    if ca is None:
        pytest.skip("this build had no CA bundle to leak (no PIP_CERT/SSL_CERT_FILE)")
    pem = open(ca).read()
    certs = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
    # The bundle's base64 bodies; the image installs no CA store, so any hit is a leak.
    needles = [c.splitlines()[5].encode() for c in certs if len(c.splitlines()) > 6][-20:]
    archive = tmp_path / "image.tar"
    subprocess.run([docker.client(), "save", "-o", str(archive), docker_image], check=True, timeout=300)
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.name.endswith(".tar"):
                continue
            with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                for item in layer.getmembers():
                    assert "run/secrets" not in item.name and "ca_cert" not in item.name, item.name
                    if item.isfile() and item.size < 5_000_000:
                        data = layer.extractfile(item).read()
                        for needle in needles:
                            assert needle not in data, f"CA certificate data found in {item.name}"
