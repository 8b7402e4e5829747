# Shared by bench/compare.sh and the peer adapters beside this file: service
# scripts, starting a supervisor as PID 1 of a new PID namespace, and reading
# anonymous memory and context switches of its processes. Source after
# bench/lib.sh and after setting BENCHTOOL (the compiled bench/peers/benchtool.c,
# with a `stamp` link beside it).
#
# A peer adapter bench/peers/NAME.sh defines, with P = NAME with `-` as `_`:
#   P_bins              the binaries that make up the supervisor, one a line
#                       (names looked up in PATH, or paths)
#   P_install           the command that installs it
#   P_version           its version, one line
#   P_multi             exit 0 if it supervises several services, 1 if it runs
#                       one child only (tini and the like)
#   P_prepare D MODE NAME...
#                       its configuration in D for the services D/svc/NAME/run
#                       (MODE: `default`, or `fast` = its lowest restart delay);
#                       sets CMD to the argv of its PID 1
#   P_procs INIT        host pids of its own processes, INIT being its PID 1
#   P_status D          `label<TAB>command` lines of its status CLI for
#                       hyperfine (nothing when it has none); labels `all`
#                       (every service) and `one`; a command `!REASON`: n/a
#   P_restart_runs      restarts to time at the lowest setting (full run)

# --- service scripts: every peer runs the same executable D/svc/NAME/run

svc_dir() { mkdir -p "$1/svc/$2"; echo "$1/svc/$2"; }

# stamp: writes the time it started to `started` beside it (the benchtool
# `stamp` link as #! interpreter: no shell), then execs `sleep infinity`.
svc_stamp() { # svc_stamp D NAME
  local s
  s=$(svc_dir "$1" "$2")
  printf '#!%s\n' "$STAMP" > "$s/run"
  chmod +x "$s/run"
}

# flap: appends `s TIME` at start and `e TIME` just before `exit 1`.
svc_flap() { # svc_flap D NAME
  local s
  s=$(svc_dir "$1" "$2")
  cat > "$s/run" <<EOF
#!/bin/bash
echo "s \$EPOCHREALTIME" >> $s/log
echo "e \$EPOCHREALTIME" >> $s/log
exit 1
EOF
  chmod +x "$s/run"
}

# orphans: creates N double-forked orphans, writes the time of the last one to
# D/done, then sleeps.
svc_orphans() { # svc_orphans D NAME N
  local s
  s=$(svc_dir "$1" "$2")
  printf '#!/bin/sh\nexec %s orphans %s %s/done\n' "$BENCHTOOL" "$3" "$1" > "$s/run"
  chmod +x "$s/run"
}

# slowstop: on SIGTERM, logs `term TIME`, takes 200 ms, logs `done TIME`, exits 0.
svc_slowstop() { # svc_slowstop D NAME
  local s
  s=$(svc_dir "$1" "$2")
  cat > "$s/run" <<EOF
#!/bin/bash
trap 'echo "term \$EPOCHREALTIME" >> $s/stop; kill \$c 2>/dev/null; sleep 0.2; echo "done \$EPOCHREALTIME" >> $s/stop; exit 0' TERM
sleep infinity & c=\$!
echo "\$EPOCHREALTIME" > $s/started
wait \$c
EOF
  chmod +x "$s/run"
}

# stubborn: ignores SIGTERM (also as the `sleep` it execs), writes its pid (in
# the namespace) to `nspid`.
svc_stubborn() { # svc_stubborn D NAME
  local s
  s=$(svc_dir "$1" "$2")
  cat > "$s/run" <<EOF
#!/bin/bash
trap '' TERM
echo \$\$ > $s/nspid
echo "\$EPOCHREALTIME" > $s/started
exec sleep infinity
EOF
  chmod +x "$s/run"
}

started_count() { # started_count D: services of D that wrote `started`
  local f n=0
  for f in "$1"/svc/*/started; do
    if [ -s "$f" ]; then n=$((n + 1)); fi
  done
  echo "$n"
}

started_at_least() { [ "$(started_count "$1")" -ge "$2" ]; }

# --- a supervisor as PID 1 of a new PID namespace

# ns_start D: runs CMD as PID 1 of a new PID namespace (and mount namespace,
# for its own /proc); D/t0 gets the time right before the exec of unshare.
# Sets NS_U (unshare's pid, in NS_PIDS) and NS_INIT (PID 1's host pid, once it
# has exec'd CMD).
ns_start() {
  local d=$1 unshare_exe end
  bash -c 'echo "$EPOCHREALTIME" > "$0"; exec "$@"' "$d/t0" \
    unshare --pid --fork --mount-proc --kill-child "${CMD[@]}" > "$d/init.out" 2>&1 < /dev/null &
  NS_U=$!
  NS_PIDS+=("$NS_U")
  unshare_exe=$(readlink -f "$(command -v unshare)")
  end=$((SECONDS + 10))
  while :; do
    NS_INIT=$(ns_init "$NS_U")
    if [ -n "$NS_INIT" ] && [ "$(readlink "/proc/$NS_INIT/exe" 2>/dev/null)" != "$unshare_exe" ]; then
      return 0
    fi
    if [ $SECONDS -ge $end ] || ! kill -0 "$NS_U" 2>/dev/null; then
      echo "could not start: ${CMD[*]} (see $d/init.out)" >&2
      cat "$d/init.out" >&2 || true
      return 1
    fi
    sleep 0.01
  done
}

children_named() { # children_named PID COMM: pids of PID's children named COMM
  { ps -o pid=,comm= --ppid "$1" 2>/dev/null || true; } | awk -v c="$2" '$2 == c { print $1 }'
}

host_pid_of() { # host_pid_of INIT NSPID: host pid of INIT's descendant whose pid in the namespace is NSPID
  local p
  for p in $(descendants "$1"); do
    if awk -v n="$2" '/^NSpid:/ { found = (NF >= 3 && $NF == n) } END { exit !found }' "/proc/$p/status" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# --- what the supervisor's own processes use

anon_sum() { # anon_sum PID...: total anonymous memory in kB (`Anonymous:` in
  # smaps_rollup: heap, stacks, private copies of pages; what a memory cgroup
  # can never reclaim without swap, unlike file-backed code pages)
  local p total=0 v
  for p in "$@"; do
    v=$(awk '/^Anonymous:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

ctxt_sum() { # ctxt_sum PID...: voluntary + nonvoluntary context switches of all their threads
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}

thread_count() { # thread_count PID...
  local p n=0
  for p in "$@"; do n=$((n + $(ls "/proc/$p/task" | wc -l))); done
  echo "$n"
}
