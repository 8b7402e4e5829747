//! s6-overlay v3's stage 2 as the core runs it (SPEC section 9): a boot
//! step (`ServiceSpec::boot_step`, a service of a v3 tree's boot) that
//! fails to come up, and the main COMMAND's wait for the services bounded
//! by `S6_CMD_WAIT_FOR_SERVICES_MAXTIME`. Both follow
//! `S6_BEHAVIOUR_IF_STAGE2_FAILS` (`Supervisor::init_failure`), as a failed
//! init script does.
//!
//! "Fails to come up" is the service's own record (`service::UpFailure`):
//! its first attempt in this run failed before it was ever up (a oneshot's
//! run exited non-zero, was killed, passed its `run_timeout` or could not
//! be spawned; a longrun exited, could not be spawned or was not ready
//! within `ready-timeout` before it was ready once). It counts in phase
//! `Up` only. With `Stop`, the container shuts down with that failure's
//! code. With `Continue`, it is a warning, and as in s6-rc its dependants
//! are never started (even if a longrun comes up after its backoff), while
//! everything else, and the main COMMAND, goes on: the failed step and
//! what waits on it count as settled for the main COMMAND's wait.
//!
//! The main COMMAND's wait: past `cmd_wait_maxtime` from the start of phase
//! `Up` (a deadline, never polled), `Stop` shuts down with exit code 1 and
//! names the services that were not up; `Continue` starts the main COMMAND
//! anyway. Without a main COMMAND the same limit bounds the boot, as
//! s6-overlay's `s6-rc -u -t` does: `Stop` shuts down, `Continue` warns.

use std::time::Instant;

use crate::log::{error, warn};

use super::{InitFailure, Phase, Supervisor};
use crate::event::{Action, ServiceId};
use crate::text::human;

impl Supervisor {
    /// Act once on a boot step `id` that failed to come up (phase `Up`).
    pub(super) fn check_boot_step(&mut self, id: ServiceId, now: Instant) -> Vec<Action> {
        if self.phase != Phase::Up || self.boot_failures.contains(&id) {
            return Vec::new();
        }
        let Some(svc) = self.services.get(id) else {
            return Vec::new();
        };
        let Some(failure) = svc.up_failure().filter(|_| svc.spec().boot_step) else {
            return Vec::new();
        };
        self.boot_failures.push(id);
        let (name, reason, code) = (svc.name(), failure.reason.as_str(), failure.code);
        match self.init_failure {
            InitFailure::Stop => {
                error!(service = %name, %reason, code, "boot step failed to come up, shutting down (S6_BEHAVIOUR_IF_STAGE2_FAILS)");
                self.set_exit_code(code);
                self.begin_shutdown(now)
            }
            InitFailure::Continue => {
                warn!(service = %name, %reason, "boot step failed to come up; what depends on it will not start, the rest goes on (S6_BEHAVIOUR_IF_STAGE2_FAILS)");
                Vec::new()
            }
        }
    }

    /// A boot step that failed to come up: what depends on it never starts.
    pub(super) fn boot_failed(&self, id: ServiceId) -> bool {
        self.services
            .get(id)
            .is_some_and(|svc| svc.spec().boot_step && svc.up_failure().is_some())
    }

    /// When the main COMMAND stops waiting for the services, while it
    /// waits; without one, when the boot is checked (once).
    pub(super) fn cmd_wait_deadline(&self) -> Option<Instant> {
        let waiting = match self.main {
            Some(_) => self.main_is_waiting(),
            None => !self.boot_wait_over,
        };
        if self.phase != Phase::Up || !waiting {
            return None;
        }
        let max = self.cmd_wait_maxtime.filter(|max| !max.is_zero())?;
        Some(self.up_since? + max)
    }

    /// `cmd_wait_maxtime` passed with services not settled: a stage-2
    /// failure (`init_failure`).
    pub(super) fn cmd_wait_tick(&mut self, now: Instant) -> Vec<Action> {
        if self.cmd_wait_deadline().is_none_or(|at| now < at) {
            return Vec::new();
        }
        let late: Vec<String> = self
            .services
            .ids()
            .filter(|&id| !self.settled(id))
            .filter_map(|id| self.services.get(id))
            .map(|svc| {
                let state = self.service_status(svc, now).state;
                format!("{} ({state})", svc.name())
            })
            .collect();
        let main = self.main.is_some();
        if !main {
            self.boot_wait_over = true;
        }
        if late.is_empty() {
            // Everything settled: with a main COMMAND, `schedule` starts it.
            return Vec::new();
        }
        let max = self.cmd_wait_maxtime.map(human).unwrap_or_default();
        let late = late.join(", ");
        match self.init_failure {
            InitFailure::Stop => {
                error!(services = %late, "not up within S6_CMD_WAIT_FOR_SERVICES_MAXTIME {max}, shutting down");
                self.set_exit_code(1);
                self.begin_shutdown(now)
            }
            InitFailure::Continue if main => {
                warn!(services = %late, "not up within S6_CMD_WAIT_FOR_SERVICES_MAXTIME {max}, starting the main command anyway");
                self.spawn_main().into_iter().collect()
            }
            InitFailure::Continue => {
                warn!(services = %late, "not up within S6_CMD_WAIT_FOR_SERVICES_MAXTIME {max}; going on");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use super::super::testing::*;
    use super::*;
    use crate::config::{Ready, Restart};
    use crate::event::{Event, Target};
    use crate::exit::Exit;
    use crate::service::State;

    fn step(name: &str, after: &[&str]) -> crate::config::ServiceSpec {
        let mut s = svc(name, after);
        s.oneshot = true;
        s.restart = Restart::Never;
        s.boot_step = true;
        s
    }

    #[test]
    fn a_boot_step_that_fails_stops_the_container_with_its_code() {
        let mut h = Harness::new(sup(vec![svc("app", &["init"]), step("init", &[])], true));
        assert_eq!(h.spawned(), vec![Target::Service(id(1))]);
        h.exit(pid(100), Exit::Code(3));
        assert_eq!(h.sup.phase.name(), "drain", "nothing else ran");
        assert!(!h.spawned().contains(&Target::Main));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(3)));
    }

    #[test]
    fn with_continue_a_failed_boot_step_holds_its_dependants_only() {
        let mut s = sup(
            vec![svc("app", &["init"]), svc("other", &[]), step("init", &[])],
            true,
        );
        s.init_failure = InitFailure::Continue;
        let mut h = Harness::new(s);
        let init = h.pid_of("init");
        h.take_log();
        h.exit(init, Exit::Code(3));
        assert_eq!(h.sup.phase, Phase::Up);
        assert_eq!(h.spawned(), vec![Target::Main], "the main COMMAND goes on");
        assert_eq!(*h.state_of("app"), State::Idle);
        assert_eq!(h.state_of("other").name(), "running");
        let app = h.sup.service_status(h.service("app"), h.now);
        assert_eq!(app.detail.as_deref(), Some("waiting for init (failed)"));
    }

    #[test]
    fn a_longrun_boot_step_not_ready_in_time_fails_with_code_1() {
        let mut web = svc("web", &[]);
        web.boot_step = true;
        web.ready = Some(Ready::Notify);
        web.ready_timeout = Duration::from_secs(2);
        let mut h = Harness::new(sup(vec![svc("app", &["web"]), web], true));
        let t0 = h.now;
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(2));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.sup.phase.name(), "drain");
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(1)));
    }

    #[test]
    fn with_continue_a_longrun_boot_step_that_comes_up_later_still_holds_its_dependants() {
        let mut web = svc("web", &[]);
        web.boot_step = true;
        web.restart_delay = Duration::from_millis(100);
        web.ready = Some(Ready::Notify);
        let mut s = sup(vec![svc("app", &["web"]), web], true);
        s.init_failure = InitFailure::Continue;
        let mut h = Harness::new(s);
        h.take_log();
        h.exit(pid(100), Exit::Code(2));
        assert_eq!(
            h.spawned(),
            vec![Target::Main],
            "settled: the main COMMAND starts"
        );
        h.take_log();
        h.advance_to(h.now + Duration::from_millis(100));
        assert_eq!(h.spawned(), vec![Target::Service(id(1))], "web retries");
        let web = h.pid_of("web");
        h.event(Event::Notify {
            service: id(1),
            run: 2,
            message: crate::event::NotifyMessage {
                ready: true,
                ..Default::default()
            },
        });
        assert_eq!(h.state_of("web").name(), "running");
        assert_eq!(h.pid_of("web"), web);
        assert_eq!(*h.state_of("app"), State::Idle, "s6-rc: never brought up");
    }

    #[test]
    fn a_boot_step_that_runs_past_its_run_timeout_fails_as_timed_out() {
        let mut init = step("init", &[]);
        init.run_timeout = Some(Duration::from_secs(5));
        let mut s = sup(vec![init], true);
        s.init_failure = InitFailure::Continue;
        let mut h = Harness::new(s);
        let t0 = h.now;
        h.take_log();
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(5)));
        h.advance_to(t0 + Duration::from_secs(5));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGKILL)]);
        h.exit(pid(100), Exit::Signal(Signal::SIGKILL));
        assert_eq!(
            *h.state_of("init"),
            State::Failed {
                reason: "timed out after 5.0s, restart = \"never\"".into()
            }
        );
        assert_eq!(h.spawned(), vec![Target::Main]);
    }

    #[test]
    fn a_boot_step_is_not_failed_by_the_shutdown_and_a_plain_service_never_is() {
        let mut web = svc("web", &[]);
        web.ready = Some(Ready::Notify);
        web.restart = Restart::Never;
        let mut h = Harness::new(sup(vec![web, step("init", &[])], true));
        // A plain service (no boot step) that fails its start: no shutdown.
        h.exit(h.pid_of("web"), Exit::Code(1));
        assert_eq!(h.sup.phase, Phase::Up);
        // A boot step stopped by the shutdown did not fail to come up.
        h.event(Event::Signal(Signal::SIGTERM));
        h.exit(pid(101), Exit::Signal(Signal::SIGTERM));
        assert!(h.service("init").up_failure().is_none());
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(0)));
    }

    fn slow_web() -> crate::config::ServiceSpec {
        let mut web = svc("web", &[]);
        web.ready = Some(Ready::Notify);
        web.ready_timeout = Duration::from_secs(60);
        web
    }

    #[test]
    fn past_cmd_wait_maxtime_stop_shuts_down_with_code_1() {
        let mut s = sup(vec![slow_web()], true);
        s.cmd_wait_maxtime = Some(Duration::from_secs(3));
        let mut h = Harness::new(s);
        let t0 = h.now;
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(3)));
        h.take_log();
        h.advance_to(t0 + Duration::from_millis(2999));
        assert!(h.take_log().is_empty());
        h.advance_to(t0 + Duration::from_secs(3));
        assert_eq!(h.sup.phase.name(), "stopping");
        assert!(!h.spawned().contains(&Target::Main));
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(1)));
    }

    #[test]
    fn past_cmd_wait_maxtime_continue_starts_the_main_command_anyway() {
        let mut s = sup(vec![slow_web()], true);
        s.cmd_wait_maxtime = Some(Duration::from_secs(3));
        s.init_failure = InitFailure::Continue;
        let mut h = Harness::new(s);
        let t0 = h.now;
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(3));
        assert_eq!(h.spawned(), vec![Target::Main]);
        assert_eq!(h.sup.phase, Phase::Up);
        // No second start, no more deadline of its own.
        assert_eq!(
            h.sup.next_deadline(),
            Some(t0 + Duration::from_secs(60)),
            "only web's ready-timeout"
        );
    }

    #[test]
    fn without_a_main_command_cmd_wait_maxtime_bounds_the_boot_once() {
        // Stop: the boot not done in time ends the container with code 1.
        let mut s = sup(vec![slow_web()], false);
        s.cmd_wait_maxtime = Some(Duration::from_secs(3));
        let mut h = Harness::new(s);
        let t0 = h.now;
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(3)));
        h.advance_to(t0 + Duration::from_secs(3));
        assert_eq!(h.sup.phase.name(), "stopping");
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(1)));

        // Continue: a warning, and the deadline is gone.
        let mut s = sup(vec![slow_web()], false);
        s.cmd_wait_maxtime = Some(Duration::from_secs(3));
        s.init_failure = InitFailure::Continue;
        let mut h = Harness::new(s);
        let t0 = h.now;
        h.advance_to(t0 + Duration::from_secs(3));
        assert_eq!(h.sup.phase, Phase::Up);
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(60)));

        // A boot done in time: the check at the deadline finds nothing late.
        let mut s = sup(vec![svc("a", &[])], false);
        s.cmd_wait_maxtime = Some(Duration::from_secs(3));
        let mut h = Harness::new(s);
        let t0 = h.now;
        h.advance_to(t0 + Duration::from_secs(3));
        assert_eq!(h.sup.phase, Phase::Up);
        assert_eq!(h.sup.next_deadline(), None);
    }

    #[test]
    fn cmd_wait_maxtime_counts_from_the_up_phase_and_zero_or_settled_is_no_limit() {
        let mut s = sup(vec![slow_web()], true);
        s.init = super::super::Scripts::new(vec!["/i/01".into()]);
        s.cmd_wait_maxtime = Some(Duration::from_secs(3));
        let mut h = Harness::new(s);
        let t0 = h.now;
        assert_eq!(h.sup.next_deadline(), None, "not during init scripts");
        h.now = t0 + Duration::from_secs(10);
        h.exit(pid(100), Exit::Code(0));
        assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(3)));

        let mut zero = sup(vec![slow_web()], true);
        zero.cmd_wait_maxtime = Some(Duration::ZERO);
        let zero = Harness::new(zero);
        assert_eq!(
            zero.sup.next_deadline(),
            Some(zero.now + Duration::from_secs(60))
        );

        let mut quick = sup(vec![svc("a", &[])], true);
        quick.cmd_wait_maxtime = Some(Duration::from_secs(3));
        let quick = Harness::new(quick);
        assert_eq!(quick.spawned().last(), Some(&Target::Main));
        assert_eq!(quick.sup.next_deadline(), None);
    }
}
