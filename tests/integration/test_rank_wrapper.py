"""The judgements scripts/launch/apptainer-rank.sh makes on every rank, each shell function run by bash on its
own (no container, no Slurm: a few ms each)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

WRAPPER = Path(__file__).resolve().parents[2] / "scripts" / "launch" / "apptainer-rank.sh"


def function(name: str) -> str:
    """The text of one shell function of the wrapper."""
    text = WRAPPER.read_text()
    start = text.index(f"\n{name}() {{\n") + 1
    return text[start:text.index("\n}\n", start) + 3]


def tasks_here(spec: str | None, node: str | None) -> str:
    env = {"PATH": "/usr/bin:/bin"}
    if spec is not None:
        env["SLURM_STEP_TASKS_PER_NODE"] = spec
    if node is not None:
        env["SLURM_NODEID"] = node
    script = function("tasks_here") + 'set -euo pipefail\ntasks_here\nprintf "%s" "$here"\n'
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=10, check=True)
    return proc.stdout


@pytest.mark.parametrize(("spec", "counts"), [
    ("3,2", ["3", "2", "", ""]),
    ("2(x2)", ["2", "2", "", ""]),
    ("1(x2),3", ["1", "1", "3", ""]),
    ("3(x2),1", ["3", "3", "1", ""]),
    ("16", ["16", "", "", ""]),
])
def test_tasks_on_this_node_from_slurms_step_layout(spec: str, counts: list[str]) -> None:
    assert [tasks_here(spec, str(node)) for node in range(4)] == counts


@pytest.mark.parametrize(("spec", "node"), [(None, "0"), ("2(x2)", None), ("2(x2)", "x"), ("two", "0"), ("", "0")])
def test_an_unknown_layout_is_not_guessed(spec: str | None, node: str | None) -> None:
    """Without Slurm's word, a node might have several ranks: join keeps its holder."""
    assert tasks_here(spec, node) == ""
