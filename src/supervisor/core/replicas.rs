//! `replicas` and `ctl scale` (SPEC section 11): each replicated service's
//! template and how many instances it has now.
//!
//! The instances (`NAME.1` … `NAME.N`) are services like any other, made
//! from the template by `ServiceSpec::instance`; a request or an `after`
//! naming the replicated service means every live instance (`resolve`,
//! `Services::rebuild_deps`). A scale adds (or revives) the instances up
//! to the new count and removes the ones above it, stopped highest first;
//! the others go on with the `CORRAL_REPLICAS` they started with until
//! their next start. A config reload scales to a changed `replicas` value
//! and keeps a runtime count when the file's value did not change.

use std::time::Instant;

use super::Supervisor;
use crate::config::{MAX_REPLICAS, ServiceSpec, Spec};
use crate::event::{Action, RequestId, ServiceId};
use crate::log::info;
use crate::protocol::Response;

/// A replicated service: its definition as written, and its count now.
#[derive(Debug)]
pub struct Group {
    template: ServiceSpec,
    count: u32,
}

impl Group {
    pub fn name(&self) -> &str {
        &self.template.name
    }

    /// The groups of a new set of definitions, at the counts they name.
    pub fn of(spec: &Spec) -> Vec<Group> {
        spec.replicated
            .iter()
            .map(|template| Group {
                count: template.replicas.unwrap_or(1),
                template: template.clone(),
            })
            .collect()
    }
}

impl Supervisor {
    /// The live instances of the replicated service `name`, in id order;
    /// `None`: `name` has no `replicas`.
    pub(super) fn instances(&self, name: &str) -> Option<Vec<ServiceId>> {
        self.groups.iter().find(|g| g.template.name == name)?;
        Some(
            self.services
                .iter()
                .filter(|s| !s.is_removed())
                .filter(|s| s.spec().replica.as_ref().is_some_and(|r| r.group == name))
                .map(|s| s.id())
                .collect(),
        )
    }

    /// `ctl scale NAME N`: answered at once; `ctl wait NAME --ready`
    /// waits for the new instances.
    pub(super) fn request_scale(
        &mut self,
        id: RequestId,
        name: &str,
        count: u32,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let response = if let Some(refusal) = self.not_up() {
            Response::error(refusal)
        } else if !(1..=MAX_REPLICAS).contains(&count) {
            Response::error(format!(
                "the number of replicas goes from 1 to {MAX_REPLICAS} (to stop every instance: corral ctl stop {name})"
            ))
        } else if let Some(old) = self.scale(name, count, now, &mut actions) {
            let s = if count == 1 { "" } else { "s" };
            let message = format!("{name}: {count} replica{s} (was {old})");
            info!(service = %name, replicas = count, was = old, "scaled");
            Response::messages(vec![message])
        } else if self.services.find_live(name).is_some() {
            Response::error(format!(
                "{name} has no `replicas`: add `replicas = N` to its definition to scale it"
            ))
        } else {
            Response::error(self.no_such_service(name))
        };
        actions.push(Action::Reply { id, response });
        actions
    }

    /// Scales the replicated service `name` to `count` instances; returns
    /// the count it had, or `None` if it has no `replicas`.
    fn scale(
        &mut self,
        name: &str,
        count: u32,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> Option<u32> {
        let group = self.groups.iter_mut().find(|g| g.template.name == name)?;
        let old = std::mem::replace(&mut group.count, count);
        let template = group.template.clone();
        for i in 1..=count {
            let spec = template.instance(i, count);
            match self.services.find(&spec.name) {
                Some(id) => {
                    if let Some(svc) = self.services.get_mut(id) {
                        if svc.is_removed() {
                            svc.revive(spec);
                        } else {
                            svc.respec(spec);
                        }
                    }
                }
                None => {
                    self.services.push(spec);
                }
            }
        }
        // The ones above the count, highest first.
        let mut above: Vec<(u32, ServiceId)> = self
            .services
            .iter()
            .filter(|s| !s.is_removed())
            .filter_map(|s| {
                let r = s.spec().replica.as_ref()?;
                (r.group == name && r.index > count).then_some((r.index, s.id()))
            })
            .collect();
        crate::sort::sort_by_key(&mut above, |&(index, _)| std::cmp::Reverse(index));
        for (_, id) in above {
            if let Some(svc) = self.services.get_mut(id) {
                svc.remove();
                actions.extend(svc.stop(now, None));
            }
        }
        self.services.rebuild_deps();
        Some(old)
    }

    /// A reload: where a replicated service's `replicas` did not change in
    /// its file but a `ctl scale` changed its count, `spec` is made to
    /// keep that count; then the new set's groups replace the old.
    pub(super) fn regroup(&mut self, spec: &mut Spec) {
        let mut groups = Group::of(spec);
        for group in &mut groups {
            let name = group.template.name.as_str();
            let Some(old) = self.groups.iter().find(|g| g.template.name == name) else {
                continue;
            };
            if old.template.replicas != group.template.replicas || old.count == group.count {
                continue;
            }
            group.count = old.count;
            spec.services
                .retain(|s| s.replica.as_ref().is_none_or(|r| r.group != name));
            let count = group.count;
            spec.services
                .extend((1..=count).map(|i| group.template.instance(i, count)));
        }
        self.groups = groups;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use super::super::testing::*;
    use super::*;
    use crate::config::{Ready, ServiceSpec};
    use crate::event::{Event, Job, Names, Order};
    use crate::exit::Exit;

    /// `web` with `replicas = n` (a `{replica}` in its command).
    fn web(n: u32) -> ServiceSpec {
        let mut t = svc("web", &[]);
        t.command = vec!["serve".into(), "--port=80{replica}".into()];
        t.replicas = Some(n);
        t
    }

    /// A supervisor of `templates`' instances and `others`, as `load` makes them.
    fn sup_of(templates: Vec<ServiceSpec>, others: Vec<ServiceSpec>) -> Supervisor {
        let mut services = Vec::new();
        for t in &templates {
            let n = t.replicas.unwrap_or(1);
            services.extend((1..=n).map(|i| t.instance(i, n)));
        }
        services.extend(others);
        Supervisor::new(
            Spec {
                services,
                replicated: templates,
                ..Default::default()
            },
            None,
            Vec::new(),
            Vec::new(),
            Duration::from_secs(9),
        )
    }

    fn scale(h: &mut Harness, id: u64, name: &str, n: u32) -> Response {
        h.order(
            id,
            Order::Scale {
                service: name.into(),
                replicas: n,
            },
        );
        h.reply(id).expect("answered")
    }

    /// Each spawned service run's name, command and `CORRAL_REPLICA(S)`.
    fn spawns(h: &Harness) -> Vec<(String, String, String)> {
        h.log
            .iter()
            .filter_map(|a| match a {
                Action::Spawn {
                    job: Job::Service { spec, .. },
                    ..
                } => {
                    let env = |k: &str| spec.env.iter().find(|(n, _)| n == k).map(|(_, v)| v);
                    Some((
                        spec.name.clone(),
                        spec.command.join(" "),
                        format!("{:?}/{:?}", env("CORRAL_REPLICA"), env("CORRAL_REPLICAS")),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    fn live(h: &mut Harness) -> Vec<String> {
        h.order(99, Order::Status { services: vec![] });
        let status = h.reply(99).expect("answered");
        status.services.into_iter().map(|s| s.name).collect()
    }

    fn spawn(name: &str, command: &str, replica: &str) -> (String, String, String) {
        (name.into(), command.into(), replica.into())
    }

    #[test]
    fn scaling_up_starts_the_new_instances_and_down_stops_the_highest_first() {
        let mut h = Harness::new(sup_of(vec![web(3)], vec![]));
        assert_eq!(
            spawns(&h),
            vec![
                spawn("web.1", "serve --port=801", "Some(\"1\")/Some(\"3\")"),
                spawn("web.2", "serve --port=802", "Some(\"2\")/Some(\"3\")"),
                spawn("web.3", "serve --port=803", "Some(\"3\")/Some(\"3\")"),
            ]
        );
        h.take_log();
        let up = scale(&mut h, 1, "web", 5);
        assert_eq!(up.messages, vec!["web: 5 replicas (was 3)".to_string()]);
        assert_eq!(
            spawns(&h),
            vec![
                spawn("web.4", "serve --port=804", "Some(\"4\")/Some(\"5\")"),
                spawn("web.5", "serve --port=805", "Some(\"5\")/Some(\"5\")"),
            ],
            "only the new ones start; the others run on"
        );
        assert!(h.signalled().is_empty());
        assert_eq!(live(&mut h), ["web.1", "web.2", "web.3", "web.4", "web.5"]);
        h.take_log();

        let down = scale(&mut h, 2, "web", 1);
        assert_eq!(down.messages, vec!["web: 1 replica (was 5)".to_string()]);
        assert_eq!(
            h.signalled(),
            vec![
                (pid(104), Signal::SIGTERM),
                (pid(103), Signal::SIGTERM),
                (pid(102), Signal::SIGTERM),
                (pid(101), Signal::SIGTERM),
            ],
            "the highest first, web.1 left running"
        );
        for p in 101..=104 {
            h.exit(pid(p), Exit::Signal(Signal::SIGTERM));
        }
        assert_eq!(live(&mut h), ["web.1"]);
        assert_eq!(h.pid_of("web.1"), pid(100));
        h.take_log();

        // Back up: the removed instances come back under their old ids,
        // and web.1 restarted later sees the count of its new start.
        scale(&mut h, 3, "web", 2);
        assert_eq!(
            spawns(&h),
            vec![spawn(
                "web.2",
                "serve --port=802",
                "Some(\"2\")/Some(\"2\")"
            )]
        );
        assert_eq!(h.sup.services.find("web.2"), Some(id(1)));
        h.take_log();
        h.exit(pid(100), Exit::Code(1));
        h.advance_to(h.now + Duration::from_secs(1));
        assert_eq!(
            spawns(&h),
            vec![spawn(
                "web.1",
                "serve --port=801",
                "Some(\"1\")/Some(\"2\")"
            )]
        );
    }

    #[test]
    fn a_waiting_dependant_waits_for_every_instance_even_new_ones() {
        let mut t = web(2);
        t.ready = Some(Ready::Fd(3));
        let mut h = Harness::new(sup_of(vec![t], vec![svc("app", &["web"])]));
        let ready = |h: &mut Harness, name: &str| {
            let service = h.sup.services.find(name).expect("known");
            h.event(Event::FdReady { service, run: 1 });
        };
        assert_eq!(h.sup.services.deps(id(2)), &[id(0), id(1)]);
        ready(&mut h, "web.1");
        scale(&mut h, 1, "web", 3);
        ready(&mut h, "web.2");
        assert_eq!(*h.state_of("app"), crate::service::State::Idle);
        assert_eq!(
            h.sup.services.deps(id(2)),
            &[id(0), id(1), id(3)],
            "the new instance joins what app waits for"
        );
        h.take_log();
        ready(&mut h, "web.3");
        assert_eq!(spawns(&h), vec![spawn("app", "true", "None/None")]);

        // A running dependant is left alone by a scale either way.
        h.take_log();
        scale(&mut h, 2, "web", 1);
        scale(&mut h, 3, "web", 4);
        let app = h.pid_of("app");
        assert!(!h.signalled().iter().any(|&(p, _)| p == app));
        assert!(matches!(
            h.state_of("app"),
            crate::service::State::Running { .. }
        ));
    }

    #[test]
    fn requests_on_the_name_act_on_every_instance_and_on_an_instance_on_one() {
        let mut h = Harness::new(sup_of(vec![web(3)], vec![]));
        h.take_log();
        h.order(1, Order::Stop(Names::These(vec!["web.2".into()])));
        assert_eq!(h.signalled(), vec![(pid(101), Signal::SIGTERM)]);
        h.take_log();
        h.order(2, Order::Stop(Names::These(vec!["web".into()])));
        assert_eq!(
            h.signalled(),
            vec![(pid(100), Signal::SIGTERM), (pid(102), Signal::SIGTERM)]
        );
    }

    #[test]
    fn scale_refuses_a_plain_service_zero_and_unknown_names() {
        let mut h = Harness::new(sup_of(vec![web(1)], vec![svc("db", &[])]));
        assert_eq!(
            scale(&mut h, 1, "db", 2).error.as_deref(),
            Some("db has no `replicas`: add `replicas = N` to its definition to scale it")
        );
        assert_eq!(
            scale(&mut h, 2, "web", 0).error.as_deref(),
            Some(
                "the number of replicas goes from 1 to 1000 (to stop every instance: corral ctl stop web)"
            )
        );
        assert_eq!(
            scale(&mut h, 3, "wbe", 2).error.as_deref(),
            Some("no service \"wbe\" (did you mean \"web\"?)")
        );
        assert_eq!(live(&mut h), ["db", "web.1"]);
    }

    #[test]
    fn a_reload_keeps_a_runtime_count_unless_the_file_changed_it() {
        let load = |h: &mut Harness, id: u64, template: ServiceSpec| {
            let n = template.replicas.unwrap_or(1);
            h.event(Event::Loaded {
                id: Some(id),
                result: Ok(Spec {
                    services: (1..=n).map(|i| template.instance(i, n)).collect(),
                    replicated: vec![template],
                    ..Default::default()
                }),
            });
            h.reply(id).expect("answered").messages
        };
        let mut h = Harness::new(sup_of(vec![web(2)], vec![]));
        scale(&mut h, 1, "web", 4);
        h.take_log();
        // The file still says 2: the 4 of `ctl scale` stay, nothing restarts.
        assert_eq!(load(&mut h, 2, web(2)), ["no change"]);
        assert!(h.signalled().is_empty() && h.spawned().is_empty());
        assert_eq!(live(&mut h).len(), 4);
        // The file now says 3: scaled to it, the running ones left running.
        assert_eq!(load(&mut h, 3, web(3)), ["web.4: removed"]);
        assert_eq!(h.signalled(), vec![(pid(103), Signal::SIGTERM)]);
        h.exit(pid(103), Exit::Signal(Signal::SIGTERM));
        assert_eq!(live(&mut h), ["web.1", "web.2", "web.3"]);
        // A real change restarts every instance.
        h.take_log();
        let mut changed = web(3);
        changed.command = vec!["serve2".into()];
        let messages = load(&mut h, 4, changed);
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert_eq!(h.signalled().len(), 3);
    }
}
