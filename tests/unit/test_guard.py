"""The image's launch guard (scripts/image/site/mpi4py_kit_guard.py): which process it judges, what it
counts as the step's tasks, how it finds the loaded library, and what it says. Its effect on real
srun lines is tested on the test cluster (tests/integration/test_cluster.py)."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
from mpikit.config import ROOT

SITE = ROOT / "scripts" / "image" / "site"


@pytest.fixture()
def guard(monkeypatch: pytest.MonkeyPatch):
    """The module, loaded without its import-time install() touching this test process."""
    spec = importlib.util.spec_from_file_location("guard_under_test", SITE / "mpi4py_kit_guard.py")
    module = importlib.util.module_from_spec(spec)
    before = list(sys.meta_path)
    monkeypatch.setenv("MPI4PY_KIT_GUARD", "0")
    spec.loader.exec_module(module)
    assert sys.meta_path == before
    return module


def test_the_steps_tasks_come_from_the_step_never_the_job(guard) -> None:
    assert guard.step_tasks({"SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "8"}) == 4
    assert guard.step_tasks({"PMI_SIZE": "3"}) == 3
    # a batch script's serial step, an salloc shell: the job's count only
    assert guard.step_tasks({"SLURM_NTASKS": "8", "SLURM_JOB_ID": "7"}) == 0
    # Open MPI's mpiexec started it: its own world is the truth, whatever Slurm's variables say
    assert guard.step_tasks({"SLURM_STEP_NUM_TASKS": "4", "OMPI_COMM_WORLD_SIZE": "1"}) == 0
    assert guard.step_tasks({}) == 0


def test_only_the_task_srun_started_is_watched(guard) -> None:
    env = {"SLURM_STEP_NUM_TASKS": "4"}
    guard.STACK = "/nonexistent"
    watching_before = len(sys.meta_path)
    try:
        assert guard.install(env) is True
        assert env[guard.MARK] == str(os.getpid())
        # a Python the rank starts inherits the mark of another PID: not a task
        child = {"SLURM_STEP_NUM_TASKS": "4", guard.MARK: "1"}
        assert guard.install(child) is False
        assert guard.install({"SLURM_STEP_NUM_TASKS": "4", guard.SWITCH: "0"}) is False
        # no step, no image: nothing to watch
        assert guard.install({"SLURM_NTASKS": "4"}) is False
    finally:
        sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_Watch"]
    assert len(sys.meta_path) == watching_before


def test_the_loaded_library_is_found_in_the_maps(guard) -> None:
    maps = ("7f00-7f01 r-xp 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
            "7f02-7f03 r-xp 00000000 08:01 13 /opt/site/mpich/lib/libmpi.so.12.5.0\n"
            "7f04-7f05 rw-p 00000000 00:00 0\n")
    assert guard.loaded_libmpi(maps) == "/opt/site/mpich/lib/libmpi.so.12.5.0"
    assert guard.loaded_libmpi("7f-7f r-xp 0 0:0 1 /opt/x/lib/libmpi_abi.so.1\n") == "/opt/x/lib/libmpi_abi.so.1"
    assert guard.loaded_libmpi("7f-7f r-xp 0 0:0 1 /usr/lib/libmpich_other.so\n") == ""
    assert guard.is_image_library("/usr/lib/x86_64-linux-gnu/libmpi.so.40.40.7")
    assert not guard.is_image_library("/opt/site/mpich/lib/libmpi.so.12")


def test_the_messages_name_what_happened_and_the_fix(guard) -> None:
    said = guard.unwired_message(4, "none")
    assert "srun started 4 tasks, but MPI sees a world of 1 in each (srun --mpi=none)" in said
    assert "srun --mpi=pmix" in said and "bind model" in said and "MPI4PY_KIT_GUARD=0" in said
    warned = guard.foreign_library_message("/opt/site/lib/libmpi.so.40")
    assert "/opt/site/lib/libmpi.so.40" in warned and "HOST_MPI" in warned


def test_the_bind_models_mark_is_the_one_the_guard_reads(guard) -> None:
    from mpikit import bind

    assert guard.BIND == bind.GUARD_MARK


def test_doctor_turns_off_the_guard_it_diagnoses_for_itself(guard) -> None:
    from mpikit import doctor

    assert doctor.GUARD == guard.SWITCH
