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

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::{LogArgs, LogFormat, LogLevel};

/// corral's own lines that may wait for stderr; more are dropped (counted).
pub const BACKLOG: usize = 1024;

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

/// Hand one formatted line on, never blocking while the queue is in use.
fn send(line: Vec<u8>) {
    if DIRECT.with(|d| d.get()) {
        write_stderr(&line);
        return;
    }
    let mut slot = queue();
    let Some(tx) = slot.as_ref() else {
        drop(slot);
        write_stderr(&line);
        return;
    };
    match tx.try_send(Queued::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
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

/// The `MakeWriter` of the subscriber: one `LineWriter` per event.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter(Vec::new())
    }
}

/// Collects one event's text (tracing-subscriber writes it with one
/// `write_all`) and hands it on whole when dropped.
struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            send(std::mem::take(&mut self.0));
        }
    }
}

/// Install the subscriber. Keep the returned `Flush` until corral exits.
pub fn init(args: &LogArgs) -> Flush {
    let level = match args.log_level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Off => LevelFilter::OFF,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(Stderr)
        .with_max_level(level)
        .with_target(false);
    // try_init: a second initialisation (tests) is not an error worth dying for.
    let _ = match args.log_format {
        // Container runtimes timestamp each line already.
        LogFormat::Text => builder
            .without_time()
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Flush
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test that touches the global queue (tests run in parallel).
    #[test]
    fn lines_are_queued_whole_dropped_when_full_and_flushed() {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Stderr)
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let rx = attach();
            take_dropped();
            tracing::info!(service = "web", "service started");
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
                tracing::warn!(i, "busy");
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
        });
    }
}
