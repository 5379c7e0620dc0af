"""Command line behind the Makefile: `scripts/kit COMMAND [options]`.

Every option defaults to the environment variable the Makefile exports under
the knob's name (NP, RUNTIME, ARGS, BASE, IMAGE, SIF, SCRIPT, TIMEOUT, CA_CERT, SRUN_MPI).
Every knob is checked before anything is built, started or written.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import checks, docker, runtimes
from .config import EXAMPLES, RunError, UsageError, default_base, read_versions, supported_bases
from .docker import say

EXAMPLE_NAMES = ", ".join(EXAMPLES)
DEFAULT_TIMEOUT = "1800"  # seconds; a hung job ends with the ranks still running named


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, "") or default


# ---- validation: one clear line per bad value ----

def parse_np(value: str) -> int:
    if not re.fullmatch(r"\s*\d+\s*", value) or int(value) < 1:
        raise UsageError(f"NP must be a whole number of ranks, 1 or more; got NP={value!r} (try NP=4)")
    return int(value)


def parse_timeout(value: str) -> int | None:
    if value in ("", "0", "none"):
        return None
    if not re.fullmatch(r"\d+", value):
        raise UsageError(f"TIMEOUT must be a whole number of seconds (0 for none); got TIMEOUT={value!r}")
    return int(value)


def parse_runtime(value: str) -> str:
    if value not in runtimes.RUNTIMES:
        raise UsageError(f"unknown RUNTIME={value!r}; choose one of: {', '.join(runtimes.RUNTIMES)}")
    return value


def parse_base(value: str) -> str:
    if value not in supported_bases():
        raise UsageError(f"unsupported BASE={value!r}; choose one of: {', '.join(supported_bases())} "
                         "(versions.env lists the supported bases)")
    return value


def parse_args_knob(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise UsageError(f"cannot split ARGS={value!r} into arguments ({exc}); check the quotes") from None


def parse_ca_cert(value: str) -> str | None:
    if not value:
        return docker.default_ca_cert()
    path = Path(value).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise UsageError(f"CA_CERT={value!r} is not a readable file; give the PEM bundle of your proxy's CA")
    return str(path.resolve())


def parse_image(value: str, base: str) -> tuple[str, bool]:
    """(image, is_default): the default tag is built on demand, a named one must exist."""
    if not value:
        return f"{read_versions()['IMAGE_NAME']}:{base}", True
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/:@-]*", value):
        raise UsageError(f"IMAGE={value!r} is not a valid image name (lowercase, like mpi4py-kit:trixie)")
    return value, False


def parse_script(value: str, workdir: Path) -> Path:
    path = (workdir / value).resolve()
    if not path.is_file():
        raise UsageError(f"SCRIPT={value!r} does not exist (looked for {path})")
    if path.suffix != ".py":
        raise UsageError(f"SCRIPT={value!r} is not a Python file (.py)")
    try:
        path.relative_to(workdir.resolve())
    except ValueError:
        raise UsageError(f"SCRIPT={value!r} is outside {workdir}: containers see only the current "
                         "directory, so move the script under it or run make from its folder") from None
    return path


def parse_sif(value: str) -> Path:
    path = (Path.cwd() / value).resolve()
    if path.suffix != ".sif":
        raise UsageError(f"SIF={value!r} must name a .sif file (like mpi.sif)")
    if not path.parent.is_dir():
        raise UsageError(f"SIF={value!r}: the folder {path.parent} does not exist")
    return path


def parse_srun_mpi(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
        raise UsageError(f"SRUN_MPI={value!r} is not an srun --mpi plugin name (like pmix, pmix_v5; "
                         "srun --mpi=list shows yours)")
    return value


def parse_example(name: str, np: int) -> Path:
    example = EXAMPLES.get(name)
    if example is None:
        raise UsageError(f"unknown example {name!r}; choose one of: {EXAMPLE_NAMES} "
                         "(or run your own: make run SCRIPT=path/to/script.py)")
    if np < example.min_ranks:
        raise UsageError(f"example {name} ({example.file}) needs at least {example.min_ranks} ranks, "
                         f"got NP={np}; try make run-{name} NP={example.min_ranks}")
    return example.path


# ---- runtime choice ----

def resolve_runtime(requested: str) -> tuple[str, str]:
    """(runtime, why). auto prefers srun inside a Slurm allocation with Apptainer,
    then Apptainer, then Docker when an engine answers, then native."""
    from .apptainer import host_apptainer

    slurm_problem = None if os.environ.get("SLURM_JOB_ID") else "not inside a Slurm allocation"
    if slurm_problem is None and not shutil.which("srun"):
        slurm_problem = "no srun on PATH"
    appt_problem = None if host_apptainer() else "no apptainer on PATH"
    if requested == "srun":
        missing = appt_problem or ("no srun on PATH" if shutil.which("srun") is None else None)
        if missing:
            raise UsageError(f"RUNTIME=srun needs srun and apptainer on PATH ({missing}); on a cluster: "
                             "module load apptainer, or use RUNTIME=cluster for the test cluster")
        inside = os.environ.get("SLURM_JOB_ID")
        return "srun", f"RUNTIME=srun (allocation {inside})" if inside else "RUNTIME=srun (srun asks for an allocation)"
    if requested == "apptainer":
        if appt_problem:
            raise UsageError("RUNTIME=apptainer needs apptainer on PATH; install it (or module load apptainer), "
                             "or use RUNTIME=docker")
        return "apptainer", "RUNTIME=apptainer"
    if requested == "auto" and slurm_problem is None and appt_problem is None:
        return "srun", f"auto: inside Slurm allocation {os.environ['SLURM_JOB_ID']} with Apptainer"
    if requested == "auto" and appt_problem is None:
        return "apptainer", f"auto: apptainer on PATH ({slurm_problem})"
    if requested == "cluster":
        from . import cluster
        cluster.require_up()
        return "cluster", "RUNTIME=cluster: srun in the test Slurm cluster"
    if requested == "docker":
        docker.require_engine()
        return "docker", "RUNTIME=docker"
    if requested == "native":
        return "native", "RUNTIME=native"
    problem = docker.engine_problem()
    if problem is None:
        return "docker", "auto: a Docker engine answers"
    return "native", f"auto: no Docker engine ({problem}), so a local venv with Open MPI from PyPI"


@dataclass
class Knobs:
    np: int
    runtime: str
    base: str
    image: str
    image_is_default: bool
    sif: Path
    timeout: int | None
    args: list[str]
    ca_cert: str | None
    mpi: str


def prepare(ns: argparse.Namespace) -> Knobs:
    """Check every knob common to run and smoke before acting."""
    np = parse_np(ns.np)
    runtime = parse_runtime(ns.runtime)
    base = parse_base(ns.base)
    image, image_is_default = parse_image(ns.image, base)
    sif = parse_sif(ns.sif)
    return Knobs(np, runtime, base, image, image_is_default, sif, parse_timeout(ns.timeout),
                 parse_args_knob(ns.args), parse_ca_cert(ns.ca_cert), parse_srun_mpi(ns.srun_mpi))


def ready_runtime(knobs: Knobs) -> str:
    runtime, why = resolve_runtime(knobs.runtime)
    say(f"runtime: {runtime} ({why})")
    if runtime == "docker" and not docker.image_exists(knobs.image):
        if not knobs.image_is_default:
            raise UsageError(f"image {knobs.image!r} not found; build it with: "
                             f"make image IMAGE={knobs.image} BASE={knobs.base}")
        say(f"image {knobs.image} not found: building it first")
        docker.build_image(knobs.base, knobs.image, knobs.ca_cert)
    if runtime in ("cluster", "srun", "apptainer") and not knobs.sif.is_file():
        say(f"{knobs.sif} not found: building it first (make sif)")
        venv = runtimes.ensure_venv("native.txt", "dev.txt")
        cmd = [str(venv / "bin" / "python"), str(runtimes.ROOT / "scripts" / "kit"), "sif",
               "--sif", str(knobs.sif), "--base", knobs.base]
        if subprocess.run(cmd).returncode != 0:
            raise RunError(f"building {knobs.sif} failed; rerun: make sif SIF={knobs.sif}")
    return runtime


def cmd_run(ns: argparse.Namespace) -> int:
    knobs = prepare(ns)
    workdir = Path.cwd()
    script = parse_script(ns.script, workdir) if ns.script else parse_example(ns.example, knobs.np)
    runtime = ready_runtime(knobs)
    if runtime == "cluster":
        for path, knob in ((script, "SCRIPT"), (knobs.sif, "SIF")):
            if not path.is_relative_to(runtimes.ROOT):
                raise UsageError(f"{knob}={path} is outside {runtimes.ROOT}, the cluster's /shared")
    job = runtimes.Job(script, knobs.args, knobs.np, runtime, knobs.image, workdir, knobs.timeout,
                       knobs.sif, knobs.mpi)
    launch = runtimes.LAUNCHERS[runtime](job)
    say("+ " + runtimes.show(launch.argv))
    result = runtimes.execute(launch, knobs.timeout)
    if result.returncode != 0:
        say(f"error: the job exited with status {result.returncode}: {runtimes.show(launch.argv)}")
    return result.returncode


def cmd_smoke(ns: argparse.Namespace) -> int:
    knobs = prepare(ns)
    np, image, timeout = knobs.np, knobs.image, knobs.timeout
    runtime = ready_runtime(knobs)
    failed = passed = 0
    for example in EXAMPLES.values():
        if np < example.min_ranks:
            print(f"SKIP {example.name:8} needs at least {example.min_ranks} ranks (NP={np})")
            continue
        result = None
        job = runtimes.Job(example.path, list(example.smoke_args), np, runtime, image,
                           runtimes.ROOT, timeout or 300, knobs.sif, knobs.mpi)
        launch = runtimes.LAUNCHERS[runtime](job)
        try:
            result = runtimes.execute(launch, job.timeout, capture=True, cwd=runtimes.ROOT)
            verdict = checks.check_run(example.name, result.stdout, result.stderr,
                                       result.returncode, np, example.smoke_size)
        except RunError as exc:
            verdict = checks.Verdict([str(exc)])
        if verdict.ok:
            passed += 1
            print(f"PASS {example.name:8} {verdict.summary} [{runtime}, NP={np}]", flush=True)
        else:
            failed += 1
            print(f"FAIL {example.name:8} {'; '.join(verdict.problems)} [{runtime}, NP={np}]", flush=True)
            print(f"     command: {runtimes.show(launch.argv)}", flush=True)
            for line in [] if result is None else (result.stdout + result.stderr).splitlines()[-15:]:
                print(f"     | {line}")
    skipped = len(EXAMPLES) - passed - failed
    print(f"smoke: {passed} passed, {failed} failed, {skipped} skipped [{runtime}, NP={np}]")
    return 1 if failed else 0


def parse_launch(value: str) -> list[str] | None:
    if not value.strip():
        return None
    argv = parse_args_knob(value)
    if shutil.which(argv[0]) is None:
        raise UsageError(f"LAUNCH={value!r}: {argv[0]!r} is not a command on PATH")
    return argv


def cmd_doctor(ns: argparse.Namespace) -> int:
    from . import doctor

    knobs = prepare(ns)
    launch = parse_launch(ns.launch)
    if launch:
        print(f"doctor: your own launch line: {runtimes.show(launch)}", flush=True)
        return doctor.diagnose_launch(launch)
    try:
        runtime, why = resolve_runtime(knobs.runtime)
    except (UsageError, RunError) as exc:
        doctor.section("runtime")
        report = doctor.Report()
        report.add("PROBLEM", str(exc))
        return doctor.summary(report)
    print(f"doctor: runtime {runtime} ({why})", flush=True)
    return doctor.diagnose(knobs, runtime, knobs.mpi)


def cmd_bench(ns: argparse.Namespace) -> int:
    from . import bench, cluster

    knobs = prepare(ns)
    if ns.quick not in ("", "0", "1"):
        raise UsageError(f"QUICK must be 0 or 1; got QUICK={ns.quick!r}")
    docker.require_engine("make bench")
    venv_python = runtimes.VENV / "bin" / "python"
    if Path(sys.prefix).resolve() != runtimes.VENV.resolve():
        # The plot needs matplotlib (requirements/dev.txt): continue inside .venv, knobs checked.
        runtimes.ensure_venv("native.txt", "dev.txt")
        os.execv(venv_python, [str(venv_python), str(runtimes.ROOT / "scripts" / "kit"), *sys.argv[1:]])
    if not docker.image_exists(knobs.image):
        if not knobs.image_is_default:
            raise UsageError(f"image {knobs.image!r} not found; build it with: make image IMAGE={knobs.image}")
        docker.build_image(knobs.base, knobs.image, knobs.ca_cert)
    if not knobs.sif.is_relative_to(runtimes.ROOT):
        raise UsageError(f"SIF={knobs.sif} is outside {runtimes.ROOT}, the cluster's /shared")
    cluster.up()
    knobs.runtime = "cluster"
    ready_runtime(knobs)  # builds the SIF if missing
    code = bench.run(knobs.image, knobs.base, knobs.sif, ns.quick == "1")
    say("bench: the test cluster is still up; make cluster-down removes it")
    return code


def cmd_image(ns: argparse.Namespace) -> int:
    base = parse_base(ns.base)
    image, _ = parse_image(ns.image, base)
    ca_cert = parse_ca_cert(ns.ca_cert)
    docker.build_image(base, image, ca_cert)
    return 0


def cmd_sif(ns: argparse.Namespace) -> int:
    from . import apptainer

    base = parse_base(ns.base)
    sif = parse_sif(ns.sif)
    ca_cert = parse_ca_cert(ns.ca_cert)
    apptainer.build_sif(base, sif, ca_cert)
    return 0


def cmd_batch(ns: argparse.Namespace) -> int:
    """Submit slurm/example.sbatch to the test cluster, wait, show the output file."""
    from . import cluster

    knobs = prepare(ns)
    script = parse_script(ns.script or "examples/scatter_gather.py", runtimes.ROOT)
    knobs.runtime = "cluster"
    ready_runtime(knobs)
    sif = f"{cluster.SHARED}/{knobs.sif.relative_to(runtimes.ROOT).as_posix()}"
    argv = cluster.batch_argv(knobs.np, sif, script.relative_to(runtimes.ROOT).as_posix(), knobs.args)
    say("+ " + runtimes.show(argv))
    result = runtimes.execute(runtimes.Launch(argv, dict(os.environ)), knobs.timeout, capture=True)
    job_id = result.stdout.strip().split(";")[0]
    say(f"job {job_id} finished with exit status {result.returncode}; its output file "
        f"(/home/{cluster.USER}/mpi4py-kit-{job_id}.out):")
    print(cluster.job_output(job_id), end="", flush=True)
    if result.returncode != 0:
        say(f"error: the batch job failed: {result.stderr.strip()} ({runtimes.show(argv)})")
    return result.returncode


def cmd_cluster(ns: argparse.Namespace) -> int:
    from . import cluster

    if ns.action == "up":
        cluster.up()
    elif ns.action == "down":
        cluster.down()
    else:
        cluster.require_up()
        argv = cluster.login_argv("bash", "-l")
        return subprocess.call([argv[0], "exec", "-it", *argv[2:]])
    return 0


def cmd_venv(ns: argparse.Namespace) -> int:
    files = ["native.txt"] + (["dev.txt"] if ns.dev else [])
    runtimes.ensure_venv(*files)
    return 0


def cmd_examples(ns: argparse.Namespace) -> int:
    for example in EXAMPLES.values():
        print(f"{example.name}\t{example.file}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def knobs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--np", default=env("NP", "4"))
        p.add_argument("--runtime", default=env("RUNTIME", "auto"))
        p.add_argument("--base", default=env("BASE", default_base()))
        p.add_argument("--image", default=env("IMAGE"))
        p.add_argument("--timeout", default=env("TIMEOUT", DEFAULT_TIMEOUT))
        p.add_argument("--args", default=env("ARGS"))
        p.add_argument("--ca-cert", default=env("CA_CERT"))
        p.add_argument("--sif", default=env("SIF", "mpi.sif"))
        p.add_argument("--srun-mpi", default=env("SRUN_MPI", "pmix"))

    run = sub.add_parser("run", help="run an example or SCRIPT under a runtime")
    run.add_argument("example", nargs="?", default="")
    run.add_argument("--script", default=env("SCRIPT"))
    knobs(run)
    run.set_defaults(func=cmd_run)

    smoke = sub.add_parser("smoke", help="run every example and check its output")
    knobs(smoke)
    smoke.set_defaults(func=cmd_smoke)

    doctor = sub.add_parser("doctor", help="check the host and the image; explain problems and fixes")
    doctor.add_argument("--launch", default=env("LAUNCH"),
                        help="check your own launch line instead, e.g. 'docker run --rm IMAGE mpiexec -n 2'")
    knobs(doctor)
    doctor.set_defaults(func=cmd_doctor)

    bench = sub.add_parser("bench", help="container vs native, measured in one run; results/bench.{json,png}")
    bench.add_argument("--quick", default=env("QUICK", "0"))
    knobs(bench)
    bench.set_defaults(func=cmd_bench)

    image = sub.add_parser("image", help="build the Docker image")
    image.add_argument("--base", default=env("BASE", default_base()))
    image.add_argument("--image", default=env("IMAGE"))
    image.add_argument("--ca-cert", default=env("CA_CERT"))
    image.set_defaults(func=cmd_image)

    sif = sub.add_parser("sif", help="build the Apptainer image (SIF) from Apptainer.def")
    sif.add_argument("--base", default=env("BASE", default_base()))
    sif.add_argument("--sif", default=env("SIF", "mpi.sif"))
    sif.add_argument("--ca-cert", default=env("CA_CERT"))
    sif.set_defaults(func=cmd_sif)

    venv = sub.add_parser("venv", help="create the native venv (.venv)")
    venv.add_argument("--dev", action="store_true", help="add the test and lint tools")
    venv.set_defaults(func=cmd_venv)

    batch = sub.add_parser("batch", help="sbatch an example or SCRIPT in the test cluster")
    batch.add_argument("--script", default=env("SCRIPT"))
    knobs(batch)
    batch.set_defaults(func=cmd_batch)

    clus = sub.add_parser("cluster", help="the test Slurm cluster in containers")
    clus.add_argument("action", choices=("up", "down", "shell"))
    clus.set_defaults(func=cmd_cluster)

    sub.add_parser("examples", help="list the examples").set_defaults(func=cmd_examples)
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.command == "run" and not ns.example and not ns.script:
        say("error: name an example (make run-rank) or a script (make run SCRIPT=path/to/script.py)")
        return 2
    try:
        return ns.func(ns)
    except UsageError as exc:
        say(f"error: {exc}")
        return 2
    except RunError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: every rank and container this run started was stopped")
        return 130
