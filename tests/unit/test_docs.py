"""The docs and recipes say what is true, read in-process: run lines are the
kit's own (runtimes.user_lines), each fact has one source (examples, knobs, build
inputs, pins), and the README is a landing page whose links lead somewhere."""

from __future__ import annotations

import ast
import re
import shlex

import pytest
from mpikit import config, knobs, launch, runtimes
from mpikit.config import EXAMPLES, ROOT

IMAGE = f"{config.image_name()}:{config.default_base()}"
README = (ROOT / "README.md").read_text()
DOCS = {p.relative_to(ROOT).as_posix(): p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}


def joined(text: str) -> list[str]:
    """Lines with shell continuations (a trailing backslash) joined."""
    return [line.strip() for line in re.sub(r"\\\n\s*", "", text).splitlines()]


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_docstring_run_lines_are_the_kits_own(name: str) -> None:
    example = EXAMPLES[name]
    doc = ast.get_docstring(ast.parse(example.path.read_text()))
    assert doc, f"{example.file} has no module docstring"
    lines = [line for line in joined(doc) if re.match(r"(make|mpiexec|docker|apptainer|srun) ", line)]
    want = runtimes.user_lines(example.file, 4, IMAGE, f"run-{name}", futures=example.futures)
    assert lines == list(want.values()), f"{example.file}: run lines drifted from runtimes.user_lines"
    assert " ".join(runtimes.SHORTER.split()) in " ".join(doc.split()), \
        f"{example.file}: the docstring must say what its lines leave out (runtimes.SHORTER)"
    assert "check" in doc.lower(), f"{example.file}: the docstring must say what it checks"


def launch_lines(text: str) -> list[str]:
    """Lines of code that start MPI ranks on an examples/ script."""
    return [line.removeprefix("$ ") for line in joined(text)
            if re.match(r"(\$ )?(mpiexec|docker run|apptainer exec|srun) .*examples/\w+\.py", line)]


@pytest.mark.parametrize("doc", ["README.md", *DOCS])
def test_every_launch_line_in_the_docs_is_the_kits_own(doc: str) -> None:
    text = README if doc == "README.md" else DOCS[doc]
    for line in launch_lines(text):
        line = line.split("  #")[0].strip()
        script = re.search(r"examples/(\w+\.py)", line).group(1)
        np = int(re.search(r"(?:-n |--ntasks=)(\d+)", line).group(1))
        _, _, after = line.partition(f"examples/{script}")
        futures = "-m mpi4py.futures" in line
        rendered = list(runtimes.user_lines(script, np, IMAGE, "run-x", shlex.split(after), futures).values())
        program = launch.Program(f"examples/{script}", tuple(shlex.split(after)),
                                 runner=launch.FUTURES_RUNNER if futures else launch.RANK_RUNNER)
        rendered += [runtimes.srun_line(program, np, mode) for mode in launch.MODES]
        assert line in rendered, f"{doc}: '{line}' is not what the kit runs; it would be one of {list(rendered)}"


def test_every_example_file_is_listed_once() -> None:
    files = sorted(p.name for p in config.EXAMPLES_DIR.glob("*.py"))
    assert files == sorted(e.file for e in EXAMPLES.values())


def test_examples_stay_small() -> None:
    for example in EXAMPLES.values():
        code = [line for line in example.path.read_text().split('"""', 2)[-1].splitlines()
                if line.strip() and not line.strip().startswith("#")]
        assert len(code) <= 60, f"{example.file} has {len(code)} lines of code; keep examples to one idea"


def test_the_twin_recipes_agree_on_the_default_base() -> None:
    base = config.default_base()
    assert re.search(rf"^ARG BASE={base}$", (ROOT / "Dockerfile").read_text(), re.M)
    assert re.search(rf"^\s*BASE={base}$", (ROOT / "Apptainer.def").read_text(), re.M)


def test_the_twin_recipes_set_the_same_environment() -> None:
    """Dockerfile ENV and Apptainer.def %environment: the same variables, same values."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    docker_env = dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", dockerfile, re.M))))
    section = (ROOT / "Apptainer.def").read_text().split("%environment", 1)[1].split("\n%", 1)[0]
    apptainer_env = dict(re.findall(r"^\s*export (\w+)=(\S+)", section, re.M))
    assert docker_env == apptainer_env and "PYTHONNOUSERSITE" in docker_env, (docker_env, apptainer_env)


def _stages(text: str, header: str) -> list[tuple[str, list[str]]]:
    """Each stage's name (after `header`; none: final) and the install.sh steps it runs, in order."""
    chunks = re.split(header, text, flags=re.M)[1:]
    return [(chunk.split("\n", 1)[0].strip() or "final", re.findall(r"/kit/install\.sh (\w+)", chunk))
            for chunk in chunks]


def test_the_twin_recipes_run_the_same_steps() -> None:
    """The same install.sh steps in each twin, each once. The Dockerfile's stages start from one another:
    system (the runtime step, on the target's platform) and the final image from it; the assembler, the
    compiled stage and the stdlib stage from the builder, on the build host's platform, so nothing but apt
    and the last step's checks runs under emulation. Apptainer.def's each from a base: the builder's is the
    build host's and runs assemble and hooks too; the final stage compiles its standard library in place.
    Both tell install.sh the target's architecture."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    docker_stages = _stages(dockerfile, r"^FROM .*?(?: AS |$)")
    recipe = (ROOT / "Apptainer.def").read_text()
    apptainer_stages = _stages(recipe, r"^Stage: ")
    assert docker_stages == [("builder", ["builder"]), ("system", ["runtime"]), ("assembler", ["assemble"]),
                             ("compiled", ["hooks"]), ("stdlib", ["stdlib"]), ("final", ["sbom"])]
    assert apptainer_stages == [("builder", ["builder", "assemble", "hooks"]),
                                ("final", ["runtime", "stdlib", "sbom"])]
    froms = re.findall(r"^FROM (.*)$", dockerfile, re.M)
    assert froms[1:] == ["${BASE_IMAGE} AS system", "builder AS assembler", "assembler AS compiled",
                         "builder AS stdlib", "system"], froms
    assert "COPY --from=stdlib /out/ /" in dockerfile
    assert "TARGET_ARCH=$TARGETARCH /kit/install.sh assemble" in dockerfile
    assert "COPY --from=compiled /opt/venv /opt/venv" in dockerfile
    assert re.search(r"^FROM --platform=\$BUILDPLATFORM \$\{BUILDER_IMAGE\} AS builder$", dockerfile, re.M)
    assert "TARGET_ARCH=$TARGETARCH /kit/install.sh builder" in dockerfile
    before, after = recipe.split("Stage: builder", 1)
    assert "From: {{ BUILDER_FROM }}" in before.rsplit("Bootstrap:", 1)[1]
    assert "TARGET_ARCH={{ ARCH }} CA_CERT_FILE=/kit/ca.pem /kit/install.sh builder" in after
    assert "TARGET_ARCH={{ ARCH }} CA_CERT_FILE=/kit/ca.pem /kit/install.sh assemble" in after


def test_build_inputs_are_one_list() -> None:
    """Dockerfile COPY, Apptainer.def %files and .dockerignore name exactly config.BUILD_INPUTS."""
    want = set(config.BUILD_INPUTS)
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {src.rstrip("/") for line in re.findall(r"^COPY (?!--from)(.*)$", dockerfile, re.M)
              for src in line.split()[:-1]}
    assert copied == want, f"Dockerfile COPY: {sorted(copied)}"
    recipe = (ROOT / "Apptainer.def").read_text()
    files = {line.split()[0] for block in re.findall(r"^%files\n((?:[ \t]+\S.*\n)+)", recipe, re.M)
             for line in block.splitlines() if "{{" not in line}
    assert files == want, f"Apptainer.def %files: {sorted(files)}"
    allowed = {line[1:].removesuffix("/*.py") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert allowed == want, f".dockerignore admits {sorted(allowed)}"


def test_every_supported_base_has_pins() -> None:
    versions = config.read_versions()
    for base in config.supported_bases():
        assert versions.get(f"OPENMPI_DEB_{base}") and versions.get(f"PMIX_DEB_{base}"), base


def test_locked_requirements_match_their_inputs() -> None:
    """requirements/*.in name the versions; the hashed .txt locks must agree (make lock)."""
    for source in ("image", "native", "build", "site"):
        source_text = (config.REQUIREMENTS / f"{source}.in").read_text()
        wanted = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", source_text, re.M))
        locked = config.python_pins(f"{source}.txt")
        for name, version in wanted.items():
            assert locked.get(name) == version, f"{source}.txt pins {name}=={locked.get(name)}, .in says {version}"
        text = (config.REQUIREMENTS / f"{source}.txt").read_text()
        for block in re.split(r"\n(?=[A-Za-z])", text):
            if "==" in block.split("\n")[0]:
                assert "--hash=sha256:" in block, f"{source}.txt: {block.splitlines()[0]} has no hash"


def test_readme_is_a_landing_page() -> None:
    lines = README.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the manual lives in docs/"
    first_screen = "\n".join(lines[:40])
    assert "make run-scatter NP=4" in first_screen and "make test" in first_screen


def test_readme_knob_table_is_generated_from_the_knobs() -> None:
    assert knobs.table_markdown() in README, "README's knob table differs from: python3 scripts/kit knob-table"


def test_makefile_declares_no_knobs() -> None:
    """Knobs live in knobs.py alone; the Makefile passes what make was given."""
    makefile = (ROOT / "Makefile").read_text()
    declared = set(re.findall(r"^([A-Z_]+)\s*\?=", makefile, re.M))
    assert not declared, f"the Makefile declares knobs {declared}; declare them in scripts/mpikit/knobs.py"


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M)) | {f"run-{n}" for n in EXAMPLES}


@pytest.mark.parametrize("doc", ["README.md", *DOCS])
def test_every_make_target_named_exists(doc: str) -> None:
    text = README if doc == "README.md" else DOCS[doc]
    for target in set(re.findall(r"(?:^(?:\$ )?|`)make ([a-z][a-z0-9-]*)", text, re.M)):
        if target == "run-nosuch" or target.endswith("-"):  # a bad name on purpose; `make run-*`
            continue
        assert target in make_targets(), f"{doc} mentions 'make {target}', which the Makefile does not have"


@pytest.mark.parametrize("doc", ["README.md", *DOCS])
def test_links_lead_somewhere(doc: str) -> None:
    text = README if doc == "README.md" else DOCS[doc]
    folder = ROOT / doc.rpartition("/")[0] if "/" in doc else ROOT
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://")):
            continue
        assert (folder / target).exists(), f"{doc} links to {target}, which does not exist"


PLACEHOLDERS = re.compile(r"\b(FIGURES|EMULATION_FINDINGS|TODO|TBD|FIXME|XXX)\b")


@pytest.mark.parametrize("doc", ["README.md", *DOCS])
def test_no_placeholder_is_left_in_the_docs(doc: str) -> None:
    text = README if doc == "README.md" else DOCS[doc]
    found = [f"{doc}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if PLACEHOLDERS.search(line)]
    assert not found, "placeholder words in the docs:\n" + "\n".join(found)


def make_commands(text: str) -> list[str]:
    """Every `make TARGET KNOB=value ...` the text shows, in code blocks and inline code."""
    spans = re.findall(r"`([^`\n]+)`", text) + joined(text)
    return [m.group(0) for span in spans for m in re.finditer(r"\bmake [a-z][\w-]*(?: +[A-Z][A-Z_]*=\S+)*", span)]


@pytest.mark.parametrize("doc", ["README.md", *DOCS])
def test_every_knob_a_doc_gives_make_is_a_knob(doc: str) -> None:
    text = README if doc == "README.md" else DOCS[doc]
    for command in make_commands(text):
        for name in re.findall(r" ([A-Z][A-Z_]*)=", command):
            assert name in knobs.BY_NAME, f"{doc}: `{command}` gives {name}, which is not a knob (knobs.py)"


@pytest.mark.parametrize("doc", ["README.md", *DOCS])
def test_every_default_a_doc_states_is_the_knobs(doc: str) -> None:
    text = " ".join((README if doc == "README.md" else DOCS[doc]).split())
    stated = re.findall(r"default[^.`]{0,30}`([A-Z][A-Z_]*)=([^`\s]+)`", text)
    stated += re.findall(r"`([A-Z][A-Z_]*)=([^`\s]+)`[^.`]{0,12}\(?(?:the|its|the kit's) default", text)
    for name, value in stated:
        if name in knobs.BY_NAME:
            assert value == knobs.BY_NAME[name].default, \
                f"{doc} states {name}={value} as the default; the knob's is {knobs.BY_NAME[name].default!r}"


def test_every_pip_install_checks_hashes() -> None:
    """Python packages install only from the hash-pinned locks (or from wheels built from them). The one
    exception is the user's own environment (REQUIREMENTS, /env/requirements.txt in the derived build): pip
    checks hashes there when the user's file has them, which docs/environment.md recommends."""
    files = [ROOT / "Dockerfile", ROOT / "Apptainer.def", ROOT / "Makefile", *(ROOT / ".ci").iterdir(),
             *(p for p in (ROOT / "scripts").rglob("*") if p.is_file() and "__pycache__" not in p.parts)]
    installs = []
    for path in files:
        name = path.relative_to(ROOT).as_posix()
        text = path.read_text(errors="replace").replace("\\\n", " ")
        for line in text.splitlines():
            pip = re.search(r"""pip\b["')\s,]+(\S+\s+)*?["']?(install|wheel|download)\b""", line)
            if pip and "pip.conf" not in line:
                installs.append((name, line.strip()))
                users = name == "scripts/image/derive.sh" and ("-r /env/requirements.txt" in line
                                                               or '"h5py==$h5py"' in line)
                assert "--require-hashes" in line or "--no-index" in line or users, \
                    f"{name}: pip without hashes: {line}"
    assert len(installs) >= 4, f"expected the image's and the venv's pip installs, found {installs}"



def sh_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(the line before the fence, the block's command lines) for every ```sh block."""
    blocks = []
    for m in re.finditer(r"(?m)^([^\n]*)\n```sh\n(.*?)^```", text, re.S):
        lines = [line.split("  #")[0].strip() for line in joined(m.group(2))]
        blocks.append((m.group(1), [line for line in lines if line and not line.startswith("#")]))
    return blocks


@pytest.mark.parametrize("doc", ["README.md", *DOCS])
def test_every_shell_block_is_the_kits_or_marked_an_illustration(doc: str) -> None:
    """A ```sh block is pasted by users: each line is a make command (its target and knobs checked above,
    each target run by an integration test) or a launch line the kit renders; a block with anything else
    (a site's module, salloc, apptainer inspect) says so: <!-- illustration: why --> before its fence."""
    text = README if doc == "README.md" else DOCS[doc]
    for before, lines in sh_blocks(text):
        if before.startswith("<!-- illustration:"):
            continue
        for line in lines:
            kit_launch = bool(launch_lines(line))
            assert line.startswith("make ") or kit_launch, (
                f"{doc}: `{line}` is neither a make command nor the kit's launch line; if the block only "
                "illustrates, put <!-- illustration: why --> on the line before its fence")


def test_every_version_the_docs_state_is_a_pin() -> None:
    """Open MPI, PMIx, MPICH, mpi4py and numpy versions named in the docs are the ones pinned: the images'
    Debian packages (versions.env), the native venv's and the test cluster's site MPIs (requirements/)."""
    pinned: dict[str, set[str]] = {"Open MPI": set(), "PMIx": set(), "MPICH": set(), "mpi4py": set(), "numpy": set()}
    for base in config.supported_bases():
        pins = config.stack_pins(base)
        pinned["Open MPI"].add(config.upstream_version(pins["OPENMPI_DEB"]))
        pinned["PMIx"].add(config.upstream_version(pins["PMIX_DEB"]))
    for name in ("image.txt", "native.txt", "site.txt"):
        found = config.python_pins(name)
        pinned["Open MPI"] |= {found["openmpi"]} if "openmpi" in found else set()
        pinned["MPICH"] |= {found["mpich"]} if "mpich" in found else set()
        pinned["mpi4py"] |= {found["mpi4py"]} if "mpi4py" in found else set()
        pinned["numpy"] |= {found["numpy"]} if "numpy" in found else set()
    for doc, text in [("README.md", README), *DOCS.items()]:
        for name, version in re.findall(r"\b(Open MPI|PMIx|MPICH|mpi4py|numpy) v?(\d+\.\d+\.\d+)\b", text):
            assert version in pinned[name], f"{doc} states {name} {version}; pinned: {sorted(pinned[name])}"




def test_every_integration_module_has_a_row_in_the_time_table() -> None:
    """CI's budget does not erode unseen: docs/testing.md's table of where the time goes (cold and warm, per
    module, dated) names every integration test module, and no module that is gone."""
    text = DOCS["docs/testing.md"]
    section = text[text.index("## Where the time goes"):]
    section = section[:section.find("\n## ", 1) if "\n## " in section[1:] else len(section)]
    rows = set(re.findall(r"^\| `(test_\w+\.py)` \|", section, re.M))
    modules = {p.name for p in (ROOT / "tests" / "integration").glob("test_*.py")}
    assert rows == modules, f"missing from the table: {sorted(modules - rows)}; gone: {sorted(rows - modules)}"
    assert re.search(r"measured 20\d\d-\d\d-\d\d", section, re.I), "the table's figures carry no date"


def test_every_table_row_has_its_headers_cells() -> None:
    """A row with more or fewer cells than its table's header (an edit meant for one table that reached
    another: docs/testing.md's 'what it proves' rows twice got the timing table's figures appended)."""
    bad = []
    for name, text in DOCS.items():
        header = None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.startswith("|"):
                header = None
                continue
            cells = len(re.findall(r"(?<!\\)\|", line.replace("&#124;", ""))) - 1
            if header is None:
                header = cells
            elif cells != header:
                bad.append(f"{name}:{number}: {cells} cells, its header has {header}")
    assert not bad, "\n".join(bad)
