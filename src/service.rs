//! One supervised service: what the user wants (`Want`), what is happening
//! (`State`), and the pure transitions between them.
//!
//! Nothing here makes a syscall or reads the clock: every method takes `now`
//! and returns the `Action`s the executor must carry out. That is what lets
//! the tests drive restarts, backoff and kill escalation with a fake clock.
//! Dependency order, shutdown order and the main COMMAND are not this
//! module's business: see `supervisor::core`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tracing::{info, warn};

use crate::config::{Restart, ServiceSpec};
use crate::event::{Action, Target};
use crate::exit::Exit;

/// What the user (or the supervisor on their behalf) wants of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Up,
    Down,
}

/// What is happening. Each variant carries only what is valid in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started in this run yet (waiting for its turn, or disabled).
    Idle,
    /// A spawn was requested; its result has not come back yet.
    Spawning,
    Running {
        pid: Pid,
        since: Instant,
    },
    /// The stop signal was sent; SIGKILL follows at `kill_at` unless `killed` already.
    Stopping {
        pid: Pid,
        kill_at: Instant,
        killed: bool,
    },
    /// Ended (`why`: "exit 1", "could not be started: ...") and will be
    /// started again at `retry_at`.
    Backoff {
        retry_at: Instant,
        why: String,
    },
    /// Not running, and nothing will start it again: stopped on request, or
    /// exited and its restart policy said no.
    Stopped,
    /// A oneshot that ran to completion (exit 0).
    Exited,
    /// Gave up: `max-restarts` reached, or a failure its policy does not restart.
    Failed {
        reason: String,
    },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle | State::Stopped => "stopped",
            State::Spawning => "starting",
            State::Running { .. } => "running",
            State::Stopping { .. } => "stopping",
            State::Backoff { .. } => "backoff",
            State::Exited => "exited",
            State::Failed { .. } => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Service {
    pub id: usize,
    pub spec: ServiceSpec,
    pub want: Want,
    pub state: State,
    /// Successful spawns in this run; restarts are `starts - 1`.
    pub starts: u32,
    /// Consecutive exits (or failed spawns) before the service stayed up
    /// `restart-delay-max`: drives the backoff and `max-restarts`.
    pub failures: u32,
    pub last_exit: Option<Exit>,
    /// The last stop on request needed SIGKILL (it outlived `stop-timeout`).
    pub stop_escalated: bool,
}

impl Service {
    pub fn new(id: usize, spec: ServiceSpec) -> Service {
        let want = if spec.enabled { Want::Up } else { Want::Down };
        Service {
            id,
            spec,
            want,
            state: State::Idle,
            starts: 0,
            failures: 0,
            last_exit: None,
            stop_escalated: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// No process, and none on its way.
    pub fn is_down(&self) -> bool {
        self.pid().is_none() && self.state != State::Spawning
    }

    pub fn restarts(&self) -> u32 {
        self.starts.saturating_sub(1)
    }

    /// Started, in the sense of `after` and of the main COMMAND's wait:
    /// running, or for a oneshot, exited 0.
    pub fn is_started(&self) -> bool {
        if self.spec.oneshot {
            self.state == State::Exited
        } else {
            matches!(self.state, State::Running { .. })
        }
    }

    /// Wanted up but ended, and nothing will start it again.
    pub fn ended_for_good(&self) -> bool {
        self.want == Want::Up && matches!(self.state, State::Stopped | State::Failed { .. })
    }

    /// The next moment this service needs a `tick`, if any.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Backoff { retry_at, .. } => Some(retry_at),
            State::Stopping {
                kill_at,
                killed: false,
                ..
            } => Some(kill_at),
            _ => None,
        }
    }

    fn spawn(&mut self) -> Vec<Action> {
        self.state = State::Spawning;
        vec![Action::Spawn(Target::Service(self.id))]
    }

    /// Want it up and start it now, unless it is already up.
    pub fn start(&mut self, _now: Instant) -> Vec<Action> {
        self.want = Want::Up;
        match self.state {
            State::Running { .. } | State::Stopping { .. } | State::Spawning => Vec::new(),
            State::Idle
            | State::Backoff { .. }
            | State::Stopped
            | State::Exited
            | State::Failed { .. } => {
                self.failures = 0;
                self.spawn()
            }
        }
    }

    pub fn spawned(&mut self, pid: Pid, now: Instant) {
        self.starts += 1;
        self.state = State::Running { pid, since: now };
        info!(service = %self.spec.name, pid = pid.as_raw(), "service started");
    }

    /// The spawn itself failed (command not found, bad env-file, ...): a
    /// failed start, with the same backoff as an early exit.
    pub fn spawn_failed(&mut self, error: &str, now: Instant) -> Vec<Action> {
        warn!(service = %self.spec.name, %error, "service could not be started");
        if self.want == Want::Down {
            self.state = State::Stopped;
            return Vec::new();
        }
        self.failures += 1;
        self.schedule_restart(now, format!("could not be started: {error}"))
    }

    /// The service's pid was reaped.
    pub fn exited(&mut self, exit: Exit, now: Instant) -> Vec<Action> {
        self.last_exit = Some(exit);
        match self.state {
            State::Stopping { killed, .. } => {
                info!(service = %self.spec.name, %exit, killed, "service stopped");
                self.stop_escalated = killed;
                if self.want == Want::Up {
                    // A restart: stop, then start again at once.
                    self.failures = 0;
                    return self.spawn();
                }
                self.state = State::Stopped;
                Vec::new()
            }
            State::Running { since, .. } => {
                if now.saturating_duration_since(since) >= self.spec.restart_delay_max {
                    // It stayed up long enough: this is a fresh failure, not one more in a row.
                    self.failures = 0;
                }
                self.after_exit(exit, now)
            }
            // Not ours any more (a late reap after a state change): nothing to do.
            _ => Vec::new(),
        }
    }

    fn after_exit(&mut self, exit: Exit, now: Instant) -> Vec<Action> {
        if self.spec.oneshot && exit.success() {
            info!(service = %self.spec.name, "oneshot done");
            self.state = State::Exited;
            return Vec::new();
        }
        let restart = match self.spec.restart {
            Restart::Always => true,
            Restart::OnFailure => !exit.success(),
            Restart::Never => false,
        };
        if self.want == Want::Down || !restart {
            if exit.success() {
                info!(service = %self.spec.name, %exit, "service exited");
                self.state = State::Stopped;
            } else {
                warn!(service = %self.spec.name, %exit, "service exited, not restarted (restart policy)");
                self.state = State::Failed {
                    reason: format!("{exit}, restart = \"{}\"", self.spec.restart),
                };
            }
            return Vec::new();
        }
        self.failures += 1;
        self.schedule_restart(now, exit.to_string())
    }

    /// After `failures` consecutive failed starts: back off, or give up.
    fn schedule_restart(&mut self, now: Instant, what: String) -> Vec<Action> {
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
        warn!(service = %self.spec.name, last = %what, delay_ms = delay.as_millis() as u64, "service exited, restarting");
        self.state = State::Backoff {
            retry_at: now + delay,
            why: what,
        };
        Vec::new()
    }

    /// Want it down and stop it: the stop signal now, SIGKILL at `stop-timeout`
    /// (or at `cap`, the end of the shutdown budget, if that comes first).
    pub fn stop(&mut self, now: Instant, cap: Option<Instant>) -> Vec<Action> {
        self.want = Want::Down;
        self.stop_keeping_want(now, cap)
    }

    /// Stop then start again (the start happens when the exit is reaped).
    pub fn restart(&mut self, now: Instant) -> Vec<Action> {
        self.want = Want::Up;
        match self.state {
            State::Running { .. } => self.stop_keeping_want(now, None),
            State::Stopping { .. } => Vec::new(),
            _ => self.start(now),
        }
    }

    fn stop_keeping_want(&mut self, now: Instant, cap: Option<Instant>) -> Vec<Action> {
        match self.state {
            State::Running { pid, .. } => {
                let mut kill_at = now + self.spec.stop_timeout;
                if let Some(cap) = cap {
                    kill_at = kill_at.min(cap);
                }
                info!(service = %self.spec.name, pid = pid.as_raw(), signal = self.spec.stop_signal.as_str(), "stopping service");
                self.state = State::Stopping {
                    pid,
                    kill_at,
                    killed: false,
                };
                vec![self.signal(pid, self.spec.stop_signal)]
            }
            State::Backoff { .. } => {
                self.state = State::Stopped;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn signal(&self, pid: Pid, signal: Signal) -> Action {
        Action::Signal {
            pid,
            signal,
            group: self.spec.kill_group,
        }
    }

    /// Deadlines that have passed: a retry after backoff, or SIGKILL.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Backoff { retry_at, .. } if now >= retry_at && self.want == Want::Up => {
                self.spawn()
            }
            State::Stopping {
                pid,
                kill_at,
                killed: false,
            } if now >= kill_at => {
                warn!(service = %self.spec.name, pid = pid.as_raw(), "stop timeout, sending SIGKILL");
                self.state = State::Stopping {
                    pid,
                    kill_at,
                    killed: true,
                };
                vec![self.signal(pid, Signal::SIGKILL)]
            }
            _ => Vec::new(),
        }
    }
}

/// `base` doubled for each failure after the first, capped at `max`.
pub fn backoff_delay(base: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(32);
    base.saturating_mul(1u32 << doublings.min(31)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ServiceSpec {
        ServiceSpec::new(name, vec!["true".into()])
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A started service, pid 100, at t0.
    fn running(spec: ServiceSpec, t0: Instant) -> Service {
        let mut svc = Service::new(0, spec);
        assert_eq!(svc.start(t0), vec![Action::Spawn(Target::Service(0))]);
        svc.spawned(Pid::from_raw(100), t0);
        svc
    }

    fn retry_at(svc: &Service) -> Instant {
        match svc.state {
            State::Backoff { retry_at, .. } => retry_at,
            ref other => panic!("expected backoff, got {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff_delay(ms(100), ms(1000), 1), ms(100));
        assert_eq!(backoff_delay(ms(100), ms(1000), 2), ms(200));
        assert_eq!(backoff_delay(ms(100), ms(1000), 4), ms(800));
        assert_eq!(backoff_delay(ms(100), ms(1000), 5), ms(1000));
        assert_eq!(backoff_delay(ms(100), ms(1000), 500), ms(1000));
        assert_eq!(backoff_delay(ms(0), ms(1000), 7), ms(0));
    }

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
            assert_eq!(svc.tick(t), vec![Action::Spawn(Target::Service(0))]);
            svc.spawned(Pid::from_raw(101), t);
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
            svc.spawned(Pid::from_raw(101), t);
        }
        assert_eq!(svc.failures, 3);
        // Up for exactly restart-delay-max: the next delay is the first one again.
        t += Duration::from_secs(2);
        svc.exited(Exit::Signal(Signal::SIGKILL), t);
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
            svc.spawned(Pid::from_raw(101), t);
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
        let mut svc = Service::new(0, s);
        svc.start(t);
        svc.spawn_failed("No such file or directory", t);
        let t = retry_at(&svc);
        svc.tick(t);
        svc.spawn_failed("No such file or directory", t);
        assert!(matches!(svc.state, State::Failed { .. }));
        assert_eq!(svc.starts, 0);
    }

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
    fn stop_sends_the_stop_signal_then_sigkill_at_the_timeout() {
        let mut s = spec("web");
        s.stop_signal = Signal::SIGINT;
        s.stop_timeout = Duration::from_secs(5);
        let t = Instant::now();
        let pid = Pid::from_raw(100);
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
                pid: Pid::from_raw(100),
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
            svc.exited(Exit::Signal(Signal::SIGTERM), t + ms(3)),
            vec![Action::Spawn(Target::Service(0))]
        );
    }

    #[test]
    fn disabled_services_are_not_wanted() {
        let mut s = spec("web");
        s.enabled = false;
        let svc = Service::new(0, s);
        assert_eq!(svc.want, Want::Down);
        assert_eq!(svc.state, State::Idle);
    }
}
