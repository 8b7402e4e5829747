//! The vocabulary between the outside world and the pure core: `Event`s in,
//! `Action`s out.
//!
//! Threads (signals, output) and the executor turn what happens into events;
//! the pure transitions in `service` and `supervisor::core` answer with
//! actions, which only the executor (`supervisor::run`) carries out.

use std::path::PathBuf;

use crossbeam_channel::Sender;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::config::{Probe, Spec};
use crate::control::protocol::{Request, Response};
use crate::exit::Exit;

/// What the threads send the loop: a signal, or a control request with the
/// channel its answer goes back on. The executor turns each into an `Event`
/// (keeping the reply sender itself, so the core stays plain data).
#[derive(Debug)]
pub enum Input {
    Signal(Signal),
    Control {
        request: Request,
        reply: Sender<Response>,
    },
    /// The client of the request answered on `reply` (a clone of its sender)
    /// hung up: nobody waits for that answer any more.
    Cancel {
        reply: Sender<Response>,
    },
    /// A datagram on a service's `NOTIFY_SOCKET` (sd_notify(3)). `run` is the
    /// service's start count when that socket was made: older runs are ignored.
    Notify {
        service: String,
        run: u32,
        message: NotifyMessage,
    },
    /// The service wrote a newline to its notification fd (s6 readiness).
    FdReady {
        service: String,
        run: u32,
    },
    /// A TCP or HTTP probe (run on its own short-lived thread) finished.
    ProbeDone {
        token: u64,
        result: Result<(), String>,
    },
    /// A watched path of `service` changed (created, written, replaced by
    /// rename, removed). The core debounces.
    Changed {
        service: String,
        path: PathBuf,
    },
}

/// The fields of one sd_notify datagram that corral acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    /// `READY=1`
    pub ready: bool,
    /// `RELOADING=1`
    pub reloading: bool,
    /// `STOPPING=1`
    pub stopping: bool,
    /// `MAINPID=N`
    pub main_pid: Option<i32>,
    /// `STATUS=...`
    pub status: Option<String>,
}

/// Identifies a control request between the core and the executor.
pub type RequestId = u64;

/// Something corral starts: a service (by index in the spec), the main
/// COMMAND, or an init / finish script (by index in its list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Service(usize),
    Main,
    Init(usize),
    Finish(usize),
    /// The `reload = { exec = [...] }` hook of a service.
    Hook(usize),
    /// An exec probe (readiness or liveness) of a service.
    Probe(usize),
    /// The s6 `finish` script of a service, after an exit.
    FinishScript(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A signal corral received (SIGCHLD is turned into `Exited` events by the
    /// executor, which alone calls `waitpid`).
    Signal(Signal),
    /// A child was reaped.
    Exited {
        pid: Pid,
        exit: Exit,
    },
    /// `waitpid` reported ECHILD: corral has no child left at all.
    NoChildren,
    Spawned {
        target: Target,
        pid: Pid,
    },
    SpawnFailed {
        target: Target,
        error: String,
        code: i32,
    },
    /// The earliest deadline has passed (or may have: ticks are idempotent).
    Tick,
    /// A control request; answered by `Action::Reply` with the same id,
    /// at once or when what it asked for is done.
    Request {
        id: RequestId,
        request: Request,
    },
    /// Nobody waits for the answer to request `id` any more.
    Cancel {
        id: RequestId,
    },
    /// An sd_notify datagram of run `run` of service `service`.
    Notify {
        service: usize,
        run: u32,
        message: NotifyMessage,
    },
    /// A newline on the notification fd of run `run` of `service`.
    FdReady {
        service: usize,
        run: u32,
    },
    /// A TCP or HTTP probe finished.
    ProbeDone {
        token: u64,
        result: Result<(), String>,
    },
    /// A watched path of `service` changed.
    Changed {
        service: usize,
    },
    /// The definitions were read again (SIGHUP, `ctl reload`): the new set,
    /// or every error. `id`: the control request that asked, if any.
    Loaded {
        id: Option<RequestId>,
        result: Result<Spec, Vec<String>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Spawn(Target),
    /// Send `signal` to `pid`, or to its process group when `group`.
    Signal {
        pid: Pid,
        signal: Signal,
        group: bool,
    },
    /// Send `signal` to every process left (as PID 1: `kill(-1)`; as a
    /// subreaper: every descendant of corral).
    SignalAll(Signal),
    /// Answer control request `id`.
    Reply {
        id: RequestId,
        response: Response,
    },
    /// Run `probe` for `service`: TCP/HTTP on a short-lived thread (answered
    /// by `ProbeDone`), exec as a child process (`Target::Probe`).
    Probe {
        service: usize,
        token: u64,
        probe: Probe,
        timeout: std::time::Duration,
    },
    /// Read the service definitions again; answer with `Event::Loaded`.
    LoadConfig {
        id: Option<RequestId>,
    },
    /// Everything is stopped and reaped: exit with this status.
    Exit(i32),
}
