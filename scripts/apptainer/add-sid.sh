#!/usr/bin/env bash
# Add Debian sid at low priority, from the same mirror the image already uses
# (no mirror host is written into the repository).
set -euo pipefail
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "error: no Debian mirror found in the image's apt sources" >&2; exit 1; }
# A frozen sid snapshot has an expired Release file: accept it for sid only.
echo "deb [check-valid-until=no] $mirror sid main" > /etc/apt/sources.list.d/sid.list
printf 'Package: *\nPin: release a=unstable\nPin-Priority: 100\n' > /etc/apt/preferences.d/sid
