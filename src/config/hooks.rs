//! The table keys that hook into a running service: `ready`, `health` and
//! `reload` (SPEC section 3), `pre-stop` (section 11). Each is a table
//! holding exactly one *method* (`tcp`, `http`, `exec`, `fd`, `notify`,
//! `signal`, `delay`: how to check, reload or get ready to stop) and, for
//! `health` and `pre-stop`, a few settings.
//!
//! Like the rest of the raw step, every problem is reported, at the key or
//! the value it is about: unknown keys inside a table (with a "did you
//! mean"), zero or several methods, and each bad value. Nothing is resolved
//! or connected to here: `tcp` and `http` only check the shape of the address.

use std::net::Ipv6Addr;
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::de::DeValue;

use super::signal;
use super::spec::{Health, LinePattern, PreStop, Probe, Ready, Reload};
use super::value::{Problem, Value, argv, expected, integer, positive_duration, text};
use crate::text::closest;

/// `health` defaults (SPEC section 3).
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const HEALTH_RETRIES: u32 = 3;

/// A readiness fd: 0, 1 and 2 are stdin, stdout and stderr; the top is
/// below `FD_SETSIZE`, so that even a service using select(2) can write it.
const FD_RANGE: std::ops::RangeInclusive<i128> = 3..=1023;

/// One `key = value` of a hook table.
struct Entry<'a, 'i> {
    name: &'a str,
    key_at: usize,
    value: &'a Value<'i>,
}

/// A hook table split up: the entries that are methods (in file order) and
/// the settings. Unknown and refused keys are already reported.
struct Table<'a, 'i> {
    methods: Vec<Entry<'a, 'i>>,
    settings: Vec<Entry<'a, 'i>>,
}

/// What a hook table may hold.
struct Shape<'s> {
    /// `ready`, `health`, `reload`.
    key: &'s str,
    /// Exactly one of these must be given.
    methods: &'s [&'s str],
    settings: &'s [&'s str],
    /// Keys that are refused with a message of their own: (key, message).
    refused: &'s [(&'s str, &'s str)],
}

impl Shape<'_> {
    /// Reads `value` as a table of this shape; `None` (reported) when it is
    /// no table. Zero or several methods are reported here too, but the
    /// table is still returned, so that every value in it gets checked.
    fn read<'a, 'i>(
        &self,
        value: &'a Value<'i>,
        problems: &mut Vec<Problem>,
    ) -> Option<Table<'a, 'i>> {
        let key = self.key;
        let choices = one_of(self.methods);
        let DeValue::Table(table) = value.get_ref() else {
            problems.push(expected(
                key,
                &format!("a table with one of {choices}"),
                value,
            ));
            return None;
        };
        let mut entries: Vec<Entry<'a, 'i>> = table
            .iter()
            .map(|(k, v)| Entry {
                name: k.get_ref(),
                key_at: k.span().start,
                value: v,
            })
            .collect();
        // The map may be sorted by name: put it back in file order.
        crate::sort::sort_by_key(&mut entries, |e| e.key_at);

        let mut split = Table {
            methods: Vec::new(),
            settings: Vec::new(),
        };
        // A key that was surely meant as a method: no "found none" on top.
        let mut meant_a_method = false;
        for entry in entries {
            if self.methods.contains(&entry.name) {
                split.methods.push(entry);
            } else if self.settings.contains(&entry.name) {
                split.settings.push(entry);
            } else if let Some((_, message)) = self.refused.iter().find(|(k, _)| *k == entry.name) {
                meant_a_method = true;
                problems.push(Problem::at(entry.key_at, format!("`{key}`: {message}")));
            } else {
                let known = self.methods.iter().chain(self.settings).copied();
                let shown = entry.name.escape_debug();
                let message = match closest(entry.name, known) {
                    Some(guess) => {
                        meant_a_method |= self.methods.contains(&guess);
                        format!("unknown key `{shown}` in `{key}` (did you mean `{guess}`?)")
                    }
                    None => format!("unknown key `{shown}` in `{key}`"),
                };
                problems.push(Problem::at(entry.key_at, message));
            }
        }
        match split.methods.as_slice() {
            [] if meant_a_method => {}
            [] => problems.push(Problem::at(
                value.span().start,
                format!("`{key}`: expected exactly one of {choices}, found none"),
            )),
            [_] => {}
            [_, second, ..] => {
                let found: Vec<&str> = split.methods.iter().map(|e| e.name).collect();
                problems.push(Problem::at(
                    second.key_at,
                    format!(
                        "`{key}`: expected exactly one of {choices}, found {}",
                        and_list(&found)
                    ),
                ));
            }
        }
        Some(split)
    }
}

/// "`a`, `b` or `c`".
fn one_of(names: &[&str]) -> String {
    list(names, "or")
}

/// "`a`, `b` and `c`".
fn and_list(names: &[&str]) -> String {
    list(names, "and")
}

fn list(names: &[&str], last: &str) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((only, [])) => only.clone(),
        Some((tail, head)) => format!("{} {last} {tail}", head.join(", ")),
    }
}

/// `ready`: `{ tcp = .. }`, `{ http = .. }`, `{ exec = .. }`, `{ fd = N }`,
/// `{ notify = true }` or `{ log-line = "regex" }`.
pub(super) fn ready(value: &Value<'_>, problems: &mut Vec<Problem>) -> Option<Ready> {
    let shape = Shape {
        key: "ready",
        methods: &["tcp", "http", "exec", "fd", "notify", "log-line"],
        settings: &[],
        refused: &[],
    };
    let table = shape.read(value, problems)?;
    let mut ready = Vec::new();
    for method in &table.methods {
        let key = format!("ready.{}", method.name);
        let found = match method.name {
            "fd" => reported(fd(&key, method.value), problems).map(Ready::Fd),
            "notify" => reported(notify(&key, method.value), problems).map(|()| Ready::Notify),
            "log-line" => reported(log_line(&key, method.value), problems).map(Ready::LogLine),
            _ => probe(&key, method, problems).map(Ready::Probe),
        };
        ready.extend(found);
    }
    exactly_one(&table, ready)
}

/// `health`: one of `tcp`, `http`, `exec`, plus `interval`, `timeout` and
/// `retries`.
pub(super) fn health(value: &Value<'_>, problems: &mut Vec<Problem>) -> Option<Health> {
    let shape = Shape {
        key: "health",
        methods: &["tcp", "http", "exec"],
        settings: &["interval", "timeout", "retries"],
        refused: &[
            (
                "fd",
                "`fd` is a readiness protocol, not a liveness probe: use `tcp`, `http` or `exec`",
            ),
            (
                "notify",
                "`notify` is a readiness protocol, not a liveness probe: use `tcp`, `http` or `exec`",
            ),
            (
                "log-line",
                "`log-line` is a readiness protocol, not a liveness probe: use `tcp`, `http` or `exec`",
            ),
        ],
    };
    let table = shape.read(value, problems)?;
    let mut interval = Some(HEALTH_INTERVAL);
    let mut timeout = Some(HEALTH_TIMEOUT);
    let mut retries = Some(HEALTH_RETRIES);
    for setting in &table.settings {
        let value = setting.value;
        match setting.name {
            "interval" => {
                interval = reported(positive_duration("health.interval", value), problems)
            }
            "timeout" => timeout = reported(positive_duration("health.timeout", value), problems),
            "retries" => retries = reported(health_retries(value), problems),
            _ => {}
        }
    }
    let probes: Vec<Probe> = table
        .methods
        .iter()
        .filter_map(|m| probe(&format!("health.{}", m.name), m, problems))
        .collect();
    let probe = exactly_one(&table, probes)?;
    Some(Health {
        probe,
        interval: interval?,
        timeout: timeout?,
        retries: retries?,
    })
}

/// `reload`: `{ signal = "HUP" }` or `{ exec = .. }`.
pub(super) fn reload(value: &Value<'_>, problems: &mut Vec<Problem>) -> Option<Reload> {
    let shape = Shape {
        key: "reload",
        methods: &["signal", "exec"],
        settings: &[],
        refused: &[],
    };
    let table = shape.read(value, problems)?;
    let mut reload = Vec::new();
    for method in &table.methods {
        let key = format!("reload.{}", method.name);
        let found = match method.name {
            "signal" => reported(reload_signal(&key, method.value), problems).map(Reload::Signal),
            _ => argv(&key, method.value, problems).map(Reload::Exec),
        };
        reload.extend(found);
    }
    exactly_one(&table, reload)
}

/// `pre-stop`: `{ exec = .., timeout = .. }` or `{ delay = .. }`. A
/// `timeout` belongs to `exec` alone: a `delay` is its own time.
pub(super) fn pre_stop(value: &Value<'_>, problems: &mut Vec<Problem>) -> Option<PreStop> {
    let shape = Shape {
        key: "pre-stop",
        methods: &["exec", "delay"],
        settings: &["timeout"],
        refused: &[],
    };
    let table = shape.read(value, problems)?;
    let mut timeout = None;
    let mut good = true;
    for setting in &table.settings {
        if table.methods.iter().any(|m| m.name == "delay") {
            problems.push(Problem::at(
                setting.key_at,
                "`pre-stop.timeout` applies to `exec`: a `delay` is its own time limit".into(),
            ));
            good = false;
        } else {
            timeout = reported(
                positive_duration("pre-stop.timeout", setting.value),
                problems,
            );
            good &= timeout.is_some();
        }
    }
    let mut found = Vec::new();
    for method in &table.methods {
        let key = format!("pre-stop.{}", method.name);
        found.extend(match method.name {
            "delay" => {
                reported(positive_duration(&key, method.value), problems).map(PreStop::Delay)
            }
            _ => {
                argv(&key, method.value, problems).map(|command| PreStop::Exec { command, timeout })
            }
        });
    }
    exactly_one(&table, found).filter(|_| good)
}

/// The one method's value, when the table held exactly one and it is good.
fn exactly_one<T>(table: &Table<'_, '_>, mut found: Vec<T>) -> Option<T> {
    if table.methods.len() == 1 && found.len() == 1 {
        found.pop()
    } else {
        None
    }
}

/// The good value, or `None` with the problem recorded.
fn reported<T>(result: Result<T, Problem>, problems: &mut Vec<Problem>) -> Option<T> {
    result.map_err(|problem| problems.push(problem)).ok()
}

/// A `tcp`, `http` or `exec` probe; `key` is e.g. `ready.tcp`.
fn probe(key: &str, method: &Entry<'_, '_>, problems: &mut Vec<Problem>) -> Option<Probe> {
    match method.name {
        "tcp" => reported(tcp(key, method.value), problems).map(|addr| Probe::Tcp { addr }),
        "http" => reported(http(key, method.value), problems).map(|url| Probe::Http { url }),
        _ => argv(key, method.value, problems).map(|command| Probe::Exec { command }),
    }
}

/// `tcp = "host:port"` or `"[v6]:port"`, kept as written (names are resolved
/// at each probe, never at load time).
fn tcp(key: &str, value: &Value<'_>) -> Result<String, Problem> {
    let addr = text(key, "a \"host:port\" string", value)?;
    let invalid = |reason: &str| {
        Problem::at(
            value.span().start,
            format!(
                "`{key}`: invalid address \"{}\": {reason}",
                addr.escape_debug()
            ),
        )
    };
    if addr.contains("://") {
        return Err(invalid(
            "expected \"host:port\", not a URL (use `http` for an HTTP probe)",
        ));
    }
    match port_of(&addr) {
        Ok(None) => Err(invalid(
            "expected \"host:port\", such as \"localhost:8080\" or \"[::1]:8080\"",
        )),
        Ok(Some(_)) => Ok(addr),
        Err(reason) => Err(invalid(&reason)),
    }
}

/// `http = "http://host[:port]/path"`, kept as written.
fn http(key: &str, value: &Value<'_>) -> Result<String, Problem> {
    const EXAMPLE: &str = "such as \"http://localhost:8080/healthz\"";
    let url = text(key, "a URL string", value)?;
    let invalid = |reason: &str| {
        Problem::at(
            value.span().start,
            format!("`{key}`: invalid URL \"{}\": {reason}", url.escape_debug()),
        )
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it must not contain spaces or control characters"));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        if url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            return Err(invalid(
                "plain http only: https is not supported (use `exec` with an https client instead)",
            ));
        }
        return Err(invalid(&format!(
            "expected a URL starting with \"http://\", {EXAMPLE}"
        )));
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or("");
    if authority.is_empty() || authority.starts_with(':') {
        return Err(invalid(&format!("the URL must have a host, {EXAMPLE}")));
    }
    match port_of(authority) {
        Ok(_) => Ok(url),
        Err(reason) => Err(invalid(&reason)),
    }
}

/// Checks both parts of `host[:port]` (`[v6][:port]` for IPv6) and returns
/// the port. The error is the reason, for a message about the whole address.
fn port_of(s: &str) -> Result<Option<u16>, String> {
    let port = if let Some(bracketed) = s.strip_prefix('[') {
        let Some((v6, after)) = bracketed.split_once(']') else {
            return Err("the IPv6 address has no closing `]`".to_string());
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "\"[{}]\" is not an IPv6 address",
                v6.escape_debug()
            ));
        }
        match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err("expected `:` and a port after `]`".to_string()),
            },
        }
    } else {
        let (host, port) = match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err("an IPv6 address must be in brackets, such as \"[::1]:8080\"".to_string());
        }
        if host.is_empty() {
            return Err("the host is missing".to_string());
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if !host.chars().all(valid) {
            return Err(format!(
                "invalid host \"{}\" (use a host name or an IP address)",
                host.escape_debug()
            ));
        }
        port
    };
    match port {
        None => Ok(None),
        Some("") => Err("the port is missing".to_string()),
        Some(digits) => match digits.parse::<u16>() {
            Ok(port) if port > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(port)),
            _ => Err(format!(
                "the port \"{}\" is not a number from 1 to 65535",
                digits.escape_debug()
            )),
        },
    }
}

/// `fd = N`: s6's notification-fd.
fn fd(key: &str, value: &Value<'_>) -> Result<i32, Problem> {
    let range = format!("an integer from {} to {}", FD_RANGE.start(), FD_RANGE.end());
    let DeValue::Integer(i) = value.get_ref() else {
        return Err(expected(key, &range, value));
    };
    let n = integer(i.as_str(), i.radix());
    let stdio = match n {
        Some(0..=2) => " (0, 1 and 2 are stdin, stdout and stderr)",
        _ => "",
    };
    match n
        .filter(|n| FD_RANGE.contains(n))
        .and_then(|n| i32::try_from(n).ok())
    {
        Some(fd) => Ok(fd),
        None => Err(Problem::at(
            value.span().start,
            format!("`{key}`: expected {range}, found {}{stdio}", i.as_str()),
        )),
    }
}

/// `notify = true`; `false` asks for nothing and is refused.
fn notify(key: &str, value: &Value<'_>) -> Result<(), Problem> {
    match value.get_ref() {
        DeValue::Boolean(true) => Ok(()),
        DeValue::Boolean(false) => Err(Problem::at(
            value.span().start,
            format!(
                "`{key}`: only `true` is meaningful; for no readiness check, remove the `ready` key"
            ),
        )),
        _ => Err(expected(key, "true", value)),
    }
}

/// `ready.log-line`: a regular expression, compiled now, so that a bad
/// one is an error of the file, with regex-lite's reason.
fn log_line(key: &str, value: &Value<'_>) -> Result<LinePattern, Problem> {
    let pattern = text(key, "a regular expression (string)", value)?;
    let at = value.span().start;
    if pattern.is_empty() {
        return Err(Problem::at(
            at,
            format!("`{key}`: must not be empty (it would match any line: use \"^\" for that)"),
        ));
    }
    LinePattern::new(&pattern)
        .map_err(|e| Problem::at(at, format!("`{key}`: invalid regular expression: {e}")))
}

fn health_retries(value: &Value<'_>) -> Result<u32, Problem> {
    let range = format!("an integer from 1 to {}", u32::MAX);
    let DeValue::Integer(i) = value.get_ref() else {
        return Err(expected("health.retries", &range, value));
    };
    integer(i.as_str(), i.radix())
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            Problem::at(
                value.span().start,
                format!("`health.retries`: expected {range}, found {}", i.as_str()),
            )
        })
}

fn reload_signal(key: &str, value: &Value<'_>) -> Result<Signal, Problem> {
    match value.get_ref() {
        DeValue::String(s) => signal::parse_signal(s.as_ref())
            .map_err(|message| Problem::at(value.span().start, format!("`{key}`: {message}"))),
        _ => Err(expected(key, "a signal name such as \"HUP\"", value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_keys() {
        assert_eq!(one_of(&["tcp"]), "`tcp`");
        assert_eq!(one_of(&["signal", "exec"]), "`signal` or `exec`");
        assert_eq!(and_list(&["tcp", "http", "fd"]), "`tcp`, `http` and `fd`");
        assert_eq!(one_of(&[]), "");
    }

    #[test]
    fn ports_of_addresses() {
        assert_eq!(port_of("localhost:80"), Ok(Some(80)));
        assert_eq!(port_of("localhost"), Ok(None));
        assert_eq!(port_of("10.0.0.1:65535"), Ok(Some(65535)));
        assert_eq!(port_of("[::1]:1"), Ok(Some(1)));
        assert_eq!(port_of("[fe80::1]"), Ok(None));
        assert_eq!(port_of("a-b_c.d:0080"), Ok(Some(80)));
        for bad in [
            "", ":1", "h:", "h:0", "h:65536", "h:-1", "h:+1", "h: 1", "::1", "[::1", "[x]:1",
            "[::1]1", "h h:1", "é:1", "[]:1",
        ] {
            assert!(port_of(bad).is_err(), "{bad:?}");
        }
    }
}
