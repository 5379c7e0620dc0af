"""The twin rule, proven on every run: make sif makes the SIF from the Docker image where an engine answers
(SIF_FROM=auto), and `make twin` shows that SIF has the files Apptainer.def builds (SIF_FROM=recipe): every path,
type, mode, link target and content, and the definition's run-time files byte for byte. Apptainer.def is built in
the background from the session's start (conftest.PREBUILDS); this test runs after the others and waits for it."""

from __future__ import annotations

import pytest
from conftest import explain, make, wait_for_prebuild
from mpikit import apptainer, config, docker
from mpikit.config import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.sif, pytest.mark.prebuilt("recipe"), pytest.mark.timeout(3600)]


def test_the_default_sif_is_made_from_the_image_docker_runs(docker_image: str, sif: str) -> None:
    """The inputs label of the image rides along into the SIF made from it: the very image, not a rebuild."""
    labels = apptainer.inspect_labels(ROOT / sif)
    assert labels.get(docker.INPUTS_LABEL) == docker.image_label(docker_image, docker.INPUTS_LABEL), labels
    assert {k: labels.get(k) for k in config.stack_labels(config.default_base())} == \
        config.stack_labels(config.default_base()), labels


def test_the_sif_made_from_the_image_has_the_files_apptainer_def_builds(docker_image: str) -> None:
    wait_for_prebuild("recipe")
    proc = make("twin", timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "the twins have the same files" in out, explain(proc, "make twin")
    # Both came from the cache (the image's SIF from the session's make sif, Apptainer.def's from the
    # background build) and each passed its %test again.
    assert out.count("%test passed") == 2, explain(proc, "make twin")
