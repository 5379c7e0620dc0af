#!/usr/bin/env bash
# Make sure what the container tests need is there: a Docker engine that answers.
#
#   scripts/provision.sh docker
#
# Installs Debian's docker.io and starts the engine when running as root on a
# Debian-like host; elsewhere says what to do. With REQUIRE_CONTAINERS=1 (CI) a
# missing engine is an error; otherwise the container tests are skipped.
set -euo pipefail

want=${1:-docker}
[ "$want" = docker ] || { echo "usage: scripts/provision.sh docker" >&2; exit 2; }

answers() { timeout 20 docker info >/dev/null 2>&1; }

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
