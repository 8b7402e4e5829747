//! Reloading a running service: its `reload` signal (to the main pid) or
//! hook, readiness again afterwards, and debounced reloads when a watched
//! file changes. Without a `reload`, a reload is a restart.

use std::sync::Arc;
use std::time::Instant;

use nix::unistd::Pid;

use super::{Hook, Service, State, Then, WATCH_DEBOUNCE};
use crate::config::{Ready, Reload};
use crate::event::{Action, Job, Target};
use crate::log::{debug, error, info};
use crate::text::human;

impl Service {
    /// A watched path changed: reload once the burst is over. Only while its
    /// process runs (starting and reloading too: the change may come after
    /// the service read its files; the reload runs once it is ready), and not
    /// once it is removed.
    pub fn changed(&mut self, now: Instant) {
        if self.removed || !self.is_live() {
            return;
        }
        debug!(service = %self.spec.name, "watched file changed");
        self.reload_due = Some(now + WATCH_DEBOUNCE);
    }

    /// A debounced reload whose time has come, once the service runs.
    pub(super) fn reload_if_due(&mut self, now: Instant) -> Vec<Action> {
        if matches!(self.state, State::Running { .. })
            && self.reload_due.is_some_and(|at| now >= at)
        {
            self.reload_due = None;
            return self.reload(now);
        }
        Vec::new()
    }

    pub(super) fn finish_reload(&mut self, result: Result<(), String>) {
        self.last_reload = Some((self.reloads_asked, result));
    }

    /// Reload now: the `reload` signal (to the main pid) or hook; without a
    /// `reload`, a restart. A service with readiness is not ready again
    /// until its probe passes or it sends READY=1.
    pub fn reload(&mut self, now: Instant) -> Vec<Action> {
        self.reloads_asked += 1;
        self.reload_due = None;
        let (pid, since) = match self.state {
            State::Running { pid, since } => (pid, since),
            State::Reloading { .. } | State::Starting { .. } | State::Spawning => {
                // Already (re)starting: it will read its configuration anyway.
                // The answer comes when it is ready.
                return Vec::new();
            }
            _ => {
                self.finish_reload(Err(format!(
                    "{} is not running ({})",
                    self.spec.name,
                    self.state.name()
                )));
                return Vec::new();
            }
        };
        let ready_by = now + self.spec.ready_timeout;
        match self.spec.reload.clone() {
            None => {
                info!(service = %self.spec.name, "reload: no `reload` defined, restarting");
                self.restart(now)
            }
            Some(Reload::Signal(signal)) => {
                let target = self.main_pid.unwrap_or(pid);
                info!(service = %self.spec.name, pid = target.as_raw(), signal = signal.as_str(), "reloading");
                let mut actions = vec![Action::Signal {
                    pid: target,
                    signal,
                    group: false,
                }];
                match self.spec.ready {
                    Some(Ready::Probe(_)) | Some(Ready::Notify) => {
                        actions.extend(self.cancel_probe());
                        self.state = State::Reloading {
                            pid,
                            since,
                            ready_by,
                            hook: Hook::None,
                        };
                        actions.extend(self.reprobe(now));
                    }
                    // No way to hear "ready again": the signal is the reload.
                    _ => self.finish_reload(Ok(())),
                }
                actions
            }
            Some(Reload::Exec(command)) => {
                info!(service = %self.spec.name, "reloading (hook)");
                let mut actions = self.cancel_probe();
                self.state = State::Reloading {
                    pid,
                    since,
                    ready_by,
                    hook: Hook::Spawning,
                };
                actions.push(Action::Spawn {
                    target: Target::Hook(self.id),
                    job: Job::Hook {
                        spec: Arc::clone(&self.spec),
                        command,
                        main_pid: self.main_pid.unwrap_or(pid),
                    },
                });
                actions
            }
        }
    }

    /// `ready-timeout` passed during a reload: the process no longer answers
    /// for itself, so it is restarted like a start that was not ready in time.
    pub(super) fn reload_overdue(&mut self, now: Instant) -> Vec<Action> {
        let why = format!(
            "not ready again within ready-timeout {} after a reload",
            human(self.spec.ready_timeout)
        );
        error!(service = %self.spec.name, "{why}, restarting");
        self.finish_reload(Err(why.clone()));
        self.stop_then(now, None, Then::Backoff(why))
    }

    /// The pid of the reload hook, while it runs.
    pub fn hook_pid(&self) -> Option<Pid> {
        match self.state {
            State::Reloading {
                hook: Hook::Running(pid),
                ..
            } => Some(pid),
            _ => None,
        }
    }

    pub(super) fn hook_spawned(&mut self, hook_pid: Pid) {
        if let State::Reloading { hook, .. } = &mut self.state {
            *hook = Hook::Running(hook_pid);
        }
    }

    /// The reload hook ended (or could not be started: the reason).
    pub(super) fn hook_exited(&mut self, result: Result<(), String>, now: Instant) -> Vec<Action> {
        let State::Reloading {
            pid,
            since,
            ready_by,
            ..
        } = self.state
        else {
            return Vec::new();
        };
        match result {
            Err(why) => {
                error!(service = %self.spec.name, %why, "reload hook failed");
                self.finish_reload(Err(format!("reload hook failed: {why}")));
                // The old configuration is still running: the service stays as it was.
                self.become_ready_silently(pid, since, now)
            }
            Ok(()) => match self.spec.ready {
                Some(Ready::Probe(_)) => {
                    self.state = State::Reloading {
                        pid,
                        since,
                        ready_by,
                        hook: Hook::Done,
                    };
                    self.reprobe(now)
                }
                _ => self.become_ready(pid, since, now),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use super::super::testing::*;
    use super::*;
    use crate::event::Child;
    use crate::exit::Exit;

    #[test]
    fn signal_reload_of_a_notify_service_goes_to_mainpid_and_waits_for_ready() {
        let t = Instant::now();
        let mut s = with_ready(Ready::Notify);
        s.reload = Some(Reload::Signal(Signal::SIGUSR2));
        let mut svc = Service::new(id(0), s);
        svc.start(t);
        svc.spawned(pid(100), t);
        let told = crate::event::NotifyMessage {
            ready: true,
            main_pid: Some(101),
            status: Some("up".into()),
            ..Default::default()
        };
        svc.notify(1, &told, t);
        assert_eq!(
            svc.reload(t + ms(10)),
            vec![Action::Signal {
                pid: pid(101),
                signal: Signal::SIGUSR2,
                group: false
            }]
        );
        assert!(!svc.is_ready() && svc.is_started());
        let reloading = crate::event::NotifyMessage {
            reloading: true,
            ..Default::default()
        };
        svc.notify(1, &reloading, t + ms(20));
        assert_eq!(svc.last_reload, None);
        svc.notify(1, &ready_msg(), t + ms(30));
        assert!(svc.is_ready());
        assert_eq!(svc.last_reload, Some((1, Ok(()))));
        assert_eq!(svc.notify_status(), Some("up"));
    }

    #[test]
    fn a_reload_not_ready_in_time_restarts_the_service() {
        let t = Instant::now();
        let mut s = with_ready(Ready::Notify);
        s.reload = Some(Reload::Signal(Signal::SIGHUP));
        let mut svc = Service::new(id(0), s);
        svc.start(t);
        svc.spawned(pid(100), t);
        svc.notify(1, &ready_msg(), t);
        svc.reload(t);
        let actions = svc.tick(t + Duration::from_secs(10));
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert!(matches!(
            svc.last_reload,
            Some((1, Err(ref e))) if e == "not ready again within ready-timeout 10.0s after a reload"
        ));
    }

    #[test]
    fn exec_reload_hook_then_readiness_probe() {
        let t = Instant::now();
        let mut s = with_ready(Ready::Probe(tcp()));
        s.reload = Some(Reload::Exec(vec!["/bin/true".into()]));
        let mut svc = Service::new(id(0), s.clone());
        svc.start(t);
        let token = probe_token(&svc.spawned(pid(100), t));
        svc.probe_result(token, Ok(()), t);
        assert_eq!(
            svc.reload(t),
            vec![Action::Spawn {
                target: Target::Hook(id(0)),
                job: Job::Hook {
                    spec: Arc::new(s),
                    command: vec!["/bin/true".into()],
                    main_pid: pid(100),
                },
            }]
        );
        svc.hook_spawned(pid(200));
        assert_eq!(svc.hook_pid(), Some(pid(200)));
        let token = probe_token(&svc.hook_exited(Ok(()), t + ms(5)));
        svc.probe_result(token, Ok(()), t + ms(6));
        assert!(svc.is_ready());
        assert_eq!(svc.last_reload, Some((1, Ok(()))));
        // A failing hook: reported, and the service stays as it was.
        svc.reload(t + ms(10));
        svc.hook_spawned(pid(201));
        svc.hook_exited(Err("exit 1".into()), t + ms(11));
        assert!(svc.is_ready());
        assert_eq!(
            svc.last_reload,
            Some((2, Err("reload hook failed: exit 1".into())))
        );
        // One that cannot even start: the same.
        svc.reload(t + ms(20));
        svc.on_spawn_failed(Child::Hook, "Permission denied", 126, t + ms(20));
        assert!(svc.is_ready());
        assert_eq!(
            svc.last_reload,
            Some((
                3,
                Err("reload hook failed: could not be started: Permission denied".into())
            ))
        );
    }

    #[test]
    fn the_service_exiting_during_its_hook_kills_the_hook() {
        let t = Instant::now();
        let mut s = spec("web");
        s.reload = Some(Reload::Exec(vec!["/bin/true".into()]));
        let mut svc = running(s, t);
        svc.reload(t);
        svc.on_spawned(Child::Hook, pid(200), t);
        let actions = svc.reaped(Child::Service, pid(100), Exit::Code(1), t + ms(1));
        assert_eq!(
            actions,
            Some(vec![Action::Signal {
                pid: pid(200),
                signal: Signal::SIGKILL,
                group: true
            }])
        );
        assert_eq!(
            svc.last_reload,
            Some((
                1,
                Err("the service exited during its reload (exit 1)".into())
            ))
        );
        assert_eq!(
            svc.reaped(Child::Hook, pid(200), Exit::Signal(Signal::SIGKILL), t),
            None,
            "the killed hook is no longer awaited"
        );
    }

    #[test]
    fn watched_changes_are_debounced_into_one_reload() {
        let t = Instant::now();
        let mut s = spec("web");
        s.reload = Some(Reload::Signal(Signal::SIGHUP));
        let mut svc = Service::new(id(0), s);
        svc.start(t);
        svc.spawned(pid(100), t);
        svc.changed(t);
        svc.changed(t + ms(60));
        assert!(svc.tick(t + ms(100)).is_empty(), "the burst is not over");
        assert_eq!(svc.deadline(), Some(t + ms(160)));
        let actions = svc.tick(t + ms(160));
        assert_eq!(
            actions,
            vec![Action::Signal {
                pid: pid(100),
                signal: Signal::SIGHUP,
                group: false
            }]
        );
        assert!(svc.tick(t + ms(500)).is_empty(), "one reload per burst");
        assert_eq!(svc.last_reload, Some((1, Ok(()))));
    }

    #[test]
    fn changes_are_ignored_unless_the_process_runs() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), spec("web"));
        svc.changed(t);
        assert_eq!(svc.reload_due, None, "not started");
        let mut svc = running(spec("web"), t);
        svc.remove();
        svc.changed(t);
        assert_eq!(svc.reload_due, None, "removed");
    }

    #[test]
    fn reload_without_a_reload_key_is_a_restart() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        assert_eq!(svc.reload(t).len(), 1);
        assert_eq!(
            targets(&svc.exited(Exit::Signal(Signal::SIGTERM), t + ms(2))),
            vec![Target::Service(id(0))]
        );
    }

    #[test]
    fn reload_of_a_stopped_service_reports_why() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), spec("web"));
        assert!(svc.reload(t).is_empty());
        assert_eq!(
            svc.last_reload,
            Some((1, Err("web is not running (stopped)".into())))
        );
    }

    #[test]
    fn a_change_during_a_reload_runs_another_reload_once_ready() {
        let t = Instant::now();
        let mut s = with_ready(Ready::Notify);
        s.reload = Some(Reload::Signal(Signal::SIGUSR2));
        let mut svc = Service::new(id(0), s);
        svc.start(t);
        svc.spawned(pid(100), t);
        svc.notify(1, &ready_msg(), t);
        svc.changed(t);
        assert_eq!(svc.tick(t + ms(100)).len(), 1, "first reload");
        // The file changes again while the first reload is under way.
        svc.changed(t + ms(150));
        assert!(svc.tick(t + ms(300)).is_empty(), "not while reloading");
        svc.notify(1, &ready_msg(), t + ms(400));
        assert!(svc.is_ready());
        assert_eq!(svc.deadline(), Some(t + ms(250)), "due at once");
        assert_eq!(
            svc.tick(t + ms(400)),
            vec![Action::Signal {
                pid: pid(100),
                signal: Signal::SIGUSR2,
                group: false
            }]
        );
        assert_eq!(svc.reloads_asked, 2);
    }
}
