# Shared by the bench scripts: a work dir, and every process they start
# stopped by its pid (and what it left behind) on exit.
# Source after `cd` to the repo root; then append pids to PIDS.

WORK=$(mktemp -d)
PIDS=()

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

cleanup() {
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
