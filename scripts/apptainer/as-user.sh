#!/usr/bin/env bash
# Entry point: run apptainer as the unprivileged user "hpcuser" (as root,
# Apptainer wants capabilities a container does not have).
set -euo pipefail
[ -e /dev/fuse ] && chmod 666 /dev/fuse
# Apptainer opens another architecture's SIF (PLATFORM=linux/arm64) only when it sees qemu
# registered with the F flag in binfmt_misc, which the container's fresh /proc lacks: mount
# it (the registrations are the host kernel's). Where that is refused, nothing changes.
if [ -d /proc/sys/fs/binfmt_misc ] && [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
exec setpriv --reuid=1000 --regid=1000 --init-groups env HOME=/home/hpcuser USER=hpcuser apptainer "$@"
