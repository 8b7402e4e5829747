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
//! Lines are written with `error!`, `warn!`, `info!`, `debug!` and
//! `trace!`, in tracing's syntax (`warn!(service = %name, pid, ?exit,
//! "service exited")`) but without tracing's statics per call site: each
//! expands to a level check and one call of `emit` with the message's
//! `format_args!` and a slice of fields. tracing's call sites cost about
//! 785 bytes each, 140 KB of the binary for 179 of them.
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

thread_local! {
    /// Lines this thread holds back until `release` (the loop's thread).
    static HELD: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Held lines handed on at once past this many bytes.
const HOLD_AT_MOST: usize = 64 * 1024;

/// From now on, this thread's lines wait in a buffer until `release`: the
/// loop hands on what one round of events logged in one go. One wake-up of
/// the writer per line cost a context switch each: 7% of corral's CPU to
/// start 100 services (perf), each start logging a line.
pub fn hold() {
    HELD.with(|held| *held.borrow_mut() = Some(Vec::new()));
}

/// Hand the lines held so far on (see `hold`); the loop calls it before it
/// waits for the next input.
pub fn release() {
    let lines = HELD.with(|held| held.borrow_mut().as_mut().map(std::mem::take));
    if let Some(lines) = lines.filter(|lines| !lines.is_empty()) {
        deliver(lines);
    }
}

/// Hand on what is held, and hold nothing from now on.
pub fn stop_holding() {
    release();
    HELD.with(|held| *held.borrow_mut() = None);
}

/// Hand one formatted line on, never blocking while the queue is in use.
fn send(line: Vec<u8>) {
    if DIRECT.with(|d| d.get()) {
        write_stderr(&line);
        return;
    }
    let full = HELD.with(|held| match held.borrow_mut().as_mut() {
        Some(lines) => {
            lines.extend_from_slice(&line);
            Some(lines.len() >= HOLD_AT_MOST)
        }
        None => None,
    });
    match full {
        Some(true) => release(),
        Some(false) => {}
        None => deliver(line),
    }
}

/// Queue `lines` (one or several) for the writer, or write them when there
/// is no writer.
fn deliver(line: Vec<u8>) {
    let mut slot = queue();
    let Some(tx) = slot.as_ref() else {
        drop(slot);
        write_stderr(&line);
        return;
    };
    match tx.try_send(Queued::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(Queued::Line(lines))) => {
            let n = lines.iter().filter(|&&b| b == b'\n').count().max(1);
            DROPPED.fetch_add(n as u64, Ordering::Relaxed);
        }
        Err(TrySendError::Full(Queued::Flush(_))) => {}
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
    release();
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

/// A line's level, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

/// One field's value, as the macros capture it: `%x` displayed, `?x`
/// debugged, a bare `x` by its type (`AsField`).
#[doc(hidden)]
pub enum Value<'a> {
    Display(&'a dyn fmt::Display),
    Debug(&'a dyn fmt::Debug),
    Str(&'a str),
    I64(i64),
    U64(u64),
    Bool(bool),
    /// A `None`: the field is left out, as tracing leaves it out.
    Absent,
}

/// What a bare field (`pid`, `code`, `service`) may be: what tracing takes
/// there, numbers, booleans and strings.
#[doc(hidden)]
pub trait AsField {
    fn as_field(&self) -> Value<'_>;
}

macro_rules! as_field {
    ($variant:ident as $into:ty: $($t:ty),*) => {
        $(impl AsField for $t {
            fn as_field(&self) -> Value<'_> {
                Value::$variant(<$into>::from(*self))
            }
        })*
    };
}
as_field!(I64 as i64: i8, i16, i32, i64);
as_field!(U64 as u64: u8, u16, u32, u64);
as_field!(Bool as bool: bool);

impl AsField for usize {
    fn as_field(&self) -> Value<'_> {
        Value::U64(u64::try_from(*self).unwrap_or(u64::MAX))
    }
}

impl AsField for str {
    fn as_field(&self) -> Value<'_> {
        Value::Str(self)
    }
}

impl AsField for String {
    fn as_field(&self) -> Value<'_> {
        Value::Str(self)
    }
}

impl<T: AsField> AsField for Option<T> {
    fn as_field(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Absent, AsField::as_field)
    }
}

impl<T: AsField + ?Sized> AsField for &T {
    fn as_field(&self) -> Value<'_> {
        (**self).as_field()
    }
}

/// The settings `init` gave; `None` (before `init`, in unit tests): off.
static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();
/// The least severe level written, as `Level as u8` (0: none), read by
/// every call site before it formats anything.
static MAX: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Is a line at `level` written? (One load: what a call site costs when
/// its level is off.)
#[doc(hidden)]
#[inline]
pub fn enabled(level: Level) -> bool {
    #[cfg(test)]
    if let Some(max) = tests::capturing() {
        return level as u8 <= max;
    }
    level as u8 <= MAX.load(Ordering::Relaxed)
}

/// Write one line: the macros' way in, once `enabled` said yes.
#[doc(hidden)]
#[inline(never)]
pub fn emit(level: Level, message: fmt::Arguments<'_>, fields: &[(&str, Value<'_>)]) {
    #[cfg(test)]
    if tests::capture(level, message, fields) {
        return;
    }
    if let Some(logger) = LOGGER.get() {
        send(logger.format(SystemTime::now(), level, message, fields));
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __corral_log {
    // The message, last.
    (@ $level:expr, [$($f:tt)*], $message:literal $(, $($arg:tt)*)?) => {
        if $crate::log::enabled($level) {
            $crate::log::emit($level, format_args!($message $(, $($arg)*)?), &[$($f)*]);
        }
    };
    // No message.
    (@ $level:expr, [$($f:tt)*] $(,)?) => {
        if $crate::log::enabled($level) {
            $crate::log::emit($level, format_args!(""), &[$($f)*]);
        }
    };
    (@ $level:expr, [$($f:tt)*], $k:ident = % $v:expr $(, $($rest:tt)*)?) => {
        $crate::__corral_log!(@ $level, [$($f)* (stringify!($k), $crate::log::Value::Display(&$v)),] $(, $($rest)*)?)
    };
    (@ $level:expr, [$($f:tt)*], $k:ident = ? $v:expr $(, $($rest:tt)*)?) => {
        $crate::__corral_log!(@ $level, [$($f)* (stringify!($k), $crate::log::Value::Debug(&$v)),] $(, $($rest)*)?)
    };
    (@ $level:expr, [$($f:tt)*], $k:ident = $v:expr $(, $($rest:tt)*)?) => {
        $crate::__corral_log!(@ $level, [$($f)* (stringify!($k), $crate::log::AsField::as_field(&$v)),] $(, $($rest)*)?)
    };
    (@ $level:expr, [$($f:tt)*], % $k:ident $(, $($rest:tt)*)?) => {
        $crate::__corral_log!(@ $level, [$($f)* (stringify!($k), $crate::log::Value::Display(&$k)),] $(, $($rest)*)?)
    };
    (@ $level:expr, [$($f:tt)*], ? $k:ident $(, $($rest:tt)*)?) => {
        $crate::__corral_log!(@ $level, [$($f)* (stringify!($k), $crate::log::Value::Debug(&$k)),] $(, $($rest)*)?)
    };
    (@ $level:expr, [$($f:tt)*], $k:ident $(, $($rest:tt)*)?) => {
        $crate::__corral_log!(@ $level, [$($f)* (stringify!($k), $crate::log::AsField::as_field(&$k)),] $(, $($rest)*)?)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __corral_error {
    ($($t:tt)*) => { $crate::__corral_log!(@ $crate::log::Level::Error, [], $($t)*) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __corral_warn {
    ($($t:tt)*) => { $crate::__corral_log!(@ $crate::log::Level::Warn, [], $($t)*) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __corral_info {
    ($($t:tt)*) => { $crate::__corral_log!(@ $crate::log::Level::Info, [], $($t)*) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __corral_debug {
    ($($t:tt)*) => { $crate::__corral_log!(@ $crate::log::Level::Debug, [], $($t)*) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __corral_trace {
    ($($t:tt)*) => { $crate::__corral_log!(@ $crate::log::Level::Trace, [], $($t)*) };
}
pub use crate::{
    __corral_debug as debug, __corral_error as error, __corral_info as info,
    __corral_trace as trace, __corral_warn as warn,
};

/// How lines are written: the text format (`" INFO message key=value"`,
/// no time: container runtimes stamp each line) or JSON lines
/// (`{"timestamp":…,"level":…,"message":…,…}`).
struct Logger {
    format: LogFormat,
    /// Colour the level (text on a terminal).
    ansi: bool,
}

impl Logger {
    /// One line, newline included.
    fn format(
        &self,
        now: SystemTime,
        level: Level,
        message: fmt::Arguments<'_>,
        fields: &[(&str, Value<'_>)],
    ) -> Vec<u8> {
        let mut line = String::with_capacity(128);
        match self.format {
            LogFormat::Text => {
                let (colour, reset) = match (self.ansi, level) {
                    (false, _) => ("", ""),
                    (true, Level::Error) => ("\x1b[31m", "\x1b[0m"),
                    (true, Level::Warn) => ("\x1b[33m", "\x1b[0m"),
                    (true, Level::Info) => ("\x1b[32m", "\x1b[0m"),
                    (true, Level::Debug) => ("\x1b[34m", "\x1b[0m"),
                    (true, Level::Trace) => ("\x1b[35m", "\x1b[0m"),
                };
                let _ = write!(line, "{colour}{:>5}{reset}", level.as_str());
                text_fields(&mut line, message, fields);
            }
            LogFormat::Json => {
                line.push_str("{\"timestamp\":\"");
                text::rfc3339(now, &mut line);
                let _ = write!(line, "\",\"level\":\"{}\"", level.as_str());
                json_fields(&mut line, message, fields);
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
fn text_fields(line: &mut String, message: fmt::Arguments<'_>, fields: &[(&str, Value<'_>)]) {
    let mut out = Escaped::new(line, Form::Log);
    if !is_empty(&message) {
        let _ = write!(out, " {message}");
    }
    for (name, value) in fields {
        if let Value::Absent = value {
            continue;
        }
        let _ = write!(out, " {}=", name.trim_start_matches("r#"));
        let _ = match value {
            Value::Display(v) => write!(out, "{v}"),
            Value::Debug(v) => write!(out, "{v:?}"),
            Value::Str(v) => write!(out, "{v:?}"),
            Value::I64(v) => write!(out, "{v}"),
            Value::U64(v) => write!(out, "{v}"),
            Value::Bool(v) => write!(out, "{v}"),
            Value::Absent => Ok(()),
        };
    }
}

/// Whether a message has nothing to write (`format_args!("")`).
fn is_empty(message: &fmt::Arguments<'_>) -> bool {
    message.as_str() == Some("")
}

/// `,"message":…,"name":value…`: numbers and booleans as JSON values,
/// strings as strings, anything else as its text in a string.
fn json_fields(line: &mut String, message: fmt::Arguments<'_>, fields: &[(&str, Value<'_>)]) {
    if !is_empty(&message) {
        line.push_str(",\"message\":");
        json_string(line, &message.to_string());
    }
    for (name, value) in fields {
        if let Value::Absent = value {
            continue;
        }
        line.push(',');
        json_string(line, name.trim_start_matches("r#"));
        line.push(':');
        match value {
            Value::Display(v) => json_string(line, &v.to_string()),
            Value::Debug(v) => json_string(line, &format!("{v:?}")),
            Value::Str(v) => json_string(line, v),
            Value::I64(v) => {
                let _ = write!(line, "{v}");
            }
            Value::U64(v) => {
                let _ = write!(line, "{v}");
            }
            Value::Bool(v) => {
                let _ = write!(line, "{v}");
            }
            Value::Absent => {}
        }
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

/// Set the level and format. Keep the returned `Flush` until corral exits.
pub fn init(args: &LogArgs) -> Flush {
    let max = match args.log_level {
        LogLevel::Error => Level::Error as u8,
        LogLevel::Warn => Level::Warn as u8,
        LogLevel::Info => Level::Info as u8,
        LogLevel::Debug => Level::Debug as u8,
        LogLevel::Trace => Level::Trace as u8,
        LogLevel::Off => 0,
    };
    let logger = Logger {
        format: args.log_format,
        ansi: args.log_format == LogFormat::Text && std::io::stderr().is_terminal(),
    };
    // A second initialisation (tests) keeps the first settings.
    if LOGGER.set(logger).is_ok() {
        MAX.store(max, Ordering::Relaxed);
    }
    Flush
}

#[cfg(test)]
mod tests {

    use super::*;

    /// What this thread logs goes here while `formatted` runs: the
    /// logger, its most verbose level, and the lines it formats.
    type Capture = (Logger, u8, Vec<String>);

    thread_local! {
        static CAPTURE: std::cell::RefCell<Option<Capture>> = const { std::cell::RefCell::new(None) };
    }

    /// The level this thread captures at, while it does.
    pub(super) fn capturing() -> Option<u8> {
        CAPTURE.with(|c| c.borrow().as_ref().map(|(_, max, _)| *max))
    }

    /// Keep the line if this thread captures; false if it does not.
    pub(super) fn capture(
        level: Level,
        message: fmt::Arguments<'_>,
        fields: &[(&str, Value<'_>)],
    ) -> bool {
        CAPTURE.with(|c| {
            let mut c = c.borrow_mut();
            let Some((logger, _, lines)) = c.as_mut() else {
                return false;
            };
            let line = logger.format(SystemTime::now(), level, message, fields);
            lines.push(String::from_utf8_lossy(&line).into_owned());
            true
        })
    }

    /// The lines `Logger` formats for `events` (up to debug), as text.
    fn formatted(format: LogFormat, events: impl FnOnce()) -> Vec<String> {
        let logger = Logger {
            format,
            ansi: false,
        };
        CAPTURE.with(|c| *c.borrow_mut() = Some((logger, Level::Debug as u8, Vec::new())));
        events();
        CAPTURE
            .with(|c| c.borrow_mut().take())
            .map(|(_, _, lines)| lines)
            .unwrap_or_default()
    }

    #[test]
    fn text_lines_are_level_message_and_fields() {
        let name = String::from("web");
        let lines = formatted(LogFormat::Text, || {
            info!(service = %name, pid = 42, "service started");
            warn!(signal = "SIGTERM", ok = true, "stopping");
            error!(r#type = ?Some(1), "bad\tthing");
            trace!("filtered out");
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
            warn!(service = "web", %reason, "health check failed: {reason}");
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
            debug!(
                path = "a \"b\"\n\u{1}",
                n = 3u64,
                d = -2i64,
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
             \"n\":3,\"d\":-2,\"yes\":false,\"dbg\":\"\\\"q\\\"\"}\n"
        );
    }

    /// The only test that touches the global queue (tests run in parallel).
    #[test]
    fn lines_are_queued_whole_dropped_when_full_and_flushed() {
        // What `emit` does once `init` ran, without the global settings.
        let logger = Logger {
            format: LogFormat::Text,
            ansi: false,
        };
        let line = |message: fmt::Arguments<'_>, fields: &[(&str, Value<'_>)]| {
            send(logger.format(SystemTime::now(), Level::Info, message, fields));
        };
        {
            let rx = attach();
            take_dropped();
            line(
                format_args!("service started"),
                &[("service", Value::Str("web"))],
            );
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
                line(format_args!("busy"), &[("i", Value::U64(i as u64))]);
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
        }
        // Held: nothing reaches the writer until `release`, then every
        // line in one hand-over, in order; past HOLD_AT_MOST bytes at once.
        {
            let rx = attach();
            hold();
            for service in ["a", "b", "c"] {
                line(
                    format_args!("service started"),
                    &[("service", Value::Str(service))],
                );
            }
            assert!(rx.try_recv().is_err(), "held back");
            release();
            match rx.try_recv() {
                Ok(Queued::Line(lines)) => assert_eq!(
                    String::from_utf8_lossy(&lines),
                    " INFO service started service=\"a\"\n INFO service started service=\"b\"\n INFO service started service=\"c\"\n"
                ),
                _ => panic!("the held lines were not handed on"),
            }
            assert!(rx.try_recv().is_err(), "in one hand-over");
            let long = "x".repeat(HOLD_AT_MOST);
            line(format_args!("{long}"), &[]);
            assert!(
                matches!(rx.try_recv(), Ok(Queued::Line(_))),
                "too much to hold"
            );
            stop_holding();
            line(format_args!("direct"), &[]);
            assert!(matches!(rx.try_recv(), Ok(Queued::Line(_))), "held no more");
            detach();
        }
    }
}
