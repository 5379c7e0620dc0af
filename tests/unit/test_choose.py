"""The runtime-choice table: what each RUNTIME picks, given what the host offers."""

from __future__ import annotations

import pytest
from mpikit.choose import Host, choose
from mpikit.ui import MissingPrerequisite


def engine() -> None:
    """An engine answers: no problem to report."""


def no_engine() -> str:
    return "no docker command on PATH"


def host(slurm_job=None, srun=False, apptainer=None, docker=no_engine) -> Host:
    return Host(slurm_job=slurm_job, srun=srun, apptainer=apptainer, docker_problem=docker)


@pytest.mark.parametrize("offers,want", [
    (host("42", True, "/usr/bin/apptainer", engine), "srun"),  # in an allocation, with Apptainer
    (host("42", True, None, engine), "docker"),  # allocation but no Apptainer
    (host(None, True, "/usr/bin/apptainer", engine), "apptainer"),  # login node, outside an allocation
    (host("42", False, "/usr/bin/apptainer", no_engine), "apptainer"),  # SLURM_JOB_ID but no srun
    (host(None, False, None, engine), "docker"),  # a laptop with Docker
    (host(None, False, None, no_engine), "native"),  # a fresh machine
])
def test_auto(offers: Host, want: str) -> None:
    choice = choose("auto", offers)
    assert choice.runtime == want and choice.why.startswith("auto: ")


def test_auto_says_why_it_fell_back_to_native() -> None:
    assert "no Docker engine (no docker command on PATH)" in choose("auto", host()).why


def test_asked_runtimes_are_taken_when_possible() -> None:
    full = host("7", True, "/usr/bin/apptainer", engine)
    for runtime in ("native", "docker", "apptainer", "srun", "cluster"):
        assert choose(runtime, full).runtime == runtime
    assert choose("srun", full).why == "RUNTIME=srun (allocation 7)"
    assert choose("srun", host(None, True, "/usr/bin/apptainer")).why == "RUNTIME=srun (srun asks for an allocation)"


@pytest.mark.parametrize("runtime,offers,words", [
    ("docker", host(), "RUNTIME=docker needs a Docker engine, but no docker command on PATH"),
    ("apptainer", host(), "RUNTIME=apptainer needs apptainer on PATH"),
    ("srun", host("1", True, None), "RUNTIME=srun needs srun and apptainer on PATH (no apptainer on PATH)"),
    ("srun", host("1", False, "/usr/bin/apptainer"), "(no srun on PATH)"),
])
def test_missing_prerequisites(runtime: str, offers: Host, words: str) -> None:
    with pytest.raises(MissingPrerequisite) as caught:
        choose(runtime, offers)
    assert words in str(caught.value)


def test_the_engine_is_asked_only_when_needed() -> None:
    def explode() -> str:
        raise AssertionError("docker was asked")

    assert choose("native", host(docker=explode)).runtime == "native"
    assert choose("auto", host(apptainer="/usr/bin/apptainer", docker=explode)).runtime == "apptainer"
