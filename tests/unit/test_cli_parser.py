"""scripts/kit's command line (mpikit.cli.build_parser): a known command is parsed by its own parser alone, with
the same result as the whole one's; anything else gets the whole parser, whose help and errors name every
command."""

from __future__ import annotations

import pytest
from mpikit import cli


@pytest.mark.parametrize("argv", [["run", "scatter", "--np", "4", "--runtime", "docker"],
                                  ["run", "--script", "my.py", "--args", "--size 10"],
                                  ["bench", "--quick", "1"], ["doctor"], ["sif", "--platform", "linux/arm64"],
                                  ["examples"]])
def test_a_commands_own_parser_reads_what_the_whole_one_reads(argv: list[str]) -> None:
    assert vars(cli.build_parser(argv[0]).parse_args(argv)) == vars(cli.build_parser().parse_args(argv))


def test_every_command_has_its_own_parser() -> None:
    for name in cli.COMMANDS:
        assert cli.build_parser(name).parse_args([name]).command == name


def test_the_whole_parsers_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and all(name in out for name in cli.COMMANDS)


def test_an_unknown_command_is_refused_naming_the_known_ones(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["rnu"])
    err = capsys.readouterr().err
    # argparse's words vary with Python's version (3.13 no longer quotes the choices): the usage line lists them all.
    assert done.value.code == 2 and "invalid choice" in err and "rnu" in err
    assert all(name in err.split("invalid choice")[0] for name in cli.COMMANDS)


def test_a_knob_of_another_command_is_refused(capsys) -> None:
    """make's knobs reach the kit as options of the command that reads them; another's is an error as before."""
    with pytest.raises(SystemExit) as done:
        cli.main(["examples", "--np", "4"])
    assert done.value.code == 2 and "unrecognized arguments: --np 4" in capsys.readouterr().err
