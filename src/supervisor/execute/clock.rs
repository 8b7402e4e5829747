//! The wall clock for scheduled services: `Action::Clock` answered with
//! what `calendar::consult` says at the real wall time, in the
//! container's zone (`calendar::Local`: TZ, else /etc/localtime), and the
//! next tick placed on the loop's monotonic clock as the timer's deadline.

use std::time::{Duration, Instant};

use crate::calendar::{self, Local, Schedule, Wall};
use crate::config::MAX_DURATION;
use crate::event::{Event, NextTick, ServiceId};

pub(super) fn read(
    service: ServiceId,
    schedule: &Schedule,
    pending: Option<Wall>,
    last: Option<Wall>,
) -> Event {
    let mono = Instant::now();
    let wall = calendar::wall_now();
    let reading = calendar::consult(schedule, &Local, wall, pending, last);
    Event::Clock {
        service,
        wall,
        due: reading.due,
        next: reading.next.map(|tick| NextTick {
            tick,
            at: mono
                .checked_add(millis(tick - wall))
                .or_else(|| mono.checked_add(MAX_DURATION))
                .unwrap_or(mono),
            local: calendar::rfc3339(&Local, tick),
        }),
    }
}

/// A non-negative count of ms as a duration (a negative one is zero).
fn millis(ms: Wall) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
