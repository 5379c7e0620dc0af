"""How the kit talks to the user: progress on stderr, and the three kinds of
failure, each printed as one `error:` line with its own exit status."""

from __future__ import annotations

import sys

# Exit statuses of scripts/kit (and so of every make target).
EXIT_FAILED = 1  # the job or a build ran and failed
EXIT_USAGE = 2  # bad input: a knob, an example name; nothing was done
EXIT_MISSING = 3  # this machine lacks something the command needs (a package, an engine)


class KitError(Exception):
    """An expected failure: printed as `error: <message>`, never as a traceback."""

    status = EXIT_FAILED


class RunError(KitError):
    """Something failed while running (a build, a job, a container)."""


class UsageError(KitError):
    """Bad input from the user; checked before anything is built, started or written."""

    status = EXIT_USAGE


class MissingPrerequisite(KitError):
    """The machine lacks a prerequisite (python3-venv, a Docker engine, Apptainer)."""

    status = EXIT_MISSING


def say(message: str) -> None:
    """Progress and decisions go to stderr, so stdout stays the job's output."""
    print(message, file=sys.stderr, flush=True)
