//! What corral's poll(2) threads share (the control socket's, the HTTP
//! endpoint's and the output thread): the wake-up pipe, since poll(2)
//! cannot wait for a channel; one round of poll(2) over it, a listener and
//! the connections (`wait`); deadlines turned into poll timeouts; the
//! share of the fd limit a server may hold, and the spare fd that makes
//! room for one accept(2) when corral has run out of them; and one warning
//! per burst of failures.
//!
//! The threads that watch one fd per service (output, notify) use an
//! epoll(7) set instead (`Epoll`), so that a wake-up costs what is ready,
//! not every fd: each fd is registered once under a stable key (`Slab`:
//! a slot and its generation, so a key of a removed fd never finds the
//! fd that took its slot).
//!
//! What it must never do: block (the pipe is non-blocking at both ends),
//! or know what the threads serve.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::log::warn;

/// Failures less than this apart are one burst, logged once: near a limit,
/// clients are served and refused in turn, and a warning for each would
/// flood the log.
pub const BURST: Duration = Duration::from_secs(10);

/// How long a poll thread pauses when poll(2) fails (ENOMEM), rather than
/// spin on the failure.
pub const PAUSE: Duration = Duration::from_millis(100);

/// A wake-up pipe, close-on-exec and non-blocking at both ends: the read
/// end, polled for `POLLIN` and emptied with `drain`, and the `Wake`.
pub fn wake_pipe() -> io::Result<(OwnedFd, Wake)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    Ok((read, Wake(write)))
}

/// The write end of a poll thread's wake-up pipe.
#[derive(Debug)]
pub struct Wake(OwnedFd);

impl Wake {
    pub fn wake(&self) {
        // Non-blocking: a full pipe already guarantees a wake-up.
        let _ = nix::unistd::write(&self.0, &[1]);
    }
}

/// Read the wake-up pipe empty, so that the next poll(2) waits again.
pub fn drain(read: &OwnedFd) {
    let mut sink = [0u8; 64];
    while matches!(nix::unistd::read(read, &mut sink), Ok(n) if n > 0) {}
}

/// The poll(2) timeout that ends at `deadline` (none: wait for an event).
/// Rounded up to the millisecond: waking a little early would spin until
/// then.
pub fn timeout(deadline: Option<Instant>, now: Instant) -> PollTimeout {
    deadline.map_or(PollTimeout::NONE, |at| {
        let ms = at
            .saturating_duration_since(now)
            .as_nanos()
            .div_ceil(1_000_000);
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
    })
}

/// What one `wait` found.
#[derive(Debug)]
pub struct Ready {
    /// The wake-up pipe was written (it is drained already).
    pub woken: bool,
    /// The listener has a connection waiting (or an error to report).
    pub listener: bool,
    /// Each connection's `revents`, by token, in the order given.
    pub conns: Vec<(u64, PollFlags)>,
}

/// One poll(2) over the wake-up pipe `wake` (drained once written), the
/// `listener` when given, and each connection `(token, fd, events)`, until
/// `timeout`. `None`: go round again, because a signal interrupted the wait
/// (EINTR) or poll(2) failed (ENOMEM), which is logged once per burst (in
/// `failed_at`, as `"{thread}: poll failed"`) and paused on (`PAUSE`).
pub fn wait<'a>(
    wake: &OwnedFd,
    listener: Option<BorrowedFd<'a>>,
    conns: impl IntoIterator<Item = (u64, BorrowedFd<'a>, PollFlags)>,
    timeout: PollTimeout,
    failed_at: &mut Option<Instant>,
    thread: &str,
) -> Option<Ready> {
    let mut tokens = Vec::new();
    let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
    fds.extend(listener.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
    for (token, fd, events) in conns {
        tokens.push(token);
        fds.push(PollFd::new(fd, events));
    }
    match poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(Errno::EINTR) => return None,
        Err(err) => {
            if new_burst(failed_at) {
                warn!(%err, "{thread}: poll failed");
            }
            thread::sleep(PAUSE);
            return None;
        }
    }
    let mut revents = fds
        .iter()
        .map(|fd| fd.revents().unwrap_or(PollFlags::empty()));
    let woken = revents.next().is_some_and(|r| !r.is_empty());
    let listener = listener.is_some() && revents.next().is_some_and(|r| !r.is_empty());
    let conns = tokens.into_iter().zip(revents).collect();
    if woken {
        drain(wake);
    }
    Some(Ready {
        woken,
        listener,
        conns,
    })
}

/// Whether something now starts a new burst (`last` is the one before);
/// records it in `last` either way.
pub fn new_burst(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    let new = last.is_none_or(|at| now.saturating_duration_since(at) >= BURST);
    *last = Some(now);
    new
}

/// corral's soft RLIMIT_NOFILE (getrlimit(2)); `u64::MAX` when unlimited.
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively
    // borrowed `limit`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur)
}

/// The connections a server may hold: `1/divisor` of the fds corral may
/// open (`soft_limit`; unknown: the common default of 1024), at least 1
/// and at most `max`. Children inherit corral's limits, so corral does not
/// raise its own.
pub fn share_of_fds(soft_limit: Option<u64>, divisor: u64, max: usize) -> usize {
    let share = soft_limit.unwrap_or(1024) / divisor.max(1);
    usize::try_from(share).unwrap_or(usize::MAX).clamp(1, max)
}

/// A spare fd, closed to make room for one accept(2) when corral has run
/// out of fds.
pub fn spare_fd() -> Option<File> {
    // std opens with O_CLOEXEC.
    File::open("/dev/null").ok()
}

/// An epoll(7) set, close-on-exec. Level-triggered: an fd that is still
/// ready after a wait is reported again by the next one, after the others
/// that are ready (the kernel puts it at the end of its ready list), so
/// fds are served in turn when more are ready than one wait returns.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

/// Ready for reading (`EPOLLIN`). Hang-ups and errors (`EPOLLHUP`,
/// `EPOLLERR`) are reported whatever an fd is registered for.
pub const READABLE: u32 = libc::EPOLLIN as u32;
/// Every writer has closed the pipe, or an error is pending.
pub const HUNG_UP: u32 = (libc::EPOLLHUP | libc::EPOLLERR) as u32;

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointer; the fd it returns is new
        // and ours alone.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a valid, open fd nobody else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watch `fd` for `events` (`READABLE`, or 0 for hang-ups only),
    /// reported with `key`.
    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, key: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, key)
    }

    /// Stop watching `fd` (closing it does too, unless another fd refers
    /// to the same open file).
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, events: u32, key: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: key };
        // SAFETY: both fds are open (borrowed); `event` is a valid
        // epoll_event the call only reads (ignored by EPOLL_CTL_DEL).
        let rc = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd.as_raw_fd(), &raw mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `timeout` for ready fds: at most `events`' capacity of
    /// them are then in `events`.
    pub fn wait(&self, events: &mut Events, timeout: PollTimeout) -> nix::Result<usize> {
        events.len = 0;
        let max = libc::c_int::try_from(events.buf.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `buf` holds `max` initialised epoll_events the kernel may
        // overwrite; it writes at most `max` of them.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.buf.as_mut_ptr(),
                max,
                i32::from(timeout),
            )
        };
        let n = usize::try_from(Errno::result(n)?).unwrap_or(0);
        events.len = n.min(events.buf.len());
        Ok(events.len)
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// What one `Epoll::wait` found: `(key, events)` of each ready fd.
#[derive(Default)]
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// Room for `max` ready fds per wait (at least 1).
    pub fn with_capacity(max: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; max.max(1)],
            len: 0,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.buf
            .iter()
            .take(self.len)
            .map(|event| (event.u64, event.events))
    }
}

/// Values under stable keys: a key is its slot and the slot's generation,
/// which each removal advances, so a key that outlived its value (an event
/// read before the fd was removed) finds nothing, never the value that took
/// its slot. Slots are reused: no allocation once the table has grown.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Empty slots, the last freed first.
    free: Vec<u32>,
    len: usize,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Keep `value`; its key (never `u64::MAX`, free for a caller's own use).
    pub fn insert(&mut self, value: T) -> u64 {
        self.len += 1;
        if let Some(index) = self.free.pop()
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            slot.value = Some(value);
            return key(slot.generation, index);
        }
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX - 1);
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        key(0, index)
    }

    pub fn get(&self, key: u64) -> Option<&T> {
        let (generation, index) = split(key);
        self.slots
            .get(index as usize)
            .filter(|slot| slot.generation == generation)
            .and_then(|slot| slot.value.as_ref())
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        let (generation, index) = split(key);
        self.slots
            .get_mut(index as usize)
            .filter(|slot| slot.generation == generation)
            .and_then(|slot| slot.value.as_mut())
    }

    /// Take the value out: its key is dead from now on.
    pub fn remove(&mut self, key: u64) -> Option<T> {
        let (generation, index) = split(key);
        let slot = self
            .slots
            .get_mut(index as usize)
            .filter(|slot| slot.generation == generation)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn key(generation: u32, index: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_key_never_finds_the_value_in_its_slot() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None, "removed once");
        let c = slab.insert("c");
        assert_ne!(c, a, "the slot is reused under a new key");
        assert_eq!(slab.get(a), None, "the old key is dead");
        assert_eq!(slab.get_mut(a), None);
        assert_eq!(slab.remove(a), None, "and removes nothing");
        assert_eq!((slab.get(b), slab.get(c)), (Some(&"b"), Some(&"c")));
        assert_eq!(slab.len(), 2);
        for key in [b, c] {
            slab.remove(key);
        }
        assert!(slab.is_empty());
        assert_eq!(slab.slots.len(), 2, "no slot more than ever held at once");
    }

    #[test]
    fn an_epoll_set_reports_ready_fds_by_key_and_forgets_deleted_ones() {
        let epoll = Epoll::new().expect("epoll");
        let (a, a_w) = wake_pipe().expect("pipe");
        let (b, b_w) = wake_pipe().expect("pipe");
        epoll.add(a.as_fd(), READABLE, 1).expect("add a");
        epoll.add(b.as_fd(), 0, 2).expect("add b");
        let mut events = Events::with_capacity(8);
        assert_eq!(epoll.wait(&mut events, PollTimeout::ZERO), Ok(0));
        a_w.wake();
        b_w.wake();
        assert_eq!(epoll.wait(&mut events, PollTimeout::ZERO), Ok(1));
        assert_eq!(events.iter().collect::<Vec<_>>(), [(1, READABLE)]);
        // Watched for hang-ups only: b is reported once its writer is gone.
        drop(b_w);
        epoll.wait(&mut events, PollTimeout::ZERO).expect("wait");
        let mut got: Vec<_> = events.iter().collect();
        crate::sort::sort(&mut got);
        assert_eq!(got, [(1, READABLE), (2, libc::EPOLLHUP as u32)]);
        epoll.delete(b.as_fd()).expect("delete b");
        drain(&a);
        assert_eq!(epoll.wait(&mut events, PollTimeout::ZERO), Ok(0));
    }

    #[test]
    fn refusals_close_together_are_one_burst() {
        let mut last = None;
        assert!(new_burst(&mut last), "the first one starts a burst");
        assert!(!new_burst(&mut last));
        assert!(!new_burst(&mut last));
        let long_ago = Instant::now()
            .checked_sub(BURST + Duration::from_secs(1))
            .expect("an instant 11 s ago");
        last = Some(long_ago);
        assert!(new_burst(&mut last), "after a quiet BURST, a new one");
    }

    #[test]
    fn timeouts_round_up_to_the_millisecond() {
        let now = Instant::now();
        assert_eq!(timeout(None, now), PollTimeout::NONE);
        assert_eq!(timeout(Some(now), now), PollTimeout::ZERO);
        let soon = now + Duration::from_micros(1500);
        assert_eq!(timeout(Some(soon), now), PollTimeout::from(2u8));
        assert_eq!(timeout(Some(now), soon), PollTimeout::ZERO);
        let far = now + Duration::from_secs(100 * 24 * 3600);
        assert_eq!(timeout(Some(far), now), PollTimeout::MAX);
    }

    #[test]
    fn a_share_of_the_fds_is_at_least_one() {
        assert_eq!(share_of_fds(Some(1024), 4, 2048), 256);
        assert_eq!(share_of_fds(None, 2, 1024), 512);
        assert_eq!(share_of_fds(Some(0), 2, 1024), 1);
        assert_eq!(share_of_fds(Some(u64::MAX), 2, 1024), 1024);
    }

    #[test]
    fn a_wait_reports_the_wake_the_listener_and_each_connection() {
        let (read, wake) = wake_pipe().expect("pipe");
        let (listener, _listener_w) = wake_pipe().expect("pipe");
        let (conn, conn_w) = wake_pipe().expect("pipe");
        let mut failed_at = None;
        let mut round = || {
            let conns = [(7, conn.as_fd(), PollFlags::POLLIN)];
            wait(
                &read,
                Some(listener.as_fd()),
                conns,
                PollTimeout::ZERO,
                &mut failed_at,
                "test",
            )
            .expect("a round")
        };
        let quiet = round();
        assert!(!quiet.woken && !quiet.listener, "{quiet:?}");
        assert_eq!(quiet.conns, [(7, PollFlags::empty())]);
        wake.wake();
        wake.wake();
        conn_w.wake();
        let busy = round();
        assert!(busy.woken && !busy.listener, "{busy:?}");
        assert_eq!(busy.conns, [(7, PollFlags::POLLIN)]);
        // The wake-up pipe was drained; the connection was not.
        let again = round();
        assert!(!again.woken, "{again:?}");
        assert_eq!(again.conns, [(7, PollFlags::POLLIN)]);
        assert_eq!(failed_at, None);
    }
}
