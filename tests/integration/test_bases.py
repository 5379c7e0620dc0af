"""BASE=...: every supported Debian base builds, carries its own pins and runs
all four examples (bookworm: Open MPI 4 / PMIx 4 for older Slurm)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import explain, kit, make, wait_for_prebuild
from mpikit import config, docker
from mpikit.config import EXAMPLES

OTHER_BASES = [b for b in config.supported_bases() if b != config.default_base()]


@pytest.mark.parametrize("base", OTHER_BASES)
@pytest.mark.prebuilt("bookworm")
def test_other_base_builds_and_passes_smoke(base: str, docker_image: str) -> None:
    image = f"{config.image_name()}:{base}"
    wait_for_prebuild(base)  # the background build of it, when the session started one
    build = kit("image", "--base", base, timeout=1800)
    assert build.returncode == 0, explain(build, f"make image BASE={base}")

    inspect = subprocess.run([docker.client(), "image", "inspect", image], capture_output=True, text=True)
    labels = json.loads(inspect.stdout)[0]["Config"]["Labels"]
    assert {k: labels.get(k) for k in config.stack_labels(base)} == config.stack_labels(base)

    version = subprocess.run([docker.client(), "run", "--rm", image, "python", "-m", "mpi4py",
                              "--mpi-lib-version"], capture_output=True, text=True, timeout=120)
    upstream = config.upstream_version(config.read_versions()[f"OPENMPI_DEB_{base}"])
    assert f"Open MPI v{upstream}" in version.stdout, explain(version, f"docker run {image} python -m mpi4py "
                                                                       "--mpi-lib-version")

    smoke = make("smoke", "RUNTIME=docker", f"BASE={base}", "NP=3", timeout=600)
    assert f"smoke: {len(EXAMPLES)} passed, 0 failed" in smoke.stdout, \
        explain(smoke, f"make smoke RUNTIME=docker BASE={base} NP=3")
