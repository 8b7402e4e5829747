#!/usr/bin/env bash
# Schedules and wake-ups (issue 15): JOBS services (default 1000), each
# `schedule = "@every 1s"` running `true`, under corral as PID 1 of a fresh
# PID namespace. Over SECS seconds (default 30) it counts corral's wake-ups,
# thread by thread: its voluntary context switches (a thread blocked, then
# was woken), from /proc/PID/task/*/status; involuntary ones (preemption by
# other work) are not wake-ups and are left out. The loop thread wakes for the tick, and each run
# costs its spawn, its output's end of file and its reap; nothing else may
# wake anything. The same JOBS with `@every 1h` (no tick in the window) show
# the idle floor, which must be 0.
#
# Usage: bench/schedule_idle.sh [CORRAL_BINARY]   (default target/release/corral)
# Needs root (unshare --pid). Prints per-thread wake-ups per tick, and as the
# LAST line exactly
#   RESULT jobs=N secs=S load=L idle_wakeups=N ticks=N runs=N skipped=N loop_per_tick=X wakeups_per_run=X
# ticks: the ticks taken in SECS (runs / JOBS): fewer than SECS when the
# machine cannot spawn JOBS processes a second.
# idle_wakeups: every wake-up of every corral thread over SECS with no tick
# due (the target is 0). loop_per_tick: the loop thread's wake-ups per tick,
# its JOBS spawns and reaps included; wakeups_per_run: all of corral's
# wake-ups while ticking, per run.
# Do not run it while something else loads the machine: the load average at
# the start is printed (load=), above 0.5 the figures mix in other work.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/corral}
[ -x "$BIN" ] || { echo "no corral binary at $BIN (cargo build --release)" >&2; exit 1; }
BIN=$(realpath "$BIN")
[ "$(id -u)" = 0 ] || { echo "needs root (unshare --pid)" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
JOBS=${JOBS:-1000}
SECS=${SECS:-30}
LOAD=$(cut -d ' ' -f 1 /proc/loadavg)
ulimit -n 65536 2>/dev/null || true

switches() { # switches PID: "comm:tid voluntary-switches" per thread of PID
  local t
  for t in /proc/"$1"/task/*; do
    [ -r "$t/status" ] || continue
    awk -v comm="$(cat "$t/comm" 2>/dev/null)" '
      /^voluntary_ctxt_switches/ { v = $2 }
      END { printf "%s:%s %d\n", comm, FILENAME, v }' "$t/status"
  done
}

total_runs() { # total_runs: the sum of every job's run count, from ctl status --json
  "$BIN" ctl --socket "$WORK/ctl.sock" status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sum(x.get("run", 0) for x in s), sum(x.get("skipped_ticks") or 0 for x in s),
      sum(1 for x in s if x["state"] in ("scheduled", "running")))'
}

measure() { # measure EVERY: start corral with JOBS jobs on EVERY, count for SECS
  local every=$1 dir="$WORK/services-${1// /}" u init
  rm -rf "$dir"; mkdir -p "$dir"
  for i in $(seq -w 1 "$JOBS"); do
    printf 'schedule = "@every %s"\ncommand = ["true"]\n' "$every" > "$dir/job$i.toml"
  done
  rm -f "$WORK/ctl.sock"
  unshare --pid --fork --mount-proc "$BIN" --services "$dir" --socket "$WORK/ctl.sock" \
    --log-level warn > /dev/null 2> "$WORK/corral.err" &
  u=$!
  NS_PIDS+=("$u")
  wait_for 30 test -S "$WORK/ctl.sock"
  init=$(ns_init "$u")
  # Every job armed, and a few ticks behind us (the first spawns warm up).
  local armed=0
  for _ in $(seq 100); do
    armed=$(total_runs | cut -d ' ' -f 3)
    [ "$armed" = "$JOBS" ] && break
    sleep 0.1
  done
  [ "$armed" = "$JOBS" ] || { echo "only $armed of $JOBS jobs armed" >&2; exit 1; }
  sleep 3
  read -r runs0 skipped0 _ <<< "$(total_runs)"
  switches "$init" | sed 's|:/proc/[0-9]*/task/|:|; s|/status||' | sort > "$WORK/before"
  sleep "$SECS"
  switches "$init" | sed 's|:/proc/[0-9]*/task/|:|; s|/status||' | sort > "$WORK/after"
  read -r runs1 skipped1 _ <<< "$(total_runs)"
  RUNS=$((runs1 - runs0))
  SKIPPED=$((skipped1 - skipped0))
  # Per thread: switches in the window (the ctl status calls above are
  # outside it).
  join "$WORK/before" "$WORK/after" | awk '{ printf "%s %d\n", $1, $3 - $2 }' > "$WORK/delta"
  stop_ns "$u"
}

echo "load average at start: $LOAD (above 0.5, other work mixes in)" >&2

measure 1h
IDLE=$(awk '{ s += $2 } END { print s + 0 }' "$WORK/delta")
echo "idle ($JOBS jobs on @every 1h, no tick in ${SECS}s): $IDLE wake-ups in all" >&2
sed 's/^/  /' "$WORK/delta" >&2

measure 1s
# Ticks taken: JOBS runs each. Fewer than SECS when spawning JOBS processes
# takes longer than the period: the next tick is then the first after the
# batch (late ticks are not made up), none is skipped.
TICKS=$(( (RUNS + JOBS / 2) / JOBS ))
[ "$TICKS" -gt 0 ] || TICKS=1
ALL=$(awk '{ s += $2 } END { print s + 0 }' "$WORK/delta")
LOOP=$(awk '$1 ~ /^corral:/ { s += $2 } END { print s + 0 }' "$WORK/delta")
echo "ticking ($JOBS jobs on @every 1s, ${SECS}s): $RUNS runs in $TICKS ticks, $SKIPPED ticks skipped; wake-ups per tick by thread:" >&2
awk -v t="$TICKS" '{ printf "  %-24s %8d  %9.1f per tick\n", $1, $2, $2 / t }' "$WORK/delta" >&2
PER_RUN=$(awk -v a="$ALL" -v r="$RUNS" 'BEGIN { printf "%.2f", r ? a / r : 0 }')
LOOP_PER_TICK=$(awk -v l="$LOOP" -v t="$TICKS" 'BEGIN { printf "%.1f", l / t }')
echo "RESULT jobs=$JOBS secs=$SECS load=$LOAD idle_wakeups=$IDLE ticks=$TICKS runs=$RUNS skipped=$SKIPPED loop_per_tick=$LOOP_PER_TICK wakeups_per_run=$PER_RUN"
