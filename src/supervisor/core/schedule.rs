//! Dependency order: in phase `Up`, what starts (once what it comes `after`
//! is started, and is no boot step that failed: `boot`) and what stops
//! (dependants first), and when the main COMMAND may start; in phase
//! `Stopping`, the shutdown order (the main COMMAND, then each service once
//! every service that depends on it is down). A oneshot with an s6-rc
//! `down` to run counts as up for that order: its `down` runs once its
//! dependants are down, and what it depends on waits for its `down` to end,
//! so `down`s run in reverse dependency order, independent ones together.

use std::time::Instant;

use tracing::warn;

use super::{Phase, Supervisor};
use crate::event::{Action, ServiceId};
use crate::service::{Service, State, Want};

impl Supervisor {
    /// Phase `Up`: stop what is no longer wanted (dependants first), start
    /// what is wanted and whose dependencies are started; then the main
    /// COMMAND once every service has settled.
    pub(super) fn schedule(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for id in self.services.ids() {
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
                continue;
            }
            // Dependants that are also to go down go first; those wanted up stay.
            let dependants_down = self
                .services
                .dependants(id)
                .filter(|&j| self.wants(j, Want::Down))
                .all(|j| self.services.is_fully_down(j));
            if dependants_down && let Some(svc) = self.services.get_mut(id) {
                actions.extend(svc.stop(now, None));
            }
        }
        // Again while a start completed at once (a oneshot with nothing to
        // run): its dependants may come earlier in the order. Each pass
        // that goes round again took one more service out of `Idle`.
        loop {
            let mut done_at_once = false;
            for id in self.services.ids() {
                let waiting = self
                    .services
                    .get(id)
                    .is_some_and(|svc| svc.want() == Want::Up && *svc.state() == State::Idle);
                if !waiting {
                    continue;
                }
                let ready = self
                    .services
                    .deps(id)
                    .iter()
                    .all(|&j| self.services.is_started(j) && !self.boot_failed(j));
                if ready && let Some(svc) = self.services.get_mut(id) {
                    let started = svc.start(now);
                    done_at_once |= started.is_empty() && *svc.state() == State::Exited;
                    actions.extend(started);
                }
            }
            if !done_at_once {
                break;
            }
        }
        if self.main_is_waiting()
            && actions.is_empty()
            && self.services.ids().all(|id| self.settled(id))
        {
            let failed = |svc: &&Service| svc.ended_for_good() || self.boot_failed(svc.id());
            for svc in self.services.iter().filter(failed) {
                warn!(service = %svc.name(), "starting the main command although this service failed");
            }
            actions.extend(self.spawn_main());
        }
        actions
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

    /// Waiting on a dependency (transitively) that ended for good, or is a
    /// boot step that failed. `depth` bounds the recursion even though
    /// validation rejects cycles.
    pub(super) fn blocked(&self, id: ServiceId, depth: usize) -> bool {
        depth > 0
            && self.services.deps(id).iter().any(|&j| {
                self.services.get(j).is_some_and(Service::ended_for_good)
                    || self.boot_failed(j)
                    || self.blocked(j, depth - 1)
            })
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
        for id in self.services.ids() {
            let live = self
                .services
                .get(id)
                .is_some_and(|svc| svc.is_live() || svc.has_down_to_run());
            // A service without a process: this cancels a pending retry (or,
            // while a finish script runs, makes "down" what follows it);
            // no-op otherwise. One with a process (or a `down` to run) waits
            // for its dependants, `down`s included.
            let stop = !live
                || self
                    .services
                    .dependants(id)
                    .all(|j| self.services.is_fully_down(j));
            if stop && let Some(svc) = self.services.get_mut(id) {
                actions.extend(svc.stop(now, Some(budget_at)));
            }
        }
        if self.services.iter().all(Service::is_fully_down) {
            self.phase = Phase::Finish { budget_at };
            actions.extend(self.next_finish(now));
        }
        actions
    }
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
