//! The `limits` table (SPEC section 11): `{ nofile = N, nproc = N, core =
//! N, memlock = N, stack = N }`, each a whole number or `"unlimited"`; the
//! three counted in bytes (`core`, `memlock`, `stack`) also take a size
//! string such as `"64MiB"` (`log_file::parse_size`, the one size reader).
//!
//! Each is set as soft = hard limit in the service's processes before exec
//! (`process::spawn_service`). Going above corral's own hard limit needs
//! CAP_SYS_RESOURCE in its effective set, and no process may have more open
//! files than `fs.nr_open`: `check` says so at load (`corral check` and a
//! SIGHUP re-read name the file, line and column), and again, to explain
//! it, when a spawn failed anyway (the system changed since).
//!
//! What it must never do: change a limit of corral's own (it only reads
//! them, `/proc/self/status` and `/proc/sys/fs/nr_open`).

use nix::sys::resource::{Resource, getrlimit};
use toml::de::DeValue;

use super::log_file::parse_size;
use super::value::{Problem, Value, expected, integer};
use crate::text::closest;

/// The names, as `ulimit` and systemd's `LimitNOFILE=` call them, and
/// whether the limit counts bytes (and so takes a size string).
const LIMITS: &[(&str, Resource, bool)] = &[
    ("nofile", Resource::RLIMIT_NOFILE, false),
    ("nproc", Resource::RLIMIT_NPROC, false),
    ("core", Resource::RLIMIT_CORE, true),
    ("memlock", Resource::RLIMIT_MEMLOCK, true),
    ("stack", Resource::RLIMIT_STACK, true),
];

/// capabilities(7): the bit of CAP_SYS_RESOURCE in `CapEff`.
const CAP_SYS_RESOURCE: u32 = 24;

/// `"unlimited"`: the kernel's RLIM_INFINITY.
pub const UNLIMITED: u64 = libc::RLIM_INFINITY;

/// The name of `resource` in a service file.
pub fn limit_name(resource: Resource) -> &'static str {
    LIMITS
        .iter()
        .find(|(_, r, _)| *r == resource)
        .map_or("?", |(name, _, _)| name)
}

/// `name = value` as written back: `nofile = 1024`, `core = unlimited`.
pub fn show_limit(resource: Resource, value: u64) -> String {
    let name = limit_name(resource);
    if value == UNLIMITED {
        format!("{name} = unlimited")
    } else {
        format!("{name} = {value}")
    }
}

/// Reads a `limits` table: every unknown name, bad value and value corral
/// could not set is reported; `None` unless the whole table is good.
pub(super) fn limits(
    value: &Value<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Vec<(Resource, u64)>> {
    let DeValue::Table(table) = value.get_ref() else {
        problems.push(expected(
            "limits",
            "a table such as { nofile = 65536 }",
            value,
        ));
        return None;
    };
    let mut found = Vec::new();
    let before = problems.len();
    // In the map's order: errors are sorted by position later, and the
    // order in which limits are set makes no difference.
    for (key, item) in table.iter() {
        let name: &str = key.get_ref();
        let Some(&(name, resource, bytes)) = LIMITS.iter().find(|(n, _, _)| *n == name) else {
            let shown = name.escape_debug();
            let message = match closest(name, LIMITS.iter().map(|(n, _, _)| *n)) {
                Some(guess) => {
                    format!("unknown limit `{shown}` in `limits` (did you mean `{guess}`?)")
                }
                None => format!(
                    "unknown limit `{shown}` in `limits` (known: nofile, nproc, core, memlock, stack)"
                ),
            };
            problems.push(Problem::at(key.span().start, message));
            continue;
        };
        let at = item.span().start;
        match limit_value(name, item, bytes) {
            Ok(value) => match check_limit(resource, value) {
                Ok(()) => found.push((resource, value)),
                Err(why) => problems.push(Problem::at(
                    at,
                    format!("`limits.{}` {why}", show_limit(resource, value)),
                )),
            },
            Err(problem) => problems.push(problem),
        }
    }
    (problems.len() == before).then_some(found)
}

/// One value: a whole number, `"unlimited"`, or (`bytes`) a size string.
fn limit_value(name: &str, value: &Value<'_>, bytes: bool) -> Result<u64, Problem> {
    let at = value.span().start;
    let what = if bytes {
        "a number of bytes, a size such as \"64MiB\" or \"unlimited\""
    } else {
        "a whole number or \"unlimited\""
    };
    let bad = |found: &str| {
        Problem::at(
            at,
            format!("`limits.{name}`: expected {what}, found {found}"),
        )
    };
    match value.get_ref() {
        DeValue::Integer(i) => integer(i.as_str(), i.radix())
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| bad(i.as_str())),
        DeValue::String(s) if s.as_ref() == "unlimited" => Ok(UNLIMITED),
        DeValue::String(s) if bytes => {
            parse_size(s).map_err(|message| Problem::at(at, format!("`limits.{name}`: {message}")))
        }
        DeValue::String(s) => Err(bad(&format!("\"{}\"", s.escape_debug()))),
        _ => Err(expected(&format!("limits.{name}"), what, value)),
    }
}

/// Whether corral could give a process `value` as `resource`'s limit
/// (module doc); the error completes "`limits.nofile = N` ...".
pub fn check_limit(resource: Resource, value: u64) -> Result<(), String> {
    if resource == Resource::RLIMIT_NOFILE
        && let Some(max) = nr_open()
        && value > max
    {
        return Err(format!(
            "is above fs.nr_open ({max}), the most open files the kernel allows"
        ));
    }
    // Unreadable: nothing to compare with; a spawn would tell.
    let Ok((_, hard)) = getrlimit(resource) else {
        return Ok(());
    };
    if value > hard && !can_raise_limits() {
        return Err(format!(
            "is above the hard limit {hard}, which corral (without CAP_SYS_RESOURCE) cannot raise"
        ));
    }
    Ok(())
}

/// `/proc/sys/fs/nr_open`, if it can be read.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// CAP_SYS_RESOURCE is in corral's effective set (`CapEff` of
/// /proc/self/status). Unknown (no /proc): assumed, so that a valid
/// definition is never refused; a spawn that fails says why.
fn can_raise_limits() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}
