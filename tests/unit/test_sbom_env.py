"""The SBOM of a user's environment (scripts/image/sbom_env.py, run in the environment's image by derive.sh):
the kit's document with the Debian packages read again and every distribution pip installed, each vouched for by
its installation report (the file's hash, or the local folder or sdist it was built from); schema-valid and
deterministic; a distribution nobody installed fails the build."""

from __future__ import annotations

import json
import sys

import pytest
from mpikit import config
from mpikit import sbom as sbom_io
from test_sbom_writer import DPKG, document, numpy_dist

sys.path.insert(0, str(config.ROOT / "scripts" / "image"))
import sbom
import sbom_env

SITE = "/opt/venv/lib/python3.13/site-packages"
H5PY_SDIST = "a" * 64
SCIPY_WHEEL = "b" * 64
# pip install --report documents as derive.sh writes them: h5py from its sdist (built in the image), scipy a
# wheel from the index, mpirank a local folder of the user's.
REPORTS = [
    {"version": "1", "install": [{"metadata": {"name": "h5py", "version": "3.16.0"},
                                  "download_info": {"url": "https://files.example/h5py-3.16.0.tar.gz",
                                                    "archive_info": {"hashes": {"sha256": H5PY_SDIST}}}}]},
    {"version": "1", "install": [
        {"metadata": {"name": "SciPy", "version": "1.16.3"},
         "download_info": {"url": "https://files.example/scipy-1.16.3-cp313-manylinux_2_28_x86_64.whl",
                           "archive_info": {"hash": f"sha256={SCIPY_WHEEL}"}}},
        {"metadata": {"name": "mpirank", "version": "0.1"},
         "download_info": {"url": "file:///env/src/tests/envs/mpirank", "dir_info": {}}, "is_direct": True}]},
]
NEW_DEB = "libhdf5-openmpi-310\t1.14.5+repack-3\tamd64\thdf5\t1.14.5+repack-3\n"


def environment_dists() -> list:
    return [numpy_dist(), sbom.Dist("h5py", "3.16.0", SITE, None), sbom.Dist("scipy", "1.16.3", SITE, None),
            sbom.Dist("mpirank", "0.1", SITE, None)]


def extended(environment: str = "requirements.txt sha256:1234") -> dict:
    kit = json.loads(document())
    return sbom_env.extend(kit, sbom.parse_dpkg(DPKG + NEW_DEB), environment_dists(),
                           sbom_env.parse_reports(REPORTS), "trixie", environment)


def test_the_reports_say_where_each_distribution_came_from() -> None:
    found = sbom_env.parse_reports(REPORTS)
    assert found["h5py"] == sbom_env.Installed("h5py", "3.16.0", H5PY_SDIST,
                                               "built in the image from the sdist h5py-3.16.0.tar.gz")
    assert found["scipy"] == sbom_env.Installed("scipy", "1.16.3", SCIPY_WHEEL, "wheel")
    assert found["mpirank"] == sbom_env.Installed("mpirank", "0.1", None,
                                                  "built in the image from the local folder tests/envs/mpirank")


def test_the_environments_document_is_valid_and_lists_the_users_packages() -> None:
    doc = extended()
    assert sbom_io.validate(json.dumps(doc)) is None
    by = sbom_io.kinds(doc)
    assert {c["name"] for c in by["pypi"]} == {"numpy", "h5py", "scipy", "mpirank"}
    assert "libhdf5-openmpi-310" in {c["name"] for c in by["deb"]}
    scipy = next(c for c in by["pypi"] if c["name"] == "scipy")
    assert scipy["hashes"] == [{"alg": "SHA-256", "content": SCIPY_WHEEL}]
    assert scipy["purl"] == "pkg:pypi/scipy@1.16.3"
    mpirank = next(c for c in by["pypi"] if c["name"] == "mpirank")
    assert "hashes" not in mpirank
    # The kit's own distributions and MPI stack stay as the kit's document had them.
    kit = json.loads(document())
    numpy = [c for c in sbom_io.kinds(kit)["pypi"] if c["name"] == "numpy"]
    assert [c for c in by["pypi"] if c["name"] == "numpy"] == numpy
    def refs(components: list) -> list:
        return sorted(components, key=lambda c: c["bom-ref"])

    assert refs(by["mpi-stack"]) == refs(sbom_io.kinds(kit)["mpi-stack"])
    # The Debian packages are written again by sbom_env's own code: each one the kit's document had is the same.
    missing = [c for c in sbom_io.kinds(kit)["deb"] if c not in by["deb"]]
    assert not missing, missing[:1] + [c for c in by["deb"] if c["bom-ref"] == missing[0]["bom-ref"]]
    # The image holds every new component; the environment is named in the image's own properties.
    top = next(d for d in doc["dependencies"] if d["ref"] == "mpi4py-kit")
    assert {f"pypi:h5py@3.16.0:{SITE}", "deb:libhdf5-openmpi-310:amd64"} <= set(top["dependsOn"])
    assert {"name": "mpi4py-kit:environment", "value": "requirements.txt sha256:1234"} in \
        doc["metadata"]["component"]["properties"]


def test_the_same_environment_writes_the_same_document_and_another_a_new_serial() -> None:
    assert extended() == extended()
    assert extended()["serialNumber"] != extended("requirements.txt sha256:5678")["serialNumber"]
    assert extended()["serialNumber"] != json.loads(document())["serialNumber"]


def test_a_distribution_no_report_names_fails_the_build() -> None:
    kit = json.loads(document())
    dists = [*environment_dists(), sbom.Dist("tqdm", "4.67.1", SITE, None)]
    with pytest.raises(ValueError, match=r"tqdm 4\.67\.1 in /opt/venv/lib/python3\.13/site-packages: no installation"):
        sbom_env.extend(kit, sbom.parse_dpkg(DPKG), dists, sbom_env.parse_reports(REPORTS), "trixie", "x")
    with pytest.raises(ValueError, match=r"the kit's pypi:numpy@.* is no longer installed"):
        sbom_env.extend(kit, sbom.parse_dpkg(DPKG), environment_dists()[1:], sbom_env.parse_reports(REPORTS),
                        "trixie", "x")
