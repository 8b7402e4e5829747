//! Dependency order: in phase `Up`, what starts (once what it comes `after`
//! is started, and is no boot step that failed: `boot`) and what stops
//! (dependants first), and when the main COMMAND may start; in phase
//! `Stopping`, the shutdown order (the main COMMAND, then each service once
//! every service that depends on it is down). A oneshot with an s6-rc
//! `down` to run counts as up for that order: its `down` runs once its
//! dependants are down, and what it depends on waits for its `down` to end,
//! so `down`s run in reverse dependency order, independent ones together.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::log::warn;

use super::sweep::Sweep;
use super::{Phase, Supervisor};
use crate::config::Condition;
use crate::event::{Action, ServiceId};
use crate::service::{Service, Services, State, Want};

impl Supervisor {
    /// Phase `Up`: stop what is no longer wanted (dependants first), start
    /// what is wanted and whose dependencies are started; then the main
    /// COMMAND once every service has settled.
    ///
    /// Only the services changed since the last time, and what they start
    /// after and what starts after them, are looked at (`pass`): a
    /// service's start or stop reads only itself and these.
    pub(super) fn schedule(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let changed = self.take_changed();
        self.pass(Rule::StopUnwanted, changed.clone(), now, &mut actions);
        // The starts look at what the stops changed too.
        let mut seeds = changed;
        seeds.extend(self.changed_so_far());
        // Again while a start completed at once (a oneshot with nothing to
        // run): its dependants may come earlier in the order. Each pass
        // that goes round again took one more service out of `Idle`.
        while self.pass(Rule::Start, seeds, now, &mut actions) {
            seeds = self.changed_so_far();
        }
        if self.main_is_waiting() && actions.is_empty() && self.all_settled() {
            let failed = |svc: &&Service| svc.ended_for_good() || self.boot_failed(svc.id());
            for svc in self.services.iter().filter(failed) {
                warn!(service = %svc.name(), "starting the main command although this service failed");
            }
            actions.extend(self.spawn_main());
        }
        actions
    }

    /// The services changed since the last pass, with their neighbours in
    /// the `after` graph (`Services::take_changed`); the sweeps over every
    /// service look at them again.
    fn take_changed(&mut self) -> Vec<ServiceId> {
        #[cfg(test)]
        if self.full_scan {
            self.services.touch_all();
        }
        let changed = self.services.take_changed();
        let all = changed.len() == self.services.len();
        if all {
            // The lists may have changed (a new phase, a new graph).
            self.long_lists.clear();
        }
        // Each sweep only while it is asked (it keeps the ids it is told).
        let (waiting, stopping) = (
            self.main_is_waiting(),
            matches!(self.phase, Phase::Stopping { .. }),
        );
        let asked = [
            (&mut self.settled_sweep, waiting),
            (&mut self.down_sweep, stopping),
        ];
        for (sweep, asked) in asked {
            if all || !asked {
                *sweep = Sweep::default();
            } else {
                sweep.changed(&changed);
            }
        }
        changed
    }

    /// What changed since `take_changed`, with its neighbours, left marked.
    fn changed_so_far(&self) -> Vec<ServiceId> {
        #[cfg(test)]
        if self.full_scan {
            return self.services.ids().collect();
        }
        self.services.changed()
    }

    /// Apply `rule` to each of `ids`, in id order, and to each service
    /// that comes later in that order and starts after, or before, one
    /// that the pass changed (today's order of a pass over every service,
    /// without the services whose rule can have nothing to do: neither
    /// they nor a neighbour changed). Whether a start completed at once.
    fn pass(
        &mut self,
        rule: Rule,
        ids: Vec<ServiceId>,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> bool {
        // Smallest first; each id once (a repeat comes right after itself).
        let mut queue: BinaryHeap<Reverse<ServiceId>> = ids.into_iter().map(Reverse).collect();
        let mut last = None;
        let mut done_at_once = false;
        while let Some(Reverse(id)) = queue.pop() {
            if last.replace(id) == Some(id) {
                continue;
            }
            #[cfg(test)]
            {
                self.examined += 1;
            }
            let (moved, done) = match rule {
                Rule::StopUnwanted => (self.stop_unwanted(id, now, actions), false),
                Rule::Start => self.start_ready(id, now, actions),
                Rule::Shutdown { budget_at } => {
                    (self.stop_at_shutdown(id, now, budget_at, actions), false)
                }
            };
            done_at_once |= done;
            if moved {
                let neighbours = self.services.deps(id).iter().copied();
                let later = neighbours
                    .chain(self.services.dependants(id))
                    .filter(|&j| j > id);
                queue.extend(later.map(Reverse));
            }
        }
        done_at_once
    }

    /// Phase `Up`: stop `id` if it is no longer wanted and every dependant
    /// that goes down too is down. Whether it changed.
    fn stop_unwanted(&mut self, id: ServiceId, now: Instant, actions: &mut Vec<Action>) -> bool {
        let stoppable = self.services.get(id).is_some_and(|svc| {
            svc.want() == Want::Down
                && matches!(
                    svc.state(),
                    State::Starting { .. }
                        | State::Running { .. }
                        | State::Reloading { .. }
                        | State::Backoff { .. }
                        | State::Finishing { .. }
                        | State::Scheduled
                )
                || svc.want() == Want::Down && svc.has_down_to_run()
        });
        if !stoppable {
            return false;
        }
        // Dependants that are also to go down go first; those wanted up stay.
        let dependants_down = self.all_of(id, Dependants, |sup, j| {
            !sup.wants(j, Want::Down) || sup.services.is_fully_down(j)
        });
        if !dependants_down {
            return false;
        }
        let (moved, stopped) = self.services.transition(id, |svc| svc.stop(now, None));
        actions.extend(stopped);
        moved
    }

    /// Phase `Up`: start `id` if it is wanted, waiting, and every `after`
    /// condition holds. Whether it changed, and whether it completed at
    /// once (a oneshot with nothing to run).
    fn start_ready(
        &mut self,
        id: ServiceId,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> (bool, bool) {
        let waiting = self
            .services
            .get(id)
            .is_some_and(|svc| svc.want() == Want::Up && *svc.state() == State::Idle);
        if !waiting {
            return (false, false);
        }
        let ready = self.all_of(id, Conditions, |sup, (j, condition)| sup.met(j, condition));
        if !ready {
            return (false, false);
        }
        let (moved, started) = self.services.transition(id, |svc| svc.start(now));
        let done = started.is_empty()
            && self
                .services
                .get(id)
                .is_some_and(|svc| *svc.state() == State::Exited);
        actions.extend(started);
        (moved, done)
    }

    /// Phase `Stopping`: stop `id` once every service that depends on it is
    /// down. Whether it changed.
    fn stop_at_shutdown(
        &mut self,
        id: ServiceId,
        now: Instant,
        budget_at: Instant,
        actions: &mut Vec<Action>,
    ) -> bool {
        let live = self
            .services
            .get(id)
            .is_some_and(|svc| svc.is_live() || svc.has_down_to_run());
        // A service without a process: this cancels a pending retry (or,
        // while a finish script runs, makes "down" what follows it);
        // no-op otherwise. One with a process (or a `down` to run) waits
        // for its dependants, `down`s included.
        let stop = !live || self.all_of(id, Dependants, |sup, j| sup.services.is_fully_down(j));
        if !stop {
            return false;
        }
        let (moved, stopped) = self
            .services
            .transition(id, |svc| svc.stop(now, Some(budget_at)));
        actions.extend(stopped);
        moved
    }

    /// Whether `holds` of each of `id`'s dependants, or `after` conditions.
    /// A long list (a service many start after, or one after many) keeps a
    /// `Sweep`, so that each of the many events of its neighbours asks
    /// about a few of them, not all.
    fn all_of<T: Around>(
        &mut self,
        id: ServiceId,
        _: T,
        holds: impl Fn(&Supervisor, T::Item) -> bool,
    ) -> bool {
        let len = T::list(&self.services, id).len();
        let at = |sup: &Supervisor, k: usize| T::list(&sup.services, id).get(k).copied();
        if len <= LONG_LIST {
            return (0..len).all(|k| at(self, k).is_none_or(|item| holds(self, item)));
        }
        let key = (id, T::KIND);
        let mut sweep = self.long_lists.remove(&key).unwrap_or_default();
        let all = sweep.holds(len, |k| at(self, k).is_none_or(|item| holds(self, item)));
        self.long_lists.insert(key, sweep);
        all
    }

    /// Every service has settled (the main COMMAND may start): the sweep
    /// moves past settled services as they settle, and checks them all
    /// once when it reaches the end.
    fn all_settled(&mut self) -> bool {
        let mut sweep = std::mem::take(&mut self.settled_sweep);
        let settled = sweep.holds(self.services.len(), |i| {
            self.settled(ServiceId::from_index(i))
        });
        self.settled_sweep = sweep;
        settled
    }

    /// Every service is down, with no `down` left to run (the shutdown's
    /// services are done).
    fn all_fully_down(&mut self) -> bool {
        let mut sweep = std::mem::take(&mut self.down_sweep);
        let services = &self.services;
        let down = sweep.holds(services.len(), |i| {
            services.is_fully_down(ServiceId::from_index(i))
        });
        self.down_sweep = sweep;
        down
    }

    fn wants(&self, id: ServiceId, want: Want) -> bool {
        self.services.get(id).is_some_and(|svc| svc.want() == want)
    }

    /// Nothing more to wait for before the main COMMAND: started, ended for
    /// good, a boot step that failed, not wanted, or held back by a
    /// dependency that ended for good (or is a failed boot step).
    pub(super) fn settled(&self, id: ServiceId) -> bool {
        let Some(svc) = self.services.get(id) else {
            return true;
        };
        if svc.is_removed() || (svc.want() == Want::Down && *svc.state() == State::Idle) {
            return true;
        }
        if svc.ended_for_good() || *svc.state() == State::Exited || self.boot_failed(id) {
            return true;
        }
        // Ready once is enough: a later crash loop does not hold the main COMMAND.
        if !svc.spec().oneshot && svc.ever_ready() {
            return true;
        }
        *svc.state() == State::Idle && self.blocked(id, self.services.len())
    }

    /// Whether `dep` is as far as a dependant waiting for `condition`
    /// needs. A boot step that failed holds its dependants (`boot`), but
    /// for `completed`: any end of its run was asked for.
    pub(super) fn met(&self, dep: ServiceId, condition: Condition) -> bool {
        self.services
            .get(dep)
            .is_some_and(|svc| svc.meets(condition))
            && (condition == Condition::Completed || !self.boot_failed(dep))
    }

    /// Why `dep` will not reach `condition` unless an operator acts, if so:
    /// it ended for good (a failed oneshot, for `succeeded`), is a boot
    /// step that failed, or waits itself on one of these.
    pub(super) fn never_met(
        &self,
        dep: ServiceId,
        condition: Condition,
        depth: usize,
    ) -> Option<String> {
        let svc = self.services.get(dep)?;
        if self.met(dep, condition) {
            return None;
        }
        if self.boot_failed(dep) {
            return Some("failed".to_string());
        }
        match svc.state() {
            State::Failed { reason } => Some(format!("failed: {reason}")),
            State::Stopped if svc.want() == Want::Up => Some(match svc.last_exit() {
                Some(exit) => format!("{exit}, not restarted"),
                None => "stopped".to_string(),
            }),
            State::Idle if self.blocked(dep, depth.saturating_sub(1)) => {
                Some("waits for a service that failed".to_string())
            }
            _ => None,
        }
    }

    /// Waiting on a dependency (transitively) that will not reach what is
    /// asked of it: one that ended for good, or is a boot step that failed.
    /// `depth` bounds the recursion even though validation rejects cycles.
    pub(super) fn blocked(&self, id: ServiceId, depth: usize) -> bool {
        depth > 0
            && self
                .services
                .conditions(id)
                .any(|(j, condition)| self.never_met(j, condition, depth).is_some())
    }

    /// Phase `Stopping`: the main COMMAND first, then each service once every
    /// service that depends on it is down; then the finish scripts.
    pub(super) fn advance_stop(&mut self, now: Instant) -> Vec<Action> {
        let Phase::Stopping { budget_at, .. } = self.phase else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        let main_busy = self.stop_main(now, &mut actions);
        if main_busy || self.init.is_busy() {
            return actions;
        }
        let changed = self.take_changed();
        self.pass(Rule::Shutdown { budget_at }, changed, now, &mut actions);
        if self.all_fully_down() {
            self.phase = Phase::Finish { budget_at };
            actions.extend(self.next_finish(now));
        }
        actions
    }
}

/// A list longer than this, of a service's dependants or conditions, is
/// swept (`all_of`) rather than asked whole each time. (Tests sweep lists
/// of three already, so that the small graphs they build take both ways.)
const LONG_LIST: usize = if cfg!(test) { 2 } else { 32 };

/// The neighbours of a service that a rule asks about (`all_of`).
pub(super) trait Around {
    type Item: Copy;
    /// Which list: the key of its sweep.
    const KIND: u8;
    fn list(services: &Services, id: ServiceId) -> &[Self::Item];
}

/// The services that start after it.
#[derive(Clone, Copy)]
struct Dependants;

impl Around for Dependants {
    type Item = ServiceId;
    const KIND: u8 = 0;
    fn list(services: &Services, id: ServiceId) -> &[ServiceId] {
        services.dependants_of(id)
    }
}

/// What it starts after, each with its condition.
#[derive(Clone, Copy)]
struct Conditions;

impl Around for Conditions {
    type Item = (ServiceId, Condition);
    const KIND: u8 = 1;
    fn list(services: &Services, id: ServiceId) -> &[(ServiceId, Condition)] {
        services.conditions_of(id)
    }
}

/// What a pass of the dependency order does with each service it looks at.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Phase `Up`: stop what is no longer wanted, dependants first.
    StopUnwanted,
    /// Phase `Up`: start what is wanted once its `after` conditions hold.
    Start,
    /// Phase `Stopping`: stop each service once its dependants are down.
    Shutdown { budget_at: Instant },
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use super::super::testing::*;
    use super::*;
    use crate::event::{Event, NotifyMessage, Target};
    use crate::exit::Exit;

    #[test]
    fn services_start_in_dependency_order_then_the_main_command() {
        // db <- api <- web; cache independent. Index order is name order.
        let h = Harness::new(sup(
            vec![
                svc("api", &["db"]),
                svc("cache", &[]),
                svc("db", &[]),
                svc("web", &["api"]),
            ],
            true,
        ));
        // db and cache start together; api waits for db, which is running at once.
        assert_eq!(
            h.spawned(),
            vec![
                Target::Service(id(1)),
                Target::Service(id(2)),
                Target::Service(id(0)),
                Target::Service(id(3)),
                Target::Main
            ]
        );
        assert_eq!(h.sup.main_pid(), Some(pid(104)));
    }

    #[test]
    fn dependants_of_a_oneshot_wait_for_its_exit_0() {
        let mut migrate = svc("migrate", &[]);
        migrate.oneshot = true;
        migrate.restart = crate::config::Restart::Never;
        let mut h = Harness::new(sup(vec![svc("app", &["migrate"]), migrate], true));
        assert_eq!(h.spawned(), vec![Target::Service(id(1))]);
        h.take_log();
        h.exit(pid(100), Exit::Code(0));
        assert_eq!(h.spawned(), vec![Target::Service(id(0)), Target::Main]);
    }

    #[test]
    fn a_oneshot_exiting_with_one_of_its_success_codes_lets_its_dependants_start() {
        let mut migrate = svc("migrate", &[]);
        migrate.oneshot = true;
        migrate.restart = crate::config::Restart::Never;
        migrate.success_exit_codes = vec![0, 3];
        let mut h = Harness::new(sup(vec![svc("app", &["migrate"]), migrate], true));
        h.take_log();
        h.exit(pid(100), Exit::Code(3));
        assert_eq!(h.spawned(), vec![Target::Service(id(0)), Target::Main]);
    }

    #[test]
    fn a_oneshot_with_nothing_to_run_is_done_at_once_and_its_dependants_start() {
        // `app` comes first in the order, its dependency `end` (an s6-rc
        // `up` holding only a comment) after it: one event must start both.
        let mut end = svc("end", &[]);
        end.oneshot = true;
        end.restart = crate::config::Restart::Never;
        end.command = Vec::new();
        let h = Harness::new(sup(vec![svc("app", &["end"]), end], true));
        assert_eq!(*h.state_of("end"), State::Exited);
        assert_eq!(h.spawned(), vec![Target::Service(id(0)), Target::Main]);
    }

    #[test]
    fn a_failed_oneshot_holds_its_dependants_but_not_the_main_command() {
        let mut migrate = svc("migrate", &[]);
        migrate.oneshot = true;
        migrate.restart = crate::config::Restart::Never;
        let mut h = Harness::new(sup(vec![svc("app", &["migrate"]), migrate], true));
        h.take_log();
        h.exit(pid(100), Exit::Code(1));
        assert_eq!(h.spawned(), vec![Target::Main]);
        assert_eq!(*h.state_of("app"), State::Idle);
    }

    #[test]
    fn the_main_command_waits_for_readiness_but_not_for_a_crash_loop_after_it() {
        let mut web = svc("web", &[]);
        web.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(vec![web], true));
        assert_eq!(h.spawned(), vec![Target::Service(id(0))], "not ready yet");
        h.event(Event::Notify {
            service: id(0),
            run: 1,
            message: NotifyMessage {
                ready: true,
                ..NotifyMessage::default()
            },
        });
        assert_eq!(h.spawned().last(), Some(&Target::Main));
        h.take_log();
        h.exit(pid(100), Exit::Code(1));
        assert!(h.spawned().is_empty(), "in backoff, the main COMMAND stays");
        assert_eq!(h.sup.phase, Phase::Up);
    }

    #[test]
    fn a_service_wanted_down_stops_after_its_dependants_that_go_down_too() {
        let mut h = Harness::new(sup(
            vec![svc("api", &["db"]), svc("db", &[]), svc("web", &["db"])],
            false,
        ));
        let (api, db) = (h.pid_of("api"), h.pid_of("db"));
        h.take_log();
        // db and api go down; web, wanted up, is left running.
        for name in ["db", "api"] {
            let id = h.sup.services.find(name).expect("known");
            h.sup.services.get_mut(id).expect("known").want_down();
        }
        h.event(Event::Tick);
        assert_eq!(h.signalled(), vec![(api, Signal::SIGTERM)]);
        h.take_log();
        h.exit(api, Exit::Code(0));
        assert_eq!(h.signalled(), vec![(db, Signal::SIGTERM)]);
    }

    #[test]
    fn the_main_command_exiting_stops_the_services_within_the_budget() {
        let mut h = Harness::new(sup(vec![svc("a", &[])], true));
        h.take_log();
        h.exit(pid(101), Exit::Code(0));
        // The main COMMAND is gone: the service is stopped at once.
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        assert!(matches!(
            h.sup.phase,
            Phase::Stopping { budget_at, signal: Signal::SIGTERM }
                if budget_at == h.now + Duration::from_secs(9)
        ));
    }

    #[test]
    fn a_service_reloading_at_shutdown_still_waits_for_its_dependants() {
        let mut a = svc("a", &[]);
        a.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(vec![a, svc("b", &["a"])], false));
        let ready = NotifyMessage {
            ready: true,
            ..Default::default()
        };
        h.event(Event::Notify {
            service: id(0),
            run: 1,
            message: ready,
        });
        let b = h.pid_of("b");
        h.take_log();
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.signalled(), vec![(b, Signal::SIGTERM)]);
        // a announces a reload while b is still stopping: a must wait.
        h.take_log();
        let reloading = NotifyMessage {
            reloading: true,
            ..Default::default()
        };
        h.event(Event::Notify {
            service: id(0),
            run: 1,
            message: reloading,
        });
        // A watched file changes during the shutdown: no reload either.
        h.event(Event::Changed { service: id(0) });
        h.advance_to(h.now + Duration::from_secs(1));
        assert!(
            h.signalled().is_empty(),
            "a was signalled before b was down"
        );
        h.exit(b, Exit::Code(0));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
    }

    /// `svc(name)` coming after `deps`, each with its condition.
    fn svc_when(name: &str, deps: &[(&str, Condition)]) -> crate::config::ServiceSpec {
        let mut s = svc(name, &[]);
        s.after = deps
            .iter()
            .map(|&(name, condition)| crate::config::After {
                name: name.to_string(),
                condition,
            })
            .collect();
        s
    }

    /// What `ctl status` says `name` waits for.
    fn detail(h: &Harness, name: &str) -> Option<String> {
        h.sup.service_status(h.service(name), h.now).detail
    }

    #[test]
    fn started_does_not_wait_for_readiness_but_ready_does() {
        let mut db = svc("db", &[]);
        db.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(
            vec![
                svc("api", &["db"]),
                db,
                svc_when("web", &[("db", Condition::Started)]),
            ],
            false,
        ));
        assert_eq!(
            h.spawned(),
            vec![Target::Service(id(1)), Target::Service(id(2))],
            "web starts with db spawned; api waits for db's readiness"
        );
        assert_eq!(detail(&h, "api").as_deref(), Some("waiting for db"));
        h.take_log();
        h.event(Event::Notify {
            service: id(1),
            run: 1,
            message: NotifyMessage {
                ready: true,
                ..NotifyMessage::default()
            },
        });
        assert_eq!(h.spawned(), vec![Target::Service(id(0))]);
    }

    #[test]
    fn healthy_waits_for_the_first_health_probe_that_passes() {
        let mut db = svc("db", &[]);
        db.health = Some(crate::config::Health {
            probe: crate::config::Probe::Tcp {
                addr: "127.0.0.1:5432".into(),
            },
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            retries: 3,
        });
        let mut h = Harness::new(sup(
            vec![db, svc_when("web", &[("db", Condition::Healthy)])],
            true,
        ));
        assert_eq!(h.spawned(), vec![Target::Service(id(0))]);
        assert_eq!(
            detail(&h, "web").as_deref(),
            Some("waiting for db to be healthy")
        );
        let probe = |h: &Harness| {
            h.log.iter().find_map(|a| match a {
                Action::Probe { token, .. } => Some(*token),
                _ => None,
            })
        };
        let t0 = h.now;
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(2));
        let token = probe(&h).expect("the first health probe");
        h.event(Event::ProbeDone {
            token,
            result: Err("connection refused".into()),
        });
        assert!(h.spawned().is_empty(), "a failed probe is no health");
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(4));
        let token = probe(&h).expect("the second health probe");
        h.event(Event::ProbeDone {
            token,
            result: Ok(()),
        });
        assert_eq!(h.spawned(), vec![Target::Service(id(1)), Target::Main]);
    }

    #[test]
    fn after_a_failed_oneshot_completed_starts_succeeded_waits_until_a_run_succeeds() {
        use crate::event::{Names, Order};
        let mut h = Harness::new(sup(
            vec![
                svc_when("cleanup", &[("migrate", Condition::Completed)]),
                oneshot("migrate", &[], false),
                svc_when("web", &[("migrate", Condition::Succeeded)]),
            ],
            true,
        ));
        assert_eq!(h.spawned(), vec![Target::Service(id(1))]);
        assert_eq!(
            detail(&h, "web").as_deref(),
            Some("waiting for migrate to succeed")
        );
        h.take_log();
        let migrate = h.pid_of("migrate");
        h.exit(migrate, Exit::Code(3));
        // cleanup starts; web cannot, which does not hold the main COMMAND.
        assert_eq!(h.spawned(), vec![Target::Service(id(0)), Target::Main]);
        assert_eq!(*h.state_of("web"), State::Idle);
        assert_eq!(
            detail(&h, "web").as_deref(),
            Some("waiting for migrate to succeed (failed: exit 3, restart = \"never\")")
        );
        // Run again by the operator, it succeeds: web starts.
        h.take_log();
        h.order(1, Order::Restart(Names::These(vec!["migrate".into()])));
        assert_eq!(h.spawned(), vec![Target::Service(id(1))]);
        assert_eq!(
            detail(&h, "web").as_deref(),
            Some("waiting for migrate to succeed")
        );
        h.take_log();
        let migrate = h.pid_of("migrate");
        h.exit(migrate, Exit::Code(0));
        assert_eq!(h.spawned(), vec![Target::Service(id(2))]);
        assert_eq!(h.state_of("cleanup").name(), "running", "left alone");
    }

    #[test]
    fn a_dependency_that_ended_for_good_says_why_its_dependants_wait() {
        let mut db = svc("db", &[]);
        db.restart = crate::config::Restart::Never;
        db.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(
            vec![
                svc("api", &["web"]),
                db,
                svc_when("web", &[("db", Condition::Started)]),
                svc("worker", &["db"]),
            ],
            false,
        ));
        let db = h.pid_of("db");
        h.exit(db, Exit::Code(0));
        assert_eq!(h.state_of("db").name(), "stopped");
        // web had started with db spawned; worker never will.
        assert_eq!(h.state_of("web").name(), "running");
        assert_eq!(
            detail(&h, "worker").as_deref(),
            Some("waiting for db (exit 0, not restarted)")
        );
        assert_eq!(detail(&h, "api"), None, "web is up: nothing to wait for");
        assert!(
            h.sup
                .blocked(h.sup.services.find("worker").expect("known"), 9)
        );
    }

    fn oneshot(name: &str, after: &[&str], down: bool) -> crate::config::ServiceSpec {
        let mut s = svc(name, after);
        s.oneshot = true;
        s.restart = crate::config::Restart::Never;
        if down {
            s.down = Some(vec![format!("{name}-down")]);
        }
        s
    }

    /// The services whose `down` the actions spawn, by name.
    fn downs(h: &Harness) -> Vec<String> {
        h.spawned()
            .into_iter()
            .filter_map(|t| match t {
                Target::Down(i) => h.sup.services.get(i).map(|s| s.name().to_string()),
                _ => None,
            })
            .collect()
    }

    /// cache (oneshot, down), db, migrate (oneshot after db, down), seed
    /// (oneshot after migrate, down), web (after seed); every oneshot done.
    fn tree() -> Harness {
        let mut migrate = oneshot("migrate", &["db"], true);
        migrate.stop_timeout = Duration::from_secs(2);
        let mut h = Harness::new(sup(
            vec![
                oneshot("cache", &[], true),
                svc("db", &[]),
                migrate,
                oneshot("seed", &["migrate"], true),
                svc("web", &["seed"]),
            ],
            false,
        ));
        for name in ["cache", "migrate", "seed"] {
            let pid = h.pid_of(name);
            h.exit(pid, Exit::Code(0));
        }
        assert_eq!(h.state_of("web").name(), "running");
        h.take_log();
        h
    }

    #[test]
    fn at_shutdown_downs_run_in_reverse_dependency_order_and_independent_ones_together() {
        let mut h = tree();
        let (web, db) = (h.pid_of("web"), h.pid_of("db"));
        h.event(Event::Signal(Signal::SIGTERM));
        // cache's down (nothing depends on it) and web's stop, together.
        assert_eq!(downs(&h), vec!["cache"]);
        assert_eq!(h.signalled(), vec![(web, Signal::SIGTERM)]);
        let cache_down = h.service("cache").down_pid().expect("runs");
        h.take_log();
        h.exit(web, Exit::Signal(Signal::SIGTERM));
        assert_eq!(downs(&h), vec!["seed"]);
        assert!(h.signalled().is_empty());
        let seed_down = h.service("seed").down_pid().expect("runs");
        h.take_log();
        h.exit(seed_down, Exit::Code(0));
        assert_eq!(downs(&h), vec!["migrate"], "after seed's down ended");
        assert!(h.signalled().is_empty(), "db waits for migrate's down");
        let migrate_down = h.service("migrate").down_pid().expect("runs");
        h.take_log();
        h.exit(migrate_down, Exit::Code(1));
        assert_eq!(h.signalled(), vec![(db, Signal::SIGTERM)]);
        h.take_log();
        h.exit(db, Exit::Code(0));
        assert_eq!(h.sup.phase.name(), "stopping", "cache's down still runs");
        h.exit(cache_down, Exit::Code(0));
        assert_eq!(h.take_log(), vec![Action::SignalAll(Signal::SIGTERM)]);
        for name in ["cache", "migrate", "seed"] {
            assert_eq!(*h.state_of(name), State::Stopped, "{name}");
        }
    }

    #[test]
    fn a_hanging_down_is_killed_at_its_stop_timeout_and_the_shutdown_goes_on() {
        let mut h = tree();
        let (web, db) = (h.pid_of("web"), h.pid_of("db"));
        h.event(Event::Signal(Signal::SIGTERM));
        h.exit(web, Exit::Signal(Signal::SIGTERM));
        let seed_down = h.service("seed").down_pid().expect("runs");
        h.exit(seed_down, Exit::Code(0));
        let migrate_down = h.service("migrate").down_pid().expect("runs");
        let t = h.now;
        assert_eq!(h.sup.next_deadline(), Some(t + Duration::from_secs(2)));
        h.take_log();
        h.advance_to(t + Duration::from_secs(2));
        assert_eq!(h.signalled(), vec![(migrate_down, Signal::SIGKILL)]);
        h.take_log();
        h.exit(migrate_down, Exit::Signal(Signal::SIGKILL));
        assert_eq!(h.signalled(), vec![(db, Signal::SIGTERM)]);
    }

    #[test]
    fn a_oneshot_that_failed_or_has_no_down_runs_nothing_at_shutdown() {
        let mut h = Harness::new(sup(
            vec![
                oneshot("bad", &[], true),
                oneshot("plain", &[], false),
                svc("web", &["plain"]),
            ],
            false,
        ));
        let bad = h.pid_of("bad");
        h.exit(bad, Exit::Code(1));
        let plain = h.pid_of("plain");
        h.exit(plain, Exit::Code(0));
        let web = h.pid_of("web");
        h.take_log();
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.signalled(), vec![(web, Signal::SIGTERM)]);
        h.exit(web, Exit::Code(0));
        assert!(downs(&h).is_empty());
        assert_eq!(h.sup.phase.name(), "drain");
    }

    #[test]
    fn ctl_stop_of_an_exited_oneshot_runs_its_down_and_a_start_runs_up_again() {
        use crate::event::{Names, Order};
        let mut h = Harness::new(sup(vec![oneshot("setup", &[], true)], false));
        let up = h.pid_of("setup");
        h.exit(up, Exit::Code(0));
        h.take_log();
        h.order(1, Order::Stop(Names::These(vec!["setup".into()])));
        assert_eq!(downs(&h), vec!["setup"]);
        assert_eq!(h.reply(1), None, "answered once the down ended");
        let down = h.service("setup").down_pid().expect("runs");
        h.exit(down, Exit::Code(0));
        let reply = h.reply(1).expect("answered");
        assert!(reply.ok);
        assert_eq!(reply.messages, vec!["setup: down done".to_string()]);
        assert_eq!(*h.state_of("setup"), State::Stopped);
        h.take_log();
        h.order(2, Order::Start(Names::These(vec!["setup".into()])));
        assert_eq!(h.spawned(), vec![Target::Service(id(0))], "up runs again");
        // Stopped now, it has no down to run at the shutdown.
        let up = h.pid_of("setup");
        h.exit(up, Exit::Code(0));
        h.take_log();
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(downs(&h), vec!["setup"], "it came up again: down again");
    }
}
