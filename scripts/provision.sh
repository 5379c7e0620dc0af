#!/usr/bin/env bash
# Make sure what the container tests need is there: a Docker engine that answers.
#
#   scripts/provision.sh docker
#   scripts/provision.sh emulation [MACHINE]   (default aarch64: PLATFORM=linux/arm64)
#
# Installs Debian's docker.io and starts the engine when running as root on a
# Debian-like host; elsewhere says what to do. With REQUIRE_CONTAINERS=1 (CI) a
# missing engine is an error; otherwise the container tests are skipped.
# `emulation` registers qemu-user for another architecture in binfmt_misc, as root.
set -euo pipefail

want=${1:-docker}
case $want in
  docker | emulation) ;;
  *) echo "usage: scripts/provision.sh docker | emulation [MACHINE]" >&2; exit 2 ;;
esac

if [ "$want" = emulation ]; then
  machine=${2:-aarch64}
  entry=/proc/sys/fs/binfmt_misc/qemu-$machine
  # Enabled, with the F flag: the interpreter is opened once at registration, so it
  # also runs binaries inside containers and user namespaces (Docker builds, Apptainer).
  registered() { [ -r "$entry" ] && grep -qx enabled "$entry" && grep -q '^flags:.*F' "$entry"; }
  if registered; then
    echo "emulation: qemu-$machine is registered (binfmt_misc, flags $(sed -n 's/^flags: //p' "$entry"))"
    exit 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: qemu-$machine is not registered in binfmt_misc; as root on Debian or Ubuntu: sudo bash scripts/provision.sh emulation $machine (elsewhere: install qemu-user-static and register it)" >&2
    exit 1
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  echo "emulation: installing qemu-user-static and binfmt-support (about 20 s)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq qemu-user-static binfmt-support >/dev/null
  # The packages register at install time; a host whose binfmt_misc was mounted later needs it again.
  registered || update-binfmts --enable "qemu-$machine" >/dev/null 2>&1 || true
  if registered; then
    echo "emulation: qemu-$machine is registered (binfmt_misc, flags $(sed -n 's/^flags: //p' "$entry"))"
    exit 0
  fi
  echo "error: qemu-user-static is installed but qemu-$machine is not registered with the F flag in binfmt_misc; see: update-binfmts --display qemu-$machine" >&2
  exit 1
fi

# macOS has no timeout(1); Docker Desktop's engine answers quickly or not at all.
answers() {
  if command -v timeout >/dev/null 2>&1; then timeout 20 docker info >/dev/null 2>&1; else docker info >/dev/null 2>&1; fi
}

give_up() {
  echo "docker: $1" >&2
  if [ "${REQUIRE_CONTAINERS:-0}" = 1 ]; then
    echo "error: REQUIRE_CONTAINERS=1 and no Docker engine; $2" >&2
    exit 1
  fi
  echo "docker: container tests will be skipped; $2" >&2
  exit 0
}

if answers; then
  echo "docker: engine answers ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  give_up "no engine answers and this is not root, so it cannot be installed or started here" \
    "start Docker (sudo systemctl start docker, or Docker Desktop) and rerun make test"
fi

if ! command -v dockerd >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 ||
    give_up "no dockerd and no apt-get to install one" "install Docker and rerun make test"
  echo "docker: installing docker.io from the Debian mirror (about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

echo "docker: starting the engine"
if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then
  :
else
  nohup dockerd >/var/log/mpikit-dockerd.log 2>&1 &
fi
for _ in $(seq 60); do
  if answers; then
    echo "docker: engine answers ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
    exit 0
  fi
  sleep 1
done
give_up "the engine did not answer within 60 s (log: /var/log/mpikit-dockerd.log)" \
  "check that log, start dockerd by hand and rerun make test"
