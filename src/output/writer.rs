//! The writer threads, one for fd 1 and one for fd 2: the only writers of
//! corral's stdout and stderr. Each takes batches of whole lines from the
//! output thread and writes them with `writev`, so lines of two services
//! never interleave; the stderr writer also writes corral's own log lines
//! (`log`), and says how many were dropped while stderr was blocked.
//!
//! A write that fails (a full disk, a closed stdout) is given up on, and
//! the writer says so (`failing`, and a warning once per episode): the
//! output thread then drops and counts the lines of that stream instead of
//! sending them (but for one now and then, `PROBE_EVERY`, which tries the
//! stream again), until a write works again.
//!
//! What it must never do: split a line between two writes of its own, or
//! let a closed stdout take corral down (a write error is given up on).

use std::io::IoSlice;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::log::warn;
use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;

use super::{HIGH_WATER, SPARE_BATCH, Stream, WRITE_BATCHES};
use crate::log::{self, Queued};
use crate::polling::Wake;

/// A writer thread: the only writer of fd 1 (or 2) in corral.
pub(super) struct Writer {
    pub(super) stream: Stream,
    pub(super) batches: Receiver<Vec<u8>>,
    /// corral's own log lines (stderr only).
    pub(super) own: Option<Receiver<Queued>>,
    pub(super) waiting: Arc<AtomicUsize>,
    pub(super) spare: Sender<Vec<u8>>,
    pub(super) wake: Arc<Wake>,
    /// The last write failed: the output thread drops this stream's lines.
    pub(super) failing: Arc<AtomicBool>,
    /// Lines lost in writes that failed (whose service is not known here).
    pub(super) lost: Arc<AtomicU64>,
}

impl Writer {
    pub(super) fn run(self) {
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
                    match write_batches(fd, &pending) {
                        Ok(()) => {
                            if self.failing.swap(false, Ordering::AcqRel) {
                                warn!(stream = self.stream.as_str(), "corral's output can be written again");
                            }
                        }
                        Err((err, lines)) => {
                            self.lost.fetch_add(lines, Ordering::Relaxed);
                            if !self.failing.swap(true, Ordering::AcqRel) {
                                warn!(
                                    stream = self.stream.as_str(),
                                    %err,
                                    "cannot write services' lines to corral's output: they are dropped (and counted) until it can"
                                );
                            }
                        }
                    }
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
        Queued::Line(line) => {
            let _ = write_batches(fd, &[line]);
        }
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
/// up on a real error (a closed stdout must not take corral down), with
/// the error and the count of lines not (wholly) written.
fn write_batches(fd: BorrowedFd<'_>, batches: &[Vec<u8>]) -> Result<(), (Errno, u64)> {
    let mut slices: Vec<IoSlice<'_>> = batches
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| IoSlice::new(b))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let err = match nix::sys::uio::writev(fd, slices) {
            Ok(0) => Errno::EIO,
            Ok(n) => {
                IoSlice::advance_slices(&mut slices, n);
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(err) => err,
        };
        let lines: usize = slices
            .iter()
            .map(|s| s.iter().filter(|&&b| b == b'\n').count())
            .sum();
        return Err((err, u64::try_from(lines).unwrap_or(u64::MAX)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn batches_are_written_whole() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let written = write_batches(
            w.as_fd(),
            &[b"a | 1\n".to_vec(), Vec::new(), b"b | 2\n".to_vec()],
        );
        assert_eq!(written, Ok(()));
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

    #[test]
    fn a_failed_write_counts_the_lines_it_lost() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let lost = write_batches(
            full.as_fd(),
            &[b"a | 1\nb | 2\n".to_vec(), b"c | 3\n".to_vec()],
        );
        assert_eq!(lost, Err((Errno::ENOSPC, 3)));
    }
}
