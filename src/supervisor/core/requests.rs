//! Control requests (`Order`s), answered by the pure core: start / stop /
//! restart (answered when done), signal, logs, wait, reload, shutdown;
//! status and health are in `status`.
//!
//! A request that completes later becomes a `Pending` entry (`pending`),
//! answered by an `Action::Reply` once done. Nothing here blocks: a client
//! waiting for a stop is only an entry in a list. Services change only
//! through their own transitions (`want_up`, `want_down`, `restart`,
//! `reload`).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::pending::{Pending, PendingOp, ReloadWait};
use super::{Phase, Supervisor};
use crate::config::Output;
use crate::event::{Action, Names, Order, RequestId, ServiceId, Until};
use crate::protocol::Response;
use crate::service::Service;
use crate::text::closest;

impl Supervisor {
    pub(super) fn on_order(&mut self, id: RequestId, order: Order, now: Instant) -> Vec<Action> {
        let response = match order {
            Order::Status { services } => Some(self.status(&services, now)),
            Order::Start(names) => self.request_start(id, &names),
            Order::Stop(names) => self.request_stop(id, &names),
            Order::Restart(names) => return self.request_restart(id, &names, now),
            Order::Signal { signal, services } => {
                return self.request_signal(id, signal, &services);
            }
            Order::Logs { service } => Some(self.request_logs(&service)),
            Order::Wait {
                services,
                timeout,
                until,
                since_run,
            } => self.request_wait(id, &services, timeout, until, since_run, now),
            Order::ReloadAll => match self.not_up() {
                Some(refusal) => Some(Response::error(refusal)),
                None => return vec![Action::LoadConfig { id: Some(id) }],
            },
            Order::Reload { services } => return self.request_reload(id, &services, now),
            Order::Health => Some(self.health(now)),
            Order::Shutdown { exit_code } => return self.request_shutdown(id, exit_code, now),
            Order::Run { service } => return self.request_run(id, &service, now),
            Order::Scale { service, replicas } => {
                return self.request_scale(id, &service, replicas, now);
            }
        };
        response.map_or_else(Vec::new, |response| vec![Action::Reply { id, response }])
    }

    /// Ids of the named services (or all); every unknown name in one error.
    pub(super) fn resolve(&self, names: &[String], all: bool) -> Result<Vec<ServiceId>, String> {
        if all {
            return Ok(self
                .services
                .iter()
                .filter(|s| !s.is_removed())
                .map(Service::id)
                .collect());
        }
        if names.is_empty() {
            return Err("name at least one service (or use --all)".into());
        }
        let mut found = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            // A service's own name first; else an s6-rc bundle's members.
            let ids: Vec<ServiceId> = match self.services.find_live(name) {
                Some(id) => vec![id],
                None => match self.bundles.get(name) {
                    Some(members) => members
                        .iter()
                        .filter_map(|m| self.services.find_live(m))
                        .collect(),
                    // A replicated service: every instance.
                    None => match self.instances(name) {
                        Some(ids) => ids,
                        None => {
                            unknown.push(self.no_such_service(name));
                            continue;
                        }
                    },
                },
            };
            for id in ids {
                if !found.contains(&id) {
                    found.push(id);
                }
            }
        }
        if unknown.is_empty() {
            Ok(found)
        } else {
            Err(unknown.join("; "))
        }
    }

    fn resolve_names(&self, names: &Names) -> Result<Vec<ServiceId>, String> {
        match names {
            Names::All => self.resolve(&[], true),
            Names::These(names) => self.resolve(names, false),
        }
    }

    pub(super) fn no_such_service(&self, name: &str) -> String {
        let live = self.services.iter().filter(|s| !s.is_removed());
        let groups = self.groups.iter().map(|g| g.name());
        match closest(name, live.map(Service::name).chain(groups)) {
            Some(near) => format!("no service \"{name}\" (did you mean \"{near}\"?)"),
            None if self.services.is_empty() => {
                format!("no service \"{name}\" (corral has no services)")
            }
            None => format!("no service \"{name}\""),
        }
    }

    /// For requests that act on services: refused unless services are up;
    /// else the named ones (or all), or the answer saying which are unknown.
    fn up_and_resolved(&self, names: &Names) -> Result<Vec<ServiceId>, String> {
        if let Some(refusal) = self.not_up() {
            return Err(refusal.to_string());
        }
        self.resolve_names(names)
    }

    /// Why requests that act on services are refused now, if they are.
    pub(super) fn not_up(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Up => None,
            Phase::Init => Some("corral is still running its init scripts"),
            _ => Some("corral is shutting down"),
        }
    }

    fn request_start(&mut self, id: RequestId, names: &Names) -> Option<Response> {
        if let Some(refusal) = self.not_up() {
            return Some(Response::error(refusal));
        }
        let ids = match self.resolve_names(names) {
            Ok(ids) => ids,
            Err(e) => return Some(Response::error(e)),
        };
        for &i in &ids {
            self.want_up(i, true, self.services.len());
        }
        self.pending
            .push(Pending::new(id, PendingOp::Start(ids), None));
        None
    }

    /// Want `id` up, and (transitively) whatever it starts `after` that is
    /// not up: "start web" when db is down starts db, then web. `explicit`:
    /// named by the operator, so a finished oneshot runs again.
    fn want_up(&mut self, id: ServiceId, explicit: bool, depth: usize) {
        let Some(svc) = self.services.get_mut(id) else {
            return;
        };
        svc.want_up(explicit);
        if depth == 0 {
            return;
        }
        let unmet: Vec<ServiceId> = self
            .services
            .conditions(id)
            .filter(|&(dep, condition)| !self.met(dep, condition))
            .map(|(dep, _)| dep)
            .collect();
        for dep in unmet {
            self.want_up(dep, false, depth - 1);
        }
    }

    fn request_stop(&mut self, id: RequestId, names: &Names) -> Option<Response> {
        if self.phase == Phase::Init {
            return self.not_up().map(Response::error);
        }
        let ids = match self.resolve_names(names) {
            Ok(ids) => ids,
            Err(e) => return Some(Response::error(e)),
        };
        let mut stops = Vec::new();
        for i in ids {
            if let Some(svc) = self.services.get_mut(i) {
                stops.push((i, !svc.is_down() || svc.has_down_to_run()));
                // `schedule` sends the stop signals, dependants first.
                svc.want_down();
            }
        }
        self.pending
            .push(Pending::new(id, PendingOp::Stop(stops), None));
        None
    }

    fn request_restart(&mut self, id: RequestId, names: &Names, now: Instant) -> Vec<Action> {
        let ids = match self.up_and_resolved(names) {
            Ok(ids) => ids,
            Err(e) => {
                return vec![Action::Reply {
                    id,
                    response: Response::error(e),
                }];
            }
        };
        let mut actions = Vec::new();
        let mut restarts = Vec::new();
        for i in ids {
            let Some(svc) = self.services.get_mut(i) else {
                continue;
            };
            restarts.push((i, svc.starts()));
            if svc.pid().is_some() {
                actions.extend(svc.restart(now));
            } else {
                self.want_up(i, true, self.services.len());
            }
        }
        self.pending
            .push(Pending::new(id, PendingOp::Restart(restarts), None));
        actions
    }

    fn request_signal(&mut self, id: RequestId, signal: Signal, names: &[String]) -> Vec<Action> {
        let ids = match self.resolve(names, false) {
            Ok(ids) => ids,
            Err(e) => {
                return vec![Action::Reply {
                    id,
                    response: Response::error(e),
                }];
            }
        };
        let mut actions = Vec::new();
        let mut messages = Vec::new();
        let mut failed = Vec::new();
        for svc in ids.into_iter().filter_map(|i| self.services.get(i)) {
            let group = svc.spec().kill_group;
            match svc.pid() {
                Some(pid) => {
                    let whom = if group { "process group" } else { "pid" };
                    messages.push(format!(
                        "{}: sent {} to {whom} {}",
                        svc.name(),
                        signal.as_str(),
                        pid.as_raw()
                    ));
                    actions.push(Action::Signal { pid, signal, group });
                }
                None => failed.push(format!(
                    "{} is not running ({})",
                    svc.name(),
                    svc.state().name()
                )),
            }
        }
        let response = if failed.is_empty() {
            Response::messages(messages)
        } else {
            Response {
                messages,
                ..Response::error(failed.join("; "))
            }
        };
        actions.push(Action::Reply { id, response });
        actions
    }

    /// Whether corral keeps the output of `name` (the control thread reads it).
    fn request_logs(&self, name: &str) -> Response {
        // `--syslog`'s messages, kept like a service's lines.
        if self.syslog && name == crate::output::format::SYSLOG {
            return Response::ok();
        }
        let spec = match self.resolve(&[name.to_string()], false) {
            // Each instance of a replicated service (each member of a
            // bundle) keeps its own lines.
            Ok(ids) if ids.len() > 1 => {
                return Response::error(format!(
                    "{name} names {} services: name one (`ctl status {name}` lists them), or use --all",
                    ids.len()
                ));
            }
            Ok(ids) => match ids.first().and_then(|&i| self.services.get(i)) {
                Some(svc) => svc.spec(),
                None => return Response::ok(),
            },
            Err(e) => return Response::error(e),
        };
        match spec.output {
            Output::Prefix => Response::ok(),
            // Read for its log file or its `log-line`, and kept.
            Output::Null if spec.reads_output() => Response::ok(),
            Output::Inherit => Response::error(format!(
                "{name} writes straight to the container's output (output = \"inherit\"): corral keeps no copy; see docker logs"
            )),
            Output::Null => Response::error(format!(
                "{name} has output = \"null\": its output is discarded"
            )),
        }
    }

    /// A wait: answered by `check_pending`, right after this event if it
    /// already holds. Each service counts from `since_run` (given for one
    /// service only), or else from its run now.
    fn request_wait(
        &mut self,
        id: RequestId,
        names: &[String],
        timeout: Option<Duration>,
        until: Until,
        since_run: Option<u32>,
        now: Instant,
    ) -> Option<Response> {
        let ids = match self.resolve(names, false) {
            Ok(ids) => ids,
            Err(e) => return Some(Response::error(e)),
        };
        let services = ids
            .into_iter()
            .filter_map(|i| self.services.get(i))
            .map(|svc| (svc.id(), since_run.unwrap_or(svc.starts())))
            .collect();
        // A timeout too far to name is none at all.
        let deadline = timeout.and_then(|t| now.checked_add(t));
        self.pending.push(Pending::new(
            id,
            PendingOp::Wait { until, services },
            deadline,
        ));
        None
    }

    fn request_reload(&mut self, id: RequestId, names: &[String], now: Instant) -> Vec<Action> {
        let ids = match self.up_and_resolved(&Names::These(names.to_vec())) {
            Ok(ids) => ids,
            Err(e) => {
                return vec![Action::Reply {
                    id,
                    response: Response::error(e),
                }];
            }
        };
        let mut actions = Vec::new();
        let mut waits = Vec::new();
        for i in ids {
            let Some(svc) = self.services.get_mut(i) else {
                continue;
            };
            let starts = svc.starts();
            let was_ready = svc.is_ready();
            actions.extend(svc.reload(now));
            waits.push(ReloadWait {
                service: i,
                asked: svc.reloads_asked(),
                starts,
                was_ready,
            });
        }
        self.pending
            .push(Pending::new(id, PendingOp::Reload(waits), None));
        actions
    }

    /// `ctl run`: a scheduled service or a oneshot runs now, once what it
    /// runs after is started; answered when the run ends, with its outcome.
    fn request_run(&mut self, id: RequestId, name: &str, now: Instant) -> Vec<Action> {
        let reply = |response| vec![Action::Reply { id, response }];
        let target = match self.up_and_resolved(&Names::These(vec![name.to_string()])) {
            Ok(ids) => ids.first().copied().filter(|_| ids.len() == 1),
            Err(e) => return reply(Response::error(e)),
        };
        let Some((i, svc)) = target.and_then(|i| Some((i, self.services.get(i)?))) else {
            return reply(Response::error(format!(
                "{name} names several services: run one at a time"
            )));
        };
        let name = svc.name().to_string();
        if !svc.is_scheduled() && !svc.spec().oneshot {
            return reply(Response::error(format!(
                "{name} is a long-running service: `run` is for scheduled and oneshot services; use `corral ctl start` or `restart`"
            )));
        }
        let waiting = self.waiting_for(i);
        if !waiting.is_empty() {
            return reply(Response::error(format!(
                "{name} is waiting for {}",
                waiting.join(", ")
            )));
        }
        let scheduled = svc.is_scheduled();
        let (starts, ended) = (svc.starts(), svc.runs_ended());
        let Some(svc) = self.services.get_mut(i) else {
            return Vec::new();
        };
        match svc.run_now(now) {
            Ok(actions) => {
                let op = if scheduled {
                    PendingOp::Run { service: i, ended }
                } else {
                    PendingOp::Restart(vec![(i, starts)])
                };
                self.pending.push(Pending::new(id, op, None));
                actions
            }
            Err(e) => reply(Response::error(e)),
        }
    }

    fn request_shutdown(
        &mut self,
        id: RequestId,
        exit_code: Option<i32>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let message = match self.phase {
            Phase::Init | Phase::Up => {
                if let Some(code) = exit_code {
                    self.set_exit_code(code);
                }
                crate::log::info!(exit_code, "shutdown requested over the control socket");
                actions.extend(self.begin_shutdown(now));
                "shutting down"
            }
            _ => "already shutting down",
        };
        actions.push(Action::Reply {
            id,
            response: Response::messages(vec![message.to_string()]),
        });
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::event::Event;
    use crate::exit::Exit;
    use crate::service::State;

    fn these(list: &[&str]) -> Names {
        Names::These(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn stop_answers_when_the_service_is_down_and_reports_sigkill_escalation() {
        let mut slow = svc("web", &[]);
        slow.stop_timeout = Duration::from_secs(2);
        let mut h = Harness::new(sup(vec![slow], false));
        h.take_log();
        h.order(1, Order::Stop(these(&["web"])));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        assert!(h.reply(1).is_none(), "no answer before the exit");
        let t = h.now + Duration::from_secs(2);
        h.advance_to(t);
        assert!(h.signalled().contains(&(pid(100), Signal::SIGKILL)));
        h.exit(pid(100), Exit::Signal(Signal::SIGKILL));
        let reply = h.reply(1).expect("answered once down");
        assert_eq!(
            reply.messages,
            vec!["web: did not stop within stop-timeout 2.0s, sent SIGKILL (killed by SIGKILL)"]
        );
        assert_eq!(*h.state_of("web"), State::Stopped);
        // Stopped on request: nothing restarts it, and corral stays up.
        h.advance_to(t + Duration::from_secs(60));
        assert!(h.spawned().is_empty());
        assert_eq!(h.sup.phase, Phase::Up);
    }

    #[test]
    fn stop_all_stops_dependants_first_and_a_second_stop_says_not_running() {
        let mut h = Harness::new(sup(vec![svc("api", &["db"]), svc("db", &[])], false));
        let (api, db) = (h.pid_of("api"), h.pid_of("db"));
        h.take_log();
        h.order(1, Order::Stop(Names::All));
        assert_eq!(h.signalled(), vec![(api, Signal::SIGTERM)]);
        h.take_log();
        h.exit(api, Exit::Code(0));
        assert_eq!(h.signalled(), vec![(db, Signal::SIGTERM)]);
        h.exit(db, Exit::Code(0));
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec![
                "api: stopped (exit 0)".to_string(),
                "db: stopped (exit 0)".to_string()
            ])
        );
        h.order(2, Order::Stop(these(&["db"])));
        assert_eq!(
            h.reply(2).map(|r| r.messages),
            Some(vec!["db: was not running".to_string()])
        );
    }

    #[test]
    fn stopping_a_dependency_alone_leaves_its_running_dependants_up() {
        let mut h = Harness::new(sup(vec![svc("api", &["db"]), svc("db", &[])], false));
        let db = h.pid_of("db");
        h.take_log();
        h.order(1, Order::Stop(these(&["db"])));
        assert_eq!(h.signalled(), vec![(db, Signal::SIGTERM)]);
    }

    #[test]
    fn requests_that_name_nothing_or_come_too_early_are_refused() {
        let mut s = sup(vec![svc("web", &[])], false);
        s.init = super::super::Scripts::new(vec!["/i/01".into()]);
        let mut h = Harness::new(s);
        for (id, order) in [
            (1, Order::Start(these(&["web"]))),
            (2, Order::Stop(these(&["web"]))),
            (3, Order::Restart(these(&["web"]))),
            (
                4,
                Order::Reload {
                    services: vec!["web".into()],
                },
            ),
        ] {
            h.order(id, order);
            assert_eq!(
                h.reply(id).and_then(|r| r.error),
                Some("corral is still running its init scripts".into()),
                "request {id}"
            );
        }
        h.exit(pid(100), Exit::Code(0));
        h.order(5, Order::Start(Names::These(Vec::new())));
        assert_eq!(
            h.reply(5).and_then(|r| r.error),
            Some("name at least one service (or use --all)".into())
        );
    }

    #[test]
    fn start_brings_up_stopped_dependencies_first_and_answers_when_started() {
        let mut h = Harness::new(sup(vec![svc("api", &["db"]), svc("db", &[])], false));
        h.order(1, Order::Stop(Names::All));
        h.exit(h.pid_of("api"), Exit::Code(0));
        h.exit(h.pid_of("db"), Exit::Code(0));
        h.take_log();
        h.order(2, Order::Start(these(&["api"])));
        // db first (api waits for it), then api; one answer for the request.
        assert_eq!(
            h.spawned(),
            vec![
                crate::event::Target::Service(id(1)),
                crate::event::Target::Service(id(0))
            ]
        );
        let reply = h.reply(2).expect("answered once started");
        assert!(reply.ok);
        assert_eq!(reply.messages, vec!["api: started (pid 103)"]);
    }

    #[test]
    fn start_of_a_service_that_cannot_be_spawned_reports_the_reason() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.order(1, Order::Stop(these(&["web"])));
        h.exit(pid(100), Exit::Code(0));
        h.take_log();
        h.fail_spawns = true;
        h.order(2, Order::Start(these(&["web"])));
        let reply = h.reply(2).expect("answered at the failure");
        assert!(!reply.ok);
        assert_eq!(
            reply.error,
            Some(
                "web: could not be started: No such file or directory; \
                 it will be started again after its backoff"
                    .into()
            )
        );
        assert_eq!(h.state_of("web").name(), "backoff");
    }

    #[test]
    fn start_of_a_service_held_by_a_failed_dependency_says_so() {
        let mut db = svc("db", &[]);
        db.restart = crate::config::Restart::Never;
        db.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(vec![db, svc("web", &["db"])], false));
        h.order(1, Order::Start(these(&["web"])));
        assert!(h.reply(1).is_none(), "db is still starting");
        h.exit(pid(100), Exit::Code(1));
        assert_eq!(
            h.reply(1).and_then(|r| r.error),
            Some("web waits for a service that failed".into())
        );
    }

    #[test]
    fn restart_answers_after_the_new_process_runs() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.take_log();
        h.order(1, Order::Restart(these(&["web"])));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        assert!(h.reply(1).is_none());
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec!["web: started (pid 101)".to_string()])
        );
        assert_eq!(h.service("web").restarts(), 1);
    }

    #[test]
    fn restart_of_a_stopped_service_is_a_start() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.order(1, Order::Stop(these(&["web"])));
        h.exit(pid(100), Exit::Code(0));
        h.take_log();
        h.order(2, Order::Restart(these(&["web"])));
        assert!(h.signalled().is_empty());
        assert_eq!(
            h.reply(2).map(|r| r.messages),
            Some(vec!["web: started (pid 101)".to_string()])
        );
    }

    #[test]
    fn stop_and_restart_reach_a_service_that_is_still_starting() {
        let mut ready = svc("web", &[]);
        ready.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(vec![ready], false));
        assert_eq!(h.state_of("web").name(), "starting");
        h.take_log();
        h.order(1, Order::Restart(these(&["web"])));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.service("web").starts(), 2, "started again");
        h.take_log();
        h.order(2, Order::Stop(these(&["web"])));
        assert_eq!(h.signalled(), vec![(pid(101), Signal::SIGTERM)]);
        h.exit(pid(101), Exit::Signal(Signal::SIGTERM));
        assert!(h.reply(2).is_some_and(|r| r.ok));
        assert_eq!(*h.state_of("web"), State::Stopped);
    }

    #[test]
    fn signal_goes_to_running_services_and_names_the_others() {
        let mut db = svc("db", &[]);
        db.kill_group = false;
        let mut h = Harness::new(sup(vec![db, svc("web", &[])], false));
        h.order(9, Order::Stop(these(&["web"])));
        h.exit(pid(101), Exit::Code(0));
        h.take_log();
        h.order(
            1,
            Order::Signal {
                signal: Signal::SIGHUP,
                services: vec!["db".into(), "web".into()],
            },
        );
        assert_eq!(
            h.take_log().first(),
            Some(&Action::Signal {
                pid: pid(100),
                signal: Signal::SIGHUP,
                group: false
            })
        );
        h.order(
            2,
            Order::Signal {
                signal: Signal::SIGHUP,
                services: vec!["db".into(), "web".into()],
            },
        );
        let reply = h.reply(2).expect("answered");
        assert_eq!(reply.messages, vec!["db: sent SIGHUP to pid 100"]);
        assert_eq!(reply.error, Some("web is not running (stopped)".into()));
    }

    #[test]
    fn logs_are_refused_for_output_corral_does_not_keep() {
        let mut quiet = svc("quiet", &[]);
        quiet.output = Output::Null;
        let mut loud = svc("loud", &[]);
        loud.output = Output::Inherit;
        let mut h = Harness::new(sup(vec![svc("web", &[]), quiet, loud], false));
        for (id, name) in [(1, "web"), (2, "quiet"), (3, "loud"), (4, "nope")] {
            h.order(
                id,
                Order::Logs {
                    service: name.into(),
                },
            );
        }
        assert!(h.reply(1).is_some_and(|r| r.ok));
        assert_eq!(
            h.reply(2).and_then(|r| r.error),
            Some("quiet has output = \"null\": its output is discarded".into())
        );
        assert!(
            h.reply(3)
                .and_then(|r| r.error)
                .is_some_and(|e| e.contains("see docker logs"))
        );
        assert_eq!(
            h.reply(4).and_then(|r| r.error),
            Some("no service \"nope\"".into())
        );
    }

    #[test]
    fn shutdown_with_an_exit_code_and_requests_refused_while_shutting_down() {
        let mut h = Harness::new(sup(vec![svc("db", &[])], false));
        h.order(
            1,
            Order::Wait {
                services: vec!["db".into()],
                timeout: None,
                until: Until::Ready,
                since_run: None,
            },
        );
        assert!(h.reply(1).is_some_and(|r| r.ok));
        h.order(2, Order::Shutdown { exit_code: Some(7) });
        assert_eq!(
            h.reply(2).map(|r| r.messages),
            Some(vec!["shutting down".to_string()])
        );
        h.order(3, Order::Start(these(&["db"])));
        assert_eq!(
            h.reply(3).and_then(|r| r.error),
            Some("corral is shutting down".into())
        );
        h.order(4, Order::Shutdown { exit_code: Some(9) });
        assert_eq!(
            h.reply(4).map(|r| r.messages),
            Some(vec!["already shutting down".to_string()])
        );
        h.exit(pid(100), Exit::Code(0));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(7)));
    }
}
