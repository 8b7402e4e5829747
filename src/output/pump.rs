//! The output thread: one `poll(2)` over every service pipe and the
//! wake-up pipe; each read is cut into lines for its writer (`NAME | line`)
//! and kept in `Logs`. A stream whose writer is behind is not read
//! (backpressure), pipes are served in turn so that none starves.
//!
//! What it must never do: write fds 1 and 2 itself (the writers do), wait
//! for a writer, or touch service state.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::format::{self, Format, OutputFormat, SyslogLine};
use super::ready::LineReady;
use super::ring::{Block, LogStore, Logs, Ring, new_source};
use super::split::Splitter;
use super::writer::Writer;
use super::{HARD_LIMIT, HIGH_WATER, LogEntry, PROBE_EVERY, READ_SIZE, SPARES, Stream};
use crate::log;
use crate::log::debug;
use crate::polling::{self, Wake};

enum Msg {
    Add {
        name: Arc<str>,
        stream: Stream,
        fd: OwnedFd,
        pid: Option<u32>,
        echo: bool,
        ready: Option<Arc<LineReady>>,
    },
    /// Stop once every stream has reached EOF and been written.
    Finish,
}

pub struct Output {
    tx: Sender<Msg>,
    wake: Arc<Wake>,
    done: Receiver<()>,
    /// `--syslog` messages, bounded: when full, the syslog thread stops
    /// reading its socket (its senders wait) instead of corral piling up.
    syslog: Sender<SyslogLine>,
}

/// The `--syslog` thread's way into the output thread.
pub struct SyslogLines {
    tx: Sender<SyslogLine>,
    wake: Arc<Wake>,
}

impl SyslogLines {
    /// Hand a message over as a line of the pseudo-service `syslog`; never
    /// blocks: `Err` gives it back when the queue is full (the caller waits
    /// and offers it again).
    pub fn send(&self, line: SyslogLine) -> Result<(), SyslogLine> {
        match self.tx.try_send(line) {
            Ok(()) => {
                // One wake-up for a burst: the first message of it.
                if self.tx.len() == 1 {
                    self.wake.wake();
                }
                Ok(())
            }
            Err(crossbeam_channel::TrySendError::Full(line)) => Err(line),
            // The output thread is gone: corral is exiting.
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => Ok(()),
        }
    }
}

/// How often pipes held back for their log files are looked at again.
const FILES_BEHIND_RETRY_MS: u8 = 10;

/// Syslog lines waiting for the output thread at most (its senders wait
/// beyond: in the syslog thread, then in the socket).
const SYSLOG_QUEUE: usize = 4096;
/// Syslog lines taken in one round, so pipes are still read in between.
const SYSLOG_BATCH: usize = 1024;

/// One pipe being read.
struct Source {
    name: Arc<str>,
    /// `NAME | `
    prefix: Vec<u8>,
    stream: Stream,
    /// The pid of the run whose pipe this is, when known.
    pid: Option<u32>,
    /// Its lines go to corral's stdout / stderr (false: `output = "null"`
    /// with a log file, which alone gets them).
    echo: bool,
    id: u64,
    fd: OwnedFd,
    splitter: Splitter,
    /// Every writer of the pipe has closed it (POLLHUP): what is left in it
    /// is all there will be.
    hung_up: bool,
    /// The run's `log-line` readiness, until settled.
    ready: Option<Arc<LineReady>>,
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
    /// The writer's last write failed: lines for it are dropped, counted,
    /// but for one line sent on from time to time (`PROBE_EVERY`), which
    /// tries the stream again.
    failing: Arc<AtomicBool>,
    next_probe: Instant,
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
    /// also kept in `logs`, and written in `format`. From now on corral's own log lines go through
    /// the stderr writer (`log::attach`).
    pub fn start(logs: Logs, format: Format) -> io::Result<Output> {
        let (wake_r, wake_w) = polling::wake_pipe()?;
        let wake = Arc::new(wake_w);
        let mut sinks = Vec::new();
        let mut writers = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let (tx, batches) = crossbeam_channel::unbounded();
            let (spare_tx, spare) = crossbeam_channel::bounded(SPARES);
            let waiting = Arc::new(AtomicUsize::new(0));
            let failing = Arc::new(AtomicBool::new(false));
            let writer = Writer {
                failing: Arc::clone(&failing),
                lost: logs.lost(stream),
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
                failing,
                next_probe: Instant::now(),
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
        let (syslog, syslog_rx) = crossbeam_channel::bounded(SYSLOG_QUEUE);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let pump = Pump {
            rx,
            syslog: syslog_rx,
            wake: wake_r,
            logs,
            format,
            sinks,
            sources: Vec::new(),
            spare: Vec::new(),
            head: Vec::new(),
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
        Ok(Output {
            tx,
            wake,
            done,
            syslog,
        })
    }

    /// Read `fd`, `name`'s `stream`, written by the run `pid` (when known);
    /// its lines are shown to `ready` until it is settled.
    pub fn add(
        &self,
        name: Arc<str>,
        stream: Stream,
        fd: OwnedFd,
        pid: Option<u32>,
        echo: bool,
        ready: Option<Arc<LineReady>>,
    ) {
        if self
            .tx
            .send(Msg::Add {
                name,
                stream,
                fd,
                pid,
                echo,
                ready,
            })
            .is_ok()
        {
            self.wake.wake();
        }
    }

    /// Where the `--syslog` thread hands its messages over.
    pub fn syslog_lines(&self) -> SyslogLines {
        SyslogLines {
            tx: self.syslog.clone(),
            wake: Arc::clone(&self.wake),
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
    syslog: Receiver<SyslogLine>,
    wake: OwnedFd,
    logs: Logs,
    format: Format,
    /// Indexed by `Stream::index`.
    sinks: Vec<Sink>,
    sources: Vec<Source>,
    /// Read buffers (`READ_SIZE` long) for reuse.
    spare: Vec<Vec<u8>>,
    /// `format::line_head` of the read being served (kept for its buffer).
    head: Vec<u8>,
    /// Where the next round starts serving sources, so none is starved.
    turn: usize,
}

impl Pump {
    pub(super) fn run(mut self, writers: Vec<JoinHandle<()>>) {
        let mut finishing = false;
        loop {
            for msg in self.rx.try_iter() {
                match msg {
                    Msg::Add {
                        name,
                        stream,
                        fd,
                        pid,
                        echo,
                        ready,
                    } => {
                        let mut prefix = name.as_bytes().to_vec();
                        prefix.extend_from_slice(b" | ");
                        self.sources.push(Source {
                            name,
                            prefix,
                            stream,
                            pid,
                            echo,
                            id: new_source(),
                            fd,
                            splitter: Splitter::default(),
                            hung_up: false,
                            ready,
                        });
                    }
                    Msg::Finish => finishing = true,
                }
            }
            let more = self.take_syslog();
            // To the writers now: the next poll may wait a long time.
            for sink in &mut self.sinks {
                sink.send();
            }
            if finishing && self.sources.is_empty() && !more {
                break;
            }
            self.round(more);
        }
        // Disconnect the writers: they write what they hold, then end.
        self.sinks.clear();
        for writer in writers {
            let _ = writer.join();
        }
    }

    /// Syslog lines, while stdout takes more: true if some are left for
    /// the next round (which then does not wait in poll).
    fn take_syslog(&mut self) -> bool {
        let format = self.format;
        let Some(sink) = self.sinks.get_mut(Stream::Stdout.index()) else {
            return false;
        };
        for _ in 0..SYSLOG_BATCH {
            // Behind: the writer's wake-up brings us back when it drains.
            if sink.level() >= HIGH_WATER {
                return false;
            }
            let Ok(line) = self.syslog.try_recv() else {
                return false;
            };
            let ts = format::rfc3339(line.time);
            format::write_syslog(&mut sink.batch, format, &ts, &line);
            self.logs.append_syslog(&line);
        }
        !self.syslog.is_empty()
    }

    /// One poll and what it found; `now`: do not wait for anything.
    fn round(&mut self, now: bool) {
        // Which pipes to wait for, and for what: a stream whose writer is
        // behind is not read (backpressure), but a hang-up is still seen.
        let mut polled: Vec<usize> = Vec::with_capacity(self.sources.len());
        // The log files are behind: their services' pipes wait (checked
        // again every `FILES_BEHIND_RETRY_MS`; the file thread wakes nobody).
        let files = self.logs.files().filter(|files| !files.has_room());
        let revents: Vec<PollFlags> = {
            let mut fds: Vec<PollFd> = Vec::with_capacity(self.sources.len() + 1);
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
            for (i, source) in self.sources.iter().enumerate() {
                let takes = self
                    .sinks
                    .get(source.stream.index())
                    .is_some_and(|sink| sink.takes(source))
                    && files.is_none_or(|files| !files.is_open(&source.name));
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
            let timeout = if now {
                PollTimeout::ZERO
            } else if files.is_some() {
                PollTimeout::from(FILES_BEHIND_RETRY_MS)
            } else {
                PollTimeout::NONE
            };
            match poll(&mut fds, timeout) {
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
        crate::sort::sort(&mut closed);
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
        // Every line this read ends was read now.
        let now = SystemTime::now();
        let format = self.format;
        let ts = if format.timestamps || format.format == OutputFormat::Json {
            format::rfc3339(now)
        } else {
            String::new()
        };
        // A log file takes this service's lines too (one look per read).
        let files = self
            .logs
            .files()
            .filter(|files| files.is_open(&source.name))
            .cloned();
        let mut store = self.logs.lock();
        let LogStore {
            services,
            all_followers,
            ..
        } = &mut *store;
        let ring = services
            .entry(source.name.to_string())
            .or_insert_with(|| Ring::new(&source.name));
        let stream = source.stream;
        let pid = source.pid;
        let echo = source.echo;
        let name = &source.name;
        let head = &mut self.head;
        format::line_head(head, format, &ts, name, &source.prefix, stream, pid);
        let head = &*head;
        let batch = &mut sink.batch;
        // Its writer cannot write: drop (and count) rather than pile up,
        // but for a line now and then, which tries the stream again.
        let dropping = sink.failing.load(Ordering::Acquire);
        let mut probe = dropping && Instant::now() >= sink.next_probe;
        let probing = probe;
        let mut dropped = 0u64;
        let followers = &mut ring.followers;
        let mut lines = 0u64;
        let ready = &mut source.ready;
        // Run for every line: kept lean (millions of lines a second).
        let emit = |line: &[u8]| {
            // `log-line` readiness: until a line matches, then never again.
            if ready.as_ref().is_some_and(|r| r.settled_by(line)) {
                *ready = None;
            }
            if let Some(files) = &files {
                files.line(name, now, stream, line);
            }
            if !echo {
                // For the log file and `ctl logs` only.
            } else if !dropping || probe {
                format::write_line(batch, format, head, line);
                probe = false;
            } else {
                dropped += 1;
            }
            lines += 1;
            if !followers.is_empty() || !all_followers.is_empty() {
                let entry = LogEntry {
                    service: Arc::clone(name),
                    stream,
                    pid,
                    priority: None,
                    time: now,
                    line: line.to_vec(),
                };
                Ring::tell(followers, &entry);
                Ring::tell(all_followers, &entry);
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
                    ring.keep_read(
                        source.id,
                        stream,
                        pid,
                        now,
                        &mut buf,
                        len,
                        fresh,
                        &mut self.spare,
                    );
                }
                false
            }
            None => {
                let unfinished = source.splitter.has_partial();
                source.splitter.finish(emit);
                if unfinished {
                    let block = Block::eof(source.id, stream, pid, now);
                    ring.keep(block, &mut self.spare);
                }
                true
            }
        };
        if let Some(n) = ring.lines.get_mut(stream.index()) {
            *n += lines;
        }
        ring.dropped += dropped;
        if probing {
            sink.next_probe = Instant::now() + PROBE_EVERY;
        }
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
