#!/usr/bin/env bash
# Entry point: run apptainer as the unprivileged user "hpcuser" (as root,
# Apptainer wants capabilities a container does not have).
set -euo pipefail
[ -e /dev/fuse ] && chmod 666 /dev/fuse
exec setpriv --reuid=1000 --regid=1000 --init-groups env HOME=/home/hpcuser USER=hpcuser apptainer "$@"
