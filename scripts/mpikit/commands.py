"""The commands behind the make targets, one function each. Every function
gets its knobs already parsed (knobs.read), so bad input never gets here."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from . import (
    apptainer,
    bind,
    checks,
    choose,
    cluster,
    config,
    docker,
    environment,
    knobs,
    launch,
    prepare,
    runtimes,
    slurm,
    venv,
)
from .config import EXAMPLES, ROOT
from .knobs import Settings
from .launch import show
from .ui import KitError, RunError, UsageError, say

# ---- commands ----

def run(settings: Settings) -> int:
    assert settings.script is not None
    ready = prepare.prepare(settings)
    job = ready.job(settings.script, settings.args, Path.cwd(), settings.timeout, settings.futures)
    started = runtimes.launch_for(job)
    say_overcommit(job)
    say("+ " + started.line())
    result = runtimes.execute(started, settings.timeout)
    if result.returncode != 0:
        say(f"error: the job exited with status {result.returncode}: {started.line()}")
    return result.returncode


def say_overcommit(job: runtimes.Job) -> None:
    if job.runtime == "cluster" and runtimes.cluster_overcommits(job):
        say(f"cluster: NP={job.np} is more than the {runtimes.cluster_nodes(job)} node(s)' "
            f"{runtimes.cluster_nodes(job) * cluster.cpus_per_node()} declared CPUs: srun --overcommit")


def smoke(settings: Settings) -> int:
    np = settings.np
    ready = prepare.prepare(settings)
    failed = passed = 0
    for example in EXAMPLES.values():
        if np < example.min_ranks:
            print(f"SKIP {example.name:8} needs at least {example.min_ranks} ranks (NP={np})")
            continue
        # TIMEOUT=0 means no limit, here as in make run.
        job = ready.job(example.path, list(example.smoke_args), ROOT, settings.timeout, example.futures)
        started = runtimes.launch_for(job)
        result = None
        try:
            result = runtimes.execute(started, job.timeout, capture=True, cwd=ROOT)
            verdict = checks.check_run(example.name, result.stdout, result.stderr, result.returncode, np,
                                       example.smoke_size)
        except RunError as exc:
            verdict = checks.Verdict([str(exc)])
        tag = f"[{ready.runtime}, NP={np}]"
        if verdict.ok:
            passed += 1
            print(f"PASS {example.name:8} {verdict.summary} {tag}", flush=True)
        else:
            failed += 1
            print(f"FAIL {example.name:8} {'; '.join(verdict.problems)} {tag}", flush=True)
            print(f"     command: {started.line()}", flush=True)
            for line in [] if result is None else (result.stdout + result.stderr).splitlines()[-15:]:
                print(f"     | {line}")
    skipped = len(EXAMPLES) - passed - failed
    print(f"smoke: {passed} passed, {failed} failed, {skipped} skipped [{ready.runtime}, NP={np}]")
    return 1 if failed else 0


def shell(settings: Settings) -> int:
    """make shell: an interactive shell in the image (RUNTIME=docker or apptainer), as make run's ranks see it:
    the same mounts, user and environment, REQUIREMENTS honoured; COMMAND= runs one command instead."""
    if settings.runtime not in ("auto", "docker", "apptainer"):
        raise UsageError(f"make shell opens a shell in the image on this machine: RUNTIME=docker or apptainer, not "
                         f"{settings.runtime}")
    interactive = settings.shell_command is None
    if interactive and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("make shell needs a terminal (standard input is not one); run one command instead: "
                         "make shell COMMAND='python -c \"import numpy; print(numpy.__version__)\"'")
    ready = prepare.prepare(settings)
    if ready.runtime not in ("docker", "apptainer"):
        raise UsageError(f"make shell needs Docker or Apptainer here; RUNTIME=auto chose {ready.runtime}")
    started = runtimes.shell_launch(ready.runtime, settings.image, settings.sif, settings.shell_command, interactive)
    say("+ " + started.line())
    return subprocess.run(started.argv, env={**os.environ, **started.added}).returncode


def pasteable(settings: Settings) -> tuple[prepare.Prepared, runtimes.Job, runtimes.Launch]:
    """The run make run would start, for make line and make sbatch: nothing is built or run. On the test
    cluster, the srun line as typed on its login node (make cluster-shell), not the docker exec around it."""
    assert settings.script is not None
    ready = prepare.prepare(settings, build=False)
    workdir = ROOT if ready.runtime == "cluster" else Path.cwd()
    job = ready.job(settings.script, settings.args, workdir, settings.timeout, settings.futures)
    if ready.runtime == "cluster":
        assert job.sif is not None
        return ready, job, runtimes.cluster_srun(job, runtimes.cluster_container(job.sif, job.bind,
                                                                                  job.apptainer_mode))
    return ready, job, runtimes.launch_for(job, paste=True)


def line(settings: Settings) -> int:
    """make line: the line make run would run, environment included, to paste into a shell or a batch script."""
    _, job, started = pasteable(settings)
    say_overcommit(job)
    print(started.line())
    return 0


def batch_text(settings: Settings, relative: bool = False) -> str:
    """make sbatch's script. `relative`: the line's paths relative to the kit's folder, and the job started
    from the folder it was submitted from (slurm/example.sbatch, which any checkout can submit). A batch
    script is Slurm's: RUNTIME=auto means srun here, even outside an allocation (a login node)."""
    if settings.runtime == "auto":
        settings.runtime = "srun"
    ready, job, started = pasteable(settings)
    if ready.runtime not in ("srun", "cluster"):
        raise UsageError(f"make sbatch writes a Slurm batch script: RUNTIME=srun (on a cluster) or cluster (the "
                         f"test cluster), not {ready.runtime}")
    given = " ".join(f"{k}={shlex.quote(settings.raw[k])}" for k in ("RUNTIME", "SCRIPT", "NP", "NODES", "ARGS",
                                                                     "FUTURES", "APPTAINER_MODE", "HOST_MPI", "SIF",
                                                                     "VERIFY_KEY")
                     if settings.raw.get(k) and settings.raw[k] != knobs.BY_NAME[k].default)
    argv, folder = started.argv, cluster.SHARED if ready.runtime == "cluster" else str(job.workdir)
    if relative:
        argv = [a.removeprefix(f"{ROOT}/") for a in argv]
        folder = None
    # On a real cluster whether the ranks outnumber the CPUs is known when the job runs, not now.
    later = runtimes.yield_fixes(started.added) if ready.runtime == "srun" else None
    nodes = runtimes.cluster_nodes(job) if ready.runtime == "cluster" else settings.nodes
    check: list[str] = []
    if settings.verify_key is not None:
        from .signing import verify_argv

        sif = cluster.shared_path(settings.sif) if ready.runtime == "cluster" else str(settings.sif)
        check = ["apptainer", *verify_argv(Path(sif), settings.verify_key)]
        check[-1] = sif  # as the nodes see it
        if ready.runtime == "cluster":
            check[-2] = cluster.shared_path(settings.verify_key)
    return launch.batch_script(argv, started.added, np=job.np, nodes=nodes, folder=folder,
                               made_by=f"make sbatch {given}".strip(), yield_if_overcommitted=later, check=check)


def sbatch_script(settings: Settings) -> int:
    """make sbatch: a whole batch script around make line's srun line, on stdout."""
    print(batch_text(settings), end="")
    return 0


def doctor(settings: Settings) -> int:
    from . import doctor as doc

    if settings.launch:
        print(f"doctor: your own launch line: {show(settings.launch)}", flush=True)
        return doc.diagnose_launch(settings.launch)
    try:
        choice = choose.choose(settings.runtime, choose.look())
        if choice.runtime == "cluster":
            cluster.require_up()
        if settings.requirements is not None:  # the environment's image and SIF, as make run names them
            prepare.environment_names(settings, choice.runtime)
    except KitError as exc:
        return doc.diagnose_failed_choice(exc)
    return doc.diagnose(settings, choice)


def bind_plan_command(settings: Settings) -> int:
    """make bind-plan: what the bind model binds and sets for HOST_MPI, and why each."""
    if not settings.host_mpi:
        raise UsageError("make bind-plan needs HOST_MPI=<the site MPI's prefix> (and RUNTIME=srun or cluster)")
    choice = prepare.choose_runtime(settings)
    bind.check_runtime(settings.host_mpi, choice.runtime)
    if settings.requirements is not None:  # the environment's SIF, and its packages that link an MPI
        prepare.environment_names(settings, choice.runtime)
    if choice.runtime == "cluster":
        cluster.require_up()
    if not settings.sif.is_file():
        raise UsageError(f"no {settings.sif}: the plan compares the site's libraries with the image's; "
                         f"{prepare.sif_build_line(settings)} first")
    plan = bind.resolve(settings.host_mpi, settings.srun_mpi, settings.sif, choice.runtime, settings.host_mpi_abi)
    assert plan is not None
    for line in plan.describe():
        print(line)
    print(f"loads  {plan.loaded}: {plan.version}; {bind.abi_name(plan.family, plan.abi)}  (checked inside the "
          "image with these binds)")
    return 0


def bench(settings: Settings) -> int:
    from . import bench as benchmark

    docker.require_engine("make bench")
    prepare.require_shared(settings, {"SIF": settings.sif})
    venv.reexec_inside()  # matplotlib, for the plot
    started = time.monotonic()  # make bench's own time goes into its results, against its target
    prepare.ensure_image(settings)
    cluster.up()
    prepare.ensure_sif(settings)
    code = benchmark.run(settings.image, settings.base, settings.sif, slurm.plugin(settings.srun_mpi, None),
                         settings.quick, settings.ca_cert, settings.apptainer_mode, started)
    say("bench: the test cluster is still up; make cluster-down removes it")
    return code


def bench_build(settings: Settings) -> int:
    from . import bench as benchmark

    docker.require_engine("make bench-build")
    venv.reexec_inside()  # spython, for the SIF
    started = time.monotonic()
    prepare.ensure_image(settings)
    prepare.ensure_sif(settings)
    return benchmark.run_build(settings.image, settings.base, settings.sif, settings.quick, settings.ca_cert, started)


def bench_env(settings: Settings) -> int:
    """make bench-env REQUIREMENTS=...: the environment's SIF against the kit's at start-up on the test cluster
    (bench.run_env); both built first where missing, as make run builds them."""
    from dataclasses import replace

    from . import bench as benchmark

    if settings.requirements is None:
        raise UsageError("make bench-env measures a user's environment: name it, make bench-env "
                         "REQUIREMENTS=path/to/requirements.txt (the one docs/performance.md quotes: "
                         f"{benchmark.STARTUP_SAMPLE})")
    # The kit's own default SIF (mpi.sif; SIF= and REQUIREMENTS are not taken together), the baseline.
    kit_sif = knobs.parse_sif("", settings.cwd, settings.platform)
    prepare.environment_names(settings, "cluster")
    kit = replace(settings, requirements=None, image=settings.kit_image, sif=kit_sif)
    prepare.require_shared(settings, {"SIF": kit.sif, "REQUIREMENTS": settings.sif})
    docker.require_engine("make bench-env")
    venv.reexec_inside()  # spython, for the SIFs
    started = time.monotonic()
    cluster.up()
    prepare.ensure_environment(settings, "cluster")  # the kit's image first, as make run does
    prepare.ensure_sif(kit)
    code = benchmark.run_env(kit.sif, settings.sif, settings.raw.get("REQUIREMENTS", ""),
                             slurm.plugin(settings.srun_mpi, None), settings.apptainer_mode, settings.quick, started)
    say("bench-env: the test cluster is still up; make cluster-down removes it")
    return code


def bench_docs(settings: Settings) -> int:
    """Copy results/ (a full make bench, bench-curve and bench-build) to docs/bench/ and regenerate
    docs/performance.md's tables from it: the docs' figures are the committed measurements, never retyped."""
    import json
    import shutil

    from .bench import STARTUP_SAMPLE, report

    results, folder = config.results_dir(), ROOT / "docs" / "bench"
    for name in ("bench.json", "bench-curve.json", "bench-build.json", "bench-env.json"):
        if not (results / name).is_file():
            raise UsageError(f"no results/{name}: run make bench, bench-curve, bench-build and bench-env "
                             f"REQUIREMENTS={STARTUP_SAMPLE} (without QUICK) first")
        if json.loads((results / name).read_text()).get("quick"):
            raise UsageError(f"results/{name} is from a QUICK run, whose figures are not for quoting")
    default = knobs.BY_NAME["APPTAINER_MODE"].default
    mode = json.loads((results / "bench.json").read_text()).get("apptainer_mode")
    if mode != default:
        raise UsageError(f"results/bench.json is a run of APPTAINER_MODE={mode}; the docs quote the default: "
                         f"make bench APPTAINER_MODE={default}, then make bench-docs")
    # Other modes' full runs, kept beside the default's (make bench writes each as bench-MODE.json).
    others = [p.name for p in sorted(results.glob("bench-*.json")) if p.stem.removeprefix("bench-") in launch.MODES
              and p.stem != f"bench-{default}" and not json.loads(p.read_text()).get("quick")]
    for name in ("bench.json", "bench.png", "bench-ratios.png", "bench-curve.json", "bench-curve.png",
                 "bench-build.json", "bench-env.json", *others):
        shutil.copy2(results / name, folder / name)
    doc = ROOT / "docs" / "performance.md"
    doc.write_text(report.replace_blocks(doc.read_text(), folder))
    say(f"bench-docs: copied results/ to {folder} and regenerated the tables in {doc}")
    return 0


def bench_curve(settings: Settings) -> int:
    from . import bench as benchmark

    docker.require_engine("make bench-curve")
    prepare.require_shared(settings, {"SIF": settings.sif})
    venv.reexec_inside()  # matplotlib, for the plot
    started = time.monotonic()
    cluster.up()
    prepare.ensure_sif(settings)
    code = benchmark.run_curve(settings.sif, slurm.plugin(settings.srun_mpi, None), settings.quick, started)
    say("bench-curve: the test cluster is still up; make cluster-down removes it")
    return code


def image(settings: Settings) -> int:
    docker.build_image(settings.base, settings.image, settings.ca_cert, platform=settings.platform)
    if settings.requirements is not None:  # and the user's environment on it
        prepare.environment_names(settings, "docker")
        prepare.ensure_environment(settings, "docker")
    return 0


def sif(settings: Settings) -> int:
    venv.reexec_inside()
    if settings.requirements is not None:  # the user's environment's SIF, made from its image
        prepare.environment_names(settings, "apptainer")
        prepare.ensure_environment(settings, "apptainer")
        say(f"environment SIF: {settings.sif} (make line and make sbatch name it)")
        return 0
    apptainer.build_sif(settings.base, settings.sif, settings.ca_cert, settings.platform, settings.sif_from)
    return 0


def sbom(settings: Settings) -> int:
    """make sbom: the SBOM inside IMAGE (RUNTIME=docker) or SIF (RUNTIME=apptainer, srun, cluster; with
    RUNTIME=auto the image when Docker has it, else the SIF), written to results/sbom/ and checked."""
    from . import sbom as sbom_io

    runtime = settings.runtime
    environment_sif(settings)  # REQUIREMENTS: the environment's image and SIF
    if runtime == "auto":
        runtime = "docker" if docker.engine_problem() is None and docker.image_exists(settings.image) else "apptainer"
    if runtime in ("docker", "native"):
        docker.require_engine("make sbom of a Docker image")
        if not docker.image_exists(settings.image):
            raise UsageError(f"no image {settings.image}: build it first ({prepare.image_build_line(settings)}), or "
                             f"RUNTIME=apptainer for the SIF")
    elif not settings.sif.is_file():
        raise UsageError(f"no {settings.sif}: build it first ({prepare.sif_build_line(settings)}), or SIF=path")
    venv.reexec_inside()  # the schema check and the SIF reader are in .venv
    if runtime in ("docker", "native"):
        data, source, name = sbom_io.from_image(settings.image), settings.image, settings.image
    else:
        data, source, name = sbom_io.from_sif(settings.sif), str(settings.sif), settings.sif.stem
    out = config.results_dir() / "sbom" / (name.replace("/", "_").replace(":", "_") + ".cdx.json")
    lines = sbom_io.write(data, out)
    say(f"the SBOM of {source} ({config.SBOM_PATH} inside; CycloneDX 1.6, schema-valid):")
    for text in lines:
        say(f"  {text}")
    print(out)
    return 0


def reproduce(settings: Settings) -> int:
    """make reproduce: IMAGE rebuilt under a scratch tag without the build cache; the two compared."""
    from . import reproduce as rep

    docker.require_engine("make reproduce")
    if settings.requirements is not None:
        return reproduce_environment(settings)
    image = settings.image
    if not docker.image_exists(image):
        raise UsageError(f"no image {image} to compare a rebuild with: build it first: make image")
    digest = docker.build_plan(settings.base, settings.platform)[3]
    if docker.image_label(image, docker.INPUTS_LABEL) != digest:
        raise UsageError(f"{image} was not built from this checkout's inputs (its label {docker.INPUTS_LABEL} is "
                         f"not {digest}): make image first, then make reproduce")
    venv.reexec_inside()  # the SIF reader and the schema check are in .venv
    scratch = "mpi4py-kit-reproduce:" + image.rpartition(":")[2]
    say(f"rebuilding {image} ({(docker.image_id(image) or '')[:19]}) from the same inputs without the build cache, "
        f"as {scratch} (the base image, {image} and the cache stay as they are)")
    took = docker.build_image(settings.base, scratch, settings.ca_cert, platform=settings.platform, fresh=True)
    say(f"comparing the file systems of {image} and {scratch} (rebuilt in {took:.0f} s)")
    return _reproduce_images(rep, image, scratch, ids=True)


def reproduce_environment(settings: Settings) -> int:
    """make reproduce REQUIREMENTS=...: the environment's image rebuilt on the same kit image (which stays as it
    is: make reproduce alone rebuilds that) without the build cache, under a scratch tag; the two compared."""
    from . import reproduce as rep

    reqs, shown = settings.requirements, settings.raw.get("REQUIREMENTS")
    assert reqs is not None
    prepare.environment_names(settings, "docker")
    image, kit_image = settings.image, settings.kit_image
    if not docker.image_exists(image) or not docker.image_exists(kit_image):
        raise UsageError(f"no image {image} for {shown} to compare a rebuild with: build it first: make image "
                         f"REQUIREMENTS={shown}")
    venv.reexec_inside()  # the SBOM's reader is in .venv
    scratch = "mpi4py-kit-reproduce:env-" + image.rpartition("-")[2]
    loose = environment.unpinned(reqs)
    say(f"rebuilding {image} ({(docker.image_id(image) or '')[:19]}) from {shown} on {kit_image} without the build "
        f"cache, as {scratch} (both images and the cache stay as they are)")
    if loose:
        say(f"note: not pinned with a hash in {shown}: {', '.join(loose)}; a release since the first build gives "
            f"other files (make lock REQUIREMENTS=... pins them)")
    start = time.monotonic()
    environment.build_image(reqs, kit_image, settings.base, settings.platform, settings.ca_cert, settings.cwd,
                            tag=scratch)
    say(f"comparing the file systems of {image} and {scratch} (rebuilt in {time.monotonic() - start:.0f} s)")
    return _reproduce_images(rep, image, scratch)


def _reproduce_images(rep, image: str, scratch: str, ids: bool = False) -> int:
    """make reproduce's verdict on an image and its rebuild `scratch` (with `ids`, their image IDs too); the
    rebuild removed when they match, else kept for inspection."""
    same = _reproduce_verdict(rep, rep.image_manifest(image), rep.image_manifest(scratch), image, scratch)
    if ids:
        found = docker.image_id(image), docker.image_id(scratch)
        if found[0] == found[1]:
            say(f"image IDs: the same ({found[0]})")
        else:
            say(f"image IDs differ ({found[0][:19]} and {found[1][:19]}): {rep.image_id_difference(image, scratch)}")
    if same:
        docker.run("rmi", scratch, check=False)
    else:
        say(f"kept the rebuild for inspection: {scratch} (docker rmi {scratch})")
    return 0 if same else 1


def reproduce_sif(settings: Settings) -> int:
    """make reproduce-sif: Apptainer.def built again from the same inputs; its root file system compared
    with the cached build's."""
    from . import reproduce as rep

    apptainer.require_cached(settings.base, settings.platform)
    venv.reexec_inside()  # spython and the SIF reader are in .venv
    cached, fresh, took = apptainer.build_fresh(settings.base, settings.ca_cert, settings.platform)
    say(f"comparing the root file systems of {cached} and the rebuild {fresh} (built in {took:.0f} s)")
    same = _reproduce_verdict(rep, rep.sif_manifest(cached), rep.sif_manifest(fresh), str(cached), str(fresh))
    if same:
        fresh.unlink()
    else:
        say(f"kept the rebuild for inspection: {fresh}")
    return 0 if same else 1


def twin(settings: Settings) -> int:
    """make twin: the twin rule, checked. The SIF made from the Docker image (SIF_FROM=image) and the one built
    from Apptainer.def (SIF_FROM=recipe), each built or taken from the cache, compared path by path."""
    from . import reproduce as rep

    docker.require_engine("make twin (the SIF made from the Docker image is one of the twins)")
    venv.reexec_inside()  # spython and the SIF reader are in .venv
    made: dict[str, Path] = {}
    try:  # the twins are scratch copies: gone at the end, whatever happens
        if settings.requirements is not None:
            recipe = twin_environment(settings, made)
        else:
            recipe = "Apptainer.def"
            for source in ("recipe", "image"):
                made[source] = apptainer.STAGE / f"twin-{settings.base}-{source}.sif"
                made[source].parent.mkdir(parents=True, exist_ok=True)
                apptainer.build_sif(settings.base, made[source], settings.ca_cert, settings.platform, source)
        say(f"comparing the root file systems of the SIF built from {recipe} and the one made from the image "
            f"(BASE={settings.base}, PLATFORM={settings.platform})")
        differences, owners = rep.twin_report(rep.sif_manifest(made["recipe"]), rep.sif_manifest(made["image"]))
    finally:
        for path in made.values():
            path.unlink(missing_ok=True)
    if owners:
        say(f"owners: {len(owners)} path(s) belong to root in the SIF made from the image, as Apptainer gives every "
            f"file of an image it unpacks unprivileged (e.g. {owners[0]}); everything else about them is the same")
    if differences:
        say(f"the twins differ in {len(differences)} path(s):")
        for line in rep.lines(differences):
            say(f"  {line}")
        return 1
    say("the twins have the same files: every path, type, mode, link target and content (Apptainer's metadata "
        "folder aside, where the definition's environment, runscript, help and test are the same bytes, and the "
        "empty placeholders it leaves in /dev)")
    return 0


def twin_environment(settings: Settings, made: dict[str, Path]) -> str:
    """make twin REQUIREMENTS=...: the environment's SIF made from its Docker image (Dockerfile.env on the kit's
    image, as make run makes it) and one built by Apptainer from Apptainer.env.def on the kit's SIF, into
    `made`; returns the recipe's name."""
    prepare.environment_names(settings, "apptainer")
    reqs = settings.requirements
    assert reqs is not None
    prepare.ensure_derived_image(settings)
    tag = settings.sif.stem  # mpi-BASE-ARCH-DIGEST
    for source in ("image", "recipe"):
        made[source] = apptainer.STAGE / f"twin-{tag}-{source}.sif"
        made[source].parent.mkdir(parents=True, exist_ok=True)
    apptainer.build_sif_from_image(settings.base, made["image"], settings.ca_cert, settings.platform,
                                   image=settings.image)
    environment.build_sif(reqs, made["recipe"], settings.base, settings.platform, settings.ca_cert, settings.cwd)
    return "scripts/image/Apptainer.env.def"


def _reproduce_verdict(rep, first, second, first_name: str, second_name: str) -> bool:
    moved, differ = rep.report(first, second)
    if moved:
        source = "PyPI" if all(name.startswith("pkg:pypi/") for name, _, _ in moved) else "the Debian mirror"
        say(f"{source} moved between the two builds: {len(moved)} package(s) differ in the SBOMs "
            "(not the same inputs; compared without the files they own):")
        for name, a, b in moved:
            say(f"  {name}: {a} -> {b}")
    if differ:
        say(f"error: {len(differ)} path(s) differ between {first_name} and {second_name} (type mode uid:gid ...):")
        for line in rep.lines(differ):
            say(f"  {line}")
        return False
    paths = len(set(first.entries) | set(second.entries))
    if moved:
        say(f"the rest is identical ({paths} paths); rebuild both from today's mirror to compare all")
        return False
    say(f"identical: {paths} paths, each with the same type, mode, owner, link target and content")
    return True


def pins_check(settings: Settings) -> int:
    from . import pins

    return pins.check()


def batch(settings: Settings) -> int:
    """make cluster-batch: make sbatch's script for the test cluster, submitted there with sbatch --wait;
    then its output file."""
    settings.runtime = "cluster"
    settings.script = settings.script or knobs.parse_script("examples/scatter_gather.py", ROOT)
    prepare.require_shared(settings, {"SCRIPT": settings.script, "SIF": settings.sif,
                                      **({"VERIFY_KEY": settings.verify_key} if settings.verify_key else {})})
    cluster.require_up()
    prepare.ensure_sif(settings)
    prepare.verified(settings, "cluster")
    job_file = ROOT / "build" / "batch" / f"mpi4py-kit-{os.getpid()}.sbatch"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(batch_text(settings))
    line = launch.sbatch(cluster.shared_path(job_file), [], np=settings.np, nodes=None,
                         output=f"/home/{cluster.USER}/mpi4py-kit-%j.out")
    argv = cluster.on_login(line)
    say("+ " + show(argv))
    try:
        result = runtimes.execute(runtimes.Launch(argv), settings.timeout, capture=True)
    finally:
        job_file.unlink(missing_ok=True)
    job_id = result.stdout.strip().split(";")[0]
    say(f"job {job_id} finished with exit status {result.returncode}; its output file "
        f"(/home/{cluster.USER}/mpi4py-kit-{job_id}.out):")
    print(cluster.job_output(job_id), end="", flush=True)
    if result.returncode != 0:
        say(f"error: the batch job failed: {result.stderr.strip()} ({show(argv)})")
    return result.returncode


def keypair(settings: Settings) -> int:
    """make keypair KEY=path: a new PEM key pair for signing SIFs."""
    from . import signing

    assert settings.key is not None
    private, public = signing.keypair(settings.key)
    say(f"keypair: the private key {private} (mode 0600: keep it, never share it) and its public half {public} "
        f"(give it to whoever checks: make verify VERIFY_KEY={public})")
    return 0


def environment_sif(settings: Settings) -> None:
    """REQUIREMENTS: the commands that work on a SIF or image (sbom, sign, verify) take the environment's, named
    by its content as make run names them."""
    if settings.requirements is not None:
        prepare.environment_names(settings, "apptainer")


def sign(settings: Settings) -> int:
    """make sign KEY=private.pem: sign SIF."""
    from . import signing

    assert settings.key is not None
    environment_sif(settings)
    if not settings.sif.is_file():
        raise UsageError(f"no {settings.sif} to sign: {prepare.sif_build_line(settings)} first (or SIF=path)")
    signing.sign(settings.sif, settings.key)
    say(f"signed {settings.sif} with {settings.key}; check it with: make verify SIF={settings.sif} "
        f"VERIFY_KEY={settings.key}.pub")
    return 0


def verify(settings: Settings) -> int:
    """make verify VERIFY_KEY=public.pem: does SIF verify with the key?"""
    from . import signing

    assert settings.verify_key is not None
    environment_sif(settings)
    if not settings.sif.is_file():
        raise UsageError(f"no {settings.sif} to verify (SIF=path)")
    problem = signing.verify(settings.sif, settings.verify_key)
    if problem:
        say(f"error: {settings.sif} does not verify with {settings.verify_key}: {problem}")
        return 1
    say(f"verified: {settings.sif} is signed by the key of {settings.verify_key}, and unchanged since")
    return 0


def cluster_up(settings: Settings) -> int:
    cluster.up(settings.cluster)
    return 0


def cluster_down(settings: Settings) -> int:
    cluster.down()
    return 0


def cluster_shell(settings: Settings) -> int:
    cluster.require_up()
    return subprocess.call(cluster.on_login(["bash", "-l"], interactive=True))


def lock_requirements(settings: Settings) -> int:
    """make lock REQUIREMENTS=my.in (scripts/mpikit/lock.py); the Makefile's lock without it refreshes the
    kit's own requirements/*.txt."""
    from . import lock

    if settings.requirements is None:
        raise UsageError("make lock without REQUIREMENTS refreshes the kit's own requirements/*.txt; to lock your "
                         "own file: make lock REQUIREMENTS=my.in")
    out = lock.output_for(settings.requirements, settings.cwd)  # refused before anything is built
    prepare.ensure_image(settings)
    lock.lock(settings.requirements, out, settings.image, settings.cwd, settings.ca_cert)
    return 0


def make_venv(settings: Settings) -> int:
    venv.ensure(venv.TOOLS)
    venv.compile_kit()
    return 0


def _pytest(settings: Settings, paths: list[str]) -> int:
    venv.ensure(venv.TOOLS)
    venv.compile_kit()
    argv = [str(venv.python()), "-m", "pytest", *paths, *settings.pytest_args]
    say("+ " + show(argv))
    sys.stdout.flush()
    os.chdir(ROOT)
    os.execv(argv[0], argv)
    return 1  # not reached


def test(settings: Settings) -> int:
    venv.ensure(venv.TOOLS)
    if subprocess.run(["bash", str(ROOT / "scripts" / "provision.sh"), "docker"]).returncode != 0:
        raise RunError("provisioning the container tests failed (see above); rerun: bash scripts/provision.sh docker")
    # Where the time went, at the end: the slowest steps (and, from tests/conftest.py, each module's time).
    durations = [] if any(a.startswith("--durations") for a in settings.pytest_args) else ["--durations=15"]
    return _pytest(settings, ["tests", *durations])


def test_fast(settings: Settings) -> int:
    return _pytest(settings, ["tests/unit"])


def examples(settings: Settings) -> int:
    for example in EXAMPLES.values():
        print(f"{example.name}\t{example.file}")
    return 0


def show_knobs(settings: Settings) -> int:
    """make help's knob list, with the values the knobs have now."""
    for knob in knobs.KNOBS:
        print(f"  {knob.name + '=' + settings.raw[knob.name]:28} {knob.help}")
    return 0


def knob_table(settings: Settings) -> int:
    print(knobs.table_markdown())
    return 0
