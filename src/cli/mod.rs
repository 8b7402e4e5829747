//! The command lines (SPEC section 1), built by hand from `args` scans:
//! the supervisor's and `check`'s (`supervisor.rs`), `corral ctl`'s
//! (`ctl.rs`), with their `CORRAL_*` environment variables; and the
//! directories they name, with their defaults and script lists (`dirs.rs`).
//! The tables are public: `completions` makes the completion scripts and
//! the man page from them. Help and version are a `Stop::Print`, errors a `Stop::Usage`.
//!
//! What it must never do: act on what it parsed (the modes in `main`,
//! `control::client` and `check` do), or know anything of the supervisor
//! beyond its settings.

mod ctl;
mod dirs;
mod supervisor;

use std::ffi::OsString;

pub use ctl::{CTL_COMMANDS, CtlCli, CtlCommand, CtlDef, Names};
pub use dirs::{Dirs, collect_scripts};
pub use supervisor::{
    CHECK_OPTS, CheckCli, Cli, FORMATS, LOG_LEVELS, SUPERVISOR_OPTS, check_help, supervisor_help,
};

/// The arguments after the program name (`args[0]`).
fn rest(args: &[OsString]) -> &[OsString] {
    args.get(1..).unwrap_or_default()
}
