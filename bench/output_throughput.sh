#!/usr/bin/env bash
# Service output throughput (issues 7 and 14): one service writes numbered
# lines as fast as it can; a reader consumes corral's stdout. Measured in four
# modes:
#   inherit     the service writes straight into corral's stdout (no corral work)
#   prefix      corral reads the service's pipe and writes `gen | line`
#   timestamps  the same with `--output-timestamps`: `2026-...Z gen | line`
#   json        `--output-format json`: one JSON object per line
# Targets: text (prefix, timestamps) >= 0.8 x inherit, json >= 0.5 x inherit.
#
# Three small C programs, compiled here with cc:
#   gen NAME COUNT       COUNT lines `NAME:<10-digit seq>:<64 x letter>`, the
#                        letter 'a' + seq % 26, in 1 MiB writes; it formats in
#                        place (GB/s into /dev/null), so it is not the bottleneck.
#   count LINES          the timed reader: 1 MiB reads, counting newlines; times
#                        from its first byte to its LINES-th newline (corral's
#                        startup is not measured).
#   check MODE COUNT NAME...  the verifier: every line must be MODE's form of
#                        `NAME:seq:payload`, intact; every seq of every NAME
#                        once and in order.
#                        Prints lost, torn (malformed, or pieces of two lines)
#                        and reordered (repeated or out of order) lines.
# MB/s counts the service's own bytes (80 a line, the prefix not counted), so
# both modes move the same payload; MB = 10^6 bytes.
#
# Usage: bench/output_throughput.sh [CORRAL_BINARY]   (default target/release/corral)
# Environment: LINES (per run, default 10000000 = 800 MB), RUNS (timed runs
# per mode, default 3; the median is reported). After the timed runs, one
# prefix run with two services at once (LINES each) goes through the verifier.
# MODES (default "inherit prefix timestamps json") picks the modes. The LAST
# line printed is exactly
#   RESULT inherit_mbps=X inherit_lps=X prefix_mbps=X ... lost=N torn=N
# (one mbps/lps pair per mode; reordered lines count as torn; lost and torn
# add up the verifier's runs, one per mode but inherit). Exit status 1 if a
# line was lost or torn.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/corral}
[ -x "$BIN" ] || { echo "no corral binary at $BIN (cargo build --release)" >&2; exit 1; }
BIN=$(realpath "$BIN")
command -v cc >/dev/null || { echo "cc is missing (apt-get install -y gcc)" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
LINES=${LINES:-10000000}
RUNS=${RUNS:-3}
MODES=${MODES:-inherit prefix timestamps json}

cat > "$WORK/gen.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAYLOAD 64
static char buf[1 << 20];

static void out(size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(1, buf + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { perror("gen: write"); exit(1); }
        done += (size_t)n;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: gen NAME COUNT\n"); return 2; }
    const char *name = argv[1];
    size_t nlen = strlen(name);
    unsigned long long count = strtoull(argv[2], NULL, 10);
    size_t linelen = nlen + 1 + 10 + 1 + PAYLOAD + 1;
    char digits[10];
    memset(digits, '0', sizeof digits);
    size_t used = 0;
    for (unsigned long long i = 0; i < count; i++) {
        if (used + linelen > sizeof buf) { out(used); used = 0; }
        char *p = buf + used;
        memcpy(p, name, nlen); p += nlen; *p++ = ':';
        memcpy(p, digits, 10); p += 10; *p++ = ':';
        memset(p, 'a' + (int)(i % 26), PAYLOAD); p += PAYLOAD; *p = '\n';
        used += linelen;
        for (int d = 9; d >= 0; d--) {
            if (digits[d] == '9') { digits[d] = '0'; } else { digits[d]++; break; }
        }
    }
    out(used);
    return 0;
}
EOF

cat > "$WORK/count.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 20];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: count LINES\n"); return 2; }
    unsigned long long want = strtoull(argv[1], NULL, 10), got = 0, bytes = 0;
    double start_at = -1, done_at = -1;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { perror("count: read"); return 1; }
        if (n == 0) break;
        if (start_at < 0) start_at = now();
        bytes += (unsigned long long)n;
        for (char *p = buf, *end = buf + n; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) got++;
        if (done_at < 0 && got >= want) done_at = now();
    }
    printf("lines=%llu bytes=%llu secs=%.3f\n", got, bytes, done_at >= 0 ? done_at - start_at : 0.0);
    return done_at >= 0 ? 0 : 1;
}
EOF

cat > "$WORK/check.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAYLOAD 64
#define MAXSVC 8
static char buf[1 << 21];
static char pattern[26][PAYLOAD];
static const char *names[MAXSVC];
static size_t nlens[MAXSVC];
static unsigned long long next[MAXSVC];
static int nsvc;
static unsigned long long count, lines, lost, torn, reordered;
static enum { PREFIX, TIMESTAMPS, JSON } mode;

/* JSON: the string value after KEY (`"line":"`); gen writes no escapes. */
static int json_str(const char *l, size_t len, const char *key, const char **v, size_t *vlen) {
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen <= len; i++) {
        if (memcmp(l + i, key, klen) != 0) continue;
        const char *s = l + i + klen, *e = memchr(s, '"', len - (size_t)(s - l));
        if (e == NULL) return 0;
        *v = s; *vlen = (size_t)(e - s);
        return 1;
    }
    return 0;
}

/* One line, without its newline. */
static void line(const char *l, size_t len) {
    const char *svc = NULL, *body = NULL;
    size_t svclen = 0, bodylen = 0;
    if (mode == JSON) {
        if (len < 2 || l[0] != '{' || l[len - 1] != '}'
            || !json_str(l, len, "\"service\":\"", &svc, &svclen)
            || !json_str(l, len, "\"line\":\"", &body, &bodylen)) { torn++; return; }
    } else if (mode == TIMESTAMPS) {
        /* 2026-12-04T14:00:00.123Z and a space */
        if (len < 25 || l[4] != '-' || l[10] != 'T' || l[23] != 'Z' || l[24] != ' ') { torn++; return; }
        l += 25; len -= 25;
    }
    for (int k = 0; k < nsvc; k++) {
        const char *p = l;
        size_t rest = len, n = nlens[k];
        if (mode == JSON) {
            if (svclen != n || memcmp(svc, names[k], n) != 0) continue;
            p = body; rest = bodylen;
        } else {
            if (rest < n + 3 || memcmp(p, names[k], n) != 0 || memcmp(p + n, " | ", 3) != 0) continue;
            p += n + 3; rest -= n + 3;
        }

        if (rest != n + 1 + 10 + 1 + PAYLOAD || memcmp(p, names[k], n) != 0 || p[n] != ':' || p[n + 11] != ':') break;
        unsigned long long seq = 0;
        for (int d = 0; d < 10; d++) {
            unsigned c = (unsigned char)p[n + 1 + d] - '0';
            if (c > 9) { torn++; return; }
            seq = seq * 10 + c;
        }
        if (memcmp(p + n + 12, pattern[seq % 26], PAYLOAD) != 0) break;
        lines++;
        if (seq == next[k]) {
            next[k]++;
        } else if (seq > next[k]) {
            lost += seq - next[k];
            next[k] = seq + 1;
        } else {
            reordered++;
        }
        return;
    }
    torn++;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc - 3 > MAXSVC) { fprintf(stderr, "usage: check MODE COUNT NAME...\n"); return 2; }
    mode = strcmp(argv[1], "json") == 0 ? JSON : strcmp(argv[1], "timestamps") == 0 ? TIMESTAMPS : PREFIX;
    count = strtoull(argv[2], NULL, 10);
    nsvc = argc - 3;
    for (int k = 0; k < nsvc; k++) { names[k] = argv[k + 3]; nlens[k] = strlen(names[k]); }
    for (int i = 0; i < 26; i++) memset(pattern[i], 'a' + i, PAYLOAD);
    size_t have = 0;
    int skipping = 0; /* inside an over-long line, already counted as torn */
    for (;;) {
        ssize_t n = read(0, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { perror("check: read"); return 1; }
        if (n == 0) break;
        have += (size_t)n;
        char *p = buf, *end = buf + have, *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            if (!skipping) line(p, (size_t)(nl - p));
            skipping = 0;
            p = nl + 1;
        }
        have = (size_t)(end - p);
        if (have == sizeof buf) { if (!skipping) torn++; skipping = 1; have = 0; }
        else memmove(buf, p, have);
    }
    if (have > 0 && !skipping) torn++; /* a last line without its newline */
    for (int k = 0; k < nsvc; k++) if (next[k] < count) lost += count - next[k];
    printf("lines=%llu lost=%llu torn=%llu reordered=%llu\n", lines, lost, torn, reordered);
    return 0;
}
EOF
for prog in gen count check; do cc -O2 -o "$WORK/$prog" "$WORK/$prog.c"; done

field() { # field NAME "k=v k=v ...": the value of NAME
  tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}

# run DIR MODE READER...: corral with one service per name in $NAMES (each
# `gen NAME $LINES`, output MODE); READER... reads corral's stdout, its
# answer goes to DIR/result. Not in a subshell: the pids must reach PIDS
# for the cleanup trap.
run() {
  local d=$1 mode=$2 corral reader name output=prefix
  local -a flags=()
  shift 2
  case $mode in
    inherit) output=inherit ;;
    timestamps) flags=(--output-timestamps) ;;
    json) flags=(--output-format json) ;;
  esac
  mkdir -p "$d/services" "$d/init" "$d/finish"
  for name in $NAMES; do
    cat > "$d/services/$name.toml" <<EOF
restart = "never"
output = "$output"
command = ["sh", "-c", "'$WORK/gen' $name $LINES; touch '$d/$name.done'"]
EOF
  done
  mkfifo "$d/out"
  "$@" < "$d/out" > "$d/result" & reader=$!
  PIDS+=("$reader")
  "$BIN" --services "$d/services" --init-dir "$d/init" --finish-dir "$d/finish" \
    --socket "$d/ctl.sock" "${flags[@]}" > "$d/out" 2> "$d/corral.log" & corral=$!
  PIDS+=("$corral")
  for name in $NAMES; do
    wait_for 600 test -e "$d/$name.done" || { cat "$d/corral.log" >&2; return 1; }
  done
  # SIGTERM: corral writes out what it still holds and exits: EOF for the reader.
  stop_pid "$corral"
  wait "$reader" || { echo "the reader failed in $d: $(cat "$d/result")" >&2; return 1; }
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

LINE=$((3 + 1 + 10 + 1 + 64 + 1)) # `gen:0000000000:aaa...a\n`
echo "== $LINES lines of $LINE bytes per run, $RUNS runs per mode ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r))"
declare -A MBPS LPS MED_MBPS MED_LPS
for mode in $MODES; do
  MBPS[$mode]="" LPS[$mode]=""
  for n in $(seq "$RUNS"); do
    NAMES=gen run "$WORK/$mode-$n" "$mode" "$WORK/count" "$LINES"
    r=$(cat "$WORK/$mode-$n/result")
    secs=$(field secs "$r")
    mbps=$(awk -v b="$((LINES * LINE))" -v s="$secs" 'BEGIN { printf "%.1f", (s > 0 ? b / s / 1e6 : 0) }')
    lps=$(awk -v l="$LINES" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? l / s : 0) }')
    echo "$mode run $n: $r -> $mbps MB/s, $lps lines/s"
    MBPS[$mode]+="$mbps"$'\n'
    LPS[$mode]+="$lps"$'\n'
  done
  MED_MBPS[$mode]=$(printf '%s' "${MBPS[$mode]}" | median)
  MED_LPS[$mode]=$(printf '%s' "${LPS[$mode]}" | median)
done
ratio() { awk -v p="${MED_MBPS[$1]:-0}" -v i="${MED_MBPS[inherit]:-0}" 'BEGIN { printf "%.2f", (i > 0 ? p / i : 0) }'; }
summary="median MB/s:"
for mode in $MODES; do summary+=" $mode ${MED_MBPS[$mode]}"; done
echo "$summary"
for mode in $MODES; do
  case $mode in
    prefix | timestamps) echo "$mode / inherit = $(ratio "$mode") (target >= 0.8)" ;;
    json) echo "json / inherit = $(ratio json) (target >= 0.5)" ;;
  esac
done

LOST=0 TORN=0
for mode in $MODES; do
  [ "$mode" = inherit ] && continue
  NAMES="gen1 gen2" run "$WORK/verify-$mode" "$mode" "$WORK/check" "$mode" "$LINES" gen1 gen2
  r=$(cat "$WORK/verify-$mode/result")
  echo "$mode, two services at once, every line checked: $r"
  LOST=$((LOST + $(field lost "$r")))
  TORN=$((TORN + $(field torn "$r") + $(field reordered "$r")))
done
result="RESULT"
for mode in $MODES; do result+=" ${mode}_mbps=${MED_MBPS[$mode]} ${mode}_lps=${MED_LPS[$mode]}"; done
echo "$result lost=$LOST torn=$TORN"
if [ "$LOST" -gt 0 ] || [ "$TORN" -gt 0 ]; then
  echo "lines were lost or torn" >&2
  exit 1
fi
