"""The arithmetic of make bench: medians over runs and container/baseline
ratios. Pure functions, unit-tested."""

from __future__ import annotations

import random
import statistics

SIZES = (8, 65536, 1048576, 4194304)
APIS = ("buffer", "pickle")
# Ping-pong pairs: container / baseline. Whole jobs: the kit's APPTAINER_MODE / bare srun, 2 nodes x 2 ranks
# (job_ratios' keys); extra_rank_ms: what each extra rank per node adds to start-up beyond bare srun's slope.
# enter_cpu_ms: CPU that entering the image costs each rank after a node's first (bench-curve measures it).
# env_startup: a user's environment's SIF (REQUIREMENTS) / the kit's, 2 nodes x 2 ranks (make bench-env).
TARGETS = {"latency": 1.05, "bandwidth": 0.95, "startup": 1.15, "scatter10M": 1.05, "scatter100M": 1.03,
           "extra_rank_ms": 10, "enter_cpu_ms": 10, "bench_minutes": 12, "image_mb": 500, "sif_mb": 250,
           "rebuild_s": 20, "env_image_s": 60, "env_sif_s": 180, "env_startup": 1.05}
LEVEL = 0.90  # the bootstrap interval of a ratio of medians: a pair is judged only outside it


def pingpong_medians(raw: dict) -> dict:
    """name -> api -> bytes -> [result lines] into name -> api -> bytes -> medians."""
    return {name: {api: {size: {"latency_us": statistics.median(r["latency_us"] for r in rs),
                                "bandwidth_MBps": statistics.median(r["bandwidth_MBps"] for r in rs),
                                "runs": len(rs)}
                         for size, rs in sizes.items()} for api, sizes in apis.items()}
            for name, apis in raw.items()}


def wall_medians(times: dict[str, list[float]]) -> dict:
    return {name: {"median_s": statistics.median(t), "runs": t} for name, t in times.items()}


def meets(row: dict) -> bool:
    return row["latency_ratio"] <= TARGETS["latency"] and row["bandwidth_ratio"] >= TARGETS["bandwidth"]


def pingpong_ratios(pingpong: dict, baselines: dict[str, str | None]) -> list[dict]:
    """One row per (scenario with a baseline, api, size): container / baseline."""
    rows = []
    for name, base in baselines.items():
        if not base or name not in pingpong or base not in pingpong:
            continue
        for api in APIS:
            for size in SIZES:
                c, b = pingpong[name][api][size], pingpong[base][api][size]
                rows.append({"scenario": name, "baseline": base, "api": api, "bytes": size,
                             "latency_ratio": c["latency_us"] / b["latency_us"],
                             "bandwidth_ratio": c["bandwidth_MBps"] / b["bandwidth_MBps"]})
    return rows


def wall_ratio(walls: dict, name: str, base: str) -> float | None:
    if name not in walls or base not in walls:
        return None
    return walls[name]["median_s"] / walls[base]["median_s"]


# The kit's default mode against bare srun, 2 nodes x 2 ranks: stable keys for results/bench.json,
# each -> (where in the results, which scatter); its target is TARGETS[the scatter's name or "startup"].
JOB_RATIOS = {"startup_2nodes_apptainer_vs_srun": ("startup", None),
              "scatter10M_2nodes_apptainer_vs_srun": ("scatters", "scatter10M"),
              "scatter100M_2nodes_apptainer_vs_srun": ("scatters", "scatter100M")}


def job_ratios(results: dict) -> dict[str, float | None]:
    """Plain numbers: cluster-apptainer-2nodes / cluster-native-2nodes per whole job (None: not measured)."""
    found: dict[str, float | None] = {}
    for key, (what, size) in JOB_RATIOS.items():
        walls = results.get(what, {})
        walls = walls.get(size, {}) if size else walls
        found[key] = wall_ratio(walls, "cluster-apptainer-2nodes", "cluster-native-2nodes")
    return found


def target_of(key: str) -> float:
    """The target for one of JOB_RATIOS' keys."""
    return TARGETS[JOB_RATIOS[key][1] or "startup"]


def slope(points: dict[int, float]) -> float:
    """Least-squares slope of y over x: seconds per extra rank per node."""
    xs, ys = list(points), list(points.values())
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / spread if spread else 0.0


def human(size: int) -> str:
    return f"{size // 2**20} MiB" if size >= 2**20 else f"{size // 2**10} KiB" if size >= 2**10 else f"{size} B"


def ratio_interval(runs: list[float], base_runs: list[float], level: float = LEVEL, resamples: int = 2000,
                   seed: int = 1) -> tuple[float, float]:
    """The bootstrap interval of median(runs) / median(base_runs): both resampled with replacement,
    `resamples` times, seeded so a result file always renders the same."""
    rng = random.Random(seed)
    ratios = sorted(statistics.median(rng.choices(runs, k=len(runs))) /
                    statistics.median(rng.choices(base_runs, k=len(base_runs))) for _ in range(resamples))
    cut = int((1 - level) / 2 * resamples)
    return ratios[cut], ratios[resamples - 1 - cut]


def verdict(interval: tuple[float, float], target: float) -> str:
    """A ratio whose target is an upper bound: met when the whole interval is at or under it, missed when
    the whole interval is over it, otherwise not resolved at this noise (never counted either way)."""
    low, high = interval
    if high <= target:
        return "met"
    if low > target:
        return "missed"
    return "not resolved"


def job_intervals(results: dict) -> dict[str, tuple[float, float] | None]:
    """JOB_RATIOS' keys -> the bootstrap interval of each ratio, from the runs the results keep."""
    found: dict[str, tuple[float, float] | None] = {}
    for key, (what, size) in JOB_RATIOS.items():
        walls = results.get(what, {})
        walls = walls.get(size, {}) if size else walls
        kit, bare = walls.get("cluster-apptainer-2nodes"), walls.get("cluster-native-2nodes")
        found[key] = ratio_interval(kit["runs"], bare["runs"]) if kit and bare else None
    return found
