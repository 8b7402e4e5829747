#!/usr/bin/env bash
# `corral ctl scale` (issue 15): one service, `replicas = 1`, an sh that says
# it is ready on a notification fd (`ready = { fd = 3 }`: "running" here
# means ready, the shell ran), then sleeps; corral as PID 1 of a fresh PID
# namespace. Each round: `ctl scale web N` (default 100) and the time until
# every instance is ready, waited for by corral itself (`ctl wait web
# --ready`, answered on the event that makes the last one ready, no
# polling); then `ctl scale web 1` and the time until the N-1 stopped
# instances' processes are gone (counted in /proc every 10 ms: the stopped
# instances leave `ctl status` at once, their processes a little later).
# ROUNDS rounds (default 5), the median of each.
#
# Usage: bench/scale.sh [CORRAL_BINARY]   (default target/release/corral)
# Needs root (unshare --pid). Prints each round, and as the LAST line exactly
#   RESULT replicas=N rounds=R load=L up_ms=X down_ms=Y
# (medians, milliseconds). Do not run it while something else loads the
# machine: the load average at the start is printed (load=).
# Measured (2 cores, release build, 2026-12-04): RESULT replicas=100 rounds=5
# load=0.89 up_ms=120 down_ms=35.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/corral}
[ -x "$BIN" ] || { echo "no corral binary at $BIN (cargo build --release)" >&2; exit 1; }
BIN=$(realpath "$BIN")
[ "$(id -u)" = 0 ] || { echo "needs root (unshare --pid)" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
N=${N:-100}
ROUNDS=${ROUNDS:-5}
LOAD=$(cut -d ' ' -f 1 /proc/loadavg)
echo "load average at start: $LOAD (above 0.5, other work mixes in)" >&2

mkdir -p "$WORK/services"
cat > "$WORK/services/web.toml" <<'TOML'
replicas = 1
ready = { fd = 3 }
command = "echo >&3; exec sleep 100000"
TOML
unshare --pid --fork --mount-proc "$BIN" --services "$WORK/services" \
  --socket "$WORK/ctl.sock" --log-level warn > /dev/null 2> "$WORK/corral.err" &
u=$!
NS_PIDS+=("$u")
wait_for 30 test -S "$WORK/ctl.sock"
init=$(ns_init "$u")
ctl() { "$BIN" ctl --socket "$WORK/ctl.sock" "$@"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
sleepers() { ps -o comm= --ppid "$init" | grep -c '^sleep$' || true; }
ctl wait web --ready --timeout 30s > /dev/null

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
: > "$WORK/up"; : > "$WORK/down"
for r in $(seq "$ROUNDS"); do
  t0=$(ms)
  ctl scale web "$N" > /dev/null
  ctl wait web --ready --timeout 60s > /dev/null
  t1=$(ms)
  [ "$(sleepers)" = "$N" ] || { echo "round $r: $(sleepers) of $N running" >&2; exit 1; }
  ctl scale web 1 > /dev/null
  for _ in $(seq 6000); do [ "$(sleepers)" = 1 ] && break; sleep 0.01; done
  t2=$(ms)
  [ "$(sleepers)" = 1 ] || { echo "round $r: $(sleepers) left after scaling down" >&2; exit 1; }
  echo "round $r: 1 -> $N ready in $((t1 - t0)) ms; $N -> 1 gone in $((t2 - t1)) ms" >&2
  echo $((t1 - t0)) >> "$WORK/up"
  echo $((t2 - t1)) >> "$WORK/down"
done
stop_ns "$u"
echo "RESULT replicas=$N rounds=$ROUNDS load=$LOAD up_ms=$(median < "$WORK/up") down_ms=$(median < "$WORK/down")"
