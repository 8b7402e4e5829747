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
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::sys::signal::Signal;
use tracing::{debug, warn};

use super::core::Supervisor;
use crate::control::protocol::Response;
use crate::event::{Action, Event, Input, RequestId, Target};
use crate::output::{Output, Stream};
use crate::process;
use crate::reaper;

/// What the loop needs besides the state machine.
pub struct Setup {
    /// Signals and control requests, from their threads.
    pub inputs: Receiver<Input>,
    pub output: Output,
    /// corral is PID 1 of its namespace (else it is a child subreaper).
    pub pid1: bool,
}

/// Run until the supervisor is done; returns corral's exit status.
pub fn run(mut sup: Supervisor, setup: Setup) -> i32 {
    let mut pending: VecDeque<Action> = sup.start(Instant::now()).into();
    // Reply channels of control requests in flight, by request id.
    let mut replies: HashMap<RequestId, Sender<Response>> = HashMap::new();
    let mut next_id: RequestId = 0;
    loop {
        while let Some(action) = pending.pop_front() {
            match action {
                Action::Exit(code) => {
                    for (_, reply) in replies.drain() {
                        let _ = reply.send(Response::error("corral is exiting"));
                    }
                    let deadline = Instant::now() + Duration::from_secs(1);
                    if !setup.output.finish(deadline) {
                        warn!("some service output could not be flushed");
                    }
                    return code;
                }
                Action::Reply { id, response } => {
                    // A client that went away is no error: nothing waits any more.
                    if let Some(reply) = replies.remove(&id) {
                        let _ = reply.send(response);
                    }
                }
                action => {
                    for event in execute(&sup, action, &setup) {
                        pending.extend(sup.on_event(event, Instant::now()));
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
                    .find(|(_, r)| r.same_channel(&reply))
                    .map(|(&id, _)| id);
                match id {
                    Some(id) => {
                        replies.remove(&id);
                        vec![Event::Cancel { id }]
                    }
                    None => Vec::new(),
                }
            }
            // Wired into the core in the readiness work in progress.
            Ok(other) => {
                debug!(?other, "input not handled yet");
                Vec::new()
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
            let n = process::signal_all(signal, setup.pid1);
            debug!(
                signal = signal.as_str(),
                processes = n,
                "signalled every remaining process"
            );
            // Learn at once whether anything is left: with no child at all, no
            // SIGCHLD would ever come.
            reap_events()
        }
        Action::Exit(_) | Action::Reply { .. } => Vec::new(),
    }
}

fn spawn(sup: &Supervisor, target: Target, setup: &Setup) -> Event {
    let result = match target {
        Target::Service(i) => match sup.services.get(i) {
            Some(svc) => process::spawn_service(&svc.spec).map(|(pid, pipes)| {
                if let Some(pipes) = pipes {
                    let name: Arc<str> = Arc::from(svc.spec.name.as_str());
                    setup.output.add(name.clone(), Stream::Stdout, pipes.stdout);
                    setup.output.add(name, Stream::Stderr, pipes.stderr);
                }
                pid
            }),
            None => Err(process::SpawnError {
                message: format!("no service #{i}"),
                code: 1,
            }),
        },
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
    match result {
        Ok(pid) => Event::Spawned { target, pid },
        Err(err) => Event::SpawnFailed {
            target,
            error: err.message,
            code: err.code,
        },
    }
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
