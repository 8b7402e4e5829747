//! The warnings for dropped datagrams, rate-limited per service: the first
//! drop is logged, the next ones in a `QUIET_PERIOD` only counted, and the
//! count logged when the period is over, so a flood of forged datagrams
//! costs one log line per service per period.
//!
//! What it must never do: read the clock (the caller passes `now`), or let
//! a flood log more than one line per service per period.

use std::time::{Duration, Instant};

use crate::log::warn;

use super::message::Refusal;

/// After a dropped datagram is logged, the next ones of that service are
/// only counted for this long; then the count is logged. A flood costs one
/// log line per service per period.
const QUIET_PERIOD: Duration = Duration::from_secs(10);

/// One dropped datagram, as the warning names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dropped {
    pub(super) pid: Option<i32>,
    pub(super) uid: Option<u32>,
    pub(super) why: Refusal,
}

/// Dropped datagrams of one service, for warnings that a flood cannot
/// multiply: the first drop is logged, those in the `QUIET_PERIOD` after
/// it only counted, and the count logged when the period is over (the
/// thread's poll wakes up for it). Kept across runs, so restarts do not
/// reset it.
#[derive(Debug, Default)]
pub(super) struct Drops {
    /// Until then, drops are counted, not logged.
    quiet_until: Option<Instant>,
    /// Counted since the last warning, and the last of them.
    count: u64,
    last: Option<Dropped>,
}

impl Drops {
    /// A datagram was dropped at `now`: `Some` if it is to be logged now.
    /// Call `report_due` first, so an overdue count is logged before.
    pub(super) fn record(&mut self, dropped: Dropped, now: Instant) -> Option<Dropped> {
        if self.quiet_until.is_some_and(|until| now < until) {
            self.count += 1;
            self.last = Some(dropped);
            return None;
        }
        self.quiet_until = Some(now + QUIET_PERIOD);
        Some(dropped)
    }

    /// When the count is to be logged, if anything is counted.
    pub(super) fn report_at(&self) -> Option<Instant> {
        self.quiet_until.filter(|_| self.count > 0)
    }

    /// The count and the last one counted, if they are due at `now` (then
    /// a new quiet period starts).
    pub(super) fn report_due(&mut self, now: Instant) -> Option<(u64, Dropped)> {
        if self.report_at().is_none_or(|at| now < at) {
            return None;
        }
        self.quiet_until = Some(now + QUIET_PERIOD);
        self.take()
    }

    /// The count and the last one counted, due or not (the service's
    /// registration ends).
    pub(super) fn take(&mut self) -> Option<(u64, Dropped)> {
        let count = std::mem::take(&mut self.count);
        let last = self.last.take()?;
        (count > 0).then_some((count, last))
    }
}

pub(super) fn warn_dropped(service: &str, dropped: &Dropped) {
    warn!(
        service = %service,
        pid = dropped.pid,
        uid = dropped.uid,
        reason = %dropped.why,
        "notify datagram dropped; more are counted for {}s",
        QUIET_PERIOD.as_secs()
    );
}

pub(super) fn warn_counted(service: &str, (count, last): (u64, Dropped)) {
    warn!(
        service = %service,
        dropped = count,
        pid = last.pid,
        uid = last.uid,
        reason = %last.why,
        "more notify datagrams dropped (the last one's sender and reason)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_drops_is_one_warning_per_quiet_period() {
        let t = Instant::now();
        let d = |pid| Dropped {
            pid: Some(pid),
            uid: Some(65534),
            why: Refusal::Outside,
        };
        let mut drops = Drops::default();
        assert_eq!(drops.report_at(), None, "nothing to report: no wake-up");
        assert_eq!(drops.record(d(1), t), Some(d(1)), "the first is logged");
        assert_eq!(drops.report_at(), None, "nothing counted yet");
        let mut logged = 0;
        for i in 0..10_000u32 {
            let now = t + Duration::from_micros(u64::from(i) * 100); // 1 s in all
            logged += usize::from(drops.report_due(now).is_some());
            logged += usize::from(drops.record(d(2), now).is_some());
        }
        assert_eq!(logged, 0, "the rest of the flood is counted");
        assert_eq!(drops.report_at(), Some(t + QUIET_PERIOD));
        assert_eq!(
            drops.report_due(t + QUIET_PERIOD - Duration::from_millis(1)),
            None
        );
        assert_eq!(drops.report_due(t + QUIET_PERIOD), Some((10_000, d(2))));
        assert_eq!(drops.report_due(t + QUIET_PERIOD), None, "reported once");
        // Drops right after the report are counted for the next period.
        assert_eq!(drops.record(d(3), t + QUIET_PERIOD), None);
        assert_eq!(drops.report_at(), Some(t + QUIET_PERIOD + QUIET_PERIOD));
        // Long quiet: the count is still due, and the next drop logged.
        let later = t + QUIET_PERIOD * 5;
        assert_eq!(drops.report_due(later), Some((1, d(3))));
        assert_eq!(drops.record(d(4), later), None, "a new period began");
        assert_eq!(drops.take(), Some((1, d(4))));
        assert_eq!(drops.take(), None);
        assert_eq!(drops.record(d(5), later + QUIET_PERIOD), Some(d(5)));
    }
}
