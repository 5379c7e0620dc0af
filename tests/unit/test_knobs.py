"""Every knob parser, and reading the knobs of a command: good values parse,
bad ones raise one UsageError line before anything happens."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpikit import config, knobs
from mpikit.ui import UsageError


@pytest.mark.parametrize("value,want", [("1", 1), ("4", 4), (" 16 ", 16)])
def test_np_accepts_whole_numbers(value: str, want: int) -> None:
    assert knobs.parse_np(value) == want


@pytest.mark.parametrize("value", ["0", "-1", "abc", "2.5", "", "1e3"])
def test_np_refuses_the_rest(value: str) -> None:
    with pytest.raises(UsageError, match="NP must be a whole number of ranks, 1 or more"):
        knobs.parse_np(value)


def test_runtime() -> None:
    for runtime in knobs.RUNTIMES:
        assert knobs.parse_runtime(runtime) == runtime
    with pytest.raises(UsageError, match="unknown RUNTIME='bogus'; choose one of: auto, native"):
        knobs.parse_runtime("bogus")


def test_base() -> None:
    for base in config.supported_bases():
        assert knobs.parse_base(base) == base
    with pytest.raises(UsageError, match="unsupported BASE='jessie'"):
        knobs.parse_base("jessie")


def test_image_default_and_named() -> None:
    assert knobs.parse_image("", "bookworm") == (f"{config.image_name()}:bookworm", True)
    assert knobs.parse_image("registry.example/me/mpi:1.0", "trixie") == ("registry.example/me/mpi:1.0", False)
    with pytest.raises(UsageError, match="is not a valid image name"):
        knobs.parse_image("Not A Name", "trixie")


def test_sif(tmp_path: Path) -> None:
    assert knobs.parse_sif("x.sif", tmp_path) == tmp_path / "x.sif"
    with pytest.raises(UsageError, match=r"must name a \.sif file"):
        knobs.parse_sif("mpi.img", tmp_path)
    with pytest.raises(UsageError, match=r"the folder .* does not exist"):
        knobs.parse_sif("no/such/mpi.sif", tmp_path)


def test_script(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.py").write_text("")
    (tmp_path / "notes.md").write_text("")
    assert knobs.parse_script("sub/mine.py", tmp_path) == tmp_path / "sub" / "mine.py"
    with pytest.raises(UsageError, match="does not exist"):
        knobs.parse_script("missing.py", tmp_path)
    with pytest.raises(UsageError, match="is not a Python file"):
        knobs.parse_script("notes.md", tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.py"
    outside.write_text("")
    try:
        with pytest.raises(UsageError, match="is outside"):
            knobs.parse_script(str(outside), tmp_path)
    finally:
        outside.unlink()


def test_example_names_and_minimum_ranks() -> None:
    for name, example in config.EXAMPLES.items():
        assert knobs.parse_example(name, example.min_ranks) == example.path
    with pytest.raises(UsageError, match="unknown example 'nosuch'; choose one of: rank, p2p"):
        knobs.parse_example("nosuch", 4)
    with pytest.raises(UsageError, match="needs at least 2 ranks, got NP=1; try make run-p2p NP=2"):
        knobs.parse_example("p2p", 1)


def test_args_and_timeout_and_quick() -> None:
    assert knobs.parse_args("--size '1 2' -x") == ["--size", "1 2", "-x"]
    with pytest.raises(UsageError, match="cannot split ARGS"):
        knobs.parse_args("--size '12")
    assert knobs.parse_timeout("0") is None and knobs.parse_timeout("") is None
    assert knobs.parse_timeout("30") == 30
    with pytest.raises(UsageError, match="TIMEOUT must be a whole number"):
        knobs.parse_timeout("soon")
    assert knobs.parse_quick("1") is True and knobs.parse_quick("0") is False
    with pytest.raises(UsageError, match="QUICK must be 0 or 1"):
        knobs.parse_quick("yes")


def test_srun_mpi_and_launch() -> None:
    assert knobs.parse_srun_mpi("pmix_v5") == "pmix_v5"
    with pytest.raises(UsageError, match="is not an srun --mpi plugin name"):
        knobs.parse_srun_mpi("pmix;ls")
    assert knobs.parse_launch("  ") is None
    assert knobs.parse_launch("python3 -c pass") == ["python3", "-c", "pass"]
    with pytest.raises(UsageError, match="'nosuchlauncher' is not a command on PATH"):
        knobs.parse_launch("nosuchlauncher -n 2")


def test_host_mpi_abi() -> None:
    assert knobs.parse_host_mpi_abi("auto", None) == "auto"
    assert knobs.parse_host_mpi_abi("standard", "/opt/site/mpich") == "standard"
    with pytest.raises(UsageError, match=r"^unknown HOST_MPI_ABI='mpich'; choose one of: auto, standard, legacy$"):
        knobs.parse_host_mpi_abi("mpich", "/opt/site/mpich")
    with pytest.raises(UsageError, match=r"^HOST_MPI_ABI=legacy chooses .*name that MPI too: HOST_MPI="):
        knobs.parse_host_mpi_abi("legacy", None)


def test_ca_cert(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("pem")
    assert knobs.parse_ca_cert(str(pem)) == str(pem)
    with pytest.raises(UsageError, match="is not a readable file"):
        knobs.parse_ca_cert(str(tmp_path / "missing.pem"))
    # Unset: the bundle pip is told to trust, from the environment first.
    assert knobs.pip_ca_cert({"PIP_CERT": str(pem), "PIP_CONFIG_FILE": "/dev/null"}, tmp_path) == str(pem)
    config_file = tmp_path / "pip.conf"
    config_file.write_text(f"[global]\ncert = {pem}\n")
    assert knobs.pip_ca_cert({"PIP_CONFIG_FILE": str(config_file)}, tmp_path) == str(pem)
    assert knobs.pip_ca_cert({"PIP_CONFIG_FILE": "/dev/null"}, tmp_path) is None


def test_option_beats_environment_beats_default() -> None:
    raw = knobs.raw_values({"NP": "3", "RUNTIME": ""}, {"NP": None, "RUNTIME": None, "BASE": "bookworm"})
    assert raw["NP"] == "3" and raw["RUNTIME"] == "auto" and raw["BASE"] == "bookworm"
    assert knobs.raw_values({"NP": "3"}, {"NP": "5"})["NP"] == "5"


def test_read_parses_what_the_command_reads(tmp_path: Path) -> None:
    raw = knobs.raw_values({"NP": "3", "ARGS": "--size 7", "TIMEOUT": "9"}, {})
    s = knobs.read("run", raw, config.ROOT, example="scatter")
    assert (s.np, s.args, s.timeout, s.script) == (3, ["--size", "7"], 9, config.EXAMPLES["scatter"].path)
    assert s.image == f"{config.image_name()}:{config.default_base()}" and s.image_is_default
    # A knob the command does not read is not parsed: QUICK=yes does not stop make run.
    assert knobs.read("run", {**raw, "QUICK": "yes"}, config.ROOT, example="rank").np == 3
    with pytest.raises(UsageError, match="QUICK must be 0 or 1"):
        knobs.read("bench", {**raw, "QUICK": "yes"}, config.ROOT)
    with pytest.raises(UsageError, match="name an example"):
        knobs.read("run", raw, config.ROOT)


def test_every_knob_is_read_by_some_command_and_documented() -> None:
    from mpikit.cli import COMMANDS

    for knob in knobs.KNOBS:
        assert knob.commands and set(knob.commands) <= set(COMMANDS), knob
        assert knob.help and knob.name.isupper(), knob
    table = knobs.table_markdown().splitlines()
    assert len(table) == 2 + len(knobs.KNOBS)


def test_futures_is_for_pool_scripts() -> None:
    raw = knobs.raw_values({"FUTURES": "1"}, {})
    assert knobs.read("run", {**raw, "SCRIPT": "examples/pool.py"}, config.ROOT).futures
    assert knobs.read("run", knobs.raw_values({}, {}), config.ROOT, example="pool").futures  # the pool always is
    with pytest.raises(UsageError, match=r"FUTURES=1 is for pool scripts .*examples/rank\.py uses collectives"):
        knobs.read("run", raw, config.ROOT, example="rank")
    with pytest.raises(UsageError, match="FUTURES must be 0 or 1"):
        knobs.read("run", {**raw, "FUTURES": "yes"}, config.ROOT, example="pool")


def test_sif_from() -> None:
    for value in ("auto", "image", "recipe"):
        assert knobs.parse_sif_from(value) == value
    with pytest.raises(UsageError, match="unknown SIF_FROM='def'; choose one of: auto, image, recipe"):
        knobs.parse_sif_from("def")
