"""make bench's output: the table printed at the end and the plot."""

from __future__ import annotations

import json
from pathlib import Path

from .stats import JOB_RATIOS, LEVEL, SIZES, TARGETS, human, job_intervals, meets, target_of
from .stats import verdict as judged


def _int_keys(value):
    """JSON keeps message sizes and ranks per node as string keys; the reports index them by number."""
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: _int_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_int_keys(v) for v in value]
    return value


def load(path: Path) -> dict:
    """A results file as the reports read it: the bench prints, plots and documents what it wrote."""
    return _int_keys(json.loads(path.read_text()))


def whole_jobs(results: dict) -> list[tuple[str, int | None, dict]]:
    """(name, scatter size or None for start-up, scenario -> wall times) for each whole job measured."""
    jobs: list[tuple[str, int | None, dict]] = [("startup", None, results["startup"])]
    jobs += [(name, walls["size"], {k: v for k, v in walls.items() if k != "size"})
             for name, walls in results["scatters"].items()]
    return jobs


def table(results: dict) -> str:
    """What make bench prints: the same tables docs/performance.md shows, one renderer for each."""
    took = results.get("took_s")
    tail = ([f"make bench took {took['total'] / 60:.1f} min (target <= {TARGETS['bench_minutes']}), "
             f"{took['measuring'] / 60:.1f} of them measuring"] if took else [])
    return "\n\n".join([pingpong_markdown(results), jobs_markdown(results), *tail])


def build_line(results: dict) -> str:
    f = results["image"]
    return (f"image: Docker {f['docker_image_mb']:.0f} MB (target <= {TARGETS['image_mb']}), "
            + (f"SIF {f['sif_mb']:.0f} MB (target <= {TARGETS['sif_mb']}), " if f["sif_mb"] else "no SIF, ")
            + f"rebuild after editing an example {f['rebuild_after_example_edit_s']:.1f} s "
            f"(target <= {TARGETS['rebuild_s']}), cold build "
            + (f"{f['cold_build_s']:.0f} s" if f["cold_build_s"] else f["cold_build_note"])
            + environment_line(results.get("environment")))


def environment_line(e: dict | None) -> str:
    """make bench-build's figures for a user's environment (REQUIREMENTS), on the same line."""
    if not e:
        return ""
    line = (f"; environment ({e['env_sample']}, one pure-Python package): image {e['env_image_s']:.0f} s "
            f"(target <= {TARGETS['env_image_s']}), {e['env_image_mb']:.0f} MB, ")
    if e.get("env_sif_s") is None:
        line += e["env_note"]
    else:
        line += (f"SIF {e['env_sif_s']:.0f} s (target <= {TARGETS['env_sif_s']}), {e['env_sif_mb']:.0f} MB, "
                 f"an edited file to a running job {e['env_edit_to_job_s']:.0f} s "
                 f"(RUNTIME={e.get('env_edit_to_job_runtime', 'apptainer')})")
    return line + ("; the kit's image was rebuilt" if e["kit_image_rebuilt"] else "; the kit's image not rebuilt")


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
    plt.close(fig)


def plot_ratios(results: dict, path: Path) -> None:
    """Container / baseline for every ping-pong pair, against the targets: 40 pairs at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, bw) = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    pairs = sorted({(r["scenario"], r["api"]) for r in results["ratios"]})
    for i, (name, api) in enumerate(pairs):
        rows = sorted((r for r in results["ratios"] if (r["scenario"], r["api"]) == (name, api)),
                      key=lambda r: r["bytes"])
        kw = {"color": f"C{i // 2 % 10}", "marker": "o", "linestyle": "-" if api == "buffer" else ":",
              "label": f"{name} / {rows[0]['baseline']} ({api})"}
        lat.plot([r["bytes"] for r in rows], [r["latency_ratio"] for r in rows], **kw)
        bw.plot([r["bytes"] for r in rows], [r["bandwidth_ratio"] for r in rows], **kw)
    for ax, what, target in ((lat, "latency", TARGETS["latency"]), (bw, "bandwidth", TARGETS["bandwidth"])):
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.axhline(target, color="red", linewidth=0.8, linestyle="--", label=f"target {target}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel(f"{what}: container / baseline")
        ax.set_title(f"ping-pong {what} ratio ({'lower' if what == 'latency' else 'higher'} is better)")
        ax.grid(True, which="both", alpha=0.3)
    bw.legend(fontsize=6, loc="lower left")
    fig.suptitle(f"make bench{' QUICK=1' if results['quick'] else ''} — {results['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(results: dict, path: Path) -> None:
    """Seconds against ranks per node, one line per mode, one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(next(iter(results["curve"].values())))
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 4.5))
    for ax, workload in zip(axes if len(workloads) > 1 else [axes], workloads):
        for i, mode in enumerate(results["modes"]):
            points = sorted((int(rpn), v["median_s"]) for rpn, v in results["curve"][mode][workload].items())
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=f"C{i}",
                    linestyle="--" if mode == "srun" else "-", label="bare srun" if mode == "srun" else mode)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ranks per node (2 nodes; above 4 the nodes' CPUs are overcommitted)")
        ax.set_ylabel("seconds (median)")
        ax.set_title(workload)
        ax.grid(True, which="both", alpha=0.3)
    (axes[0] if len(workloads) > 1 else axes).legend(fontsize=8)
    fig.suptitle(f"make bench-curve — {results['cluster']} — {results['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve_table(results: dict) -> str:
    """What make bench-curve prints: the tables docs/performance.md shows."""
    return "\n\n".join([curve_markdown(results), enter_cpu_markdown(results)])


# ---- the tables in docs/performance.md, generated from the committed results ----

def _md(rows: list[list[str]]) -> str:
    head, *body = rows
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |"
                                                                               for r in body])


def pingpong_markdown(results: dict) -> str:
    rows = [["ping-pong, buffer API, latency µs / bandwidth MB/s", *(human(s) for s in SIZES)]]
    for name, apis in results["pingpong"].items():
        what = " ".join(results["scenarios"][name]["what"].split())
        rows.append([f"`{name}`: {what}",
                     *(f"{apis['buffer'][s]['latency_us']:.1f} / {apis['buffer'][s]['bandwidth_MBps']:.0f}"
                       for s in SIZES)])
    ratios = [["container / baseline: latency x, bandwidth x (bold: misses a target)", *(human(s) for s in SIZES)]]
    for scenario, base, api in dict.fromkeys((r["scenario"], r["baseline"], r["api"]) for r in results["ratios"]):
        cells = {r["bytes"]: r for r in results["ratios"] if (r["scenario"], r["api"]) == (scenario, api)}
        ratios.append([f"`{scenario}` / `{base}`, {api}",
                       *((lambda c: f"{c}" if meets(cells[s]) else f"**{c}**")(
                           f"{cells[s]['latency_ratio']:.2f} / {cells[s]['bandwidth_ratio']:.2f}") for s in SIZES)])
    met = sum(meets(r) for r in results["ratios"])
    return (_md(rows) + "\n\n" + _md(ratios) + f"\n\nAgainst the targets (latency at most {TARGETS['latency']}x, "
            f"bandwidth at least {TARGETS['bandwidth']}x): {met} of {len(results['ratios'])} pairs meet them.")


def jobs_markdown(results: dict) -> str:
    scenarios = results["scenarios"]
    rows = [["whole job, 4 ranks (2 nodes x 2 on the cluster), median wall time", "baseline", "this", "ratio"]]
    for _, size, walls in whole_jobs(results):
        what = "start-up (init, barrier, finalize)" if size is None else f"scatter of {size:,} values"
        for name, d in walls.items():
            base = scenarios[name]["baseline"]
            if not base or base not in walls:
                continue
            rows.append([f"{what}: `{name}` / `{base}`", f"{walls[base]['median_s']:.2f} s", f"{d['median_s']:.2f} s",
                         f"{d['median_s'] / walls[base]['median_s']:.2f}x"])
    ratios = ", ".join(f"`{k}` {v:.2f}" for k, v in results["job_ratios"].items() if v is not None)
    return (_md(rows) + f"\n\n`job_ratios` (the kit's APPTAINER_MODE={results['apptainer_mode']} against bare srun, "
            f"2 nodes x 2 ranks): {ratios}.")


def build_markdown(results: dict) -> str:
    """make bench-build's facts against their targets."""
    f = results["image"]
    rows = [["what building costs", "measured", "target"],
            ["Docker image", f"{f['docker_image_mb']:.0f} MB", f"at most {TARGETS['image_mb']} MB"],
            ["SIF", f"{f['sif_mb']:.0f} MB", f"at most {TARGETS['sif_mb']} MB"],
            ["rebuild after editing an example", f"{f['rebuild_after_example_edit_s']:.1f} s",
             f"at most {TARGETS['rebuild_s']} s"],
            ["cold build of the Docker image (`--no-cache`)", f"{f['cold_build_s']:.0f} s", "none set"]]
    e = results.get("environment")
    if e and e.get("env_sif_s") is not None:
        rows += [[f"a user's environment (`{e['env_sample']}`): its image on the kit's", f"{e['env_image_s']:.0f} s, "
                  f"{e['env_image_mb']:.0f} MB", f"at most {TARGETS['env_image_s']} s"],
                 ["its SIF, made from that image", f"{e['env_sif_s']:.0f} s, {e['env_sif_mb']:.0f} MB",
                  f"at most {TARGETS['env_sif_s']} s"],
                 [f"an edited requirements file to a running job (2 ranks, "
                  f"RUNTIME={e.get('env_edit_to_job_runtime', 'apptainer')})", f"{e['env_edit_to_job_s']:.0f} s",
                  "none set"]]
    return _md(rows)


def _shown(said: str) -> str:
    """A verdict (stats.verdict) as the tables show it: a missed target in bold."""
    return "**missed**" if said == "missed" else said


def env_markdown(results: dict) -> str:
    """make bench-env's figure: an environment's SIF against the kit's at start-up, judged by its interval."""
    (kit, k), (env, e) = results["startup"].items()
    mb = results["sif_mb"]
    low, high = results["interval"]
    said = judged((low, high), TARGETS["env_startup"])
    rows = [[f"start-up, 2 nodes x 2 ranks, `APPTAINER_MODE={results['apptainer_mode']}`", "measured", "target", ""],
            [f"the SIF of `{results['requirements']}` ({mb[env]:.0f} MB) against the kit's ({mb[kit]:.0f} MB), a "
             f"program that imports none of its packages: {e['median_s']:.2f} s against {k['median_s']:.2f} s "
             f"(medians of {len(e['runs'])})", f"{results['ratio']:.3f}x ({LEVEL:.0%} interval {low:.2f} to "
             f"{high:.2f})", f"at most {TARGETS['env_startup']}x", _shown(said)]]
    return _md(rows)


def curve_markdown(results: dict) -> str:
    parts = []
    rpns = results["ranks_per_node"]
    for workload in next(iter(results["curve"].values())):
        base = results["curve"]["srun"][workload]
        rows = [[f"{workload}, 2 nodes: median s (x bare srun)", *(f"{r} per node" for r in rpns)]]
        for mode in results["modes"]:
            row = results["curve"][mode][workload]
            cells = [f"{row[r]['median_s']:.2f} ({row[r]['median_s'] / base[r]['median_s']:.2f}x)" for r in rpns]
            rows.append(["bare srun" if mode == "srun" else f"`{mode}`", *cells])
        parts.append(_md(rows))
    slope = results["slope_s_per_rank_per_node"]
    parts.append("Start-up, each extra rank per node: " + ", ".join(
        f"{'bare srun' if m == 'srun' else m} {slope[m] * 1000:.0f} ms ({extra_rank_ms(results, m):+.0f} ms)"
        for m in results["modes"]) + ".")
    floor = image_floor(results)
    if floor:
        parts.append(f"Entering the image once per node (one Apptainer start: `sandbox` at 1 rank per node against "
                     f"bare srun, {floor['enter_s']:+.2f} s) is alone {floor['ratio']:.2f}x of bare srun's 2 x 2 "
                     f"start-up ({floor['bare_2x2_s']:.2f} s): the floor, within this machine's noise, of any "
                     "mode that starts Apptainer on the nodes.")
    sandbox = results["sandbox"]
    parts.append(f"The sandbox's one-time cost, per node and SIF build: the first job after removing the folders "
                 f"took {sandbox['first_job_s']:.2f} s, the next {sandbox['reused_s']:.2f} s, so unpacking costs "
                 f"about {sandbox['unpack_s']:.1f} s; later jobs reuse it.")
    keys = ("wall", "launch", "import", "init", "barrier", "scatter", "finalize")
    rows = [["10M scatter, 2 nodes x 2 ranks, median s", *keys]]
    for name, phases in results["breakdown"].items():
        if "wall" in phases:
            rows.append([name, *(f"{phases[k]:.2f}" for k in keys)])
    parts.append(_md(rows))
    cold = results["breakdown"].get("cold page cache", {})
    if "note" not in cold:
        parts.append("From a cold page cache (emptied before each run): " + ", ".join(
            f"{'bare srun' if m == 'srun' else m} {v['wall']:.2f} s (import {v['import']:.2f} s)"
            for m, v in cold.items()) + ".")
    return "\n\n".join(parts)


def image_floor(curve: dict) -> dict | None:
    """What entering the image once per node costs a job's start-up (the curve's 1-rank-per-node sandbox,
    one Apptainer start per node, against bare srun), and so the lowest 2 x 2 start-up ratio that any mode
    starting Apptainer on the nodes can reach on this machine; None without those points."""
    if not {1, 2} <= set(curve["ranks_per_node"]) or "sandbox" not in curve["modes"]:
        return None
    bare, sandbox = curve["curve"]["srun"]["startup"], curve["curve"]["sandbox"]["startup"]
    enter = sandbox[1]["median_s"] - bare[1]["median_s"]
    return {"enter_s": enter, "bare_2x2_s": bare[2]["median_s"],
            "ratio": (bare[2]["median_s"] + enter) / bare[2]["median_s"]}


def extra_rank_ms(curve: dict, mode: str) -> float:
    """What each extra rank per node adds to a mode's start-up beyond bare srun's, in ms (the curve's slopes)."""
    slope = curve["slope_s_per_rank_per_node"]
    return (slope[mode] - slope["srun"]) * 1000


def targets_markdown(bench: dict, curve: dict, curve_note: bool = True) -> str:
    """Each figure the kit promises, measured, against its target (stats.TARGETS). A whole job's ratio is
    judged by its bootstrap interval: met or missed only when the whole interval says so, otherwise
    not resolved at this noise, with the interval shown."""
    mode = bench["apptainer_mode"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    rows = [[f"the kit's `APPTAINER_MODE={mode}` against bare srun, 2 nodes", "measured", "target", ""]]
    names = {"startup": "start-up, 2 x 2 ranks", "scatter10M": "scatter of 10,000,000 values, 2 x 2 ranks",
             "scatter100M": "scatter of 100,000,000 values, 2 x 2 ranks"}
    intervals = job_intervals(bench)
    for key, ratio in bench["job_ratios"].items():
        if ratio is None:
            continue
        target, interval = target_of(key), intervals[key]
        said = judged(interval, target) if interval else ("met" if ratio <= target else "missed")
        rows.append([names[JOB_RATIOS[key][1] or "startup"],
                     f"{ratio:.3f}x" + (f" ({LEVEL:.0%} interval {interval[0]:.2f} to {interval[1]:.2f})"
                                        if interval else ""),
                     f"at most {target}x", _shown(said)])
    if mode in curve["slope_s_per_rank_per_node"]:
        extra = extra_rank_ms(curve, mode)
        rows.append(["start-up, each extra rank per node, beyond bare srun's", f"{extra:+.0f} ms",
                     f"at most {TARGETS['extra_rank_ms']} ms", verdict(extra <= TARGETS["extra_rank_ms"])])
    else:
        rows.append(["start-up, each extra rank per node, beyond bare srun's", f"not in this curve (modes: "
                     f"{', '.join(curve['modes'])})", f"at most {TARGETS['extra_rank_ms']} ms", ""])
    cpu = curve.get("enter_cpu", {}).get(mode)
    if cpu:
        rows.append(["CPU to enter the image, per rank after a node's first", f"{cpu['per_rank_ms']:.1f} ms",
                     f"at most {TARGETS['enter_cpu_ms']} ms", verdict(cpu["per_rank_ms"] <= TARGETS["enter_cpu_ms"])])
    took = bench.get("took_s")
    if took:
        minutes = took["total"] / 60
        rows.append(["`make bench`, start to end", f"{minutes:.1f} min", f"at most {TARGETS['bench_minutes']} min",
                     verdict(minutes <= TARGETS["bench_minutes"])])
    curve_took = curve.get("took_s")
    note = (f"\n\n`make bench-curve` took {curve_took['total'] / 60:.0f} min (its own target, so that `make bench` "
            "keeps its budget)." if curve_took and curve_note else "")
    return _md(rows) + note


def enter_cpu_markdown(curve: dict) -> str:
    """The CPU that entering the image costs each rank, per mode (bench-curve's enter_cpu)."""
    cpu = curve.get("enter_cpu")
    if not cpu:
        return "This curve's run did not measure the CPU to enter the image (it predates the measurement)."
    tasks = next(iter(cpu.values()))["tasks"]
    rows = [[f"CPU to enter the image, {tasks} tasks at once on one node (median)", "the node's first rank",
             "each rank after it"]]
    rows += [[f"`{mode}`", f"{v['first_ms']:.0f} ms", f"{v['per_rank_ms']:.1f} ms"] for mode, v in cpu.items()]
    return _md(rows)


GENERATED = {"pingpong": (("bench.json",), pingpong_markdown), "jobs": (("bench.json",), jobs_markdown),
             "curve": (("bench-curve.json",), curve_markdown), "enter-cpu": (("bench-curve.json",), enter_cpu_markdown),
             "targets": (("bench.json", "bench-curve.json"), targets_markdown),
             # The same targets for APPTAINER_MODE=sandbox's own full run (make bench APPTAINER_MODE=sandbox).
             "targets-sandbox": (("bench-sandbox.json", "bench-curve.json"),
                              lambda bench, curve: targets_markdown(bench, curve, curve_note=False)),
             "build": (("bench-build.json",), build_markdown), "env": (("bench-env.json",), env_markdown)}


def docs_block(name: str, folder: Path) -> str:
    sources, render = GENERATED[name]
    text = render(*(load(folder / source) for source in sources))
    return (f"<!-- generated from {' and '.join(f'docs/bench/{s}' for s in sources)} by "
            f"`python3 scripts/kit bench-docs`; edit neither -->\n{text}\n<!-- end generated -->")


def replace_blocks(text: str, folder: Path) -> str:
    """docs/performance.md with each `<!-- bench:NAME -->` block regenerated."""
    for name in GENERATED:
        marker = f"<!-- bench:{name} -->"
        start = text.find(marker)
        if start < 0:
            continue
        end = text.find("<!-- end generated -->", start)
        end = end + len("<!-- end generated -->") if end >= 0 else start + len(marker)
        text = text[:start] + marker + "\n" + docs_block(name, folder) + text[end:]
    return text
