//! `log-file` (SPEC section 10): each service's lines also go to a file of
//! its own, with their time and stream, rotated at `max-size` so that it
//! never fills the disk.
//!
//! One thread (`log-files`) owns every file. Callers hand it lines through
//! `LogFiles::line`, which never blocks: the queue to the thread is bounded
//! (`QUEUE_LINES` lines, `QUEUE_BYTES` bytes), and a line that does not fit
//! is dropped and counted for its service. The output thread keeps it from
//! filling: while it is half full (`has_room`), the pipes of services with
//! a log file are not read, so a slow disk makes those services wait in
//! `write(2)`, as a slow stdout does; only failed writes cost lines. The thread writes batches of
//! whole lines with `write(2)`; a write that fails (`ENOSPC`, `EIO`,
//! `EROFS`, ...) drops the lines of its batch that did not go in whole (a
//! torn last line is cut off again with `ftruncate`), counts them, warns at
//! most once per service every `WARN_EVERY`, and the next lines are tried
//! again: logging resumes by itself once there is room.
//!
//! A line is written as `2026-12-04T14:00:00.123Z stdout listening\n`
//! (RFC 3339 UTC with milliseconds, the stream, the service's bytes as they
//! came, without their newline). Rotation happens only between lines: when
//! a line would take the file past `max-size`, `path.(keep-1)` becomes
//! `path.keep` (the oldest is replaced), …, `path` becomes `path.1`, and a
//! fresh `path` takes the line. So every file holds whole lines, at most
//! `max-size` bytes of them, except a line longer than `max-size` alone,
//! which gets a file of its own. When the rotation fails (`path.1` cannot
//! be replaced), lines are dropped rather than written past `max-size`.
//!
//! Files are created `0640` (umask applied), opened `O_APPEND | O_CLOEXEC |
//! O_NOFOLLOW | O_NONBLOCK` relative to a descriptor of their directory,
//! which is created if missing (`mkdir -p`, `0750`). The path comes from a
//! trusted service file, but the directory may belong to the user a service
//! runs as (`/var/log/app` owned by `app`), who may then place anything in
//! it. corral never follows a symbolic link at `path` (`O_NOFOLLOW`), never
//! opens anything but a regular file with one link (no FIFO that would
//! block the open, no hard link to another file), renames with `renameat`
//! (which moves links themselves, never their targets) and truncates only a
//! file it opened and checked. What such a user can still do: delete,
//! rename or replace the files (losing the logs, or making corral drop
//! lines while its planted entries stand in the way), create `path` before
//! corral does and so read what corral writes there, and fill the disk.
//! The directories on the way to the file's own directory are trusted
//! configuration and followed through links (`/var/log` may be one): a
//! user owning one of *those* could send the files (named `path`'s file
//! name and its `.N`) to another directory.
//!
//! What it must never do: block its callers (only `try`-style sends and
//! short locks of the counter table), follow a link at a log path, write a
//! torn line it knows of, or grow a file past `max-size` with more than one
//! line. It never touches service state, stdout or stderr.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::{self, Mode, SFlag};

use super::Stream;
use crate::config::LogFile;

/// Lines that may wait for the file thread, all services together...
pub const QUEUE_LINES: usize = 16 * 1024;
/// ...and bytes (each line counts `LINE_COST` more than its length).
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// What a queued line costs besides its bytes (message, allocation).
const LINE_COST: usize = 64;
/// Messages handled before the thread writes what it has gathered.
const BATCH: usize = 1024;
/// A service's gathered bytes that are written without waiting for the
/// end of the batch.
const PENDING_MAX: usize = 256 * 1024;
/// Capacity a service's gathering buffer keeps between writes (100 quiet
/// services must not hold 100 flood-sized buffers).
const PENDING_KEEP: usize = 16 * 1024;
/// At most one warning per service this often about dropped lines.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// After a failed open or rotation, lines are dropped without another
/// attempt for this long (a flood must not cost a rename per line).
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Mode of a new log file and of the directories created for it.
const FILE_MODE: u32 = 0o640;
const DIR_MODE: u32 = 0o750;
/// The last instant humantime can write (the end of year 9999).
const LAST_SECOND: u64 = 253_402_300_799;

/// Lines written and dropped for one service, since corral started (kept
/// when its log file is closed, for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogFileCounts {
    pub written: u64,
    pub dropped: u64,
}

/// The handle: cheap to clone; the thread ends (after writing what it has)
/// once every clone is gone.
#[derive(Clone)]
pub struct LogFiles {
    sender: Sender<Message>,
    shared: Arc<Shared>,
}

/// What callers and the thread share: the counters, and the queue's fill.
#[derive(Default)]
struct Shared {
    services: Mutex<HashMap<Arc<str>, Arc<Counters>>>,
    queued_lines: AtomicUsize,
    queued_bytes: AtomicUsize,
    queue_lines: usize,
    queue_bytes: usize,
}

#[derive(Default)]
struct Counters {
    /// Lines are taken (between `open` and `close`).
    open: AtomicBool,
    written: AtomicU64,
    /// Every dropped line, monotonic.
    dropped: AtomicU64,
    /// Lines dropped because the queue was full, not yet warned about.
    queue_unreported: AtomicU64,
}

enum Message {
    Open {
        service: Arc<str>,
        spec: LogFile,
        counters: Arc<Counters>,
    },
    Line {
        service: Arc<str>,
        ts: SystemTime,
        stream: Stream,
        bytes: Vec<u8>,
    },
    Close {
        service: Arc<str>,
    },
    Flush {
        done: Sender<()>,
    },
}

impl std::fmt::Debug for LogFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogFiles")
    }
}

impl LogFiles {
    /// Starts the thread.
    pub fn start() -> io::Result<LogFiles> {
        let (files, receiver) = LogFiles::queue(QUEUE_LINES, QUEUE_BYTES);
        let shared = files.shared.clone();
        thread::Builder::new()
            .name("log-files".to_string())
            .spawn(move || Writer::new(shared).run(&receiver))?;
        Ok(files)
    }

    /// The handle and the receiving end of its queue, without a thread.
    fn queue(lines: usize, bytes: usize) -> (LogFiles, Receiver<Message>) {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            queue_lines: lines,
            queue_bytes: bytes,
            ..Shared::default()
        });
        (LogFiles { sender, shared }, receiver)
    }

    /// Creates `spec`'s directory (`mkdir -p`) and file if missing, and
    /// checks the file can be opened for appending: for the startup steps,
    /// so that a path corral cannot write is an error before any service
    /// runs. Blocks on the file system: never call it from the loop.
    pub fn prepare(spec: &LogFile) -> Result<(), String> {
        open_dir(&spec.path)
            .and_then(|(dir, name)| open_file(&dir, &name).map(drop))
            .map_err(|e| format!("cannot open {}: {}", spec.path.display(), e.desc()))
    }

    /// From now on, `service`'s lines go to `spec.path` (opened by the
    /// thread; a failure is a warning, then lines are dropped and counted
    /// until an attempt succeeds). Opening again with another spec (a
    /// reload) switches files between two lines; with the same spec it
    /// changes nothing.
    pub fn open(&self, service: Arc<str>, spec: &LogFile) {
        let counters = {
            let mut services = lock(&self.shared.services);
            services.entry(service.clone()).or_default().clone()
        };
        counters.open.store(true, Ordering::Relaxed);
        // Unbounded, so never blocks: opens and closes are few, and must
        // not be lost or reordered with the lines around them.
        let _ = self.sender.send(Message::Open {
            service,
            spec: spec.clone(),
            counters,
        });
    }

    /// `service`'s lines are no longer written (its file is closed once the
    /// lines queued before are written). Its counters stay.
    pub fn close(&self, service: &str) {
        let Some((name, counters)) = self.entry(service) else {
            return;
        };
        counters.open.store(false, Ordering::Relaxed);
        let _ = self.sender.send(Message::Close { service: name });
    }

    /// One line of `service` (without its newline), read at `ts`. Never
    /// blocks: when the queue is full, the line is dropped and counted.
    /// A service without an open log file is ignored (cheaply: call it for
    /// every line).
    pub fn line(&self, service: &str, ts: SystemTime, stream: Stream, bytes: &[u8]) {
        let Some((name, counters)) = self.entry(service) else {
            return;
        };
        if !counters.open.load(Ordering::Relaxed) {
            return;
        }
        let cost = bytes.len().saturating_add(LINE_COST);
        let shared = &self.shared;
        let lines = shared.queued_lines.fetch_add(1, Ordering::AcqRel);
        let queued = shared.queued_bytes.fetch_add(cost, Ordering::AcqRel);
        if lines >= shared.queue_lines || queued.saturating_add(cost) > shared.queue_bytes {
            shared.queued_lines.fetch_sub(1, Ordering::AcqRel);
            shared.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            counters.queue_unreported.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sent = self.sender.send(Message::Line {
            service: name,
            ts,
            stream,
            bytes: bytes.to_vec(),
        });
        if sent.is_err() {
            // The thread is gone (it never ends while a handle lives, but a
            // bug must cost lines, not PID 1).
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines of `service` dropped so far (0 for an unknown service).
    pub fn dropped(&self, service: &str) -> u64 {
        self.counts(service).dropped
    }

    /// Lines of `service` written and dropped so far.
    pub fn counts(&self, service: &str) -> LogFileCounts {
        self.entry(service)
            .map(|(_, c)| snapshot(&c))
            .unwrap_or_default()
    }

    /// Every service that ever had a log file, by name, with its counts:
    /// for `/metrics`.
    /// Whether the queue to the file thread is less than half full: the
    /// output thread reads the pipes of services with a log file only then,
    /// so a slow disk makes those services wait (as a slow stdout does),
    /// and only a write that fails (ENOSPC...) costs lines.
    pub fn has_room(&self) -> bool {
        let shared = &self.shared;
        shared.queued_lines.load(Ordering::Acquire) < shared.queue_lines / 2
            && shared.queued_bytes.load(Ordering::Acquire) < shared.queue_bytes / 2
    }

    /// Whether `service`'s lines go to a log file now (looked up once per
    /// read by the output thread, not per line).
    pub fn is_open(&self, service: &str) -> bool {
        self.entry(service)
            .is_some_and(|(_, counters)| counters.open.load(Ordering::Relaxed))
    }

    pub fn all_counts(&self) -> Vec<(Arc<str>, LogFileCounts)> {
        let mut all: Vec<_> = lock(&self.shared.services)
            .iter()
            .map(|(name, counters)| (name.clone(), snapshot(counters)))
            .collect();
        crate::sort::sort_by(&mut all, |a, b| a.0.cmp(&b.0));
        all
    }

    /// Waits until the lines queued before this call are written (or
    /// dropped), at most `timeout`: for the end of a shutdown, and tests.
    /// Returns whether they were.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, finished) = crossbeam_channel::bounded(1);
        if self.sender.send(Message::Flush { done }).is_err() {
            return false;
        }
        finished.recv_timeout(timeout).is_ok()
    }

    fn entry(&self, service: &str) -> Option<(Arc<str>, Arc<Counters>)> {
        lock(&self.shared.services)
            .get_key_value(service)
            .map(|(name, counters)| (name.clone(), counters.clone()))
    }
}

fn snapshot(counters: &Counters) -> LogFileCounts {
    LogFileCounts {
        written: counters.written.load(Ordering::Relaxed),
        dropped: counters.dropped.load(Ordering::Relaxed),
    }
}

/// A poisoned lock only means a thread panicked while holding it; the
/// counters inside are still good.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The thread's side: every open file.
struct Writer {
    shared: Arc<Shared>,
    sinks: HashMap<Arc<str>, Sink>,
}

impl Writer {
    fn new(shared: Arc<Shared>) -> Writer {
        Writer {
            shared,
            sinks: HashMap::new(),
        }
    }

    /// Until every handle is gone: take a batch of messages, write it.
    fn run(mut self, receiver: &Receiver<Message>) {
        while let Ok(first) = receiver.recv() {
            let mut next = Some(first);
            let mut handled = 0;
            let mut flushes = Vec::new();
            while let Some(message) = next.take() {
                if let Message::Flush { done } = message {
                    // Answered once what came before is written.
                    flushes.push(done);
                } else {
                    self.handle(message);
                }
                handled += 1;
                if handled < BATCH {
                    next = receiver.try_recv().ok();
                }
            }
            let now = Instant::now();
            for sink in self.sinks.values_mut() {
                sink.write(now);
                sink.report(now);
            }
            for done in flushes {
                let _ = done.try_send(());
            }
        }
        let now = Instant::now();
        for sink in self.sinks.values_mut() {
            sink.write(now);
        }
    }

    fn handle(&mut self, message: Message) {
        let now = Instant::now();
        match message {
            Message::Open {
                service,
                spec,
                counters,
            } => {
                if let Some(sink) = self.sinks.get_mut(&service) {
                    if sink.spec == spec {
                        return;
                    }
                    sink.write(now);
                }
                let mut sink = Sink::new(service.clone(), spec, counters);
                sink.open(now);
                self.sinks.insert(service, sink);
            }
            Message::Line {
                service,
                ts,
                stream,
                bytes,
            } => {
                let cost = bytes.len().saturating_add(LINE_COST);
                self.shared.queued_lines.fetch_sub(1, Ordering::AcqRel);
                self.shared.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
                if let Some(sink) = self.sinks.get_mut(&service) {
                    sink.line(now, ts, stream, &bytes);
                }
            }
            Message::Close { service } => {
                if let Some(mut sink) = self.sinks.remove(&service) {
                    sink.write(now);
                    sink.report(now);
                }
            }
            // Handled by `run`.
            Message::Flush { .. } => {}
        }
    }
}

/// One service's file.
struct Sink {
    service: Arc<str>,
    spec: LogFile,
    counters: Arc<Counters>,
    /// The directory, and the file's name in it.
    dir: Option<OwnedFd>,
    name: OsString,
    file: Option<File>,
    /// Bytes in the file, as far as corral knows (what it wrote, after
    /// the size it found at open).
    size: u64,
    /// Whole lines gathered for one write, and where each ends.
    pending: Vec<u8>,
    ends: Vec<usize>,
    /// No open or rotation is tried before then.
    retry_at: Option<Instant>,
    /// Warnings: when the last one was, lines dropped since, and why.
    warned_at: Option<Instant>,
    unreported: u64,
    why: Option<String>,
    /// A write failed since the last success (a success then says so).
    failing: bool,
}

impl Sink {
    fn new(service: Arc<str>, spec: LogFile, counters: Arc<Counters>) -> Sink {
        Sink {
            service,
            spec,
            counters,
            dir: None,
            name: OsString::new(),
            file: None,
            size: 0,
            pending: Vec::new(),
            ends: Vec::new(),
            retry_at: None,
            warned_at: None,
            unreported: 0,
            why: None,
            failing: false,
        }
    }

    /// Opens (creating) the directory and the file; on failure, lines are
    /// dropped until `retry_at`.
    fn open(&mut self, now: Instant) -> bool {
        self.file = None;
        let opened = open_dir(&self.spec.path).and_then(|(dir, name)| {
            let (file, size) = open_file(&dir, &name)?;
            Ok((dir, name, file, size))
        });
        match opened {
            Ok((dir, name, file, size)) => {
                self.dir = Some(dir);
                self.name = name;
                self.file = Some(file);
                self.size = size;
                self.retry_at = None;
                true
            }
            Err(e) => {
                self.failed(now, format!("cannot open: {}", e.desc()));
                false
            }
        }
    }

    /// Something failed: no new attempt before `RETRY_EVERY`.
    fn failed(&mut self, now: Instant, why: String) {
        self.retry_at = Some(now.checked_add(RETRY_EVERY).unwrap_or(now));
        self.why = Some(why);
        self.failing = true;
    }

    fn line(&mut self, now: Instant, ts: SystemTime, stream: Stream, bytes: &[u8]) {
        // Nothing is gathered while there is no file (`write` drops).
        if self.file.is_none() && !self.reopen(now) {
            self.drop_lines(1);
            return;
        }
        let start = self.pending.len();
        let _ = write!(
            self.pending,
            "{} {} ",
            humantime::format_rfc3339_millis(writable_time(ts)),
            stream.as_str()
        );
        self.pending.extend_from_slice(bytes);
        self.pending.push(b'\n');
        let len = (self.pending.len() - start) as u64;
        let before = self.size.saturating_add(start as u64);
        if before > 0 && before.saturating_add(len) > self.spec.max_size {
            // Rotate between lines: the gathered ones first, then this one
            // into a fresh file.
            let line = self.pending.split_off(start);
            self.write(now);
            if !self.rotate(now) {
                self.drop_lines(1);
                return;
            }
            self.pending = line;
        }
        self.ends.push(self.pending.len());
        if self.pending.len() >= PENDING_MAX {
            self.write(now);
        }
    }

    /// Tries opening again when the time has come.
    fn reopen(&mut self, now: Instant) -> bool {
        if self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        self.open(now)
    }

    /// `path.(keep-1)` → `path.keep`, …, `path` → `path.1`, then a fresh
    /// `path`. Whether a file is ready to take a line.
    fn rotate(&mut self, now: Instant) -> bool {
        if self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        let Some(dir) = &self.dir else {
            return self.open(now);
        };
        for k in (1..self.spec.keep).rev() {
            let from = numbered(&self.name, k);
            let to = numbered(&self.name, k + 1);
            // A missing older file is normal; another failure leaves that
            // file where it is (the next rename then fails or replaces it).
            let _ = fcntl::renameat(dir, from.as_os_str(), dir, to.as_os_str());
        }
        let first = numbered(&self.name, 1);
        match fcntl::renameat(dir, self.name.as_os_str(), dir, first.as_os_str()) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => {
                self.failed(now, format!("cannot rotate: {}", e.desc()));
                return false;
            }
        }
        self.file = None;
        match open_file(dir, &self.name) {
            Ok((file, size)) => {
                self.file = Some(file);
                self.size = size;
                true
            }
            Err(e) => {
                self.failed(now, format!("cannot open after rotating: {}", e.desc()));
                false
            }
        }
    }

    /// Writes the gathered lines. On an error, the lines that went in
    /// whole stay, a torn one is cut off, the rest are dropped.
    fn write(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let lines = self.ends.len() as u64;
        let Some(file) = &mut self.file else {
            self.drop_pending(lines);
            return;
        };
        let mut done = 0;
        let mut error = None;
        while let Some(rest) = self.pending.get(done..).filter(|r| !r.is_empty()) {
            match file.write(rest) {
                Ok(0) => {
                    error = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let Some(mut error) = error else {
            self.size = self.size.saturating_add(done as u64);
            self.counters.written.fetch_add(lines, Ordering::Relaxed);
            self.clear_pending();
            if self.failing {
                self.failing = false;
                self.resumed(now);
            }
            return;
        };
        let whole = self.ends.iter().take_while(|&&end| end <= done).count();
        let kept = match whole.checked_sub(1).and_then(|i| self.ends.get(i)) {
            Some(&end) => end,
            None => 0,
        };
        let torn = done - kept;
        if torn > 0 {
            // Cut the torn line off: the file's real end, less what went
            // in of it (O_APPEND: others may have written too).
            let cut = stat::fstat(file.as_fd())
                .map_err(|e| e.desc().to_string())
                .and_then(|st| {
                    let end = u64::try_from(st.st_size).unwrap_or(0);
                    let to = end.saturating_sub(torn as u64);
                    nix::unistd::ftruncate(file.as_fd(), i64::try_from(to).unwrap_or(i64::MAX))
                        .map_err(|e| e.desc().to_string())
                });
            if let Err(why) = cut {
                // The torn piece stays; the next line must not be glued
                // to it: start a fresh file at the next line.
                self.size = self.spec.max_size;
                error = io::Error::other(format!("{error}, and cannot cut the torn line: {why}"));
            }
        }
        self.size = self.size.saturating_add(kept as u64);
        self.counters
            .written
            .fetch_add(whole as u64, Ordering::Relaxed);
        self.failing = true;
        self.why = Some(error.to_string());
        self.drop_pending(lines - whole as u64);
    }

    fn drop_pending(&mut self, lines: u64) {
        self.clear_pending();
        self.drop_lines(lines);
    }

    fn clear_pending(&mut self) {
        self.pending.clear();
        self.pending.shrink_to(PENDING_KEEP);
        self.ends.clear();
        self.ends.shrink_to(PENDING_KEEP / 64);
    }

    fn drop_lines(&mut self, lines: u64) {
        self.counters.dropped.fetch_add(lines, Ordering::Relaxed);
        self.unreported = self.unreported.saturating_add(lines);
    }

    /// At most one warning every `WARN_EVERY` about the lines dropped since
    /// the last one (the queue's drops included).
    fn report(&mut self, now: Instant) {
        let queue = self.counters.queue_unreported.swap(0, Ordering::Relaxed);
        self.unreported = self.unreported.saturating_add(queue);
        if queue > 0 && self.why.is_none() {
            self.why = Some("the queue to the log file thread was full".to_string());
        }
        let quiet = self
            .warned_at
            .and_then(|at| at.checked_add(WARN_EVERY))
            .is_some_and(|until| now < until);
        if self.unreported == 0 || quiet {
            return;
        }
        crate::log::warn!(
            service = %self.service,
            path = %self.spec.path.display(),
            dropped = self.unreported,
            why = self.why.as_deref().unwrap_or(""),
            "log file: lines dropped"
        );
        self.warned_at = Some(now);
        self.unreported = 0;
        self.why = None;
    }

    /// Writing works again after failures: says so, with the lines
    /// dropped since the last warning.
    fn resumed(&mut self, now: Instant) {
        let queue = self.counters.queue_unreported.swap(0, Ordering::Relaxed);
        let dropped = self.unreported.saturating_add(queue);
        crate::log::warn!(
            service = %self.service,
            path = %self.spec.path.display(),
            dropped,
            "log file: writing again"
        );
        self.warned_at = Some(now);
        self.unreported = 0;
        self.why = None;
    }
}

/// `path`'s directory, created if missing (`mkdir -p`), opened, and the
/// file's name in it.
fn open_dir(path: &Path) -> Result<(OwnedFd, OsString), Errno> {
    let name = path.file_name().ok_or(Errno::EISDIR)?.to_os_string();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    // The directory's own path is trusted configuration: links followed.
    let fd = fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok((fd, name))
}

/// Opens (creating) `name` in `dir` for appending, and its size: a
/// regular file with one link, never through a symbolic link, never
/// blocking on a FIFO.
fn open_file(dir: &OwnedFd, name: &OsStr) -> Result<(File, u64), Errno> {
    let fd = fcntl::openat(
        dir,
        name,
        OFlag::O_WRONLY
            | OFlag::O_APPEND
            | OFlag::O_CREAT
            | OFlag::O_CLOEXEC
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY,
        Mode::from_bits_truncate(FILE_MODE),
    )?;
    let st = stat::fstat(&fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Errno::EINVAL);
    }
    if st.st_nlink != 1 {
        return Err(Errno::EMLINK);
    }
    Ok((File::from(fd), u64::try_from(st.st_size).unwrap_or(0)))
}

/// `name.k`.
fn numbered(name: &OsStr, k: u32) -> OsString {
    let mut numbered = name.to_os_string();
    numbered.push(format!(".{k}"));
    numbered
}

/// A time humantime can write: clocks before 1970 or past 9999 are pinned.
fn writable_time(ts: SystemTime) -> SystemTime {
    let secs = ts
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .min(Duration::from_secs(LAST_SECOND));
    UNIX_EPOCH + secs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// 2026-12-04T14:00:00.123Z: every prefix is `TS stdout ` (32 bytes).
    fn ts() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_796_392_800_123)
    }
    const PREFIX: usize = 32;
    const WAIT: Duration = Duration::from_secs(30);

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("corral-output-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spec(path: &Path, max_size: u64, keep: u32) -> LogFile {
        LogFile {
            path: path.to_path_buf(),
            max_size,
            keep,
        }
    }

    /// Line `n` of a test: its number, padded with `x` to `width` bytes.
    fn body(n: usize, width: usize) -> String {
        let mut line = format!("line-{n:06}-");
        while line.len() < width {
            line.push('x');
        }
        line
    }

    fn numbered_path(path: &Path, k: u32) -> PathBuf {
        PathBuf::from(numbered(path.as_os_str(), k))
    }

    /// The lines of one file: each whole (prefix, body, newline).
    fn file_lines(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{}: ends inside a line",
            path.display()
        );
        text.lines()
            .map(|line| {
                let body = line
                    .strip_prefix("2026-12-04T14:00:00.123Z stdout ")
                    .unwrap_or_else(|| panic!("{}: bad line {line:?}", path.display()));
                body.to_string()
            })
            .collect()
    }

    /// `path.keep` … `path.1`, `path`: the lines, oldest first, and each
    /// file's size; `path.(keep+1)` must not exist.
    fn kept(path: &Path, keep: u32) -> (Vec<String>, Vec<u64>) {
        assert!(
            !numbered_path(path, keep + 1).exists(),
            "more than {keep} rotated files"
        );
        let mut lines = Vec::new();
        let mut sizes = Vec::new();
        for k in (0..=keep).rev() {
            let file = if k == 0 {
                path.to_path_buf()
            } else {
                numbered_path(path, k)
            };
            if file.exists() {
                sizes.push(std::fs::metadata(&file).unwrap().len());
                lines.extend(file_lines(&file));
            }
        }
        (lines, sizes)
    }

    #[test]
    fn rotation_keeps_whole_lines_in_order_and_at_most_keep_files() {
        let dir = tmp("rotation");
        let path = dir.join("logs/web.log");
        let files = LogFiles::start().unwrap();
        files.open(Arc::from("web"), &spec(&path, 1000, 3));
        // 100 bytes a line: ten fill a file exactly to the limit.
        let width = 100 - PREFIX - 1;
        for n in 0..95 {
            files.line("web", ts(), Stream::Stdout, body(n, width).as_bytes());
        }
        assert!(files.flush(WAIT));
        let (lines, sizes) = kept(&path, 3);
        let want: Vec<String> = (60..95).map(|n| body(n, width)).collect();
        assert_eq!(lines, want);
        assert_eq!(sizes, [1000, 1000, 1000, 500]);
        assert_eq!(
            files.counts("web"),
            LogFileCounts {
                written: 95,
                dropped: 0
            }
        );
        // The directory was created, 0750 at most; the files are 0640 at
        // most (the umask may take more away).
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir.join("logs")) & !0o750, 0);
        assert_eq!(mode(&path) & !0o640, 0);
        assert_eq!(mode(&path) & 0o600, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_of_every_size_go_whole_into_files_of_at_most_max_size() {
        let dir = tmp("sizes");
        let path = dir.join("web.log");
        let files = LogFiles::start().unwrap();
        files.open(Arc::from("web"), &spec(&path, 2000, 4));
        // Widths that wander (a small LCG), some of them past a whole file.
        let mut seed = 12345u32;
        let mut want = Vec::new();
        for n in 0..400 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let width = match n % 97 {
                13 => 5000,
                _ => 12 + (seed >> 16) as usize % 400,
            };
            let line = body(n, width);
            files.line("web", ts(), Stream::Stdout, line.as_bytes());
            want.push(line);
        }
        assert!(files.flush(WAIT));
        let (lines, _) = kept(&path, 4);
        assert!(want.ends_with(&lines), "kept lines are not the last ones");
        assert!(lines.len() > 10);
        for k in 0..=4 {
            let file = if k == 0 {
                path.clone()
            } else {
                numbered_path(&path, k)
            };
            let size = std::fs::metadata(&file).unwrap().len();
            let count = file_lines(&file).len();
            assert!(
                size <= 2000 || count == 1,
                "{}: {size} bytes",
                file.display()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_past_max_size_gets_a_file_of_its_own_and_one_at_it_fits() {
        let dir = tmp("huge");
        let path = dir.join("web.log");
        let files = LogFiles::start().unwrap();
        files.open(Arc::from("web"), &spec(&path, 1000, 3));
        let huge = "h".repeat(3000);
        let exact = "e".repeat(1000 - PREFIX - 1);
        for line in ["a", &huge, "b", &exact, "c"] {
            files.line("web", ts(), Stream::Stdout, line.as_bytes());
        }
        assert!(files.flush(WAIT));
        assert_eq!(file_lines(&numbered_path(&path, 3)), [huge]);
        assert_eq!(file_lines(&numbered_path(&path, 2)), ["b"]);
        assert_eq!(file_lines(&numbered_path(&path, 1)), [exact]);
        assert_eq!(
            std::fs::metadata(numbered_path(&path, 1)).unwrap().len(),
            1000
        );
        assert_eq!(file_lines(&path), ["c"]);
        // "a" was the oldest: dropped with its file.
        assert!(!numbered_path(&path, 4).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_file_is_appended_to_and_stderr_is_named() {
        let dir = tmp("append");
        let path = dir.join("web.log");
        std::fs::write(&path, "old\n").unwrap();
        LogFiles::prepare(&spec(&path, 1000, 1)).unwrap();
        let files = LogFiles::start().unwrap();
        files.open(Arc::from("web"), &spec(&path, 1000, 1));
        files.line("web", ts(), Stream::Stderr, b"oops \xff");
        // Not opened: ignored, not counted.
        files.line("db", ts(), Stream::Stdout, b"x");
        assert!(files.flush(WAIT));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"old\n2026-12-04T14:00:00.123Z stderr oops \xff\n"
        );
        assert_eq!(files.counts("db"), LogFileCounts::default());
        // Closed: later lines are ignored; counters stay.
        files.close("web");
        files.line("web", ts(), Stream::Stdout, b"late");
        assert!(files.flush(WAIT));
        assert_eq!(files.counts("web").written, 1);
        assert_eq!(
            files.all_counts(),
            [(
                Arc::from("web"),
                LogFileCounts {
                    written: 1,
                    dropped: 0
                }
            )]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        // No thread takes the lines: the queue fills and stays full.
        let (files, queue) = LogFiles::queue(4, 1 << 20);
        let dir = tmp("queue");
        files.open(Arc::from("web"), &spec(&dir.join("web.log"), 1000, 1));
        let started = Instant::now();
        for _ in 0..10_000 {
            files.line("web", ts(), Stream::Stdout, b"hello");
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(files.dropped("web"), 10_000 - 4);
        assert_eq!(queue.len(), 1 + 4, "the open and four lines");
        // Bytes bound it too: one 100-byte line fits in 200, not two.
        let (files, _queue) = LogFiles::queue(1000, 200);
        files.open(Arc::from("web"), &spec(&dir.join("web.log"), 1000, 1));
        files.line("web", ts(), Stream::Stdout, &[b'x'; 100]);
        files.line("web", ts(), Stream::Stdout, &[b'x'; 100]);
        assert_eq!(files.dropped("web"), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_fifos_and_hard_links_at_the_path_are_refused() {
        let dir = tmp("links");
        let target = dir.join("target");
        std::fs::write(&target, "keep me\n").unwrap();
        let link = dir.join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let hard = dir.join("hard.log");
        std::fs::hard_link(&target, &hard).unwrap();
        let fifo = dir.join("fifo.log");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        for path in [&link, &hard, &fifo] {
            assert!(
                LogFiles::prepare(&spec(path, 1000, 1)).is_err(),
                "{}",
                path.display()
            );
        }
        let files = LogFiles::start().unwrap();
        for (name, path) in [("link", &link), ("hard", &hard), ("fifo", &fifo)] {
            files.open(Arc::from(name), &spec(path, 1000, 1));
            files.line(name, ts(), Stream::Stdout, b"secret");
        }
        // Never blocks on the FIFO nobody reads.
        assert!(files.flush(WAIT));
        for name in ["link", "hard", "fifo"] {
            assert_eq!(files.dropped(name), 1, "{name}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rotated_file_that_cannot_be_replaced_drops_lines_instead_of_growing() {
        let dir = tmp("blocked");
        let path = dir.join("web.log");
        // A non-empty directory where `web.log.1` should go.
        std::fs::create_dir_all(numbered_path(&path, 1).join("x")).unwrap();
        let files = LogFiles::start().unwrap();
        files.open(Arc::from("web"), &spec(&path, 1000, 1));
        let width = 100 - PREFIX - 1;
        for n in 0..30 {
            files.line("web", ts(), Stream::Stdout, body(n, width).as_bytes());
        }
        assert!(files.flush(WAIT));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1000);
        assert_eq!(
            files.counts("web"),
            LogFileCounts {
                written: 10,
                dropped: 20
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn times_outside_what_rfc3339_can_say_are_pinned() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(writable_time(before), UNIX_EPOCH);
        let far = UNIX_EPOCH + Duration::from_secs(LAST_SECOND * 2);
        assert_eq!(
            humantime::format_rfc3339_millis(writable_time(far)).to_string(),
            "9999-12-31T23:59:59.000Z"
        );
    }

    /// A 64 KiB tmpfs in a mount namespace of this test's own thread (and
    /// of the threads it starts), so that no other test sees it.
    fn in_small_tmpfs(dir: &Path, test: impl FnOnce() + Send + 'static) {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts a small tmpfs to fill it: it needs root (run the tests as root, as CI does)"
        );
        let dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let thread = thread::spawn(move || {
            // SAFETY: plain system calls with valid C strings; unshare
            // moves only this thread to a new mount namespace.
            unsafe {
                assert_eq!(
                    libc::unshare(libc::CLONE_NEWNS),
                    0,
                    "unshare: {}",
                    io::Error::last_os_error()
                );
                let root = c"/";
                let none = c"none";
                assert_eq!(
                    libc::mount(
                        none.as_ptr(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null()
                    ),
                    0,
                    "mount --make-rprivate /: {}",
                    io::Error::last_os_error()
                );
                let tmpfs = c"tmpfs";
                let options = c"size=64k";
                assert_eq!(
                    libc::mount(
                        tmpfs.as_ptr(),
                        dir.as_ptr(),
                        tmpfs.as_ptr(),
                        0,
                        options.as_ptr().cast()
                    ),
                    0,
                    "mount tmpfs: {}",
                    io::Error::last_os_error()
                );
            }
            test();
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn a_full_disk_drops_and_counts_lines_without_tearing_and_writing_resumes() {
        let dir = tmp("full");
        let inner = dir.clone();
        in_small_tmpfs(&dir, move || {
            let path = inner.join("web.log");
            let files = LogFiles::start().unwrap();
            files.open(Arc::from("web"), &spec(&path, 10_000_000, 2));
            let width = 100 - PREFIX - 1;
            // 200 KB into 64 KiB, in batches of various sizes.
            for n in 0..2000 {
                files.line("web", ts(), Stream::Stdout, body(n, width).as_bytes());
                if n % 300 == 0 {
                    assert!(files.flush(WAIT));
                }
            }
            assert!(files.flush(WAIT));
            let counts = files.counts("web");
            assert_eq!(counts.written + counts.dropped, 2000, "{counts:?}");
            assert!(counts.dropped > 1000, "{counts:?}");
            let lines = file_lines(&path);
            assert_eq!(lines.len() as u64, counts.written);
            let want: Vec<String> = (0..lines.len()).map(|n| body(n, width)).collect();
            assert_eq!(lines, want);
            // Room again: the next lines go in.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            for n in 0..10 {
                files.line("web", ts(), Stream::Stdout, body(n, width).as_bytes());
            }
            assert!(files.flush(WAIT));
            assert_eq!(files.counts("web").written, counts.written + 10);
            assert_eq!(file_lines(&path).len(), 10);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
