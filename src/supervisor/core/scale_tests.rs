//! The core with thousands of services: the work of one event stays
//! proportional to what it touched (issue 16). An `#[ignore]`d bench times
//! startup and shutdown of 5000 services in the pure core (run it with
//! `cargo test --release --lib scale_bench -- --ignored --nocapture`).
#![cfg(test)]

use std::time::Instant;

use nix::sys::signal::Signal;

use super::testing::*;
use crate::event::Event;
use crate::exit::Exit;

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
    assert_eq!(h.sup.services.iter().filter(|s| s.pid().is_some()).count(), n);
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

#[test]
#[ignore = "a bench: prints timings"]
fn scale_bench() {
    for (n, deps) in [(1000, false), (5000, false), (1000, true), (5000, true)] {
        let (up, down) = startup_and_shutdown(n, deps);
        println!("{n} services (deps: {deps}): startup {up:?}, shutdown {down:?}");
    }
}
