#!/bin/bash
# How one rank enters the image when srun starts it (APPTAINER_MODE; the kit
# writes the srun line, scripts/mpikit/launch.py, and runs this on every task):
#
#   apptainer-rank.sh MODE SIF [apptainer exec options ...] -- COMMAND [ARGS ...]
#
#   exec      apptainer exec OPTIONS SIF COMMAND: one Apptainer start per rank.
#   sharens   the same with --sharens: the ranks of a node share one namespace.
#   sandbox   The SIF unpacked once per node into a folder on node-local disk
#             ($MPI4PY_KIT_SANDBOXES, default /tmp/mpi4py-kit-UID), so no rank
#             pays for a FUSE mount of the image; the node's first rank unpacks
#             it, the others wait, and the folder stays for the next job of the
#             same SIF build (reused on purpose; remove the folder to reclaim it).
#             Then: apptainer exec --sharens OPTIONS FOLDER COMMAND.
#   join      The same unpacked folder (the kit's default); the node's first
#             rank of the job step is the holder: it runs COMMAND with
#             apptainer exec --sharens OPTIONS FOLDER, whose image shell
#             publishes its PID, and it waits for nothing. Every other rank of
#             the node waits in the node's lock (a small watcher of this script
#             holds it until the PID is published), then enters the holder's
#             user and mount namespaces with nsenter (a few ms instead of an
#             Apptainer start) and execs COMMAND there: it stays the process
#             srun started (signals, PMI, exit status), and applies the image's
#             environment and the --env OPTIONS itself, as apptainer exec would.
#             The watcher removes the step's state when the node's last rank is
#             gone, with or without a Slurm epilog. A node with one rank of the
#             step runs it as sandbox. Where joining is refused (no nsenter,
#             setuid Apptainer without user namespaces, a seccomp policy), the
#             node says so in one line and runs as sandbox.
#   instance  One Apptainer instance per node and job step, started by the
#             node's first rank with OPTIONS, joined by every rank (apptainer
#             exec instance://NAME COMMAND), stopped by the last to leave, or on
#             SIGTERM/SIGINT; the test cluster's Slurm epilog stops what a killed
#             step left.
set -euo pipefail

usage() {
  echo "usage: apptainer-rank.sh exec|sharens|sandbox|join|instance SIF [options] -- COMMAND" >&2
  exit 2
}
# Every rank runs this script: what it does per rank is measured (make bench-curve, enter_cpu), so
# it uses bash's own tests and expansions where a command would cost a fork and an exec, and names
# /bin/bash itself (an `env bash` is one exec more per rank; every Linux node has /bin/bash).
uid=$EUID
base=${MPI4PY_KIT_SANDBOXES:-/tmp/mpi4py-kit-$uid}
# Apptainer's PATH inside a container, before the image's %environment adds to it.
CONTAINER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Sleeps without a fork (join's watcher waits for its holder's PID in steps of 5 ms): a read with a timeout
# on a pipe that nobody writes to.
nap() {
  [ -n "${napfd:-}" ] || exec {napfd}<> <(:)
  read -r -t "$1" -u "$napfd" || true
}

# The PIDs of a join step's ranks (one per line in $1/ranks) are all gone.
ranks_gone() {
  local pid
  [ -s "$1/ranks" ] || return 0
  while read -r pid; do
    if kill -0 "$pid" 2>/dev/null; then return 1; fi
  done <"$1/ranks"
  return 0
}

# Sets $holder to the PID in $state/holder.pid if that process is this user's and holds this step's image
# (its environment names the step and the folder: a stale or foreign PID is never joined).
verified_holder() {
  local pid="" var
  [ -r "$state/holder.pid" ] && read -r pid <"$state/holder.pid"
  [[ $pid =~ ^[0-9]+$ ]] && [ -O "/proc/$pid" ] && [ -r "/proc/$pid/environ" ] || return 1
  while IFS= read -r -d '' var; do
    if [ "$var" = "MPI4PY_KIT_HOLDER=$token" ]; then
      holder=$pid
      return 0
    fi
  done <"/proc/$pid/environ"
  return 1
}

# ---- join's watcher: apptainer-rank.sh --watch STATE TOKEN RANK (started by the node's holder rank) ----
# Runs in its own session, outside srun's process group. First it holds the node's lock (fd 9, handed over
# by the holder rank) until that rank's image has published its PID, so that the node's other ranks wait
# in flock, without polling each, and find the holder as soon as they get the lock; if the rank ends first
# they find none and the next becomes the holder. Then, once every rank of the step on this node is gone,
# it removes the step's state, holding the lock (so no rank can register meanwhile; a rank that comes
# later starts afresh). Several watchers of one step (a holder that failed, and the next) do no harm.
watch() {
  # Nothing but the ranks' going may end the watcher early (a failed command, a signal): a watcher gone
  # leaves the step's state.
  set +e
  trap '' HUP INT
  state=$1 token=$2
  local rank=$3 holder="" i
  for ((i = 0; i < 12000; i++)); do  # 60 s
    if verified_holder || ! kill -0 "$rank" 2>/dev/null; then break; fi
    nap 0.005
  done
  if [ -z "$holder" ] && kill -0 "$rank" 2>/dev/null; then
    echo "the holder did not start within 60 s" >"$state/refused"
  fi
  exec 9>&-  # the node's other ranks go on
  exec 9>"$base/.join.lock"
  while :; do
    nap 0.2
    if ranks_gone "$state"; then
      flock 9
      if ranks_gone "$state"; then break; fi  # still gone with the lock held: no rank can register now
      flock -u 9
    fi
  done
  rm -rf "$state"
}
if [ "${1:-}" = --watch ]; then
  shift
  watch "$@"
  exit 0
fi

[ $# -ge 2 ] || usage
mode=$1 sif=$2
shift 2
opts=()  # the apptainer exec options; "$@" becomes the command
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  opts+=("$1")
  shift
done
[ "${1:-}" = "--" ] || usage
shift

# Only a folder of this user's own may hold the image it runs and the state of its steps (/tmp is everyone's).
own_base() {
  [ -d "$base" ] || mkdir -m 0700 "$base" 2>/dev/null || true
  if [ ! -O "$base" ] || [ -L "$base" ]; then
    echo "error: $base on $(hostname) is not a folder of $(id -un)'s own; set MPI4PY_KIT_SANDBOXES" >&2
    exit 1
  fi
}

# The SIF unpacked once per node (sandbox and join): sets $dir to the folder, or to the SIF if unpacking failed.
unpack() {
  # One folder per SIF build: its content's SHA-256 names it when the kit verified the SIF (VERIFY_KEY:
  # MPI4PY_KIT_SIF_DIGEST), else its size, modification time and inode.
  local name=${sif##*/}
  dir=$base/${name%.sif}-${MPI4PY_KIT_SIF_DIGEST:-$(stat -L -c '%s-%Y-%i' "$sif")}
  [ ! -e "$dir/.mpi4py-kit-ready" ] || return 0  # unpacked: marked ready only once complete
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
}

# Inside the holder's namespaces: the rank's folder, the image's environment as apptainer exec applies it
# (/.singularity.d/env, after Apptainer's PATH), then the --env options, then the command.
# Expanded by the shell inside the image, not here:
# shellcheck disable=SC2016
ENTER='cd "$1" || exit 126
shift
PATH=$0
for script in /.singularity.d/env/*.sh; do
  if [ -f "$script" ]; then . "$script"; fi
done
while [ "$1" != -- ]; do export "$1"; shift; done
shift
exec "$@"'

# Says once per node why it cannot join, then runs as sandbox.
refuse() {
  echo "apptainer-rank.sh: APPTAINER_MODE=join is not possible on $(hostname): $1; this node runs" \
    "APPTAINER_MODE=sandbox" >&2
}

# How many tasks of this step run on this node (Slurm's SLURM_STEP_TASKS_PER_NODE, such as "3(x2),1", and
# SLURM_NODEID); sets $here, or leaves it empty when Slurm did not say.
tasks_here() {
  local spec=${SLURM_STEP_TASKS_PER_NODE:-} item count reps first=0
  here=""
  [[ ${SLURM_NODEID:-} =~ ^[0-9]+$ ]] || return 0
  for item in ${spec//,/ }; do
    if [[ $item =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then
      count=${BASH_REMATCH[1]} reps=${BASH_REMATCH[2]}
    elif [[ $item =~ ^[0-9]+$ ]]; then
      count=$item reps=1
    else
      return 0
    fi
    if ((SLURM_NODEID < first + reps)); then
      here=$count
      return 0
    fi
    first=$((first + reps))
  done
}

# verified_holder, allowing the holder a moment when its process is this user's and alive but does not read
# as holding the step (its image's shell becoming the command, exec: a full test run once saw a second holder
# start beside a live first one on one node). Up to 1 s in steps of 5 ms; a stale or foreign PID still fails.
settled_holder() {
  local pid="" i
  verified_holder && return 0
  [ -r "$state/holder.pid" ] && read -r pid <"$state/holder.pid"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    nap 0.005
    verified_holder && return 0
  done
  return 1
}

# The node's first rank of a step becomes the holder: it registers, hands the node's lock to a watcher
# (which keeps it until this rank's image has published its PID), and runs its command with apptainer exec,
# whose image process publishes its PID for the node's other ranks. It waits for nothing, and nothing of it
# outlives the step: the holder is the rank itself.
become_holder() {
  mkdir -m 0700 "$state" 2>/dev/null || true  # in $base, this user's own 0700 folder
  rm -f "$state/holder.pid"
  echo $$ >>"$state/ranks"
  setsid bash "${BASH_SOURCE[0]}" --watch "$state" "$token" $$ </dev/null >/dev/null 2>&1 &
  exec 9>&-
  # $$ and $1 are the image's shell's (its PID is the holder's), not this one's:
  # shellcheck disable=SC2016
  exec apptainer exec --sharens --env "MPI4PY_KIT_HOLDER=$token" "${opts[@]}" "$dir" /bin/sh -c \
    'echo $$ >"$1" && shift && exec "$@"' sh "$state/holder.pid" "$@"
}

join() {
  local step=${SLURM_JOB_ID:-0}.${SLURM_STEP_ID:-0} holder="" refused="" said here
  state=$base/join-$step token="$step $dir"
  # What every rank sees alike is decided by each; the node's first rank (SLURM_LOCALID 0) says it.
  if ! command -v nsenter >/dev/null 2>&1; then
    refused="no nsenter (util-linux) on PATH"
  elif [ "$dir" = "$sif" ]; then
    refused="the SIF could not be unpacked (see $base/build.log)"
  fi
  if [ -n "$refused" ]; then
    [ "${SLURM_LOCALID:-0}" != 0 ] || refuse "$refused"
    exec apptainer exec --sharens "${opts[@]}" "$dir" "$@"
  fi
  # A node with one rank of the step has no rank to join it: that rank runs as sandbox, and keeps no state.
  tasks_here
  if [ "$here" = 1 ]; then
    exec apptainer exec --sharens "${opts[@]}" "$dir" "$@"
  fi
  # One holder per node and step: the first rank to take the lock becomes it; the others wait in flock
  # while its watcher holds the lock, then register under it (the watcher keeps the state while they run).
  exec 9>"$base/.join.lock"
  flock 9
  if [ -e "$state/refused" ]; then
    refused=$(<"$state/refused")
    echo $$ >>"$state/ranks"
  elif settled_holder; then
    echo $$ >>"$state/ranks"
  else
    become_holder "$@"  # none yet, or the one before failed
  fi
  # The first rank that joins tries nsenter once for the node and step.
  if [ -z "$refused" ] && [ ! -e "$state/entered" ]; then
    if said=$(nsenter -t "$holder" -U -m --preserve-credentials -r -- /bin/true 2>&1); then
      : >"$state/entered"
    else
      refused="nsenter cannot enter the holder's namespaces (${said:-refused}): setuid Apptainer without user \
namespaces, or a seccomp policy"
      echo "$refused" >"$state/refused"
    fi
  fi
  if [ -n "$refused" ] && [ ! -e "$state/said" ]; then  # once per node and step
    : >"$state/said"
    refuse "$refused"
  fi
  exec 9>&-  # closing the only descriptor of the lock releases it
  if [ -n "$refused" ]; then
    exec apptainer exec --sharens "${opts[@]}" "$dir" "$@"
  fi
  local env=() i
  for ((i = 0; i < ${#opts[@]}; i++)); do
    if [ "${opts[i]}" = --env ]; then env+=("${opts[i + 1]}"); fi
  done
  exec nsenter -t "$holder" -U -m --preserve-credentials -r -- /bin/sh -c "$ENTER" "$CONTAINER_PATH" "$PWD" \
    APPTAINER_CONTAINER="$dir" APPTAINER_NAME="${dir##*/}" "${env[@]}" -- "$@"
}

instance() {
  local name=mpi4py-kit-${SLURM_JOB_ID:-0}-${SLURM_STEP_ID:-0}
  local state=/tmp/mpi4py-kit-$uid-$name
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
      if ! apptainer instance start "${opts[@]}" "$sif" "$name" >"$state.log" 2>&1 9>&-; then
        echo "error: apptainer instance start $sif $name failed on $(hostname):" >&2
        cat "$state.log" >&2
        exit 1
      fi
    fi
    echo $((count + 1)) >"$state.count"
  ) 9>"$state.lock"
  trap 'leave; exit 143' TERM
  trap 'leave; exit 130' INT
  local status=0
  apptainer exec "instance://$name" "$@" || status=$?
  trap - TERM INT
  leave
  exit "$status"
}

case $mode in
  exec) exec apptainer exec "${opts[@]}" "$sif" "$@" ;;
  sharens) exec apptainer exec --sharens "${opts[@]}" "$sif" "$@" ;;
  sandbox)
    own_base
    unpack
    exec apptainer exec --sharens "${opts[@]}" "$dir" "$@"
    ;;
  join)
    own_base
    unpack
    join "$@"
    ;;
  instance) instance "$@" ;;
  *) echo "apptainer-rank.sh: unknown mode $mode (exec, sharens, sandbox, join or instance)" >&2; exit 2 ;;
esac
