//! The core with scheduled services (`schedule`): armed in dependency
//! order, `ctl run`, status, shutdown, and many timers in one wake-up.
//! Clock requests are answered as the executor does, from a fake wall
//! clock in UTC that follows the harness's fake `Instant`.
#![cfg(test)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::calendar::Utc;
use nix::sys::signal::Signal;

use super::testing::*;
use crate::calendar::{self, Schedule, Wall, When};
use crate::config::{After, Condition, Ready, ServiceSpec};
use crate::event::{Action, Event, NextTick, Order, Target};
use crate::exit::Exit;
use crate::service::{State, Timer};

/// 2026-12-04T20:00:00.250Z at the harness's start.
const WALL0: Wall = 1_796_414_400_250;

fn job(name: &str, every_ms: u64, after: &[&str]) -> ServiceSpec {
    let mut s = svc(name, after);
    s.schedule = Some(Arc::new(Schedule {
        text: format!("@every {every_ms}ms"),
        when: When::Every(every_ms),
    }));
    s
}

struct Clock {
    t0: Instant,
}

impl Clock {
    fn of(h: &Harness) -> Clock {
        Clock { t0: h.now }
    }

    /// Answer every clock request in the log, as the executor would; the
    /// whole log, answers' actions included.
    fn settle(&self, h: &mut Harness) -> Vec<Action> {
        let mut seen = Vec::new();
        loop {
            let log = h.take_log();
            let asks: Vec<_> = log
                .iter()
                .filter_map(|a| match a {
                    Action::Clock {
                        service,
                        schedule,
                        pending,
                        last,
                    } => Some((*service, Arc::clone(schedule), *pending, *last)),
                    _ => None,
                })
                .collect();
            seen.extend(log);
            if asks.is_empty() {
                return seen;
            }
            for (service, schedule, pending, last) in asks {
                let wall = WALL0 + h.now.duration_since(self.t0).as_millis() as Wall;
                let reading = calendar::consult(&schedule, &Utc, wall, pending, last);
                let now = h.now;
                h.event(Event::Clock {
                    service,
                    wall,
                    due: reading.due,
                    next: reading.next.map(|tick| NextTick {
                        tick,
                        at: now + Duration::from_millis((tick - wall) as u64),
                        local: calendar::rfc3339(&Utc, tick),
                    }),
                });
            }
        }
    }

    /// Move the fake clock to `at`, tick, answer the clock requests.
    fn advance(&self, h: &mut Harness, at: Instant) -> Vec<Action> {
        h.take_log();
        h.advance_to(at);
        self.settle(h)
    }
}

fn spawned(actions: &[Action]) -> Vec<Target> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { target, .. } => Some(*target),
            _ => None,
        })
        .collect()
}

fn next_at(h: &Harness, name: &str) -> Instant {
    match h.service(name).timer() {
        Timer::Armed(next) => next.at,
        other => panic!("{name}: expected an armed timer, got {other:?}"),
    }
}

#[test]
fn a_job_is_armed_once_what_it_runs_after_is_started_and_holds_no_main_command() {
    let mut db = svc("db", &[]);
    db.ready = Some(Ready::Fd(3));
    let mut h = Harness::new(sup(vec![db, job("backup", 1000, &["db"])], true));
    let c = Clock::of(&h);
    let log = c.settle(&mut h);
    assert_eq!(spawned(&log), vec![Target::Service(id(0))], "db only");
    assert_eq!(
        *h.state_of("backup"),
        State::Idle,
        "not armed before db is ready"
    );
    assert!(!log.iter().any(|a| matches!(a, Action::Clock { .. })));
    h.event(Event::FdReady {
        service: id(0),
        run: 1,
    });
    let log = c.settle(&mut h);
    assert_eq!(*h.state_of("backup"), State::Scheduled);
    // The main COMMAND starts once the job is armed: it waits for no run.
    assert_eq!(spawned(&log), vec![Target::Main]);
    // Its first tick runs it.
    let at = next_at(&h, "backup");
    let log = c.advance(&mut h, at);
    assert_eq!(spawned(&log), vec![Target::Service(id(1))]);
}

#[test]
fn a_tick_runs_once_its_after_condition_holds_not_only_readiness() {
    // `after = { db = "started" }`: db is spawned but never ready; the job
    // is armed and its ticks run all the same.
    let mut db = svc("db", &[]);
    db.ready = Some(Ready::Fd(3));
    let mut backup = job("backup", 1000, &[]);
    backup.after = vec![After {
        name: "db".into(),
        condition: Condition::Started,
    }];
    let mut h = Harness::new(sup(vec![db, backup], false));
    let c = Clock::of(&h);
    c.settle(&mut h);
    assert_eq!(*h.state_of("backup"), State::Scheduled);
    let at = next_at(&h, "backup");
    let log = c.advance(&mut h, at);
    assert_eq!(spawned(&log), vec![Target::Service(id(1))]);
    assert_eq!(h.service("backup").skipped_ticks(), 0);
}

#[test]
fn ctl_run_is_refused_while_an_after_condition_does_not_hold() {
    let mut db = svc("db", &[]);
    db.ready = Some(Ready::Fd(3));
    let mut backup = job("backup", 60_000, &[]);
    backup.after = vec![After {
        name: "db".into(),
        condition: Condition::Healthy,
    }];
    let mut h = Harness::new(sup(vec![db, backup], false));
    let c = Clock::of(&h);
    c.settle(&mut h);
    h.order(
        1,
        Order::Run {
            service: "backup".into(),
        },
    );
    assert_eq!(
        h.reply(1).map(|r| r.error),
        Some(Some("backup is waiting for db to be healthy".to_string()))
    );
}

#[test]
fn a_tick_while_what_it_runs_after_is_down_is_skipped() {
    let mut db = svc("db", &[]);
    db.restart_delay = Duration::from_secs(10);
    let mut h = Harness::new(sup(vec![db, job("backup", 1000, &["db"])], false));
    let c = Clock::of(&h);
    c.settle(&mut h);
    let db = h.pid_of("db");
    h.exit(db, Exit::Code(1)); // db backs off for 10 s
    let at = next_at(&h, "backup");
    let log = c.advance(&mut h, at);
    assert!(spawned(&log).is_empty());
    assert_eq!(h.service("backup").skipped_ticks(), 1);
    assert_eq!(*h.state_of("backup"), State::Scheduled);
}

#[test]
fn ctl_run_answers_with_the_outcome_and_refuses_a_second_run_and_a_longrun() {
    let mut migrate = svc("migrate", &[]);
    migrate.oneshot = true;
    let mut h = Harness::new(sup(
        vec![job("backup", 60_000, &[]), migrate, svc("web", &[])],
        false,
    ));
    let c = Clock::of(&h);
    c.settle(&mut h);
    h.order(
        1,
        Order::Run {
            service: "backup".into(),
        },
    );
    let log = c.settle(&mut h);
    assert_eq!(spawned(&log), vec![Target::Service(id(0))]);
    let pid = h.pid_of("backup");
    h.now += Duration::from_secs(3);
    h.order(
        2,
        Order::Run {
            service: "backup".into(),
        },
    );
    assert_eq!(
        h.reply(2).map(|r| r.error),
        Some(Some(format!(
            "backup is already running since 3.0s ago (pid {pid})"
        )))
    );
    assert!(h.reply(1).is_none(), "answered when the run ends");
    h.exit(pid, Exit::Code(4));
    let reply = h.reply(1).unwrap();
    assert!(!reply.ok);
    assert_eq!(reply.error.as_deref(), Some("backup: exit 4 after 3.0s"));
    assert_eq!(*h.state_of("backup"), State::Scheduled);

    h.order(
        3,
        Order::Run {
            service: "web".into(),
        },
    );
    assert_eq!(
        h.reply(3).and_then(|r| r.error),
        Some("web is a long-running service: `run` is for scheduled and oneshot services; use `corral ctl start` or `restart`".into())
    );
    h.order(
        4,
        Order::Run {
            service: "bakup".into(),
        },
    );
    assert_eq!(
        h.reply(4).and_then(|r| r.error),
        Some("no service \"bakup\" (did you mean \"backup\"?)".into())
    );
    // A oneshot that already ran runs again.
    let first = h.pid_of("migrate");
    h.exit(first, Exit::Code(0));
    assert_eq!(*h.state_of("migrate"), State::Exited);
    h.take_log();
    h.order(
        5,
        Order::Run {
            service: "migrate".into(),
        },
    );
    assert_eq!(spawned(&h.log), vec![Target::Service(id(1))]);
    let again = h.pid_of("migrate");
    h.exit(again, Exit::Code(0));
    assert_eq!(
        h.reply(5).map(|r| r.messages),
        Some(vec!["migrate: done".to_string()])
    );
    assert_eq!(h.service("migrate").starts(), 2);
}

#[test]
fn status_shows_the_schedule_the_next_run_and_the_last_result() {
    let mut h = Harness::new(sup(vec![job("backup", 60_000, &[])], false));
    let c = Clock::of(&h);
    c.settle(&mut h);
    let at = next_at(&h, "backup");
    c.advance(&mut h, at);
    let pid = h.pid_of("backup");
    h.now = at + Duration::from_millis(1500);
    h.exit(pid, Exit::Code(0));
    h.now += Duration::from_secs(10);
    h.order(1, Order::Status { services: vec![] });
    let status = h.reply(1).unwrap().services.remove(0);
    assert_eq!(status.state, "scheduled");
    assert!(status.ready);
    assert_eq!(status.schedule.as_deref(), Some("@every 60000ms"));
    // Started at 20:00:00.250; the ticks are whole minutes.
    assert_eq!(
        status.next_run.as_deref(),
        Some("2026-12-04T20:02:00+00:00")
    );
    assert_eq!(status.next_run_ms, Some(60_000 - 11_500));
    assert_eq!(
        (
            status.last_run.as_deref(),
            status.last_run_code,
            status.last_run_ok,
            status.last_run_ago_ms,
            status.last_run_took_ms
        ),
        (
            Some("exit 0"),
            Some(0),
            Some(true),
            Some(10_000),
            Some(1500)
        )
    );
    assert_eq!(status.skipped_ticks, Some(0));
    assert_eq!(
        (status.run, status.restarts),
        (1, 0),
        "runs are no restarts"
    );
    assert_eq!(
        status.detail.as_deref(),
        Some(
            "next run 2026-12-04T20:02:00+00:00 (in 48.5s); last run: exit 0 10.0s ago, took 1.5s"
        )
    );
    assert_eq!(status.last_exit.as_deref(), Some("exit 0"));
}

#[test]
fn shutdown_stops_a_running_job_like_any_service_and_ends_an_idle_timer() {
    let mut h = Harness::new(sup(
        vec![job("busy", 1000, &[]), job("idle", 3_600_000, &[])],
        false,
    ));
    let c = Clock::of(&h);
    c.settle(&mut h);
    let at = next_at(&h, "busy");
    c.advance(&mut h, at);
    let pid = h.pid_of("busy");
    h.take_log();
    h.event(Event::Signal(Signal::SIGTERM));
    assert_eq!(h.signalled(), vec![(pid, Signal::SIGTERM)]);
    assert_eq!(*h.state_of("idle"), State::Stopped);
    assert_eq!(h.service("idle").deadline(), None);
    // No tick during the shutdown.
    let later = at + Duration::from_millis(1000);
    let log = c.advance(&mut h, later);
    assert!(spawned(&log).is_empty());
    h.exit(pid, Exit::Signal(Signal::SIGTERM));
    h.event(Event::NoChildren);
    assert_eq!(h.log.last(), Some(&Action::Exit(0)));
}

#[test]
fn a_thousand_jobs_on_one_schedule_run_in_one_wake_up() {
    let jobs: Vec<ServiceSpec> = (0..1000)
        .map(|i| job(&format!("job{i:04}"), 1000, &[]))
        .collect();
    let mut h = Harness::new(sup(jobs, false));
    let c = Clock::of(&h);
    c.settle(&mut h);
    // The executor reads the clocks once per job: its deadlines come apart
    // by a little. Spread them over 5 ms, as a slow executor would.
    for (i, service) in h.sup.services.ids().enumerate() {
        if let Some(svc) = h.sup.services.get_mut(service)
            && let Timer::Armed(next) = svc.timer().clone()
        {
            let mut later = next;
            later.at += Duration::from_micros(i as u64 * 5);
            svc.set_timer_for_test(Timer::Armed(later));
        }
    }
    let first = h.sup.next_deadline().unwrap();
    let log = c.advance(&mut h, first);
    assert_eq!(spawned(&log).len(), 1000, "every job in one wake-up");
    for i in 0..1000 {
        h.exit(pid(100 + i), Exit::Code(0));
    }
    // Re-armed on one second again: the next wake-up is the next tick.
    let next = h.sup.next_deadline().unwrap();
    assert_eq!(next, first + Duration::from_secs(1));
}
