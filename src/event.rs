//! The vocabulary between the outside world and the pure core: `Input`s
//! from the threads, `Event`s in, `Action`s out.
//!
//! Threads (signals, control, notify, watch, probes) send `Input`s; the
//! edge (`supervisor::edge`) turns them into events, a control request into
//! an `Order` (its signal parsed, its reply channel kept aside), a service
//! name into its `ServiceId`. The pure transitions in `service` and
//! `supervisor::core` answer with actions, which only the executor
//! (`supervisor::execute`) carries out, from what each action carries alone.
//! Events and actions are plain comparable data: the core's tests compare
//! them. Answers stay the wire's `Response`: the core composes them, and a
//! second type would only be copied field by field.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::calendar::{Schedule, Wall};
use crate::config::{Probe, ServiceSpec, Spec};
use crate::exit::Exit;
use crate::protocol::{Request, Response};

/// What the threads send the loop: a signal, or a control request with
/// where its answer goes. The executor turns each into an `Event` (keeping
/// the `Reply` itself, so the core stays plain data).
#[derive(Debug)]
pub enum Input {
    Signal(Signal),
    Control {
        request: Request,
        reply: Reply,
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
    /// The service wrote a newline to its notification fd (s6 readiness),
    /// or a line of its output matched its `ready.log-line`.
    FdReady {
        service: String,
        run: u32,
    },
    /// A TCP or HTTP probe (run on its own short-lived thread) finished.
    ProbeDone {
        token: ProbeToken,
        result: Result<(), String>,
    },
    /// A watched path of `service` changed (created, written, replaced by
    /// rename, removed). The core debounces.
    Changed {
        service: String,
        path: PathBuf,
    },
}

/// Where the loop sends the one answer to a control request: a channel,
/// and something to run once the answer is in it (or once the request is
/// dropped unanswered), so that the control socket's poll thread is woken
/// by the loop itself rather than by a thread watching the channel.
pub struct Reply {
    tx: Option<Sender<Response>>,
    then: Option<Box<dyn FnOnce() + Send>>,
}

impl Reply {
    /// Answers go to `tx`; whoever waits on it blocks on the channel.
    pub fn new(tx: Sender<Response>) -> Reply {
        Reply {
            tx: Some(tx),
            then: None,
        }
    }

    /// Answers go to `tx`, and `then` runs after the answer is sent, or
    /// after the channel is dropped if none ever is.
    pub fn then(tx: Sender<Response>, then: impl FnOnce() + Send + 'static) -> Reply {
        Reply {
            tx: Some(tx),
            then: Some(Box::new(then)),
        }
    }

    /// Send the answer (once: later ones are dropped). A receiver that is
    /// gone is no error: nobody waits any more.
    pub fn send(&mut self, response: Response) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(response);
        }
        if let Some(then) = self.then.take() {
            then();
        }
    }

    /// Whether this is the reply whose sender `other` is a clone of.
    pub fn is_for(&self, other: &Sender<Response>) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.same_channel(other))
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        // The channel first, so that `then` finds it ended.
        drop(self.tx.take());
        if let Some(then) = self.then.take() {
            then();
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.tx.is_some() {
            "Reply(waiting)"
        } else {
            "Reply(sent)"
        })
    }
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

/// A service, for the whole run. Only `service::Services` hands ids out, in
/// order, and services are never taken out again (ARCHITECTURE.md, invariant
/// 12), so an id names the same service from the first event to the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(usize);

impl ServiceId {
    /// The id of the `index`th service handed out (`Services` and tests).
    pub(crate) const fn from_index(index: usize) -> ServiceId {
        ServiceId(index)
    }

    /// Where `Services` keeps it.
    pub(crate) const fn index(self) -> usize {
        self.0
    }
}

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Names one probe: the service it belongs to and its number among that
/// service's probes. An answer whose token is not the probe in flight (a
/// cancelled or timed-out one) is ignored, never misapplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeToken {
    pub service: ServiceId,
    pub seq: u32,
}

/// Something corral starts: a service (by id), the main
/// COMMAND, or an init / finish script (by index in its list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Service(ServiceId),
    Main,
    Init(usize),
    Finish(usize),
    /// The `reload = { exec = [...] }` hook of a service.
    Hook(ServiceId),
    /// An exec probe (readiness or liveness) of a service.
    Probe(ServiceId),
    /// The s6 `finish` script of a service, after an exit.
    FinishScript(ServiceId),
    /// The `down` command of an s6-rc oneshot, when it is stopped.
    Down(ServiceId),
    /// The `pre-stop = { exec = [...] }` hook of a service, before its stop signal.
    PreStop(ServiceId),
}

/// The processes a service has: its own, its s6 `finish` script, its reload
/// hook, its exec probe, an s6-rc oneshot's `down` command, its `pre-stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Service,
    FinishScript,
    Hook,
    Probe,
    /// An s6-rc oneshot's `down` command.
    Down,
    /// Its `pre-stop` hook.
    PreStop,
}

impl Target {
    /// The service this is a process of, and which of its processes.
    pub fn service(self) -> Option<(ServiceId, Child)> {
        match self {
            Target::Service(id) => Some((id, Child::Service)),
            Target::Hook(id) => Some((id, Child::Hook)),
            Target::Probe(id) => Some((id, Child::Probe)),
            Target::FinishScript(id) => Some((id, Child::FinishScript)),
            Target::Down(id) => Some((id, Child::Down)),
            Target::PreStop(id) => Some((id, Child::PreStop)),
            Target::Main | Target::Init(_) | Target::Finish(_) => None,
        }
    }
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
    Order {
        id: RequestId,
        order: Order,
    },
    /// Nobody waits for the answer to request `id` any more.
    Cancel {
        id: RequestId,
    },
    /// An sd_notify datagram of run `run` of service `service`.
    Notify {
        service: ServiceId,
        run: u32,
        message: NotifyMessage,
    },
    /// Run `run` of `service` is ready: a newline on its notification fd,
    /// or a line of its output that matched `ready.log-line`.
    FdReady {
        service: ServiceId,
        run: u32,
    },
    /// A TCP or HTTP probe finished.
    ProbeDone {
        token: ProbeToken,
        result: Result<(), String>,
    },
    /// A watched path of `service` changed.
    Changed {
        service: ServiceId,
    },
    /// The definitions were read again (SIGHUP, `ctl reload`): the new set,
    /// or every error. `id`: the control request that asked, if any.
    Loaded {
        id: Option<RequestId>,
        result: Result<Spec, Vec<String>>,
    },
    /// The wall clock's answer to `Action::Clock` for a scheduled service:
    /// the tick its timer was armed for, if the wall clock has reached it,
    /// and the tick to arm it for next (`Err`: there is none).
    Clock {
        service: ServiceId,
        /// The wall clock when it was read.
        wall: Wall,
        due: Option<Wall>,
        next: Result<NextTick, String>,
    },
}

/// A scheduled service's next tick: its wall time, when it falls on the
/// loop's monotonic clock (the timer's deadline), and as a person reads it
/// in the container's zone. The executor reads the clocks; the core keeps
/// what it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextTick {
    pub tick: Wall,
    pub at: Instant,
    pub local: String,
}

/// A control request as the core takes it: service names still to resolve
/// (the core alone knows them), but signals parsed and times typed.
/// `supervisor::edge` makes one from the wire's `Request`, so the core never
/// parses what a client wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Every service (sorted by name) when `services` is empty.
    Status {
        services: Vec<String>,
    },
    Start(Names),
    Stop(Names),
    Restart(Names),
    Signal {
        signal: Signal,
        services: Vec<String>,
    },
    /// May the output of `service` be read (the control thread reads it)?
    Logs {
        service: String,
    },
    /// Until `until` holds of every service named, at most `timeout`.
    /// `since_run` (only with one service): the run that `Down`,
    /// `Finished`, `Restarted` and `RestartedReady` count from; none: the
    /// service's current run when the order arrives.
    Wait {
        services: Vec<String>,
        timeout: Option<Duration>,
        until: Until,
        since_run: Option<u32>,
    },
    /// The named services' reloads.
    Reload {
        services: Vec<String>,
    },
    /// Read every definition again (like SIGHUP), then reload every service
    /// that defines a reload.
    ReloadAll,
    Health,
    Shutdown {
        exit_code: Option<i32>,
    },
    /// Run a scheduled or oneshot service now; answered when the run ends.
    Run {
        service: String,
    },
    /// Run `replicas` instances of a replicated service (answered at once).
    Scale {
        service: String,
        replicas: u32,
    },
}

/// What a wait waits for, of each service it names (s6's `-u -U -d -D -r
/// -R`). Each is a condition on the service's state, checked after every
/// event; the last two, and a run that ended, count from a run number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// A process runs (a oneshot: exited 0).
    Started,
    /// Ready (a oneshot: exited 0).
    Ready,
    /// No process: the run counted from has ended.
    Down,
    /// Down, and its s6 `finish` script done.
    Finished,
    /// A run after the one counted from has been spawned.
    Restarted,
    /// A run after the one counted from is ready.
    RestartedReady,
}

/// The services a start, stop or restart acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    All,
    These(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start `job`; its result comes back at once as `Spawned` or
    /// `SpawnFailed` for `target`. The job carries everything the spawn
    /// needs, so the executor never reads the core's state.
    Spawn { target: Target, job: Job },
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
    Reply { id: RequestId, response: Response },
    /// Run a TCP or HTTP probe on a short-lived thread, answered by
    /// `ProbeDone` with `token`. (Exec probes are `Spawn`s: children like
    /// any other.)
    Probe {
        token: ProbeToken,
        probe: Probe,
        timeout: Duration,
    },
    /// Make `paths` what the watch thread watches for `service` (none:
    /// nothing); its changes come back as `Changed`.
    Watch {
        service: String,
        paths: Vec<PathBuf>,
    },
    /// Read the service definitions again; answer with `Event::Loaded`.
    LoadConfig { id: Option<RequestId> },
    /// Everything is stopped and reaped: exit with this status.
    Exit(i32),
    /// Read the wall clock for the timer of scheduled service `service`:
    /// is `pending` (the tick it was armed for) due, and which tick comes
    /// next (after `last`, the last tick taken, too)? Answered at once by
    /// `Event::Clock`.
    Clock {
        service: ServiceId,
        schedule: Arc<Schedule>,
        pending: Option<Wall>,
        last: Option<Wall>,
    },
}

/// What to start, with everything needed to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Run `run` of a service (its `starts` once this spawn succeeds): the
    /// readiness channel the spec asks for (sd_notify socket, notification
    /// fd) is made for that run, so a message from an older run is ignored.
    Service { spec: Arc<ServiceSpec>, run: u32 },
    /// A `reload = { exec = [...] }` or `pre-stop = { exec = [...] }` hook,
    /// in the service's context, with `MAINPID` set to `main_pid`.
    Hook {
        spec: Arc<ServiceSpec>,
        command: Vec<String>,
        main_pid: Pid,
    },
    /// The s6 `finish` script, after the service ended with `exit`.
    FinishScript {
        spec: Arc<ServiceSpec>,
        script: PathBuf,
        exit: Exit,
    },
    /// An exec probe, in the service's context, its output discarded.
    Probe {
        spec: Arc<ServiceSpec>,
        command: Vec<String>,
    },
    /// The `down` command of an s6-rc oneshot, in the service's context
    /// (user, directory, environment, output), like its `up`.
    Down {
        spec: Arc<ServiceSpec>,
        command: Vec<String>,
    },
    /// The main COMMAND.
    Main { argv: Vec<String> },
    /// An init or finish script.
    Script { path: PathBuf },
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A `Reply` whose `then` counts its runs and records whether the
    /// answer channel was still open at that moment.
    fn counted() -> (
        Reply,
        crossbeam_channel::Receiver<Response>,
        Arc<AtomicUsize>,
    ) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        (
            Reply::then(tx, move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            rx,
            runs,
        )
    }

    #[test]
    fn then_runs_once_after_the_answer_is_in_the_channel() {
        let (mut reply, rx, runs) = counted();
        reply.send(Response::ok());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(rx.try_recv().is_ok_and(|r| r.ok));
        // A second answer is dropped, and nothing runs again, not even on drop.
        reply.send(Response::error("again"));
        drop(reply);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn then_runs_when_dropped_unanswered_with_the_channel_already_closed() {
        let (tx, rx) = crossbeam_channel::bounded::<Response>(1);
        let closed_then = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&closed_then);
        let probe = rx.clone();
        let reply = Reply::then(tx, move || {
            // The poll thread's view when woken: the channel has ended.
            if matches!(
                probe.try_recv(),
                Err(crossbeam_channel::TryRecvError::Disconnected)
            ) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
        drop(reply);
        assert_eq!(closed_then.load(Ordering::SeqCst), 1);
        drop(rx);
    }

    #[test]
    fn is_for_matches_clones_of_its_own_sender_only() {
        let (tx, _rx) = crossbeam_channel::bounded::<Response>(1);
        let (other, _other_rx) = crossbeam_channel::bounded::<Response>(1);
        let reply = Reply::new(tx.clone());
        assert!(reply.is_for(&tx));
        assert!(!reply.is_for(&other));
    }

    #[test]
    fn a_target_names_the_service_and_which_of_its_processes() {
        let web = ServiceId::from_index(2);
        assert_eq!(web.to_string(), "#2");
        assert_eq!(Target::Service(web).service(), Some((web, Child::Service)));
        assert_eq!(Target::Hook(web).service(), Some((web, Child::Hook)));
        assert_eq!(Target::Probe(web).service(), Some((web, Child::Probe)));
        assert_eq!(
            Target::FinishScript(web).service(),
            Some((web, Child::FinishScript))
        );
        assert_eq!(Target::Down(web).service(), Some((web, Child::Down)));
        assert_eq!(Target::PreStop(web).service(), Some((web, Child::PreStop)));
        for target in [Target::Main, Target::Init(0), Target::Finish(1)] {
            assert_eq!(target.service(), None);
        }
    }
}
