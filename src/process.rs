//! Starting and signalling processes. The only place that builds a `Command`.
//!
//! Every child gets its own process group (`setpgid(0, 0)`), so a stop signal
//! reaches its whole tree; what runs in a service's context gets a session of
//! its own too (`setsid`, as s6-supervise does), whose group only its own
//! processes can join. Nothing here ever waits for a child: the `Child`
//! std returns is dropped at once and `reaper` alone calls `waitpid`
//! (std's own `waitpid` on an exec failure happens inside `spawn`, on the same
//! thread as the reaper, so the two cannot race).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::config::{Output, ServiceSpec};

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
        SpawnError {
            message: format!("{what}: {err}"),
            code,
        }
    }
}

/// The read ends of a service's stdout and stderr pipes, for `output`.
pub struct Pipes {
    pub stdout: OwnedFd,
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
}

impl<'a> Launch<'a> {
    /// The service itself, as its spec says.
    pub fn service(spec: &'a ServiceSpec) -> Launch<'a> {
        Launch {
            argv: &spec.command,
            output: spec.output,
            env: Vec::new(),
            fd: None,
        }
    }
}

/// Start `launch` in the context of `spec`. With `output = "prefix"`, also
/// returns the read ends of its stdout and stderr.
pub fn spawn_service(
    spec: &ServiceSpec,
    launch: Launch<'_>,
) -> Result<(Pid, Option<Pipes>), SpawnError> {
    let (program, args) = match launch.argv.split_first() {
        Some(split) => split,
        None => return Err(SpawnError::new("empty command".into())),
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null());
    if let Some(path) = &spec.env_file {
        let vars = read_env_file(path).map_err(SpawnError::new)?;
        cmd.envs(vars);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd.envs(launch.env);
    let mut pipes = None;
    match launch.output {
        Output::Inherit => {}
        Output::Null => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        Output::Prefix => {
            let (out_r, out_w) = pipe().map_err(|e| SpawnError::from_io("pipe", e))?;
            let (err_r, err_w) = pipe().map_err(|e| SpawnError::from_io("pipe", e))?;
            cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
            pipes = Some(Pipes {
                stdout: out_r,
                stderr: err_r,
            });
        }
    }
    let creds = &spec.credentials;
    let groups: Vec<libc::gid_t> = creds.groups.iter().map(|g| g.as_raw()).collect();
    let gid = creds.gid.map(|g| g.as_raw());
    let uid = creds.uid.map(|u| u.as_raw());
    // The notification fd's write end: kept open here until the spawn is
    // done, so its number is valid in the child.
    let notify_fd = launch.fd;
    let fd_map = notify_fd.as_ref().map(|(fd, n)| (fd.as_raw_fd(), *n));
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe syscalls on data prepared in the parent.
    // Groups first, then gid, then uid: after setuid we could not.
    unsafe {
        cmd.pre_exec(move || {
            // A new session, and in it a new process group whose id is the
            // child's pid. Not just `setpgid(0, 0)`: any process of the same
            // session may join a group of it (setpgid(2) asks for no
            // privilege), and a process in a service's group counts as the
            // service's when it sends readiness messages (`notify`).
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some((from, to)) = fd_map {
                if from == to {
                    // dup2 onto itself keeps O_CLOEXEC: clear it instead.
                    if libc::fcntl(from, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if !groups.is_empty() && libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(gid) = gid
                && libc::setgid(gid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if let Some(uid) = uid
                && libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| SpawnError::from_io(program, e))?;
    drop(notify_fd);
    // Dropping the Child neither waits nor kills: the reaper owns the exit.
    Ok((pid_of(&child), pipes))
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
    if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        // SAFETY: only async-signal-safe calls (signal, tcsetpgrp, getpid) in
        // the child. SIGTTOU is ignored around tcsetpgrp because a background
        // process group changing the foreground would otherwise be stopped
        // (tcsetpgrp(3)); the default is restored before exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                // Not our controlling terminal (ENOTTY): run without it.
                let _ = libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                Ok(())
            });
        }
    }
    let child = cmd.spawn().map_err(|e| SpawnError::from_io(program, e))?;
    Ok(pid_of(&child))
}

/// Start an init or finish script with corral's environment and stdio.
pub fn spawn_script(path: &Path) -> Result<Pid, SpawnError> {
    let child = Command::new(path)
        .stdin(Stdio::null())
        .process_group(0)
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

/// `KEY=value` lines; blank lines and `#` comments skipped, an optional
/// `export ` prefix and matching surrounding quotes removed.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("env-file {}: {e}", path.display()))?;
    parse_env_file(&text).map_err(|(line, msg)| format!("{}:{line}: {msg}", path.display()))
}

fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((n + 1, format!("expected KEY=value, found {line:?}")));
        };
        let key = key.trim();
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err((n + 1, format!("invalid variable name {key:?}")));
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
        let text = "# comment\n\nA=1\nexport B = \"two words\"\nC='x=y'\nD=\n";
        assert_eq!(
            parse_env_file(text).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into()),
                ("D".into(), "".into()),
            ]
        );
        assert_eq!(
            parse_env_file("A=1\nnot a pair\n"),
            Err((2, "expected KEY=value, found \"not a pair\"".into()))
        );
        assert_eq!(
            parse_env_file("1X=2"),
            Err((1, "invalid variable name \"1X\"".into()))
        );
    }

    #[test]
    fn parent_of_reads_the_ppid_of_a_live_process() {
        let me = std::process::id() as i32;
        assert_eq!(parent_of(me), Some(nix::unistd::getppid().as_raw()));
    }
}
