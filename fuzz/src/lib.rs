//! The properties the fuzz targets check, one function per target. Each
//! takes any input at all and panics when corral breaks a property on it:
//! a panic inside the parser itself, or a wrong answer.
//!
//! The fuzz targets (`fuzz/fuzz_targets/`, built by cargo-fuzz on nightly)
//! are one line each around these. `tests/it/fuzz_regressions.rs` includes this
//! file with `#[path]` and replays every committed corpus input through the
//! same functions, so the corpora are checked by a plain `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use corral::config::{self, ConfigError, Probe, Ready, Reload, ServiceSpec};
use corral::control::protocol::{self, Request, Response, ServiceStatus};
use corral::event::NotifyMessage;
use corral::{http, notify};

/// Target `service_file`: one service file, TOML text as `web.toml`.
pub fn service_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        // `load` reports such a file as "not valid UTF-8" (target `config_load`).
        return;
    };
    let path = Path::new("/srv/services.d/web.toml");
    let result = config::parse_service(path, text);
    assert_eq!(
        result,
        config::parse_service(path, text),
        "parsing the same text twice gave two answers"
    );
    match result {
        Ok(spec) => {
            check_spec(&spec, "web", path);
            // A comment after the last line changes nothing.
            let commented = format!("{text}\n# the end\n");
            assert_eq!(
                config::parse_service(path, &commented),
                Ok(spec),
                "a trailing comment changed the service"
            );
        }
        Err(errors) => check_errors(&errors, |_| Some(text)),
    }
}

/// What every valid service must be, whatever the file said.
fn check_spec(spec: &ServiceSpec, name: &str, source: &Path) {
    assert_eq!(spec.name, name);
    assert_eq!(spec.source, source);
    assert!(
        spec.command
            .first()
            .is_some_and(|program| !program.is_empty()),
        "empty command or program: {:?}",
        spec.command
    );
    assert!(spec.restart_delay <= spec.restart_delay_max, "{spec:?}");
    assert!(!spec.ready_timeout.is_zero(), "{spec:?}");
    if spec.oneshot {
        assert!(spec.ready.is_none() && spec.health.is_none(), "{spec:?}");
    }
    let mut argvs: Vec<&[String]> = vec![&spec.command];
    match &spec.ready {
        Some(Ready::Fd(fd)) => assert!((3..=1023).contains(fd), "ready fd {fd}"),
        Some(Ready::Probe(Probe::Exec { command })) => argvs.push(command),
        _ => {}
    }
    if let Some(health) = &spec.health {
        assert!(!health.interval.is_zero() && !health.timeout.is_zero());
        assert!(health.retries >= 1);
        if let Probe::Exec { command } = &health.probe {
            argvs.push(command);
        }
    }
    if let Some(Reload::Exec(command)) = &spec.reload {
        argvs.push(command);
    }
    // Whatever reaches an exec or the environment must be a C string.
    for argv in argvs {
        assert!(!argv.is_empty(), "an empty command in {spec:?}");
        assert!(argv.iter().all(|arg| !arg.contains('\0')), "{argv:?}");
    }
    let mut names = BTreeSet::new();
    for (key, value) in &spec.env {
        assert!(names.insert(key), "env key {key:?} twice");
        assert!(
            !key.is_empty() && !key.contains(['=', '\0']),
            "env key {key:?}"
        );
        assert!(!value.contains('\0'), "env value {value:?}");
    }
    let paths = [Some(&spec.working_dir), spec.env_file.as_ref()];
    for path in paths.into_iter().flatten().chain(&spec.watch) {
        assert!(
            !path.as_os_str().as_encoded_bytes().contains(&0),
            "{path:?}"
        );
    }
    let unique: BTreeSet<&PathBuf> = spec.watch.iter().collect();
    assert_eq!(unique.len(), spec.watch.len(), "duplicate watch paths");
}

/// What every list of errors must be: not empty, each with a message, a
/// position inside its file (`text_of` gives the text, when known), and
/// sorted by path then position.
fn check_errors<'a>(errors: &[ConfigError], text_of: impl Fn(&Path) -> Option<&'a str>) {
    assert!(!errors.is_empty(), "an error result without any error");
    for error in errors {
        assert!(!error.message.trim().is_empty(), "empty message: {error:?}");
        assert_eq!(error.line == 0, error.col == 0, "{error:?}");
        assert!(error.to_string().ends_with(&error.message));
        if error.line == 0 {
            continue;
        }
        let Some(text) = text_of(&error.path) else {
            continue;
        };
        let line = text.split('\n').nth(error.line - 1);
        let Some(line) = line else {
            panic!("{error:?}: line past the end of the text");
        };
        assert!(
            error.col <= line.chars().count() + 1,
            "{error:?}: column past the end of line {line:?}"
        );
    }
    let key = |e: &ConfigError| (e.path.clone(), e.line, e.col);
    assert!(
        errors.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
        "errors not sorted: {errors:?}"
    );
}

/// A services dir written as text, for target `config_load`: a line
/// `=== PATH` starts a file at PATH (relative, one or two components:
/// `web.toml`, `db/run`), and each line after it, up to the next such line,
/// is a line of that file. `run` and `finish` files are made executable.
/// Lines before the first `===` line are ignored, and so is a PATH that is
/// absolute, has `.` or `..` components, or more than two of them.
pub fn services_dir_files(data: &[u8]) -> Vec<(PathBuf, Vec<u8>)> {
    const MAX_FILES: usize = 12;
    let mut files: Vec<(Option<PathBuf>, Vec<u8>)> = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        if let Some(path) = line.strip_prefix(b"=== ") {
            files.push((relative_path(path), Vec::new()));
        } else if let Some((_, contents)) = files.last_mut() {
            contents.extend_from_slice(line);
            contents.push(b'\n');
        }
    }
    files
        .into_iter()
        .filter_map(|(path, contents)| Some((path?, contents)))
        .take(MAX_FILES)
        .collect()
}

fn relative_path(bytes: &[u8]) -> Option<PathBuf> {
    let text = std::str::from_utf8(bytes).ok()?;
    let parts: Vec<&str> = text.split('/').collect();
    let fine = |part: &&str| {
        !part.is_empty()
            && *part != "."
            && *part != ".."
            && part.len() <= 100
            && !part.contains('\0')
    };
    (parts.len() <= 2 && parts.iter().all(fine)).then(|| parts.iter().collect())
}

/// A directory removed when dropped, even when a check panics.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("corral-fuzz-{what}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Names `load` skips without a word (hidden files, editor leftovers).
fn skipped(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".bak")
        || name.contains(".dpkg-")
}

/// Target `config_load`: a whole services dir (see `services_dir_files`)
/// through `config::load`, checked against `parse_service` on each file and
/// against the `after` graph computed here.
pub fn config_load(data: &[u8]) {
    let temp = TempDir::new("load");
    let dir = temp.0.join("services.d");
    fs::create_dir(&dir).expect("create the services dir");
    for (path, contents) in services_dir_files(data) {
        let path = dir.join(path);
        if let Some(parent) = path.parent()
            && fs::create_dir_all(parent).is_err()
        {
            continue; // a file already holds that name
        }
        if fs::write(&path, &contents).is_err() {
            continue; // a directory already holds that name
        }
        if path.ends_with("run") || path.ends_with("finish") {
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o755));
        }
    }

    // What the dir holds, as `load` should see it.
    let mut tomls: BTreeMap<String, (PathBuf, Vec<u8>)> = BTreeMap::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for entry in fs::read_dir(&dir).expect("read the services dir") {
        let entry = entry.expect("read the services dir");
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if skipped(&file_name) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            dirs.insert(file_name);
        } else if let Some(name) = file_name.strip_suffix(".toml") {
            let contents = fs::read(&path).expect("read back a service file");
            tomls.insert(name.to_string(), (path, contents));
        }
    }
    let defined: BTreeSet<&str> = tomls
        .keys()
        .chain(dirs.iter())
        .map(String::as_str)
        .collect();

    let result = config::load(std::slice::from_ref(&dir));
    match &result {
        Ok(spec) => {
            let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
            assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
            for service in &spec.services {
                assert!(defined.contains(service.name.as_str()), "{}", service.name);
                for target in service.after.iter().map(|a| &a.name) {
                    assert!(target != &service.name, "{} after itself", service.name);
                    assert!(names.contains(&target.as_str()), "unknown {target}");
                }
                if let Some((path, contents)) = tomls.get(&service.name) {
                    let text = std::str::from_utf8(contents).expect("a loaded file is UTF-8");
                    assert_eq!(
                        config::parse_service(path, text).as_ref(),
                        Ok(service),
                        "load and parse_service disagree on {}",
                        path.display()
                    );
                    check_spec(service, &service.name, path);
                }
            }
            let graph: BTreeMap<&str, Vec<&str>> = spec
                .services
                .iter()
                .map(|s| {
                    (
                        s.name.as_str(),
                        s.after.iter().map(|a| a.name.as_str()).collect(),
                    )
                })
                .collect();
            assert!(acyclic(&graph), "a cycle was loaded: {graph:?}");
        }
        Err(errors) => {
            let texts: BTreeMap<&Path, &str> = tomls
                .values()
                .filter_map(|(path, contents)| {
                    Some((path.as_path(), std::str::from_utf8(contents).ok()?))
                })
                .collect();
            check_errors(errors, |path| texts.get(path).copied());
            for error in errors {
                assert!(error.path.starts_with(&dir), "{error:?}");
                // A suggested service is one that exists (a suggested
                // `after` condition is a condition's name).
                if let Some(guess) = did_you_mean(&error.message)
                    && !error.message.contains("unknown condition")
                {
                    assert!(defined.contains(guess), "suggested {guess:?}: {error:?}");
                }
            }
        }
    }
    if dirs.is_empty() {
        check_against_files(&tomls, &result);
    }
}

/// When the dir holds only service files, `load` must succeed exactly when
/// every file parses on its own and the `after` lists name existing services
/// and form no cycle; a file's own errors are all in `load`'s.
fn check_against_files(
    tomls: &BTreeMap<String, (PathBuf, Vec<u8>)>,
    result: &Result<config::Spec, Vec<ConfigError>>,
) {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut every_file_fine = true;
    let mut specs = Vec::new();
    for (name, (path, contents)) in tomls {
        let Ok(text) = std::str::from_utf8(contents) else {
            every_file_fine = false;
            continue;
        };
        match config::parse_service(path, text) {
            Ok(spec) => specs.push((name.as_str(), spec)),
            Err(file_errors) => {
                every_file_fine = false;
                let Err(errors) = result else {
                    panic!("{} has errors but the dir loaded", path.display());
                };
                for error in &file_errors {
                    assert!(errors.contains(error), "{error} missing from load");
                }
            }
        }
    }
    if !every_file_fine {
        assert!(result.is_err(), "a bad file, yet the dir loaded");
        return;
    }
    for (name, spec) in &specs {
        graph.insert(name, spec.after.iter().map(|a| a.name.as_str()).collect());
    }
    let known = graph
        .iter()
        .all(|(name, targets)| targets.iter().all(|t| t != name && graph.contains_key(t)));
    // Each condition can be reached: `completed` and `succeeded` by a
    // oneshot, `healthy` by a service with a health check.
    let reachable = specs.iter().flat_map(|(_, s)| &s.after).all(|a| {
        let Some((_, target)) = specs.iter().find(|(n, _)| *n == a.name) else {
            return true;
        };
        match a.condition {
            config::Condition::Completed | config::Condition::Succeeded => target.oneshot,
            config::Condition::Healthy => target.health.is_some(),
            _ => true,
        }
    });
    let expected_ok = known && reachable && acyclic(&graph);
    assert_eq!(
        result.is_ok(),
        expected_ok,
        "after graph {graph:?}: {result:?}"
    );
    let Err(errors) = result else {
        return;
    };
    for error in errors {
        let message = &error.message;
        if let Some(cycle) = message.strip_prefix("dependency cycle: ") {
            let names: Vec<&str> = cycle.split(" -> ").collect();
            assert!(
                names.len() >= 3 && names.first() == names.last(),
                "{message}"
            );
            for pair in names.windows(2) {
                let targets = graph.get(pair[0]).map(Vec::as_slice).unwrap_or_default();
                assert!(targets.contains(&pair[1]), "no edge in {message}");
            }
        } else {
            assert!(
                message.starts_with("`after`: ") || message.starts_with("`after."),
                "unexpected error {error}"
            );
        }
    }
}

/// The name in `... (did you mean "NAME"?)`.
fn did_you_mean(message: &str) -> Option<&str> {
    let (_, rest) = message.rsplit_once("(did you mean \"")?;
    rest.strip_suffix("\"?)")
}

/// Whether the `after` graph (names to the names they come after) can be
/// ordered; targets that are not in the graph are ignored.
fn acyclic(graph: &BTreeMap<&str, Vec<&str>>) -> bool {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    loop {
        let ready: Vec<&str> = graph
            .iter()
            .filter(|(name, targets)| {
                !done.contains(*name)
                    && targets
                        .iter()
                        .all(|t| done.contains(t) || !graph.contains_key(t) || t == *name)
            })
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            return done.len() == graph.len();
        }
        done.extend(ready);
    }
}

/// Target `s6_small_files`: the contents of an s6 service directory's
/// `notification-fd` and `down-signal` files.
pub fn s6_small_files(data: &[u8]) {
    // `load` reads them as UTF-8 and reports anything else as unreadable.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse_notification_fd(text) {
        Ok(fd) => {
            assert!((3..=1023).contains(&fd), "fd {fd}");
            assert_eq!(text.trim().parse::<i32>(), Ok(fd));
            assert_eq!(config::parse_notification_fd(&format!("{fd}\n")), Ok(fd));
        }
        Err(message) => {
            assert!(
                message.starts_with("expected a file descriptor number from 3 to 1023, found ")
                    && message.ends_with(&format!("{:?}", text.trim())),
                "{message}"
            );
        }
    }
    signal_name(text.trim());
}

/// Signal names: a parsed name reads back from its conventional name, and
/// case does not matter.
fn signal_name(text: &str) {
    match config::parse_signal(text) {
        Ok(signal) => {
            let name = config::signal_name(signal);
            assert!(name.starts_with("SIG"), "{name}");
            assert_eq!(config::parse_signal(name), Ok(signal));
            assert_eq!(
                config::parse_signal(&name[3..].to_ascii_lowercase()),
                Ok(signal)
            );
            assert_eq!(config::parse_signal(&text.to_ascii_lowercase()), Ok(signal));
        }
        Err(message) => {
            assert!(message.starts_with("unknown signal \""), "{message}");
            assert!(config::parse_signal(&text.to_ascii_uppercase()).is_err());
        }
    }
}

/// Target `duration_signal`: duration strings and signal names. With a `|`
/// in the input, the two sides are also checked apart and written together.
pub fn duration_signal(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    duration(text);
    signal_name(text);
    if let Some((a, b)) = text.split_once('|') {
        duration(a);
        duration(b);
        let (a, b) = (a.trim(), b.trim());
        if let (Ok(x), Ok(y)) = (config::parse_duration(a), config::parse_duration(b))
            && a != "0"
            && b != "0"
        {
            // "1m" and "30s" make "1m30s": parts add up, and a sum past
            // the longest duration accepted is refused as too long.
            let sum = x.checked_add(y).filter(|d| *d <= config::MAX_DURATION);
            assert_eq!(
                config::parse_duration(&format!("{a}{b}")).ok(),
                sum,
                "{a:?} + {b:?}"
            );
        }
    }
}

fn duration(text: &str) {
    match config::parse_duration(text) {
        Ok(d) => {
            for written in write_duration(d) {
                assert_eq!(
                    config::parse_duration(&written),
                    Ok(d),
                    "{text:?} -> {written:?}"
                );
            }
            assert_eq!(config::parse_duration(&format!(" \t{text}\n")), Ok(d));
        }
        Err(message) => {
            assert!(message.starts_with("invalid duration \""), "{message}");
            // "not a number" only for text that is not one: a number too
            // big for the parser is a duration too long.
            // (The message quotes the input, which may hold those words.)
            let after_input = message.strip_prefix(&format!("invalid duration \"{text}\": \""));
            if let Some((number, _)) = after_input.and_then(|m| m.split_once("\" is not a number"))
            {
                let digits = number.replacen('.', "", 1);
                assert!(
                    digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()),
                    "{message}"
                );
            }
        }
    }
}

/// `d` written in several ways the format allows, each exact.
fn write_duration(d: Duration) -> Vec<String> {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    let mut ways = Vec::new();
    if d.is_zero() {
        ways.push("0".to_string());
    }
    ways.push(if nanos == 0 {
        format!("{secs}s")
    } else {
        format!("{secs}.{nanos:09}s")
    });
    let mut hms = String::new();
    for (value, unit) in [(secs / 3600, "h"), (secs / 60 % 60, "m")] {
        if value > 0 {
            hms.push_str(&format!("{value}{unit}"));
        }
    }
    hms.push_str(&format!("{}.{nanos:09}s", secs % 60));
    ways.push(hms);
    if nanos % 1_000_000 == 0 {
        ways.push(format!("{}ms", d.as_millis()));
    }
    ways
}

/// Target `notify_datagram`: one sd_notify datagram.
pub fn notify_datagram(data: &[u8]) {
    let parsed = notify::parse(data);
    // Lines are independent: a datagram is the sum of its parts, the later
    // value of a key winning; a bad MAINPID in either part spoils the whole.
    if let Some(newline) = data.iter().position(|&b| b == b'\n') {
        let first = notify::parse(&data[..newline]);
        let rest = notify::parse(&data[newline + 1..]);
        match (first, rest) {
            (Ok(first), Ok(rest)) => {
                let sum = NotifyMessage {
                    ready: first.ready || rest.ready,
                    reloading: first.reloading || rest.reloading,
                    stopping: first.stopping || rest.stopping,
                    main_pid: rest.main_pid.or(first.main_pid),
                    status: rest.status.or(first.status),
                };
                assert_eq!(parsed.as_ref(), Ok(&sum));
            }
            _ => assert!(parsed.is_err(), "{parsed:?}"),
        }
    }
    let Ok(message) = parsed else {
        return;
    };
    if let Some(pid) = message.main_pid {
        assert!(pid > 0, "MAINPID {pid}");
    }
    // Written back as a datagram, the message reads the same.
    let written = write_notify(&message);
    assert_eq!(
        notify::parse(written.as_bytes()),
        Ok(message),
        "{written:?}"
    );
}

fn write_notify(message: &NotifyMessage) -> String {
    let mut lines = Vec::new();
    for (set, line) in [
        (message.ready, "READY=1"),
        (message.reloading, "RELOADING=1"),
        (message.stopping, "STOPPING=1"),
    ] {
        if set {
            lines.push(line.to_string());
        }
    }
    if let Some(pid) = message.main_pid {
        lines.push(format!("MAINPID={pid}"));
    }
    if let Some(status) = &message.status {
        assert!(
            !status.contains('\n'),
            "a STATUS with a newline: {status:?}"
        );
        lines.push(format!("STATUS={status}"));
    }
    lines.join("\n")
}

/// Target `control_protocol`: one control request line (as the server
/// reads it: bytes), and the same bytes as a response line (as the client
/// reads it). Also the server's nesting check done before decoding, and
/// the refusal of duplicate keys.
pub fn control_protocol(data: &[u8]) {
    match protocol::decode_request(data) {
        Ok(request) => check_request(request),
        Err(message) => assert!(
            [
                "malformed request: ",
                "unsupported protocol version ",
                "missing protocol version"
            ]
            .iter()
            .any(|start| message.starts_with(start)),
            "{message}"
        ),
    }
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(data) {
        let refused = protocol::decode_request(data).err().unwrap_or_default();
        assert!(
            !(object.contains_key("v") && refused.starts_with("missing protocol version")),
            "a version was given: {refused}"
        );
    }
    // A key twice in an object, at any depth, is refused: never the last
    // one taken, as serde_json alone would.
    let unique = protocol::unique_json(data);
    if serde_json::from_slice::<serde_json::Value>(data).is_ok()
        && let Err(e) = &unique
    {
        let refused = protocol::decode_request(data).err().unwrap_or_default();
        assert!(
            e.to_string().starts_with("duplicate key ")
                && refused.starts_with("malformed request: duplicate key "),
            "{e} / {refused}"
        );
    }
    // The server refuses deep requests by counting brackets before parsing:
    // for valid JSON the count must be the real depth, or a deep request
    // could reach the parser's recursion on a connection thread's small stack.
    // (Only without duplicates: serde_json's `Value` drops the first of two.)
    if let Ok(value) = unique {
        assert_eq!(protocol::nesting(data), depth(&value));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(data).ok(),
            Some(value),
            "unique_json reads what serde_json reads"
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        #[cfg(feature = "serde-oracle")]
        same_as_serde(text);
        match protocol::decode_response(text) {
            Ok(response) => check_response(response),
            Err(message) => {
                assert!(
                    message.starts_with("malformed response from corral: "),
                    "{message}"
                );
            }
        }
    }
}

fn check_request(request: Request) {
    let line = protocol::encode_request(&request);
    let body = line
        .strip_suffix('\n')
        .expect("a request line ends in a newline");
    assert!(!body.contains('\n'), "{line:?}");
    assert!(protocol::nesting(body.as_bytes()) <= protocol::MAX_NESTING);
    assert_eq!(protocol::decode_request(body.as_bytes()), Ok(request));
}

/// `decode_response` (by hand) reads what serde's derive reads, but for a
/// struct written as an array, which only serde takes.
#[cfg(feature = "serde-oracle")]
fn same_as_serde(text: &str) {
    let reference = serde_json::from_str::<Response>(text).ok();
    let ours = protocol::decode_response(text).ok();
    if ours.is_none() && reference.is_some() && struct_as_array(text) {
        return;
    }
    assert_eq!(ours, reference, "{text:?}");
}

#[cfg(feature = "serde-oracle")]
fn struct_as_array(text: &str) -> bool {
    use serde_json::Value;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(_)) => true,
        Ok(Value::Object(map)) => ["services", "lines"].iter().any(|key| {
            matches!(map.get(*key), Some(Value::Array(items))
                if items.iter().any(Value::is_array))
        }),
        _ => false,
    }
}

fn check_response(response: Response) {
    let line = protocol::encode_response(&response);
    let body = line
        .strip_suffix('\n')
        .expect("a response line ends in a newline");
    assert!(!body.contains('\n'), "{line:?}");
    assert_eq!(protocol::decode_response(body), Ok(response));
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Target `http_request`: what an HTTP client sends first on a connection
/// to `--http`, through the server's request path (`http::exchange`), with
/// four answers of the loop to render pages from. Properties: whole, byte
/// by byte or in two, the bytes get the same answer; an answer is exactly
/// one well-formed HTTP/1.1 response (status line, the header fields corral
/// always sends, a body of Content-Length bytes, none for HEAD) with the
/// code the request calls for; the server waits only while the head is not
/// whole and shorter than `MAX_HEAD`. Then valid GET and HEAD requests made
/// from the input get exactly the page's code.
pub fn http_request(data: &[u8]) {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let loops = loop_answers();
    let answers: Vec<Option<Vec<u8>>> = loops
        .iter()
        .map(|(_, status)| http::exchange([data], status, now))
        .collect();
    let good = &loops[0].1;
    assert_eq!(
        http::exchange(data.chunks(1), good, now),
        answers[0],
        "read byte by byte"
    );
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(cut);
    assert_eq!(
        http::exchange([a, b], good, now),
        answers[0],
        "read in two at {cut}"
    );

    let framed = frame(data);
    let mut codes = Vec::new();
    for ((name, _), answer) in loops.iter().zip(&answers) {
        let (expect, head_only) = match (&framed, answer) {
            (Framed::Waiting, None) => continue,
            (Framed::Waiting, Some(answer)) => panic!(
                "{name}: answered a head that is not whole: {:?}",
                String::from_utf8_lossy(answer)
            ),
            (framed, None) => panic!("{name}: waits for more after {framed:?}"),
            (Framed::TooLong, Some(_)) => (&[431][..], false),
            (Framed::Head(head), Some(_)) => expected_codes(head),
        };
        let Some(answer) = answer else { continue };
        let code = check_http_response(answer, head_only, name);
        assert!(
            expect.contains(&code),
            "{name}: {code}, expected one of {expect:?}"
        );
        codes.push(code);
    }
    // Only pages depend on the loop's answer: a page is 200 with the good
    // answer, and 503 when the loop is busy or failed.
    if let [good, down, busy, failed] = codes.as_slice() {
        match good {
            200 => assert!(
                [200, 503].contains(down) && *busy == 503 && *failed == 503,
                "{codes:?}"
            ),
            _ => assert!(codes.iter().all(|c| c == good), "{codes:?}"),
        }
    }

    // Valid requests made from the input: exactly the page's code.
    let query: String = data
        .iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .take(32)
        .map(|&b| char::from(b))
        .collect();
    for (path, page) in [
        ("/healthz", Some(0)),
        ("/readyz", Some(1)),
        ("/metrics", Some(2)),
        ("/healthz.txt", None),
    ] {
        for method in ["GET", "HEAD"] {
            let target = match query.as_str() {
                "" => path.to_string(),
                query => format!("{path}?{query}"),
            };
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {query}\r\n\r\n"
            );
            for ((name, status), codes) in loops.iter().zip(PAGE_CODES) {
                let answer = http::exchange([request.as_bytes()], status, now);
                let answer = answer.unwrap_or_else(|| panic!("{request:?} waits for more"));
                let code = check_http_response(&answer, method == "HEAD", name);
                let expected = page.map_or(404, |page| codes[page]);
                assert_eq!(code, expected, "{name}: {request:?}");
            }
        }
    }
}

/// What the loop answers a status request with (or why it does not), by
/// name: every service up; the essential one in backoff; no answer in
/// time; an error.
fn loop_answers() -> [(&'static str, Result<Response, String>); 4] {
    let service = |state: &str, ready| ServiceStatus {
        name: "web".into(),
        state: state.into(),
        want: "up".into(),
        ready,
        enabled: true,
        essential: true,
        ..ServiceStatus::default()
    };
    let status = |web| Response {
        services: vec![web],
        phase: Some("up".into()),
        ..Response::ok()
    };
    [
        ("good", Ok(status(service("running", true)))),
        ("down", Ok(status(service("backoff", false)))),
        ("busy", Err("corral busy".into())),
        ("failed", Ok(Response::error("corral is shutting down"))),
    ]
}

/// The codes of `/healthz`, `/readyz` and `/metrics` for each of
/// `loop_answers`.
const PAGE_CODES: [[u16; 3]; 4] = [
    [200, 200, 200],
    [503, 503, 200],
    [503, 503, 503],
    [503, 503, 503],
];

/// Where a head ends, found apart from the server's own framing: blank
/// lines before it skipped, then up to the first empty line.
#[derive(Debug)]
enum Framed<'a> {
    Waiting,
    TooLong,
    Head(&'a [u8]),
}

fn frame(data: &[u8]) -> Framed<'_> {
    let Some(start) = data.iter().position(|&b| b != b'\r' && b != b'\n') else {
        return Framed::Waiting;
    };
    let rest = &data[start..];
    let find = |needle: &[u8]| rest.windows(needle.len()).position(|w| w == needle);
    let ends = [find(b"\n\n").map(|i| i + 2), find(b"\n\r\n").map(|i| i + 3)];
    match ends.into_iter().flatten().min() {
        Some(end) if end <= http::MAX_HEAD => Framed::Head(&rest[..end]),
        _ if rest.len() >= http::MAX_HEAD => Framed::TooLong,
        _ => Framed::Waiting,
    }
}

/// The codes a whole head may get, by httparse's reading of it (which
/// page it names is the server's business: 404 or a page's code), and
/// whether the answer has no body (HEAD).
fn expected_codes(head: &[u8]) -> (&'static [u16], bool) {
    let mut fields = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return (&[431], false),
        Ok(httparse::Status::Partial) | Err(_) => return (&[400, 505], false),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        panic!("httparse: a complete request without method or target");
    };
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        (&[400], false)
    } else if method == "GET" || method == "HEAD" {
        (&[200, 503, 404], method == "HEAD")
    } else {
        (&[405, 404], false)
    }
}

/// Checks that `answer` is exactly one HTTP/1.1 response as corral writes
/// them (at the time `http_request` gives); returns its status code.
fn check_http_response(answer: &[u8], head_only: bool, name: &str) -> u16 {
    let text = std::str::from_utf8(answer)
        .unwrap_or_else(|e| panic!("{name}: not UTF-8 ({e}): {answer:?}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{name}: no end of head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let (code, reason) = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(code, reason)| Some((code.parse::<u16>().ok()?, reason)))
        .unwrap_or_else(|| panic!("{name}: bad status line {status_line:?}"));
    let expected_reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => panic!("{name}: unexpected status code {code}"),
    };
    assert_eq!(reason, expected_reason, "{name}: {status_line:?}");
    let mut fields = BTreeMap::new();
    for line in lines {
        let (field, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("{name}: bad header field {line:?}"));
        assert!(
            !field.is_empty()
                && field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{name}: field name {field:?}"
        );
        assert!(
            value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "{name}: field value {value:?}"
        );
        assert!(
            fields.insert(field, value).is_none(),
            "{name}: {field} twice"
        );
    }
    let mut names: Vec<&str> = fields.keys().copied().collect();
    names.sort_unstable();
    let mut expected = vec!["Connection", "Content-Length", "Content-Type", "Date"];
    if code == 405 {
        expected.push("Allow");
        assert_eq!(fields.get("Allow"), Some(&"GET, HEAD"), "{name}");
    }
    expected.sort_unstable();
    assert_eq!(names, expected, "{name}: header fields");
    assert_eq!(fields.get("Connection"), Some(&"close"), "{name}");
    assert_eq!(
        fields.get("Date"),
        Some(&"Tue, 14 Nov 2023 22:13:20 GMT"),
        "{name}"
    );
    assert!(
        fields.get("Content-Type").is_some_and(|t| [
            "text/plain; charset=utf-8",
            "text/plain; version=0.0.4; charset=utf-8"
        ]
        .contains(t)),
        "{name}: {fields:?}"
    );
    let length: usize = fields
        .get("Content-Length")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}: Content-Length {fields:?}"));
    assert!(length > 0, "{name}: every answer explains itself");
    // A HEAD answer has the header fields of GET's and no body; nothing
    // follows the one answer.
    let expected_body = if head_only { 0 } else { length };
    assert_eq!(body.len(), expected_body, "{name}: {text:?}");
    code
}

/// `text::execline::command_line` (s6-rc `up`/`down` files, `s6-notifyoncheck
/// -c`): never panics; an error points inside the text; and a plain command
/// line, each word written back double-quoted, reads back as the same argv.
pub fn execline(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match corral::text::execline::command_line(text) {
        Err(err) => {
            let lines = text.split('\n').count();
            assert!(err.line >= 1 && err.line <= lines, "{err:?} in {text:?}");
            assert!(err.col >= 1, "{err:?}");
        }
        Ok(None) => {}
        Ok(Some(argv)) => {
            let quoted: Vec<String> = argv
                .iter()
                .map(|w| format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let again = corral::text::execline::command_line(&quoted.join(" "));
            assert_eq!(again, Ok(Some(argv)), "{text:?}");
        }
    }
}

/// Target `syslog_datagram`: one datagram on the `--syslog` socket, any
/// bytes a service sends. The parse never panics and keeps its promises
/// (priority in range, a tag of tag characters, every part a piece of the
/// datagram); the record holds no control character but tab and is one
/// line; and the datagram's own tag, pid and message, written back as
/// glibc, RFC 5424 and a sender without `<PRI>` write them, read back the
/// same.
pub fn syslog_datagram(data: &[u8]) {
    use corral::syslog::{self, Record, parse::MAX_TAG};

    let parsed = syslog::parse(data);
    assert_eq!(parsed, syslog::parse(data), "two answers for one datagram");
    assert!(parsed.facility <= 23 && parsed.severity <= 7, "{parsed:?}");
    assert!(parsed.tag.len() <= MAX_TAG, "{parsed:?}");
    assert!(parsed.tag.iter().all(|&b| syslog_tag_byte(b)), "{parsed:?}");
    let range = data.as_ptr_range();
    for part in [parsed.tag, parsed.message, parsed.structured_data] {
        let inside = part.is_empty()
            || (range.start <= part.as_ptr() && part.as_ptr_range().end <= range.end);
        assert!(
            inside,
            "a part that is not a piece of the datagram: {parsed:?}"
        );
    }
    assert!(
        !matches!(parsed.message.last(), Some(b'\0' | b'\n' | b'\r')),
        "{parsed:?}"
    );

    let record = Record::new(data, UNIX_EPOCH, None);
    for text in [&record.tag, &record.message, &record.structured_data] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\t'),
            "{text:?}"
        );
    }
    assert_eq!(
        record.message,
        corral::text::escape(
            &String::from_utf8_lossy(parsed.message),
            corral::text::Form::Log
        ),
    );
    assert!(!record.text_line().contains('\n'));
    assert!(record.text_line().ends_with(&record.message));

    // The datagram as parts: the tag characters among its first bytes, a
    // pid from its length, the rest as the message.
    let split = data.len().min(24);
    let tag: Vec<u8> = data[..split]
        .iter()
        .copied()
        .filter(|&b| syslog_tag_byte(b))
        .take(MAX_TAG)
        .collect();
    if tag.is_empty() {
        return;
    }
    let message = &data[split..];
    let pri = data[0] % 192;
    let pid = (data.len() as u32).wrapping_mul(7919);
    let tag_text = String::from_utf8_lossy(&tag);
    let mut written = Vec::new();
    written.push(format!("<{pri}>Dec  4 19:00:00 {tag_text}[{pid}]: ").into_bytes());
    written.push(format!("<{pri}>1 2026-12-04T19:00:00Z host {tag_text} {pid} - - ").into_bytes());
    written.push(format!("{tag_text}[{pid}]: ").into_bytes());
    let mut kept = message;
    while let [rest @ .., b'\0' | b'\n' | b'\r'] = kept {
        kept = rest;
    }
    for (i, mut datagram) in written.into_iter().enumerate() {
        datagram.extend_from_slice(message);
        let again = syslog::parse(&datagram);
        let (facility, severity) = if i == 2 { (1, 5) } else { (pri >> 3, pri & 7) };
        // RFC 5424: a BOM starts the message; `-` is no APP-NAME.
        let (expected_tag, expected_message) = if i == 1 {
            let tag = if tag == b"-" { &[][..] } else { &tag[..] };
            let message = kept.strip_prefix(b"\xEF\xBB\xBF".as_slice());
            (tag, message.unwrap_or(kept))
        } else {
            (&tag[..], kept)
        };
        assert_eq!(
            (
                again.facility,
                again.severity,
                again.tag,
                again.pid,
                again.message
            ),
            (
                facility,
                severity,
                expected_tag,
                Some(pid),
                expected_message
            ),
            "written as {:?}",
            String::from_utf8_lossy(&datagram)
        );
    }
}

/// What `syslog::parse` lets into a tag.
fn syslog_tag_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_./@+~#".contains(&b)
}
