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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use nix::sys::signal::Signal;
use tracing::{debug, warn};

use super::core::Supervisor;
use crate::event::{Action, Event, Target};
use crate::output::{Output, Stream};
use crate::process;
use crate::reaper;

/// What the loop needs besides the state machine.
pub struct Setup {
    pub events: Receiver<Event>,
    pub output: Output,
    /// corral is PID 1 of its namespace (else it is a child subreaper).
    pub pid1: bool,
}

/// Run until the supervisor is done; returns corral's exit status.
pub fn run(mut sup: Supervisor, setup: Setup) -> i32 {
    let mut pending: VecDeque<Action> = sup.start(Instant::now()).into();
    loop {
        while let Some(action) = pending.pop_front() {
            if let Action::Exit(code) = action {
                let deadline = Instant::now() + Duration::from_secs(1);
                if !setup.output.finish(deadline) {
                    warn!("some service output could not be flushed");
                }
                return code;
            }
            for event in execute(&sup, action, &setup) {
                pending.extend(sup.on_event(event, Instant::now()));
            }
        }
        let received = match sup.next_deadline() {
            Some(deadline) => setup.events.recv_deadline(deadline),
            None => setup
                .events
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        let events = match received {
            Ok(Event::Signal(Signal::SIGCHLD)) => reap_events(),
            Ok(event) => vec![event],
            Err(RecvTimeoutError::Timeout) => vec![Event::Tick],
            Err(RecvTimeoutError::Disconnected) => {
                // Cannot happen while `setup` holds the receiver and the signal
                // thread its sender; if it ever does, keep supervising by deadlines.
                warn!("event channel closed");
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
        Action::Exit(_) => Vec::new(),
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
