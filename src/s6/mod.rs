//! s6-overlay's `with-contenv` and `s6-svc` (SPEC section 4), for scripts
//! written for s6-overlay: corral runs as either when invoked through a link
//! of that name (`/usr/bin/with-contenv`, `/command/s6-svc`), or as
//! `corral with-contenv ...` / `corral s6-svc ...`.
//!
//! What it owns: the two command lines and their exit codes (s6's: 100
//! usage, 111 system failure, 99 timeout, 102 not a supervised service);
//! s6-envdir's reading of `/run/s6/container_environment`; and the
//! translation of s6-svc commands into control requests, sent over the same
//! socket as `corral ctl` (`CORRAL_SOCKET`, or the default paths); and
//! the `S6_*` variables corral's own startup honours (`S6Env`).
//!
//! What it must never do: write a file outside the runtime dir `stage.rs`
//! owns (`/run/s6`), or know more of the supervisor than the control
//! protocol.
//!
//! The parts: `contenv.rs`, with-contenv and s6-envdir's reading;
//! `svc.rs`, s6-svc's command line; `link.rs`, its commands carried out
//! over the control socket; `env.rs`, the `S6_*` variables corral's own
//! startup honours (grace times, `S6_BEHAVIOUR_IF_STAGE2_FAILS`...);
//! `stage.rs`, what v3's stage 2 leaves in `/run/s6` for scripts (the
//! container environment, `basedir/bin`).

mod contenv;
mod env;
mod link;
pub mod stage;
mod svc;

pub use contenv::{CONTAINER_ENV_DIRS, read_envdir, with_contenv};
pub use env::{DEFAULT_SHUTDOWN_TIMEOUT, HONOURED, NO_EFFECT, S6_GRACETIME_DEFAULT, S6Env};
pub use svc::svc;

/// s6's exit codes (s6-svc(8), s6-svlisten1(8)), which scripts may test.
const EXIT_TIMED_OUT: u8 = 99;
const EXIT_USAGE: u8 = 100;
const EXIT_NO_SERVICE: u8 = 102;
const EXIT_SYSTEM: u8 = 111;
/// A program that cannot be run, as the shell reports it.
const EXIT_NOT_FOUND: u8 = 127;
const EXIT_CANNOT_RUN: u8 = 126;
