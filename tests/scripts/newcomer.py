"""A newcomer's machine, step by step: a clean debian:trixie-slim container (the kit's own local base) with
only git, make and python3, a non-root user who clones the repository (what is committed, HEAD) and types the
README's two commands, first without python3-venv, then with it. Each step's exit status and output are
written to OUT as JSON; tests/integration/test_newcomer.py judges them.

Its steps wait mostly on the network (apt, pip) and on one process at a time, so the test session runs this
script beside the other tests (tests/integration/conftest.py, PREBUILDS) and the test reads what it wrote; the
test runs it itself when the session did not.

    python tests/scripts/newcomer.py OUT
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

# The kit's own modules, from the path set just above (so not at the top).
from mpikit import docker, knobs  # noqa: E402

USER = "newcomer"
# The container's CPU weight when the session runs this beside its tests (Docker's default is 1024): the
# tests in the open come first, this uses what they leave.
BESIDE_CPU_SHARES = "512"


def readme_commands() -> tuple[str, str]:
    """The README's two commands: the main job and the tests."""
    readme = (ROOT / "README.md").read_text()

    def first(prefix: str) -> str:
        return next(line.split("#")[0].strip() for line in readme.splitlines() if line.startswith(prefix))

    return first("make run-scatter"), first("make test")


class Machine:
    """A long-running container; each step is a docker exec, as root or as the newcomer."""

    def __init__(self, bundle: Path) -> None:
        self.name = f"mpikit-newcomer-{uuid.uuid4().hex[:8]}"
        options = ["--shm-size=1g", "-v", f"{bundle.parent}:/bundle:ro"]  # /dev/shm as on a real machine
        if os.environ.get("MPIKIT_BACKGROUND") == "1":
            options += ["--cpu-shares", BESIDE_CPU_SHARES]
        ca = knobs.pip_ca_cert(os.environ, Path.home())
        if ca:
            options += ["-v", f"{ca}:/etc/mpikit-proxy-ca.pem:ro", "-e", "PIP_CERT=/etc/mpikit-proxy-ca.pem"]
        docker.run("run", "-d", "--name", self.name, *options, "debian:trixie-slim", "sleep", "infinity")

    def __call__(self, script: str, user: str = USER, timeout: int = 900,
                 workdir: str = f"/home/{USER}/kit") -> dict:
        argv = [docker.command(), "exec", "-u", user, "-w", workdir if user == USER else "/",
                self.name, "bash", "-c", script]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            return {"script": script, "user": user, "code": proc.returncode, "stdout": proc.stdout,
                    "stderr": proc.stderr}
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            return {"script": script, "user": user, "code": None, "stdout": out,
                    "stderr": err + f"\n(timed out after {timeout} s)"}

    def remove(self) -> None:
        docker.run("rm", "-f", self.name, check=False)


def steps(box: Machine, main_job: str, test_command: str):
    """The newcomer's steps in order, each (name, result); a step whose predecessor failed is not run."""
    yield "setup", box("export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
                       "apt-get install -y -qq --no-install-recommends git make python3 >/dev/null && "
                       f"useradd --create-home {USER}", user="root", timeout=600)
    yield "clone", box(f"git clone -q /bundle/kit.bundle /home/{USER}/kit", workdir=f"/home/{USER}")
    yield "first", box(main_job)  # without python3-venv
    yield "leftover", box("test -e .venv && echo LEFT || echo NONE")
    yield "install", box("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null",
                         user="root")
    yield "run", box(main_job)
    yield "tests", box(test_command + " PYTEST_ARGS='-q -p no:cacheprovider'", timeout=1500)


# The steps whose failure ends the walk: what comes after them could not run.
NEEDED = {"setup", "clone", "install"}


def main(out: Path) -> int:
    out.unlink(missing_ok=True)  # never an earlier run's record
    main_job, test_command = readme_commands()
    record: dict = {"main_job": main_job, "test_command": test_command, "steps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "kit.bundle"
        subprocess.run(["git", "-C", str(ROOT), "bundle", "create", str(bundle), "HEAD"], check=True,
                       capture_output=True)
        Path(tmp).chmod(0o755)
        bundle.chmod(0o644)
        box = Machine(bundle)
        try:
            for name, result in steps(box, main_job, test_command):
                record["steps"][name] = result
                print(f"newcomer: {name}: exit status {result['code']}", flush=True)
                if name in NEEDED and result["code"] != 0:
                    break
        finally:
            box.remove()
    out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
