//! After an exit: the s6 `finish` script, then what the stop planned or
//! what the restart policy says (restart with backoff, stay down, fail).

use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{FINISH_NO_RESTART, Hook, Next, PreStopping, Service, State, Then, Want};
use crate::config::Restart;
use crate::event::{Action, Job, Target};
use crate::exit::Exit;
use crate::log::{info, warn};
use crate::text::human;

impl Service {
    /// The service's pid was reaped.
    pub(super) fn exited(&mut self, exit: Exit, now: Instant) -> Vec<Action> {
        self.last_exit = Some(exit);
        self.down_at = Some(now);
        self.note_run(exit, now);
        let mut actions = self.cancel_probe();
        let next = match std::mem::replace(&mut self.state, State::Idle) {
            State::Stopping {
                killed,
                then,
                pre_stop,
                ..
            } => {
                if let Some(PreStopping {
                    hook: Hook::Running(hook),
                    ..
                }) = pre_stop
                {
                    // The service went first: its pre-stop has nothing left to prepare.
                    actions.push(Action::Signal {
                        pid: hook,
                        signal: Signal::SIGKILL,
                        group: true,
                    });
                }
                info!(service = %self.spec.name, %exit, killed, "service stopped");
                self.stop_escalated = killed;
                Next::Then(then)
            }
            State::Starting { since, .. } | State::Running { since, .. } => {
                if now.saturating_duration_since(since) >= self.spec.restart_delay_max {
                    // It stayed up long enough: this is a fresh failure, not one more in a row.
                    self.failures = 0;
                }
                Next::AfterExit
            }
            State::Reloading { since, hook, .. } => {
                if let Hook::Running(pid) = hook {
                    // The service is gone: its reload hook has nothing left to do.
                    actions.push(Action::Signal {
                        pid,
                        signal: Signal::SIGKILL,
                        group: true,
                    });
                }
                self.finish_reload(Err(format!(
                    "the service exited during its reload ({exit})"
                )));
                if now.saturating_duration_since(since) >= self.spec.restart_delay_max {
                    self.failures = 0;
                }
                Next::AfterExit
            }
            // Not ours any more (a late reap after a state change): nothing to do.
            other => {
                self.state = other;
                return actions;
            }
        };
        if let Some(script) = &self.spec.finish {
            let job = Job::FinishScript {
                spec: Arc::clone(&self.spec),
                script: script.clone(),
                exit,
            };
            self.state = State::Finishing {
                exit,
                script: Hook::Spawning,
                kill_at: now + self.spec.finish_timeout,
                killed: false,
                next,
            };
            actions.push(Action::Spawn {
                target: Target::FinishScript(self.id),
                job,
            });
            return actions;
        }
        actions.extend(self.proceed(next, exit, now));
        actions
    }

    /// After an exit (and its `finish` script): stop, restart, back off, or
    /// what the restart policy says.
    fn proceed(&mut self, next: Next, exit: Exit, now: Instant) -> Vec<Action> {
        match next {
            Next::Then(Then::Down) => {
                self.state = State::Stopped;
                Vec::new()
            }
            Next::Then(Then::Restart) if self.want == Want::Up => {
                self.failures = 0;
                self.begin()
            }
            Next::Then(Then::Backoff(why)) if self.want == Want::Up => {
                // Not ready in time: corral ended it, so no code of its own.
                self.note_up_failure(why.clone(), 1);
                self.failures += 1;
                self.schedule_restart(now, why)
            }
            Next::Then(_) => {
                self.state = State::Stopped;
                Vec::new()
            }
            Next::AfterExit if self.is_scheduled() => self.run_ended(Ok(exit), now),
            Next::AfterExit => self.after_exit(exit, now),
        }
    }

    /// The pid of the s6 `finish` script, while it runs.
    pub fn finish_pid(&self) -> Option<Pid> {
        match self.state {
            State::Finishing {
                script: Hook::Running(pid),
                ..
            } => Some(pid),
            _ => None,
        }
    }

    pub(super) fn finish_spawned(&mut self, script_pid: Pid) {
        if let State::Finishing { script, .. } = &mut self.state {
            *script = Hook::Running(script_pid);
        }
    }

    pub(super) fn finish_failed_to_start(&mut self, error: &str, now: Instant) -> Vec<Action> {
        warn!(service = %self.spec.name, %error, "finish script could not be started");
        self.finish_exited(None, now)
    }

    /// The `finish` script ended (`None`: it could not be started). Exit 125
    /// means the service is not to be restarted.
    pub(super) fn finish_exited(&mut self, result: Option<Exit>, now: Instant) -> Vec<Action> {
        let State::Finishing { exit, next, .. } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return Vec::new();
        };
        match result {
            Some(Exit::Code(FINISH_NO_RESTART)) => {
                info!(service = %self.spec.name, "finish exited 125: not restarting");
                self.state = match next {
                    Next::Then(Then::Down) => State::Stopped,
                    _ => State::Failed {
                        reason: format!("{exit}; finish exited 125 (do not restart)"),
                    },
                };
                Vec::new()
            }
            Some(done) => {
                if !done.success() {
                    warn!(service = %self.spec.name, finish = %done, "finish script failed");
                }
                self.proceed(next, exit, now)
            }
            None => self.proceed(next, exit, now),
        }
    }

    /// The `finish` script outlived its `finish_timeout`: SIGKILL, once.
    pub(super) fn finish_overdue(&mut self) -> Vec<Action> {
        let State::Finishing {
            script: Hook::Running(script),
            ref mut killed,
            ..
        } = self.state
        else {
            return Vec::new();
        };
        warn!(service = %self.spec.name, "finish script still running after {}, killing it", human(self.spec.finish_timeout));
        *killed = true;
        vec![Action::Signal {
            pid: script,
            signal: Signal::SIGKILL,
            group: true,
        }]
    }

    /// An exit nobody asked for (a oneshot's run killed at its
    /// `run_timeout` counts as a failed one): done, restart, or give up.
    /// Success is one of the service's `success-exit-codes`.
    fn after_exit(&mut self, exit: Exit, now: Instant) -> Vec<Action> {
        let timed_out = std::mem::take(&mut self.timed_out);
        let failed = timed_out || !self.spec.is_success(exit);
        if self.spec.oneshot && !failed {
            info!(service = %self.spec.name, %exit, "oneshot done");
            self.ran_ok = true;
            self.state = State::Exited;
            return Vec::new();
        }
        let why = match self.spec.run_timeout {
            Some(timeout) if timed_out => format!("timed out after {}", human(timeout)),
            _ => exit.to_string(),
        };
        // A longrun that exits before it was ever ready, a oneshot whose run
        // failed: a failed attempt to come up (corral's own kill has no code).
        self.note_up_failure(why.clone(), if timed_out { 1 } else { exit.code() });
        let restart = match self.spec.restart {
            Restart::Always => true,
            Restart::OnFailure => failed,
            Restart::Never => false,
        };
        if self.want == Want::Down || !restart {
            if !failed {
                info!(service = %self.spec.name, %exit, "service exited successfully");
                self.state = State::Stopped;
            } else {
                warn!(service = %self.spec.name, last = %why, "service exited, not restarted (restart policy)");
                self.state = State::Failed {
                    reason: format!("{why}, restart = \"{}\"", self.spec.restart),
                };
            }
            return Vec::new();
        }
        self.failures += 1;
        self.schedule_restart(now, why)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use super::*;
    use crate::event::Child;

    #[test]
    fn restart_policies() {
        let t = Instant::now();
        let cases = [
            (Restart::Always, Exit::Code(0), "backoff"),
            (Restart::Always, Exit::Code(1), "backoff"),
            (Restart::OnFailure, Exit::Code(0), "stopped"),
            (Restart::OnFailure, Exit::Code(1), "backoff"),
            (Restart::OnFailure, Exit::Signal(Signal::SIGSEGV), "backoff"),
            (Restart::Never, Exit::Code(0), "stopped"),
            (Restart::Never, Exit::Code(1), "failed"),
        ];
        for (restart, exit, state) in cases {
            let mut s = spec("web");
            s.restart = restart;
            let mut svc = running(s, t);
            svc.exited(exit, t + ms(5));
            assert_eq!(svc.state.name(), state, "{restart:?} {exit}");
            assert_eq!(
                svc.ended_for_good(),
                state != "backoff",
                "{restart:?} {exit}"
            );
        }
    }

    #[test]
    fn oneshot_success_is_exited_and_counts_as_started() {
        let t = Instant::now();
        let mut s = spec("migrate");
        s.oneshot = true;
        s.restart = Restart::Never;
        let mut svc = running(s.clone(), t);
        assert!(!svc.is_started(), "a running oneshot is not done yet");
        svc.exited(Exit::Code(0), t + ms(5));
        assert_eq!(svc.state, State::Exited);
        assert!(svc.is_started());
        assert!(!svc.ended_for_good());

        let mut failing = running(s, t);
        failing.exited(Exit::Code(3), t + ms(5));
        assert!(matches!(failing.state, State::Failed { .. }));
        assert!(!failing.is_started());
        assert!(failing.ended_for_good());
    }

    #[test]
    fn success_exit_codes_decide_what_a_success_is() {
        let t = Instant::now();
        let cases = [
            (Restart::OnFailure, Exit::Code(3), "stopped"),
            (Restart::OnFailure, Exit::Code(0), "stopped"),
            (Restart::OnFailure, Exit::Code(4), "backoff"),
            (Restart::OnFailure, Exit::Signal(Signal::SIGTERM), "backoff"),
            (Restart::Never, Exit::Code(3), "stopped"),
            (Restart::Never, Exit::Code(4), "failed"),
        ];
        for (restart, exit, state) in cases {
            let mut s = spec("web");
            s.restart = restart;
            s.success_exit_codes = vec![0, 3];
            let mut svc = running(s, t);
            svc.exited(exit, t + ms(5));
            assert_eq!(svc.state.name(), state, "{restart:?} {exit}");
        }
        // Without 0 in the list, exit 0 is a failure.
        let mut s = spec("web");
        s.restart = Restart::OnFailure;
        s.success_exit_codes = vec![3];
        assert!(!s.is_success(Exit::Code(0)) && s.is_success(Exit::Code(3)));
        let mut svc = running(s, t);
        svc.exited(Exit::Code(0), t);
        assert_eq!(svc.state.name(), "backoff");

        // A oneshot that exits 3 did its job: its dependants may start.
        let mut s = spec("migrate");
        s.oneshot = true;
        s.restart = Restart::Never;
        s.success_exit_codes = vec![0, 3];
        let mut svc = running(s, t);
        svc.exited(Exit::Code(3), t);
        assert_eq!(svc.state, State::Exited);
        assert!(svc.is_started());
        assert_eq!(svc.up_failure(), None);
    }

    #[test]
    fn s6_finish_runs_after_each_exit_before_the_restart() {
        let t = Instant::now();
        let mut svc = running(with_finish(), t);
        let actions = svc.exited(Exit::Signal(Signal::SIGKILL), t + ms(5));
        assert_eq!(
            actions,
            vec![Action::Spawn {
                target: Target::FinishScript(id(0)),
                job: Job::FinishScript {
                    spec: Arc::new(with_finish()),
                    script: "/srv/web/finish".into(),
                    exit: Exit::Signal(Signal::SIGKILL),
                },
            }]
        );
        assert!(!svc.is_down(), "the finish script still runs");
        svc.finish_spawned(pid(300));
        assert_eq!(svc.finish_pid(), Some(pid(300)));
        assert!(
            svc.tick(t + ms(500)).is_empty(),
            "no restart while finishing"
        );
        svc.finish_exited(Some(Exit::Code(0)), t + ms(10));
        assert_eq!(svc.state.name(), "backoff");
    }

    #[test]
    fn s6_finish_exiting_125_stops_restarts() {
        let t = Instant::now();
        let mut svc = running(with_finish(), t);
        svc.exited(Exit::Code(1), t + ms(5));
        svc.finish_spawned(pid(300));
        assert!(
            svc.finish_exited(Some(Exit::Code(125)), t + ms(6))
                .is_empty()
        );
        assert_eq!(
            svc.state,
            State::Failed {
                reason: "exit 1; finish exited 125 (do not restart)".into()
            }
        );
        assert!(svc.tick(t + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn s6_finish_also_runs_on_a_stop_and_is_killed_at_its_timeout() {
        let t = Instant::now();
        let mut svc = running(with_finish(), t);
        svc.stop(t, None);
        svc.exited(Exit::Signal(Signal::SIGTERM), t + ms(5));
        svc.finish_spawned(pid(300));
        assert_eq!(svc.deadline(), Some(t + ms(5) + Duration::from_secs(5)));
        assert_eq!(
            svc.tick(t + ms(5) + Duration::from_secs(5)),
            vec![Action::Signal {
                pid: pid(300),
                signal: Signal::SIGKILL,
                group: true
            }]
        );
        svc.finish_exited(
            Some(Exit::Signal(Signal::SIGKILL)),
            t + Duration::from_secs(6),
        );
        assert_eq!(svc.state, State::Stopped);
        assert!(svc.is_down());
    }

    #[test]
    fn a_finish_script_that_cannot_start_lets_the_restart_go_on() {
        let t = Instant::now();
        let mut svc = running(with_finish(), t);
        svc.exited(Exit::Code(1), t + ms(5));
        assert!(
            svc.on_spawn_failed(Child::FinishScript, "Permission denied", 126, t + ms(5))
                .is_empty()
        );
        assert_eq!(svc.state.name(), "backoff");
        assert_eq!(svc.last_exit, Some(Exit::Code(1)), "the service's exit");
    }

    #[test]
    fn a_late_reap_after_a_state_change_changes_nothing() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        svc.exited(Exit::Code(1), t);
        let before = svc.state.clone();
        assert!(svc.exited(Exit::Code(1), t + ms(1)).is_empty());
        assert_eq!(svc.state, before);
    }

    #[test]
    fn finish_timeout_is_the_services_own() {
        let t = Instant::now();
        let mut s = with_finish();
        s.finish_timeout = ms(1500);
        let mut svc = running(s, t);
        svc.exited(Exit::Code(1), t);
        svc.finish_spawned(pid(300));
        assert_eq!(svc.deadline(), Some(t + ms(1500)));
        assert_eq!(svc.tick(t + ms(1500)).len(), 1);
    }
}
