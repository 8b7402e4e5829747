//! What the core's tests share: a harness that carries out spawns the way
//! the executor does (each gets the next fake pid, at once), on a fake clock.
#![cfg(test)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Supervisor;
use crate::config::{ServiceSpec, Spec};
use crate::event::{Action, Event, Order, ServiceId, Target};
use crate::exit::Exit;
use crate::protocol::Response;
use crate::service::{Service, State};

pub fn svc(name: &str, after: &[&str]) -> ServiceSpec {
    let mut s = ServiceSpec::new(name, vec!["true".into()]);
    s.after = after.iter().map(|&a| a.into()).collect();
    s
}

/// A supervisor of `services`, with a main COMMAND if `main`, and a 9 s
/// shutdown budget.
pub fn sup(services: Vec<ServiceSpec>, main: bool) -> Supervisor {
    let main = main.then(|| vec!["app".to_string()]);
    Supervisor::new(
        Spec {
            services,
            ..Default::default()
        },
        main,
        Vec::new(),
        Vec::new(),
        Duration::from_secs(9),
    )
}

pub fn pid(n: i32) -> Pid {
    Pid::from_raw(n)
}

pub fn id(i: usize) -> ServiceId {
    ServiceId::from_index(i)
}

/// Carry out spawns the way the executor does: each gets the next pid.
pub struct Harness {
    pub sup: Supervisor,
    pub next_pid: i32,
    pub now: Instant,
    /// Every action, in order, with spawns resolved to pids.
    pub log: Vec<Action>,
    /// Answer spawns with `SpawnFailed` (command not found) instead.
    pub fail_spawns: bool,
}

impl Harness {
    pub fn new(sup: Supervisor) -> Harness {
        Harness::started(sup, false)
    }

    /// Every spawn fails, from the first on.
    pub fn new_failing(sup: Supervisor) -> Harness {
        Harness::started(sup, true)
    }

    /// Started at `now` (two harnesses on one fake clock).
    pub fn at(sup: Supervisor, now: Instant) -> Harness {
        Harness::started_at(sup, false, now)
    }

    fn started(sup: Supervisor, fail_spawns: bool) -> Harness {
        Harness::started_at(sup, fail_spawns, Instant::now())
    }

    fn started_at(sup: Supervisor, fail_spawns: bool, now: Instant) -> Harness {
        let mut h = Harness {
            sup,
            next_pid: 100,
            now,
            log: Vec::new(),
            fail_spawns,
        };
        let actions = h.sup.start(h.now);
        h.run(actions);
        h
    }

    pub fn run(&mut self, actions: Vec<Action>) {
        let mut pending: VecDeque<Action> = actions.into();
        while let Some(action) = pending.pop_front() {
            self.log.push(action.clone());
            if let Action::Spawn { target, .. } = action {
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

    pub fn event(&mut self, event: Event) {
        let actions = self.sup.on_event(event, self.now);
        self.run(actions);
    }

    pub fn exit(&mut self, pid: Pid, exit: Exit) {
        self.event(Event::Exited { pid, exit });
    }

    pub fn advance_to(&mut self, at: Instant) {
        self.now = at;
        self.event(Event::Tick);
    }

    pub fn service(&self, name: &str) -> &Service {
        self.sup
            .services
            .find(name)
            .and_then(|id| self.sup.services.get(id))
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    pub fn state_of(&self, name: &str) -> &State {
        self.service(name).state()
    }

    pub fn pid_of(&self, name: &str) -> Pid {
        self.service(name)
            .pid()
            .unwrap_or_else(|| panic!("{name} has no pid"))
    }

    pub fn spawned(&self) -> Vec<Target> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Spawn { target, .. } => Some(*target),
                _ => None,
            })
            .collect()
    }

    pub fn signalled(&self) -> Vec<(Pid, Signal)> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Signal { pid, signal, .. } => Some((*pid, *signal)),
                _ => None,
            })
            .collect()
    }

    pub fn take_log(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.log)
    }

    /// `READY=1` over sd_notify from run `run` of `service`.
    pub fn notify_ready(&mut self, service: ServiceId, run: u32) {
        self.event(Event::Notify {
            service,
            run,
            message: crate::event::NotifyMessage {
                ready: true,
                ..Default::default()
            },
        });
    }

    pub fn order(&mut self, id: u64, order: Order) {
        self.event(Event::Order { id, order });
    }

    /// The answer to request `id`, taken out of the log.
    pub fn reply(&mut self, id: u64) -> Option<Response> {
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
