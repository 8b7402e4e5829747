//! SIGHUP and `ctl reload` without names: a new set of definitions, applied.
//!
//! The executor reads the files (`Action::LoadConfig`); this applies the
//! result: a set with any error is rejected whole and the running services
//! are left untouched; otherwise new services are added (and started by
//! `schedule`), removed ones stopped and hidden, changed ones restarted with
//! their new definition, and then every service that defines a `reload` is
//! reloaded. Services keep their id for the whole run (a removed one is
//! only marked), so pending requests and probe tokens stay valid.

use std::time::Instant;

use crate::log::{error, info};

use super::Supervisor;
use crate::config::Spec;
use crate::event::{Action, RequestId};
use crate::protocol::Response;
use crate::service::State;

impl Supervisor {
    pub(super) fn on_loaded(
        &mut self,
        id: Option<RequestId>,
        result: Result<Spec, Vec<String>>,
        now: Instant,
    ) -> Vec<Action> {
        let (mut actions, response) = match result {
            Ok(spec) => self.apply(spec, now),
            Err(errors) => (Vec::new(), rejected(&errors)),
        };
        if let Some(id) = id {
            actions.push(Action::Reply { id, response });
        }
        // The watches first: what the services watch now, before anything
        // the new definitions start.
        let mut all = self.watches();
        all.extend(actions);
        all
    }

    /// A valid new set: diff by name, then reload every service that
    /// defines a reload (except what was just (re)started with its new
    /// definition). Returns the actions and the answer, one message per change.
    fn apply(&mut self, mut spec: Spec, now: Instant) -> (Vec<Action>, Response) {
        self.regroup(&mut spec);
        let mut actions = Vec::new();
        let mut messages = Vec::new();
        let names: Vec<String> = spec.services.iter().map(|s| s.name.clone()).collect();
        self.bundles = spec.bundles;
        for new in spec.services {
            let Some(svc) = self
                .services
                .find(&new.name)
                .and_then(|id| self.services.get_mut(id))
            else {
                messages.push(format!("{}: added", new.name));
                self.services.push(new);
                continue;
            };
            if svc.is_removed() {
                messages.push(format!("{}: added", new.name));
                svc.revive(new);
            } else if new.replica.is_some() && svc.current_spec().differs_only_in_count(&new) {
                // Only `CORRAL_REPLICAS`: seen from the next start.
                svc.respec(new);
            } else if svc.current_spec() != &new {
                let (changed, message) = svc.redefine(new, now);
                actions.extend(changed);
                messages.push(message);
            }
        }
        for svc in self.services.iter_mut() {
            if !svc.is_removed() && !names.iter().any(|n| n == svc.name()) {
                messages.push(format!("{}: removed", svc.name()));
                svc.remove();
            }
        }
        self.services.rebuild_deps();
        for svc in self.services.iter_mut() {
            if svc.is_removed() || svc.spec().reload.is_none() || svc.has_pending_definition() {
                continue;
            }
            if matches!(svc.state(), State::Running { .. }) {
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
        (actions, Response::messages(messages))
    }
}

/// A set with errors: nothing changes, and the answer lists every error.
fn rejected(errors: &[String]) -> Response {
    for e in errors {
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
    for e in errors {
        message.push('\n');
        message.push_str(e);
    }
    Response::error(message)
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::super::testing::*;
    use super::*;
    use crate::config::{Reload, ServiceSpec};
    use crate::event::{Event, Order, Target};
    use crate::exit::Exit;

    fn load(h: &mut Harness, id: Option<u64>, services: Vec<ServiceSpec>) {
        h.event(Event::Loaded {
            id,
            result: Ok(Spec {
                services,
                ..Default::default()
            }),
        });
    }

    fn watched(h: &Harness) -> Vec<(String, usize)> {
        h.log
            .iter()
            .filter_map(|a| match a {
                Action::Watch { service, paths } => Some((service.clone(), paths.len())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_set_with_errors_changes_nothing_and_says_every_error() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.take_log();
        h.event(Event::Loaded {
            id: Some(1),
            result: Err(vec!["a.toml:1:1: bad".into(), "b.toml:2:3: worse".into()]),
        });
        assert_eq!(
            h.reply(1).and_then(|r| r.error),
            Some(
                "new service definitions rejected (2 errors), nothing changed:\n\
                 a.toml:1:1: bad\nb.toml:2:3: worse"
                    .into()
            )
        );
        assert!(h.signalled().is_empty() && h.spawned().is_empty());
        assert_eq!(h.pid_of("web"), pid(100));
    }

    #[test]
    fn added_services_start_removed_ones_stop_and_hide_and_ids_stay() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &["db"])], false));
        let web = h.pid_of("web");
        h.take_log();
        load(&mut h, Some(1), vec![svc("db", &[]), svc("cache", &["db"])]);
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec!["cache: added".to_string(), "web: removed".to_string()])
        );
        // The new one gets the next id and starts; the removed one stops.
        assert_eq!(h.spawned(), vec![Target::Service(id(2))]);
        assert_eq!(h.signalled(), vec![(web, Signal::SIGTERM)]);
        assert_eq!(
            watched(&h),
            vec![("db".into(), 0), ("web".into(), 0), ("cache".into(), 0)]
        );
        h.exit(web, Exit::Code(0));
        h.order(2, Order::Status { services: vec![] });
        let names: Vec<String> = h
            .reply(2)
            .expect("answered")
            .services
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, vec!["cache", "db"], "a removed service is hidden");
        h.order(
            3,
            Order::Stop(crate::event::Names::These(vec!["web".into()])),
        );
        assert_eq!(
            h.reply(3).and_then(|r| r.error),
            Some("no service \"web\" (did you mean \"db\"?)".into())
        );
    }

    #[test]
    fn a_changed_definition_restarts_the_service_with_it() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.take_log();
        let mut new = svc("web", &[]);
        new.command = vec!["new".into()];
        load(&mut h, Some(1), vec![new.clone()]);
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec!["web: definition changed, restarting".to_string()])
        );
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        h.take_log();
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.spawned(), vec![Target::Service(id(0))]);
        let spec = h.sup.services.get(id(0)).map(|s| s.spec().clone());
        assert_eq!(spec, Some(new));
        // The same set again: nothing to do.
        let same = h.service("web").spec().clone();
        load(&mut h, Some(2), vec![same]);
        assert_eq!(
            h.reply(2).map(|r| r.messages),
            Some(vec!["no change".to_string()])
        );
    }

    #[test]
    fn services_with_a_reload_are_reloaded_but_not_the_ones_just_changed() {
        let mut a = svc("a", &[]);
        a.reload = Some(Reload::Signal(Signal::SIGHUP));
        let mut b = svc("b", &[]);
        b.reload = Some(Reload::Signal(Signal::SIGUSR1));
        let mut h = Harness::new(sup(vec![a.clone(), b.clone()], false));
        h.take_log();
        b.env = vec![("X".into(), "1".into())];
        load(&mut h, None, vec![a, b]);
        assert_eq!(
            h.signalled(),
            vec![(pid(101), Signal::SIGTERM), (pid(100), Signal::SIGHUP)],
            "b restarts with its change; a reloads"
        );
    }

    #[test]
    fn a_removed_service_defined_again_comes_back_under_its_old_id() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &[])], false));
        load(&mut h, None, vec![svc("db", &[])]);
        h.exit(pid(101), Exit::Code(0));
        h.take_log();
        load(&mut h, Some(1), vec![svc("db", &[]), svc("web", &[])]);
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec!["web: added".to_string()])
        );
        assert_eq!(h.spawned(), vec![Target::Service(id(1))]);
        assert_eq!(h.sup.services.len(), 2);
    }

    #[test]
    fn dependencies_follow_the_new_definitions() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &[])], false));
        load(&mut h, None, vec![svc("db", &[]), svc("web", &["db"])]);
        assert_eq!(h.sup.services.deps(id(1)), &[id(0)]);
        load(&mut h, None, vec![svc("web", &["db"])]);
        assert!(h.sup.services.deps(id(1)).is_empty(), "db is gone");
    }

    #[test]
    fn a_reload_request_is_refused_unless_services_are_up() {
        let mut s = sup(vec![], false);
        s.init = super::super::Scripts::new(vec!["/i/01".into()]);
        let mut h = Harness::new(s);
        h.order(1, Order::ReloadAll);
        assert_eq!(
            h.reply(1).and_then(|r| r.error),
            Some("corral is still running its init scripts".into())
        );
        h.exit(pid(100), Exit::Code(0));
        h.take_log();
        h.order(2, Order::ReloadAll);
        assert_eq!(h.take_log(), vec![Action::LoadConfig { id: Some(2) }]);
    }
}
