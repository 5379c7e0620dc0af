"""Is the image or SIF about to run what this checkout builds? Every image and SIF the kit makes records
what it was built from (config.SOURCE_LABEL, SOURCE_FILES_LABEL); this compares that record with the
checkout's, in milliseconds, and says which input changed. The run path (prepare.ensure_image,
ensure_sif) rebuilds a stale default build and runs a named or foreign one with a notice; make doctor
reports the same judgement."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import config
from .config import LABEL_PREFIX, SOURCE_FILES_LABEL, SOURCE_LABEL

KIT_LABEL = f"{LABEL_PREFIX}.base"  # on every image and SIF the kit has built, from its first release
PLATFORM_LABEL = f"{LABEL_PREFIX}.platform"
CURRENT, STALE, UNLABELLED = "current", "stale", "unlabelled"
SHOWN = 4  # changed inputs named in the one line; the rest counted


@dataclass(frozen=True)
class Verdict:
    state: str  # current | stale | unlabelled
    why: str  # for stale: which inputs differ; for unlabelled: what is missing

    @property
    def current(self) -> bool:
        return self.state == CURRENT


def judge(labels: dict[str, str] | None, base: str, platform: str, parts: dict[str, str]) -> Verdict:
    """The judgement from a build's labels and the checkout's parts (config.source_parts) for `base` and
    `platform`: current when the recorded digest is the checkout's; stale, saying why, when the kit built
    it from something else (another base or platform, other inputs, or before builds recorded them);
    unlabelled when the kit did not build it (built elsewhere, handed out, pulled)."""
    labels = labels or {}
    if KIT_LABEL not in labels:
        return Verdict(UNLABELLED, f"it has no {KIT_LABEL} label: not built by this kit")
    if labels.get(SOURCE_LABEL) == config.source_digest(base, platform, parts):
        return Verdict(CURRENT, "built from this checkout's inputs")
    if labels[KIT_LABEL] != base:
        return Verdict(STALE, f"built for BASE={labels[KIT_LABEL]}, not {base}")
    if labels.get(PLATFORM_LABEL, platform) != platform:
        return Verdict(STALE, f"built for PLATFORM={labels[PLATFORM_LABEL]}, not {platform}")
    if SOURCE_FILES_LABEL not in labels:
        return Verdict(STALE, f"built before the kit recorded its inputs (no {SOURCE_LABEL} label)")
    return Verdict(STALE, changed(config.decode_parts(labels[SOURCE_FILES_LABEL]), parts))


def changed(recorded: dict[str, str], now: dict[str, str]) -> str:
    """Which inputs differ between a build's record and the checkout, in one phrase."""
    files = sorted(set(recorded) | set(now))
    edited = [n for n in files if n in recorded and n in now and recorded[n] != now[n]]
    added = [n for n in files if n not in recorded]
    removed = [n for n in files if n not in now]
    said = [*edited, *(f"{n} (new)" for n in added), *(f"{n} (removed)" for n in removed)]
    if said:
        more = f" and {len(said) - SHOWN} more" if len(said) > SHOWN else ""
        return f"{', '.join(said[:SHOWN])}{more} changed since it was built"
    return "its inputs digest is not this checkout's"


def image_verdict(image: str, base: str, platform: str) -> Verdict:
    from . import docker

    return judge(docker.image_labels(image), base, platform, config.source_parts())


def sif_verdict(path: Path, base: str, platform: str) -> Verdict:
    from . import sif

    try:
        labels = sif.labels(path)
    except (OSError, ValueError) as exc:
        return Verdict(UNLABELLED, f"its labels cannot be read ({exc})")
    return judge(labels, base, platform, config.source_parts())


def notice(what: str, verdict: Verdict, knob: str, build: str) -> str:
    """The one line for a build that runs as it is although the checkout would build another: one the
    user named (`knob`), one not built by the kit, or one whose signature decides (VERIFY_KEY)."""
    return f"note: {what} is not this checkout's build ({verdict.why}); it runs as it is ({knob}); " \
           f"this checkout's build: {build}"
