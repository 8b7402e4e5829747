//! `--syslog PATH` (SPEC section 10): a Unix datagram socket at PATH (such
//! as `/dev/log`) for daemons that only log to syslog (haproxy's `log
//! /dev/log local0`, cron, postfix). Each datagram, RFC 3164 or RFC 5424,
//! with or without `<PRI>` (`parse.rs`), becomes a `Record` handed to the
//! caller's sink, which writes it as a line of the pseudo-service `syslog`:
//! `syslog | haproxy[12]: Server be/s1 is DOWN` (`Record::text_line`).
//!
//! The socket is mode 0666, so that every service can log: every datagram
//! is an attacker's (SPEC 12), and so:
//! - a datagram is read into a buffer of `MAX_MESSAGE` bytes; a longer one
//!   is cut there (and counted);
//! - control characters in what reaches a record are escaped as
//!   `text::escape`'s `Log` form does (`\x0a`; `text`, faster), so a
//!   message cannot forge a line or steer a terminal; bytes that are not
//!   UTF-8 are replaced (U+FFFD);
//! - reading has a budget (`Limits`: messages and bytes per 10 ms window).
//!   Past it, the socket is not read until the window ends: a flood costs
//!   this thread a bounded share of a CPU, and memory never grows (what
//!   waits is in the kernel's queue, whose length the kernel bounds). The
//!   same pause follows a sink that has no room (`start`). Senders that
//!   block (glibc's syslog(3), `logger`) then wait in send(2), as they
//!   would for any syslog daemon, and lose nothing; non-blocking senders
//!   (haproxy) drop what does not fit, as they would anywhere. Reading as
//!   fast as a flood comes and dropping would cost a whole CPU instead;
//! - fds passed along with a datagram are refused (`SO_PASSRIGHTS`, Linux
//!   6.16) or closed at once without lingering (`notify::receive`);
//! - the sender's pid, uid and gid come from the kernel (`SO_PASSCRED`):
//!   the tag and the pid in a message are what the sender claims, and any
//!   service can claim to be haproxy; `Record::peer` is the truth.
//!
//! The socket file: a socket already at PATH is replaced only if it is a
//! socket nobody listens on (lstat; a regular file, a directory or a link
//! is never removed, a live socket such as a host's `/dev/log` mounted in
//! is refused); the file is removed when the listener closes, if it is
//! still ours (`socket.rs`).
//!
//! One thread (`listen.rs`) with one poll(2) over the socket and a wake-up
//! pipe, like corral's other poll threads (`polling`). It never touches
//! service state and never blocks on anything but poll(2); its sink must
//! not block either (the output thread's queue: `try_send`).
//!
//! What it must never do: remove a file at PATH that is not a socket, let
//! a control character through to a record, hold more than one datagram
//! and one waiting record, or read past its budget.

mod listen;
pub mod parse;
mod socket;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use crate::polling::{self, Wake};

pub use parse::{Parsed, parse};

/// The longest datagram read whole; the rest of a longer one is cut off.
/// glibc's syslog(3) and haproxy (`len 1024` by default) stay well below.
pub const MAX_MESSAGE: usize = 8 * 1024;

/// The pseudo-service whose lines the records become.
pub const SERVICE: &str = "syslog";

/// How much the listener reads in each `Limits::WINDOW`; past either bound
/// it reads nothing more until the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub messages: u32,
    pub bytes: usize,
}

impl Limits {
    /// The budget is renewed this often: short, so that a paused sender
    /// waits little.
    pub const WINDOW: Duration = Duration::from_millis(10);
}

impl Default for Limits {
    /// 1,500 messages and 320 KiB a window: 150,000 messages and about
    /// 31 MiB a second, above what busy daemons send (and the 100k
    /// messages/s of the benchmark), below what would keep a CPU busy.
    /// Measured (release, a shared 2-core machine): four blocking senders
    /// got 134,000 messages/s through, none lost; a flood of 8 KiB of
    /// control characters, the costliest text to escape, costs about 9 ns
    /// a byte, so the byte budget holds it under a third of a CPU.
    fn default() -> Limits {
        Limits {
            messages: 1_500,
            bytes: 320 * 1024,
        }
    }
}

/// Who sent a datagram, as the kernel says (`SCM_CREDENTIALS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One syslog message, ready to write. Its text fields hold no control
/// character but tab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When corral received it (the time a sender writes is not trusted).
    pub ts: SystemTime,
    /// 0 to 23: `facility_name`.
    pub facility: u8,
    /// 0 to 7: `severity_name`.
    pub severity: u8,
    /// The sender's tag (RFC 5424: APP-NAME); empty if it gave none.
    pub tag: String,
    /// The pid the message claims (`TAG[PID]`, PROCID).
    pub pid: Option<u32>,
    pub message: String,
    /// RFC 5424's structured data as sent (`[id k="v"]`); usually empty.
    pub structured_data: String,
    /// The sending process, from the kernel.
    pub peer: Option<Peer>,
}

impl Record {
    /// The record of one datagram received at `ts` from `peer`.
    pub fn new(datagram: &[u8], ts: SystemTime, peer: Option<Peer>) -> Record {
        let parsed = parse(datagram);
        Record {
            ts,
            facility: parsed.facility,
            severity: parsed.severity,
            tag: text(parsed.tag),
            pid: parsed.pid,
            message: text(parsed.message),
            structured_data: text(parsed.structured_data),
            peer,
        }
    }

    /// The line of the `syslog` pseudo-service: `haproxy[12]: Server be/s1
    /// is DOWN`, `cron: message` without a pid, the bare message without a
    /// tag. One line: nothing in it is a line break.
    pub fn text_line(&self) -> String {
        match (self.tag.is_empty(), self.pid) {
            (true, None) => self.message.clone(),
            (_, Some(pid)) => format!("{}[{pid}]: {}", self.tag, self.message),
            (false, None) => format!("{}: {}", self.tag, self.message),
        }
    }

    pub fn facility_name(&self) -> &'static str {
        facility_name(self.facility)
    }

    pub fn severity_name(&self) -> &'static str {
        severity_name(self.severity)
    }
}

/// `bytes` as text for a record: what is not UTF-8 replaced (U+FFFD, as
/// `String::from_utf8_lossy`), control characters but tab escaped as
/// `\x0a`, exactly as `text::escape` does in its `Log` form, but a byte at
/// a time without the formatting machinery: a flood of control characters
/// costs a few nanoseconds a byte, not fifty.
pub fn text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |n: u8| HEX.get(usize::from(n & 15)).copied().unwrap_or(b'0');
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let mut valid = chunk.valid().as_bytes();
        // Control characters are C0 and DEL (one byte) and C1 (U+0080 to
        // U+009F: 0xC2 then 0x80 to 0x9F); every other byte is copied, in
        // runs up to the next byte that may start one.
        while !valid.is_empty() {
            let run = valid
                .iter()
                .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f || b == 0xc2)
                .unwrap_or(valid.len());
            let (plain, rest) = valid.split_at(run);
            out.extend_from_slice(plain);
            valid = match rest {
                [] => rest,
                [0xc2, c1 @ 0x80..0xa0, after @ ..] => {
                    out.extend_from_slice(&[b'\\', b'x', hex(c1 >> 4), hex(*c1)]);
                    after
                }
                [0xc2, after @ ..] => {
                    out.push(0xc2);
                    after
                }
                [b, after @ ..] => {
                    out.extend_from_slice(&[b'\\', b'x', hex(b >> 4), hex(*b)]);
                    after
                }
            };
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    // Valid UTF-8: valid pieces copied whole, ASCII escapes, U+FFFD.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A facility's name, as syslog.conf(5) and RFC 5424 call it (`local0`).
pub fn facility_name(facility: u8) -> &'static str {
    const NAMES: [&str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    NAMES
        .get(usize::from(facility))
        .copied()
        .unwrap_or("unknown")
}

/// A severity's name, as syslog.conf(5) spells it (`warning`, `err`).
pub fn severity_name(severity: u8) -> &'static str {
    const NAMES: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    NAMES
        .get(usize::from(severity))
        .copied()
        .unwrap_or("unknown")
}

/// What the listener counted since it started (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams read.
    pub received: u64,
    /// Datagrams read that became no record: empty ones.
    pub dropped: u64,
    /// Datagrams longer than `MAX_MESSAGE`, cut there.
    pub truncated: u64,
    /// Times reading paused because the budget of a window was spent.
    pub throttled: u64,
    /// Times the sink had no room, and reading paused until it had.
    pub refused: u64,
}

/// The counters behind `Stats`, shared by the thread and the handle.
#[derive(Debug, Default)]
pub struct Counters {
    received: AtomicU64,
    dropped: AtomicU64,
    truncated: AtomicU64,
    throttled: AtomicU64,
    refused: AtomicU64,
}

impl Counters {
    pub fn stats(&self) -> Stats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            received: get(&self.received),
            dropped: get(&self.dropped),
            truncated: get(&self.truncated),
            throttled: get(&self.throttled),
            refused: get(&self.refused),
        }
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The listener's handle. `close` (or dropping it) stops the thread and
/// removes the socket file.
pub struct Syslog {
    path: PathBuf,
    /// The socket file as bound (device, inode): removed only if still it.
    file: (u64, u64),
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    wake: Wake,
    thread: Option<JoinHandle<()>>,
}

/// Listen at `path` with the default `Limits`; see `start_with`.
pub fn start(
    path: &Path,
    sink: impl FnMut(Record) -> Result<(), Record> + Send + 'static,
) -> io::Result<Syslog> {
    start_with(path, Limits::default(), sink)
}

/// Bind the socket at `path` (mode 0666; a stale socket there replaced,
/// anything else refused) and start the listener thread, which hands each
/// message to `sink`. The sink must not block: it returns the record
/// (`Err`) when it has no room, and the thread offers it again a little
/// later, reading nothing meanwhile (the senders wait: nothing is lost).
/// A sink that would rather drop returns `Ok` and counts what it dropped.
/// Errors: the path (not a socket, a live socket, no such directory) and
/// the thread's start; nothing is left at `path` then.
pub fn start_with(
    path: &Path,
    limits: Limits,
    sink: impl FnMut(Record) -> Result<(), Record> + Send + 'static,
) -> io::Result<Syslog> {
    let (socket, file) = socket::bind(path)?;
    let started = (|| {
        let (wake_read, wake) = polling::wake_pipe()?;
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let listener = listen::Listener {
            socket,
            wake: wake_read,
            stop: stop.clone(),
            counters: counters.clone(),
            limits,
        };
        let thread = thread::Builder::new()
            .name(SERVICE.into())
            .spawn(move || listener.run(sink))?;
        Ok(Syslog {
            path: path.to_path_buf(),
            file,
            counters,
            stop,
            wake,
            thread: Some(thread),
        })
    })();
    if started.is_err() {
        socket::remove(path, file);
    }
    started
}

impl Syslog {
    pub fn stats(&self) -> Stats {
        self.counters.stats()
    }

    /// The counters, for a reader that outlives this handle (`/metrics`).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop the thread (a record the sink refused is dropped) and remove
    /// the socket file. Returns once the thread has ended: it never blocks
    /// on anything but poll(2) and the sink.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.wake();
        socket::remove(&self.path, self.file);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.shut();
    }
}

#[cfg(test)]
mod tests;
