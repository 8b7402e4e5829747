//! The supervisor loop: the one thread that owns all state, spawns, signals
//! and reaps.
//!
//! It blocks in `recv_deadline(earliest deadline)` and wakes only for an
//! event or a due deadline: an idle corral makes no wakeups at all. Each
//! event goes to the pure `Supervisor`; the actions it returns are carried
//! out here, and what they produce (a spawned pid, a spawn error) goes back
//! in as events at once, before the next event is received.
//!
//! From the first spawn on, nothing here may end the process except
//! `Action::Exit`: errors are logged and become states.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::sys::signal::Signal;
use tracing::{debug, warn};

use super::core::Supervisor;
use crate::config::{self, Output as OutputMode, Probe, Ready, Reload};
use crate::control::protocol::Response;
use crate::event::{Action, Event, Input, Reply, RequestId, Target};
use crate::exit::Exit;
use crate::notify::Notify;
use crate::output::{Output, Stream};
use crate::process::{self, Launch, SpawnError};
use crate::service::State;
use crate::watch::Watcher;
use crate::{probe, reaper};

/// What the loop needs besides the state machine.
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
}

/// Run until the supervisor is done; returns corral's exit status.
pub fn run(mut sup: Supervisor, setup: Setup) -> i32 {
    set_watches(&sup, &setup);
    let mut pending: VecDeque<Action> = sup.start(Instant::now()).into();
    // Reply channels of control requests in flight, by request id.
    let mut replies: HashMap<RequestId, Reply> = HashMap::new();
    let mut next_id: RequestId = 0;
    loop {
        while let Some(action) = pending.pop_front() {
            match action {
                Action::Exit(code) => {
                    for (_, mut reply) in replies.drain() {
                        reply.send(Response::error("corral is exiting"));
                    }
                    let deadline = Instant::now() + Duration::from_secs(1);
                    if !setup.output.finish(deadline) {
                        warn!("some service output could not be flushed");
                    }
                    return code;
                }
                Action::Reply { id, response } => {
                    // A client that went away is no error: nothing waits any more.
                    if let Some(mut reply) = replies.remove(&id) {
                        reply.send(response);
                    }
                }
                action => {
                    let reloaded = matches!(action, Action::LoadConfig { .. });
                    for event in execute(&sup, action, &setup) {
                        pending.extend(sup.on_event(event, Instant::now()));
                    }
                    if reloaded {
                        set_watches(&sup, &setup);
                    }
                }
            }
        }
        let received = match sup.next_deadline() {
            Some(deadline) => setup.inputs.recv_deadline(deadline),
            None => setup
                .inputs
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        let events = match received {
            Ok(Input::Signal(Signal::SIGCHLD)) => reap_events(),
            Ok(Input::Signal(signal)) => vec![Event::Signal(signal)],
            Ok(Input::Control { request, reply }) => {
                next_id += 1;
                replies.insert(next_id, reply);
                vec![Event::Request {
                    id: next_id,
                    request,
                }]
            }
            Ok(Input::Cancel { reply }) => {
                let id = replies
                    .iter()
                    .find(|(_, r)| r.is_for(&reply))
                    .map(|(&id, _)| id);
                match id {
                    Some(id) => {
                        replies.remove(&id);
                        vec![Event::Cancel { id }]
                    }
                    None => Vec::new(),
                }
            }
            Ok(Input::Notify {
                service,
                run,
                message,
            }) => index_of(&sup, &service)
                .map(|service| Event::Notify {
                    service,
                    run,
                    message,
                })
                .into_iter()
                .collect(),
            Ok(Input::FdReady { service, run }) => index_of(&sup, &service)
                .map(|service| Event::FdReady { service, run })
                .into_iter()
                .collect(),
            Ok(Input::ProbeDone { token, result }) => vec![Event::ProbeDone { token, result }],
            Ok(Input::Changed { service, path }) => {
                debug!(service, path = %path.display(), "watched path changed");
                index_of(&sup, &service)
                    .map(|service| Event::Changed { service })
                    .into_iter()
                    .collect()
            }
            Err(RecvTimeoutError::Timeout) => vec![Event::Tick],
            Err(RecvTimeoutError::Disconnected) => {
                // Cannot happen while `setup` holds the receiver and the signal
                // thread its sender; if it ever does, keep supervising by deadlines.
                warn!("input channel closed");
                vec![Event::Tick]
            }
        };
        let now = Instant::now();
        for event in events {
            pending.extend(sup.on_event(event, now));
        }
    }
}

fn reap_events() -> Vec<Event> {
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

/// Carry out one action; return the events it produced.
fn execute(sup: &Supervisor, action: Action, setup: &Setup) -> Vec<Event> {
    match action {
        Action::Spawn(target) => vec![spawn(sup, target, setup)],
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
            service,
            token,
            probe,
            timeout,
        } => match probe {
            Probe::Exec { command } => vec![spawn_probe(sup, service, &command)],
            other => {
                probe::spawn(other, timeout, token, setup.inputs_tx.clone());
                Vec::new()
            }
        },
        Action::LoadConfig { id } => {
            let result = config::load_with(&setup.service_dirs, &setup.load_options)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect());
            vec![Event::Loaded { id, result }]
        }
        Action::Exit(_) | Action::Reply { .. } => Vec::new(),
    }
}

/// The loop's index of the service named `name` (inputs from threads name
/// services; indices are stable for a whole run).
fn index_of(sup: &Supervisor, name: &str) -> Option<usize> {
    sup.services.iter().position(|s| s.name() == name)
}

/// Point the watcher at every service's `watch` paths (after a config
/// reload too: removed services watch nothing).
pub fn set_watches(sup: &Supervisor, setup: &Setup) {
    for svc in &sup.services {
        let spec = svc.next_spec.as_ref().unwrap_or(&svc.spec);
        let paths: &[PathBuf] = if svc.removed { &[] } else { &spec.watch };
        setup.watcher.set(svc.name(), paths);
    }
}

fn spawn_probe(sup: &Supervisor, i: usize, command: &[String]) -> Event {
    let target = Target::Probe(i);
    let result = match sup.services.get(i) {
        Some(svc) => {
            let launch = Launch {
                argv: command,
                output: OutputMode::Null,
                env: Vec::new(),
                fd: None,
            };
            process::spawn_service(&svc.spec, launch).map(|(pid, _)| pid)
        }
        None => Err(SpawnError::new(format!("no service #{i}"))),
    };
    spawned_event(target, result)
}

fn spawned_event(target: Target, result: Result<nix::unistd::Pid, SpawnError>) -> Event {
    match result {
        Ok(pid) => Event::Spawned { target, pid },
        Err(err) => Event::SpawnFailed {
            target,
            error: err.message,
            code: err.code,
        },
    }
}

/// A service's own process: its readiness channel (sd_notify socket or
/// notification fd) is made for this run, and its output registered.
fn spawn_service(
    sup: &Supervisor,
    i: usize,
    setup: &Setup,
) -> Result<nix::unistd::Pid, SpawnError> {
    let svc = sup
        .services
        .get(i)
        .ok_or_else(|| SpawnError::new(format!("no service #{i}")))?;
    let spec = &svc.spec;
    // The run number this spawn will have once it succeeds.
    let run = svc.starts + 1;
    let mut launch = Launch::service(spec);
    launch.env.extend(socket_env(setup, spec));
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
    let (pid, pipes) = process::spawn_service(spec, launch)?;
    register_output(setup, &spec.name, pipes);
    // Its socket is read from now on, each datagram judged by whether its
    // sender belongs to this pid (the thread reads /proc, the loop never).
    if spec.ready == Some(Ready::Notify)
        && let Err(err) = setup.notify.started(&spec.name, run, pid)
    {
        warn!(service = %spec.name, %err, "readiness messages will not be read");
    }
    Ok(pid)
}

/// `CORRAL_SOCKET` for what runs in a service's context, unless its own
/// `env` sets it.
fn socket_env(setup: &Setup, spec: &config::ServiceSpec) -> Option<(String, String)> {
    let socket = setup.socket.as_ref()?;
    if spec.env.iter().any(|(k, _)| k == "CORRAL_SOCKET") {
        return None;
    }
    Some(("CORRAL_SOCKET".into(), socket.display().to_string()))
}

fn register_output(setup: &Setup, name: &str, pipes: Option<process::Pipes>) {
    if let Some(pipes) = pipes {
        let name: Arc<str> = Arc::from(name);
        setup.output.add(name.clone(), Stream::Stdout, pipes.stdout);
        setup.output.add(name, Stream::Stderr, pipes.stderr);
    }
}

/// An s6 `finish` script: `finish CODE SIGNUM` in the service's context,
/// CODE being 256 when the service was killed by signal SIGNUM (s6-supervise).
fn spawn_finish(sup: &Supervisor, i: usize, setup: &Setup) -> Result<nix::unistd::Pid, SpawnError> {
    let svc = sup
        .services
        .get(i)
        .ok_or_else(|| SpawnError::new(format!("no service #{i}")))?;
    let (Some(script), State::Finishing { exit, .. }) = (&svc.spec.finish, &svc.state) else {
        return Err(SpawnError::new("no finish script".into()));
    };
    let (code, signal) = match exit {
        Exit::Code(code) => (*code, 0),
        Exit::Signal(signal) => (256, *signal as i32),
    };
    let argv = [
        script.display().to_string(),
        code.to_string(),
        signal.to_string(),
    ];
    let launch = Launch {
        argv: &argv,
        output: svc.spec.output,
        env: socket_env(setup, &svc.spec).into_iter().collect(),
        fd: None,
    };
    let (pid, pipes) = process::spawn_service(&svc.spec, launch)?;
    register_output(setup, svc.name(), pipes);
    Ok(pid)
}

/// The `reload = { exec = [...] }` hook: the service's context, plus
/// `MAINPID`; its output goes where the service's goes.
fn spawn_hook(sup: &Supervisor, i: usize, setup: &Setup) -> Result<nix::unistd::Pid, SpawnError> {
    let svc = sup
        .services
        .get(i)
        .ok_or_else(|| SpawnError::new(format!("no service #{i}")))?;
    let Some(Reload::Exec(command)) = &svc.spec.reload else {
        return Err(SpawnError::new("no reload hook".into()));
    };
    let mut launch = Launch {
        argv: command,
        output: svc.spec.output,
        env: socket_env(setup, &svc.spec).into_iter().collect(),
        fd: None,
    };
    if let Some(pid) = svc.main_pid.or(svc.pid()) {
        launch
            .env
            .push(("MAINPID".into(), pid.as_raw().to_string()));
    }
    let (pid, pipes) = process::spawn_service(&svc.spec, launch)?;
    register_output(setup, svc.name(), pipes);
    Ok(pid)
}

fn spawn(sup: &Supervisor, target: Target, setup: &Setup) -> Event {
    let result = match target {
        Target::Service(i) => spawn_service(sup, i, setup),
        Target::Hook(i) => spawn_hook(sup, i, setup),
        Target::FinishScript(i) => spawn_finish(sup, i, setup),
        // Exec probes are spawned by `Action::Probe`, which knows the command.
        Target::Probe(i) => Err(SpawnError::new(format!(
            "probe of service #{i} spawned without its command"
        ))),
        Target::Main => match &sup.main {
            Some(main) => process::spawn_main(&main.argv),
            None => Err(process::SpawnError {
                message: "no main command".into(),
                code: 1,
            }),
        },
        Target::Init(i) => spawn_script(sup.init.paths.get(i)),
        Target::Finish(i) => spawn_script(sup.finish.paths.get(i)),
    };
    spawned_event(target, result)
}

fn spawn_script(
    path: Option<&std::path::PathBuf>,
) -> Result<nix::unistd::Pid, process::SpawnError> {
    match path {
        Some(path) => process::spawn_script(path),
        None => Err(process::SpawnError {
            message: "no such script".into(),
            code: 1,
        }),
    }
}
