"""The bind model's plan: from what ldd and the image say to binds, environment and the srun plugin."""

from __future__ import annotations

import pytest
from mpikit import bind, slurm
from mpikit.ui import UsageError

LDD_MPICH = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibpmi2.so.0 => /usr/lib/x86_64-linux-gnu/libpmi2.so.0 (0x00007f01)
\tlibfabric.so.1 => /opt/site/fabric/lib/libfabric.so.1 (0x00007f02)
\tlibucp.so.0 => /opt/site/mpich/lib/mpich/libucp.so.0 (0x00007f03)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f04)
\tlibgfortran.so.5 => /usr/lib/x86_64-linux-gnu/libgfortran.so.5 (0x00007f05)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f06)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f07)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f08)
"""
IMAGE = {"libz.so.1", "libfabric.so.1", "libc.so.6", "libm.so.6", "libucp.so.0"}


def mpich_plan(**kw) -> bind.Plan:
    args = {"prefix": "/opt/site/mpich", "libmpi": "/opt/site/mpich/lib/libmpi.so.12", "family": "mpich",
            "needed": bind.parse_ldd(LDD_MPICH), "image_sonames": IMAGE,
            "exists": lambda path: path == "/opt/site/fabric/lib/libfabric", "offered": ["pmi2", "pmix"]}
    args.update(kw)
    return bind.plan(**args)


def test_parse_ldd_and_ldconfig() -> None:
    needed = bind.parse_ldd(LDD_MPICH + "\tlibnope.so.3 => not found\n")
    assert needed[0] == bind.Needed("libpmi2.so.0", "/usr/lib/x86_64-linux-gnu/libpmi2.so.0")
    assert needed[-1] == bind.Needed("libnope.so.3", None)
    assert len(needed) == 8  # the vdso and the loader are not dependencies to bind
    text = ("1234 libs found in cache `/etc/ld.so.cache'\n"
            "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n"
            "\tlibmpi.so.40 (libc6,x86-64) => /lib/x86_64-linux-gnu/libmpi.so.40\n")
    assert bind.parse_ldconfig(text) == {"libz.so.1", "libmpi.so.40"}


def test_find_libmpi_by_abi_family() -> None:
    both = {"/p/lib": ["libmpi.so", "libmpi.so.12", "libmpi_abi.so.1"]}
    path, family, why = bind.find_libmpi("/p", both)
    assert (path, family) == ("/p/lib/libmpi_abi.so.1", "standard")
    assert why.startswith("auto: the standard ABI is preferred over the legacy libmpi.so.12")
    assert bind.find_libmpi("/p", both, "legacy") == ("/p/lib/libmpi.so.12", "mpich", "HOST_MPI_ABI=legacy")
    assert bind.find_libmpi("/p", both, "standard") == ("/p/lib/libmpi_abi.so.1", "standard", "HOST_MPI_ABI=standard")
    assert bind.find_libmpi("/p", {"/p/lib": ["libmpi_abi.so.1"]}) == ("/p/lib/libmpi_abi.so.1", "standard", "")
    assert bind.find_libmpi("/p", {"/p/lib64": ["libmpi.so.40"], "/p/lib": []}) == \
        ("/p/lib64/libmpi.so.40", "openmpi", "")
    with pytest.raises(UsageError, match=r"^HOST_MPI_ABI=standard, but HOST_MPI=/p has no lib/libmpi_abi\.so\.1; "
                                         r"it has libmpi\.so\.40"):
        bind.find_libmpi("/p", {"/p/lib": ["libmpi.so.40"]}, "standard")
    with pytest.raises(UsageError, match=r"^HOST_MPI_ABI=legacy, but HOST_MPI=/p has only the standard ABI"):
        bind.find_libmpi("/p", {"/p/lib": ["libmpi_abi.so.1"]}, "legacy")
    with pytest.raises(UsageError, match=r"has libmpi\.so\.20, an ABI the image's mpi4py cannot load"):
        bind.find_libmpi("/p", {"/p/lib": ["libmpi.so.20"]})
    with pytest.raises(UsageError, match=r"has no lib/libmpi_abi\.so\.1, lib/libmpi\.so\.40 or lib/libmpi\.so\.12"):
        bind.find_libmpi("/p", {"/p/lib": ["libfoo.so"]})


def test_the_standard_abi_plan_chooses_the_mpiabi_variant_and_names_the_library() -> None:
    p = mpich_plan(libmpi="/opt/site/mpich/lib/libmpi_abi.so.1", family="standard",
                   family_why="auto: the standard ABI is preferred")
    assert p.env["MPI4PY_MPIABI"] == "mpiabi" and p.env["PYTHONPATH"] == bind.ABI_MPI4PY
    assert p.env["MPI4PY_LIBMPI"] == "/opt/site/mpich/lib/libmpi_abi.so.1"
    assert p.srun_mpi == "pmi2"  # an MPICH without a PMIx client, whichever ABI it is reached through
    p.abi = "1.0"
    lines = p.describe()
    assert lines[0].startswith("site MPI: /opt/site/mpich/lib/libmpi_abi.so.1 (MPI-5 standard ABI") and \
        "version 1.0" in lines[0]
    assert lines[1] == "abi    standard  (auto: the standard ABI is preferred)"
    assert bind.compatible("standard", "MPICH Version: 5.0.2", "5.0.7") is None


def test_the_preflight_output_is_parsed() -> None:
    said = ("MPIKIT-VARIANTS mpiabi,mpich,openmpi\n"
            "MPIKIT-LIBMPI /opt/site/impi/lib/libmpi_abi.so.1.0 | 1.0 | Intel(R) MPI Library 2021.18 for Linux* OS\n")
    assert bind.parse_preflight(said) == bind.Loaded("/opt/site/impi/lib/libmpi_abi.so.1.0", "1.0",
                                                     "Intel(R) MPI Library 2021.18 for Linux* OS",
                                                     ("mpiabi", "mpich", "openmpi"))
    legacy = bind.parse_preflight("MPIKIT-VARIANTS mpich,openmpi\nMPIKIT-LIBMPI /l/libmpi.so.40 |  | Open MPI v5.0.7\n")
    assert legacy.abi == "" and legacy.variants == ("mpich", "openmpi")
    notmpi = bind.parse_preflight("MPIKIT-VARIANTS mpich\nMPIKIT-NOTMPI /s/lib/libz.so.1.3\n")
    assert notmpi.not_mpi == "/s/lib/libz.so.1.3" and notmpi.path == ""
    assert bind.parse_preflight("Traceback (most recent call last):\n") is None


@pytest.mark.parametrize("abi,problem", [
    ("1.0", None), ("2.1", None),
    ("0.0", "answers MPI_Abi_get_version 0.0; a major version of 0 is a legacy ABI's"),
    ("", "has no MPI_Abi_get_version, so it is not the MPI-5 standard ABI"),
])
def test_only_a_major_version_of_1_or_more_is_the_standard_abi(abi: str, problem: str | None) -> None:
    found = bind.standard_abi_problem("/p/lib/libmpi_abi.so.1", abi)
    assert found == problem if problem is None else problem in found


def test_the_plan_binds_what_the_image_lacks_and_the_sites_stack() -> None:
    p = mpich_plan()
    binds = {b.source: b for b in p.binds}
    assert binds["/opt/site/mpich"].target == "/opt/site/mpich"  # the prefix, at its own path
    assert binds["/usr/lib/x86_64-linux-gnu/libpmi2.so.0"].target == f"{bind.HOST_LIB}/libpmi2.so.0"
    assert binds["/usr/lib/x86_64-linux-gnu/libgfortran.so.5"].why == "needed by the site MPI; not in the image"
    assert "fabric" in binds["/opt/site/fabric/lib/libfabric.so.1"].why  # the image has one; the site's wins
    assert binds["/opt/site/fabric/lib/libfabric"].why.startswith("configuration or plugins")
    image = dict(p.from_image)
    assert set(image) == {"libz.so.1", "libm.so.6", "libc.so.6"}
    assert "C library" in image["libc.so.6"] and image["libz.so.1"] == "the image has this soname"
    assert "libucp.so.0" not in binds and "libucp.so.0" not in image  # inside the prefix: its bind covers it
    assert p.env["LD_LIBRARY_PATH"] == f"{bind.HOST_LIB}:/opt/site/mpich/lib"
    assert p.env["MPI4PY_LIBMPI"] == "/opt/site/mpich/lib/libmpi.so.12" and p.env["MPI4PY_MPIABI"] == "mpich"
    assert p.env["PYTHONPATH"] == bind.ABI_MPI4PY and p.env["FI_PROVIDER_PATH"] == "/opt/site/fabric/lib/libfabric"
    assert set(p.env) == set(p.env_why)
    assert any(line.startswith("bind   /opt/site/mpich ") for line in p.describe())


def test_open_mpi_uses_the_images_mpi4py() -> None:
    p = bind.plan("/opt/site/openmpi", "/opt/site/openmpi/lib/libmpi.so.40", "openmpi",
                  bind.parse_ldd("\tlibz.so.1 => /lib/libz.so.1 (0x1)\n"), IMAGE, lambda path: False, ["pmix"])
    assert p.env == {"LD_LIBRARY_PATH": f"{bind.HOST_LIB}:/opt/site/openmpi/lib", "OPAL_PREFIX": "/opt/site/openmpi",
                     bind.GUARD_MARK: "/opt/site/openmpi"}
    assert (p.srun_mpi, [b.source for b in p.binds]) == ("pmix", ["/opt/site/openmpi"])


def test_a_library_nobody_finds_is_refused() -> None:
    with pytest.raises(UsageError, match=r"needs libcxi\.so\.1, which the node's loader finds nowhere"):
        mpich_plan(needed=bind.parse_ldd("\tlibcxi.so.1 => not found\n"))


@pytest.mark.parametrize("family,needed,offered,want", [
    ("openmpi", "", ["pmi2", "pmix"], "pmix"),
    ("mpich", "", ["pmi2", "pmix"], "pmi2"),  # no PMIx client: PMI-1/2 over Slurm's socket
    ("mpich", "\tlibpmix.so.2 => /usr/lib/libpmix.so.2 (0x1)\n", ["pmi2", "pmix"], "pmix"),
    ("mpich", "\tlibpals.so.0 => /opt/cray/pe/lib64/libpals.so.0 (0x1)\n", ["cray_shasta", "pmi2"], "cray_shasta"),
])
def test_the_srun_plugin_the_site_mpi_can_use(family: str, needed: str, offered: list[str], want: str) -> None:
    assert bind.srun_plugin(family, bind.parse_ldd(needed), offered)[0] == want


def test_version_compatibility() -> None:
    assert bind.library_major("Open MPI v5.0.11, package: Open MPI pypi") == ("Open MPI", 5)
    assert bind.library_major("MPICH Version:      5.0.2") == ("MPICH", 5)
    assert bind.compatible("mpich", "MPICH Version: 4.1", "5.0.7") is None
    assert bind.compatible("openmpi", "Open MPI v5.0.11, package", "5.0.7") is None
    refused = bind.compatible("openmpi", "Open MPI v4.1.6, package", "5.0.7")
    assert refused and "Open MPI 4 cannot run the image's mpi4py, built against Open MPI 5.0.7" in refused


FORKY = ["cray_shasta", "pmi2"]  # Debian forky's Slurm 26.05: built without PMIx


@pytest.mark.parametrize("srun_mpi,site,offered,want", [
    ("auto", None, ["pmi2", "pmix"], "pmix"),  # the hybrid model where Slurm has PMIx
    ("auto", "/opt/site/mpich", FORKY, "pmi2"),  # the bind model needs no PMIx
    ("pmi2", None, FORKY, "pmi2"),  # given by hand: passed on (doctor judges it)
    ("auto", None, [], "pmix"),  # srun --mpi=list unanswered: srun itself will say
])
def test_the_plugin_srun_gets(srun_mpi: str, site: str | None, offered: list[str], want: str) -> None:
    p = mpich_plan() if site else None
    assert slurm.fit_plugin(srun_mpi, p, offered) == want


def test_a_slurm_without_pmix_refuses_the_hybrid_model_in_one_line() -> None:
    with pytest.raises(UsageError, match=r"no pmix plugin \(srun --mpi=list: cray_shasta, pmi2\).*HOST_MPI="):
        slurm.fit_plugin("auto", None, FORKY)


def test_a_slurm_without_pmix_refuses_a_site_open_mpi() -> None:
    p = bind.plan("/opt/site/openmpi", "/opt/site/openmpi/lib/libmpi.so.40", "openmpi", [], IMAGE,
                  lambda path: False, FORKY)
    with pytest.raises(UsageError, match=r"HOST_MPI=/opt/site/openmpi: srun --mpi=pmix is needed .* offers only"):
        slurm.fit_plugin("auto", p, FORKY)


def test_a_site_library_newer_than_the_images_glibc_is_named() -> None:
    """forky's libpmi2 in the bookworm image: the loader's words become which library and what to do."""
    p = mpich_plan()
    said = ("OSError: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found "
            f"(required by {bind.HOST_LIB}/libpmi2.so.0)")
    line = bind.load_failure(p, said)
    assert line.startswith("the site's /usr/lib/x86_64-linux-gnu/libpmi2.so.0 needs glibc 2.38, newer than the image's")
    assert "BASE=trixie" in line and "\n" not in line
    other = bind.load_failure(p, "OSError: libfoo.so.1: cannot open shared object file")
    assert other.startswith(f"the site's {p.libmpi} does not load inside the image") and "make bind-plan" in other


# Intel MPI's libmpi.so.12 needs only the C library (ldd), and opens Slurm's PMI-2 and its own
# libfabric with dlopen at run time: the plan must name both, since ldd cannot show them.
LDD_IMPI = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibrt.so.1 => /lib/x86_64-linux-gnu/librt.so.1 (0x00007f01)
\tlibdl.so.2 => /lib/x86_64-linux-gnu/libdl.so.2 (0x00007f02)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f07)
"""
PMI2 = "/usr/lib/x86_64-linux-gnu/libpmi2.so.0"
LDCONFIG_NODE = f"""12 libs found in cache `/etc/ld.so.cache'
\tlibpmix.so.2 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libpmix.so.2
\tlibpmi2.so.0 (libc6,x86-64) => {PMI2}
"""


def impi_plan(**kw) -> bind.Plan:
    dlopened = bind.Dlopened("Intel MPI", PMI2, bind.parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n"),
                             providers="/opt/site/impi/lib")
    return mpich_plan(prefix="/opt/site/impi", libmpi="/opt/site/impi/lib/libmpi.so.12",
                      needed=bind.parse_ldd(LDD_IMPI), **{"dlopened": dlopened, **kw})


def test_intel_mpi_is_told_which_pmi2_to_open_and_gets_it_bound() -> None:
    p = impi_plan()
    binds = {b.source: b for b in p.binds}
    assert binds[PMI2].target == f"{bind.HOST_LIB}/libpmi2.so.0" and "dlopen" in binds[PMI2].why
    assert p.env["I_MPI_PMI_LIBRARY"] == f"{bind.HOST_LIB}/libpmi2.so.0"
    assert p.env["FI_PROVIDER_PATH"] == "/opt/site/impi/lib"
    assert p.env["MPI4PY_RC_RECV_MPROBE"] == "false"  # its matched probe breaks Comm.Disconnect across nodes
    assert p.srun_mpi == "pmi2" and "I_MPI_PMI_LIBRARY" in p.srun_mpi_why
    assert all(k in p.env_why for k in p.env)
    assert any("Intel MPI" in line for line in p.describe())


def test_the_nodes_own_pmi2_is_found_or_intel_mpi_is_refused_in_one_line() -> None:
    assert bind.node_library(LDCONFIG_NODE, "libpmi2.so.0") == PMI2
    assert bind.node_library(LDCONFIG_NODE, "libpmi.so.0") is None
    with pytest.raises(UsageError, match=r"is Intel MPI.*libpmi2\.so\.0.*I_MPI_PMI_LIBRARY"):
        bind.intel_pmi_library("/opt/site/impi/lib/libmpi.so.12", None, "node1", {})
    assert bind.intel_pmi_library("/x/libmpi.so.12", PMI2, "node1", {}) == PMI2
    # A site module that names the library itself is followed.
    named = {"I_MPI_PMI_LIBRARY": "/opt/slurm/lib/libpmi2.so"}
    assert bind.intel_pmi_library("/x/libmpi.so.12", PMI2, "node1", named) == "/opt/slurm/lib/libpmi2.so"


def test_a_plain_mpich_plan_names_no_dlopened_library() -> None:
    p = mpich_plan()
    assert "I_MPI_PMI_LIBRARY" not in p.env and p.dlopened is None


# ---- an environment's packages that link an MPI (REQUIREMENTS; derive.sh writes bind.LINKED) ----

LINKED = "h5py 3.16.0 libmpi.so.40\nmpirank 0.1 libmpi.so.40\n"


def test_the_environments_list_of_mpi_linked_packages_is_parsed() -> None:
    assert bind.parse_linked(LINKED) == [("h5py 3.16.0", "libmpi.so.40"), ("mpirank 0.1", "libmpi.so.40")]
    assert bind.parse_linked("") == []  # the kit's own image, or an environment that links no MPI


def test_a_package_linked_against_another_family_refuses_the_site_mpi_in_one_line() -> None:
    p = mpich_plan(family="standard", libmpi="/opt/site/mpich/lib/libmpi_abi.so.1")
    p.linked = bind.parse_linked(LINKED)
    problem = bind.linked_problem(p)
    assert problem is not None and "\n" not in problem
    assert problem.startswith("h5py 3.16.0, mpirank 0.1 in this environment were compiled against libmpi.so.40 "
                              "(the image's Open MPI), but the bind model loads /opt/site/mpich/lib/libmpi_abi.so.1")
    assert "pure-Python packages are fine" in problem
    p.linked = [("h5py 3.16.0", "libmpi.so.40")]
    assert bind.linked_problem(p).startswith("h5py 3.16.0 in this environment was compiled against")
    legacy = mpich_plan()
    legacy.linked = [("h5py 3.16.0", "libmpi.so.40")]
    assert "loads /opt/site/mpich/lib/libmpi.so.12 (MPICH ABI" in bind.linked_problem(legacy)


def test_the_same_family_or_no_linked_package_is_fine_and_bind_plan_says_which() -> None:
    site = bind.plan("/opt/site/openmpi", "/opt/site/openmpi/lib/libmpi.so.40", "openmpi",
                     bind.parse_ldd(LDD_MPICH), IMAGE, lambda path: False, ["pmix"])
    site.linked = bind.parse_linked(LINKED)
    assert bind.linked_problem(site) is None
    assert "linked h5py 3.16.0  (libmpi.so.40, Open MPI ABI (libmpi.so.40): the site's family, loads the site's " \
           "library)" in site.describe()
    pure = mpich_plan()
    assert pure.linked == [] and bind.linked_problem(pure) is None
    assert not any(line.startswith("linked") for line in pure.describe())


def test_derive_writes_the_list_where_the_bind_model_reads_it() -> None:
    from mpikit.config import ROOT

    assert f"/stage{bind.LINKED}" in (ROOT / "scripts" / "image" / "derive.sh").read_text()


# ---- a plan kept between runs (bind.resolve(reuse=True): make run and its kin) ----

class FakeNode:
    """A node whose files are a dict path -> (size, ctime, inode); answers the kit's stat command."""

    def __init__(self, files: dict[str, tuple[int, int, int]]) -> None:
        self.files, self.asked = files, 0

    def run(self, argv: list[str]):
        import subprocess

        assert argv[:3] == ["sh", "-c", bind.STAT]
        self.asked += 1
        out = "".join(f"{p} {' '.join(map(str, self.files[p]))}\n" if p in self.files else f"{p} -\n"
                      for p in argv[4:])
        return subprocess.CompletedProcess(argv, 0, out, "")


def kept_site(node: FakeNode, **kw) -> bind.Site:
    args = {"where": "node1", "run": node.run, "sif": "/shared/mpi.sif", "offered": ("pmi2", "pmix")}
    args.update(kw)
    return bind.Site(**args)


def test_a_plan_survives_its_round_trip_through_the_cache_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bind, "PLAN_CACHE", tmp_path)
    p = impi_plan()
    p.watched = ["/opt/site/impi/lib", "/usr/lib/x86_64-linux-gnu/libpmi2.so.0"]
    p.linked = [("h5py", "libmpi.so.40")]
    node = FakeNode({"/opt/site/impi/lib": (4096, 10, 1)})
    bind.keep_plan("k", p, kept_site(node))
    assert bind.reused_plan("k", kept_site(node)) == p
    assert bind.plan_from_json(bind.plan_to_json(mpich_plan())) == mpich_plan()


def test_a_kept_plan_is_dropped_when_a_watched_file_changes_comes_or_goes(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bind, "PLAN_CACHE", tmp_path)
    p = mpich_plan()
    p.watched = ["/opt/site/mpich/lib", "/opt/site/mpich/lib/libmpi.so.12", "/etc/ucx"]
    files = {"/opt/site/mpich/lib": (4096, 10, 1), "/opt/site/mpich/lib/libmpi.so.12": (999, 10, 2)}
    node = FakeNode(dict(files))
    bind.keep_plan("k", p, kept_site(node))
    assert bind.reused_plan("k", kept_site(node)) == p
    for changed in ({"/opt/site/mpich/lib/libmpi.so.12": (999, 11, 2)},  # rewritten in place
                    {"/opt/site/mpich/lib/libmpi.so.12": (999, 10, 3)},  # replaced
                    {"/etc/ucx": (4096, 12, 7)}):  # a configuration folder appeared
        node.files = {**files, **changed}
        assert bind.reused_plan("k", kept_site(node)) is None, changed
    node.files = {k: v for k, v in files.items() if k != "/opt/site/mpich/lib/libmpi.so.12"}  # gone
    assert bind.reused_plan("k", kept_site(node)) is None
    assert bind.reused_plan("no-such-key", kept_site(node)) is None


def test_the_key_names_everything_the_plan_is_worked_out_for(tmp_path) -> None:
    sif = tmp_path / "mpi.sif"
    sif.write_bytes(b"one")
    node = FakeNode({})
    key = bind.plan_key("/opt/site/mpich", "auto", kept_site(node), sif)
    assert key == bind.plan_key("/opt/site/mpich", "auto", kept_site(node), sif)
    others = [bind.plan_key("/opt/site/impi", "auto", kept_site(node), sif),
              bind.plan_key("/opt/site/mpich", "legacy", kept_site(node), sif),
              bind.plan_key("/opt/site/mpich", "auto", kept_site(node, where="this node"), sif),
              bind.plan_key("/opt/site/mpich", "auto", kept_site(node, offered=("pmix",)), sif),
              bind.plan_key("/opt/site/mpich", "auto", kept_site(node, environ={"LD_LIBRARY_PATH": "/x"}), sif)]
    assert key not in others and len(set(others)) == len(others)
    sif.write_bytes(b"another")  # the SIF rebuilt at the same path
    assert bind.plan_key("/opt/site/mpich", "auto", kept_site(node), sif) != key
