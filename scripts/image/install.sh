#!/usr/bin/env bash
# The image's build steps, shared by the Dockerfile and Apptainer.def so the
# twin recipes cannot drift. Runs inside the image being built, as root.
#
#   install.sh builder   compilers + Open MPI headers; builds mpi4py from its
#                        sdist against this Open MPI; fills /opt/venv
#   install.sh hooks     the kit's site hooks (/kit/site) into /opt/venv
#   install.sh runtime   Open MPI + Python only; the non-root user; the stack
#                        manifest /opt/mpi4py-kit/stack.env
#
# Inputs: BASE (the Debian suite), /kit/versions.env, /kit/requirements/,
# and optionally a CA bundle for a TLS-intercepting proxy at $CA_CERT_FILE
# (a build secret: it is read, never copied into the image).
set -euo pipefail

# Not under /tmp: apptainer build mounts a fresh /tmp over it during %post.
kit=/kit
# versions.env is copied to /kit only inside the build, so shellcheck cannot follow it.
# shellcheck source=/dev/null
. "$kit/versions.env"
: "${BASE:?BASE must name the Debian suite (trixie or bookworm)}"
case ",$SUPPORTED_BASES," in
  *",$BASE,"*) ;;
  *) echo "error: BASE=$BASE is not supported; choose one of: $SUPPORTED_BASES" >&2; exit 1 ;;
esac
openmpi_var="OPENMPI_DEB_$BASE" pmix_var="PMIX_DEB_$BASE"
OPENMPI_DEB=${!openmpi_var} PMIX_DEB=${!pmix_var}

export DEBIAN_FRONTEND=noninteractive
apt_install() {
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  rm -rf /var/lib/apt/lists/*
}

# Fail the build when the mirror serves another Open MPI or PMIx than pinned.
check_pins() {
  local pkg want got
  for pkg in "$@"; do
    case $pkg in *pmix*) want=$PMIX_DEB ;; *) want=$OPENMPI_DEB ;; esac
    got=$(dpkg-query -W -f='${Version}' "$pkg")
    if [ "$got" != "$want" ]; then
      echo "error: $pkg is $got but versions.env pins $want for BASE=$BASE" >&2
      exit 1
    fi
  done
}

builder() {
  bash "$kit/without-rocm.sh"
  apt_install ca-certificates gcc libc6-dev python3-dev python3-venv \
    "openmpi-bin=$OPENMPI_DEB" "libopenmpi-dev=$OPENMPI_DEB" "libpmix-dev=$PMIX_DEB"
  check_pins openmpi-bin libopenmpi-dev libpmix-dev
  if [ -n "${CA_CERT_FILE:-}" ] && [ -s "$CA_CERT_FILE" ]; then
    echo "pip trusts the CA bundle passed to this build (CA_CERT)"
    export PIP_CERT=$CA_CERT_FILE
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONFIG_FILE=/dev/null
  # Build tools live in a throwaway venv; only /opt/venv is shipped.
  python3 -m venv /tmp/buildenv
  /tmp/buildenv/bin/pip install -q --require-hashes -r "$kit/requirements/build.txt"
  # mpi4py from its sdist, compiled with this image's mpicc: it links the
  # image's libmpi, never a wheel's bundled MPI.
  /tmp/buildenv/bin/pip wheel -q --no-deps --no-build-isolation --require-hashes \
    --no-binary mpi4py -r "$kit/requirements/image.txt" -w /tmp/wheels
  python3 -m venv --without-pip /opt/venv
  /tmp/buildenv/bin/pip --python /opt/venv/bin/python install -q --no-index --no-deps /tmp/wheels/*.whl
  # The bind model (HOST_MPI): mpi4py's binary wheel, off sys.path unless the kit puts it there; its
  # MPICH variant loads a site's MPICH-ABI libmpi (libmpi.so.12), which the build above cannot.
  awk '/^mpi4py==/ { keep = 1; print; next } keep && /^ / { print; next } { keep = 0 }' \
    "$kit/requirements/image.txt" > /tmp/mpi4py-wheel.txt
  /tmp/buildenv/bin/pip install -q --no-deps --require-hashes --only-binary mpi4py \
    --target /opt/venv/mpi4py-abi -r /tmp/mpi4py-wheel.txt
  find /opt/venv -name __pycache__ -prune -exec rm -rf {} +
  /opt/venv/bin/python -c 'import mpi4py, numpy; print("built mpi4py", mpi4py.__version__, "numpy", numpy.__version__)'
}

# The kit's hooks, in every Python program the image runs: an exception in any thread of a rank
# ends the MPI job (site/mpi4py_kit_abort.py); a hand-typed srun line that leaves every task a
# world of 1 stops at once, and a host MPI loaded by accident is named (site/mpi4py_kit_guard.py).
# A step of its own, after the compile: editing a hook does not rebuild mpi4py (most of an hour
# under emulation).
hooks() {
  cp "$kit"/site/*.py "$kit"/site/*.pth \
    "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/"
}

runtime() {
  bash "$kit/without-rocm.sh"
  # openmpi-bin pulls the matching library (libopenmpi3 or libopenmpi40) and PMIx.
  apt_install python3 "openmpi-bin=$OPENMPI_DEB"
  check_pins openmpi-bin
  check_pins "$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' 'libpmix2*' | awk '$2 == "installed" { print $1; exit }')"
  # Ranks run as an ordinary user: Open MPI refuses root without extra flags,
  # and a cluster runs users' jobs unprivileged anyway.
  useradd --create-home --uid 1000 --shell /bin/bash mpi
  # The bind model binds single libraries of the site into this folder (scripts/mpikit/bind.py).
  mkdir -p /opt/mpi4py-kit/host-lib
  local mpi4py numpy
  mpi4py=$(sed -n 's/^mpi4py==\([^ ]*\).*/\1/p' "$kit/requirements/image.txt")
  numpy=$(sed -n 's/^numpy==\([^ ]*\).*/\1/p' "$kit/requirements/image.txt")
  # The manifest: what this image holds, for make doctor and the tests.
  cat > /opt/mpi4py-kit/stack.env <<MANIFEST
BASE=$BASE
OPENMPI_DEB=$OPENMPI_DEB
PMIX_DEB=$PMIX_DEB
MPI4PY_VERSION=$mpi4py
NUMPY_VERSION=$numpy
PYTHON_VERSION=$(python3 -c 'import platform; print(platform.python_version())')
MANIFEST
}

"${1:?usage: install.sh builder|hooks|runtime}"
