//! The executor: carries out one `Action` with a system call, a thread or a
//! channel send, and returns the events it produced.
//!
//! It reads nothing of the core's state: every action carries what it needs
//! (a spawn its definition and run number, a probe its token), so what the
//! core decided and what happens cannot drift apart.
//!
//! It holds the fds that must outlive a service's run: the pipes of s6-rc
//! pipelines (`pipes.rs`, `Setup::pipelines`), created at the first spawn
//! of either end, given to each run (and `finish`) of a producer as its
//! stdout and of a consumer as its stdin, and kept across their restarts
//! and across config reloads that keep the pipeline.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use nix::unistd::Pid;

use crate::config::{self, Output as OutputMode, Ready, ServiceSpec};
use crate::event::{Action, Event, Input, Job, Target};
use crate::exit::Exit;
use crate::log::{debug, warn};
use crate::notify::Notify;
use crate::output::{LineReady, Output, Stream};
use crate::process::{self, Launch, SpawnError};
use crate::watch::Watcher;
use crate::{probe, reaper};

mod clock;
mod pipes;

pub use pipes::Pipelines;

/// What the loop needs besides the state machine: the executor acts with
/// these, the loop also receives on `inputs`.
pub struct Setup {
    /// Signals, control requests, readiness and watch events, from their threads.
    pub inputs: Receiver<Input>,
    /// For the short-lived probe threads to answer on.
    pub inputs_tx: Sender<Input>,
    pub output: Output,
    /// sd_notify sockets and notification-fd pipes.
    pub notify: Notify,
    pub watcher: Watcher,
    /// Where the definitions are read again on SIGHUP / `ctl reload`, and how.
    pub service_dirs: Vec<PathBuf>,
    pub load_options: config::LoadOptions,
    /// corral is PID 1 of its namespace (else it is a child subreaper).
    pub pid1: bool,
    /// The control socket, passed to services as `CORRAL_SOCKET` so that
    /// `corral ctl` and `s6-svc` inside them find it wherever it is.
    pub socket: Option<PathBuf>,
    /// The pipes of s6-rc pipelines, held across restarts of either end
    /// (`Pipelines::new(&spec)` with the definitions corral starts with).
    pub pipelines: Pipelines,
    /// The `log-file` sink: a service that has one is opened at each spawn.
    pub log_files: crate::output::file::LogFiles,
}

/// Carry out one action; return the events it produced. (`Reply` and
/// `Exit` are the loop's own.) A spawn that `Flights` takes is started
/// there and its event comes from `Flights::land`; the loop lands every
/// flight before any other action.
pub(super) fn execute(action: Action, setup: &Setup, flights: &mut Flights) -> Vec<Event> {
    match action {
        Action::Spawn { target, job } => match Flights::start(job, setup) {
            Ok(flight) => flights.add(target, flight, setup),
            Err(job) => vec![spawned(target, spawn(job))],
        },
        Action::Signal { pid, signal, group } => {
            if let Err(err) = process::signal(pid, signal, group) {
                warn!(pid = pid.as_raw(), signal = signal.as_str(), %err, "could not send signal");
            }
            Vec::new()
        }
        Action::SignalAll(signal) => {
            match process::signal_all(signal, setup.pid1) {
                Some(n) => debug!(
                    signal = signal.as_str(),
                    processes = n,
                    "signalled every remaining descendant"
                ),
                None => debug!(
                    signal = signal.as_str(),
                    "signalled every process in the namespace"
                ),
            }
            // Learn at once whether anything is left: with no child at all, no
            // SIGCHLD would ever come.
            reap_events()
        }
        Action::Probe {
            token,
            probe,
            timeout,
        } => {
            probe::spawn(probe, timeout, token, setup.inputs_tx.clone());
            Vec::new()
        }
        Action::Watch { service, paths } => {
            setup.watcher.set(&service, &paths);
            Vec::new()
        }
        Action::LoadConfig { id } => {
            let result = config::load_with(&setup.service_dirs, &setup.load_options)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect());
            // The core applies a set that loaded, whole: the pipelines follow it.
            if let Ok(spec) = &result {
                for consumer in setup.pipelines.redefine(spec) {
                    debug!(service = %consumer, "pipeline removed: its pipe is closed");
                }
            }
            vec![Event::Loaded { id, result }]
        }
        Action::Clock {
            service,
            schedule,
            pending,
            last,
        } => vec![clock::read(service, &schedule, pending, last)],
        Action::Exit(_) | Action::Reply { .. } => Vec::new(),
    }
}

/// Reap every child that ended, as events; `NoChildren` when none is left.
pub(super) fn reap_events() -> Vec<Event> {
    let reaped = reaper::reap();
    let mut events: Vec<Event> = reaped
        .exits
        .into_iter()
        .map(|(pid, exit)| Event::Exited { pid, exit })
        .collect();
    if reaped.none_left {
        events.push(Event::NoChildren);
    }
    events
}

/// A spawn's event for the core.
fn spawned(target: Target, result: Result<Pid, SpawnError>) -> Event {
    match result {
        Ok(pid) => Event::Spawned { target, pid },
        Err(err) => Event::SpawnFailed {
            target,
            error: err.message,
            code: err.code,
        },
    }
}

/// The spawns that start no service-context child: std's `Command`,
/// which waits for the exec itself.
fn spawn(job: Job) -> Result<Pid, SpawnError> {
    match job {
        Job::Main { argv } => process::spawn_main(&argv),
        Job::Script { path } => process::spawn_script(&path),
        _ => Err(SpawnError::new("not a plain spawn".into())),
    }
}

/// At most this many children between their clone and their exec: on a
/// machine of 2 CPUs, 100 services started as fast with 8 as with 32,
/// and each one in flight holds its prepared block (a few kB).
const IN_FLIGHT: usize = 8;

/// The spawns of a round whose children run in corral's memory until they
/// exec (`spawn::start`): they exec side by side, and each one's
/// `Spawned` or `SpawnFailed` reaches the core in the order of the spawns,
/// once it has exec'd or failed: the oldest when `IN_FLIGHT` are in
/// flight, all of them (`land`) before any other action and before the
/// loop waits for input. So nothing reaps while a child is in flight (a
/// child that failed is reaped by its pid), and the core never learns of
/// an exit before the spawn.
#[derive(Default)]
pub(super) struct Flights {
    list: VecDeque<(Target, Flight)>,
}

/// One spawn of the round: started, or failed before its clone.
type Flight = Result<(process::Starting, After), SpawnError>;

/// What follows a child's exec, done once it has exec'd.
enum After {
    /// A service's run: its output (and `log-line` readiness), its
    /// sd_notify socket's reads.
    Service { spec: Arc<ServiceSpec>, run: u32 },
    /// A hook, `finish` or `down`: its output goes where the service's goes.
    Output(Arc<ServiceSpec>),
    /// An exec probe: nothing to read.
    Nothing,
}

impl Flights {
    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether `action` is a spawn that flies.
    pub(super) fn takes(action: &Action) -> bool {
        matches!(
            action,
            Action::Spawn {
                job: Job::Service { .. }
                    | Job::Hook { .. }
                    | Job::FinishScript { .. }
                    | Job::Probe { .. }
                    | Job::Down { .. },
                ..
            }
        )
    }

    /// Start `job` if it flies, else give it back.
    fn start(job: Job, setup: &Setup) -> Result<Flight, Job> {
        let flight = match job {
            Job::Service { spec, run } => {
                start_service(&spec, run, setup).map(|s| (s, After::Service { spec, run }))
            }
            Job::Hook {
                spec,
                command,
                main_pid,
            } => start_hook(&spec, &command, main_pid, setup).map(|s| (s, After::Output(spec))),
            Job::FinishScript { spec, script, exit } => {
                start_finish(&spec, &script, exit, setup).map(|s| (s, After::Output(spec)))
            }
            Job::Probe { spec, command } => {
                let launch = Launch {
                    argv: &command,
                    output: OutputMode::Null,
                    ..Launch::service(&spec)
                };
                process::start_service(&spec, launch).map(|s| (s, After::Nothing))
            }
            Job::Down { spec, command } => {
                start_down(&spec, &command, setup).map(|s| (s, After::Output(spec)))
            }
            job @ (Job::Main { .. } | Job::Script { .. }) => return Err(job),
        };
        Ok(flight)
    }

    /// Add a started spawn. With `IN_FLIGHT` already in flight, the
    /// oldest lands (its event): a window that keeps the other CPUs busy
    /// with execs, not a crowd of children each holding its own block.
    fn add(&mut self, target: Target, flight: Flight, setup: &Setup) -> Vec<Event> {
        self.list.push_back((target, flight));
        if self.list.len() <= IN_FLIGHT {
            return Vec::new();
        }
        self.list
            .pop_front()
            .map(|(target, flight)| Self::finish(target, flight, setup))
            .into_iter()
            .collect()
    }

    /// Wait for every child in flight to exec or fail; their events, in
    /// the order of the spawns.
    pub(super) fn land(&mut self, setup: &Setup) -> Vec<Event> {
        let events = self
            .list
            .drain(..)
            .map(|(target, flight)| Self::finish(target, flight, setup))
            .collect();
        crate::spawn::release();
        events
    }

    /// Wait for one child to exec or fail: its event.
    fn finish(target: Target, flight: Flight, setup: &Setup) -> Event {
        let result = flight.and_then(|(starting, after)| {
            let (pid, pipes) = starting.finish()?;
            after.done(pid, pipes, setup);
            Ok(pid)
        });
        spawned(target, result)
    }
}

impl After {
    fn done(self, pid: Pid, pipes: Option<process::Pipes>, setup: &Setup) {
        match self {
            After::Service { spec, run } => {
                // `log-line`: this run's own pipes are looked at, so no
                // line of an older run can make it ready.
                let ready = match &spec.ready {
                    Some(Ready::LogLine(pattern)) => Some(Arc::new(LineReady::new(
                        pattern.regex().clone(),
                        &spec.name,
                        run,
                        setup.inputs_tx.clone(),
                    ))),
                    _ => None,
                };
                register_output(setup, &spec, pipes, pid, ready);
                // Its socket is read from now on, each datagram judged by
                // whether its sender belongs to this pid (the thread reads
                // /proc, the loop never).
                if spec.ready == Some(Ready::Notify)
                    && let Err(err) = setup.notify.started(&spec.name, run, pid)
                {
                    warn!(service = %spec.name, %err, "readiness messages will not be read");
                }
            }
            After::Output(spec) => register_output(setup, &spec, pipes, pid, None),
            After::Nothing => {}
        }
    }
}

/// A service's own process, run `run`: its readiness channel (sd_notify
/// socket or notification fd) is made for this run, its pipelines' ends
/// given as stdin / stdout.
fn start_service(
    spec: &ServiceSpec,
    run: u32,
    setup: &Setup,
) -> Result<process::Starting, SpawnError> {
    let mut launch = Launch::service(spec);
    launch.env.extend(socket_env(setup, spec));
    let ends = setup
        .pipelines
        .ends(spec)
        .map_err(|e| SpawnError::new(format!("pipeline pipe: {e}")))?;
    launch.stdin = ends.stdin;
    launch.stdout = ends.stdout;
    match spec.ready {
        Some(Ready::Notify) => {
            let socket = setup
                .notify
                .socket(&spec.name, run)
                .map_err(|e| SpawnError::new(format!("NOTIFY_SOCKET: {e}")))?;
            launch.env.push(("NOTIFY_SOCKET".into(), socket));
        }
        Some(Ready::Fd(n)) => {
            let fd = setup
                .notify
                .fd_pipe(&spec.name, run)
                .map_err(|e| SpawnError::new(format!("notification fd: {e}")))?;
            launch.fd = Some((fd, n));
        }
        _ => setup.notify.forget(&spec.name),
    }
    process::start_service(spec, launch)
}
/// `CORRAL_SOCKET` for what runs in a service's context, unless its own
/// `env` sets it.
fn socket_env(setup: &Setup, spec: &ServiceSpec) -> Option<(String, String)> {
    let socket = setup.socket.as_ref()?;
    if spec.env.iter().any(|(k, _)| k == "CORRAL_SOCKET") {
        return None;
    }
    Some(("CORRAL_SOCKET".into(), socket.display().to_string()))
}

/// Hand a process's pipes to the output thread (`ready`: its lines also
/// decide the run's readiness).
fn register_output(
    setup: &Setup,
    spec: &ServiceSpec,
    pipes: Option<process::Pipes>,
    pid: Pid,
    ready: Option<Arc<LineReady>>,
) {
    let pid = u32::try_from(pid.as_raw()).ok();
    if let Some(pipes) = pipes {
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let echo = spec.output != crate::config::Output::Null;
        // Again at each spawn: a config reload may have changed it (the
        // same spec again is nothing).
        match &spec.log_file {
            Some(log_file) => setup.log_files.open(name.clone(), log_file),
            None => setup.log_files.close(&name),
        }
        if let Some(stdout) = pipes.stdout {
            setup.output.add(
                name.clone(),
                Stream::Stdout,
                stdout,
                pid,
                echo,
                ready.clone(),
            );
        }
        setup
            .output
            .add(name, Stream::Stderr, pipes.stderr, pid, echo, ready);
    }
}

/// An s6 `finish` script: `finish CODE SIGNUM` in the service's context,
/// CODE being 256 when the service was killed by signal SIGNUM (s6-supervise),
/// with the service's pipeline ends as stdin / stdout.
fn start_finish(
    spec: &ServiceSpec,
    script: &Path,
    exit: Exit,
    setup: &Setup,
) -> Result<process::Starting, SpawnError> {
    let (code, signal) = match exit {
        Exit::Code(code) => (code, 0),
        Exit::Signal(signal) => (256, signal as i32),
    };
    let argv = [
        script.display().to_string(),
        code.to_string(),
        signal.to_string(),
    ];
    // As s6-rc does, the script gets the run's pipeline ends: a producer's
    // `finish` writes into the pipe, a consumer's reads it.
    let ends = setup
        .pipelines
        .ends(spec)
        .map_err(|e| SpawnError::new(format!("pipeline pipe: {e}")))?;
    let launch = Launch {
        argv: &argv,
        env: socket_env(setup, spec).into_iter().collect(),
        stdin: ends.stdin,
        stdout: ends.stdout,
        ..Launch::service(spec)
    };
    process::start_service(spec, launch)
}

/// An s6-rc oneshot's `down` command: the service's context (as its `up`
/// runs in), its output where the service's goes.
fn start_down(
    spec: &ServiceSpec,
    command: &[String],
    setup: &Setup,
) -> Result<process::Starting, SpawnError> {
    let launch = Launch {
        argv: command,
        env: socket_env(setup, spec).into_iter().collect(),
        ..Launch::service(spec)
    };
    process::start_service(spec, launch)
}

/// The `reload = { exec = [...] }` hook: the service's context, plus
/// `MAINPID`; its output goes where the service's goes.
fn start_hook(
    spec: &ServiceSpec,
    command: &[String],
    main_pid: Pid,
    setup: &Setup,
) -> Result<process::Starting, SpawnError> {
    let mut launch = Launch {
        argv: command,
        env: socket_env(setup, spec).into_iter().collect(),
        ..Launch::service(spec)
    };
    launch
        .env
        .push(("MAINPID".into(), main_pid.as_raw().to_string()));
    process::start_service(spec, launch)
}
