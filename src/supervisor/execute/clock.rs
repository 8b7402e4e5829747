//! The wall clock for scheduled services: `Action::Clock` answered with
//! what `calendar::consult` says at the real wall time, in the
//! container's zone (`chrono::Local`: TZ, else /etc/localtime), and the
//! next tick placed on the loop's monotonic clock as the timer's deadline.

use std::time::{Duration, Instant};

use chrono::Local;
use tracing::{info, warn};

use crate::calendar::{self, Schedule, Wall};
use crate::config::MAX_DURATION;
use crate::event::{Event, NextTick, ServiceId};
use crate::text::human;

/// A tick taken later than this after its wall time is logged as late:
/// the machine was suspended, or the wall clock jumped forward.
const LATE: Wall = 1000;

pub(super) fn read(
    service: ServiceId,
    schedule: &Schedule,
    pending: Option<Wall>,
    last: Option<Wall>,
) -> Event {
    let mono = Instant::now();
    let wall = calendar::wall_now();
    let reading = calendar::consult(schedule, &Local, wall, pending, last);
    match (pending, reading.due) {
        (Some(tick), Some(_)) if wall - tick > LATE => {
            warn!(%service, late = %human(millis(wall - tick)), "tick taken late (the wall clock jumped or the machine was suspended); ticks missed meanwhile are not made up");
        }
        (Some(tick), None) => {
            info!(%service, early = %human(millis(tick - wall)), "the wall clock is behind the tick its timer waited for (it was set back): waiting for it");
        }
        _ => {}
    }
    Event::Clock {
        service,
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
