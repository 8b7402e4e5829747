//! The syslog thread: one poll(2) over the wake-up pipe and the socket;
//! datagrams read within the window's budget (`Budget`), each made a
//! `Record` and handed to the sink; a record the sink has no room for
//! kept and offered again after `RETRY`, the socket unread meanwhile.
//!
//! What it must never do: block on anything but poll(2) (the socket is
//! non-blocking, the receive `MSG_DONTWAIT`), read while its budget is
//! spent or a record waits, keep an fd a sender passed along, or hold more
//! than one datagram's buffer and one waiting record.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::log::warn;

use super::{Counters, Limits, MAX_MESSAGE, Peer, Record};
use crate::notify::receive::{close_passed, receive};
use crate::polling;

/// A record the sink refused is offered again after this long (the sink's
/// consumer does not tell when it has room: a short wait while it is full,
/// no wake-up otherwise).
const RETRY: Duration = Duration::from_millis(10);

/// Datagrams read per round of poll(2), so that a stop is seen soon.
const ROUND: usize = 256;

pub(super) struct Listener {
    pub(super) socket: UnixDatagram,
    /// The read end of the wake-up pipe.
    pub(super) wake: OwnedFd,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) counters: Arc<Counters>,
    pub(super) limits: Limits,
}

/// What a round of reading left to do.
#[derive(Default)]
struct Paused {
    /// A record the sink had no room for.
    waiting: Option<Record>,
    /// No reading until then: a record waits, or receive failed.
    until: Option<Instant>,
}

impl Listener {
    pub(super) fn run(self, mut sink: impl FnMut(Record) -> Result<(), Record>) {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut budget = Budget::new(self.limits, Instant::now());
        let mut paused = Paused::default();
        let mut poll_failed_at = None;
        let mut warned_at = None;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            if paused.until.is_some_and(|until| now >= until) {
                paused.until = None;
                if let Some(record) = paused.waiting.take() {
                    self.offer(&mut sink, record, now, &mut paused);
                }
            }
            let spent_until = budget.spent_until(now);
            let deadline = match (paused.until, spent_until) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let read = deadline.is_none();
            let socket = read.then(|| self.socket.as_fd());
            let Some(ready) = polling::wait(
                &self.wake,
                socket,
                std::iter::empty(),
                polling::timeout(deadline, now),
                &mut poll_failed_at,
                "syslog",
            ) else {
                continue;
            };
            if read && ready.listener && !self.stop.load(Ordering::SeqCst) {
                self.read_round(
                    &mut buf,
                    &mut budget,
                    &mut sink,
                    &mut paused,
                    &mut warned_at,
                );
            }
        }
    }

    /// Read up to `ROUND` datagrams, within the budget, until the socket is
    /// empty or the sink has no room.
    fn read_round(
        &self,
        buf: &mut [u8],
        budget: &mut Budget,
        sink: &mut impl FnMut(Record) -> Result<(), Record>,
        paused: &mut Paused,
        warned_at: &mut Option<Instant>,
    ) {
        let now = Instant::now();
        for _ in 0..ROUND {
            if budget.spent_until(now).is_some() {
                Counters::add(&self.counters.throttled);
                if polling::new_burst(warned_at) {
                    warn!(
                        messages = self.limits.messages,
                        bytes = self.limits.bytes,
                        window_ms = Limits::WINDOW.as_millis() as u64,
                        "syslog: too many messages; reading paused until the next window (senders wait)"
                    );
                }
                return;
            }
            let datagram = match receive(&self.socket, buf) {
                Ok(datagram) => datagram,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // Poll would say "readable" again at once: pause
                    // rather than spin.
                    if polling::new_burst(warned_at) {
                        warn!(%err, "syslog: receive failed");
                    }
                    paused.until = Some(now + polling::PAUSE);
                    return;
                }
            };
            // At once: corral keeps no fd it did not ask for.
            close_passed(datagram.fds);
            Counters::add(&self.counters.received);
            if datagram.truncated {
                Counters::add(&self.counters.truncated);
            }
            budget.take(datagram.len);
            let data = buf.get(..datagram.len).unwrap_or_default();
            if data.iter().all(|&b| matches!(b, b'\0' | b'\n' | b'\r')) {
                Counters::add(&self.counters.dropped);
                continue;
            }
            let peer = datagram.sender.and_then(|c| {
                Some(Peer {
                    pid: u32::try_from(c.pid).ok()?,
                    uid: c.uid,
                    gid: c.gid,
                })
            });
            let record = Record::new(data, SystemTime::now(), peer);
            if !self.offer(sink, record, now, paused) {
                return;
            }
        }
    }

    /// Hand `record` to the sink; false (and the record kept, reading
    /// paused for `RETRY`) when it has no room.
    fn offer(
        &self,
        sink: &mut impl FnMut(Record) -> Result<(), Record>,
        record: Record,
        now: Instant,
        paused: &mut Paused,
    ) -> bool {
        match sink(record) {
            Ok(()) => true,
            Err(record) => {
                Counters::add(&self.counters.refused);
                paused.waiting = Some(record);
                paused.until = Some(now + RETRY);
                false
            }
        }
    }
}

/// What may still be read in the current window of `Limits::WINDOW`.
#[derive(Debug)]
pub(super) struct Budget {
    limits: Limits,
    window_end: Instant,
    messages: u32,
    bytes: usize,
}

impl Budget {
    pub(super) fn new(limits: Limits, now: Instant) -> Budget {
        Budget {
            limits,
            window_end: now + Limits::WINDOW,
            messages: 0,
            bytes: 0,
        }
    }

    /// `None` while something may be read at `now` (a new window starts
    /// once the last one is over); else when the window ends.
    pub(super) fn spent_until(&mut self, now: Instant) -> Option<Instant> {
        if now >= self.window_end {
            *self = Budget::new(self.limits, now);
            return None;
        }
        let spent = self.messages >= self.limits.messages || self.bytes >= self.limits.bytes;
        spent.then_some(self.window_end)
    }

    /// A datagram of `len` bytes was read.
    pub(super) fn take(&mut self, len: usize) {
        self.messages = self.messages.saturating_add(1);
        self.bytes = self.bytes.saturating_add(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_of_a_window_is_messages_and_bytes() {
        let t = Instant::now();
        let limits = Limits {
            messages: 3,
            bytes: 100,
        };
        let mut budget = Budget::new(limits, t);
        let end = t + Limits::WINDOW;
        for _ in 0..3 {
            assert_eq!(budget.spent_until(t), None);
            budget.take(10);
        }
        assert_eq!(budget.spent_until(t), Some(end), "three messages");
        let just_before = end - Duration::from_micros(1);
        assert_eq!(budget.spent_until(just_before), Some(end));
        // The next window starts when the last one is over.
        assert_eq!(budget.spent_until(end), None);
        budget.take(99);
        assert_eq!(budget.spent_until(end), None);
        budget.take(1);
        assert_eq!(
            budget.spent_until(end),
            Some(end + Limits::WINDOW),
            "100 bytes"
        );
        // A long quiet time: a fresh window from then on.
        let later = end + Duration::from_secs(5);
        assert_eq!(budget.spent_until(later), None);
        budget.take(usize::MAX);
        budget.take(usize::MAX);
        assert_eq!(budget.spent_until(later), Some(later + Limits::WINDOW));
    }

    #[test]
    fn the_default_budget_is_above_the_benchmark_and_bounded() {
        let windows = (Duration::from_secs(1).as_micros() / Limits::WINDOW.as_micros()) as u64;
        let limits = Limits::default();
        assert_eq!(u64::from(limits.messages) * windows, 150_000);
        assert_eq!(limits.bytes as u64 * windows, 32_768_000);
    }
}
