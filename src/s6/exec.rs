//! What the commands that end in exec(3) of a program share (with-contenv,
//! s6-envdir, s6-setuidgid, s6-notifyoncheck): the envdir's variables set
//! or removed, the exec, and the shell's exit codes when it fails.
//!
//! What it must never do: return once the program runs (exec replaces
//! this process), or print anything but the one line that says why not.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::{EXIT_CANNOT_RUN, EXIT_NOT_FOUND};
use crate::text::strerror;

/// An envdir's variables (`read_envdir`'s) in `cmd`'s environment: `Some`
/// sets the variable, `None` removes it.
pub(super) fn apply_vars(cmd: &mut Command, vars: Vec<(OsString, Option<OsString>)>) {
    for (name, value) in vars {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
}

/// exec(3) `cmd`; returns only when `prog` cannot be run, after the line
/// `{prefix}{prog}: {strerror}` on stderr: 127 when there is no such
/// program, 126 otherwise (as a shell reports it). std resets the signal
/// mask and SIGPIPE to their defaults first, so the program starts as it
/// would from a shell.
pub(super) fn exec(cmd: &mut Command, prog: &OsStr, prefix: &str) -> u8 {
    let err = cmd.exec();
    // strerror(3) text, without std's " (os error N)".
    eprintln!("{prefix}{}: {}", prog.to_string_lossy(), strerror(&err));
    if err.kind() == io::ErrorKind::NotFound {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_RUN
    }
}
