//! Every service of a run, by `ServiceId`, and the `after` graph between them.
//!
//! This is the one place that turns an id into a service: ids are handed out
//! here, in order, and a service is never taken out again (a config reload
//! only marks a removed one; ARCHITECTURE.md, invariant 12), so an id stays
//! valid for the whole run. Lookups still return `Option`: PID 1 does not
//! index its way into a panic.
//!
//! It also keeps what lets the core's work per event follow what the event
//! touched rather than the number of services (issue 16): the `after` graph
//! both ways, an index by name, which services changed since the core's
//! dependency order last looked (every `get_mut` / `iter_mut` marks;
//! `transition` marks only a service whose want or state moved, or that
//! acted), and each service's deadline, ordered by time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::config::{Condition, ServiceSpec};
use crate::event::{Action, ServiceId};

use super::{Service, State, Want};

#[derive(Debug, Default)]
pub struct Services {
    list: Vec<Service>,
    /// `after` of each service (of its newest definition), as ids; removed
    /// services are left out.
    deps: Vec<Vec<ServiceId>>,
    /// Each of `deps` with its condition.
    conditions: Vec<Vec<(ServiceId, Condition)>>,
    /// The reverse of `deps`: what starts after each service, in id order.
    dependants: Vec<Vec<ServiceId>>,
    /// Every id, by its service's name (then by id): `find` searches it.
    /// Names are never given to another id: a reload or a scale revives
    /// the service of that name.
    by_name: Vec<ServiceId>,
    /// Changed since the core's dependency order last took them.
    changed: Marks,
    /// Changed since `deadlines` was last brought up to date.
    stale: Marks,
    /// Each service's deadline, as of the last `refresh_deadlines`.
    deadline_of: Vec<Option<Instant>>,
    /// Each of `deadline_of`, earliest first, among older entries that no
    /// longer hold (dropped when they come first).
    deadlines: BinaryHeap<Reverse<(Instant, ServiceId)>>,
}

/// A set of services marked as changed, in the order they were marked;
/// `all`: every service (more than the list).
#[derive(Debug, Default)]
struct Marks {
    ids: Vec<ServiceId>,
    marked: Vec<bool>,
    all: bool,
}

impl Marks {
    fn mark(&mut self, id: ServiceId) {
        if self.all {
            return;
        }
        match self.marked.get_mut(id.index()) {
            Some(marked) if !*marked => {
                *marked = true;
                self.ids.push(id);
            }
            Some(_) => {}
            None => self.all = true,
        }
    }

    fn mark_all(&mut self) {
        self.all = true;
    }

    fn is_marked(&self, id: ServiceId) -> bool {
        self.all || self.marked.get(id.index()).is_none_or(|&m| m)
    }

    /// One more service, marked.
    fn grow(&mut self, id: ServiceId) {
        self.marked.resize(id.index(), false);
        self.marked.push(false);
        self.mark(id);
    }

    /// The marks, cleared: `None` for every service.
    fn take(&mut self) -> Option<Vec<ServiceId>> {
        for id in &self.ids {
            if let Some(marked) = self.marked.get_mut(id.index()) {
                *marked = false;
            }
        }
        let ids = std::mem::take(&mut self.ids);
        if std::mem::take(&mut self.all) {
            None
        } else {
            Some(ids)
        }
    }
}

impl Services {
    pub fn new(specs: Vec<ServiceSpec>) -> Services {
        let mut services = Services::default();
        for spec in specs {
            services.add(spec);
        }
        // Sorted once (stable: a name's ids stay in id order).
        let mut by_name: Vec<ServiceId> = services.ids().collect();
        let list = &services.list;
        crate::sort::sort_by(&mut by_name, |&a, &b| {
            let name = |id: ServiceId| list.get(id.index()).map(Service::name);
            name(a).cmp(&name(b))
        });
        services.by_name = by_name;
        services.rebuild_deps();
        services
    }

    /// Where `name` is, or would be, in `by_name`.
    fn name_at(&self, name: &str) -> usize {
        self.by_name
            .partition_point(|&id| self.get(id).is_some_and(|s| s.name() < name))
    }

    /// A new service, with the next id. `rebuild_deps` makes its `after` count.
    pub fn push(&mut self, spec: ServiceSpec) -> ServiceId {
        // After any service of that name (`find` finds the first).
        let name = spec.name.as_str();
        let at = self
            .by_name
            .partition_point(|&id| self.get(id).is_some_and(|s| s.name() <= name));
        let id = self.add(spec);
        self.by_name.insert(at, id);
        id
    }

    /// A new service, with the next id, left out of `by_name`.
    fn add(&mut self, spec: ServiceSpec) -> ServiceId {
        let id = ServiceId::from_index(self.list.len());
        self.list.push(Service::new(id, spec));
        self.changed.grow(id);
        self.stale.grow(id);
        self.deadline_of.push(None);
        id
    }

    pub fn get(&self, id: ServiceId) -> Option<&Service> {
        self.list.get(id.index())
    }

    /// Service `id`, to change: marked as changed, whatever is done with it.
    pub fn get_mut(&mut self, id: ServiceId) -> Option<&mut Service> {
        let svc = self.list.get_mut(id.index())?;
        self.changed.mark(id);
        self.stale.mark(id);
        Some(svc)
    }

    /// Run `transition` (a start or a stop) on service `id`: whether it
    /// changed anything, and its actions. The service is marked as changed
    /// only if it returned actions or moved its want or state: a start or
    /// a stop changes nothing else without moving one of these (a stop
    /// asked again of a service already stopping is no change, and does
    /// not bring it back to the next event's dependency order). An
    /// unknown id: no change.
    pub fn transition(
        &mut self,
        id: ServiceId,
        transition: impl FnOnce(&mut Service) -> Vec<Action>,
    ) -> (bool, Vec<Action>) {
        let Some(svc) = self.list.get_mut(id.index()) else {
            return (false, Vec::new());
        };
        let before: (Want, State) = (svc.want, svc.state.clone());
        let actions = transition(svc);
        let moved = !actions.is_empty() || before.0 != svc.want || before.1 != svc.state;
        if moved {
            self.changed.mark(id);
            self.stale.mark(id);
        }
        (moved, actions)
    }

    /// Every id, in the order they were handed out. The iterator borrows
    /// nothing, so the services can be changed while it runs.
    pub fn ids(&self) -> impl Iterator<Item = ServiceId> + use<> {
        (0..self.list.len()).map(ServiceId::from_index)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Service> {
        self.list.iter()
    }

    /// Every service, to change: all marked as changed.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Service> {
        self.changed.mark_all();
        self.stale.mark_all();
        self.list.iter_mut()
    }

    /// Mark every service as changed (for the dependency order): what it
    /// reads besides the services changed (the phase).
    pub fn touch_all(&mut self) {
        self.changed.mark_all();
    }

    /// The services changed since the last call (every one after
    /// `touch_all`, `iter_mut` or `rebuild_deps`), with what they start
    /// after and what starts after them: every service whose place in the
    /// dependency order may have moved. In id order, each once.
    pub fn take_changed(&mut self) -> Vec<ServiceId> {
        let marked = self.changed.take();
        self.around(marked)
    }

    /// The services marked as changed since `take_changed`, without their
    /// neighbours; `None`: every one.
    pub fn marked(&self) -> Option<&[ServiceId]> {
        (!self.changed.all).then_some(self.changed.ids.as_slice())
    }

    /// What `take_changed` would return, left marked.
    pub fn changed(&self) -> Vec<ServiceId> {
        let marked = (!self.changed.all).then(|| self.changed.ids.clone());
        self.around(marked)
    }

    fn around(&self, marked: Option<Vec<ServiceId>>) -> Vec<ServiceId> {
        let Some(marked) = marked else {
            return self.ids().collect();
        };
        let mut ids = Vec::with_capacity(marked.len() * 2);
        for id in marked {
            ids.push(id);
            ids.extend_from_slice(self.deps(id));
            ids.extend_from_slice(self.dependants_of(id));
        }
        crate::sort::sort(&mut ids);
        ids.dedup();
        ids
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The service named `name`, removed or not (thread messages name
    /// services; a removed one still has a process to hear from).
    pub fn find(&self, name: &str) -> Option<ServiceId> {
        let id = *self.by_name.get(self.name_at(name))?;
        self.get(id).is_some_and(|s| s.name() == name).then_some(id)
    }

    /// The service named `name` among those not removed.
    pub fn find_live(&self, name: &str) -> Option<ServiceId> {
        self.find(name)
            .filter(|&id| self.get(id).is_some_and(|s| !s.is_removed()))
    }

    /// What `id` starts `after`.
    pub fn deps(&self, id: ServiceId) -> &[ServiceId] {
        self.deps.get(id.index()).map_or(&[], Vec::as_slice)
    }

    /// What `id` starts `after`, each with what it must reach first.
    pub fn conditions(&self, id: ServiceId) -> impl Iterator<Item = (ServiceId, Condition)> + '_ {
        self.conditions_of(id).iter().copied()
    }

    /// What `id` starts `after`, each with what it must reach first.
    pub fn conditions_of(&self, id: ServiceId) -> &[(ServiceId, Condition)] {
        self.conditions.get(id.index()).map_or(&[], Vec::as_slice)
    }

    /// The services that start `after` `id`, in id order.
    pub fn dependants(&self, id: ServiceId) -> impl Iterator<Item = ServiceId> + '_ {
        self.dependants_of(id).iter().copied()
    }

    /// The services that start `after` `id`, in id order.
    pub fn dependants_of(&self, id: ServiceId) -> &[ServiceId] {
        self.dependants.get(id.index()).map_or(&[], Vec::as_slice)
    }

    /// Whether `id` is started (see `Service::is_started`); an unknown id is not.
    pub fn is_started(&self, id: ServiceId) -> bool {
        self.get(id).is_some_and(Service::is_started)
    }

    /// Whether `id` has no process and none on its way; an unknown id has none.
    pub fn is_down(&self, id: ServiceId) -> bool {
        self.get(id).is_none_or(Service::is_down)
    }

    /// Whether `id` is down with no `down` command left to run (see
    /// `Service::is_fully_down`); an unknown id is.
    pub fn is_fully_down(&self, id: ServiceId) -> bool {
        self.get(id).is_none_or(Service::is_fully_down)
    }

    /// `after` as ids again, from the newest definition of each service
    /// (after a config reload added, changed or removed some), and its
    /// reverse. Every service counts as changed.
    pub fn rebuild_deps(&mut self) {
        // Each live service by its name, and an instance also by its
        // group's: `after = ["web"]` waits for every replica of `web`.
        let mut live: Vec<(&str, ServiceId)> = Vec::with_capacity(self.list.len());
        for s in self.list.iter().filter(|s| !s.is_removed()) {
            live.push((s.name(), s.id()));
            let group = s.current_spec().replica.as_ref().map(|r| r.group.as_str());
            if let Some(group) = group.filter(|&g| g != s.name()) {
                live.push((group, s.id()));
            }
        }
        // By name; one name's ids stay in id order (the sort is stable).
        crate::sort::sort_by(&mut live, |a, b| a.0.cmp(b.0));
        let named = |name: &str| {
            let from = live.partition_point(|&(n, _)| n < name);
            let to = live.partition_point(|&(n, _)| n <= name);
            live.get(from..to).unwrap_or(&[])
        };
        let mut deps = Vec::with_capacity(self.list.len());
        let mut conditions = Vec::with_capacity(self.list.len());
        let mut dependants: Vec<Vec<ServiceId>> = vec![Vec::new(); self.list.len()];
        for s in &self.list {
            let whens: Vec<(ServiceId, Condition)> = s
                .current_spec()
                .after
                .iter()
                .flat_map(|dep| {
                    named(dep.name.as_str())
                        .iter()
                        .map(|&(_, id)| (id, dep.condition))
                })
                .collect();
            let ids: Vec<ServiceId> = whens.iter().map(|&(id, _)| id).collect();
            for dep in &ids {
                // Services come in id order: a repeat is the last one pushed.
                if let Some(list) = dependants.get_mut(dep.index())
                    && list.last() != Some(&s.id())
                {
                    list.push(s.id());
                }
            }
            deps.push(ids);
            conditions.push(whens);
        }
        self.deps = deps;
        self.conditions = conditions;
        self.dependants = dependants;
        self.changed.mark_all();
    }

    /// Bring `deadlines` up to date with the services changed since.
    pub fn refresh_deadlines(&mut self) {
        let stale = match self.stale.take() {
            Some(ids) => ids,
            None => {
                self.deadlines.clear();
                self.deadline_of.iter_mut().for_each(|d| *d = None);
                self.ids().collect()
            }
        };
        for id in stale {
            let new = self.list.get(id.index()).and_then(Service::deadline);
            let Some(old) = self.deadline_of.get_mut(id.index()) else {
                continue;
            };
            if *old != new {
                *old = new;
                // The old entry stays in the heap until it comes first.
                self.deadlines.extend(new.map(|at| Reverse((at, id))));
            }
        }
        while let Some(&Reverse(first)) = self.deadlines.peek()
            && !self.holds(first)
        {
            self.deadlines.pop();
        }
        if self.deadlines.len() > 2 * self.list.len() + 64 {
            let held = self.deadline_of.iter().enumerate();
            let held = held.filter_map(|(i, at)| Some(Reverse(((*at)?, ServiceId::from_index(i)))));
            self.deadlines = held.collect();
        }
    }

    /// Whether a heap entry is the deadline `deadline_of` holds.
    fn holds(&self, (at, id): (Instant, ServiceId)) -> bool {
        self.deadline_of.get(id.index()) == Some(&Some(at))
    }

    /// The earliest deadline of any service (`Service::deadline`): the
    /// heap's first, and the services changed since it was brought up to
    /// date, asked again.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.stale.all {
            return self.iter().filter_map(Service::deadline).min();
        }
        let kept = match self.deadlines.peek() {
            Some(&Reverse((at, id))) if !self.stale.is_marked(id) => Some(at),
            None => None,
            // Changed since (outside an event: tests): the others' earliest.
            Some(_) => self
                .deadlines
                .iter()
                .map(|&Reverse(entry)| entry)
                .filter(|&(at, id)| self.holds((at, id)) && !self.stale.is_marked(id))
                .map(|(at, _)| at)
                .min(),
        };
        let changed = self
            .stale
            .ids
            .iter()
            .filter_map(|&id| self.get(id)?.deadline());
        kept.into_iter().chain(changed).min()
    }

    /// The services whose deadline is at or before `at`, in id order (the
    /// ones a tick at `at` may move; others have nothing due). They count
    /// as changed for the deadlines: their tick may move them.
    pub fn due(&mut self, at: Instant) -> Vec<ServiceId> {
        self.refresh_deadlines();
        let mut ids = Vec::new();
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek()
            && deadline <= at
        {
            self.deadlines.pop();
            if self.holds((deadline, id)) {
                if let Some(held) = self.deadline_of.get_mut(id.index()) {
                    *held = None;
                }
                self.stale.mark(id);
                ids.push(id);
            }
        }
        crate::sort::sort(&mut ids);
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, after: &[&str]) -> ServiceSpec {
        let mut s = ServiceSpec::new(name, vec!["true".into()]);
        s.after = after.iter().map(|&a| a.into()).collect();
        s
    }

    fn id(i: usize) -> ServiceId {
        ServiceId::from_index(i)
    }

    #[test]
    fn ids_are_handed_out_in_order_and_name_their_service() {
        let mut services = Services::new(vec![spec("db", &[]), spec("web", &["db"])]);
        assert_eq!(services.ids().collect::<Vec<_>>(), vec![id(0), id(1)]);
        let cache = services.push(spec("cache", &[]));
        assert_eq!(cache, id(2));
        assert_eq!(services.get(cache).map(Service::name), Some("cache"));
        assert_eq!(services.find("web"), Some(id(1)));
        assert!(services.get(id(3)).is_none(), "an unknown id is no panic");
        assert!(services.is_down(id(3)) && !services.is_started(id(3)));
    }

    #[test]
    fn the_after_graph_follows_names_and_leaves_unknown_ones_out() {
        let services = Services::new(vec![
            spec("api", &["db", "nope"]),
            spec("db", &[]),
            spec("web", &["api", "db"]),
        ]);
        assert_eq!(services.deps(id(0)), &[id(1)]);
        assert_eq!(services.deps(id(2)), &[id(0), id(1)]);
        assert_eq!(
            services.dependants(id(1)).collect::<Vec<_>>(),
            vec![id(0), id(2)]
        );
        assert_eq!(services.deps(id(9)), &[] as &[ServiceId]);
    }

    #[test]
    fn dependants_are_kept_in_id_order_and_follow_a_rebuild() {
        let mut services = Services::new(vec![
            spec("web", &["db", "db"]),
            spec("db", &[]),
            spec("api", &["db"]),
        ]);
        assert_eq!(
            services.dependants(id(1)).collect::<Vec<_>>(),
            vec![id(0), id(2)],
            "once each, in id order"
        );
        services.push(spec("worker", &["api"]));
        services.rebuild_deps();
        assert_eq!(services.dependants(id(2)).collect::<Vec<_>>(), vec![id(3)]);
        assert_eq!(services.dependants(id(9)).count(), 0);
    }

    #[test]
    fn what_changed_comes_with_its_neighbours_once_in_id_order() {
        let mut services = Services::new(vec![
            spec("a", &["b"]),
            spec("b", &[]),
            spec("c", &["b"]),
            spec("d", &[]),
        ]);
        assert_eq!(services.take_changed().len(), 4, "all, at first");
        assert!(services.take_changed().is_empty());
        services.get_mut(id(1));
        services.get_mut(id(0));
        assert_eq!(services.changed(), vec![id(0), id(1), id(2)]);
        assert_eq!(services.take_changed(), vec![id(0), id(1), id(2)]);
        // A transition that changes nothing marks nothing.
        let (moved, actions) = services.transition(id(3), |svc| svc.stop(Instant::now(), None));
        assert!(
            moved && actions.is_empty(),
            "idle wanted up: now wanted down"
        );
        assert_eq!(services.take_changed(), vec![id(3)]);
        let (moved, _) = services.transition(id(3), |svc| svc.stop(Instant::now(), None));
        assert!(!moved);
        assert!(services.take_changed().is_empty());
        services.touch_all();
        assert_eq!(services.take_changed().len(), 4);
    }

    #[test]
    fn a_name_finds_its_service_and_only_a_live_one_for_find_live() {
        let mut services = Services::new(vec![spec("a", &[]), spec("b", &[])]);
        assert_eq!(services.find("b"), Some(id(1)));
        assert_eq!(services.find("c"), None);
        let c = services.push(spec("c", &[]));
        assert_eq!(services.find("c"), Some(c));
        assert_eq!(services.find_live("c"), Some(c));
        if let Some(svc) = services.get_mut(c) {
            svc.remove();
        }
        assert_eq!(services.find("c"), Some(c));
        assert_eq!(services.find_live("c"), None);
    }

    #[test]
    fn a_removed_service_is_found_by_name_but_is_no_dependency() {
        let mut services = Services::new(vec![spec("api", &["db"]), spec("db", &[])]);
        if let Some(db) = services.get_mut(id(1)) {
            db.remove();
        }
        services.rebuild_deps();
        assert_eq!(services.find("db"), Some(id(1)));
        assert_eq!(services.find_live("db"), None);
        assert!(services.deps(id(0)).is_empty());
    }
}
