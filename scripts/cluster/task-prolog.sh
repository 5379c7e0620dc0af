#!/bin/sh
# Slurm's TaskProlog: each line "export NAME=value" it prints is set in the task's
# environment. Jobs get what a real cluster gives them: a scratch shared by every
# node and writable by the user, as their TMPDIR (the working directory, /shared,
# is the repository, read-only).
echo "export SCRATCH=/scratch/$SLURM_JOB_USER"
echo "export TMPDIR=/scratch/$SLURM_JOB_USER"
