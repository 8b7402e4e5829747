//! The output thread: every service pipe in an epoll(7) set, one `poll(2)`
//! over those sets and the wake-up pipe; each read is cut into lines for
//! its writer (`NAME | line`) and kept in `Logs`. A stream whose writer is
//! behind is not read (backpressure), pipes are served in turn so that none
//! starves.
//!
//! The pipes are grouped by what holds them back (`Group`): their stream,
//! whether their service has a log file, and whether their writers have
//! all gone (read until `HARD_LIMIT`, not `HIGH_WATER`). Each group is one
//! epoll set, and a group that may not be read is simply left out of the
//! poll: backpressure on or off costs nothing per pipe. Every live pipe is
//! also in one more set watched only for hang-ups (`hup`), always polled,
//! so a pipe whose writers exit while its stream is behind still moves to
//! its group of hung-up pipes (and is read to EOF and closed). A wake-up
//! costs the pipes that are ready, a registration two epoll_ctl(2) calls:
//! no round looks at every pipe. Pipes are known by a `Slab` key, so an
//! event of a pipe removed meanwhile finds nothing.
//!
//! What it must never do: write fds 1 and 2 itself (the writers do), wait
//! for a writer, or touch service state.

use std::io;
use std::mem;
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
use crate::log::{debug, warn};
use crate::polling::{self, Epoll, Events, HUNG_UP, READABLE, Slab, Wake};

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
/// Pipes of one group served per round at most (epoll gives the others
/// first in the next round).
const READY_BATCH: usize = 256;

/// What holds a pipe back: its stream's writer being behind (`HIGH_WATER`,
/// or `HARD_LIMIT` once every writer of the pipe is gone), and the log
/// files being behind, for a service that has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Group {
    stream: Stream,
    /// Its service's lines go to a log file.
    filed: bool,
    /// Every writer of the pipe has closed it.
    gone: bool,
}

const GROUPS: usize = 8;

impl Group {
    fn index(self) -> usize {
        self.stream.index() * 4 + usize::from(self.filed) * 2 + usize::from(self.gone)
    }

    /// Every group, in `index` order.
    fn all() -> impl Iterator<Item = Group> {
        (0..GROUPS).map(|i| Group {
            stream: if i < 4 {
                Stream::Stdout
            } else {
                Stream::Stderr
            },
            filed: i & 2 != 0,
            gone: i & 1 != 0,
        })
    }
}

/// One group's epoll set.
struct Set {
    epoll: Epoll,
    /// Pipes in it.
    members: usize,
}

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
    /// The set it is in (`group.gone` is `hung_up`).
    group: Group,
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
        let pump = match Pump::new(rx, syslog_rx, wake_r, logs, format, sinks) {
            Ok(pump) => pump,
            Err(err) => {
                log::detach();
                return Err(err);
            }
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
    sources: Slab<Source>,
    /// Indexed by `Group::index`.
    sets: Vec<Set>,
    /// Every pipe not hung up yet, watched for its hang-up only.
    hup: Epoll,
    /// What the last wait of a set found (kept for its buffer).
    events: Events,
    /// Read buffers (`READ_SIZE` long) for reuse.
    spare: Vec<Vec<u8>>,
    /// `format::line_head` of the read being served (kept for its buffer).
    head: Vec<u8>,
}

impl Pump {
    fn new(
        rx: Receiver<Msg>,
        syslog: Receiver<SyslogLine>,
        wake: OwnedFd,
        logs: Logs,
        format: Format,
        sinks: Vec<Sink>,
    ) -> io::Result<Pump> {
        let mut sets = Vec::with_capacity(GROUPS);
        for group in Group::all() {
            debug_assert_eq!(group.index(), sets.len());
            sets.push(Set {
                epoll: Epoll::new()?,
                members: 0,
            });
        }
        Ok(Pump {
            rx,
            syslog,
            wake,
            logs,
            format,
            sinks,
            sources: Slab::default(),
            sets,
            hup: Epoll::new()?,
            events: Events::with_capacity(READY_BATCH),
            spare: Vec::new(),
            head: Vec::new(),
        })
    }

    pub(super) fn run(mut self, writers: Vec<JoinHandle<()>>) {
        let mut finishing = false;
        loop {
            while let Ok(msg) = self.rx.try_recv() {
                match msg {
                    Msg::Add {
                        name,
                        stream,
                        fd,
                        pid,
                        echo,
                        ready,
                    } => {
                        self.add(name, stream, fd, pid, echo, ready);
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

    /// Read `fd` from now on: in the hang-up set and its group's. Its key,
    /// unless it could not be watched (then it is closed).
    fn add(
        &mut self,
        name: Arc<str>,
        stream: Stream,
        fd: OwnedFd,
        pid: Option<u32>,
        echo: bool,
        ready: Option<Arc<LineReady>>,
    ) -> Option<u64> {
        let mut prefix = name.as_bytes().to_vec();
        prefix.extend_from_slice(b" | ");
        let group = Group {
            stream,
            filed: self.filed(&name),
            gone: false,
        };
        let key = self.sources.insert(Source {
            name,
            prefix,
            stream,
            pid,
            echo,
            id: new_source(),
            fd,
            splitter: Splitter::default(),
            hung_up: false,
            group,
            ready,
        });
        let source = self.sources.get(key)?;
        let added = self.hup.add(source.fd.as_fd(), 0, key);
        let added = added.and_then(|()| {
            let set = self.sets.get_mut(group.index()).ok_or(Errno::EINVAL)?;
            let added = set.epoll.add(source.fd.as_fd(), READABLE, key);
            if added.is_err() {
                let _ = self.hup.delete(source.fd.as_fd());
            }
            added.map(|()| set.members += 1)
        });
        if let Err(err) = added {
            unwatched(&source.name, &err);
            self.sources.remove(key);
            return None;
        }
        Some(key)
    }

    /// Whether `service`'s lines go to a log file now.
    fn filed(&self, service: &str) -> bool {
        self.logs
            .files()
            .is_some_and(|files| files.is_open(service))
    }

    /// Move source `key` to the set of `to`; false if it had to be dropped.
    fn regroup(&mut self, key: u64, to: Group) -> bool {
        let Some(source) = self.sources.get_mut(key) else {
            return false;
        };
        let from = mem::replace(&mut source.group, to);
        if from == to {
            return true;
        }
        if let Some(set) = self.sets.get_mut(from.index()) {
            let _ = set.epoll.delete(source.fd.as_fd());
            set.members = set.members.saturating_sub(1);
        }
        let added = match self.sets.get_mut(to.index()) {
            Some(set) => set
                .epoll
                .add(source.fd.as_fd(), READABLE, key)
                .map(|()| set.members += 1),
            None => Err(Errno::EINVAL.into()),
        };
        if let Err(err) = added {
            unwatched(&source.name, &err);
            // In no group now: only the hang-up set still has it.
            if !source.hung_up {
                let _ = self.hup.delete(source.fd.as_fd());
            }
            self.sources.remove(key);
            return false;
        }
        true
    }

    /// Every writer of source `key` is gone: from now on it is read until
    /// `HARD_LIMIT`, and no longer watched for a hang-up.
    fn hang_up(&mut self, key: u64) {
        let Some(source) = self.sources.get_mut(key) else {
            return;
        };
        if source.hung_up {
            return;
        }
        source.hung_up = true;
        let _ = self.hup.delete(source.fd.as_fd());
        let to = Group {
            gone: true,
            ..source.group
        };
        self.regroup(key, to);
    }

    /// Forget source `key` and close its pipe.
    fn remove(&mut self, key: u64) {
        let Some(source) = self.sources.remove(key) else {
            return;
        };
        // Closing the pipe would remove it from the sets too, unless
        // another fd shares its open file (a child between fork and exec).
        if !source.hung_up {
            let _ = self.hup.delete(source.fd.as_fd());
        }
        if let Some(set) = self.sets.get_mut(source.group.index()) {
            let _ = set.epoll.delete(source.fd.as_fd());
            set.members = set.members.saturating_sub(1);
        }
    }

    /// May the pipes of `group` be read now? (`files_behind`: the log
    /// files' queue is more than half full.)
    fn open(&self, group: Group, files_behind: bool) -> bool {
        let Some(sink) = self.sinks.get(group.stream.index()) else {
            return false;
        };
        let limit = if group.gone { HARD_LIMIT } else { HIGH_WATER };
        sink.level() < limit && !(group.filed && files_behind)
    }

    /// One poll and what it found; `now`: do not wait for anything.
    fn round(&mut self, now: bool) {
        // The log files are behind: their services' pipes wait (checked
        // again every `FILES_BEHIND_RETRY_MS`; the file thread wakes nobody).
        let files_behind = self.logs.files().is_some_and(|files| !files.has_room());
        let mut filed_waiting = false;
        // The wake-up pipe, the hang-up set, then each group that may be
        // read (backpressure: a stream whose writer is behind is not read,
        // but a hang-up is still seen).
        let mut groups = [0usize; GROUPS];
        let mut polled = 0;
        let revents: [PollFlags; 2 + GROUPS] = {
            let mut fds: Vec<PollFd> = Vec::with_capacity(2 + GROUPS);
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(self.hup.as_fd(), PollFlags::POLLIN));
            for group in Group::all() {
                let Some(set) = self.sets.get(group.index()).filter(|set| set.members > 0) else {
                    continue;
                };
                if !self.open(group, files_behind) {
                    filed_waiting |= group.filed && files_behind;
                    continue;
                }
                if let Some(slot) = groups.get_mut(polled) {
                    *slot = group.index();
                    polled += 1;
                    fds.push(PollFd::new(set.epoll.as_fd(), PollFlags::POLLIN));
                }
            }
            let timeout = if now {
                PollTimeout::ZERO
            } else if filed_waiting {
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
            let mut revents = [PollFlags::empty(); 2 + GROUPS];
            for (r, fd) in revents.iter_mut().zip(&fds) {
                *r = fd.revents().unwrap_or(PollFlags::empty());
            }
            revents
        };
        let [woken, hung_up, ready @ ..] = revents;
        if !woken.is_empty() {
            polling::drain(&self.wake);
        }
        let mut events = mem::take(&mut self.events);
        if !hung_up.is_empty() && self.hup.wait(&mut events, PollTimeout::ZERO).is_ok() {
            for (key, _) in events.iter() {
                self.hang_up(key);
            }
        }
        for (&index, revents) in groups.iter().zip(ready).take(polled) {
            if revents.is_empty() {
                continue;
            }
            let waited = match self.sets.get(index) {
                Some(set) => set.epoll.wait(&mut events, PollTimeout::ZERO),
                None => continue,
            };
            if waited.is_err() {
                continue;
            }
            for (key, flags) in events.iter() {
                if flags & HUNG_UP != 0 {
                    self.hang_up(key);
                }
                if self.serve(key, files_behind) {
                    self.remove(key);
                }
            }
        }
        self.events = events;
        for sink in &mut self.sinks {
            sink.send();
        }
    }

    /// Read source `key` once, if its stream (and its log file) take
    /// more; true at its end.
    fn serve(&mut self, key: u64, files_behind: bool) -> bool {
        let Some(source) = self.sources.get(key) else {
            return false;
        };
        // A log file opened or closed since (a reload, then a spawn):
        // another group from now on.
        let filed = self.filed(&source.name);
        if filed != source.group.filed {
            let to = Group {
                filed,
                ..source.group
            };
            if !self.regroup(key, to) || (filed && files_behind) {
                return false;
            }
        }
        let Some(source) = self.sources.get_mut(key) else {
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
        // A log file takes this service's lines too.
        let files = self.logs.files().filter(|_| filed).cloned();
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

/// A pipe that could not be put in its epoll set (not expected: ENOMEM,
/// fs.epoll.max_user_watches) is closed, so its writers get EPIPE rather
/// than block forever.
#[cold]
fn unwatched(service: &str, err: &io::Error) {
    warn!(service, %err, "output pipe dropped: cannot watch it");
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

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;

    use nix::fcntl::OFlag;

    use super::*;

    /// A pump without its thread or writers: the test runs its rounds and
    /// takes what it sends to each stream.
    struct Bench {
        pump: Pump,
        batches: Vec<Receiver<Vec<u8>>>,
        waiting: Vec<Arc<AtomicUsize>>,
    }

    fn bench() -> Bench {
        let (wake_r, _wake) = polling::wake_pipe().expect("wake pipe");
        let (mut sinks, mut batches, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for _ in [Stream::Stdout, Stream::Stderr] {
            let (tx, rx) = crossbeam_channel::unbounded();
            let (_, spare) = crossbeam_channel::bounded(SPARES);
            let level = Arc::new(AtomicUsize::new(0));
            sinks.push(Sink {
                tx,
                waiting: Arc::clone(&level),
                batch: Vec::new(),
                spare,
                failing: Arc::new(AtomicBool::new(false)),
                next_probe: Instant::now(),
            });
            batches.push(rx);
            waiting.push(level);
        }
        let (_, rx) = crossbeam_channel::unbounded();
        let (_, syslog) = crossbeam_channel::bounded(1);
        let pump = Pump::new(rx, syslog, wake_r, Logs::new(), Format::default(), sinks)
            .expect("epoll sets");
        Bench {
            pump,
            batches,
            waiting,
        }
    }

    impl Bench {
        /// A pipe of service `name`'s `stream`, read by the pump: its key
        /// and write end.
        fn add(&mut self, name: &str, stream: Stream) -> (u64, File) {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
            let key = self
                .pump
                .add(Arc::from(name), stream, read, None, true, None)
                .expect("watched");
            (key, File::from(write))
        }

        /// What `stream` was sent since the last look, as its writer would
        /// take it (its level back to 0 unless `keep`).
        fn taken(&self, stream: Stream) -> String {
            let mut all = Vec::new();
            for batch in self.batches[stream.index()].try_iter() {
                all.extend_from_slice(&batch);
            }
            self.waiting[stream.index()].fetch_sub(all.len(), Ordering::AcqRel);
            String::from_utf8(all).expect("text")
        }

        /// `stream`'s writer has `bytes` waiting.
        fn behind(&self, stream: Stream, bytes: usize) {
            self.waiting[stream.index()].store(bytes, Ordering::Release);
        }

        /// Rounds that do not wait, until `done` or 100 of them.
        fn rounds_until(&mut self, mut done: impl FnMut(&Pump) -> bool) -> bool {
            for _ in 0..100 {
                if done(&self.pump) {
                    return true;
                }
                self.pump.round(true);
            }
            done(&self.pump)
        }
    }

    #[test]
    fn a_pipe_added_after_one_was_removed_is_never_served_under_the_old_key() {
        let mut b = bench();
        let (old, mut w) = b.add("old", Stream::Stdout);
        w.write_all(b"bye\n").expect("write");
        drop(w);
        assert!(b.rounds_until(|p| p.sources.is_empty()), "removed at EOF");
        assert_eq!(b.taken(Stream::Stdout), "old | bye\n");
        let (new, mut w) = b.add("new", Stream::Stdout);
        assert_eq!(new as u32, old as u32, "its slot is reused");
        assert_ne!(new, old, "under a new key");
        w.write_all(b"hi\n").expect("write");
        // An event of the old pipe read late finds nothing...
        assert!(!b.pump.serve(old, false));
        b.pump.remove(old);
        b.pump.hang_up(old);
        assert_eq!(b.pump.sources.len(), 1);
        assert!(!b.pump.sources.get(new).expect("new").hung_up);
        b.pump.round(true);
        // ...and the new one is read as its own.
        assert_eq!(b.taken(Stream::Stdout), "new | hi\n");
    }

    #[test]
    fn a_stream_behind_holds_back_its_pipes_only_until_they_hang_up() {
        let mut b = bench();
        let (_, mut out) = b.add("svc", Stream::Stdout);
        let (_, mut err) = b.add("svc", Stream::Stderr);
        b.behind(Stream::Stdout, HIGH_WATER);
        out.write_all(b"out\n").expect("write");
        err.write_all(b"err\n").expect("write");
        b.pump.round(true);
        b.pump.round(true);
        assert_eq!(b.taken(Stream::Stderr), "svc | err\n", "stderr is read");
        assert_eq!(b.taken(Stream::Stdout), "", "stdout is not");
        // Its writers gone, a pipe is read until HARD_LIMIT bytes wait...
        b.behind(Stream::Stdout, HARD_LIMIT);
        drop(out);
        b.pump.round(true);
        let hung_up =
            |p: &Pump| p.sources.len() == 2 && p.sources.get(0).is_some_and(|s| s.hung_up);
        assert!(hung_up(&b.pump), "the hang-up is seen while behind");
        assert_eq!(b.taken(Stream::Stdout), "", "beyond HARD_LIMIT: not read");
        // ...and to its end below it (the stream is still behind).
        b.behind(Stream::Stdout, HIGH_WATER);
        assert!(b.rounds_until(|p| p.sources.len() == 1), "read to EOF");
        b.behind(Stream::Stdout, 0);
        assert_eq!(b.taken(Stream::Stdout), "svc | out\n");
        drop(err);
        assert!(b.rounds_until(|p| p.sources.is_empty()));
    }

    #[test]
    fn one_line_of_the_last_of_2000_pipes_is_read_in_one_round() {
        // Two fds a pipe while the test runs: raise the soft limit if it
        // is lower (the hard one is the ceiling; fewer pipes if need be).
        let mut pipes: usize = 2000;
        let nofile = nix::sys::resource::Resource::RLIMIT_NOFILE;
        if let Ok((soft, hard)) = nix::sys::resource::getrlimit(nofile) {
            let want = soft.max((2 * pipes as u64 + 256).min(hard));
            let _ = nix::sys::resource::setrlimit(nofile, want, hard);
            pipes = pipes.min((want.saturating_sub(256) / 2) as usize);
        }
        let mut b = bench();
        let mut writers = Vec::new();
        for i in 0..pipes {
            writers.push(b.add(&format!("s{i}"), Stream::Stdout).1);
        }
        let last = pipes - 1;
        writers[last].write_all(b"here\n").expect("write");
        b.pump.round(true);
        assert_eq!(b.taken(Stream::Stdout), format!("s{last} | here\n"));
        assert_eq!(b.pump.sources.len(), pipes);
        drop(writers);
        assert!(
            b.rounds_until(|p| p.sources.is_empty()),
            "every pipe closed"
        );
        assert!(b.pump.sets.iter().all(|set| set.members == 0));
    }
}
