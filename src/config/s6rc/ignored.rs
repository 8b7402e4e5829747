//! Which files of an s6-rc service directory corral reads, which it accepts
//! and does not act on (each with the reason `corral check` prints), and
//! which s6-rc itself would not read (likely typos: "did you mean").
//!
//! What it must never do: turn a file it does not act on into an error: a
//! tree written for s6-overlay must load.

/// What corral does with one file of a definition directory.
pub(super) enum Role {
    /// Read (or, like `data/`, meant for the service itself).
    Read,
    /// Accepted, not acted on: the reason.
    Ignored(&'static str),
    /// Not a file of the s6-rc source format.
    Unknown,
}

const COMMON: &[&str] = &["type", "dependencies", "dependencies.d", "timeout-up"];
const ONESHOT: &[&str] = &["up", "down", "timeout-down"];
const LONGRUN: &[&str] = &[
    "run",
    "finish",
    "notification-fd",
    "timeout-kill",
    "timeout-finish",
    "down-signal",
    "env",
    "data",
    "producer-for",
    "consumer-for",
    "pipeline-name",
];
const BUNDLE: &[&str] = &[
    "type",
    "contents",
    "contents.d",
    "dependencies",
    "dependencies.d",
];

const IGNORED: &[(&str, &str)] = &[
    (
        "timeout-down",
        "corral stops a longrun with its down-signal, then SIGKILL after timeout-kill (or the stop timeout); it has no other deadline on a stop (a oneshot's timeout-down is read: its down script's deadline)",
    ),
    (
        "max-death-tally",
        "corral keeps no death tally; restarts follow its restart delay",
    ),
    ("lock-fd", "corral holds no lock for a service"),
    (
        "flag-essential",
        "it only guards against `s6-rc -d`; corral's `essential` means something else (the container stops with it)",
    ),
    ("flag-recommended", "only s6-rc's repository tools read it"),
    ("reload", "corral has no reload for a oneshot"),
    ("instance", "s6 instanced services are not supported"),
    ("instances", "s6 instanced services are not supported"),
    (
        "log",
        "s6-rc ignores a `log/` here too: a logger is a consumer longrun (producer-for / consumer-for)",
    ),
];

/// The role of `file` in a directory of type `kind` (oneshot, longrun,
/// bundle).
pub(super) fn role(kind: &str, file: &str) -> Role {
    let read: &[&[&str]] = match kind {
        "oneshot" => &[COMMON, ONESHOT],
        "longrun" => &[COMMON, LONGRUN],
        _ => &[BUNDLE],
    };
    if read.iter().any(|files| files.contains(&file)) {
        return Role::Read;
    }
    // The script a linuxserver-style `up` names: it is the service's own.
    if kind == "oneshot" && file == "run" {
        return Role::Read;
    }
    if kind == "longrun" && file == "down" {
        return Role::Ignored(
            "s6-rc ignores a longrun's `down` file too: what starts is what the `user` bundles reach",
        );
    }
    match IGNORED.iter().find(|(name, _)| *name == file) {
        Some((_, why)) if kind != "bundle" || file.starts_with("flag-") => Role::Ignored(why),
        _ => Role::Unknown,
    }
}

/// Every file name corral knows for `kind`, for "did you mean".
pub(super) fn known(kind: &str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = match kind {
        "oneshot" => [COMMON, ONESHOT].concat(),
        "longrun" => [COMMON, LONGRUN].concat(),
        _ => BUNDLE.to_vec(),
    };
    names.extend(IGNORED.iter().map(|(name, _)| *name));
    names
}
