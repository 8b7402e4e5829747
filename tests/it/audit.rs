//! The process-hygiene audit of docs/audit.md, checked on a running corral:
//! what its children inherit (signals, fds), that its own fds are all
//! close-on-exec, and that running out of fds or processes (EMFILE, EAGAIN
//! from fork) costs a restart attempt, never corral.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use nix::sys::signal::Signal;

/// `NAME` writes its pid, then `what` (a shell command) into `$T/NAME.out`, then sleeps.
fn reporter(name: &str, what: &str) -> String {
    format!(
        r#"command = ["sh", "-c", "echo $$ >> \"$T/{name}.pids\"; {what} > \"$T/{name}.tmp\" && mv \"$T/{name}.tmp\" \"$T/{name}.out\"; exec sleep 100000"]
restart-delay = "100ms"
"#
    )
}

/// Set `pid`'s soft limit of `resource` (`--nofile`, `--nproc`) with
/// util-linux prlimit, run as `uid` (the owner may lower and restore its
/// own soft limits without CAP_SYS_RESOURCE).
fn set_soft_limit_as(uid: u32, pid: i32, resource: &str, soft: u64) {
    let status = as_uid(uid, "prlimit")
        .args(["--pid", &pid.to_string(), &format!("{resource}={soft}:")])
        .status()
        .expect("run setpriv and prlimit (util-linux)");
    assert!(status.success(), "prlimit {resource}={soft} on {pid}");
}

/// The numbers of the fds a process has open.
fn fd_numbers(pid: i32) -> Vec<u32> {
    open_fds(pid).into_iter().map(|(fd, _)| fd).collect()
}

/// A parent that ignores SIGINT, SIGQUIT, SIGUSR1 and SIGTSTP and blocks
/// SIGTERM (a shell's background job, a careless runtime) must pass none of
/// that on: services start with an empty mask and nothing ignored, and
/// corral itself still gets the SIGTERM of `docker stop`.
#[test]
fn services_start_with_an_empty_mask_and_no_ignored_signal() {
    let dir = TestDir::new("audit-signals");
    dir.service(
        "probe",
        &reporter("probe", "grep -E '^Sig(Blk|Ign)' /proc/self/status"),
    );
    let ignored = [libc::SIGINT, libc::SIGQUIT, libc::SIGUSR1, libc::SIGTSTP];
    let blocked = [libc::SIGTERM, libc::SIGHUP];
    let mut c = dir.corral().inherit_signals(&ignored, &blocked).start();
    let report = c.wait_file("probe.out");
    let (blocked, ignored) = signal_masks(&report);
    assert_eq!(blocked, 0, "a service inherited blocked signals");
    // Every signal at its default, glibc's internal 32 and 33 included
    // (this test binary starts corral with glibc's posix_spawn, which leaves
    // those two ignored in corral; corral resets them in each child).
    assert_eq!(
        ignored, 0,
        "a service inherited ignored signals: {report:?}"
    );
    // corral's own mask is clear too (the parent's block is undone).
    let status = fs::read_to_string(format!("/proc/{}/status", c.pid())).expect("status");
    assert!(
        status.contains("SigBlk:\t0000000000000000"),
        "corral kept a blocked signal:\n{status}"
    );
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait_exit(DEADLINE), 0, "{}", c.output_excerpt());
}

/// corral started with stdin and stdout closed: they are reopened on
/// /dev/null before anything else is opened, so the control socket (or a
/// pipe) never becomes "stdout", and corral ignores SIGPIPE (a write to a
/// closed pipe or socket is an error, not its death): std's runtime setup
/// does both before `main`.
#[test]
fn closed_stdio_is_reopened_on_dev_null_and_sigpipe_is_ignored() {
    let dir = TestDir::new("audit-stdio");
    dir.service("web", &reporter("web", "echo up"));
    let mut c = dir.corral().ctl_socket().closed_fds(&[0, 1]).start();
    c.wait_file("web.out");
    for fd in [0, 1] {
        let target = fs::read_link(format!("/proc/{}/fd/{fd}", c.pid())).expect("readlink");
        assert_eq!(target.to_str(), Some("/dev/null"), "fd {fd}");
    }
    let status = c.ctl(&["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("web"), "{}", status.stdout);
    let proc_status = fs::read_to_string(format!("/proc/{}/status", c.pid())).expect("status");
    let ignored = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .expect("SigIgn");
    assert_ne!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE not ignored"
    );
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait_exit(DEADLINE), 0, "{}", c.output_excerpt());
}

/// With every adapter open (control socket, HTTP, readiness socket, file
/// watch, output pipes), a service holds only its stdin, stdout and stderr,
/// and every fd of corral's own is close-on-exec.
#[test]
fn no_fd_leaks_into_services_and_every_fd_of_corral_is_cloexec() {
    let dir = TestDir::new("audit-fds");
    dir.write("watched.conf", "v1\n");
    dir.service("lister", "command = [\"sleep\", \"100000\"]\n");
    dir.service(
        "notifier",
        r#"command = ["sleep", "100000"]
ready = { notify = true }
ready-timeout = "1h"
"#,
    );
    dir.service(
        "watcher",
        &format!(
            "command = [\"sleep\", \"100000\"]\nwatch = [\"{}\"]\n",
            dir.join("watched.conf").display()
        ),
    );
    let port = free_port();
    let mut c = dir
        .corral()
        .ctl_socket()
        .args(["--http", &format!("127.0.0.1:{port}")])
        .start();
    let lister = c.wait_for("lister's pid", |c| {
        c.try_ctl_status()?
            .into_iter()
            .find(|s| s["name"] == "lister")
            .and_then(|s| s["pid"].as_i64())
            .map(|p| c.host_pid(p as i32).unwrap_or(p as i32))
            .ok_or("not started yet".into())
    });
    assert_eq!(
        fd_numbers(lister),
        [0, 1, 2],
        "a service inherited fds besides its stdio"
    );
    // Use the socket and the HTTP endpoint once, so their fds exist.
    assert_eq!(c.ctl(&["status"]).code, 0);
    let _ = http_get(port, "/healthz");

    let pid = c.pid();
    let mut checked = 0;
    for fd in fd_numbers(pid).into_iter().filter(|&fd| fd > 2) {
        let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue; // closed meanwhile
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap_or_else(|| panic!("no flags in fdinfo {fd}:\n{info}"));
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
        assert!(
            flags & libc::O_CLOEXEC as u32 != 0,
            "corral's fd {fd} ({}) is not close-on-exec",
            target.display()
        );
        checked += 1;
    }
    // Socket, HTTP listener, inotify, notify socket, output pipes, wake pipes...
    assert!(
        checked >= 6,
        "only {checked} fds checked: the test is not looking"
    );
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait_exit(DEADLINE), 0, "{}", c.output_excerpt());
}

/// Out of fds (EMFILE): the restart of a killed service fails (its output
/// pipes cannot be made), corral says why and retries; once fds are free
/// again the service is back, and the control socket answers.
#[test]
fn running_out_of_fds_costs_a_restart_attempt_not_corral() {
    let dir = TestDir::new("audit-emfile");
    dir.service("victim", &reporter("victim", "echo up"));
    let mut c = dir.corral().ctl_socket().start();
    let first = c.wait_pids("victim.pids", 1)[0];
    let pid = c.pid();
    let original = soft_limit(pid, "Max open files");
    // No new fd: the lowest free number is the limit.
    set_soft_limit_as(0, pid, "--nofile", lowest_free_fd(pid));
    send(first, Signal::SIGKILL);
    failed_twice(&mut c, "Too many open files");
    assert!(c.is_alive(), "corral died out of fds");
    assert_eq!(dir_pids(&c, "victim.pids").len(), 1, "started without fds?");

    set_soft_limit_as(0, pid, "--nofile", original);
    let pids = c.wait_pids("victim.pids", 2);
    assert!(running(pids[1]), "victim not back: {}", c.output_excerpt());
    assert_eq!(c.ctl(&["status"]).code, 0, "the socket does not answer");
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait_exit(DEADLINE), 0, "{}", c.output_excerpt());
}

/// Out of processes (fork fails with EAGAIN under RLIMIT_NPROC, which only
/// binds a non-root corral): the same.
#[test]
fn fork_failing_with_eagain_costs_a_restart_attempt_not_corral() {
    require_root("runs corral as another uid");
    let dir = TestDir::new("audit-eagain");
    dir.service("victim", &reporter("victim", "echo up"));
    // victim writes its pids into $T as uid 65534: open it, as /tmp
    // (sticky); corral's socket goes into a private directory below it (an
    // open one is no place for it, SPEC 12).
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).expect("chmod");
    let socket = dir.join("run/ctl.sock").display().to_string();
    let mut c = dir.corral().args(["--socket", &socket]).user(65534).start();
    let first = c.wait_pids("victim.pids", 1)[0];
    let pid = c.pid();
    let original = soft_limit(pid, "Max processes");
    // uid 65534 already has more processes than this: every fork fails.
    set_soft_limit_as(65534, pid, "--nproc", 1);
    send(first, Signal::SIGKILL);
    failed_twice(&mut c, "Resource temporarily unavailable");
    assert!(c.is_alive(), "corral died when fork failed");
    assert_eq!(
        dir_pids(&c, "victim.pids").len(),
        1,
        "forked over the limit?"
    );

    set_soft_limit_as(65534, pid, "--nproc", original);
    let pids = c.wait_pids("victim.pids", 2);
    assert!(running(pids[1]), "victim not back: {}", c.output_excerpt());
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait_exit(DEADLINE), 0, "{}", c.output_excerpt());
}

/// Two failed restart attempts of victim, each naming `error`: corral
/// reports it and keeps retrying.
fn failed_twice(c: &mut Corral, error: &str) {
    c.wait_for(
        &format!("two restart attempts failing with {error:?}"),
        |c| {
            let n = c
                .stderr()
                .lines()
                .filter(|l| l.contains("victim") && l.contains(error))
                .count();
            (n >= 2).then_some(()).ok_or(format!("{n} so far"))
        },
    );
}

fn dir_pids(c: &Corral, rel: &str) -> Vec<i32> {
    c.dir().pids(rel)
}
