//! Stopping: the `pre-stop` hook or delay, the stop signal, SIGKILL at
//! `stop-timeout` (or the end of the shutdown budget), and restart, which
//! is a stop followed by a start. A oneshot that came up and has an s6-rc
//! `down` is stopped by running it (`down`).
//!
//! A `pre-stop` runs on every stop of a running service (a stop, a
//! restart, a config change, a failed readiness or liveness check, the
//! shutdown), never after an exit of its own. It counts in the stop: the
//! SIGKILL deadline stays the stop's start + `stop-timeout` (capped by the
//! shutdown budget), the hook's or delay's end is a deadline in
//! `Stopping` no later than that (`PreStopping::until`), and the stop
//! signal goes out the moment the `pre-stop` ends, however it ends: done,
//! failed, killed at its time, or not even started.

use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Hook, Next, PreStopping, Service, State, Then, Want};
use crate::config::PreStop;
use crate::event::{Action, Job, Target};
use crate::exit::Exit;
use crate::log::{info, warn};
use crate::text::human;

/// How a `pre-stop` ended.
pub(super) enum PreStopEnd {
    /// Its hook exited.
    Exited(Exit),
    /// Its hook could not be started (why).
    NotStarted(String),
    /// Its time is up: a delay's end, or a hook still running (killed).
    TimeUp,
}

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
                self.state = State::Stopping {
                    pid,
                    kill_at,
                    killed: false,
                    then,
                    pre_stop: None,
                };
                actions.extend(self.begin_pre_stop(pid, now, kill_at));
                actions
            }
            State::Stopping {
                pid,
                kill_at,
                killed,
                pre_stop,
                ..
            } if then == Then::Down => {
                // Already stopping: now it stays down whatever was planned,
                // and its pre-stop ends by the new deadline too.
                let kill_at = cap.map_or(kill_at, |cap| kill_at.min(cap));
                self.state = State::Stopping {
                    pid,
                    kill_at,
                    killed,
                    then,
                    pre_stop: pre_stop.map(|p| PreStopping {
                        until: p.until.min(kill_at),
                        ..p
                    }),
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

    /// A stop begins: its `pre-stop` first, if it has one and there is time
    /// left for it (the hook killed, or the delay over, by `kill_at` at the
    /// latest); else the stop signal at once.
    fn begin_pre_stop(&mut self, pid: Pid, now: Instant, kill_at: Instant) -> Vec<Action> {
        let (hook, wait, job) = match &self.spec.pre_stop {
            None => return vec![self.stop_signal(pid)],
            Some(PreStop::Delay(delay)) => (Hook::None, *delay, None),
            Some(PreStop::Exec { command, timeout }) => (
                Hook::Spawning,
                timeout.unwrap_or(self.spec.stop_timeout),
                Some(Job::Hook {
                    spec: Arc::clone(&self.spec),
                    command: command.clone(),
                    main_pid: self.main_pid.unwrap_or(pid),
                }),
            ),
        };
        let until = (now + wait).min(kill_at);
        let left = until.saturating_duration_since(now);
        let what = match job {
            _ if left.is_zero() => {
                "skipped: no time left of stop-timeout or the shutdown budget".into()
            }
            Some(_) => format!("running its hook, for at most {}", human(left)),
            None => format!("waiting {} before the stop signal", human(left)),
        };
        info!(service = %self.spec.name, "pre-stop {what}");
        if left.is_zero() {
            return vec![self.stop_signal(pid)];
        }
        if let State::Stopping { pre_stop, .. } = &mut self.state {
            *pre_stop = Some(PreStopping {
                hook,
                since: now,
                until,
            });
        }
        job.map(|job| Action::Spawn {
            target: Target::PreStop(self.id),
            job,
        })
        .into_iter()
        .collect()
    }

    /// The stop signal, to the service's group (or pid, `kill-group = false`).
    fn stop_signal(&self, pid: Pid) -> Action {
        info!(service = %self.spec.name, pid = pid.as_raw(), signal = self.spec.stop_signal.as_str(), "stopping service");
        self.signal(pid, self.spec.stop_signal)
    }

    /// The pid of the `pre-stop` hook, while it runs.
    pub fn pre_stop_pid(&self) -> Option<Pid> {
        match self.state {
            State::Stopping {
                pre_stop:
                    Some(PreStopping {
                        hook: Hook::Running(pid),
                        ..
                    }),
                ..
            } => Some(pid),
            _ => None,
        }
    }

    /// The `pre-stop` hook runs. One nobody waits for any more (the
    /// service went meanwhile) is killed at once.
    pub(super) fn pre_stop_spawned(&mut self, hook_pid: Pid) -> Vec<Action> {
        if let State::Stopping {
            pre_stop: Some(PreStopping { hook, .. }),
            ..
        } = &mut self.state
            && *hook == Hook::Spawning
        {
            *hook = Hook::Running(hook_pid);
            return Vec::new();
        }
        vec![Action::Signal {
            pid: hook_pid,
            signal: Signal::SIGKILL,
            group: true,
        }]
    }

    /// The `pre-stop` hook could not be started: the stop goes on.
    pub(super) fn pre_stop_failed_to_start(&mut self, error: &str) -> Vec<Action> {
        let spawning = matches!(
            self.state,
            State::Stopping {
                pre_stop: Some(PreStopping {
                    hook: Hook::Spawning,
                    ..
                }),
                ..
            }
        );
        if !spawning {
            return Vec::new();
        }
        self.end_pre_stop(PreStopEnd::NotStarted(error.to_string()))
    }

    /// The `pre-stop` is over: the stop signal goes out now, after SIGKILL
    /// to a hook that outlived its time.
    pub(super) fn end_pre_stop(&mut self, end: PreStopEnd) -> Vec<Action> {
        let State::Stopping {
            pid,
            ref mut pre_stop,
            ..
        } = self.state
        else {
            return Vec::new();
        };
        let Some(was) = pre_stop.take() else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        let failure = match (end, was.hook) {
            (PreStopEnd::Exited(exit), _) if exit.success() => None,
            (PreStopEnd::Exited(exit), _) => Some(format!("failed ({exit})")),
            (PreStopEnd::NotStarted(error), _) => Some(format!("could not be started: {error}")),
            (PreStopEnd::TimeUp, Hook::Running(hook)) => {
                actions.push(Action::Signal {
                    pid: hook,
                    signal: Signal::SIGKILL,
                    group: true,
                });
                Some(format!("timed out after {}", human(was.until - was.since)))
            }
            // A delay that is over.
            (PreStopEnd::TimeUp, _) => None,
        };
        match failure {
            Some(why) => {
                warn!(service = %self.spec.name, "pre-stop {why}; stopping the service anyway")
            }
            None => info!(service = %self.spec.name, "pre-stop done"),
        }
        actions.push(self.stop_signal(pid));
        actions
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
    use crate::event::Child;

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

    // ---- pre-stop ----

    fn term(pid: Pid) -> Action {
        Action::Signal {
            pid,
            signal: Signal::SIGTERM,
            group: true,
        }
    }

    fn kill(pid: Pid) -> Action {
        Action::Signal {
            pid,
            signal: Signal::SIGKILL,
            group: true,
        }
    }

    /// `pre-stop = { exec = ["leave"], timeout }` and `stop-timeout = "5s"`.
    fn with_hook(timeout: Option<Duration>) -> crate::config::ServiceSpec {
        let mut s = spec("web");
        s.pre_stop = Some(PreStop::Exec {
            command: vec!["leave".into()],
            timeout,
        });
        s
    }

    #[test]
    fn the_hook_runs_first_and_the_stop_signal_follows_its_end() {
        let t = Instant::now();
        let s = with_hook(Some(Duration::from_secs(2)));
        let mut svc = running(s.clone(), t);
        assert_eq!(
            svc.stop(t, None),
            vec![Action::Spawn {
                target: Target::PreStop(id(0)),
                job: Job::Hook {
                    spec: Arc::new(s),
                    command: vec!["leave".into()],
                    main_pid: pid(100),
                },
            }],
            "no stop signal yet"
        );
        assert_eq!(svc.state.name(), "stopping");
        assert!(svc.on_spawned(Child::PreStop, pid(200), t).is_empty());
        assert_eq!(svc.pre_stop_pid(), Some(pid(200)));
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(2)));
        assert!(svc.tick(t + ms(1999)).is_empty());
        assert_eq!(
            svc.reaped(Child::PreStop, pid(200), Exit::Code(0), t + ms(500)),
            Some(vec![term(pid(100))])
        );
        // The SIGKILL deadline is the stop's own: its start + stop-timeout.
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(5)));
        assert_eq!(svc.tick(t + Duration::from_secs(5)), vec![kill(pid(100))]);
    }

    #[test]
    fn a_hanging_hook_is_killed_at_its_timeout_and_the_stop_goes_on() {
        let t = Instant::now();
        let mut svc = running(with_hook(Some(Duration::from_secs(2))), t);
        svc.stop(t, None);
        svc.on_spawned(Child::PreStop, pid(200), t);
        assert_eq!(
            svc.tick(t + Duration::from_secs(2)),
            vec![kill(pid(200)), term(pid(100))]
        );
        assert_eq!(svc.pre_stop_pid(), None);
        assert_eq!(
            svc.reaped(
                Child::PreStop,
                pid(200),
                Exit::Signal(Signal::SIGKILL),
                t + Duration::from_secs(2)
            ),
            None,
            "the killed hook is no longer awaited"
        );
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(5)));
        assert!(
            svc.exited(Exit::Signal(Signal::SIGTERM), t + Duration::from_secs(3))
                .is_empty()
        );
        assert_eq!(svc.state, State::Stopped);
        assert!(!svc.stop_escalated());
    }

    #[test]
    fn without_a_timeout_the_hook_has_the_whole_stop_timeout() {
        let t = Instant::now();
        let mut svc = running(with_hook(None), t);
        svc.stop(t, None);
        svc.on_spawned(Child::PreStop, pid(200), t);
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(5)));
        // Its end is the stop's end: the hook, the stop signal and SIGKILL at once.
        assert_eq!(
            svc.tick(t + Duration::from_secs(5)),
            vec![kill(pid(200)), term(pid(100)), kill(pid(100))]
        );
        assert_eq!(svc.deadline(), None);
    }

    #[test]
    fn a_failing_or_unstartable_hook_lets_the_stop_go_on_at_once() {
        let t = Instant::now();
        let mut svc = running(with_hook(None), t);
        svc.stop(t, None);
        svc.on_spawned(Child::PreStop, pid(200), t);
        assert_eq!(
            svc.reaped(Child::PreStop, pid(200), Exit::Code(1), t + ms(10)),
            Some(vec![term(pid(100))])
        );

        let mut svc = running(with_hook(None), t);
        svc.stop(t, None);
        assert_eq!(
            svc.on_spawn_failed(Child::PreStop, "No such file or directory", 127, t),
            vec![term(pid(100))]
        );
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(5)));
        // A late failure report changes nothing.
        assert!(
            svc.on_spawn_failed(Child::PreStop, "again", 127, t)
                .is_empty()
        );
    }

    #[test]
    fn a_delay_holds_the_stop_signal_back_without_a_process() {
        let t = Instant::now();
        let mut s = spec("web");
        s.pre_stop = Some(PreStop::Delay(Duration::from_secs(2)));
        let mut svc = running(s, t);
        assert!(svc.stop(t, None).is_empty());
        assert_eq!(svc.state.name(), "stopping");
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(2)));
        assert!(svc.tick(t + ms(1999)).is_empty());
        assert_eq!(svc.tick(t + Duration::from_secs(2)), vec![term(pid(100))]);
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(5)));
    }

    #[test]
    fn the_service_exiting_during_its_pre_stop_ends_the_hook() {
        let t = Instant::now();
        let mut svc = running(with_hook(None), t);
        svc.stop(t, None);
        svc.on_spawned(Child::PreStop, pid(200), t);
        assert_eq!(
            svc.reaped(Child::Service, pid(100), Exit::Code(0), t + ms(10)),
            Some(vec![kill(pid(200))])
        );
        assert_eq!(svc.state, State::Stopped);
        // A hook whose spawn comes back after the service went is killed.
        let mut svc = running(with_hook(None), t);
        svc.stop(t, None);
        svc.exited(Exit::Code(0), t);
        assert_eq!(
            svc.on_spawned(Child::PreStop, pid(201), t),
            vec![kill(pid(201))]
        );
    }

    #[test]
    fn pre_stop_runs_on_a_restart_and_on_a_failed_start_but_not_after_an_exit() {
        let t = Instant::now();
        let mut svc = running(with_hook(None), t);
        assert_eq!(targets(&svc.restart(t)), vec![Target::PreStop(id(0))]);
        svc.on_spawned(Child::PreStop, pid(200), t);
        svc.reaped(Child::PreStop, pid(200), Exit::Code(0), t);
        assert_eq!(
            targets(&svc.exited(Exit::Signal(Signal::SIGTERM), t + ms(5))),
            vec![Target::Service(id(0))],
            "then it starts again"
        );

        let mut s = with_hook(None);
        s.ready = Some(crate::config::Ready::Notify);
        s.ready_timeout = Duration::from_secs(1);
        let mut svc = Service::new(id(0), s);
        svc.start(t);
        svc.spawned(pid(100), t);
        assert_eq!(
            targets(&svc.tick(t + Duration::from_secs(1))),
            vec![Target::PreStop(id(0))],
            "not ready in time: a stop like any other"
        );

        let mut svc = running(with_hook(None), t);
        assert!(
            targets(&svc.exited(Exit::Code(1), t)).is_empty(),
            "an exit of its own has nothing to prepare"
        );
    }

    #[test]
    fn pre_stop_fits_the_shutdown_budget() {
        let t = Instant::now();
        let mut svc = running(with_hook(None), t);
        svc.stop(t, Some(t + ms(300)));
        svc.on_spawned(Child::PreStop, pid(200), t);
        assert_eq!(svc.deadline(), Some(t + ms(300)));
        // A ctl stop under way, then the shutdown caps it.
        let mut svc = running(with_hook(Some(Duration::from_secs(2))), t);
        svc.restart(t);
        svc.on_spawned(Child::PreStop, pid(200), t);
        assert!(svc.stop(t, Some(t + ms(100))).is_empty());
        assert_eq!(svc.deadline(), Some(t + ms(100)));
        assert_eq!(
            svc.tick(t + ms(100)),
            vec![kill(pid(200)), term(pid(100)), kill(pid(100))]
        );
        // No time left at all: no hook, the stop signal at once.
        let mut svc = running(with_hook(None), t);
        assert_eq!(svc.stop(t + ms(5), Some(t)), vec![term(pid(100))]);
    }
}
