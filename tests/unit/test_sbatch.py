"""make sbatch's batch script, and slurm/example.sbatch, which is its output for the scatter."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpikit import apptainer, choose, commands, knobs, prepare, runtimes, slurm
from mpikit.config import ROOT

EXAMPLE = ROOT / "slurm" / "example.sbatch"


@pytest.fixture()
def on_a_login_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster's login node: srun (with pmix) and apptainer on PATH."""
    monkeypatch.setattr(prepare, "choose_runtime", lambda settings: choose.Choice("srun", "RUNTIME=srun"))
    monkeypatch.setattr(slurm, "offered_plugins", lambda runtime: ["pmi2", "pmix"])
    monkeypatch.setattr(apptainer, "supports_sharens", lambda command: True)
    monkeypatch.setattr(runtimes, "host_apptainer", lambda: "apptainer")


def settings(**given: str) -> knobs.Settings:
    raw = knobs.raw_values({}, {"RUNTIME": "srun", **given})
    return knobs.read("sbatch", raw, ROOT)


def render_example() -> str:
    return commands.batch_text(settings(SCRIPT="examples/scatter_gather.py"), relative=True)


def test_the_example_batch_script_is_make_sbatchs_output(on_a_login_node: None) -> None:
    assert EXAMPLE.read_text() == render_example(), (
        "slurm/example.sbatch differs from make sbatch's output; rewrite it with: .venv/bin/python -c "
        "'import sys; sys.path.insert(0, \"tests/unit\"); sys.path.insert(0, \"scripts\"); ...' "
        "(tests/unit/test_sbatch.py: render_example)")


def test_the_script_asks_for_the_ranks_and_runs_the_kits_line(on_a_login_node: None) -> None:
    text = commands.batch_text(settings(SCRIPT="examples/rank.py", NP="8", NODES="2", ARGS="--x 1"))
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --ntasks=8" in lines and "#SBATCH --nodes=2" in lines
    srun = lines[-1]
    assert srun.startswith("srun --nodes=2 --ntasks=8 --mpi=pmix ")
    assert f"{ROOT}/scripts/launch/apptainer-rank.sh join {ROOT}/mpi.sif -- python -m mpi4py examples/rank.py " \
           "--x 1" in srun
    assert "$TMPDIR" in text and "$SCRATCH" in text
    # oversubscription is known only when the job runs: the yield is set there, from SLURM_OVERCOMMIT
    assert 'if [ "${SLURM_OVERCOMMIT:-0}" = 1 ]; then export OMPI_MCA_mpi_yield_when_idle=1; fi' in lines


def test_only_slurm_runtimes_get_a_batch_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "choose_runtime", lambda settings: choose.Choice("docker", "RUNTIME=docker"))
    monkeypatch.setattr(prepare, "ready", lambda settings, runtime: None)
    with pytest.raises(Exception, match=r"RUNTIME=srun .* or cluster"):
        commands.batch_text(settings(SCRIPT="examples/rank.py"))


def write_example() -> Path:  # pragma: no cover - run by hand after changing the kit's line
    EXAMPLE.write_text(render_example())
    return EXAMPLE


def test_auto_means_srun_for_a_batch_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a login node RUNTIME=auto would pick apptainer (no allocation): a batch script is srun's."""
    seen = []
    monkeypatch.setattr(prepare, "choose_runtime", lambda s: seen.append(s.runtime) or choose.Choice("srun", "x"))
    monkeypatch.setattr(slurm, "offered_plugins", lambda runtime: ["pmix"])
    monkeypatch.setattr(apptainer, "supports_sharens", lambda command: True)
    monkeypatch.setattr(runtimes, "host_apptainer", lambda: "apptainer")
    raw = knobs.raw_values({}, {"SCRIPT": "examples/rank.py"})
    commands.batch_text(knobs.read("sbatch", raw, ROOT))
    assert seen == ["srun"]
