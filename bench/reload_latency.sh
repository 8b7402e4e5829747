#!/usr/bin/env bash
# Reload latencies of corral (issue: readiness, reload, watch), release build:
#   (a) a watched file replaced by rename (write tmp; mv tmp file) -> the
#       service's reload signal (SIGHUP) arriving in its trap. Includes the
#       100 ms watch debounce, by design.
#   (b) SIGHUP to corral after adding a service file -> that new service's
#       first command running.
# Both stamps are bash $EPOCHREALTIME (the script's just before the `mv` /
# `kill -HUP`; the service's in its trap / first command). Median, p90, min
# and max over RUNS runs (default 20). Usage: bench/reload_latency.sh [RUNS]
# Everything lives in a fresh temp dir; every process started here is
# stopped by its pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
cargo build --release -q
BIN=$PWD/target/release/corral
# shellcheck source=bench/lib.sh
. bench/lib.sh

lines_at_least() { [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ]; }

stats() { # stats LABEL: milliseconds on stdin, one per line
  sort -n | awk -v label="$1" '{ a[NR] = $1 }
    END { printf "%s over %d runs: median %.1f ms, p90 %.1f ms, min %.1f ms, max %.1f ms\n",
          label, NR, a[int((NR + 1) / 2)], a[int(NR * 0.9 + 0.5)], a[1], a[NR] }'
}

echo "== (a) watched file replaced by rename -> reload signal in the service"
mkdir -p "$WORK/a/services" "$WORK/a/etc"
echo v0 > "$WORK/a/etc/app.conf"
cat > "$WORK/a/services/w.toml" <<TOML
command = ["/bin/bash", "-c", "trap 'echo \$EPOCHREALTIME >> $WORK/a/hups' HUP; echo \$\$ > $WORK/a/w.pid; sleep 100000 & c=\$!; while kill -0 \$c 2>/dev/null; do wait \$c; done"]
reload = { signal = "HUP" }
watch = ["$WORK/a/etc/app.conf"]
TOML
"$BIN" --services "$WORK/a/services" --socket "$WORK/a/ctl.sock" >/dev/null 2>"$WORK/a/corral.log" & P=$!; PIDS+=("$P")
wait_for 20 test -s "$WORK/a/w.pid"
: > "$WORK/a/sent"
for i in $(seq "$RUNS"); do
  echo "v$i" > "$WORK/a/etc/app.conf.tmp"
  echo "$EPOCHREALTIME" >> "$WORK/a/sent"
  mv "$WORK/a/etc/app.conf.tmp" "$WORK/a/etc/app.conf"
  wait_for 20 lines_at_least "$WORK/a/hups" "$i"
done
paste "$WORK/a/sent" "$WORK/a/hups" | awk '{ printf "%.3f\n", ($2 - $1) * 1000 }' |
  stats "mv -> SIGHUP in the service (debounce 100 ms included)"
[ "$(wc -l < "$WORK/a/hups")" -eq "$RUNS" ] || echo "note: $(wc -l < "$WORK/a/hups") HUPs for $RUNS changes" >&2
stop_pid "$P"

echo "== (b) SIGHUP after adding a service file -> the new service's first command"
mkdir -p "$WORK/b/services"
printf 'command = ["sleep", "100000"]\n' > "$WORK/b/services/base.toml"
"$BIN" --services "$WORK/b/services" --socket "$WORK/b/ctl.sock" >/dev/null 2>"$WORK/b/corral.log" & P=$!; PIDS+=("$P")
wait_for 20 grep -q 'service started' "$WORK/b/corral.log"
: > "$WORK/b/latency"
for i in $(seq "$RUNS"); do
  cat > "$WORK/b/services/new$i.toml" <<TOML
command = ["/bin/bash", "-c", "echo \$EPOCHREALTIME > $WORK/b/start.$i; exec sleep 100000"]
TOML
  t0=$EPOCHREALTIME
  kill -HUP "$P"
  wait_for 20 test -s "$WORK/b/start.$i"
  awk -v a="$t0" -v b="$(cat "$WORK/b/start.$i")" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }' >> "$WORK/b/latency"
done
stats "SIGHUP -> new service's first command" < "$WORK/b/latency"
stop_pid "$P"
