//! SIGHUP and `ctl reload` without names: a new set of definitions, applied.
//!
//! The executor reads the files (`Action::LoadConfig`); this applies the
//! result: a set with any error is rejected whole and the running services
//! are left untouched; otherwise new services are added (and started by
//! `schedule`), removed ones stopped and hidden, changed ones restarted with
//! their new definition, and then every service that defines a `reload` is
//! reloaded. Services keep their index for the whole run (a removed one is
//! only marked), so pending requests and probe tokens stay valid.

use std::time::Instant;

use tracing::{error, info};

use super::Supervisor;
use crate::config::{ServiceSpec, Spec};
use crate::control::protocol::Response;
use crate::event::{Action, RequestId};
use crate::service::{Service, State, Want};

impl Supervisor {
    pub(super) fn on_loaded(
        &mut self,
        id: Option<RequestId>,
        result: Result<Spec, Vec<String>>,
        now: Instant,
    ) -> Vec<Action> {
        let reply = |response: Response| -> Vec<Action> {
            id.map(|id| Action::Reply { id, response })
                .into_iter()
                .collect()
        };
        let spec = match result {
            Ok(spec) => spec,
            Err(errors) => {
                for e in &errors {
                    error!("{e}");
                }
                error!(
                    errors = errors.len(),
                    "new service definitions rejected: the running ones stay"
                );
                let mut message = format!(
                    "new service definitions rejected ({} error{}), nothing changed:",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                for e in &errors {
                    message.push('\n');
                    message.push_str(e);
                }
                return reply(Response::error(message));
            }
        };
        let (mut actions, mut messages) = self.apply(spec, now);
        // Then every service that defines a reload, except what was just
        // (re)started with its new definition.
        for svc in &mut self.services {
            if svc.removed || svc.spec.reload.is_none() || svc.next_spec.is_some() {
                continue;
            }
            if matches!(svc.state, State::Running { .. }) {
                messages.push(format!("{}: reloaded", svc.name()));
                actions.extend(svc.reload(now));
            }
        }
        if messages.is_empty() {
            messages.push("no change".to_string());
        }
        for m in &messages {
            info!("reload: {m}");
        }
        actions.extend(reply(Response::messages(messages)));
        actions
    }

    /// Diff by name; returns the actions and one message per change.
    fn apply(&mut self, spec: Spec, now: Instant) -> (Vec<Action>, Vec<String>) {
        let mut actions = Vec::new();
        let mut messages = Vec::new();
        let names: Vec<String> = spec.services.iter().map(|s| s.name.clone()).collect();
        for new in spec.services {
            match self.services.iter().position(|s| s.name() == new.name) {
                None => {
                    messages.push(format!("{}: added", new.name));
                    let id = self.services.len();
                    self.services.push(Service::new(id, new));
                }
                Some(i) => {
                    let svc = &mut self.services[i];
                    if svc.removed {
                        messages.push(format!("{}: added", new.name));
                        revive(svc, new);
                    } else if current(svc) != &new {
                        actions.extend(change(svc, new, now, &mut messages));
                    }
                }
            }
        }
        for svc in &mut self.services {
            if !svc.removed && !names.iter().any(|n| n == svc.name()) {
                messages.push(format!("{}: removed", svc.name()));
                svc.removed = true;
                // `schedule` stops it, dependants first.
                svc.want = Want::Down;
            }
        }
        self.rebuild_deps();
        (actions, messages)
    }

    /// `after` as indices, from the newest definition of each service.
    pub(super) fn rebuild_deps(&mut self) {
        let names: Vec<(String, bool)> = self
            .services
            .iter()
            .map(|s| (s.name().to_string(), s.removed))
            .collect();
        self.deps = self
            .services
            .iter()
            .map(|s| {
                current(s)
                    .after
                    .iter()
                    .filter_map(|dep| names.iter().position(|(n, removed)| n == dep && !removed))
                    .collect()
            })
            .collect();
    }
}

/// The definition a service runs with next: a pending change, or its own.
fn current(svc: &Service) -> &ServiceSpec {
    svc.next_spec.as_ref().unwrap_or(&svc.spec)
}

/// A removed service defined again: a fresh start.
fn revive(svc: &mut Service, new: ServiceSpec) {
    let enabled = new.enabled;
    if svc.is_down() {
        svc.spec = new;
        svc.next_spec = None;
        svc.state = State::Idle;
        svc.failures = 0;
    } else {
        svc.next_spec = Some(new);
    }
    svc.removed = false;
    svc.want = if enabled { Want::Up } else { Want::Down };
}

/// A definition that changed: a stopped service just takes it; a running one
/// restarts with it (or stops, if it is now disabled).
fn change(
    svc: &mut Service,
    new: ServiceSpec,
    now: Instant,
    messages: &mut Vec<String>,
) -> Vec<Action> {
    let name = new.name.clone();
    let enabled = new.enabled;
    if svc.is_down() {
        svc.spec = new;
        svc.next_spec = None;
        if !enabled {
            svc.want = Want::Down;
        }
        messages.push(format!("{name}: definition updated"));
        return Vec::new();
    }
    svc.next_spec = Some(new);
    if !enabled {
        messages.push(format!("{name}: now disabled, stopping"));
        svc.want = Want::Down;
        return Vec::new();
    }
    messages.push(format!("{name}: definition changed, restarting"));
    svc.restart(now)
}
