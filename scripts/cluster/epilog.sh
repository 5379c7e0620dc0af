#!/bin/sh
# Slurm's Epilog, on each node as root when a job ends: stop what its steps left of
# APPTAINER_MODE=instance. An instance is its own session, so a step killed before
# its last rank could stop it (MPI_Abort, scancel) leaves it; cgroup process
# tracking would catch it, this cluster tracks process groups (slurm.conf).
for name in $(runuser -u "$SLURM_JOB_USER" -- apptainer instance list 2>/dev/null |
              awk -v prefix="mpi4py-kit-$SLURM_JOB_ID-" 'index($1, prefix) == 1 { print $1 }'); do
  runuser -u "$SLURM_JOB_USER" -- apptainer instance stop "$name" >/dev/null 2>&1 || true
done
for leftover in count log lock; do rm -f /tmp/mpi4py-kit-*-"mpi4py-kit-$SLURM_JOB_ID"-*."$leftover"; done
exit 0
