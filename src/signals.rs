//! The signal thread: turns every signal corral handles into an `Input` for the loop.
//!
//! Handlers are installed (signal-hook, a self-pipe) before the first spawn,
//! so no SIGCHLD and no SIGTERM can be lost. SIGCHLD is never set to SIG_IGN:
//! that would make the kernel reap children itself and `waitpid` lose them.
//! Children start with default dispositions and an empty mask: corral
//! clears what it inherited (`reset_inherited`), exec resets caught signals
//! to their default, and std resets SIGPIPE (which it ignores in corral) and
//! the mask in the child.

use std::io;
use std::thread;

use crossbeam_channel::Sender;
use nix::sys::signal::Signal;
use signal_hook::consts::signal::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH,
};
use signal_hook::iterator::Signals;

use crate::event::Input;

pub const HANDLED: [i32; 8] = [
    SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD,
];

/// Undo what corral's parent left it: blocked signals (a blocked SIGTERM
/// would never reach corral, so `docker stop` would end in SIGKILL) and
/// ignored ones (which every service would inherit: a shell started in the
/// background ignores SIGINT and SIGQUIT, and `stop-signal = "INT"` would
/// never stop anything). SIGPIPE stays as std set it: corral wants EPIPE,
/// and std gives children the default. Call before any thread starts.
/// Returns the signals whose disposition was reset.
pub fn reset_inherited() -> Vec<i32> {
    let mut reset = Vec::new();
    // SAFETY: sigprocmask/sigaction with valid pointers, on this thread
    // before any other exists.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..=libc::SIGRTMAX() {
            if matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGPIPE) {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue; // glibc's reserved real-time signals
            }
            if old.sa_sigaction == libc::SIG_IGN {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                if libc::sigaction(sig, &default, std::ptr::null_mut()) == 0 {
                    reset.push(sig);
                }
            }
        }
    }
    reset
}

/// Install the handlers now; deliver the signals as events from a thread.
pub fn start(events: Sender<Input>) -> io::Result<()> {
    let mut signals = Signals::new(HANDLED)?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for raw in signals.forever() {
                let Ok(signal) = Signal::try_from(raw) else {
                    continue;
                };
                if events.send(Input::Signal(signal)).is_err() {
                    // The supervisor is gone: corral is exiting.
                    break;
                }
            }
        })?;
    Ok(())
}
