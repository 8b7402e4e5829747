#!/usr/bin/env bash
# Wall time of a status query with 10 services (issue: control socket), with
# hyperfine, side by side on this machine:
#   corral ctl status          corral (release build) supervising 10 services
#   supervisorctl status       supervisord -n with 10 programs (package `supervisor`)
#   s6-svstat DIR              one service of an s6-svscan dir of 10 (package `s6`)
#   10 x s6-svstat             all 10, one s6-svstat each, from a sh loop
# Every service is `sleep 100000`. Usage: bench/ctl_status.sh
# Needs hyperfine; supervisorctl and s6 are measured when installed
# (Debian: apt-get install -y hyperfine supervisor s6). Everything lives in a
# fresh temp dir; every process started here is stopped by its pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "hyperfine is missing (apt-get install -y hyperfine)" >&2; exit 1; }
cargo build --release -q
BIN=$PWD/target/release/corral
# shellcheck source=bench/lib.sh
. bench/lib.sh
N=10

RESULTS=()
bench() { # bench NAME COMMAND: hyperfine, no shell in between
  local name=$1 cmd=$2
  echo "== $name: $cmd"
  hyperfine --warmup 20 -N --export-json "$WORK/$name.json" "$cmd"
  RESULTS+=("$name")
}

# --- corral
mkdir -p "$WORK/corral"
for i in $(seq $N); do printf 'command = ["sleep", "100000"]\n' > "$WORK/corral/svc$i.toml"; done
"$BIN" --services "$WORK/corral" --socket "$WORK/corral.sock" >/dev/null 2>"$WORK/corral.log" & PIDS+=($!)
running10() { [ "$("$BIN" ctl --socket "$WORK/corral.sock" status | grep -c ' running ')" -eq $N ]; }
wait_for 30 running10
bench corral "$BIN ctl --socket $WORK/corral.sock status"

# --- supervisord
if command -v supervisord >/dev/null && command -v supervisorctl >/dev/null; then
  conf=$WORK/supervisord.conf
  {
    printf '[unix_http_server]\nfile=%s/supervisor.sock\nchmod=0700\n\n' "$WORK"
    printf '[supervisord]\nnodaemon=true\nlogfile=%s/supervisord.log\npidfile=%s/supervisord.pid\nchildlogdir=%s\n\n' "$WORK" "$WORK" "$WORK"
    printf '[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n'
    printf '[supervisorctl]\nserverurl=unix://%s/supervisor.sock\n\n' "$WORK"
    for i in $(seq $N); do
      printf '[program:svc%d]\ncommand=sleep 100000\nstdout_logfile=NONE\nstderr_logfile=NONE\n\n' "$i"
    done
  } > "$conf"
  supervisord -n -c "$conf" >/dev/null 2>&1 & PIDS+=($!)
  sv_running10() { [ "$(supervisorctl -c "$conf" status | grep -c RUNNING)" -eq $N ]; }
  wait_for 30 sv_running10
  bench supervisorctl "supervisorctl -c $conf status"
else
  echo "== supervisorctl: not installed, skipped (apt-get install -y supervisor)"
fi

# --- s6
if command -v s6-svscan >/dev/null && command -v s6-svstat >/dev/null; then
  for i in $(seq $N); do
    mkdir -p "$WORK/s6/svc$i"
    printf '#!/bin/sh\nexec sleep 100000\n' > "$WORK/s6/svc$i/run"
    chmod +x "$WORK/s6/svc$i/run"
  done
  s6-svscan "$WORK/s6" >/dev/null 2>&1 & PIDS+=($!)
  s6_up10() { for i in $(seq $N); do s6-svstat -o up "$WORK/s6/svc$i" | grep -qx true || return 1; done; }
  wait_for 30 s6_up10
  bench s6-svstat "s6-svstat $WORK/s6/svc1"
  loop="for d in $WORK/s6/*; do s6-svstat \$d; done"
  bench s6-svstat-x10 "sh -c '$loop'"
else
  echo "== s6-svstat: not installed, skipped (apt-get install -y s6)"
fi

echo
echo "== median wall time of one status query, $N services ($(nproc) CPUs, $(uname -r))"
for name in "${RESULTS[@]}"; do
  jq -r --arg n "$name" '.results[0] | "\($n)\t\(.median * 1000 | . * 100 | round / 100) ms median\t(mean \(.mean * 1000 | . * 100 | round / 100) ± \(.stddev * 1000 | . * 100 | round / 100) ms, \(.times | length) runs)"' "$WORK/$name.json"
done | column -t -s $'\t'
