//! Shared harness for the integration tests: the real `corral` binary against
//! `sh -c` fake services. A module (`mod common`) of each test crate:
//! `tests/it/` (everything that may run side by side) and `tests/serial/`
//! (tests that measure time or load, one at a time: `serial()`).
//!
//! - `TestDir`: a unique scratch dir under `std::env::temp_dir()`, removed on
//!   drop. It holds `services/`, `init/`, `finish/`, corral's captured stdout
//!   and stderr, and the evidence files the fake services write. corral and
//!   every service see its path as `$T`.
//! - `Corral`: a running corral (as a child subreaper, or as PID 1 of a fresh
//!   PID namespace through `unshare`). Its `Drop` ends every process the test
//!   started, by pid, even when the test fails, and prints corral's output
//!   when the test is panicking.
//! - `wait_until`: re-check a condition every 10 ms until it holds or a
//!   deadline passes (`poll_until` returns the failure instead). No test
//!   waits with a fixed sleep: the sleeps left pace a load (a client, a
//!   trickle, a burst) or span a window in which CPU time is measured.
//! - `require_root`, `require_program`: a test that cannot run here fails
//!   and says why; none passes in silence.
//! - `/proc` readers (`cpu_ticks`, `status_number`, `soft_limit`,
//!   `open_fds`, ...) and the helpers many files use (`sleeper`, `as_nobody`,
//!   `http_get`, `raise_fd_limit`): one copy each, here.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long any single awaited condition may take. Generous on purpose: the
/// suite must pass on a loaded 2-core machine; a passing wait ends the moment
/// its condition holds, so this costs nothing when all is well.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a condition is re-checked.
const POLL: Duration = Duration::from_millis(10);

/// How long `Drop` lets corral shut down gracefully before killing everything.
const DROP_GRACE: Duration = Duration::from_secs(15);

/// Re-check `check` every 10 ms until it returns `Ok`, or panic once
/// `timeout` has passed, naming `what` was awaited and what was last seen
/// (the `Err` text).
pub fn wait_until<T>(what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    poll_until(what, timeout, check).unwrap_or_else(|e| panic!("{e}"))
}

/// `wait_until` that returns its failure instead of panicking, for a test
/// that collects failures and reports them together.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(seen) => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "timed out after {timeout:?} waiting for {what}; last seen: {seen}"
                    ));
                }
            }
        }
        thread::sleep(POLL);
    }
}

/// Wait up to `timeout` for `child` to exit (it is left running past it).
pub fn wait_child(child: &mut Child, timeout: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                return Err(format!(
                    "pid {} still running after {timeout:?}",
                    child.id()
                ));
            }
            Ok(None) => thread::sleep(POLL),
            Err(e) => return Err(format!("wait for pid {}: {e}", child.id())),
        }
    }
}

/// Held for its whole run by each test of `tests/serial/`: those measure
/// time and load, so they run one at a time (a test binary otherwise runs
/// as many tests at once as there are cores). A test that failed while
/// holding it does not stop the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// Processes, from /proc

/// The fields of a `/proc/PID/stat` (or `/proc/PID/task/TID/stat`) text
/// after the command name (proc(5)): index 0 is field 3 (state), 1 the
/// ppid, 11 utime, 12 stime. The name is in parentheses and may contain
/// spaces, so fields are counted after the last `)`.
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(
        stat.get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect(),
    )
}

/// `(state, ppid)` from `/proc/PID/stat`.
pub fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    Some((state, ppid))
}

/// CPU time (utime + stime, in clock ticks) from a `/proc/.../stat` file.
fn cpu_ticks_in(stat_file: &Path) -> Option<u64> {
    let stat = fs::read_to_string(stat_file).ok()?;
    let fields = stat_fields(&stat)?;
    let tick = |i: usize| fields.get(i).and_then(|t| t.parse::<u64>().ok());
    Some(tick(11)? + tick(12)?)
}

/// The CPU time a process has used, in clock ticks; `None` once it is gone.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    cpu_ticks_in(Path::new(&format!("/proc/{pid}/stat")))
}

/// The CPU time of `pid`'s threads whose name (`comm`) satisfies `name`, in
/// clock ticks; `None` if it has no such thread.
pub fn thread_cpu_ticks(pid: i32, name: impl Fn(&str) -> bool) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = None;
    for task in tasks.flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name(comm.trim_end()) {
            let ticks = cpu_ticks_in(&task.path().join("stat")).unwrap_or(0);
            total = Some(total.unwrap_or(0) + ticks);
        }
    }
    total
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `cpu_ticks`.
pub fn clock_ticks_per_sec() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// A number of `/proc/PID/status` (`VmRSS` in KiB, `Threads`, ...).
pub fn status_number(pid: i32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The `SigBlk:` and `SigIgn:` masks of a `/proc/PID/status` text.
pub fn signal_masks(status: &str) -> (u64, u64) {
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {name} in {status:?}"))
    };
    (mask("SigBlk:"), mask("SigIgn:"))
}

/// The soft limit of `/proc/PID/limits` line `name` (e.g. "Max open
/// files"); `u64::MAX` for "unlimited".
pub fn soft_limit(pid: i32, name: &str) -> u64 {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{name} missing from /proc/{pid}/limits"));
    soft.parse().unwrap_or(u64::MAX)
}

/// The open fds of a process, each with its target (`socket:[INODE]`,
/// `pipe:[INODE]`, a path, or `?`), in order; empty once it is gone.
pub fn open_fds(pid: i32) -> Vec<(u32, String)> {
    let mut fds: Vec<(u32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let fd = e.file_name().to_str()?.parse().ok()?;
                    let target = fs::read_link(e.path())
                        .map(|t| t.display().to_string())
                        .unwrap_or_else(|_| "?".into());
                    Some((fd, target))
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

/// The process exists and is not a zombie (or dead, being torn down).
pub fn running(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// The process is a zombie: exited, not reaped yet.
pub fn zombie(pid: i32) -> bool {
    matches!(proc_stat(pid), Some(('Z', _)))
}

/// Every pid in `/proc` with its ppid.
fn parents() -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some((_, ppid)) = proc_stat(pid) {
                map.insert(pid, ppid);
            }
        }
    }
    map
}

/// Direct children of `pid` (this kernel has no `/proc/PID/task/TID/children`).
pub fn children(pid: i32) -> Vec<i32> {
    let mut found: Vec<i32> = parents()
        .into_iter()
        .filter(|&(_, ppid)| ppid == pid)
        .map(|(child, _)| child)
        .collect();
    found.sort();
    found
}

/// Every descendant of `root`, by walking the ppid fields of `/proc/*/stat`.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut by_parent: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, ppid) in parents() {
        by_parent.entry(ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &child in by_parent.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            stack.push(child);
        }
    }
    found.sort();
    found
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The pids of `pid` in each nested PID namespace, outermost first
/// (`NSpid:` of `/proc/PID/status`).
pub fn ns_pids(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("NSpid:").map(|rest| {
                    rest.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
            })
        })
        .unwrap_or_default()
}

pub fn send(pid: i32, signal: Signal) {
    // ESRCH is fine: it already ended.
    let _ = kill(Pid::from_raw(pid), signal);
}

/// Freeze, then SIGKILL, every descendant of `root`, until none is left
/// (or a bounded number of rounds: a fork between two rounds is caught by
/// the next). Only pids found under `root` are signalled.
pub fn kill_descendants(root: i32) {
    for _ in 0..50 {
        let found = descendants(root);
        let live: Vec<i32> = found.into_iter().filter(|&p| running(p)).collect();
        if live.is_empty() {
            return;
        }
        // SIGSTOP first, so nothing forks or respawns between the two passes.
        for &pid in &live {
            send(pid, Signal::SIGSTOP);
        }
        for &pid in &live {
            send(pid, Signal::SIGKILL);
        }
        thread::sleep(POLL);
    }
}

pub fn exit_code(status: ExitStatus) -> Result<i32, String> {
    match (status.code(), status.signal()) {
        (Some(code), _) => Ok(code),
        (None, Some(sig)) => Err(format!(
            "killed by signal {sig} ({})",
            Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("?")
        )),
        _ => Err(format!("{status:?}")),
    }
}

/// Seconds since the epoch, as written by `date +%s.%N`.
pub fn parse_time(text: &str) -> f64 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a `date +%s.%N` timestamp: {text:?}"))
}

/// The lowest fd number a process does not have open: with RLIMIT_NOFILE
/// at that number, its next open or accept fails with EMFILE (new fds fill
/// the lowest hole first).
pub fn lowest_free_fd(pid: i32) -> u64 {
    let open: Vec<u64> = open_fds(pid).iter().map(|&(fd, _)| u64::from(fd)).collect();
    (0..).find(|fd| !open.contains(fd)).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// What a test needs of the machine

/// Fail the test, saying why, unless it runs as root. CI runs the suite as
/// root: a test that needs root fails elsewhere rather than pass unrun.
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root: {why}; run the suite as root (CI does)"
    );
}

/// Whether `program` is an executable file in a directory of `$PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Fail the test, saying how to get it, unless `program` is on `$PATH`
/// (CI's `.ci/run` installs every program the tests use).
pub fn require_program(program: &str, package: &str) {
    assert!(
        on_path(program),
        "{program} is not installed: this test needs the real program \
         (apt-get install -y {package}; CI's .ci/run installs it)"
    );
}

/// `program` as uid and gid `uid`, without supplementary groups, through
/// util-linux setpriv (the caller must be root).
pub fn as_uid(uid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    let id = uid.to_string();
    cmd.args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .arg(program);
    cmd
}

/// `program` as uid and gid 65534 (nobody): the attacker of the security
/// tests, a client corral must refuse.
pub fn as_nobody(program: impl AsRef<std::ffi::OsStr>) -> Command {
    as_uid(65534, program)
}

/// python3 where every uid can run it: a `python3` first on root's PATH
/// may be a shim under /root (pyenv), which uid 65534 cannot reach.
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Raise this process's soft RLIMIT_NOFILE to its hard limit, which must be
/// at least `need`: corral (started after this) and the test's clients
/// inherit it. Too low a hard limit fails the test, with the reason.
pub fn raise_fd_limit(need: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid `limit`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    assert!(
        limit.rlim_max >= need,
        "RLIMIT_NOFILE hard limit {} is below the {need} fds this test needs; \
         raise it (ulimit -Hn, docker --ulimit nofile=...)",
        limit.rlim_max
    );
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads one valid `rlimit`.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

// ---------------------------------------------------------------------------
// Scratch directory

/// A service file for `NAME`: a daemon that appends its pid to
/// `$T/NAME.pids` at each start and then sleeps.
pub fn sleeper(name: &str) -> String {
    format!("command = '''echo $$ >> \"$T/{name}.pids\"; exec sleep 1000'''\n")
}

pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// `$TMPDIR/corral-it-NAME-PID-N-NANOS`, with empty `services/`, `init/`
    /// and `finish/` dirs.
    pub fn new(name: &str) -> TestDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "corral-it-{name}-{}-{}-{nanos}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        for sub in ["services", "init", "finish"] {
            fs::create_dir_all(path.join(sub)).expect("create test dir");
        }
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// `services/NAME.toml` with `toml` as its content.
    pub fn service(&self, name: &str, toml: &str) -> PathBuf {
        let path = self.join(&format!("services/{name}.toml"));
        fs::write(&path, toml).expect("write service file");
        path
    }

    /// An executable `/bin/sh` script `init/NAME`.
    pub fn init_script(&self, name: &str, body: &str) -> PathBuf {
        self.script(&format!("init/{name}"), body)
    }

    /// An executable `/bin/sh` script `finish/NAME`.
    pub fn finish_script(&self, name: &str, body: &str) -> PathBuf {
        self.script(&format!("finish/{name}"), body)
    }

    fn script(&self, rel: &str, body: &str) -> PathBuf {
        let path = self.join(rel);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
        path
    }

    pub fn write(&self, rel: &str, contents: &str) {
        fs::write(self.join(rel), contents).expect("write file");
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.join(rel).exists()
    }

    /// The file's text; empty if it does not exist (yet).
    pub fn read(&self, rel: &str) -> String {
        fs::read(self.join(rel))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The complete (newline-terminated) lines of a file; a last line still
    /// being written is left out.
    pub fn lines(&self, rel: &str) -> Vec<String> {
        self.read(rel)
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .map(String::from)
            .collect()
    }

    /// The pids written one per line by `echo $$ >> FILE`.
    pub fn pids(&self, rel: &str) -> Vec<i32> {
        self.lines(rel)
            .iter()
            .map(|l| {
                l.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{rel}: not a pid: {l:?}"))
            })
            .collect()
    }

    pub fn corral(self) -> CorralBuilder {
        CorralBuilder {
            dir: self,
            args: Vec::new(),
            main: Vec::new(),
            pid1: false,
            dirs: true,
            env: Vec::new(),
            env_remove: Vec::new(),
            user: None,
            inherited: None,
            closed: Vec::new(),
            nofile: None,
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// corral

pub fn corral_bin() -> &'static str {
    env!("CARGO_BIN_EXE_corral")
}

/// Variables that would change corral's behaviour behind the test's back.
pub const FOREIGN_ENV: [&str; 13] = [
    "CORRAL_OUTPUT_FORMAT",
    "CORRAL_OUTPUT_TIMESTAMPS",
    "CORRAL_SERVICES",
    "CORRAL_INIT_DIR",
    "CORRAL_FINISH_DIR",
    "CORRAL_SHUTDOWN_TIMEOUT",
    "CORRAL_LOG_FORMAT",
    "CORRAL_LOG_LEVEL",
    "CORRAL_HTTP",
    "S6_KILL_GRACETIME",
    "S6_SERVICES_GRACETIME",
    "S6_BEHAVIOUR_IF_STAGE2_FAILS",
    "NOTIFY_SOCKET",
];

/// The environment and stdio every corral of the tests gets: `$T` is the
/// test dir, output goes to `corral.stdout` / `corral.stderr` in it.
fn command(program: &str, dir: &TestDir) -> Command {
    let mut cmd = Command::new(program);
    for var in FOREIGN_ENV {
        cmd.env_remove(var);
    }
    let stdout = fs::File::create(dir.join("corral.stdout")).expect("create corral.stdout");
    let stderr = fs::File::create(dir.join("corral.stderr")).expect("create corral.stderr");
    cmd.env("T", dir.path())
        // Once the control socket lands, parallel tests must not share one.
        .env("CORRAL_SOCKET", dir.join("control.sock"))
        // With an s6 layout, corral writes s6-overlay's /run/s6: each test
        // gets its own, never the host's.
        .env("CORRAL_S6_RUNTIME_DIR", dir.join("s6run"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    cmd
}

pub struct CorralBuilder {
    dir: TestDir,
    args: Vec<String>,
    main: Vec<String>,
    pid1: bool,
    dirs: bool,
    env: Vec<(String, String)>,
    /// Variables taken out of corral's environment.
    env_remove: Vec<String>,
    /// Run corral as this uid (and gid), through std's setuid before exec.
    user: Option<u32>,
    /// Signals corral starts with ignored, and blocked (as a careless
    /// parent would leave them).
    inherited: Option<(Vec<i32>, Vec<i32>)>,
    /// Of fds 0, 1, 2: those corral starts with closed.
    closed: Vec<i32>,
    /// The open-file limit (soft, hard) corral starts with.
    nofile: Option<(u64, u64)>,
}

impl CorralBuilder {
    /// Give corral `--socket <test dir>/ctl.sock`, the socket `Corral::ctl` uses.
    pub fn ctl_socket(self) -> Self {
        let path = self.dir.join(CTL_SOCKET).display().to_string();
        self.args(["--socket", &path])
    }

    /// Take `key` out of corral's environment (e.g. the harness's CORRAL_SOCKET).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// Run corral as `uid` (gid the same number, no supplementary groups).
    /// Not with `pid1`.
    pub fn user(mut self, uid: u32) -> Self {
        self.user = Some(uid);
        self
    }

    /// An environment variable of corral's (the "container environment").
    /// Start corral with `ignored` set to SIG_IGN and `blocked` in its mask
    /// (subreaper mode only).
    pub fn inherit_signals(mut self, ignored: &[i32], blocked: &[i32]) -> Self {
        self.inherited = Some((ignored.to_vec(), blocked.to_vec()));
        self
    }

    /// Start corral with these of fds 0, 1, 2 closed (as a careless parent
    /// might), not subreaper mode's files.
    pub fn closed_fds(mut self, fds: &[i32]) -> Self {
        self.closed = fds.to_vec();
        self
    }

    /// Start corral with this open-file limit (soft, hard), not subreaper
    /// mode's.
    pub fn nofile(mut self, soft: u64, hard: u64) -> Self {
        self.nofile = Some((soft, hard));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<const N: usize>(mut self, args: [&str; N]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The main COMMAND (after `--`).
    pub fn main<const N: usize>(mut self, argv: [&str; N]) -> Self {
        self.main = argv.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Run corral as PID 1 of a new PID namespace.
    pub fn pid1(mut self) -> Self {
        self.pid1 = true;
        self
    }

    /// Pass no `--services` / `--init-dir` / `--finish-dir` at all (tini mode).
    pub fn without_dirs(mut self) -> Self {
        self.dirs = false;
        self
    }

    fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if self.dirs {
            for (flag, sub) in [
                ("--services", "services"),
                ("--init-dir", "init"),
                ("--finish-dir", "finish"),
            ] {
                argv.push(flag.to_string());
                argv.push(self.dir.join(sub).display().to_string());
            }
        }
        argv.extend(self.args.iter().cloned());
        if !self.main.is_empty() {
            argv.push("--".into());
            argv.extend(self.main.iter().cloned());
        }
        argv
    }

    pub fn start(self) -> Corral {
        let argv = self.argv();
        if !self.pid1 {
            let mut cmd = command(corral_bin(), &self.dir);
            for key in &self.env_remove {
                cmd.env_remove(key);
            }
            if let Some(uid) = self.user {
                use std::os::unix::process::CommandExt;
                // std drops supplementary groups when root sets a uid.
                cmd.uid(uid).gid(uid);
            }
            if let Some((ignored, blocked)) = self.inherited.clone() {
                use std::os::unix::process::CommandExt;
                // SAFETY: only sigaction/sigprocmask between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        let mut set: libc::sigset_t = std::mem::zeroed();
                        libc::sigemptyset(&mut set);
                        for &sig in &ignored {
                            libc::signal(sig, libc::SIG_IGN);
                        }
                        for &sig in &blocked {
                            libc::sigaddset(&mut set, sig);
                        }
                        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                        Ok(())
                    });
                }
            }
            if !self.closed.is_empty() {
                use std::os::unix::process::CommandExt;
                let closed = self.closed.clone();
                // SAFETY: only close(2) between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        for &fd in &closed {
                            libc::close(fd);
                        }
                        Ok(())
                    });
                }
            }
            if let Some((soft, hard)) = self.nofile {
                use std::os::unix::process::CommandExt;
                // SAFETY: only setrlimit(2) between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        let limit = libc::rlimit {
                            rlim_cur: soft,
                            rlim_max: hard,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            let child = cmd
                .envs(self.env.iter().cloned())
                .args(&argv)
                .spawn()
                .expect("spawn corral");
            let pid = child.id() as i32;
            return Corral {
                child,
                pid,
                pid1: false,
                status: None,
                dir: self.dir,
            };
        }
        let mut cmd = command("unshare", &self.dir);
        cmd.envs(self.env.iter().cloned());
        cmd.args(["--pid", "--fork", "--mount-proc"]);
        if !nix::unistd::geteuid().is_root() {
            cmd.args(["--user", "--map-root-user"]);
        }
        let mut child = cmd
            .arg(corral_bin())
            .args(&argv)
            .spawn()
            .expect("spawn unshare (util-linux) to run corral as PID 1");
        let unshare = child.id() as i32;
        // corral is the child `unshare --fork` makes. Find it by its host pid,
        // and make sure it really is PID 1 of its namespace: a PID-1 test that
        // silently ran as something else would prove nothing.
        let deadline = Instant::now() + DEADLINE;
        let pid = loop {
            if let Ok(Some(status)) = child.try_wait() {
                let err = fs::read_to_string(self.dir.join("corral.stderr")).unwrap_or_default();
                panic!(
                    "unshare exited ({status:?}) before corral ran as PID 1: cannot run PID-1 tests here.\n{err}"
                );
            }
            let found = children(unshare)
                .into_iter()
                .find(|&c| cmdline(c).starts_with(corral_bin()) && ns_pids(c).last() == Some(&1));
            if let Some(pid) = found {
                break pid;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "corral did not appear as PID 1 under unshare (pid {unshare}) within {DEADLINE:?}"
                );
            }
            thread::sleep(POLL);
        };
        Corral {
            child,
            pid,
            pid1: true,
            status: None,
            dir: self.dir,
        }
    }

    /// Run corral to completion (for runs that end by themselves: `check`,
    /// invalid definitions, a failing init script, tini mode, ...).
    pub fn run(self) -> Finished {
        let mut corral = self.start();
        let status = corral.wait_status(DEADLINE);
        Finished { corral, status }
    }

    /// `corral check --services DIR [ARGS]`, to completion.
    pub fn check(self) -> Finished {
        let mut argv = vec!["check".to_string()];
        argv.push("--services".into());
        argv.push(self.dir.join("services").display().to_string());
        argv.extend(self.args.iter().cloned());
        let child = command(corral_bin(), &self.dir)
            .args(&argv)
            .spawn()
            .expect("spawn corral check");
        let pid = child.id() as i32;
        let mut corral = Corral {
            child,
            pid,
            pid1: false,
            status: None,
            dir: self.dir,
        };
        let status = corral.wait_status(DEADLINE);
        Finished { corral, status }
    }
}

/// A corral run that has ended.
pub struct Finished {
    pub corral: Corral,
    pub status: ExitStatus,
}

impl Finished {
    pub fn code(&self) -> i32 {
        exit_code(self.status).unwrap_or_else(|e| panic!("corral did not exit normally: {e}"))
    }

    pub fn stdout(&self) -> String {
        self.corral.stdout()
    }

    pub fn stderr(&self) -> String {
        self.corral.stderr()
    }

    pub fn dir(&self) -> &TestDir {
        self.corral.dir()
    }
}

pub struct Corral {
    /// corral itself, or the `unshare` process whose child corral is.
    child: Child,
    /// corral's pid as the tests see it (its host pid under unshare).
    pid: i32,
    pid1: bool,
    status: Option<ExitStatus>,
    /// Dropped after `Drop::drop` has ended every process.
    dir: TestDir,
}

impl Corral {
    pub fn dir(&self) -> &TestDir {
        &self.dir
    }

    /// corral's pid, as seen from the test (host pid when PID 1 of a namespace).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn stdout(&self) -> String {
        self.dir.read("corral.stdout")
    }

    pub fn stderr(&self) -> String {
        self.dir.read("corral.stderr")
    }

    /// The tails of stdout and stderr, for failure messages.
    pub fn output_excerpt(&self) -> String {
        fn tail(text: &str) -> &str {
            let max = 6000;
            if text.len() <= max {
                return text;
            }
            let mut start = text.len() - max;
            while !text.is_char_boundary(start) {
                start += 1;
            }
            &text[start..]
        }
        format!(
            "--- corral stdout (tail) ---\n{}\n--- corral stderr (tail) ---\n{}\n---",
            tail(&self.stdout()),
            tail(&self.stderr())
        )
    }

    pub fn signal(&self, signal: Signal) {
        send(self.pid, signal);
    }

    /// corral's exit status, if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.status = Some(status);
        }
        self.status
    }

    pub fn is_alive(&mut self) -> bool {
        self.try_status().is_none()
    }

    pub fn wait_status(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for corral (pid {}) to exit; processes left: {:?}",
                    self.pid,
                    self.describe_descendants(),
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Wait for corral to exit; its exit code (panics if it was killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let status = self.wait_status(timeout);
        exit_code(status).unwrap_or_else(|e| panic!("corral did not exit normally: {e}"))
    }

    /// `docker stop`: SIGTERM, then corral's exit code.
    pub fn stop(&mut self) -> i32 {
        self.signal(Signal::SIGTERM);
        self.wait_exit(DEADLINE)
    }

    /// Like `wait_until`, but fails at once (with corral's output) if corral
    /// exits before the condition holds.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        check: impl FnMut(&Corral) -> Result<T, String>,
    ) -> T {
        self.wait_for_within(DEADLINE, what, check)
    }

    /// `wait_for` with its own deadline, for conditions that take long by design.
    pub fn wait_for_within<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Corral) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.try_status();
            match check(&*self) {
                Ok(value) => return value,
                Err(seen) => {
                    if let Some(status) = exited {
                        panic!(
                            "corral exited ({status:?}) while waiting for {what}; last seen: {seen}"
                        );
                    }
                    if Instant::now() >= deadline {
                        panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
                    }
                }
            }
            thread::sleep(POLL);
        }
    }

    /// Wait until `rel` holds at least `n` complete lines of pids; returns them.
    pub fn wait_pids(&mut self, rel: &str, n: usize) -> Vec<i32> {
        self.wait_for(&format!("{n} pid(s) in {rel}"), |c| {
            let pids = c.dir.pids(rel);
            if pids.len() >= n {
                Ok(pids)
            } else {
                Err(format!("{pids:?}"))
            }
        })
    }

    /// Wait until the file `rel` exists and is not empty; returns its text.
    pub fn wait_file(&mut self, rel: &str) -> String {
        self.wait_for(&format!("file {rel}"), |c| {
            let text = c.dir.read(rel);
            if text.is_empty() {
                Err(format!("{rel} missing or empty"))
            } else {
                Ok(text)
            }
        })
    }

    /// Wait until corral's stderr has a line containing every one of `words`.
    pub fn wait_stderr_line(&mut self, words: &[&str]) -> String {
        self.wait_for(&format!("a corral stderr line with {words:?}"), |c| {
            c.stderr()
                .lines()
                .find(|l| words.iter().all(|w| l.contains(w)))
                .map(String::from)
                .ok_or_else(|| "no such line yet".to_string())
        })
    }

    /// Every process under corral (in its namespace, when PID 1).
    pub fn descendants(&self) -> Vec<i32> {
        descendants(self.pid)
    }

    /// `pid state cmdline` of every descendant, for messages.
    pub fn describe_descendants(&self) -> Vec<String> {
        self.descendants()
            .into_iter()
            .map(|p| {
                let state = proc_stat(p).map_or('?', |(s, _)| s);
                let cmd: String = cmdline(p).chars().take(60).collect();
                format!("{p} {state} {cmd}")
            })
            .collect()
    }

    /// The pid, as the test sees it, of a process whose pid a service wrote
    /// (`echo $$`): the same number as a subreaper; as PID 1, the namespace
    /// pid is translated through the `NSpid:` lines of corral's descendants.
    pub fn host_pid(&self, pid: i32) -> Option<i32> {
        if !self.pid1 {
            return Some(pid);
        }
        if pid == 1 {
            return Some(self.pid);
        }
        self.descendants()
            .into_iter()
            .find(|&d| ns_pids(d).last() == Some(&pid))
    }

    /// A process whose pid a service wrote is alive (and not a zombie).
    pub fn process_running(&self, pid: i32) -> bool {
        self.host_pid(pid).is_some_and(running)
    }

    /// Send `signal` to a process whose pid a service wrote.
    pub fn signal_process(&self, pid: i32, signal: Signal) {
        let host = self
            .host_pid(pid)
            .unwrap_or_else(|| panic!("no process {pid} under corral"));
        send(host, signal);
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.signal(Signal::SIGTERM);
            let deadline = Instant::now() + DROP_GRACE;
            while self.try_status().is_none() && Instant::now() < deadline {
                thread::sleep(POLL);
            }
        }
        if self.try_status().is_none() {
            if self.pid1 {
                // SIGKILL of a namespace's PID 1 kills every process in it.
                send(self.pid, Signal::SIGKILL);
            } else {
                // Freeze corral so it restarts nothing, kill its whole tree by
                // pid, then corral itself.
                send(self.pid, Signal::SIGSTOP);
                kill_descendants(self.pid);
                send(self.pid, Signal::SIGKILL);
            }
            let deadline = Instant::now() + DROP_GRACE;
            while self.try_status().is_none() && Instant::now() < deadline {
                thread::sleep(POLL);
            }
            if self.try_status().is_none() {
                // `unshare` itself (by its pid), should it still wait.
                kill_descendants(self.child.id() as i32);
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }
        if thread::panicking() {
            eprintln!("{}", self.output_excerpt());
        }
    }
}

// ---------------------------------------------------------------------------
// corral ctl

/// The control socket `CorralBuilder::ctl_socket` gives corral, in the test dir.
pub const CTL_SOCKET: &str = "ctl.sock";

/// A finished command: its exit code and what it printed.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// From spawn to exit.
    pub took: Duration,
}

impl Ran {
    /// The stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// A command running in the background with its output piped: stdout line
/// by line on a channel, stderr collected. `Drop` kills it by pid (and
/// reaps it) if it is still running, also when the test fails.
pub struct Background {
    child: Child,
    started: Instant,
    stdout: crossbeam_channel::Receiver<String>,
    seen: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Background {
    pub fn spawn(cmd: &mut Command) -> Background {
        use std::io::{BufRead, BufReader, Read};
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let (tx, stdout) = crossbeam_channel::unbounded();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }));
        }
        if let Some(mut err) = child.stderr.take() {
            let stderr = std::sync::Arc::clone(&stderr);
            readers.push(thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut text) = stderr.lock() {
                        text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            }));
        }
        Background {
            child,
            started,
            stdout,
            seen: Vec::new(),
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The next stdout line, waiting up to `timeout`; panics (with what it
    /// printed so far) if none comes.
    pub fn next_line(&mut self, timeout: Duration) -> String {
        match self.stdout.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(e) => panic!(
                "no stdout line from pid {} within {timeout:?} ({e}); stdout so far: {:?}; stderr: {:?}",
                self.pid(),
                self.seen,
                self.stderr()
            ),
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Wait for the exit (killing it at `timeout`, then panicking).
    pub fn finish(mut self, timeout: Duration) -> Ran {
        let status = wait_child(&mut self.child, timeout).unwrap_or_else(|e| {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("{e}; stdout: {:?}; stderr: {:?}", self.seen, self.stderr());
        });
        let took = self.started.elapsed();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let mut stdout: Vec<String> = std::mem::take(&mut self.seen);
        stdout.extend(self.stdout.try_iter());
        let mut text = stdout.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        let code = exit_code(status).unwrap_or(-1);
        Ran {
            code,
            stdout: text,
            stderr: self.stderr(),
            took,
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `cmd` to completion within `timeout` (killed by pid past it).
pub fn run_within(cmd: &mut Command, timeout: Duration) -> Ran {
    Background::spawn(cmd).finish(timeout)
}

/// `corral ctl ARGS` as a command, with a clean environment for the client.
pub fn ctl_command(socket: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new(corral_bin());
    cmd.env_remove("CORRAL_SOCKET").arg("ctl");
    if let Some(socket) = socket {
        cmd.arg("--socket").arg(socket);
    }
    cmd.args(args);
    cmd
}

/// `corral ctl --socket SOCKET ARGS` as uid and gid 65534 (`as_nobody`).
pub fn ctl_command_as_nobody(socket: &Path, args: &[&str]) -> Command {
    let mut cmd = as_nobody(corral_bin());
    cmd.args(["ctl", "--socket"])
        .arg(socket)
        .args(args)
        .env_remove("CORRAL_SOCKET");
    cmd
}

impl Corral {
    /// The socket given by `CorralBuilder::ctl_socket`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(CTL_SOCKET)
    }

    /// Wait until that socket is there (corral makes it before the first
    /// spawn, but a test may get there first).
    pub fn wait_socket(&mut self) {
        self.wait_for("the control socket", |c| {
            if c.socket().exists() {
                Ok(())
            } else {
                Err("no socket yet".into())
            }
        });
    }

    /// `corral ctl --socket <test dir>/ctl.sock ARGS`, to completion.
    pub fn ctl(&self, args: &[&str]) -> Ran {
        run_within(&mut ctl_command(Some(&self.socket()), args), DEADLINE)
    }

    /// `corral ctl ...` left running (`logs -f`, `wait`).
    pub fn ctl_background(&self, args: &[&str]) -> Background {
        Background::spawn(&mut ctl_command(Some(&self.socket()), args))
    }

    /// The number of threads corral has (`Threads:` of /proc/PID/status).
    pub fn threads(&self) -> usize {
        status_number(self.pid, "Threads").map_or(0, |n| n as usize)
    }
}

// ---------------------------------------------------------------------------
// Readiness, reload, HTTP: helpers shared by `readiness.rs`, `reload.rs`,
// `http_endpoint.rs` and `haproxy.rs`.

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then
/// released). Another process could take it in between; the tests that use
/// one fail loudly, not silently, if that ever happens.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Watch `check` for `period`: it must hold at every look (every 10 ms).
/// The bounded counterpart of `wait_until`, for "nothing else happens":
/// panics at the first look where it does not hold, with what was seen.
pub fn stays(what: &str, period: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + period;
    loop {
        if let Err(seen) = check() {
            panic!("{what} stopped holding: {seen}");
        }
        if Instant::now() >= end {
            return;
        }
        thread::sleep(POLL);
    }
}

/// Seconds since the epoch, now (to compare with `date +%s.%N` stamps).
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `GET path` on 127.0.0.1:`port` over a fresh connection (HTTP/1.0,
/// `Connection: close`): the status code and the body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http_get_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// `http_get` on any address.
pub fn http_get_at(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| format!("{addr}: {e}"))?;
    // One write: a request written in pieces meets Nagle's algorithm and
    // the server's delayed ACK (40 ms per request).
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: no end of headers in {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}: no status code in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// `sd_notify(3)` for shell services: `$T/sd_notify KEY=VALUE...` sends one
/// datagram (the arguments joined by newlines) to `$NOTIFY_SOCKET`, an
/// abstract `@...` address included. Then, as `systemd-notify` does, it
/// waits (up to 5 s) on a barrier (sd_notify_barrier(3): an fd sent along,
/// closed by corral once it has judged the datagrams before it), so it is
/// still alive when corral checks that the sender is the service's.
pub const SD_NOTIFY: &str = r#"#!/usr/bin/env python3
import array, os, select, socket, sys
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto("\n".join(sys.argv[1:]).encode(), addr)
r, w = os.pipe()
s.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))], 0, addr)
os.close(w)
select.select([r], [], [], 5)
"#;

impl TestDir {
    /// An executable file `rel` with `contents` (shebang included).
    pub fn executable(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.join(rel);
        fs::write(&path, contents).expect("write executable");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod executable");
        path
    }

    /// `$T/sd_notify` (see `SD_NOTIFY`).
    pub fn sd_notify(&self) -> PathBuf {
        self.executable("sd_notify", SD_NOTIFY)
    }

    /// Like `read`, trimmed and parsed as a `date +%s.%N` stamp.
    pub fn time(&self, rel: &str) -> f64 {
        parse_time(&self.read(rel))
    }
}

impl Corral {
    /// `ctl status --json`, parsed: one JSON object per service.
    pub fn ctl_status(&self) -> Vec<serde_json::Value> {
        self.try_ctl_status().unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ctl status --json`, or why it failed (e.g. no socket yet).
    pub fn try_ctl_status(&self) -> Result<Vec<serde_json::Value>, String> {
        let ran = self.ctl(&["status", "--json"]);
        if ran.code != 0 {
            return Err(format!("ctl status --json failed: {ran:?}"));
        }
        match serde_json::from_str(&ran.stdout) {
            Ok(serde_json::Value::Array(services)) => Ok(services),
            other => Err(format!(
                "ctl status --json: not a JSON array: {other:?}\n{}",
                ran.stdout
            )),
        }
    }

    /// `name`'s entry of `ctl status --json`; `None` if it is not listed.
    pub fn ctl_service(&self, name: &str) -> Option<serde_json::Value> {
        self.ctl_status().into_iter().find(|s| s["name"] == name)
    }

    /// Wait until `name`'s status entry satisfies `pred`; returns the entry.
    pub fn wait_service(
        &mut self,
        name: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_for(&format!("{name}: {what}"), |c| {
            // Until corral's socket is there, `ctl` fails: keep waiting.
            let services = c.try_ctl_status()?;
            match services.into_iter().find(|s| s["name"] == name) {
                Some(svc) if pred(&svc) => Ok(svc),
                Some(svc) => Err(svc.to_string()),
                None => Err(format!("{name} not in ctl status")),
            }
        })
    }

    /// Wait until `ctl status` shows `name` in `state`; returns its entry.
    pub fn wait_state(&mut self, name: &str, state: &str) -> serde_json::Value {
        self.wait_service(name, &format!("state {state}"), |s| s["state"] == state)
    }

    /// Every line of corral's stderr containing every one of `words`.
    pub fn stderr_lines(&self, words: &[&str]) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .map(String::from)
            .collect()
    }
}

// ---------------------------------------------------------------------------
// s6-overlay links: helpers for `s6_links.rs`.

impl TestDir {
    /// A symbolic link `rel` to the corral binary, as images install
    /// `/usr/bin/with-contenv` or `/command/s6-svc`: corral picks its mode
    /// from the link's name.
    pub fn link_corral(&self, rel: &str) -> PathBuf {
        let path = self.join(rel);
        std::os::unix::fs::symlink(corral_bin(), &path).expect("symlink to corral");
        path
    }
}

/// The program `link` (a link to corral) with `args`, talking to the
/// control socket `socket` through `CORRAL_SOCKET`, as a script inside the
/// container would (e.g. `Corral::socket()`).
pub fn link_command(link: &Path, socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(link);
    cmd.env("CORRAL_SOCKET", socket).args(args);
    cmd
}
