//! Init and finish scripts: run one at a time, in order, as children like
//! any other. A failing init script stops the container with its code
//! (unless `InitFailure::Continue`); finish scripts run whatever happens,
//! until the shutdown budget is spent, and each one no longer than
//! `Supervisor::finish_script_timeout` (`S6_KILL_FINISH_MAXTIME`) when set:
//! SIGKILL to its group at whichever comes first. Init scripts have no
//! deadline of their own (s6-overlay gives them none either) until a
//! shutdown begins.

use std::path::PathBuf;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Phase, Supervisor};
use crate::event::{Action, Job, Target};
use crate::exit::Exit;
use crate::log::{debug, error, info, warn};

pub use crate::config::InitFailure;

/// Init or finish scripts: run one at a time, in order.
#[derive(Debug, Clone, Default)]
pub struct Scripts {
    paths: Vec<PathBuf>,
    next: usize,
    /// A script's spawn was requested and it has not ended yet.
    busy: bool,
    running: Option<Pid>,
    /// The script that runs was sent SIGKILL.
    killed: bool,
    /// The script that runs gets SIGKILL then (finish scripts with
    /// `S6_KILL_FINISH_MAXTIME`).
    pub(super) kill_at: Option<Instant>,
}

impl Scripts {
    pub fn new(paths: Vec<PathBuf>) -> Scripts {
        Scripts {
            paths,
            ..Scripts::default()
        }
    }

    pub(super) fn running(&self) -> Option<Pid> {
        self.running
    }

    /// The script that runs, unless it was sent SIGKILL already.
    pub(super) fn unkilled(&self) -> Option<Pid> {
        self.running.filter(|_| !self.killed)
    }

    pub(super) fn is_busy(&self) -> bool {
        self.busy
    }

    pub(super) fn spawned(&mut self, pid: Pid) {
        self.running = Some(pid);
    }

    /// The next script to run, as its spawn; `None` once all have run.
    pub(super) fn spawn_next(&mut self, target: fn(usize) -> Target) -> Option<(String, Action)> {
        let path = self.paths.get(self.next)?.clone();
        let action = Action::Spawn {
            target: target(self.next),
            job: Job::Script { path: path.clone() },
        };
        self.next += 1;
        self.busy = true;
        self.killed = false;
        self.kill_at = None;
        Some((path.display().to_string(), action))
    }

    /// The script that ran last (the one running, or that just ended).
    fn current(&self) -> String {
        self.path(self.next.saturating_sub(1))
    }

    fn path(&self, i: usize) -> String {
        self.paths
            .get(i)
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn ended(&mut self) {
        self.running = None;
        self.busy = false;
    }

    /// SIGKILL to the script that runs, once (the shutdown budget is spent).
    pub(super) fn budget_spent(&mut self) -> Option<Action> {
        let pid = self.unkilled()?;
        warn!(pid = pid.as_raw(), "shutdown budget spent, killing script");
        self.finish_off(pid)
    }

    /// When the script that runs gets SIGKILL for its own time limit.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.unkilled().and(self.kill_at)
    }

    /// SIGKILL to the script that runs once its own time limit passed.
    pub(super) fn overdue(&mut self, now: Instant) -> Option<Action> {
        let pid = self.unkilled()?;
        if self.kill_at.is_none_or(|at| now < at) {
            return None;
        }
        warn!(script = %self.current(), pid = pid.as_raw(), "finish script ran too long (S6_KILL_FINISH_MAXTIME), killing it");
        self.finish_off(pid)
    }

    fn finish_off(&mut self, pid: Pid) -> Option<Action> {
        self.killed = true;
        Some(Action::Signal {
            pid,
            signal: Signal::SIGKILL,
            group: true,
        })
    }
}

impl Supervisor {
    pub(super) fn next_init(&mut self) -> Vec<Action> {
        if self.phase != Phase::Init {
            return Vec::new();
        }
        if let Some((script, spawn)) = self.init.spawn_next(Target::Init) {
            info!(%script, "running init script");
            return vec![spawn];
        }
        // `advance` schedules the services.
        self.phase = Phase::Up;
        Vec::new()
    }

    pub(super) fn init_exited(&mut self, exit: Exit, now: Instant) -> Vec<Action> {
        self.init.ended();
        if exit.success() || self.phase != Phase::Init {
            return self.next_init();
        }
        let script = self.init.current();
        if self.init_failure == InitFailure::Continue {
            warn!(%script, %exit, "init script failed; going on (S6_BEHAVIOUR_IF_STAGE2_FAILS)");
            return self.next_init();
        }
        error!(%script, %exit, "init script failed");
        self.set_exit_code(exit.code());
        self.begin_shutdown(now)
    }

    pub(super) fn init_failed_to_start(
        &mut self,
        i: usize,
        error: &str,
        code: i32,
        now: Instant,
    ) -> Vec<Action> {
        self.init.busy = false;
        let script = self.init.path(i);
        if self.init_failure == InitFailure::Continue {
            warn!(%script, %error, "init script could not be started; going on");
            return self.next_init();
        }
        error!(%script, %error, "init script could not be started");
        self.set_exit_code(code);
        self.begin_shutdown(now)
    }

    pub(super) fn finish_script_exited(&mut self, exit: Exit) -> Vec<Action> {
        self.finish.ended();
        let script = self.finish.current();
        if exit.success() {
            debug!(%script, "finish script done");
        } else {
            warn!(%script, %exit, "finish script failed");
        }
        Vec::new()
    }

    pub(super) fn finish_failed_to_start(&mut self, i: usize, error: &str) -> Vec<Action> {
        self.finish.busy = false;
        warn!(script = %self.finish.path(i), %error, "finish script could not be started");
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use super::*;
    use crate::event::Event;

    #[test]
    fn init_scripts_run_one_at_a_time_and_a_failure_stops_startup() {
        let mut s = sup(vec![svc("a", &[])], true);
        s.init = Scripts::new(vec!["/i/01".into(), "/i/02".into(), "/i/03".into()]);
        s.finish = Scripts::new(vec!["/f/01".into()]);
        let mut h = Harness::new(s);
        assert_eq!(h.spawned(), vec![Target::Init(0)]);
        h.exit(pid(100), Exit::Code(0));
        assert_eq!(h.spawned(), vec![Target::Init(0), Target::Init(1)]);
        h.take_log();
        h.exit(pid(101), Exit::Code(5));
        // No service, no main command, no third script; the finish script runs.
        assert_eq!(h.spawned(), vec![Target::Finish(0)]);
        h.take_log();
        h.exit(pid(102), Exit::Code(0));
        assert_eq!(h.take_log(), vec![Action::SignalAll(Signal::SIGTERM)]);
        h.event(Event::NoChildren);
        assert_eq!(h.take_log(), vec![Action::Exit(5)]);
    }

    #[test]
    fn init_failures_can_be_let_through_as_s6_overlay_allows() {
        let mut s = sup(vec![svc("a", &[])], false);
        s.init = Scripts::new(vec!["/i/01".into(), "/i/02".into()]);
        s.init_failure = InitFailure::Continue;
        let mut h = Harness::new(s);
        h.exit(pid(100), Exit::Code(5));
        assert_eq!(h.spawned(), vec![Target::Init(0), Target::Init(1)]);
        h.exit(pid(101), Exit::Code(0));
        assert_eq!(h.sup.phase, Phase::Up);
        assert_eq!(h.spawned().last(), Some(&Target::Service(id(0))));
    }

    #[test]
    fn a_signal_during_init_scripts_stops_the_script_and_skips_the_services() {
        let mut s = sup(vec![svc("a", &[])], true);
        s.init = Scripts::new(vec!["/i/01".into(), "/i/02".into()]);
        let mut h = Harness::new(s);
        let t0 = h.now;
        h.take_log();
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGTERM)]);
        // The script ignores it: SIGKILL when the budget is spent.
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(9)));
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(9));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGKILL)]);
        h.take_log();
        h.exit(pid(100), Exit::Signal(Signal::SIGKILL));
        assert!(h.spawned().is_empty(), "no second script, no service");
        assert_eq!(h.sup.phase.name(), "drain");
    }

    #[test]
    fn finish_scripts_run_in_order_and_one_that_cannot_start_is_skipped() {
        let mut s = sup(vec![], false);
        s.finish = Scripts::new(vec!["/f/01".into(), "/f/02".into()]);
        let mut h = Harness::new(s);
        h.fail_spawns = true;
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.spawned(), vec![Target::Finish(0), Target::Finish(1)]);
        assert_eq!(h.sup.phase.name(), "drain");
    }
}
