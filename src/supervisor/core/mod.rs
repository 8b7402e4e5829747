//! The whole life of a corral run as one pure state machine.
//!
//! `Supervisor` owns every `Service` (in `Services`), the main COMMAND and
//! the init / finish scripts, and moves through `Phase`s: init scripts,
//! services up, ordered stop, finish scripts, drain (every leftover
//! process), done. Like `service`, it never makes a syscall and never reads
//! the clock: events and `now` in, actions out. The loop in
//! `supervisor::run` is its only caller; the executor only ever reads what
//! the actions carry.
//!
//! This file routes events: to the service they concern (by `ServiceId`, or
//! for a reaped pid by the `owners` map filled at each spawn), to the phase
//! machine (`phases`: main COMMAND, shutdown, drain; `scripts`: init and
//! finish scripts), to dependency order (`schedule`), to s6-overlay v3's
//! stage-2 rules (`boot`: boot steps that fail, the main COMMAND's
//! `S6_CMD_WAIT_FOR_SERVICES_MAXTIME`), to control requests (`requests`,
//! `pending`, `status`) and to a config reload (`reconfigure`). Services only change through their own transitions
//! (`service`): nothing here writes a service's state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::calendar::SLACK;
use crate::config::Spec;
use crate::event::{Action, Event, ServiceId, Target};
use crate::exit::Exit;
use crate::log::{debug, error, info};
use crate::service::{Service, Services};

mod boot;
mod pending;
mod phases;
mod reconfigure;
mod replicas;
mod requests;
mod schedule;
mod scripts;
mod status;
mod sweep;

use pending::Pending;
pub use phases::{Drain, GIVE_UP_AFTER_KILL, MAIN_STOP_TIMEOUT, Main, MainState, Phase};
pub use scripts::{InitFailure, Scripts};

#[derive(Debug)]
pub struct Supervisor {
    services: Services,
    /// Whose each child corral started is, from its `Spawned` to its
    /// `Exited`: an exit is routed in one lookup, and a pid nobody claims is
    /// an orphan.
    owners: HashMap<Pid, Target>,
    main: Option<Main>,
    init: Scripts,
    finish: Scripts,
    phase: Phase,
    /// The first cause of the shutdown decides the exit status.
    exit_code: Option<i32>,
    shutdown_timeout: Duration,
    /// Control requests answered once what they asked for is done.
    pending: Vec<Pending>,
    /// `S6_BEHAVIOUR_IF_STAGE2_FAILS`: what a failed init script, a boot
    /// step that fails to come up and `cmd_wait_maxtime` passing do.
    pub init_failure: InitFailure,
    /// `S6_CMD_WAIT_FOR_SERVICES_MAXTIME`: the main COMMAND waits for the
    /// services at most this long from the start of phase `Up` (`None` or
    /// zero: no limit).
    pub cmd_wait_maxtime: Option<Duration>,
    /// `S6_KILL_FINISH_MAXTIME`: each finish script gets SIGKILL after this
    /// long (`None`: only the shutdown budget bounds it).
    pub finish_script_timeout: Option<Duration>,
    /// `S6_CMD_RECEIVE_SIGNALS`: SIGTERM / SIGINT / SIGQUIT go to the
    /// running main COMMAND's group instead of starting the shutdown.
    pub main_receives_signals: bool,
    /// `--syslog` is on: `ctl logs syslog` names its lines.
    pub syslog: bool,
    /// s6-rc bundles (name -> services): a request may name one
    /// (`s6-rc -u change user`, `ctl start user`).
    bundles: std::collections::BTreeMap<String, Vec<String>>,
    /// Replicated services (`replicas`): templates and counts now.
    groups: Vec<replicas::Group>,
    /// When phase `Up` began (`cmd_wait_maxtime` counts from it).
    up_since: Option<Instant>,
    /// Without a main COMMAND: `cmd_wait_maxtime` has been checked (once).
    boot_wait_over: bool,
    /// Boot steps whose failure to come up was acted on (once each).
    boot_failures: Vec<ServiceId>,
    orphans_reaped: u64,
    /// The phase the dependency order last looked at every service in.
    ordered_in: Option<&'static str>,
    /// Whether every service has settled (the main COMMAND's wait).
    settled_sweep: sweep::Sweep,
    /// Whether every service is fully down (the shutdown's services).
    down_sweep: sweep::Sweep,
    /// Long lists of dependants or conditions, each with its sweep.
    long_lists: HashMap<(ServiceId, u8), sweep::Sweep>,
    /// Services the dependency order looked at, in every pass so far.
    #[cfg(test)]
    examined: usize,
    /// Services the pending waits looked at, in every check so far.
    #[cfg(test)]
    wait_looks: std::cell::Cell<usize>,
    /// Tests: look at every service after every event, as before issue 16
    /// (the reference the incremental core is compared with).
    #[cfg(test)]
    full_scan: bool,
}

impl Supervisor {
    pub fn new(
        spec: Spec,
        main: Option<Vec<String>>,
        init: Vec<PathBuf>,
        finish: Vec<PathBuf>,
        shutdown_timeout: Duration,
    ) -> Supervisor {
        Supervisor {
            groups: replicas::Group::of(&spec),
            bundles: spec.bundles,
            services: Services::new(spec.services),
            owners: HashMap::new(),
            main: main.map(Main::new),
            init: Scripts::new(init),
            finish: Scripts::new(finish),
            phase: Phase::Init,
            exit_code: None,
            shutdown_timeout,
            pending: Vec::new(),
            init_failure: InitFailure::Stop,
            cmd_wait_maxtime: None,
            finish_script_timeout: None,
            main_receives_signals: false,
            syslog: false,
            up_since: None,
            boot_wait_over: false,
            boot_failures: Vec::new(),
            orphans_reaped: 0,
            ordered_in: None,
            settled_sweep: sweep::Sweep::default(),
            down_sweep: sweep::Sweep::default(),
            long_lists: HashMap::new(),
            #[cfg(test)]
            examined: 0,
            #[cfg(test)]
            wait_looks: std::cell::Cell::new(0),
            #[cfg(test)]
            full_scan: false,
        }
    }

    /// Begin: watch what the services watch, then the first init script, or
    /// straight to the services.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = self.watches();
        actions.extend(self.next_init());
        self.advance(now, &mut actions);
        self.services.refresh_deadlines();
        actions
    }

    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = match event {
            Event::Signal(signal) => self.on_signal(signal, now),
            Event::Exited { pid, exit } => self.on_exit(pid, exit, now),
            Event::NoChildren => self.on_no_children(),
            Event::Spawned { target, pid } => self.on_spawned(target, pid, now),
            Event::SpawnFailed {
                target,
                error,
                code,
            } => self.on_spawn_failed(target, &error, code, now),
            Event::Tick => self.on_tick(now),
            Event::Order { id, order } => self.on_order(id, order, now),
            Event::Cancel { id } => {
                self.pending.retain(|p| p.id() != id);
                Vec::new()
            }
            Event::Notify {
                service,
                run,
                message,
            } => self.with_service(service, now, |svc, now| svc.notify(run, &message, now)),
            Event::FdReady { service, run } => {
                self.with_service(service, now, |svc, now| svc.fd_ready(run, now))
            }
            Event::ProbeDone { token, result } => {
                self.with_service(token.service, now, |svc, now| {
                    svc.probe_result(token, result, now)
                })
            }
            Event::Changed { service } => {
                let up = self.phase == Phase::Up;
                self.with_service(service, now, |svc, now| {
                    if up {
                        svc.changed(now);
                    }
                    Vec::new()
                })
            }
            Event::Loaded { id, result } => self.on_loaded(id, result, now),
            Event::Clock {
                service,
                wall,
                due,
                next,
            } => {
                // A tick runs only while every `after` condition holds.
                let deps_met = self
                    .services
                    .conditions(service)
                    .all(|(dep, condition)| self.met(dep, condition));
                self.with_service(service, now, |svc, now| {
                    svc.clocked(due, wall, next, deps_met, now)
                })
            }
        };
        self.advance(now, &mut actions);
        self.services.refresh_deadlines();
        actions
    }

    /// Run a transition of service `id`, then the checks every service change needs.
    fn with_service(
        &mut self,
        id: ServiceId,
        now: Instant,
        transition: impl FnOnce(&mut Service, Instant) -> Vec<Action>,
    ) -> Vec<Action> {
        match self.services.get_mut(id) {
            Some(svc) => {
                let actions = transition(svc, now);
                self.check_essential(id, now, actions)
            }
            None => Vec::new(),
        }
    }

    /// The earliest moment something is due; `None`: wait for events only.
    pub fn next_deadline(&self) -> Option<Instant> {
        let requests = self.pending.iter().filter_map(Pending::deadline);
        let services = self.services.next_deadline();
        #[cfg(test)]
        let services = match self.full_scan {
            true => self.services.iter().filter_map(Service::deadline).min(),
            false => services,
        };
        services
            .into_iter()
            .chain(self.main_deadline())
            .chain(self.phase_deadline())
            .chain(self.cmd_wait_deadline())
            .chain(requests)
            .min()
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn exit_code(&self) -> i32 {
        self.exit_code.unwrap_or(0)
    }

    /// The service named `name` (threads name services in their messages;
    /// a removed one still has a process to hear from).
    pub fn service_id(&self, name: &str) -> Option<ServiceId> {
        self.services.find(name)
    }

    fn set_exit_code(&mut self, code: i32) {
        self.exit_code.get_or_insert(code);
    }

    /// A child was reaped: its owner takes it, if it still waits for it.
    fn on_exit(&mut self, pid: Pid, exit: Exit, now: Instant) -> Vec<Action> {
        let owner = self.owners.remove(&pid);
        match owner {
            Some(Target::Init(_)) if self.init.running() == Some(pid) => {
                self.init_exited(exit, now)
            }
            Some(Target::Finish(_)) if self.finish.running() == Some(pid) => {
                self.finish_script_exited(exit)
            }
            Some(Target::Main) if self.main_pid() == Some(pid) => self.main_exited(pid, exit, now),
            Some(target) => {
                let reaped = target.service().and_then(|(id, child)| {
                    let svc = self.services.get_mut(id)?;
                    Some((id, svc.reaped(child, pid, exit, now)?))
                });
                match reaped {
                    Some((id, actions)) => self.check_essential(id, now, actions),
                    None => self.orphan(pid, exit),
                }
            }
            None => self.orphan(pid, exit),
        }
    }

    /// A process corral did not start (or no longer waits for) was reaped.
    fn orphan(&mut self, pid: Pid, exit: Exit) -> Vec<Action> {
        self.orphans_reaped += 1;
        debug!(pid = pid.as_raw(), %exit, "orphan reaped");
        Vec::new()
    }

    /// An essential service that ended for good takes the container down
    /// with it; so does a boot step that failed to come up (`boot`).
    fn check_essential(
        &mut self,
        id: ServiceId,
        now: Instant,
        mut actions: Vec<Action>,
    ) -> Vec<Action> {
        let Some(svc) = self.services.get(id) else {
            return actions;
        };
        if svc.spec().essential && svc.ended_for_good() && self.phase == Phase::Up {
            // The container's status is the service's own code, even when
            // that code counts as a success (`success-exit-codes`).
            let code = svc.last_exit().map_or(1, Exit::code);
            if svc.last_exit().is_some_and(|e| svc.spec().is_success(e)) {
                info!(service = %svc.name(), code, "essential service exited successfully, shutting down");
            } else {
                error!(service = %svc.name(), code, "essential service ended, shutting down");
            }
            self.set_exit_code(code);
            actions.extend(self.begin_shutdown(now));
        }
        actions.extend(self.check_boot_step(id, now));
        actions
    }

    fn on_spawned(&mut self, target: Target, pid: Pid, now: Instant) -> Vec<Action> {
        self.owners.insert(pid, target);
        if let Some((id, child)) = target.service() {
            return self.with_service(id, now, |svc, now| svc.on_spawned(child, pid, now));
        }
        match target {
            Target::Main => self.main_spawned(pid),
            Target::Init(_) => self.init.spawned(pid),
            Target::Finish(_) => {
                self.finish.spawned(pid);
                self.finish.kill_at = self.finish_script_timeout.map(|t| now + t);
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_spawn_failed(
        &mut self,
        target: Target,
        error: &str,
        code: i32,
        now: Instant,
    ) -> Vec<Action> {
        if let Some((id, child)) = target.service() {
            return self.with_service(id, now, |svc, now| {
                svc.on_spawn_failed(child, error, code, now)
            });
        }
        match target {
            Target::Main => self.main_failed_to_start(error, code, now),
            Target::Init(i) => self.init_failed_to_start(i, error, code, now),
            Target::Finish(i) => self.finish_failed_to_start(i, error),
            _ => Vec::new(),
        }
    }

    /// Deadlines that passed. Only the services with one due are visited:
    /// a tick changes nothing in the others (a timer's tick is taken
    /// within `SLACK` of its deadline).
    fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let due = self.services.due(now + SLACK);
        #[cfg(test)]
        let due = match self.full_scan {
            true => self.services.ids().collect(),
            false => due,
        };
        let mut actions = Vec::new();
        for &id in &due {
            if let Some(svc) = self.services.get_mut(id) {
                actions.extend(svc.tick(now));
            }
        }
        for id in due {
            actions.extend(self.check_boot_step(id, now));
        }
        actions.extend(self.phase_tick(now));
        actions.extend(self.cmd_wait_tick(now));
        actions
    }

    /// Move the current phase forward as far as its conditions allow.
    fn advance(&mut self, now: Instant, actions: &mut Vec<Action>) {
        // Read before the passes below take the marks.
        let setback = !self.pending.is_empty() && self.setback();
        if self.phase == Phase::Up && self.up_since.is_none() {
            self.up_since = Some(now);
        }
        // A new phase: the dependency order looks at every service once.
        if self.ordered_in != Some(self.phase.name()) {
            self.ordered_in = Some(self.phase.name());
            self.services.touch_all();
        }
        match self.phase {
            Phase::Up => actions.extend(self.schedule(now)),
            Phase::Stopping { .. } => actions.extend(self.advance_stop(now)),
            Phase::Finish { .. } if !self.finish.is_busy() => {
                actions.extend(self.next_finish(now));
            }
            _ => {}
        }
        if !self.pending.is_empty() {
            actions.extend(self.check_pending(now, setback));
        }
    }

    /// What each service watches (after a config reload too: a removed
    /// service watches nothing).
    fn watches(&self) -> Vec<Action> {
        self.services
            .iter()
            .map(|svc| Action::Watch {
                service: svc.name().to_string(),
                paths: if svc.is_removed() {
                    Vec::new()
                } else {
                    svc.current_spec().watch.clone()
                },
            })
            .collect()
    }
}

mod testing;

mod scheduled_tests;

mod scale_tests;

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::testing::*;
    use super::*;
    use crate::event::Child;

    #[test]
    fn an_exit_goes_to_the_owner_of_the_pid_and_an_unknown_pid_is_an_orphan() {
        let mut web = svc("web", &[]);
        web.finish = Some("/srv/web/finish".into());
        let mut h = Harness::new(sup(vec![web], true));
        assert_eq!(h.sup.owners.get(&pid(100)), Some(&Target::Service(id(0))));
        assert_eq!(h.sup.owners.get(&pid(101)), Some(&Target::Main));
        h.take_log();
        h.exit(pid(100), Exit::Code(1));
        assert_eq!(h.spawned(), vec![Target::FinishScript(id(0))]);
        assert_eq!(
            h.sup.owners.get(&pid(102)),
            Some(&Target::FinishScript(id(0)))
        );
        assert!(
            !h.sup.owners.contains_key(&pid(100)),
            "forgotten at its exit"
        );
        h.exit(pid(777), Exit::Code(0));
        assert_eq!(h.sup.orphans_reaped, 1);
        h.exit(pid(102), Exit::Code(0));
        assert_eq!(h.sup.orphans_reaped, 1, "the finish script is no orphan");
        assert_eq!(h.state_of("web").name(), "backoff");
    }

    #[test]
    fn a_child_its_owner_no_longer_waits_for_counts_as_an_orphan() {
        let mut web = svc("web", &[]);
        web.ready = Some(crate::config::Ready::Probe(crate::config::Probe::Exec {
            command: vec!["check".into()],
        }));
        let mut h = Harness::new(sup(vec![web], false));
        assert_eq!(
            h.spawned(),
            vec![Target::Service(id(0)), Target::Probe(id(0))]
        );
        assert_eq!(h.sup.owners.get(&pid(101)), Some(&Target::Probe(id(0))));
        // The service exits: its probe is cancelled (killed); its reap is late.
        h.exit(pid(100), Exit::Code(1));
        assert!(h.signalled().contains(&(pid(101), Signal::SIGKILL)));
        h.exit(pid(101), Exit::Signal(Signal::SIGKILL));
        assert_eq!(h.sup.orphans_reaped, 1);
        assert!(h.sup.owners.is_empty());
    }

    #[test]
    fn events_for_an_unknown_service_change_nothing() {
        let mut h = Harness::new(sup(vec![svc("web", &[])], false));
        h.take_log();
        let ghost = id(7);
        h.event(Event::Spawned {
            target: Target::Hook(ghost),
            pid: pid(500),
        });
        h.event(Event::FdReady {
            service: ghost,
            run: 1,
        });
        h.event(Event::ProbeDone {
            token: crate::event::ProbeToken {
                service: ghost,
                seq: 1,
            },
            result: Ok(()),
        });
        assert!(h.take_log().is_empty());
        // Its child, when reaped, is an orphan: nobody waits for it.
        h.exit(pid(500), Exit::Code(0));
        assert_eq!(h.sup.orphans_reaped, 1);
        assert_eq!(Target::Hook(ghost).service(), Some((ghost, Child::Hook)));
    }

    #[test]
    fn start_sets_every_watch_before_the_first_spawn() {
        let mut web = svc("web", &[]);
        web.watch = vec!["/etc/web.conf".into()];
        let h = Harness::new(sup(vec![web, svc("db", &[])], false));
        assert_eq!(
            h.log.iter().take(3).cloned().collect::<Vec<_>>(),
            vec![
                Action::Watch {
                    service: "web".into(),
                    paths: vec!["/etc/web.conf".into()]
                },
                Action::Watch {
                    service: "db".into(),
                    paths: vec![]
                },
                h.log[2].clone(),
            ]
        );
        assert!(matches!(h.log[2], Action::Spawn { .. }));
    }

    #[test]
    fn idle_corral_has_no_deadline() {
        let h = Harness::new(sup(vec![svc("a", &[]), svc("b", &["a"])], false));
        assert_eq!(h.sup.next_deadline(), None);
    }

    #[test]
    fn no_restart_during_shutdown() {
        let mut h = Harness::new(sup(vec![svc("api", &["db"]), svc("db", &[])], false));
        h.event(Event::Signal(Signal::SIGTERM));
        h.take_log();
        // db crashes while api is still stopping: it must not come back.
        h.exit(pid(100), Exit::Code(1));
        assert!(h.spawned().is_empty());
        assert_eq!(
            h.sup.next_deadline(),
            h.sup.services.get(id(0)).and_then(Service::deadline)
        );
    }

    #[test]
    fn an_essential_service_ending_with_a_success_code_still_gives_its_code() {
        let mut job = svc("job", &[]);
        job.essential = true;
        job.restart = crate::config::Restart::OnFailure;
        job.success_exit_codes = vec![0, 3];
        let mut h = Harness::new(sup(vec![job], false));
        h.exit(pid(100), Exit::Code(3));
        assert_eq!(*h.state_of("job"), crate::service::State::Stopped);
        assert_eq!(h.sup.phase.name(), "drain");
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(3)));
    }

    #[test]
    fn an_essential_service_that_ends_takes_the_container_down_with_its_code() {
        let mut db = svc("db", &[]);
        db.essential = true;
        db.restart = crate::config::Restart::Never;
        let mut h = Harness::new(sup(vec![db, svc("web", &[])], true));
        h.exit(pid(100), Exit::Code(4));
        assert_eq!(h.sup.phase.name(), "stopping");
        // The main COMMAND's own status later does not replace the first cause.
        h.exit(pid(102), Exit::Signal(Signal::SIGTERM));
        h.exit(pid(101), Exit::Signal(Signal::SIGTERM));
        h.event(Event::NoChildren);
        assert_eq!(h.log.last(), Some(&Action::Exit(4)));
    }
}
