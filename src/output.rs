//! The output thread: reads every `output = "prefix"` service's stdout and
//! stderr and writes each complete line to corral's own as `NAME | line`,
//! keeping the last lines of each service in `Logs` for `corral ctl logs`.
//!
//! One thread, one `poll(2)` over all pipes (plus a wake-up pipe for newly
//! added streams), so 100 services cost one thread, not 200. A line is
//! written with a single `write` of whole lines, so two services' lines never
//! interleave. A partial last line is written (with a newline) at EOF; a line
//! longer than `MAX_LINE` is cut into `MAX_LINE` pieces. This thread never
//! touches service state: it only reads pipes, writes fds 1 and 2, and
//! appends to `Logs` (a short lock; followers get lines by `try_send`, so a
//! slow `logs -f` client is dropped, never waited for).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tracing::debug;

pub const MAX_LINE: usize = 64 * 1024;

/// Lines kept per service for `corral ctl logs` (SPEC section 7)...
pub const LOG_LINES: usize = 1000;
/// ...and at most this many bytes of them: the oldest lines go first.
pub const LOG_BYTES: usize = 1024 * 1024;
/// Lines a `logs -f` client may fall behind before it is dropped.
pub const FOLLOW_BACKLOG: usize = 4096;

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
}

/// One line of a service's output, without its newline (or `\r\n`).
/// Bytes that are not UTF-8 are replaced (U+FFFD): the protocol is JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    pub line: String,
}

/// The recent output of every `output = "prefix"` service, and who follows
/// it. Shared by the output thread (which appends) and the control server
/// (which reads and subscribes); cloning shares the same store.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    inner: Arc<Mutex<LogStore>>,
}

#[derive(Debug, Default)]
struct LogStore {
    services: HashMap<String, Ring>,
    /// corral is exiting: no new followers.
    closed: bool,
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    followers: Vec<Sender<LogEntry>>,
}

impl Logs {
    pub fn new() -> Logs {
        Logs::default()
    }

    fn lock(&self) -> MutexGuard<'_, LogStore> {
        // A panic elsewhere while holding the lock leaves the store usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `lines` of `service` (dropping the oldest beyond `LOG_LINES` /
    /// `LOG_BYTES`) and pass each to its followers. Never blocks: a follower
    /// whose channel is full or closed is dropped.
    pub fn append(&self, service: &str, stream: Stream, lines: &[&[u8]]) {
        if lines.is_empty() {
            return;
        }
        let mut store = self.lock();
        if !store.services.contains_key(service) {
            store.services.insert(service.to_string(), Ring::default());
        }
        let Some(ring) = store.services.get_mut(service) else {
            return;
        };
        for line in lines {
            let entry = LogEntry {
                stream,
                line: String::from_utf8_lossy(line).into_owned(),
            };
            ring.followers
                .retain(|follower| match follower.try_send(entry.clone()) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                });
            ring.bytes += entry.line.len();
            ring.entries.push_back(entry);
            while ring.entries.len() > LOG_LINES || ring.bytes > LOG_BYTES {
                match ring.entries.pop_front() {
                    Some(old) => ring.bytes -= old.line.len(),
                    None => break,
                }
            }
        }
    }

    /// The last `n` lines of `service` (fewer if it printed fewer).
    pub fn tail(&self, service: &str, n: usize) -> Vec<LogEntry> {
        let store = self.lock();
        store
            .services
            .get(service)
            .map(|ring| last(&ring.entries, n))
            .unwrap_or_default()
    }

    /// The last `n` lines, and a channel of every line after them: taken
    /// under one lock, so no line is lost or repeated between the two.
    /// `None` once corral is exiting.
    pub fn follow(&self, service: &str, n: usize) -> Option<(Vec<LogEntry>, Receiver<LogEntry>)> {
        let mut store = self.lock();
        if store.closed {
            return None;
        }
        let ring = store.services.entry(service.to_string()).or_default();
        let (tx, rx) = crossbeam_channel::bounded(FOLLOW_BACKLOG);
        ring.followers.push(tx);
        Some((last(&ring.entries, n), rx))
    }

    /// corral is exiting: end every follow (their channels disconnect).
    pub fn close(&self) {
        let mut store = self.lock();
        store.closed = true;
        for ring in store.services.values_mut() {
            ring.followers.clear();
        }
    }
}

fn last(entries: &VecDeque<LogEntry>, n: usize) -> Vec<LogEntry> {
    entries
        .iter()
        .skip(entries.len().saturating_sub(n))
        .cloned()
        .collect()
}

enum Msg {
    Add {
        name: Arc<str>,
        stream: Stream,
        fd: OwnedFd,
    },
    /// Stop once every stream has reached EOF.
    Finish,
}

pub struct Output {
    tx: Sender<Msg>,
    wake: OwnedFd,
    done: Receiver<()>,
}

struct Source {
    name: Arc<str>,
    stream: Stream,
    fd: OwnedFd,
    partial: Vec<u8>,
}

impl Output {
    /// Start the output thread; the lines it writes are also kept in `logs`.
    pub fn start(logs: Logs) -> io::Result<Output> {
        let (wake_r, wake_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(io::Error::from)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        thread::Builder::new()
            .name("output".into())
            .spawn(move || {
                pump(rx, wake_r, &logs);
                let _ = done_tx.send(());
            })?;
        Ok(Output {
            tx,
            wake: wake_w,
            done,
        })
    }

    pub fn add(&self, name: Arc<str>, stream: Stream, fd: OwnedFd) {
        if self.tx.send(Msg::Add { name, stream, fd }).is_ok() {
            self.wake();
        }
    }

    fn wake(&self) {
        // Non-blocking: a full wake pipe already guarantees a wake-up.
        let _ = nix::unistd::write(&self.wake, &[1]);
    }

    /// Wait until every stream has been read to EOF and written, or `deadline`.
    pub fn finish(&self, deadline: Instant) -> bool {
        if self.tx.send(Msg::Finish).is_err() {
            return true;
        }
        self.wake();
        self.done.recv_deadline(deadline).is_ok()
    }
}

fn pump(rx: Receiver<Msg>, wake: OwnedFd, logs: &Logs) {
    let mut sources: Vec<Source> = Vec::new();
    let mut finishing = false;
    let mut buf = vec![0u8; MAX_LINE];
    loop {
        for msg in rx.try_iter() {
            match msg {
                Msg::Add { name, stream, fd } => sources.push(Source {
                    name,
                    stream,
                    fd,
                    partial: Vec::new(),
                }),
                Msg::Finish => finishing = true,
            }
        }
        if finishing && sources.is_empty() {
            return;
        }
        let ready: Vec<(bool, bool)> = {
            let mut fds: Vec<PollFd> = Vec::with_capacity(sources.len() + 1);
            fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
            fds.extend(
                sources
                    .iter()
                    .map(|s| PollFd::new(s.fd.as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    debug!(%err, "output poll failed");
                    continue;
                }
            }
            fds.iter()
                .map(|fd| {
                    let r = fd.revents().unwrap_or(PollFlags::empty());
                    (
                        r.contains(PollFlags::POLLIN),
                        r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL),
                    )
                })
                .collect()
        };
        if ready.first().is_some_and(|&(r, h)| r || h) {
            while matches!(nix::unistd::read(&wake, &mut buf), Ok(n) if n > 0) {}
        }
        let mut closed = Vec::new();
        for (i, source) in sources.iter_mut().enumerate() {
            let (readable, hung_up) = ready.get(i + 1).copied().unwrap_or((false, false));
            if !readable && !hung_up {
                continue;
            }
            match nix::unistd::read(&source.fd, &mut buf) {
                Ok(0) => {
                    source.flush_partial(logs);
                    closed.push(i);
                }
                Ok(n) => source.take(buf.get(..n).unwrap_or_default(), logs),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => {
                    source.flush_partial(logs);
                    closed.push(i);
                }
            }
        }
        for i in closed.into_iter().rev() {
            sources.swap_remove(i);
        }
    }
}

impl Source {
    /// Append `data`; keep and write every complete line.
    fn take(&mut self, data: &[u8], logs: &Logs) {
        self.partial.extend_from_slice(data);
        let mut lines: Vec<&[u8]> = Vec::new();
        let mut rest: &[u8] = &self.partial;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(pos);
            lines.push(line);
            rest = after.get(1..).unwrap_or_default();
        }
        while rest.len() >= MAX_LINE {
            let (line, after) = rest.split_at(MAX_LINE);
            lines.push(line);
            rest = after;
        }
        let used = self.partial.len() - rest.len();
        self.emit(&lines, logs);
        self.partial.drain(..used);
    }

    fn flush_partial(&mut self, logs: &Logs) {
        if !self.partial.is_empty() {
            self.emit(&[&self.partial], logs);
            self.partial.clear();
        }
    }

    /// Keep `lines` for `ctl logs`, then write them with one `write`.
    fn emit(&self, lines: &[&[u8]], logs: &Logs) {
        if lines.is_empty() {
            return;
        }
        let lines: Vec<&[u8]> = lines.iter().map(|l| strip_cr(l)).collect();
        logs.append(&self.name, self.stream, &lines);
        let mut out = Vec::new();
        for line in &lines {
            format_line(&mut out, &self.name, line);
        }
        self.write(&out);
    }

    fn write(&self, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        let fd = match self.stream {
            Stream::Stdout => io::stdout().as_raw_fd(),
            Stream::Stderr => io::stderr().as_raw_fd(),
        };
        // SAFETY: fds 1 and 2 stay open for corral's whole life.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        write_all(fd, out);
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn format_line(out: &mut Vec<u8>, name: &str, line: &[u8]) {
    let line = strip_cr(line);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b" | ");
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// Write everything, retrying on EINTR and short writes; give up silently on
/// a real error (a closed stdout must not take corral down).
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return,
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_and_carriage_returns_dropped() {
        let mut out = Vec::new();
        format_line(&mut out, "web", b"hello\r");
        assert_eq!(out, b"web | hello\n");
    }

    fn lines_of(entries: &[LogEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.line.as_str()).collect()
    }

    #[test]
    fn logs_keep_the_last_1000_lines_per_service() {
        let logs = Logs::new();
        let text: Vec<String> = (1..=1500).map(|i| i.to_string()).collect();
        let lines: Vec<&[u8]> = text.iter().map(|l| l.as_bytes()).collect();
        logs.append("web", Stream::Stdout, &lines);
        logs.append("db", Stream::Stderr, &[b"db says \xff"]);
        let all = logs.tail("web", usize::MAX);
        assert_eq!(all.len(), LOG_LINES);
        assert_eq!(all.first().map(|e| e.line.as_str()), Some("501"));
        assert_eq!(lines_of(&logs.tail("web", 3)), ["1498", "1499", "1500"]);
        let db = logs.tail("db", 10);
        assert_eq!(db.len(), 1);
        assert_eq!(db[0].stream, Stream::Stderr);
        assert_eq!(db[0].line, "db says \u{fffd}");
        assert!(logs.tail("nobody", 10).is_empty());
    }

    #[test]
    fn logs_keep_at_most_a_mebibyte_per_service() {
        let logs = Logs::new();
        let line = vec![b'x'; 64 * 1024];
        for _ in 0..40 {
            logs.append("big", Stream::Stdout, &[&line]);
        }
        let kept = logs.tail("big", usize::MAX);
        assert_eq!(kept.len(), LOG_BYTES / line.len());
    }

    #[test]
    fn followers_get_new_lines_and_are_dropped_when_full() {
        let logs = Logs::new();
        logs.append("web", Stream::Stdout, &[b"old 1", b"old 2"]);
        let (recent, rx) = logs.follow("web", 1).expect("follow");
        assert_eq!(lines_of(&recent), ["old 2"]);
        logs.append("web", Stream::Stderr, &[b"new"]);
        assert_eq!(
            rx.try_recv(),
            Ok(LogEntry {
                stream: Stream::Stderr,
                line: "new".into()
            })
        );
        // A follower that does not read is dropped once its backlog is full;
        // the writer never waits for it.
        let (_, slow) = logs.follow("web", 0).expect("follow");
        let many: Vec<&[u8]> = vec![b"x"; FOLLOW_BACKLOG + 1];
        logs.append("web", Stream::Stdout, &many);
        assert_eq!(slow.try_iter().count(), FOLLOW_BACKLOG);
        assert!(slow.recv().is_err(), "a dropped follower's channel ends");
        // Closing ends every follow and refuses new ones.
        logs.close();
        assert!(rx.try_iter().count() > 0 && rx.recv().is_err());
        assert!(logs.follow("web", 0).is_none());
    }
}
