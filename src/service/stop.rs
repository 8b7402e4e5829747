//! Stopping: the stop signal, SIGKILL at `stop-timeout` (or the end of the
//! shutdown budget), and restart, which is a stop followed by a start. A
//! oneshot that came up and has an s6-rc `down` is stopped by running it
//! (`down`).

use std::time::Instant;

use nix::sys::signal::Signal;
use tracing::{info, warn};

use super::{Hook, Next, Service, State, Then, Want};
use crate::event::Action;

impl Service {
    /// Want it down and stop it: the stop signal now, SIGKILL at `stop-timeout`
    /// (or at `cap`, the end of the shutdown budget, if that comes first).
    pub fn stop(&mut self, now: Instant, cap: Option<Instant>) -> Vec<Action> {
        self.want = Want::Down;
        self.stop_then(now, cap, Then::Down)
    }

    /// Stop then start again (the start happens when the exit is reaped).
    pub fn restart(&mut self, now: Instant) -> Vec<Action> {
        self.want = Want::Up;
        match self.state {
            State::Starting { .. } | State::Running { .. } | State::Reloading { .. } => {
                self.stop_then(now, None, Then::Restart)
            }
            State::Stopping { .. } => Vec::new(),
            _ => self.start(now),
        }
    }

    pub(super) fn stop_then(
        &mut self,
        now: Instant,
        cap: Option<Instant>,
        then: Then,
    ) -> Vec<Action> {
        match self.state {
            State::Starting { pid, .. }
            | State::Running { pid, .. }
            | State::Reloading { pid, .. } => {
                let mut actions = self.cancel_probe();
                if let State::Reloading {
                    hook: Hook::Running(hook),
                    ..
                } = self.state
                {
                    actions.push(Action::Signal {
                        pid: hook,
                        signal: Signal::SIGKILL,
                        group: true,
                    });
                    self.finish_reload(Err("the service was stopped during its reload".into()));
                }
                let mut kill_at = now + self.spec.stop_timeout;
                if let Some(cap) = cap {
                    kill_at = kill_at.min(cap);
                }
                info!(service = %self.spec.name, pid = pid.as_raw(), signal = self.spec.stop_signal.as_str(), "stopping service");
                self.state = State::Stopping {
                    pid,
                    kill_at,
                    killed: false,
                    then,
                };
                actions.push(self.signal(pid, self.spec.stop_signal));
                actions
            }
            State::Stopping {
                pid,
                kill_at,
                killed,
                ..
            } if then == Then::Down => {
                // Already stopping: now it stays down whatever was planned.
                self.state = State::Stopping {
                    pid,
                    kill_at: cap.map_or(kill_at, |cap| kill_at.min(cap)),
                    killed,
                    then,
                };
                Vec::new()
            }
            State::Backoff { .. } | State::Scheduled => {
                self.state = State::Stopped;
                Vec::new()
            }
            State::Exited if then == Then::Down && self.has_down_to_run() => {
                self.run_down(now, cap)
            }
            State::RunningDown {
                ref mut kill_at, ..
            } => {
                if let Some(cap) = cap {
                    *kill_at = (*kill_at).min(cap);
                }
                Vec::new()
            }
            State::Finishing { ref mut next, .. } => {
                // Its finish script still runs; then this stop's plan.
                *next = Next::Then(then);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// `stop-timeout` passed and the process is still there: SIGKILL, once.
    pub(super) fn stop_overdue(&mut self) -> Vec<Action> {
        let State::Stopping {
            pid,
            ref mut killed,
            ..
        } = self.state
        else {
            return Vec::new();
        };
        warn!(service = %self.spec.name, pid = pid.as_raw(), "stop timeout, sending SIGKILL");
        *killed = true;
        vec![self.signal(pid, Signal::SIGKILL)]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use super::*;
    use crate::event::Target;
    use crate::exit::Exit;

    #[test]
    fn stop_sends_the_stop_signal_then_sigkill_at_the_timeout() {
        let mut s = spec("web");
        s.stop_signal = Signal::SIGINT;
        s.stop_timeout = Duration::from_secs(5);
        let t = Instant::now();
        let pid = pid(100);
        let mut svc = running(s, t);
        assert_eq!(
            svc.stop(t, None),
            vec![Action::Signal {
                pid,
                signal: Signal::SIGINT,
                group: true
            }]
        );
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(5)));
        assert!(svc.tick(t + ms(4999)).is_empty());
        assert_eq!(
            svc.tick(t + Duration::from_secs(5)),
            vec![Action::Signal {
                pid,
                signal: Signal::SIGKILL,
                group: true
            }]
        );
        // SIGKILL is sent once; then only the reap is awaited.
        assert_eq!(svc.deadline(), None);
        assert!(svc.tick(t + Duration::from_secs(6)).is_empty());
        assert!(
            svc.exited(Exit::Signal(Signal::SIGKILL), t + Duration::from_secs(6))
                .is_empty()
        );
        assert_eq!(svc.state, State::Stopped);
        assert!(svc.stop_escalated());
        assert!(!svc.ended_for_good(), "stopped on request is not an end");
    }

    #[test]
    fn stop_timeout_is_capped_by_the_shutdown_budget_and_kill_group_is_honoured() {
        let mut s = spec("web");
        s.kill_group = false;
        let t = Instant::now();
        let mut svc = running(s, t);
        svc.stop(t, Some(t + ms(300)));
        assert_eq!(svc.deadline(), Some(t + ms(300)));
        assert_eq!(
            svc.tick(t + ms(300)),
            vec![Action::Signal {
                pid: pid(100),
                signal: Signal::SIGKILL,
                group: false
            }]
        );
    }

    #[test]
    fn stop_during_backoff_cancels_the_retry() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        svc.exited(Exit::Code(1), t + ms(1));
        assert!(svc.stop(t + ms(2), None).is_empty());
        assert_eq!(svc.state, State::Stopped);
        assert!(svc.tick(t + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn restart_stops_then_starts_when_the_exit_is_reaped() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        assert_eq!(svc.restart(t).len(), 1);
        assert_eq!(
            targets(&svc.exited(Exit::Signal(Signal::SIGTERM), t + ms(3))),
            vec![Target::Service(id(0))]
        );
    }

    #[test]
    fn a_stop_during_a_restart_wins_and_a_restart_during_a_stop_waits() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        svc.restart(t);
        assert!(svc.restart(t).is_empty(), "already stopping");
        // A shutdown caps the restart's SIGKILL and makes it stay down.
        assert!(svc.stop(t, Some(t + ms(50))).is_empty());
        assert_eq!(svc.deadline(), Some(t + ms(50)));
        assert!(svc.exited(Exit::Code(0), t + ms(10)).is_empty());
        assert_eq!(svc.state, State::Stopped);
    }

    #[test]
    fn a_stop_of_a_stopped_service_changes_nothing_but_the_want() {
        let t = Instant::now();
        let mut svc = super::Service::new(id(0), spec("web"));
        assert!(svc.stop(t, None).is_empty());
        assert_eq!(svc.state, State::Idle);
        assert_eq!(svc.want, Want::Down);
    }
}
