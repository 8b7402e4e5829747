//! The writer threads, one for fd 1 and one for fd 2: the only writers of
//! corral's stdout and stderr. Each takes batches of whole lines from the
//! output thread and writes them with `writev`, so lines of two services
//! never interleave; the stderr writer also writes corral's own log lines
//! (`log`), and says how many were dropped while stderr was blocked.
//!
//! What it must never do: split a line between two writes of its own, or
//! let a closed stdout take corral down (a write error is given up on).

use std::io::IoSlice;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use tracing::warn;

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
    use std::os::fd::AsFd;

    use super::*;

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
