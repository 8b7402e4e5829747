//! An s6-rc oneshot's `down` command (SPEC section 9): what stopping a
//! oneshot that came up means. s6-rc runs `down` only for a oneshot that is
//! up, so here only one in `Exited` (its run exited 0) has a `down` to run;
//! a oneshot that failed, never ran or is still running has none (one still
//! running at the shutdown gets its stop signal like a longrun, and no
//! `down`). The `down` runs in the service's context, bounded like a stop:
//! SIGKILL to its group at `stop-timeout` (or at the end of the shutdown
//! budget, if that comes first; once the budget is spent it is not started
//! at all). However it ends, the oneshot is then stopped, and a later start
//! runs its `up` again. Dependency order (dependants first) is the core's
//! business: it waits for `is_fully_down`.

use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Hook, Service, State, Want};
use crate::event::{Action, Job, Target};
use crate::exit::Exit;
use crate::log::{info, warn};
use crate::text::human;

impl Service {
    /// A oneshot that came up (exited 0) and has a `down` command: stopping
    /// it runs that command.
    pub fn has_down_to_run(&self) -> bool {
        self.spec.oneshot && self.state == State::Exited && self.spec.down.is_some()
    }

    /// The pid of the `down` command, while it runs.
    pub fn down_pid(&self) -> Option<Pid> {
        match self.state {
            State::RunningDown {
                script: Hook::Running(pid),
                ..
            } => Some(pid),
            _ => None,
        }
    }

    /// Stop an exited oneshot: spawn its `down` (SIGKILL at `stop-timeout`,
    /// or at `cap`). With the budget already spent (`cap` passed), it is
    /// skipped: the oneshot is only marked stopped.
    pub(super) fn run_down(&mut self, now: Instant, cap: Option<Instant>) -> Vec<Action> {
        let Some(command) = self.spec.down.clone() else {
            self.state = State::Stopped;
            return Vec::new();
        };
        if cap.is_some_and(|cap| now >= cap) {
            warn!(service = %self.spec.name, "shutdown budget spent, down not run");
            self.last_down = Some(Err("not run: the shutdown budget was spent".into()));
            self.state = State::Stopped;
            return Vec::new();
        }
        let mut kill_at = now + self.spec.stop_timeout;
        if let Some(cap) = cap {
            kill_at = kill_at.min(cap);
        }
        info!(service = %self.spec.name, "running down");
        self.state = State::RunningDown {
            script: Hook::Spawning,
            kill_at,
            killed: false,
        };
        vec![Action::Spawn {
            target: Target::Down(self.id),
            job: Job::Down {
                spec: Arc::clone(&self.spec),
                command,
            },
        }]
    }

    pub(super) fn down_spawned(&mut self, pid: Pid) {
        if let State::RunningDown { script, .. } = &mut self.state {
            *script = Hook::Running(pid);
        }
    }

    /// The `down` command ended (`Err`: it could not be started): the
    /// oneshot is stopped (or startable again, if wanted up meanwhile).
    pub(super) fn down_exited(&mut self, result: Result<Exit, String>) -> Vec<Action> {
        let State::RunningDown { killed, .. } = self.state else {
            return Vec::new();
        };
        match &result {
            Ok(exit) if exit.success() => info!(service = %self.spec.name, "down done"),
            Ok(exit) if killed => {
                warn!(service = %self.spec.name, %exit, "down killed at its stop-timeout")
            }
            Ok(exit) => warn!(service = %self.spec.name, %exit, "down failed"),
            Err(error) => warn!(service = %self.spec.name, %error, "down could not be started"),
        }
        self.last_down = Some(result.map_err(|error| format!("could not be started: {error}")));
        self.stop_escalated = killed;
        self.state = match self.want {
            Want::Up => State::Idle,
            Want::Down => State::Stopped,
        };
        Vec::new()
    }

    /// The `down` outlived its `stop-timeout` (or the shutdown budget):
    /// SIGKILL to its group, once; the shutdown goes on when it is reaped.
    pub(super) fn down_overdue(&mut self) -> Vec<Action> {
        let State::RunningDown {
            script: Hook::Running(pid),
            ref mut killed,
            ..
        } = self.state
        else {
            return Vec::new();
        };
        warn!(service = %self.spec.name, "down still running after stop-timeout {} (or the shutdown budget), killing it", human(self.spec.stop_timeout));
        *killed = true;
        vec![Action::Signal {
            pid,
            signal: Signal::SIGKILL,
            group: true,
        }]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use super::*;
    use crate::event::Child;

    fn exited_oneshot(t: Instant) -> Service {
        let mut s = spec("setup");
        s.oneshot = true;
        s.down = Some(vec!["teardown".into(), "now".into()]);
        s.stop_timeout = Duration::from_secs(3);
        let mut svc = running(s, t);
        svc.exited(Exit::Code(0), t);
        assert_eq!(svc.state, State::Exited);
        svc
    }

    #[test]
    fn stopping_an_exited_oneshot_runs_its_down_then_it_is_stopped() {
        let t = Instant::now();
        let mut svc = exited_oneshot(t);
        assert!(svc.has_down_to_run());
        assert!(svc.is_down() && !svc.is_fully_down());
        let actions = svc.stop(t, None);
        assert_eq!(
            actions,
            vec![Action::Spawn {
                target: Target::Down(id(0)),
                job: Job::Down {
                    spec: Arc::clone(&svc.spec),
                    command: vec!["teardown".into(), "now".into()],
                },
            }]
        );
        assert!(!svc.is_down(), "the down runs");
        svc.on_spawned(Child::Down, pid(300), t);
        assert_eq!(svc.down_pid(), Some(pid(300)));
        assert_eq!(svc.state.name(), "stopping");
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(3)));
        assert_eq!(
            svc.reaped(Child::Down, pid(300), Exit::Code(0), t + ms(5)),
            Some(Vec::new())
        );
        assert_eq!(svc.state, State::Stopped);
        assert!(svc.is_fully_down());
        assert_eq!(svc.last_down(), Some(&Ok(Exit::Code(0))));
        // A later start runs `up` again.
        svc.want_up(true);
        assert_eq!(svc.state, State::Idle);
    }

    #[test]
    fn a_hanging_down_is_killed_at_stop_timeout_capped_by_the_budget() {
        let t = Instant::now();
        let mut svc = exited_oneshot(t);
        svc.stop(t, Some(t + Duration::from_secs(2)));
        svc.on_spawned(Child::Down, pid(300), t);
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(2)));
        assert!(svc.tick(t + ms(1999)).is_empty());
        assert_eq!(
            svc.tick(t + Duration::from_secs(2)),
            vec![Action::Signal {
                pid: pid(300),
                signal: Signal::SIGKILL,
                group: true
            }]
        );
        assert_eq!(svc.deadline(), None, "SIGKILL once");
        svc.reaped(
            Child::Down,
            pid(300),
            Exit::Signal(Signal::SIGKILL),
            t + Duration::from_secs(2),
        );
        assert_eq!(svc.state, State::Stopped);
        assert!(svc.stop_escalated());
    }

    #[test]
    fn a_down_that_cannot_start_or_comes_after_the_budget_still_stops_the_oneshot() {
        let t = Instant::now();
        let mut svc = exited_oneshot(t);
        svc.stop(t, None);
        svc.on_spawn_failed(Child::Down, "No such file or directory", 127, t);
        assert_eq!(svc.state, State::Stopped);
        assert!(matches!(svc.last_down(), Some(Err(_))));

        let mut late = exited_oneshot(t);
        assert!(late.stop(t + ms(10), Some(t + ms(10))).is_empty());
        assert_eq!(late.state, State::Stopped);
    }

    #[test]
    fn only_a_oneshot_that_came_up_has_a_down_to_run() {
        let t = Instant::now();
        let mut s = spec("setup");
        s.oneshot = true;
        s.down = Some(vec!["teardown".into()]);
        s.restart = crate::config::Restart::Never;
        let mut failed = running(s.clone(), t);
        failed.exited(Exit::Code(1), t);
        assert!(!failed.has_down_to_run());
        assert!(failed.stop(t, None).is_empty());
        // Still running at a stop: the stop signal, and no down after it.
        let mut busy = running(s, t);
        assert!(!busy.has_down_to_run());
        assert_eq!(busy.stop(t, None).len(), 1);
        busy.exited(Exit::Signal(Signal::SIGTERM), t + ms(1));
        assert_eq!(busy.state, State::Stopped);
        // Without a down, an exited oneshot is fully down already.
        let mut plain = spec("plain");
        plain.oneshot = true;
        let mut svc = running(plain, t);
        svc.exited(Exit::Code(0), t);
        assert!(svc.is_fully_down());
    }
}
