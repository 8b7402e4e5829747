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
use tracing::error;

use crate::exit::Exit;

#[derive(Debug, Default)]
pub struct Reaped {
    pub exits: Vec<(Pid, Exit)>,
    /// ECHILD: corral has no child at all any more.
    pub none_left: bool,
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
