#!/usr/bin/env bash
# Syslog capture throughput (issue 14): SENDERS processes (default 4) each send
# COUNT messages (default 25000 each: 100k in all) to corral's `--syslog`
# socket, in blocking mode (a full socket makes the sender wait, as glibc's
# syslog(3) and `logger` do), as fast as they can; a reader consumes corral's
# stdout. Target: 100k messages/s with 0 lost.
#
# Two small C programs, compiled here with cc:
#   send PATH NAME COUNT   COUNT RFC 3164 datagrams `<134>Dec  4 14:00:00
#                          NAME[pid]: seq NNNNNNNNNN`, connected, blocking.
#   check COUNT NAME...    reads corral's stdout until every message has come
#                          (or EOF), timing from its first `syslog |` line to
#                          the last expected one; every `syslog | NAME[pid]:
#                          seq N` line must be whole, and every seq of every
#                          NAME must arrive once and in order.
#
# Usage: bench/syslog_throughput.sh [CORRAL_BINARY]   (default target/release/corral)
# The LAST line printed is exactly
#   RESULT messages=N secs=S msgs_per_sec=R lost=N torn=N
# Exit status 1 if a message was lost or torn.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/corral}
[ -x "$BIN" ] || { echo "no corral binary at $BIN (cargo build --release)" >&2; exit 1; }
BIN=$(realpath "$BIN")
command -v cc >/dev/null || { echo "cc is missing (apt-get install -y gcc)" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
SENDERS=${SENDERS:-4}
COUNT=${COUNT:-25000}

cat > "$WORK/send.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: send PATH NAME COUNT\n"); return 2; }
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("send: connect"); return 1; }
    unsigned long long count = strtoull(argv[3], NULL, 10);
    char msg[256];
    for (unsigned long long i = 0; i < count; i++) {
        int n = snprintf(msg, sizeof msg, "<134>Dec  4 14:00:00 %s[%d]: seq %010llu", argv[2], (int)getpid(), i);
        for (;;) {
            if (send(s, msg, (size_t)n, 0) == n) break;
            if (errno == EINTR) continue;
            /* ENOBUFS/EAGAIN: the socket is full; wait for room (blocking mode). */
            if (errno == ENOBUFS || errno == EAGAIN) { usleep(100); continue; }
            perror("send: send");
            return 1;
        }
    }
    return 0;
}
EOF

cat > "$WORK/check.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXSVC 16
static char buf[1 << 20];
static const char *names[MAXSVC];
static size_t nlens[MAXSVC];
static unsigned long long next[MAXSVC];
static int nsvc;
static unsigned long long count, got, lost, torn, reordered;
static double start_at = -1, done_at = -1;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* `syslog | NAME[PID]: seq NNNNNNNNNN` */
static void line(const char *l, size_t len) {
    static const char pre[] = "syslog | ";
    if (len < sizeof pre - 1 || memcmp(l, pre, sizeof pre - 1) != 0) return; /* not a syslog line */
    if (start_at < 0) start_at = now();
    l += sizeof pre - 1; len -= sizeof pre - 1;
    for (int k = 0; k < nsvc; k++) {
        size_t n = nlens[k];
        if (len < n + 1 || memcmp(l, names[k], n) != 0 || l[n] != '[') continue;
        const char *s = memchr(l, ']', len);
        if (s == NULL || (size_t)(l + len - s) != 2 + 4 + 10 + 1 || memcmp(s, "]: seq ", 7) != 0) break;
        unsigned long long seq = 0;
        for (int d = 0; d < 10; d++) {
            unsigned c = (unsigned char)s[7 + d] - '0';
            if (c > 9) { torn++; return; }
            seq = seq * 10 + c;
        }
        got++;
        if (seq == next[k]) next[k]++;
        else if (seq > next[k]) { lost += seq - next[k]; next[k] = seq + 1; }
        else reordered++;
        if (done_at < 0 && got >= count * (unsigned long long)nsvc) done_at = now();
        return;
    }
    torn++;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc - 2 > MAXSVC) { fprintf(stderr, "usage: check COUNT NAME...\n"); return 2; }
    count = strtoull(argv[1], NULL, 10);
    nsvc = argc - 2;
    for (int k = 0; k < nsvc; k++) { names[k] = argv[k + 2]; nlens[k] = strlen(names[k]); }
    size_t have = 0;
    for (;;) {
        ssize_t n = read(0, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { perror("check: read"); return 1; }
        if (n == 0) break;
        have += (size_t)n;
        char *p = buf, *end = buf + have, *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) { line(p, (size_t)(nl - p)); p = nl + 1; }
        if (done_at >= 0) break; /* every message seen: done */
        have = (size_t)(end - p);
        if (have == sizeof buf) { torn++; have = 0; } else memmove(buf, p, have);
    }
    for (int k = 0; k < nsvc; k++) if (next[k] < count) lost += count - next[k];
    printf("messages=%llu secs=%.3f lost=%llu torn=%llu\n", got,
           done_at >= 0 ? done_at - start_at : 0.0, lost, torn + reordered);
    return 0;
}
EOF
for prog in send check; do cc -O2 -o "$WORK/$prog" "$WORK/$prog.c"; done

field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

d=$WORK/run
mkdir -p "$d/services" "$d/init" "$d/finish"
mkfifo "$d/out"
names=""
for i in $(seq "$SENDERS"); do names+=" sender$i"; done
# shellcheck disable=SC2086
"$WORK/check" "$COUNT" $names < "$d/out" > "$d/result" & reader=$!
PIDS+=("$reader")
"$BIN" --services "$d/services" --init-dir "$d/init" --finish-dir "$d/finish" \
  --socket "$d/ctl.sock" --syslog "$d/log.sock" > "$d/out" 2> "$d/corral.log" & corral=$!
PIDS+=("$corral")
wait_for 30 test -S "$d/log.sock" || { cat "$d/corral.log" >&2; exit 1; }
senders=()
for name in $names; do
  "$WORK/send" "$d/log.sock" "$name" "$COUNT" & senders+=($!)
  PIDS+=("${senders[-1]}")
done
for p in "${senders[@]}"; do wait "$p" || { echo "a sender failed" >&2; exit 1; }; done
# The reader ends once every message has come; if some never come, corral is
# stopped after 60 s and the reader counts them lost at EOF.
wait_for 60 sh -c "! kill -0 $reader" || true
stop_pid "$corral"
wait "$reader"
r=$(cat "$d/result")
echo "$SENDERS senders x $COUNT messages: $r"
secs=$(field secs "$r")
rate=$(awk -v m="$(field messages "$r")" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? m / s : 0) }')
lost=$(field lost "$r") torn=$(field torn "$r")
echo "RESULT messages=$(field messages "$r") secs=$secs msgs_per_sec=$rate lost=$lost torn=$torn"
[ "$lost" -eq 0 ] && [ "$torn" -eq 0 ]
