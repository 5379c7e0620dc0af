#!/usr/bin/env bash
# The image's build steps, shared by the Dockerfile and Apptainer.def so the
# twin recipes cannot drift. Runs inside the image being built, as root.
#
#   install.sh builder   on the build host's own platform: compilers and Open MPI
#                        headers (the target's, when cross-building); builds mpi4py
#                        from its sdist against this Open MPI, and its standard-ABI
#                        variant for the bind model, into /opt/build
#   install.sh assemble  on the build host's platform too, after builder: /opt/venv for the target
#                        from /opt/build and the hash-checked wheels of the other pins
#   install.sh hooks     the kit's site hooks (/kit/site) into /opt/venv, and every module of it
#                        compiled (on the build host's platform)
#   install.sh runtime   Open MPI + Python only, the standard library not yet compiled; the
#                        non-root user; the stack manifest /opt/mpi4py-kit/stack.env
#   install.sh stdlib [ROOT]  the standard library compiled, as Debian's scripts would have: in
#                        this image, or (the Dockerfile) in the target's file system copied to ROOT,
#                        by this platform's Python of the same version; prints nothing but errors
#   install.sh sbom      the last step: the SBOM (/kit/sbom.py, with the tool the assembler
#                        put in /opt/sbom-tool), then what would differ between two builds
#                        of the same inputs is removed or fixed (make reproduce checks it)
#
# Inputs: BASE (the Debian suite), TARGET_ARCH (the image's Debian architecture, for the
# builder; "native" or unset: the build host's), SOURCE_DATE_EPOCH and PLATFORM (for the
# last step), /kit/versions.env, /kit/requirements/,
# and optionally a CA bundle for a TLS-intercepting proxy at $CA_CERT_FILE
# (a build secret: it is read, never copied into the image).
set -euo pipefail
# The same modes whoever builds: Apptainer's %post inherits the caller's umask (002 in its container here),
# Docker's RUN has 022; with 002 every file made here was group-writable in the SIF alone, and the wheels
# built here (their hashes are in the image's records) differed between the twins.
umask 022

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
  # The mirror's lists once per step (runtime reads them before it installs).
  compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  # The mirror's package lists, and apt's binary caches of them (94 MB; they also hold the lists' times,
  # which differ between builds): in the same step, so no layer keeps them.
  rm -rf /var/lib/apt/lists/* /var/cache/apt/pkgcache.bin /var/cache/apt/srcpkgcache.bin
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

# The GNU triplet of a Debian architecture: the cross compiler's prefix and the multiarch folder.
triplet() {
  case $1 in
    amd64) echo x86_64-linux-gnu ;;
    arm64) echo aarch64-linux-gnu ;;
    *) echo "error: no cross-build rule for the Debian architecture $1 (amd64 or arm64)" >&2; exit 1 ;;
  esac
}

pip_setup() {
  if [ -n "${CA_CERT_FILE:-}" ] && [ -s "$CA_CERT_FILE" ]; then
    echo "pip trusts the CA bundle passed to this build (CA_CERT)"
    export PIP_CERT=$CA_CERT_FILE
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONFIG_FILE=/dev/null
}

# mpi4py's pin alone (with its hashes), from image.txt; "rest" prints every other pin instead.
mpi4py_pin() {
  if [ "${1:-}" = rest ]; then
    awk '/^mpi4py==/ { skip = 1; next } skip && /^ / { next } { skip = 0; print }' "$kit/requirements/image.txt"
  else
    awk '/^mpi4py==/ { keep = 1; print; next } keep && /^ / { print; next } { keep = 0 }' "$kit/requirements/image.txt"
  fi
}

# Compiles, on the build host's own architecture: a native build when the target is the same,
# a cross-build when it is not (PLATFORM=linux/arm64 on amd64). Under qemu the two compiles took
# most of an hour each; cross-compiled they take minutes, and nothing in this stage is emulated.
# Leaves /opt/build: the wheels to install (mpi4py built here) and the standard-ABI extension.
builder() {
  local build target
  build=$(dpkg --print-architecture)
  target=${TARGET_ARCH:-native}
  [ "$target" = native ] && target=$build
  bash "$kit/without-rocm.sh"
  local mpicc=mpicc strip=strip cross=()
  if [ "$target" = "$build" ]; then
    apt_install ca-certificates gcc libc6-dev python3-dev python3-venv patchelf \
      "openmpi-bin=$OPENMPI_DEB" "libopenmpi-dev=$OPENMPI_DEB" "libpmix-dev=$PMIX_DEB"
    check_pins openmpi-bin libopenmpi-dev libpmix-dev
  else
    local gnu
    gnu=$(triplet "$target")
    echo "cross-building for $target ($gnu) on $build"
    dpkg --add-architecture "$target"
    apt-get update -qq
    # The cross compiler, by its versioned name and the host's architecture: since trixie the target's
    # native compiler has the same name (gcc-14-aarch64-linux-gnu:arm64), and an unversioned request
    # let apt install that one, which then ran under qemu, as slow as an emulated build.
    local compiler
    compiler=$(apt-cache depends "gcc-${gnu//_/-}:$build" | awk '$1 == "Depends:" && $2 ~ /^gcc-[0-9]+-/ { print $2; exit }')
    # The target's headers and libraries beside the host's tools (Debian multiarch).
    apt_install ca-certificates "${compiler%%:*}:$build" "gcc-${gnu//_/-}:$build" python3-dev python3-venv patchelf pkgconf \
      "libc6-dev:$target" "libpython3-dev:$target" \
      "libopenmpi-dev:$target=$OPENMPI_DEB" "libpmix-dev:$target=$PMIX_DEB"
    check_pins "libopenmpi-dev:$target" "libpmix-dev:$target"
    if dpkg-query -W "${compiler%%:*}:$target" >/dev/null 2>&1; then
      echo "error: apt installed $target's own compiler (${compiler%%:*}:$target), which would run under qemu" >&2
      exit 1
    fi
    # Open MPI's mpicc is a binary of the target's architecture: in its place, the cross compiler
    # with the flags Open MPI's pkg-config file gives.
    local flags
    flags=$(PKG_CONFIG_LIBDIR=/usr/lib/$gnu/pkgconfig pkgconf --cflags --libs ompi-c)
    printf '#!/bin/sh\nexec %s-gcc "$@" %s\n' "$gnu" "$flags" > /tmp/mpicc-cross
    chmod +x /tmp/mpicc-cross
    mpicc=/tmp/mpicc-cross strip=$gnu-strip
    # What the target's Python compiles with (its sysconfig data) and the tag its wheels carry.
    local machine=${gnu%%-*}
    cross=(env "_PYTHON_HOST_PLATFORM=linux-$machine" "_PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata__linux_$gnu"
      "MPICH_CC=$gnu-gcc")
  fi
  pip_setup
  # Build tools live in throwaway folders; only /opt/build leaves this stage.
  python3 -m venv /tmp/buildenv
  local pip=/tmp/buildenv/bin/pip
  $pip install -q --require-hashes -r "$kit/requirements/build.txt"
  # MPICH's wheel for the target, build-only: mpicc_abi (a shell script, so it runs here) and
  # mpi_abi.h for the standard-ABI variant below.
  local mpich_platform
  mpich_platform=manylinux_2_28_$(triplet "$target" | cut -d- -f1)
  $pip download -q --no-deps --require-hashes --only-binary :all: --platform "$mpich_platform" \
    -r "$kit/requirements/build-abi.txt" -d /tmp/mpich-wheel
  /tmp/buildenv/bin/python -m zipfile -e /tmp/mpich-wheel/mpich-*.whl /tmp/mpich-wheel/unpacked
  local mpich
  mpich=$(echo /tmp/mpich-wheel/unpacked/mpich-*.data/data)
  chmod +x "$mpich"/bin/*  # zipfile keeps no modes
  # The sdist both builds compile.
  mpi4py_pin > /tmp/mpi4py-pin.txt
  $pip download -q --no-deps --require-hashes --no-binary mpi4py -r /tmp/mpi4py-pin.txt -d /tmp/sdist
  # The SBOM's record of what was compiled here: NAME VERSION FILE SHA256 PLACE (scripts/image/sbom.py).
  mkdir -p /opt/build
  local sdist sum version
  sdist=$(cd /tmp/sdist && echo mpi4py-*.tar.gz)
  sum=$(sha256sum "/tmp/sdist/$sdist")
  version=${sdist#mpi4py-}
  echo "mpi4py ${version%.tar.gz} $sdist ${sum%% *} sdist" > /opt/build/sources.txt
  # Each build in a folder of its own with a fixed name (pip's would be random), so the paths
  # compiled into the extension are the same in every build of these inputs.
  local variant
  for variant in openmpi mpiabi; do
    mkdir -p "/tmp/src/$variant"
    tar -xzf /tmp/sdist/mpi4py-*.tar.gz -C "/tmp/src/$variant" --strip-components=1
  done
  # A wheel's zip entries carry times, and the image records the hash of the one built here
  # (direct_url.json, RECORD): any fixed time makes those bytes the same in every build. A constant,
  # not the build inputs' time, so a new commit does not recompile: 1980-01-01, the earliest a zip holds.
  export SOURCE_DATE_EPOCH=315532800
  # Without debug information (-g0 after the interpreter's -g): faster and smaller (docs/image.md has the figures).
  # Two compiles side by side, each logged to its own file:
  #   openmpi  with this image's Open MPI: links the image's libmpi, never a wheel's bundled MPI;
  #   mpiabi   with MPICH's mpicc_abi: the MPI 5.0 standard ABI (libmpi_abi.so.1), which the bind
  #            model loads from a site's MPI of any vendor (MPICH, Intel MPI, Open MPI 6).
  (SECONDS=0 && cd /tmp/src/openmpi && MPICC=$mpicc CFLAGS=-g0 "${cross[@]}" \
    $pip wheel -q --no-index --no-deps --no-build-isolation . -w /opt/build/wheels >/tmp/openmpi.log 2>&1 &&
    echo "mpi4py compiled against Open MPI in $SECONDS s") &
  local openmpi=$!
  (SECONDS=0 && cd /tmp/src/mpiabi && MPI4PY_BUILD_MPIABI=1 MPICC=$mpich/bin/mpicc_abi CFLAGS=-g0 "${cross[@]}" \
    $pip wheel -q --no-index --no-deps --no-build-isolation . -w /tmp/wheels-abi >/tmp/mpiabi.log 2>&1 &&
    echo "mpi4py compiled for the standard ABI in $SECONDS s") &
  local mpiabi=$!
  wait "$openmpi" || { cat /tmp/openmpi.log; echo "error: building mpi4py against Open MPI failed" >&2; exit 1; }
  wait "$mpiabi" || { cat /tmp/mpiabi.log; echo "error: building mpi4py for the standard MPI ABI failed" >&2; exit 1; }
  # The standard-ABI variant's extension alone, renamed for the variant (MPI.mpiabi.<EXT_SUFFIX>).
  # mpicc_abi linked it with a RUNPATH to this build's MPICH: removed, the kit names the site's
  # libmpi_abi.so.1 (MPI4PY_LIBMPI) and mpi4py opens it before this extension loads. Stripped
  # of the debug sections too, which name this build's folders.
  /tmp/buildenv/bin/python -m zipfile -e /tmp/wheels-abi/mpi4py-*.whl /tmp/abi-wheel
  local built extension
  built=$(echo /tmp/abi-wheel/mpi4py/MPI.*.so)
  extension=/opt/build/mpiabi/MPI.mpiabi.${built#/tmp/abi-wheel/mpi4py/MPI.}
  install -D -m 0755 "$built" "$extension"
  "$strip" --strip-unneeded "$extension"
  patchelf --remove-rpath "$extension"
}

# On the build host's platform, after builder (nothing of it under emulation): /opt/venv for the target,
# made by this platform's Python of the same version (hooks checks, and sbom again in the image) from
# what the builder compiled, with the distribution's own pip in a throwaway venv; the hash-checked
# wheels of every other pin are the target's: pip picks them by the target's platform tag
# (_PYTHON_HOST_PLATFORM, which packaging's tags read as sysconfig's platform), as it would there.
# Under qemu this stage took 765 to 912 s of a cold CI run (emulated apt and six pip runs); here seconds.
assemble() {
  pip_setup
  local build target
  build=$(dpkg --print-architecture)
  target=${TARGET_ARCH:-native}
  [ "$target" = native ] && target=$build
  local cross=()
  if [ "$target" != "$build" ]; then
    local gnu
    gnu=$(triplet "$target")
    cross=(env "_PYTHON_HOST_PLATFORM=linux-${gnu%%-*}")
  fi
  # Nothing installed here is compiled to .pyc (--no-compile): the hooks step compiles all of /opt/venv
  # once, in one process, so two builds write the same bytes. The packaging tool itself comes from the
  # distribution's wheel the same way. Not PIP_NO_COMPILE: pip reads that variable as --compile.
  python3 -m venv --without-pip /tmp/pipenv
  local wheel
  wheel=$(echo /usr/share/python-wheels/pip-*.whl)
  /tmp/pipenv/bin/python "$wheel/pip" install -q --no-compile --no-index "$wheel"
  local pip=("${cross[@]}" /tmp/pipenv/bin/pip)
  mpi4py_pin > /tmp/mpi4py-pin.txt
  # numpy (and anything else pinned) as the hash-checked wheels.
  "${pip[@]}" download -q --no-deps --require-hashes --only-binary :all: -r <(mpi4py_pin rest) -d /opt/build/wheels
  python3 -m venv --without-pip /opt/venv
  "${pip[@]}" --python /opt/venv/bin/python install -q --no-compile --no-index --no-deps /opt/build/wheels/*.whl
  # The bind model (HOST_MPI): mpi4py's binary wheel, off sys.path unless the kit puts it there; its
  # MPICH variant loads a site's MPICH-ABI libmpi (libmpi.so.12), its Open MPI one libmpi.so.40.
  # Fetched first, then installed from the file, so the wheel's hash is recorded (direct_url.json)
  # for the SBOM.
  "${pip[@]}" download -q --no-deps --require-hashes --only-binary mpi4py -r /tmp/mpi4py-pin.txt -d /tmp/abi-wheel
  "${pip[@]}" install -q --no-compile --no-deps --no-index --target /opt/venv/mpi4py-abi /tmp/abi-wheel/mpi4py-*.whl
  # ... and, beside them, the standard-ABI variant the builder compiled, registered as the wheel
  # registers its own. Not a file pip manages (no RECORD lists it).
  # (The builder named it for the target's interpreter: the one file there.)
  local sum
  install -m 0755 /opt/build/mpiabi/MPI.mpiabi.*.so /opt/venv/mpi4py-abi/mpi4py/
  echo "_mpiabi._register('mpi4py.MPI', 'mpiabi')" >> /opt/venv/mpi4py-abi/mpi4py/__init__.py
  # Loading the extensions needs the target's platform: the final stage checks them there (mpi4py_kit_guard).
  if [ ${#cross[@]} -eq 0 ]; then
    /opt/venv/bin/python -c 'import mpi4py, numpy; print("built mpi4py", mpi4py.__version__, "numpy", numpy.__version__)'
  fi
  PYTHONPATH=/opt/venv/mpi4py-abi /opt/venv/bin/python -c '
import mpi4py, mpi4py._mpiabi as abi
assert abi._registry["mpi4py.MPI"] == ["mpich", "openmpi", "mpiabi"], abi._registry
print("bind model: mpi4py", mpi4py.__version__, "variants", ", ".join(abi._registry["mpi4py.MPI"]))'
  # What the checks above compiled records each source's mtime, which is this build's time: removed,
  # and compiled again from the content in the hooks step.
  find /opt/venv -name __pycache__ -prune -exec rm -rf {} +
  # The SBOM's tool (cyclonedx-python-lib, pure Python, hash-checked) and the record of every wheel
  # installed here beside the builder's (bookworm's pip records no hash itself), for the last step of
  # the final stage; this folder never ships.
  "${pip[@]}" install -q --no-compile --no-deps --require-hashes --only-binary :all: --target /opt/sbom-tool \
    -r "$kit/requirements/sbom.txt"
  local wheel name place
  for wheel in /opt/build/wheels/*.whl /tmp/abi-wheel/*.whl; do
    name=${wheel##*/}
    place=venv
    [ "${wheel#/tmp/abi-wheel/}" = "$wheel" ] || place=abi
    sum=$(sha256sum "$wheel")
    echo "$(echo "$name" | cut -d- -f1) $(echo "$name" | cut -d- -f2) $name ${sum%% *} $place" >> /opt/build/sources.txt
  done
  cp /opt/build/sources.txt /opt/sbom-tool/
  rm -rf /opt/build
}

# The kit's hooks, in every Python program the image runs: an exception in any thread of a rank
# ends the MPI job (site/mpi4py_kit_abort.py); a hand-typed srun line that leaves every task a
# world of 1 stops at once, and a host MPI loaded by accident is named (site/mpi4py_kit_guard.py).
# A step of its own, after the compile: editing a hook does not rebuild mpi4py.
hooks() {
  # On the build host's platform, as assemble: a .pyc holds no machine code, and the image's Python is
  # the same version (sbom checks it in the image: with another, it would compile every module again).
  cp "$kit"/site/*.py "$kit"/site/*.pth \
    "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/"
  # Every module compiled once here, so no rank compiles one at start-up (the image is read-only
  # to them). Checked by hash, not mtime: the .pyc files hold no time, so two builds of the same
  # inputs write the same bytes, and a source changed later is still noticed.
  # The same bytes in every build (make reproduce): marshal marks an object shared when something else
  # holds it too, so what the compiling process has loaded and compiled before shows in the .pyc (the
  # kit's own hooks differed between builds when compiled in parallel by a Python that had imported them).
  # So: one process (-j 1), in name order, without site and its .pth hooks (-S), and a fixed hash seed
  # for sets of strings, which marshal writes in hash order.
  PYTHONHASHSEED=0 /opt/venv/bin/python -S -m compileall -q -j 1 --invalidation-mode checked-hash /opt/venv
}

runtime() {
  bash "$kit/without-rocm.sh"
  # openmpi-bin pulls the matching library (libopenmpi3 or libopenmpi40) and PMIx.
  # Python's own scripts byte-compile its standard library as it installs (py_compile.py run on every
  # module, py3compile for Debian's helpers): under emulation that was most of this step's 1015 to 1412 s
  # in cold CI runs. Both are diverted to do nothing for this install, and `install.sh stdlib` compiles the
  # same files after it (in the Dockerfile on the build host's platform); the diversions go again at once.
  apt-get update -qq
  local python
  python=$(apt-cache depends python3-minimal | sed -n 's/.*Depends: \(python3\.[0-9]*\)-minimal.*/\1/p' | head -n 1)
  [ -n "$python" ] || { echo "error: cannot tell which Python python3-minimal installs" >&2; exit 1; }
  local diverted=("/usr/lib/$python/py_compile.py" /usr/bin/py3compile)
  local file
  for file in "${diverted[@]}"; do
    dpkg-divert --quiet --local --rename --divert "$file.kit" --add "$file"
  done
  # The postinst runs `python3.X -E -S /usr/lib/python3.X/py_compile.py FILES`: an empty script in its
  # place exits at once; without py3compile, its postinst skips the call.
  mkdir -p "/usr/lib/$python"
  : > "/usr/lib/$python/py_compile.py"
  apt_install python3 "openmpi-bin=$OPENMPI_DEB"
  rm "/usr/lib/$python/py_compile.py"
  for file in "${diverted[@]}"; do
    dpkg-divert --quiet --local --rename --remove "$file"
  done
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

# The standard library compiled, the files Debian's scripts compile at install (runtime diverted them):
# the modules of libpython3.X-minimal and -stdlib under /usr/lib/python3.X, and Debian's helpers under
# /usr/share/python3. As Debian does: by mtime (its .pyc files record the source's mtime and size), named
# by the module's path in the image. ROOT (the Dockerfile's native stage): the target's file system,
# copied there with its mtimes; this Python compiles it, after checking it is the target's own version,
# and only the compiled files are left under /out. One process, in name order, hash seed 0, as hooks does.
stdlib() {
  local root=${1:-}
  root=${root%/}
  local admin=$root/var/lib/dpkg python version mine
  # (The status file also knows packages that are not installed, such as libpython3.4-minimal.)
  python=$(dpkg-query --admindir="$admin" -W -f='${db:Status-Status} ${Package}\n' 'libpython3.*-minimal' |
    awk '$1 == "installed" { print $2; exit }')
  version=$(dpkg-query --admindir="$admin" -W -f='${Version}' "$python")
  python=${python#lib}
  python=${python%-minimal}
  if [ -n "$root" ]; then
    mine=$(dpkg-query -W -f='${Version}' "lib$python-minimal:$(dpkg --print-architecture)" 2>/dev/null || true)
    if [ "$mine" != "$version" ]; then
      echo "error: the image's $python is $version but this platform's is ${mine:-not installed};" \
        "the suite's Python differs between the build host's platform and the image's" >&2
      exit 1
    fi
  fi
  {
    dpkg-query --admindir="$admin" -L "lib$python-minimal" "lib$python-stdlib" | grep -E "^/usr/lib/$python/.*\.py$"
    dpkg-query --admindir="$admin" -L python3-minimal python3 | grep -E '^/usr/share/python3/.*\.py$'
  } | LC_ALL=C sort -u > /tmp/stdlib.txt
  PYTHONHASHSEED=0 "/usr/bin/$python" -S - "$root" /tmp/stdlib.txt > /tmp/stdlib-pyc.txt <<'COMPILE'
import importlib.util, os, py_compile, sys

root, listing = sys.argv[1], sys.argv[2]
for name in open(listing).read().split():
    path = root + name
    if not os.path.lexists(path):
        continue
    source = path
    if os.path.islink(path) and os.path.isabs(os.readlink(path)):
        source = root + os.readlink(path)  # a link within the image, followed there, not on this platform
    if not os.path.exists(source):
        continue
    cfile = importlib.util.cache_from_source(path)
    py_compile.compile(source, cfile=cfile, dfile=name, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    print(cfile[len(root):].lstrip("/"))
COMPILE
  if [ -n "$root" ]; then
    mkdir -p /out
    tar -C "$root" -cf - -T /tmp/stdlib-pyc.txt | tar -C /out -xf -
  fi
  rm -f /tmp/stdlib.txt /tmp/stdlib-pyc.txt
}

# The last step of the final stage. The SBOM first, then the build's own traces: two builds of the
# same inputs (make reproduce) must give the same files, and each line below removes or fixes one
# thing that differed, measured, with its reason.
sbom() {
  # /opt/venv was made and compiled on the build host's platform: by the image's own Python version, or
  # every module would be compiled again at each start.
  local made running
  made=$(sed -n 's/^version *= *//p' /opt/venv/pyvenv.cfg)
  running=$(python3 -c 'import platform; print(platform.python_version())')
  if [ "$made" != "$running" ]; then
    echo "error: /opt/venv was made by Python $made, but the image's is $running;" \
      "the suite's Python differs between the build host's platform and the image's" >&2
    exit 1
  fi
  local epoch=${SOURCE_DATE_EPOCH:-}
  if [ -z "$epoch" ] || [ "$epoch" = unset ]; then
    epoch=$(date +%s)
    echo "warning: SOURCE_DATE_EPOCH is not set (make image and make sif pass the build inputs' last commit time);" \
      "this build's time goes into the SBOM and /etc/shadow, so no rebuild will match it" >&2
  fi
  SOURCE_DATE_EPOCH=$epoch PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/opt/sbom-tool /opt/venv/bin/python "$kit/sbom.py" \
    write /opt/mpi4py-kit/sbom.cdx.json --base "$BASE" --platform "${PLATFORM:?PLATFORM must name the platform built for}" \
    --sources /opt/sbom-tool/sources.txt --lock "$kit/requirements/image.txt"
  tidy "$epoch"
}

tidy() {
  local epoch=$1
  # dpkg's and apt's logs record this build's time.
  rm -f /var/log/dpkg.log /var/log/alternatives.log /var/log/apt/*.log /var/log/apt/eipp.log.xz
  # The previous copies dpkg, debconf and useradd keep (the state before this build's last change).
  rm -f /var/lib/dpkg/status-old /var/lib/dpkg/diversions-old /var/lib/dpkg/statoverride-old \
    /var/cache/debconf/*.dat-old /etc/passwd- /etc/group- /etc/shadow- /etc/gshadow- /etc/subuid- /etc/subgid-
  # ldconfig's auxiliary cache records each library's inode and ctime in this build's file system.
  rm -f /var/cache/ldconfig/aux-cache
  # useradd wrote the build's day as the user's last password change (/etc/shadow's third field;
  # shadow reads SOURCE_DATE_EPOCH in some versions only): the build inputs' day, for the user mpi alone.
  sed -i -E "s/^(mpi:[^:]*:)[0-9]+:/\1$((epoch / 86400)):/" /etc/shadow
}

"${1:?usage: install.sh builder|assemble|hooks|runtime|stdlib|sbom}" "${@:2}"
