"""The image's SBOM writer (scripts/image/sbom.py, run in the image at the end of the build) and the
kit's reading of it: parsing dpkg's and the lock's records, vouching for every Python artifact, a valid
and deterministic CycloneDX document, and its path held equal everywhere it is named."""

from __future__ import annotations

import json
import re
import sys

import pytest
from mpikit import bind, config
from mpikit import sbom as sbom_io

sys.path.insert(0, str(config.ROOT / "scripts" / "image"))
import sbom

DPKG = ("openmpi-bin\t5.0.7-1\tamd64\topenmpi\t5.0.7-1\n"
        "libpmix2t64:amd64\t5.0.7-1\tamd64\tpmix\t5.0.7-1\n"
        "libucx0\t1.18.1+ds-2\tamd64\tucx\t1.18.1+ds-2\n"
        "libfabric1\t2.1.0-1.1\tamd64\tlibfabric\t2.1.0-1.1\n"
        "bash\t5.2.37-2+b5\tamd64\tbash\t5.2.37-2\n"
        "tzdata\t2025b-4\tall\t\t\n"
        "libgcc-s1\t1:14.2.0-19\tamd64\tgcc-14\t14.2.0-19\n")


def lock() -> dict:
    return sbom.parse_lock((config.REQUIREMENTS / "image.txt").read_text())


def numpy_dist(sha256: str | None = None) -> sbom.Dist:
    version, hashes = lock()["numpy"]
    return sbom.Dist("numpy", version, "/opt/venv/lib/python3.13/site-packages", sha256 or sorted(hashes)[0])


def test_dpkg_lines_give_name_version_arch_and_source() -> None:
    debs = {d.name: d for d in sbom.parse_dpkg(DPKG)}
    assert debs["libpmix2t64"].arch == "amd64"  # binary:Package's :amd64 dropped from the name
    assert (debs["bash"].source, debs["bash"].source_version) == ("bash", "5.2.37-2")  # a binNMU
    assert (debs["tzdata"].source, debs["tzdata"].source_version) == ("tzdata", "2025b-4")  # no source field
    assert debs["libgcc-s1"].version == "1:14.2.0-19"


def test_the_lock_is_read_with_every_hash() -> None:
    pins = lock()
    assert pins["numpy"][0] == config.python_pins()["numpy"]
    assert pins["mpi4py"][0] == config.python_pins()["mpi4py"]
    text = (config.REQUIREMENTS / "image.txt").read_text()
    assert sum(len(h) for _, h in pins.values()) == len(re.findall(r"--hash=sha256:", text))


def test_a_wheel_is_vouched_for_by_its_hash_in_the_lock() -> None:
    assert sbom.artifact(numpy_dist(), lock(), [])[1] == "wheel"


def test_a_dist_built_in_the_image_is_vouched_for_by_its_sdist() -> None:
    version, hashes = lock()["mpi4py"]
    sdist = sorted(hashes)[0]
    built = sbom.Dist("mpi4py", version, "/opt/venv/lib/python3.13/site-packages", "f" * 64)
    sources = sbom.parse_sources(f"mpi4py {version} mpi4py-{version}.tar.gz {sdist} sdist\n"
                                 f"mpi4py {version} mpi4py-{version}-cp313-cp313-linux_x86_64.whl {'f' * 64} venv\n")
    how = f"built in the image from the sdist mpi4py-{version}.tar.gz"
    assert sbom.artifact(built, lock(), sources) == (sdist, how)


def test_a_wheel_without_pips_record_is_vouched_for_by_the_builds() -> None:
    """Bookworm's pip 23.0 writes no direct_url.json for a wheel installed from a file: install.sh's record."""
    version, hashes = lock()["numpy"]
    wheel, other = sorted(hashes)[:2]
    dist = sbom.Dist("numpy", version, "/opt/venv/lib/python3.11/site-packages", None)
    sources = sbom.parse_sources(f"numpy {version} numpy-{version}-cp311.whl {other} abi\n"
                                 f"numpy {version} numpy-{version}-cp311.whl {wheel} venv\n")
    assert sbom.artifact(dist, lock(), sources) == (wheel, "wheel")
    with pytest.raises(ValueError, match="does not list"):
        sbom.artifact(dist, lock(), sources[:1])  # only a record for another place


@pytest.mark.parametrize("dist, why", [
    (sbom.Dist("numpy", "2.3.5", "/x", "0" * 64), "an artifact the lock does not list"),
    (sbom.Dist("numpy", "0.0.1", "/x", None), "the lock pins"),
    (sbom.Dist("requests", "2.0", "/x", None), "in no lock file"),
])
def test_an_artifact_the_lock_cannot_vouch_for_fails_the_build(dist: sbom.Dist, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        sbom.artifact(dist, lock(), [])


def document(debs_text: str = DPKG, dists: list | None = None) -> str:
    return sbom.render(sbom.build(sbom.parse_dpkg(debs_text), dists or [numpy_dist()], lock(), [], "trixie",
                                  "linux/amd64", 1764547200))


def test_the_document_is_valid_cyclonedx_and_lists_every_package() -> None:
    text = document()
    assert sbom_io.validate(text) is None
    doc = json.loads(text)
    by = sbom_io.kinds(doc)
    assert sorted(c["name"] for c in by["deb"]) == sorted(d.name for d in sbom.parse_dpkg(DPKG))
    assert [c["purl"] for c in by["pypi"]] == [f"pkg:pypi/numpy@{lock()['numpy'][0]}"]
    gcc = next(c for c in by["deb"] if c["name"] == "libgcc-s1")
    assert gcc["purl"] == "pkg:deb/debian/libgcc-s1@1:14.2.0-19?arch=amd64&distro=debian-trixie"
    assert {c["name"]: c["version"] for c in by["mpi-stack"]} == {
        "Open MPI": "5.0.7", "PMIx": "5.0.7", "UCX": "1.18.1+ds", "libfabric": "2.1.0"}
    assert doc["metadata"]["timestamp"].startswith("2025-12-01T00:00:00")


def test_the_same_inputs_write_the_same_bytes_and_a_change_a_new_serial() -> None:
    first, again = document(), document()
    assert first == again
    other = document(DPKG.replace("5.2.37-2+b5", "5.2.37-2+b6"))
    assert json.loads(other)["serialNumber"] != json.loads(first)["serialNumber"]


def test_the_variant_abis_are_the_bind_models() -> None:
    """What the SBOM says each mpi4py variant loads is what the bind model loads it for."""
    family_of_variant = {variant: family for family, variant in bind.VARIANTS.items()}
    for variant, abi in sbom.VARIANT_ABI.items():
        soname = re.search(r"\((lib[\w.]+)\)", abi).group(1)
        expected = family_of_variant.get(variant, "openmpi")
        assert bind.FAMILIES[soname] == expected, (variant, abi)
    assert sbom.ABI_MPI4PY == bind.ABI_MPI4PY


def test_the_sbom_path_is_one_fact() -> None:
    assert sbom.SBOM_PATH == config.SBOM_PATH
    dockerfile = (config.ROOT / "Dockerfile").read_text()
    assert f'{config.SBOM_LABEL}="{config.SBOM_PATH}"' in dockerfile
    assert re.search(rf"^\s+{re.escape(config.SBOM_LABEL)} {re.escape(config.SBOM_PATH)}$",
                     (config.ROOT / "Apptainer.def").read_text(), re.M)
    assert f"write {config.SBOM_PATH} " in (config.ROOT / "scripts" / "image" / "install.sh").read_text()


def test_variants_are_found_in_the_records() -> None:
    dist = sbom.Dist("mpi4py", "4.1.2", "/opt/venv/lib/python3.13/site-packages", None,
                     ("mpi4py/__init__.py", "mpi4py/MPI.cpython-313-x86_64-linux-gnu.so", "mpi4py/MPI.pxd"))
    wheel = sbom.Dist("mpi4py", "4.1.2", "/nowhere/mpi4py-abi", None,
                      ("mpi4py/MPI.mpich.cpython-313-x86_64-linux-gnu.so",
                       "mpi4py/MPI.openmpi.cpython-313-x86_64-linux-gnu.so"))
    assert [(v, f.split("/")[-1]) for _, f, v in sbom.variants([dist, wheel])] == [
        ("", "MPI.cpython-313-x86_64-linux-gnu.so"), ("mpich", "MPI.mpich.cpython-313-x86_64-linux-gnu.so"),
        ("openmpi", "MPI.openmpi.cpython-313-x86_64-linux-gnu.so")]


@pytest.mark.parametrize("direct_url, sha256", [
    ({"archive_info": {"hash": "sha256=" + "a" * 64, "hashes": {"sha256": "a" * 64}}, "url": "file:///w"}, "a" * 64),
    ({"archive_info": {"hash": "sha256=" + "b" * 64}, "url": "file:///x.whl"}, "b" * 64),  # bookworm's pip 23.0
    ({"archive_info": {"hash": "md5=" + "c" * 32}}, None),
    ({"dir_info": {}, "url": "file:///src"}, None),
])
def test_the_artifact_hash_is_read_from_either_direct_url_format(direct_url: dict, sha256: str | None) -> None:
    assert sbom.archive_sha256(direct_url) == sha256
