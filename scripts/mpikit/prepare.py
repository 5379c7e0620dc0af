"""Getting a run ready, the same for make run, smoke, line and sbatch: choose the runtime,
check the bind model fits it, build what it needs (the image, the SIF, the native venv),
resolve HOST_MPI into a plan and the srun plugin into a name, and make the Job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import (
    apptainer,
    bind,
    choose,
    cluster,
    config,
    docker,
    environment,
    platforms,
    provenance,
    runtimes,
    slurm,
    venv,
)
from .config import ROOT
from .knobs import Settings
from .ui import UsageError, say


def _platform_knobs(settings: Settings) -> str:
    return f" BASE={settings.base}" + ("" if not settings.platform or platforms.is_host(settings.platform)
                                      else f" PLATFORM={settings.platform}")


def _requirements_knob(settings: Settings) -> str:
    """REQUIREMENTS as given: the environment's image and SIF are built by the same line with it."""
    return f" REQUIREMENTS={settings.raw.get('REQUIREMENTS')}" if settings.requirements is not None else ""


def image_build_line(settings: Settings) -> str:
    named = "" if settings.image_is_default else f" IMAGE={settings.image}"
    return f"make image{named}{_platform_knobs(settings)}{_requirements_knob(settings)}"


def sif_build_line(settings: Settings) -> str:
    named = "" if settings.sif_is_default else f" SIF={settings.sif}"
    then = f", then make sign SIF={settings.sif}" if settings.verify_key is not None else ""
    return f"make sif{named}{_platform_knobs(settings)}{_requirements_knob(settings)}{then}"


def kept_because(settings: Settings, verdict: provenance.Verdict, named: bool) -> str:
    """Why a build that is not the checkout's still runs (the one-line notice's middle)."""
    if verdict.state == provenance.UNLABELLED:
        return "not built by this kit: it is never replaced"
    if named:
        return "you named it"
    return "VERIFY_KEY: its signature decides"


def ensure_image(settings: Settings) -> None:
    """The image for the run: built when missing, rebuilt when it is the default one and stale (with one
    line that says which input changed), run with a one-line notice when named or not the kit's."""
    if not docker.image_exists(settings.image):
        if not settings.image_is_default:
            raise UsageError(f"image {settings.image!r} not found; build it with: {image_build_line(settings)}")
        say(f"image {settings.image} not found: building it first")
        docker.build_image(settings.base, settings.image, settings.ca_cert, platform=settings.platform)
        return
    verdict = provenance.image_verdict(settings.image, settings.base, settings.platform)
    if verdict.current:
        return
    if settings.image_is_default and verdict.state == provenance.STALE:
        say(f"image {settings.image} is stale ({verdict.why}): rebuilding it first")
        docker.build_image(settings.base, settings.image, settings.ca_cert, platform=settings.platform)
        return
    say(provenance.notice(f"image {settings.image}", verdict, kept_because(settings, verdict, True),
                          image_build_line(settings)))


def ensure_sif(settings: Settings) -> None:
    """The SIF for the run, as ensure_image the image; with VERIFY_KEY a stale default SIF is not replaced
    (an unsigned rebuild would not verify): its signature decides."""
    if settings.sif.is_file():
        verdict = provenance.sif_verdict(settings.sif, settings.base, settings.platform)
        if verdict.current:
            return
        if not (settings.sif_is_default and verdict.state == provenance.STALE and settings.verify_key is None):
            say(provenance.notice(str(settings.sif), verdict,
                                  kept_because(settings, verdict, not settings.sif_is_default),
                                  sif_build_line(settings)))
            return
    venv.reexec_inside()  # spython, in the kit's venv; this command continues there
    if settings.sif.is_file():
        say(f"{settings.sif} is stale ({verdict.why}): rebuilding it first (make sif)")
    else:
        say(f"{settings.sif} not found: building it first (make sif)")
    apptainer.build_sif(settings.base, settings.sif, settings.ca_cert, settings.platform, settings.sif_from)


def note_stale(settings: Settings, runtime: str) -> None:
    """make line and sbatch build nothing: a stale or foreign image or SIF gets one line (on stderr) with
    the command that builds the checkout's."""
    if settings.requirements is not None:  # the environment's names are its content's: built, or not yet
        if runtime == "docker" and not docker.image_exists(settings.image):
            say(f"note: the environment's image {settings.image} is not built yet; make run builds it first, or "
                f"now: {image_build_line(settings)}")
        elif runtime != "docker" and not settings.sif.is_file():
            say(f"note: the environment's SIF {settings.sif} is not built yet; make run builds it first, or now: "
                f"{sif_build_line(settings)}")
        return
    if runtime == "docker" and docker.image_exists(settings.image):
        verdict, what, build = (provenance.image_verdict(settings.image, settings.base, settings.platform),
                                f"image {settings.image}", image_build_line(settings))
        named = not settings.image_is_default
    elif runtime in ("apptainer", "srun", "cluster") and settings.sif.is_file():
        verdict, what, build = (provenance.sif_verdict(settings.sif, settings.base, settings.platform),
                                str(settings.sif), sif_build_line(settings))
        named = not settings.sif_is_default
    else:
        return
    if verdict.current:
        return
    if verdict.state == provenance.STALE and not named and settings.verify_key is None:
        say(f"note: {what} is stale ({verdict.why}); make run rebuilds it first, or now: {build}")
    else:
        say(provenance.notice(what, verdict, kept_because(settings, verdict, named), build))


def require_shared(settings: Settings, paths: dict[str, Path]) -> None:
    """The test cluster sees only this repository (at /shared)."""
    for knob, path in paths.items():
        if not path.is_relative_to(ROOT):
            raise UsageError(f"{knob}={path} is outside {ROOT}, the cluster's /shared")


def environment_names(settings: Settings, runtime: str) -> None:
    """REQUIREMENTS: the run's image and SIF are the user's environment's, named by its content."""
    reqs = settings.requirements
    assert reqs is not None
    if runtime == "native":
        raise UsageError("REQUIREMENTS builds your packages into the kit's image; RUNTIME=native runs the kit's "
                         "own venv, rebuilt from its locks: run in a container (RUNTIME=docker, apptainer, srun or "
                         "cluster), or install them into an environment of your own (python -m pip, with -r "
                         f"{settings.raw.get('REQUIREMENTS')})")
    digest = environment.digest(reqs, settings.base, settings.platform, settings.cwd)
    # make sif reads no IMAGE: the kit's default image for BASE and PLATFORM, as SIF_FROM=image uses.
    settings.kit_image = settings.image or platforms.image_tag(config.image_name(), settings.base, settings.platform)
    settings.image = environment.image_name(digest, settings.base, settings.platform)
    settings.sif = environment.sif_path(digest, settings.base, settings.platform)


def ensure_environment(settings: Settings, runtime: str) -> None:
    """The user's environment on the kit's image: the kit's image first (rebuilt when stale), then the derived
    image (named by its content: built once), then for Apptainer's runtimes its SIF, made from that image. With
    SIF_FROM=recipe, or where no Docker engine answers, Apptainer's runtimes get the SIF built by Apptainer
    instead (scripts/image/Apptainer.env.def on the kit's SIF), and no image."""
    reqs = settings.requirements
    assert reqs is not None
    shown = settings.raw.get("REQUIREMENTS")
    sif_runtime = runtime in ("apptainer", "srun", "cluster")
    engine = docker.engine_problem() is None
    if sif_runtime and apptainer.sif_source(settings.sif_from, engine) == "recipe":
        if settings.sif.is_file():
            return
        venv.reexec_inside()  # spython, in the kit's venv; this command continues there
        say(f"{settings.sif} not found: building it with Apptainer ({sif_build_line(settings)})")
        environment.build_sif(reqs, settings.sif, settings.base, settings.platform, settings.ca_cert, settings.cwd)
        return
    docker.require_engine(f"REQUIREMENTS={shown} (the environment is built as a Docker image on the kit's, "
                          "then made into a SIF; SIF_FROM=recipe builds the SIF with Apptainer alone)")
    ensure_derived_image(settings)
    if sif_runtime and not settings.sif.is_file():
        venv.reexec_inside()  # spython, in the kit's venv; this command continues there
        say(f"{settings.sif} not found: making it from {settings.image} ({sif_build_line(settings)})")
        apptainer.build_sif_from_image(settings.base, settings.sif, settings.ca_cert, settings.platform,
                                       image=settings.image)


def ensure_derived_image(settings: Settings) -> None:
    """The kit's image (rebuilt when stale), then the environment's on it (named by its content: built once);
    settings.image names the environment's (environment_names set it), settings.kit_image the kit's."""
    assert settings.requirements is not None
    derived, settings.image = settings.image, settings.kit_image
    ensure_image(settings)
    built = environment.build_image(settings.requirements, settings.image, settings.base, settings.platform,
                                    settings.ca_cert, settings.cwd)
    assert built == derived, (built, derived)
    settings.image = derived


def ready(settings: Settings, runtime: str) -> None:
    """Build or start what `runtime` needs: the test cluster, the image, the SIF, the native venv."""
    if runtime == "cluster":
        cluster.require_up()
    if settings.requirements is not None:
        ensure_environment(settings, runtime)
        return
    if runtime == "native":
        venv.ensure(venv.NATIVE)
    if runtime == "docker":
        docker.ensure_emulation(settings.platform)  # another platform's ranks run under qemu
        ensure_image(settings)
    if runtime in ("apptainer", "srun", "cluster"):
        ensure_sif(settings)


def verified(settings: Settings, runtime: str) -> str | None:
    """With VERIFY_KEY, a SIF that does not verify is refused before any rank starts; its digest (checked
    once per content) then names the nodes' unpacked sandbox, so that is never a stale or changed copy."""
    if settings.verify_key is None or runtime not in ("apptainer", "srun", "cluster"):
        return None
    from . import signing

    return signing.require_verified(settings.sif, settings.verify_key)


def srun_mpi_for(settings: Settings, runtime: str, plan: bind.Plan | None) -> str:
    """The --mpi plugin for srun's ranks; auto asks this Slurm what it offers (refused in one line if it lacks it)."""
    if runtime not in ("srun", "cluster"):
        return slurm.plugin(settings.srun_mpi, plan)
    return slurm.fit_plugin(settings.srun_mpi, plan, slurm.offered_plugins(runtime))


def say_bind(plan: bind.Plan | None) -> None:
    if plan:
        say(f"bind model: the site's MPI {plan.loaded} ({plan.version}; {bind.abi_name(plan.family, plan.abi)}); "
            f"srun --mpi={plan.srun_mpi} "
            f"({plan.srun_mpi_why}); make bind-plan shows what is bound and why")


def choose_runtime(settings: Settings) -> choose.Choice:
    choice = choose.choose(settings.runtime, choose.look())
    say(f"runtime: {choice.runtime} ({choice.why})")
    return choice


@dataclass
class Prepared:
    """A runtime chosen and made ready, with its bind plan and srun plugin: jobs for it are one call away."""

    settings: Settings
    runtime: str
    plan: bind.Plan | None
    mpi: str

    digest: str | None = None  # the verified SIF's SHA-256 (VERIFY_KEY)

    def job(self, script: Path, args: list[str], workdir: Path, timeout: int | None, futures: bool) -> runtimes.Job:
        s = self.settings
        from .signing import DIGEST_ENV

        env = {DIGEST_ENV: self.digest} if self.digest and self.runtime in ("srun", "cluster") else {}
        return runtimes.Job(script, args, s.np, self.runtime, s.image, workdir, timeout, s.sif, self.mpi,
                            nodes=s.nodes, futures=futures, bind=self.plan, apptainer_mode=s.apptainer_mode, env=env)


def prepare(settings: Settings, *, build: bool = True) -> Prepared:
    """Choose the runtime and get it ready (`build`: make what is missing; make line and sbatch only
    describe, so they build nothing)."""
    choice = choose_runtime(settings)
    bind.check_runtime(settings.host_mpi, choice.runtime)
    if settings.requirements is not None:
        environment_names(settings, choice.runtime)
    if choice.runtime == "cluster":
        require_shared(settings, {"SIF": settings.sif, **({"SCRIPT": settings.script} if settings.script else {}),
                                  **({"VERIFY_KEY": settings.verify_key} if settings.verify_key else {})})
    if build:
        ready(settings, choice.runtime)
    else:
        if choice.runtime == "cluster":
            cluster.require_up()
        note_stale(settings, choice.runtime)
    digest = verified(settings, choice.runtime) if build else None
    if settings.host_mpi and not settings.sif.is_file():
        raise UsageError(f"no {settings.sif}: the bind model compares the site's libraries with the image's; "
                         "make sif first")
    plan = bind.resolve(settings.host_mpi, settings.srun_mpi, settings.sif, choice.runtime, settings.host_mpi_abi,
                        reuse=True)
    mpi = srun_mpi_for(settings, choice.runtime, plan)
    say_bind(plan)
    return Prepared(settings, choice.runtime, plan, mpi, digest)
