"""scripts/kit COMMAND [--knob value ...]: the command line behind the Makefile.

Each knob (knobs.py) is an option of the commands that read it and defaults to
the environment variable of its name, which make exports from its command line
(`make run-scatter NP=4`). Every knob is parsed before the command starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import commands, knobs
from .knobs import Settings
from .ui import KitError, say


@dataclass(frozen=True)
class Command:
    run: Callable[[Settings], int]
    help: str


COMMANDS: dict[str, Command] = {
    "run": Command(commands.run, "run an example (positional name) or SCRIPT under a runtime"),
    "smoke": Command(commands.smoke, "run every example and check its output"),
    "shell": Command(commands.shell, "a shell in the image (RUNTIME=docker or apptainer), as make run's ranks see "
                     "it; COMMAND= runs one command instead"),
    "line": Command(commands.line, "print the line make run would run (environment included), running nothing"),
    "sbatch": Command(commands.sbatch_script, "print a batch script around the kit's srun line"),
    "doctor": Command(commands.doctor, "check the host and the image; explain problems and fixes"),
    "bind-plan": Command(commands.bind_plan_command, "HOST_MPI: what the bind model binds and sets, and why"),
    "bench-curve": Command(commands.bench_curve, "start-up and scatter against ranks per node, per APPTAINER_MODE"),
    "bench-docs": Command(commands.bench_docs, "copy results/ to docs/bench/ and regenerate docs/performance.md"),
    "bench": Command(commands.bench, "container vs native, measured in one run: results/bench.{json,png}"),
    "bench-build": Command(commands.bench_build, "image and SIF sizes, a rebuild, a cold build: "
                           "results/bench-build.json"),
    "bench-env": Command(commands.bench_env, "REQUIREMENTS: your environment's SIF against the kit's at start-up on "
                         "the test cluster: results/bench-env.json"),
    "image": Command(commands.image, "build the Docker image"),
    "keypair": Command(commands.keypair, "a new PEM key pair for signing SIFs: KEY (private), KEY.pub"),
    "sign": Command(commands.sign, "sign SIF with the private key KEY"),
    "verify": Command(commands.verify, "check SIF's signature with VERIFY_KEY (public key or certificate)"),
    "sif": Command(commands.sif, "build the Apptainer image (SIF) from Apptainer.def"),
    "sbom": Command(commands.sbom, "the SBOM inside IMAGE or SIF, to results/sbom/, schema-checked"),
    "reproduce": Command(commands.reproduce, "rebuild IMAGE without the build cache and compare the files"),
    "twin": Command(commands.twin, "the SIF made from the image against the one built from Apptainer.def: the "
                    "same files, or the paths that differ (exit 1)"),
    "reproduce-sif": Command(commands.reproduce_sif, "rebuild the SIF from the same inputs and compare its root "
                             "file system with the cached build's"),
    "pins-check": Command(commands.pins_check, "check that versions.env's Debian pins exist for every platform "
                          "(apt metadata only)"),
    "batch": Command(commands.batch, "sbatch --wait make sbatch's script (SCRIPT) in the test cluster"),
    "cluster-up": Command(commands.cluster_up, "start the test Slurm cluster"),
    "cluster-down": Command(commands.cluster_down, "remove the test Slurm cluster"),
    "cluster-shell": Command(commands.cluster_shell, "a login shell on the cluster's controller"),
    "lock": Command(commands.lock_requirements, "REQUIREMENTS=my.in: lock your file to my.txt (pins and hashes), "
                    "resolved in the image for its Python"),
    "venv": Command(commands.make_venv, "create .venv: the native runtime and the tools"),
    "test": Command(commands.test, "provision Docker if possible, then run the whole test suite"),
    "test-fast": Command(commands.test_fast, "the unit tests only (seconds)"),
    "examples": Command(commands.examples, "list the examples"),
    "knobs": Command(commands.show_knobs, "list the knobs with their current values"),
    "knob-table": Command(commands.knob_table, "the knob table as Markdown (the README's)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; `only`: just that command's (each make target starts the kit once, and the
    options of all 33 commands were half its start: 25 ms of CPU a start, in hundreds of starts a test run)."""
    parser = argparse.ArgumentParser(prog="scripts/kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        if only is not None and name != only:
            continue
        p = sub.add_parser(name, help=command.help)
        if name in knobs.LIKE_RUN:
            p.add_argument("example", nargs="?", default="")
        for knob in knobs.for_command(name):
            p.add_argument(knob.option, dest=knob.name, default=None, help=f"{knob.help} (env {knob.name})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # A known command first: only its parser. Anything else (--help, a typo) gets the whole one, which lists them all.
    ns = build_parser(args[0] if args and args[0] in COMMANDS else None).parse_args(args)
    given = {k.name: getattr(ns, k.name, None) for k in knobs.KNOBS}
    try:
        settings = knobs.read(ns.command, knobs.raw_values(os.environ, given), Path.cwd(),
                              example=getattr(ns, "example", ""))
        return COMMANDS[ns.command].run(settings)
    except KitError as exc:
        say(f"error: {exc}")
        return exc.status
    except KeyboardInterrupt:
        say("interrupted: every rank and container this run started was stopped")
        return 130
    except BrokenPipeError:
        # The reader went away (make help | head): stop quietly, as shell tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
