//! The only `waitpid` in corral.
//!
//! SIGCHLD coalesces (signal(7): standard signals do not queue), so one
//! delivery may stand for many exits: every call drains `waitpid(-1, WNOHANG)`
//! until nothing more is ready. Services, the main COMMAND, scripts and
//! orphans re-parented to corral are all reaped here, on the supervisor
//! thread, which is also the thread that spawns.

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::exit::Exit;
use crate::log::error;

#[derive(Debug, Default)]
pub struct Reaped {
    pub exits: Vec<(Pid, Exit)>,
    /// ECHILD: corral has no child at all any more.
    pub none_left: bool,
}

/// Runs `argv` to its end, before the loop and its threads exist (s6-overlay's
/// `S6_STAGE2_HOOK`, which must finish before the definitions are read):
/// spawned like any child (`process::spawn_plain`), waited for by its pid.
/// Only here, because nothing else has been started yet, can a wait for one
/// pid not take an exit from the loop's reaper. Orphans it leaves are
/// reaped by the loop later.
pub fn run_before_loop(argv: &[String]) -> Result<Exit, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "empty command".to_string())?;
    let child = std::process::Command::new(program)
        .args(args)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {}", crate::text::strerror(&e)))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    loop {
        match waitpid(pid, None) {
            Ok(status) => {
                if let Some((_, exit)) = Exit::from_wait_status(status) {
                    return Ok(exit);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(format!("waiting for {program}: {err}")),
        }
    }
}

/// A child `spawn` started that failed before its exec: it has exited (the
/// spawn waited for that), only the spawn knows its pid, and the spawn runs
/// on this same thread, so this wait cannot take an exit from `reap`.
pub fn reap_failed_start(pid: Pid) {
    while let Err(Errno::EINTR) = waitpid(pid, None) {}
}

/// Block until `pid`, a child `spawn` killed before its exec, has exited,
/// leaving it to be reaped (`WNOWAIT`): its exit released the memory it
/// ran in. (The kernel's clear of its futex word says so too, but a child
/// killed while stopped before its exec was seen to leave the word set.)
pub fn wait_exited(pid: Pid) {
    loop {
        // SAFETY: waitid(2) with a zeroed siginfo it fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; P_PID with a pid of our own child.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid.as_raw() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || Errno::last() != Errno::EINTR {
            return;
        }
    }
}

pub fn reap() -> Reaped {
    let mut reaped = Reaped::default();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(status) => {
                if let Some(exit) = Exit::from_wait_status(status) {
                    reaped.exits.push(exit);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                reaped.none_left = true;
                break;
            }
            Err(err) => {
                error!(%err, "waitpid failed");
                break;
            }
        }
    }
    reaped
}
