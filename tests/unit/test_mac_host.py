"""The kit's host side on a Mac (not tested on one here: these pin what it does
there): no /proc, loopback lo0, pip's config under Library, emulation in Docker
Desktop's VM rather than in this host's binfmt_misc."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpikit import docker, knobs, platforms, procs, runtimes


def test_without_proc_the_process_scans_answer_cannot_tell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(procs, "PROC", tmp_path / "no-proc")
    assert procs.available() is False
    assert procs.local_ranks(1) is None
    assert procs.matching("scatter_gather.py") is None
    assert runtimes.timeout_message(5, None, ["mpiexec"]).startswith("timed out after 5 s (TIMEOUT=5); stopped")


def test_open_mpi_stays_on_the_loopback_interface_the_os_names() -> None:
    assert runtimes.one_node_fixes({}, "linux")["OMPI_MCA_btl_tcp_if_include"] == "lo"
    assert runtimes.one_node_fixes({}, "darwin")["OMPI_MCA_btl_tcp_if_include"] == "lo0"
    assert "OMPI_MCA_btl_tcp_if_include" not in runtimes.one_node_fixes({"OMPI_MCA_btl_tcp_if_include": "en0"},
                                                                         "darwin")


def test_pips_macos_config_names_the_proxy_ca(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("pem")
    config = tmp_path / "Library" / "Application Support" / "pip" / "pip.conf"
    config.parent.mkdir(parents=True)
    config.write_text(f"[global]\ncert = {pem}\n")
    assert knobs.pip_ca_cert({"PIP_CONFIG_FILE": "/dev/null"}, tmp_path) == str(pem)


def test_emulation_is_not_looked_for_outside_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker Desktop runs another platform's containers in its VM; the Mac has no binfmt_misc to read."""
    def must_not_run(*_args):
        raise AssertionError("binfmt_misc was read on a non-Linux host")

    monkeypatch.setattr(docker.sys, "platform", "darwin")
    monkeypatch.setattr(platforms, "emulation_problem", must_not_run)
    other = next(p for p in platforms.SUPPORTED if p != platforms.host())
    docker.ensure_emulation(other)  # returns without a look and without an error
    monkeypatch.setattr(docker.sys, "platform", "linux")
    with pytest.raises(AssertionError, match="binfmt_misc was read"):
        docker.ensure_emulation(other)
