"""make sif: the Apptainer twin builds unprivileged through spython, runs its
%test, carries the pins as labels, shows its %help and runs the examples."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, assert_example, explain
from mpikit import apptainer, config, knobs

# Every test here needs a SIF; some ask for theirs by name (request.getfixturevalue), which the
# markers set from fixture names cannot see.
pytestmark = [pytest.mark.docker, pytest.mark.sif]


def in_sif(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """apptainer ARGS on the host's Apptainer, else inside the helper container."""
    return subprocess.run(apptainer.apptainer_argv(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("base", ["trixie", "bookworm"])
def test_labels_carry_the_pinned_versions(base: str, request) -> None:
    """Read through the kit's spython adapter (Client.inspect), as the kit reads them."""
    sif = request.getfixturevalue("sif" if base == config.default_base() else "sif_bookworm")
    labels = apptainer.inspect_labels(ROOT / sif)
    for key, value in config.stack_labels(base).items():
        assert labels.get(key) == value, f"label {key}: {labels.get(key)!r} != {value!r}"


def test_run_help_shows_the_cluster_command(sif: str) -> None:
    proc = in_sif("run-help", sif)
    assert "srun --ntasks=4 --mpi=pmix apptainer exec mpi.sif" in proc.stdout, \
        explain(proc, f"apptainer run-help {sif}")


def test_the_scatter_example_runs_in_the_sif(sif: str) -> None:
    proc = in_sif("exec", sif, "mpiexec", "--oversubscribe", "-n", "3", "python", "-m", "mpi4py",
                  "examples/scatter_gather.py", "--size", "1001", "--seed", "3")
    assert_example("scatter", proc, 3, f"apptainer exec {sif} mpiexec -n 3 ...", 1001)


def test_no_build_inputs_or_ca_bundle_in_the_sif(sif: str) -> None:
    """/kit (pins, install steps, the staged CA bundle) is removed in %post; no CA certificate body
    from the build's bundle is anywhere the build wrote."""
    ca = knobs.pip_ca_cert(os.environ, Path.home())
    needles = []
    if ca:
        certs = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", open(ca).read(), re.S)
        needles = [c.splitlines()[5] for c in certs if len(c.splitlines()) > 6][-5:]
    script = "test ! -e /kit || { echo /kit exists; exit 1; }; " + "".join(
        f"if grep -rqsF -e '{n}' /etc /opt /root /usr/local /var /home; then echo CA data found; exit 1; fi; "
        for n in needles)
    proc = in_sif("exec", sif, "sh", "-c", script)
    assert proc.returncode == 0, explain(proc, f"apptainer exec {sif} sh -c '{script[:80]}...'")


def test_spython_adapter_runs_a_command_in_the_sif(sif: str) -> None:
    """Client.execute through the adapter: the image's own Python and mpi4py."""
    code, output = apptainer.execute(ROOT / sif, ["python", "-c", "import mpi4py; print(mpi4py.__version__)"])
    assert code == 0 and config.python_pins()["mpi4py"] in output, output
