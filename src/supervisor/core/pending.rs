//! Requests answered later: a start, stop or restart once it is done, a
//! wait once its condition holds of every service (or at its deadline), a
//! reload once each service is ready again. Each is a `Pending` entry
//! checked after every event (`check_pending`); nothing blocks or polls,
//! and a client that hangs up only takes its entry away (`Event::Cancel`).
//!
//! A wait's conditions (`Until`) read the service's own state: down is no
//! process, finished is no process and no s6 `finish` script, restarted is
//! a run number beyond the one the wait counts from. A run number, not a
//! pid: pids are reused, and a restart that came and went between two
//! events still moved the count. A wait for a service to come up (started,
//! ready, restarted) fails at once when it never will: the service ended
//! for good (failed, or exited and not restarted), or waits on one that did
//! (s6-svwait's "permanent failure"), rather than at its deadline. A stop
//! of a oneshot with an s6-rc `down` is done once that `down` ended.

use std::time::Instant;

use super::Supervisor;
use super::sweep::Sweep;
use crate::event::{Action, RequestId, ServiceId, Until};
use crate::protocol::Response;
use crate::service::{Service, State, Want};
use crate::text::human;

/// A request answered once what it asked for is done (or can no longer be).
#[derive(Debug, Clone)]
pub struct Pending {
    id: RequestId,
    op: PendingOp,
    deadline: Option<Instant>,
    /// How far its services are known to be done (it is checked after
    /// every event; each check asks about a few of them, and about all
    /// once they all seem done).
    sweep: Sweep,
    /// A wait: whether it has looked at all its services for one that
    /// will never do what it waits for (after that, only after a setback).
    looked: bool,
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
    /// `until` holds of every service, before the deadline; each with the
    /// run that a restart must come after (and a down must end).
    Wait {
        until: Until,
        services: Vec<(ServiceId, u32)>,
    },
    /// Reloaded: each service's reload number `asked` finished, or (for a
    /// reload that is a restart, or one asked while starting) ready again in
    /// a run after `starts`.
    Reload(Vec<ReloadWait>),
    /// `ctl run` of a scheduled service: its run after `ended` runs ended.
    Run { service: ServiceId, ended: u32 },
}

#[derive(Debug, Clone)]
pub(super) struct ReloadWait {
    pub(super) service: ServiceId,
    pub(super) asked: u32,
    pub(super) starts: u32,
    pub(super) was_ready: bool,
}

/// A wait, as `wait_progress` reads it.
struct Wait<'a> {
    until: Until,
    services: &'a [(ServiceId, u32)],
    deadline: Option<Instant>,
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
        Pending {
            id,
            op,
            deadline,
            sweep: Sweep::default(),
            looked: false,
        }
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
    /// longer hold). `setback`: a service that a wait may fail by changed
    /// in this event (see `setback`).
    pub(super) fn check_pending(&mut self, now: Instant, setback: bool) -> Vec<Action> {
        let pending = std::mem::take(&mut self.pending);
        let mut actions = Vec::new();
        for mut p in pending {
            match self.progress(&mut p, now, setback) {
                Some(response) => actions.push(Action::Reply { id: p.id, response }),
                None => self.pending.push(p),
            }
        }
        actions
    }

    /// Whether a service marked as changed since the last pass is one that
    /// can make a wait fail (`wait_progress`): it ended (stopped, failed),
    /// is a boot step that failed, or was removed. What depends on it,
    /// transitively, may then never come up. Every service, after a phase
    /// change or a config reload.
    pub(super) fn setback(&self) -> bool {
        let Some(marked) = self.services.marked() else {
            return true;
        };
        marked
            .iter()
            .filter_map(|&i| self.services.get(i))
            .any(|svc| {
                matches!(svc.state(), State::Stopped | State::Failed { .. })
                    || svc.up_failure().is_some()
                    || svc.is_removed()
            })
    }

    fn progress(&self, p: &mut Pending, now: Instant, setback: bool) -> Option<Response> {
        let shutting_down = self.is_shutting_down();
        let sweep = &mut p.sweep;
        // A wait looks at every service for one that will never come up
        // when it is new, and after a setback only.
        let look = setback || !std::mem::replace(&mut p.looked, true);
        #[cfg(test)]
        let look = look || self.full_scan;
        #[cfg(test)]
        if self.full_scan {
            *sweep = Sweep::default();
        }
        match &p.op {
            PendingOp::Start(ids) => {
                if shutting_down {
                    return Some(Response::error("corral is shutting down"));
                }
                let started = |k: usize| ids.get(k).is_none_or(|&i| !self.start_waits(i, 0));
                if !sweep.holds(ids.len(), started) {
                    return None;
                }
                self.all_started(ids.iter().map(|&i| (i, 0)))
            }
            PendingOp::Restart(ids) => {
                if shutting_down {
                    return Some(Response::error("corral is shutting down"));
                }
                let started = |k: usize| ids.get(k).is_none_or(|&(i, n)| !self.start_waits(i, n));
                if !sweep.holds(ids.len(), started) {
                    return None;
                }
                self.all_started(ids.iter().copied())
            }
            PendingOp::Stop(ids) => {
                let down = |k: usize| {
                    ids.get(k)
                        .is_none_or(|&(i, _)| self.services.is_fully_down(i))
                };
                if !sweep.holds(ids.len(), down) {
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
                let reloaded = |k: usize| {
                    waits
                        .get(k)
                        .is_none_or(|w| self.reload_outcome(w).is_some())
                };
                if !sweep.holds(waits.len(), reloaded) {
                    return None;
                }
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
            PendingOp::Wait { until, services } => {
                let wait = Wait {
                    until: *until,
                    services,
                    deadline: p.deadline,
                };
                self.wait_progress(&wait, sweep, look, now)
            }
            PendingOp::Run { service, ended } => {
                let svc = self.services.get(*service)?;
                let run = svc.last_run().filter(|_| svc.runs_ended() > *ended)?;
                let message = format!(
                    "{}: {} after {}",
                    svc.name(),
                    run.outcome(),
                    human(run.took)
                );
                Some(if run.succeeded() {
                    Response::messages(vec![message])
                } else {
                    Response::error(message)
                })
            }
        }
    }

    /// The answer to a wait, once `until` holds of every service, or can
    /// no longer hold: a service removed from the definitions (for a wait
    /// other than down), the shutdown (which brings every service down, so
    /// a wait for down goes on), the deadline. Whether it holds is swept
    /// (`Sweep`); the services that will never come up are looked for only
    /// when `look` (a new wait, or a setback), so that the work per event
    /// does not grow with the number of services waited for.
    fn wait_progress(
        &self,
        wait: &Wait,
        sweep: &mut Sweep,
        look: bool,
        now: Instant,
    ) -> Option<Response> {
        let &Wait {
            until,
            services,
            deadline,
        } = wait;
        let holds = |&(i, since): &(ServiceId, u32)| {
            #[cfg(test)]
            self.wait_looks.set(self.wait_looks.get() + 1);
            self.services
                .get(i)
                .is_some_and(|svc| holds(svc, until, since))
        };
        if sweep.holds(services.len(), |k| services.get(k).is_none_or(holds)) {
            let word = match until {
                Until::Started => "started",
                Until::Ready => "ready",
                Until::Down => "down",
                Until::Finished => "finished",
                Until::Restarted => "restarted",
                Until::RestartedReady => "restarted and ready",
            };
            let messages = services
                .iter()
                .filter_map(|&(i, _)| self.services.get(i))
                .map(|svc| format!("{}: {word}", svc.name()))
                .collect();
            return Some(Response::messages(messages));
        }
        let goes_down = matches!(until, Until::Down | Until::Finished);
        let waiting = services.iter().filter(|w| !holds(w));
        if look && !goes_down {
            let removed: Vec<&str> = waiting
                .clone()
                .filter_map(|&(i, _)| self.services.get(i))
                .filter(|svc| svc.is_removed())
                .map(Service::name)
                .collect();
            if !removed.is_empty() {
                return Some(Response::error(format!(
                    "removed from the definitions: {}",
                    removed.join(", ")
                )));
            }
        }
        if self.is_shutting_down() && !goes_down {
            return Some(Response::error("corral is shutting down"));
        }
        if look && !goes_down {
            let never: Vec<String> = waiting
                .clone()
                .filter_map(|&(i, _)| Some((i, self.services.get(i)?)))
                .filter_map(|(i, svc)| self.never_up(i, svc))
                .collect();
            if !never.is_empty() {
                return Some(Response::error(never.join("; ")));
            }
        }
        if deadline.is_some_and(|at| now >= at) {
            let left: Vec<String> = waiting
                .filter_map(|&(i, _)| self.services.get(i))
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

    /// Why `svc` will not come up any more, if it will not: it ended for
    /// good, or waits on a service that did.
    fn never_up(&self, id: ServiceId, svc: &Service) -> Option<String> {
        let name = svc.name();
        let why = if svc.ended_for_good() {
            match (svc.state(), svc.last_exit()) {
                (State::Failed { reason }, _) => format!("{name} failed: {reason}"),
                (_, Some(exit)) => format!("{name} exited ({exit}) and is not restarted"),
                (_, None) => format!("{name} is stopped"),
            }
        } else if *svc.state() == State::Idle && self.blocked(id, self.services.len()) {
            format!("{name} waits for a service that failed")
        } else {
            return None;
        };
        Some(format!("{why}; it will not come up"))
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

    /// A start of `id` still under way (see `start_progress`).
    fn start_waits(&self, id: ServiceId, since: u32) -> bool {
        matches!(self.start_progress(id, since), Progress::Waiting)
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
        if svc.is_scheduled() && svc.is_started() {
            return Progress::Done(format!("{name}: scheduled"));
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

/// Whether `until` holds of `svc`, counting from its run `since`. A run
/// beyond `since` means the one counted from has ended (and its `finish`
/// script with it: the next run starts only after that), even if the new
/// one runs now.
fn holds(svc: &Service, until: Until, since: u32) -> bool {
    let newer_run = svc.starts() > since;
    let no_process = svc.pid().is_none();
    match until {
        Until::Started if svc.spec().oneshot || svc.is_scheduled() => svc.is_ready(),
        Until::Started => svc.is_live(),
        Until::Ready => svc.is_ready(),
        Until::Down => no_process || newer_run,
        Until::Finished => (no_process && !svc.is_finishing()) || newer_run,
        Until::Restarted => newer_run,
        Until::RestartedReady => newer_run && svc.is_ready(),
    }
}

/// What a stop request says of one service once it is down.
fn stop_message(svc: &Service, was_running: bool) -> String {
    let name = svc.name();
    if was_running && svc.spec().oneshot && svc.spec().down.is_some() {
        match svc.last_down() {
            Some(Ok(exit)) if exit.success() => return format!("{name}: down done"),
            Some(Ok(exit)) if svc.stop_escalated() => {
                return format!(
                    "{name}: down did not end within stop-timeout {}, sent SIGKILL ({exit})",
                    human(svc.spec().stop_timeout)
                );
            }
            Some(Ok(exit)) => return format!("{name}: down failed ({exit})"),
            Some(Err(error)) => return format!("{name}: down {error}"),
            None => {}
        }
    }
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

    fn wait(services: &[&str], timeout: Option<Duration>, until: Until) -> Order {
        Order::Wait {
            services: services.iter().map(|s| s.to_string()).collect(),
            timeout,
            until,
            since_run: None,
        }
    }

    /// A wait for `until` of `name`, counting from its run `since_run`.
    fn wait_since(name: &str, until: Until, since_run: u32) -> Order {
        Order::Wait {
            services: vec![name.to_string()],
            timeout: None,
            until,
            since_run: Some(since_run),
        }
    }

    fn messages(h: &mut Harness, id: u64) -> Option<Vec<String>> {
        h.reply(id).map(|r| {
            assert!(r.ok, "{r:?}");
            r.messages
        })
    }

    fn error(h: &mut Harness, id: u64) -> Option<String> {
        h.reply(id).and_then(|r| r.error)
    }

    fn ready_msg() -> crate::event::NotifyMessage {
        crate::event::NotifyMessage {
            ready: true,
            ..Default::default()
        }
    }

    /// web, with an s6 `finish` script.
    fn with_finish() -> crate::config::ServiceSpec {
        let mut web = svc("web", &[]);
        web.finish = Some("/srv/web/finish".into());
        web
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
        h.order(1, wait(&["app"], None, Until::Ready));
        h.order(
            2,
            wait(&["app"], Some(Duration::from_millis(500)), Until::Ready),
        );
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
        h.order(1, wait(&["web"], Some(Duration::MAX), Until::Started));
        assert_eq!(
            h.reply(1).map(|r| r.messages),
            Some(vec!["web: started".to_string()])
        );
        h.order(2, wait(&["web"], Some(Duration::MAX), Until::Ready));
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
        h.order(1, wait(&["web"], None, Until::Ready));
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
        h.order(
            2,
            wait(&["web"], Some(Duration::from_secs(60)), Until::Ready),
        );
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

    #[test]
    fn a_wait_that_already_holds_is_answered_at_once_and_the_others_set_no_timer() {
        let mut idle = svc("idle", &[]);
        idle.enabled = false;
        let mut h = Harness::new(sup(vec![svc("web", &[]), idle], false));
        for (id, name, until, word) in [
            (1, "web", Until::Started, "web: started"),
            (2, "web", Until::Ready, "web: ready"),
            (3, "idle", Until::Down, "idle: down"),
            (4, "idle", Until::Finished, "idle: finished"),
        ] {
            h.order(id, wait(&[name], None, until));
            assert_eq!(messages(&mut h, id), Some(vec![word.to_string()]));
        }
        h.order(5, wait(&["web", "idle"], None, Until::Down));
        h.order(6, wait(&["web"], None, Until::Restarted));
        h.order(7, wait(&["idle"], None, Until::Started));
        assert!(h.reply(5).is_none() && h.reply(6).is_none() && h.reply(7).is_none());
        // Checked after every event, so nothing wakes the loop for them.
        assert_eq!(h.sup.next_deadline(), None);
    }

    #[test]
    fn down_holds_once_the_process_is_gone_and_finished_once_its_finish_script_is() {
        let mut h = Harness::new(sup(vec![with_finish()], false));
        h.order(1, wait(&["web"], None, Until::Down));
        h.order(2, wait(&["web"], None, Until::Finished));
        h.order(3, Order::Stop(these(&["web"])));
        assert!(
            h.reply(1).is_none() && h.reply(2).is_none(),
            "web still runs"
        );
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        assert!(h.service("web").is_finishing());
        assert_eq!(messages(&mut h, 1), Some(vec!["web: down".to_string()]));
        assert!(h.reply(2).is_none(), "its finish script runs");
        h.exit(pid(101), Exit::Code(0));
        assert_eq!(messages(&mut h, 2), Some(vec!["web: finished".to_string()]));
        assert!(h.reply(3).is_some_and(|r| r.ok));
    }

    #[test]
    fn a_crash_is_down_during_the_backoff_and_restarted_at_the_next_spawn() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.order(1, wait(&["web"], None, Until::Down));
        h.order(2, wait(&["web"], None, Until::Restarted));
        h.exit(pid(100), Exit::Code(1));
        assert_eq!(h.state_of("web").name(), "backoff");
        assert_eq!(messages(&mut h, 1), Some(vec!["web: down".to_string()]));
        assert!(h.reply(2).is_none(), "nothing runs yet");
        h.advance_to(h.now + Duration::from_millis(100));
        assert_eq!(h.pid_of("web"), pid(101));
        assert_eq!(
            messages(&mut h, 2),
            Some(vec!["web: restarted".to_string()])
        );
    }

    #[test]
    fn restarted_counts_runs_after_the_request_or_after_the_run_it_names() {
        let mut web = svc("web", &[]);
        web.ready = Some(crate::config::Ready::Notify);
        let mut h = Harness::new(sup(vec![web], false));
        let ready = |run| Event::Notify {
            service: id(0),
            run,
            message: ready_msg(),
        };
        h.event(ready(1));
        h.order(1, wait(&["web"], None, Until::Restarted));
        h.order(2, wait(&["web"], None, Until::RestartedReady));
        assert!(
            h.reply(1).is_none() && h.reply(2).is_none(),
            "run 1 is no restart"
        );
        h.order(3, Order::Restart(these(&["web"])));
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.service("web").starts(), 2);
        assert_eq!(
            messages(&mut h, 1),
            Some(vec!["web: restarted".to_string()])
        );
        assert!(h.reply(2).is_none(), "run 2 is not ready yet");
        h.event(ready(1));
        assert!(h.reply(2).is_none(), "run 1's READY=1 does not count");
        h.event(ready(2));
        assert_eq!(
            messages(&mut h, 2),
            Some(vec!["web: restarted and ready".to_string()])
        );
        // A client that saw run 1 before it acted (s6-svc -r -wR), and whose
        // wait comes after the restart: it is answered at once.
        for (id, until, word) in [
            (4, Until::Restarted, "web: restarted"),
            (5, Until::RestartedReady, "web: restarted and ready"),
            (6, Until::Down, "web: down"),
            (7, Until::Finished, "web: finished"),
        ] {
            h.order(id, wait_since("web", until, 1));
            assert_eq!(
                messages(&mut h, id),
                Some(vec![word.to_string()]),
                "{until:?}"
            );
        }
        h.order(8, wait_since("web", Until::Down, 2));
        assert!(h.reply(8).is_none(), "run 2 still runs");
    }

    #[test]
    fn a_wait_fails_at_its_deadline_naming_what_has_not_come() {
        let mut h = Harness::new(sup(vec![svc("web", &[]), svc("db", &[])], false));
        h.order(1, wait(&["web"], None, Until::Down));
        h.order(
            2,
            wait(&["web", "db"], Some(Duration::from_secs(2)), Until::Down),
        );
        assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(2)));
        h.order(3, Order::Stop(these(&["db"])));
        h.exit(pid(101), Exit::Signal(Signal::SIGTERM));
        h.advance_to(h.now + Duration::from_millis(1999));
        assert!(h.reply(2).is_none());
        h.advance_to(h.now + Duration::from_millis(1));
        assert_eq!(
            error(&mut h, 2),
            Some("timed out waiting for web (running)".into())
        );
        assert!(h.reply(1).is_none(), "no deadline: it waits on");
        assert_eq!(h.sup.next_deadline(), None);
    }

    #[test]
    fn a_service_removed_by_a_config_reload_fails_waits_for_it_to_run_but_goes_down() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), with_finish()], false));
        let web = h.pid_of("web");
        h.order(1, wait(&["web"], None, Until::Restarted));
        h.order(2, wait(&["web"], None, Until::Finished));
        h.order(3, wait(&["db", "web"], None, Until::Restarted));
        h.take_log();
        h.event(Event::Loaded {
            id: None,
            result: Ok(crate::config::Spec {
                services: vec![svc("db", &[])],
                ..Default::default()
            }),
        });
        assert_eq!(h.signalled(), vec![(web, Signal::SIGTERM)]);
        for id in [1, 3] {
            assert_eq!(
                error(&mut h, id),
                Some("removed from the definitions: web".into()),
                "request {id}"
            );
        }
        assert!(h.reply(2).is_none(), "web is stopping");
        h.exit(web, Exit::Signal(Signal::SIGTERM));
        assert!(h.reply(2).is_none(), "its finish script runs");
        h.exit(
            h.service("web").finish_pid().expect("finish runs"),
            Exit::Code(0),
        );
        assert_eq!(messages(&mut h, 2), Some(vec!["web: finished".to_string()]));
    }

    #[test]
    fn at_the_shutdown_a_wait_for_down_goes_on_and_the_others_end() {
        let mut h = Harness::new(sup(vec![with_finish()], false));
        h.order(1, wait(&["web"], None, Until::Finished));
        h.order(2, wait(&["web"], None, Until::Restarted));
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(error(&mut h, 2), Some("corral is shutting down".into()));
        assert!(h.reply(1).is_none(), "the shutdown brings web down");
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        assert!(h.reply(1).is_none(), "its finish script runs");
        h.exit(pid(101), Exit::Code(0));
        assert_eq!(messages(&mut h, 1), Some(vec!["web: finished".to_string()]));
        // One that comes during the shutdown is answered at once.
        h.order(3, wait(&["web"], None, Until::Down));
        assert_eq!(messages(&mut h, 3), Some(vec!["web: down".to_string()]));
        h.order(4, wait(&["web"], None, Until::Ready));
        assert_eq!(error(&mut h, 4), Some("corral is shutting down".into()));
    }

    #[test]
    fn a_wait_for_a_service_that_will_not_come_up_fails_at_once() {
        let mut init = svc("init", &[]);
        init.oneshot = true;
        init.restart = crate::config::Restart::Never;
        let mut web = svc("web", &[]);
        web.ready = Some(crate::config::Ready::Notify);
        web.restart = crate::config::Restart::Never;
        let mut h = Harness::new(sup(vec![svc("app", &["init"]), init, web], false));
        let long = Some(Duration::from_secs(60));
        // Pending while it still may come up; fails when it enters failed.
        h.order(1, wait(&["web"], long, Until::Ready));
        h.order(2, wait(&["app"], long, Until::Started));
        assert!(h.reply(1).is_none() && h.reply(2).is_none());
        h.exit(h.pid_of("web"), Exit::Code(3));
        assert_eq!(
            error(&mut h, 1),
            Some("web failed: exit 3, restart = \"never\"; it will not come up".into())
        );
        assert!(h.reply(2).is_none());
        h.exit(h.pid_of("init"), Exit::Code(1));
        assert_eq!(
            error(&mut h, 2),
            Some("app waits for a service that failed; it will not come up".into())
        );
        // Asked after the failure: at once, naming each; a wait for down holds.
        h.order(3, wait(&["init", "web"], None, Until::Restarted));
        assert_eq!(
            error(&mut h, 3),
            Some(
                "init failed: exit 1, restart = \"never\"; it will not come up; \
                 web failed: exit 3, restart = \"never\"; it will not come up"
                    .into()
            )
        );
        h.order(4, wait(&["web"], None, Until::Down));
        assert_eq!(messages(&mut h, 4), Some(vec!["web: down".to_string()]));
    }

    #[test]
    fn a_wait_for_a_service_in_backoff_still_waits() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.exit(pid(100), Exit::Code(1));
        h.order(
            1,
            wait(&["web"], Some(Duration::from_secs(60)), Until::Ready),
        );
        assert!(h.reply(1).is_none(), "it will be started again");
    }
}
