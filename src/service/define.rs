//! A config reload's effect on one service: a new definition, a removal, a
//! removed service defined again. `supervisor::core::reconfigure` decides
//! which applies (by name); this changes the service.

use std::sync::Arc;
use std::time::Instant;

use super::{Service, State, Want};
use crate::config::ServiceSpec;
use crate::event::Action;

impl Service {
    /// A definition that changed (the caller compared it with
    /// `current_spec`): a stopped service just takes it; a running one
    /// restarts with it, or stops if it is now disabled. Returns the actions
    /// and what was done, for the reload's answer.
    pub fn redefine(&mut self, new: ServiceSpec, now: Instant) -> (Vec<Action>, String) {
        let name = new.name.clone();
        let enabled = new.enabled;
        if enabled && self.is_scheduled() && new.schedule.is_some() {
            return self.reschedule(new, now);
        }
        if self.is_down() {
            self.spec = Arc::new(new);
            self.next_spec = None;
            if self.state == State::Scheduled {
                // No longer scheduled (or disabled): started anew, if wanted.
                self.state = State::Idle;
                self.timer = super::Timer::Off;
            }
            if !enabled {
                self.want = Want::Down;
            }
            return (Vec::new(), format!("{name}: definition updated"));
        }
        self.next_spec = Some(new);
        if !enabled {
            self.want = Want::Down;
            return (Vec::new(), format!("{name}: now disabled, stopping"));
        }
        (
            self.restart(now),
            format!("{name}: definition changed, restarting"),
        )
    }

    /// The same definition for another count of replicas (only
    /// `CORRAL_REPLICAS` differs): taken as it is, for the next start; a
    /// running instance goes on with the count it started with.
    pub fn respec(&mut self, new: ServiceSpec) {
        if self.next_spec.is_some() {
            self.next_spec = Some(new);
        } else {
            self.spec = Arc::new(new);
        }
    }

    /// Removed from the definitions: wanted down (`schedule` stops it,
    /// dependants first), then hidden from names and status.
    pub fn remove(&mut self) {
        self.removed = true;
        self.want = Want::Down;
    }

    /// A removed service defined again: a fresh start (once its old process,
    /// if it still runs, is gone).
    pub fn revive(&mut self, new: ServiceSpec) {
        let enabled = new.enabled;
        if self.is_down() {
            self.spec = Arc::new(new);
            self.next_spec = None;
            self.state = State::Idle;
            self.failures = 0;
        } else {
            self.next_spec = Some(new);
        }
        self.removed = false;
        self.want = if enabled { Want::Up } else { Want::Down };
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::super::testing::*;
    use super::*;
    use crate::event::Target;
    use crate::exit::Exit;

    fn changed(name: &str) -> ServiceSpec {
        let mut s = spec(name);
        s.command = vec!["new".into()];
        s
    }

    #[test]
    fn a_running_service_restarts_with_its_new_definition() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        let (actions, message) = svc.redefine(changed("web"), t);
        assert_eq!(message, "web: definition changed, restarting");
        assert_eq!(
            actions,
            vec![Action::Signal {
                pid: pid(100),
                signal: Signal::SIGTERM,
                group: true
            }]
        );
        assert_eq!(svc.current_spec(), &changed("web"));
        assert_eq!(svc.spec(), &spec("web"), "until the next spawn");
        let respawn = svc.exited(Exit::Signal(Signal::SIGTERM), t);
        assert_eq!(targets(&respawn), vec![Target::Service(id(0))]);
        assert_eq!(svc.spec(), &changed("web"));
    }

    #[test]
    fn a_stopped_service_just_takes_it_and_a_disabled_one_stops() {
        let t = Instant::now();
        let mut idle = Service::new(id(0), spec("web"));
        let (actions, message) = idle.redefine(changed("web"), t);
        assert!(actions.is_empty());
        assert_eq!(message, "web: definition updated");
        assert_eq!(idle.spec(), &changed("web"));
        assert_eq!(idle.want, Want::Up);

        let mut off = changed("web");
        off.enabled = false;
        let mut svc = running(spec("web"), t);
        let (actions, message) = svc.redefine(off, t);
        assert!(actions.is_empty(), "schedule sends the stop");
        assert_eq!(message, "web: now disabled, stopping");
        assert_eq!(svc.want, Want::Down);
    }

    #[test]
    fn removed_then_defined_again() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        svc.remove();
        assert!(svc.is_removed() && svc.want == Want::Down);
        // Defined again while its old process still runs: the new definition
        // waits for the next spawn.
        svc.revive(changed("web"));
        assert!(!svc.is_removed() && svc.want == Want::Up);
        assert!(svc.has_pending_definition());
        assert_eq!(svc.pid(), Some(pid(100)));

        let mut gone = running(spec("db"), t);
        gone.remove();
        gone.stop(t, None);
        gone.exited(Exit::Code(0), t);
        gone.revive(changed("db"));
        assert_eq!(gone.state, State::Idle, "a fresh start");
        assert_eq!(gone.spec(), &changed("db"));
    }
}
