//! The output thread: reads every `output = "prefix"` service's stdout and
//! stderr and writes each complete line to corral's own as `NAME | line`,
//! keeping the last lines of each service in `Logs` for `corral ctl logs`.
//!
//! One reading thread, one `poll(2)` over all pipes (plus a wake-up pipe
//! for newly added streams and for the writers), so 100 services cost one
//! thread, not 200. A line ends at
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
//! corral's own log lines (`log`) go to the stderr writer through a bounded
//! queue, so logging never blocks either: lines that do not fit are
//! dropped, and counted in a warning once stderr takes lines again.
//!
//! These threads never touch service state: they read pipes, write fds 1
//! and 2, and append to `Logs` (a short lock; followers get lines by
//! `try_send`, so a slow `logs -f` client is dropped, never waited for).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tracing::{debug, warn};

use crate::log::{self, Queued};
use crate::polling::{self, Wake};

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

/// One line of a service's output, without its newline (or `\r\n`).
/// Bytes that are not UTF-8 are replaced (U+FFFD): the protocol is JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    pub line: String,
}

impl LogEntry {
    fn new(stream: Stream, line: &[u8]) -> LogEntry {
        LogEntry {
            stream,
            line: String::from_utf8_lossy(line).into_owned(),
        }
    }
}

// ---------------------------------------------------------------------------
// Lines

/// Cuts one pipe's bytes into lines: at each newline (a `\r` before it is
/// dropped), and every `MAX_LINE` bytes of a line that has none yet; a
/// newline right after such a piece ends it (so a line of exactly
/// `MAX_LINE` bytes stays whole). The output thread and `Logs::tail` cut
/// the same bytes with it, so both see the same lines.
#[derive(Debug, Default)]
struct Splitter {
    /// The start of a line, less than `MAX_LINE` bytes.
    partial: Vec<u8>,
    /// A `MAX_LINE` piece was just cut: a newline next belongs to it.
    cut: bool,
}

impl Splitter {
    /// Feed `data`; `line` gets every line it completes, in order. Returns
    /// where in `data` the first line that starts there begins
    /// (`data.len()` if none does): `tail` starts there when what came
    /// before `data` is no longer kept.
    #[inline]
    fn split(&mut self, data: &[u8], mut line: impl FnMut(&[u8])) -> usize {
        let mut rest = data;
        if self.cut && !rest.is_empty() {
            self.cut = false;
            if rest.first() == Some(&b'\n') {
                rest = rest.get(1..).unwrap_or_default();
            }
        }
        if !self.partial.is_empty() {
            let room = MAX_LINE.saturating_sub(self.partial.len());
            let window = rest.get(..room).unwrap_or(rest);
            match find_newline(window) {
                Some(end) => {
                    self.partial
                        .extend_from_slice(rest.get(..end).unwrap_or_default());
                    line(strip_cr(&self.partial));
                    self.partial.clear();
                    rest = rest.get(end + 1..).unwrap_or_default();
                }
                None if rest.len() >= room => {
                    self.partial.extend_from_slice(window);
                    line(&self.partial);
                    self.partial.clear();
                    rest = rest.get(room..).unwrap_or_default();
                    self.after_cut(&mut rest);
                }
                None => {
                    self.partial.extend_from_slice(rest);
                    return data.len();
                }
            }
        }
        let fresh = data.len() - rest.len();
        loop {
            let window = rest.get(..MAX_LINE).unwrap_or(rest);
            match find_newline(window) {
                Some(end) => {
                    line(strip_cr(rest.get(..end).unwrap_or_default()));
                    rest = rest.get(end + 1..).unwrap_or_default();
                }
                None if rest.len() >= MAX_LINE => {
                    line(window);
                    rest = rest.get(MAX_LINE..).unwrap_or_default();
                    self.after_cut(&mut rest);
                }
                None => {
                    self.partial.extend_from_slice(rest);
                    return fresh;
                }
            }
        }
    }

    /// After a `MAX_LINE` piece: swallow a newline that ends it, or
    /// remember to look at the next byte.
    fn after_cut(&mut self, rest: &mut &[u8]) {
        match rest.split_first() {
            Some((b'\n', after)) => *rest = after,
            Some(_) => {}
            None => self.cut = true,
        }
    }

    fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// The pipe ended: its unfinished line, if any, is a line.
    fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(strip_cr(&self.partial));
            self.partial.clear();
        }
        self.cut = false;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    // Not `strip_suffix`: that is a `memcmp` call per line.
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

/// The first newline in `hay`. glibc's `memchr` is vectorised: at millions
/// of lines a second a byte-by-byte search would be the bottleneck.
fn find_newline(hay: &[u8]) -> Option<usize> {
    // SAFETY: memchr reads at most `hay.len()` bytes from its start, all
    // inside `hay`; the pointer it returns, if any, points into `hay`.
    let at = unsafe { libc::memchr(hay.as_ptr().cast(), i32::from(b'\n'), hay.len()) };
    (!at.is_null()).then(|| at as usize - hay.as_ptr() as usize)
}

// ---------------------------------------------------------------------------
// Logs

/// The recent output of every `output = "prefix"` service, and who follows
/// it. Shared by the output thread (which appends) and the control server
/// (which reads and subscribes); cloning shares the same store.
///
/// A service's log keeps the raw bytes its pipes gave (`RING_KEEP`, in the
/// pieces they were read in), not lines: the output thread moves each read
/// in whole, with no work per line, and `tail` cuts the lines again when
/// asked. What `tail` returns is the same as if every line had been kept
/// and the oldest dropped beyond `LOG_LINES` lines or `LOG_BYTES` bytes.
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
    blocks: VecDeque<Block>,
    /// The bytes of every block.
    bytes: usize,
    followers: Vec<Sender<LogEntry>>,
}

/// Bytes read from one pipe (one run's stdout or stderr).
#[derive(Debug)]
struct Block {
    /// Which pipe: a service's pipes are numbered by the output thread.
    source: u64,
    stream: Stream,
    data: Vec<u8>,
    /// Where the first line that starts in `data` begins (`Splitter::split`).
    fresh: usize,
    /// The pipe ended here: its unfinished line is a line.
    eof: bool,
}

impl Logs {
    pub fn new() -> Logs {
        Logs::default()
    }

    fn lock(&self) -> MutexGuard<'_, LogStore> {
        // A panic elsewhere while holding the lock leaves the store usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `lines` (each without its newline) of `service`, as one pipe of
    /// their own would give them, and pass each to the followers. Never
    /// blocks: a follower whose channel is full or closed is dropped.
    pub fn append(&self, service: &str, stream: Stream, lines: &[&[u8]]) {
        let mut data = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        let mut store = self.lock();
        let ring = store.services.entry(service.to_string()).or_default();
        for line in lines {
            Ring::tell(&mut ring.followers, stream, line);
        }
        let block = Block {
            source: new_source(),
            stream,
            data,
            fresh: 0,
            eof: false,
        };
        ring.keep(block, &mut Vec::new());
    }

    /// The last `n` lines of `service` (fewer if it printed fewer).
    pub fn tail(&self, service: &str, n: usize) -> Vec<LogEntry> {
        let store = self.lock();
        store
            .services
            .get(service)
            .map(|ring| last(ring.lines(), n))
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
        Some((last(ring.lines(), n), rx))
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

/// A number for a new pipe, unique in this process (blocks of one pipe are
/// cut into lines together).
fn new_source() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn last(mut entries: Vec<LogEntry>, n: usize) -> Vec<LogEntry> {
    entries.drain(..entries.len().saturating_sub(n));
    entries
}

impl Ring {
    /// Give `line` to every follower; one whose channel is full or closed
    /// is dropped, never waited for.
    fn tell(followers: &mut Vec<Sender<LogEntry>>, stream: Stream, line: &[u8]) {
        if followers.is_empty() {
            return;
        }
        let entry = LogEntry::new(stream, line);
        followers.retain(|follower| match follower.try_send(entry.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        });
    }

    /// Keep `block`, and drop the oldest blocks beyond `RING_KEEP` bytes;
    /// dropped buffers go to `spare` for reuse. The block before it will
    /// not grow any more: its spare capacity goes back to the allocator, so
    /// what a log holds is what it keeps (not up to twice that).
    fn keep(&mut self, block: Block, spare: &mut Vec<Vec<u8>>) {
        if let Some(last) = self.blocks.back_mut() {
            last.data.shrink_to_fit();
        }
        self.bytes += block.data.len();
        self.blocks.push_back(block);
        while let Some(front) = self.blocks.front() {
            let over_bytes = self.bytes - front.data.len() >= RING_KEEP;
            if !over_bytes && self.blocks.len() <= RING_BLOCKS {
                break;
            }
            if let Some(old) = self.blocks.pop_front() {
                self.bytes -= old.data.len();
                if spare.len() < SPARES && old.data.capacity() >= READ_SIZE {
                    spare.push(old.data);
                }
            }
        }
    }

    /// Keep `data` (part of `buf`), read from `source`; `fresh` as returned
    /// by `Splitter::split`. A full read (a busy service) takes `buf`
    /// itself, no copy (the caller gets a new buffer from `spare` or
    /// allocates one); a smaller one is copied, onto the last block when it
    /// is from the same pipe, so a quiet service does not pin a whole
    /// buffer per line.
    fn keep_read(
        &mut self,
        source: u64,
        stream: Stream,
        buf: &mut Vec<u8>,
        len: usize,
        fresh: usize,
        spare: &mut Vec<Vec<u8>>,
    ) {
        let data = buf.get(..len).unwrap_or_default();
        if let Some(last) = self.blocks.back_mut()
            && last.source == source
            && !last.eof
            && last.data.len() + len <= READ_SIZE
        {
            if last.fresh == last.data.len() {
                last.fresh += fresh;
            }
            last.data.extend_from_slice(data);
            self.bytes += len;
            return;
        }
        let data = if len == READ_SIZE && buf.len() == len {
            std::mem::take(buf)
        } else {
            data.to_vec()
        };
        self.keep(
            Block {
                source,
                stream,
                data,
                fresh,
                eof: false,
            },
            spare,
        );
    }

    /// Every line its blocks hold, oldest first, the oldest dropped beyond
    /// `LOG_LINES` lines or `LOG_BYTES` bytes. A pipe whose earlier blocks
    /// were dropped is read from its first line that starts in what is
    /// kept.
    fn lines(&self) -> Vec<LogEntry> {
        let mut pipes: HashMap<u64, Splitter> = HashMap::new();
        let mut entries = Vec::new();
        for block in &self.blocks {
            let (splitter, data) = match pipes.entry(block.source) {
                std::collections::hash_map::Entry::Occupied(e) => (e.into_mut(), &block.data[..]),
                std::collections::hash_map::Entry::Vacant(e) => {
                    if block.fresh >= block.data.len() {
                        // No line starts here: nothing to read yet.
                        continue;
                    }
                    let data = block.data.get(block.fresh..).unwrap_or_default();
                    (e.insert(Splitter::default()), data)
                }
            };
            let stream = block.stream;
            splitter.split(data, |line| entries.push(LogEntry::new(stream, line)));
            if block.eof {
                splitter.finish(|line| entries.push(LogEntry::new(stream, line)));
            }
        }
        // What a ring of lines would have kept: the longest run of newest
        // lines within both limits.
        let mut bytes = 0;
        let mut keep = 0;
        for entry in entries.iter().rev() {
            if keep == LOG_LINES || bytes + entry.line.len() > LOG_BYTES {
                break;
            }
            bytes += entry.line.len();
            keep += 1;
        }
        entries.drain(..entries.len() - keep);
        entries
    }
}

// ---------------------------------------------------------------------------
// The threads

enum Msg {
    Add {
        name: Arc<str>,
        stream: Stream,
        fd: OwnedFd,
    },
    /// Stop once every stream has reached EOF and been written.
    Finish,
}

pub struct Output {
    tx: Sender<Msg>,
    wake: Arc<Wake>,
    done: Receiver<()>,
}

/// One pipe being read.
struct Source {
    name: Arc<str>,
    /// `NAME | `
    prefix: Vec<u8>,
    stream: Stream,
    id: u64,
    fd: OwnedFd,
    splitter: Splitter,
    /// Every writer of the pipe has closed it (POLLHUP): what is left in it
    /// is all there will be.
    hung_up: bool,
}

/// The output thread's side of a writer thread.
struct Sink {
    tx: Sender<Vec<u8>>,
    /// Bytes sent to the writer and not written yet.
    waiting: Arc<AtomicUsize>,
    /// Whole lines not sent yet (sent once per poll round).
    batch: Vec<u8>,
    /// Written batches, back for reuse.
    spare: Receiver<Vec<u8>>,
}

impl Sink {
    /// Bytes that wait for this stream.
    fn level(&self) -> usize {
        self.waiting.load(Ordering::Acquire) + self.batch.len()
    }

    /// May `source` be read now?
    fn takes(&self, source: &Source) -> bool {
        let level = self.level();
        level < HIGH_WATER || (source.hung_up && level < HARD_LIMIT)
    }

    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(2 * READ_SIZE));
        let batch = std::mem::replace(&mut self.batch, next);
        let len = batch.len();
        self.waiting.fetch_add(len, Ordering::AcqRel);
        if self.tx.send(batch).is_err() {
            // The writer is gone (it never should be): the bytes are lost.
            self.waiting.fetch_sub(len, Ordering::AcqRel);
        }
    }
}

impl Output {
    /// Start the output thread and its two writers; the lines it writes are
    /// also kept in `logs`. From now on corral's own log lines go through
    /// the stderr writer (`log::attach`).
    pub fn start(logs: Logs) -> io::Result<Output> {
        let (wake_r, wake_w) = polling::wake_pipe()?;
        let wake = Arc::new(wake_w);
        let mut sinks = Vec::new();
        let mut writers = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let (tx, batches) = crossbeam_channel::unbounded();
            let (spare_tx, spare) = crossbeam_channel::bounded(SPARES);
            let waiting = Arc::new(AtomicUsize::new(0));
            let writer = Writer {
                stream,
                batches,
                own: None,
                waiting: Arc::clone(&waiting),
                spare: spare_tx,
                wake: Arc::clone(&wake),
            };
            writers.push(writer);
            sinks.push(Sink {
                tx,
                waiting,
                batch: Vec::with_capacity(2 * READ_SIZE),
                spare,
            });
        }
        let mut handles = Vec::new();
        for mut writer in writers {
            let name = format!("output-{}", writer.stream.as_str());
            if writer.stream == Stream::Stderr {
                writer.own = Some(log::attach());
            }
            let spawned = thread::Builder::new()
                .name(name)
                .spawn(move || writer.run());
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(err) => {
                    log::detach();
                    return Err(err);
                }
            }
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let pump = Pump {
            rx,
            wake: wake_r,
            logs,
            sinks,
            sources: Vec::new(),
            spare: Vec::new(),
            turn: 0,
        };
        let spawned = thread::Builder::new().name("output".into()).spawn(move || {
            pump.run(handles);
            let _ = done_tx.send(());
        });
        if let Err(err) = spawned {
            log::detach();
            return Err(err);
        }
        Ok(Output { tx, wake, done })
    }

    pub fn add(&self, name: Arc<str>, stream: Stream, fd: OwnedFd) {
        if self.tx.send(Msg::Add { name, stream, fd }).is_ok() {
            self.wake.wake();
        }
    }

    /// Wait until every stream has been read to EOF and written, or
    /// `deadline`. Returns by `deadline` even when a stream is stalled
    /// (its writer is then left blocked; corral exits around it).
    pub fn finish(&self, deadline: Instant) -> bool {
        if self.tx.send(Msg::Finish).is_err() {
            return true;
        }
        self.wake.wake();
        self.done.recv_deadline(deadline).is_ok()
    }
}

/// The output thread.
struct Pump {
    rx: Receiver<Msg>,
    wake: OwnedFd,
    logs: Logs,
    /// Indexed by `Stream::index`.
    sinks: Vec<Sink>,
    sources: Vec<Source>,
    /// Read buffers (`READ_SIZE` long) for reuse.
    spare: Vec<Vec<u8>>,
    /// Where the next round starts serving sources, so none is starved.
    turn: usize,
}

impl Pump {
    fn run(mut self, writers: Vec<JoinHandle<()>>) {
        let mut finishing = false;
        loop {
            for msg in self.rx.try_iter() {
                match msg {
                    Msg::Add { name, stream, fd } => {
                        let mut prefix = name.as_bytes().to_vec();
                        prefix.extend_from_slice(b" | ");
                        self.sources.push(Source {
                            name,
                            prefix,
                            stream,
                            id: new_source(),
                            fd,
                            splitter: Splitter::default(),
                            hung_up: false,
                        });
                    }
                    Msg::Finish => finishing = true,
                }
            }
            if finishing && self.sources.is_empty() {
                break;
            }
            self.round();
        }
        // Disconnect the writers: they write what they hold, then end.
        self.sinks.clear();
        for writer in writers {
            let _ = writer.join();
        }
    }

    /// One poll and what it found.
    fn round(&mut self) {
        // Which pipes to wait for, and for what: a stream whose writer is
        // behind is not read (backpressure), but a hang-up is still seen.
        let mut polled: Vec<usize> = Vec::with_capacity(self.sources.len());
        let revents: Vec<PollFlags> = {
            let mut fds: Vec<PollFd> = Vec::with_capacity(self.sources.len() + 1);
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
            for (i, source) in self.sources.iter().enumerate() {
                let takes = self
                    .sinks
                    .get(source.stream.index())
                    .is_some_and(|sink| sink.takes(source));
                let events = if takes {
                    PollFlags::POLLIN
                } else if !source.hung_up {
                    PollFlags::empty()
                } else {
                    continue;
                };
                polled.push(i);
                fds.push(PollFd::new(source.fd.as_fd(), events));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => return,
                Err(err) => {
                    debug!(%err, "output poll failed");
                    return;
                }
            }
            fds.iter()
                .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        let Some((woken, revents)) = revents.split_first() else {
            return;
        };
        if !woken.is_empty() {
            polling::drain(&self.wake);
        }
        let mut closed = Vec::new();
        let n = polled.len();
        for k in 0..n {
            let j = (self.turn + k) % n;
            let (Some(&i), Some(&r)) = (polled.get(j), revents.get(j)) else {
                continue;
            };
            if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
                && let Some(source) = self.sources.get_mut(i)
            {
                source.hung_up = true;
            }
            if r.is_empty() {
                continue;
            }
            if self.serve(i) {
                closed.push(i);
            }
        }
        self.turn = self.turn.wrapping_add(1);
        closed.sort_unstable();
        for i in closed.into_iter().rev() {
            self.sources.swap_remove(i);
        }
        for sink in &mut self.sinks {
            sink.send();
        }
    }

    /// Read source `i` once, if its stream takes more; true at its end.
    fn serve(&mut self, i: usize) -> bool {
        let Some(source) = self.sources.get_mut(i) else {
            return false;
        };
        let Some(sink) = self.sinks.get_mut(source.stream.index()) else {
            return false;
        };
        if !sink.takes(source) {
            return false;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        let read = read_fresh(&source.fd, &mut buf);
        let mut store = self.logs.lock();
        if !store.services.contains_key(&*source.name) {
            store
                .services
                .insert(source.name.to_string(), Ring::default());
        }
        let Some(ring) = store.services.get_mut(&*source.name) else {
            return false;
        };
        let stream = source.stream;
        let prefix = &source.prefix;
        let batch = &mut sink.batch;
        let followers = &mut ring.followers;
        // Run for every line: kept lean (millions of lines a second).
        let emit = |line: &[u8]| {
            batch.extend_from_slice(prefix);
            batch.extend_from_slice(line);
            batch.push(b'\n');
            if !followers.is_empty() {
                Ring::tell(followers, stream, line);
            }
        };
        let got = match read {
            Ok(0) => None,
            Ok(len) => Some(len),
            // Readable by poll, so neither happens with a blocking pipe;
            // try again next round.
            Err(Errno::EINTR | Errno::EAGAIN) => Some(0),
            Err(_) => None,
        };
        let ended = match got {
            Some(len) => {
                let data = buf.get(..len).unwrap_or_default();
                let fresh = source.splitter.split(data, emit);
                if len > 0 {
                    ring.keep_read(source.id, stream, &mut buf, len, fresh, &mut self.spare);
                }
                false
            }
            None => {
                let unfinished = source.splitter.has_partial();
                source.splitter.finish(emit);
                if unfinished {
                    let block = Block {
                        source: source.id,
                        stream,
                        data: Vec::new(),
                        fresh: 0,
                        eof: true,
                    };
                    ring.keep(block, &mut self.spare);
                }
                true
            }
        };
        drop(store);
        if buf.capacity() >= READ_SIZE && self.spare.len() < SPARES {
            self.spare.push(buf);
        }
        ended
    }
}

/// Reads up to `READ_SIZE` bytes from `fd` into `buf`, replacing what it
/// held; `buf.len()` is then the count read. The buffer is not zeroed first:
/// only the pages a read fills are touched, so a quiet service keeps one
/// page of it resident, not 64 KiB.
fn read_fresh(fd: &OwnedFd, buf: &mut Vec<u8>) -> nix::Result<usize> {
    buf.clear();
    buf.reserve_exact(READ_SIZE);
    // SAFETY: `buf` has room for READ_SIZE bytes past its (zero) length;
    // read(2) writes at most that many, and `set_len` covers only the bytes
    // it reports written.
    unsafe {
        let n = libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), READ_SIZE);
        let n = Errno::result(n)?;
        let n = usize::try_from(n).unwrap_or(0).min(READ_SIZE);
        buf.set_len(n);
        Ok(n)
    }
}

/// A writer thread: the only writer of fd 1 (or 2) in corral.
struct Writer {
    stream: Stream,
    batches: Receiver<Vec<u8>>,
    /// corral's own log lines (stderr only).
    own: Option<Receiver<Queued>>,
    waiting: Arc<AtomicUsize>,
    spare: Sender<Vec<u8>>,
    wake: Arc<Wake>,
}

impl Writer {
    fn run(self) {
        let fd = self.stream.fd();
        if self.own.is_some() {
            // This thread writes fd 2 itself: its own log lines (the count
            // of dropped ones) go straight there, never into its queue.
            log::write_directly();
        }
        let never = crossbeam_channel::never();
        let mut own_open = self.own.is_some();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        loop {
            let own = match &self.own {
                Some(own) if own_open => own,
                _ => &never,
            };
            crossbeam_channel::select! {
                recv(self.batches) -> batch => {
                    let Ok(batch) = batch else { break };
                    pending.push(batch);
                    // Everything waiting, in one writev.
                    while pending.len() < WRITE_BATCHES {
                        match self.batches.try_recv() {
                            Ok(batch) => pending.push(batch),
                            Err(_) => break,
                        }
                    }
                    write_batches(fd, &pending);
                    let written: usize = pending.iter().map(Vec::len).sum();
                    let before = self.waiting.fetch_sub(written, Ordering::AcqRel);
                    if before >= HIGH_WATER {
                        // The output thread may be holding pipes back for us.
                        self.wake.wake();
                    }
                    for mut batch in pending.drain(..) {
                        if batch.capacity() <= SPARE_BATCH {
                            batch.clear();
                            let _ = self.spare.try_send(batch);
                        }
                    }
                }
                recv(own) -> queued => match queued {
                    Ok(queued) => write_own(fd, queued),
                    Err(_) => own_open = false,
                },
            }
            if self.own.is_some() {
                report_dropped();
            }
        }
        // The output thread is done: corral's own lines go straight to
        // stderr from now on; write those still queued.
        if let Some(own) = &self.own {
            log::detach();
            for queued in own.try_iter() {
                write_own(fd, queued);
            }
            report_dropped();
        }
    }
}

fn write_own(fd: BorrowedFd<'_>, queued: Queued) {
    match queued {
        Queued::Line(line) => write_batches(fd, &[line]),
        Queued::Flush(ack) => {
            let _ = ack.send(());
        }
    }
}

/// stderr took a write again: say how many of corral's own lines were
/// dropped meanwhile (written directly: this runs on the stderr writer).
fn report_dropped() {
    let dropped = log::take_dropped();
    if dropped > 0 {
        warn!(
            dropped,
            "stderr was blocked (nobody reading it): corral's own log lines were dropped"
        );
    }
}

/// Write every byte of `batches`, retrying on EINTR and short writes; give
/// up silently on a real error (a closed stdout must not take corral down).
fn write_batches(fd: BorrowedFd<'_>, batches: &[Vec<u8>]) {
    let mut slices: Vec<IoSlice<'_>> = batches
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| IoSlice::new(b))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match nix::sys::uio::writev(fd, slices) {
            Ok(0) => return,
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line `Splitter` makes of `chunks`, fed one after the other,
    /// and the unfinished rest at the end.
    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut splitter = Splitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.split(chunk, |l| lines.push(l.to_vec()));
        }
        splitter.finish(|l| lines.push(l.to_vec()));
        lines
    }

    #[test]
    fn lines_end_at_newlines_whatever_the_reads() {
        let text: &[u8] = b"one\r\ntwo\n\nthree";
        let expected: Vec<Vec<u8>> = vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"".to_vec(),
            b"three".to_vec(),
        ];
        assert_eq!(split_all(&[text]), expected);
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(split_all(&[a, b]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(split_all(&bytes), expected);
    }

    #[test]
    fn long_lines_are_cut_every_max_line_bytes() {
        // MAX_LINE + 10 bytes, then a newline: a piece and the rest.
        let mut text = vec![b'x'; MAX_LINE + 10];
        text.push(b'\n');
        text.extend_from_slice(b"next\n");
        let want = vec![vec![b'x'; MAX_LINE], vec![b'x'; 10], b"next".to_vec()];
        assert_eq!(split_all(&[&text]), want);
        for cut in [1, 100, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 10] {
            let (a, b) = text.split_at(cut);
            assert_eq!(split_all(&[a, b]), want, "cut at {cut}");
        }
        // Exactly MAX_LINE bytes and a newline: one line, not an empty one after.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        exact.extend_from_slice(b"z\n");
        let want = vec![vec![b'y'; MAX_LINE], b"z".to_vec()];
        for cut in [0, 1, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1] {
            let (a, b) = exact.split_at(cut);
            assert_eq!(split_all(&[a, b]), want, "cut at {cut}");
        }
        // No newline at all: pieces come out as soon as they are complete.
        let mut splitter = Splitter::default();
        let mut pieces = 0;
        splitter.split(&vec![b'x'; 3 * MAX_LINE + 5], |l| {
            assert_eq!(l.len(), MAX_LINE);
            pieces += 1;
        });
        assert_eq!(pieces, 3);
        assert!(splitter.has_partial());
    }

    #[test]
    fn fresh_is_where_the_first_new_line_starts() {
        let mut splitter = Splitter::default();
        assert_eq!(splitter.split(b"ab\ncd", |_| {}), 0);
        assert_eq!(splitter.split(b"ef\ngh", |_| {}), 3);
        assert_eq!(splitter.split(b"ijk", |_| {}), 3);
    }

    /// A pipe's bytes as the output thread would keep them, one read each.
    fn feed(
        logs: &Logs,
        service: &str,
        source: u64,
        stream: Stream,
        reads: &[&[u8]],
    ) -> Vec<String> {
        let mut splitter = Splitter::default();
        let mut spare = Vec::new();
        let mut told = Vec::new();
        for read in reads {
            let mut store = logs.lock();
            let ring = store.services.entry(service.to_string()).or_default();
            let followers = &mut ring.followers;
            let fresh = splitter.split(read, |l| {
                told.push(String::from_utf8_lossy(l).into_owned());
                Ring::tell(followers, stream, l);
            });
            let mut buf = read.to_vec();
            ring.keep_read(source, stream, &mut buf, read.len(), fresh, &mut spare);
        }
        told
    }

    fn lines_of(entries: &[LogEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.line.as_str()).collect()
    }

    #[test]
    fn logs_keep_the_last_1000_lines_per_service() {
        let logs = Logs::new();
        let text: String = (1..=1500).map(|i| format!("{i}\n")).collect();
        // In reads of 1000 bytes, which cut lines anywhere.
        let reads: Vec<&[u8]> = text.as_bytes().chunks(1000).collect();
        feed(&logs, "web", 1, Stream::Stdout, &reads);
        feed(&logs, "db", 2, Stream::Stderr, &[b"db says \xff\n"]);
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
        let mut line = vec![b'x'; 64 * 1024 - 1];
        line.push(b'\n');
        let reads: Vec<&[u8]> = vec![&line; 40];
        feed(&logs, "big", 1, Stream::Stdout, &reads);
        let kept = logs.tail("big", usize::MAX);
        assert_eq!(kept.len(), LOG_BYTES / (line.len() - 1));
        assert!(kept.iter().all(|e| e.line.len() == line.len() - 1));
        // The raw bytes kept stay bounded, however much was read.
        let store = logs.lock();
        let ring = store.services.get("big").expect("ring");
        assert!(
            ring.bytes < RING_KEEP + READ_SIZE,
            "{} bytes kept",
            ring.bytes
        );
    }

    /// What a log holds in memory: its blocks' capacities.
    fn held(logs: &Logs, service: &str) -> usize {
        let store = logs.lock();
        store
            .services
            .get(service)
            .map(|ring| ring.blocks.iter().map(|b| b.data.capacity()).sum())
            .unwrap_or(0)
    }

    #[test]
    fn logs_hold_about_what_they_keep_whatever_the_reads() {
        let logs = Logs::new();
        let text = "a line of fifty bytes, give or take a few of them\n".repeat(60_000);
        // Small reads from one pipe (merged into blocks), then from two
        // pipes taking turns (not merged), then full reads.
        let small: Vec<&[u8]> = text.as_bytes().chunks(1000).collect();
        feed(&logs, "web", 1, Stream::Stdout, &small);
        assert!(
            held(&logs, "web") <= RING_KEEP + 2 * READ_SIZE,
            "{}",
            held(&logs, "web")
        );
        for pair in small.chunks(2) {
            for (i, read) in pair.iter().enumerate() {
                feed(&logs, "web", 10 + i as u64, Stream::Stdout, &[read]);
            }
        }
        assert!(
            held(&logs, "web") <= RING_KEEP + 2 * READ_SIZE,
            "{}",
            held(&logs, "web")
        );
        let full: Vec<&[u8]> = text.as_bytes().chunks(READ_SIZE).collect();
        feed(&logs, "web", 20, Stream::Stdout, &full);
        assert!(
            held(&logs, "web") <= RING_KEEP + 2 * READ_SIZE,
            "{}",
            held(&logs, "web")
        );
        assert_eq!(logs.tail("web", usize::MAX).len(), LOG_LINES);
    }

    #[test]
    fn logs_of_two_streams_and_two_runs_keep_their_order() {
        let logs = Logs::new();
        // Run 1: stdout and stderr interleaved, stdout's last line unfinished
        // when its pipe ends; run 2 starts before run 1's stdout ended.
        feed(&logs, "web", 1, Stream::Stdout, &[b"out 1\nout "]);
        feed(&logs, "web", 2, Stream::Stderr, &[b"err 1\n"]);
        feed(&logs, "web", 3, Stream::Stdout, &[b"new run\n"]);
        feed(&logs, "web", 1, Stream::Stdout, &[b"2\nout 3"]);
        {
            let mut store = logs.lock();
            let ring = store.services.entry("web".into()).or_default();
            let block = Block {
                source: 1,
                stream: Stream::Stdout,
                data: Vec::new(),
                fresh: 0,
                eof: true,
            };
            ring.keep(block, &mut Vec::new());
        }
        let kept = logs.tail("web", 10);
        assert_eq!(
            lines_of(&kept),
            ["out 1", "err 1", "new run", "out 2", "out 3"]
        );
        assert_eq!(kept[1].stream, Stream::Stderr);
    }

    #[test]
    fn followers_get_new_lines_and_are_dropped_when_full() {
        let logs = Logs::new();
        feed(&logs, "web", 1, Stream::Stdout, &[b"old 1\nold 2\n"]);
        let (recent, rx) = logs.follow("web", 1).expect("follow");
        assert_eq!(lines_of(&recent), ["old 2"]);
        feed(&logs, "web", 2, Stream::Stderr, &[b"new\n"]);
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
        let many = "x\n".repeat(FOLLOW_BACKLOG + 1);
        feed(&logs, "web", 1, Stream::Stdout, &[many.as_bytes()]);
        assert_eq!(slow.try_iter().count(), FOLLOW_BACKLOG);
        assert!(slow.recv().is_err(), "a dropped follower's channel ends");
        // Closing ends every follow and refuses new ones.
        logs.close();
        assert!(rx.try_iter().count() > 0 && rx.recv().is_err());
        assert!(logs.follow("web", 0).is_none());
    }

    #[test]
    fn batches_are_written_whole() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        write_batches(
            w.as_fd(),
            &[b"a | 1\n".to_vec(), Vec::new(), b"b | 2\n".to_vec()],
        );
        drop(w);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = nix::unistd::read(&r, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"a | 1\nb | 2\n");
    }
}
