//! Chaos: corral as a real PID 1 (`unshare --pid --fork --mount-proc`) with
//! 23 misbehaving services, under a bounded storm of SIGKILLs, config
//! reloads and control-socket clients. PID 1 must never die, and nothing may
//! be lost: no zombie, no missed restart, no leaked fd, thread or memory, a
//! shutdown within budget that leaves no process behind.
//!
//! Knobs (environment variables):
//!
//! - `CORRAL_CHAOS_SECS=N`: seconds of chaos in all (default 60; a third of
//!   it, at least 5 s, is a warm-up before the baseline is measured). The
//!   default keeps the whole test near 100 s on a loaded 2-core machine. A
//!   soak: `CORRAL_CHAOS_SECS=600 cargo test --test serial chaos -- --nocapture`.
//! - `CORRAL_CHAOS_SEED=S`: the seed of the random choices (printed at the
//!   start). A replay makes the same sequence of choices in each chaos
//!   thread; the interleaving with corral still depends on timing.
//!
//! The figures (kills, missed restarts, zombies, fd / RSS / threads baseline
//! vs after, corral's CPU, shutdown time) are printed at the end:
//! `cargo test --test serial chaos -- --nocapture`.
//!
//! How it goes:
//!
//! 1. All services up (daemons running, oneshots exited, crash loops in backoff).
//! 2. Warm-up chaos, then the definitions restored, a reload, every service
//!    in its expected state again, no output pipe of an ended run left open
//!    (orphans may hold one for a few seconds); then a quiet window gives the
//!    baseline (fds, RSS, threads, CPU). The warm-up makes corral's one-time
//!    allocations (full log rings of the flooding services, grown tables and
//!    arenas) before the baseline, so what grows after the measured chaos,
//!    beyond the allocator settling (`RSS_SLACK_KIB`), grows with work: a leak.
//! 3. Measured chaos, in parallel: SIGKILLs to services' main pids (one
//!    `restart = "never"` service included), to their children and to
//!    orphans; reload storms (SIGHUP bursts, `ctl reload`, definitions
//!    rewritten in place or by rename, touched, a service file removed and
//!    added back, a broken file that gets the whole set rejected for a
//!    while); clients hammering `status` (raw protocol and `corral ctl`) and
//!    `restart NAME` (some hang up before the answer). The main thread
//!    watches that PID 1 stays alive and how long zombies live.
//! 4. Every killed `always` / `on-failure` service runs again (a missed
//!    restart is a kill with no start after it), the killed `never` one does
//!    not; then the same restore as in 2, and: no zombie in the namespace,
//!    fds and threads exactly as in the baseline, RSS within
//!    `RSS_SLACK_KIB`, `ctl status` answers quickly, backoff bounds the
//!    crash loops' restarts and corral's CPU.
//! 5. SIGTERM to PID 1: exit 0 (no main command, SPEC section 6) within the
//!    shutdown budget, every process reaped by corral itself, none left in
//!    the namespace.
//!
//! Every kill goes through a pidfd (pidfd_open(2)) after checking that the
//! pid is in corral's namespace, so a pid reused by the host in between is
//! never hit (this machine's pid_max is small; the soak wraps it).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// Seconds of chaos when `CORRAL_CHAOS_SECS` is not set.
const DEFAULT_SECS: u64 = 60;

/// `--shutdown-timeout` of the run.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(5);
const SHUTDOWN_BUDGET_ARG: &str = "5s";

/// What corral may take beyond its budget by design: after the final
/// SIGKILL it waits up to 2 s for the last reaps (`GIVE_UP_AFTER_KILL`),
/// then up to 1 s to flush service output.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(3);

/// corral's CPU time, in percent of one core, over the whole run and over
/// the quiet windows (crash loops, orphan storms and floods still going).
/// Without backoff, four services exiting at once would keep it near 100 %.
/// What corral needs depends on the machine: this debug build stayed under
/// 10 % where the limit was first set, and took 12-14 % (whole run) on a
/// slower 2-core VM on 2026-12-05 (git 00871ca and the next commit alike,
/// same seed); the limit sits between those and a loop without backoff.
const CPU_LIMIT_PERCENT: f64 = 25.0;

/// RSS after the measured chaos may exceed the baseline by this much. The
/// baseline comes after a warm-up of the same chaos (log rings full, tables
/// grown), so what is left is the allocator settling: freed chunks kept,
/// holes between long-lived blocks (log buffers of up to 64 KiB, freed
/// oldest first). Measured, debug build, 2 cores: with one malloc arena per
/// thread and rings of lines (commit acc506a), +0.15..0.36 MiB after 15 to
/// 50 s of chaos and +0.56 MiB after a 500 s soak; with one arena for all
/// threads and rings of raw read buffers (the tree of 2025-11-25), the arena
/// still grows for minutes after a 20 s warm-up: +0.2..1.6 MiB after 40 to
/// 110 s, +0.6 MiB after 500 s, VmRSS staying within 13.6..15.1 MiB during
/// that soak. A leak of 50 bytes per event (a default run has about 5,000:
/// requests, reaped orphans, restarts, reloads; a 600 s soak about 45,000)
/// shows in the soak; a default run catches leaks of about 400 bytes per event.
const RSS_SLACK_KIB: u64 = 2048;

/// How long the quiet windows sample fds, RSS and CPU.
const QUIET_WINDOW: Duration = Duration::from_secs(3);

/// Deadline for services to be back in their expected state (a service
/// killed many times backs off up to `restart-delay-max`, 1 s here).
const RECOVERY: Duration = Duration::from_secs(60);

/// A status request must be answered within this time, during the chaos
/// too. Generous: on a machine with a load of 16 on 2 cores, answers took
/// up to 4.5 s (they take milliseconds when the machine is idle).
const ANSWER_TIMEOUT: Duration = DEADLINE;

/// `ctl status` after the chaos must answer within this time.
const STATUS_LATENCY_LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Randomness: a seeded xorshift64*, one stream per chaos thread.

struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        // splitmix64 spreads nearby seeds; xorshift needs a non-zero state.
        let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.below(items.len() as u64) as usize)
    }
}

// ---------------------------------------------------------------------------
// The services

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// `restart = "always"` or `"on-failure"`: killed at random, must run again.
    Daemon,
    /// `restart = "never"`. With `kill`, chaos SIGKILLs its main pid once
    /// (measured phase) and it must stay down; without, its main pid is
    /// never killed and it must still run its first and only start.
    Never {
        kill: bool,
    },
    Oneshot,
    /// Exits at once, forever: backoff (`restart-delay` doubling up to
    /// `restart-delay-max`) must hold it.
    Crash {
        delay_ms: u64,
        max_ms: u64,
    },
    /// Its file is removed and added back during the reload storms.
    Churn,
}

struct Def {
    name: &'static str,
    role: Role,
    /// Its definition may be changed (which restarts it).
    rewrite: bool,
    /// Target of `ctl restart`.
    ctl_restart: bool,
    toml: &'static str,
}

impl Def {
    /// The file's text: `gen` 0 is the canonical definition; others add an
    /// env var, a change that restarts the service.
    fn render(&self, generation: u64) -> String {
        if generation == 0 {
            self.toml.to_string()
        } else {
            format!("{}\nenv = {{ CHAOS_GEN = \"{generation}\" }}\n", self.toml)
        }
    }
}

/// Every service writes its pid to `$T/m/NAME` when it starts: the start
/// markers the restarts are counted with.
fn services() -> Vec<Def> {
    use Role::*;
    let def = |name, role, rewrite, ctl_restart, toml| Def {
        name,
        role,
        rewrite,
        ctl_restart,
        toml,
    };
    vec![
        // Crash loops.
        def(
            "crash-a",
            Crash {
                delay_ms: 50,
                max_ms: 1000,
            },
            false,
            false,
            r#"
command = 'echo $$ >> "$T/m/crash-a"; exit 1'
restart-delay = "50ms"
restart-delay-max = "1s"
output = "null"
"#,
        ),
        def(
            "crash-b",
            Crash {
                delay_ms: 100,
                max_ms: 2000,
            },
            false,
            false,
            r#"
command = 'echo $$ >> "$T/m/crash-b"; echo "crash-b: dying" >&2; exit 1'
restart-delay = "100ms"
restart-delay-max = "2s"
"#,
        ),
        def(
            "crash-c",
            Crash {
                delay_ms: 50,
                max_ms: 30_000,
            },
            false,
            false,
            r#"
command = 'echo $$ >> "$T/m/crash-c"; exit 1'
restart-delay = "50ms"
"#,
        ),
        def(
            "crash-onfail",
            Crash {
                delay_ms: 50,
                max_ms: 1000,
            },
            false,
            false,
            r#"
command = 'echo $$ >> "$T/m/crash-onfail"; exit 3'
restart = "on-failure"
restart-delay = "50ms"
restart-delay-max = "1s"
"#,
        ),
        // Orphan storms: double-forked children re-parented to PID 1.
        def(
            "orphan-exit",
            Daemon,
            true,
            true,
            r#"
restart-delay-max = "1s"
command = '''
echo $$ >> "$T/m/orphan-exit"
while :; do
  ( (:) & ) ; ( (exit 3) & ) ; ( sleep 0.05 & ) ; ( sleep 0.1 & )
  sleep 0.2
done
'''
"#,
        ),
        def(
            "orphan-linger",
            Daemon,
            true,
            true,
            r#"
restart-delay-max = "1s"
command = '''
echo $$ >> "$T/m/orphan-linger"
n=0
while :; do
  n=$((n+1))
  ( sleep $((n % 5 + 2)) & )
  if [ $((n % 4)) -eq 0 ]; then
    ( setsid sh -c 'trap "" TERM; exec sleep 10' >/dev/null 2>&1 & )
  fi
  sleep 0.5
done
'''
"#,
        ),
        // Deaf to SIGTERM: SIGKILLed at stop-timeout.
        def(
            "term-ignore-a",
            Daemon,
            true,
            true,
            r#"
stop-timeout = "300ms"
restart-delay-max = "1s"
command = '''
trap '' TERM
echo $$ >> "$T/m/term-ignore-a"
while :; do sleep 1; done
'''
"#,
        ),
        def(
            "term-ignore-b",
            Daemon,
            true,
            true,
            r#"
stop-timeout = "200ms"
kill-group = false
restart-delay-max = "1s"
command = '''
trap '' TERM
echo $$ >> "$T/m/term-ignore-b"
while :; do sleep 1; done
'''
"#,
        ),
        // Output floods (prefix): log-sized lines, and 200 KB lines cut in pieces.
        def(
            "flood-a",
            Daemon,
            true,
            true,
            r#"
output = "prefix"
restart-delay-max = "1s"
command = '''
echo $$ >> "$T/m/flood-a"
while :; do
  seq -f "flood-a line %06g of a burst: GET /api/v1/items?page=2 200 1532 bytes 0.004 s user-agent=chaos" 1 2000
  sleep 0.5
done
'''
"#,
        ),
        def(
            "flood-b",
            Daemon,
            false,
            true,
            r#"
output = "prefix"
restart-delay-max = "1s"
command = '''
echo $$ >> "$T/m/flood-b"
while :; do
  seq -f "flood-b err %g" 1 500 >&2
  head -c 200000 /dev/zero | tr '\0' x; echo
  sleep 1
done
'''
"#,
        ),
        // Plain daemons.
        def(
            "always-a",
            Daemon,
            true,
            true,
            r#"
restart-delay-max = "1s"
command = 'echo $$ >> "$T/m/always-a"; exec sleep 100000'
"#,
        ),
        def(
            "always-b",
            Daemon,
            true,
            true,
            r#"
restart = "always"
restart-delay-max = "1s"
command = '''
echo $$ >> "$T/m/always-b"
while :; do sleep 7 & sleep 9 & wait; done
'''
"#,
        ),
        def(
            "onfail-a",
            Daemon,
            true,
            true,
            r#"
restart = "on-failure"
restart-delay-max = "1s"
command = 'echo $$ >> "$T/m/onfail-a"; exec sleep 100000'
"#,
        ),
        def(
            "onfail-b",
            Daemon,
            false,
            true,
            r#"
restart = "on-failure"
restart-delay-max = "1s"
command = '''
echo $$ >> "$T/m/onfail-b"
while :; do sleep 2; done
'''
"#,
        ),
        def(
            "never-a",
            Never { kill: true },
            false,
            false,
            r#"
restart = "never"
output = "null"
command = 'echo $$ >> "$T/m/never-a"; exec sleep 100000'
"#,
        ),
        def(
            "never-b",
            Never { kill: false },
            false,
            false,
            r#"
restart = "never"
output = "null"
command = '''
echo $$ >> "$T/m/never-b"
while :; do sleep 1; done
'''
"#,
        ),
        // Reloaded by a signal on every config reload.
        def(
            "hup",
            Daemon,
            false,
            true,
            r#"
reload = { signal = "HUP" }
restart-delay-max = "1s"
command = '''
trap 'echo reload >> "$T/m/hup.reloads"' HUP
echo $$ >> "$T/m/hup"
while :; do sleep 1; done
'''
"#,
        ),
        // Readiness through an s6 notification fd (a pipe per run in corral).
        def(
            "ready-fd",
            Daemon,
            true,
            true,
            r#"
ready = { fd = 3 }
ready-timeout = "20s"
restart-delay-max = "1s"
command = 'echo $$ >> "$T/m/ready-fd"; echo >&3; exec sleep 100000'
"#,
        ),
        def(
            "oneshot-a",
            Oneshot,
            false,
            true,
            r#"
oneshot = true
command = 'echo $$ >> "$T/m/oneshot-a"; sleep 0.2'
"#,
        ),
        def(
            "oneshot-b",
            Oneshot,
            false,
            false,
            r#"
oneshot = true
command = 'echo $$ >> "$T/m/oneshot-b"'
"#,
        ),
        // Dependencies.
        def(
            "dep-a",
            Daemon,
            true,
            true,
            r#"
after = ["oneshot-b"]
restart-delay-max = "1s"
command = 'echo $$ >> "$T/m/dep-a"; exec sleep 100000'
"#,
        ),
        def(
            "dep-b",
            Daemon,
            false,
            true,
            r#"
after = ["dep-a", "always-a"]
restart-delay-max = "1s"
command = '''
echo $$ >> "$T/m/dep-b"
while :; do sleep 1; done
'''
"#,
        ),
        def(
            "churn",
            Churn,
            true,
            false,
            r#"
restart-delay-max = "1s"
command = 'echo $$ >> "$T/m/churn"; exec sleep 100000'
"#,
        ),
    ]
}

/// The most restarts a crash loop can make in `elapsed` with backoff:
/// delays of `delay`, doubling up to `max` (SPEC: `restart-delay`,
/// `restart-delay-max`), each spent in full before the next start.
fn backoff_bound(delay_ms: u64, max_ms: u64, elapsed: Duration) -> u64 {
    let mut spent = 0u64;
    let mut restarts = 0u64;
    let mut next = delay_ms;
    loop {
        spent += next;
        if spent > elapsed.as_millis() as u64 {
            return restarts;
        }
        restarts += 1;
        next = (next * 2).min(max_ms);
    }
}

// ---------------------------------------------------------------------------
// /proc

/// The PID namespace of a process, as `pid:[INODE]`.
fn pid_ns(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// A process of corral's namespace.
#[derive(Debug, Clone)]
struct Proc {
    /// Pid as the test sees it.
    host: i32,
    /// Pid inside the namespace (what corral and the services see).
    inner: i32,
    /// Host pids of the parent and the process group.
    ppid: i32,
    pgrp: i32,
    state: char,
}

/// Every process whose PID namespace is `ns`.
fn scan(ns: &Path) -> Vec<Proc> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(host) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if pid_ns(host).as_deref() != Some(ns) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{host}/stat")) else {
            continue;
        };
        let (Some(fields), Some(&inner)) = (stat_fields(&stat), ns_pids(host).last()) else {
            continue;
        };
        let field = |i: usize| fields.get(i).and_then(|f| f.parse().ok());
        let (Some(ppid), Some(pgrp)) = (field(1), field(2)) else {
            continue;
        };
        let state = fields.first().and_then(|s| s.chars().next()).unwrap_or('?');
        found.push(Proc {
            host,
            inner,
            ppid,
            pgrp,
            state,
        });
    }
    found
}

/// corral's resident memory (KiB) by kind, from `/proc/PID/smaps`: the
/// main malloc arena (`[heap]`), the arenas of other threads (anonymous
/// mappings starting on a 64 MiB boundary, glibc's `HEAP_MAX_SIZE`), other
/// anonymous memory (thread stacks, large allocations), and files.
fn rss_by_kind(pid: i32) -> [u64; 4] {
    let mut kinds = [0u64; 4];
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut kind = 3;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let Some(kib) = line.strip_prefix("Rss:") {
            kinds[kind] += kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        } else if let Some(range) = fields
            .first()
            .filter(|f| f.contains('-') && !f.ends_with(':'))
        {
            let start = range
                .split('-')
                .next()
                .and_then(|a| u64::from_str_radix(a, 16).ok())
                .unwrap_or(1);
            kind = match fields.get(5) {
                Some(&"[heap]") => 0,
                None if start % (64 << 20) == 0 => 1,
                None | Some(&"[stack]") => 2,
                Some(_) => 3,
            };
        }
    }
    kinds
}

/// corral's open fds, each as `N -> target`.
fn fd_list(pid: i32) -> Vec<String> {
    open_fds(pid)
        .into_iter()
        .map(|(fd, target)| format!("{fd} -> {target}"))
        .collect()
}

/// SIGKILL the process the test sees as `host`, if it still is process
/// `inner` of the namespace `ns`. The pidfd (pidfd_open(2)) pins the process
/// before the check, and the signal goes through it: a pid that ended and
/// was reused in between is never signalled.
fn kill_checked(host: i32, inner: i32, ns: &Path) -> bool {
    // SAFETY: plain syscalls; the fd is owned (and closed) below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, host, 0) };
    if raw < 0 {
        return false;
    }
    let Ok(raw) = i32::try_from(raw) else {
        return false;
    };
    // SAFETY: pidfd_open returned a new fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    if pid_ns(host).as_deref() != Some(ns) || ns_pids(host).last() != Some(&inner) {
        return false;
    }
    // SAFETY: a valid pidfd, no siginfo, no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    sent == 0
}

// ---------------------------------------------------------------------------
// The control socket, spoken directly (one request per connection)

fn request(socket: &Path, json: &str, timeout: Duration) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    stream
        .write_all(format!("{json}\n").as_bytes())
        .map_err(|e| format!("write {json}: {e}"))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("no answer to {json} within {timeout:?}: {e}"))?;
    if line.is_empty() {
        return Err(format!("connection closed without an answer to {json}"));
    }
    serde_json::from_str(&line).map_err(|e| format!("answer to {json} is not JSON ({e}): {line}"))
}

/// `status`: every service's entry, or why not.
fn status(socket: &Path) -> Result<Vec<Value>, String> {
    let answer = request(socket, r#"{"v":1,"op":"status"}"#, ANSWER_TIMEOUT)?;
    if answer["ok"] != true {
        return Err(format!("status refused: {answer}"));
    }
    match &answer["services"] {
        Value::Array(services) => Ok(services.clone()),
        other => Err(format!("status: no services list: {other}")),
    }
}

fn entry<'a>(services: &'a [Value], name: &str) -> Option<&'a Value> {
    services.iter().find(|s| s["name"] == name)
}

fn pid_of(service: &Value) -> Option<i32> {
    service["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
}

// ---------------------------------------------------------------------------
// What the chaos threads share

/// A SIGKILL that hit a service's main pid.
#[derive(Debug, Clone)]
struct Kill {
    service: &'static str,
    /// The pid as the service sees it (its start marker).
    pid: i32,
    /// Lines in its start markers just before the kill.
    markers_before: usize,
}

#[derive(Default)]
struct Counters {
    kills_main: AtomicU64,
    kills_child: AtomicU64,
    kills_orphan: AtomicU64,
    sighups: AtomicU64,
    rewrites: AtomicU64,
    touches: AtomicU64,
    churn_removed: AtomicU64,
    churn_added: AtomicU64,
    broken_files: AtomicU64,
    ctl_reloads_ok: AtomicU64,
    ctl_reloads_rejected: AtomicU64,
    statuses: AtomicU64,
    status_max_ms: AtomicU64,
    ctl_runs: AtomicU64,
    ctl_max_ms: AtomicU64,
    restarts_answered: AtomicU64,
    restarts_refused: AtomicU64,
    restarts_abandoned: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

struct Ctx {
    defs: Vec<Def>,
    /// The test dir (`$T`).
    dir: PathBuf,
    socket: PathBuf,
    /// corral's host pid.
    corral: i32,
    /// corral's PID namespace.
    ns: PathBuf,
    stop: AtomicBool,
    generation: AtomicU64,
    kills: Mutex<Vec<Kill>>,
    counters: Counters,
    /// Failures seen by the chaos threads (status unanswered, ...).
    errors: Mutex<Vec<String>>,
}

/// Sets the stop flag when dropped: chaos threads end even if the
/// monitoring thread panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Ctx {
    fn running(&self, until: Instant) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < until
    }

    /// Sleep `d`, or less if the chaos is over.
    fn pause(&self, d: Duration, until: Instant) {
        let end = (Instant::now() + d).min(until);
        while self.running(end) {
            thread::sleep(Duration::from_millis(10).min(d));
        }
    }

    fn error(&self, e: String) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.push(e);
        }
    }

    fn def(&self, name: &str) -> Option<&Def> {
        self.defs.iter().find(|d| d.name == name)
    }

    fn service_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("services/{name}.toml"))
    }

    /// The pids in `$T/m/NAME`, one per start (complete lines only).
    fn markers(&self, name: &str) -> Vec<i32> {
        let text = fs::read_to_string(self.dir.join(format!("m/{name}"))).unwrap_or_default();
        text.split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn sighup(&self) {
        send(self.corral, Signal::SIGHUP);
        add(&self.counters.sighups);
    }

    /// Every definition back to canonical, `churn` present, `broken` gone;
    /// then a reload, whose answer must be ok.
    fn restore(&self) -> Result<(), String> {
        let _ = fs::remove_file(self.dir.join("services/broken.toml"));
        for def in &self.defs {
            fs::write(self.service_file(def.name), def.render(0))
                .map_err(|e| format!("restore {}: {e}", def.name))?;
        }
        let answer = request(&self.socket, r#"{"v":1,"op":"reload"}"#, RECOVERY)?;
        if answer["ok"] != true {
            return Err(format!("reload after the restore refused: {answer}"));
        }
        Ok(())
    }

    /// Every service where it should be: daemons running their last start
    /// (pid = last marker, alive), `never-b` its only start, `never-a` failed
    /// if it was killed, oneshots exited, crash loops not given up.
    fn expected(&self, never_killed: bool, churn: bool) -> Result<(), String> {
        let services = status(&self.socket)?;
        let alive: HashMap<i32, char> = scan(&self.ns)
            .into_iter()
            .map(|p| (p.inner, p.state))
            .collect();
        let mut wrong = Vec::new();
        for def in &self.defs {
            let Some(svc) = entry(&services, def.name) else {
                if def.role != Role::Churn || churn {
                    wrong.push(format!("{}: not in status", def.name));
                }
                continue;
            };
            let state = svc["state"].as_str().unwrap_or("?");
            let pid = pid_of(svc);
            let markers = self.markers(def.name);
            let runs_last_start = |wrong: &mut Vec<String>| {
                let ok = matches!(state, "running" | "ready")
                    && pid.is_some()
                    && markers.last() == pid.as_ref()
                    && pid.is_some_and(|p| alive.get(&p).is_some_and(|&s| s != 'Z'));
                if !ok {
                    wrong.push(format!(
                        "{}: {state}, pid {pid:?}, last start marker {:?}",
                        def.name,
                        markers.last()
                    ));
                }
            };
            match def.role {
                Role::Daemon => runs_last_start(&mut wrong),
                Role::Churn if churn => runs_last_start(&mut wrong),
                Role::Churn => {}
                Role::Never { kill: true } if never_killed => {
                    let last = svc["last_exit"].as_str().unwrap_or("");
                    if state != "failed" || pid.is_some() || !last.contains("SIGKILL") {
                        wrong.push(format!(
                            "{} (restart never, killed): {state}, pid {pid:?}, last exit {last:?}",
                            def.name
                        ));
                    }
                }
                Role::Never { .. } => {
                    runs_last_start(&mut wrong);
                    if markers.len() != 1 {
                        wrong.push(format!(
                            "{} (restart never): {} starts: {markers:?}",
                            def.name,
                            markers.len()
                        ));
                    }
                }
                Role::Oneshot => {
                    if state != "exited" {
                        wrong.push(format!("{} (oneshot): {state}", def.name));
                    }
                }
                Role::Crash { .. } => {
                    if !matches!(state, "backoff" | "starting" | "running") {
                        wrong.push(format!("{} (crash loop): {state}", def.name));
                    }
                }
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

// ---------------------------------------------------------------------------
// The chaos threads

/// SIGKILLs: to a daemon's main pid, to a child of any service, to an
/// orphan; once (at `never_at`) to `never-a`.
fn killer(ctx: &Ctx, mut rng: Rng, until: Instant, mut never_at: Option<Instant>) {
    while ctx.running(until) {
        ctx.pause(rng.millis(50, 250), until);
        if !ctx.running(until) {
            break;
        }
        let services = match status(&ctx.socket) {
            Ok(services) => services,
            Err(e) => {
                ctx.error(format!("killer: {e}"));
                continue;
            }
        };
        add(&ctx.counters.statuses);
        let procs = scan(&ctx.ns);
        let by_inner: HashMap<i32, &Proc> = procs.iter().map(|p| (p.inner, p)).collect();
        let mains: Vec<(&'static str, i32)> = ctx
            .defs
            .iter()
            .filter_map(|d| Some((d.name, pid_of(entry(&services, d.name)?)?)))
            .collect();
        let kill_main = |name: &'static str| -> bool {
            let Some(&(_, pid)) = mains.iter().find(|(n, _)| *n == name) else {
                return false;
            };
            let Some(proc) = by_inner.get(&pid) else {
                return false;
            };
            let markers_before = ctx.markers(name).len();
            if proc.state == 'Z' || !kill_checked(proc.host, pid, &ctx.ns) {
                return false;
            }
            add(&ctx.counters.kills_main);
            if let Ok(mut kills) = ctx.kills.lock() {
                kills.push(Kill {
                    service: name,
                    pid,
                    markers_before,
                });
            }
            true
        };
        if never_at.is_some_and(|at| Instant::now() >= at) && kill_main("never-a") {
            never_at = None;
            continue;
        }
        match rng.below(10) {
            0..=3 => {
                let daemons: Vec<&'static str> = ctx
                    .defs
                    .iter()
                    .filter(|d| d.role == Role::Daemon)
                    .map(|d| d.name)
                    .filter(|n| mains.iter().any(|(m, _)| m == n))
                    .collect();
                if let Some(&name) = rng.pick(&daemons) {
                    kill_main(name);
                }
            }
            4..=6 => {
                // Not a oneshot's: one whose child dies fails for good, as it should.
                let main_hosts: Vec<i32> = mains
                    .iter()
                    .filter(|(name, _)| ctx.def(name).is_some_and(|d| d.role != Role::Oneshot))
                    .filter_map(|(_, pid)| by_inner.get(pid).map(|p| p.host))
                    .collect();
                let children: Vec<&Proc> = procs
                    .iter()
                    .filter(|p| main_hosts.contains(&p.ppid) && p.state != 'Z')
                    .collect();
                if let Some(child) = rng.pick(&children)
                    && kill_checked(child.host, child.inner, &ctx.ns)
                {
                    add(&ctx.counters.kills_child);
                }
            }
            _ => {
                // Children of PID 1 that are no service's main pid: a
                // service is its own group leader, an orphan is not (or is
                // one of orphan-linger's `setsid` sleeps).
                let main_inner: Vec<i32> = mains.iter().map(|&(_, pid)| pid).collect();
                let orphans: Vec<&Proc> = procs
                    .iter()
                    .filter(|p| {
                        p.ppid == ctx.corral
                            && p.state != 'Z'
                            && !main_inner.contains(&p.inner)
                            && (p.pgrp != p.host || cmdline(p.host) == "sleep 10")
                    })
                    .collect();
                if let Some(orphan) = rng.pick(&orphans)
                    && kill_checked(orphan.host, orphan.inner, &ctx.ns)
                {
                    add(&ctx.counters.kills_orphan);
                }
            }
        }
    }
}

/// Reload storms: definitions changed (in place or by rename) or touched,
/// `churn` removed and added back, a broken file for a while; SIGHUP after
/// each, sometimes in bursts; `ctl reload`.
fn reloader(ctx: &Ctx, mut rng: Rng, until: Instant) {
    let mut churn = ctx.service_file("churn").exists();
    let broken = ctx.dir.join("services/broken.toml");
    while ctx.running(until) {
        ctx.pause(rng.millis(100, 700), until);
        if !ctx.running(until) {
            break;
        }
        let roll = rng.below(100);
        if roll < 35 {
            let names: Vec<&Def> = ctx
                .defs
                .iter()
                .filter(|d| d.rewrite && (d.role != Role::Churn || churn))
                .collect();
            if let Some(def) = rng.pick(&names) {
                let generation = ctx.generation.fetch_add(1, Ordering::Relaxed) + 1;
                let text = def.render(generation);
                let path = ctx.service_file(def.name);
                let written = if rng.below(2) == 0 {
                    fs::write(&path, text)
                } else {
                    // A dotfile is no definition: corral skips it.
                    let tmp = ctx.dir.join(format!("services/.{}.toml.tmp", def.name));
                    fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, &path))
                };
                if let Err(e) = written {
                    ctx.error(format!("rewrite {}: {e}", path.display()));
                }
                add(&ctx.counters.rewrites);
                ctx.sighup();
            }
        } else if roll < 50 {
            let names: Vec<&Def> = ctx
                .defs
                .iter()
                .filter(|d| d.role != Role::Churn || churn)
                .collect();
            if let Some(def) = rng.pick(&names) {
                let touched = fs::File::options()
                    .append(true)
                    .open(ctx.service_file(def.name))
                    .and_then(|f| f.set_modified(SystemTime::now()));
                if touched.is_ok() {
                    add(&ctx.counters.touches);
                }
                ctx.sighup();
            }
        } else if roll < 60 {
            let path = ctx.service_file("churn");
            if churn {
                let _ = fs::remove_file(&path);
                add(&ctx.counters.churn_removed);
            } else if let Some(def) = ctx.def("churn") {
                let _ = fs::write(&path, def.render(0));
                add(&ctx.counters.churn_added);
            }
            churn = !churn;
            ctx.sighup();
        } else if roll < 65 {
            if broken.exists() {
                let _ = fs::remove_file(&broken);
            } else {
                let _ = fs::write(&broken, "command = [\"sh\", \nrestart = \"sometimes\"\n");
                add(&ctx.counters.broken_files);
            }
            ctx.sighup();
        } else if roll < 85 {
            for _ in 0..2 + rng.below(4) {
                ctx.sighup();
            }
        } else {
            match request(&ctx.socket, r#"{"v":1,"op":"reload"}"#, RECOVERY) {
                Ok(answer) if answer["ok"] == true => add(&ctx.counters.ctl_reloads_ok),
                Ok(answer)
                    if answer["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("broken.toml")) =>
                {
                    add(&ctx.counters.ctl_reloads_rejected)
                }
                Ok(answer) => ctx.error(format!("ctl reload: unexpected answer {answer}")),
                Err(e) => ctx.error(format!("ctl reload: {e}")),
            }
        }
    }
}

/// `status` over the raw protocol, as fast as a few ms apart.
fn status_hammer(ctx: &Ctx, mut rng: Rng, until: Instant) {
    while ctx.running(until) {
        let started = Instant::now();
        match status(&ctx.socket) {
            Ok(_) => {
                add(&ctx.counters.statuses);
                let ms = started.elapsed().as_millis() as u64;
                ctx.counters.status_max_ms.fetch_max(ms, Ordering::Relaxed);
            }
            Err(e) => ctx.error(format!("status hammer: {e}")),
        }
        ctx.pause(rng.millis(5, 50), until);
    }
}

/// `corral ctl status --json`, the real client.
fn ctl_hammer(ctx: &Ctx, mut rng: Rng, until: Instant) {
    while ctx.running(until) {
        let mut cmd = ctl_command(Some(&ctx.socket), &["status", "--json"]);
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_within(&mut cmd, DEADLINE)
        }));
        match ran {
            Ok(ran)
                if ran.code == 0
                    && serde_json::from_str::<Value>(&ran.stdout).is_ok_and(|v| v.is_array()) =>
            {
                add(&ctx.counters.ctl_runs);
                let ms = ran.took.as_millis() as u64;
                ctx.counters.ctl_max_ms.fetch_max(ms, Ordering::Relaxed);
            }
            Ok(ran) => ctx.error(format!("corral ctl status --json: {ran:?}")),
            Err(_) => ctx.error("corral ctl status --json: no answer within DEADLINE".into()),
        }
        ctx.pause(rng.millis(100, 500), until);
    }
}

/// `restart NAME`; a third of the clients hang up before the answer.
fn restarter(ctx: &Ctx, mut rng: Rng, until: Instant) {
    let names: Vec<&'static str> = ctx
        .defs
        .iter()
        .filter(|d| d.ctl_restart)
        .map(|d| d.name)
        .collect();
    while ctx.running(until) {
        ctx.pause(rng.millis(150, 700), until);
        let Some(&name) = rng.pick(&names) else {
            break;
        };
        let json = format!(r#"{{"v":1,"op":"restart","services":["{name}"]}}"#);
        if rng.below(3) == 0 {
            match UnixStream::connect(&ctx.socket)
                .and_then(|mut s| s.write_all(format!("{json}\n").as_bytes()))
            {
                Ok(()) => add(&ctx.counters.restarts_abandoned),
                Err(e) => ctx.error(format!("restart {name} (hung up): {e}")),
            }
            continue;
        }
        match request(&ctx.socket, &json, RECOVERY) {
            Ok(answer) if answer["ok"] == true => add(&ctx.counters.restarts_answered),
            Ok(answer) => {
                // Every target restarts for ever: a refusal is a lost restart.
                add(&ctx.counters.restarts_refused);
                ctx.error(format!("restart {name} refused: {answer}"));
            }
            Err(e) => ctx.error(format!("restart {name}: {e}")),
        }
    }
}

/// What the monitoring thread saw.
#[derive(Default, Debug)]
struct Watch {
    longest_zombie: Duration,
    max_threads: u64,
    max_fds: usize,
    max_processes: usize,
    /// corral's VmRSS (KiB) at every tenth of the round.
    rss_trace: Vec<u64>,
}

/// One round of chaos for `period`, watched from this thread: corral must
/// stay alive throughout.
fn run_chaos(
    c: &mut Corral,
    ctx: &Ctx,
    period: Duration,
    seed: u64,
    round: u64,
    kill_never: bool,
) -> Result<Watch, String> {
    ctx.stop.store(false, Ordering::Relaxed);
    let start = Instant::now();
    let until = start + period;
    let never_at = kill_never.then(|| {
        // Somewhere in the middle of the round.
        let mut rng = Rng::new(seed, round * 100 + 99);
        start + period.mul_f64(0.2 + 0.4 * (rng.below(1000) as f64 / 1000.0))
    });
    let mut watch = Watch::default();
    let mut zombies: HashMap<i32, Instant> = HashMap::new();
    let mut next_rss_at = start;
    let outcome = thread::scope(|s| {
        let _stop = StopOnDrop(&ctx.stop);
        let stream = |n: u64| Rng::new(seed, round * 100 + n);
        let rngs = [stream(1), stream(2), stream(3), stream(4), stream(5)];
        let [r1, r2, r3, r4, r5] = rngs;
        s.spawn(move || killer(ctx, r1, until, never_at));
        s.spawn(move || reloader(ctx, r2, until));
        s.spawn(move || status_hammer(ctx, r3, until));
        s.spawn(move || ctl_hammer(ctx, r4, until));
        s.spawn(move || restarter(ctx, r5, until));
        while Instant::now() < until {
            if let Some(status) = c.try_status() {
                return Err(format!("PID 1 died during the chaos: {status:?}"));
            }
            let now = Instant::now();
            let procs = scan(&ctx.ns);
            zombies.retain(|pid, _| procs.iter().any(|p| p.host == *pid && p.state == 'Z'));
            for p in procs.iter().filter(|p| p.state == 'Z') {
                let first = *zombies.entry(p.host).or_insert(now);
                watch.longest_zombie = watch.longest_zombie.max(now - first);
            }
            watch.max_processes = watch.max_processes.max(procs.len());
            watch.max_fds = watch.max_fds.max(fd_list(ctx.corral).len());
            let threads = status_number(ctx.corral, "Threads").unwrap_or(0);
            watch.max_threads = watch.max_threads.max(threads);
            if now >= next_rss_at {
                watch
                    .rss_trace
                    .push(status_number(ctx.corral, "VmRSS").unwrap_or(0));
                next_rss_at += period / 10;
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    });
    outcome.map(|()| watch)
}

/// fds, RSS and threads of corral over a quiet window, and its CPU there.
#[derive(Debug, Clone)]
struct Quiet {
    /// `rss_by_kind` at the end of the window.
    rss_kinds: [u64; 4],
    fds: usize,
    fd_list: Vec<String>,
    rss_kib: u64,
    threads: u64,
    cpu_percent: f64,
}

/// Pipes corral reads that no current service process writes to. Corral
/// holds both ends of its own pipes (wake-up, signals) and only the read end
/// of a service's output (and notification-fd) pipe. The read end of an
/// ended run stays open while orphans of that run still hold the write end
/// (here at most 9 s: always-b's `sleep 9`); one that stays open with no
/// writer at all is a leaked fd.
fn stray_pipes(ctx: &Ctx) -> Result<(), String> {
    let services = status(&ctx.socket)?;
    let procs = scan(&ctx.ns);
    let host_of: HashMap<i32, i32> = procs.iter().map(|p| (p.inner, p.host)).collect();
    let mut held = std::collections::HashSet::new();
    for svc in &services {
        if let Some(&host) = pid_of(svc).and_then(|p| host_of.get(&p)) {
            held.extend(pipes(host).into_iter().map(|(_, pipe)| pipe));
        }
    }
    // A pipe inherited from whoever ran the test (cargo's jobserver) is
    // open here too.
    held.extend(
        pipes(std::process::id() as i32)
            .into_iter()
            .map(|(_, pipe)| pipe),
    );
    let mine = pipes(ctx.corral);
    let stray: Vec<String> = mine
        .iter()
        .filter(|(_, t)| mine.iter().filter(|(_, u)| u == t).count() == 1 && !held.contains(t))
        .map(|(fd, pipe)| {
            // Who else has it open, to tell an orphan's pipe from a leak.
            let holders: Vec<String> = procs
                .iter()
                .filter(|p| pipes(p.host).iter().any(|(_, q)| q == pipe))
                .map(|p| format!("{} {}", p.inner, cmdline(p.host)))
                .collect();
            let flags = fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", ctx.corral))
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("flags:").map(|f| f.trim().to_string()))
                })
                .unwrap_or_default();
            format!("fd {fd} {pipe} (flags {flags}), also open in {holders:?}")
        })
        .collect();
    if stray.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "corral holds {} pipe(s) no current service writes to: {stray:?}",
            stray.len()
        ))
    }
}

/// The pipes a process has open: `(fd, "pipe:[INODE]")`.
fn pipes(pid: i32) -> Vec<(u32, String)> {
    open_fds(pid)
        .into_iter()
        .filter(|(_, target)| target.starts_with("pipe:"))
        .collect()
}

/// Once no pipe of an ended run is left (`stray_pipes`), the fds, RSS and
/// threads of corral over a quiet window (minimums: a crash loop's pipes
/// exist for the few ms of each run), and its CPU there.
fn quiet_window(ctx: &Ctx) -> Result<Quiet, String> {
    poll_until("no output pipe of an ended run left open", RECOVERY, || {
        stray_pipes(ctx)
    })?;
    let start = Instant::now();
    let ticks = cpu_ticks(ctx.corral).unwrap_or(0);
    let mut fd_min = usize::MAX;
    let mut fd_list_min = Vec::new();
    let mut rss_min = u64::MAX;
    let mut threads_min = u64::MAX;
    while start.elapsed() < QUIET_WINDOW {
        let list = fd_list(ctx.corral);
        if list.len() < fd_min {
            fd_min = list.len();
            fd_list_min = list;
        }
        if let Some(rss) = status_number(ctx.corral, "VmRSS") {
            rss_min = rss_min.min(rss);
        }
        if let Some(threads) = status_number(ctx.corral, "Threads") {
            threads_min = threads_min.min(threads);
        }
        thread::sleep(Duration::from_millis(50));
    }
    let spent = (cpu_ticks(ctx.corral).unwrap_or(0) - ticks) as f64 / clock_ticks_per_sec() as f64;
    Ok(Quiet {
        rss_kinds: rss_by_kind(ctx.corral),
        fds: fd_min,
        fd_list: fd_list_min,
        rss_kib: rss_min,
        threads: threads_min,
        cpu_percent: 100.0 * spent / start.elapsed().as_secs_f64(),
    })
}

fn env_number(key: &str) -> Option<u64> {
    let value = std::env::var(key).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{key}={value:?}: not a whole number")),
    )
}

// ---------------------------------------------------------------------------

#[test]
fn pid1_survives_chaos_and_loses_nothing() {
    // Its baseline and CPU figures are corral's alone only with nothing
    // else running.
    let _serial = serial();
    let secs = env_number("CORRAL_CHAOS_SECS")
        .unwrap_or(DEFAULT_SECS)
        .max(2);
    let seed = env_number("CORRAL_CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let warmup_secs = (secs / 3).max(5).min(secs / 2);
    let warmup = Duration::from_secs(warmup_secs);
    let measured = Duration::from_secs(secs - warmup_secs);
    println!(
        "chaos: seed {seed} (replay: CORRAL_CHAOS_SEED={seed}), {secs} s of chaos \
         ({warmup_secs} s warm-up + {} s measured; CORRAL_CHAOS_SECS)",
        measured.as_secs()
    );

    let dir = TestDir::new("chaos");
    fs::create_dir_all(dir.join("m")).expect("create marker dir");
    let defs = services();
    for def in &defs {
        dir.service(def.name, &def.render(0));
    }
    let dir_path = dir.path().to_path_buf();
    let started = Instant::now();
    let mut c = dir
        .corral()
        .ctl_socket()
        .args(["--shutdown-timeout", SHUTDOWN_BUDGET_ARG])
        .pid1()
        .start();
    let ns = pid_ns(c.pid()).expect("corral's PID namespace");
    let ctx = Ctx {
        defs,
        dir: dir_path,
        socket: c.socket(),
        corral: c.pid(),
        ns,
        stop: AtomicBool::new(false),
        generation: AtomicU64::new(0),
        kills: Mutex::new(Vec::new()),
        counters: Counters::default(),
        errors: Mutex::new(Vec::new()),
    };

    // 1. Up.
    c.wait_for_within(RECOVERY, "every service in its expected state", |_| {
        ctx.expected(false, true)
    });

    // 2. Warm-up, restore, baseline.
    if let Err(e) = run_chaos(&mut c, &ctx, warmup, seed, 1, false) {
        panic!("{e}");
    }
    ctx.restore()
        .unwrap_or_else(|e| panic!("after the warm-up: {e}"));
    c.wait_for_within(RECOVERY, "every service back after the warm-up", |_| {
        ctx.expected(false, true)
    });
    let baseline = quiet_window(&ctx).unwrap_or_else(|e| panic!("baseline: {e}"));

    // 3. Measured chaos.
    let before = status(&ctx.socket).expect("status before the chaos");
    let daemon_starts = |ctx: &Ctx| -> usize {
        ctx.defs
            .iter()
            .filter(|d| d.role == Role::Daemon)
            .map(|d| ctx.markers(d.name).len())
            .sum()
    };
    let starts_before = daemon_starts(&ctx);
    let ticks_before = cpu_ticks(ctx.corral).unwrap_or(0);
    let chaos_started = Instant::now();
    let watch = run_chaos(&mut c, &ctx, measured, seed, 2, true).unwrap_or_else(|e| panic!("{e}"));
    let chaos_took = chaos_started.elapsed();
    let chaos_cpu = 100.0 * (cpu_ticks(ctx.corral).unwrap_or(0) - ticks_before) as f64
        / clock_ticks_per_sec() as f64
        / chaos_took.as_secs_f64();

    let mut failures: Vec<String> = ctx.errors.lock().map(|e| e.clone()).unwrap_or_default();

    // 4. Recovery: every killed daemon runs again, never-a does not.
    let never_killed = ctx
        .kills
        .lock()
        .map(|k| k.iter().any(|k| k.service == "never-a"))
        .unwrap_or(false);
    if !never_killed {
        failures.push("never-a was never killed (not running when its time came?)".into());
    }
    let recovered_in = Instant::now();
    if let Err(e) = poll_until("every service in its expected state", RECOVERY, || {
        ctx.expected(never_killed, false)
    }) {
        failures.push(format!("services not back after the chaos: {e}"));
    }
    let recovery = recovered_in.elapsed();
    let kills: Vec<Kill> = ctx.kills.lock().map(|k| k.clone()).unwrap_or_default();
    let daemon_kills: Vec<&Kill> = kills
        .iter()
        .filter(|k| ctx.def(k.service).is_some_and(|d| d.role == Role::Daemon))
        .collect();
    let missed: Vec<String> = daemon_kills
        .iter()
        .filter(|k| {
            let markers = ctx.markers(k.service);
            !markers
                .get(k.markers_before..)
                .unwrap_or_default()
                .iter()
                .any(|&p| p != k.pid)
        })
        .map(|k| format!("{} (pid {})", k.service, k.pid))
        .collect();
    if !missed.is_empty() {
        failures.push(format!("missed restarts: {missed:?}"));
    }
    let after_chaos = status(&ctx.socket).unwrap_or_default();
    let marker_delta = daemon_starts(&ctx) - starts_before;
    let counter_delta: i64 = ctx
        .defs
        .iter()
        .filter(|d| d.role == Role::Daemon)
        .map(|d| {
            let restarts = |list: &[Value]| {
                entry(list, d.name)
                    .and_then(|s| s["restarts"].as_i64())
                    .unwrap_or(0)
            };
            restarts(&after_chaos) - restarts(&before)
        })
        .sum();

    // Back to the baseline's definitions.
    if let Err(e) = ctx.restore() {
        failures.push(format!("restore after the chaos: {e}"));
    }
    if let Err(e) = poll_until("every service in its expected state", RECOVERY, || {
        ctx.expected(never_killed, true)
    }) {
        failures.push(format!("services not back after the restore: {e}"));
    }

    // No zombie anywhere in the namespace.
    let zombies_left = match poll_until("no zombie", DEADLINE, || {
        let zombies: Vec<String> = scan(&ctx.ns)
            .iter()
            .filter(|p| p.state == 'Z')
            .map(|p| format!("{} (parent {}) {}", p.inner, p.ppid, cmdline(p.host)))
            .collect();
        if zombies.is_empty() {
            Ok(0)
        } else {
            Err(format!("{} zombie(s): {zombies:?}", zombies.len()))
        }
    }) {
        Ok(n) => n,
        Err(e) => {
            failures.push(format!("zombies left: {e}"));
            scan(&ctx.ns).iter().filter(|p| p.state == 'Z').count()
        }
    };

    // fds and threads exactly as in the baseline, RSS close to it.
    if let Err(e) = poll_until("corral's fds as in the baseline", DEADLINE, || {
        stray_pipes(&ctx)?;
        let now = fd_list(ctx.corral);
        if now.len() == baseline.fds {
            Ok(())
        } else {
            Err(format!(
                "{} fds, baseline {}; now {now:#?}; baseline {:#?}",
                now.len(),
                baseline.fds,
                baseline.fd_list
            ))
        }
    }) {
        failures.push(format!("fds not back to the baseline: {e}"));
    }
    if let Err(e) = poll_until("corral's threads as in the baseline", DEADLINE, || {
        let threads = status_number(ctx.corral, "Threads").unwrap_or(0);
        if threads == baseline.threads {
            Ok(())
        } else {
            Err(format!("{threads} threads, baseline {}", baseline.threads))
        }
    }) {
        failures.push(format!("threads not back to the baseline: {e}"));
    }
    if let Err(e) = poll_until(
        "corral's RSS near the baseline",
        Duration::from_secs(15),
        || {
            let rss = status_number(ctx.corral, "VmRSS").unwrap_or(u64::MAX);
            if rss <= baseline.rss_kib + RSS_SLACK_KIB {
                Ok(())
            } else {
                Err(format!(
                    "VmRSS {rss} KiB, baseline {} KiB + {RSS_SLACK_KIB} KiB",
                    baseline.rss_kib
                ))
            }
        },
    ) {
        failures.push(format!("RSS above the baseline: {e}"));
    }
    let after = quiet_window(&ctx).unwrap_or_else(|e| {
        failures.push(format!("after the chaos: {e}"));
        Quiet {
            rss_kinds: rss_by_kind(ctx.corral),
            fds: fd_list(ctx.corral).len(),
            fd_list: Vec::new(),
            rss_kib: status_number(ctx.corral, "VmRSS").unwrap_or(0),
            threads: status_number(ctx.corral, "Threads").unwrap_or(0),
            cpu_percent: 0.0,
        }
    });

    // Responsive: the real client, now.
    let ctl = c.ctl(&["status", "--json"]);
    if ctl.code != 0 || ctl.took > STATUS_LATENCY_LIMIT {
        failures.push(format!(
            "ctl status after the chaos: exit {} in {:?} (limit {STATUS_LATENCY_LIMIT:?}): {}",
            ctl.code, ctl.took, ctl.stderr
        ));
    }

    // Backoff holds the crash loops: restarts and CPU.
    let lifetime = started.elapsed();
    let last = status(&ctx.socket).unwrap_or_default();
    let mut crash_lines = Vec::new();
    for def in &ctx.defs {
        if let Role::Crash { delay_ms, max_ms } = def.role {
            let restarts = entry(&last, def.name)
                .and_then(|s| s["restarts"].as_u64())
                .unwrap_or(0);
            let bound = backoff_bound(delay_ms, max_ms, lifetime) + 1;
            crash_lines.push(format!("{} {restarts} (bound {bound})", def.name));
            if restarts > bound {
                failures.push(format!(
                    "{}: {restarts} restarts in {lifetime:?}, backoff allows {bound}",
                    def.name
                ));
            }
        }
    }
    let total_cpu = 100.0 * cpu_ticks(ctx.corral).unwrap_or(0) as f64
        / clock_ticks_per_sec() as f64
        / lifetime.as_secs_f64();
    for (what, percent) in [
        ("whole run", total_cpu),
        ("baseline quiet window", baseline.cpu_percent),
        ("final quiet window", after.cpu_percent),
    ] {
        if percent >= CPU_LIMIT_PERCENT {
            failures.push(format!(
                "corral CPU {percent:.1} % of a core over the {what} (limit {CPU_LIMIT_PERCENT} %)"
            ));
        }
    }

    // 5. SIGTERM to PID 1.
    let orphans_reaped = request(&ctx.socket, r#"{"v":1,"op":"status"}"#, ANSWER_TIMEOUT)
        .ok()
        .and_then(|a| a["orphans_reaped"].as_u64())
        .unwrap_or(0);
    let processes_before_stop = scan(&ctx.ns).len();
    c.signal(Signal::SIGTERM);
    let stop_started = Instant::now();
    let status = c.wait_status(DEADLINE);
    let shutdown = stop_started.elapsed();
    match exit_code(status) {
        Ok(0) => {}
        other => failures.push(format!("exit status after SIGTERM: {other:?}, expected 0")),
    }
    if shutdown > SHUTDOWN_BUDGET + SHUTDOWN_SLACK {
        failures.push(format!(
            "shutdown took {shutdown:?}, budget {SHUTDOWN_BUDGET:?} + {SHUTDOWN_SLACK:?}"
        ));
    }
    let stderr = c.stderr();
    if stderr.contains("exiting anyway") {
        failures.push("corral exited with processes it could not reap".into());
    }
    if stderr.contains("panicked") {
        failures.push("a corral thread panicked (see stderr)".into());
    }
    let drain_killed = stderr.contains("sending SIGKILL to every remaining process");
    if let Err(e) = poll_until("an empty PID namespace", DEADLINE, || {
        let left = scan(&ctx.ns);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} process(es) left in the namespace", left.len()))
        }
    }) {
        failures.push(e);
    }

    let n = &ctx.counters;
    println!("chaos figures (seed {seed}):");
    println!(
        "  chaos: {:.1} s measured (+{warmup_secs} s warm-up); corral lived {:.1} s",
        chaos_took.as_secs_f64(),
        lifetime.as_secs_f64()
    );
    println!(
        "  kills: {} main pids ({} of restartable daemons, never-a {}), {} children, {} orphans",
        get(&n.kills_main),
        daemon_kills.len(),
        if never_killed { "once" } else { "not" },
        get(&n.kills_child),
        get(&n.kills_orphan)
    );
    println!(
        "  restarts of daemons during the chaos: {counter_delta} (status counter), {marker_delta} start markers; missed restarts: {}; all back {:.1} s after the chaos",
        missed.len(),
        recovery.as_secs_f64()
    );
    println!(
        "  reloads: {} SIGHUP, {} rewrites, {} touches, churn -{} +{}, {} broken files, ctl reload {} ok / {} rejected",
        get(&n.sighups),
        get(&n.rewrites),
        get(&n.touches),
        get(&n.churn_removed),
        get(&n.churn_added),
        get(&n.broken_files),
        get(&n.ctl_reloads_ok),
        get(&n.ctl_reloads_rejected)
    );
    println!(
        "  control: {} status (slowest {} ms), {} ctl status (slowest {} ms), restart {} answered / {} refused / {} hung up",
        get(&n.statuses),
        get(&n.status_max_ms),
        get(&n.ctl_runs),
        get(&n.ctl_max_ms),
        get(&n.restarts_answered),
        get(&n.restarts_refused),
        get(&n.restarts_abandoned)
    );
    println!(
        "  zombies left: {zombies_left}; longest-lived zombie seen: {} ms; orphans reaped: {orphans_reaped}; most processes in the namespace: {}",
        watch.longest_zombie.as_millis(),
        watch.max_processes
    );
    println!(
        "  fds: baseline {} / after {} (peak {}); threads: baseline {} / after {} (peak {}); VmRSS: baseline {} KiB / after {} KiB ({:+} KiB)",
        baseline.fds,
        after.fds,
        watch.max_fds,
        baseline.threads,
        after.threads,
        watch.max_threads,
        baseline.rss_kib,
        after.rss_kib,
        after.rss_kib as i64 - baseline.rss_kib as i64
    );
    println!(
        "  corral CPU (% of one core): whole run {total_cpu:.1}, measured chaos {chaos_cpu:.1}, quiet {:.1} / {:.1}",
        baseline.cpu_percent, after.cpu_percent
    );
    println!(
        "  VmRSS during the measured chaos (KiB, every tenth): {:?}",
        watch.rss_trace
    );
    let [b, a] = [baseline.rss_kinds, after.rss_kinds];
    println!(
        "  RSS by kind, baseline -> after (KiB): main arena {} -> {}, thread arenas {} -> {}, stacks and other anonymous {} -> {}, files {} -> {}",
        b[0], a[0], b[1], a[1], b[2], a[2], b[3], a[3]
    );
    println!("  crash-loop restarts: {}", crash_lines.join(", "));
    println!("  ctl status after the chaos: {} ms", ctl.took.as_millis());
    println!(
        "  shutdown: {:.2} s (budget {SHUTDOWN_BUDGET:?}), exit {:?}, {processes_before_stop} processes in the namespace before, final SIGKILL needed: {drain_killed}",
        shutdown.as_secs_f64(),
        exit_code(status)
    );

    assert!(
        failures.is_empty(),
        "chaos (seed {seed}, replay with CORRAL_CHAOS_SEED={seed}) found {} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
