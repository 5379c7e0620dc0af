"""make pins-check's reading of apt's files: the host's mirror from its sources, a
Packages index, and which pinned versions an architecture's index lacks."""

from __future__ import annotations

from mpikit import config, pins

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""

INDEX = """Package: openmpi-bin
Source: openmpi
Version: 4.1.4-3+b1
Architecture: arm64

Package: libopenmpi-dev
Source: openmpi
Version: 4.1.4-3+b1
Architecture: arm64

Package: libpmix-dev
Source: pmix
Version: 4.2.2-1+deb12u1
Architecture: arm64
Depends: libpmix2 (= 4.2.2-1+deb12u1)
Description: Package: lines inside a description do not count
"""


def test_the_mirror_comes_from_a_deb822_source_never_the_security_archive() -> None:
    security_first = {"a-security.sources": DEB822.split("\n\n")[1], "debian.sources": DEB822}
    assert pins.mirror_from_sources(security_first) == "http://deb.debian.org/debian"


def test_the_mirror_comes_from_a_one_line_list() -> None:
    text = ("# deb http://old.example/debian bookworm main\n"
            "deb http://security.debian.org/debian-security bookworm-security main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n")
    assert pins.mirror_from_sources({"sources.list": text}) == "http://mirror.example/debian"


def test_disabled_and_source_only_stanzas_are_skipped() -> None:
    text = ("Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\n\n"
            "Types: deb\nURIs: http://off.example/debian\nSuites: trixie\nEnabled: no\n\n" + DEB822)
    assert pins.mirror_from_sources({"x.sources": text}) == "http://deb.debian.org/debian"
    assert pins.mirror_from_sources({}) is None


def test_parse_packages() -> None:
    index = pins.parse_packages(INDEX + "\nPackage: openmpi-bin\nVersion: 4.1.4-3\n")
    assert index["openmpi-bin"] == {"4.1.4-3+b1", "4.1.4-3"}
    assert set(index) == {"openmpi-bin", "libopenmpi-dev", "libpmix-dev"}


def test_every_pinned_package_of_every_base_is_checked() -> None:
    versions = config.read_versions()
    for base in config.supported_bases():
        want = pins.wanted(versions, base)
        assert want == {"openmpi-bin": versions[f"OPENMPI_DEB_{base}"],
                        "libopenmpi-dev": versions[f"OPENMPI_DEB_{base}"],
                        "libpmix-dev": versions[f"PMIX_DEB_{base}"]}


def test_a_version_the_architecture_lacks_is_named_with_what_it_has() -> None:
    want = {"openmpi-bin": "4.1.4-3+b1", "libopenmpi-dev": "4.1.4-3+b1", "libpmix-dev": "4.2.2-1+deb12u1"}
    assert pins.missing(want, pins.parse_packages(INDEX), "bookworm", "arm64") == []
    rebuilt = pins.parse_packages(INDEX.replace("4.1.4-3+b1", "4.1.4-3+b2"))
    problems = pins.missing(want, rebuilt, "bookworm", "arm64")
    assert len(problems) == 2
    assert problems[0] == ("bookworm/arm64: openmpi-bin 4.1.4-3+b1 is pinned in versions.env, but the mirror's "
                           "bookworm main index for arm64 has 4.1.4-3+b2")
    assert "no version at all" in pins.missing({"libpmix2": "1"}, rebuilt, "bookworm", "arm64")[0]


def test_the_index_url() -> None:
    assert pins.packages_url("http://m.example/debian/", "trixie", "arm64") == \
        "http://m.example/debian/dists/trixie/main/binary-arm64/Packages.xz"
