# Shared by the bench scripts: a work dir, and every process they start
# stopped by its pid (and what it left behind) on exit.
# Source after `cd` to the repo root; then append pids to PIDS, and the pids of
# `unshare --pid --fork ...` to NS_PIDS (their namespace is killed by its PID 1).

WORK=$(mktemp -d)
PIDS=()
NS_PIDS=() # pids of `unshare --pid --fork` whose namespace is killed on exit (stop_ns)

descendants() { # every descendant pid of $1, from the ppid column of ps
  local kids
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null || true)
  for k in $kids; do echo "$k"; descendants "$k"; done
}

stop_pid() { # stop_pid PID: SIGTERM, up to 10 s, then SIGKILL for it and what it left
  local p=$1 left
  left=$(descendants "$p")
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$p" 2>/dev/null || true
  for d in $left; do kill -KILL "$d" 2>/dev/null || true; done
}

ns_init() { # ns_init UNSHARE_PID: host pid of the namespace's PID 1 (unshare's child)
  local p
  p=$(ps -o pid= --ppid "$1" 2>/dev/null) || true
  echo $p | cut -d ' ' -f 1
}

stop_ns() { # stop_ns UNSHARE_PID: SIGKILL to the namespace's PID 1 (the kernel
  # then kills every process of the namespace), unshare reaped, pid forgotten.
  # A pid not in NS_PIDS (already stopped, or never started) is left alone.
  local u=${1:-} init i known=0
  for i in "${NS_PIDS[@]}"; do
    if [ "$i" = "$u" ]; then known=1; fi
  done
  [ $known = 1 ] || return 0
  init=$(ns_init "$u")
  if [ -n "$init" ]; then kill -KILL "$init" 2>/dev/null || true; fi
  for _ in $(seq 200); do kill -0 "$u" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$u" 2>/dev/null; then stop_pid "$u"; fi
  wait "$u" 2>/dev/null || true
  for i in "${!NS_PIDS[@]}"; do
    if [ "${NS_PIDS[$i]}" = "$u" ]; then unset 'NS_PIDS[i]'; fi
  done
}

cleanup() {
  for p in "${NS_PIDS[@]}"; do stop_ns "$p"; done
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() { # wait_for SECONDS CMD...: until CMD succeeds (its output discarded)
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.05
  done
}
