//! The control protocol: one JSON object per line, each way.
//!
//! A request is `{"v": 1, "op": "...", ...}`; every answer is a `Response`
//! line, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. `logs` with
//! `follow` keeps sending one `Response` per new line until the client
//! closes. A request with a key twice in an object, at any depth, is
//! malformed (`unique_json`). Shared by the server (`control::server`), the
//! clients (`control::client`, `s6`), the HTTP endpoint (`http`) and the
//! supervisor core, which answers requests.
//!
//! What it owns: the wire format, its limits, and what a `ServiceStatus`
//! means (`is_up`, `is_ready_as_wanted`: one definition for `ctl health`,
//! `/healthz`, `/readyz` and the metrics). What it must never do: import
//! another module of corral. It is vocabulary, below everything that
//! speaks it, so the core can use it without depending on the socket.
//!
//! ```text
//! $ echo '{"v":1,"op":"status"}' | socat - UNIX-CONNECT:/run/corral/control.sock
//! {"ok":true,"services":[{"name":"web","state":"running","pid":12,...}]}
//! $ echo '{"v":1,"op":"stop","services":["web"]}' | socat - UNIX-CONNECT:...
//! {"ok":true,"messages":["web: stopped (killed by SIGTERM)"]}
//! ```
//!
//! | op | fields | answer |
//! |---|---|---|
//! | `status` | `services` (names; empty = all) | `services`: [`ServiceStatus`] |
//! | `start`, `stop`, `restart` | `services` or `all: true` | when done: `messages`, one per service |
//! | `signal` | `signal` (name), `services` | `messages` |
//! | `logs` | `service` or `all: true` (every service, in time order), `lines` (default 100), `follow`, `since_ms` (only lines read in the last so many ms), `json` (each `line` escaped as `--output-format json` writes it) | `lines`: [`LogLine`]; with `follow`, more responses |
//! | `wait` | `services`, `timeout_ms` (none = forever), `until` (`Until`; none: started), `since_run`; older clients: `ready` | once `until` holds of every one |
//! | `reload` | `services` (empty: re-read the definitions, as SIGHUP) | when each is reloaded and ready again |
//! | `health` | | `ok: true`, or `ok: false` with `problems` |
//! | `shutdown` | `exit_code` | at once; the shutdown follows |
//! | `run` | `service` (a scheduled service or a oneshot) | when the run ends: `ok` as it succeeded, `messages` or `error` with its outcome |

mod json;

use serde::{Deserialize, Serialize};

/// The protocol version this corral speaks; requests must carry it as `v`.
pub const VERSION: u32 = 1;

/// Longest accepted request line, newline excluded.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Deepest accepted request (see `nesting`); the deepest the protocol needs
/// is 2, an object holding a list. A server checks this before
/// `decode_request`, whose recursion a small thread stack may not survive.
pub const MAX_NESTING: usize = 16;

/// Read by `decode_request`, by hand (see `Fields`); written by serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Status {
        #[serde(default)]
        services: Vec<String>,
    },
    Start(Targets),
    Stop(Targets),
    Restart(Targets),
    Signal {
        signal: String,
        services: Vec<String>,
    },
    Logs {
        /// Empty with `all`.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        service: String,
        #[serde(default)]
        lines: Option<usize>,
        #[serde(default)]
        follow: bool,
        /// Every service's lines, merged in the order they were read.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all: bool,
        /// Only lines read at most this long ago.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_ms: Option<u64>,
        /// Each `LogLine::line` escaped as `--output-format json` writes it
        /// (invalid UTF-8 as `\xNN`, see `output::format`), not lossy.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        json: bool,
    },
    /// Answered once `until` holds of every service named (build it with
    /// `Request::wait`).
    Wait {
        services: Vec<String>,
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// The older form of `until: "ready"`, which clients before `until`
        /// send; with `until`, it may only agree.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ready: bool,
        /// None: `started` (or `ready`, with `ready`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<Until>,
        /// The run (`ServiceStatus::run`) that `down`, `finished`,
        /// `restarted` and `restarted-ready` count from, when exactly one
        /// service is named; none: the run current when corral receives the
        /// request. A client that acts before it waits (`s6-svc -t -wr`)
        /// names the run it saw before acting, so that a restart done
        /// before its wait arrived still counts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_run: Option<u32>,
    },
    /// The named services' reloads (answered once each is done and ready
    /// again); no name: re-read every definition (like SIGHUP), then reload
    /// every service that defines a reload.
    Reload {
        #[serde(default)]
        services: Vec<String>,
    },
    Health {},
    Shutdown {
        #[serde(default)]
        exit_code: Option<i32>,
    },
    /// Run a scheduled or oneshot service now; answered when the run ends
    /// (`ok` as it succeeded, with its outcome).
    Run {
        service: String,
    },
    /// Run `replicas` instances of a service with `replicas` (new ones
    /// started, the highest stopped); answered at once.
    Scale {
        service: String,
        replicas: u32,
    },
}

/// What a `wait` waits for, of every service it names: s6-svc's and
/// s6-svwait's `-u -U -d -D -r -R`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Until {
    /// A process runs (a oneshot: it exited 0).
    Started,
    /// Ready: its readiness check passed (a oneshot: it exited 0).
    Ready,
    /// No process (its s6 `finish` script may still run).
    Down,
    /// No process, and no `finish` script running.
    Finished,
    /// A run began after the one counted from (see `since_run`).
    Restarted,
    /// A run after the one counted from is ready.
    RestartedReady,
}

impl Until {
    /// As a client writes it.
    pub fn name(self) -> &'static str {
        match self {
            Until::Started => "started",
            Until::Ready => "ready",
            Until::Down => "down",
            Until::Finished => "finished",
            Until::Restarted => "restarted",
            Until::RestartedReady => "restarted-ready",
        }
    }
}

impl Request {
    /// A `wait` for `until`: started and ready in the form corrals before
    /// `until` understand too (`ready`, and no `since_run`, which they
    /// would not need).
    pub fn wait(
        services: Vec<String>,
        timeout_ms: Option<u64>,
        until: Until,
        since_run: Option<u32>,
    ) -> Request {
        match until {
            Until::Started | Until::Ready => Request::Wait {
                services,
                timeout_ms,
                ready: until == Until::Ready,
                until: None,
                since_run: None,
            },
            _ => Request::Wait {
                services,
                timeout_ms,
                ready: false,
                until: Some(until),
                since_run,
            },
        }
    }
}

/// Named services, or every one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Targets {
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub all: bool,
}

/// Read by `decode_response`, by hand (`json`); written by serde.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(any(test, feature = "serde-oracle"), derive(Deserialize))]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One line per service acted on, for people.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceStatus>,
    /// `health`: what is not running / ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LogLine>,
    /// `status`: orphans (processes not started by corral) reaped so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphans_reaped: Option<u64>,
    /// `status`: `init`, `up`, `stopping`, ... (the supervisor's phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(message.into()),
            ..Response::default()
        }
    }

    pub fn messages(messages: Vec<String>) -> Response {
        Response {
            ok: true,
            messages,
            ..Response::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(any(test, feature = "serde-oracle"), derive(Deserialize))]
pub struct ServiceStatus {
    pub name: String,
    /// `starting`, `running`, `stopping`, `stopped`, `backoff`, `exited`, `failed`.
    pub state: String,
    /// What the user wants: `up` or `down`.
    pub want: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Time since the current process started, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// Time since it last went up or down: since its process started
    /// while it runs, since it ended after that; none before its first
    /// run (s6-svstat's seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updown_ms: Option<u64>,
    /// Time since its current run became ready, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<u64>,
    pub restarts: u32,
    /// The number of its current (or last) run: 1 for its first process,
    /// 0 before it has had one. What `wait`'s `since_run` counts from.
    #[serde(default)]
    pub run: u32,
    pub ready: bool,
    /// `exit 1`, `killed by SIGSEGV`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// The shell-style status of the last exit (128+N for signal N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i32>,
    /// backoff: time to the next start; failed: the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start_ms: Option<u64>,
    pub oneshot: bool,
    pub enabled: bool,
    #[serde(default)]
    pub essential: bool,
    /// The last `STATUS=` the service sent over sd_notify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_status: Option<String>,
    /// Whether the last exit counts as a success: one of the service's
    /// `success-exit-codes` (a death by signal never does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_ok: Option<bool>,
    /// A scheduled service: its `schedule` as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Its next tick, RFC 3339 in the container's zone
    /// (`2026-12-04T21:00:00+01:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// Time to its next tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_ms: Option<u64>,
    /// Its last run: `exit 0`, `killed by SIGTERM`, `could not be
    /// started: ...`; with its shell-style status (none if it could not
    /// start), whether it succeeded, how long ago it ended, how long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_ago_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_took_ms: Option<u64>,
    /// Ticks skipped: the previous run was still going, or a service it
    /// runs after was not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_ticks: Option<u32>,
}

impl ServiceStatus {
    /// Up: its process runs, or it is a oneshot that did its job (exited
    /// 0). `running` is a service without a readiness check, or one that is
    /// reloading; `ready`, one whose readiness check passed (the name
    /// `status` gives that state; `State::name` has no such name). What
    /// `/healthz` asks of every essential service, and `corral_service_up`.
    pub fn is_up(&self) -> bool {
        matches!(self.state.as_str(), "running" | "ready")
            || (self.oneshot && self.state == "exited")
    }

    /// Ready, if it is wanted up; one wanted down (stopped or disabled on
    /// purpose) always is. What `ctl health` and `/readyz` ask of every
    /// service.
    pub fn is_ready_as_wanted(&self) -> bool {
        self.want != "up" || self.ready
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(any(test, feature = "serde-oracle"), derive(Deserialize))]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
    /// The service that wrote it (servers before `all` leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// When it was read: RFC 3339 UTC with milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
    /// The pid of the run that wrote it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// A line of the pseudo-service `syslog`: its message's facility and
    /// severity (`local0`, `notice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

/// Parse one request line: JSON without a key twice in any object, the
/// right version, a known op.
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    let mut value = unique_json(line).map_err(|e| format!("malformed request: {e}"))?;
    let Some(object) = value.as_object_mut() else {
        return Err("malformed request: expected a JSON object".into());
    };
    match object.remove("v") {
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        // Shown as JSON: a string "1" reads as `"1"`, not as 1.
        Some(v) => {
            return Err(format!(
                "unsupported protocol version {v}: this corral speaks version {VERSION}"
            ));
        }
        None => return Err(format!("missing protocol version: add \"v\": {VERSION}")),
    }
    let object = std::mem::take(object);
    request_from(Fields(object)).map_err(|e| format!("malformed request: {e}"))
}

/// Each op and its fields (besides `op` and `v`).
const OPS: &[(&str, &[&str])] = &[
    ("status", &["services"]),
    ("start", &["services", "all"]),
    ("stop", &["services", "all"]),
    ("restart", &["services", "all"]),
    ("signal", &["signal", "services"]),
    (
        "logs",
        &["service", "lines", "follow", "all", "since_ms", "json"],
    ),
    (
        "wait",
        &["services", "timeout_ms", "ready", "until", "since_run"],
    ),
    ("reload", &["services"]),
    ("health", &[]),
    ("shutdown", &["exit_code"]),
    ("run", &["service"]),
    ("scale", &["service", "replicas"]),
];

/// The request an object (its `v` taken out) spells. By hand, not serde's
/// derive: an internally tagged enum's deserializer was 23 KB of the
/// binary. Same rules: a known `op`, no field it does not know, the
/// required ones present, each of its type; `null` is an optional field
/// left out.
fn request_from(mut f: Fields) -> Result<Request, String> {
    let op = match f.0.remove("op") {
        Some(serde_json::Value::String(op)) => op,
        Some(other) => return Err(format!("invalid type: {other}, expected the op's name")),
        None => return Err("missing field `op`".into()),
    };
    let Some(&(_, known)) = OPS.iter().find(|(name, _)| *name == op) else {
        let ops: Vec<&str> = OPS.iter().map(|(name, _)| *name).collect();
        let ops = ops.join("`, `");
        return Err(format!("unknown variant `{op}`, expected one of `{ops}`"));
    };
    if let Some(key) = f.0.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(match known {
            [] => format!("unknown field `{key}`: `{op}` takes none"),
            _ => format!(
                "unknown field `{key}`, expected one of `{}`",
                known.join("`, `")
            ),
        });
    }
    let targets = |f: &mut Fields| -> Result<Targets, String> {
        Ok(Targets {
            services: f.optional("services")?,
            all: f.optional("all")?,
        })
    };
    Ok(match op.as_str() {
        "status" => Request::Status {
            services: f.optional("services")?,
        },
        "start" => Request::Start(targets(&mut f)?),
        "stop" => Request::Stop(targets(&mut f)?),
        "restart" => Request::Restart(targets(&mut f)?),
        "signal" => Request::Signal {
            signal: f.required("signal")?,
            services: f.required("services")?,
        },
        "logs" => Request::Logs {
            service: f.optional("service")?,
            lines: f.optional("lines")?,
            follow: f.optional("follow")?,
            all: f.optional("all")?,
            since_ms: f.optional("since_ms")?,
            json: f.optional("json")?,
        },
        "wait" => Request::Wait {
            services: f.required("services")?,
            timeout_ms: f.optional("timeout_ms")?,
            ready: f.optional("ready")?,
            until: f.optional("until")?,
            since_run: f.optional("since_run")?,
        },
        "reload" => Request::Reload {
            services: f.optional("services")?,
        },
        "shutdown" => Request::Shutdown {
            exit_code: f.optional("exit_code")?,
        },
        "run" => Request::Run {
            service: f.required("service")?,
        },
        "scale" => Request::Scale {
            service: f.required("service")?,
            replicas: f.required("replicas")?,
        },
        // `health`, the one op left (`op` is one of OPS).
        _ => Request::Health {},
    })
}

/// A request's fields, taken out one by one.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Fields {
    /// The field, or its type's default if it is absent or `null`.
    fn optional<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        key: &str,
    ) -> Result<T, String> {
        match self.0.remove(key) {
            None | Some(serde_json::Value::Null) => Ok(T::default()),
            Some(value) => Self::read(key, value),
        }
    }

    fn required<T: serde::de::DeserializeOwned>(&mut self, key: &str) -> Result<T, String> {
        match self.0.remove(key) {
            Some(value) => Self::read(key, value),
            None => Err(format!("missing field `{key}`")),
        }
    }

    fn read<T: serde::de::DeserializeOwned>(
        key: &str,
        value: serde_json::Value,
    ) -> Result<T, String> {
        serde_json::from_value(value).map_err(|e| format!("field `{key}`: {e}"))
    }
}

/// Parse `text` as JSON in which no object has the same key twice, at any
/// depth. serde_json keeps the last of two, so `{"op":"status","op":"shutdown"}`
/// would be a shutdown to corral and a status to anything reading the first
/// (a log, a proxy, a person): such a request is refused, not guessed at.
/// Keys are compared after unescaping (`"o\u0070"` is `"op"`).
pub fn unique_json(text: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_slice::<Unique>(text).map(|unique| unique.0)
}

/// A JSON value whose objects have no duplicate key (see `unique_json`).
struct Unique(serde_json::Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Unique, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // JSON text has no NaN or infinity; `Null` as serde_json's own `Value` does.
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                // Debug form: quoted, and a key's control characters escaped.
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            let Unique(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// How deeply JSON arrays and objects nest in `text` (brackets inside
/// strings do not count). Invalid JSON is counted all the same: the parser
/// rejects it afterwards. Linear, and never recurses.
pub fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// One request line, newline included.
pub fn encode_request(request: &Request) -> String {
    let mut value = serde_json::to_value(request).unwrap_or(serde_json::Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("v".into(), VERSION.into());
    }
    format!("{value}\n")
}

/// One response line, newline included.
pub fn encode_response(response: &Response) -> String {
    // About 200 bytes per service of a status, 200 per log line: one
    // allocation in the common case, and no copy to append the newline.
    let hint = 64 + 200 * (response.services.len() + response.lines.len());
    let mut json = Vec::with_capacity(hint);
    match serde_json::to_writer(&mut json, response) {
        Ok(()) => {
            json.push(b'\n');
            // serde_json writes UTF-8 only.
            String::from_utf8(json).unwrap_or_default()
        }
        // Unreachable for these plain types; still never panic.
        Err(e) => format!("{{\"ok\":false,\"error\":\"cannot encode response: {e}\"}}\n"),
    }
}

/// One response line, read field by field (`json`): what serde's derive
/// reads (`the_hand_decoder_reads_what_serde_reads`), in 17 KB less code.
pub fn decode_response(line: &str) -> Result<Response, String> {
    let mut reader = json::Reader::new(line);
    response(&mut reader)
        .and_then(|response| reader.end().map(|()| response))
        .map_err(|e| format!("malformed response from corral: {e}"))
}

/// A struct's fields as serde writes them (in declaration order), and
/// which were read: one twice is refused and a missing required one named,
/// as serde's derive does.
struct Known {
    names: &'static [&'static str],
    /// Where to look first: after the last field found. A server writes
    /// them in order, so one compare finds each.
    next: usize,
    seen: u64,
}

impl Known {
    fn new(names: &'static [&'static str]) -> Known {
        Known {
            names,
            next: 0,
            seen: 0,
        }
    }

    /// The index of field `key`, marked read; `None` for a key it does not
    /// have (skipped, as serde does).
    fn find(&mut self, r: &json::Reader<'_>, key: &str) -> json::Result<Option<usize>> {
        let n = self.names.len();
        let Some(i) = (0..n)
            .map(|i| (self.next + i) % n)
            .find(|&i| self.names.get(i) == Some(&key))
        else {
            return Ok(None);
        };
        if self.seen & (1 << i) != 0 {
            return r.error(&format!("duplicate field `{key}`"));
        }
        self.seen |= 1 << i;
        self.next = i + 1;
        Ok(Some(i))
    }

    /// The `required` fields (indices) were all read.
    fn require(&self, r: &json::Reader<'_>, required: &[usize]) -> json::Result<()> {
        match required.iter().find(|&&i| self.seen & (1 << i) == 0) {
            Some(i) => r.error(&format!(
                "missing field `{}`",
                self.names.get(*i).unwrap_or(&"")
            )),
            None => Ok(()),
        }
    }
}

fn response(r: &mut json::Reader<'_>) -> json::Result<Response> {
    let mut out = Response::default();
    let mut known = Known::new(&[
        "ok",
        "error",
        "messages",
        "services",
        "problems",
        "lines",
        "orphans_reaped",
        "phase",
    ]);
    r.object(|r, key| {
        match known.find(r, key)? {
            None => r.skip()?,
            Some(0) => out.ok = r.bool()?,
            Some(1) => out.error = r.option(json::Reader::string)?,
            Some(2) => out.messages = r.strings()?,
            Some(3) => r.array(|r| service_status(r).map(|s| out.services.push(s)))?,
            Some(4) => out.problems = r.strings()?,
            Some(5) => r.array(|r| log_line(r).map(|l| out.lines.push(l)))?,
            Some(6) => out.orphans_reaped = r.option(json::Reader::integer)?,
            Some(_) => out.phase = r.option(json::Reader::string)?,
        }
        Ok(())
    })?;
    known.require(r, &[0])?;
    Ok(out)
}

fn service_status(r: &mut json::Reader<'_>) -> json::Result<ServiceStatus> {
    let mut s = ServiceStatus::default();
    let mut known = Known::new(&[
        "name",
        "state",
        "want",
        "pid",
        "uptime_ms",
        "updown_ms",
        "ready_ms",
        "restarts",
        "run",
        "ready",
        "last_exit",
        "last_exit_code",
        "detail",
        "next_start_ms",
        "oneshot",
        "enabled",
        "essential",
        "notify_status",
        "last_exit_ok",
        "schedule",
        "next_run",
        "next_run_ms",
        "last_run",
        "last_run_code",
        "last_run_ok",
        "last_run_ago_ms",
        "last_run_took_ms",
        "skipped_ticks",
    ]);
    r.object(|r, key| {
        let text = |r: &mut json::Reader<'_>| r.option(json::Reader::string);
        let ms = |r: &mut json::Reader<'_>| r.option(json::Reader::integer::<u64>);
        let flag = |r: &mut json::Reader<'_>| r.option(json::Reader::bool);
        match known.find(r, key)? {
            None => r.skip()?,
            Some(0) => s.name = r.string()?,
            Some(1) => s.state = r.string()?,
            Some(2) => s.want = r.string()?,
            Some(3) => s.pid = r.option(json::Reader::integer)?,
            Some(4) => s.uptime_ms = ms(r)?,
            Some(5) => s.updown_ms = ms(r)?,
            Some(6) => s.ready_ms = ms(r)?,
            Some(7) => s.restarts = r.integer()?,
            Some(8) => s.run = r.integer()?,
            Some(9) => s.ready = r.bool()?,
            Some(10) => s.last_exit = text(r)?,
            Some(11) => s.last_exit_code = r.option(json::Reader::integer)?,
            Some(12) => s.detail = text(r)?,
            Some(13) => s.next_start_ms = ms(r)?,
            Some(14) => s.oneshot = r.bool()?,
            Some(15) => s.enabled = r.bool()?,
            Some(16) => s.essential = r.bool()?,
            Some(17) => s.notify_status = text(r)?,
            Some(18) => s.last_exit_ok = flag(r)?,
            Some(19) => s.schedule = text(r)?,
            Some(20) => s.next_run = text(r)?,
            Some(21) => s.next_run_ms = ms(r)?,
            Some(22) => s.last_run = text(r)?,
            Some(23) => s.last_run_code = r.option(json::Reader::integer)?,
            Some(24) => s.last_run_ok = flag(r)?,
            Some(25) => s.last_run_ago_ms = ms(r)?,
            Some(26) => s.last_run_took_ms = ms(r)?,
            Some(_) => s.skipped_ticks = r.option(json::Reader::integer)?,
        }
        Ok(())
    })?;
    // name, state, want, restarts, ready, oneshot, enabled.
    known.require(r, &[0, 1, 2, 7, 9, 14, 15])?;
    Ok(s)
}

fn log_line(r: &mut json::Reader<'_>) -> json::Result<LogLine> {
    let mut line = LogLine {
        stream: String::new(),
        line: String::new(),
        service: None,
        ts: None,
        pid: None,
        facility: None,
        severity: None,
    };
    let mut known = Known::new(&[
        "stream", "line", "service", "ts", "pid", "facility", "severity",
    ]);
    r.object(|r, key| {
        let text = |r: &mut json::Reader<'_>| r.option(json::Reader::string);
        match known.find(r, key)? {
            None => r.skip()?,
            Some(0) => line.stream = r.string()?,
            Some(1) => line.line = r.string()?,
            Some(2) => line.service = text(r)?,
            Some(3) => line.ts = text(r)?,
            Some(4) => line.pid = r.option(json::Reader::integer)?,
            Some(5) => line.facility = text(r)?,
            Some(_) => line.severity = text(r)?,
        }
        Ok(())
    })?;
    known.require(r, &[0, 1])?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, want: &str, ready: bool, oneshot: bool) -> ServiceStatus {
        ServiceStatus {
            name: "web".into(),
            state: state.into(),
            want: want.into(),
            ready,
            oneshot,
            ..ServiceStatus::default()
        }
    }

    #[test]
    fn up_is_a_running_process_or_a_oneshot_done() {
        // As the core reports them: `ready` for a running service whose
        // readiness check passed, `running` without one (or reloading).
        assert!(status("running", "up", true, false).is_up());
        assert!(status("running", "up", false, false).is_up());
        assert!(status("ready", "up", true, false).is_up());
        assert!(status("exited", "up", true, true).is_up());
        assert!(!status("exited", "up", false, false).is_up());
        for state in ["starting", "stopping", "stopped", "backoff", "failed"] {
            assert!(!status(state, "up", false, false).is_up(), "{state}");
        }
    }

    #[test]
    fn ready_as_wanted_asks_readiness_only_of_services_wanted_up() {
        assert!(status("ready", "up", true, false).is_ready_as_wanted());
        assert!(!status("running", "up", false, false).is_ready_as_wanted());
        assert!(!status("starting", "up", false, false).is_ready_as_wanted());
        assert!(status("stopped", "down", false, false).is_ready_as_wanted());
    }

    #[test]
    fn requests_round_trip_with_their_version() {
        let requests = [
            Request::Status { services: vec![] },
            Request::Stop(Targets {
                services: vec!["web".into()],
                all: false,
            }),
            Request::Start(Targets {
                services: vec![],
                all: true,
            }),
            Request::Signal {
                signal: "HUP".into(),
                services: vec!["web".into()],
            },
            Request::Logs {
                service: "web".into(),
                lines: Some(5),
                follow: true,
                all: false,
                since_ms: None,
                json: false,
            },
            Request::Logs {
                service: String::new(),
                lines: None,
                follow: false,
                all: true,
                since_ms: Some(60_000),
                json: true,
            },
            Request::wait(vec!["db".into()], Some(1500), Until::Ready, None),
            Request::wait(vec!["db".into()], None, Until::RestartedReady, Some(3)),
            Request::Reload { services: vec![] },
            Request::Health {},
            Request::Shutdown { exit_code: Some(7) },
            Request::Shutdown { exit_code: None },
            Request::Status {
                services: vec!["a".into(), "b".into()],
            },
            Request::Restart(Targets::default()),
            Request::Reload {
                services: vec!["web".into()],
            },
            Request::Run {
                service: "backup".into(),
            },
            Request::Scale {
                service: "worker".into(),
                replicas: 3,
            },
        ];
        for request in requests {
            let line = encode_request(&request);
            assert!(line.contains("\"v\":1"), "{line}");
            assert_eq!(decode_request(line.trim_end().as_bytes()), Ok(request));
        }
    }

    #[test]
    fn a_wait_says_started_and_ready_as_older_corrals_read_them() {
        let line = |until, since_run| {
            encode_request(&Request::wait(vec!["web".into()], None, until, since_run))
        };
        assert_eq!(
            line(Until::Started, Some(2)),
            "{\"op\":\"wait\",\"services\":[\"web\"],\"timeout_ms\":null,\"v\":1}\n"
        );
        assert_eq!(
            line(Until::Ready, None),
            "{\"op\":\"wait\",\"ready\":true,\"services\":[\"web\"],\"timeout_ms\":null,\"v\":1}\n"
        );
        assert_eq!(
            line(Until::Finished, Some(2)),
            "{\"op\":\"wait\",\"services\":[\"web\"],\"since_run\":2,\"timeout_ms\":null,\"until\":\"finished\",\"v\":1}\n"
        );
        for until in [
            Until::Started,
            Until::Ready,
            Until::Down,
            Until::Finished,
            Until::Restarted,
            Until::RestartedReady,
        ] {
            assert_eq!(
                serde_json::to_value(until).ok(),
                Some(until.name().into()),
                "{until:?}"
            );
        }
        // What an older client sends still reads.
        assert_eq!(
            decode_request(br#"{"v":1,"op":"wait","services":["web"],"ready":true}"#),
            Ok(Request::wait(vec!["web".into()], None, Until::Ready, None))
        );
        let unknown = decode_request(br#"{"v":1,"op":"wait","services":["web"],"until":"gone"}"#)
            .unwrap_err();
        assert!(
            unknown.starts_with("malformed request: field `until`: unknown variant `gone`, expected one of `started`, `ready`, `down`, `finished`, `restarted`, `restarted-ready`"),
            "{unknown}"
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(
            decode_request(br#"{"op":"status"}"#),
            Err("missing protocol version: add \"v\": 1".into())
        );
        assert_eq!(
            decode_request(br#"{"v":2,"op":"status"}"#),
            Err("unsupported protocol version 2: this corral speaks version 1".into())
        );
        assert_eq!(
            decode_request(b"[1,2]"),
            Err("malformed request: expected a JSON object".into())
        );
        let unknown = decode_request(br#"{"v":1,"op":"explode"}"#).unwrap_err();
        assert!(
            unknown.starts_with("malformed request: unknown variant `explode`"),
            "{unknown}"
        );
        let garbage = decode_request(b"\x00\xffhello").unwrap_err();
        assert!(garbage.starts_with("malformed request:"), "{garbage}");
        let extra = decode_request(br#"{"v":1,"op":"health","force":true}"#).unwrap_err();
        assert!(extra.contains("unknown field `force`"), "{extra}");
        for (line, error) in [
            (
                &br#"{"v":1,"op":"health","force":true}"#[..],
                "unknown field `force`: `health` takes none",
            ),
            (
                br#"{"v":1,"op":"stop","service":"web"}"#,
                "unknown field `service`, expected one of `services`, `all`",
            ),
            (br#"{"v":1,"services":[]}"#, "missing field `op`"),
            (
                br#"{"v":1,"op":7}"#,
                "invalid type: 7, expected the op's name",
            ),
            (
                br#"{"v":1,"op":"signal","signal":"HUP"}"#,
                "missing field `services`",
            ),
            (
                br#"{"v":1,"op":"stop","all":"yes"}"#,
                "field `all`: invalid type: string \"yes\", expected a boolean",
            ),
            (
                br#"{"v":1,"op":"scale","service":"w","replicas":-1}"#,
                "field `replicas`: invalid value: integer `-1`, expected u32",
            ),
        ] {
            assert_eq!(
                decode_request(line),
                Err(format!("malformed request: {error}")),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // An optional field may be null: left out.
        assert_eq!(
            decode_request(br#"{"v":1,"op":"logs","service":"w","lines":null,"all":null}"#),
            Ok(Request::Logs {
                service: "w".into(),
                lines: None,
                follow: false,
                all: false,
                since_ms: None,
                json: false,
            })
        );
        let unknown = decode_request(br#"{"v":1,"op":"explode"}"#).unwrap_err();
        assert_eq!(
            unknown,
            "malformed request: unknown variant `explode`, expected one of `status`, `start`, \
             `stop`, `restart`, `signal`, `logs`, `wait`, `reload`, `health`, `shutdown`, `run`, \
             `scale`"
        );
    }

    #[test]
    fn a_key_twice_at_any_depth_is_refused() {
        for (line, key, column) in [
            (&br#"{"v":1,"op":"status","op":"shutdown"}"#[..], "op", 25),
            (br#"{"v":1,"v":1,"op":"health"}"#, "v", 10),
            // Escaped, it is the same key.
            (br#"{"v":1,"op":"health","o\u0070":"shutdown"}"#, "op", 30),
            (
                br#"{"v":1,"op":"status","services":[{"a":1,"a":2}]}"#,
                "a",
                43,
            ),
            (
                br#"{"v":1,"op":"health","x":{"y":{"k":[],"k":{}}}}"#,
                "k",
                41,
            ),
        ] {
            assert_eq!(
                decode_request(line),
                Err(format!(
                    "malformed request: duplicate key \"{key}\" at line 1 column {column}"
                )),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // The same key in two objects is no duplicate.
        assert_eq!(
            unique_json(br#"[{"a":1},{"a":{"a":2}}]"#).ok(),
            serde_json::from_str(r#"[{"a":1},{"a":{"a":2}}]"#).ok()
        );
        // Every JSON value comes through as serde_json reads it.
        let text = r#"{"s":"x\u001by","n":null,"t":true,"i":-3,"u":18446744073709551615,"f":1.5e300,"l":[[],{}]}"#;
        assert_eq!(
            unique_json(text.as_bytes()).ok(),
            serde_json::from_str::<serde_json::Value>(text).ok()
        );
    }

    #[test]
    fn nesting_counts_brackets_outside_strings() {
        assert_eq!(nesting(br#"{"v":1,"op":"status"}"#), 1);
        assert_eq!(nesting(br#"{"v":1,"op":"stop","services":["web"]}"#), 2);
        assert_eq!(nesting(br#"{"v":1,"op":"logs","service":"[[[{{{\"[["}"#), 1);
        assert_eq!(nesting(&[b'['; 5000]), 5000);
        assert_eq!(nesting(b"]]]]{"), 1);
        assert_eq!(nesting(b""), 0);
    }

    #[test]
    fn responses_round_trip() {
        let response = Response {
            services: vec![ServiceStatus {
                name: "web".into(),
                state: "running".into(),
                pid: Some(12),
                ..ServiceStatus::default()
            }],
            ..Response::ok()
        };
        let line = encode_response(&response);
        assert_eq!(decode_response(line.trim_end()), Ok(response));
        assert_eq!(
            encode_response(&Response::error("no service \"wbe\"")),
            "{\"ok\":false,\"error\":\"no service \\\"wbe\\\"\"}\n"
        );
    }
    /// A response with every field set, escapes and non-ASCII included.
    /// Written out in full (no `..`): a new field of `Response`,
    /// `ServiceStatus` or `LogLine` must be set here, and the round trip
    /// below fails until `decode_response` reads it.
    fn full_response() -> Response {
        let status = ServiceStatus {
            name: "web \"1\" \u{e9}\u{1f600}".into(),
            state: "backoff".into(),
            want: "up".into(),
            pid: Some(-1),
            uptime_ms: Some(u64::MAX),
            updown_ms: Some(0),
            ready_ms: Some(7),
            restarts: u32::MAX,
            run: 3,
            ready: true,
            last_exit: Some("killed by SIGSEGV".into()),
            last_exit_code: Some(i32::MIN),
            detail: Some("tab\there\nnewline \\ slash /".into()),
            next_start_ms: Some(500),
            oneshot: true,
            enabled: false,
            essential: true,
            notify_status: Some("\u{1}\u{1f}\u{7f}".into()),
            last_exit_ok: Some(false),
            schedule: Some("*/5 * * * *".into()),
            next_run: Some("2026-12-04T21:00:00+01:00".into()),
            next_run_ms: Some(1),
            last_run: Some("exit 0".into()),
            last_run_code: Some(0),
            last_run_ok: Some(true),
            last_run_ago_ms: Some(2),
            last_run_took_ms: Some(3),
            skipped_ticks: Some(4),
        };
        Response {
            ok: true,
            error: Some("e".into()),
            messages: vec!["m1".into(), String::new()],
            services: vec![status, ServiceStatus::default()],
            problems: vec!["p".into()],
            lines: vec![LogLine {
                stream: "stdout".into(),
                line: "l\u{0}".into(),
                service: Some("web".into()),
                ts: Some("2026-12-04T20:00:00.000Z".into()),
                pid: Some(u32::MAX),
                facility: Some("local0".into()),
                severity: None,
            }],
            orphans_reaped: Some(9),
            phase: Some("up".into()),
        }
    }

    /// What serde's derive reads from `text` (the reference), beside what
    /// `decode_response` reads.
    fn both(text: &str) -> (Option<Response>, Option<Response>) {
        (
            serde_json::from_str::<Response>(text).ok(),
            decode_response(text).ok(),
        )
    }

    #[test]
    fn the_hand_decoder_reads_what_serde_reads() {
        let full = encode_response(&full_response());
        let full = full.trim_end();
        assert_eq!(decode_response(full), Ok(full_response()));
        let cases = [
            full,
            r#"{"ok":true}"#,
            " \t\r\n{ \"ok\" : false , \"error\" : null } \n",
            r#"{"ok":true,"unknown":[1,{"a":[-0.5e+3,true,null,"\ud800"]},{}],"x":-0}"#,
            r#"{"o\u006b":true}"#,
            r#"{"ok":true,"services":[{"name":"a","state":"s","want":"up","restarts":0,"ready":false,"oneshot":false,"enabled":true,"pid":-0}]}"#,
            r#"{"ok":true,"orphans_reaped":18446744073709551615}"#,
            r#"{"ok":true,"orphans_reaped":18446744073709551616}"#,
            r#"{"ok":true,"orphans_reaped":1.0}"#,
            r#"{"ok":true,"orphans_reaped":1e2}"#,
            r#"{"ok":true,"orphans_reaped":-1}"#,
            r#"{"ok":true,"orphans_reaped":01}"#,
            r#"{"ok":true,"ok":true}"#,
            r#"{"ok":true,"error":"\ud83d\ude00 \u00e9"}"#,
            r#"{"ok":true,"error":"\ud83d"}"#,
            r#"{"ok":true,"error":"\ude00"}"#,
            r#"{"ok":true,"error":"\ud83d\u0041"}"#,
            r#"{"ok":true,"error":"\x"}"#,
            r#"{"ok":true,"messages":null}"#,
            r#"{"ok":true,"messages":["a",]}"#,
            r#"{"ok":true,}"#,
            r#"{"ok":tru}"#,
            r#"{"ok":true} x"#,
            r#"{"ok":true,"x":[1 2]}"#,
            r#"{"ok":true,"x":{"a" 1}}"#,
            r#"{"ok":true,"x":{"a":1,}}"#,
            r#"{"ok":true,"x":-}"#,
            r#"{"ok":true,"x":1.}"#,
            r#"{"ok":true,"x":1e}"#,
            r#"{"ok":true,"x":"\u12"}"#,
            "{\"ok\":true,\"error\":\"a\u{1}b\"}",
            r#"{"services":[],"ok":false}"#,
            r#"{}"#,
            r#"[]"#,
            r#""#,
            r#"{"ok":true,"lines":[{"stream":"stdout"}]}"#,
        ];
        for case in cases {
            let (reference, ours) = both(case);
            assert_eq!(ours, reference, "{case}");
        }
        // Every byte of the full response deleted, doubled or replaced.
        let bytes = full.as_bytes();
        let mut tried = 0;
        for at in 0..bytes.len() {
            let mut variants = vec![
                [&bytes[..at], &bytes[at + 1..]].concat(),
                [&bytes[..=at], &bytes[at..]].concat(),
            ];
            for b in *b"\"\\,:{}[]0-1.en \x01u" {
                variants.push([&bytes[..at], &[b], &bytes[at + 1..]].concat());
            }
            for variant in variants {
                if let Ok(text) = std::str::from_utf8(&variant) {
                    let (reference, ours) = both(text);
                    assert_eq!(ours, reference, "{text}");
                    tried += 1;
                }
            }
        }
        assert!(tried > 10_000, "{tried}");
    }

    #[test]
    fn a_malformed_response_says_where() {
        assert_eq!(
            decode_response("{\"ok\":true,\n\"phase\":3}"),
            Err("malformed response from corral: expected a string at line 2 column 9: 3}".into())
        );
        assert_eq!(
            decode_response(r#"{"ok":true,"services":[{"name":"a"}]}"#),
            Err(
                "malformed response from corral: missing field `state` at line 1 column 36: ]}"
                    .into()
            )
        );
    }
}
