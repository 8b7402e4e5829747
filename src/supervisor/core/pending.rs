//! Requests answered later: a start, stop or restart once it is done, a
//! wait once the services are started (or at its deadline), a reload once
//! each service is ready again. Each is a `Pending` entry checked after
//! every event (`check_pending`); nothing blocks, and a client that hangs
//! up only takes its entry away (`Event::Cancel`).

use std::time::Instant;

use super::Supervisor;
use crate::event::{Action, RequestId, ServiceId};
use crate::protocol::Response;
use crate::service::{Service, State, Want};
use crate::text::human;

/// A request answered once what it asked for is done (or can no longer be).
#[derive(Debug, Clone)]
pub struct Pending {
    id: RequestId,
    op: PendingOp,
    deadline: Option<Instant>,
}

/// What a pending request waits for.
#[derive(Debug, Clone)]
pub(super) enum PendingOp {
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
pub(super) struct ReloadWait {
    pub(super) service: ServiceId,
    pub(super) asked: u32,
    pub(super) starts: u32,
    pub(super) was_ready: bool,
}

/// How a pending start is doing for one service.
enum Progress {
    Done(String),
    Failed(String),
    Waiting,
}

impl Pending {
    /// Request `id`, waiting for `op` (until `deadline`, if any).
    pub(super) fn new(id: RequestId, op: PendingOp, deadline: Option<Instant>) -> Pending {
        Pending { id, op, deadline }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn id(&self) -> RequestId {
        self.id
    }
}

impl Supervisor {
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
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use super::super::testing::*;
    use super::*;
    use crate::event::{Event, Names, Order};
    use crate::exit::Exit;

    fn wait(services: &[&str], timeout: Option<Duration>, ready: bool) -> Order {
        Order::Wait {
            services: services.iter().map(|s| s.to_string()).collect(),
            timeout,
            ready,
        }
    }

    fn these(list: &[&str]) -> Names {
        Names::These(list.iter().map(|s| s.to_string()).collect())
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
