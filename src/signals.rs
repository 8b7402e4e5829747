//! The signal thread: turns every signal corral handles into an `Input` for the loop.
//!
//! Handlers are installed (signal-hook, a self-pipe) before the first spawn,
//! so no SIGCHLD and no SIGTERM can be lost. SIGCHLD is never set to SIG_IGN:
//! that would make the kernel reap children itself and `waitpid` lose them.
//! Children start with default dispositions: exec resets caught signals, and
//! std resets the signal mask in the child.

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
