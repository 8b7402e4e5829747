//! Starting and signalling processes: services, their hooks and probes
//! through `spawn` (a clone sharing memory, waited for at its exec), the
//! main COMMAND and scripts through std's `Command`.
//!
//! Every service (and its probes and hooks) starts in a session of its own
//! (`setsid`), so it is the leader of its own process group: a stop signal
//! reaches its whole tree, and no other service can move a process into that
//! group (setpgid(2) joins a group only within the caller's session), which
//! is what lets the notify thread trust "a process of that group" (SPEC 12).
//! Init scripts and the main COMMAND get their own process group in
//! corral's session (the main COMMAND may take the terminal's foreground).
//! Every child starts with default signal dispositions and an empty mask
//! (`reset_signals`), glibc's internal real-time signals included.
//!
//! Nothing here ever waits for a child: the `Child`
//! std returns is dropped at once and `reaper` alone calls `waitpid`
//! (std's own `waitpid` on an exec failure, and `reaper::reap_failed_start`
//! for `spawn`'s, happen on the same thread as the reaper, so they cannot
//! race).
//!
//! A service in an s6-rc pipeline (SPEC section 9) is given its pipe as
//! fd 0 or fd 1 (`Launch::stdin`, `Launch::stdout`): copies of the ends the
//! executor holds, which `spawn` dup2s into the child (clearing close-on-exec
//! on 0 and 1 only) and which are closed in corral once the spawn is done. A
//! producer's stdout is then its pipe, not a prefixed output pipe: only its
//! stderr is read by the output thread.
//!
//! `limits` are set (soft = hard) first thing in the child, before the
//! switch of user drops the capability that raising one needs; they hold
//! for every process in the service's context (its hooks, probes, `finish`
//! and `down` too). A limit the child cannot set fails the spawn, and the
//! error names it (`config::check_limit` says why).
//!
//! An `env-file` is read at each start, with the permissions of the
//! service's user (`files::read_as`, which cannot block the loop); what is in
//! it never appears in an error, so never in a log line or in `ctl status`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::config::{self, Credentials, Output, ServiceSpec};
use crate::files;
use crate::spawn;

/// Why a spawn failed, and the exit status a shell would give for it.
#[derive(Debug)]
pub struct SpawnError {
    pub message: String,
    /// 127 command not found, 126 not executable, 1 otherwise.
    pub code: i32,
}

impl SpawnError {
    pub fn new(message: String) -> SpawnError {
        SpawnError { message, code: 1 }
    }

    fn from_io(what: &str, err: io::Error) -> SpawnError {
        let code = match err.kind() {
            io::ErrorKind::NotFound => 127,
            io::ErrorKind::PermissionDenied => 126,
            _ => 1,
        };
        let message = match crate::capacity::explain(&err) {
            Some(why) => format!("{what}: {err}: {why}"),
            None => format!("{what}: {err}"),
        };
        SpawnError { message, code }
    }
}

/// The read ends of a service's stdout and stderr pipes, for `output`.
pub struct Pipes {
    /// `None` when the service's stdout is given (`Launch::stdout`: an
    /// s6-rc producer writes into its pipeline, not to corral's output).
    pub stdout: Option<OwnedFd>,
    pub stderr: OwnedFd,
}

/// What to start in a service's context: its own command, or its reload
/// hook or exec probe (same env, cwd and user).
pub struct Launch<'a> {
    pub argv: &'a [String],
    pub output: Output,
    /// Added after the container env, `env-file` and `env`.
    pub env: Vec<(String, String)>,
    /// s6 notification-fd: this pipe's write end becomes fd N in the child.
    pub fd: Option<(OwnedFd, i32)>,
    /// fd 0 instead of `/dev/null`: an s6-rc consumer's end of its pipeline.
    pub stdin: Option<OwnedFd>,
    /// fd 1 instead of what `output` says: an s6-rc producer's end of its
    /// pipeline (stderr still follows `output`).
    pub stdout: Option<OwnedFd>,
}

impl<'a> Launch<'a> {
    /// The service itself, as its spec says.
    pub fn service(spec: &'a ServiceSpec) -> Launch<'a> {
        Launch {
            argv: &spec.command,
            // `null` with a log file or `log-line` readiness: read, for
            // the file and the match only.
            output: match spec.output {
                Output::Null if spec.reads_output() => Output::Prefix,
                output => output,
            },
            env: Vec::new(),
            fd: None,
            stdin: None,
            stdout: None,
        }
    }
}

/// Start `launch` in the context of `spec`. With `output = "prefix"`, also
/// returns the read ends of its stdout (unless `launch.stdout` is given)
/// and stderr. The child is started by `spawn` (a clone sharing memory that
/// copies only the fds it needs); what it does before its exec, in order:
/// its fds, its working directory, `limits` (before the switch of user,
/// which drops the capability that raising one needs), groups, gid, uid,
/// a session of its own, every signal at its default.
pub fn spawn_service(
    spec: &ServiceSpec,
    launch: Launch<'_>,
) -> Result<(Pid, Option<Pipes>), SpawnError> {
    let result = start_service(spec, launch).and_then(Starting::finish);
    spawn::release();
    result
}

/// A process `start_service` started: running, perhaps not yet exec'd.
pub struct Starting {
    started: spawn::Started,
    pipes: Option<Pipes>,
    program: String,
    /// The service's limits, to name the one a child could not set.
    limits: Vec<(nix::sys::resource::Resource, libc::rlim_t)>,
}

impl Starting {
    /// Wait until it has exec'd: its pid and output pipes, or why it
    /// failed (the exit status a shell would give).
    pub fn finish(self) -> Result<(Pid, Option<Pipes>), SpawnError> {
        let Starting {
            started,
            pipes,
            program,
            limits,
        } = self;
        match started.finish() {
            Ok(pid) => Ok((pid, pipes)),
            Err(failed) => Err(spawn_error(&program, &limits, failed)),
        }
    }
}

/// What a failed child's step and errno mean to the user.
fn spawn_error(
    program: &str,
    limits: &[(nix::sys::resource::Resource, libc::rlim_t)],
    failed: spawn::Failed,
) -> SpawnError {
    // Which limit the child could not set, if that was the step.
    let refused = (failed.step == spawn::Step::Limit)
        .then(|| {
            limits.iter().find_map(|&(resource, value)| {
                let why = config::check_limit(resource, value).err()?;
                Some(format!(
                    "`limits.{}` {why}",
                    config::show_limit(resource, value)
                ))
            })
        })
        .flatten();
    refused.map_or_else(
        || SpawnError::from_io(program, failed.error),
        SpawnError::new,
    )
}

/// `spawn_service` without the wait for the exec: the slots hold the
/// child's fds until the next start or `spawn::release`.
pub fn start_service(spec: &ServiceSpec, launch: Launch<'_>) -> Result<Starting, SpawnError> {
    let Some(program) = launch.argv.first() else {
        return Err(SpawnError::new("empty command".into()));
    };
    // corral's environment, then the env-file, `env`, the launch's own:
    // the last of a name wins.
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    if let Some(path) = &spec.env_file {
        let vars = read_env_file(path, &spec.credentials).map_err(SpawnError::new)?;
        env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
    env.extend(spec.env.iter().map(|(k, v)| (k.into(), v.into())));
    env.extend(launch.env.into_iter().map(|(k, v)| (k.into(), v.into())));
    let env = last_of_each(env);
    // The pipe ends the child gets are held here until the spawn is done,
    // and closed after it: only the child keeps them.
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut hold = |fd: OwnedFd| {
        let raw = fd.as_raw_fd();
        held.push(fd);
        spawn::Stdio::Fd(raw)
    };
    let stdin = match launch.stdin {
        Some(fd) => hold(fd),
        None => spawn::Stdio::Null,
    };
    let mut pipes = None;
    let (mut stdout, stderr) = match launch.output {
        Output::Inherit => (spawn::Stdio::Inherit, spawn::Stdio::Inherit),
        Output::Null => (spawn::Stdio::Null, spawn::Stdio::Null),
        Output::Prefix => {
            let (stdout, out) = if launch.stdout.is_some() {
                (None, spawn::Stdio::Inherit)
            } else {
                let (out_r, out_w) = pipe().map_err(|e| SpawnError::from_io("pipe", e))?;
                (Some(out_r), hold(out_w))
            };
            let (err_r, err_w) = pipe().map_err(|e| SpawnError::from_io("pipe", e))?;
            pipes = Some(Pipes {
                stdout,
                stderr: err_r,
            });
            (out, hold(err_w))
        }
    };
    if let Some(fd) = launch.stdout {
        stdout = hold(fd);
    }
    let extra = launch.fd.map(|(fd, n)| match hold(fd) {
        spawn::Stdio::Fd(raw) => (raw, n),
        _ => (-1, n),
    });
    let creds = &spec.credentials;
    let exec = spawn::Exec {
        program: program.clone(),
        argv: launch.argv.to_vec(),
        env,
        cwd: Some(spec.working_dir.clone()),
        stdio: [stdin, stdout, stderr],
        extra,
        limits: spec.limits.clone(),
        nofile: crate::capacity::child_nofile().filter(|_| {
            !spec
                .limits
                .iter()
                .any(|&(resource, _)| resource == nix::sys::resource::Resource::RLIMIT_NOFILE)
        }),
        groups: creds.groups.iter().map(|g| g.as_raw()).collect(),
        gid: creds.gid.map(|g| g.as_raw()),
        uid: creds.uid.map(|u| u.as_raw()),
    };
    let started = spawn::start(&exec);
    drop(held);
    match started {
        Ok(started) => Ok(Starting {
            started,
            pipes,
            program: program.clone(),
            limits: spec.limits.clone(),
        }),
        Err(failed) => Err(spawn_error(program, &spec.limits, failed)),
    }
}

/// `vars` by name, each name once, with its last value.
fn last_of_each(mut vars: Vec<(OsString, OsString)>) -> Vec<(OsString, OsString)> {
    crate::sort::sort_by(&mut vars, |a, b| a.0.cmp(&b.0));
    let mut unique: Vec<(OsString, OsString)> = Vec::with_capacity(vars.len());
    for var in vars {
        match unique.last_mut() {
            // Stable: a later one of the same name came later in `vars`.
            Some(last) if last.0 == var.0 => *last = var,
            _ => unique.push(var),
        }
    }
    unique
}

/// Start the main COMMAND: corral's stdio, its own process group, and the
/// terminal's foreground when stdin is a terminal (so `corral -- bash` works).
pub fn spawn_main(argv: &[String]) -> Result<Pid, SpawnError> {
    let (program, args) = match argv.split_first() {
        Some(split) => split,
        None => return Err(SpawnError::new("empty command".into())),
    };
    let mut cmd = Command::new(program);
    cmd.args(args).process_group(0);
    let tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let nofile = crate::capacity::child_nofile();
    // SAFETY: only async-signal-safe calls (signal, tcsetpgrp, getpid,
    // setrlimit, rt_sigaction) in the child. SIGTTOU is ignored around tcsetpgrp
    // because a background process group changing the foreground would
    // otherwise be stopped (tcsetpgrp(3)); every default is restored before
    // exec.
    unsafe {
        cmd.pre_exec(move || {
            if tty {
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                // Not our controlling terminal (ENOTTY): run without it.
                let _ = libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
            }
            spawn::restore_nofile(nofile);
            spawn::reset_signals();
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| SpawnError::from_io(program, e))?;
    Ok(pid_of(&child))
}

/// Start an init or finish script with corral's environment and stdio.
pub fn spawn_script(path: &Path) -> Result<Pid, SpawnError> {
    let mut cmd = Command::new(path);
    cmd.stdin(Stdio::null()).process_group(0);
    let nofile = crate::capacity::child_nofile();
    // SAFETY: only setrlimit, rt_sigaction and rt_sigprocmask in the child.
    unsafe {
        cmd.pre_exec(move || {
            spawn::restore_nofile(nofile);
            spawn::reset_signals();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| SpawnError::from_io(&path.display().to_string(), e))?;
    Ok(pid_of(&child))
}

fn pid_of(child: &std::process::Child) -> Pid {
    // A pid always fits: Linux pids are at most 2^22.
    Pid::from_raw(child.id() as i32)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    // O_CLOEXEC: only the child's dup2'ed stdout/stderr survive the exec.
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Send `signal` to `pid`, or its process group. A process that is already
/// gone (ESRCH) is not an error: its exit is on its way to the reaper.
pub fn signal(pid: Pid, signal: Signal, group: bool) -> Result<(), Errno> {
    let result = if group {
        killpg(pid, signal)
    } else {
        kill(pid, signal)
    };
    match result {
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Send `signal` to every process corral may have left: as PID 1 every
/// process in the namespace (`kill(-1)` skips PID 1 itself, kill(2)); as a
/// subreaper only its own descendants, never the rest of the machine (how
/// many, returned). As PID 1 no count is taken: scanning /proc would only
/// delay the exit (it comes right after, once nothing is left).
pub fn signal_all(signal: Signal, pid1: bool) -> Option<usize> {
    if pid1 {
        let _ = kill(Pid::from_raw(-1), signal);
        return None;
    }
    let descendants = descendants(Pid::this());
    for &pid in &descendants {
        let _ = kill(pid, signal);
    }
    Some(descendants.len())
}

/// Every descendant of `root`, from `/proc/*/stat`.
pub fn descendants(root: Pid) -> Vec<Pid> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![root.as_raw()];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            found.push(Pid::from_raw(child));
            stack.push(child);
        }
    }
    found
}

/// The ppid field of `/proc/PID/stat` (proc(5)): the 2nd field after the
/// command name, which is in parentheses and may itself contain spaces.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// The variables of `path`, read with the file-system permissions of the
/// service's user (`files::read_as`): `KEY=value` lines; blank lines and
/// `#` comments skipped, an optional `export ` prefix and matching
/// surrounding quotes removed.
///
/// An env-file may hold secrets, and its errors end up in corral's log and
/// in `ctl status`: they name the path and the line, never what is in it.
pub fn read_env_file(path: &Path, creds: &Credentials) -> Result<Vec<(String, String)>, String> {
    let bytes = files::read_as(path, creds).map_err(|e| format!("env-file {e}"))?;
    parse_env_file(&bytes)
        .map_err(|(line, msg)| format!("env-file {}:{line}: {msg}", path.display()))
}

fn parse_env_file(bytes: &[u8]) -> Result<Vec<(String, String)>, (usize, &'static str)> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let line = 1 + bytes
                .iter()
                .take(e.valid_up_to())
                .filter(|&&b| b == b'\n')
                .count();
            return Err((line, "not valid UTF-8"));
        }
    };
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((n + 1, "expected KEY=value"));
        };
        let key = key.trim();
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err((
                n + 1,
                "invalid variable name (use letters, digits and `_`, not starting with a digit)",
            ));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|&q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
            .unwrap_or(value);
        vars.push((key.to_string(), unquoted.to_string()));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files() {
        let text = b"# comment\n\nA=1\nexport B = \"two words\"\nC='x=y'\nD=\n";
        assert_eq!(
            parse_env_file(text).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into()),
                ("D".into(), "".into()),
            ]
        );
        // Nothing of the file in the message: it may be a secret.
        assert_eq!(
            parse_env_file(b"A=1\nnot a pair\n"),
            Err((2, "expected KEY=value"))
        );
        assert_eq!(
            parse_env_file(b"A=1\n1X=2"),
            Err((
                2,
                "invalid variable name (use letters, digits and `_`, not starting with a digit)"
            ))
        );
        assert_eq!(
            parse_env_file(b"A=1\nB=2\nC=\xff\n"),
            Err((3, "not valid UTF-8"))
        );
    }

    /// Everything `fd` gives until EOF (or 10 s, then what came so far).
    fn read_to_eof(fd: &OwnedFd) -> String {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) == 0 {
                continue;
            }
            let mut buf = [0u8; 256];
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    /// A child this test started and that has exited (its pipes said so).
    fn reap(pid: Pid) {
        let _ = nix::sys::wait::waitpid(pid, None);
    }

    #[test]
    fn a_given_stdout_replaces_the_prefixed_one_and_stderr_stays_prefixed() {
        let spec = ServiceSpec::new("producer", sh("echo to-the-pipe; echo to-stderr >&2"));
        let (read, write) = pipe().expect("pipe");
        let launch = Launch {
            stdout: Some(write),
            ..Launch::service(&spec)
        };
        let (pid, pipes) = spawn_service(&spec, launch).expect("spawn");
        let pipes = pipes.expect("output = prefix: stderr is read by corral");
        assert!(pipes.stdout.is_none(), "stdout is the given fd, not read");
        // corral's copy was closed by the spawn: EOF comes with the exit.
        assert_eq!(read_to_eof(&read), "to-the-pipe\n");
        assert_eq!(read_to_eof(&pipes.stderr), "to-stderr\n");
        reap(pid);
    }

    #[test]
    fn each_variable_once_with_its_last_value() {
        let vars = |list: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
            list.iter().map(|&(k, v)| (k.into(), v.into())).collect()
        };
        assert_eq!(
            last_of_each(vars(&[
                ("PATH", "/bin"),
                ("B", "1"),
                ("A", "x"),
                ("PATH", "/sbin"),
                ("B", "2")
            ])),
            vars(&[("A", "x"), ("B", "2"), ("PATH", "/sbin")])
        );
    }

    /// The error of a spawn that must fail.
    fn fails(spec: &ServiceSpec, why: &str) -> SpawnError {
        match spawn_service(spec, Launch::service(spec)) {
            Ok((pid, _)) => {
                reap(pid);
                panic!("spawned although {why}")
            }
            Err(err) => err,
        }
    }

    #[test]
    fn the_child_keeps_only_its_own_fds_however_many_corral_holds() {
        // 100 pipes open here, half of their write ends inheritable: none
        // reaches the child. corral reserves its slots first thing, so only
        // its own 0, 1 and 2 are below them; this test process may hold
        // other tests' fds there, which are left out of the check.
        crate::spawn::reserve().expect("slots");
        let keep_below = crate::spawn::keep_below().expect("reserved");
        let mut open = Vec::new();
        for i in 0..100 {
            let (r, w) = pipe().expect("pipe");
            if i % 2 == 0 {
                // SAFETY: fcntl on an fd this test holds.
                unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFD, 0) };
            }
            open.push((r, w));
        }
        let spec = ServiceSpec::new("fds", sh("ls /proc/self/fd"));
        let (notify_r, notify_w) = pipe().expect("pipe");
        let launch = Launch {
            fd: Some((notify_w, 900)),
            ..Launch::service(&spec)
        };
        let (pid, pipes) = spawn_service(&spec, launch).expect("spawn");
        let stdout = pipes.expect("prefixed").stdout.expect("read by corral");
        let fds: Vec<i32> = read_to_eof(&stdout)
            .split_whitespace()
            .filter_map(|fd| fd.parse().ok())
            .collect();
        reap(pid);
        // 0, 1, 2, the notification fd, and ls's own directory fd (the
        // lowest free one), besides what was below the slots.
        let above: Vec<i32> = fds.iter().copied().filter(|&fd| fd >= keep_below).collect();
        assert!(fds.contains(&900), "{fds:?}");
        assert!(
            above.len() <= 2,
            "fds {above:?} above the slots (< {keep_below}) reached the child"
        );
        for (r, w) in &open {
            for fd in [r.as_raw_fd(), w.as_raw_fd()] {
                assert!(
                    fd < keep_below || !fds.contains(&fd),
                    "fd {fd} reached the child: {fds:?}"
                );
            }
        }
        drop(notify_r);
    }

    #[test]
    fn a_notification_fd_at_a_slots_number_and_stdio_all_arrive() {
        // Whatever number the slots have, fd N gets the notify pipe (dash
        // names fds 0 to 9 only).
        for n in 3..10 {
            let spec = ServiceSpec::new(
                "n",
                sh(&format!("echo out; echo err >&2; echo ready >&{n}")),
            );
            let (notify_r, notify_w) = pipe().expect("pipe");
            let launch = Launch {
                fd: Some((notify_w, n)),
                ..Launch::service(&spec)
            };
            let (pid, pipes) = spawn_service(&spec, launch).expect("spawn");
            let pipes = pipes.expect("prefixed");
            assert_eq!(read_to_eof(&notify_r), "ready\n", "fd {n}");
            assert_eq!(read_to_eof(pipes.stdout.as_ref().expect("stdout")), "out\n");
            assert_eq!(read_to_eof(&pipes.stderr), "err\n");
            reap(pid);
        }
    }

    #[test]
    fn a_command_is_searched_in_the_services_path_and_a_script_without_hashbang_runs_with_sh() {
        let dir = std::env::temp_dir().join(format!("corral-spawn-{}", std::process::id()));
        let (denied, found) = (dir.join("a"), dir.join("b"));
        fs::create_dir_all(&denied).expect("dir");
        fs::create_dir_all(&found).expect("dir");
        // Not executable in the first directory, a plain sh script in the second.
        fs::write(denied.join("hello"), "echo no\n").expect("write");
        fs::write(found.join("hello"), "echo hello from \"$0\" $1\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(found.join("hello"), fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut spec = ServiceSpec::new("path", vec!["hello".into(), "arg".into()]);
        spec.env = vec![(
            "PATH".into(),
            format!("{}:{}", denied.display(), found.display()),
        )];
        let (pid, pipes) = spawn_service(&spec, Launch::service(&spec)).expect("spawn");
        let out = read_to_eof(pipes.expect("prefixed").stdout.as_ref().expect("stdout"));
        assert_eq!(
            out,
            format!("hello from {} arg\n", found.join("hello").display())
        );
        reap(pid);
        // Only the one without the execute bit: 126, named.
        spec.env = vec![("PATH".into(), denied.display().to_string())];
        let err = fails(&spec, "not executable");
        assert_eq!(err.code, 126, "{}", err.message);
        assert!(err.message.starts_with("hello: "), "{}", err.message);
        // Nowhere: 127.
        spec.env = vec![("PATH".into(), "/nonexistent".into())];
        let err = fails(&spec, "not found");
        assert_eq!(err.code, 127, "{}", err.message);
        // A working directory that is not there fails the spawn too.
        let mut spec = ServiceSpec::new("cwd", sh("true"));
        spec.working_dir = dir.join("missing");
        let err = fails(&spec, "no cwd");
        assert!(err.message.contains("No such file"), "{}", err.message);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_given_stdin_is_fd_0_and_output_is_prefixed_as_usual() {
        let spec = ServiceSpec::new("consumer", sh("read line; echo \"got $line\""));
        let (read, write) = pipe().expect("pipe");
        let launch = Launch {
            stdin: Some(read),
            ..Launch::service(&spec)
        };
        let (pid, pipes) = spawn_service(&spec, launch).expect("spawn");
        let pipes = pipes.expect("output = prefix");
        assert_eq!(nix::unistd::write(&write, b"hello\n"), Ok(6));
        let stdout = pipes.stdout.as_ref().expect("stdout read by corral");
        assert_eq!(read_to_eof(stdout), "got hello\n");
        reap(pid);
    }

    #[test]
    fn limits_are_set_soft_and_hard_in_the_child() {
        use nix::sys::resource::Resource;
        let mut spec = ServiceSpec::new(
            "web",
            sh("grep -E 'open files|core file' /proc/self/limits"),
        );
        spec.limits = vec![(Resource::RLIMIT_NOFILE, 100), (Resource::RLIMIT_CORE, 0)];
        let (pid, pipes) = spawn_service(&spec, Launch::service(&spec)).expect("spawn");
        let pipes = pipes.expect("output = prefix");
        let out = read_to_eof(pipes.stdout.as_ref().expect("stdout"));
        reap(pid);
        let fields: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().rev().skip(1).take(2).collect())
            .collect();
        // "Max core file size  0  0  bytes", "Max open files  100  100  files".
        assert_eq!(fields, vec![vec!["0", "0"], vec!["100", "100"]], "{out}");
    }

    #[test]
    fn a_limit_the_child_cannot_set_fails_the_spawn_and_names_it() {
        use nix::sys::resource::Resource;
        let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open")
            .expect("nr_open")
            .trim()
            .parse()
            .expect("a number");
        let mut spec = ServiceSpec::new("web", sh("true"));
        spec.limits = vec![(Resource::RLIMIT_NOFILE, nr_open + 1)];
        let Err(err) = spawn_service(&spec, Launch::service(&spec)) else {
            panic!("a nofile above fs.nr_open was set");
        };
        assert_eq!(
            err.message,
            format!(
                "`limits.nofile = {}` is above fs.nr_open ({nr_open}), the most open files the kernel allows",
                nr_open + 1
            )
        );
    }

    #[test]
    fn parent_of_reads_the_ppid_of_a_live_process() {
        let me = std::process::id() as i32;
        assert_eq!(parent_of(me), Some(nix::unistd::getppid().as_raw()));
    }
}
