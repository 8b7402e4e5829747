//! What the core tells about the services: `ctl status` (one
//! `ServiceStatus` each, with the detail a person needs: what it waits
//! for, why it backs off, how long it has been up) and `ctl health`.

use std::time::{Duration, Instant};

use super::{Phase, Supervisor};
use crate::config::Condition;
use crate::event::ServiceId;
use crate::exit::Exit;
use crate::protocol::{Response, ServiceStatus};
use crate::service::{Hook, Service, State, Timer, Want};
use crate::text::human;

impl Supervisor {
    /// `ctl status`: the named services, or every one sorted by name.
    pub(super) fn status(&self, names: &[String], now: Instant) -> Response {
        let mut ids = match self.resolve(names, names.is_empty()) {
            Ok(ids) => ids,
            Err(e) => return Response::error(e),
        };
        if names.is_empty() {
            // By name, also after a config reload appended new services;
            // replicas by number (`web.2` before `web.10`).
            // The key once per service (a comparison parsing both names
            // was 15% of a status of 1000), and nothing to do when they
            // are in order already.
            crate::sort::sort_by_cached_key(&mut ids, |&id| {
                self.services.get(id).map(|svc| instance_order(svc.name()))
            });
        }
        Response {
            services: ids
                .into_iter()
                .filter_map(|id| self.services.get(id))
                .map(|svc| self.service_status(svc, now))
                .collect(),
            orphans_reaped: Some(self.orphans_reaped),
            phase: Some(self.phase.name().to_string()),
            ..Response::ok()
        }
    }

    /// What `id` waits for before it may start: each dependency whose
    /// condition does not hold, with the condition when not the default,
    /// and why it will not come, if it will not (`migrate to succeed
    /// (failed: exit 3, ...)`).
    pub(super) fn waiting_for(&self, id: ServiceId) -> Vec<String> {
        self.services
            .conditions(id)
            .filter(|&(j, condition)| !self.met(j, condition))
            .filter_map(|(j, condition)| {
                let dep = self.services.get(j)?;
                let what = match condition {
                    Condition::Ready => "",
                    Condition::Started => " to start",
                    Condition::Healthy => " to be healthy",
                    Condition::Completed => " to complete",
                    Condition::Succeeded => " to succeed",
                };
                let mut text = format!("{}{what}", dep.name());
                if let Some(why) = self.never_met(j, condition, self.services.len()) {
                    text = format!("{text} ({why})");
                }
                Some(text)
            })
            .collect()
    }

    pub(super) fn service_status(&self, svc: &Service, now: Instant) -> ServiceStatus {
        let waiting_for = self.waiting_for(svc.id());
        let (state, detail, next_start_ms) = match svc.state() {
            State::Idle if svc.want() == Want::Up && self.phase == Phase::Up => {
                let detail = (!waiting_for.is_empty())
                    .then(|| format!("waiting for {}", waiting_for.join(", ")));
                ("starting", detail, None)
            }
            State::Idle if !svc.spec().enabled => ("stopped", Some("disabled".to_string()), None),
            State::Backoff { retry_at, why } => {
                let left = retry_at.saturating_duration_since(now);
                let detail = format!("{why}; next start in {}", human(left));
                ("backoff", Some(detail), Some(millis(left)))
            }
            State::Failed { reason } => ("failed", Some(reason.clone()), None),
            State::Starting { ready_by, .. } => {
                let left = human(ready_by.saturating_duration_since(now));
                let detail = format!("not ready yet ({left} left of ready-timeout)");
                ("starting", Some(detail), None)
            }
            State::Stopping {
                pre_stop: Some(pre_stop),
                ..
            } => {
                let what = match pre_stop.hook {
                    Hook::None => "pre-stop delay",
                    _ => "running pre-stop",
                };
                let left = human(pre_stop.until.saturating_duration_since(now));
                ("stopping", Some(format!("{what} ({left} left)")), None)
            }
            State::Running { .. } if svc.spec().ready.is_some() => ("ready", None, None),
            State::Reloading { .. } => ("running", Some("reloading".to_string()), None),
            other => (other.name(), None, None),
        };
        let scheduled = svc.is_scheduled().then(|| scheduled(svc, now));
        let last_run = svc.last_run();
        let detail = detail.or_else(|| scheduled.as_ref().and_then(|s| s.detail.clone()));
        let uptime_ms = match *svc.state() {
            State::Starting { since, .. }
            | State::Running { since, .. }
            | State::Reloading { since, .. } => Some(millis(now.saturating_duration_since(since))),
            _ => None,
        };
        let updown_ms = uptime_ms.or_else(|| match svc.state() {
            // Its process is gone once it is none of the states above and
            // not stopping (which still has a process).
            State::Stopping { .. } => None,
            _ => svc
                .down_at()
                .map(|at| millis(now.saturating_duration_since(at))),
        });
        let ready_ms = match svc.state() {
            State::Running { .. } | State::Reloading { .. } => svc
                .ready_at()
                .map(|at| millis(now.saturating_duration_since(at))),
            _ => None,
        };
        ServiceStatus {
            name: svc.name().to_string(),
            state: state.to_string(),
            want: match svc.want() {
                Want::Up => "up",
                Want::Down => "down",
            }
            .to_string(),
            pid: svc.pid().map(|p| p.as_raw()),
            uptime_ms,
            updown_ms,
            ready_ms,
            // A scheduled service starts a process at each tick: its runs
            // are `run`, not restarts.
            restarts: if svc.is_scheduled() {
                0
            } else {
                svc.restarts()
            },
            run: svc.starts(),
            ready: svc.is_ready(),
            last_exit: svc.last_exit().map(|e| e.to_string()),
            last_exit_code: svc.last_exit().map(Exit::code),
            detail,
            next_start_ms,
            oneshot: svc.spec().oneshot,
            enabled: svc.spec().enabled,
            essential: svc.spec().essential,
            notify_status: svc.notify_status().map(str::to_string),
            last_exit_ok: svc.last_exit().map(|e| svc.spec().is_success(e)),
            schedule: svc.current_spec().schedule.as_ref().map(|s| s.text.clone()),
            next_run: scheduled.as_ref().and_then(|s| s.next_run.clone()),
            next_run_ms: scheduled.as_ref().and_then(|s| s.next_run_ms),
            last_run: last_run.map(|run| run.outcome()),
            last_run_code: last_run.and_then(|run| run.result.as_ref().ok().map(|e| e.code())),
            last_run_ok: last_run.map(|run| run.succeeded()),
            last_run_ago_ms: last_run.map(|run| millis(now.saturating_duration_since(run.ended))),
            last_run_took_ms: last_run.map(|run| millis(run.took)),
            skipped_ticks: svc.is_scheduled().then(|| svc.skipped_ticks()),
        }
    }

    /// `ctl health`: every service wanted up is ready, or the list of those
    /// that are not, with why.
    pub(super) fn health(&self, now: Instant) -> Response {
        if let Some(refusal) = self.not_up() {
            return Response {
                problems: vec![refusal.to_string()],
                ..Response::error(refusal)
            };
        }
        let live = self.services.iter().filter(|s| !s.is_removed()).count();
        let wanted = self
            .services
            .iter()
            .filter(|s| s.want() == Want::Up && !s.is_removed())
            .count();
        let problems: Vec<String> = self
            .services
            .iter()
            .filter(|svc| !svc.is_removed())
            .map(|svc| self.service_status(svc, now))
            // The one definition, shared with `/readyz`.
            .filter(|status| !status.is_ready_as_wanted())
            .map(|status| match status.detail {
                Some(detail) => format!("{}: {} ({detail})", status.name, status.state),
                None => format!("{}: {}", status.name, status.state),
            })
            .collect();
        if problems.is_empty() {
            let others = live - wanted;
            let mut message = format!("all {wanted} wanted services up");
            if others > 0 {
                message.push_str(&format!(" ({others} stopped or disabled on purpose)"));
            }
            Response::messages(vec![message])
        } else {
            Response {
                problems: problems.clone(),
                ..Response::error(format!("{} not running", problems.len()))
            }
        }
    }
}

/// What status tells of a scheduled service besides its state.
struct Scheduled {
    next_run: Option<String>,
    next_run_ms: Option<u64>,
    /// "next run 2026-12-04T21:00:00+01:00 (in 42.0s); last run: exit 0 5.0m ago, took 1.2s"
    detail: Option<String>,
}

fn scheduled(svc: &Service, now: Instant) -> Scheduled {
    let mut parts = Vec::new();
    let (next_run, next_run_ms) = match svc.timer() {
        Timer::Armed(next) => {
            let left = next.at.saturating_duration_since(now);
            parts.push(format!("next run {} (in {})", next.local, human(left)));
            (Some(next.local.clone()), Some(millis(left)))
        }
        _ => (None, None),
    };
    if let Some(run) = svc.last_run() {
        parts.push(format!(
            "last run: {} {} ago, took {}",
            run.outcome(),
            human(now.saturating_duration_since(run.ended)),
            human(run.took)
        ));
    }
    Scheduled {
        next_run,
        next_run_ms,
        detail: (!parts.is_empty()).then(|| parts.join("; ")),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A name as `ctl status` orders it: `NAME.N` (a replica) by its base, then
/// by N as a number; any other name by itself.
fn instance_order(name: &str) -> (&str, u64) {
    match name.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (base, n.parse().unwrap_or(u64::MAX))
        }
        _ => (name, 0),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use crate::event::{Event, Order};
    use crate::exit::Exit;

    #[test]
    fn replicas_are_listed_by_number() {
        let names = ["web.10", "db", "web.2", "web", "web.1", "web.x", "api.3"];
        let mut h = Harness::new(sup(names.iter().map(|n| svc(n, &[])).collect(), false));
        h.order(
            1,
            Order::Status {
                services: Vec::new(),
            },
        );
        let listed: Vec<String> = h
            .reply(1)
            .map(|r| r.services.into_iter().map(|s| s.name).collect())
            .unwrap_or_default();
        assert_eq!(
            listed,
            ["api.3", "db", "web", "web.1", "web.2", "web.10", "web.x"]
        );
    }

    #[test]
    fn status_reports_states_pids_and_unknown_names_with_a_suggestion() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &["db"])], false));
        h.order(
            1,
            Order::Status {
                services: Vec::new(),
            },
        );
        let status = h.reply(1).expect("status answers at once");
        assert!(status.ok);
        let got: Vec<(String, String, Option<i32>)> = status
            .services
            .iter()
            .map(|s| (s.name.clone(), s.state.clone(), s.pid))
            .collect();
        assert_eq!(
            got,
            vec![
                ("db".into(), "running".into(), Some(100)),
                ("web".into(), "running".into(), Some(101))
            ]
        );
        assert_eq!(status.phase.as_deref(), Some("up"));
        assert_eq!(status.orphans_reaped, Some(0));
        h.order(
            2,
            Order::Status {
                services: vec!["wbe".into(), "nope".into()],
            },
        );
        assert_eq!(
            h.reply(2).and_then(|r| r.error),
            Some("no service \"wbe\" (did you mean \"web\"?); no service \"nope\"".into())
        );
    }

    #[test]
    fn status_says_what_a_service_waits_for_and_when_it_starts_again() {
        let mut db = svc("db", &[]);
        db.ready = Some(crate::config::Ready::Notify);
        db.ready_timeout = Duration::from_secs(10);
        let mut h = Harness::new(sup(vec![db, svc("web", &["db"])], false));
        let status = |h: &Harness, name: &str| {
            let svc = h
                .sup
                .services
                .get(h.sup.services.find(name).expect("known"));
            h.sup.service_status(svc.expect("known"), h.now)
        };
        let web = status(&h, "web");
        assert_eq!(
            (web.state.as_str(), web.detail.as_deref()),
            ("starting", Some("waiting for db"))
        );
        let db = status(&h, "db");
        assert_eq!(
            db.detail.as_deref(),
            Some("not ready yet (10.0s left of ready-timeout)")
        );
        h.exit(pid(100), Exit::Code(3));
        let db = status(&h, "db");
        assert_eq!(db.state, "backoff");
        assert_eq!(db.detail.as_deref(), Some("exit 3; next start in 100ms"));
        assert_eq!(
            (db.next_start_ms, db.last_exit_code, db.pid),
            (Some(100), Some(3), None)
        );
    }

    /// s6-svstat's seconds: since the process started (up), since it
    /// ended (down); ready since it became ready.
    #[test]
    fn status_says_how_long_a_service_has_been_up_down_and_ready() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        let status = |h: &Harness| {
            let svc = h
                .sup
                .services
                .get(h.sup.services.find("web").expect("known"));
            h.sup.service_status(svc.expect("known"), h.now)
        };
        h.now += Duration::from_millis(1500);
        let web = status(&h);
        assert_eq!((web.updown_ms, web.ready_ms), (Some(1500), Some(1500)));
        h.exit(pid(100), Exit::Code(3));
        h.now += Duration::from_millis(40);
        let web = status(&h);
        assert_eq!((web.state.as_str(), web.pid), ("backoff", None));
        assert_eq!((web.updown_ms, web.ready_ms), (Some(40), None));
    }

    #[test]
    fn ready_is_its_own_state_only_for_services_that_declare_readiness() {
        let mut db = svc("db", &[]);
        db.ready = Some(crate::config::Ready::Fd(3));
        let mut h = Harness::new(sup(vec![db, svc("web", &[])], false));
        h.now += Duration::from_secs(2);
        h.event(Event::FdReady {
            service: id(0),
            run: 1,
        });
        h.order(1, Order::Status { services: vec![] });
        let states: Vec<(String, bool, Option<u64>)> = h
            .reply(1)
            .expect("answered")
            .services
            .into_iter()
            .map(|s| (s.state, s.ready, s.uptime_ms))
            .collect();
        assert_eq!(
            states,
            vec![
                ("ready".to_string(), true, Some(2000)),
                ("running".to_string(), true, Some(2000))
            ]
        );
    }

    #[test]
    fn status_shows_a_pre_stop_under_way_and_whether_the_last_exit_was_a_success() {
        let mut web = svc("web", &[]);
        web.pre_stop = Some(crate::config::PreStop::Delay(Duration::from_secs(2)));
        web.success_exit_codes = vec![0, 3];
        let mut h = Harness::new(sup(vec![web], false));
        h.order(
            1,
            Order::Stop(crate::event::Names::These(vec!["web".into()])),
        );
        h.now += Duration::from_millis(500);
        h.order(2, Order::Status { services: vec![] });
        let web = h.reply(2).expect("answered").services.remove(0);
        assert_eq!(
            (web.state.as_str(), web.detail.as_deref(), web.pid),
            ("stopping", Some("pre-stop delay (1.5s left)"), Some(100))
        );
        h.exit(pid(100), Exit::Code(3));
        h.order(3, Order::Status { services: vec![] });
        let web = h.reply(3).expect("answered").services.remove(0);
        assert_eq!(web.last_exit_ok, Some(true));
        assert_eq!(
            web.last_exit.as_deref(),
            Some("exit 3"),
            "as s6-svstat reads it"
        );
    }

    #[test]
    fn health_names_what_is_not_running() {
        let mut h = Harness::new(sup(vec![svc("db", &[]), svc("web", &[])], false));
        h.order(1, Order::Health);
        assert!(h.reply(1).is_some_and(|r| r.ok));
        h.exit(pid(101), Exit::Code(1));
        h.order(2, Order::Health);
        let reply = h.reply(2).expect("health answers at once");
        assert!(!reply.ok);
        assert_eq!(
            reply.problems,
            vec!["web: backoff (exit 1; next start in 100ms)"]
        );
    }

    #[test]
    fn health_during_init_scripts_is_a_problem_of_its_own() {
        let mut s = sup(vec![svc("db", &[])], false);
        s.init = super::super::Scripts::new(vec!["/i/01".into()]);
        let mut h = Harness::new(s);
        h.order(1, Order::Health);
        let reply = h.reply(1).expect("answered");
        assert_eq!(
            reply.problems,
            vec!["corral is still running its init scripts"]
        );
    }
}
