"""make lock REQUIREMENTS=my.in (scripts/mpikit/lock.py): which files it takes, where the lock goes, and the
container that resolves it for the image's Python."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpikit import config, environment, knobs, lock
from mpikit.ui import UsageError


def read(folder: Path, text: str, name: str = "my.in") -> environment.Requirements:
    (folder / name).write_text(text)
    return environment.read(name, folder)


def test_the_lock_of_my_in_is_my_txt_beside_it(tmp_path: Path) -> None:
    (tmp_path / "envs").mkdir()
    reqs = read(tmp_path, "scipy>=1.14\ntqdm\n", "envs/my.in")
    assert lock.output_for(reqs, tmp_path) == tmp_path / "envs" / "my.txt"


def test_a_file_not_named_in_is_refused_it_may_be_a_lock_already(tmp_path: Path) -> None:
    reqs = read(tmp_path, "tqdm==4.67.1\n", "requirements.txt")
    with pytest.raises(UsageError, match=r"REQUIREMENTS=requirements.txt: give the loose file, named \*\.in"):
        lock.output_for(reqs, tmp_path)


def test_a_local_package_is_refused_with_its_line_pip_cannot_hash_a_folder(tmp_path: Path) -> None:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "pyproject.toml").write_text("[project]\nname = 'mypkg'\nversion = '1'\n")
    reqs = read(tmp_path, "tqdm\n./mypkg\n")
    with pytest.raises(UsageError, match=r"line 2 \(\./mypkg\) is a local package, which pip cannot hash-check"):
        lock.output_for(reqs, tmp_path)


def test_the_tools_are_a_cached_layer_on_the_kits_image_built_from_the_hash_pinned_lock(tmp_path: Path) -> None:
    assert lock.tools_image("mpi4py-kit:trixie") == "mpi4py-kit-lock:trixie"
    argv = lock.tools_build_argv("docker", "mpi4py-kit:bookworm", tmp_path, "/etc/proxy.pem")
    assert argv[:4] == ["docker", "build", "-q", "-t"] and argv[4] == "mpi4py-kit-lock:bookworm"
    assert "KIT_IMAGE=mpi4py-kit:bookworm" in argv and argv[-1] == str(tmp_path)  # the context: lock-tools.txt
    assert ["-f", "-"] == argv[argv.index("-f"):argv.index("-f") + 2]  # the Dockerfile on stdin
    assert "--secret" in argv and "id=ca_cert,src=/etc/proxy.pem" in argv  # a secret: in no layer
    assert "--secret" not in lock.tools_build_argv("docker", "mpi4py-kit:trixie", tmp_path, None)
    # The tools come from requirements/lock-tools.txt, every hash checked, and the context holds that file alone.
    assert "COPY lock-tools.txt /kit/lock-tools.txt" in lock.TOOLS_DOCKERFILE and lock.TOOLS.is_file()
    assert f"{lock.TOOLS_VENV}/bin/pip install -q --require-hashes -r /kit/lock-tools.txt" in lock.TOOLS_DOCKERFILE
    assert f"{lock.TOOLS_VENV}/bin/pip-compile" in lock.SCRIPT and "apt-get" not in lock.SCRIPT


def test_the_container_sees_the_folder_and_the_kits_pins(tmp_path: Path) -> None:
    reqs = read(tmp_path, "tqdm\n")
    argv = lock.docker_argv("docker", "mpi4py-kit-lock:trixie", reqs, tmp_path / "my.txt", tmp_path,
                            "/etc/proxy.pem")
    assert argv[:5] == ["docker", "run", "--rm", "--user", "0"]
    assert f"{tmp_path}:{lock.WORK}" in argv  # read-write: the lock is written there
    assert "/etc/proxy.pem:/kit/ca.pem:ro" in argv and "PIP_CERT=/kit/ca.pem" in argv
    env = dict(a.split("=", 1) for a in argv[argv.index("-e") :] if a.startswith("LOCK_"))
    assert env["LOCK_IN"] == "my.in" and env["LOCK_OUT"] == "my.txt"
    # The kit's pins, as constraints without hashes: numpy is locked at the image's version, never moved.
    assert env["LOCK_CONSTRAINTS"] == environment.constraints()
    assert f"numpy=={config.python_pins()['numpy']}\n" in env["LOCK_CONSTRAINTS"]
    assert argv[-5:-1] == ["--entrypoint", "sh", "mpi4py-kit-lock:trixie", "-c"] and argv[-1] == lock.SCRIPT


def test_the_lock_reaches_the_folder_only_after_pip_checked_it() -> None:
    steps = lock.SCRIPT.splitlines()
    compiled = next(i for i, s in enumerate(steps) if "pip-compile" in s)
    checked = next(i for i, s in enumerate(steps) if "--dry-run --require-hashes" in s)
    copied = next(i for i, s in enumerate(steps) if s.startswith('cp /tmp/lock.txt "$LOCK_OUT"'))
    assert compiled < checked < copied and steps[0] == "set -eu"


def test_make_lock_reads_requirements_base_and_the_ca_bundle_and_refuses_an_image_beside_requirements(
        tmp_path: Path) -> None:
    assert {"REQUIREMENTS", "BASE", "CA_CERT", "IMAGE"} <= {k.name for k in knobs.for_command("lock")}
    (tmp_path / "my.in").write_text("tqdm\n")
    raw = {k.name: k.default for k in knobs.KNOBS} | {"REQUIREMENTS": "my.in", "IMAGE": "mine:1"}
    with pytest.raises(UsageError, match="REQUIREMENTS and IMAGE= together are not taken"):
        knobs.read("lock", raw, tmp_path)
