#!/usr/bin/env bash
# bench/floors.sh [CORRAL_BINARY [OTHER_CORRAL...]]: what this machine allows
# at best, for the issue-6 targets corral misses. Each line compares corral with the same work
# done by the smallest program that can do it, no supervisor involved:
#   exec:   a C `true`-like (tini --version) and a Rust hello world vs
#           `corral -V` and `corral ctl status` (hyperfine -N), and the status
#           query alone from a running client (no exec)
#   start:  100 children of a C loop (fork + exec, no waiting) that write a
#           start stamp then exec sleep, vs corral starting the same 100 (and
#           each OTHER_CORRAL, for a before/after): REPS rounds (default 11)
#           of one run each, in a new order each round, on /dev/shm; the
#           ratio is the median of each run's ratio to its round's floor
#           (this machine's speed drifts by more than what is measured)
#   memory: anonymous memory (`Anonymous:` in smaps_rollup: what a memory
#           cgroup can never reclaim without swap) of the smallest Rust PID 1
#           (std, same profile as corral: lto, opt-level z, stripped) reaping
#           one child, vs corral with one (both 5 s after start)
# Needs gcc, rustc, hyperfine, util-linux unshare. Installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
# Stamps and services on tmpfs: on ext4 the start stamps' inodes were part
# of what was timed.
export TMPDIR=${TMPDIR:-/dev/shm}
. bench/lib.sh
CORRAL=$(realpath "${1:-target/release/corral}")
OTHERS=()
for b in "${@:2}"; do OTHERS+=("$(realpath "$b")"); done
REPS=${REPS:-11}
for tool in gcc rustc hyperfine unshare; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y ${tool/rustc/rustc})" >&2; exit 1; }
done
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

cat > "$WORK/stamp.c" <<'EOF'
#include <stdio.h>
#include <time.h>
#include <unistd.h>
/* stamp FILE PROG ARGS...: write CLOCK_REALTIME to FILE, then exec PROG. */
int main(int c, char **v) {
  struct timespec t; clock_gettime(CLOCK_REALTIME, &t);
  FILE *f = fopen(v[1], "w");
  if (f) { fprintf(f, "%ld.%09ld\n", (long)t.tv_sec, t.tv_nsec); fclose(f); }
  execvp(v[2], v + 2); return 127;
}
EOF
cat > "$WORK/fork100.c" <<'EOF'
#include <stdio.h>
#include <unistd.h>
/* fork100 STAMP DIR: start 100 `STAMP DIR/i sleep infinity`, wait for nothing. */
int main(int c, char **v) {
  char f[4096];
  for (int i = 1; i <= 100; i++) {
    snprintf(f, sizeof f, "%s/%d", v[2], i);
    if (fork() == 0) { execl(v[1], "stamp", f, "sleep", "infinity", (char *)0); _exit(127); }
  }
  for (;;) pause();
}
EOF
cat > "$WORK/floor.rs" <<'EOF'
// The smallest Rust PID 1 that supervises anything: one child, reaped forever.
unsafe extern "C" { fn wait(status: *mut i32) -> i32; }
fn main() {
    let _child = std::process::Command::new("sleep").arg("infinity").spawn();
    loop { let mut s = 0; unsafe { wait(&mut s) }; }
}
EOF
cat > "$WORK/hello.rs" <<'EOF'
fn main() { println!("hello"); }
EOF
gcc -O2 -o "$WORK/stamp" "$WORK/stamp.c"
gcc -O2 -o "$WORK/fork100" "$WORK/fork100.c"
for r in floor hello; do
  rustc --edition 2021 -C opt-level=z -C lto -C codegen-units=1 -C strip=symbols \
    -o "$WORK/$r" "$WORK/$r.rs"
done

echo "# floors on $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- start: 100 services -------------------------------------------------
last_stamp() { # last_stamp DIR T0: ms from T0 to the latest stamp in DIR
  python3 - "$1" "$2" <<'EOF'
import glob, sys
ts = [float(open(f).read()) for f in glob.glob(sys.argv[1] + "/*")]
print("%.1f" % ((max(ts) - float(sys.argv[2])) * 1000))
EOF
}
stamps_at_least() { [ "$(ls "$WORK/out" | wc -l)" -ge "$1" ]; }
run_start() { # run_start NAME CMD...: ms from exec to 100 stamps in $WORK/out
  shift
  rm -rf "$WORK/out"; mkdir -p "$WORK/out"
  local t0 u
  t0=$(date +%s.%N)
  unshare --pid --fork --mount-proc --kill-child "$@" >/dev/null 2>&1 &
  u=$!; NS_PIDS+=("$u")
  wait_for 30 stamps_at_least 100
  last_stamp "$WORK/out" "$t0"
  stop_ns "$u"
}
mkdir -p "$WORK/svc" "$WORK/none"
for i in $(seq 100); do
  printf 'command = ["%s", "%s/out/%d", "sleep", "infinity"]\n' "$WORK/stamp" "$WORK" "$i" >"$WORK/svc/s$i.toml"
done
declare -A STARTS=()
for _ in $(seq "$REPS"); do
  # In a new order each time, each after a pause: a run right after
  # another one's teardown was slower, whichever it was.
  for b in $(printf '%s\n' floor "$CORRAL" "${OTHERS[@]}" | shuf); do
    sleep 0.3
    if [ "$b" = floor ]; then
      STARTS[floor]+="$(run_start floor "$WORK/fork100" "$WORK/stamp" "$WORK/out") "
    else
      STARTS[$b]+="$(run_start corral "$b" --services "$WORK/svc" --init-dir "$WORK/none" --finish-dir "$WORK/none" --socket "$WORK/c.sock") "
    fi
  done
done
start_row() { # start_row NAME BIN: median ms, and the median of per-run ratios to the floor
  python3 - "$1" "${STARTS[floor]}" "${STARTS[$2]}" <<'EOF'
import statistics as st, sys
floor = [float(x) for x in sys.argv[2].split()]
runs = [float(x) for x in sys.argv[3].split()]
print("%s %.1f ms (%.2fx the floor, median of per-run ratios)" % (
    sys.argv[1], st.median(runs), st.median(b / f for f, b in zip(floor, runs))))
EOF
}
line="start 100, $REPS runs each: no supervisor (C fork loop) $(echo ${STARTS[floor]} | tr ' ' '\n' | median) ms; $(start_row corral "$CORRAL")"
for b in "${OTHERS[@]}"; do line+="; $(start_row "$b" "$b")"; done
echo "$line"

# --- memory: anonymous ----------------------------------------------------
ns_init_of() { [ -n "$(ns_init "$1")" ]; }
anon_of() { # anon_of CMD...: anonymous memory (kB) of the namespace's PID 1 after 5 s (steady state, as compare.sh)
  unshare --pid --fork --mount-proc --kill-child "$@" >/dev/null 2>&1 &
  local u=$! init; NS_PIDS+=("$u")
  wait_for 10 ns_init_of "$u"
  sleep 5
  init=$(ns_init "$u")
  awk '/^Anonymous:/{print $2}' "/proc/$init/smaps_rollup"
  stop_ns "$u"
}
mkdir -p "$WORK/one"
printf 'command = ["sleep", "infinity"]\n' >"$WORK/one/s.toml"
sync
floor_kb=$(for _ in 1 2 3; do anon_of "$WORK/floor"; done | median)
corral_kb=$(for _ in 1 2 3; do
  anon_of "$CORRAL" --services "$WORK/one" --init-dir "$WORK/none" --finish-dir "$WORK/none" --socket "$WORK/m.sock"
done | median)
echo "anonymous memory, 1 service: smallest Rust PID 1 ${floor_kb} kB ($(stat -c %s "$WORK/floor") bytes); corral ${corral_kb} kB ($(stat -c %s "$CORRAL") bytes)"

# --- exec: status query ---------------------------------------------------
mkdir -p "$WORK/ten"
for i in $(seq 10); do printf 'command = ["sleep", "infinity"]\n' >"$WORK/ten/s$i.toml"; done
unshare --pid --fork --mount-proc --kill-child "$CORRAL" --services "$WORK/ten" --init-dir "$WORK/none" \
  --finish-dir "$WORK/none" --socket "$WORK/s.sock" >/dev/null 2>&1 &
u=$!; NS_PIDS+=("$u")
wait_for 10 "$CORRAL" ctl --socket "$WORK/s.sock" status
hyperfine -N --warmup 20 --runs 300 --export-json "$WORK/exec.json" \
  "$(command -v tini || echo /bin/true) --version" "$WORK/hello" "$CORRAL -V" \
  "$CORRAL ctl --socket $WORK/s.sock status" >/dev/null 2>&1
python3 - "$WORK/exec.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
names = ["C program (tini --version)", "Rust hello world", "corral -V", "corral ctl status (10 services)"]
print("exec, median: " + "; ".join("%s %.2f ms" % (n, x["median"] * 1000) for n, x in zip(names, r)))
EOF
# The query alone, from a client that is already running: one request per
# connection, 1 ms apart (as hyperfine's calls are), request sent -> answer read.
python3 - "$WORK/s.sock" <<'EOF'
import socket, sys, time
times = []
for _ in range(300):
    time.sleep(0.001)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    t0 = time.perf_counter()
    s.sendall(b'{"v":1,"op":"status","services":[]}\n')
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        answer += chunk
    times.append(time.perf_counter() - t0)
    s.close()
times.sort()
print("status round trip on the socket, no exec (python client): median %.0f us" % (times[len(times) // 2] * 1e6))
EOF
stop_ns "$u"
