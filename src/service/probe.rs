//! Probes: readiness (retried quickly until it passes) and liveness (every
//! `interval` while ready; `retries` failures in a row restart the service).
//!
//! A probe in flight has a deadline and a `ProbeToken`; an answer with any
//! other token (a probe cancelled or timed out) is ignored. TCP and HTTP
//! probes run on threads (`Action::Probe`), exec probes are children of
//! their own (`Action::Spawn` with `Target::Probe`), reaped like any other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Service, State, Then};
use crate::config::{Probe, Ready};
use crate::event::{Action, Job, ProbeToken, Target};
use crate::exit::Exit;
use crate::log::{error, info, warn};

/// Readiness probes are retried quickly at first: 50 ms, doubling, up to 1 s.
const READY_PROBE_FIRST: Duration = Duration::from_millis(50);
const READY_PROBE_MAX: Duration = Duration::from_secs(1);
/// A single readiness probe may take at most this long.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Readiness, after a start or a reload: retried quickly until it passes.
    Ready,
    /// Liveness, every `interval` while ready.
    Health,
}

/// The probes of the current state: when the next one runs, the one in
/// flight, and how many failed in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prober {
    pub purpose: Purpose,
    pub next_at: Option<Instant>,
    pub in_flight: Option<InFlight>,
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub token: ProbeToken,
    /// An exec probe's process, once spawned.
    pub pid: Option<Pid>,
    /// Counted as failed (and an exec probe killed) at this moment.
    pub deadline: Instant,
}

impl Prober {
    /// Probing for `purpose`, the first probe due at `first_at`.
    pub fn new(purpose: Purpose, first_at: Instant) -> Prober {
        Prober {
            purpose,
            next_at: Some(first_at),
            in_flight: None,
            failures: 0,
        }
    }

    /// When the probe in flight times out, or else when the next one is due.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.in_flight {
            Some(flight) => Some(flight.deadline),
            None => self.next_at,
        }
    }
}

impl Service {
    /// Liveness probing from `now` on, if the service has a health check.
    pub(super) fn health_prober(&self, now: Instant) -> Option<Prober> {
        self.spec
            .health
            .as_ref()
            .map(|health| Prober::new(Purpose::Health, now + health.interval))
    }

    /// Readiness probing again (after a reload), if readiness is a probe.
    pub(super) fn reprobe(&mut self, now: Instant) -> Vec<Action> {
        if let Some(Ready::Probe(_)) = self.spec.ready {
            self.prober = Some(Prober::new(Purpose::Ready, now));
            return self.probe_due(now);
        }
        Vec::new()
    }

    /// Launch the next probe if it is due; fail the one in flight if it took
    /// too long.
    pub(super) fn probe_due(&mut self, now: Instant) -> Vec<Action> {
        let Some(prober) = self.prober.as_mut() else {
            return Vec::new();
        };
        if let Some(flight) = &prober.in_flight {
            if now < flight.deadline {
                return Vec::new();
            }
            let token = flight.token;
            let mut actions = Vec::new();
            if let Some(pid) = flight.pid {
                actions.push(Action::Signal {
                    pid,
                    signal: Signal::SIGKILL,
                    group: true,
                });
            }
            actions.extend(self.probe_result(token, Err("timed out".into()), now));
            return actions;
        }
        if prober.next_at.is_none_or(|at| now < at) {
            return Vec::new();
        }
        let (probe, timeout) = match (prober.purpose, &self.spec.ready, &self.spec.health) {
            (Purpose::Ready, Some(Ready::Probe(probe)), _) => (probe.clone(), READY_PROBE_TIMEOUT),
            (Purpose::Health, _, Some(health)) => (health.probe.clone(), health.timeout),
            _ => return Vec::new(),
        };
        self.probes_sent = self.probes_sent.wrapping_add(1);
        let token = ProbeToken {
            service: self.id,
            seq: self.probes_sent,
        };
        prober.next_at = None;
        prober.in_flight = Some(InFlight {
            token,
            pid: None,
            deadline: now + timeout,
        });
        vec![match probe {
            Probe::Exec { command } => Action::Spawn {
                target: Target::Probe(self.id),
                job: Job::Probe {
                    spec: Arc::clone(&self.spec),
                    command,
                },
            },
            probe => Action::Probe {
                token,
                probe,
                timeout,
            },
        }]
    }

    /// Stop probing (the state it belonged to is over). An exec probe still
    /// running is killed.
    pub(super) fn cancel_probe(&mut self) -> Vec<Action> {
        let flight = self.prober.take().and_then(|p| p.in_flight);
        match flight.and_then(|f| f.pid) {
            Some(pid) => vec![Action::Signal {
                pid,
                signal: Signal::SIGKILL,
                group: true,
            }],
            None => Vec::new(),
        }
    }

    fn in_flight(&self) -> Option<&InFlight> {
        self.prober.as_ref()?.in_flight.as_ref()
    }

    /// The pid of an exec probe in flight.
    pub fn probe_pid(&self) -> Option<Pid> {
        self.in_flight()?.pid
    }

    /// An exec probe was spawned.
    pub(super) fn probe_spawned(&mut self, pid: Pid) {
        if let Some(flight) = self.prober.as_mut().and_then(|p| p.in_flight.as_mut()) {
            flight.pid = Some(pid);
        }
    }

    /// The exec probe in flight could not be started: a failed probe.
    pub(super) fn probe_failed_to_start(&mut self, error: &str, now: Instant) -> Vec<Action> {
        let Some(token) = self.in_flight().map(|f| f.token) else {
            return Vec::new();
        };
        let why = format!("probe command could not be started: {error}");
        self.probe_result(token, Err(why), now)
    }

    /// The exec probe in flight exited: passed with exit 0.
    pub(super) fn probe_exited(&mut self, exit: Exit, now: Instant) -> Vec<Action> {
        let Some(token) = self.in_flight().map(|f| f.token) else {
            return Vec::new();
        };
        let result = if exit.success() {
            Ok(())
        } else {
            Err(format!("probe command: {exit}"))
        };
        self.probe_result(token, result, now)
    }

    /// A probe's result. Readiness: ready, or try again soon. Liveness:
    /// after `retries` failures in a row, a restart (with backoff).
    pub fn probe_result(
        &mut self,
        token: ProbeToken,
        result: Result<(), String>,
        now: Instant,
    ) -> Vec<Action> {
        let Some(prober) = self.prober.as_mut() else {
            return Vec::new();
        };
        if prober.in_flight.as_ref().map(|f| f.token) != Some(token) {
            // A late answer to a probe that was cancelled or timed out.
            return Vec::new();
        }
        prober.in_flight = None;
        match (prober.purpose, result) {
            (Purpose::Ready, Ok(())) => match self.state {
                State::Starting { pid, since, .. } => self.become_ready(pid, since, now),
                State::Reloading {
                    pid,
                    since,
                    hook: super::Hook::None | super::Hook::Done,
                    ..
                } => self.become_ready(pid, since, now),
                _ => Vec::new(),
            },
            (Purpose::Ready, Err(_)) => {
                prober.failures += 1;
                let delay = READY_PROBE_FIRST
                    .saturating_mul(1 << prober.failures.min(10))
                    .min(READY_PROBE_MAX);
                prober.next_at = Some(now + delay);
                Vec::new()
            }
            (Purpose::Health, Ok(())) => {
                self.health_passed = true;
                if prober.failures > 0 {
                    info!(service = %self.spec.name, "health check passes again");
                }
                prober.failures = 0;
                prober.next_at = self.spec.health.as_ref().map(|h| now + h.interval);
                Vec::new()
            }
            (Purpose::Health, Err(detail)) => {
                prober.failures += 1;
                let retries = self.spec.health.as_ref().map_or(1, |h| h.retries);
                warn!(service = %self.spec.name, failures = prober.failures, retries, %detail, "health check failed");
                if prober.failures >= retries {
                    let why = format!("health check failed {} times: {detail}", prober.failures);
                    error!(service = %self.spec.name, "{why}, restarting");
                    return self.stop_then(now, None, Then::Backoff(why));
                }
                prober.next_at = self.spec.health.as_ref().map(|h| now + h.interval);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::config::{Health, ServiceSpec};
    use crate::event::Child;

    fn with_health(probe: Probe) -> ServiceSpec {
        let mut s = spec("web");
        s.health = Some(Health {
            probe,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            retries: 3,
        });
        s
    }

    #[test]
    fn readiness_probes_retry_quickly_then_the_service_is_ready() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), with_ready(Ready::Probe(tcp())));
        svc.start(t);
        let first = svc.spawned(pid(100), t);
        let token = probe_token(&first);
        assert_eq!(token.service, id(0));
        assert!(
            svc.probe_result(token, Err("refused".into()), t + ms(1))
                .is_empty()
        );
        // Retried 100 ms later (50 ms doubled), not before.
        assert_eq!(svc.deadline(), Some(t + ms(101)));
        assert!(svc.tick(t + ms(100)).is_empty());
        let second = probe_token(&svc.tick(t + ms(101)));
        assert_ne!(token, second);
        // A late answer to the first probe is ignored.
        svc.probe_result(token, Ok(()), t + ms(102));
        assert!(!svc.is_ready());
        svc.probe_result(second, Ok(()), t + ms(103));
        assert!(svc.is_ready());
    }

    #[test]
    fn health_failures_in_a_row_restart_the_service_with_backoff() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), with_health(tcp()));
        svc.start(t);
        svc.spawned(pid(100), t);
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(5)));
        let mut now = t;
        // One success resets the count: fail, pass, then three fails.
        for (i, result) in [Err("x"), Ok(()), Err("x"), Err("x")]
            .into_iter()
            .enumerate()
        {
            now += Duration::from_secs(5);
            let token = probe_token(&svc.tick(now));
            now += ms(1);
            let actions = svc.probe_result(token, result.map_err(String::from), now);
            assert!(actions.is_empty(), "round {i}: {actions:?}");
        }
        now += Duration::from_secs(5);
        let token = probe_token(&svc.tick(now));
        // A probe that outlives its timeout counts as failed.
        let actions = svc.tick(now + Duration::from_secs(1));
        assert_eq!(
            actions,
            vec![Action::Signal {
                pid: pid(100),
                signal: Signal::SIGTERM,
                group: true
            }]
        );
        assert!(svc.probe_result(token, Ok(()), now + ms(1001)).is_empty());
        svc.exited(Exit::Signal(Signal::SIGTERM), now + ms(1100));
        match &svc.state {
            State::Backoff { why, .. } => assert_eq!(why, "health check failed 3 times: timed out"),
            other => panic!("expected backoff, got {other:?}"),
        }
    }

    #[test]
    fn a_restart_for_failed_health_checks_runs_the_pre_stop_first() {
        let t = Instant::now();
        let mut s = with_health(tcp());
        if let Some(health) = s.health.as_mut() {
            health.retries = 1;
        }
        s.pre_stop = Some(crate::config::PreStop::Delay(ms(500)));
        let mut svc = Service::new(id(0), s);
        svc.start(t);
        svc.spawned(pid(100), t);
        let now = t + Duration::from_secs(5);
        let token = probe_token(&svc.tick(now));
        assert!(
            svc.probe_result(token, Err("refused".into()), now)
                .is_empty(),
            "the delay comes first"
        );
        assert_eq!(svc.state.name(), "stopping");
        assert_eq!(
            svc.tick(now + ms(500)),
            vec![Action::Signal {
                pid: pid(100),
                signal: Signal::SIGTERM,
                group: true
            }]
        );
    }

    #[test]
    fn an_exec_probe_is_a_child_judged_by_its_exit_and_killed_when_late() {
        let t = Instant::now();
        let exec = Probe::Exec {
            command: vec!["check".into()],
        };
        let mut svc = Service::new(id(0), with_health(exec));
        svc.start(t);
        svc.spawned(pid(100), t);
        let t1 = t + Duration::from_secs(5);
        match svc.tick(t1).as_slice() {
            [
                Action::Spawn {
                    target: Target::Probe(i),
                    job: Job::Probe { command, .. },
                },
            ] => {
                assert_eq!(*i, id(0));
                assert_eq!(command, &["check".to_string()]);
            }
            other => panic!("expected an exec probe spawn, got {other:?}"),
        }
        svc.on_spawned(Child::Probe, pid(200), t1);
        assert_eq!(svc.probe_pid(), Some(pid(200)));
        // Exit 0 passes; the next one is due an interval later.
        assert_eq!(
            svc.reaped(Child::Probe, pid(200), Exit::Code(0), t1),
            Some(Vec::new())
        );
        assert_eq!(svc.deadline(), Some(t1 + Duration::from_secs(5)));
        // The next one hangs: killed at its timeout, and counted as failed.
        let t2 = t1 + Duration::from_secs(5);
        svc.tick(t2);
        svc.on_spawned(Child::Probe, pid(201), t2);
        assert_eq!(
            svc.tick(t2 + Duration::from_secs(1)),
            vec![Action::Signal {
                pid: pid(201),
                signal: Signal::SIGKILL,
                group: true
            }]
        );
        assert_eq!(svc.prober.as_ref().map(|p| p.failures), Some(1));
        // Its reap, after the kill, is no longer awaited.
        assert_eq!(
            svc.reaped(Child::Probe, pid(201), Exit::Signal(Signal::SIGKILL), t2),
            None
        );
    }

    #[test]
    fn an_exec_probe_that_cannot_start_is_a_failed_probe() {
        let t = Instant::now();
        let exec = Probe::Exec {
            command: vec!["nope".into()],
        };
        let mut svc = Service::new(id(0), with_ready(Ready::Probe(exec)));
        svc.start(t);
        assert_eq!(
            targets(&svc.spawned(pid(100), t)),
            vec![Target::Probe(id(0))]
        );
        assert!(
            svc.on_spawn_failed(Child::Probe, "No such file or directory", 127, t)
                .is_empty()
        );
        let prober = svc.prober.as_ref().expect("still probing");
        assert_eq!(prober.failures, 1);
        assert_eq!(prober.in_flight, None);
        assert_eq!(prober.next_at, Some(t + ms(100)));
    }

    #[test]
    fn a_stop_cancels_the_probe_and_kills_an_exec_probe_in_flight() {
        let t = Instant::now();
        let exec = Probe::Exec {
            command: vec!["check".into()],
        };
        let mut svc = Service::new(id(0), with_ready(Ready::Probe(exec)));
        svc.start(t);
        svc.spawned(pid(100), t);
        svc.on_spawned(Child::Probe, pid(200), t);
        let actions = svc.stop(t, None);
        assert!(actions.contains(&Action::Signal {
            pid: pid(200),
            signal: Signal::SIGKILL,
            group: true
        }));
        assert_eq!(svc.prober, None);
    }
}
