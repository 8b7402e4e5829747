//! `Logs`: the recent output of every `output = "prefix"` service, kept as
//! the raw blocks its pipes gave with the time of each read, the `logs -f`
//! followers of each (and of all), and the count of lines each passed on.
//!
//! What it must never do: block the output thread (the lock is held for
//! one read's worth of work; a follower whose channel is full is dropped,
//! never waited for), or keep more than `RING_KEEP` bytes per service.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::format::{SYSLOG, SyslogLine};
use super::split::Splitter;
use super::{
    FOLLOW_BACKLOG, LOG_BYTES, LOG_LINES, LogEntry, Priority, READ_SIZE, RING_BLOCKS, RING_KEEP,
    SPARES, Stream, from_micros, micros,
};

/// The recent output of every `output = "prefix"` service, and who follows
/// it. Shared by the output thread (which appends) and the control server
/// (which reads and subscribes); cloning shares the same store.
///
/// A service's log keeps the raw bytes its pipes gave (`RING_KEEP`, in the
/// pieces they were read in), not lines: the output thread moves each read
/// in whole, with no work per line, and `tail` cuts the lines again when
/// asked. What `tail` returns is the same as if every line had been kept
/// and the oldest dropped beyond `LOG_LINES` lines or `LOG_BYTES` bytes.
/// A line's time is the time of the read that ended it.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    inner: Arc<Mutex<LogStore>>,
    /// Lines lost in failed writes, by `Stream::index` (the writers count
    /// them; which service's they were is not known there).
    lost: [Arc<AtomicU64>; 2],
    /// The `log-file` sink, once started: the output thread hands it the
    /// lines of services that have one; `/metrics` adds its drops.
    files: Arc<std::sync::OnceLock<super::file::LogFiles>>,
}

#[derive(Debug, Default)]
pub(super) struct LogStore {
    pub(super) services: HashMap<String, Ring>,
    /// `logs -f --all`: every line of every service.
    pub(super) all_followers: Vec<Sender<LogEntry>>,
    /// corral is exiting: no new followers.
    closed: bool,
}

impl LogStore {
    /// `service`'s log, made on its first line.
    pub(super) fn ring(&mut self, service: &str) -> &mut Ring {
        self.services
            .entry(service.to_string())
            .or_insert_with(|| Ring::new(service))
    }
}

/// What `/metrics` shows of a service's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    pub service: String,
    /// Lines passed on, by `Stream::index` (stdout, stderr).
    pub lines: [u64; 2],
    /// Lines that could not be written or kept.
    pub dropped: u64,
}

#[derive(Debug)]
pub(super) struct Ring {
    name: Arc<str>,
    blocks: VecDeque<Block>,
    /// The bytes of every block.
    bytes: usize,
    pub(super) followers: Vec<Sender<LogEntry>>,
    /// Lines passed on, by `Stream::index`.
    pub(super) lines: [u64; 2],
    pub(super) dropped: u64,
}

/// Bytes read from one pipe (one run's stdout or stderr).
#[derive(Debug)]
pub(super) struct Block {
    /// Which pipe: a service's pipes are numbered by the output thread.
    pub(super) source: u64,
    pub(super) stream: Stream,
    /// The run's pid, when known.
    pub(super) pid: Option<u32>,
    /// `syslog`'s lines: their message's.
    pub(super) priority: Option<Priority>,
    /// When `data` was read (`micros`), or its first part.
    pub(super) time: u64,
    /// Later reads merged into `data`: where each starts and when it was
    /// read (only when that time is in another millisecond than the one
    /// before). Each counts `MARK_WEIGHT` bytes towards `RING_KEEP`, so a
    /// service writing a byte at a time cannot make its log grow beyond it.
    pub(super) marks: Vec<(u32, u64)>,
    pub(super) data: Vec<u8>,
    /// Where the first line that starts in `data` begins (`Splitter::split`).
    pub(super) fresh: usize,
    /// The pipe ended here: its unfinished line is a line.
    pub(super) eof: bool,
}

/// What a mark costs in memory, counted towards `RING_KEEP`.
const MARK_WEIGHT: usize = std::mem::size_of::<(u32, u64)>();

impl Block {
    /// The bytes it holds, marks included.
    fn weight(&self) -> usize {
        self.data.len() + self.marks.len() * MARK_WEIGHT
    }

    /// An empty block saying the pipe ended.
    pub(super) fn eof(source: u64, stream: Stream, pid: Option<u32>, time: SystemTime) -> Block {
        Block {
            source,
            stream,
            pid,
            priority: None,
            time: micros(time),
            marks: Vec::new(),
            data: Vec::new(),
            fresh: 0,
            eof: true,
        }
    }
}

impl Logs {
    pub fn new() -> Logs {
        Logs::default()
    }

    /// Lines of services with a `log-file` go to `files` from now on.
    pub fn attach_files(&self, files: super::file::LogFiles) {
        let _ = self.files.set(files);
    }

    /// The `log-file` sink, if started.
    pub(super) fn files(&self) -> Option<&super::file::LogFiles> {
        self.files.get()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, LogStore> {
        // A panic elsewhere while holding the lock leaves the store usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `lines` (each without its newline) of `service`, as one pipe of
    /// their own would give them, read now, and pass each to the followers.
    /// Never blocks: a follower whose channel is full or closed is dropped.
    pub fn append(&self, service: &str, stream: Stream, lines: &[&[u8]]) {
        self.append_from(service, stream, None, None, lines);
    }

    /// `append` of one message of `--syslog` to the pseudo-service
    /// `syslog`, with the pid and priority it gave.
    pub(super) fn append_syslog(&self, line: &SyslogLine) {
        self.append_from(
            SYSLOG,
            Stream::Stdout,
            line.pid,
            Some(line.priority),
            &[line.text.as_bytes()],
        );
    }

    fn append_from(
        &self,
        service: &str,
        stream: Stream,
        pid: Option<u32>,
        priority: Option<Priority>,
        lines: &[&[u8]],
    ) {
        let mut data = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        let now = SystemTime::now();
        let mut store = self.lock();
        let LogStore {
            services,
            all_followers,
            ..
        } = &mut *store;
        let ring = services
            .entry(service.to_string())
            .or_insert_with(|| Ring::new(service));
        for line in lines {
            ring.count(stream);
            if !ring.followers.is_empty() || !all_followers.is_empty() {
                let entry = ring.entry(stream, pid, priority, now, line);
                Ring::tell(&mut ring.followers, &entry);
                Ring::tell(all_followers, &entry);
            }
        }
        let block = Block {
            source: new_source(),
            stream,
            pid,
            priority,
            time: micros(now),
            marks: Vec::new(),
            data,
            fresh: 0,
            eof: false,
        };
        ring.keep(block, &mut Vec::new());
    }

    /// The last `n` lines of `service` (fewer if it printed fewer), only
    /// those read at `since` or later if given.
    pub fn tail(&self, service: &str, n: usize, since: Option<SystemTime>) -> Vec<LogEntry> {
        let store = self.lock();
        store
            .services
            .get(service)
            .map(|ring| last(newer(ring.lines(), since), n))
            .unwrap_or_default()
    }

    /// The last `n` lines of every service together, in the order they
    /// were read (`since` as in `tail`).
    pub fn tail_all(&self, n: usize, since: Option<SystemTime>) -> Vec<LogEntry> {
        let store = self.lock();
        last(merged(&store, since), n)
    }

    /// The last `n` lines of `service` (of every service: `None`), and a
    /// channel of every line after them: taken under one lock, so no line
    /// is lost or repeated between the two. `None` once corral is exiting.
    pub fn follow(
        &self,
        service: Option<&str>,
        n: usize,
        since: Option<SystemTime>,
    ) -> Option<(Vec<LogEntry>, Receiver<LogEntry>)> {
        let mut store = self.lock();
        if store.closed {
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded(FOLLOW_BACKLOG);
        let recent = match service {
            Some(service) => {
                let ring = store.ring(service);
                ring.followers.push(tx);
                newer(ring.lines(), since)
            }
            None => {
                store.all_followers.push(tx);
                merged(&store, since)
            }
        };
        Some((last(recent, n), rx))
    }

    /// What each service passed on and dropped, by name.
    pub fn counts(&self) -> Vec<ServiceCounts> {
        let store = self.lock();
        let mut counts: Vec<ServiceCounts> = store
            .services
            .iter()
            .map(|(name, ring)| ServiceCounts {
                service: name.clone(),
                lines: ring.lines,
                dropped: ring.dropped,
            })
            .collect();
        drop(store);
        // Lines a log file could not take count as dropped too.
        if let Some(files) = self.files.get() {
            for (service, file) in files.all_counts() {
                match counts.iter_mut().find(|c| *c.service == *service) {
                    Some(c) => c.dropped += file.dropped,
                    None => counts.push(ServiceCounts {
                        service: service.to_string(),
                        lines: [0, 0],
                        dropped: file.dropped,
                    }),
                }
            }
        }
        crate::sort::sort_by(&mut counts, |a, b| a.service.cmp(&b.service));
        counts
    }

    /// The counter of lines lost in failed writes of `stream`.
    pub(super) fn lost(&self, stream: Stream) -> Arc<AtomicU64> {
        self.lost
            .get(stream.index())
            .map(Arc::clone)
            .unwrap_or_default()
    }

    /// Lines lost in failed writes: stdout's, stderr's.
    pub fn lost_lines(&self) -> [u64; 2] {
        [Stream::Stdout, Stream::Stderr].map(|s| self.lost(s).load(Ordering::Relaxed))
    }

    /// corral is exiting: end every follow (their channels disconnect).
    pub fn close(&self) {
        let mut store = self.lock();
        store.closed = true;
        store.all_followers.clear();
        for ring in store.services.values_mut() {
            ring.followers.clear();
        }
    }
}

/// Every kept line of every service, in the order they were read (lines of
/// one service keep their order; ties between services go by name).
fn merged(store: &LogStore, since: Option<SystemTime>) -> Vec<LogEntry> {
    let mut names: Vec<&String> = store.services.keys().collect();
    crate::sort::sort(&mut names);
    let mut all: Vec<LogEntry> = Vec::new();
    for name in names {
        if let Some(ring) = store.services.get(name) {
            all.extend(newer(ring.lines(), since));
        }
    }
    // Stable: a service's own order holds even where its times tie.
    crate::sort::sort_by_key(&mut all, |e| e.time);
    all
}

/// A number for a new pipe, unique in this process (blocks of one pipe are
/// cut into lines together).
pub(super) fn new_source() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn last(mut entries: Vec<LogEntry>, n: usize) -> Vec<LogEntry> {
    entries.drain(..entries.len().saturating_sub(n));
    entries
}

fn newer(mut entries: Vec<LogEntry>, since: Option<SystemTime>) -> Vec<LogEntry> {
    if let Some(since) = since {
        entries.retain(|e| e.time >= since);
    }
    entries
}

impl Ring {
    pub(super) fn new(name: &str) -> Ring {
        Ring {
            name: Arc::from(name),
            blocks: VecDeque::new(),
            bytes: 0,
            followers: Vec::new(),
            lines: [0; 2],
            dropped: 0,
        }
    }

    pub(super) fn count(&mut self, stream: Stream) {
        if let Some(n) = self.lines.get_mut(stream.index()) {
            *n += 1;
        }
    }

    pub(super) fn entry(
        &self,
        stream: Stream,
        pid: Option<u32>,
        priority: Option<Priority>,
        time: SystemTime,
        line: &[u8],
    ) -> LogEntry {
        LogEntry {
            service: Arc::clone(&self.name),
            stream,
            pid,
            priority,
            time,
            line: line.to_vec(),
        }
    }

    /// Give `entry` to every follower; one whose channel is full or closed
    /// is dropped, never waited for.
    pub(super) fn tell(followers: &mut Vec<Sender<LogEntry>>, entry: &LogEntry) {
        if followers.is_empty() {
            return;
        }
        followers.retain(|follower| match follower.try_send(entry.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        });
    }

    /// Keep `block`, and drop the oldest blocks beyond `RING_KEEP` bytes;
    /// dropped buffers go to `spare` for reuse. The block before it will
    /// not grow any more: its spare capacity goes back to the allocator, so
    /// what a log holds is what it keeps (not up to twice that).
    pub(super) fn keep(&mut self, block: Block, spare: &mut Vec<Vec<u8>>) {
        if let Some(last) = self.blocks.back_mut() {
            last.data.shrink_to_fit();
            last.marks.shrink_to_fit();
        }
        self.bytes += block.weight();
        self.blocks.push_back(block);
        while let Some(front) = self.blocks.front() {
            let over_bytes = self.bytes - front.weight() >= RING_KEEP;
            if !over_bytes && self.blocks.len() <= RING_BLOCKS {
                break;
            }
            if let Some(old) = self.blocks.pop_front() {
                self.bytes -= old.weight();
                if spare.len() < SPARES && old.data.capacity() >= READ_SIZE {
                    spare.push(old.data);
                }
            }
        }
    }

    /// Keep `data` (part of `buf`), read from `source` at `time`; `fresh`
    /// as returned by `Splitter::split`. A full read (a busy service) takes
    /// `buf` itself, no copy (the caller gets a new buffer from `spare` or
    /// allocates one); a smaller one is copied, onto the last block when it
    /// is from the same pipe, so a quiet service does not pin a whole
    /// buffer per line (its time is then a mark in that block).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn keep_read(
        &mut self,
        source: u64,
        stream: Stream,
        pid: Option<u32>,
        time: SystemTime,
        buf: &mut Vec<u8>,
        len: usize,
        fresh: usize,
        spare: &mut Vec<Vec<u8>>,
    ) {
        let time = micros(time);
        let data = buf.get(..len).unwrap_or_default();
        if let Some(last) = self.blocks.back_mut()
            && last.source == source
            && !last.eof
            && last.weight() + len + MARK_WEIGHT <= READ_SIZE
        {
            if last.fresh == last.data.len() {
                last.fresh += fresh;
            }
            // Times are shown to the millisecond: a read in the same
            // millisecond as the last mark needs none of its own.
            let latest = last.marks.last().map_or(last.time, |&(_, t)| t);
            if time / 1000 != latest / 1000 {
                let at = u32::try_from(last.data.len()).unwrap_or(u32::MAX);
                last.marks.push((at, time));
                self.bytes += MARK_WEIGHT;
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
                pid,
                priority: None,
                time,
                marks: Vec::new(),
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
    /// kept. Each line has the time of the read that ended it.
    fn lines(&self) -> Vec<LogEntry> {
        let mut pipes: HashMap<u64, Splitter> = HashMap::new();
        let mut entries = Vec::new();
        for block in &self.blocks {
            let from = if pipes.contains_key(&block.source) {
                0
            } else if block.fresh >= block.data.len() {
                // No line starts here: nothing to read yet.
                continue;
            } else {
                block.fresh
            };
            let splitter = pipes.entry(block.source).or_default();
            let (stream, pid, priority) = (block.stream, block.pid, block.priority);
            let starts = std::iter::once((0usize, block.time))
                .chain(block.marks.iter().map(|&(at, t)| (at as usize, t)));
            let ends = block
                .marks
                .iter()
                .map(|&(at, _)| at as usize)
                .chain(std::iter::once(block.data.len()));
            for ((start, time), end) in starts.zip(ends) {
                let start = start.max(from);
                if start >= end {
                    continue;
                }
                let time = from_micros(time);
                let data = block.data.get(start..end).unwrap_or_default();
                splitter.split(data, |line| {
                    entries.push(self.entry(stream, pid, priority, time, line));
                });
            }
            if block.eof {
                let time = from_micros(block.time);
                splitter.finish(|line| {
                    entries.push(self.entry(stream, pid, priority, time, line));
                });
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let ring = store.ring(service);
            let now = SystemTime::now();
            let mut entries = Vec::new();
            let fresh = splitter.split(read, |l| {
                told.push(String::from_utf8_lossy(l).into_owned());
                entries.push(ring.entry(stream, Some(7), None, now, l));
            });
            for entry in &entries {
                Ring::tell(&mut ring.followers, entry);
            }
            let mut buf = read.to_vec();
            ring.keep_read(
                source,
                stream,
                Some(7),
                now,
                &mut buf,
                read.len(),
                fresh,
                &mut spare,
            );
        }
        told
    }

    fn lines_of(entries: &[LogEntry]) -> Vec<String> {
        entries.iter().map(|e| e.text().into_owned()).collect()
    }

    #[test]
    fn logs_keep_the_last_1000_lines_per_service() {
        let logs = Logs::new();
        let text: String = (1..=1500).map(|i| format!("{i}\n")).collect();
        // In reads of 1000 bytes, which cut lines anywhere.
        let reads: Vec<&[u8]> = text.as_bytes().chunks(1000).collect();
        feed(&logs, "web", 1, Stream::Stdout, &reads);
        feed(&logs, "db", 2, Stream::Stderr, &[b"db says \xff\n"]);
        let all = logs.tail("web", usize::MAX, None);
        assert_eq!(all.len(), LOG_LINES);
        assert_eq!(
            all.first().map(|e| e.text().into_owned()),
            Some("501".to_string())
        );
        assert_eq!(
            lines_of(&logs.tail("web", 3, None)),
            ["1498", "1499", "1500"]
        );
        let db = logs.tail("db", 10, None);
        assert_eq!(db.len(), 1);
        assert_eq!(db[0].stream, Stream::Stderr);
        assert_eq!(db[0].line, b"db says \xff");
        assert_eq!(db[0].text(), "db says \u{fffd}");
        assert!(logs.tail("nobody", 10, None).is_empty());
    }

    #[test]
    fn logs_keep_at_most_a_mebibyte_per_service() {
        let logs = Logs::new();
        let mut line = vec![b'x'; 64 * 1024 - 1];
        line.push(b'\n');
        let reads: Vec<&[u8]> = vec![&line; 40];
        feed(&logs, "big", 1, Stream::Stdout, &reads);
        let kept = logs.tail("big", usize::MAX, None);
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
        assert_eq!(logs.tail("web", usize::MAX, None).len(), LOG_LINES);
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
            let ring = store.ring("web");
            let block = Block::eof(1, Stream::Stdout, None, SystemTime::now());
            ring.keep(block, &mut Vec::new());
        }
        let kept = logs.tail("web", 10, None);
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
        let (recent, rx) = logs.follow(Some("web"), 1, None).expect("follow");
        assert_eq!(lines_of(&recent), ["old 2"]);
        feed(&logs, "web", 2, Stream::Stderr, &[b"new\n"]);
        let new = rx.try_recv().expect("a new line");
        assert_eq!(
            (new.stream, new.line.as_slice()),
            (Stream::Stderr, &b"new"[..])
        );
        assert_eq!((&*new.service, new.pid), ("web", Some(7)));
        // A follower that does not read is dropped once its backlog is full;
        // the writer never waits for it.
        let (_, slow) = logs.follow(Some("web"), 0, None).expect("follow");
        let many = "x\n".repeat(FOLLOW_BACKLOG + 1);
        feed(&logs, "web", 1, Stream::Stdout, &[many.as_bytes()]);
        assert_eq!(slow.try_iter().count(), FOLLOW_BACKLOG);
        assert!(slow.recv().is_err(), "a dropped follower's channel ends");
        // Closing ends every follow and refuses new ones.
        logs.close();
        assert!(rx.try_iter().count() > 0 && rx.recv().is_err());
        assert!(logs.follow(Some("web"), 0, None).is_none());
    }

    /// Keep `read` of `service` as read at `secs` seconds after the epoch.
    fn feed_at(logs: &Logs, service: &str, source: u64, secs: u64, read: &[u8]) {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let mut store = logs.lock();
        let ring = store.ring(service);
        let fresh = Splitter::default().split(read, |_| {});
        let mut buf = read.to_vec();
        let (stream, len) = (Stream::Stdout, read.len());
        ring.keep_read(
            source,
            stream,
            Some(9),
            time,
            &mut buf,
            len,
            fresh,
            &mut Vec::new(),
        );
    }

    fn secs(entry: &LogEntry) -> u64 {
        entry
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    #[test]
    fn each_line_has_the_time_of_the_read_that_ended_it() {
        let logs = Logs::new();
        // Three small reads merged into one block, a line across two.
        feed_at(&logs, "web", 1, 100, b"a\nb");
        feed_at(&logs, "web", 1, 101, b"b\nc\n");
        feed_at(&logs, "web", 1, 103, b"d\n");
        feed_at(&logs, "db", 2, 102, b"x\n");
        let web = logs.tail("web", 10, None);
        let got: Vec<(String, u64)> = web.iter().map(|e| (e.text().into(), secs(e))).collect();
        assert_eq!(
            got,
            [
                ("a".into(), 100),
                ("bb".into(), 101),
                ("c".into(), 101),
                ("d".into(), 103)
            ]
        );
        assert!(web.iter().all(|e| e.pid == Some(9) && &*e.service == "web"));
        // Every service merged in time order; `since` keeps the newer.
        let all = logs.tail_all(10, None);
        let order: Vec<String> = all
            .iter()
            .map(|e| format!("{}:{}", e.service, e.text()))
            .collect();
        assert_eq!(order, ["web:a", "web:bb", "web:c", "db:x", "web:d"]);
        let since = Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(102));
        assert_eq!(lines_of(&logs.tail_all(10, since)), ["x", "d"]);
        assert_eq!(lines_of(&logs.tail("web", 10, since)), ["d"]);
        assert_eq!(lines_of(&logs.tail_all(1, None)), ["d"]);
        // A follower of all gets lines of services it has not seen yet.
        let (recent, rx) = logs.follow(None, 2, None).expect("follow");
        assert_eq!(lines_of(&recent), ["x", "d"]);
        logs.append("new", Stream::Stderr, &[b"hello"]);
        let entry = rx.try_recv().expect("a line");
        assert_eq!(
            (&*entry.service, entry.line.as_slice()),
            ("new", &b"hello"[..])
        );
    }

    #[test]
    fn a_byte_at_a_time_each_in_its_own_millisecond_stays_bounded() {
        let logs = Logs::new();
        for i in 0..(RING_KEEP as u64 / 4) {
            let byte: &[u8] = if i % 10 == 9 { b"\n" } else { b"x" };
            feed_at(&logs, "web", 1, i, byte);
        }
        let store = logs.lock();
        let ring = store.services.get("web").expect("ring");
        let held: usize = ring
            .blocks
            .iter()
            .map(|b| b.data.capacity() + b.marks.capacity() * MARK_WEIGHT)
            .sum();
        assert!(held <= RING_KEEP + 3 * READ_SIZE, "{held}");
        drop(store);
        let lines = logs.tail("web", 2, None);
        assert_eq!(lines_of(&lines), ["xxxxxxxxx", "xxxxxxxxx"]);
        assert!(lines[0].time < lines[1].time);
    }
}
