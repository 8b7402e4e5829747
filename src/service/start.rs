//! Starting: the spawn, readiness (or its timeout), a oneshot's
//! `run_timeout` (s6-rc `timeout-up`), the backoff that follows a failed
//! start, and the record of a first attempt to come up that failed
//! (`UpFailure`, for s6-rc boot steps).
//!
//! A oneshot still running at its `run_timeout` gets SIGKILL at once (to
//! its group when `kill-group`): like s6-rc, which kills a timed-out
//! transition; a oneshot has no graceful stop to honour and SIGKILL bounds
//! the failure. Its run then counts as failed ("timed out after 5.0s"),
//! and its restart policy decides.

use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::probe::{Prober, Purpose};
use super::{Service, State, Then, UpFailure, Want, backoff_delay};
use crate::config::Ready;
use crate::event::{Action, Job, Target};
use crate::exit::Exit;
use crate::log::{error, info, warn};
use crate::text::human;

impl Service {
    /// Spawn its process: a pending definition change takes effect now.
    pub(super) fn spawn(&mut self) -> Vec<Action> {
        if let Some(spec) = self.next_spec.take() {
            self.spec = Arc::new(spec);
        }
        self.state = State::Spawning;
        self.run_by = None;
        self.timed_out = false;
        self.prober = None;
        self.main_pid = None;
        self.notify_status = None;
        self.health_passed = false;
        if self.spec.oneshot && self.spec.command.is_empty() {
            // An s6-rc `up` holding only comments (linuxserver's `init-*-end`
            // steps): nothing to run, a success at once, as under s6-rc.
            self.starts += 1;
            self.last_exit = Some(Exit::Code(0));
            self.ran_ok = true;
            self.state = State::Exited;
            info!(service = %self.spec.name, "oneshot done (nothing to run)");
            return Vec::new();
        }
        vec![Action::Spawn {
            target: Target::Service(self.id),
            job: Job::Service {
                spec: Arc::clone(&self.spec),
                run: self.starts.saturating_add(1),
            },
        }]
    }

    /// Want it up and start it now, unless it is already up.
    pub fn start(&mut self, _now: Instant) -> Vec<Action> {
        self.want = Want::Up;
        match self.state {
            State::Starting { .. }
            | State::Running { .. }
            | State::Reloading { .. }
            | State::Stopping { .. }
            | State::Finishing { .. }
            | State::RunningDown { .. }
            | State::Scheduled
            | State::Spawning => Vec::new(),
            State::Idle
            | State::Backoff { .. }
            | State::Stopped
            | State::Exited
            | State::Failed { .. } => {
                self.failures = 0;
                self.begin()
            }
        }
    }

    /// Its process runs: ready at once, or `Starting` until its readiness
    /// says so (by `ready-timeout`).
    pub fn spawned(&mut self, pid: Pid, now: Instant) -> Vec<Action> {
        self.starts += 1;
        info!(service = %self.spec.name, pid = pid.as_raw(), "service started");
        if self.spec.oneshot {
            self.run_by = self.spec.run_timeout.map(|timeout| now + timeout);
        }
        match &self.spec.ready {
            None => self.become_ready(pid, now, now),
            Some(ready) => {
                self.state = State::Starting {
                    pid,
                    since: now,
                    ready_by: now + self.spec.ready_timeout,
                };
                self.prober = match ready {
                    Ready::Probe(_) => Some(Prober::new(Purpose::Ready, now)),
                    Ready::Fd(_) | Ready::Notify | Ready::LogLine(_) => None,
                };
                self.probe_due(now)
            }
        }
    }

    /// Ready: from `Starting` (a start) or `Reloading` (a reload done).
    pub(super) fn become_ready(&mut self, pid: Pid, since: Instant, now: Instant) -> Vec<Action> {
        let was_reloading = matches!(self.state, State::Reloading { .. });
        if !was_reloading {
            self.ready_at = Some(now);
        }
        self.state = State::Running { pid, since };
        self.ever_ready = true;
        if self.spec.ready.is_some() {
            info!(service = %self.spec.name, pid = pid.as_raw(), "service ready");
        }
        if was_reloading {
            info!(service = %self.spec.name, "reload done");
            self.finish_reload(Ok(()));
        }
        self.prober = self.health_prober(now);
        Vec::new()
    }

    /// Back to `Running` without counting a reload as done.
    pub(super) fn become_ready_silently(
        &mut self,
        pid: Pid,
        since: Instant,
        now: Instant,
    ) -> Vec<Action> {
        self.state = State::Running { pid, since };
        self.prober = self.health_prober(now);
        Vec::new()
    }

    /// The spawn itself failed (command not found, bad env-file, ...): a
    /// failed start with exit `code`, with the same backoff as an early exit.
    pub(super) fn spawn_failed(&mut self, error: &str, code: i32, now: Instant) -> Vec<Action> {
        self.last_exit = Some(Exit::Code(code));
        self.down_at = Some(now);
        warn!(service = %self.spec.name, %error, "service could not be started");
        if self.is_scheduled() {
            return self.run_ended(Err(error.to_string()), now);
        }
        self.note_up_failure(format!("could not be started: {error}"), code);
        if self.want == Want::Down {
            self.state = State::Stopped;
            return Vec::new();
        }
        self.failures += 1;
        self.schedule_restart(now, format!("could not be started: {error}"))
    }

    /// `ready-timeout` passed while starting: a failed start.
    pub(super) fn start_overdue(&mut self, now: Instant) -> Vec<Action> {
        let why = format!(
            "not ready within ready-timeout {}",
            human(self.spec.ready_timeout)
        );
        error!(service = %self.spec.name, "{why}, restarting");
        self.stop_then(now, None, Then::Backoff(why))
    }

    /// A oneshot still running at its `run_timeout`: SIGKILL, once; the
    /// exit is a failed run (`after_exit`).
    pub(super) fn run_overdue(&mut self) -> Vec<Action> {
        self.run_by = None;
        let Some(pid) = self.pid() else {
            return Vec::new();
        };
        let timeout = self.spec.run_timeout.map(human).unwrap_or_default();
        error!(service = %self.spec.name, pid = pid.as_raw(), "still running after timeout-up {timeout}, killing it");
        self.timed_out = true;
        let mut actions = self.cancel_probe();
        actions.push(self.signal(pid, Signal::SIGKILL));
        actions
    }

    /// Has come up in this run: a oneshot exited 0, a longrun was ready.
    pub(super) fn ever_up(&self) -> bool {
        if self.spec.oneshot {
            self.ran_ok
        } else {
            self.ever_ready
        }
    }

    /// Record the first failure to come up (see `UpFailure`), unless it
    /// came up before, or is not wanted up (a stop is no failure).
    pub(super) fn note_up_failure(&mut self, reason: String, code: i32) {
        if self.ever_up() || self.up_failure.is_some() || self.want == Want::Down {
            return;
        }
        let code = if code == 0 { 1 } else { code };
        self.up_failure = Some(UpFailure { reason, code });
    }

    /// After `failures` consecutive failed starts: back off, or give up.
    pub(super) fn schedule_restart(&mut self, now: Instant, what: String) -> Vec<Action> {
        let max = self.spec.max_restarts;
        if max > 0 && self.failures > max {
            warn!(service = %self.spec.name, restarts = max, "service failed too often, giving up");
            self.state = State::Failed {
                reason: format!("{what}; {max} restarts in a row"),
            };
            return Vec::new();
        }
        let delay = backoff_delay(
            self.spec.restart_delay,
            self.spec.restart_delay_max,
            self.failures,
        );
        warn!(service = %self.spec.name, last = %what, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "service exited, restarting");
        self.state = State::Backoff {
            retry_at: now + delay,
            why: what,
        };
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use super::*;
    use crate::config::{Ready, ServiceSpec};

    #[test]
    fn quick_exits_back_off_exponentially_and_retry_on_tick() {
        let mut s = spec("web");
        s.restart_delay = ms(100);
        s.restart_delay_max = Duration::from_secs(10);
        let mut t = Instant::now();
        let mut svc = running(s, t);
        let mut expected = 100;
        for _ in 0..5 {
            t += ms(10);
            assert!(svc.exited(Exit::Code(1), t).is_empty());
            assert_eq!(retry_at(&svc), t + ms(expected));
            // Not yet: nothing happens just before the deadline.
            assert!(svc.tick(t + ms(expected - 1)).is_empty());
            t += ms(expected);
            assert_eq!(targets(&svc.tick(t)), vec![Target::Service(id(0))]);
            svc.spawned(pid(101), t);
            expected *= 2;
        }
        assert_eq!(svc.restarts(), 5);
        assert_eq!(svc.last_exit, Some(Exit::Code(1)));
    }

    #[test]
    fn staying_up_for_restart_delay_max_resets_the_backoff() {
        let mut s = spec("web");
        s.restart_delay = ms(100);
        s.restart_delay_max = Duration::from_secs(2);
        let mut t = Instant::now();
        let mut svc = running(s, t);
        for _ in 0..3 {
            t += ms(10);
            svc.exited(Exit::Code(1), t);
            t = retry_at(&svc);
            svc.tick(t);
            svc.spawned(pid(101), t);
        }
        assert_eq!(svc.failures, 3);
        // Up for exactly restart-delay-max: the next delay is the first one again.
        t += Duration::from_secs(2);
        svc.exited(Exit::Signal(nix::sys::signal::Signal::SIGKILL), t);
        assert_eq!(svc.failures, 1);
        assert_eq!(retry_at(&svc), t + ms(100));
    }

    #[test]
    fn max_restarts_then_failed() {
        let mut s = spec("web");
        s.max_restarts = 3;
        let mut t = Instant::now();
        let mut svc = running(s, t);
        for _ in 0..3 {
            t += ms(1);
            svc.exited(Exit::Code(2), t);
            t = retry_at(&svc);
            assert_eq!(svc.tick(t).len(), 1);
            svc.spawned(pid(101), t);
        }
        t += ms(1);
        assert!(svc.exited(Exit::Code(2), t).is_empty());
        assert_eq!(
            svc.state,
            State::Failed {
                reason: "exit 2; 3 restarts in a row".into()
            }
        );
        assert_eq!(svc.restarts(), 3);
        assert!(svc.ended_for_good());
        assert_eq!(svc.deadline(), None);
    }

    #[test]
    fn failed_spawns_count_as_failed_starts() {
        let mut s = spec("web");
        s.max_restarts = 1;
        let t = Instant::now();
        let mut svc = Service::new(id(0), s);
        svc.start(t);
        svc.spawn_failed("No such file or directory", 127, t);
        assert_eq!(svc.last_exit, Some(Exit::Code(127)));
        let t = retry_at(&svc);
        svc.tick(t);
        svc.spawn_failed("No such file or directory", 127, t);
        assert!(matches!(svc.state, State::Failed { .. }));
        assert_eq!(svc.starts, 0);
    }

    #[test]
    fn a_spawn_carries_its_definition_and_the_run_it_will_be() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        svc.exited(Exit::Code(1), t);
        let mut changed: ServiceSpec = spec("web");
        changed.command = vec!["new".into()];
        svc.next_spec = Some(changed.clone());
        match svc.tick(retry_at(&svc)).as_slice() {
            [
                Action::Spawn {
                    target: Target::Service(i),
                    job: Job::Service { spec, run },
                },
            ] => {
                assert_eq!(*i, id(0));
                assert_eq!(**spec, changed, "the pending definition takes effect");
                assert_eq!(*run, 2);
            }
            other => panic!("expected one service spawn, got {other:?}"),
        }
        assert_eq!(svc.state, State::Spawning);
        assert!(!svc.has_pending_definition());
    }

    #[test]
    fn a_spawn_failure_while_wanted_down_is_a_stop_not_a_backoff() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), spec("web"));
        svc.start(t);
        svc.want_down();
        assert!(svc.spawn_failed("nope", 126, t).is_empty());
        assert_eq!(svc.state, State::Stopped);
        assert_eq!(svc.failures, 0);
    }

    #[test]
    fn starting_again_resets_the_failures_but_not_while_it_runs() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        assert!(svc.start(t).is_empty(), "already running");
        svc.exited(Exit::Code(1), t);
        assert_eq!(svc.failures, 1);
        assert_eq!(svc.start(t).len(), 1, "a start during backoff is at once");
        assert_eq!(svc.failures, 0);
    }

    #[test]
    fn not_ready_within_ready_timeout_is_a_failed_start_with_backoff() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), with_ready(Ready::Fd(3)));
        svc.start(t);
        svc.spawned(pid(100), t);
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(10)));
        let t1 = t + Duration::from_secs(10);
        assert_eq!(
            svc.tick(t1),
            vec![Action::Signal {
                pid: pid(100),
                signal: nix::sys::signal::Signal::SIGTERM,
                group: true
            }]
        );
        svc.exited(Exit::Signal(nix::sys::signal::Signal::SIGTERM), t1 + ms(3));
        match &svc.state {
            State::Backoff { why, .. } => {
                assert_eq!(why, "not ready within ready-timeout 10.0s")
            }
            other => panic!("expected backoff, got {other:?}"),
        }
        assert_eq!(svc.failures, 1);
        // fd readiness of the old run, arriving late, changes nothing.
        assert!(svc.fd_ready(1, t1 + ms(4)).is_empty());
        assert_eq!(svc.state.name(), "backoff");
    }

    fn oneshot_with_run_timeout(restart: crate::config::Restart) -> ServiceSpec {
        let mut s = spec("init");
        s.oneshot = true;
        s.restart = restart;
        s.run_timeout = Some(Duration::from_secs(5));
        s
    }

    #[test]
    fn a_oneshot_past_its_run_timeout_gets_sigkill_and_its_run_counts_as_failed() {
        let t = Instant::now();
        let mut svc = running(
            oneshot_with_run_timeout(crate::config::Restart::OnFailure),
            t,
        );
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(5)));
        assert!(svc.tick(t + ms(4999)).is_empty());
        let t1 = t + Duration::from_secs(5);
        assert_eq!(
            svc.tick(t1),
            vec![Action::Signal {
                pid: pid(100),
                signal: nix::sys::signal::Signal::SIGKILL,
                group: true
            }]
        );
        assert_eq!(svc.deadline(), None, "SIGKILL once");
        // Even a late exit 0 is a failed run: it was killed.
        svc.exited(Exit::Code(0), t1 + ms(1));
        match &svc.state {
            State::Backoff { why, .. } => assert_eq!(why, "timed out after 5.0s"),
            other => panic!("expected backoff, got {other:?}"),
        }
        assert_eq!(
            svc.up_failure().map(|f| (f.reason.as_str(), f.code)),
            Some(("timed out after 5.0s", 1))
        );
        // The retry has its own deadline again.
        let t2 = retry_at(&svc);
        svc.tick(t2);
        svc.spawned(pid(101), t2);
        assert_eq!(svc.deadline(), Some(t2 + Duration::from_secs(5)));
        svc.exited(Exit::Code(0), t2 + ms(10));
        assert_eq!(svc.state, State::Exited);
        assert_eq!(svc.deadline(), None);
    }

    #[test]
    fn run_timeout_is_for_oneshots_and_a_stop_ends_it() {
        let t = Instant::now();
        let mut s = spec("web");
        s.run_timeout = Some(Duration::from_secs(5));
        let svc = running(s, t);
        assert_eq!(svc.deadline(), None, "a longrun has no run deadline");
        let mut once = oneshot_with_run_timeout(crate::config::Restart::Never);
        once.stop_timeout = Duration::from_secs(10);
        let mut one = running(once, t);
        one.stop(t + ms(10), None);
        assert_eq!(one.deadline(), Some(t + ms(10) + Duration::from_secs(10)));
        assert!(one.tick(t + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn a_first_attempt_to_come_up_that_fails_is_recorded_once_and_only_before_it_was_up() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), with_ready(Ready::Fd(3)));
        svc.start(t);
        svc.spawn_failed("No such file or directory", 127, t);
        assert_eq!(
            svc.up_failure().map(|f| f.code),
            Some(127),
            "could not be spawned"
        );
        // Exit before ready: the run's own code; 0 becomes 1.
        let mut early = Service::new(id(0), with_ready(Ready::Fd(3)));
        early.start(t);
        early.spawned(pid(100), t);
        early.exited(Exit::Code(0), t + ms(1));
        assert_eq!(early.up_failure().map(|f| f.code), Some(1));
        // Ready once: a later crash is no failure to come up.
        let mut up = Service::new(id(0), with_ready(Ready::Fd(3)));
        up.start(t);
        up.spawned(pid(100), t);
        up.fd_ready(1, t);
        up.exited(Exit::Code(4), t + ms(1));
        assert_eq!(up.up_failure(), None);
        // Without readiness, a longrun is up once spawned.
        let mut plain = running(spec("web"), t);
        plain.exited(Exit::Code(4), t + ms(1));
        assert_eq!(plain.up_failure(), None);
        // Named by the operator: a fresh attempt.
        early.want_up(true);
        assert_eq!(early.up_failure(), None);
    }
}
