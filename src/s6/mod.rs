//! s6-overlay's commands (SPEC sections 4 and 9), for scripts written for
//! s6-overlay: corral runs as any of them when invoked through a link of
//! that name (`/usr/bin/with-contenv`, `/command/s6-svc`,
//! `/run/s6/basedir/bin/halt`), or as `corral NAME ...`; `corral s6-links
//! DIR` installs the links.
//!
//! What it owns: the command lines and their exit codes (s6's: 100 usage,
//! 111 system failure, 99 timeout, 102 not a supervised service or one
//! that will not come up); s6-envdir's reading of envdirs and of
//! `/run/s6/container_environment`; the translation of the commands that
//! talk to a supervisor into control requests, sent over the same socket
//! as `corral ctl` (`CORRAL_SOCKET`, or the default paths), with the same
//! refusal of a server that is neither root nor the caller; and the `S6_*`
//! variables corral's own startup honours (`S6Env`).
//!
//! What it must never do: write a file outside the runtime dir `stage.rs`
//! owns (`/run/s6`) and the links `s6-links` was asked for, or know more
//! of the supervisor than the control protocol.
//!
//! The parts: `contenv.rs`, with-contenv and s6-envdir's reading;
//! `envdir.rs`, s6-envdir and printcontenv; `svc.rs`, s6-svc's command
//! line; `link.rs`, requests over the control socket (and s6-svc's
//! commands); `svwait.rs`, `status.rs` (s6-svstat, s6-svok), `rc.rs`
//! (s6-rc, halt): the other supervisor-facing commands; `setuidgid.rs`
//! and `notifyoncheck.rs`, standalone; `getopt.rs`, s6's option scanning;
//! `exec.rs`, what the commands that exec a program share (an envdir's
//! variables applied, the exec and its exit codes); `links.rs`, the
//! commands by name and their installation; `env.rs`, the `S6_*`
//! variables corral's own startup honours (grace times,
//! `S6_BEHAVIOUR_IF_STAGE2_FAILS`...); `stage.rs`, what v3's stage 2
//! leaves in `/run/s6` for scripts (the container environment,
//! `basedir/bin`).

mod contenv;
mod env;
mod envdir;
mod exec;
mod getopt;
mod link;
mod links;
mod notifyoncheck;
mod rc;
mod setuidgid;
pub mod stage;
mod status;
mod svc;
mod svwait;

pub use contenv::{CONTAINER_ENV_DIRS, read_envdir, with_contenv};
pub use env::{DEFAULT_SHUTDOWN_TIMEOUT, HONOURED, NO_EFFECT, S6_GRACETIME_DEFAULT, S6Env};
pub use envdir::{envdir, printcontenv};
pub use links::{COMMANDS, Command, command, install_links};
pub use notifyoncheck::notifyoncheck;
pub use rc::{halt, rc};
pub use setuidgid::setuidgid;
pub use status::{svok, svstat};
pub use svc::svc;
pub use svwait::svwait;

/// s6's exit codes (s6-svc(8), s6-svlisten1(8)), which scripts may test.
const EXIT_TIMED_OUT: u8 = 99;
const EXIT_USAGE: u8 = 100;
const EXIT_NO_SERVICE: u8 = 102;
const EXIT_SYSTEM: u8 = 111;
/// A program that cannot be run, as the shell reports it.
const EXIT_NOT_FOUND: u8 = 127;
const EXIT_CANNOT_RUN: u8 = 126;

/// A test's words as a command's arguments (without the program name).
#[cfg(test)]
fn args(words: &[&str]) -> Vec<std::ffi::OsString> {
    words.iter().map(std::ffi::OsString::from).collect()
}
