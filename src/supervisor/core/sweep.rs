//! Whether a condition holds of every one of many things (services, the
//! services a request names), without asking each of them after every
//! event: the work per event stays proportional to what changed (issue 16).

use crate::event::ServiceId;

/// A cursor over positions `0..len` that only moves forward, past those
/// the condition holds of; the positions behind it that changed since
/// (`changed`), asked again; and, once the cursor is at the end, one check
/// of every position, so that the answer is exact even for a condition
/// that moves with things nobody said changed (`settled` follows
/// dependencies that failed; a request's services are not told).
#[derive(Debug, Default, Clone)]
pub(super) struct Sweep {
    next: usize,
    behind: Vec<usize>,
}

impl Sweep {
    /// The services `ids` changed (positions are ids): those behind the
    /// cursor are asked again.
    pub(super) fn changed(&mut self, ids: &[ServiceId]) {
        let next = self.next;
        let behind = ids.iter().map(|id| id.index()).filter(|&i| i < next);
        self.behind.extend(behind);
    }

    /// Whether `holds` of every one of positions `0..len`.
    pub(super) fn holds(&mut self, len: usize, holds: impl Fn(usize) -> bool) -> bool {
        crate::sort::sort(&mut self.behind);
        self.behind.dedup();
        self.behind.retain(|&i| !holds(i));
        if !self.behind.is_empty() {
            return false;
        }
        while self.next < len && holds(self.next) {
            self.next += 1;
        }
        if self.next < len {
            return false;
        }
        match (0..len).find(|&i| !holds(i)) {
            Some(i) => {
                self.behind.push(i);
                false
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn the_cursor_moves_forward_and_the_end_checks_everything_once() {
        let ok = [Cell::new(true), Cell::new(false), Cell::new(true)];
        let asked = Cell::new(0);
        let holds = |i: usize| {
            asked.set(asked.get() + 1);
            ok.get(i).is_some_and(Cell::get)
        };
        let mut sweep = Sweep::default();
        assert!(!sweep.holds(3, holds));
        assert_eq!(
            asked.replace(0),
            2,
            "stopped at the first that does not hold"
        );
        assert!(!sweep.holds(3, holds));
        assert_eq!(asked.replace(0), 1);
        ok[1].set(true);
        // 0 changed behind the cursor, and no longer holds.
        ok[0].set(false);
        sweep.changed(&[ServiceId::from_index(0)]);
        assert!(!sweep.holds(3, holds));
        assert_eq!(asked.replace(0), 1, "only the one behind");
        ok[0].set(true);
        assert!(sweep.holds(3, holds));
        // 0 again, 1 and 2, then all three at the end.
        assert_eq!(asked.replace(0), 6);
    }

    #[test]
    fn a_change_nobody_told_is_caught_by_the_check_at_the_end() {
        let ok = [Cell::new(true), Cell::new(true)];
        let holds = |i: usize| ok.get(i).is_some_and(Cell::get);
        let mut sweep = Sweep::default();
        ok[1].set(false);
        assert!(!sweep.holds(2, holds));
        ok[1].set(true);
        ok[0].set(false);
        assert!(!sweep.holds(2, holds), "0 changed untold");
        ok[0].set(true);
        assert!(sweep.holds(2, holds));
    }
}
