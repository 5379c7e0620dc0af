"""Signed SIFs, the kit's side: key pairs outside the repository, the verdict cached under the SIF's
content (never its mtime), the refusal in one line. Apptainer's own verification is tested on the
test cluster (tests/integration/test_signing.py)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from mpikit import signing
from mpikit.config import ROOT
from mpikit.ui import UsageError


@pytest.mark.skipif(shutil.which("openssl") is None, reason="make keypair needs openssl, which this host lacks")
def test_keypair_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    private, public = signing.keypair(tmp_path / "sif.pem")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and public.name == "sif.pem.pub"
    assert "PRIVATE KEY" in private.read_text() and "PUBLIC KEY" in public.read_text()
    with pytest.raises(UsageError, match="does not overwrite"):
        signing.keypair(tmp_path / "sif.pem")


def test_a_private_key_never_goes_into_the_repository() -> None:
    with pytest.raises(UsageError, match="inside the repository"):
        signing.keypair(ROOT / "build" / "key.pem")
    assert not (ROOT / "build" / "key.pem").exists()


def test_the_verdict_is_cached_by_content_not_by_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sif, key = tmp_path / "a.sif", tmp_path / "k.pub"
    sif.write_bytes(b"signed image" * 1000)
    key.write_text("-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n")
    monkeypatch.setattr(signing, "VERIFIED", tmp_path / "verified")
    asked = []

    def verify(path: Path, with_key: Path) -> str | None:
        asked.append(path.read_bytes())
        return None if path.read_bytes() == b"signed image" * 1000 else "data object integrity compromised: 4"

    monkeypatch.setattr(signing, "verify", verify)
    digest = signing.require_verified(sif, key)
    assert digest == signing.file_digest(sif) and len(asked) == 1
    signing.require_verified(sif, key)
    assert len(asked) == 1  # checked once per content
    before = sif.stat()
    data = bytearray(sif.read_bytes())
    data[len(data) // 2] ^= 1
    sif.write_bytes(bytes(data))
    os.utime(sif, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old size and mtime, another content
    with pytest.raises(UsageError, match=r"a\.sif is refused: it does not verify .*integrity compromised.*no rank"):
        signing.require_verified(sif, key)
    assert len(asked) == 2


def test_a_certificate_is_checked_as_one(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nx\n")
    key.write_text("-----BEGIN PUBLIC KEY-----\nx\n")
    assert signing.verify_argv(Path("a.sif"), cert)[:2] == ["verify", "--certificate"]
    assert signing.verify_argv(Path("a.sif"), key)[:2] == ["verify", "--key"]
