"""Signed SIFs: a PEM key pair (make keypair), a signature in the SIF (make sign), its check (make verify),
and the check before every launch that runs the SIF when VERIFY_KEY is set.

Apptainer signs and verifies with PEM keys or X.509 certificates (apptainer sign --key, apptainer verify
--key | --certificate); it makes only PGP pairs itself, so the pair comes from openssl. The verdict of a
verification is cached under the SHA-256 of the SIF's content and of the key, never its size, mtime or
inode: a SIF changed in place with its old mtime put back is checked again, and refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from . import apptainer, docker
from .choose import host_apptainer
from .config import ROOT
from .ui import MissingPrerequisite, RunError, UsageError, say

VERIFIED = apptainer.CACHE / "verified"  # one empty file per (SIF content, key) that verified
DIGEST_ENV = "MPI4PY_KIT_SIF_DIGEST"  # names the node's unpacked sandbox by content (apptainer-rank.sh)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, read in 1 MiB blocks (a SIF is hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def outside_repository(key: Path) -> None:
    """A private key never lives in the repository, where a commit or the test cluster's /shared would show it."""
    if key.resolve().is_relative_to(ROOT):
        raise UsageError(f"KEY={key} is inside the repository ({ROOT}); keep private keys elsewhere, e.g. "
                         "KEY=$HOME/.mpi4py-kit/sif-key.pem")


def keypair(key: Path) -> list[Path]:
    """make keypair: a new ECDSA P-256 pair, the private half at `key` (0600), the public at `key`.pub."""
    outside_repository(key)
    public = key.with_name(key.name + ".pub")
    for path in (key, public):
        if path.exists():
            raise UsageError(f"{path} exists; the kit does not overwrite a key: choose another KEY or remove it")
    if not key.parent.is_dir():
        raise UsageError(f"KEY={key}: the folder {key.parent} does not exist")
    openssl = shutil.which("openssl")
    if not openssl:
        raise MissingPrerequisite("make keypair needs openssl (Debian and Ubuntu: sudo apt-get install openssl)")
    old = os.umask(0o077)
    try:
        for argv in ([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
                     [openssl, "pkey", "-in", str(key), "-pubout", "-out", str(public)]):
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                key.unlink(missing_ok=True)
                raise RunError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    finally:
        os.umask(old)
    key.chmod(0o600)
    public.chmod(0o644)
    return [key, public]


def _apptainer(args: list[str], key: Path) -> subprocess.CompletedProcess:
    """apptainer ARGS on this host, or in the helper image (as its root: signing needs no namespace) with
    the repository and the key's folder mounted (read-only) at their own paths."""
    host = host_apptainer()
    if host:
        return subprocess.run([host, *args], capture_output=True, text=True, timeout=600)
    apptainer.ensure_helper()
    folder = key.resolve().parent
    argv = [docker.command(), "run", "--rm", "-v", f"{ROOT}:{ROOT}", "-v", f"{folder}:{folder}:ro", "-w", str(ROOT),
            "--entrypoint", "apptainer", apptainer.helper_image(), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def _said(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if "FATAL" in line or "rror" in line]
    return (lines[-1] if lines else (proc.stderr + proc.stdout).strip()[-300:]).replace("FATAL:", "").strip()


def sign(sif: Path, key: Path) -> None:
    """make sign: add a signature of the SIF's objects made with the PEM private key."""
    if not sif.is_relative_to(ROOT) and not host_apptainer():
        raise UsageError(f"SIF={sif} is outside {ROOT}, which Apptainer in a container sees; move it under it")
    proc = _apptainer(["sign", "--key", str(key.resolve()), str(sif)], key)
    if proc.returncode != 0:
        raise RunError(f"apptainer sign --key {key} {sif} failed: {_said(proc)}")


def verify_argv(sif: Path, key: Path) -> list[str]:
    """apptainer verify with a public key, or with a certificate (PEM CERTIFICATE) checked against the
    system's roots."""
    kind = "--certificate" if "BEGIN CERTIFICATE" in key.read_text(errors="replace") else "--key"
    return ["verify", kind, str(key.resolve()), str(sif)]


def verify(sif: Path, key: Path) -> str | None:
    """Why the SIF does not verify with `key` (unsigned, changed after signing, another key), or None."""
    proc = _apptainer(verify_argv(sif, key), key)
    return None if proc.returncode == 0 else _said(proc)


def require_verified(sif: Path, key: Path) -> str:
    """Before any rank starts: the SIF verifies with `key`, or the run is refused in one line. Checked once
    per content and key; returns the SIF's digest (which names its unpacked sandbox)."""
    digest = file_digest(sif)
    mark = VERIFIED / f"{digest}-{file_digest(key)[:16]}"
    if mark.is_file():
        say(f"verified: {sif} (sha256 {digest[:12]}..., checked before with {key})")
        return digest
    problem = verify(sif, key)
    if problem:
        raise UsageError(f"{sif} is refused: it does not verify with VERIFY_KEY={key} ({problem}); no rank was "
                         f"started. Check it yourself: make verify SIF={sif} VERIFY_KEY={key}")
    VERIFIED.mkdir(parents=True, exist_ok=True)
    mark.touch()
    say(f"verified: {sif} (sha256 {digest[:12]}...) with {key}")
    return digest
