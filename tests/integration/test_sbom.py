"""make sbom: the CycloneDX document inside each image and SIF, reconciled with what the image holds:
every package dpkg-query -W shows and every Python distribution in the venv and in the bind model's
second mpi4py, versions equal, nothing more; schema-valid; the SIF's twin lists the same packages."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import explain, kit, make, wait_for_prebuild
from mpikit import config, docker
from mpikit import sbom as sbom_io


def written(proc: subprocess.CompletedProcess, command: str) -> dict:
    assert proc.returncode == 0, explain(proc, command)
    assert "Traceback" not in proc.stdout + proc.stderr, explain(proc, command)
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.suffix == ".json", explain(proc, command)
    assert sbom_io.validate(path.read_text()) is None
    return json.loads(path.read_text())


def in_image(image: str, *argv: str) -> str:
    proc = subprocess.run([docker.command(), "run", "--rm", "--entrypoint", argv[0], image, *argv[1:]],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, explain(proc, f"docker run --rm {image} {' '.join(argv)}")
    return proc.stdout


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def packages(doc: dict) -> tuple[set, set]:
    """The SBOM's Debian packages (name, version, arch) and Python distributions (name, version, folder)."""
    by = sbom_io.kinds(doc)

    def prop(c: dict, name: str) -> str:
        return next(p["value"] for p in c["properties"] if p["name"] == f"mpi4py-kit:{name}")

    return ({(c["name"], c["version"], prop(c, "arch")) for c in by["deb"]},
            {(normalize(c["name"]), c["version"], prop(c, "path")) for c in by["pypi"]})


@pytest.mark.parametrize("base", config.supported_bases())
def test_the_sbom_lists_every_package_in_the_image(base: str, docker_image: str, tmp_path: Path) -> None:
    image = f"{config.image_name()}:{base}"
    if base != config.default_base():
        wait_for_prebuild(base)  # the background build of it, when the session started one
        build = kit("image", "--base", base, timeout=1800)
        assert build.returncode == 0, explain(build, f"make image BASE={base}")
    doc = written(make("sbom", "RUNTIME=docker", f"BASE={base}", timeout=300, MPIKIT_RESULTS=str(tmp_path)),
                  f"make sbom RUNTIME=docker BASE={base}")
    debs, dists = packages(doc)

    dpkg = in_image(image, "dpkg-query", "-W", "-f", "${binary:Package}\\t${Version}\\t${Architecture}\\n")
    assert debs == {(n.split(":")[0], v, a) for n, v, a in (line.split("\t") for line in dpkg.splitlines())}
    # The distributions as their folders name them (NAME-VERSION.dist-info), found by the shell: an
    # account independent of the importlib.metadata the SBOM's writer uses.
    found = in_image(image, "sh", "-c", "ls -d /opt/venv/lib/python3*/site-packages/*.dist-info "
                                        "/opt/venv/mpi4py-abi/*.dist-info")
    listed = set()
    for path in found.split():
        folder, _, info = path.rpartition("/")
        name, version = info.removesuffix(".dist-info").rsplit("-", 1)
        listed.add((normalize(name), version, folder))
    assert dists == listed
    pins = config.python_pins()
    assert {(n, v) for n, v, _ in dists} == {("mpi4py", pins["mpi4py"]), ("numpy", pins["numpy"])}

    # The MPI stack: its parts at the pinned versions, and each mpi4py variant with the hash of its file.
    stack = {c["name"]: c for c in sbom_io.kinds(doc)["mpi-stack"]}
    versions = config.read_versions()
    assert stack["Open MPI"]["version"] == config.upstream_version(versions[f"OPENMPI_DEB_{base}"])
    assert stack["PMIx"]["version"] == config.upstream_version(versions[f"PMIX_DEB_{base}"])
    assert {"UCX", "libfabric"} <= set(stack)
    variants = {c["name"]: c for c in stack.values() if c["name"].startswith("mpi4py.MPI")}
    assert set(variants) == {f"mpi4py.MPI ({v})" for v in ("the image build", "mpich", "openmpi", "mpiabi")}
    paths = {next(p["value"] for p in c["properties"] if p["name"] == "mpi4py-kit:path"): c["hashes"][0]["content"]
             for c in variants.values()}
    sums = in_image(image, "sha256sum", *paths)
    assert {line.split()[1]: line.split()[0] for line in sums.splitlines()} == paths


def test_the_sif_carries_the_same_packages_as_its_docker_twin(sif: str, docker_image: str, tmp_path: Path) -> None:
    from_sif = written(make("sbom", "RUNTIME=apptainer", f"SIF={sif}", timeout=300, MPIKIT_RESULTS=str(tmp_path)),
                       f"make sbom RUNTIME=apptainer SIF={sif}")
    from_image = written(make("sbom", "RUNTIME=docker", timeout=300, MPIKIT_RESULTS=str(tmp_path)),
                         "make sbom RUNTIME=docker")
    assert packages(from_sif) == packages(from_image)
    assert (tmp_path / "sbom" / f"{Path(sif).stem}.cdx.json").is_file()


def test_an_image_without_the_file_is_refused_in_one_line(docker_image: str) -> None:
    proc = make("sbom", "RUNTIME=docker", "IMAGE=mpi4py-kit:no-such-tag", timeout=60)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "no image mpi4py-kit:no-such-tag" in errors[0], \
        explain(proc, "make sbom RUNTIME=docker IMAGE=mpi4py-kit:no-such-tag")
    assert "Traceback" not in proc.stdout + proc.stderr
