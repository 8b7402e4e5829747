//! One supervised service: what the user wants (`Want`), what is happening
//! (`State`), and the pure transitions between them: start, readiness,
//! liveness probes, reload, stop, restart with backoff.
//!
//! Nothing here makes a syscall or reads the clock: every method takes `now`
//! and returns the `Action`s the executor must carry out. That is what lets
//! the tests drive restarts, backoff, readiness timeouts, health failures and
//! kill escalation with a fake clock. Dependency order, shutdown order and
//! the main COMMAND are not this module's business: see `supervisor::core`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tracing::{error, info, warn};

use crate::config::{Ready, Reload, Restart, ServiceSpec};
use crate::event::{Action, NotifyMessage, Target};
use crate::exit::Exit;

/// Readiness probes are retried quickly at first: 50 ms, doubling, up to 1 s.
const READY_PROBE_FIRST: Duration = Duration::from_millis(50);
const READY_PROBE_MAX: Duration = Duration::from_secs(1);
/// A single readiness probe may take at most this long.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Changes to watched files are debounced: the reload runs this long after
/// the last change of a burst.
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(100);
/// An s6 `finish` script is killed after this long (s6's default `timeout-finish`).
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(5);
/// A `finish` script exiting with this code means: do not restart (s6).
pub const FINISH_NO_RESTART: i32 = 125;

/// What the user (or the supervisor on their behalf) wants of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Up,
    Down,
}

/// What happens once a stopping service's process is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Stay down (stop on request, shutdown).
    Down,
    /// Start again at once (restart on request, reload without a `reload`).
    Restart,
    /// A failed start (not ready in time) or a failed liveness check: back off
    /// and start again, like an early exit.
    Backoff(String),
}

/// What follows an exit, once the s6 `finish` script (if any) is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A stop that was asked for: what it planned.
    Then(Then),
    /// The service ended by itself: its restart policy decides.
    AfterExit,
}

/// What is happening. Each variant carries only what is valid in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started in this run yet (waiting for its turn, or disabled).
    Idle,
    /// A spawn was requested; its result has not come back yet.
    Spawning,
    /// Spawned, not ready yet: the start fails if not ready by `ready_by`.
    Starting {
        pid: Pid,
        since: Instant,
        ready_by: Instant,
    },
    /// Up, and ready if it declares readiness.
    Running { pid: Pid, since: Instant },
    /// A reload is under way: not ready until its hook succeeded and (with
    /// readiness) the service is ready again, by `ready_by`.
    Reloading {
        pid: Pid,
        since: Instant,
        ready_by: Instant,
        hook: Hook,
    },
    /// The stop signal was sent; SIGKILL follows at `kill_at` unless
    /// `killed` already; then `then`.
    Stopping {
        pid: Pid,
        kill_at: Instant,
        killed: bool,
        then: Then,
    },
    /// The process ended with `exit`; its s6 `finish` script runs (killed
    /// at `kill_at`), then `next`.
    Finishing {
        exit: Exit,
        script: Hook,
        kill_at: Instant,
        killed: bool,
        next: Next,
    },
    /// Ended (`why`: "exit 1", "could not be started: ...") and will be
    /// started again at `retry_at`.
    Backoff { retry_at: Instant, why: String },
    /// Not running, and nothing will start it again: stopped on request, or
    /// exited and its restart policy said no.
    Stopped,
    /// A oneshot that ran to completion (exit 0).
    Exited,
    /// Gave up: `max-restarts` reached, or a failure its policy does not restart.
    Failed { reason: String },
}

/// The `reload = { exec = [...] }` hook of a reload in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// No hook (a signal reload, or one the service announced with RELOADING=1).
    None,
    Spawning,
    Running(Pid),
    /// Succeeded; now waiting for readiness.
    Done,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle | State::Stopped => "stopped",
            State::Spawning | State::Starting { .. } => "starting",
            State::Running { .. } | State::Reloading { .. } => "running",
            State::Stopping { .. } | State::Finishing { .. } => "stopping",
            State::Backoff { .. } => "backoff",
            State::Exited => "exited",
            State::Failed { .. } => "failed",
        }
    }
}

/// Why a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Readiness, after a start or a reload: retried quickly until it passes.
    Ready,
    /// Liveness, every `interval` while ready.
    Health,
}

/// The probes of the current state: when the next one runs, the one in
/// flight, and how many failed in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prober {
    pub purpose: Purpose,
    pub next_at: Option<Instant>,
    pub in_flight: Option<InFlight>,
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub token: u64,
    /// An exec probe's process, once spawned.
    pub pid: Option<Pid>,
    /// Counted as failed (and an exec probe killed) at this moment.
    pub deadline: Instant,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub id: usize,
    pub spec: ServiceSpec,
    pub want: Want,
    pub state: State,
    /// Successful spawns in this run; restarts are `starts - 1`. Also the
    /// "run" number that readiness messages carry.
    pub starts: u32,
    /// Consecutive exits (or failed starts) before the service stayed up
    /// `restart-delay-max`: drives the backoff and `max-restarts`.
    pub failures: u32,
    pub last_exit: Option<Exit>,
    /// The last stop on request needed SIGKILL (it outlived `stop-timeout`).
    pub stop_escalated: bool,
    /// Has been ready at least once in this run (the main COMMAND's wait).
    pub ever_ready: bool,
    /// Readiness or liveness probes of the current state, if any.
    pub prober: Option<Prober>,
    probes_sent: u32,
    /// `MAINPID=` from sd_notify: where a reload signal goes.
    pub main_pid: Option<Pid>,
    /// The last `STATUS=` from sd_notify.
    pub notify_status: Option<String>,
    /// A debounced reload (watched file changed) is due then.
    pub reload_due: Option<Instant>,
    /// Reloads asked for, and the number and outcome of the last one finished.
    pub reloads_asked: u32,
    pub last_reload: Option<(u32, Result<(), String>)>,
    /// A changed definition (config reload), applied at the next spawn.
    pub next_spec: Option<ServiceSpec>,
    /// Removed from the definitions: stopped, then hidden.
    pub removed: bool,
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
            ever_ready: false,
            prober: None,
            probes_sent: 0,
            main_pid: None,
            notify_status: None,
            reload_due: None,
            reloads_asked: 0,
            last_reload: None,
            next_spec: None,
            removed: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Starting { pid, .. }
            | State::Running { pid, .. }
            | State::Reloading { pid, .. }
            | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// No process, and none on its way.
    pub fn is_down(&self) -> bool {
        self.pid().is_none() && !matches!(self.state, State::Spawning | State::Finishing { .. })
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

    pub fn restarts(&self) -> u32 {
        self.starts.saturating_sub(1)
    }

    /// Started, in the sense of `after` and of `ctl wait`: up and ready
    /// (a reload in flight does not take that back), or for a oneshot, exited 0.
    pub fn is_started(&self) -> bool {
        if self.spec.oneshot {
            self.state == State::Exited
        } else {
            matches!(self.state, State::Running { .. } | State::Reloading { .. })
        }
    }

    /// Ready right now (`/readyz`, `ctl status`): a reload in flight is not.
    pub fn is_ready(&self) -> bool {
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
        let state = match self.state {
            State::Backoff { retry_at, .. } => Some(retry_at),
            State::Stopping {
                kill_at,
                killed: false,
                ..
            } => Some(kill_at),
            State::Starting { ready_by, .. } | State::Reloading { ready_by, .. } => Some(ready_by),
            State::Finishing {
                kill_at,
                killed: false,
                script: Hook::Running(_),
                ..
            } => Some(kill_at),
            _ => None,
        };
        let probe = self.prober.as_ref().and_then(|p| match &p.in_flight {
            Some(flight) => Some(flight.deadline),
            None => p.next_at,
        });
        let reload = match self.state {
            State::Running { .. } => self.reload_due,
            _ => None,
        };
        [state, probe, reload].into_iter().flatten().min()
    }

    fn spawn(&mut self) -> Vec<Action> {
        if let Some(spec) = self.next_spec.take() {
            self.spec = spec;
        }
        self.state = State::Spawning;
        self.prober = None;
        self.main_pid = None;
        self.notify_status = None;
        vec![Action::Spawn(Target::Service(self.id))]
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
            | State::Spawning => Vec::new(),
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

    pub fn spawned(&mut self, pid: Pid, now: Instant) -> Vec<Action> {
        self.starts += 1;
        info!(service = %self.spec.name, pid = pid.as_raw(), "service started");
        match &self.spec.ready {
            None => self.become_ready(pid, now, now),
            Some(ready) => {
                self.state = State::Starting {
                    pid,
                    since: now,
                    ready_by: now + self.spec.ready_timeout,
                };
                self.prober = match ready {
                    Ready::Probe(_) => Some(Prober {
                        purpose: Purpose::Ready,
                        next_at: Some(now),
                        in_flight: None,
                        failures: 0,
                    }),
                    Ready::Fd(_) | Ready::Notify => None,
                };
                self.probe_due(now)
            }
        }
    }

    /// Ready: from `Starting` (a start) or `Reloading` (a reload done).
    fn become_ready(&mut self, pid: Pid, since: Instant, now: Instant) -> Vec<Action> {
        let was_reloading = matches!(self.state, State::Reloading { .. });
        self.state = State::Running { pid, since };
        self.ever_ready = true;
        if self.spec.ready.is_some() {
            info!(service = %self.spec.name, pid = pid.as_raw(), "service ready");
        }
        if was_reloading {
            info!(service = %self.spec.name, "reload done");
            self.finish_reload(Ok(()));
        }
        self.prober = self.spec.health.as_ref().map(|health| Prober {
            purpose: Purpose::Health,
            next_at: Some(now + health.interval),
            in_flight: None,
            failures: 0,
        });
        Vec::new()
    }

    fn finish_reload(&mut self, result: Result<(), String>) {
        self.last_reload = Some((self.reloads_asked, result));
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
        let mut actions = self.cancel_probe();
        let next = match std::mem::replace(&mut self.state, State::Idle) {
            State::Stopping { killed, then, .. } => {
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
        if self.spec.finish.is_some() {
            self.state = State::Finishing {
                exit,
                script: Hook::Spawning,
                kill_at: now + FINISH_TIMEOUT,
                killed: false,
                next,
            };
            actions.push(Action::Spawn(Target::FinishScript(self.id)));
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
                self.spawn()
            }
            Next::Then(Then::Backoff(why)) if self.want == Want::Up => {
                self.failures += 1;
                self.schedule_restart(now, why)
            }
            Next::Then(_) => {
                self.state = State::Stopped;
                Vec::new()
            }
            Next::AfterExit => self.after_exit(exit, now),
        }
    }

    pub fn finish_spawned(&mut self, script_pid: Pid) {
        if let State::Finishing { script, .. } = &mut self.state {
            *script = Hook::Running(script_pid);
        }
    }

    /// The `finish` script ended (`None`: it could not be started). Exit 125
    /// means the service is not to be restarted.
    pub fn finish_exited(&mut self, result: Option<Exit>, now: Instant) -> Vec<Action> {
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

    fn stop_then(&mut self, now: Instant, cap: Option<Instant>, then: Then) -> Vec<Action> {
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
            State::Backoff { .. } => {
                self.state = State::Stopped;
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

    fn signal(&self, pid: Pid, signal: Signal) -> Action {
        Action::Signal {
            pid,
            signal,
            group: self.spec.kill_group,
        }
    }

    /// Deadlines that have passed: a retry after backoff, SIGKILL, a start
    /// or reload not ready in time, a probe to run or that took too long, a
    /// debounced reload.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Backoff { retry_at, .. } if now >= retry_at && self.want == Want::Up => {
                return self.spawn();
            }
            State::Stopping {
                pid,
                kill_at,
                killed: false,
                ref then,
            } if now >= kill_at => {
                warn!(service = %self.spec.name, pid = pid.as_raw(), "stop timeout, sending SIGKILL");
                self.state = State::Stopping {
                    pid,
                    kill_at,
                    killed: true,
                    then: then.clone(),
                };
                return vec![self.signal(pid, Signal::SIGKILL)];
            }
            State::Finishing {
                script: Hook::Running(script),
                kill_at,
                killed: false,
                ..
            } if now >= kill_at => {
                warn!(service = %self.spec.name, "finish script still running after {}, killing it", human(FINISH_TIMEOUT));
                if let State::Finishing { killed, .. } = &mut self.state {
                    *killed = true;
                }
                return vec![Action::Signal {
                    pid: script,
                    signal: Signal::SIGKILL,
                    group: true,
                }];
            }
            State::Starting { ready_by, .. } if now >= ready_by => {
                let why = format!(
                    "not ready within ready-timeout {}",
                    human(self.spec.ready_timeout)
                );
                error!(service = %self.spec.name, "{why}, restarting");
                return self.stop_then(now, None, Then::Backoff(why));
            }
            State::Reloading { ready_by, .. } if now >= ready_by => {
                let why = format!(
                    "not ready again within ready-timeout {} after a reload",
                    human(self.spec.ready_timeout)
                );
                error!(service = %self.spec.name, "{why}, restarting");
                self.finish_reload(Err(why.clone()));
                return self.stop_then(now, None, Then::Backoff(why));
            }
            _ => {}
        }
        let mut actions = Vec::new();
        if matches!(self.state, State::Running { .. })
            && self.reload_due.is_some_and(|at| now >= at)
        {
            self.reload_due = None;
            actions.extend(self.reload(now));
        }
        actions.extend(self.probe_due(now));
        actions
    }

    /// Launch the next probe if it is due; fail the one in flight if it took
    /// too long.
    fn probe_due(&mut self, now: Instant) -> Vec<Action> {
        let Some(prober) = self.prober.as_mut() else {
            return Vec::new();
        };
        if let Some(flight) = &prober.in_flight {
            if now < flight.deadline {
                return Vec::new();
            }
            let token = flight.token;
            let mut actions = Vec::new();
            if let Some(pid) = flight.pid {
                actions.push(Action::Signal {
                    pid,
                    signal: Signal::SIGKILL,
                    group: true,
                });
            }
            actions.extend(self.probe_result(token, Err("timed out".into()), now));
            return actions;
        }
        if prober.next_at.is_none_or(|at| now < at) {
            return Vec::new();
        }
        let (probe, timeout) = match (prober.purpose, &self.spec.ready, &self.spec.health) {
            (Purpose::Ready, Some(Ready::Probe(probe)), _) => (probe.clone(), READY_PROBE_TIMEOUT),
            (Purpose::Health, _, Some(health)) => (health.probe.clone(), health.timeout),
            _ => return Vec::new(),
        };
        self.probes_sent += 1;
        let token = (self.id as u64) << 32 | u64::from(self.probes_sent);
        prober.next_at = None;
        prober.in_flight = Some(InFlight {
            token,
            pid: None,
            deadline: now + timeout,
        });
        vec![Action::Probe {
            service: self.id,
            token,
            probe,
            timeout,
        }]
    }

    /// Stop probing (the state it belonged to is over). An exec probe still
    /// running is killed.
    fn cancel_probe(&mut self) -> Vec<Action> {
        let flight = self.prober.take().and_then(|p| p.in_flight);
        match flight.and_then(|f| f.pid) {
            Some(pid) => vec![Action::Signal {
                pid,
                signal: Signal::SIGKILL,
                group: true,
            }],
            None => Vec::new(),
        }
    }

    /// The pid of an exec probe in flight.
    pub fn probe_pid(&self) -> Option<Pid> {
        self.prober.as_ref()?.in_flight.as_ref()?.pid
    }

    pub fn probe_token(&self) -> Option<u64> {
        Some(self.prober.as_ref()?.in_flight.as_ref()?.token)
    }

    /// An exec probe was spawned.
    pub fn probe_spawned(&mut self, pid: Pid) {
        if let Some(flight) = self.prober.as_mut().and_then(|p| p.in_flight.as_mut()) {
            flight.pid = Some(pid);
        }
    }

    /// A probe's result. Readiness: ready, or try again soon. Liveness:
    /// after `retries` failures in a row, a restart (with backoff).
    pub fn probe_result(
        &mut self,
        token: u64,
        result: Result<(), String>,
        now: Instant,
    ) -> Vec<Action> {
        let Some(prober) = self.prober.as_mut() else {
            return Vec::new();
        };
        if prober.in_flight.as_ref().map(|f| f.token) != Some(token) {
            // A late answer to a probe that was cancelled or timed out.
            return Vec::new();
        }
        prober.in_flight = None;
        match (prober.purpose, result) {
            (Purpose::Ready, Ok(())) => match self.state {
                State::Starting { pid, since, .. } => self.become_ready(pid, since, now),
                State::Reloading {
                    pid,
                    since,
                    hook: Hook::None | Hook::Done,
                    ..
                } => self.become_ready(pid, since, now),
                _ => Vec::new(),
            },
            (Purpose::Ready, Err(_)) => {
                prober.failures += 1;
                let delay = READY_PROBE_FIRST
                    .saturating_mul(1 << prober.failures.min(10))
                    .min(READY_PROBE_MAX);
                prober.next_at = Some(now + delay);
                Vec::new()
            }
            (Purpose::Health, Ok(())) => {
                if prober.failures > 0 {
                    info!(service = %self.spec.name, "health check passes again");
                }
                prober.failures = 0;
                prober.next_at = self.spec.health.as_ref().map(|h| now + h.interval);
                Vec::new()
            }
            (Purpose::Health, Err(detail)) => {
                prober.failures += 1;
                let retries = self.spec.health.as_ref().map_or(1, |h| h.retries);
                warn!(service = %self.spec.name, failures = prober.failures, retries, %detail, "health check failed");
                if prober.failures >= retries {
                    let why = format!("health check failed {} times: {detail}", prober.failures);
                    error!(service = %self.spec.name, "{why}, restarting");
                    return self.stop_then(now, None, Then::Backoff(why));
                }
                prober.next_at = self.spec.health.as_ref().map(|h| now + h.interval);
                Vec::new()
            }
        }
    }

    /// An s6 notification-fd newline, or a probe-free readiness signal.
    pub fn fd_ready(&mut self, run: u32, now: Instant) -> Vec<Action> {
        if run != self.starts {
            return Vec::new();
        }
        match self.state {
            State::Starting { pid, since, .. } => self.become_ready(pid, since, now),
            _ => Vec::new(),
        }
    }

    /// An sd_notify datagram from run `run`.
    pub fn notify(&mut self, run: u32, message: &NotifyMessage, now: Instant) -> Vec<Action> {
        if run != self.starts {
            return Vec::new();
        }
        if let Some(pid) = message.main_pid {
            self.main_pid = Some(Pid::from_raw(pid));
        }
        if let Some(status) = &message.status {
            self.notify_status = Some(status.clone());
        }
        if message.stopping {
            info!(service = %self.spec.name, "service says it is stopping");
        }
        if message.reloading
            && let State::Running { pid, since } = self.state
        {
            // A reload the service started itself (or the answer to our signal).
            info!(service = %self.spec.name, "service says it is reloading");
            self.state = State::Reloading {
                pid,
                since,
                ready_by: now + self.spec.ready_timeout,
                hook: Hook::None,
            };
            self.prober = None;
        }
        if message.ready {
            return match self.state {
                State::Starting { pid, since, .. } if self.spec.ready == Some(Ready::Notify) => {
                    self.become_ready(pid, since, now)
                }
                State::Reloading {
                    pid,
                    since,
                    hook: Hook::None | Hook::Done,
                    ..
                } => self.become_ready(pid, since, now),
                _ => Vec::new(),
            };
        }
        Vec::new()
    }

    /// A watched path changed: reload once the burst is over.
    pub fn changed(&mut self, now: Instant) {
        self.reload_due = Some(now + WATCH_DEBOUNCE);
    }

    /// Reload now: the `reload` signal (to the main pid) or hook; without a
    /// `reload`, a restart. A service with readiness is not ready again
    /// until its probe passes or it sends READY=1.
    pub fn reload(&mut self, now: Instant) -> Vec<Action> {
        self.reloads_asked += 1;
        self.reload_due = None;
        let (pid, since) = match self.state {
            State::Running { pid, since } => (pid, since),
            State::Reloading { .. } | State::Starting { .. } | State::Spawning => {
                // Already (re)starting: it will read its configuration anyway.
                // The answer comes when it is ready.
                return Vec::new();
            }
            _ => {
                self.finish_reload(Err(format!(
                    "{} is not running ({})",
                    self.spec.name,
                    self.state.name()
                )));
                return Vec::new();
            }
        };
        let reload = self.spec.reload.clone();
        let ready_by = now + self.spec.ready_timeout;
        match reload {
            None => {
                info!(service = %self.spec.name, "reload: no `reload` defined, restarting");
                self.restart(now)
            }
            Some(Reload::Signal(signal)) => {
                let target = self.main_pid.unwrap_or(pid);
                info!(service = %self.spec.name, pid = target.as_raw(), signal = signal.as_str(), "reloading");
                let mut actions = vec![Action::Signal {
                    pid: target,
                    signal,
                    group: false,
                }];
                match self.spec.ready {
                    Some(Ready::Probe(_)) | Some(Ready::Notify) => {
                        actions.extend(self.cancel_probe());
                        self.state = State::Reloading {
                            pid,
                            since,
                            ready_by,
                            hook: Hook::None,
                        };
                        actions.extend(self.reprobe(now));
                    }
                    // No way to hear "ready again": the signal is the reload.
                    _ => self.finish_reload(Ok(())),
                }
                actions
            }
            Some(Reload::Exec(_)) => {
                info!(service = %self.spec.name, "reloading (hook)");
                let mut actions = self.cancel_probe();
                self.state = State::Reloading {
                    pid,
                    since,
                    ready_by,
                    hook: Hook::Spawning,
                };
                actions.push(Action::Spawn(Target::Hook(self.id)));
                actions
            }
        }
    }

    /// Readiness probing again (after a reload), if readiness is a probe.
    fn reprobe(&mut self, now: Instant) -> Vec<Action> {
        if let Some(Ready::Probe(_)) = self.spec.ready {
            self.prober = Some(Prober {
                purpose: Purpose::Ready,
                next_at: Some(now),
                in_flight: None,
                failures: 0,
            });
            return self.probe_due(now);
        }
        Vec::new()
    }

    pub fn hook_pid(&self) -> Option<Pid> {
        match self.state {
            State::Reloading {
                hook: Hook::Running(pid),
                ..
            } => Some(pid),
            _ => None,
        }
    }

    pub fn hook_spawned(&mut self, hook_pid: Pid) {
        if let State::Reloading { hook, .. } = &mut self.state {
            *hook = Hook::Running(hook_pid);
        }
    }

    /// The reload hook ended (or could not be started: `exit` 127 and the reason).
    pub fn hook_exited(&mut self, result: Result<(), String>, now: Instant) -> Vec<Action> {
        let State::Reloading {
            pid,
            since,
            ready_by,
            ..
        } = self.state
        else {
            return Vec::new();
        };
        match result {
            Err(why) => {
                error!(service = %self.spec.name, %why, "reload hook failed");
                self.finish_reload(Err(format!("reload hook failed: {why}")));
                // The old configuration is still running: the service stays as it was.
                self.become_ready_silently(pid, since, now)
            }
            Ok(()) => match self.spec.ready {
                Some(Ready::Probe(_)) => {
                    self.state = State::Reloading {
                        pid,
                        since,
                        ready_by,
                        hook: Hook::Done,
                    };
                    self.reprobe(now)
                }
                _ => self.become_ready(pid, since, now),
            },
        }
    }

    /// Back to `Running` without counting a reload as done.
    fn become_ready_silently(&mut self, pid: Pid, since: Instant, now: Instant) -> Vec<Action> {
        self.state = State::Running { pid, since };
        self.prober = self.spec.health.as_ref().map(|health| Prober {
            purpose: Purpose::Health,
            next_at: Some(now + health.interval),
            in_flight: None,
            failures: 0,
        });
        Vec::new()
    }
}

/// `base` doubled for each failure after the first, capped at `max`.
pub fn backoff_delay(base: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(32);
    base.saturating_mul(1u32 << doublings.min(31)).min(max)
}

/// `850ms`, `4.2s`, `3m12s`, `2h05m`.
pub fn human(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", d.as_secs_f64()),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
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

    // ---- readiness, liveness, reload, watch ----

    use crate::config::{Health, Probe, Ready, Reload};

    fn with_ready(ready: Ready) -> ServiceSpec {
        let mut s = spec("web");
        s.ready = Some(ready);
        s.ready_timeout = Duration::from_secs(10);
        s
    }

    fn tcp() -> Probe {
        Probe::Tcp {
            addr: "127.0.0.1:8080".into(),
        }
    }

    /// The token of the probe the actions launch.
    fn probe_token(actions: &[Action]) -> u64 {
        actions
            .iter()
            .find_map(|a| match a {
                Action::Probe { token, .. } => Some(*token),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no probe in {actions:?}"))
    }

    fn ready_msg() -> NotifyMessage {
        NotifyMessage {
            ready: true,
            ..NotifyMessage::default()
        }
    }

    #[test]
    fn notify_readiness_counts_only_the_current_run() {
        let t = Instant::now();
        let mut svc = Service::new(0, with_ready(Ready::Notify));
        svc.start(t);
        assert!(svc.spawned(Pid::from_raw(100), t).is_empty());
        assert_eq!(svc.state.name(), "starting");
        assert!(!svc.is_started());
        // A datagram from an earlier run is ignored.
        svc.notify(0, &ready_msg(), t + ms(5));
        assert!(!svc.is_ready());
        svc.notify(1, &ready_msg(), t + ms(10));
        assert!(svc.is_ready() && svc.ever_ready);
        assert_eq!(svc.deadline(), None, "no ready-timeout once ready");
    }

    #[test]
    fn not_ready_within_ready_timeout_is_a_failed_start_with_backoff() {
        let t = Instant::now();
        let mut svc = Service::new(0, with_ready(Ready::Fd(3)));
        svc.start(t);
        svc.spawned(Pid::from_raw(100), t);
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(10)));
        let t1 = t + Duration::from_secs(10);
        assert_eq!(
            svc.tick(t1),
            vec![Action::Signal {
                pid: Pid::from_raw(100),
                signal: Signal::SIGTERM,
                group: true
            }]
        );
        svc.exited(Exit::Signal(Signal::SIGTERM), t1 + ms(3));
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

    #[test]
    fn readiness_probes_retry_quickly_then_the_service_is_ready() {
        let t = Instant::now();
        let mut svc = Service::new(0, with_ready(Ready::Probe(tcp())));
        svc.start(t);
        let first = svc.spawned(Pid::from_raw(100), t);
        let token = probe_token(&first);
        assert!(
            svc.probe_result(token, Err("refused".into()), t + ms(1))
                .is_empty()
        );
        // Retried 100 ms later (50 ms doubled), not before.
        assert_eq!(svc.deadline(), Some(t + ms(101)));
        assert!(svc.tick(t + ms(100)).is_empty());
        let second = probe_token(&svc.tick(t + ms(101)));
        assert_ne!(token, second);
        // A late answer to the first probe is ignored.
        svc.probe_result(token, Ok(()), t + ms(102));
        assert!(!svc.is_ready());
        svc.probe_result(second, Ok(()), t + ms(103));
        assert!(svc.is_ready());
    }

    #[test]
    fn health_failures_in_a_row_restart_the_service_with_backoff() {
        let t = Instant::now();
        let mut s = spec("web");
        s.health = Some(Health {
            probe: tcp(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            retries: 3,
        });
        let mut svc = Service::new(0, s);
        svc.start(t);
        svc.spawned(Pid::from_raw(100), t);
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(5)));
        let mut now = t;
        // One success resets the count: fail, pass, then three fails.
        for (i, result) in [Err("x"), Ok(()), Err("x"), Err("x")]
            .into_iter()
            .enumerate()
        {
            now += Duration::from_secs(5);
            let token = probe_token(&svc.tick(now));
            now += ms(1);
            let actions = svc.probe_result(token, result.map_err(String::from), now);
            assert!(actions.is_empty(), "round {i}: {actions:?}");
        }
        now += Duration::from_secs(5);
        let token = probe_token(&svc.tick(now));
        // A probe that outlives its timeout counts as failed.
        let actions = svc.tick(now + Duration::from_secs(1));
        assert_eq!(
            actions,
            vec![Action::Signal {
                pid: Pid::from_raw(100),
                signal: Signal::SIGTERM,
                group: true
            }]
        );
        assert!(svc.probe_result(token, Ok(()), now + ms(1001)).is_empty());
        svc.exited(Exit::Signal(Signal::SIGTERM), now + ms(1100));
        match &svc.state {
            State::Backoff { why, .. } => assert_eq!(why, "health check failed 3 times: timed out"),
            other => panic!("expected backoff, got {other:?}"),
        }
    }

    #[test]
    fn signal_reload_of_a_notify_service_goes_to_mainpid_and_waits_for_ready() {
        let t = Instant::now();
        let mut s = with_ready(Ready::Notify);
        s.reload = Some(Reload::Signal(Signal::SIGUSR2));
        let mut svc = Service::new(0, s);
        svc.start(t);
        svc.spawned(Pid::from_raw(100), t);
        let told = NotifyMessage {
            ready: true,
            main_pid: Some(101),
            status: Some("up".into()),
            ..NotifyMessage::default()
        };
        svc.notify(1, &told, t);
        assert_eq!(
            svc.reload(t + ms(10)),
            vec![Action::Signal {
                pid: Pid::from_raw(101),
                signal: Signal::SIGUSR2,
                group: false
            }]
        );
        assert!(!svc.is_ready() && svc.is_started());
        let reloading = NotifyMessage {
            reloading: true,
            ..NotifyMessage::default()
        };
        svc.notify(1, &reloading, t + ms(20));
        assert_eq!(svc.last_reload, None);
        svc.notify(1, &ready_msg(), t + ms(30));
        assert!(svc.is_ready());
        assert_eq!(svc.last_reload, Some((1, Ok(()))));
        assert_eq!(svc.notify_status.as_deref(), Some("up"));
    }

    #[test]
    fn a_reload_not_ready_in_time_restarts_the_service() {
        let t = Instant::now();
        let mut s = with_ready(Ready::Notify);
        s.reload = Some(Reload::Signal(Signal::SIGHUP));
        let mut svc = Service::new(0, s);
        svc.start(t);
        svc.spawned(Pid::from_raw(100), t);
        svc.notify(1, &ready_msg(), t);
        svc.reload(t);
        let actions = svc.tick(t + Duration::from_secs(10));
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert!(matches!(
            svc.last_reload,
            Some((1, Err(ref e))) if e == "not ready again within ready-timeout 10.0s after a reload"
        ));
    }

    #[test]
    fn exec_reload_hook_then_readiness_probe() {
        let t = Instant::now();
        let mut s = with_ready(Ready::Probe(tcp()));
        s.reload = Some(Reload::Exec(vec!["/bin/true".into()]));
        let mut svc = Service::new(0, s);
        svc.start(t);
        let token = probe_token(&svc.spawned(Pid::from_raw(100), t));
        svc.probe_result(token, Ok(()), t);
        assert_eq!(svc.reload(t), vec![Action::Spawn(Target::Hook(0))]);
        svc.hook_spawned(Pid::from_raw(200));
        assert_eq!(svc.hook_pid(), Some(Pid::from_raw(200)));
        let token = probe_token(&svc.hook_exited(Ok(()), t + ms(5)));
        svc.probe_result(token, Ok(()), t + ms(6));
        assert!(svc.is_ready());
        assert_eq!(svc.last_reload, Some((1, Ok(()))));
        // A failing hook: reported, and the service stays as it was.
        svc.reload(t + ms(10));
        svc.hook_spawned(Pid::from_raw(201));
        svc.hook_exited(Err("exit 1".into()), t + ms(11));
        assert!(svc.is_ready());
        assert_eq!(
            svc.last_reload,
            Some((2, Err("reload hook failed: exit 1".into())))
        );
    }

    #[test]
    fn watched_changes_are_debounced_into_one_reload() {
        let t = Instant::now();
        let mut s = spec("web");
        s.reload = Some(Reload::Signal(Signal::SIGHUP));
        let mut svc = Service::new(0, s);
        svc.start(t);
        svc.spawned(Pid::from_raw(100), t);
        svc.changed(t);
        svc.changed(t + ms(60));
        assert!(svc.tick(t + ms(100)).is_empty(), "the burst is not over");
        assert_eq!(svc.deadline(), Some(t + ms(160)));
        let actions = svc.tick(t + ms(160));
        assert_eq!(
            actions,
            vec![Action::Signal {
                pid: Pid::from_raw(100),
                signal: Signal::SIGHUP,
                group: false
            }]
        );
        assert!(svc.tick(t + ms(500)).is_empty(), "one reload per burst");
        assert_eq!(svc.last_reload, Some((1, Ok(()))));
    }

    #[test]
    fn reload_without_a_reload_key_is_a_restart() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        assert_eq!(svc.reload(t).len(), 1);
        assert_eq!(
            svc.exited(Exit::Signal(Signal::SIGTERM), t + ms(2)),
            vec![Action::Spawn(Target::Service(0))]
        );
    }

    #[test]
    fn a_change_during_a_reload_runs_another_reload_once_ready() {
        let t = Instant::now();
        let mut s = with_ready(Ready::Notify);
        s.reload = Some(Reload::Signal(Signal::SIGUSR2));
        let mut svc = Service::new(0, s);
        svc.start(t);
        svc.spawned(Pid::from_raw(100), t);
        svc.notify(1, &ready_msg(), t);
        svc.changed(t);
        assert_eq!(svc.tick(t + ms(100)).len(), 1, "first reload");
        // The file changes again while the first reload is under way.
        svc.changed(t + ms(150));
        assert!(svc.tick(t + ms(300)).is_empty(), "not while reloading");
        svc.notify(1, &ready_msg(), t + ms(400));
        assert!(svc.is_ready());
        assert_eq!(svc.deadline(), Some(t + ms(250)), "due at once");
        assert_eq!(
            svc.tick(t + ms(400)),
            vec![Action::Signal {
                pid: Pid::from_raw(100),
                signal: Signal::SIGUSR2,
                group: false
            }]
        );
        assert_eq!(svc.reloads_asked, 2);
    }

    fn with_finish() -> ServiceSpec {
        let mut s = spec("web");
        s.finish = Some("/srv/web/finish".into());
        s
    }

    #[test]
    fn s6_finish_runs_after_each_exit_before_the_restart() {
        let t = Instant::now();
        let mut svc = running(with_finish(), t);
        assert_eq!(
            svc.exited(Exit::Signal(Signal::SIGKILL), t + ms(5)),
            vec![Action::Spawn(Target::FinishScript(0))]
        );
        assert!(!svc.is_down(), "the finish script still runs");
        svc.finish_spawned(Pid::from_raw(300));
        assert_eq!(svc.finish_pid(), Some(Pid::from_raw(300)));
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
        svc.finish_spawned(Pid::from_raw(300));
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
        svc.finish_spawned(Pid::from_raw(300));
        assert_eq!(svc.deadline(), Some(t + ms(5) + FINISH_TIMEOUT));
        assert_eq!(
            svc.tick(t + ms(5) + FINISH_TIMEOUT),
            vec![Action::Signal {
                pid: Pid::from_raw(300),
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
}
