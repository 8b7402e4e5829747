//! The whole life of a corral run as one pure state machine.
//!
//! `Supervisor` owns every `Service`, the main COMMAND and the init / finish
//! scripts, and moves through `Phase`s: init scripts, services up, ordered
//! stop, finish scripts, drain (every leftover process), done. Like
//! `service`, it never makes a syscall and never reads the clock: events and
//! `now` in, actions out. The executor in `supervisor::run` is its only caller.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use crate::config::Spec;
use crate::event::{Action, Event, Target};
use crate::exit::Exit;
use crate::service::{Service, State, Want};

mod reconfigure;
mod requests;

use requests::Pending;

/// The main COMMAND gets this long after its stop signal before SIGKILL, like
/// a service with the default `stop-timeout` (capped by the shutdown budget).
pub const MAIN_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// After the final SIGKILL, how long to wait for the last reaps before
/// exiting anyway (a process stuck in uninterruptible sleep cannot be waited for).
pub const GIVE_UP_AFTER_KILL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainState {
    Waiting,
    /// The spawn was requested; its result has not come back yet.
    Spawning,
    Running {
        pid: Pid,
    },
    Stopping {
        pid: Pid,
        kill_at: Instant,
        killed: bool,
    },
    Ended,
}

#[derive(Debug, Clone)]
pub struct Main {
    pub argv: Vec<String>,
    pub state: MainState,
}

impl Main {
    fn pid(&self) -> Option<Pid> {
        match self.state {
            MainState::Running { pid } | MainState::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }
}

/// What a failing init script does (s6-overlay's S6_BEHAVIOUR_IF_STAGE2_FAILS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitFailure {
    /// Stop the container with the script's code (SPEC; the default).
    #[default]
    Stop,
    /// Go on with the next script and the services (logged as a warning).
    Continue,
}

/// Init or finish scripts: run one at a time, in order.
#[derive(Debug, Clone, Default)]
pub struct Scripts {
    pub paths: Vec<PathBuf>,
    next: usize,
    /// A script's spawn was requested and it has not ended yet.
    busy: bool,
    running: Option<Pid>,
    killed: bool,
}

impl Scripts {
    pub fn new(paths: Vec<PathBuf>) -> Scripts {
        Scripts {
            paths,
            ..Scripts::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running init scripts.
    Init,
    /// Services supervised; the main COMMAND starts once they are all started.
    Up,
    /// Stopping the main COMMAND, then services, dependants first.
    Stopping,
    /// Running finish scripts.
    Finish,
    /// Every remaining process got SIGTERM (and SIGKILL once `killed`);
    /// waiting until none is left.
    Drain {
        killed: bool,
    },
    Done,
}

#[derive(Debug)]
pub struct Supervisor {
    pub services: Vec<Service>,
    /// `after` as indices into `services`.
    deps: Vec<Vec<usize>>,
    pub main: Option<Main>,
    pub init: Scripts,
    pub finish: Scripts,
    pub phase: Phase,
    /// The first cause of the shutdown decides the exit status.
    exit_code: Option<i32>,
    shutdown_timeout: Duration,
    /// The end of the shutdown budget, once a shutdown has begun.
    shutdown_at: Option<Instant>,
    /// The signal that started the shutdown, passed on to the main COMMAND.
    shutdown_signal: Signal,
    give_up_at: Option<Instant>,
    /// Control requests answered once what they asked for is done.
    pending: Vec<Pending>,
    pub init_failure: InitFailure,
    pub orphans_reaped: u64,
}

impl Supervisor {
    pub fn new(
        spec: Spec,
        main: Option<Vec<String>>,
        init: Vec<PathBuf>,
        finish: Vec<PathBuf>,
        shutdown_timeout: Duration,
    ) -> Supervisor {
        let names: Vec<String> = spec.services.iter().map(|s| s.name.clone()).collect();
        let deps = spec
            .services
            .iter()
            .map(|s| {
                s.after
                    .iter()
                    .filter_map(|dep| names.iter().position(|n| n == dep))
                    .collect()
            })
            .collect();
        let services = spec
            .services
            .into_iter()
            .enumerate()
            .map(|(id, s)| Service::new(id, s))
            .collect();
        Supervisor {
            services,
            deps,
            main: main.map(|argv| Main {
                argv,
                state: MainState::Waiting,
            }),
            init: Scripts::new(init),
            finish: Scripts::new(finish),
            phase: Phase::Init,
            exit_code: None,
            shutdown_timeout,
            shutdown_at: None,
            shutdown_signal: Signal::SIGTERM,
            give_up_at: None,
            pending: Vec::new(),
            init_failure: InitFailure::Stop,
            orphans_reaped: 0,
        }
    }

    /// Begin: the first init script, or straight to the services.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = self.next_init();
        self.advance(now, &mut actions);
        actions
    }

    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = match event {
            Event::Signal(signal) => self.on_signal(signal, now),
            Event::Exited { pid, exit } => self.on_exit(pid, exit, now),
            Event::NoChildren => match self.phase {
                Phase::Drain { .. } => self.done(),
                _ => Vec::new(),
            },
            Event::Spawned { target, pid } => self.on_spawned(target, pid, now),
            Event::SpawnFailed {
                target,
                error,
                code,
            } => self.on_spawn_failed(target, &error, code, now),
            Event::Tick => self.on_tick(now),
            Event::Request { id, request } => self.on_request(id, request, now),
            Event::Cancel { id } => {
                self.pending.retain(|p| p.id() != id);
                Vec::new()
            }
            Event::Notify {
                service,
                run,
                message,
            } => self.with_service(service, now, |svc, now| svc.notify(run, &message, now)),
            Event::FdReady { service, run } => {
                self.with_service(service, now, |svc, now| svc.fd_ready(run, now))
            }
            Event::ProbeDone { token, result } => {
                // The token's high half is the service's index (see `Service::probe_due`).
                let service = usize::try_from(token >> 32).unwrap_or(usize::MAX);
                self.with_service(service, now, |svc, now| {
                    svc.probe_result(token, result, now)
                })
            }
            Event::Changed { service } => {
                let up = self.phase == Phase::Up;
                self.with_service(service, now, |svc, now| {
                    // While starting or reloading too: the change may come after
                    // the service read its files; the reload runs once it is ready.
                    let live = matches!(
                        svc.state,
                        State::Starting { .. } | State::Running { .. } | State::Reloading { .. }
                    );
                    if !svc.removed && live && up {
                        debug!(service = %svc.spec.name, "watched file changed");
                        svc.changed(now);
                    }
                    Vec::new()
                })
            }
            Event::Loaded { id, result } => self.on_loaded(id, result, now),
        };
        self.advance(now, &mut actions);
        actions
    }

    /// Run a transition of service `i`, then the checks every service change needs.
    fn with_service(
        &mut self,
        i: usize,
        now: Instant,
        transition: impl FnOnce(&mut Service, Instant) -> Vec<Action>,
    ) -> Vec<Action> {
        match self.services.get_mut(i) {
            Some(svc) => {
                let actions = transition(svc, now);
                self.check_essential(i, now, actions)
            }
            None => Vec::new(),
        }
    }

    /// The earliest moment something is due; `None`: wait for events only.
    pub fn next_deadline(&self) -> Option<Instant> {
        let services = self.services.iter().filter_map(Service::deadline);
        let main = self.main.as_ref().and_then(|m| match m.state {
            MainState::Stopping {
                kill_at,
                killed: false,
                ..
            } => Some(kill_at),
            _ => None,
        });
        let budget = match self.phase {
            Phase::Stopping | Phase::Finish
                if self.init.running.is_some() || self.finish.running.is_some() =>
            {
                self.shutdown_at
            }
            Phase::Drain { killed: false } => self.shutdown_at,
            Phase::Drain { killed: true } => self.give_up_at,
            _ => None,
        };
        let requests = self.pending.iter().filter_map(Pending::deadline);
        services.chain(main).chain(budget).chain(requests).min()
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn exit_code(&self) -> i32 {
        self.exit_code.unwrap_or(0)
    }

    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Init => "init",
            Phase::Up => "up",
            Phase::Stopping => "stopping",
            Phase::Finish => "finish",
            Phase::Drain { .. } => "drain",
            Phase::Done => "done",
        }
    }

    pub fn main_pid(&self) -> Option<Pid> {
        self.main.as_ref().and_then(Main::pid)
    }

    fn set_exit_code(&mut self, code: i32) {
        self.exit_code.get_or_insert(code);
    }

    fn on_signal(&mut self, signal: Signal, now: Instant) -> Vec<Action> {
        match signal {
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => match self.phase {
                Phase::Init | Phase::Up => {
                    info!(signal = signal.as_str(), "shutting down");
                    self.shutdown_signal = signal;
                    self.begin_shutdown(now)
                }
                _ => {
                    info!(signal = signal.as_str(), "already shutting down");
                    Vec::new()
                }
            },
            Signal::SIGUSR1 | Signal::SIGUSR2 | Signal::SIGWINCH => match self.main_pid() {
                Some(pid) => vec![Action::Signal {
                    pid,
                    signal,
                    group: true,
                }],
                None => {
                    info!(
                        signal = signal.as_str(),
                        "no main command to forward to, ignored"
                    );
                    Vec::new()
                }
            },
            Signal::SIGHUP => match self.phase {
                Phase::Up => {
                    info!("SIGHUP: reading the service definitions again");
                    vec![Action::LoadConfig { id: None }]
                }
                _ => {
                    info!("SIGHUP ignored: not running services right now");
                    Vec::new()
                }
            },
            other => {
                debug!(signal = other.as_str(), "signal ignored");
                Vec::new()
            }
        }
    }

    fn on_exit(&mut self, pid: Pid, exit: Exit, now: Instant) -> Vec<Action> {
        if self.init.running == Some(pid) {
            self.init.running = None;
            self.init.busy = false;
            if exit.success() || self.phase != Phase::Init {
                return self.next_init();
            }
            let script = self.script_path(Target::Init(self.init.next.saturating_sub(1)));
            if self.init_failure == InitFailure::Continue {
                warn!(%script, %exit, "init script failed; going on (S6_BEHAVIOUR_IF_STAGE2_FAILS)");
                return self.next_init();
            }
            error!(%script, %exit, "init script failed");
            self.set_exit_code(exit.code());
            return self.begin_shutdown(now);
        }
        if self.finish.running == Some(pid) {
            self.finish.running = None;
            self.finish.busy = false;
            let script = self.script_path(Target::Finish(self.finish.next.saturating_sub(1)));
            if exit.success() {
                debug!(%script, "finish script done");
            } else {
                warn!(%script, %exit, "finish script failed");
            }
            return Vec::new();
        }
        if let Some(main) = self.main.as_mut()
            && main.pid() == Some(pid)
        {
            info!(pid = pid.as_raw(), %exit, "main command exited");
            main.state = MainState::Ended;
            self.set_exit_code(exit.code());
            return match self.phase {
                Phase::Up => self.begin_shutdown(now),
                _ => Vec::new(),
            };
        }
        if let Some(i) = self.services.iter().position(|s| s.pid() == Some(pid)) {
            let actions = self.services[i].exited(exit, now);
            return self.check_essential(i, now, actions);
        }
        if let Some(i) = self
            .services
            .iter()
            .position(|s| s.probe_pid() == Some(pid))
        {
            let token = self.services[i].probe_token().unwrap_or_default();
            let result = if exit.success() {
                Ok(())
            } else {
                Err(format!("probe command: {exit}"))
            };
            return self.with_service(i, now, |svc, now| svc.probe_result(token, result, now));
        }
        if let Some(i) = self
            .services
            .iter()
            .position(|s| s.finish_pid() == Some(pid))
        {
            return self.with_service(i, now, |svc, now| svc.finish_exited(Some(exit), now));
        }
        if let Some(i) = self.services.iter().position(|s| s.hook_pid() == Some(pid)) {
            let result = if exit.success() {
                Ok(())
            } else {
                Err(exit.to_string())
            };
            return self.with_service(i, now, |svc, now| svc.hook_exited(result, now));
        }
        self.orphans_reaped += 1;
        debug!(pid = pid.as_raw(), %exit, "orphan reaped");
        Vec::new()
    }

    /// An essential service that ended for good takes the container down with it.
    fn check_essential(&mut self, i: usize, now: Instant, mut actions: Vec<Action>) -> Vec<Action> {
        let svc = &self.services[i];
        if svc.spec.essential && svc.ended_for_good() && self.phase == Phase::Up {
            let code = svc.last_exit.map_or(1, Exit::code);
            error!(service = %svc.spec.name, code, "essential service ended, shutting down");
            self.set_exit_code(code);
            actions.extend(self.begin_shutdown(now));
        }
        actions
    }

    fn on_spawned(&mut self, target: Target, pid: Pid, now: Instant) -> Vec<Action> {
        match target {
            Target::Service(i) => {
                return self.with_service(i, now, |svc, now| svc.spawned(pid, now));
            }
            Target::Hook(i) => {
                if let Some(svc) = self.services.get_mut(i) {
                    svc.hook_spawned(pid);
                }
            }
            Target::Probe(i) => {
                if let Some(svc) = self.services.get_mut(i) {
                    svc.probe_spawned(pid);
                }
            }
            Target::FinishScript(i) => {
                if let Some(svc) = self.services.get_mut(i) {
                    svc.finish_spawned(pid);
                }
            }
            Target::Main => {
                if let Some(main) = self.main.as_mut() {
                    info!(pid = pid.as_raw(), "main command started");
                    main.state = MainState::Running { pid };
                }
            }
            Target::Init(_) => self.init.running = Some(pid),
            Target::Finish(_) => self.finish.running = Some(pid),
        }
        Vec::new()
    }

    fn on_spawn_failed(
        &mut self,
        target: Target,
        error: &str,
        code: i32,
        now: Instant,
    ) -> Vec<Action> {
        match target {
            Target::Service(i) => match self.services.get_mut(i) {
                Some(svc) => {
                    svc.last_exit = Some(Exit::Code(code));
                    let actions = svc.spawn_failed(error, now);
                    self.check_essential(i, now, actions)
                }
                None => Vec::new(),
            },
            Target::Main => {
                error!(%error, "main command could not be started");
                if let Some(main) = self.main.as_mut() {
                    main.state = MainState::Ended;
                }
                self.set_exit_code(code);
                self.begin_shutdown(now)
            }
            Target::Init(_) => {
                self.init.busy = false;
                if self.init_failure == InitFailure::Continue {
                    warn!(script = %self.script_path(target), %error, "init script could not be started; going on");
                    return self.next_init();
                }
                error!(script = %self.script_path(target), %error, "init script could not be started");
                self.set_exit_code(code);
                self.begin_shutdown(now)
            }
            Target::Finish(_) => {
                self.finish.busy = false;
                warn!(script = %self.script_path(target), %error, "finish script could not be started");
                Vec::new()
            }
            Target::Hook(i) => {
                let why = format!("could not be started: {error}");
                self.with_service(i, now, |svc, now| svc.hook_exited(Err(why), now))
            }
            Target::FinishScript(i) => {
                warn!(%error, "finish script could not be started");
                self.with_service(i, now, |svc, now| svc.finish_exited(None, now))
            }
            Target::Probe(i) => {
                let why = format!("probe command could not be started: {error}");
                self.with_service(i, now, |svc, now| {
                    let token = svc.probe_token().unwrap_or_default();
                    svc.probe_result(token, Err(why), now)
                })
            }
        }
    }

    fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions: Vec<Action> = self.services.iter_mut().flat_map(|s| s.tick(now)).collect();
        if let Some(main) = self.main.as_mut()
            && let MainState::Stopping {
                pid,
                kill_at,
                killed: false,
            } = main.state
            && now >= kill_at
        {
            warn!(
                pid = pid.as_raw(),
                "main command did not stop in time, sending SIGKILL"
            );
            main.state = MainState::Stopping {
                pid,
                kill_at,
                killed: true,
            };
            actions.push(Action::Signal {
                pid,
                signal: Signal::SIGKILL,
                group: true,
            });
        }
        let budget_spent = self.shutdown_at.is_some_and(|at| now >= at);
        if budget_spent {
            for scripts in [&mut self.init, &mut self.finish] {
                if let (Some(pid), false) = (scripts.running, scripts.killed) {
                    warn!(pid = pid.as_raw(), "shutdown budget spent, killing script");
                    scripts.killed = true;
                    actions.push(Action::Signal {
                        pid,
                        signal: Signal::SIGKILL,
                        group: true,
                    });
                }
            }
        }
        match self.phase {
            Phase::Drain { killed: false } if budget_spent => {
                warn!("shutdown budget spent, sending SIGKILL to every remaining process");
                self.phase = Phase::Drain { killed: true };
                self.give_up_at = Some(now + GIVE_UP_AFTER_KILL);
                actions.push(Action::SignalAll(Signal::SIGKILL));
            }
            Phase::Drain { killed: true } if self.give_up_at.is_some_and(|at| now >= at) => {
                error!("processes survive SIGKILL (uninterruptible sleep?), exiting anyway");
                actions.extend(self.done());
            }
            _ => {}
        }
        actions
    }

    /// Move the current phase forward as far as its conditions allow.
    fn advance(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.phase {
            Phase::Up => actions.extend(self.schedule(now)),
            Phase::Stopping => actions.extend(self.advance_stop(now)),
            Phase::Finish if !self.finish.busy => {
                actions.extend(self.next_finish(now));
            }
            _ => {}
        }
        if !self.pending.is_empty() {
            actions.extend(self.check_pending(now));
        }
    }

    fn next_init(&mut self) -> Vec<Action> {
        if self.phase != Phase::Init {
            return Vec::new();
        }
        if self.init.next < self.init.paths.len() {
            let target = Target::Init(self.init.next);
            self.init.next += 1;
            self.init.busy = true;
            info!(script = %self.script_path(target), "running init script");
            return vec![Action::Spawn(target)];
        }
        // `advance` schedules the services.
        self.phase = Phase::Up;
        Vec::new()
    }

    /// Phase `Up`: stop what is no longer wanted (dependants first), start
    /// what is wanted and whose dependencies are started; then the main
    /// COMMAND once every service has settled.
    fn schedule(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for i in 0..self.services.len() {
            let svc = &self.services[i];
            let stoppable = matches!(
                svc.state,
                State::Starting { .. }
                    | State::Running { .. }
                    | State::Reloading { .. }
                    | State::Backoff { .. }
                    | State::Finishing { .. }
            );
            if svc.want != Want::Down || !stoppable {
                continue;
            }
            // Dependants that are also to go down go first; those wanted up stay.
            let dependants_down = (0..self.services.len())
                .filter(|&j| self.deps[j].contains(&i) && self.services[j].want == Want::Down)
                .all(|j| self.services[j].is_down());
            if dependants_down {
                actions.extend(self.services[i].stop(now, None));
            }
        }
        for i in 0..self.services.len() {
            let svc = &self.services[i];
            if svc.want != Want::Up || svc.state != State::Idle {
                continue;
            }
            let ready = self.deps[i].iter().all(|&j| self.services[j].is_started());
            if ready {
                actions.extend(self.services[i].start(now));
            }
        }
        let main_waiting = self
            .main
            .as_ref()
            .is_some_and(|m| m.state == MainState::Waiting);
        if main_waiting && actions.is_empty() && (0..self.services.len()).all(|i| self.settled(i)) {
            for svc in self.services.iter().filter(|s| s.ended_for_good()) {
                warn!(service = %svc.spec.name, "starting the main command although this service failed");
            }
            if let Some(main) = self.main.as_mut() {
                main.state = MainState::Spawning;
            }
            actions.push(Action::Spawn(Target::Main));
        }
        actions
    }

    /// Nothing more to wait for before the main COMMAND: started, ended for
    /// good, not wanted, or held back by a dependency that ended for good.
    fn settled(&self, i: usize) -> bool {
        let svc = &self.services[i];
        if svc.removed || (svc.want == Want::Down && svc.state == State::Idle) {
            return true;
        }
        if svc.ended_for_good() || svc.state == State::Exited {
            return true;
        }
        // Ready once is enough: a later crash loop does not hold the main COMMAND.
        if !svc.spec.oneshot && svc.ever_ready {
            return true;
        }
        svc.state == State::Idle && self.blocked(i, self.services.len())
    }

    /// Waiting on a dependency (transitively) that ended for good. `depth`
    /// bounds the recursion even though validation rejects cycles.
    fn blocked(&self, i: usize, depth: usize) -> bool {
        depth > 0
            && self.deps[i]
                .iter()
                .any(|&j| self.services[j].ended_for_good() || self.blocked(j, depth - 1))
    }

    fn begin_shutdown(&mut self, now: Instant) -> Vec<Action> {
        self.phase = Phase::Stopping;
        self.shutdown_at = Some(now + self.shutdown_timeout);
        for svc in &mut self.services {
            // Nothing starts, restarts or reloads from now on.
            svc.want = Want::Down;
            svc.reload_due = None;
        }
        let mut actions = Vec::new();
        if let Some(pid) = self.init.running {
            actions.push(Action::Signal {
                pid,
                signal: Signal::SIGTERM,
                group: true,
            });
        }
        actions
    }

    /// Phase `Stopping`: the main COMMAND first, then each service once every
    /// service that depends on it is down; then the finish scripts.
    fn advance_stop(&mut self, now: Instant) -> Vec<Action> {
        let deadline = self.shutdown_at.unwrap_or(now);
        let mut actions = Vec::new();
        if let Some(main) = self.main.as_mut() {
            match main.state {
                MainState::Running { pid } => {
                    info!(
                        pid = pid.as_raw(),
                        signal = self.shutdown_signal.as_str(),
                        "stopping main command"
                    );
                    main.state = MainState::Stopping {
                        pid,
                        kill_at: (now + MAIN_STOP_TIMEOUT).min(deadline),
                        killed: false,
                    };
                    actions.push(Action::Signal {
                        pid,
                        signal: self.shutdown_signal,
                        group: true,
                    });
                }
                MainState::Waiting => main.state = MainState::Ended,
                _ => {}
            }
        }
        let main_busy = self
            .main
            .as_ref()
            .is_some_and(|m| m.state == MainState::Spawning || m.pid().is_some());
        if main_busy || self.init.busy {
            return actions;
        }
        for i in 0..self.services.len() {
            let has_process = matches!(
                self.services[i].state,
                State::Starting { .. } | State::Running { .. } | State::Reloading { .. }
            );
            if !has_process {
                // Cancels a pending retry (or, while a finish script runs,
                // makes "down" what follows it); no-op otherwise.
                actions.extend(self.services[i].stop(now, Some(deadline)));
                continue;
            }
            let dependants_down = (0..self.services.len())
                .filter(|&j| self.deps[j].contains(&i))
                .all(|j| self.services[j].is_down());
            if dependants_down {
                actions.extend(self.services[i].stop(now, Some(deadline)));
            }
        }
        if self.services.iter().all(Service::is_down) {
            self.phase = Phase::Finish;
            actions.extend(self.next_finish(now));
        }
        actions
    }

    fn next_finish(&mut self, now: Instant) -> Vec<Action> {
        if self.finish.next < self.finish.paths.len() {
            let target = Target::Finish(self.finish.next);
            self.finish.next += 1;
            self.finish.busy = true;
            info!(script = %self.script_path(target), "running finish script");
            return vec![Action::Spawn(target)];
        }
        let killed = self.shutdown_at.is_none_or(|at| now >= at);
        self.phase = Phase::Drain { killed };
        let mut actions = vec![Action::SignalAll(Signal::SIGTERM)];
        if killed {
            self.give_up_at = Some(now + GIVE_UP_AFTER_KILL);
            actions.push(Action::SignalAll(Signal::SIGKILL));
        }
        actions
    }

    fn done(&mut self) -> Vec<Action> {
        self.phase = Phase::Done;
        vec![Action::Exit(self.exit_code())]
    }

    pub fn script_path(&self, target: Target) -> String {
        let path = match target {
            Target::Init(i) => self.init.paths.get(i),
            Target::Finish(i) => self.finish.paths.get(i),
            _ => None,
        };
        path.map(|p| p.display().to_string()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceSpec;

    fn svc(name: &str, after: &[&str]) -> ServiceSpec {
        let mut s = ServiceSpec::new(name, vec!["true".into()]);
        s.after = after.iter().map(|a| a.to_string()).collect();
        s
    }

    fn sup(services: Vec<ServiceSpec>, main: bool) -> Supervisor {
        let main = main.then(|| vec!["app".to_string()]);
        Supervisor::new(
            Spec { services },
            main,
            Vec::new(),
            Vec::new(),
            Duration::from_secs(9),
        )
    }

    fn pid(n: i32) -> Pid {
        Pid::from_raw(n)
    }

    /// Carry out spawns the way the executor does: each gets the next pid.
    struct Harness {
        sup: Supervisor,
        next_pid: i32,
        now: Instant,
        /// Every action, in order, with spawns resolved to pids.
        log: Vec<Action>,
        /// Answer spawns with `SpawnFailed` (command not found) instead.
        fail_spawns: bool,
    }

    impl Harness {
        fn new(sup: Supervisor) -> Harness {
            let mut h = Harness {
                sup,
                next_pid: 100,
                now: Instant::now(),
                log: Vec::new(),
                fail_spawns: false,
            };
            let actions = h.sup.start(h.now);
            h.run(actions);
            h
        }

        fn run(&mut self, actions: Vec<Action>) {
            let mut pending: std::collections::VecDeque<Action> = actions.into();
            while let Some(action) = pending.pop_front() {
                self.log.push(action.clone());
                if let Action::Spawn(target) = action {
                    let event = if self.fail_spawns {
                        Event::SpawnFailed {
                            target,
                            error: "No such file or directory".into(),
                            code: 127,
                        }
                    } else {
                        self.next_pid += 1;
                        Event::Spawned {
                            target,
                            pid: pid(self.next_pid - 1),
                        }
                    };
                    pending.extend(self.sup.on_event(event, self.now));
                }
            }
        }

        fn event(&mut self, event: Event) {
            let actions = self.sup.on_event(event, self.now);
            self.run(actions);
        }

        fn exit(&mut self, pid: Pid, exit: Exit) {
            self.event(Event::Exited { pid, exit });
        }

        fn advance_to(&mut self, at: Instant) {
            self.now = at;
            self.event(Event::Tick);
        }

        fn pid_of(&self, name: &str) -> Pid {
            self.sup
                .services
                .iter()
                .find(|s| s.name() == name)
                .and_then(Service::pid)
                .unwrap_or_else(|| panic!("{name} has no pid"))
        }

        fn spawned(&self) -> Vec<Target> {
            self.log
                .iter()
                .filter_map(|a| match a {
                    Action::Spawn(t) => Some(*t),
                    _ => None,
                })
                .collect()
        }

        fn signalled(&self) -> Vec<(Pid, Signal)> {
            self.log
                .iter()
                .filter_map(|a| match a {
                    Action::Signal { pid, signal, .. } => Some((*pid, *signal)),
                    _ => None,
                })
                .collect()
        }

        fn take_log(&mut self) -> Vec<Action> {
            std::mem::take(&mut self.log)
        }
    }

    #[test]
    fn services_start_in_dependency_order_then_the_main_command() {
        // db <- api <- web; cache independent. Index order is name order.
        let h = Harness::new(sup(
            vec![
                svc("api", &["db"]),
                svc("cache", &[]),
                svc("db", &[]),
                svc("web", &["api"]),
            ],
            true,
        ));
        // db and cache start together; api waits for db, which is running at once.
        assert_eq!(
            h.spawned(),
            vec![
                Target::Service(1),
                Target::Service(2),
                Target::Service(0),
                Target::Service(3),
                Target::Main
            ]
        );
        assert_eq!(h.sup.main_pid(), Some(pid(104)));
    }

    #[test]
    fn dependants_of_a_oneshot_wait_for_its_exit_0() {
        let mut migrate = svc("migrate", &[]);
        migrate.oneshot = true;
        migrate.restart = crate::config::Restart::Never;
        let mut h = Harness::new(sup(vec![svc("app", &["migrate"]), migrate], true));
        assert_eq!(h.spawned(), vec![Target::Service(1)]);
        h.take_log();
        h.exit(pid(100), Exit::Code(0));
        assert_eq!(h.spawned(), vec![Target::Service(0), Target::Main]);
    }

    #[test]
    fn a_failed_oneshot_holds_its_dependants_but_not_the_main_command() {
        let mut migrate = svc("migrate", &[]);
        migrate.oneshot = true;
        migrate.restart = crate::config::Restart::Never;
        let mut h = Harness::new(sup(vec![svc("app", &["migrate"]), migrate], true));
        h.take_log();
        h.exit(pid(100), Exit::Code(1));
        assert_eq!(h.spawned(), vec![Target::Main]);
        assert_eq!(h.sup.services[0].state, State::Idle);
    }

    #[test]
    fn shutdown_stops_main_then_dependants_before_dependencies() {
        let mut h = Harness::new(sup(
            vec![
                svc("api", &["db"]),
                svc("cache", &[]),
                svc("db", &[]),
                svc("web", &["api"]),
            ],
            true,
        ));
        let (api, cache, db, web, main) = (
            h.pid_of("api"),
            h.pid_of("cache"),
            h.pid_of("db"),
            h.pid_of("web"),
            pid(104),
        );
        h.take_log();
        h.event(Event::Signal(Signal::SIGINT));
        // The main COMMAND gets the signal corral received, and alone.
        assert_eq!(h.signalled(), vec![(main, Signal::SIGINT)]);
        h.take_log();
        h.exit(main, Exit::Code(130));
        // Leaves first: web and cache (nothing depends on them), together.
        assert_eq!(
            h.signalled(),
            vec![(cache, Signal::SIGTERM), (web, Signal::SIGTERM)]
        );
        h.take_log();
        h.exit(cache, Exit::Signal(Signal::SIGTERM));
        assert!(h.signalled().is_empty(), "db must wait for api");
        h.exit(web, Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.signalled(), vec![(api, Signal::SIGTERM)]);
        h.take_log();
        h.exit(api, Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.signalled(), vec![(db, Signal::SIGTERM)]);
        h.take_log();
        h.exit(db, Exit::Code(0));
        assert_eq!(h.sup.phase, Phase::Drain { killed: false });
        assert_eq!(h.take_log(), vec![Action::SignalAll(Signal::SIGTERM)]);
        h.event(Event::NoChildren);
        // A signal started it, the main COMMAND's status ends it (like tini).
        assert_eq!(h.take_log(), vec![Action::Exit(130)]);
        assert!(h.sup.is_done());
    }

    #[test]
    fn the_shutdown_budget_caps_every_wait_and_ends_in_sigkill_for_all() {
        let mut slow = svc("slow", &[]);
        slow.stop_timeout = Duration::from_secs(60);
        let mut h = Harness::new(sup(vec![slow], false));
        let t0 = h.now;
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(9)));
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(9));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGKILL)]);
        h.take_log();
        h.exit(pid(100), Exit::Signal(Signal::SIGKILL));
        // Budget spent: every leftover process gets SIGTERM and SIGKILL at once.
        assert_eq!(
            h.take_log(),
            vec![
                Action::SignalAll(Signal::SIGTERM),
                Action::SignalAll(Signal::SIGKILL)
            ]
        );
        h.event(Event::NoChildren);
        assert_eq!(h.take_log(), vec![Action::Exit(0)]);
    }

    #[test]
    fn leftover_processes_get_sigkill_when_the_budget_ends() {
        let mut h = Harness::new(sup(vec![svc("a", &[])], false));
        let t0 = h.now;
        h.event(Event::Signal(Signal::SIGTERM));
        h.exit(pid(100), Exit::Code(0));
        h.take_log();
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(9)));
        // An orphan exits; others remain: no exit yet.
        h.exit(pid(555), Exit::Code(0));
        assert!(h.take_log().is_empty());
        h.advance_to(t0 + Duration::from_secs(9));
        assert_eq!(h.take_log(), vec![Action::SignalAll(Signal::SIGKILL)]);
        // Something survives even SIGKILL: exit anyway, a little later.
        h.advance_to(t0 + Duration::from_secs(9) + GIVE_UP_AFTER_KILL);
        assert_eq!(h.take_log(), vec![Action::Exit(0)]);
        assert_eq!(h.sup.orphans_reaped, 1);
    }

    #[test]
    fn main_command_exit_code_becomes_corrals() {
        let mut h = Harness::new(sup(vec![svc("a", &[])], true));
        h.exit(pid(101), Exit::Code(3));
        assert_eq!(h.sup.phase, Phase::Stopping);
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(3)));
    }

    #[test]
    fn an_essential_service_that_ends_takes_the_container_down_with_its_code() {
        let mut db = svc("db", &[]);
        db.essential = true;
        db.restart = crate::config::Restart::Never;
        let mut h = Harness::new(sup(vec![db, svc("web", &[])], true));
        h.exit(pid(100), Exit::Code(4));
        assert_eq!(h.sup.phase, Phase::Stopping);
        // The main COMMAND's own status later does not replace the first cause.
        h.exit(pid(102), Exit::Signal(Signal::SIGTERM));
        h.exit(pid(101), Exit::Signal(Signal::SIGTERM));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(4)));
    }

    #[test]
    fn no_restart_during_shutdown() {
        let mut h = Harness::new(sup(vec![svc("api", &["db"]), svc("db", &[])], false));
        h.event(Event::Signal(Signal::SIGTERM));
        h.take_log();
        // db crashes while api is still stopping: it must not come back.
        h.exit(pid(100), Exit::Code(1));
        assert!(h.spawned().is_empty());
        assert_eq!(h.sup.next_deadline(), h.sup.services[0].deadline());
    }

    #[test]
    fn init_scripts_run_one_at_a_time_and_a_failure_stops_startup() {
        let mut s = sup(vec![svc("a", &[])], true);
        s.init = Scripts::new(vec!["/i/01".into(), "/i/02".into(), "/i/03".into()]);
        s.finish = Scripts::new(vec!["/f/01".into()]);
        let mut h = Harness::new(s);
        assert_eq!(h.spawned(), vec![Target::Init(0)]);
        h.exit(pid(100), Exit::Code(0));
        assert_eq!(h.spawned(), vec![Target::Init(0), Target::Init(1)]);
        h.take_log();
        h.exit(pid(101), Exit::Code(5));
        // No service, no main command, no third script; the finish script runs.
        assert_eq!(h.spawned(), vec![Target::Finish(0)]);
        h.take_log();
        h.exit(pid(102), Exit::Code(0));
        assert_eq!(h.take_log(), vec![Action::SignalAll(Signal::SIGTERM)]);
        h.event(Event::NoChildren);
        assert_eq!(h.take_log(), vec![Action::Exit(5)]);
    }

    #[test]
    fn signals_are_forwarded_to_the_main_command_only() {
        let mut h = Harness::new(sup(vec![], true));
        h.take_log();
        h.event(Event::Signal(Signal::SIGUSR1));
        assert_eq!(
            h.take_log(),
            vec![Action::Signal {
                pid: pid(100),
                signal: Signal::SIGUSR1,
                group: true
            }]
        );
        let mut none = Harness::new(sup(vec![svc("a", &[])], false));
        none.take_log();
        none.event(Event::Signal(Signal::SIGWINCH));
        assert!(none.take_log().is_empty());
        assert_eq!(none.sup.phase, Phase::Up);
    }

    #[test]
    fn idle_corral_has_no_deadline() {
        let h = Harness::new(sup(vec![svc("a", &[]), svc("b", &["a"])], false));
        assert_eq!(h.sup.next_deadline(), None);
    }

    // ---- control requests ----

    use crate::control::protocol::{Request, Response, Targets};

    fn names(list: &[&str]) -> Targets {
        Targets {
            services: list.iter().map(|s| s.to_string()).collect(),
            all: false,
        }
    }

    impl Harness {
        fn request(&mut self, id: u64, request: Request) {
            self.event(Event::Request { id, request });
        }

        fn reply(&mut self, id: u64) -> Option<Response> {
            let at = self
                .log
                .iter()
                .position(|a| matches!(a, Action::Reply { id: i, .. } if *i == id))?;
            match self.log.remove(at) {
                Action::Reply { response, .. } => Some(response),
                _ => None,
            }
        }
    }

    #[test]
    fn status_reports_states_pids_and_unknown_names_with_a_suggestion() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &["db"])], false));
        h.request(1, Request::Status { services: vec![] });
        let status = h.reply(1).expect("status answers at once");
        assert!(status.ok);
        let got: Vec<(String, String, Option<i32>)> = status
            .services
            .iter()
            .map(|s| (s.name.clone(), s.state.clone(), s.pid))
            .collect();
        assert_eq!(
            got,
            vec![
                ("db".into(), "running".into(), Some(100)),
                ("web".into(), "running".into(), Some(101))
            ]
        );
        h.request(
            2,
            Request::Status {
                services: vec!["wbe".into(), "nope".into()],
            },
        );
        assert_eq!(
            h.reply(2).and_then(|r| r.error),
            Some("no service \"wbe\" (did you mean \"web\"?); no service \"nope\"".into())
        );
    }

    #[test]
    fn stop_answers_when_the_service_is_down_and_reports_sigkill_escalation() {
        let mut slow = svc("web", &[]);
        slow.stop_timeout = Duration::from_secs(2);
        let mut h = Harness::new(sup(vec![slow], false));
        h.take_log();
        h.request(1, Request::Stop(names(&["web"])));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        assert!(h.reply(1).is_none(), "no answer before the exit");
        let t = h.now + Duration::from_secs(2);
        h.advance_to(t);
        assert!(h.signalled().contains(&(pid(100), Signal::SIGKILL)));
        h.exit(pid(100), Exit::Signal(Signal::SIGKILL));
        let reply = h.reply(1).expect("answered once down");
        assert_eq!(
            reply.messages,
            vec!["web: did not stop within stop-timeout 2.0s, sent SIGKILL (killed by SIGKILL)"]
        );
        assert_eq!(h.sup.services[0].state, State::Stopped);
        // Stopped on request: nothing restarts it, and corral stays up.
        h.advance_to(t + Duration::from_secs(60));
        assert!(h.spawned().is_empty());
        assert_eq!(h.sup.phase, Phase::Up);
    }

    #[test]
    fn stop_all_stops_dependants_first_and_a_second_stop_says_not_running() {
        let mut h = Harness::new(sup(vec![svc("api", &["db"]), svc("db", &[])], false));
        let (api, db) = (h.pid_of("api"), h.pid_of("db"));
        h.take_log();
        h.request(
            1,
            Request::Stop(Targets {
                services: vec![],
                all: true,
            }),
        );
        assert_eq!(h.signalled(), vec![(api, Signal::SIGTERM)]);
        h.take_log();
        h.exit(api, Exit::Code(0));
        assert_eq!(h.signalled(), vec![(db, Signal::SIGTERM)]);
        h.exit(db, Exit::Code(0));
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec![
                "api: stopped (exit 0)".to_string(),
                "db: stopped (exit 0)".to_string()
            ])
        );
        h.request(2, Request::Stop(names(&["db"])));
        assert_eq!(
            h.reply(2).map(|r| r.messages),
            Some(vec!["db: was not running".to_string()])
        );
    }

    #[test]
    fn stopping_a_dependency_alone_leaves_its_running_dependants_up() {
        let mut h = Harness::new(sup(vec![svc("api", &["db"]), svc("db", &[])], false));
        let db = h.pid_of("db");
        h.take_log();
        h.request(1, Request::Stop(names(&["db"])));
        assert_eq!(h.signalled(), vec![(db, Signal::SIGTERM)]);
    }

    #[test]
    fn start_brings_up_stopped_dependencies_first_and_answers_when_started() {
        let mut h = Harness::new(sup(vec![svc("api", &["db"]), svc("db", &[])], false));
        h.request(
            1,
            Request::Stop(Targets {
                services: vec![],
                all: true,
            }),
        );
        h.exit(h.pid_of("api"), Exit::Code(0));
        h.exit(h.pid_of("db"), Exit::Code(0));
        h.take_log();
        h.request(2, Request::Start(names(&["api"])));
        // db first (api waits for it), then api; one answer for the request.
        assert_eq!(h.spawned(), vec![Target::Service(1), Target::Service(0)]);
        let reply = h.reply(2).expect("answered once started");
        assert!(reply.ok);
        assert_eq!(reply.messages, vec!["api: started (pid 103)"]);
    }

    #[test]
    fn start_of_a_service_that_cannot_be_spawned_reports_the_reason() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.request(1, Request::Stop(names(&["web"])));
        h.exit(pid(100), Exit::Code(0));
        h.take_log();
        h.fail_spawns = true;
        h.request(2, Request::Start(names(&["web"])));
        let reply = h.reply(2).expect("answered at the failure");
        assert!(!reply.ok);
        assert_eq!(
            reply.error,
            Some(
                "web: could not be started: No such file or directory; \
                 it will be started again after its backoff"
                    .into()
            )
        );
        assert_eq!(h.sup.service_status(0, h.now).state, "backoff");
    }

    #[test]
    fn restart_answers_after_the_new_process_runs() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.take_log();
        h.request(1, Request::Restart(names(&["web"])));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        assert!(h.reply(1).is_none());
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec!["web: started (pid 101)".to_string()])
        );
        assert_eq!(h.sup.services[0].restarts(), 1);
    }

    #[test]
    fn wait_answers_when_started_or_fails_at_its_deadline() {
        let mut migrate = svc("migrate", &[]);
        migrate.oneshot = true;
        migrate.restart = crate::config::Restart::Never;
        let mut h = Harness::new(sup(vec![svc("app", &["migrate"]), migrate], false));
        h.request(
            1,
            Request::Wait {
                services: vec!["app".into()],
                timeout_ms: None,
                ready: true,
            },
        );
        h.request(
            2,
            Request::Wait {
                services: vec!["app".into()],
                timeout_ms: Some(500),
                ready: true,
            },
        );
        assert_eq!(
            h.sup.next_deadline(),
            Some(h.now + Duration::from_millis(500))
        );
        h.advance_to(h.now + Duration::from_millis(500));
        assert_eq!(
            h.reply(2).and_then(|r| r.error),
            Some("timed out waiting for app (starting)".into())
        );
        assert!(h.reply(1).is_none());
        h.exit(pid(100), Exit::Code(0));
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec!["app: ready".to_string()])
        );
    }

    #[test]
    fn health_names_what_is_not_running() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &[])], false));
        h.request(1, Request::Health {});
        assert!(h.reply(1).is_some_and(|r| r.ok));
        h.exit(pid(101), Exit::Code(1));
        h.request(2, Request::Health {});
        let reply = h.reply(2).expect("health answers at once");
        assert!(!reply.ok);
        assert_eq!(
            reply.problems,
            vec!["web: backoff (exit 1; next start in 100ms)"]
        );
    }

    #[test]
    fn signal_goes_to_running_services_and_names_the_others() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &[])], false));
        h.request(9, Request::Stop(names(&["web"])));
        h.exit(pid(101), Exit::Code(0));
        h.take_log();
        h.request(
            1,
            Request::Signal {
                signal: "hup".into(),
                services: vec!["db".into(), "web".into()],
            },
        );
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGHUP)]);
        let reply = h.reply(1).expect("answered");
        assert_eq!(reply.messages, vec!["db: sent SIGHUP to process group 100"]);
        assert_eq!(reply.error, Some("web is not running (stopped)".into()));
        h.request(
            2,
            Request::Signal {
                signal: "NOPE".into(),
                services: vec!["db".into()],
            },
        );
        assert!(
            h.reply(2)
                .and_then(|r| r.error)
                .is_some_and(|e| e.contains("unknown signal"))
        );
    }

    #[test]
    fn shutdown_with_an_exit_code_and_requests_refused_while_shutting_down() {
        let mut h = Harness::new(sup(vec![svc("db", &[])], false));
        h.request(
            1,
            Request::Wait {
                services: vec!["db".into()],
                timeout_ms: None,
                ready: true,
            },
        );
        assert!(h.reply(1).is_some_and(|r| r.ok));
        h.request(2, Request::Shutdown { exit_code: Some(7) });
        assert_eq!(
            h.reply(2).map(|r| r.messages),
            Some(vec!["shutting down".to_string()])
        );
        h.request(3, Request::Start(names(&["db"])));
        assert_eq!(
            h.reply(3).and_then(|r| r.error),
            Some("corral is shutting down".into())
        );
        h.exit(pid(100), Exit::Code(0));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(7)));
    }

    #[test]
    fn a_cancelled_request_is_forgotten_but_its_action_goes_on() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &[])], false));
        h.take_log();
        h.request(1, Request::Stop(names(&["web"])));
        h.request(
            2,
            Request::Wait {
                services: vec!["web".into()],
                timeout_ms: Some(60_000),
                ready: true,
            },
        );
        h.event(Event::Cancel { id: 1 });
        h.event(Event::Cancel { id: 2 });
        // Left: the stop's own SIGKILL deadline, not the wait's 60 s.
        assert_eq!(
            h.sup.next_deadline(),
            Some(h.now + Duration::from_secs(5)),
            "the wait's deadline went with it"
        );
        h.exit(pid(101), Exit::Code(0));
        assert!(h.reply(1).is_none() && h.reply(2).is_none());
        assert_eq!(
            h.sup.services[1].state,
            State::Stopped,
            "the stop itself went on"
        );
        h.request(3, Request::Health {});
        assert_eq!(
            h.reply(3).map(|r| r.messages),
            Some(vec![
                "all 1 wanted services up (1 stopped or disabled on purpose)".to_string()
            ])
        );
    }

    #[test]
    fn init_failures_can_be_let_through_as_s6_overlay_allows() {
        let mut s = sup(vec![svc("a", &[])], false);
        s.init = Scripts::new(vec!["/i/01".into(), "/i/02".into()]);
        s.init_failure = InitFailure::Continue;
        let mut h = Harness::new(s);
        h.exit(pid(100), Exit::Code(5));
        assert_eq!(h.spawned(), vec![Target::Init(0), Target::Init(1)]);
        h.exit(pid(101), Exit::Code(0));
        assert_eq!(h.sup.phase, Phase::Up);
        assert_eq!(h.spawned().last(), Some(&Target::Service(0)));
    }

    #[test]
    fn stop_and_restart_reach_a_service_that_is_still_starting() {
        let mut ready = svc("web", &[]);
        ready.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(vec![ready], false));
        assert_eq!(h.sup.services[0].state.name(), "starting");
        h.take_log();
        h.request(1, Request::Restart(names(&["web"])));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.sup.services[0].starts, 2, "started again");
        h.take_log();
        h.request(2, Request::Stop(names(&["web"])));
        assert_eq!(h.signalled(), vec![(pid(101), Signal::SIGTERM)]);
        h.exit(pid(101), Exit::Signal(Signal::SIGTERM));
        assert!(h.reply(2).is_some_and(|r| r.ok));
        assert_eq!(h.sup.services[0].state, State::Stopped);
    }

    #[test]
    fn a_service_reloading_at_shutdown_still_waits_for_its_dependants() {
        let mut a = svc("a", &[]);
        a.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(vec![a, svc("b", &["a"])], false));
        let ready = crate::event::NotifyMessage {
            ready: true,
            ..Default::default()
        };
        h.event(Event::Notify {
            service: 0,
            run: 1,
            message: ready,
        });
        let b = h.pid_of("b");
        h.take_log();
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.signalled(), vec![(b, Signal::SIGTERM)]);
        // a announces a reload while b is still stopping: a must wait.
        h.take_log();
        let reloading = crate::event::NotifyMessage {
            reloading: true,
            ..Default::default()
        };
        h.event(Event::Notify {
            service: 0,
            run: 1,
            message: reloading,
        });
        // A watched file changes during the shutdown: no reload either.
        h.event(Event::Changed { service: 0 });
        h.advance_to(h.now + Duration::from_secs(1));
        assert!(
            h.signalled().is_empty(),
            "a was signalled before b was down"
        );
        h.exit(b, Exit::Code(0));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
    }
}
