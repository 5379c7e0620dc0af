#!/usr/bin/env bash
# How one rank enters the image when srun starts it, for the modes that need
# more than one `apptainer exec` (APPTAINER_MODE=sandbox|instance; the kit
# writes the srun line, scripts/mpikit/launch.py, and runs this on every task;
# exec and sharens are here too, for batch scripts that take any mode):
#
#   apptainer-rank.sh MODE SIF [apptainer exec options ...] -- COMMAND [ARGS ...]
#
#   sandbox   The SIF unpacked once per node into a folder on node-local disk
#             ($MPI4PY_KIT_SANDBOXES, default /tmp/mpi4py-kit-UID), so no rank
#             pays for a FUSE mount of the image; the node's first rank unpacks
#             it, the others wait, and the folder stays for the next job of the
#             same SIF build (reused on purpose; remove the folder to reclaim it).
#             Then: apptainer exec --sharens OPTIONS FOLDER COMMAND.
#   instance  One Apptainer instance per node and job step, started by the
#             node's first rank with OPTIONS, joined by every rank (apptainer
#             exec instance://NAME COMMAND), stopped by the last to leave, or on
#             SIGTERM/SIGINT; the test cluster's Slurm epilog stops what a killed
#             step left.
set -euo pipefail
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
mode=$1 sif=$2
shift 2
opts=""  # the apptainer exec options, quoted for eval; "$@" becomes the command
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  opts="$opts $(quote "$1")"
  shift
done
[ "${1:-}" = "--" ] || { echo "usage: apptainer-rank.sh exec|sharens|sandbox|instance SIF [options] -- COMMAND" >&2; exit 2; }
shift

uid=$(id -u)
case $mode in
  sandbox)
    base=${MPI4PY_KIT_SANDBOXES:-/tmp/mpi4py-kit-$uid}
    # One folder per SIF build: its size, modification time and inode name it.
    dir=$base/$(basename "$sif" .sif)-$(stat -L -c '%s-%Y-%i' "$sif")
    # Only a folder of this user's own may hold the image it runs (/tmp is everyone's).
    mkdir -m 0700 "$base" 2>/dev/null || true
    if [ ! -O "$base" ] || [ -L "$base" ]; then
      echo "error: $base on $(hostname) is not a folder of $(id -un)'s own; set MPI4PY_KIT_SANDBOXES" >&2
      exit 1
    fi
    (
      flock 9
      if [ ! -e "$dir/.mpi4py-kit-ready" ]; then
        rm -rf "$dir.partial"
        if apptainer build --sandbox "$dir.partial" "$sif" >"$base/build.log" 2>&1; then
          touch "$dir.partial/.mpi4py-kit-ready"
          mv "$dir.partial" "$dir"
        else
          rm -rf "$dir.partial"
          echo "warning: could not unpack $sif into $dir on $(hostname) (see $base/build.log); this rank" \
            "runs the SIF itself" >&2
        fi
      fi
    ) 9>"$base/.lock"
    [ -e "$dir/.mpi4py-kit-ready" ] || dir=$sif
    ;;
  instance)
    name=mpi4py-kit-${SLURM_JOB_ID:-0}-${SLURM_STEP_ID:-0}
    state=/tmp/mpi4py-kit-$uid-$name
    ;;
  exec|sharens)
    # One apptainer exec per rank, as the kit runs them itself; here for batch scripts that pass
    # any mode the same way (slurm/example.sbatch).
    flag=""
    if [ "$mode" = sharens ]; then flag=--sharens; fi
    eval "exec apptainer exec $flag $opts \"\$sif\" \"\$@\""
    ;;
  *) echo "apptainer-rank.sh: unknown mode $mode (exec, sharens, sandbox or instance)" >&2; exit 2 ;;
esac

if [ "$mode" = sandbox ]; then
  eval "exec apptainer exec --sharens $opts \"\$dir\" \"\$@\""
fi

leave() {
  (
    flock 9
    left=$(($(cat "$state.count") - 1))
    echo "$left" >"$state.count"
    if [ "$left" -le 0 ]; then
      apptainer instance stop "$name" >/dev/null 2>&1 9>&- || true
      rm -f "$state.count" "$state.log"
    fi
  ) 9>"$state.lock"
}
(
  flock 9
  count=$(cat "$state.count" 2>/dev/null || echo 0)
  if [ "$count" -le 0 ]; then
    # The instance outlives this shell: it must not hold the lock (fd 9) or the task's output,
    # or the next rank waits on the lock and srun on the output for ever.
    if ! eval "apptainer instance start $opts \"\$sif\" \"\$name\"" >"$state.log" 2>&1 9>&-; then
      echo "error: apptainer instance start $sif $name failed on $(hostname):" >&2
      cat "$state.log" >&2
      exit 1
    fi
  fi
  echo $((count + 1)) >"$state.count"
) 9>"$state.lock"
trap 'leave; exit 143' TERM
trap 'leave; exit 130' INT
status=0
apptainer exec "instance://$name" "$@" || status=$?
trap - TERM INT
leave
exit "$status"
