//! The command lines (SPEC section 1), built by hand from `args` scans:
//! the supervisor's and `check`'s (`supervisor.rs`), `corral ctl`'s
//! (`ctl.rs`), with their `CORRAL_*` environment variables; and the
//! directories they name, with their defaults and script lists (`dirs.rs`).
//! Help and version are a `Stop::Print`, errors a `Stop::Usage`.
//!
//! What it must never do: act on what it parsed (the modes in `main`,
//! `control::client` and `check` do), or know anything of the supervisor
//! beyond its settings.

mod ctl;
mod dirs;
mod supervisor;

use std::ffi::OsString;

pub use ctl::{CtlCli, CtlCommand, Names};
pub use dirs::{Dirs, collect_scripts};
pub use supervisor::{CheckCli, Cli};

/// The arguments after the program name (`args[0]`).
fn rest(args: &[OsString]) -> &[OsString] {
    args.get(1..).unwrap_or_default()
}
