#!/usr/bin/env bash
# Measures corral's core figures on this machine (issue: supervisor core):
#   1. idle wakeups: context switches of every corral thread over 10 s, 10 idle services
#   2. restart gap with restart-delay = "0s": from a service's exit to its next start
#   3. anonymous memory of corral with 10 and 100 idle services (`Anonymous:` in
#      smaps_rollup: what its memory cgroup can never reclaim without swap)
#   4. the stripped release binary's size
# Usage: bench/core.sh            (builds the release binary first)
# Every process started here is stopped by its pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
BIN=$PWD/target/release/corral
# shellcheck source=bench/lib.sh
. bench/lib.sh
services() { # services DIR N: N idle services
  mkdir -p "$1"
  for i in $(seq "$2"); do
    printf 'command = ["sleep", "100000"]\n' > "$1/idle$i.toml"
  done
}

ctxt() { # total context switches of all threads of pid $1
  local total=0 n
  for f in /proc/"$1"/task/*/status; do
    n=$(awk '/ctxt_switches/ { s += $2 } END { print s }' "$f")
    total=$((total + n))
  done
  echo "$total"
}

started() { [ "$(grep -c 'service started' "$1")" -ge "$2" ]; }

anon_kb() { awk '/^Anonymous:/ { print $2 }' /proc/"$1"/smaps_rollup; }

echo "== 1. idle wakeups (10 services, 10 s)"
services "$WORK/s10" 10
"$BIN" --services "$WORK/s10" >/dev/null 2>"$WORK/s10.log" & P=$!; PIDS+=("$P")
wait_for 20 started "$WORK/s10.log" 10
a=$(ctxt "$P"); sleep 10; b=$(ctxt "$P")
echo "context switches in 10 s: $((b - a))  ($(awk -v d=$((b - a)) 'BEGIN { printf "%.1f", d / 10 }')/s)"
echo "threads: $(ls /proc/"$P"/task | wc -l)"
echo "anonymous memory with 10 services: $(anon_kb "$P") kB"
stop_pid "$P"

echo "== 2. restart gap, restart-delay = \"0s\" (200 restarts)"
mkdir -p "$WORK/flap"
cat > "$WORK/flap/flap.toml" <<TOML
command = ["/bin/bash", "-c", "echo s \$EPOCHREALTIME >> $WORK/starts; echo e \$EPOCHREALTIME >> $WORK/starts; exit 1"]
restart-delay = "0s"
restart-delay-max = "1s"
output = "null"
TOML
"$BIN" --services "$WORK/flap" >/dev/null 2>"$WORK/flap.log" & P=$!; PIDS+=("$P")
wait_for 60 bash -c "[ \$(cat $WORK/starts 2>/dev/null | wc -l || echo 0) -ge 402 ]"
stop_pid "$P"
# Gap: from the moment a run is about to exit (its last timestamp) to the first
# timestamp of the next run: exit, reap, restart decision, spawn, exec of bash.
awk '$1 == "e" { end = $2 } $1 == "s" && end { print ($2 - end) * 1000 }' "$WORK/starts" | head -200 | sort -n |
  awk '{ a[NR] = $1 } END { printf "exit-to-next-start gap over %d restarts: median %.2f ms, p90 %.2f ms, max %.2f ms\n", NR, a[int(NR/2)], a[int(NR*0.9)], a[NR] }'

echo "== 3. anonymous memory with 100 services"
services "$WORK/s100" 100
"$BIN" --services "$WORK/s100" >/dev/null 2>"$WORK/s100.log" & P=$!; PIDS+=("$P")
wait_for 30 started "$WORK/s100.log" 100
echo "anonymous memory with 100 services: $(anon_kb "$P") kB"

echo "== 4. binary"
ls -l "$BIN" | awk '{ printf "stripped release binary: %d bytes (%.2f MiB)\n", $5, $5 / 1048576 }'
