//! What the service tests share: definitions, a fake pid, a running service.
#![cfg(test)]

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::{Service, State};
use crate::config::{Probe, Ready, ServiceSpec};
use crate::event::{Action, NotifyMessage, ProbeToken, ServiceId, Target};

pub fn spec(name: &str) -> ServiceSpec {
    ServiceSpec::new(name, vec!["true".into()])
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn id(i: usize) -> ServiceId {
    ServiceId::from_index(i)
}

pub fn pid(n: i32) -> Pid {
    Pid::from_raw(n)
}

/// A started service, pid 100, at t0.
pub fn running(spec: ServiceSpec, t0: Instant) -> Service {
    let mut svc = Service::new(id(0), spec);
    assert_eq!(targets(&svc.start(t0)), vec![Target::Service(id(0))]);
    svc.spawned(pid(100), t0);
    svc
}

pub fn retry_at(svc: &Service) -> Instant {
    match svc.state {
        State::Backoff { retry_at, .. } => retry_at,
        ref other => panic!("expected backoff, got {other:?}"),
    }
}

/// What the actions spawn.
pub fn targets(actions: &[Action]) -> Vec<Target> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { target, .. } => Some(*target),
            _ => None,
        })
        .collect()
}

pub fn with_ready(ready: Ready) -> ServiceSpec {
    let mut s = spec("web");
    s.ready = Some(ready);
    s.ready_timeout = Duration::from_secs(10);
    s
}

pub fn with_finish() -> ServiceSpec {
    let mut s = spec("web");
    s.finish = Some("/srv/web/finish".into());
    s
}

pub fn tcp() -> Probe {
    Probe::Tcp {
        addr: "127.0.0.1:8080".into(),
    }
}

/// The token of the probe the actions launch.
pub fn probe_token(actions: &[Action]) -> ProbeToken {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Probe { token, .. } => Some(*token),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no probe in {actions:?}"))
}

pub fn ready_msg() -> NotifyMessage {
    NotifyMessage {
        ready: true,
        ..NotifyMessage::default()
    }
}
