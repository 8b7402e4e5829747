//! The core with thousands of services: the work of one event stays
//! proportional to what it touched (issue 16). An `#[ignore]`d bench times
//! startup and shutdown of 5000 services in the pure core (run it with
//! `cargo test --release --lib scale_bench -- --ignored --nocapture`).
#![cfg(test)]

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Phase;
use super::testing::*;
use crate::config::{Restart, ServiceSpec, Spec};
use crate::event::{Event, NotifyMessage, Target};
use crate::exit::Exit;
use crate::service::State;

/// `n` services, independent, or with every tenth after the one before it
/// and every other one after `s00000` (`deps`).
fn many(n: usize, deps: bool) -> Vec<crate::config::ServiceSpec> {
    (0..n)
        .map(|i| {
            let name = format!("s{i:05}");
            if !deps || i == 0 {
                svc(&name, &[])
            } else if i % 10 == 0 {
                svc(&name, &[&format!("s{:05}", i - 1)])
            } else {
                svc(&name, &["s00000"])
            }
        })
        .collect()
}

/// Start `n` services, stop them with SIGTERM, reap them all: the time of
/// each half.
fn startup_and_shutdown(n: usize, deps: bool) -> (std::time::Duration, std::time::Duration) {
    let t0 = Instant::now();
    let mut h = Harness::new(sup(many(n, deps), false));
    let _ = h.sup.next_deadline();
    let started = t0.elapsed();
    assert_eq!(
        h.sup.services.iter().filter(|s| s.pid().is_some()).count(),
        n
    );
    h.take_log();
    let t1 = Instant::now();
    h.event(Event::Signal(Signal::SIGTERM));
    let _ = h.sup.next_deadline();
    while let Some(pid) = h.signalled().first().map(|&(pid, _)| pid) {
        let signalled = h.signalled();
        h.take_log();
        for (pid, _) in signalled {
            h.exit(pid, Exit::Signal(Signal::SIGTERM));
            let _ = h.sup.next_deadline();
        }
        let _ = pid;
    }
    h.event(Event::NoChildren);
    let stopped = t1.elapsed();
    assert!(h.sup.is_done(), "{}", h.sup.phase.name());
    (started, stopped)
}

/// How many services the dependency order looks at for `event`.
fn examined(h: &mut Harness, event: Event) -> usize {
    let before = h.sup.examined;
    h.event(event);
    h.sup.examined - before
}

#[test]
fn one_event_of_one_service_among_2000_looks_at_a_few_services() {
    let mut h = Harness::new(sup(many(2000, false), false));
    assert!(h.sup.services.iter().all(|s| s.pid().is_some()));
    // An exit: the service goes into backoff; nothing else is looked at.
    let pid = h.pid_of("s01000");
    assert!(
        examined(
            &mut h,
            Event::Exited {
                pid,
                exit: Exit::Code(1)
            }
        ) <= 4
    );
    assert_eq!(h.state_of("s01000").name(), "backoff");
    // Its retry is the one deadline; the tick restarts it alone.
    let retry_at = h.sup.next_deadline().expect("a retry");
    h.take_log();
    h.now = retry_at;
    assert!(examined(&mut h, Event::Tick) <= 4);
    assert_eq!(h.spawned(), vec![Target::Service(id(1000))]);
    assert_eq!(h.sup.next_deadline(), None);
    // The shutdown looks at every service once; the next event again at
    // the ones it stopped (a pass leaves what it changed to the next one:
    // one look per action), then a few per exit.
    h.take_log();
    assert_eq!(examined(&mut h, Event::Signal(Signal::SIGTERM)), 2000);
    let signalled = h.signalled();
    assert_eq!(signalled.len(), 2000);
    for (i, &(pid, _)) in signalled.iter().take(1999).enumerate() {
        let n = examined(
            &mut h,
            Event::Exited {
                pid,
                exit: Exit::Code(0),
            },
        );
        assert!(n <= if i == 0 { 2001 } else { 2 }, "exit {i}: {n}");
    }
    assert_eq!(h.sup.phase.name(), "stopping");
    let last = h.signalled().last().map(|&(pid, _)| pid).expect("one left");
    h.exit(last, Exit::Code(0));
    assert_eq!(h.sup.phase.name(), "drain");
}

#[test]
fn a_wait_for_2000_services_looks_at_a_few_per_event() {
    use crate::event::{Order, Until};
    let n = 2000;
    let mut h = Harness::new(sup(many(n, false), false));
    let names = (0..n).map(|i| format!("s{i:05}")).collect();
    h.order(
        7,
        Order::Wait {
            services: names,
            timeout: None,
            until: Until::Down,
            since_run: None,
        },
    );
    h.event(Event::Signal(Signal::SIGTERM));
    let signalled = h.signalled();
    assert_eq!(signalled.len(), n);
    h.take_log();
    let before = h.sup.wait_looks.get();
    for &(pid, _) in &signalled {
        assert_eq!(h.reply(7), None, "answered before every one is down");
        h.exit(pid, Exit::Signal(Signal::SIGTERM));
    }
    let looks = h.sup.wait_looks.get() - before;
    assert_eq!(h.reply(7).map(|r| r.ok), Some(true), "down once all are");
    // A scan of every service after every exit was n * n / 2 looks.
    assert!(looks <= 4 * n, "{looks} looks for {n} exits");
}

#[test]
fn a_hub_change_looks_at_its_dependants_and_no_other_service() {
    let mut h = Harness::new(sup(many(1000, true), false));
    assert!(h.sup.services.iter().all(|s| s.pid().is_some()));
    let db = h.pid_of("s00000");
    // s00000: 900 services start after it; each is looked at by the stop
    // and the start pass (it may have to stop, or start again), nothing else.
    let n = examined(
        &mut h,
        Event::Exited {
            pid: db,
            exit: Exit::Code(1),
        },
    );
    assert!((900..=2 * 1000).contains(&n), "{n}");
    let leaf = h.pid_of("s00011");
    assert!(
        examined(
            &mut h,
            Event::Exited {
                pid: leaf,
                exit: Exit::Code(1)
            }
        ) <= 6
    );
}

/// `name`, after `after`, as a oneshot with nothing to run (done at once).
fn empty_oneshot(name: &str, after: &[&str]) -> ServiceSpec {
    let mut s = svc(name, after);
    s.oneshot = true;
    s.restart = Restart::Never;
    s.command = Vec::new();
    s
}

#[test]
fn a_chain_whose_dependencies_come_later_in_the_order_starts_one_by_one() {
    // s0 after s1 after ... after s9: each dependency at a higher index.
    let specs = (0..10)
        .map(|i| match i {
            9 => svc("s9", &[]),
            _ => svc(&format!("s{i}"), &[&format!("s{}", i + 1)]),
        })
        .collect();
    let h = Harness::new(sup(specs, true));
    let order: Vec<Target> = (0..10).rev().map(|i| Target::Service(id(i))).collect();
    let mut expected = order;
    expected.push(Target::Main);
    assert_eq!(h.spawned(), expected);
}

#[test]
fn oneshots_done_at_once_start_their_dependants_on_both_sides_in_one_event() {
    // a (0) after c (2) after b (1); d (3) after a: every start in the
    // first event, in the order of today's passes.
    let h = Harness::new(sup(
        vec![
            empty_oneshot("a", &["c"]),
            empty_oneshot("b", &[]),
            empty_oneshot("c", &["b"]),
            svc("d", &["a"]),
            svc("e", &[]),
        ],
        true,
    ));
    for name in ["a", "b", "c"] {
        assert_eq!(*h.state_of(name), State::Exited, "{name}");
    }
    assert_eq!(
        h.spawned(),
        vec![Target::Service(id(4)), Target::Service(id(3)), Target::Main]
    );
}

#[test]
fn a_reload_that_adds_a_dependant_or_drops_a_dependency_starts_it() {
    let mut migrate = svc("migrate", &[]);
    migrate.oneshot = true;
    migrate.restart = Restart::Never;
    let mut h = Harness::new(sup(
        vec![migrate.clone(), svc("db", &[]), svc("web", &["migrate"])],
        false,
    ));
    let pid = h.pid_of("migrate");
    h.exit(pid, Exit::Code(1));
    assert_eq!(
        *h.state_of("web"),
        State::Idle,
        "held by the failed oneshot"
    );
    h.take_log();
    // api (new) after db, which runs; web no longer after migrate.
    h.event(Event::Loaded {
        id: None,
        result: Ok(Spec {
            services: vec![
                migrate,
                svc("db", &[]),
                svc("web", &[]),
                svc("api", &["db"]),
            ],
            ..Default::default()
        }),
    });
    assert_eq!(
        h.spawned(),
        vec![Target::Service(id(2)), Target::Service(id(3))]
    );
}

#[test]
fn the_shutdown_stops_a_chain_whose_dependants_come_first_or_last() {
    // up: a (0) after b (1) after c (2); down: z (5) after y (4) after x (3).
    let mut h = Harness::new(sup(
        vec![
            svc("a", &["b"]),
            svc("b", &["c"]),
            svc("c", &[]),
            svc("x", &[]),
            svc("y", &["x"]),
            svc("z", &["y"]),
        ],
        false,
    ));
    h.take_log();
    h.event(Event::Signal(Signal::SIGTERM));
    let stopped = |h: &Harness| -> Vec<String> {
        let pids: Vec<_> = h.signalled().into_iter().map(|(p, _)| p).collect();
        h.sup
            .services
            .iter()
            .filter(|s| s.pid().is_some_and(|p| pids.contains(&p)))
            .map(|s| s.name().to_string())
            .collect()
    };
    assert_eq!(stopped(&h), vec!["a", "z"]);
    for (first, next) in [("a", "b"), ("z", "y"), ("b", "c"), ("y", "x")] {
        let pid = h.pid_of(first);
        h.take_log();
        h.exit(pid, Exit::Code(0));
        assert_eq!(stopped(&h), vec![next], "after {first}");
    }
    for name in ["c", "x"] {
        let pid = h.pid_of(name);
        h.exit(pid, Exit::Code(0));
    }
    assert_eq!(h.sup.phase.name(), "drain");
}

#[test]
fn a_backoff_dependant_wanted_down_lets_its_dependency_stop_in_the_same_event() {
    // b (0) after a (1); c (2) after b. Both a and b in want-down at once,
    // b crashes into backoff first: a stops once b is down.
    let mut h = Harness::new(sup(
        vec![svc("b", &["a"]), svc("a", &[]), svc("c", &[])],
        false,
    ));
    let b = h.pid_of("b");
    h.exit(b, Exit::Code(1));
    assert_eq!(h.state_of("b").name(), "backoff");
    let a = h.pid_of("a");
    h.take_log();
    for name in ["a", "b"] {
        let id = h.sup.services.find(name).expect("known");
        h.sup.services.get_mut(id).expect("known").want_down();
    }
    h.event(Event::Tick);
    assert_eq!(*h.state_of("b"), State::Stopped);
    assert_eq!(h.signalled(), vec![(a, Signal::SIGTERM)]);
}

#[test]
fn the_main_command_waits_for_the_last_service_to_settle_whatever_its_place() {
    let ready = |name: &str| {
        let mut s = svc(name, &[]);
        s.ready = Some(crate::config::Ready::Notify);
        s
    };
    let mut h = Harness::new(sup(vec![ready("a"), ready("b"), ready("c")], true));
    for i in [2, 0, 1] {
        assert!(!h.spawned().contains(&Target::Main), "before {i}");
        h.event(Event::Notify {
            service: id(i),
            run: 1,
            message: NotifyMessage {
                ready: true,
                ..NotifyMessage::default()
            },
        });
    }
    assert_eq!(h.spawned().last(), Some(&Target::Main));
}

#[test]
fn the_main_command_sees_a_service_blocked_through_a_chain() {
    // a (0) after b (1) after m (2), a oneshot that fails: a and b never
    // start, which settles them.
    let mut m = svc("m", &[]);
    m.oneshot = true;
    m.restart = Restart::Never;
    let mut h = Harness::new(sup(vec![svc("a", &["b"]), svc("b", &["m"]), m], true));
    assert_eq!(h.spawned(), vec![Target::Service(id(2))]);
    let pid = h.pid_of("m");
    h.exit(pid, Exit::Code(1));
    assert_eq!(h.spawned().last(), Some(&Target::Main));
    assert_eq!(*h.state_of("a"), State::Idle);
}

#[test]
fn the_next_deadline_follows_services_changed_behind_its_back() {
    let mut h = Harness::new(sup(many(100, false), false));
    assert_eq!(h.sup.next_deadline(), None);
    for (i, name) in [(7, "s00007"), (3, "s00003")] {
        let pid = h.pid_of(name);
        h.now += Duration::from_millis(10);
        h.exit(pid, Exit::Code(1));
        let svc = h.sup.services.get(id(i)).expect("known");
        assert_eq!(svc.state().name(), "backoff");
    }
    let first = h.sup.services.get(id(7)).and_then(|s| s.deadline());
    assert_eq!(h.sup.next_deadline(), first);
    // A change no event made (a test's): still seen.
    let stopped = h
        .sup
        .services
        .get_mut(id(7))
        .expect("known")
        .stop(h.now, None);
    assert!(stopped.is_empty());
    let second = h.sup.services.get(id(3)).and_then(|s| s.deadline());
    assert_eq!(h.sup.next_deadline(), second);
    h.take_log();
    h.advance_to(second.expect("a retry"));
    assert_eq!(h.spawned(), vec![Target::Service(id(3))]);
    assert_eq!(h.sup.next_deadline(), None);
    assert_eq!(h.sup.phase, Phase::Up);
}

#[test]
fn a_stop_of_every_service_is_answered_when_the_last_is_down_wherever_it_is() {
    use crate::event::{Names, Order};
    let mut h = Harness::new(sup(many(5, false), false));
    h.take_log();
    h.order(1, Order::Stop(Names::All));
    let signalled = h.signalled();
    assert_eq!(signalled.len(), 5);
    // The last one first, the first one last.
    for &(pid, _) in signalled.iter().rev() {
        assert_eq!(h.reply(1), None);
        h.exit(pid, Exit::Code(0));
    }
    let reply = h.reply(1).expect("answered");
    assert!(reply.ok && reply.messages.len() == 5, "{reply:?}");
}

#[test]
fn a_start_waits_again_for_a_service_that_went_back_to_starting() {
    use crate::event::{Names, Order};
    let notify = |name: &str| {
        let mut s = svc(name, &[]);
        s.ready = Some(crate::config::Ready::Notify);
        s
    };
    let mut h = Harness::new(sup(vec![notify("a"), notify("b")], false));
    h.order(1, Order::Start(Names::All));
    let ready = |h: &mut Harness, i: usize, run: u32| h.notify_ready(id(i), run);
    ready(&mut h, 0, 1);
    assert_eq!(h.reply(1), None);
    // a crashes and is started again (its backoff over) before b is ready.
    let a = h.pid_of("a");
    h.exit(a, Exit::Code(1));
    let retry_at = h.sup.next_deadline().expect("a's retry");
    h.advance_to(retry_at);
    assert_eq!(h.state_of("a").name(), "starting");
    ready(&mut h, 1, 1);
    assert_eq!(h.reply(1), None, "a is starting again");
    ready(&mut h, 0, 2);
    assert!(h.reply(1).expect("answered").ok);
}

#[test]
fn a_service_after_many_starts_once_all_of_them_are_ready_at_the_same_time() {
    // 40 notify services, then `all` after every one of them (a long list).
    let mut specs: Vec<ServiceSpec> = (0..40)
        .map(|i| {
            let mut s = svc(&format!("s{i:02}"), &[]);
            s.ready = Some(crate::config::Ready::Notify);
            s
        })
        .collect();
    let names: Vec<String> = (0..40).map(|i| format!("s{i:02}")).collect();
    let after: Vec<&str> = names.iter().map(String::as_str).collect();
    specs.push(svc("all", &after));
    let mut h = Harness::new(sup(specs, false));
    let ready = |h: &mut Harness, i: usize, run: u32| h.notify_ready(id(i), run);
    for i in 0..39 {
        ready(&mut h, i, 1);
    }
    // s05, passed by now, crashes; s39 is ready: `all` still waits.
    let pid = h.pid_of("s05");
    h.exit(pid, Exit::Code(1));
    ready(&mut h, 39, 1);
    assert_eq!(*h.state_of("all"), State::Idle);
    let retry_at = h.sup.next_deadline().expect("s05's retry");
    h.advance_to(retry_at);
    assert_eq!(*h.state_of("all"), State::Idle);
    h.take_log();
    ready(&mut h, 5, 2);
    assert_eq!(h.spawned(), vec![Target::Service(id(40))]);
}

#[test]
fn a_service_many_start_after_stops_last_whatever_order_they_stop_in() {
    let mut specs = vec![svc("db", &[])];
    specs.extend((1..=40).map(|i| svc(&format!("s{i:02}"), &["db"])));
    let mut h = Harness::new(sup(specs, false));
    let db = h.pid_of("db");
    h.take_log();
    h.event(Event::Signal(Signal::SIGTERM));
    let mut signalled = h.signalled();
    assert_eq!(signalled.len(), 40);
    assert!(!signalled.contains(&(db, Signal::SIGTERM)));
    // The last first, then the first, then the rest.
    signalled.rotate_right(1);
    signalled.swap(1, 39);
    for (pid, _) in signalled {
        assert!(!h.signalled().contains(&(db, Signal::SIGTERM)));
        h.exit(pid, Exit::Code(0));
    }
    assert_eq!(h.signalled().last(), Some(&(db, Signal::SIGTERM)));
}

/// A small random number generator (xorshift64*), seeded.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// A random set of services: `after` edges both ways in the id order
/// (no cycle), oneshots (some with nothing to run, some with a `down`),
/// readiness, restart policies, conditions.
fn random_specs(dice: &mut Dice) -> Vec<ServiceSpec> {
    use crate::config::{After, Condition, Ready};
    let n = 8 + dice.below(20);
    // A random rank: each service comes after some of lower rank.
    let mut rank: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        rank.swap(i, dice.below(i + 1));
    }
    (0..n)
        .map(|i| {
            let mut s = svc(&format!("s{i:02}"), &[]);
            let lower: Vec<usize> = (0..n).filter(|&j| rank[j] < rank[i]).collect();
            for _ in 0..dice.below(5) {
                if lower.is_empty() {
                    break;
                }
                let j = lower[dice.below(lower.len())];
                let condition = match dice.below(6) {
                    0 => Condition::Started,
                    1 => Condition::Completed,
                    2 => Condition::Succeeded,
                    _ => Condition::Ready,
                };
                s.after.push(After {
                    name: format!("s{j:02}"),
                    condition,
                });
            }
            if dice.one_in(4) {
                s.oneshot = true;
                s.restart = Restart::Never;
                if dice.one_in(3) {
                    s.command = Vec::new();
                } else if dice.one_in(2) {
                    s.down = Some(vec!["down".into()]);
                }
            } else {
                s.restart = match dice.below(4) {
                    0 => Restart::Never,
                    1 => Restart::OnFailure,
                    _ => Restart::Always,
                };
                if dice.one_in(3) {
                    s.ready = Some(Ready::Notify);
                }
                s.enabled = !dice.one_in(12);
            }
            s.boot_step = dice.one_in(6);
            s.stop_timeout = Duration::from_millis(500 * (1 + dice.below(6) as u64));
            s
        })
        .collect()
}

/// Every pid the harness's services wait for, with what it is.
fn live_pids(h: &Harness) -> Vec<nix::unistd::Pid> {
    let mut pids: Vec<_> = h
        .sup
        .services
        .iter()
        .flat_map(|s| [s.pid(), s.down_pid(), s.finish_pid()])
        .flatten()
        .collect();
    pids.extend(h.sup.main_pid());
    pids
}

/// One random event, the same for both harnesses.
fn random_event(dice: &mut Dice, h: &Harness) -> Event {
    use crate::event::{Names, Order};
    let n = h.sup.services.len();
    let name = format!("s{:02}", dice.below(n));
    match dice.below(14) {
        0..=3 => {
            let pids = live_pids(h);
            match pids.get(dice.below(pids.len())) {
                Some(&pid) => Event::Exited {
                    pid,
                    exit: Exit::Code(dice.below(2) as i32),
                },
                None => Event::Tick,
            }
        }
        4 | 5 => {
            let i = dice.below(n);
            let run = h.sup.services.get(id(i)).map_or(0, |s| s.starts());
            Event::Notify {
                service: id(i),
                run,
                message: NotifyMessage {
                    ready: true,
                    ..NotifyMessage::default()
                },
            }
        }
        6 | 7 => Event::Tick,
        8 => Event::Order {
            id: dice.below(1000) as u64,
            order: Order::Stop(Names::These(vec![name])),
        },
        9 => Event::Order {
            id: dice.below(1000) as u64,
            order: Order::Start(Names::These(vec![name])),
        },
        10 => Event::Order {
            id: dice.below(1000) as u64,
            order: Order::Restart(if dice.one_in(4) {
                Names::All
            } else {
                Names::These(vec![name])
            }),
        },
        11 | 12 => {
            use crate::event::Until;
            let until = [
                Until::Started,
                Until::Ready,
                Until::Down,
                Until::Finished,
                Until::Restarted,
                Until::RestartedReady,
            ];
            let services = (0..1 + dice.below(n))
                .map(|_| format!("s{:02}", dice.below(n)))
                .collect();
            Event::Order {
                id: dice.below(1000) as u64,
                order: Order::Wait {
                    services,
                    timeout: (!dice.one_in(3))
                        .then(|| Duration::from_millis(dice.below(5000) as u64)),
                    until: until[dice.below(until.len())],
                    since_run: None,
                },
            }
        }
        _ if dice.one_in(6) => Event::Signal(Signal::SIGTERM),
        _ => Event::Tick,
    }
}

/// A config reload of `specs` changed at random: maybe one removed, one
/// added after some of the others (so no cycle).
fn reload(dice: &mut Dice, specs: &mut Vec<ServiceSpec>, step: usize) -> Event {
    use crate::config::After;
    if !specs.is_empty() && dice.one_in(2) {
        specs.remove(dice.below(specs.len()));
    }
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let mut added = svc(&format!("n{step:03}"), &[]);
    for _ in 0..dice.below(4) {
        if let Some(name) = names.get(dice.below(names.len())) {
            added.after.push(After::from(name.as_str()));
        }
    }
    specs.push(added);
    Event::Loaded {
        id: None,
        result: Ok(Spec {
            services: specs.clone(),
            ..Default::default()
        }),
    }
}

#[test]
fn the_incremental_core_acts_as_a_scan_of_every_service_after_every_event() {
    for seed in 1..=300u64 {
        let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut specs = random_specs(&mut dice);
        let main = dice.one_in(2);
        let now = Instant::now();
        let continue_on_failure = dice.one_in(2);
        let with = |full_scan: bool| {
            let mut s = sup(specs.clone(), main);
            s.full_scan = full_scan;
            if continue_on_failure {
                s.init_failure = super::InitFailure::Continue;
            }
            Harness::at(s, now)
        };
        let (mut full, mut incremental) = (with(true), with(false));
        for step in 0..150 {
            let context = || format!("seed {seed}, step {step}");
            assert_eq!(incremental.take_log(), full.take_log(), "{}", context());
            assert_eq!(
                incremental.sup.next_deadline(),
                full.sup.next_deadline(),
                "{}",
                context()
            );
            if full.sup.is_done() {
                break;
            }
            // Time goes on, at times to the next deadline exactly.
            let later = match (dice.one_in(2), full.sup.next_deadline()) {
                (true, Some(at)) => at,
                _ => full.now + Duration::from_millis(dice.below(3000) as u64),
            };
            full.now = later.max(full.now);
            incremental.now = full.now;
            let event = match full.sup.phase {
                Phase::Drain(_) if live_pids(&full).is_empty() => Event::NoChildren,
                Phase::Up if dice.one_in(15) => reload(&mut dice, &mut specs, step),
                _ => random_event(&mut dice, &full),
            };
            full.event(event.clone());
            incremental.event(event);
        }
    }
}

#[test]
#[ignore = "a bench: prints timings"]
fn scale_bench() {
    for (n, deps) in [(1000, false), (5000, false), (1000, true), (5000, true)] {
        let (up, down) = startup_and_shutdown(n, deps);
        println!("{n} services (deps: {deps}): startup {up:?}, shutdown {down:?}");
    }
}
