# mpi4py-kit: Open MPI (with PMIx and Slurm support, from Debian), mpi4py built
# against it, numpy, and the examples. Twin of Apptainer.def: same stack, same
# pins (versions.env, requirements/*.txt), same build steps (scripts/image/install.sh).
#
# Build:   make image                       (BASE=bookworm for Open MPI 4 / PMIx 4)
#          DOCKER_BUILDKIT=1 docker build -t mpi4py-kit:trixie .
#          behind a TLS-intercepting proxy: make image CA_CERT=/path/ca.pem
#          (passed as a build secret, never stored in a layer)
# Run:     docker run --rm mpi4py-kit:trixie mpiexec -n 4 python /opt/mpi4py-kit/examples/rank.py
#          make run-scatter NP=4 RUNTIME=docker
# Cluster: convert to a SIF (make sif) and run srun --mpi=pmix apptainer exec mpi.sif python rank.py
#          (the kit's own line, with its environment: make line RUNTIME=srun; a batch script: make sbatch)

ARG BASE=trixie
# The base image; the kit passes arm64v8/debian:BASE-slim when it builds for another
# platform (--platform linux/arm64), so the host's debian:BASE-slim is never replaced.
ARG BASE_IMAGE=debian:${BASE}-slim
# The compile stage's base, on the build host's own platform: for another platform it
# cross-compiles (minutes) instead of compiling under emulation (most of an hour per build).
ARG BUILDER_IMAGE=debian:${BASE}-slim

# ---- builder: compilers and headers; only /opt/build leaves this stage ----
FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS builder
ARG BASE
# Set by BuildKit: the image's architecture (amd64, arm64).
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The pins and the shared build steps; the Python pins change least often after these.
COPY versions.env /kit/versions.env
COPY requirements/build.txt requirements/build-abi.txt requirements/image.txt /kit/requirements/
COPY scripts/image/install.sh scripts/image/without-rocm.sh /kit/
# The CA bundle for a proxy arrives as a secret mount: readable during this
# step only, absent from every layer.
RUN --mount=type=secret,id=ca_cert,required=false \
    CA_CERT_FILE=/run/secrets/ca_cert TARGET_ARCH=$TARGETARCH /kit/install.sh builder

# ---- system: the distribution's Open MPI and Python, exactly the pinned versions ----
# The final image's first layers: for another platform the only apt run under emulation, without
# byte-compiling Python's standard library there (the stdlib stage does, natively).
FROM ${BASE_IMAGE} AS system
ARG BASE
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY versions.env /kit/versions.env
COPY requirements/image.txt /kit/requirements/
COPY scripts/image/install.sh scripts/image/without-rocm.sh /kit/
RUN /kit/install.sh runtime

# ---- assembler: /opt/venv for the image's platform, on the build host's; only /opt/venv leaves ----
# pip installs the target's wheels here by their platform tag; nothing of it runs under emulation.
FROM builder AS assembler
ARG BASE
ARG TARGETARCH
COPY requirements/sbom.txt /kit/requirements/
RUN --mount=type=secret,id=ca_cert,required=false \
    CA_CERT_FILE=/run/secrets/ca_cert TARGET_ARCH=$TARGETARCH /kit/install.sh assemble

# ---- compiled: the site hooks, and every module of /opt/venv compiled, on the build host's platform ----
# The same CPython (the suite's) writes the same .pyc on any architecture; under emulation this
# one step took most of the arm64 image's time. The image checks the versions match (install.sh sbom).
FROM assembler AS compiled
ARG BASE
# The kit's site hooks after the compile: editing one does not rebuild mpi4py.
COPY scripts/image/site/ /kit/site/
RUN /kit/install.sh hooks

# ---- stdlib: the image's standard library compiled, on the build host's platform ----
# The target's own files (with their mtimes, which the .pyc files record); only the .pyc files leave.
FROM builder AS stdlib
ARG BASE
COPY --from=system /usr/lib/ /target/usr/lib/
COPY --from=system /usr/share/python3/ /target/usr/share/python3/
COPY --from=system /var/lib/dpkg/ /target/var/lib/dpkg/
COPY --from=system /etc/ /target/etc/
RUN /kit/install.sh stdlib /target

# ---- runtime: what users get ----
FROM system
ARG BASE
# Set by BuildKit: the image's platform (linux/amd64), named in the SBOM.
ARG TARGETPLATFORM
COPY --from=stdlib /out/ /
COPY --from=compiled /opt/venv /opt/venv
# The venv's python comes first; packages in a user's ~/.local (bind-mounted
# home on clusters) must not shadow the image's mpi4py and numpy. No
# PYTHONUNBUFFERED: unbuffered print() writes text and newline separately and
# mpiexec then interleaves ranks mid-line; the examples flush whole lines.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONNOUSERSITE=1
# The build inputs' last commit time (make image passes it): the SBOM's time and the user's
# password date, so two builds of the same inputs give the same files (make reproduce). Declared
# here, so a new time re-runs the step below only.
ARG SOURCE_DATE_EPOCH
COPY scripts/image/sbom.py /kit/
# The SBOM, from the installed image, with the assembler's tool mounted for this step only;
# then the build's traces go. Fail the build if mpi4py does not load the image's own libmpi
# (the guard's check, both twins). The check starts MPI once, and Open MPI leaves its session
# folder in /tmp, named by the build's host and a job number from its PID, which a rebuild may
# not repeat (make reproduce found one): this step's /tmp is a tmpfs, as in Apptainer's build.
RUN --mount=type=bind,from=assembler,source=/opt/sbom-tool,target=/opt/sbom-tool \
    --mount=type=tmpfs,target=/tmp \
    PLATFORM=$TARGETPLATFORM /kit/install.sh sbom && rm -rf /kit && \
    python -m mpi4py_kit_guard && python -c 'import numpy'
# The empty folder BuildKit made to mount the tool on, which Apptainer.def's twin does not have.
RUN rmdir /opt/sbom-tool
LABEL org.opencontainers.image.title="mpi4py-kit" \
      io.github.mpi4py-kit.sbom="/opt/mpi4py-kit/sbom.cdx.json" \
      org.opencontainers.image.description="Open MPI with PMIx and Slurm support, mpi4py built against it, numpy, and examples"
# The examples last: editing one rebuilds only this layer.
COPY examples/ /opt/mpi4py-kit/examples/
# Numeric, so runtimes that check runAsNonRoot can verify it: the user "mpi".
USER 1000:1000
WORKDIR /home/mpi
CMD ["mpiexec", "-n", "2", "python", "/opt/mpi4py-kit/examples/rank.py"]
