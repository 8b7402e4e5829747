#!/usr/bin/env bash
# How corral's costs grow with the number of services (issue 16), beside s6 and
# runit and beside a floor, each as PID 1 of a fresh PID namespace (`unshare
# --pid --fork --mount-proc`, as bench/compare.sh runs them; method:
# BENCHMARKS.md).
#
# Usage: bash bench/scaling.sh [--sizes "1 10 100 1000 5000"] [--peers s6,runit]
#          [--corral PATH] [--reps N] [--storm-secs S] [--settle S]
#          [--peer-max N] [--no-storm] [--no-plot]
#   --sizes "N ..."   numbers of services (default "1 10 100 1000 5000")
#   --peers a,b       peers beside corral and the floor (default s6,runit;
#                     `none` for none); a peer that is not installed is skipped
#                     with the command that installs it
#   --corral PATH     the corral binary (default target/release/corral, built
#                     with `cargo build --release` when missing or older than
#                     the sources)
#   --reps N          fresh starts per size and supervisor; start, memory, CPU
#                     and shutdown are their medians (default 3); status and the
#                     crash storm are measured once
#   --storm-secs S    length of the crash-storm window (default 10)
#   --settle S        seconds between "all started" and the memory reading
#                     (default 5, as bench/compare.sh)
#   --peer-max N      largest size the peers run at (default 1000)
#   --no-storm        leave out the crash storm
#   --no-plot         no PNG
#
# Per size and supervisor (floor, corral, s6, runit), rows of one table:
# - start: from right before the exec of unshare to the latest start stamp
#   of the N services (bench/compare.sh's "exec -> 100 services started" at
#   every size). Every service is the same executable for every supervisor,
#   D/svc/NAME/run = `#!…/stamp`: the helper (bench/scaling_tool.c) as the #!
#   interpreter writes its start time to D/stamps/NAME, then execs `sleep
#   infinity` (no shell: a shell per service would be what is measured). The
#   runner waits on inotify, not by polling, so it takes no CPU from the run.
# - floor: one small C program as PID 1 (`scaling_tool floor`) forking and
#   exec'ing the same N run files, reaping, nothing else; timed the same way.
# - CPU to start: CPU time of the supervisor's own processes (every thread,
#   /proc/PID/task/*/schedstat) from its exec to "all started".
# - anonymous memory: the sum of `Anonymous:` in /proc/PID/smaps_rollup over
#   the supervisor's own processes (corral and the floor: PID 1; s6:
#   s6-svscan + every s6-supervise; runit: runsvdir + every runsv; the cell
#   says how many), --settle seconds after all started.
# - status: `hyperfine -N` median of one CLI call, all services and one
#   (corral: `ctl status`, `ctl status s0001`; s6: a sh loop of s6-svstat
#   over every service dir, and one s6-svstat; runit: `sv status` with every
#   dir, and one). Measured in the first repetition only.
# - SIGTERM -> exit: SIGTERM to PID 1 from the host, until PID 1's exit
#   (pidfd). PID 1 is traced (PTRACE_O_TRACEEXIT) so that the kernel stops
#   it at the start of its exit, before the namespace is torn down: the
#   processes still alive in the namespace then, and the zombies, are
#   counted (what PID 1 left to the kernel; corral should leave 0 and 0).
#   runsvdir exits at once on SIGTERM: its services are killed with the
#   namespace, which the "alive at exit" count shows. Tracing makes every
#   signal delivered to PID 1's main thread a round trip to the tracer.
# - PID 1's CPU, exec -> exit: utime + stime of PID 1 (all its threads, also
#   those already gone) at that stop, 10 ms resolution (USER_HZ).
# - crash storm (a second start per size and supervisor): every service is
#   `#!…/storm`, which logs its start, lives about 10 s and exits 1 at a slot
#   of its own, so that 10 % of the services exit in every second, spread
#   over the second. corral runs them with `restart-delay = "0s"` (its lowest
#   setting; its default is 100 ms doubling); runsv restarts at once a
#   service that lived over 1 s; s6-supervise 2.11 waits 1 s before every
#   restart (seen here: ~1003 ms gaps after 2.5 s runs; it has no setting);
#   the floor restarts at once.
#   Over --storm-secs from 1 s after all started: the restart gap (the
#   service's last log line before `exit 1` -> the first of its next run:
#   reap, decision, fork, exec), median and p99 over every exit in the
#   window, and the supervisor's CPU per second of the window.
#
# The issue's targets for corral (checked in the RESULT line when measured):
# - start within 1.5 x the floor at 1000 and at 5000 services;
# - `ctl status` of 1000 services at most 3 x its time for 100;
# - 5000 services listed by `ctl status` in under 50 ms, stopped within 2 s
#   of SIGTERM, 0 zombies (and nothing left alive) at PID 1's exit.
# Every row should grow at most linearly with N: the plot shows each row
# against N, log-log (a slope of 1 is linear).
#
# Output: progress on stderr; on stdout a Markdown report (machine, load,
# versions, the table, notes) ending with one line
#   RESULT sizes=... load=... start_x_floor_1000=... start_x_floor_5000=...
#     status_1000_over_100=... status_all_5000_ms=... stop_5000_ms=...
#     left_5000=ALIVE/ZOMBIES targets_met=K/M
# ("-" when not measured). Saved as bench/results/scaling-YYYYMMDD-HHMM.md,
# with the numbers (.tsv) and the plot (.png: gnuplot, `apt-get install -y
# gnuplot-nox`; without it, matplotlib if python3 has it, `pip install
# matplotlib`; without either the script says so and makes no plot).
#
# Needs root (unshare --pid, ptrace), cc, hyperfine (`apt-get install -y
# hyperfine`; without it the status rows are skipped); s6 and runit: `apt-get
# install -y s6 runit`. Installs nothing. Kernel limits: it raises the soft
# (and, as root, the hard) `ulimit -n` to what the largest size needs, and
# kernel.pid_max and kernel.threads-max when they are too low (restored on
# exit); a cgroup pids.max too low is reported, not changed. Every process
# it starts is ended by its pid (a namespace by its PID 1's host pid, which
# takes every process in it), also on failure or interruption (bench/lib.sh).
# Do not run it while something else loads the machine: the load average at
# the start is in the report.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES="1 10 100 1000 5000"
PEERS_ARG="s6,runit"
CORRAL_BIN=""
REPS=3
STORM_S=10
SETTLE_S=5
PEER_MAX=1000
STORM=1
PLOT=1
while [ $# -gt 0 ]; do
  case $1 in
    --sizes) SIZES=${2:?--sizes needs \"N ...\"}; shift ;;
    --sizes=*) SIZES=${1#--sizes=} ;;
    --peers) PEERS_ARG=${2:?--peers needs NAME,...}; shift ;;
    --peers=*) PEERS_ARG=${1#--peers=} ;;
    --corral) CORRAL_BIN=${2:?--corral needs a path}; shift ;;
    --corral=*) CORRAL_BIN=${1#--corral=} ;;
    --reps) REPS=${2:?--reps needs N}; shift ;;
    --storm-secs) STORM_S=${2:?--storm-secs needs S}; shift ;;
    --settle) SETTLE_S=${2:?--settle needs S}; shift ;;
    --peer-max) PEER_MAX=${2:?--peer-max needs N}; shift ;;
    --no-storm) STORM=0 ;;
    --no-plot) PLOT=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "scaling.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
SIZES=$(tr -s ', ' '\n' <<< "$SIZES" | grep -v '^$' | sort -n -u | tr '\n' ' ')
for n in $SIZES; do
  if [[ ! $n =~ ^[1-9][0-9]{0,4}$ ]]; then echo "scaling.sh: --sizes: $n is not a number of services (1..99999)" >&2; exit 2; fi
done
for v in "$REPS" "$STORM_S" "$SETTLE_S" "$PEER_MAX"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "scaling.sh: $v is not a whole number" >&2; exit 2; }
done
[ "$REPS" -ge 1 ] || REPS=1
MAX_N=$(awk '{ print $NF }' <<< "$SIZES")
say() { echo "[$(date +%T)] $*" >&2; }
T_START=$SECONDS
LOAD0=$(cut -d ' ' -f 1-3 /proc/loadavg)

[ "$(id -u)" = 0 ] || { echo "scaling.sh: needs root (unshare --pid, ptrace of PID 1)" >&2; exit 1; }
command -v cc > /dev/null || { echo "scaling.sh: needs a C compiler for its helper: apt-get install -y gcc" >&2; exit 1; }
command -v unshare > /dev/null || { echo "scaling.sh: needs unshare (util-linux)" >&2; exit 1; }

# --- corral binary (as bench/compare.sh)
if [ -z "$CORRAL_BIN" ]; then
  CORRAL_BIN=$PWD/target/release/corral
  if [ ! -x "$CORRAL_BIN" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$CORRAL_BIN" -print -quit)" ]; then
    say "corral: $CORRAL_BIN is missing or older than the sources: running cargo build --release"
    cargo build --release >&2
  fi
fi
[ -x "$CORRAL_BIN" ] || { echo "scaling.sh: $CORRAL_BIN is not an executable" >&2; exit 1; }
CORRAL_BIN=$(readlink -f "$CORRAL_BIN")

# shellcheck source=bench/lib.sh
. bench/lib.sh
# The services, their stamps and logs on a tmpfs where there is one (that
# allows exec): on ext4, 5000 services each creating a file in one
# directory spent most of the run in ext4's inode allocation (find_inode_bit,
# recently_deleted: the previous run's files) and its directory lock, for
# the floor as much as for any supervisor: what was measured was the file
# system. tmpfs keeps that cost small and the same for all.
if [ -z "${SCALING_ON_DISK:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] \
  && awk '$2 == "/dev/shm" && $3 == "tmpfs" && $4 !~ /(^|,)noexec(,|$)/ { ok = 1 } END { exit !ok }' /proc/mounts; then
  rmdir "$WORK"
  WORK=$(mktemp -d /dev/shm/corral-scaling.XXXXXX)
  WORK_FS="tmpfs (/dev/shm)"
else
  WORK_FS="$(stat -f -c %T "$WORK") ($WORK; SCALING_ON_DISK set, or no exec-able tmpfs at /dev/shm)"
fi
# lib.sh's EXIT trap, plus the kernel settings restored; INT and TERM exit
# through it too.
RESTORE=()
on_exit() {
  local r
  cleanup
  for r in "${RESTORE[@]}"; do
    echo "${r#*=}" > "${r%%=*}" 2> /dev/null || say "could not restore ${r%%=*} to ${r#*=}"
  done
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "compiling bench/scaling_tool.c into $WORK"
cc -O2 -o "$WORK/scaling_tool" bench/scaling_tool.c -lm
ln -s scaling_tool "$WORK/stamp"
ln -s scaling_tool "$WORK/storm"
TOOL=$WORK/scaling_tool
STAMP=$WORK/stamp   # bench/peers/common.sh's service scripts use it
BENCHTOOL=$TOOL     # (not used here)
export STAMP BENCHTOOL
# shellcheck source=bench/peers/common.sh
. bench/peers/common.sh

# --- kernel limits for the largest size
# corral holds 2 fds per service (the read ends of its stdout and stderr
# pipes: 10,016 fds with 5000 services): 3 per service and 256 besides is the
# margin. The namespace holds
# up to 2 processes per service (s6, runit: a supervise process and the
# service) and the host its own.
LIMIT_NOTES=()
need_fd=$((MAX_N * 3 + 256))
soft=$(ulimit -Sn) hard=$(ulimit -Hn)
if [ "$soft" != unlimited ] && [ "$soft" -lt "$need_fd" ]; then
  if [ "$hard" = unlimited ] || [ "$hard" -ge "$need_fd" ]; then
    ulimit -Sn "$need_fd"
  elif [ "$need_fd" -le "$(cat /proc/sys/fs/nr_open)" ] && ulimit -Hn "$need_fd" 2> /dev/null; then
    ulimit -Sn "$need_fd"
  fi
  if [ "$(ulimit -Sn)" -ge "$need_fd" ]; then
    LIMIT_NOTES+=("ulimit -n raised from $soft to $(ulimit -Sn) for this run ($MAX_N services × 3 fds + 256)")
  else
    LIMIT_NOTES+=("**ulimit -n is $(ulimit -Sn) (hard $(ulimit -Hn)), below the $need_fd that $MAX_N services may need; it could not be raised (the hard limit needs CAP_SYS_RESOURCE, and at most fs.nr_open = $(cat /proc/sys/fs/nr_open)): sizes that fail may fail for this**")
  fi
fi
raise_sysctl() { # raise_sysctl FILE NEED WHAT: raise a kernel limit for the run (restored on exit)
  local f=$1 need=$2 what=$3 cur
  cur=$(cat "$f")
  [ "$cur" -lt "$need" ] || return 0
  if echo "$need" > "$f" 2> /dev/null; then
    RESTORE+=("$f=$cur")
    LIMIT_NOTES+=("$what raised from $cur to $need for this run (restored on exit)")
  else
    LIMIT_NOTES+=("**$what is $cur, below the $need that $MAX_N services may need, and could not be raised ($f is read-only here)**")
  fi
}
need_pids=$((MAX_N * 3 + 4096))
raise_sysctl /proc/sys/kernel/pid_max "$need_pids" kernel.pid_max
raise_sysctl /proc/sys/kernel/threads-max "$need_pids" kernel.threads-max
cg=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup 2> /dev/null || true)
if [ -r "/sys/fs/cgroup$cg/pids.max" ]; then
  pm=$(cat "/sys/fs/cgroup$cg/pids.max")
  if [ "$pm" != max ] && [ "$pm" -lt "$need_pids" ]; then
    LIMIT_NOTES+=("**this cgroup's pids.max is $pm, below the $need_pids that $MAX_N services may need (not changed here: raise it in /sys/fs/cgroup$cg/pids.max or on the container)**")
  fi
fi
for note in "${LIMIT_NOTES[@]}"; do say "limits: $note"; done

# --- supervisors: the floor, corral, and the peers that are installed
pfn() { local p=$1 f=$2; shift 2; "${p//-/_}_$f" "$@"; }
floor_bins() { echo "$TOOL"; }
floor_version() { echo "bench/scaling_tool.c \`floor\`, cc -O2"; }
floor_prepare() { # default: start every service once; fast: restart each at once
  CMD=("$TOOL" floor "$1")
  if [ "$2" = fast ]; then CMD+=(restart); fi
}
floor_procs() { echo "$1"; }
floor_status() { :; }
# shellcheck source=bench/peers/corral.sh
. bench/peers/corral.sh
SUPS=(floor corral)
SKIPPED=()
if [ "$PEERS_ARG" != none ]; then
  for p in ${PEERS_ARG//,/ }; do
    [ -f "bench/peers/$p.sh" ] || { echo "scaling.sh: --peers: no adapter bench/peers/$p.sh" >&2; exit 2; }
    # shellcheck source=/dev/null
    . "bench/peers/$p.sh"
    if ! pfn "$p" multi; then say "skipping $p: it runs one child only"; continue; fi
    missing=""
    for b in $(pfn "$p" bins); do command -v "$b" > /dev/null || missing+=" $b"; done
    if [ -n "$missing" ]; then
      SKIPPED+=("$p (missing:$missing; install: \`$(pfn "$p" install)\`)")
      say "skipping $p: not installed (missing:$missing); install with: $(pfn "$p" install)"
    else
      SUPS+=("$p")
    fi
  done
fi
HAVE_HF=1
if ! command -v hyperfine > /dev/null || ! command -v jq > /dev/null; then
  HAVE_HF=0
  say "the status rows need hyperfine and jq: apt-get install -y hyperfine jq (skipped)"
fi
HF_OPTS=(--warmup 3 --min-runs 5 --max-runs 300)

names() { seq -f 's%04g' 1 "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
fmt() { awk -v x="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, x }'; }
thousands() { printf '%.0f' "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }

make_services() { # make_services D KIND N: D/svc/NAME/run = `#!$WORK/KIND`, N of them
  local d=$1 kind=$2 n=$3 s
  local dirs=()
  mkdir -p "$d/stamps" "$d/logs"
  mapfile -t SVCS < <(names "$n")
  for s in "${SVCS[@]}"; do dirs+=("$d/svc/$s"); done
  mkdir -p "${dirs[@]}"
  for s in "${SVCS[@]}"; do printf '#!%s\n' "$WORK/$kind" > "$d/svc/$s/run"; done
  chmod +x "$d"/svc/*/run
}

forget_pid() { # forget_pid PID: no longer one to stop on exit (it was waited for)
  local i
  for i in "${!PIDS[@]}"; do
    if [ "${PIDS[$i]}" = "$1" ]; then unset 'PIDS[i]'; fi
  done
}

start_sup() { # start_sup P D MODE N: services made, config, PID 1 of a new namespace, all started
  # Sets START_MS (exec of unshare -> latest stamp) or returns 1 with FAIL set.
  local p=$1 d=$2 mode=$3 n=$4 wpid out last
  pfn "$p" prepare "$d" "$mode" "${SVCS[@]}"
  if [ "$p" = s6 ] && [ "$n" -gt 450 ]; then
    CMD=(s6-svscan -c $((n + 50)) "$d/svc") # s6-svscan maintains 500 services unless told more
  fi
  "$TOOL" waitstamps "$d" "$n" $((60000 + n * 20)) > "$d/wait.out" &
  wpid=$!
  PIDS+=("$wpid")
  if ! ns_start "$d"; then
    FAIL="did not start: $(tail -n 1 "$d/init.out" | cut -c 1-100)"
    return 1
  fi
  wait "$wpid" || true
  forget_pid "$wpid"
  out=$(cat "$d/wait.out")
  last=${out#*last=}
  if [ "$last" = - ] || [ -z "$last" ]; then
    FAIL="${out%% *} of $n started in $((60 + n / 50)) s"
    [ ! -s "$d/init.out" ] || FAIL+=" (PID 1 said: $(tail -n 1 "$d/init.out" | cut -c 1-100))"
    return 1
  fi
  START_MS=$(awk -v a="$last" -v b="$(cat "$d/t0")" 'BEGIN { printf "%.1f", (a - b) * 1000 }')
}

# R[key|n|p]: a measurement's number; C[key|n|p]: its cell text when not only the number
declare -A R C

steady() { # steady P N REP: start, CPU, memory, status (rep 1), SIGTERM
  local p=$1 n=$2 rep=$3 d procs out label cmd row m a b c e
  d=$(mktemp -d "$WORK/$p-$n-r$rep.XXXX")
  make_services "$d" stamp "$n"
  say "$p: $n services, run $rep/$REPS"
  if ! start_sup "$p" "$d" default "$n"; then
    say "$p: $n services: $FAIL"
    C["start|$n|$p"]="failed: $FAIL"
    stop_ns "$NS_U"
    return 1
  fi
  mapfile -t procs < <(pfn "$p" procs "$NS_INIT")
  echo "$START_MS" >> "$WORK/v-start-$n-$p"
  "$TOOL" cpu "${procs[@]}" >> "$WORK/v-cpustart-$n-$p"
  sleep "$SETTLE_S"
  mapfile -t procs < <(pfn "$p" procs "$NS_INIT")
  "$TOOL" anon "${procs[@]}" >> "$WORK/v-anon-$n-$p"
  R["nprocs|$n|$p"]=${#procs[@]}
  if [ "$rep" = 1 ] && [ $HAVE_HF = 1 ]; then
    while IFS=$'\t' read -r label cmd; do
      [ -n "$label" ] || continue
      row=status_$label
      if ! out=$(eval "$cmd" 2>&1 > /dev/null); then
        C["$row|$n|$p"]="failed: $(tail -n 1 <<< "$out" | cut -c 1-60)"
        continue
      fi
      say "$p: $n services: hyperfine -N ${HF_OPTS[*]} (status, $label)"
      if hyperfine -N "${HF_OPTS[@]}" --export-json "$WORK/hf.json" "$cmd" > /dev/null 2>&1; then
        m=$(jq '.results[0].median * 1000' "$WORK/hf.json")
        R["$row|$n|$p"]=$m
        R["${row}_runs|$n|$p"]=$(jq '.results[0].times | length' "$WORK/hf.json")
      else
        C["$row|$n|$p"]="failed"
      fi
    done < <(pfn "$p" status "$d" | sed -E 's#(/svc/| )s01$#\1s0001#') # the adapters name one service s01
  fi
  out=$("$TOOL" termwait "$NS_INIT" 30000)
  stop_ns "$NS_U"
  read -r a b c e <<< "$out"
  a=${a#init_ms=} b=${b#alive=} c=${c#zombies=} e=${e#cpu_ms=}
  if [ "$a" = - ]; then
    C["stop|$n|$p"]="still running after 30 s"
  else
    echo "$a" >> "$WORK/v-stop-$n-$p"
    echo "$b" >> "$WORK/v-alive-$n-$p"
    echo "$c" >> "$WORK/v-zombies-$n-$p"
    echo "$e" >> "$WORK/v-cpurun-$n-$p"
  fi
}

storm() { # storm P N: 10 % of the services exit every second
  local p=$1 n=$2 d w0 w1 c0 c1 procs
  d=$(mktemp -d "$WORK/storm-$p-$n.XXXX")
  make_services "$d" storm "$n"
  say "$p: $n services, crash storm for $STORM_S s"
  if ! start_sup "$p" "$d" fast "$n"; then
    say "$p: $n services (storm): $FAIL"
    C["gap|$n|$p"]="failed: $FAIL"
    stop_ns "$NS_U"
    return 1
  fi
  sleep 1
  mapfile -t procs < <(pfn "$p" procs "$NS_INIT")
  w0=$EPOCHREALTIME
  c0=$("$TOOL" cpu "${procs[@]}")
  sleep "$STORM_S"
  c1=$("$TOOL" cpu "${procs[@]}")
  w1=$EPOCHREALTIME
  sleep 2 # every exit in the window has had 2 s to be restarted
  stop_ns "$NS_U"
  R["stormcpu|$n|$p"]=$(awk -v a="$c0" -v b="$c1" -v s="$w0" -v t="$w1" 'BEGIN { printf "%.2f", (b - a) / (t - s) }')
  # Gaps: for every `e` in [w0, w1], the next `s` of the same service.
  # shellcheck disable=SC2016 # an awk program
  find "$d/logs" -type f -print0 | xargs -0 awk -v w0="$w0" -v w1="$w1" '
    function flush() { if (e != "" && e >= w0 && e <= w1) print "miss"; e = "" }
    FNR == 1 { flush() }
    $1 == "e" { e = $2 }
    $1 == "s" && e != "" { if (e >= w0 && e <= w1) printf "%.3f\n", ($2 - e) * 1000; e = "" }
    END { flush() }' > "$d/gaps"
  local miss k
  miss=$(grep -c miss "$d/gaps" || true)
  k=$(grep -vc miss "$d/gaps" || true)
  R["stormn|$n|$p"]=$k
  R["stormmiss|$n|$p"]=$miss
  if [ "$k" -gt 0 ]; then
    R["gap|$n|$p"]=$(grep -v miss "$d/gaps" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    R["gap99|$n|$p"]=$(grep -v miss "$d/gaps" | sort -g | awk '{ a[NR] = $1 } END { i = int(NR * 0.99 + 0.999); if (i < 1) i = 1; print a[i] }')
  else
    C["gap|$n|$p"]="no exit in the window"
  fi
}

# ====================================================================
for n in $SIZES; do
  for p in "${SUPS[@]}"; do
    if [ "$p" != corral ] && [ "$p" != floor ] && [ "$n" -gt "$PEER_MAX" ]; then continue; fi
    for rep in $(seq "$REPS"); do
      steady "$p" "$n" "$rep" || break
    done
    for k in start cpustart anon stop alive zombies cpurun; do
      if [ -s "$WORK/v-$k-$n-$p" ]; then
        mapfile -t vals < "$WORK/v-$k-$n-$p"
        R["$k|$n|$p"]=$(median "${vals[@]}")
      fi
    done
    if [ $STORM = 1 ]; then storm "$p" "$n" || true; fi
  done
done

# ====================================================================
# the report
cell() { # cell KEY N P DECIMALS [UNIT]: the number, or the text, or —
  local v=${R["$1|$2|$3"]:-}
  if [ -n "${C["$1|$2|$3"]:-}" ]; then printf '%s' "${C["$1|$2|$3"]}"
  elif [ -n "$v" ]; then printf '%s%s' "$(fmt "$v" "$4")" "${5:-}"
  else printf '—'
  fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }'; }

report() {
  local n p s
  echo "# corral scaling — $(date '+%Y-%m-%d %H:%M %Z')"
  echo
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo); load average at start: $LOAD0."
  echo "Run: \`bash bench/scaling.sh${ARGS:+ $ARGS}\`, $(( (SECONDS - T_START) / 60 )) min $(( (SECONDS - T_START) % 60 )) s; sizes $SIZES(peers up to $PEER_MAX); $REPS run(s) per cell. Services, stamps and logs on $WORK_FS."
  echo
  echo "Versions:"
  for p in "${SUPS[@]}"; do echo "- $p: $(pfn "$p" version 2> /dev/null || echo '?')"; done
  for s in "${SKIPPED[@]}"; do echo "- skipped: $s"; done
  for s in "${LIMIT_NOTES[@]}"; do echo "- limits: $s"; done
  echo
  echo "| N | supervisor | start (× floor) | CPU to start | anonymous memory | status, all | status, one | SIGTERM → exit | alive / zombies at PID 1's exit | PID 1 CPU, exec → exit | storm: restart gap median (p99, n) | storm: CPU per s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  for n in $SIZES; do
    for p in "${SUPS[@]}"; do
      if [ "$p" != corral ] && [ "$p" != floor ] && [ "$n" -gt "$PEER_MAX" ]; then continue; fi
      local st anon stat_all stat_one stop left gap x
      st=$(cell start "$n" "$p" 1 " ms")
      x=""
      if [ -n "${R["start|$n|$p"]:-}" ] && [ -n "${R["start|$n|floor"]:-}" ] && [ "$p" != floor ]; then
        x=$(ratio "${R["start|$n|$p"]}" "${R["start|$n|floor"]}")
        st+=" (${x}×)"
      fi
      anon=$(cell anon "$n" "$p" 0)
      if [ -n "${R["anon|$n|$p"]:-}" ] && [ -z "${C["anon|$n|$p"]:-}" ]; then
        anon="$(thousands "${R["anon|$n|$p"]}") kB"
        if [ "${R["nprocs|$n|$p"]:-1}" -gt 1 ]; then anon+=" (${R["nprocs|$n|$p"]} procs)"; fi
      fi
      if [ "$p" = floor ]; then
        stat_all="n/a" stat_one="n/a"
      else
        stat_all=$(cell status_all "$n" "$p" 2 " ms") stat_one=$(cell status_one "$n" "$p" 2 " ms")
      fi
      stop=$(cell stop "$n" "$p" 1 " ms")
      left="—"
      if [ -n "${R["alive|$n|$p"]:-}" ]; then left="${R["alive|$n|$p"]} / ${R["zombies|$n|$p"]}"; fi
      gap=$(cell gap "$n" "$p" 2 " ms")
      if [ -n "${R["gap99|$n|$p"]:-}" ]; then
        gap+=" ($(fmt "${R["gap99|$n|$p"]}" 2), n=${R["stormn|$n|$p"]}"
        if [ "${R["stormmiss|$n|$p"]:-0}" -gt 0 ]; then gap+=", ${R["stormmiss|$n|$p"]} not restarted within 2 s"; fi
        gap+=")"
      fi
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$p" "$st" \
        "$(cell cpustart "$n" "$p" 1 " ms")" "$anon" "$stat_all" "$stat_one" "$stop" "$left" \
        "$(cell cpurun "$n" "$p" 0 " ms")" "$gap" "$(cell stormcpu "$n" "$p" 1 " ms")"
    done
  done
  echo
  echo "Notes:"
  echo "- start: right before the exec of unshare → the latest of the N services' start stamps (the stamp helper as the services' #! interpreter, then \`sleep infinity\`); (×) is ÷ the floor's: one C program as PID 1 forking and exec'ing the same N run files. Median of $REPS run(s), as are CPU to start, memory, SIGTERM → exit and PID 1's CPU."
  echo "- CPU to start: every thread of the supervisor's own processes (schedstat), exec → all started. PID 1 CPU, exec → exit: utime + stime of PID 1 at the start of its exit (10 ms resolution); in the first run it includes answering the status queries (hyperfine's hundreds of calls)."
  echo "- anonymous memory: \`Anonymous:\` of smaps_rollup summed over the supervisor's own processes (s6: s6-svscan + every s6-supervise; runit: runsvdir + every runsv), $SETTLE_S s after all started."
  echo "- status: hyperfine -N ${HF_OPTS[*]}, median of one CLI call in the first run (corral \`ctl status\` / \`ctl status s0001\`; s6: a sh loop of s6-svstat over every dir, sh included / one s6-svstat; runit: \`sv status\` with every dir / one)."
  echo "- SIGTERM → exit: SIGTERM to PID 1 from the host → its exit (pidfd); PID 1 traced with PTRACE_O_TRACEEXIT, and the namespace's other processes counted when the kernel stops it at the start of its exit: still alive (left to the kernel, which kills them with the namespace) / zombies. runsvdir exits at once on SIGTERM, so its services are left alive."
  echo "- storm: every service logs its start, lives about 10 s and exits 1 at a slot of its own, so 10 % of them exit in every second, spread over it; corral with restart-delay = \"0s\" (its lowest); runsv restarts at once a service that lived over 1 s; s6-supervise 2.11 waits 1 s before every restart (no setting); the floor restarts at once. Restart gap: the last log line before \`exit 1\` → the first of the next run, over every exit in a $STORM_S s window from 1 s after all started (n); CPU per s: the supervisor's own processes over that window (1000 ms/s = one core)."
  echo "- Every supervisor ran as PID 1 of \`unshare --pid --fork --mount-proc\`, with its defaults unless said otherwise (s6-svscan -c N+50 above 450 services). Method: BENCHMARKS.md and this script's header."
  echo
  # targets
  local met=0 tot=0 r1000=- r5000=- sr=- s5000=- stop5000=- left5000=-
  target() { # target OK: count it
    tot=$((tot + 1))
    if [ "$1" = 1 ]; then met=$((met + 1)); fi
  }
  if [ -n "${R["start|1000|corral"]:-}" ] && [ -n "${R["start|1000|floor"]:-}" ]; then
    r1000=$(ratio "${R["start|1000|corral"]}" "${R["start|1000|floor"]}")
    target "$(awk -v r="$r1000" 'BEGIN { print (r <= 1.5) }')"
  fi
  if [ -n "${R["start|5000|corral"]:-}" ] && [ -n "${R["start|5000|floor"]:-}" ]; then
    r5000=$(ratio "${R["start|5000|corral"]}" "${R["start|5000|floor"]}")
    target "$(awk -v r="$r5000" 'BEGIN { print (r <= 1.5) }')"
  fi
  if [ -n "${R["status_all|1000|corral"]:-}" ] && [ -n "${R["status_all|100|corral"]:-}" ]; then
    sr=$(ratio "${R["status_all|1000|corral"]}" "${R["status_all|100|corral"]}")
    target "$(awk -v r="$sr" 'BEGIN { print (r <= 3) }')"
  fi
  if [ -n "${R["status_all|5000|corral"]:-}" ]; then
    s5000=$(fmt "${R["status_all|5000|corral"]}" 2)
    target "$(awk -v v="$s5000" 'BEGIN { print (v < 50) }')"
  fi
  if [ -n "${R["stop|5000|corral"]:-}" ]; then
    stop5000=$(fmt "${R["stop|5000|corral"]}" 1)
    target "$(awk -v v="$stop5000" 'BEGIN { print (v <= 2000) }')"
    left5000="${R["alive|5000|corral"]}/${R["zombies|5000|corral"]}"
    target "$([ "$left5000" = 0/0 ] && echo 1 || echo 0)"
  fi
  echo "Targets (issue 16, corral): start ≤ 1.5 × floor at 1000 ($r1000×) and 5000 ($r5000×); status of 1000 ≤ 3 × status of 100 ($sr×); 5000 listed in < 50 ms ($s5000 ms), stopped ≤ 2 s after SIGTERM ($stop5000 ms) with 0 alive / 0 zombies at PID 1's exit ($left5000): $met of $tot measured met."
  echo
  echo "RESULT sizes=$(tr ' ' ',' <<< "${SIZES% }") load=${LOAD0%% *} start_x_floor_1000=$r1000 start_x_floor_5000=$r5000 status_1000_over_100=$sr status_all_5000_ms=$s5000 stop_5000_ms=$stop5000 left_5000=$left5000 targets_met=$met/$tot"
}

tsv() { # the numbers, one line per size and supervisor
  local n p k
  local keys=(start cpustart anon status_all status_one stop cpurun gap gap99 stormcpu)
  printf 'n\tsupervisor'; printf '\t%s' "${keys[@]}"; printf '\n'
  for p in "${SUPS[@]}"; do
    for n in $SIZES; do
      if [ "$p" != corral ] && [ "$p" != floor ] && [ "$n" -gt "$PEER_MAX" ]; then continue; fi
      printf '%s\t%s' "$n" "$p"
      for k in "${keys[@]}"; do printf '\t%s' "${R["$k|$n|$p"]:--}"; done
      printf '\n'
    done
  done
}

plot() { # plot TSV PNG: each row against N, log-log, a line per supervisor
  local tsv=$1 png=$2 p
  if command -v gnuplot > /dev/null; then
    # One panel per column that has a value > 0 (a log axis cannot show 0,
    # and gnuplot stops at a panel with no point).
    local panels=(
      "3|start: exec → all N started (ms)" "4|CPU of the supervisor, exec → all started (ms)"
      "5|anonymous memory of the supervisor's processes (kB)" "6|status of all N services, one CLI call (ms)"
      "7|status of one service, one CLI call (ms)" "8|SIGTERM → PID 1 exit (ms)"
      "10|storm: restart gap, median (ms)" "11|storm: restart gap, p99 (ms)" "12|storm: supervisor CPU (ms per s)"
    )
    local keep=() pan col
    for pan in "${panels[@]}"; do
      col=${pan%%|*}
      if awk -F '\t' -v c="$col" 'NR > 1 && $c != "-" && $c > 0 { found = 1 } END { exit !found }' "$tsv"; then keep+=("$pan"); fi
    done
    [ ${#keep[@]} -gt 0 ] || { say "no plot: no row has a value"; return 1; }
    for p in "${SUPS[@]}"; do awk -F '\t' -v p="$p" 'NR > 1 && $2 == p' "$tsv" > "$WORK/plot-$p.dat"; done
    local rows=$(( (${#keep[@]} + 2) / 3 ))
    {
      echo "set terminal pngcairo size 1800,$((rows * 400)) font \",10\""
      echo "set output \"$png\""
      printf '%s\n' 'set datafile separator "\t"'
      echo 'set datafile missing "-"'
      echo 'set logscale xy'
      echo 'set grid'
      echo 'set key top left'
      echo 'set xlabel "services (N)"'
      echo "set multiplot layout $rows,3 title \"corral scaling, $(date '+%Y-%m-%d %H:%M'), $(nproc) CPUs, load $LOAD0 (log-log: a slope of 1 is linear)\""
      echo "sups = \"${SUPS[*]}\""
      echo "file(p) = sprintf(\"$WORK/plot-%s.dat\", p)"
      for pan in "${keep[@]}"; do
        echo "set title \"${pan#*|}\""
        echo "plot for [p in sups] file(p) using 1:${pan%%|*} with linespoints title p"
      done
      echo 'unset multiplot'
    } > "$WORK/plot.gp"
    gnuplot "$WORK/plot.gp" > "$WORK/gnuplot.out" 2>&1 || { say "gnuplot failed: $(grep -v -i warning "$WORK/gnuplot.out" | tail -n 3)"; return 1; }
  elif python3 -c 'import matplotlib' 2> /dev/null; then
    python3 - "$tsv" "$png" "$LOAD0" << 'EOF' || { say "matplotlib failed"; return 1; }
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
cols = [("start", "start: exec → all N started (ms)"), ("cpustart", "CPU, exec → all started (ms)"),
        ("anon", "anonymous memory (kB)"), ("status_all", "status, all N (ms)"), ("status_one", "status, one (ms)"),
        ("stop", "SIGTERM → PID 1 exit (ms)"), ("gap", "storm: restart gap, median (ms)"),
        ("gap99", "storm: restart gap, p99 (ms)"), ("stormcpu", "storm: CPU (ms per s)")]
fig, axes = plt.subplots(3, 3, figsize=(18, 12))
sups = list(dict.fromkeys(r["supervisor"] for r in rows))
for ax, (k, title) in zip(axes.flat, cols):
    for s in sups:
        pts = [(float(r["n"]), float(r[k])) for r in rows if r["supervisor"] == s and r[k] not in ("-", "") and float(r[k]) > 0]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=s)
    ax.set_xscale("log"); ax.set_yscale("log"); ax.set_title(title); ax.set_xlabel("services (N)"); ax.grid(True)
    ax.legend(fontsize=8)
fig.suptitle("corral scaling, load %s (log-log: a slope of 1 is linear)" % sys.argv[3])
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
EOF
  else
    say "no plot: install gnuplot (apt-get install -y gnuplot-nox) or matplotlib (pip install matplotlib)"
    return 1
  fi
}

ARGS=""
ARGS+=" --sizes \"${SIZES% }\""
[ "$PEERS_ARG" = s6,runit ] || ARGS+=" --peers $PEERS_ARG"
[ "$REPS" = 3 ] || ARGS+=" --reps $REPS"
[ "$STORM_S" = 10 ] || ARGS+=" --storm-secs $STORM_S"
[ $STORM = 1 ] || ARGS+=" --no-storm"
[ "$SETTLE_S" = 5 ] || ARGS+=" --settle $SETTLE_S"
[ "$CORRAL_BIN" = "$(readlink -f target/release/corral)" ] || ARGS+=" --corral $CORRAL_BIN"
ARGS=${ARGS# }
mkdir -p bench/results
BASE=bench/results/scaling-$(date +%Y%m%d-%H%M)
tsv > "$BASE.tsv"
report | tee "$BASE.md"
if [ $PLOT = 1 ] && plot "$BASE.tsv" "$BASE.png"; then say "plot: $BASE.png"; fi
say "saved $BASE.md and $BASE.tsv; the run took $((SECONDS - T_START)) s"
