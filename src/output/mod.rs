//! The output thread: reads every `output = "prefix"` service's stdout and
//! stderr and writes each complete line to corral's own as `NAME | line`
//! (or as `--output-format` / `--output-timestamps` say: `format.rs`),
//! keeping the last lines of each service in `Logs` for `corral ctl logs`,
//! each with the wall-clock time it was read and the pid of the run whose
//! pipe it came from.
//!
//! One reading thread, its pipes in a few epoll(7) sets (by stream, log
//! file and hang-up, so backpressure switches a whole set) under one
//! `poll(2)` with a wake-up pipe for newly added streams and for the
//! writers: 100 services cost one thread, not 200, and a wake-up costs the
//! pipes that are ready, not all of them. A line ends at
//! a newline (a `\r` before it is dropped); a line longer than `MAX_LINE` is
//! cut into `MAX_LINE` pieces as it comes, without waiting for its end; a
//! partial last line is written (with a newline) at EOF.
//!
//! Writing is left to two writer threads, one for fd 1 and one for fd 2,
//! so that a container stdout nobody reads (a stalled log collector) blocks
//! a writer, never this thread nor the supervisor loop. The output thread
//! hands each writer batches of whole lines; a writer writes them with
//! `writev`, and it is the only writer of its fd in corral, so lines of two
//! services never interleave. While a writer has more than `HIGH_WATER`
//! bytes waiting, the output thread stops reading the pipes of the services
//! that write to that stream: those services then block in `write(2)` once
//! their pipe is full (backpressure, as if they wrote to the stalled stream
//! themselves), while the loop, the reaper, the control socket and the
//! other stream go on. Pipes whose writers have all exited are still read
//! (so their fds are closed) until `HARD_LIMIT` bytes wait.
//!
//! A write that fails (a full disk, a closed stdout) is never retried in a
//! loop: from then on that stream's lines are dropped and counted per
//! service (`corral_output_dropped_lines_total`), a line now and then
//! trying the stream again, until a write works.
//!
//! corral's own log lines (`log`) go to the stderr writer through a bounded
//! queue, so logging never blocks either: lines that do not fit are
//! dropped, and counted in a warning once stderr takes lines again.
//!
//! These threads never touch service state: they read pipes, write fds 1
//! and 2, and append to `Logs` (a short lock; followers get lines by
//! `try_send`, so a slow `logs -f` client is dropped, never waited for).
//! `Logs` also holds the line counters `/metrics` reads at scrape time.
//!
//! The parts: `split.rs`, bytes into lines; `ring.rs`, `Logs`, the recent
//! output of each service and its followers; `pump.rs`, the output thread
//! (`Output`); `writer.rs`, the two writer threads; `format.rs`, text and
//! JSON lines (and how JSON carries bytes that are not UTF-8); `ready.rs`,
//! `ready = { log-line }`: a run's lines looked at until one matches.

pub mod file;
pub mod format;
mod pump;
mod ready;
mod ring;
mod split;
mod writer;

use std::borrow::Cow;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use format::SyslogLine;
pub use format::{Format, OutputFormat};
pub use pump::{Output, SyslogLines};
pub use ready::LineReady;
pub use ring::{Logs, ServiceCounts};

pub const MAX_LINE: usize = 64 * 1024;

/// Lines kept per service for `corral ctl logs` (SPEC section 7)...
pub const LOG_LINES: usize = 1000;
/// ...and at most this many bytes of them: the oldest lines go first.
pub const LOG_BYTES: usize = 1024 * 1024;
/// Lines a `logs -f` client may fall behind before it is dropped.
pub const FOLLOW_BACKLOG: usize = 4096;

/// One read: a pipe's default capacity (pipe(7)), so one read takes all a
/// busy service has written.
const READ_SIZE: usize = 64 * 1024;
/// Bytes waiting for a writer past which the pipes of live services
/// writing to that stream are no longer read.
pub const HIGH_WATER: usize = 1024 * 1024;
/// Bytes waiting for a writer past which not even pipes whose writers have
/// exited are read (their fds then stay open until the stream drains).
pub const HARD_LIMIT: usize = 4 * 1024 * 1024;
/// Raw bytes a service's log keeps: its last `LOG_LINES` / `LOG_BYTES`
/// lines with their `\r\n`, and the start of a line in progress on each
/// stream.
const RING_KEEP: usize = LOG_BYTES + 2 * MAX_LINE + 2 * LOG_LINES;
/// Pieces of output a service's log keeps at most (each holds at least a
/// byte; this bounds a log fed a byte at a time by alternating streams).
const RING_BLOCKS: usize = 4 * LOG_LINES;
/// While a stream's writes fail, a line is sent on to try it again at most
/// this often; the others are dropped (and counted).
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Batches one `writev` takes at most.
const WRITE_BATCHES: usize = 64;
/// Buffers kept for reuse: read buffers of the output thread, and written
/// batches of each writer (a batch grown beyond `SPARE_BATCH` is freed).
const SPARES: usize = 2;
const SPARE_BATCH: usize = 4 * READ_SIZE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// corral's own fd for the stream.
    fn fd(self) -> BorrowedFd<'static> {
        let fd = match self {
            Stream::Stdout => libc::STDOUT_FILENO,
            Stream::Stderr => libc::STDERR_FILENO,
        };
        // SAFETY: fds 1 and 2 stay open for corral's whole life.
        unsafe { BorrowedFd::borrow_raw(fd) }
    }
}

/// One line of a service's output, without its newline (or `\r\n`), with
/// the time it was read and the pid of the run that wrote it (when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub service: Arc<str>,
    pub stream: Stream,
    pub pid: Option<u32>,
    /// A line of the pseudo-service `syslog`: its message's facility and
    /// severity.
    pub priority: Option<Priority>,
    pub time: SystemTime,
    /// The line's bytes, as the service wrote them.
    pub line: Vec<u8>,
}

/// A syslog message's facility and severity, by name (`local0`, `notice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub facility: &'static str,
    pub severity: &'static str,
}

impl LogEntry {
    /// The line as text, bytes that are not UTF-8 replaced (U+FFFD).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.line)
    }
}

/// Microseconds since the epoch: how `Logs` keeps a read's time.
fn micros(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn from_micros(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}
