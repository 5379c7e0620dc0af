#!/usr/bin/env bash
# Start one node of the test cluster: munge, then slurmctld or slurmd in the foreground.
#   node-entry controller | compute
set -euo pipefail
role=${1:?usage: node-entry controller|compute}
[ -e /dev/fuse ] && chmod 666 /dev/fuse
# The per-cluster key arrives on a volume; munge insists on strict ownership.
install -o munge -g munge -m 0400 /run/munge-key/munge.key /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
runuser -u munge -- /usr/sbin/munged
# The shared scratch (a volume on every node): the user's folder in it is theirs.
install -d -o hpcuser -g hpcuser -m 0755 /scratch/hpcuser
case $role in
  controller)
    install -d -o slurm -g slurm /var/spool/slurmctld
    exec /usr/sbin/slurmctld -D -i
    ;;
  compute)
    install -d /var/spool/slurmd
    exec /usr/sbin/slurmd -D -N "$(hostname)"
    ;;
  *) echo "usage: node-entry controller|compute" >&2; exit 2 ;;
esac
