//! corral's own messages: tracing to stderr, as text or JSON lines.
//!
//! A log line must never block the thread that logs it: that is mostly the
//! supervisor loop, and a container whose stderr nobody reads (a stalled
//! log collector) would otherwise stop corral from reaping, restarting and
//! answering the control socket. So once the output thread runs
//! (`output::Output::start` calls `attach`), each formatted line is handed
//! to its stderr writer through a bounded queue with `try_send`; a line
//! that does not fit is dropped and counted, and once stderr takes a write
//! again the writer logs how many were dropped (`take_dropped`). Before the
//! output thread starts and after it has ended, lines go straight to stderr,
//! as do the stderr writer's own (`write_directly`).
//!
//! It owns its settings (`LogArgs`, which `cli` fills in from the command
//! line). Every module logs, so it must never import one but `text` (the
//! output thread finds it through `attach`, not the other way round).

use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span;

use crate::text::{self, Escaped, Form};

/// How corral's own lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The least severe level written (`--log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Off,
}

/// The log settings, as the command line gives them (`cli`).
#[derive(Debug, Clone, Copy)]
pub struct LogArgs {
    pub log_format: LogFormat,
    pub log_level: LogLevel,
    /// Given by `--log-level` or `CORRAL_LOG_LEVEL` (else s6-overlay's
    /// `S6_VERBOSITY` may set it).
    pub level_given: bool,
}

/// corral's own lines that may wait for stderr; more are dropped (counted).
/// The queue's slots are allocated up front (8 KiB for 256).
pub const BACKLOG: usize = 256;

/// How long `Flush` waits at exit for queued lines to reach stderr.
const FLUSH_AT_EXIT: Duration = Duration::from_millis(500);

/// What the stderr writer gets from `attach`'s queue.
pub(crate) enum Queued {
    /// One formatted line (or several, if one event printed several), newline included.
    Line(Vec<u8>),
    /// Answer once every line queued before is written.
    Flush(Sender<()>),
}

/// Where lines go while the output thread runs (`None`: straight to stderr).
static QUEUE: Mutex<Option<Sender<Queued>>> = Mutex::new(None);
/// Lines dropped because the queue was full, since the last `take_dropped`.
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn queue() -> MutexGuard<'static, Option<Sender<Queued>>> {
    // A panic elsewhere while holding the lock leaves the slot usable.
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
}

/// From now on, lines go to the returned queue (read by the stderr writer).
pub(crate) fn attach() -> Receiver<Queued> {
    let (tx, rx) = crossbeam_channel::bounded(BACKLOG);
    *queue() = Some(tx);
    rx
}

/// From now on, lines go straight to stderr again. Holding the lock while
/// clearing means no line is sent to the queue after this returns.
pub(crate) fn detach() {
    *queue() = None;
}

/// How many lines were dropped since the last call (and reset the count).
pub(crate) fn take_dropped() -> u64 {
    DROPPED.swap(0, Ordering::Relaxed)
}

thread_local! {
    /// This thread is the stderr writer: its lines go straight to stderr.
    static DIRECT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by the stderr writer thread: its own log lines are written
/// directly, in order with what it writes, and can never be dropped.
pub(crate) fn write_directly() {
    DIRECT.with(|d| d.set(true));
}

/// Hand one formatted line on, never blocking while the queue is in use.
fn send(line: Vec<u8>) {
    if DIRECT.with(|d| d.get()) {
        write_stderr(&line);
        return;
    }
    let mut slot = queue();
    let Some(tx) = slot.as_ref() else {
        drop(slot);
        write_stderr(&line);
        return;
    };
    match tx.try_send(Queued::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        // The writer is gone (it never should be): write it ourselves.
        Err(TrySendError::Disconnected(queued)) => {
            *slot = None;
            drop(slot);
            if let Queued::Line(line) = queued {
                write_stderr(&line);
            }
        }
    }
}

fn write_stderr(line: &[u8]) {
    // Nothing to do if stderr is closed.
    let _ = std::io::stderr().write_all(line);
}

/// Wait until every line logged so far has been written to stderr, or
/// `deadline`. Returns at once when lines go straight to stderr, or when
/// the queue is full (stderr is not taking lines: waiting would not help).
pub fn flush(deadline: Instant) {
    let (ack_tx, ack) = crossbeam_channel::bounded(1);
    let sent = queue()
        .as_ref()
        .is_some_and(|tx| tx.try_send(Queued::Flush(ack_tx)).is_ok());
    if sent {
        let _ = ack.recv_deadline(deadline);
    }
}

/// Returned by `init`: dropped when corral exits, it gives the lines still
/// queued a short while (`FLUSH_AT_EXIT`) to reach stderr.
pub struct Flush;

impl Drop for Flush {
    fn drop(&mut self) {
        flush(Instant::now() + FLUSH_AT_EXIT);
    }
}

/// The subscriber: formats each event into one line and hands it to `send`.
///
/// corral has no spans and one output per process, so this is all of
/// tracing-subscriber's `fmt` it needs: a level filter, the text format
/// (`" INFO message key=value"`, no time: container runtimes stamp each
/// line) and JSON lines (`{"timestamp":…,"level":…,"message":…,…}`).
/// Written here instead of using tracing-subscriber, it is ~60 KB less code
/// and no per-thread span registry.
struct Logger {
    max: LevelFilter,
    format: LogFormat,
    /// Colour the level (text on a terminal).
    ansi: bool,
}

impl tracing::Subscriber for Logger {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    // No spans are used; they are accepted and ignored.
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        send(self.format(event));
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

impl Logger {
    /// One event as one line, newline included.
    fn format(&self, event: &tracing::Event<'_>) -> Vec<u8> {
        let level = *event.metadata().level();
        let mut line = String::with_capacity(128);
        match self.format {
            LogFormat::Text => {
                let (colour, reset) = match (self.ansi, level) {
                    (false, _) => ("", ""),
                    (true, Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
                    (true, Level::WARN) => ("\x1b[33m", "\x1b[0m"),
                    (true, Level::INFO) => ("\x1b[32m", "\x1b[0m"),
                    (true, Level::DEBUG) => ("\x1b[34m", "\x1b[0m"),
                    (true, Level::TRACE) => ("\x1b[35m", "\x1b[0m"),
                };
                let _ = write!(line, "{colour}{:>5}{reset}", level.as_str());
                event.record(&mut TextFields(&mut line));
            }
            LogFormat::Json => {
                line.push_str("{\"timestamp\":\"");
                text::rfc3339(SystemTime::now(), &mut line);
                let _ = write!(line, "\",\"level\":\"{}\"", level.as_str());
                event.record(&mut JsonFields(&mut line));
                line.push('}');
            }
        }
        line.push('\n');
        line.into_bytes()
    }
}

/// ` message name=value…`: the message as written, other values as `{:?}`
/// (strings quoted, `%value` fields as displayed). Control characters but
/// tab are escaped (`\x1b`), whatever the field: a message may carry what a service
/// sent (a health check's answer), and a raw newline or escape sequence
/// would forge a log line or steer the terminal of whoever reads the log.
struct TextFields<'a>(&'a mut String);

impl Visit for TextFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut out = Escaped::new(self.0, Form::Log);
        let _ = match field.name() {
            "message" => write!(out, " {value:?}"),
            name => write!(out, " {}={value:?}", name.trim_start_matches("r#")),
        };
    }
}

/// `,"name":value…`: numbers and booleans as JSON values, strings as
/// strings, anything else as its `{:?}` text in a string.
struct JsonFields<'a>(&'a mut String);

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        json_string(self.0, field.name().trim_start_matches("r#"));
        self.0.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        json_string(self.0, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        json_string(self.0, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            json_string(self.0, &format!("{value}"));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }
}

/// `text` as a JSON string, quotes included.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Install the subscriber. Keep the returned `Flush` until corral exits.
pub fn init(args: &LogArgs) -> Flush {
    let max = match args.log_level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Off => LevelFilter::OFF,
    };
    let logger = Logger {
        max,
        format: args.log_format,
        ansi: args.log_format == LogFormat::Text && std::io::stderr().is_terminal(),
    };
    // A second initialisation (tests) is not an error worth dying for.
    let _ = tracing::subscriber::set_global_default(logger);
    Flush
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The lines `Logger` formats for `events`, as text.
    fn formatted(format: LogFormat, events: impl FnOnce()) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = Capture {
            logger: Logger {
                max: LevelFilter::DEBUG,
                format,
                ansi: false,
            },
            lines: Arc::clone(&lines),
        };
        tracing::subscriber::with_default(subscriber, events);
        lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// `Logger`, keeping its lines instead of sending them to stderr.
    struct Capture {
        logger: Logger,
        lines: Arc<Mutex<Vec<String>>>,
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            self.logger.enabled(metadata)
        }
        fn new_span(&self, attributes: &span::Attributes<'_>) -> span::Id {
            self.logger.new_span(attributes)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let line = String::from_utf8_lossy(&self.logger.format(event)).into_owned();
            if let Ok(mut lines) = self.lines.lock() {
                lines.push(line);
            }
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    #[test]
    fn text_lines_are_level_message_and_fields() {
        let name = String::from("web");
        let lines = formatted(LogFormat::Text, || {
            tracing::info!(service = %name, pid = 42, "service started");
            tracing::warn!(signal = "SIGTERM", ok = true, "stopping");
            tracing::error!(r#type = ?Some(1), "bad\tthing");
            tracing::trace!("filtered out");
        });
        assert_eq!(
            lines,
            [
                " INFO service started service=web pid=42\n",
                " WARN stopping signal=\"SIGTERM\" ok=true\n",
                "ERROR bad\tthing type=Some(1)\n",
            ]
        );
    }

    #[test]
    fn text_lines_escape_control_characters_in_every_field() {
        let lines = formatted(LogFormat::Text, || {
            let reason = "bad\x1b[2J\nWARN forged";
            tracing::warn!(service = "web", %reason, "health check failed: {reason}");
        });
        assert_eq!(
            lines,
            [
                " WARN health check failed: bad\\x1b[2J\\x0aWARN forged service=\"web\" reason=bad\\x1b[2J\\x0aWARN forged\n"
            ]
        );
    }

    #[test]
    fn json_lines_are_objects_with_typed_fields() {
        let lines = formatted(LogFormat::Json, || {
            tracing::debug!(
                path = "a \"b\"\n\u{1}",
                n = 3u64,
                d = -2i64,
                f = 1.5,
                yes = false,
                dbg = ?"q",
                "inotify event"
            );
        });
        let [line] = lines.as_slice() else {
            panic!("{lines:?}")
        };
        let (stamp, rest) = line
            .strip_prefix("{\"timestamp\":\"")
            .and_then(|l| l.split_once('"'))
            .unwrap_or_else(|| panic!("{line}"));
        // 2026-11-24T22:22:27.563475Z
        assert_eq!(stamp.len(), 27, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
        assert_eq!(
            rest,
            ",\"level\":\"DEBUG\",\"message\":\"inotify event\",\"path\":\"a \\\"b\\\"\\n\\u0001\",\
             \"n\":3,\"d\":-2,\"f\":1.5,\"yes\":false,\"dbg\":\"\\\"q\\\"\"}\n"
        );
    }

    /// The only test that touches the global queue (tests run in parallel).
    #[test]
    fn lines_are_queued_whole_dropped_when_full_and_flushed() {
        let subscriber = Logger {
            max: LevelFilter::INFO,
            format: LogFormat::Text,
            ansi: false,
        };
        tracing::subscriber::with_default(subscriber, || {
            let rx = attach();
            take_dropped();
            tracing::info!(service = "web", "service started");
            match rx.try_recv() {
                Ok(Queued::Line(line)) => {
                    assert_eq!(
                        String::from_utf8_lossy(&line),
                        " INFO service started service=\"web\"\n"
                    );
                }
                _ => panic!("no line queued"),
            }
            // Nobody reads: the queue fills, the rest is counted, nothing blocks.
            for i in 0..BACKLOG + 10 {
                tracing::warn!(i, "busy");
            }
            assert_eq!(rx.len(), BACKLOG);
            assert_eq!(take_dropped(), 10);
            assert_eq!(take_dropped(), 0);
            // A full queue: flush does not wait.
            let start = Instant::now();
            flush(start + Duration::from_secs(10));
            assert!(start.elapsed() < Duration::from_secs(5));
            // A reader that answers: flush returns once it has seen the marker,
            // after every line queued before it.
            let probe = rx.clone();
            let reader = std::thread::spawn(move || {
                let mut lines = 0;
                for queued in rx.iter() {
                    match queued {
                        Queued::Line(_) => lines += 1,
                        Queued::Flush(ack) => {
                            let _ = ack.send(());
                            return lines;
                        }
                    }
                }
                lines
            });
            while probe.len() == BACKLOG {
                std::thread::yield_now();
            }
            flush(Instant::now() + Duration::from_secs(30));
            assert_eq!(reader.join().ok(), Some(BACKLOG));
            detach();
        });
    }
}
