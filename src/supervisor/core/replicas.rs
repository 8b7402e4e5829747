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
