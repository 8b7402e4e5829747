#!/usr/bin/env bash
# corral side by side with its peers (s6, runit, supervisord, horust, tini,
# dumb-init, catatonit) on identical work, each supervisor as PID 1 of a fresh
# PID namespace (`unshare --pid --fork --mount-proc`). Method, caveats and the
# meaning of every row: BENCHMARKS.md.
#
# Usage: bash bench/compare.sh [--quick] [--only NAME,...] [--corral PATH]
#   --quick          fewer repetitions and shorter waits (about 3 minutes)
#   --only NAME,...  peers (corral is always measured, as the reference) and/or
#                    measurements: anon startup idle status restart orphans
#                    shutdown size output
#   --corral PATH    the corral binary to measure (default: target/release/corral,
#                    built with `cargo build --release` when missing or older
#                    than the sources)
#
# Installs nothing: a peer that is not installed is skipped, with the command
# that installs it. Compiles its measurement helper bench/peers/benchtool.c
# into its temp dir (needs cc). Prints a Markdown report on stdout and saves it
# to bench/results/compare-YYYYMMDD-HHMM.md; progress goes to stderr. Every
# namespace it starts is killed by the host pid of its PID 1, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
ONLY=""
CORRAL_BIN=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --only) ONLY=${2:?--only needs NAME,...}; shift ;;
    --only=*) ONLY=${1#--only=} ;;
    --corral) CORRAL_BIN=${2:?--corral needs a path}; shift ;;
    --corral=*) CORRAL_BIN=${1#--corral=} ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ALL_PEERS=(corral s6 runit supervisord horust tini dumb-init catatonit)
for f in bench/peers/*.sh; do # any other adapter beside these
  f=$(basename "$f" .sh)
  if [ "$f" != common ] && [[ " ${ALL_PEERS[*]} " != *" $f "* ]]; then ALL_PEERS+=("$f"); fi
done
ALL_MEASUREMENTS=(anon startup idle status restart orphans shutdown size output)
PEERS=()
MEASURE=()
for name in ${ONLY//,/ }; do
  if [[ " ${ALL_PEERS[*]} " == *" $name "* ]]; then PEERS+=("$name")
  elif [[ " ${ALL_MEASUREMENTS[*]} " == *" $name "* ]]; then MEASURE+=("$name")
  elif [ "$name" = pss ]; then
    echo "compare.sh: memory is measured as anonymous memory now: --only anon (see BENCHMARKS.md)" >&2; exit 2
  elif [ "$name" = zinit ]; then
    echo "compare.sh: zinit is not benchmarked (see BENCHMARKS.md)" >&2
  else echo "compare.sh: --only: unknown name $name (peers: ${ALL_PEERS[*]}; measurements: ${ALL_MEASUREMENTS[*]})" >&2; exit 2
  fi
done
[ ${#PEERS[@]} -gt 0 ] || PEERS=("${ALL_PEERS[@]}")
[ ${#MEASURE[@]} -gt 0 ] || MEASURE=("${ALL_MEASUREMENTS[@]}")
[[ " ${PEERS[*]} " == *" corral "* ]] || PEERS=(corral "${PEERS[@]}")
measuring() { [[ " ${MEASURE[*]} " == *" $1 "* ]]; }

# Repetitions and limits; --quick shortens them.
if [ $QUICK = 1 ]; then
  REPS=1 SETTLE_S=5 IDLE_S=5 DEFAULT_WAIT=5 FAST_WAIT=25 ORPHAN_WAIT_MS=5000 STOP_WAIT_MS=8000 HF_OPTS=(--warmup 5 --max-runs 50)
else
  REPS=3 SETTLE_S=5 IDLE_S=10 DEFAULT_WAIT=8 FAST_WAIT=60 ORPHAN_WAIT_MS=15000 STOP_WAIT_MS=25000 HF_OPTS=(--warmup 20)
fi
ORPHANS=10000
say() { echo "[$(date +%T)] $*" >&2; }
T_START=$SECONDS
LOAD0=$(cut -d ' ' -f 1-3 /proc/loadavg)
STATUS_CMDS=()

# --- corral binary
if [ -z "$CORRAL_BIN" ]; then
  CORRAL_BIN=$PWD/target/release/corral
  if [ ! -x "$CORRAL_BIN" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$CORRAL_BIN" -print -quit)" ]; then
    say "corral: $CORRAL_BIN is missing or older than the sources: running cargo build --release"
    cargo build --release >&2
  fi
fi
[ -x "$CORRAL_BIN" ] || { echo "compare.sh: $CORRAL_BIN is not an executable" >&2; exit 1; }
CORRAL_BIN=$(readlink -f "$CORRAL_BIN")

# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=bench/peers/common.sh
. bench/peers/common.sh

command -v cc > /dev/null || { echo "compare.sh: needs a C compiler for its helper: apt-get install -y gcc" >&2; exit 1; }
say "compiling the measurement helper bench/peers/benchtool.c into $WORK"
cc -O2 -o "$WORK/benchtool" bench/peers/benchtool.c
ln -s benchtool "$WORK/stamp"
BENCHTOOL=$WORK/benchtool
STAMP=$WORK/stamp

pfn() { local p=$1 f=$2; shift 2; "${p//-/_}_$f" "$@"; }

# --- which peers are here
SKIPPED=()
AVAIL=()
for p in "${PEERS[@]}"; do
  # shellcheck source=/dev/null
  . "bench/peers/$p.sh"
  missing=""
  for b in $(pfn "$p" bins); do command -v "$b" > /dev/null || missing+=" $b"; done
  if [ -n "$missing" ]; then
    SKIPPED+=("$p (missing:$missing; install: \`$(pfn "$p" install)\`)")
    say "skipping $p: not installed (missing:$missing); install with: $(pfn "$p" install)"
  else
    AVAIL+=("$p")
  fi
done
MULTI=()
for p in "${AVAIL[@]}"; do if pfn "$p" multi; then MULTI+=("$p"); fi; done
HAVE_HF=1
if measuring status && ! { command -v hyperfine && command -v jq; } > /dev/null; then
  HAVE_HF=0
  say "status queries need hyperfine and jq: apt-get install -y hyperfine jq (row skipped)"
fi

# --- results: V[row|peer] is the cell's text, N[row|peer] its number (for
# ratios and targets); NOTE[row] is added below the table.
declare -A V N NOTE

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
p95() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { i = int(NR * 0.95 + 0.999); if (i < 1) i = 1; print a[i] }'; }
thousands() { printf '%.0f' "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }
fmt() { awk -v x="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, x }'; }
names() { local i; for i in $(seq "$1"); do printf 's%02d\n' "$i"; done; }

start_peer() { # start_peer PEER D MODE NAME...: its config, then PID 1 of a new namespace
  local p=$1 d=$2 mode=$3
  shift 3
  pfn "$p" prepare "$d" "$mode" "$@" && ns_start "$d"
}

# ====================================================================
# 1 + 6. anonymous memory with 1, 10, 100 services; exec -> 100 services started
if measuring anon || measuring startup; then
  for p in "${AVAIL[@]}"; do
    if pfn "$p" multi; then sizes=(1 10 100); else sizes=(1); fi
    if ! measuring anon; then
      if pfn "$p" multi; then sizes=(100); else sizes=(); fi
    fi
    for n in "${sizes[@]}"; do
      anon=() busy=() starts=() nprocs=""
      for r in $(seq "$REPS"); do
        say "$p: $n stamp services (anonymous memory$([ "$n" = 100 ] && echo ', start time')), run $r/$REPS"
        d=$(mktemp -d "$WORK/anon-$p-$n.XXXX")
        mapfile -t svcs < <(names "$n")
        for s in "${svcs[@]}"; do svc_stamp "$d" "$s"; done
        if ! start_peer "$p" "$d" default "${svcs[@]}" || ! wait_for 60 started_at_least "$d" "$n"; then
          say "$p: the $n services did not all start ($(started_count "$d") did)"
          V["anon$n|$p"]="failed: $(started_count "$d")/$n started"
          stop_ns "$NS_U"
          break
        fi
        if [ "$n" = 100 ]; then
          starts+=("$(cat "$d"/svc/*/started | sort -g | tail -n 1 | awk -v t0="$(cat "$d/t0")" '{ printf "%.3f", ($1 - t0) * 1000 }')")
        fi
        sync
        sleep "$SETTLE_S"
        mapfile -t procs < <(pfn "$p" procs "$NS_INIT")
        anon+=("$(anon_sum "${procs[@]}")")
        nprocs=${#procs[@]}
        # The same, right after one status query of every service (where the
        # peer has a status command): memory while it works, not only idle.
        cmd=$(pfn "$p" status "$d" 2> /dev/null | awk -F '\t' '$1 == "all" { print $2 }')
        if [ "$n" = 10 ] && [ -n "$cmd" ]; then
          $cmd > /dev/null 2>&1 || true
          busy+=("$(anon_sum "${procs[@]}")")
        fi
        stop_ns "$NS_U"
      done
      if [ ${#anon[@]} -gt 0 ] && measuring anon; then
        m=$(median "${anon[@]}")
        N["anon$n|$p"]=$m
        V["anon$n|$p"]="$(thousands "$m") kB"
        if [ "$nprocs" -gt 1 ]; then V["anon$n|$p"]+=" ($nprocs procs)"; fi
      fi
      if [ ${#busy[@]} -gt 0 ] && measuring anon; then
        m=$(median "${busy[@]}")
        N["anonbusy|$p"]=$m
        V["anonbusy|$p"]="$(thousands "$m") kB"
      fi
      if [ ${#starts[@]} -gt 0 ] && measuring startup; then
        m=$(median "${starts[@]}")
        N["startup|$p"]=$m
        V["startup|$p"]="$(fmt "$m" 1) ms"
      fi
    done
    if ! pfn "$p" multi; then
      if measuring anon; then V["anon10|$p"]="n/a (one child)" V["anon100|$p"]="n/a (one child)"; fi
      if measuring startup; then V["startup|$p"]="n/a (one child)"; fi
    fi
  done
  if measuring anon; then
    NOTE[anon]="Anonymous memory: \`Anonymous:\` of /proc/PID/smaps_rollup (heap, stacks, private copies: what the container's memory cgroup can never reclaim without swap; code pages are file-backed, shared with the page cache and reclaimable, so not counted), summed over the supervisor's own processes (s6: s6-svscan + one s6-supervise per service; runit: runsvdir + one runsv per service; all others: PID 1 only), $SETTLE_S s after every service wrote its start stamp (steady state: every peer is past its start-up work, e.g. supervisord's startsecs = 1 s), and with 10 services once more right after one status query of all of them; median of $REPS run(s)."
  fi
  if measuring startup; then
    NOTE[startup]="Start: from right before the exec of unshare to the latest of the 100 start stamps; median of $REPS run(s)."
  fi
fi

# ====================================================================
# 5 + 7. idle wakeups with 10 services (all peers at once), then status queries
if measuring idle || measuring status; then
  declare -A IDIR IU IINIT IPROCS C0
  for p in "${AVAIL[@]}"; do
    if pfn "$p" multi; then n=10; else n=1; fi
    d=$(mktemp -d "$WORK/idle-$p.XXXX")
    mapfile -t svcs < <(names "$n")
    for s in "${svcs[@]}"; do svc_stamp "$d" "$s"; done
    say "$p: $n idle services (wakeups, status)"
    if start_peer "$p" "$d" default "${svcs[@]}"; then
      IDIR[$p]=$d IU[$p]=$NS_U IINIT[$p]=$NS_INIT
    fi
  done
  for p in "${!IDIR[@]}"; do
    if pfn "$p" multi; then n=10; else n=1; fi
    if ! wait_for 60 started_at_least "${IDIR[$p]}" "$n"; then
      V["idle|$p"]="failed: $(started_count "${IDIR[$p]}")/$n started"
      stop_ns "${IU[$p]}"
      unset "IDIR[$p]"
    fi
  done
  sync
  sleep "$SETTLE_S"
  if measuring idle; then
    say "counting context switches over $IDLE_S s"
    for p in "${!IDIR[@]}"; do
      IPROCS[$p]=$(pfn "$p" procs "${IINIT[$p]}" | tr '\n' ' ')
      # shellcheck disable=SC2086
      C0[$p]=$(ctxt_sum ${IPROCS[$p]})
    done
    sleep "$IDLE_S"
    for p in "${!IDIR[@]}"; do
      # shellcheck disable=SC2086
      c1=$(ctxt_sum ${IPROCS[$p]})
      # shellcheck disable=SC2086
      threads=$(thread_count ${IPROCS[$p]})
      rate=$(awk -v a="${C0[$p]}" -v b="$c1" -v s="$IDLE_S" 'BEGIN { printf "%.2f", (b - a) / s }')
      N["idle|$p"]=$rate
      V["idle|$p"]="$(fmt "$rate" 1)/s ($threads thr"
      if ! pfn "$p" multi; then V["idle|$p"]+=", 1 child"; fi
      V["idle|$p"]+=")"
    done
    NOTE[idle]="Wakeups: voluntary + nonvoluntary context switches of every thread of the supervisor's own processes over $IDLE_S s, from $SETTLE_S s after every service started, all peers idling at the same time; tini, dumb-init, catatonit with their one child."
  fi
  if measuring status && [ $HAVE_HF = 1 ]; then
    for p in "${AVAIL[@]}"; do
      [ -n "${IDIR[$p]:-}" ] || continue
      while IFS=$'\t' read -r label cmd; do
        [ -n "$label" ] || continue
        row=status_$label
        if [ "${cmd:0:1}" = '!' ]; then
          V["$row|$p"]="n/a (${cmd:1})"
          continue
        fi
        say "$p: hyperfine -N ${HF_OPTS[*]} '$cmd'"
        if ! out=$(eval "$cmd" 2>&1 > /dev/null); then
          V["$row|$p"]="failed: $(tail -n 1 <<< "$out" | cut -c 1-80)"
          continue
        fi
        if hyperfine -N "${HF_OPTS[@]}" --export-json "$WORK/hf.json" "$cmd" > /dev/null 2>&1; then
          m=$(jq '.results[0].median * 1000' "$WORK/hf.json")
          runs=$(jq '.results[0].times | length' "$WORK/hf.json")
          N["$row|$p"]=$m
          V["$row|$p"]="$(fmt "$m" 2) ms"
          STATUS_CMDS+=("$p $label: \`$(sed -E "s#$WORK/[^/ ]*#D#g; s#(D/svc/s01)( D/svc/s[0-9]+)+#\\1 … D/svc/s10#" <<< "$cmd")\` ($runs runs)")
        else
          V["$row|$p"]="failed"
        fi
      done < <(pfn "$p" status "${IDIR[$p]}")
      [ -n "${V["status_all|$p"]:-}" ] || V["status_all|$p"]="n/a (no CLI)"
      [ -n "${V["status_one|$p"]:-}" ] || V["status_one|$p"]="n/a (no CLI)"
    done
    NOTE[status]="Status: hyperfine -N ${HF_OPTS[*]}: median wall time of the CLI against the 10-service instance (s6 \`all\` is a sh loop of s6-svstat, sh included)."
  fi
  for p in "${!IDIR[@]}"; do stop_ns "${IU[$p]}"; done
fi

# ====================================================================
# 2. restart gap: default settings (all peers at once), then the lowest setting
gaps() { # gaps LOG: ms from each `e` to the next `s`
  awk '$1 == "e" { e = $2 } $1 == "s" && e { printf "%.3f\n", ($2 - e) * 1000; e = 0 }' "$1"
}
starts_in() { # starts_in LOG: how many runs began
  local n
  n=$(grep -c '^s ' "$1" 2> /dev/null) || true
  echo "${n:-0}"
}
if measuring restart; then
  declare -A RDIR RU
  for p in "${MULTI[@]}"; do
    d=$(mktemp -d "$WORK/restart-default-$p.XXXX")
    svc_flap "$d" s01
    say "$p: a service that exits 1 at once, default settings"
    if start_peer "$p" "$d" default s01; then RDIR[$p]=$d RU[$p]=$NS_U; fi
  done
  end=$((SECONDS + DEFAULT_WAIT))
  while [ $SECONDS -lt $end ]; do
    all=1
    for p in "${!RDIR[@]}"; do [ "$(starts_in "${RDIR[$p]}/svc/s01/log")" -ge 5 ] || all=0; done
    [ $all = 0 ] || break
    sleep 0.1
  done
  for p in "${!RDIR[@]}"; do
    stop_ns "${RU[$p]}"
    mapfile -t g < <(gaps "${RDIR[$p]}/svc/s01/log" | head -n 4)
    if [ ${#g[@]} -eq 0 ]; then
      V["gap_default|$p"]="no restart in ${DEFAULT_WAIT} s"
    else
      N["gap_default|$p"]=${g[0]}
      V["gap_default|$p"]=$(for x in "${g[@]}"; do thousands "$x"; echo; done | paste -sd/ | sed 's|/| / |g')" ms"
      if [ ${#g[@]} -lt 4 ]; then V["gap_default|$p"]+=", then none in ${DEFAULT_WAIT} s"; fi
    fi
  done
  for p in "${MULTI[@]}"; do
    runs=$(pfn "$p" restart_runs)
    if [ $QUICK = 1 ]; then runs=$(( runs * 2 / 5 > 3 ? runs * 2 / 5 : 3 )); fi
    d=$(mktemp -d "$WORK/restart-fast-$p.XXXX")
    svc_flap "$d" s01
    say "$p: $runs restarts at its lowest restart setting"
    if ! start_peer "$p" "$d" fast s01; then V["gap_fast|$p"]="failed to start"; continue; fi
    end=$((SECONDS + FAST_WAIT))
    while [ $SECONDS -lt $end ] && [ "$(starts_in "$d/svc/s01/log")" -le "$runs" ]; do sleep 0.05; done
    stop_ns "$NS_U"
    mapfile -t g < <(gaps "$d/svc/s01/log" | head -n "$runs")
    if [ ${#g[@]} -eq 0 ]; then V["gap_fast|$p"]="no restart in $FAST_WAIT s"; continue; fi
    m=$(median "${g[@]}")
    N["gap_fast|$p"]=$m
    V["gap_fast|$p"]="$(fmt "$m" 2) ms (p95 $(fmt "$(p95 "${g[@]}")" 2), n=${#g[@]})"
  done
  NOTE[restart]="Restart gap: from the service's last stamp (just before \`exit 1\`) to the first stamp of its next run. Default: the first 4 gaps. Lowest setting: corral restart-delay = \"0s\"; supervisord startsecs=0 + autorestart=true; horust strategy = \"always\", backoff = \"0s\"; s6 and runit have no setting (1 s floor); median and p95 over n restarts."
fi

# ====================================================================
# 3. 10k double-forked orphans: last fork -> no zombie left in the namespace
if measuring orphans; then
  for p in "${AVAIL[@]}"; do
    ms=() backlog=() failed=""
    for r in $(seq "$REPS"); do
      d=$(mktemp -d "$WORK/orphans-$p.XXXX")
      svc_orphans "$d" s01 "$ORPHANS"
      say "$p: $ORPHANS double-forked orphans, run $r/$REPS"
      if ! start_peer "$p" "$d" default s01; then failed="failed to start"; break; fi
      out=$("$BENCHTOOL" zombiewait "$NS_INIT" "$d/done" "$ORPHAN_WAIT_MS" || true)
      stop_ns "$NS_U"
      case $out in
        ms=*)
          read -r a b _ <<< "$out"
          ms+=("${a#ms=}")
          backlog+=("${b#backlog=}")
          ;;
        *zombies=*)
          failed="> $((ORPHAN_WAIT_MS / 1000)) s ($(thousands "${out#*zombies=}") zombies left)"
          break
          ;;
        *)
          failed="failed: $out"
          break
          ;;
      esac
    done
    if [ -n "$failed" ]; then
      V["orphans|$p"]=$failed
    elif [ ${#ms[@]} -gt 0 ]; then
      m=$(median "${ms[@]}")
      N["orphans|$p"]=$m
      V["orphans|$p"]="$(fmt "$m" 1) ms ($(median "${backlog[@]}") left)"
    fi
  done
  NOTE[orphans]="Orphans: the service (the one child for tini, dumb-init, catatonit) forks $ORPHANS times; each child forks a grandchild and exits, the grandchild exits at once and is reaped by PID 1. From the end of the last one to the first scan of the namespace's /proc with no zombie (polled every 0.5 ms); '(N left)': zombies still there at the last fork. Median of $REPS run(s)."
fi

# ====================================================================
# 4. SIGTERM to PID 1: 10 services that take 200 ms to stop; + one that ignores SIGTERM
if measuring shutdown; then
  for p in "${MULTI[@]}"; do
    times=() clean=() failed=""
    for r in $(seq "$REPS"); do
      d=$(mktemp -d "$WORK/stop-$p.XXXX")
      mapfile -t svcs < <(names 10)
      for s in "${svcs[@]}"; do svc_slowstop "$d" "$s"; done
      say "$p: SIGTERM to PID 1 with 10 services that take 200 ms to stop, run $r/$REPS"
      if ! start_peer "$p" "$d" default "${svcs[@]}" || ! wait_for 60 started_at_least "$d" 10; then
        failed="failed to start"; stop_ns "$NS_U"; break
      fi
      sleep 1.2 # past supervisord's startsecs, so every service counts as running
      out=$("$BENCHTOOL" termwait "$NS_INIT" 0 "$STOP_WAIT_MS")
      stop_ns "$NS_U"
      init_ms=$(sed -n 's/^init_ms=\([^ ]*\).*/\1/p' <<< "$out")
      if [ "$init_ms" = - ]; then failed="PID 1 still running after $((STOP_WAIT_MS / 1000)) s"; break; fi
      times+=("$init_ms")
      clean+=("$(cat "$d"/svc/*/stop 2> /dev/null | grep -c '^done' || true)")
    done
    if [ -n "$failed" ]; then
      V["shutdown|$p"]=$failed
    elif [ ${#times[@]} -gt 0 ]; then
      m=$(awk -v x="$(median "${times[@]}")" 'BEGIN { print x / 1000 }')
      N["shutdown|$p"]=$m
      V["shutdown|$p"]="$(fmt "$m" 3) s ($(median "${clean[@]}")/10 clean)"
    fi

    d=$(mktemp -d "$WORK/stubborn-$p.XXXX")
    for s in $(names 10); do svc_slowstop "$d" "$s"; done
    svc_stubborn "$d" s11
    say "$p: SIGTERM to PID 1 with 10 such services and an 11th that ignores SIGTERM"
    if ! start_peer "$p" "$d" default $(names 11) || ! wait_for 60 started_at_least "$d" 11; then
      V["stubborn|$p"]="failed to start"; stop_ns "$NS_U"; continue
    fi
    sleep 1.2
    if ! stub=$(host_pid_of "$NS_INIT" "$(cat "$d/svc/s11/nspid")"); then
      V["stubborn|$p"]="failed: the 11th service's pid not found"; stop_ns "$NS_U"; continue
    fi
    out=$("$BENCHTOOL" termwait "$NS_INIT" "$stub" "$STOP_WAIT_MS")
    stop_ns "$NS_U"
    read -r a b c <<< "$out"
    ti=${a#init_ms=} tw=${b#watch_ms=} by=${c#watch_by=}
    cleanly=$(cat "$d"/svc/*/stop 2> /dev/null | grep -c '^done' || true)
    secs() { awk -v x="$1" 'BEGIN { printf "%.2f", x / 1000 }'; }
    if [ "$tw" = - ]; then
      what="still running"
    elif [ "$by" = pid1 ]; then
      what="killed by PID 1 at $(secs "$tw") s"
    else
      what="killed with the namespace when PID 1 exited"
    fi
    if [ "$ti" = - ]; then
      V["stubborn|$p"]="$what; PID 1 still running at $((STOP_WAIT_MS / 1000)) s ($cleanly/10 others stopped)"
    else
      V["stubborn|$p"]="$what; PID 1 exited at $(secs "$ti") s ($cleanly/10 others clean)"
    fi
  done
  for p in "${AVAIL[@]}"; do
    if ! pfn "$p" multi; then V["shutdown|$p"]="n/a (one child)"; V["stubborn|$p"]="n/a (one child)"; fi
  done
  NOTE[shutdown]="Shutdown: SIGTERM to PID 1 (from the host) → PID 1's exit (pidfd), with 10 services that trap TERM, sleep 0.2 and exit 0 (parallel ≈ 0.2 s, one after another ≈ 2 s); '(k/10 clean)': how many finished their TERM handler. Median of $REPS run(s). 11th service: same plus a service that ignores SIGTERM (one run, default stop timeouts)."
fi

# ====================================================================
# 8. stripped binary size
if measuring size; then
  std_libs='^(linux-vdso|libc\.so|libm\.so|libgcc_s\.so|ld-linux|libpthread|libdl|librt)'
  for p in "${AVAIL[@]}"; do
    if [ "$p" = supervisord ]; then
      V["size|$p"]="n/a (Python: $(python3 --version 2>&1))"
      continue
    fi
    total=0 libs=""
    for b in $(pfn "$p" bins); do
      path=$(readlink -f "$(command -v "$b")")
      strip -o "$WORK/stripped" "$path"
      total=$((total + $(stat -c %s "$WORK/stripped")))
      while read -r lib _ lpath _; do
        [[ $lib =~ $std_libs ]] && continue
        [ -f "$lpath" ] || continue
        [[ " $libs " == *" $lib "* ]] && continue
        strip -o "$WORK/stripped" "$(readlink -f "$lpath")"
        libs+=" $lib $(thousands "$(($(stat -c %s "$WORK/stripped") / 1000))") kB"
      done < <(ldd "$path" 2> /dev/null || true)
    done
    N["size|$p"]=$((total / 1000))
    V["size|$p"]="$(thousands $((total / 1000))) kB"
    if [ -n "$libs" ]; then V["size|$p"]+=" (+${libs})"; fi
  done
  NOTE[size]="Size: \`strip\` of a copy of each binary that makes up the supervisor (s6: s6-svscan + s6-supervise; runit: runsvdir + runsv), 1 kB = 1000 bytes; shared libraries beyond libc/libm/libgcc_s in parentheses."
fi

# ====================================================================
# 9. output throughput through corral (bench/output_throughput.sh, another script)
if measuring output; then
  if [ -f bench/output_throughput.sh ]; then
    say "corral: bash bench/output_throughput.sh $CORRAL_BIN"
    if res=$(MODES="inherit prefix" timeout 300 bash bench/output_throughput.sh "$CORRAL_BIN" 2> "$WORK/output.err" | grep '^RESULT' | tail -n 1) && [ -n "$res" ]; then
      declare -A O
      for kv in ${res#RESULT }; do O[${kv%%=*}]=${kv#*=}; done
      r=$(awk -v a="${O[prefix_mbps]:-0}" -v b="${O[inherit_mbps]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print 0 }')
      N["output|corral"]=$r
      V["output|corral"]="prefix $(fmt "${O[prefix_mbps]:-0}" 0) MB/s = ${r}× inherit $(fmt "${O[inherit_mbps]:-0}" 0) MB/s (lost ${O[lost]:-?}, torn ${O[torn]:-?})"
    else
      V["output|corral"]="failed: $(tail -n 1 "$WORK/output.err" 2> /dev/null)"
    fi
  else
    V["output|corral"]="pending (bench/output_throughput.sh not there yet)"
  fi
  for p in "${AVAIL[@]}"; do [ "$p" = corral ] || V["output|$p"]="—"; done
fi

# ====================================================================
# the report
ROWS=(anon1 anon10 anon100 anonbusy startup gap_default gap_fast orphans shutdown stubborn idle status_all status_one size output)
declare -A LABEL=(
  [anon1]="anonymous memory, 1 service" [anon10]="anonymous memory, 10 services" [anon100]="anonymous memory, 100 services"
  [anonbusy]="anonymous memory, 10 services, just after a status query"
  [startup]="exec → 100 services started" [gap_default]="restart gap, default settings (first 4)"
  [gap_fast]="restart gap, lowest setting: median (p95)" [orphans]="10k orphans: last fork → zombie-free"
  [shutdown]="SIGTERM → PID 1 exit, 10 × 200 ms services" [stubborn]="11th service ignoring SIGTERM"
  [idle]="idle wakeups, 10 services" [status_all]="status query, all 10 services" [status_one]="status query, one service"
  [size]="stripped binary size" [output]="output = prefix vs inherit (corral)"
)
# target: "OP VALUE TEXT" (OP le or ge, compared with N[row|corral]; issue 6);
# "beside PEER,... TEXT": no threshold, the peers' ratios to corral in this
# run (issue 12: anonymous memory beside s6's and runit's); "best SLACK TEXT":
# at most SLACK above the best peer of this run that finished every
# service's TERM handler ("10/10 clean"); "peer PEER:ROW TEXT": at most that
# peer's value of ROW in this run; "elsewhere - TEXT": measured by another
# script (issue 16)
declare -A TARGET=(
  [anon10]="beside s6,runit issue 12, beside s6 and runit:" [anon100]="beside s6,runit issue 12, beside s6 and runit:"
  [startup]="elsewhere - ≤ 1.10 × a C fork loop (issue 16): bench/floors.sh"
  [gap_fast]="le 2 ≤ 2 ms" [orphans]="le 20 ≤ 20 ms" [shutdown]="best 0.002 within 2 ms of the best peer (issue 16)" [idle]="le 0 0/s"
  [status_all]="peer s6:status_one ≤ one s6-svstat (issue 16)" [size]="le 2000 ≤ 2,000 kB" [output]="ge 0.5 ≥ 0.5× inherit"
)

ratio() { # ratio A B: A ÷ B as the table shows it
  awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf (r >= 10 ? "%.0f" : "%.2f"), r }'
}

report() {
  local p row c tgt op val text met
  echo "# corral vs peers — $(date '+%Y-%m-%d %H:%M %Z')"
  echo
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo); load average at start: $LOAD0."
  echo "Run: \`bash bench/compare.sh${ARGS:+ $ARGS}\`, $(( (SECONDS - T_START) / 60 )) min $(( (SECONDS - T_START) % 60 )) s."
  echo
  echo "Versions:"
  for p in "${AVAIL[@]}"; do echo "- $p: $(pfn "$p" version 2> /dev/null || echo '?')"; done
  for s in "${SKIPPED[@]}"; do echo "- skipped: $s"; done
  if [[ " ${ALL_PEERS[*]} " != *" zinit "* ]]; then echo "- zinit: not benchmarked (see BENCHMARKS.md)"; fi
  echo
  printf '| measurement | corral | target |'
  for p in "${AVAIL[@]}"; do [ "$p" = corral ] || printf ' %s |' "$p"; done
  printf '\n|---|---|---|'
  for p in "${AVAIL[@]}"; do [ "$p" = corral ] || printf -- '---|'; done
  printf '\n'
  for row in "${ROWS[@]}"; do
    local any=0
    for p in "${AVAIL[@]}"; do [ -z "${V["$row|$p"]:-}" ] || any=1; done
    [ $any = 1 ] || continue
    printf '| %s | %s |' "${LABEL[$row]}" "${V["$row|corral"]:-—}"
    tgt=${TARGET[$row]:-}
    if [ -n "$tgt" ]; then
      read -r op val text <<< "$tgt"
      c=${N["$row|corral"]:-}
      if [ "$op" = beside ]; then
        met=""
        for p in ${val//,/ }; do
          if [ -n "$c" ] && [ -n "${N["$row|$p"]:-}" ] && awk -v c="$c" 'BEGIN { exit !(c > 0) }'; then
            met+=", $p $(ratio "${N["$row|$p"]}" "$c")×"
          else
            met+=", $p not measured"
          fi
        done
        printf ' %s %s |' "$text" "${met#, }"
      elif [ "$op" = elsewhere ]; then
        printf ' %s |' "$text"
      elif [ "$op" = best ] || [ "$op" = peer ]; then
        local ref="" name=""
        if [ "$op" = best ]; then
          for p in "${AVAIL[@]}"; do
            [[ $p != corral* ]] && [ -n "${N["$row|$p"]:-}" ] && [[ "${V["$row|$p"]:-}" == *"(10/10 clean)"* ]] || continue
            if [ -z "$ref" ] || awk -v a="${N["$row|$p"]}" -v b="$ref" 'BEGIN { exit !(a < b) }'; then
              ref=${N["$row|$p"]} name=$p
            fi
          done
          [ -z "$ref" ] || ref=$(awk -v r="$ref" -v s="$val" 'BEGIN { print r + s }')
        else
          name=${val%%:*}
          ref=${N["${val#*:}|$name"]:-}
        fi
        if [ -z "$c" ] || [ -z "$ref" ]; then met="not measured (no peer to compare with)"
        elif awk -v c="$c" -v r="$ref" 'BEGIN { exit !(c <= r) }'; then met="**met** ($name)"
        else met="**missed** ($name)"
        fi
        printf ' %s: %s |' "$text" "$met"
      else
        if [ -z "$c" ]; then met="not measured"
        elif awk -v c="$c" -v v="$val" -v op="$op" 'BEGIN { exit !(op == "le" ? c <= v : c >= v) }'; then met="**met**"
        else met="**missed**"
        fi
        printf ' %s: %s |' "$text" "$met"
      fi
    else
      printf ' — |'
    fi
    for p in "${AVAIL[@]}"; do
      [ "$p" = corral ] && continue
      c=${V["$row|$p"]:-—}
      if [ -n "${N["$row|$p"]:-}" ] && [ -n "${N["$row|corral"]:-}" ] && [ "$row" != output ] &&
        awk -v c="${N["$row|corral"]}" 'BEGIN { exit !(c > 0) }'; then
        c+=" ($(ratio "${N["$row|$p"]}" "${N["$row|corral"]}")×)"
      fi
      printf ' %s |' "$c"
    done
    printf '\n'
  done
  echo
  echo "Notes:"
  echo "- Lower is better in every row but the last. A peer's (N×) is peer ÷ corral: above 1× the peer uses more or takes longer; n/a: the peer cannot do it (tini, dumb-init and catatonit run one child and never restart it)."
  echo "- Targets: issue 6's thresholds for corral (**met** or **missed**); the memory rows have none: issue 12 asks for corral's anonymous memory with 10 and 100 services beside s6's and runit's (a process per service), stated as s6 ÷ corral and runit ÷ corral in this run."
  for k in anon startup restart orphans shutdown idle status size; do
    [ -z "${NOTE[$k]:-}" ] || echo "- ${NOTE[$k]}"
  done
  if [ ${#STATUS_CMDS[@]} -gt 0 ]; then echo "- Status commands: $(printf '%s; ' "${STATUS_CMDS[@]}" | sed 's/; $//')."; fi
  echo "- Each supervisor ran as PID 1 of \`unshare --pid --fork --mount-proc\`, with its defaults unless said otherwise; every service is the same executable for all of them. Method: BENCHMARKS.md."
}
ARGS=""
[ $QUICK = 0 ] || ARGS+=" --quick"
[ -z "$ONLY" ] || ARGS+=" --only $ONLY"
ARGS=${ARGS# }
LOAD0=${LOAD0:-?}
mkdir -p bench/results
OUT=bench/results/compare-$(date +%Y%m%d-%H%M).md
report | tee "$OUT"
say "saved $OUT; the run took $((SECONDS - T_START)) s"
