//! What corral's poll(2) threads share (the control socket's, the HTTP
//! endpoint's and the output thread): the wake-up pipe, since poll(2)
//! cannot wait for a channel; deadlines turned into poll timeouts; the
//! share of the fd limit a server may hold, and the spare fd that makes
//! room for one accept(2) when corral has run out of them; and one warning
//! per burst of failures.
//!
//! What it must never do: block (the pipe is non-blocking at both ends),
//! or know what the threads serve.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::PollTimeout;

/// Failures less than this apart are one burst, logged once: near a limit,
/// clients are served and refused in turn, and a warning for each would
/// flood the log.
pub const BURST: Duration = Duration::from_secs(10);

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

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use nix::poll::{PollFd, PollFlags, poll};

    use super::*;

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
    fn a_wake_is_seen_by_poll_until_drained() {
        let (read, wake) = wake_pipe().expect("pipe");
        let readable = |read: &OwnedFd| {
            let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).expect("poll") == 1
        };
        assert!(!readable(&read));
        wake.wake();
        wake.wake();
        assert!(readable(&read));
        drain(&read);
        assert!(!readable(&read));
    }
}
