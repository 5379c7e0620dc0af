"""make bench's output: the table printed at the end and the plot."""

from __future__ import annotations

from pathlib import Path

from .stats import SIZES, TARGETS, human, meets, wall_ratio


def table(results: dict) -> str:
    scenarios = results["scenarios"]
    lines = ["scenario                      what"]
    lines += [f"  {name:28} {s['what']}" for name, s in scenarios.items()]
    lines += ["", "ping-pong (buffer API; pickle in results/bench.json): latency µs / bandwidth MB/s",
              "  " + f"{'scenario':28}" + "".join(f"{human(s):>20}" for s in SIZES)]
    for name, apis in results["pingpong"].items():
        cells = "".join(f"{apis['buffer'][s]['latency_us']:>9.1f} /{apis['buffer'][s]['bandwidth_MBps']:>8.0f}"
                        for s in SIZES)
        lines.append(f"  {name:28}{cells}")
    lines += ["", f"container / baseline ratios (targets: latency <= {TARGETS['latency']}, "
                  f"bandwidth >= {TARGETS['bandwidth']})"]
    for row in results["ratios"]:
        lines.append(f"  {row['scenario']:28} / {row['baseline']:22} {row['api']:6} {human(row['bytes']):>7}: "
                     f"latency x{row['latency_ratio']:.2f}, bandwidth x{row['bandwidth_ratio']:.2f}"
                     f"  {'meets' if meets(row) else 'MISSES'}")
    lines.append("")
    for what in ("startup", "scatter"):
        walls = results[what]
        lines.append(f"{what}: " + ("4-rank init/barrier/finalize wall time" if what == "startup" else
                                    f"scatter_gather.py --size {results['scatter_size']:,} with 4 ranks, wall time"))
        for name, d in walls.items():
            base = scenarios[name]["baseline"]
            r = wall_ratio(walls, name, base) if base else None
            verdict = (f" ({'meets' if r <= TARGETS['startup'] else 'MISSES'} <= {TARGETS['startup']})"
                       if r is not None and what == "startup" else "")
            lines.append(f"  {name:28} {d['median_s']:8.2f} s" + (f"  x{r:.2f} vs {base}{verdict}" if r else ""))
        lines.append("")
    f = results["image"]
    lines.append(f"image: Docker {f['docker_image_mb']:.0f} MB (target <= {TARGETS['image_mb']}), "
                 + (f"SIF {f['sif_mb']:.0f} MB (target <= {TARGETS['sif_mb']}), " if f["sif_mb"] else "no SIF, ")
                 + f"rebuild after editing an example {f['rebuild_after_example_edit_s']:.1f} s "
                 f"(target <= {TARGETS['rebuild_s']}), cold build "
                 + (f"{f['cold_build_s']:.0f} s" if f["cold_build_s"] else f["cold_build_note"]))
    return "\n".join(lines)


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
