#!/usr/bin/env bash
# A user's environment on top of the kit's finished image (REQUIREMENTS=...; scripts/image/Dockerfile.env
# runs these steps, as root). Not a build input of the kit's own image: editing it rebuilds environments,
# never the kit's image. The pins come from the image's own manifest (/opt/mpi4py-kit/stack.env), so the
# build stage's Open MPI headers are exactly the image's Open MPI. Its helpers for apt and pip are copies,
# on purpose: sourcing install.sh (a build input of the kit's image) would make every edit here rebuild it.
#
#   derive.sh tools     compilers, the pinned Open MPI's headers and mpicc, Debian's pip in a throwaway venv
#   derive.sh install   the user's packages into /opt/venv; only the new files go to /stage, with the
#                       Debian packages their extensions load (/stage-meta/packages.txt)
#   derive.sh finish    in the final stage: those Debian packages, if missing, pins checked again; then the
#                       kit's SBOM rewritten for the environment (sbom_env.py, from pip's installation reports)
set -euo pipefail
umask 022
# The image's manifest exists only inside the image being derived, so shellcheck cannot follow it.
# shellcheck source=/dev/null
. /opt/mpi4py-kit/stack.env
export DEBIAN_FRONTEND=noninteractive

apt_install() {
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  rm -rf /var/lib/apt/lists/* /var/cache/apt/pkgcache.bin /var/cache/apt/srcpkgcache.bin
}

# The image's Open MPI and PMIx must not move (a package's dependency could ask apt for a newer one).
check_pins() {
  local pmix got
  got=$(dpkg-query -W -f='${Version}' openmpi-bin)
  [ "$got" = "$OPENMPI_DEB" ] || { echo "error: openmpi-bin moved to $got; the image pins $OPENMPI_DEB" >&2; exit 1; }
  pmix=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' 'libpmix2*' | awk '$2 == "installed" { print $1; exit }')
  got=$(dpkg-query -W -f='${Version}' "$pmix")
  [ "$got" = "$PMIX_DEB" ] || { echo "error: $pmix moved to $got; the image pins $PMIX_DEB" >&2; exit 1; }
}

pip_setup() {
  if [ -n "${CA_CERT_FILE:-}" ] && [ -s "$CA_CERT_FILE" ]; then
    echo "pip trusts the CA bundle passed to this build (CA_CERT)"
    export PIP_CERT=$CA_CERT_FILE
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONFIG_FILE=/dev/null
}

# The build stage's tools: compilers, the pinned Open MPI's headers and mpicc (what a package that calls MPI
# compiles against), Python's headers, and Debian's pip in a throwaway venv (the kit's venv has none).
tools() {
  apt_install ca-certificates gcc g++ libc6-dev python3-dev python3-venv pkgconf "libopenmpi-dev=$OPENMPI_DEB"
  check_pins
  python3 -m venv /opt/env-pip
  # The compiler the packages get: mpicc, with the folder it compiles in recorded as "." in the debugging
  # information. pip builds an sdist (h5py's) in a temporary folder named anew each time, so without this the
  # same sdist compiled twice differs in those bytes (make reproduce REQUIREMENTS=...). The build stage's only.
  cat > /usr/local/bin/env-mpicc <<'SH'
#!/bin/sh
exec mpicc -ffile-prefix-map="$(pwd -P)"=. "$@"
SH
  chmod 755 /usr/local/bin/env-mpicc
}

# The user's packages into the kit's /opt/venv, as the kit's interpreter sees them (pip --python), with the
# kit's pins as constraints; then only the new files, compiled as the kit's own are, are staged in /stage
# for the final stage, with the Debian packages their extensions load (/stage-meta/packages.txt).
install() {
  pip_setup
  local pip=/opt/env-pip/bin/pip py=/opt/venv/bin/python
  # A package that calls MPI compiles and links against the image's own Open MPI (env-mpicc: mpicc, tools above).
  export MPICC=mpicc CC=/usr/local/bin/env-mpicc
  cd /env/src
  # Everything the user's file brings, resolved before anything is installed: a second MPI that arrives as
  # a dependency is refused by name, as one in the file is before the build.
  $pip --python "$py" install -q --dry-run --report /tmp/env-report.json -c /env/constraints.txt -r /env/requirements.txt
  "$py" -S - /tmp/env-report.json /env/own-mpi.txt > /tmp/h5py-version <<'PY'
import json, re, sys
refused = set(open(sys.argv[2]).read().split()) | {"mpi4py"}
for item in json.load(open(sys.argv[1]))["install"]:
    name = re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower()
    if name == "h5py":
        print(item["metadata"]["version"])
    if name in refused:
        why = "a second mpi4py" if name == "mpi4py" else "an MPI of its own"
        print(f"error: REQUIREMENTS: {item['metadata']['name']} {item['metadata']['version']} would be installed "
              f"(a dependency of a listed package) and brings {why} beside the image's; remove what needs it",
              file=sys.stderr)
        sys.exit(3)
PY
  local kit_records
  kit_records=$(cat /opt/venv/lib/python3*/site-packages/{mpi4py,numpy}-*.dist-info/RECORD | sha256sum)
  find /opt/venv -xdev | sort > /tmp/before.txt
  local h5py
  h5py=$(cat /tmp/h5py-version)
  if [ -n "$h5py" ]; then
    # PyPI's h5py wheels hold a serial HDF5 (driver="mpio" fails): h5py is built from its sdist against Debian's
    # MPI-enabled HDF5 of this very Open MPI, with the image's mpi4py and numpy. Without build isolation: an
    # isolated build fetches and compiles an mpi4py of its own; its tools (Cython, setuptools, pkgconfig,
    # hash-checked) stay outside the venv.
    apt_install libhdf5-openmpi-dev
    check_pins
    $pip install -q --require-hashes --no-deps --only-binary :all: --target /opt/env-build -r /env/env-build.txt
    echo "environment: h5py $h5py from its sdist, against HDF5 with MPI (libhdf5-openmpi-dev) and the image's mpi4py"
    PYTHONPATH=/opt/env-build HDF5_MPI=ON HDF5_DIR="/usr/lib/$(gcc -dumpmachine)/hdf5/openmpi" \
      $pip --python "$py" install -q --no-compile --no-deps --no-build-isolation --no-binary h5py \
      --report /tmp/report-h5py.json -c /env/constraints.txt "h5py==$h5py"
  fi
  $pip --python "$py" install -q --no-compile --report /tmp/report-env.json -c /env/constraints.txt \
    -r /env/requirements.txt
  # The kit's own distributions are untouched: the constraints hold their versions, this their files.
  if [ "$(cat /opt/venv/lib/python3*/site-packages/{mpi4py,numpy}-*.dist-info/RECORD | sha256sum)" != "$kit_records" ]; then
    echo "error: REQUIREMENTS: pip reinstalled the kit's mpi4py or numpy; remove what asks for another" >&2
    exit 3
  fi
  # The new modules compiled as the kit compiles its own (hooks, above): by hash, one process, in name order.
  find /opt/venv -xdev | sort | comm -13 /tmp/before.txt - | { grep '\.py$' || true; } \
    | PYTHONHASHSEED=0 "$py" -S -m compileall -q -j 1 --invalidation-mode checked-hash -i - >/dev/null
  find /opt/venv -xdev | sort | comm -13 /tmp/before.txt - > /tmp/new.txt
  mkdir -p /stage /stage-meta
  # What pip installed and from which file (the SBOM's record), and what the environment was built from.
  cp /tmp/report-*.json /stage-meta/
  echo "requirements.txt sha256:$(sha256sum /env/requirements.txt | cut -d' ' -f1)" > /stage-meta/environment.txt
  tar -C / --no-recursion -cf - -T <(sed 's|^/||' /tmp/new.txt) | tar -C /stage -xf -
  # The Debian packages the new extensions load (h5py's libhdf5_openmpi, say), for the final stage.
  local so lib
  : > /tmp/libs.txt
  while IFS= read -r so; do
    ldd "$so" 2>/dev/null | awk '$3 ~ /^\// { print $3 }' >> /tmp/libs.txt
  done < <(grep '\.so[.0-9]*$' /tmp/new.txt)
  : > /stage-meta/packages.txt
  sort -u /tmp/libs.txt | while IFS= read -r lib; do
    case $lib in /opt/venv/*) continue ;; esac
    # The path ldd shows, or the file it leads to (/lib or /usr/lib: dpkg knows one of them).
    { dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || true; } | cut -d: -f1 | head -n 1
  done | sort -u > /stage-meta/packages.txt
  echo "environment: $(grep -c . /tmp/new.txt) new files; Debian packages their extensions load:" \
    "$(tr '\n' ' ' < /stage-meta/packages.txt)"
  # The packages whose extensions link an MPI (directly, or through a library such as HDF5's): "NAME VERSION
  # SONAME" in the image, for the bind model, which refuses a site MPI of another family for them
  # (scripts/mpikit/bind.py, LINKED).
  mkdir -p /stage/opt/mpi4py-kit
  "$py" -S - /tmp/new.txt > /stage/opt/mpi4py-kit/environment-mpi.txt <<'PY'
import csv, re, subprocess, sys
from pathlib import Path
new = [line.strip() for line in open(sys.argv[1]) if line.strip()]
owner = {}
for path in new:
    if path.endswith(".dist-info/RECORD"):
        info = Path(path).parent
        meta = (info / "METADATA").read_text(errors="replace")
        name, version = (re.search(rf"^{key}: *(\S+)", meta, re.M).group(1) for key in ("Name", "Version"))
        with open(info / "RECORD", newline="") as record:
            for row in csv.reader(record):
                owner[str((info.parent / row[0]).resolve())] = f"{name} {version}"
found = set()
for path in new:
    if re.search(r"\.so(\.[0-9]+)*$", path) and Path(path).is_file():
        ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        for soname in re.findall(r"^\s*(libmpi(?:_abi)?\.so\.[0-9]+) ", ldd, re.M):
            found.add(f"{owner.get(str(Path(path).resolve()), path)} {soname}")
for line in sorted(found):
    print(line)
PY
  if [ -s /stage/opt/mpi4py-kit/environment-mpi.txt ]; then
    echo "environment: built against the image's Open MPI: $(cut -d' ' -f1,2 /stage/opt/mpi4py-kit/environment-mpi.txt \
      | sort -u | paste -sd, | sed 's/,/, /g')"
  else
    echo "environment: no package links an MPI"
  fi
}

# The final stage: the run-time Debian packages the build found (already there for most), without moving
# the pinned Open MPI and PMIx.
finish() {
  local missing=()
  local pkg
  while IFS= read -r pkg; do
    [ -n "$pkg" ] || continue
    dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -q '^installed$' || missing+=("$pkg")
  done < /stage-meta/packages.txt
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
    check_pins
    # What that install records of this build (as install.sh's tidy removes it from the kit's image): dpkg's and
    # apt's logs (its time), their previous copies, and ldconfig's auxiliary cache (inodes and ctimes).
    rm -f /var/log/dpkg.log /var/log/alternatives.log /var/log/apt/*.log /var/log/apt/eipp.log.xz \
      /var/lib/dpkg/status-old /var/lib/dpkg/diversions-old /var/lib/dpkg/statoverride-old \
      /var/cache/debconf/*.dat-old /var/cache/ldconfig/aux-cache
  fi
  # The kit's SBOM, rewritten for what the image now holds: the Debian packages read again, and each
  # distribution pip installed with the hash of the file it came from.
  local reports=()
  for report in /stage-meta/report-*.json; do reports+=(--report "$report"); done
  PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python /env/sbom_env.py /opt/mpi4py-kit/sbom.cdx.json --base "$BASE" \
    --environment "$(cat /stage-meta/environment.txt)" "${reports[@]}"
  rm -rf /stage-meta
}

"${1:?usage: derive.sh tools|install|finish}"
