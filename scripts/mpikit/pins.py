"""versions.env's exact Debian pins against the mirror's apt metadata (make pins-check).

The image build installs Open MPI and PMIx by exact version and fails when the
mirror serves another. A version can exist for one architecture and not for
another (a binNMU such as 4.1.4-3+b1 is rebuilt per architecture), so this
checks every pinned package of every base for every supported platform, from
the Packages indexes alone: a few downloads, no build. The mirror is the one
the host's apt uses (DEBIAN_MIRROR overrides it), never a name written here.
"""

from __future__ import annotations

import lzma
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from . import config, platforms
from .ui import MissingPrerequisite, RunError, say

# The packages install.sh asks apt for by exact version, by the versions.env key they take
# (the PMIx library comes with libpmix-dev, which depends on its exact version).
PINNED = {"OPENMPI_DEB": ("openmpi-bin", "libopenmpi-dev"), "PMIX_DEB": ("libpmix-dev",)}
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


# ---- pure: reading apt's files ----

def mirror_from_sources(files: Mapping[str, str]) -> str | None:
    """The first Debian mirror in apt's source files (name -> text), skipping security archives:
    deb822 `.sources` stanzas (URIs:/Suites:) and one-line `deb URI SUITE ...` lists."""
    for name, text in files.items():
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
                uris, suites = fields.get("URIs", "").split(), fields.get("Suites", "")
                if (uris and suites and "security" not in suites and "deb" in fields.get("Types", "deb").split()
                        and fields.get("Enabled", "yes").lower() != "no"):
                    return uris[0]
        else:
            for line in text.splitlines():
                words = [w for w in line.split() if not w.startswith("[") and not w.endswith("]")]
                if len(words) >= 3 and words[0] == "deb" and "security" not in line \
                        and re.match(r"https?://", words[1]):
                    return words[1]
    return None


def parse_packages(text: str) -> dict[str, set[str]]:
    """A Packages index -> {package: the versions it lists}."""
    found: dict[str, set[str]] = {}
    for stanza in text.split("\n\n"):
        package = re.search(r"^Package: (\S+)$", stanza, re.M)
        version = re.search(r"^Version: (\S+)$", stanza, re.M)
        if package and version:
            found.setdefault(package.group(1), set()).add(version.group(1))
    return found


def wanted(versions: Mapping[str, str], base: str) -> dict[str, str]:
    """{package: exact version} that versions.env pins for `base`."""
    return {package: versions[f"{key}_{base}"] for key, packages in PINNED.items() for package in packages}


def missing(want: Mapping[str, str], index: Mapping[str, set[str]], base: str, arch: str) -> list[str]:
    """One line per pinned version the `base`/`arch` index does not carry, naming what it has instead."""
    problems = []
    for package, version in want.items():
        have = index.get(package, set())
        if version not in have:
            instead = ", ".join(sorted(have)) or "no version at all"
            problems.append(f"{base}/{arch}: {package} {version} is pinned in versions.env, but the mirror's "
                            f"{base} main index for {arch} has {instead}")
    return problems


def packages_url(mirror: str, suite: str, arch: str) -> str:
    return f"{mirror.rstrip('/')}/dists/{suite}/main/binary-{arch}/Packages.xz"


# ---- the check, with the host's mirror ----

def host_mirror(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    if environ.get("DEBIAN_MIRROR"):
        return environ["DEBIAN_MIRROR"]
    files = {}
    for source in APT_SOURCES:
        for path in sorted(source.glob("*")) if source.is_dir() else [source]:
            if path.suffix in (".sources", ".list") and path.is_file():
                files[str(path)] = path.read_text(errors="replace")
    mirror = mirror_from_sources(files)
    if mirror is None:
        raise MissingPrerequisite("no Debian mirror in this host's apt sources (/etc/apt); name one: "
                                  "DEBIAN_MIRROR=http://deb.debian.org/debian make pins-check")
    return mirror


def fetch_index(url: str) -> dict[str, set[str]]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise RunError(f"cannot download {url} ({exc}); check the mirror, or name another: "
                       "DEBIAN_MIRROR=http://.../debian make pins-check") from None
    return parse_packages(lzma.decompress(data).decode("utf-8", errors="replace"))


def check() -> int:
    """Every pinned version, every base, every supported platform: 0 when all exist."""
    mirror, versions = host_mirror(), config.read_versions()
    problems, start = [], time.monotonic()
    for base in config.supported_bases():
        want = wanted(versions, base)
        for platform in platforms.SUPPORTED:
            arch = platforms.arch(platform)
            url = packages_url(mirror, base, arch)
            found = missing(want, fetch_index(url), base, arch)
            problems += found
            say(f"pins-check: {base}/{arch}: " + ("; ".join(found) if found else
                "every pin exists (" + ", ".join(f"{p} {v}" for p, v in want.items()) + ")"))
    took = time.monotonic() - start
    if problems:
        raise RunError(f"{len(problems)} pinned Debian version(s) missing on {mirror} ({problems[0]}); set a "
                       "version every architecture has in versions.env, then: make pins-check")
    say(f"pins-check: every pinned Debian version exists for {', '.join(platforms.SUPPORTED)} on {mirror} "
        f"({took:.0f} s)")
    return 0
