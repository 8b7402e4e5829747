//! Every service of a run, by `ServiceId`, and the `after` graph between them.
//!
//! This is the one place that turns an id into a service: ids are handed out
//! here, in order, and a service is never taken out again (a config reload
//! only marks a removed one; ARCHITECTURE.md, invariant 12), so an id stays
//! valid for the whole run. Lookups still return `Option`: PID 1 does not
//! index its way into a panic.

use crate::config::{Condition, ServiceSpec};
use crate::event::ServiceId;

use super::Service;

#[derive(Debug, Default)]
pub struct Services {
    list: Vec<Service>,
    /// `after` of each service (of its newest definition), as ids; removed
    /// services are left out.
    deps: Vec<Vec<ServiceId>>,
    /// The condition of each of `deps`, in the same order.
    conditions: Vec<Vec<Condition>>,
}

impl Services {
    pub fn new(specs: Vec<ServiceSpec>) -> Services {
        let mut services = Services::default();
        for spec in specs {
            services.push(spec);
        }
        services.rebuild_deps();
        services
    }

    /// A new service, with the next id. `rebuild_deps` makes its `after` count.
    pub fn push(&mut self, spec: ServiceSpec) -> ServiceId {
        let id = ServiceId::from_index(self.list.len());
        self.list.push(Service::new(id, spec));
        id
    }

    pub fn get(&self, id: ServiceId) -> Option<&Service> {
        self.list.get(id.index())
    }

    pub fn get_mut(&mut self, id: ServiceId) -> Option<&mut Service> {
        self.list.get_mut(id.index())
    }

    /// Every id, in the order they were handed out. The iterator borrows
    /// nothing, so the services can be changed while it runs.
    pub fn ids(&self) -> impl Iterator<Item = ServiceId> + use<> {
        (0..self.list.len()).map(ServiceId::from_index)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Service> {
        self.list.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Service> {
        self.list.iter_mut()
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
        self.list.iter().find(|s| s.name() == name).map(Service::id)
    }

    /// The service named `name` among those not removed.
    pub fn find_live(&self, name: &str) -> Option<ServiceId> {
        self.list
            .iter()
            .find(|s| s.name() == name && !s.is_removed())
            .map(Service::id)
    }

    /// What `id` starts `after`.
    pub fn deps(&self, id: ServiceId) -> &[ServiceId] {
        self.deps.get(id.index()).map_or(&[], Vec::as_slice)
    }

    /// What `id` starts `after`, each with what it must reach first.
    pub fn conditions(&self, id: ServiceId) -> impl Iterator<Item = (ServiceId, Condition)> + '_ {
        let conditions = self
            .conditions
            .get(id.index())
            .map_or(&[][..], Vec::as_slice);
        self.deps(id)
            .iter()
            .copied()
            .zip(conditions.iter().copied())
    }

    /// The services that start `after` `id`.
    pub fn dependants(&self, id: ServiceId) -> impl Iterator<Item = ServiceId> + '_ {
        self.ids().filter(move |&j| self.deps(j).contains(&id))
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
    /// (after a config reload added, changed or removed some).
    pub fn rebuild_deps(&mut self) {
        // Each live service by its name, and an instance also by its
        // group's: `after = ["web"]` waits for every replica of `web`.
        let live: Vec<(&str, Option<&str>, ServiceId)> = self
            .list
            .iter()
            .filter(|s| !s.is_removed())
            .map(|s| {
                let group = s.current_spec().replica.as_ref();
                (s.name(), group.map(|r| r.group.as_str()), s.id())
            })
            .collect();
        let mut deps = Vec::with_capacity(self.list.len());
        let mut conditions = Vec::with_capacity(self.list.len());
        for s in &self.list {
            let (ids, whens): (Vec<ServiceId>, Vec<Condition>) = s
                .current_spec()
                .after
                .iter()
                .flat_map(|dep| {
                    live.iter()
                        .filter(|(n, g, _)| *n == dep.name || *g == Some(dep.name.as_str()))
                        .map(|&(_, _, id)| (id, dep.condition))
                })
                .unzip();
            deps.push(ids);
            conditions.push(whens);
        }
        self.deps = deps;
        self.conditions = conditions;
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
