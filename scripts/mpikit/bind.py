"""The bind model (HOST_MPI=PREFIX): the same image, with the site's own MPI
library loaded in place of the image's. The kit works out what to bind, and
why, from what the node's loader resolves (`ldd`) and what the image already
has (`ldconfig -p` inside it); nobody writes the list by hand.

plan() and the parsers are pure and unit-tested; gather() asks a node.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .config import upstream_version
from .slurm import offered_plugins
from .ui import UsageError

HOST_LIB = "/opt/mpi4py-kit/host-lib"  # an empty folder in the image: single host libraries are bound into it
ABI_MPI4PY = "/opt/venv/mpi4py-abi"
# The image's launch guard (scripts/image/site/mpi4py_kit_guard.py) warns when mpi4py loads a library
# other than the image's; this variable, set inside the container, says the bind model did it on purpose.
GUARD_MARK = "MPI4PY_KIT_HOST_MPI"  # mpi4py's binary wheel in the image: a variant for each ABI family
# The MPI 5.0 standard ABI first: one mpi4py build (the image's mpiabi variant) loads any vendor's.
STANDARD = "libmpi_abi.so.1"
FAMILIES = {STANDARD: "standard", "libmpi.so.40": "openmpi", "libmpi.so.12": "mpich"}
FAMILY_NAMES = {"standard": "MPI-5 standard ABI (libmpi_abi.so.1: MPICH 5, Intel MPI 2021.18, Open MPI 6)",
                "openmpi": "Open MPI ABI (libmpi.so.40)",
                "mpich": "MPICH ABI (libmpi.so.12: MPICH, Cray MPICH, Intel MPI, MVAPICH)"}
ABI_CHOICES = ("auto", "standard", "legacy")  # HOST_MPI_ABI
# mpi4py's variant for each family, in the image's second mpi4py (ABI_MPI4PY); openmpi: the image's own build.
VARIANTS = {"standard": "mpiabi", "mpich": "mpich"}
# One C library per process: these always come from the image.
C_RUNTIME = re.compile(r"^(libc|libm|libdl|libpthread|librt|libutil|libresolv|libanl|libmvec|ld-linux[-\w]*)"
                       r"\.so(\.\d+)*$")
# The site's fabric and process-management libraries: the site MPI was built against the node's
# copies, which carry the site's providers (Slingshot's cxi, the site's verbs, Slurm's PMI); the image's
# generic copy of the same soname would load and then miss them. Always the node's.
SITE_STACK = re.compile(r"^(libfabric|libucp|libuct|libucs|libucm|libibverbs|librdmacm|libmlx5|libefa|libpsm2|"
                        r"libpsm_infinipath|libcxi|libxpmem|libpmi|libpmi2|libpmix|libpals|libhcoll|libnl-3|"
                        r"libnl-route-3|libslurm)\b")
# A derived image's list of its packages whose extensions link an MPI (REQUIREMENTS; scripts/image/derive.sh
# writes it): one line per package, "NAME VERSION SONAME". The kit's own image has none.
LINKED = "/opt/mpi4py-kit/environment-mpi.txt"
# Configuration and plugin folders a library reads, bound when they exist on the node ({dir}: the library's folder).
CONFIG = {"libfabric": ("{dir}/libfabric",), "libibverbs": ("/etc/libibverbs.d", "{dir}/libibverbs"),
          "libucp": ("/etc/ucx", "{dir}/ucx"), "libpmix": ("{dir}/pmix", "{dir}/pmix2")}


@dataclass(frozen=True)
class Needed:
    """One line of ldd: a soname and where the node's loader finds it (None: not found)."""

    soname: str
    path: str | None


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    why: str

    def option(self) -> str:
        """apptainer exec --bind SRC:DST:ro: the site's files are read, never written."""
        return f"{self.source}:{self.target}:ro"


@dataclass(frozen=True)
class Dlopened:
    """What a site MPI opens with dlopen at run time, which ldd cannot show: Intel MPI opens Slurm's
    PMI-2 (the node's, named in I_MPI_PMI_LIBRARY) and its own libfabric's providers."""

    vendor: str  # "Intel MPI"
    pmi: str  # the node's libpmi2.so.0 (or the library the site's module names)
    pmi_needed: list[Needed]  # ldd of it
    providers: str | None = None  # the folder of the MPI's own libfabric providers (*-fi.so), if it has one


@dataclass
class Plan:
    prefix: str
    libmpi: str  # the site library, as the node sees it
    family: str  # standard | openmpi | mpich
    family_why: str = ""  # why this family, when the site has more than one (HOST_MPI_ABI)
    binds: list[Bind] = field(default_factory=list)
    from_image: list[tuple[str, str]] = field(default_factory=list)  # (soname, why the image's copy is used)
    env: dict[str, str] = field(default_factory=dict)  # set inside the container, each for a reason below
    env_why: dict[str, str] = field(default_factory=dict)
    srun_mpi: str = "pmix"
    srun_mpi_why: str = ""
    loaded: str = ""  # the file the preflight loaded inside the image
    version: str = ""  # its MPI_Get_library_version, first line
    abi: str = ""  # its MPI_Abi_get_version, "major.minor" ("" when it has none)
    dlopened: Dlopened | None = None
    linked: list[tuple[str, str]] = field(default_factory=list)  # the image's packages linking an MPI (LINKED)
    # What the plan was worked out from on the node: the prefix's library folders, the site's libmpi, every
    # library ldd resolved, the configuration folders looked for. A run reuses the plan while these are as they
    # were (reused_plan).
    watched: list[str] = field(default_factory=list)

    def binds_options(self) -> tuple[str, ...]:
        return tuple(b.option() for b in self.binds)

    def describe(self) -> list[str]:
        vendor = f", {self.dlopened.vendor}" if self.dlopened else ""
        version = f", version {self.abi}" if self.family == "standard" and self.abi else ""
        lines = [f"site MPI: {self.libmpi} ({FAMILY_NAMES[self.family]}{version}{vendor})"]
        if self.family_why:
            lines.append(f"abi    {self.family}  ({self.family_why})")
        lines += [f"bind   {b.source}" + (f" -> {b.target}" if b.target != b.source else "") + f"  ({b.why})"
                  for b in self.binds]
        lines += [f"image  {soname}  ({why})" for soname, why in self.from_image]
        lines += [f"env    {k}={v}  ({self.env_why[k]})" for k, v in self.env.items()]
        lines += [f"linked {package}  ({soname}, {FAMILY_NAMES.get(FAMILIES.get(soname, ''), soname)}: "
                  + ("the site's family, loads the site's library)" if FAMILIES.get(soname) == self.family
                     else "not the site's family)") for package, soname in self.linked]
        lines.append(f"srun   --mpi={self.srun_mpi}  ({self.srun_mpi_why})")
        return lines


def parse_linked(text: str) -> list[tuple[str, str]]:
    """LINKED's lines -> (the package "NAME VERSION", the MPI soname its extensions need)."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            found.append((f"{parts[0]} {parts[1]}", parts[2]))
    return found


def linked_problem(p: Plan) -> str | None:
    """A package of the image compiled against one MPI's library cannot run on another family's: the bind model
    swaps mpi4py's MPI, not the package's, whose extension would then load the image's libmpi beside the site's
    (or fail). Pure-Python packages and mpi4py's own variants are not in the list."""
    other = [(package, soname) for package, soname in p.linked if FAMILIES.get(soname) != p.family]
    if not other:
        return None
    names = ", ".join(package for package, _ in other)
    sonames = ", ".join(sorted({soname for _, soname in other}))
    return (f"{names} in this environment {'was' if len(other) == 1 else 'were'} compiled against {sonames} (the "
            f"image's Open MPI), but the bind model loads {p.libmpi} ({FAMILY_NAMES[p.family]}): its extensions "
            f"would not run on the site's MPI; use a site MPI of the image's family, drop HOST_MPI to run the image's "
            f"Open MPI, or leave those packages out (pure-Python packages are fine)")


def abi_name(family: str, abi: str = "") -> str:
    """'MPI-5 standard ABI 1.0', 'legacy MPICH ABI (libmpi.so.12)', ..."""
    if family == "standard":
        return f"MPI-5 standard ABI {abi}".rstrip()
    return {"openmpi": "legacy Open MPI ABI (libmpi.so.40)", "mpich": "legacy MPICH ABI (libmpi.so.12)"}.get(
        family, family)


# ---- reading what the node and the image say ----

def parse_ldd(text: str) -> list[Needed]:
    """`ldd LIB` -> what LIB needs and where it resolves (the vdso and the loader line are skipped)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^(\S+) => (not found|(\S+) \(0x[0-9a-f]+\))$", line)
        if m:
            found.append(Needed(m.group(1), None if m.group(2) == "not found" else m.group(3)))
    return found


def parse_ldconfig(text: str) -> set[str]:
    """`ldconfig -p` -> the sonames a system (here: the image) provides."""
    return {m.group(1) for m in re.finditer(r"^\s*(\S+\.so[.\d]*) \(", text, re.M)}


def node_library(ldconfig: str, soname: str) -> str | None:
    """Where `ldconfig -p` (the node's loader cache) finds `soname`, or None."""
    m = re.search(rf"^\s*{re.escape(soname)} \([^)]*\) => (\S+)$", ldconfig, re.M)
    return m.group(1) if m else None


INTEL_MPI_MARK = "I_MPI_Check_image_status"  # a symbol only Intel MPI's libmpi exports (mpi4py looks for it too)


def intel_pmi_library(libmpi: str, found: str | None, where: str, environ: Mapping[str, str]) -> str:
    """The PMI-2 library Intel MPI must open under srun: the one the site's module names (I_MPI_PMI_LIBRARY),
    else Slurm's libpmi2.so.0 from the node's loader cache; refused in one line when there is none."""
    named = environ.get("I_MPI_PMI_LIBRARY")
    if named:
        return named
    if found:
        return found
    raise UsageError(f"{libmpi} is Intel MPI, which under srun opens Slurm's PMI-2 library (libpmi2.so.0), and "
                     f"{where} has none in its loader cache (ldconfig -p): install Slurm's libpmi2 there, or name "
                     "it: export I_MPI_PMI_LIBRARY=/path/to/libpmi2.so")


def find_libmpi(prefix: str, listing: dict[str, list[str]], abi: str = "auto") -> tuple[str, str, str]:
    """(path, family, why) of the site's libmpi, given `ls` of PREFIX/lib and PREFIX/lib64. HOST_MPI_ABI=auto
    prefers the standard ABI (libmpi_abi.so.1) when the site has it beside a legacy family; resolve() falls
    back to the legacy one when its MPI_Abi_get_version says it is not the standard ABI after all."""
    names = {f"{folder}/{name}": name for folder, names in listing.items() for name in names}
    found: dict[str, str] = {}
    for path, name in sorted(names.items()):  # lib/ before lib64/
        if name in FAMILIES:
            found.setdefault(FAMILIES[name], path)
    standard = found.get("standard")
    legacy = next((family for family in ("openmpi", "mpich") if family in found), None)
    if abi == "standard":
        if not standard:
            has = f"; it has {found[legacy].rpartition('/')[2]} (HOST_MPI_ABI=legacy loads that)" if legacy else ""
            raise UsageError(f"HOST_MPI_ABI=standard, but HOST_MPI={prefix} has no lib/{STANDARD}{has}")
        return standard, "standard", "HOST_MPI_ABI=standard"
    if abi == "legacy":
        if legacy:
            return found[legacy], legacy, "HOST_MPI_ABI=legacy"
        if standard:
            raise UsageError(f"HOST_MPI_ABI=legacy, but HOST_MPI={prefix} has only the standard ABI's "
                             f"lib/{STANDARD} (HOST_MPI_ABI=auto or standard loads it)")
    elif standard:
        why = (f"auto: the standard ABI is preferred over the legacy {found[legacy].rpartition('/')[2]} the site "
               "also has; HOST_MPI_ABI=legacy forces that" if legacy else "")
        return standard, "standard", why
    elif legacy:
        return found[legacy], legacy, ""
    others = sorted(name for name in names.values() if re.fullmatch(r"libmpi\.so\.\d+", name))
    if others:
        raise UsageError(f"HOST_MPI={prefix} has {others[0]}, an ABI the image's mpi4py cannot load; it loads the "
                         f"{FAMILY_NAMES['standard']}, the {FAMILY_NAMES['openmpi']} or the {FAMILY_NAMES['mpich']}")
    raise UsageError(f"HOST_MPI={prefix} has no lib/{STANDARD}, lib/libmpi.so.40 or lib/libmpi.so.12: give the "
                     "prefix of the site's MPI, the folder that holds lib/libmpi*.so* (module show cray-mpich, "
                     "$MPICH_DIR, or dirname $(dirname $(which mpicc)))")


def library_major(version_line: str) -> tuple[str, int] | None:
    """('Open MPI', 5) or ('MPICH', 4) from the first line of MPI_Get_library_version."""
    for name, pattern in (("Open MPI", r"Open MPI v(\d+)\."), ("MPICH", r"MPICH Version:\s*(\d+)\."),
                          ("Intel MPI", r"Intel\(R\) MPI Library (\d+)"), ("MVAPICH", r"MVAPICH\S* Version:\s*(\d+)")):
        m = re.search(pattern, version_line)
        if m:
            return name, int(m.group(1))
    return None


def compatible(family: str, site_version: str, image_openmpi: str) -> str | None:
    """Why the image's mpi4py cannot run on this site MPI, or None.

    Open MPI family: the image's own mpi4py, built against the image's Open MPI, loads the site's
    libmpi.so.40, so the major versions must match. MPICH family: mpi4py's binary wheel (its MPICH
    variant) loads any MPICH-ABI library."""
    if family != "openmpi":
        return None
    site = library_major(site_version)
    image_major = int(image_openmpi.split(".")[0])
    if site is None or site[0] != "Open MPI":
        return f"the site's libmpi.so.40 reports {site_version!r}, not an Open MPI the kit can check"
    if site[1] != image_major:
        return (f"the site's Open MPI {site[1]} cannot run the image's mpi4py, built against Open MPI "
                f"{image_openmpi} (major {image_major}); use an image whose Open MPI major matches "
                f"(BASE=bookworm has Open MPI 4, trixie Open MPI 5) or the site's MPICH-ABI MPI")
    return None


# ---- the plan ----

def srun_plugin(family: str, needed: Sequence[Needed], offered: Sequence[str],
                dlopened: Dlopened | None = None) -> tuple[str, str]:
    """The --mpi plugin the site MPI can use, among those this Slurm offers (srun --mpi=list)."""
    if dlopened and (not offered or "pmi2" in offered):
        return "pmi2", (f"{dlopened.vendor} speaks PMI-2 through the library named in I_MPI_PMI_LIBRARY, which "
                        "Slurm's pmi2 plugin serves")
    links_pmix = any(n.soname.startswith("libpmix.so") for n in needed)
    links_cray_pmi = any(n.soname.startswith(("libpmi.so", "libpals.so")) for n in needed)
    if family == "openmpi":
        return "pmix", "Open MPI 5 starts only through PMIx"
    if links_cray_pmi and "cray_shasta" in offered:
        return "cray_shasta", "this MPICH links Cray's PMI (libpmi/libpals), which Slurm serves with cray_shasta"
    if links_pmix and "pmix" in offered:
        return "pmix", "this MPICH links a PMIx client"
    return "pmi2", ("an MPICH without a PMIx client speaks PMI-1/PMI-2 on the socket Slurm's pmi2 plugin "
                    "opens (PMI_FD)")


def _bind_needed(p: Plan, needed: Sequence[Needed], prefix_slash: str, image_sonames: set[str],
                 exists: Callable[[str], bool], seen: set[str]) -> None:
    """Bind what the site MPI needs from outside its prefix, each for its reason (or say the image's copy serves)."""
    for n in needed:
        path = n.path or ""
        if n.soname in seen or path.startswith(prefix_slash):
            continue
        seen.add(n.soname)
        if C_RUNTIME.match(n.soname):
            p.from_image.append((n.soname, "the C library: one per process, the image's"))
            continue
        if SITE_STACK.match(n.soname):
            why = "the site's fabric or process-management library, which the site MPI was built against" + (
                "; the image's copy lacks the site's providers" if n.soname in image_sonames else
                "; not in the image")
        elif n.soname in image_sonames:
            p.from_image.append((n.soname, "the image has this soname"))
            continue
        else:
            why = "needed by the site MPI; not in the image"
        p.binds.append(Bind(path, f"{HOST_LIB}/{n.soname}", why))
        stem = n.soname.split(".so")[0]
        for candidate in (c.format(dir=path.rpartition("/")[0]) for c in CONFIG.get(stem, ())):
            if exists(candidate) and not candidate.startswith(prefix_slash):
                p.binds.append(Bind(candidate, candidate, f"configuration or plugins {n.soname} reads"))


def _bind_dlopened(p: Plan, d: Dlopened, prefix_slash: str, image_sonames: set[str],
                   exists: Callable[[str], bool], seen: set[str]) -> None:
    """Intel MPI: the node's PMI-2, bound and named to it; what that library needs; its providers' folder."""
    soname = d.pmi.rpartition("/")[2]
    target = d.pmi if d.pmi.startswith(prefix_slash) else f"{HOST_LIB}/{soname}"
    if target != d.pmi:
        p.binds.append(Bind(d.pmi, target, f"Slurm's PMI-2 on the node, which {d.vendor} opens with dlopen "
                                          "(ldd cannot show it)"))
        seen.add(soname)
    _bind_needed(p, d.pmi_needed, prefix_slash, image_sonames, exists, seen)
    p.env["I_MPI_PMI_LIBRARY"] = target
    p.env_why["I_MPI_PMI_LIBRARY"] = (f"{d.vendor} opens this PMI library at MPI_Init; without it, under srun, "
                                      "every rank fails with 'unable to allocate shared memory'")
    # Measured on the test cluster (2026-12-01, Intel MPI 2021.18.1, 2 nodes): after mpi4py's matched-probe
    # receives (MPI_Mprobe/Mrecv, its default for pickled messages) over libfabric, MPI_Comm_disconnect
    # segfaults, so every mpi4py.futures pool across nodes crashed at shutdown; with probe and receive, none.
    p.env["MPI4PY_RC_RECV_MPROBE"] = "false"
    p.env_why["MPI4PY_RC_RECV_MPROBE"] = (f"{d.vendor} 2021.18 crashes in MPI_Comm_disconnect after matched-probe "
                                          "receives across nodes (mpi4py.futures pools); mpi4py probes, then receives")
    if d.providers:
        p.env["FI_PROVIDER_PATH"] = d.providers
        p.env_why["FI_PROVIDER_PATH"] = f"{d.vendor}'s own libfabric loads its providers from its prefix"


def plan(prefix: str, libmpi: str, family: str, needed: Sequence[Needed], image_sonames: set[str],
         exists: Callable[[str], bool], offered: Sequence[str], dlopened: Dlopened | None = None,
         family_why: str = "") -> Plan:
    """What to bind and set so the image's Python loads the site's MPI, and why each one."""
    p = Plan(prefix, libmpi, family, family_why, dlopened=dlopened)
    prefix_slash = prefix.rstrip("/") + "/"
    p.binds.append(Bind(prefix, prefix, "the site MPI: its libmpi, the libraries and plugins it loads from its own "
                                        "prefix, and its configuration and help files (etc/, share/)"))
    missing = [n.soname for n in needed if n.path is None]
    if missing:
        raise UsageError(f"the site's {libmpi} needs {', '.join(missing)}, which the node's loader finds nowhere "
                         "(ldd: not found): load the site's modules first (module load ...) so the kit sees what "
                         "the site MPI needs")
    seen: set[str] = set()
    _bind_needed(p, needed, prefix_slash, image_sonames, exists, seen)
    if dlopened:
        _bind_dlopened(p, dlopened, prefix_slash, image_sonames, exists, seen)
    providers = [b.source for b in p.binds if b.source.endswith("/libfabric") and b.why.startswith("configuration")]
    if providers and "FI_PROVIDER_PATH" not in p.env:
        p.env["FI_PROVIDER_PATH"] = providers[0]
        p.env_why["FI_PROVIDER_PATH"] = "libfabric loads the site's providers from the bound folder"
    lib_dirs = [libmpi.rpartition("/")[0]]
    p.env["LD_LIBRARY_PATH"] = ":".join([HOST_LIB, *lib_dirs])
    p.env_why["LD_LIBRARY_PATH"] = "the loader finds the site's libmpi and the bound libraries before the image's"
    if family == "openmpi":
        p.env["OPAL_PREFIX"] = prefix
        p.env_why["OPAL_PREFIX"] = "Open MPI reads its help files and MCA defaults from its own prefix"
    else:
        variant = VARIANTS[family]
        p.env.update(PYTHONPATH=ABI_MPI4PY, MPI4PY_MPIABI=variant, MPI4PY_LIBMPI=libmpi)
        p.env_why.update(
            PYTHONPATH=("the image's mpi4py with a variant per ABI: mpiabi, built against the MPI-5 standard "
                        "ABI's mpi.h, loads any vendor's libmpi_abi.so.1" if family == "standard" else
                        "mpi4py's binary wheel, whose MPICH variant loads an MPICH-ABI libmpi"),
            MPI4PY_MPIABI=f"choose the {variant} variant (mpi4py 4.1 never looks for {STANDARD} itself)"
            if family == "standard" else "choose the wheel's MPICH variant",
            MPI4PY_LIBMPI="the library that variant loads: the site's")
    p.env[GUARD_MARK] = prefix
    p.env_why[GUARD_MARK] = "tells the image's launch guard that the site's MPI is loaded on purpose"
    p.srun_mpi, p.srun_mpi_why = srun_plugin(family, needed, offered, dlopened)
    return p


# ---- asking a node (the test cluster's node1, or this node for RUNTIME=srun) ----

@dataclass(frozen=True)
class Site:
    """Where the kit looks: a node that sees HOST_MPI and the SIF as the ranks will."""

    where: str  # for messages: "node1 of the test cluster", "this node"
    run: Callable[[list[str]], subprocess.CompletedProcess]  # argv -> its result, output captured as text
    sif: str  # the SIF's path as that node sees it
    apptainer: str = "apptainer"
    offered: tuple[str, ...] = ()  # srun --mpi=list there
    environ: Mapping[str, str] = field(default_factory=dict)  # the user's environment the ranks inherit there


# Run inside the image with the plan's binds: load the site's libmpi as mpi4py will, and say which
# file and which library it is (MPI_Get_library_version and MPI_Abi_get_version may be called before
# MPI_Init), and which mpi4py variants the image has.
PREFLIGHT = r"""
import ctypes, os, re
name = os.environ.get("MPI4PY_LIBMPI") or "libmpi.so.40"
lib = ctypes.CDLL(name, ctypes.RTLD_GLOBAL)
folder = ABI_FOLDER
variants = sorted(f.split(".")[1] for f in os.listdir(folder) if re.match(r"MPI\.\w+\..*\.so$", f))
print("MPIKIT-VARIANTS", ",".join(variants))
if not hasattr(lib, "MPI_Get_library_version"):
    print("MPIKIT-NOTMPI", os.path.realpath(name))
    raise SystemExit(0)
abi = ""
if hasattr(lib, "MPI_Abi_get_version"):
    major, minor = ctypes.c_int(-1), ctypes.c_int(-1)
    if lib.MPI_Abi_get_version(ctypes.byref(major), ctypes.byref(minor)) == 0:
        abi = f"{major.value}.{minor.value}"
buf, size = ctypes.create_string_buffer(8192), ctypes.c_int()
lib.MPI_Get_library_version(buf, ctypes.byref(size))
maps = open("/proc/self/maps").read().split()
path = next((w for w in maps if re.search(r"/libmpi(_abi)?\.so", w)), name)
print("MPIKIT-LIBMPI", path, "|", abi, "|", buf.value.decode(errors="replace").strip().splitlines()[0])
""".replace("ABI_FOLDER", repr(f"{ABI_MPI4PY}/mpi4py"))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def gather(prefix: str, site: Site, abi: str = "auto") -> tuple[Plan, dict[str, str]]:
    """Ask the node what HOST_MPI holds and needs, and the image what it has: (the plan, the image's stack)."""
    if site.run(["test", "-d", prefix]).returncode != 0:
        raise UsageError(f"HOST_MPI={prefix} is not a folder on {site.where}: the site's MPI must be at that path "
                         "on every node (its prefix, e.g. from module show cray-mpich)")
    listing = {f"{prefix}/{sub}": _lines(site.run(["ls", "-1", f"{prefix}/{sub}"]).stdout) for sub in ("lib", "lib64")}
    libmpi, family, family_why = find_libmpi(prefix, listing, abi)
    ldd = site.run(["ldd", libmpi])
    if ldd.returncode != 0:
        raise UsageError(f"ldd {libmpi} failed on {site.where}: {(ldd.stderr or ldd.stdout).strip()[:200]}")
    needed = parse_ldd(ldd.stdout)
    dlopened = None
    if site.run(["grep", "-q", "-a", "-F", INTEL_MPI_MARK, libmpi]).returncode == 0:
        pmi = intel_pmi_library(libmpi, node_library(site.run(["ldconfig", "-p"]).stdout, "libpmi2.so.0"),
                                site.where, site.environ)
        pmi_ldd = site.run(["ldd", pmi])
        if pmi_ldd.returncode != 0:
            raise UsageError(f"ldd {pmi} failed on {site.where}: {(pmi_ldd.stderr or pmi_ldd.stdout).strip()[:200]}")
        lib_dir = libmpi.rpartition("/")[0]
        providers = lib_dir if any(name.endswith("-fi.so") for name in listing.get(lib_dir, [])) else None
        dlopened = Dlopened("Intel MPI", pmi, parse_ldd(pmi_ldd.stdout), providers)
    image = site.run([site.apptainer, "exec", site.sif, "sh", "-c",
                      f"ldconfig -p; echo MPIKIT-STACK; cat /opt/mpi4py-kit/stack.env; echo MPIKIT-LINKED; "
                      f"cat {LINKED} 2>/dev/null"]).stdout
    sonames, _, rest = image.partition("MPIKIT-STACK")
    stack_text, _, linked = rest.partition("MPIKIT-LINKED")
    candidates = sorted({c.format(dir=(n.path or "").rpartition("/")[0]) for n in needed if n.path
                         for c in CONFIG.get(n.soname.split(".so")[0], ())})
    present: set[str] = set()
    if candidates:
        found = site.run(["sh", "-c", 'for p; do [ -e "$p" ] && echo "$p"; done', "sh", *candidates])
        present = set(_lines(found.stdout))
    p = plan(prefix, libmpi, family, needed, parse_ldconfig(sonames), present.__contains__, site.offered, dlopened,
             family_why)
    p.linked = parse_linked(linked)
    p.watched = sorted({*listing, libmpi, *(n.path for n in needed if n.path), *candidates,
                        *([dlopened.pmi, *(n.path for n in dlopened.pmi_needed if n.path)] if dlopened else [])})
    stack = dict(line.split("=", 1) for line in _lines(stack_text) if "=" in line)
    return p, stack


def site_for(runtime: str, sif) -> Site:
    """RUNTIME=cluster: node1 of the test cluster; RUNTIME=srun: this node, which sees what the compute
    nodes see (the same paths on every node is what HOST_MPI requires)."""
    from . import cluster
    from .choose import host_apptainer

    def local(argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=180)

    if runtime == "cluster":
        def on_node(argv: list[str]) -> subprocess.CompletedProcess:
            return local(cluster.on_node(cluster.COMPUTE[0], argv))

        return Site("node1 of the test cluster", on_node, cluster.shared_path(sif), "apptainer",
                    offered_plugins(runtime))
    return Site("this node", local, str(sif), host_apptainer() or "apptainer", offered_plugins(runtime),
                dict(os.environ))


def container(p: Plan, site: Site) -> list[str]:
    """The apptainer exec prefix with the plan's binds and environment (launch.py writes it)."""
    from .launch import Apptainer

    return Apptainer(site.sif, command=site.apptainer, binds=p.binds_options(), env=tuple(p.env.items())).prefix()


@dataclass(frozen=True)
class Loaded:
    """What the preflight saw inside the image."""

    path: str  # the file loaded ("" when it is not an MPI library)
    abi: str  # MPI_Abi_get_version, "major.minor", or ""
    version: str  # MPI_Get_library_version, first line
    variants: tuple[str, ...]  # the mpi4py variants the image's second mpi4py has (mpiabi, mpich, openmpi)
    not_mpi: str = ""  # the file, when it exports no MPI_Get_library_version


def parse_preflight(text: str) -> Loaded | None:
    """The preflight's output -> what it saw, or None when it said nothing (it failed)."""
    variants: tuple[str, ...] = ()
    for line in text.splitlines():
        if line.startswith("MPIKIT-VARIANTS"):
            variants = tuple(v for v in line.removeprefix("MPIKIT-VARIANTS").strip().split(",") if v)
        elif line.startswith("MPIKIT-NOTMPI "):
            return Loaded("", "", "", variants, line.removeprefix("MPIKIT-NOTMPI ").strip())
        elif line.startswith("MPIKIT-LIBMPI "):
            path, abi, version = (part.strip() for part in line.removeprefix("MPIKIT-LIBMPI ").split(" | ", 2))
            return Loaded(path, abi, version, variants)
    return None


def standard_abi_problem(libmpi: str, abi: str) -> str | None:
    """None when MPI_Abi_get_version says the MPI-5 standard ABI (major 1 or more). Legacy builds of MPICH
    and Intel MPI export the function too and answer 0, so its presence alone proves nothing."""
    if not abi:
        return f"{libmpi} has no MPI_Abi_get_version, so it is not the MPI-5 standard ABI"
    if int(abi.split(".")[0]) < 1:
        return (f"{libmpi} answers MPI_Abi_get_version {abi}; a major version of 0 is a legacy ABI's, not the "
                "MPI-5 standard ABI")
    return None


def preflight(p: Plan, site: Site) -> Loaded:
    """Load the site's libmpi inside the image with the plan applied: what was loaded, and its versions."""
    proc = site.run([*container(p, site), "python", "-c", PREFLIGHT])
    loaded = parse_preflight(proc.stdout)
    if loaded and loaded.not_mpi:
        raise UsageError(f"HOST_MPI={p.prefix}: {p.libmpi} is not an MPI library ({loaded.not_mpi} exports no "
                         "MPI_Get_library_version): give the prefix of the site's MPI")
    if proc.returncode != 0 or loaded is None:
        said = (proc.stderr + proc.stdout).strip().splitlines()
        raise UsageError(load_failure(p, said[-1] if said else f"exit status {proc.returncode}"))
    return loaded


def load_failure(p: Plan, said: str) -> str:
    """Why the site's libmpi did not load in the image, in one line. The common cause has its own words:
    the site's libraries were linked against a newer glibc than the image's (forky's libpmi2 needs
    GLIBC_2.38, bookworm has 2.36); binding a C library in is not safe, so the image must be newer."""
    m = re.search(r"version `GLIBC_([\d.]+)' not found \(required by ([^)]+)\)", said)
    if m:
        need, lib = m.groups()
        site_lib = next((b.source for b in p.binds if b.target == lib or lib.startswith(b.target + "/")), lib)
        return (f"the site's {site_lib} needs glibc {need}, newer than the image's: in the bind model the site's "
                f"libraries run on the image's C library, so the image must be at least as new as the site's "
                f"system (an image built with a newer BASE, e.g. make sif BASE=trixie)")
    return f"the site's {p.libmpi} does not load inside the image with the planned binds ({said}); " \
           "make bind-plan shows them"


def check_runtime(host_mpi: str | None, runtime: str) -> None:
    """HOST_MPI needs Slurm to start the site's MPI: refused elsewhere, before anything is made ready."""
    if host_mpi and runtime not in ("srun", "cluster"):
        raise UsageError(f"HOST_MPI is for RUNTIME=srun or cluster, where Slurm starts the site's MPI; "
                         f"RUNTIME={runtime} has no Slurm (drop HOST_MPI to run the image's own Open MPI)")


def resolve(host_mpi: str | None, srun_mpi: str, sif, runtime: str, abi: str = "auto",
            reuse: bool = False) -> Plan | None:
    """HOST_MPI: work out the binds on a node, load the site's libmpi in the image with them, check it fits.
    reuse: a plan that passed before for the same site MPI, SIF and node state is taken as it is (make run and
    its kin; make bind-plan and make doctor always work it out)."""
    if not host_mpi:
        return None
    check_runtime(host_mpi, runtime)
    site = site_for(runtime, sif)
    key = plan_key(host_mpi, abi, site, sif)
    p = reused_plan(key, site) if reuse else None
    if p is None:
        p = _resolved(host_mpi, site, sif, abi)
        keep_plan(key, p, site)
    if srun_mpi != "auto":
        p.srun_mpi, p.srun_mpi_why = srun_mpi, "SRUN_MPI, given"
    return p


def _resolved(host_mpi: str, site: Site, sif, abi: str) -> Plan:
    p, stack = gather(host_mpi, site, abi)
    loaded = preflight(p, site)
    if p.family == "standard":
        problem = standard_abi_problem(p.libmpi, loaded.abi)
        if not problem and VARIANTS["standard"] not in loaded.variants:
            problem = (f"the image {sif} has no standard-ABI variant of mpi4py (it has {', '.join(loaded.variants)}): "
                       "it was built before the kit made one; rebuild it (make sif)")
        if problem and abi == "auto":
            try:
                p, stack = gather(host_mpi, site, "legacy")
            except UsageError:
                raise UsageError(f"HOST_MPI={host_mpi}: {problem}") from None
            p.family_why = f"auto: {problem}, so the legacy family"
            loaded = preflight(p, site)
        elif problem:
            raise UsageError(f"HOST_MPI={host_mpi}: {problem}")
    p.loaded, p.version, p.abi = loaded.path, loaded.version, loaded.abi
    problem = linked_problem(p) or compatible(p.family, p.version, upstream_version(stack.get("OPENMPI_DEB", "0")))
    if problem:
        raise UsageError(f"HOST_MPI={host_mpi}: {problem}")
    return p


# ---- a plan kept: working one out asks the node six to eight questions and starts the image twice (a second
# of every run); a run with the same site MPI, SIF and node state takes the one that passed before ----
PLAN_CACHE = config.CACHE / "bind"
PLAN_CACHE_KEEP = 50  # plans kept, newest first
# The user's environment that changes the plan where the kit asks this node (RUNTIME=srun): ldd's search
# path and the PMI library Intel MPI is told to open.
PLAN_ENVIRON = ("LD_LIBRARY_PATH", "I_MPI_PMI_LIBRARY")


def plan_key(host_mpi: str, abi: str, site: Site, sif) -> str:
    """What a plan is worked out for: the site MPI and the ABI asked for, the node and what Slurm offers
    there, the SIF (its path there, and this file's identity here), the user's environment that counts, and
    the kit's own rules (this file)."""
    try:
        st = os.stat(sif)
        identity = [st.st_size, st.st_mtime_ns, st.st_ino]
    except OSError:
        identity = []
    what = [host_mpi, abi, site.where, site.sif, identity, list(site.offered),
            {k: site.environ.get(k, "") for k in PLAN_ENVIRON},
            hashlib.sha256(Path(__file__).read_bytes()).hexdigest()]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]


# One command on the node: each watched path's size, change time and inode (a folder's times move when a
# file comes or goes), or "-" when it is not there.
STAT = 'for p; do stat -L -c "%n %s %Z %i" -- "$p" 2>/dev/null || echo "$p -"; done'


def node_state(site: Site, paths: Sequence[str]) -> str | None:
    proc = site.run(["sh", "-c", STAT, "sh", *paths])
    return proc.stdout if proc.returncode == 0 else None


def plan_to_json(p: Plan) -> dict:
    return dataclasses.asdict(p)


def plan_from_json(data: dict) -> Plan:
    data = dict(data)
    data["binds"] = [Bind(**b) for b in data["binds"]]
    data["from_image"] = [tuple(x) for x in data["from_image"]]
    data["linked"] = [tuple(x) for x in data["linked"]]
    if data["dlopened"]:
        d = dict(data["dlopened"])
        d["pmi_needed"] = [Needed(**n) for n in d["pmi_needed"]]
        data["dlopened"] = Dlopened(**d)
    return Plan(**data)


def reused_plan(key: str, site: Site) -> Plan | None:
    """The plan kept under `key`, when the node's watched files are as they were; else None."""
    try:
        kept = json.loads((PLAN_CACHE / f"{key}.json").read_text())
        p = plan_from_json(kept["plan"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    state = node_state(site, p.watched)
    return p if state is not None and state == kept["state"] else None


def keep_plan(key: str, p: Plan, site: Site) -> None:
    """Keep a plan that passed, with the state of what it was worked out from; a cache that cannot be written
    costs the next run its second, nothing else."""
    state = node_state(site, p.watched)
    if state is None:
        return
    try:
        PLAN_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = PLAN_CACHE / f".{key}.{os.getpid()}"
        tmp.write_text(json.dumps({"plan": plan_to_json(p), "state": state}))
        tmp.replace(PLAN_CACHE / f"{key}.json")
        for old in sorted(PLAN_CACHE.glob("*.json"), key=lambda f: f.stat().st_mtime, reverse=True)[PLAN_CACHE_KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
