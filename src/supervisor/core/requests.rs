//! Control requests (`Order`s), answered by the pure core: start / stop /
//! restart (answered when done), signal, logs, wait, reload, shutdown;
//! status and health are in `status`.
//!
//! A request that completes later becomes a `Pending` entry, checked after
//! every event; its reply is an `Action::Reply`. Nothing here blocks: a
//! client waiting for a stop is only an entry in a list. Services change
//! only through their own transitions (`want_up`, `want_down`, `restart`,
//! `reload`).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Phase, Supervisor};
use crate::config::{Output, closest_name};
use crate::control::protocol::Response;
use crate::event::{Action, Names, Order, RequestId, ServiceId};
use crate::service::{Service, State, Want, human};

#[derive(Debug, Clone)]
pub struct Pending {
    id: RequestId,
    op: PendingOp,
    deadline: Option<Instant>,
}

#[derive(Debug, Clone)]
enum PendingOp {
    /// Started (oneshots: exited 0), or failed.
    Start(Vec<ServiceId>),
    /// Down; with whether each was running when asked.
    Stop(Vec<(ServiceId, bool)>),
    /// Started again after the request: `starts` beyond the snapshot.
    Restart(Vec<(ServiceId, u32)>),
    /// Started (or ready, with `true`), before the deadline.
    Wait(Vec<ServiceId>, bool),
    /// Reloaded: each service's reload number `asked` finished, or (for a
    /// reload that is a restart, or one asked while starting) ready again in
    /// a run after `starts`.
    Reload(Vec<ReloadWait>),
}

#[derive(Debug, Clone)]
struct ReloadWait {
    service: ServiceId,
    asked: u32,
    starts: u32,
    was_ready: bool,
}

/// How a pending start is doing for one service.
enum Progress {
    Done(String),
    Failed(String),
    Waiting,
}

impl Pending {
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn id(&self) -> RequestId {
        self.id
    }
}

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
                ready,
            } => self.request_wait(id, &services, timeout, ready, now),
            Order::ReloadAll => match self.not_up() {
                Some(refusal) => Some(Response::error(refusal)),
                None => return vec![Action::LoadConfig { id: Some(id) }],
            },
            Order::Reload { services } => return self.request_reload(id, &services, now),
            Order::Health => Some(self.health(now)),
            Order::Shutdown { exit_code } => return self.request_shutdown(id, exit_code, now),
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
            match self.services.find_live(name) {
                Some(id) if !found.contains(&id) => found.push(id),
                Some(_) => {}
                None => unknown.push(self.no_such_service(name)),
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

    fn no_such_service(&self, name: &str) -> String {
        let live = self.services.iter().filter(|s| !s.is_removed());
        match closest_name(name, live.map(Service::name)) {
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
        self.pending.push(Pending {
            id,
            op: PendingOp::Start(ids),
            deadline: None,
        });
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
        for dep in self.services.deps(id).to_vec() {
            if !self.services.is_started(dep) {
                self.want_up(dep, false, depth - 1);
            }
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
                stops.push((i, !svc.is_down()));
                // `schedule` sends the stop signals, dependants first.
                svc.want_down();
            }
        }
        self.pending.push(Pending {
            id,
            op: PendingOp::Stop(stops),
            deadline: None,
        });
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
        self.pending.push(Pending {
            id,
            op: PendingOp::Restart(restarts),
            deadline: None,
        });
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
        let spec = match self.resolve(&[name.to_string()], false) {
            Ok(ids) => match ids.first().and_then(|&i| self.services.get(i)) {
                Some(svc) => svc.spec(),
                None => return Response::ok(),
            },
            Err(e) => return Response::error(e),
        };
        match spec.output {
            Output::Prefix => Response::ok(),
            Output::Inherit => Response::error(format!(
                "{name} writes straight to the container's output (output = \"inherit\"): corral keeps no copy; see docker logs"
            )),
            Output::Null => Response::error(format!(
                "{name} has output = \"null\": its output is discarded"
            )),
        }
    }

    fn request_wait(
        &mut self,
        id: RequestId,
        names: &[String],
        timeout: Option<Duration>,
        ready: bool,
        now: Instant,
    ) -> Option<Response> {
        let ids = match self.resolve(names, false) {
            Ok(ids) => ids,
            Err(e) => return Some(Response::error(e)),
        };
        self.pending.push(Pending {
            id,
            op: PendingOp::Wait(ids, ready),
            // A timeout too far to name is none at all.
            deadline: timeout.and_then(|t| now.checked_add(t)),
        });
        None
    }

    /// What `ctl wait` waits for: ready (readiness passed), or merely started
    /// (a process runs; for a oneshot, it exited 0).
    fn reached(&self, id: ServiceId, ready: bool) -> bool {
        self.services.get(id).is_some_and(|svc| {
            if ready || svc.spec().oneshot {
                svc.is_ready()
            } else {
                svc.is_live()
            }
        })
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
        self.pending.push(Pending {
            id,
            op: PendingOp::Reload(waits),
            deadline: None,
        });
        actions
    }

    /// `None` while a service's reload is under way.
    fn reload_outcome(&self, w: &ReloadWait) -> Option<Result<String, String>> {
        let Some(svc) = self.services.get(w.service) else {
            return Some(Err(format!("no service {}", w.service)));
        };
        let name = svc.name();
        if let Some((n, result)) = svc.last_reload()
            && *n >= w.asked
        {
            return Some(match result {
                Ok(()) => Ok(format!("{name}: reloaded")),
                Err(e) => Err(format!("{name}: {e}")),
            });
        }
        if svc.is_ready() && (svc.starts() > w.starts || !w.was_ready) {
            return Some(Ok(format!("{name}: reloaded (restarted)")));
        }
        match svc.state() {
            State::Failed { reason } => Some(Err(format!("{name} failed: {reason}"))),
            State::Backoff { why, .. } => Some(Err(format!("{name}: {why}"))),
            State::Stopped => Some(Err(format!("{name} is stopped"))),
            _ => None,
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
                tracing::info!(exit_code, "shutdown requested over the control socket");
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

    /// Answer every pending request whose condition now holds (or can no
    /// longer hold).
    pub(super) fn check_pending(&mut self, now: Instant) -> Vec<Action> {
        let pending = std::mem::take(&mut self.pending);
        let mut actions = Vec::new();
        for p in pending {
            match self.progress(&p, now) {
                Some(response) => actions.push(Action::Reply { id: p.id, response }),
                None => self.pending.push(p),
            }
        }
        actions
    }

    fn progress(&self, p: &Pending, now: Instant) -> Option<Response> {
        let shutting_down = self.is_shutting_down();
        match &p.op {
            PendingOp::Start(ids) => {
                if shutting_down {
                    return Some(Response::error("corral is shutting down"));
                }
                self.all_started(ids.iter().map(|&i| (i, 0)))
            }
            PendingOp::Restart(ids) => {
                if shutting_down {
                    return Some(Response::error("corral is shutting down"));
                }
                self.all_started(ids.iter().copied())
            }
            PendingOp::Stop(ids) => {
                if ids.iter().any(|&(i, _)| !self.services.is_down(i)) {
                    return None;
                }
                let messages = ids
                    .iter()
                    .filter_map(|&(i, was_running)| Some((self.services.get(i)?, was_running)))
                    .map(|(svc, was_running)| stop_message(svc, was_running))
                    .collect();
                Some(Response::messages(messages))
            }
            PendingOp::Reload(waits) => {
                let mut outcomes = Vec::new();
                for w in waits {
                    outcomes.push(self.reload_outcome(w)?);
                }
                let messages = outcomes.iter().filter_map(|o| o.clone().ok()).collect();
                let errors: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
                Some(if errors.is_empty() {
                    Response::messages(messages)
                } else {
                    Response {
                        messages,
                        ..Response::error(errors.join("; "))
                    }
                })
            }
            PendingOp::Wait(ids, ready) => self.wait_progress(ids, *ready, p.deadline, now),
        }
    }

    fn wait_progress(
        &self,
        ids: &[ServiceId],
        ready: bool,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Option<Response> {
        if ids.iter().all(|&i| self.reached(i, ready)) {
            let word = if ready { "ready" } else { "started" };
            let messages = ids
                .iter()
                .filter_map(|&i| self.services.get(i))
                .map(|svc| format!("{}: {word}", svc.name()))
                .collect();
            return Some(Response::messages(messages));
        }
        if self.is_shutting_down() {
            return Some(Response::error("corral is shutting down"));
        }
        if deadline.is_some_and(|at| now >= at) {
            let left: Vec<String> = ids
                .iter()
                .filter(|&&i| !self.reached(i, ready))
                .filter_map(|&i| self.services.get(i))
                .map(|svc| {
                    let state = self.service_status(svc, now).state;
                    format!("{} ({state})", svc.name())
                })
                .collect();
            return Some(Response::error(format!(
                "timed out waiting for {}",
                left.join(", ")
            )));
        }
        None
    }

    /// Every service started since `starts` (a count snapshot), or a reply
    /// naming what failed. `None`: keep waiting.
    fn all_started(&self, ids: impl Iterator<Item = (ServiceId, u32)>) -> Option<Response> {
        let mut messages = Vec::new();
        let mut failures = Vec::new();
        for (i, since) in ids {
            match self.start_progress(i, since) {
                Progress::Done(m) => messages.push(m),
                Progress::Failed(m) => failures.push(m),
                Progress::Waiting => return None,
            }
        }
        Some(if failures.is_empty() {
            Response::messages(messages)
        } else {
            Response {
                messages,
                ..Response::error(failures.join("; "))
            }
        })
    }

    fn start_progress(&self, id: ServiceId, since: u32) -> Progress {
        let Some(svc) = self.services.get(id) else {
            return Progress::Failed(format!("no service {id}"));
        };
        let name = svc.name();
        let last = svc
            .last_exit()
            .map_or_else(String::new, |e| format!(" ({e})"));
        if svc.want() == Want::Down {
            return Progress::Failed(format!("{name} was stopped"));
        }
        if svc.starts() > since && svc.is_started() {
            return Progress::Done(match svc.pid() {
                Some(pid) => format!("{name}: started (pid {})", pid.as_raw()),
                None => format!("{name}: done"),
            });
        }
        match svc.state() {
            State::Failed { reason } => Progress::Failed(format!("{name} failed: {reason}")),
            State::Stopped => Progress::Failed(format!("{name} exited{last}")),
            State::Backoff { why, .. } => Progress::Failed(format!(
                "{name}: {why}; it will be started again after its backoff"
            )),
            State::Idle if self.blocked(id, self.services.len()) => {
                Progress::Failed(format!("{name} waits for a service that failed"))
            }
            _ => Progress::Waiting,
        }
    }
}

/// What a stop request says of one service once it is down.
fn stop_message(svc: &Service, was_running: bool) -> String {
    let name = svc.name();
    match (was_running, svc.last_exit()) {
        (false, _) => format!("{name}: was not running"),
        (true, Some(exit)) if svc.stop_escalated() => format!(
            "{name}: did not stop within stop-timeout {}, sent SIGKILL ({exit})",
            human(svc.spec().stop_timeout)
        ),
        (true, Some(exit)) => format!("{name}: stopped ({exit})"),
        (true, None) => format!("{name}: stopped"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::event::Event;
    use crate::exit::Exit;

    fn these(list: &[&str]) -> Names {
        Names::These(list.iter().map(|s| s.to_string()).collect())
    }

    fn wait(services: &[&str], timeout: Option<Duration>, ready: bool) -> Order {
        Order::Wait {
            services: services.iter().map(|s| s.to_string()).collect(),
            timeout,
            ready,
        }
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
    fn wait_answers_when_started_or_fails_at_its_deadline() {
        let mut migrate = svc("migrate", &[]);
        migrate.oneshot = true;
        migrate.restart = crate::config::Restart::Never;
        let mut h = Harness::new(sup(vec![svc("app", &["migrate"]), migrate], false));
        h.order(1, wait(&["app"], None, true));
        h.order(2, wait(&["app"], Some(Duration::from_millis(500)), true));
        assert_eq!(
            h.sup.next_deadline(),
            Some(h.now + Duration::from_millis(500))
        );
        h.advance_to(h.now + Duration::from_millis(500));
        assert_eq!(
            h.reply(2).and_then(|r| r.error),
            Some("timed out waiting for app (starting)".into())
        );
        assert!(h.reply(1).is_none());
        h.exit(pid(100), Exit::Code(0));
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec!["app: ready".to_string()])
        );
    }

    #[test]
    fn wait_without_ready_is_content_with_a_process_and_a_huge_timeout_is_none() {
        let mut web = svc("web", &[]);
        web.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(vec![web], false));
        h.order(1, wait(&["web"], Some(Duration::MAX), false));
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec!["web: started".to_string()])
        );
        h.order(2, wait(&["web"], Some(Duration::MAX), true));
        assert!(h.reply(2).is_none());
        assert_eq!(h.sup.next_deadline(), h.service("web").deadline());
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
    fn reload_answers_once_the_service_is_ready_again() {
        let mut web = svc("web", &[]);
        web.ready = Some(crate::config::Ready::Notify);
        web.reload = Some(crate::config::Reload::Signal(Signal::SIGUSR2));
        let mut h = Harness::new(sup(vec![web, svc("db", &[])], false));
        let ready = crate::event::NotifyMessage {
            ready: true,
            ..Default::default()
        };
        h.event(Event::Notify {
            service: id(0),
            run: 1,
            message: ready.clone(),
        });
        h.take_log();
        h.order(
            1,
            Order::Reload {
                services: vec!["web".into(), "db".into()],
            },
        );
        // db has no reload: it restarts; web gets its signal.
        assert_eq!(
            h.signalled(),
            vec![(pid(100), Signal::SIGUSR2), (pid(101), Signal::SIGTERM)]
        );
        h.exit(pid(101), Exit::Signal(Signal::SIGTERM));
        assert!(h.reply(1).is_none(), "web is not ready again yet");
        h.event(Event::Notify {
            service: id(0),
            run: 1,
            message: ready,
        });
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec![
                "web: reloaded".to_string(),
                "db: reloaded (restarted)".to_string()
            ])
        );
    }

    #[test]
    fn shutdown_with_an_exit_code_and_requests_refused_while_shutting_down() {
        let mut h = Harness::new(sup(vec![svc("db", &[])], false));
        h.order(1, wait(&["db"], None, true));
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

    #[test]
    fn a_pending_request_is_answered_when_the_shutdown_begins() {
        let mut web = svc("web", &[]);
        web.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(vec![web], false));
        h.order(1, wait(&["web"], None, true));
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(
            h.reply(1).and_then(|r| r.error),
            Some("corral is shutting down".into())
        );
    }

    #[test]
    fn a_cancelled_request_is_forgotten_but_its_action_goes_on() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &[])], false));
        h.take_log();
        h.order(1, Order::Stop(these(&["web"])));
        h.order(2, wait(&["web"], Some(Duration::from_secs(60)), true));
        h.event(Event::Cancel { id: 1 });
        h.event(Event::Cancel { id: 2 });
        // Left: the stop's own SIGKILL deadline, not the wait's 60 s.
        assert_eq!(
            h.sup.next_deadline(),
            Some(h.now + Duration::from_secs(5)),
            "the wait's deadline went with it"
        );
        h.exit(pid(101), Exit::Code(0));
        assert!(h.reply(1).is_none() && h.reply(2).is_none());
        assert_eq!(
            *h.state_of("web"),
            State::Stopped,
            "the stop itself went on"
        );
        h.order(3, Order::Health);
        assert_eq!(
            h.reply(3).map(|r| r.messages),
            Some(vec![
                "all 1 wanted services up (1 stopped or disabled on purpose)".to_string()
            ])
        );
    }
}
