//! One supervised service: what the user wants (`Want`), what is happening
//! (`State`), and the pure transitions between them: start, readiness,
//! liveness probes, reload, stop, restart with backoff.
//!
//! Only this module changes a service: its fields are private, and the core
//! calls named transitions (`start`, `stop`, `reaped`, `want_up`, ...) that
//! take `now` and return the `Action`s the executor must carry out. Nothing
//! here makes a syscall or reads the clock, which is what lets the tests
//! drive restarts, backoff, readiness timeouts, health failures and kill
//! escalation with a fake clock. Dependency order, shutdown order and the
//! main COMMAND are not this module's business: see `supervisor::core`.
//!
//! "What happens to a running service on event X" is answered here, one
//! file per concern: `start` (spawn, ready, backoff, a oneshot's
//! `run_timeout`), `stop` (`pre-stop`, stop, restart, SIGKILL), `exit` (an exit, its s6
//! `finish` script, the restart policy), `down` (an s6-rc oneshot's `down`
//! command, run when it is stopped),
//! `probe` (readiness and liveness probes), `reload` (reload signal or hook,
//! watched files), `notify` (sd_notify and notification-fd readiness),
//! `define` (a config reload's new definition); `services` holds them all
//! by `ServiceId`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::calendar::Wall;
use crate::config::{Condition, ServiceSpec};
use crate::event::{Action, Child, ServiceId};
use crate::exit::Exit;

mod define;
mod down;
mod exit;
mod notify;
mod probe;
mod reload;
mod scheduled;
mod services;
mod start;
mod stop;

use probe::Prober;
pub use scheduled::{LastRun, Timer};
pub use services::Services;
use stop::PreStopEnd;

/// Changes to watched files are debounced: the reload runs this long after
/// the last change of a burst.
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(100);
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
    /// Being stopped: SIGKILL follows at `kill_at` unless `killed`
    /// already; then `then`. The stop signal was sent, or waits for the
    /// `pre_stop` under way.
    Stopping {
        pid: Pid,
        kill_at: Instant,
        killed: bool,
        then: Then,
        pre_stop: Option<PreStopping>,
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
    /// A oneshot that ran to completion is being stopped: its s6-rc `down`
    /// command runs (killed at `kill_at` unless `killed` already); then
    /// `Stopped` (or `Idle`, if wanted up again meanwhile).
    RunningDown {
        script: Hook,
        kill_at: Instant,
        killed: bool,
    },
    /// Gave up: `max-restarts` reached, or a failure its policy does not restart.
    Failed { reason: String },
    /// A scheduled service between runs: its timer (`Service::timer`)
    /// starts the next one.
    Scheduled,
}

/// The `reload = { exec = [...] }` hook of a reload in flight (and the s6
/// `finish` script of a `Finishing` service, the `down` command of a
/// `RunningDown` one, the `pre-stop` hook of a `Stopping` one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// No hook (a signal reload, or one the service announced with RELOADING=1).
    None,
    Spawning,
    Running(Pid),
    /// Succeeded; now waiting for readiness.
    Done,
}

/// A `pre-stop` under way: the stop signal goes out when it ends, and at
/// `until` at the latest (its `timeout` or `delay`, never past the stop's
/// `kill_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreStopping {
    /// Its `exec` hook; `Hook::None` for a `delay`.
    pub hook: Hook,
    pub since: Instant,
    pub until: Instant,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle | State::Stopped => "stopped",
            State::Spawning | State::Starting { .. } => "starting",
            State::Running { .. } | State::Reloading { .. } => "running",
            State::Stopping { .. } | State::Finishing { .. } | State::RunningDown { .. } => {
                "stopping"
            }
            State::Backoff { .. } => "backoff",
            State::Exited => "exited",
            State::Failed { .. } => "failed",
            State::Scheduled => "scheduled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Service {
    id: ServiceId,
    /// Shared with the spawn actions that start its processes.
    spec: Arc<ServiceSpec>,
    want: Want,
    state: State,
    /// Successful spawns in this run; restarts are `starts - 1`. Also the
    /// "run" number that readiness messages carry.
    starts: u32,
    /// Consecutive exits (or failed starts) before the service stayed up
    /// `restart-delay-max`: drives the backoff and `max-restarts`.
    failures: u32,
    last_exit: Option<Exit>,
    /// When its last process ended (or its last spawn failed).
    down_at: Option<Instant>,
    /// When its current run became ready.
    ready_at: Option<Instant>,
    /// The last stop on request needed SIGKILL (it outlived `stop-timeout`).
    stop_escalated: bool,
    /// Has been ready at least once in this run (the main COMMAND's wait).
    ever_ready: bool,
    /// Readiness or liveness probes of the current state, if any.
    prober: Option<Prober>,
    probes_sent: u32,
    /// `MAINPID=` from sd_notify: where a reload signal goes.
    main_pid: Option<Pid>,
    /// The last `STATUS=` from sd_notify.
    notify_status: Option<String>,
    /// A debounced reload (watched file changed) is due then.
    reload_due: Option<Instant>,
    /// Reloads asked for, and the number and outcome of the last one finished.
    reloads_asked: u32,
    last_reload: Option<(u32, Result<(), String>)>,
    /// A changed definition (config reload), applied at the next spawn.
    next_spec: Option<ServiceSpec>,
    /// Removed from the definitions: stopped, then hidden.
    removed: bool,
    /// A oneshot's `run_timeout` deadline for its run in flight; `None`
    /// once passed (the run was killed: `timed_out`).
    run_by: Option<Instant>,
    /// The run in flight was killed at its `run_timeout`: a failed run.
    timed_out: bool,
    /// A oneshot exited 0 in this run (it came up).
    ran_ok: bool,
    /// Its first attempt to come up in this run failed (see `UpFailure`).
    up_failure: Option<UpFailure>,
    /// How its last `down` command ended (`Err`: could not be started).
    last_down: Option<Result<Exit, String>>,
    /// A health probe of its current run passed (`after` = "healthy").
    health_passed: bool,
    /// A scheduled service: its timer, the last tick taken, its runs
    /// (`scheduled.rs`).
    timer: Timer,
    last_tick: Option<Wall>,
    run_started: Option<Instant>,
    last_run: Option<LastRun>,
    runs_ended: u32,
    skipped_ticks: u32,
}

/// A service's first attempt to come up in this run failed, before it was
/// ever up: a oneshot's run ended in a failure (non-zero exit, killed, its
/// `run_timeout` passed, could not be spawned); a longrun exited, could not
/// be spawned, or was not ready within `ready-timeout` before it was ready
/// once. (A longrun without readiness is up once spawned.) What the core
/// does with it for an s6-rc boot step: `S6_BEHAVIOUR_IF_STAGE2_FAILS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpFailure {
    pub reason: String,
    /// The exit code the container ends with, if this stops it: the run's
    /// own non-zero code (128+N when a signal killed it), 1 when corral
    /// ended it (readiness or run timeout) or it exited 0 before it was ready.
    pub code: i32,
}

impl Service {
    pub fn new(id: ServiceId, spec: ServiceSpec) -> Service {
        let want = if spec.enabled { Want::Up } else { Want::Down };
        Service {
            id,
            spec: Arc::new(spec),
            want,
            state: State::Idle,
            starts: 0,
            failures: 0,
            last_exit: None,
            down_at: None,
            ready_at: None,
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
            run_by: None,
            timed_out: false,
            ran_ok: false,
            up_failure: None,
            last_down: None,
            health_passed: false,
            timer: Timer::Off,
            last_tick: None,
            run_started: None,
            last_run: None,
            runs_ended: 0,
            skipped_ticks: 0,
        }
    }

    // ---- what the rest of corral may read ----

    pub fn id(&self) -> ServiceId {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The definition it runs with.
    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    /// The definition it runs with next: a pending change, or its own.
    pub fn current_spec(&self) -> &ServiceSpec {
        self.next_spec.as_ref().unwrap_or(&self.spec)
    }

    pub fn want(&self) -> Want {
        self.want
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Successful spawns in this run: the number of the current run.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn restarts(&self) -> u32 {
        self.starts.saturating_sub(1)
    }

    pub fn last_exit(&self) -> Option<Exit> {
        self.last_exit
    }

    /// When its last process ended (s6-svstat's down time).
    pub fn down_at(&self) -> Option<Instant> {
        self.down_at
    }

    /// When its current run became ready (s6-svstat's ready time).
    pub fn ready_at(&self) -> Option<Instant> {
        self.ready_at
    }

    /// The last stop on request needed SIGKILL.
    pub fn stop_escalated(&self) -> bool {
        self.stop_escalated
    }

    /// Has been ready at least once in this run.
    pub fn ever_ready(&self) -> bool {
        self.ever_ready
    }

    /// The last `STATUS=` from sd_notify.
    pub fn notify_status(&self) -> Option<&str> {
        self.notify_status.as_deref()
    }

    /// Reloads asked for so far.
    pub fn reloads_asked(&self) -> u32 {
        self.reloads_asked
    }

    /// The number and outcome of the last reload finished.
    pub fn last_reload(&self) -> Option<&(u32, Result<(), String>)> {
        self.last_reload.as_ref()
    }

    /// Removed from the definitions by a config reload.
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// Changed by a config reload and not started with the change yet.
    pub fn has_pending_definition(&self) -> bool {
        self.next_spec.is_some()
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

    /// Its process runs (starting, running, reloading), and is not being stopped.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            State::Starting { .. } | State::Running { .. } | State::Reloading { .. }
        )
    }

    /// No process, and none on its way (a `down` command running counts
    /// as one).
    pub fn is_down(&self) -> bool {
        self.pid().is_none()
            && !matches!(
                self.state,
                State::Spawning | State::Finishing { .. } | State::RunningDown { .. }
            )
    }

    /// Down, and nothing left to undo: no `down` command still to run
    /// (what a stop, and the shutdown's order, wait for).
    pub fn is_fully_down(&self) -> bool {
        self.is_down() && !self.has_down_to_run()
    }

    /// Its first attempt to come up in this run failed (see `UpFailure`).
    pub fn up_failure(&self) -> Option<&UpFailure> {
        self.up_failure.as_ref()
    }

    /// How its last `down` command ended (`Err`: could not be started).
    pub fn last_down(&self) -> Option<&Result<Exit, String>> {
        self.last_down.as_ref()
    }

    /// Its s6 `finish` script runs (or is on its way) after an exit: down,
    /// but not finished (s6-svc's `-wD`).
    pub fn is_finishing(&self) -> bool {
        matches!(self.state, State::Finishing { .. })
    }

    /// Started, in the sense of `after` and of `ctl wait`: up and ready
    /// (a reload in flight does not take that back), or for a oneshot, exited 0.
    pub fn is_started(&self) -> bool {
        if self.is_scheduled() {
            return self.is_armed();
        }
        if self.spec.oneshot {
            self.state == State::Exited
        } else {
            matches!(self.state, State::Running { .. } | State::Reloading { .. })
        }
    }

    /// A oneshot whose run is over and that nothing runs again by itself:
    /// exited with success, or ended for good (any exit).
    pub fn has_completed(&self) -> bool {
        self.spec.oneshot && (self.state == State::Exited || self.ended_for_good())
    }

    /// Whether it is as far as a dependant waiting for `condition` needs
    /// (`after`, SPEC section 11). A oneshot's success is `Exited`, which
    /// only `after_exit` (and an empty `up`) decides.
    pub fn meets(&self, condition: Condition) -> bool {
        match condition {
            Condition::Started => self.is_live() || self.has_completed(),
            Condition::Ready => self.is_started(),
            Condition::Succeeded => self.spec.oneshot && self.is_started(),
            Condition::Healthy => self.is_started() && self.health_passed,
            Condition::Completed => self.has_completed(),
        }
    }

    /// Ready right now (`/readyz`, `ctl status`): a reload in flight is not.
    pub fn is_ready(&self) -> bool {
        if self.is_scheduled() {
            return self.is_armed();
        }
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
                pre_stop: Some(pre_stop),
                ..
            } => Some(pre_stop.until),
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
            }
            | State::RunningDown {
                kill_at,
                killed: false,
                script: Hook::Running(_),
            } => Some(kill_at),
            _ => None,
        };
        let run = match self.state {
            State::Starting { .. } | State::Running { .. } => self.run_by,
            _ => None,
        };
        let probe = self.prober.as_ref().and_then(Prober::deadline);
        let reload = match self.state {
            State::Running { .. } => self.reload_due,
            _ => None,
        };
        [state, run, probe, reload, self.timer_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- the transitions the core calls ----

    /// One of its processes (`child`) was spawned.
    pub fn on_spawned(&mut self, child: Child, pid: Pid, now: Instant) -> Vec<Action> {
        match child {
            Child::Service => self.spawned(pid, now),
            Child::FinishScript => {
                self.finish_spawned(pid);
                Vec::new()
            }
            Child::Hook => {
                self.hook_spawned(pid);
                Vec::new()
            }
            Child::Probe => {
                self.probe_spawned(pid);
                Vec::new()
            }
            Child::Down => {
                self.down_spawned(pid);
                Vec::new()
            }
            Child::PreStop => self.pre_stop_spawned(pid),
        }
    }

    /// One of its processes (`child`) could not be spawned (exit `code`).
    pub fn on_spawn_failed(
        &mut self,
        child: Child,
        error: &str,
        code: i32,
        now: Instant,
    ) -> Vec<Action> {
        match child {
            Child::Service => self.spawn_failed(error, code, now),
            Child::FinishScript => self.finish_failed_to_start(error, now),
            Child::Hook => self.hook_exited(Err(format!("could not be started: {error}")), now),
            Child::Probe => self.probe_failed_to_start(error, now),
            Child::Down => self.down_exited(Err(error.to_string())),
            Child::PreStop => self.pre_stop_failed_to_start(error),
        }
    }

    /// One of its processes (`child`, `pid`) was reaped. `None`: not a
    /// process this service still waits for (one it gave up on, e.g. a
    /// probe it cancelled and killed): the caller counts it as an orphan.
    pub fn reaped(
        &mut self,
        child: Child,
        pid: Pid,
        exit: Exit,
        now: Instant,
    ) -> Option<Vec<Action>> {
        match child {
            Child::Service if self.pid() == Some(pid) => Some(self.exited(exit, now)),
            Child::FinishScript if self.finish_pid() == Some(pid) => {
                Some(self.finish_exited(Some(exit), now))
            }
            Child::Hook if self.hook_pid() == Some(pid) => {
                let result = if exit.success() {
                    Ok(())
                } else {
                    Err(exit.to_string())
                };
                Some(self.hook_exited(result, now))
            }
            Child::Probe if self.probe_pid() == Some(pid) => Some(self.probe_exited(exit, now)),
            Child::Down if self.down_pid() == Some(pid) => Some(self.down_exited(Ok(exit))),
            Child::PreStop if self.pre_stop_pid() == Some(pid) => {
                Some(self.end_pre_stop(PreStopEnd::Exited(exit)))
            }
            _ => None,
        }
    }

    /// Deadlines that have passed: a retry after backoff, SIGKILL, a start
    /// or reload not ready in time, a oneshot's run or `down` that took too
    /// long, a probe to run or that took too long, a debounced reload.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = self.timer_due(now);
        actions.extend(self.tick_state(now));
        actions
    }

    fn tick_state(&mut self, now: Instant) -> Vec<Action> {
        if self.run_by.is_some_and(|at| now >= at)
            && matches!(self.state, State::Starting { .. } | State::Running { .. })
        {
            return self.run_overdue();
        }
        match self.state {
            State::Backoff { retry_at, .. } if now >= retry_at && self.want == Want::Up => {
                return self.spawn();
            }
            State::Stopping {
                pre_stop: Some(pre_stop),
                kill_at,
                ..
            } if now >= pre_stop.until => {
                let mut actions = self.end_pre_stop(PreStopEnd::TimeUp);
                if now >= kill_at {
                    actions.extend(self.stop_overdue());
                }
                return actions;
            }
            State::Stopping {
                kill_at,
                killed: false,
                ..
            } if now >= kill_at => return self.stop_overdue(),
            State::Finishing {
                script: Hook::Running(_),
                kill_at,
                killed: false,
                ..
            } if now >= kill_at => return self.finish_overdue(),
            State::RunningDown {
                script: Hook::Running(_),
                kill_at,
                killed: false,
            } if now >= kill_at => return self.down_overdue(),
            State::Starting { ready_by, .. } if now >= ready_by => {
                return self.start_overdue(now);
            }
            State::Reloading { ready_by, .. } if now >= ready_by => {
                return self.reload_overdue(now);
            }
            _ => {}
        }
        let mut actions = self.reload_if_due(now);
        actions.extend(self.probe_due(now));
        actions
    }

    /// Want it up; make it startable again if it ended (stopped, failed, in
    /// backoff: `schedule` starts it in dependency order). `explicit`: named
    /// by the operator, so a finished oneshot runs again.
    pub fn want_up(&mut self, explicit: bool) {
        self.want = Want::Up;
        let restartable = matches!(
            self.state,
            State::Stopped | State::Failed { .. } | State::Backoff { .. }
        ) || (explicit && self.state == State::Exited);
        if restartable {
            self.state = State::Idle;
            self.failures = 0;
        }
        if explicit {
            // Named by the operator: a fresh attempt, no longer a failed boot step.
            self.up_failure = None;
        }
    }

    /// Want it down: `schedule` sends the stop signal, dependants first.
    pub fn want_down(&mut self) {
        self.want = Want::Down;
    }

    /// The shutdown began: nothing starts, restarts or reloads from now on.
    pub fn wind_down(&mut self) {
        self.want = Want::Down;
        self.reload_due = None;
    }

    fn signal(&self, pid: Pid, signal: Signal) -> Action {
        Action::Signal {
            pid,
            signal,
            group: self.spec.kill_group,
        }
    }
}

/// `base` doubled for each failure after the first, capped at `max`.
pub fn backoff_delay(base: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(32);
    base.saturating_mul(1u32 << doublings.min(31)).min(max)
}

mod testing;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

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
    fn disabled_services_are_not_wanted() {
        let mut s = spec("web");
        s.enabled = false;
        let svc = Service::new(id(0), s);
        assert_eq!(svc.want, Want::Down);
        assert_eq!(svc.state, State::Idle);
    }

    #[test]
    fn each_process_of_a_service_is_reaped_only_while_it_is_awaited() {
        let t = std::time::Instant::now();
        let mut svc = running(with_finish(), t);
        // Not its pid: an orphan for the caller, and the service is untouched.
        assert_eq!(svc.reaped(Child::Service, pid(999), Exit::Code(0), t), None);
        assert_eq!(svc.pid(), Some(pid(100)));
        let actions = svc.reaped(Child::Service, pid(100), Exit::Code(1), t);
        assert_eq!(
            actions.as_deref().map(targets),
            Some(vec![crate::event::Target::FinishScript(id(0))])
        );
        svc.on_spawned(Child::FinishScript, pid(300), t);
        assert_eq!(
            svc.reaped(Child::Hook, pid(300), Exit::Code(0), t),
            None,
            "the finish script is no hook"
        );
        assert!(
            svc.reaped(Child::FinishScript, pid(300), Exit::Code(0), t)
                .is_some()
        );
        assert_eq!(svc.state.name(), "backoff");
    }

    /// Which `after` conditions the service meets, in `Condition::NAMES` order.
    fn conditions(svc: &Service) -> Vec<&'static str> {
        Condition::NAMES
            .iter()
            .filter(|&&(_, c)| svc.meets(c))
            .map(|&(name, _)| name)
            .collect()
    }

    #[test]
    fn a_longrun_is_started_when_spawned_then_ready_then_healthy_once_a_probe_passed() {
        let t = std::time::Instant::now();
        let mut s = with_ready(crate::config::Ready::Notify);
        s.health = Some(crate::config::Health {
            probe: tcp(),
            interval: ms(1000),
            timeout: ms(500),
            retries: 2,
        });
        let mut svc = Service::new(id(0), s);
        assert!(conditions(&svc).is_empty());
        svc.start(t);
        assert!(conditions(&svc).is_empty(), "a spawn in flight is no start");
        svc.spawned(pid(100), t);
        assert_eq!(conditions(&svc), ["started"]);
        svc.notify(1, &ready_msg(), t);
        assert_eq!(conditions(&svc), ["started", "ready"]);
        // A failed probe first: not healthy yet.
        let token = probe_token(&svc.tick(t + ms(1000)));
        svc.probe_result(token, Err("refused".into()), t + ms(1001));
        assert_eq!(conditions(&svc), ["started", "ready"]);
        let token = probe_token(&svc.tick(t + ms(2001)));
        svc.probe_result(token, Ok(()), t + ms(2002));
        assert_eq!(conditions(&svc), ["started", "ready", "healthy"]);
        // A new run starts over: its own first probe must pass.
        svc.exited(Exit::Code(1), t + ms(3000));
        assert!(conditions(&svc).is_empty(), "in backoff: nothing");
        svc.tick(retry_at(&svc));
        svc.spawned(pid(101), t + ms(4000));
        svc.notify(2, &ready_msg(), t + ms(4000));
        assert_eq!(conditions(&svc), ["started", "ready"]);
    }

    #[test]
    fn a_oneshot_completes_on_any_exit_and_succeeds_only_with_success() {
        let t = std::time::Instant::now();
        let mut s = spec("migrate");
        s.oneshot = true;
        s.restart = crate::config::Restart::Never;
        let mut svc = running(s, t);
        assert_eq!(conditions(&svc), ["started"]);
        svc.exited(Exit::Code(1), t + ms(5));
        assert_eq!(svc.state.name(), "failed");
        assert_eq!(conditions(&svc), ["started", "completed"]);
        // Run again by the operator: not complete until it ends again.
        svc.want_up(true);
        assert!(conditions(&svc).is_empty());
        svc.start(t + ms(10));
        svc.spawned(pid(101), t + ms(10));
        assert_eq!(conditions(&svc), ["started"]);
        svc.exited(Exit::Code(0), t + ms(20));
        assert_eq!(
            conditions(&svc),
            ["started", "ready", "completed", "succeeded"]
        );
    }

    #[test]
    fn a_oneshot_that_will_run_again_has_not_completed() {
        let t = std::time::Instant::now();
        let mut s = spec("migrate");
        s.oneshot = true;
        s.restart = crate::config::Restart::OnFailure;
        let mut svc = running(s, t);
        svc.exited(Exit::Code(2), t + ms(5));
        assert_eq!(svc.state.name(), "backoff");
        assert!(conditions(&svc).is_empty());
        // Stopped on request (wanted down): not a completion either.
        let mut s = spec("setup");
        s.oneshot = true;
        let mut svc = running(s, t);
        svc.want_down();
        svc.stop(t, None);
        svc.exited(Exit::Signal(nix::sys::signal::Signal::SIGTERM), t + ms(1));
        assert_eq!(svc.state, State::Stopped);
        assert!(conditions(&svc).is_empty());
    }

    #[test]
    fn want_up_makes_an_ended_service_startable_and_want_down_only_wants() {
        let t = std::time::Instant::now();
        let mut s = spec("migrate");
        s.oneshot = true;
        let mut svc = running(s, t);
        svc.exited(Exit::Code(0), t);
        assert_eq!(svc.state, State::Exited);
        svc.want_up(false);
        assert_eq!(svc.state, State::Exited, "a dependency's run stays done");
        svc.want_up(true);
        assert_eq!(svc.state, State::Idle, "named by the operator: runs again");

        let mut web = running(spec("web"), t);
        web.want_down();
        assert_eq!(web.want, Want::Down);
        assert!(web.pid().is_some(), "schedule stops it, not want_down");
        web.changed(t);
        web.wind_down();
        assert_eq!(web.reload_due, None, "no reload once shutting down");
    }
}
