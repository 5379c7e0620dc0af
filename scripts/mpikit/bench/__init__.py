"""`make bench`: the container against native, measured in one run.

Every figure has a baseline taken in the same run, on the same machine, with
the runtimes interleaved (native, container, native, container, ...) so that
machine noise lands on both; each figure is a median over repetitions.
Scenarios (scenarios.py) are the kit's own launch lines and variants of them.
Results: results/bench.json (and a copy as bench-MODE.json) and results/bench.png. QUICK=1 makes it short
(CI runs it to prove it works; its figures are not for quoting). What building
costs (sizes, a rebuild, a cold build) is make bench-build's: results/bench-build.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import bind, cluster, config, docker
from ..config import MPI_PROGRAMS, ROOT
from ..launch import show
from ..ui import RunError, say
from . import report, stats
from .scenarios import Scenario, all_scenarios, environment_scenarios, native_open_mpi_defaults

RESULTS = config.results_dir()
PINGPONG = (MPI_PROGRAMS / "pingpong.py").relative_to(ROOT).as_posix()
STARTUP = (MPI_PROGRAMS / "startup.py").relative_to(ROOT).as_posix()
SCATTER = "examples/scatter_gather.py"
SITE_MPI = "/opt/site/mpich"  # the bind model's site MPI on the test cluster
# Measured through the MPI-5 standard ABI too: one mpi4py extension on two vendors' libmpi_abi.so.1.
STANDARD_ABI_SITES = {"mpich": "/opt/site/mpich", "impi": "/opt/site/impi"}
WHOLE_JOBS = ("native", "docker", "cluster-native-2nodes", "cluster-apptainer-2nodes", "cluster-bind-2nodes",
              *(f"cluster-bind-abi-{name}-2nodes" for name in STANDARD_ABI_SITES))


@dataclass(frozen=True)
class Plan:
    """How many repetitions: QUICK proves every scenario runs, the full run gives figures to quote."""

    quick: bool

    @property
    def pingpong_runs(self) -> int:
        return 1 if self.quick else 3

    @property
    def pingpong_args(self) -> list[str]:
        # 0.1 s: make bench within 12 minutes. QUICK quotes no figure: one short batch proves each size runs (three
        # batches of 0.05 s spun both cores for 1.2 s more per scenario, 11 scenarios in every make test).
        batches, seconds = (1, 0.02) if self.quick else (7, 0.1)
        return ["--batches", str(batches), "--seconds", str(seconds)]

    @property
    def startup_runs(self) -> int:
        return 1 if self.quick else 9

    @property
    def env_startup_runs(self) -> int:
        """make bench-env: its target (1.05x) is closer to 1 than make bench's start-up's (1.15x), so more runs."""
        return 1 if self.quick else 15

    @property
    def warm_up(self) -> bool:
        """An untimed first run of each scenario, so one-time costs land in no figure; QUICK quotes none."""
        return not self.quick

    @property
    def scatters(self) -> dict[str, tuple[int, int]]:
        """name -> (values, runs): whole jobs at two sizes; more runs where the job is short."""
        if self.quick:
            return {"scatter10M": (10_000_000, 1)}
        return {"scatter10M": (10_000_000, 7), "scatter100M": (100_000_000, 5)}


RETRIES: list[str] = []  # runs that failed once and were run again, reported with the results


def stamp(quick: bool) -> dict:
    """What every results file starts with: QUICK or not, when, and on which machine."""
    return {"quick": quick, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}"}


def _run(s: Scenario, np: int, script: str, args: list[str], timeout: int = 900) -> tuple[str, float]:
    """One timed run. A run that fails is run once more (and recorded in RETRIES): on this shared
    2-core machine a rare rank failure should not cost a 20-minute benchmark; a second failure stops it."""
    launch = s.build(np, script, args, s.nodes)
    for attempt in (1, 2):
        start = time.monotonic()
        proc = subprocess.run(launch.argv, cwd=ROOT, env=launch.env, capture_output=True, text=True, timeout=timeout)
        elapsed = time.monotonic() - start
        if proc.returncode == 0:
            return proc.stdout, elapsed
        tail = [line for line in (proc.stdout + proc.stderr).strip().splitlines() if line.strip()][-15:]
        if attempt == 1:
            say(f"bench: {s.name} failed once (exit {proc.returncode}), running it again: " + " | ".join(tail[-3:]))
            RETRIES.append(f"{s.name}, {np} ranks, {script}: exit {proc.returncode}: {' | '.join(tail[-3:])}")
    raise RunError(f"bench {s.name} failed twice (exit {proc.returncode}): {show(launch.argv)[:300]}\n  "
                   + "\n  ".join(tail))


def pingpong(chosen: list[Scenario], plan: Plan) -> dict:
    raw: dict = {}
    for run in range(plan.pingpong_runs):
        for s in chosen:  # interleaved: each repetition visits every runtime
            say(f"bench: pingpong {s.name} (run {run + 1}/{plan.pingpong_runs})")
            out, _ = _run(s, 2, PINGPONG, plan.pingpong_args)
            for line in out.splitlines():
                if line.startswith("BENCH "):
                    r = json.loads(line[6:])
                    raw.setdefault(s.name, {}).setdefault(r["api"], {}).setdefault(r["bytes"], []).append(r)
    return stats.pingpong_medians(raw)


def wall_times(chosen: list[Scenario], runs: int, np: int, script: str, args: list[str], what: str) -> dict:
    times: dict[str, list[float]] = {s.name: [] for s in chosen}
    for run in range(runs):
        for s in chosen:
            say(f"bench: {what} {s.name} (run {run + 1}/{runs})")
            times[s.name].append(_run(s, np, script, args)[1])
    return stats.wall_medians(times)


def image_facts(image: str, base: str, sif: Path, quick: bool, ca_cert: str | None) -> dict:
    facts: dict = {}
    size = docker.run("image", "inspect", "--format", "{{.Size}}", image, check=False).stdout.strip()
    facts["docker_image_mb"] = int(size) / 1e6 if size.isdigit() else None
    facts["sif_mb"] = sif.stat().st_size / 1e6 if sif.is_file() else None
    with tempfile.TemporaryDirectory(prefix="mpikit-bench-") as tmp:
        context = Path(tmp)
        for name in ("Dockerfile", ".dockerignore", *config.BUILD_INPUTS):
            source, target = ROOT / name, context / name
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        tag = "mpi4py-kit-bench:rebuild"
        docker.build_image(base, tag, ca_cert, context)  # the cache, as it stands
        with open(context / "examples" / "rank.py", "a") as f:
            f.write(f"\n# edited by make bench at {time.time()}\n")
        facts["rebuild_after_example_edit_s"] = docker.build_image(base, tag, ca_cert, context)
        if quick:
            facts["cold_build_s"] = None
            facts["cold_build_note"] = "not measured with QUICK=1"
        else:
            facts["cold_build_s"] = docker.build_image(base, tag, ca_cert, context, fresh=True)
        docker.run("rmi", "-f", tag, check=False)
    return facts


# A user's environment for make bench-build (REQUIREMENTS): one small pure-Python package, hash-pinned (the tests'
# own environment of that kind), written under build/ with a line that makes each written file a new environment.
ENV_SAMPLE = "tests/envs/pure.txt"
# make bench-env's environment, the one docs/performance.md quotes: scipy and pandas (and a small C extension).
STARTUP_SAMPLE = "tests/envs/science.txt"
ENV_BENCH = ROOT / "build" / "bench-build-env"


def environment_facts(kit_image: str, base: str, quick: bool, ca_cert: str | None) -> dict:
    """REQUIREMENTS on the kit's built image: a derived image with one small pure-Python package (nothing of the
    kit's image rebuilt: its ID is checked), its size; without QUICK its SIF too, and the time from an edited
    requirements file to a running job (make run-rank NP=2, RUNTIME=apptainer where the host has Apptainer: the
    image, the SIF, the ranks; else RUNTIME=docker).
    Each file is new, so each build is one a user would wait for; what it made is removed at the end."""
    from .. import apptainer, environment, platforms

    host = platforms.host()
    facts: dict = {"env_sample": ENV_SAMPLE}
    shutil.rmtree(ENV_BENCH, ignore_errors=True)
    ENV_BENCH.mkdir(parents=True)
    path = ENV_BENCH / "requirements.txt"
    shown = path.relative_to(ROOT).as_posix()
    sample = (ROOT / ENV_SAMPLE).read_text()
    kit_id = docker.image_id(kit_image)
    made: list[tuple[str, Path]] = []  # (derived image, its SIF)

    def write(label: str) -> tuple[str, Path]:
        path.write_text(f"# make bench-build, {label} at {time.time()}\n{sample}")
        digest = environment.digest(environment.read(shown, ROOT), base, host, ROOT)
        made.append((environment.image_name(digest, base, host), environment.sif_path(digest, base, host)))
        return made[-1]

    try:
        image, sif = write("written")
        start = time.monotonic()
        environment.build_image(environment.read(shown, ROOT), kit_image, base, host, ca_cert, ROOT)
        facts["env_image_s"] = time.monotonic() - start
        size = docker.run("image", "inspect", "--format", "{{.Size}}", image, check=False).stdout.strip()
        facts["env_image_mb"] = int(size) / 1e6 if size.isdigit() else None
        if quick:
            facts.update(env_sif_s=None, env_sif_mb=None, env_edit_to_job_s=None,
                         env_note="its SIF and an edit's way to a running job not measured with QUICK=1")
        else:
            start = time.monotonic()
            apptainer.build_sif_from_image(base, sif, ca_cert, host, image=image)
            facts["env_sif_s"] = time.monotonic() - start
            facts["env_sif_mb"] = sif.stat().st_size / 1e6
            write("edited")
            # Apptainer's runtime where this host has Apptainer (the image, the SIF, the ranks), else Docker's.
            runtime = "apptainer" if apptainer.host_apptainer() else "docker"
            facts["env_edit_to_job_runtime"] = runtime
            start = time.monotonic()
            line = ["make", "--no-print-directory", "run-rank", "NP=2", f"RUNTIME={runtime}", f"REQUIREMENTS={shown}"]
            proc = subprocess.run(line, cwd=ROOT, capture_output=True, text=True, timeout=1200)
            if proc.returncode != 0:
                raise RunError(f"`{show(line)}` failed (exit status {proc.returncode}): "
                               f"{(proc.stdout + proc.stderr).strip()[-400:]}")
            facts["env_edit_to_job_s"] = time.monotonic() - start
        facts["kit_image_rebuilt"] = docker.image_id(kit_image) != kit_id
    finally:
        for image, sif in made:
            image_id = docker.image_id(image)
            if image_id:
                apptainer.image_cache_entry(base, host, image_id, "env").unlink(missing_ok=True)
                docker.run("rmi", "-f", image, check=False)
            sif.unlink(missing_ok=True)
        shutil.rmtree(ENV_BENCH, ignore_errors=True)
    return facts


def run_build(image: str, base: str, sif: Path, quick: bool, ca_cert: str | None, started: float) -> int:
    """make bench-build: the image facts on their own, so that make bench keeps its time budget
    (a cold build alone takes minutes); then a user's environment's (REQUIREMENTS) on that image."""
    results = {**stamp(quick), "targets": stats.TARGETS, "image": image_facts(image, base, sif, quick, ca_cert)}
    results["environment"] = environment_facts(image, base, quick, ca_cert)
    results["took_s"] = {"total": time.monotonic() - started}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench-build.json").write_text(json.dumps(results, indent=1) + "\n")
    print(report.build_line(report.load(RESULTS / "bench-build.json")), flush=True)
    say(f"bench-build: wrote {RESULTS / 'bench-build.json'}")
    return 0


def run_env(kit_sif: Path, env_sif: Path, sample: str, mpi: str, mode: str, quick: bool, started: float) -> int:
    """make bench-env: what a user's environment (REQUIREMENTS) costs every job's start-up. Its SIF against the
    kit's own, 2 nodes x 2 ranks on the test cluster, the same srun line and APPTAINER_MODE, interleaved, for a
    program that imports mpi4py only (none of the environment's packages): the bigger image's cost alone.
    `started`: when make bench-env began (time.monotonic())."""
    plan = Plan(quick)
    cluster.require_up()
    measuring = time.monotonic()
    chosen = environment_scenarios(kit_sif, env_sif, sample, mpi, mode)
    kit, env = (s.name for s in chosen)
    results: dict = {**stamp(quick), "requirements": sample, "apptainer_mode": mode, "targets": stats.TARGETS,
                     "scenarios": {s.name: {"baseline": s.baseline, "what": s.what} for s in chosen},
                     "sif_mb": {kit: kit_sif.stat().st_size / 1e6, env: env_sif.stat().st_size / 1e6}}
    for s in chosen if plan.warm_up else ():  # not timed: each node's first start of a SIF unpacks it (APPTAINER_MODE)
        say(f"bench-env: warm-up {s.name}")
        _run(s, 4, STARTUP, [])
    walls = wall_times(chosen, plan.env_startup_runs, 4, STARTUP, [], "startup")
    results["startup"] = walls
    results["ratio"] = stats.wall_ratio(walls, env, kit)
    results["interval"] = stats.ratio_interval(walls[env]["runs"], walls[kit]["runs"])
    results["retried_runs"] = RETRIES
    results["took_s"] = {"total": time.monotonic() - started, "measuring": time.monotonic() - measuring}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench-env.json").write_text(json.dumps(results, indent=1) + "\n")
    print(report.env_markdown(report.load(RESULTS / "bench-env.json")), flush=True)
    say(f"bench-env: wrote {RESULTS / 'bench-env.json'}")
    return 0


def run_curve(sif: Path, mpi: str, quick: bool, started: float) -> int:
    """make bench-curve (curve.py): modes x ranks per node, and where a short job's time goes.
    `started`: when make bench-curve began (time.monotonic()), for the time it took."""
    from . import curve

    cluster.require_up()
    measuring = time.monotonic()
    results = curve.run_all(sif, mpi, quick, _run)
    results["retried_runs"] = RETRIES
    results["took_s"] = {"total": time.monotonic() - started, "measuring": time.monotonic() - measuring}
    (RESULTS / "bench-curve.json").write_text(json.dumps(results, indent=1) + "\n")
    results = report.load(RESULTS / "bench-curve.json")
    report.plot_curve(results, RESULTS / "bench-curve.png")
    print(report.curve_table(results), flush=True)
    say(f"bench-curve: wrote {RESULTS / 'bench-curve.json'} and {RESULTS / 'bench-curve.png'}")
    return 0


def run(image: str, base: str, sif: Path, mpi: str, quick: bool, ca_cert: str | None, mode: str,
        started: float) -> int:
    """`started`: when make bench began (time.monotonic()): its time, with the image, the cluster and
    the SIF it made ready first, is a figure with a target."""
    plan = Plan(quick)
    cluster.require_up()
    measuring = time.monotonic()
    # The row measured since 2026-11: the site MPICH through its legacy MPICH ABI (libmpi.so.12).
    # Worked out as make run does: a plan that passed for the same site MPI, SIF and node state is reused (working
    # out the three anew was 7 s of docker exec probes before every make bench).
    site = bind.resolve(SITE_MPI, "auto", sif, "cluster", "legacy", reuse=True)
    standard = tuple((name, bind.resolve(prefix, "auto", sif, "cluster", "standard", reuse=True))
                     for name, prefix in STANDARD_ABI_SITES.items())
    chosen = all_scenarios(image, base, sif, mpi, mode, site, standard)
    say(f"bench: {'QUICK mode, ' if quick else ''}{len(chosen)} scenarios: {', '.join(s.name for s in chosen)}")
    results: dict = {**stamp(quick), "scenarios": {s.name: {"baseline": s.baseline, "what": s.what} for s in chosen},
                     "apptainer_mode": mode, "targets": stats.TARGETS}
    for s in chosen if plan.warm_up else ():  # not timed: one-time costs (a sandbox's unpack, a cold page cache)
        say(f"bench: warm-up {s.name}")
        _run(s, 2, STARTUP, [])
    results["pingpong"] = pingpong(chosen, plan)
    whole = [s for s in chosen if s.name in WHOLE_JOBS]
    # Start-up also of the native line with Open MPI's defaults: what the kit's one-node settings save.
    defaults = native_open_mpi_defaults()
    results["scenarios"][defaults.name] = {"baseline": defaults.baseline, "what": defaults.what}
    # Whole jobs: 4 ranks, 2 per node on the cluster (2 nodes x 2 ranks).
    results["startup"] = wall_times([*whole, defaults], plan.startup_runs, 4, STARTUP, [], "startup")
    results["scatters"] = {name: {"size": size, **wall_times(whole, runs, 4, SCATTER,
                                                              ["--size", str(size), "--seed", "1"], name)}
                           for name, (size, runs) in plan.scatters.items()}
    results["ratios"] = stats.pingpong_ratios(results["pingpong"], {s.name: s.baseline for s in chosen})
    results["job_ratios"] = stats.job_ratios(results)
    results["retried_runs"] = RETRIES
    results["took_s"] = {"total": time.monotonic() - started, "measuring": time.monotonic() - measuring}
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(results, indent=1, default=str) + "\n"
    (RESULTS / "bench.json").write_text(text)
    # Also under its mode's name: make bench-docs keeps the default mode's run as bench.json and
    # each other mode's last full run beside it (the targets of APPTAINER_MODE=join, for one).
    (RESULTS / f"bench-{mode}.json").write_text(text)
    results = report.load(RESULTS / "bench.json")
    report.plot(results, RESULTS / "bench.png")
    report.plot_ratios(results, RESULTS / "bench-ratios.png")
    print(report.table(results), flush=True)
    say(f"bench: wrote {RESULTS / 'bench.json'}, {RESULTS / 'bench.png'} and {RESULTS / 'bench-ratios.png'}")
    return 0
