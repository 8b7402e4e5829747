//! The phases of a run and what moves them: the main COMMAND, the signals
//! corral receives, the shutdown and its budget, and the drain of every
//! leftover process until `waitpid` says none is left. (The init and finish
//! scripts that open and close a run are in `scripts`.)
//!
//! Each phase carries its own deadlines: the end of the shutdown budget
//! from `Stopping` on, when the drain's SIGKILL goes out, when corral gives
//! up on processes that survive even that.
//!
//! With `main_receives_signals` (`S6_CMD_RECEIVE_SIGNALS`), SIGTERM, SIGINT
//! and SIGQUIT go to the main COMMAND's process group while it runs, instead
//! of starting the shutdown; the shutdown comes when it exits, as always.
//! Before it runs (or with none), they start the shutdown as usual.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Supervisor;
use crate::event::{Action, Job, Target};
use crate::exit::Exit;
use crate::log::{debug, error, info, warn};

/// The main COMMAND gets this long after its stop signal before SIGKILL, like
/// a service with the default `stop-timeout` (capped by the shutdown budget).
pub const MAIN_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// After the final SIGKILL, how long to wait for the last reaps before
/// exiting anyway (a process stuck in uninterruptible sleep cannot be waited for).
pub const GIVE_UP_AFTER_KILL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running init scripts.
    Init,
    /// Services supervised; the main COMMAND starts once they are all started.
    Up,
    /// Stopping the main COMMAND (with `signal`, the one that started the
    /// shutdown), then services, dependants first. The shutdown budget
    /// ends at `budget_at`: every stop's SIGKILL comes by then.
    Stopping {
        budget_at: Instant,
        signal: Signal,
    },
    /// Running finish scripts (killed at `budget_at`).
    Finish {
        budget_at: Instant,
    },
    /// Signalling every remaining process, and waiting until none is left.
    Drain(Drain),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// SIGTERM went to every remaining process; SIGKILL follows at `kill_at`
    /// (the end of the shutdown budget).
    Terminated { kill_at: Instant },
    /// SIGKILL went out too; corral exits anyway at `give_up_at`.
    Killed { give_up_at: Instant },
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::Up => "up",
            Phase::Stopping { .. } => "stopping",
            Phase::Finish { .. } => "finish",
            Phase::Drain(_) => "drain",
            Phase::Done => "done",
        }
    }

    /// The end of the shutdown budget, while it still bounds something.
    fn budget_at(self) -> Option<Instant> {
        match self {
            Phase::Stopping { budget_at, .. } | Phase::Finish { budget_at } => Some(budget_at),
            Phase::Drain(Drain::Terminated { kill_at }) => Some(kill_at),
            Phase::Init | Phase::Up | Phase::Drain(Drain::Killed { .. }) | Phase::Done => None,
        }
    }

    fn is_shutting_down(self) -> bool {
        !matches!(self, Phase::Init | Phase::Up)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainState {
    Waiting,
    /// The spawn was requested; its result has not come back yet.
    Spawning,
    Running {
        pid: Pid,
    },
    Stopping {
        pid: Pid,
        kill_at: Instant,
        killed: bool,
    },
    Ended,
}

/// The main COMMAND: started once every service has settled; its exit ends
/// the run.
#[derive(Debug, Clone)]
pub struct Main {
    argv: Vec<String>,
    state: MainState,
}

impl Main {
    pub fn new(argv: Vec<String>) -> Main {
        Main {
            argv,
            state: MainState::Waiting,
        }
    }

    pub fn state(&self) -> &MainState {
        &self.state
    }

    fn pid(&self) -> Option<Pid> {
        match self.state {
            MainState::Running { pid } | MainState::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }
}

impl Supervisor {
    pub fn main_pid(&self) -> Option<Pid> {
        self.main.as_ref().and_then(Main::pid)
    }

    pub(super) fn on_signal(&mut self, signal: Signal, now: Instant) -> Vec<Action> {
        match signal {
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => match self.phase {
                Phase::Init | Phase::Up
                    if self.main_receives_signals
                        && let Some(pid) = self.main_pid() =>
                {
                    info!(
                        signal = signal.as_str(),
                        "forwarded to the main command (S6_CMD_RECEIVE_SIGNALS)"
                    );
                    vec![Action::Signal {
                        pid,
                        signal,
                        group: true,
                    }]
                }
                Phase::Init | Phase::Up => {
                    info!(signal = signal.as_str(), "shutting down");
                    self.begin_shutdown_with(signal, now)
                }
                _ => {
                    info!(signal = signal.as_str(), "already shutting down");
                    Vec::new()
                }
            },
            Signal::SIGUSR1 | Signal::SIGUSR2 | Signal::SIGWINCH => match self.main_pid() {
                Some(pid) => vec![Action::Signal {
                    pid,
                    signal,
                    group: true,
                }],
                None => {
                    info!(
                        signal = signal.as_str(),
                        "no main command to forward to, ignored"
                    );
                    Vec::new()
                }
            },
            Signal::SIGHUP => match self.phase {
                Phase::Up => {
                    info!("SIGHUP: reading the service definitions again");
                    vec![Action::LoadConfig { id: None }]
                }
                _ => {
                    info!("SIGHUP ignored: not running services right now");
                    Vec::new()
                }
            },
            other => {
                debug!(signal = other.as_str(), "signal ignored");
                Vec::new()
            }
        }
    }

    /// `waitpid` says corral has no child left.
    pub(super) fn on_no_children(&mut self) -> Vec<Action> {
        match self.phase {
            Phase::Drain(_) => self.done(),
            _ => Vec::new(),
        }
    }

    /// The shutdown begins, for any reason but a signal: the main COMMAND
    /// gets SIGTERM.
    pub(super) fn begin_shutdown(&mut self, now: Instant) -> Vec<Action> {
        self.begin_shutdown_with(Signal::SIGTERM, now)
    }

    /// The shutdown begins: nothing starts, restarts or reloads from now on;
    /// `signal` goes to the main COMMAND (`advance_stop`), SIGTERM to an
    /// init script that runs.
    fn begin_shutdown_with(&mut self, signal: Signal, now: Instant) -> Vec<Action> {
        self.phase = Phase::Stopping {
            budget_at: now + self.shutdown_timeout,
            signal,
        };
        for svc in self.services.iter_mut() {
            svc.wind_down();
        }
        let mut actions = Vec::new();
        if let Some(pid) = self.init.running() {
            actions.push(Action::Signal {
                pid,
                signal: Signal::SIGTERM,
                group: true,
            });
        }
        actions
    }

    pub(super) fn main_spawned(&mut self, pid: Pid) {
        if let Some(main) = self.main.as_mut() {
            info!(pid = pid.as_raw(), "main command started");
            main.state = MainState::Running { pid };
        }
    }

    /// The spawn of the main COMMAND, once `schedule` says it is time.
    pub(super) fn spawn_main(&mut self) -> Option<Action> {
        let main = self.main.as_mut()?;
        main.state = MainState::Spawning;
        Some(Action::Spawn {
            target: Target::Main,
            job: Job::Main {
                argv: main.argv.clone(),
            },
        })
    }

    pub(super) fn main_is_waiting(&self) -> bool {
        self.main
            .as_ref()
            .is_some_and(|m| m.state == MainState::Waiting)
    }

    pub(super) fn main_exited(&mut self, pid: Pid, exit: Exit, now: Instant) -> Vec<Action> {
        info!(pid = pid.as_raw(), %exit, "main command exited");
        if let Some(main) = self.main.as_mut() {
            main.state = MainState::Ended;
        }
        self.set_exit_code(exit.code());
        match self.phase {
            Phase::Up => self.begin_shutdown(now),
            _ => Vec::new(),
        }
    }

    pub(super) fn main_failed_to_start(
        &mut self,
        error: &str,
        code: i32,
        now: Instant,
    ) -> Vec<Action> {
        error!(%error, "main command could not be started");
        if let Some(main) = self.main.as_mut() {
            main.state = MainState::Ended;
        }
        self.set_exit_code(code);
        self.begin_shutdown(now)
    }

    /// The first step of `Stopping`: the main COMMAND gets the shutdown's
    /// signal (SIGKILL `MAIN_STOP_TIMEOUT` later, within the budget); one
    /// that never started never will. True while it still has to end
    /// (spawning, running, stopping): the services wait for it.
    pub(super) fn stop_main(&mut self, now: Instant, actions: &mut Vec<Action>) -> bool {
        let Phase::Stopping { budget_at, signal } = self.phase else {
            return false;
        };
        let Some(main) = self.main.as_mut() else {
            return false;
        };
        match main.state {
            MainState::Running { pid } => {
                info!(
                    pid = pid.as_raw(),
                    signal = signal.as_str(),
                    "stopping main command"
                );
                main.state = MainState::Stopping {
                    pid,
                    kill_at: (now + MAIN_STOP_TIMEOUT).min(budget_at),
                    killed: false,
                };
                actions.push(Action::Signal {
                    pid,
                    signal,
                    group: true,
                });
            }
            MainState::Waiting => main.state = MainState::Ended,
            _ => {}
        }
        main.state == MainState::Spawning || main.pid().is_some()
    }

    /// When the main COMMAND, being stopped, gets SIGKILL.
    pub(super) fn main_deadline(&self) -> Option<Instant> {
        match self.main.as_ref()?.state {
            MainState::Stopping {
                kill_at,
                killed: false,
                ..
            } => Some(kill_at),
            _ => None,
        }
    }

    /// Phase `Finish`: the next finish script; once all have run, the drain.
    pub(super) fn next_finish(&mut self, now: Instant) -> Vec<Action> {
        if let Some((script, spawn)) = self.finish.spawn_next(Target::Finish) {
            info!(%script, "running finish script");
            return vec![spawn];
        }
        let mut actions = vec![Action::SignalAll(Signal::SIGTERM)];
        match self.phase.budget_at().filter(|&at| now < at) {
            Some(kill_at) => self.phase = Phase::Drain(Drain::Terminated { kill_at }),
            None => {
                self.phase = Phase::Drain(Drain::Killed {
                    give_up_at: now + GIVE_UP_AFTER_KILL,
                });
                actions.push(Action::SignalAll(Signal::SIGKILL));
            }
        }
        actions
    }

    /// The phase's own deadline: the budget while a script runs, the
    /// drain's SIGKILL, giving up.
    pub(super) fn phase_deadline(&self) -> Option<Instant> {
        match self.phase {
            // Until the script is sent SIGKILL: then only its reap is awaited.
            Phase::Stopping { budget_at, .. } | Phase::Finish { budget_at }
                if self.init.unkilled().is_some() || self.finish.unkilled().is_some() =>
            {
                Some(budget_at)
            }
            Phase::Drain(Drain::Terminated { kill_at }) => Some(kill_at),
            Phase::Drain(Drain::Killed { give_up_at }) => Some(give_up_at),
            _ => None,
        }
        .into_iter()
        .chain(self.finish.deadline())
        .min()
    }

    /// Deadlines of the phase that passed: the main COMMAND's SIGKILL, the
    /// end of the budget for scripts and for the drain, giving up.
    pub(super) fn phase_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(main) = self.main.as_mut()
            && let MainState::Stopping {
                pid,
                kill_at,
                ref mut killed,
            } = main.state
            && !*killed
            && now >= kill_at
        {
            warn!(
                pid = pid.as_raw(),
                "main command did not stop in time, sending SIGKILL"
            );
            *killed = true;
            actions.push(Action::Signal {
                pid,
                signal: Signal::SIGKILL,
                group: true,
            });
        }
        if self.phase.budget_at().is_some_and(|at| now >= at) {
            actions.extend(self.init.budget_spent());
            actions.extend(self.finish.budget_spent());
        }
        actions.extend(self.finish.overdue(now));
        match self.phase {
            Phase::Drain(Drain::Terminated { kill_at }) if now >= kill_at => {
                warn!("shutdown budget spent, sending SIGKILL to every remaining process");
                self.phase = Phase::Drain(Drain::Killed {
                    give_up_at: now + GIVE_UP_AFTER_KILL,
                });
                actions.push(Action::SignalAll(Signal::SIGKILL));
            }
            Phase::Drain(Drain::Killed { give_up_at }) if now >= give_up_at => {
                error!("processes survive SIGKILL (uninterruptible sleep?), exiting anyway");
                actions.extend(self.done());
            }
            _ => {}
        }
        actions
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.phase.is_shutting_down()
    }

    fn done(&mut self) -> Vec<Action> {
        self.phase = Phase::Done;
        vec![Action::Exit(self.exit_code())]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::event::Event;

    #[test]
    fn shutdown_stops_main_then_dependants_before_dependencies() {
        let mut h = Harness::new(sup(
            vec![
                svc("api", &["db"]),
                svc("cache", &[]),
                svc("db", &[]),
                svc("web", &["api"]),
            ],
            true,
        ));
        let (api, cache, db, web, main) = (
            h.pid_of("api"),
            h.pid_of("cache"),
            h.pid_of("db"),
            h.pid_of("web"),
            pid(104),
        );
        h.take_log();
        h.event(Event::Signal(Signal::SIGINT));
        // The main COMMAND gets the signal corral received, and alone.
        assert_eq!(h.signalled(), vec![(main, Signal::SIGINT)]);
        h.take_log();
        h.exit(main, Exit::Code(130));
        // Leaves first: web and cache (nothing depends on them), together.
        assert_eq!(
            h.signalled(),
            vec![(cache, Signal::SIGTERM), (web, Signal::SIGTERM)]
        );
        h.take_log();
        h.exit(cache, Exit::Signal(Signal::SIGTERM));
        assert!(h.signalled().is_empty(), "db must wait for api");
        h.exit(web, Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.signalled(), vec![(api, Signal::SIGTERM)]);
        h.take_log();
        h.exit(api, Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.signalled(), vec![(db, Signal::SIGTERM)]);
        h.take_log();
        h.exit(db, Exit::Code(0));
        assert_eq!(
            h.sup.phase,
            Phase::Drain(Drain::Terminated {
                kill_at: h.now + Duration::from_secs(9)
            })
        );
        assert_eq!(h.take_log(), vec![Action::SignalAll(Signal::SIGTERM)]);
        h.event(Event::NoChildren);
        // A signal started it, the main COMMAND's status ends it (like tini).
        assert_eq!(h.take_log(), vec![Action::Exit(130)]);
        assert!(h.sup.is_done());
    }

    #[test]
    fn at_shutdown_pre_stops_run_dependants_first_within_the_budget() {
        use crate::config::PreStop;
        let hook = |name: &str, after: &[&str]| {
            let mut s = svc(name, after);
            s.pre_stop = Some(PreStop::Exec {
                command: vec!["leave".into()],
                timeout: None,
            });
            s.stop_timeout = Duration::from_secs(20);
            s
        };
        let mut h = Harness::new(sup(vec![hook("api", &["db"]), hook("db", &[])], false));
        let (api, db) = (h.pid_of("api"), h.pid_of("db"));
        let t0 = h.now;
        h.take_log();
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.spawned(), vec![Target::PreStop(id(0))], "api's first");
        assert!(
            h.signalled().is_empty(),
            "no stop signal before the hook ends"
        );
        let api_hook = h.service("api").pre_stop_pid().expect("runs");
        // The hook's time is the shutdown budget's rest, not stop-timeout's 20 s.
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(9)));
        h.take_log();
        h.now = t0 + Duration::from_secs(1);
        h.exit(api_hook, Exit::Code(0));
        assert_eq!(h.signalled(), vec![(api, Signal::SIGTERM)]);
        assert!(h.spawned().is_empty(), "db waits for api to be down");
        h.take_log();
        h.exit(api, Exit::Signal(Signal::SIGTERM));
        assert_eq!(h.spawned(), vec![Target::PreStop(id(1))]);
        // db's hook hangs: killed when the budget ends, with db's SIGKILL.
        let db_hook = h.service("db").pre_stop_pid().expect("runs");
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(9));
        assert_eq!(
            h.signalled(),
            vec![
                (db_hook, Signal::SIGKILL),
                (db, Signal::SIGTERM),
                (db, Signal::SIGKILL)
            ]
        );
    }

    #[test]
    fn the_shutdown_budget_caps_every_wait_and_ends_in_sigkill_for_all() {
        let mut slow = svc("slow", &[]);
        slow.stop_timeout = Duration::from_secs(60);
        let mut h = Harness::new(sup(vec![slow], false));
        let t0 = h.now;
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(9)));
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(9));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGKILL)]);
        h.take_log();
        h.exit(pid(100), Exit::Signal(Signal::SIGKILL));
        // Budget spent: every leftover process gets SIGTERM and SIGKILL at once.
        assert_eq!(
            h.take_log(),
            vec![
                Action::SignalAll(Signal::SIGTERM),
                Action::SignalAll(Signal::SIGKILL)
            ]
        );
        assert_eq!(
            h.sup.phase,
            Phase::Drain(Drain::Killed {
                give_up_at: t0 + Duration::from_secs(9) + GIVE_UP_AFTER_KILL
            })
        );
        h.event(Event::NoChildren);
        assert_eq!(h.take_log(), vec![Action::Exit(0)]);
    }

    #[test]
    fn leftover_processes_get_sigkill_when_the_budget_ends() {
        let mut h = Harness::new(sup(vec![svc("a", &[])], false));
        let t0 = h.now;
        h.event(Event::Signal(Signal::SIGTERM));
        h.exit(pid(100), Exit::Code(0));
        h.take_log();
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(9)));
        // An orphan exits; others remain: no exit yet.
        h.exit(pid(555), Exit::Code(0));
        assert!(h.take_log().is_empty());
        h.advance_to(t0 + Duration::from_secs(9));
        assert_eq!(h.take_log(), vec![Action::SignalAll(Signal::SIGKILL)]);
        // Something survives even SIGKILL: exit anyway, a little later.
        h.advance_to(t0 + Duration::from_secs(9) + GIVE_UP_AFTER_KILL);
        assert_eq!(h.take_log(), vec![Action::Exit(0)]);
        assert_eq!(h.sup.orphans_reaped, 1);
    }

    #[test]
    fn main_command_exit_code_becomes_corrals() {
        let mut h = Harness::new(sup(vec![svc("a", &[])], true));
        h.exit(pid(101), Exit::Code(3));
        assert_eq!(h.sup.phase.name(), "stopping");
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(3)));
    }

    #[test]
    fn a_main_command_that_ignores_its_signal_gets_sigkill_after_its_timeout() {
        let mut h = Harness::new(sup(vec![], true));
        let t0 = h.now;
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.sup.next_deadline(), Some(t0 + MAIN_STOP_TIMEOUT));
        h.take_log();
        h.advance_to(t0 + MAIN_STOP_TIMEOUT);
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGKILL)]);
        h.take_log();
        h.advance_to(t0 + MAIN_STOP_TIMEOUT + Duration::from_secs(1));
        assert!(h.signalled().is_empty(), "SIGKILL once");
    }

    #[test]
    fn a_main_command_that_cannot_start_ends_the_run_with_its_code() {
        let mut h = Harness::new_failing(sup(vec![], true));
        assert_eq!(h.spawned(), vec![Target::Main]);
        assert_eq!(h.sup.phase.name(), "drain");
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(127)));
    }

    #[test]
    fn signals_are_forwarded_to_the_main_command_only() {
        let mut h = Harness::new(sup(vec![], true));
        h.take_log();
        h.event(Event::Signal(Signal::SIGUSR1));
        assert_eq!(
            h.take_log(),
            vec![Action::Signal {
                pid: pid(100),
                signal: Signal::SIGUSR1,
                group: true
            }]
        );
        let mut none = Harness::new(sup(vec![svc("a", &[])], false));
        none.take_log();
        none.event(Event::Signal(Signal::SIGWINCH));
        assert!(none.take_log().is_empty());
        assert_eq!(none.sup.phase, Phase::Up);
    }

    #[test]
    fn sighup_reads_the_definitions_again_only_while_up() {
        let mut s = sup(vec![], false);
        s.init = super::super::Scripts::new(vec!["/i/01".into()]);
        let mut h = Harness::new(s);
        h.take_log();
        h.event(Event::Signal(Signal::SIGHUP));
        assert!(h.take_log().is_empty(), "not during init scripts");
        h.exit(pid(100), Exit::Code(0));
        h.take_log();
        h.event(Event::Signal(Signal::SIGHUP));
        assert_eq!(h.take_log(), vec![Action::LoadConfig { id: None }]);
        h.event(Event::Signal(Signal::SIGTERM));
        h.take_log();
        h.event(Event::Signal(Signal::SIGHUP));
        h.event(Event::Signal(Signal::SIGINT));
        assert!(h.take_log().is_empty(), "already shutting down");
    }

    #[test]
    fn with_main_receives_signals_a_term_goes_to_the_main_command_not_the_shutdown() {
        let mut s = sup(vec![svc("a", &[])], true);
        s.main_receives_signals = true;
        let mut h = Harness::new(s);
        let main = h.sup.main_pid().expect("runs");
        h.take_log();
        for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
            h.event(Event::Signal(signal));
            assert_eq!(
                h.take_log(),
                vec![Action::Signal {
                    pid: main,
                    signal,
                    group: true
                }]
            );
            assert_eq!(h.sup.phase, Phase::Up);
        }
        // The main COMMAND exits: the shutdown, with its status, as always.
        h.exit(main, Exit::Code(143));
        assert_eq!(h.sup.phase.name(), "stopping");
        h.exit(pid(100), Exit::Signal(Signal::SIGTERM));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(143)));
    }

    #[test]
    fn main_receives_signals_without_a_running_main_command_shuts_down_as_usual() {
        let mut none = sup(vec![svc("a", &[])], false);
        none.main_receives_signals = true;
        let mut h = Harness::new(none);
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.sup.phase.name(), "stopping");

        // Still waiting for a service: nothing to forward to.
        let mut web = svc("web", &[]);
        web.ready = Some(crate::config::Ready::Notify);
        let mut waiting = sup(vec![web], true);
        waiting.main_receives_signals = true;
        let mut h = Harness::new(waiting);
        h.event(Event::Signal(Signal::SIGINT));
        assert_eq!(h.sup.phase.name(), "stopping");
    }

    #[test]
    fn each_finish_script_is_killed_at_finish_script_timeout_within_the_budget() {
        let mut s = sup(vec![], false);
        s.finish = super::super::Scripts::new(vec!["/f/01".into(), "/f/02".into()]);
        s.finish_script_timeout = Some(Duration::from_secs(2));
        let mut h = Harness::new(s);
        let t0 = h.now;
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.spawned(), vec![Target::Finish(0)]);
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(2)));
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(2));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGKILL)]);
        assert_eq!(h.sup.next_deadline(), None, "then only the reap is awaited");
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(3));
        assert!(h.signalled().is_empty(), "SIGKILL once");
        h.exit(pid(100), Exit::Signal(Signal::SIGKILL));
        // The next one gets its own limit, still within the 9 s budget.
        assert_eq!(h.spawned(), vec![Target::Finish(1)]);
        assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(2)));
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(5));
        assert_eq!(h.signalled(), vec![(pid(101), Signal::SIGKILL)]);
    }

    #[test]
    fn without_finish_script_timeout_only_the_budget_bounds_a_finish_script() {
        let mut s = sup(vec![], false);
        s.finish = super::super::Scripts::new(vec!["/f/01".into(), "/f/02".into()]);
        let mut h = Harness::new(s);
        let t0 = h.now;
        h.event(Event::Signal(Signal::SIGTERM));
        assert_eq!(h.sup.next_deadline(), Some(t0 + Duration::from_secs(9)));
        h.take_log();
        h.advance_to(t0 + Duration::from_secs(9));
        assert_eq!(h.signalled(), vec![(pid(100), Signal::SIGKILL)]);
        h.take_log();
        h.exit(pid(100), Exit::Signal(Signal::SIGKILL));
        // A script started once the budget is spent is killed at once too.
        assert_eq!(h.spawned(), vec![Target::Finish(1)]);
        h.take_log();
        h.advance_to(h.now);
        assert_eq!(h.signalled(), vec![(pid(101), Signal::SIGKILL)]);
    }
}
