#!/usr/bin/env bash
# Build the Debian base image locally when it cannot be pulled.
#
# Air-gapped sites (and CI machines with no container registry) cannot pull
# debian:<suite>-slim. This bootstraps the same suite from the Debian mirror
# the host already uses and imports it under the name the Dockerfile's FROM
# expects, so `docker build` finds it locally.
#
# Usage: scripts/image/base-image.sh SUITE [IMAGE_NAME]
#   DEBIAN_MIRROR=http://... overrides the mirror read from the host's apt sources.
#   PLATFORM=linux/arm64 makes the base for another architecture (debootstrap runs its
#   second stage under qemu emulation: scripts/provision.sh emulation). Docker 20.10's
#   `docker import` would record the host's architecture, so that root is added to an
#   empty image by a BuildKit build with --platform (DOCKER must be a client that
#   builds with BuildKit, DOCKER_BUILDKIT=1), which records the right one.
set -euo pipefail

suite=${1:?usage: scripts/image/base-image.sh SUITE [IMAGE_NAME]}
image=${2:-debian:${suite}-slim}
docker=${DOCKER:-docker}
platform=${PLATFORM:-}
arch=${platform#*/}

# macOS has no timeout(1); there the pull simply has no time limit.
limit() { if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi; }

if "$docker" image inspect "$image" >/dev/null 2>&1; then
  present=$("$docker" image inspect --format '{{.Architecture}}' "$image")
  if [ -z "$platform" ] || [ "$present" = "$arch" ]; then
    echo "base image $image: present"
    exit 0
  fi
  echo "base image $image: present, but for $present, not $arch: making it again"
fi

echo "base image $image: trying to pull it"
if limit 120 "$docker" pull ${platform:+--platform "$platform"} "$image" >/dev/null 2>&1; then
  echo "base image $image: pulled"
  exit 0
fi

# The mirror comes from the host, never from this repository.
host_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822: the first URIs line of a stanza whose Suites are not *-security.
    uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ { if ($0 !~ /security/ && u != "") { print u; exit } }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
}

mirror=${DEBIAN_MIRROR:-$(host_mirror)}
if [ -z "$mirror" ]; then
  echo "error: cannot pull $image and found no Debian mirror in the host's apt sources; set DEBIAN_MIRROR=http://your.mirror/debian and retry" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "base image $image: installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  else
    echo "error: cannot pull $image and debootstrap is missing; install it (sudo apt-get install debootstrap) or make $image available to $docker" >&2
    exit 1
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "error: cannot pull $image; building it with debootstrap needs root: sudo $0 $suite $image" >&2
  exit 1
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/base-${suite}.XXXXXX")
trap 'rm -rf "$root"' EXIT
options=(--variant=minbase)
took="about a minute"
if [ -n "$platform" ]; then
  options+=(--arch="$arch")
  took="about 3 minutes, under emulation"
fi
# A debootstrap older than the suite has no script for it (bookworm's knows no forky):
# the sid script bootstraps any suite after the newest it knows.
script=()
if [ ! -e "/usr/share/debootstrap/scripts/$suite" ]; then
  script=(/usr/share/debootstrap/scripts/sid)
fi
echo "base image $image: debootstrap ${options[*]} $suite from $mirror ($took)"
start=$SECONDS
debootstrap "${options[@]}" "$suite" "$root" "$mirror" "${script[@]}" 2>&1 |
  awk '/^I: Retrieving|^I: Validating|^I: Extracting|^I: Unpacking|^I: Configuring/ { n++; if (n % 25 == 0) printf "  ... %s\n", $0; next } /^[EW]:/ { print "  " $0 }'
[ -x "$root/bin/sh" ] || { echo "error: debootstrap of $suite from $mirror failed; rerun: debootstrap ${options[*]} $suite /tmp/x $mirror" >&2; exit 1; }
case $suite in
  forky|sid|unstable|testing)
    # A frozen mirror serves these suites with a Release file past its Valid-Until date.
    echo 'Acquire::Check-Valid-Until "false";' > "$root/etc/apt/apt.conf.d/99mpi4py-kit-snapshot" ;;
esac
# Same trims as the official slim images: no apt lists, no docs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/*
if [ -z "$platform" ]; then
  tar -C "$root" -c . | "$docker" import - "$image" >/dev/null
else
  # The root as the only layer of an image built FROM scratch for $platform. /dev stays
  # empty, as in the official images (the engine provides it); no step runs, so this
  # needs no emulation.
  context=$(mktemp -d "${TMPDIR:-/tmp}/base-context.XXXXXX")
  trap 'rm -rf "$root" "$context"' EXIT
  tar -C "$root" --exclude='./dev/*' -cf "$context/rootfs.tar" .
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' > "$context/Dockerfile"
  DOCKER_BUILDKIT=1 "$docker" build -q --platform "$platform" -t "$image" "$context" >/dev/null
  present=$("$docker" image inspect --format '{{.Architecture}}' "$image")
  [ "$present" = "$arch" ] || { echo "error: $image was recorded as $present, not $arch; $docker must build with BuildKit: DOCKER_BUILDKIT=1 $docker build --platform $platform" >&2; exit 1; }
fi
echo "base image $image: built from $mirror in $((SECONDS - start)) s"
