"""The test cluster's nodes keep the kit's sandboxes in memory (cluster.sandbox_options): the folder is the one
scripts/launch/apptainer-rank.sh unpacks into by default for the cluster's user, the user's own (the script refuses
any other), and programs run from it; nothing else of /tmp moves."""

from __future__ import annotations

import re

from mpikit import cluster
from mpikit.config import ROOT


def test_the_sandbox_folder_is_the_rank_wrappers_default_for_the_clusters_user() -> None:
    wrapper = (ROOT / "scripts" / "launch" / "apptainer-rank.sh").read_text()
    default = re.search(r"^base=\$\{MPI4PY_KIT_SANDBOXES:-(\S+)\}$", wrapper, re.M)
    assert default, "apptainer-rank.sh no longer sets base=${MPI4PY_KIT_SANDBOXES:-...}"
    uid = cluster.user_uid()
    assert uid == 1000  # scripts/apptainer/Dockerfile: useradd --uid 1000 ... hpcuser
    option, mount = cluster.sandbox_options(uid)
    assert option == "--tmpfs"
    folder = mount.partition(":")[0]
    assert folder == default.group(1).replace("$uid", str(uid))


def test_the_folder_is_the_users_own_and_runs_programs() -> None:
    options = cluster.sandbox_options(1234)[1].partition(":")[2].split(",")
    assert {"uid=1234", "gid=1234", "mode=0700", "exec"} <= set(options)
    assert "noexec" not in options


def test_a_helper_recipe_without_the_user_is_refused_in_one_line(tmp_path, monkeypatch) -> None:
    (tmp_path / "scripts" / "apptainer").mkdir(parents=True)
    (tmp_path / "scripts" / "apptainer" / "Dockerfile").write_text("RUN useradd --create-home someone\n")
    monkeypatch.setattr(cluster, "ROOT", tmp_path)
    try:
        cluster.user_uid()
    except cluster.RunError as exc:
        assert "creates no user hpcuser" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("no error")
