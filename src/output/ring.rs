//! `Logs`: the recent output of every `output = "prefix"` service, kept as
//! the raw blocks its pipes gave, and the `logs -f` followers of each.
//!
//! What it must never do: block the output thread (the lock is held for
//! one read's worth of work; a follower whose channel is full is dropped,
//! never waited for), or keep more than `RING_KEEP` bytes per service.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::split::Splitter;
use super::{
    FOLLOW_BACKLOG, LOG_BYTES, LOG_LINES, LogEntry, READ_SIZE, RING_BLOCKS, RING_KEEP, SPARES,
    Stream,
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
#[derive(Debug, Clone, Default)]
pub struct Logs {
    inner: Arc<Mutex<LogStore>>,
}

#[derive(Debug, Default)]
pub(super) struct LogStore {
    pub(super) services: HashMap<String, Ring>,
    /// corral is exiting: no new followers.
    closed: bool,
}

#[derive(Debug, Default)]
pub(super) struct Ring {
    blocks: VecDeque<Block>,
    /// The bytes of every block.
    bytes: usize,
    pub(super) followers: Vec<Sender<LogEntry>>,
}

/// Bytes read from one pipe (one run's stdout or stderr).
#[derive(Debug)]
pub(super) struct Block {
    /// Which pipe: a service's pipes are numbered by the output thread.
    pub(super) source: u64,
    pub(super) stream: Stream,
    pub(super) data: Vec<u8>,
    /// Where the first line that starts in `data` begins (`Splitter::split`).
    pub(super) fresh: usize,
    /// The pipe ended here: its unfinished line is a line.
    pub(super) eof: bool,
}

impl Logs {
    pub fn new() -> Logs {
        Logs::default()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, LogStore> {
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
pub(super) fn new_source() -> u64 {
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
    pub(super) fn tell(followers: &mut Vec<Sender<LogEntry>>, stream: Stream, line: &[u8]) {
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
    pub(super) fn keep(&mut self, block: Block, spare: &mut Vec<Vec<u8>>) {
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
    pub(super) fn keep_read(
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
}
