"""The knobs: every setting a user can give (`make run-scatter NP=4`), declared
once here with its default, its help and the commands that read it.

`make help`, the command line's options, the README's knob table and the
tests all read this list. Every knob a command reads is parsed before the
command builds, starts or writes anything (read()), so bad input costs one
`error:` line and changes nothing.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import apptainer, config, environment, launch, platforms
from .config import EXAMPLES
from .ui import UsageError

RUNTIMES = ("auto", "native", "docker", "apptainer", "srun", "cluster")
RUN_COMMANDS = ("run", "smoke", "doctor", "batch", "bind-plan", "line", "sbatch", "shell")
# make line and make sbatch describe the run make run would start: they read what it reads.
LIKE_RUN = ("run", "line", "sbatch")
BENCH_COMMANDS = ("bench", "bench-curve", "bench-build", "bench-env")
# What builds an image (or rebuilds one to compare: make reproduce, reproduce-sif).
BUILD_COMMANDS = ("image", "sif", "reproduce", "reproduce-sif", "twin")


@dataclass(frozen=True)
class Knob:
    name: str
    default: str  # what an unset knob means; "" for nothing
    help: str
    commands: tuple[str, ...]  # the scripts/kit commands that read it
    # Its parser: checks the text and sets what it means on the Settings (one `error:` line when bad).
    apply: Callable[[Settings, str], None] = lambda settings, value: None

    @property
    def option(self) -> str:
        return "--" + self.name.lower().replace("_", "-")


# ---- parsers: one clear line per bad value ----

def parse_np(value: str) -> int:
    if not re.fullmatch(r"\s*\d+\s*", value) or int(value) < 1:
        raise UsageError(f"NP must be a whole number of ranks, 1 or more; got NP={value!r} (try NP=4)")
    return int(value)


def parse_runtime(value: str) -> str:
    if value not in RUNTIMES:
        raise UsageError(f"unknown RUNTIME={value!r}; choose one of: {', '.join(RUNTIMES)}")
    return value


def parse_base(value: str) -> str:
    if value not in config.supported_bases():
        raise UsageError(f"unsupported BASE={value!r}; choose one of: {', '.join(config.supported_bases())} "
                         "(versions.env lists the supported bases)")
    return value


def parse_platform(value: str, machine: str | None = None) -> str:
    """Empty: this host's platform (`machine` stands in for the host in tests)."""
    if not value:
        return platforms.host(machine)
    if value not in platforms.SUPPORTED:
        raise UsageError(f"unsupported PLATFORM={value!r}; choose one of: {', '.join(platforms.SUPPORTED)}")
    return value


def check_platform(command: str, platform: str, runtime: str, base: str, example: str = "",
                   machine: str | None = None) -> None:
    """Another platform than the host's runs under emulation, which the kit builds and tests
    for one base and the Docker runtime only; everything else is refused before it starts."""
    if platforms.is_host(platform, machine):
        return
    here = platforms.host(machine)
    target = {"run": f"run-{example}" if example else "run", "batch": "cluster-batch"}.get(command, command)
    if base not in platforms.EMULATED_BASES:
        raise UsageError(f"PLATFORM={platform} (emulated on this {here} host) is built for BASE="
                         f"{' | '.join(platforms.EMULATED_BASES)} only; drop BASE={base}: "
                         f"make {target} PLATFORM={platform}")
    if command == "batch":
        raise UsageError(f"make {target} uses the test cluster, whose nodes are this host's {here}; "
                         f"PLATFORM={platform} runs only with RUNTIME=docker: "
                         f"make smoke PLATFORM={platform} RUNTIME=docker")
    if command in BENCH_COMMANDS:
        raise UsageError(f"make {target} measures this {here} host and its test cluster, not emulation; "
                         f"PLATFORM={platform} runs only with RUNTIME=docker: "
                         f"make smoke PLATFORM={platform} RUNTIME=docker")
    if command in RUN_COMMANDS and runtime != "docker":
        raise UsageError(f"PLATFORM={platform} runs under emulation in Docker only (this host is {here}), "
                         f"not RUNTIME={runtime}: make {target} PLATFORM={platform} RUNTIME=docker")


def parse_image(value: str, base: str, platform: str | None = None) -> tuple[str, bool]:
    """(image, is_default): the default tag is built on demand, a named one must exist."""
    if not value:
        return platforms.image_tag(config.image_name(), base, platform or platforms.host()), True
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/:@-]*", value):
        raise UsageError(f"IMAGE={value!r} is not a valid image name (lowercase, like mpi4py-kit:trixie)")
    return value, False


def parse_sif_from(value: str) -> str:
    if value not in apptainer.SOURCES:
        raise UsageError(f"unknown SIF_FROM={value!r}; choose one of: {', '.join(apptainer.SOURCES)}")
    return value


def parse_sif(value: str, cwd: Path, platform: str | None = None) -> Path:
    path = (cwd / (value or platforms.sif_name(platform or platforms.host()))).resolve()
    if path.suffix != ".sif":
        raise UsageError(f"SIF={value!r} must name a .sif file (like mpi.sif)")
    if not path.parent.is_dir():
        raise UsageError(f"SIF={value!r}: the folder {path.parent} does not exist")
    return path


def parse_script(value: str, workdir: Path) -> Path:
    path = (workdir / value).resolve()
    if not path.is_file():
        raise UsageError(f"SCRIPT={value!r} does not exist (looked for {path})")
    if path.suffix != ".py":
        raise UsageError(f"SCRIPT={value!r} is not a Python file (.py)")
    if not path.is_relative_to(workdir.resolve()):
        raise UsageError(f"SCRIPT={value!r} is outside {workdir}: containers see only the current "
                         "directory, so move the script under it or run make from its folder")
    return path


def parse_example(name: str, np: int) -> Path:
    example = EXAMPLES.get(name)
    if example is None:
        raise UsageError(f"unknown example {name!r}; choose one of: {', '.join(EXAMPLES)} "
                         "(or run your own: make run SCRIPT=path/to/script.py)")
    if np < example.min_ranks:
        raise UsageError(f"example {name} ({example.file}) needs at least {example.min_ranks} ranks, "
                         f"got NP={np}; try make run-{name} NP={example.min_ranks}")
    return example.path


def futures_for_example(example: config.Example, asked: bool) -> bool:
    """The pool example always runs under mpi4py.futures; the seed examples never can."""
    if asked and not example.futures:
        raise UsageError(f"FUTURES=1 is for pool scripts (make run SCRIPT=my_pool.py FUTURES=1, or make run-pool): "
                         f"examples/{example.file} uses collectives across all ranks, and under mpi4py.futures "
                         "every rank but 0 is a worker")
    return example.futures


def parse_args(value: str, knob: str = "ARGS") -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise UsageError(f"cannot split {knob}={value!r} into arguments ({exc}); check the quotes") from None


def parse_timeout(value: str) -> int | None:
    if value in ("", "0", "none"):
        return None
    if not re.fullmatch(r"\d+", value):
        raise UsageError(f"TIMEOUT must be a whole number of seconds (0 for none); got TIMEOUT={value!r}")
    return int(value)


def parse_srun_mpi(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
        raise UsageError(f"SRUN_MPI={value!r} is not an srun --mpi plugin name (like pmix, pmix_v5; "
                         "srun --mpi=list shows yours)")
    return value


def parse_nodes(value: str) -> int | None:
    if not value:
        return None
    if not re.fullmatch(r"\d+", value) or int(value) < 1:
        raise UsageError(f"NODES must be a whole number of nodes, 1 or more; got NODES={value!r} (or leave it "
                         "unset for Slurm's choice)")
    return int(value)


def parse_key(value: str, command: str) -> Path | None:
    """KEY: where make keypair writes the private key, or the private key make sign uses."""
    if not value:
        if command in ("keypair", "sign"):
            raise UsageError(f"make {command} needs KEY=<path of the private key>, outside the repository "
                             "(e.g. KEY=$HOME/.mpi4py-kit/sif-key.pem)")
        return None
    path = Path(value).expanduser().absolute()
    if command == "sign" and (not path.is_file() or not os.access(path, os.R_OK)):
        raise UsageError(f"KEY={value!r} is not a readable private key file (make keypair KEY=... makes one)")
    return path


def parse_verify_key(value: str, command: str) -> Path | None:
    """VERIFY_KEY: the public key (or certificate) a SIF must verify with."""
    if not value:
        if command == "verify":
            raise UsageError("make verify needs VERIFY_KEY=<public key (PEM) or certificate>, e.g. the KEY.pub "
                             "that make keypair wrote")
        return None
    path = Path(value).expanduser().absolute()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise UsageError(f"VERIFY_KEY={value!r} is not a readable public key or certificate file")
    if "-----BEGIN" not in path.read_text(errors="replace"):
        raise UsageError(f"VERIFY_KEY={value!r} is not PEM (no -----BEGIN line): give the public key or certificate")
    return path


def parse_flag(value: str, knob: str) -> bool:
    if value not in ("", "0", "1"):
        raise UsageError(f"{knob} must be 0 or 1; got {knob}={value!r}")
    return value == "1"


def parse_host_mpi(value: str) -> str | None:
    if not value:
        return None
    if not value.startswith("/") or re.search(r"[\s:,]", value):
        raise UsageError(f"HOST_MPI={value!r} must be the absolute path of the site MPI's prefix on every node, "
                         "like /opt/cray/pe/mpich/8.1.29/ofi/gnu/12.3 (no spaces, colons or commas)")
    return value.rstrip("/") or "/"


def parse_host_mpi_abi(value: str, host_mpi: str | None) -> str:
    from .bind import ABI_CHOICES

    if value not in ABI_CHOICES:
        raise UsageError(f"unknown HOST_MPI_ABI={value!r}; choose one of: {', '.join(ABI_CHOICES)}")
    if value != "auto" and not host_mpi:
        raise UsageError(f"HOST_MPI_ABI={value} chooses the family of the site's MPI in the bind model; "
                         "name that MPI too: HOST_MPI=<its prefix>")
    return value


def parse_apptainer_mode(value: str) -> str:
    from .launch import MODES

    if value not in MODES:
        raise UsageError(f"unknown APPTAINER_MODE={value!r}; choose one of: {', '.join(MODES)}")
    return value


def parse_cluster(value: str) -> str:
    if value not in config.CLUSTERS:
        raise UsageError(f"unknown CLUSTER={value!r}; choose one of: {', '.join(config.CLUSTERS)}")
    return value


def parse_quick(value: str) -> bool:
    return parse_flag(value, "QUICK")


def parse_launch(value: str) -> list[str] | None:
    if not value.strip():
        return None
    argv = parse_args(value, "LAUNCH")
    if shutil.which(argv[0]) is None:
        raise UsageError(f"LAUNCH={value!r}: {argv[0]!r} is not a command on PATH")
    return argv


def pip_ca_cert(environ: Mapping[str, str], home: Path) -> str | None:
    """The CA bundle the host's pip is told to trust (a proxy's CA), if any:
    PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, then pip's config files (Linux's,
    and macOS's under Library/Application Support)."""
    candidates = [environ.get(var) for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")]
    parser = configparser.ConfigParser()
    mac = Path("Library") / "Application Support" / "pip" / "pip.conf"
    try:
        parser.read([environ.get("PIP_CONFIG_FILE") or "/etc/pip.conf", Path("/") / mac,
                     home / ".config" / "pip" / "pip.conf", home / ".pip" / "pip.conf", home / mac])
    except configparser.Error:
        pass  # an unreadable pip config: no CA from it
    candidates += [parser.get(section, "cert", fallback=None) for section in ("global", "install")]
    return next((path for path in candidates if path and Path(path).is_file()), None)


def parse_ca_cert(value: str, environ: Mapping[str, str] | None = None) -> str | None:
    if not value:
        return pip_ca_cert(os.environ if environ is None else environ, Path.home())
    path = Path(value).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise UsageError(f"CA_CERT={value!r} is not a readable file; give the PEM bundle of your proxy's CA")
    return str(path.resolve())


# ---- reading them all ----

def raw_values(environ: Mapping[str, str], given: Mapping[str, str | None]) -> dict[str, str]:
    """Each knob's text: a command-line option, else the environment (make exports the
    knobs given on its command line), else its default."""
    values = {}
    for knob in KNOBS:
        option = given.get(knob.name)
        values[knob.name] = option if option is not None else (environ.get(knob.name, "") or knob.default)
    return values


@dataclass
class Settings:
    """The parsed knobs of one command; only those the command reads are set."""

    command: str
    raw: dict[str, str]
    cwd: Path = field(default_factory=Path.cwd)  # where relative SCRIPT and SIF paths start
    example: str = ""  # make run-NAME: the example's short name
    np: int = 4
    runtime: str = "auto"
    base: str = ""
    platform: str = ""  # linux/ARCH: the host's, or another one emulated
    image: str = ""
    image_is_default: bool = True
    sif: Path = field(default_factory=lambda: Path("mpi.sif"))
    sif_is_default: bool = True  # no SIF= given: the kit's own, rebuilt when stale
    sif_from: str = "auto"  # how a SIF is made: image | recipe | auto
    script: Path | None = None
    args: list[str] = field(default_factory=list)
    timeout: int | None = None
    srun_mpi: str = "auto"
    host_mpi: str | None = None  # the bind model: the site MPI's prefix
    host_mpi_abi: str = "auto"  # the bind model: auto | standard | legacy
    cluster: str = "trixie"  # make cluster-up: which test cluster
    apptainer_mode: str = launch.DEFAULT_MODE  # how srun's ranks enter the image
    nodes: int | None = None  # srun --nodes (None: Slurm's choice; the test cluster: up to 2)
    key: Path | None = None  # make keypair, make sign: the private key
    verify_key: Path | None = None  # the public key or certificate the SIF must verify with
    launch: list[str] | None = None
    quick: bool = False
    futures: bool = False  # ranks run python -m mpi4py.futures
    ca_cert: str | None = None
    pytest_args: list[str] = field(default_factory=list)
    requirements: environment.Requirements | None = None  # REQUIREMENTS: the user's packages, read and judged
    kit_image: str = ""  # with REQUIREMENTS, the kit's image the user's environment is built on
    shell_command: str | None = None  # make shell COMMAND=...


def _apply_platform(s: Settings, value: str) -> None:
    s.platform = parse_platform(value)
    check_platform(s.command, s.platform, s.runtime, s.base, s.example)


def _apply_image(s: Settings, value: str) -> None:
    s.image, s.image_is_default = parse_image(value, s.base, s.platform)


def _apply_sif(s: Settings, value: str) -> None:
    s.sif, s.sif_is_default = parse_sif(value, s.cwd, s.platform), not value


# Commands that do not take REQUIREMENTS yet: refused in one line rather than silently about the kit's image.
UNDERIVED = ("reproduce-sif", "batch", "bench", "bench-curve", "bench-build")


def _apply_requirements(s: Settings, value: str) -> None:
    if not value:
        return
    if s.command in UNDERIVED:
        target = {"batch": "cluster-batch"}.get(s.command, s.command)
        raise UsageError(f"make {target} does not take REQUIREMENTS yet: it works on the kit's own image; "
                         f"run yours with make run REQUIREMENTS={value}")
    for knob in ("IMAGE", "SIF"):
        if s.raw.get(knob):
            raise UsageError(f"REQUIREMENTS and {knob}= together are not taken: the environment's image and SIF are "
                             f"named by their content; drop {knob}=")
    # make sign and verify read no PLATFORM: the environment's names are those make run gives on this host.
    s.platform = s.platform or platforms.host()
    if not platforms.is_host(s.platform):
        raise UsageError(f"REQUIREMENTS with PLATFORM={s.platform} is not built: a package with compiled code would "
                         "be compiled under emulation for an hour; build your environment on the host's platform")
    s.requirements = environment.read(value, s.cwd)


def _apply_script(s: Settings, value: str) -> None:
    if value:
        s.script = parse_script(value, s.cwd)
    elif s.example:
        s.script = parse_example(s.example, s.np)
        s.futures = futures_for_example(EXAMPLES[s.example], s.futures)
    elif s.command == "run":
        raise UsageError("name an example (make run-rank) or a script (make run SCRIPT=path/to/script.py)")
    elif s.command in LIKE_RUN:
        raise UsageError(f"make {s.command} needs SCRIPT=path/to/script.py (an example: make {s.command} "
                         "SCRIPT=examples/scatter_gather.py)")


# Every knob, in the order read() parses them: a knob's parser may use those above it (PLATFORM
# the RUNTIME and BASE, SCRIPT the NP, FUTURES and the example).
KNOBS: tuple[Knob, ...] = (
    Knob("NP", "4", "number of MPI ranks", (*RUN_COMMANDS, "bench"),
         apply=lambda s, v: setattr(s, 'np', parse_np(v))),
    Knob("RUNTIME", "auto", "auto | native | docker | apptainer | srun | cluster (auto: srun in an "
         "allocation, apptainer, docker, native)", ("run", "smoke", "doctor", "bind-plan", "line", "sbatch", "sbom",
                                                   "shell"),
         apply=lambda s, v: setattr(s, 'runtime', parse_runtime(v))),
    Knob("BASE", config.default_base(), "Debian base of the image: "
         + " | ".join(config.supported_bases()),
         # sign, verify: REQUIREMENTS' environment; lock: the Python of the image it resolves in
         (*RUN_COMMANDS, *BENCH_COMMANDS, *BUILD_COMMANDS, "sbom", "sign", "verify", "lock"),
         apply=lambda s, v: setattr(s, 'base', parse_base(v))),
    # Empty means this host's platform; the default is not written here, so the README's
    # table (generated from these lines) reads the same on every host.
    Knob("PLATFORM", "", "image platform: " + " | ".join(platforms.SUPPORTED) + " (default: this host's); "
         "another is built and run under qemu emulation, with RUNTIME=docker and BASE="
         + " | ".join(platforms.EMULATED_BASES) + " (docs/arm.md)",
         (*RUN_COMMANDS, *BENCH_COMMANDS, *BUILD_COMMANDS, "sbom"),
         apply=_apply_platform),
    Knob("IMAGE", "", "Docker image (default mpi4py-kit:BASE, or mpi4py-kit:BASE-ARCH for another PLATFORM; "
         "built on first use)", (*RUN_COMMANDS, "bench", "bench-build", "image", "sbom", "reproduce", "lock"),
         apply=_apply_image),
    Knob("SIF", "", "Apptainer image file (default mpi.sif, or mpi-ARCH.sif for another PLATFORM; make sif "
         "writes it; apptainer, srun and cluster run it)",
         (*RUN_COMMANDS, "bench", "bench-curve", "bench-build", "sif", "sign", "verify", "sbom"),
         apply=lambda s, v: _apply_sif(s, v)),
    Knob("SIF_FROM", "auto", "how a SIF is made: image (the kit's Docker image for BASE and PLATFORM, saved and "
         "squashed: a minute, nothing built again) | recipe (Apptainer.def, every stage built again; with "
         "REQUIREMENTS, scripts/image/Apptainer.env.def on the kit's SIF) | auto (image where a Docker engine "
         "answers, else recipe); docs/image.md",
         ("sif", "run", "smoke", "batch", *BENCH_COMMANDS),
         apply=lambda s, v: setattr(s, 'sif_from', parse_sif_from(v))),
    Knob("FUTURES", "0", "1: run SCRIPT under python -m mpi4py.futures (rank 0 runs it, the other ranks "
         "are MPIPoolExecutor workers)", LIKE_RUN,
         apply=lambda s, v: setattr(s, 'futures', parse_flag(v, 'FUTURES'))),
    Knob("SCRIPT", "", "your own script for `make run` (and make line, sbatch), under the current directory",
         (*LIKE_RUN, "batch"),
         apply=_apply_script),
    Knob("ARGS", "", "arguments passed to the example or SCRIPT", (*LIKE_RUN, "batch"),
         apply=lambda s, v: setattr(s, 'args', parse_args(v))),
    Knob("TIMEOUT", "1800", "stop a run after this many seconds, naming the ranks still running (0: no limit)",
         (*LIKE_RUN, "smoke", "batch"),
         apply=lambda s, v: setattr(s, 'timeout', parse_timeout(v))),
    Knob("SRUN_MPI", "auto", "srun --mpi plugin for RUNTIME=srun and cluster (auto: pmix for the image's Open "
         "MPI; with HOST_MPI, the plugin the site's MPI can use; srun --mpi=list shows yours)",
         (*RUN_COMMANDS, "bench", "bench-curve", "bench-env"),
         apply=lambda s, v: setattr(s, 'srun_mpi', parse_srun_mpi(v))),
    Knob("APPTAINER_MODE", launch.DEFAULT_MODE, "how srun's ranks enter the image: exec (one apptainer exec each) | "
         "sharens (one namespace per node) | sandbox (the SIF unpacked once per node) | join (sandbox for a node's "
         "first rank; the node's other ranks enter its namespaces with nsenter) | instance (one instance per node); "
         "docs/performance.md", (*LIKE_RUN, "smoke", "doctor", "bench", "bench-env", "batch"),
         apply=lambda s, v: setattr(s, 'apptainer_mode', parse_apptainer_mode(v))),
    Knob("HOST_MPI", "", "the bind model: prefix of the site's own MPI on every node (lib/libmpi_abi.so.1, "
         "libmpi.so.40 or .12), loaded instead of the image's; RUNTIME=srun or cluster",
         (*LIKE_RUN, "smoke", "doctor", "bind-plan"),
         apply=lambda s, v: setattr(s, 'host_mpi', parse_host_mpi(v))),
    Knob("HOST_MPI_ABI", "auto", "the bind model's ABI: auto (the MPI-5 standard ABI, lib/libmpi_abi.so.1, when "
         "the site has it, else its legacy family) | standard | legacy (libmpi.so.40 or .12; docs/bind-model.md)",
         (*LIKE_RUN, "smoke", "doctor", "bind-plan"),
         apply=lambda s, v: setattr(s, 'host_mpi_abi', parse_host_mpi_abi(v, s.host_mpi))),
    Knob("NODES", "", "srun --nodes for RUNTIME=srun and cluster, and make sbatch's #SBATCH --nodes (default: "
         "Slurm's choice; on the test cluster, up to 2)", (*LIKE_RUN, "smoke", "batch"),
         apply=lambda s, v: setattr(s, 'nodes', parse_nodes(v))),
    Knob("CLUSTER", "trixie", "make cluster-up: which test cluster, by its nodes' Debian: trixie (Slurm 24.11, "
         "PMIx 5) | forky (Slurm 26.05, built without PMIx: pmi2 only); one runs at a time, RUNTIME=cluster uses it",
         ("cluster-up",),
         apply=lambda s, v: setattr(s, 'cluster', parse_cluster(v))),
    Knob("LAUNCH", "", "make doctor: check your own launch line, "
         "e.g. LAUNCH='docker run --rm IMAGE mpiexec -n 2'", ("doctor",),
         apply=lambda s, v: setattr(s, 'launch', parse_launch(v))),
    Knob("QUICK", "0", "make bench, bench-curve, bench-build, bench-env: 1 for a short run (proves it works; figures "
         "not for quoting)",
         BENCH_COMMANDS,
         apply=lambda s, v: setattr(s, 'quick', parse_quick(v))),
    Knob("KEY", "", "make keypair: where to write a new private key (KEY.pub: its public half); make sign: the "
         "private key that signs SIF; outside the repository", ("keypair", "sign"),
         apply=lambda s, v: setattr(s, 'key', parse_key(v, s.command))),
    Knob("VERIFY_KEY", "", "a public key or certificate (PEM): make verify checks SIF with it, and with it set "
         "RUNTIME=apptainer, srun and cluster refuse a SIF that does not verify before any rank starts",
         (*LIKE_RUN, "smoke", "batch", "verify"),
         apply=lambda s, v: setattr(s, 'verify_key', parse_verify_key(v, s.command))),
    Knob("CA_CERT", "", "CA bundle for a TLS-intercepting proxy (default: pip's own, e.g. PIP_CERT)",
         (*RUN_COMMANDS, "bench", "bench-build", "bench-env", *BUILD_COMMANDS, "lock"),
         apply=lambda s, v: setattr(s, 'ca_cert', parse_ca_cert(v))),
    Knob("REQUIREMENTS", "", "your own packages: a pip requirements file under the current folder (names, "
         "versions, --hash, ./local packages); runs use an image and SIF with them built on the kit's, MPI-linked "
         "packages compiled against its Open MPI; docs/environment.md",
         (*LIKE_RUN, "smoke", "shell", "image", "sif", "bind-plan", "doctor", "sbom", "sign", "verify", "lock",
          "reproduce", "twin", "bench-env", *UNDERIVED),
         apply=lambda s, v: _apply_requirements(s, v)),
    Knob("COMMAND", "", "make shell without a terminal (CI, no standard input): the command to run in the image "
         "instead (bash -c), with the same mounts, user and environment as make run",
         ("shell",), apply=lambda s, v: setattr(s, 'shell_command', v or None)),
    Knob("PYTEST_ARGS", "", "extra pytest arguments for make test and make test-fast", ("test", "test-fast"),
         apply=lambda s, v: setattr(s, 'pytest_args', parse_args(v, 'PYTEST_ARGS'))),
)
BY_NAME = {k.name: k for k in KNOBS}


def for_command(command: str) -> list[Knob]:
    return [k for k in KNOBS if command in k.commands]


def read(command: str, raw: Mapping[str, str], cwd: Path, example: str = "") -> Settings:
    """Parse every knob `command` reads, in KNOBS' order; raises UsageError on the first bad one."""
    s = Settings(command, dict(raw), cwd=cwd, example=example)
    for knob in for_command(command):
        knob.apply(s, raw[knob.name])
    return s


def table_markdown() -> str:
    """The README's knob table, generated from KNOBS (a test keeps the README equal to it)."""
    rows = ["| knob | default | meaning |", "|---|---|---|"]
    rows += [f"| `{k.name}` | {k.default or ''} | {k.help.replace('|', '&#124;')} |" for k in KNOBS]
    return "\n".join(rows)
