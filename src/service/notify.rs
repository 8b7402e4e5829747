//! What a service tells about itself: sd_notify datagrams (READY=1,
//! RELOADING=1, MAINPID=, STATUS=) and s6 notification-fd newlines. Each
//! carries the run it belongs to; a message from an older run is ignored.

use std::time::Instant;

use nix::unistd::Pid;

use super::{Hook, Service, State};
use crate::config::Ready;
use crate::event::{Action, NotifyMessage};
use crate::log::info;

impl Service {
    /// An s6 notification-fd newline, a line that matched `log-line`, or
    /// another readiness signal that carries nothing but its run.
    pub fn fd_ready(&mut self, run: u32, now: Instant) -> Vec<Action> {
        if run != self.starts {
            return Vec::new();
        }
        match self.state {
            State::Starting { pid, since, .. } => self.become_ready(pid, since, now),
            _ => Vec::new(),
        }
    }

    /// An sd_notify datagram from run `run`.
    pub fn notify(&mut self, run: u32, message: &NotifyMessage, now: Instant) -> Vec<Action> {
        if run != self.starts {
            return Vec::new();
        }
        if let Some(pid) = message.main_pid {
            self.main_pid = Some(Pid::from_raw(pid));
        }
        if let Some(status) = &message.status {
            self.notify_status = Some(status.clone());
        }
        if message.stopping {
            info!(service = %self.spec.name, "service says it is stopping");
        }
        if message.reloading
            && let State::Running { pid, since } = self.state
        {
            // A reload the service started itself (or the answer to our signal).
            info!(service = %self.spec.name, "service says it is reloading");
            self.state = State::Reloading {
                pid,
                since,
                ready_by: now + self.spec.ready_timeout,
                hook: Hook::None,
            };
            self.prober = None;
        }
        if message.ready {
            return match self.state {
                State::Starting { pid, since, .. } if self.spec.ready == Some(Ready::Notify) => {
                    self.become_ready(pid, since, now)
                }
                State::Reloading {
                    pid,
                    since,
                    hook: Hook::None | Hook::Done,
                    ..
                } => self.become_ready(pid, since, now),
                _ => Vec::new(),
            };
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use super::*;
    use crate::exit::Exit;

    #[test]
    fn notify_readiness_counts_only_the_current_run() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), with_ready(Ready::Notify));
        svc.start(t);
        assert!(svc.spawned(pid(100), t).is_empty());
        assert_eq!(svc.state.name(), "starting");
        assert!(!svc.is_started());
        // A datagram from an earlier run is ignored.
        svc.notify(0, &ready_msg(), t + ms(5));
        assert!(!svc.is_ready());
        svc.notify(1, &ready_msg(), t + ms(10));
        assert!(svc.is_ready() && svc.ever_ready);
        assert_eq!(svc.deadline(), None, "no ready-timeout once ready");
    }

    #[test]
    fn ready_from_a_service_that_does_not_use_notify_is_ignored() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), with_ready(Ready::Fd(3)));
        svc.start(t);
        svc.spawned(pid(100), t);
        svc.notify(1, &ready_msg(), t);
        assert!(!svc.is_ready());
        svc.fd_ready(1, t);
        assert!(svc.is_ready());
    }

    #[test]
    fn a_matched_log_line_makes_only_its_own_run_ready_within_ready_timeout() {
        let t = Instant::now();
        let pattern = crate::config::LinePattern::new("^listening").unwrap();
        let mut svc = Service::new(id(0), with_ready(Ready::LogLine(pattern)));
        svc.start(t);
        assert!(svc.spawned(pid(100), t).is_empty(), "no probe to run");
        assert_eq!(svc.deadline(), Some(t + Duration::from_secs(10)));
        // Not ready in time: the start failed.
        svc.tick(t + Duration::from_secs(10));
        assert_eq!(svc.state.name(), "stopping");
        svc.exited(
            Exit::Signal(nix::sys::signal::Signal::SIGTERM),
            t + ms(10_010),
        );
        let retry = retry_at(&svc);
        svc.tick(retry);
        svc.spawned(pid(101), retry);
        // The first run's pipe matched late: ignored; the second run's counts.
        svc.fd_ready(1, retry + ms(1));
        assert!(!svc.is_ready());
        svc.fd_ready(2, retry + ms(2));
        assert!(svc.is_ready());
    }

    #[test]
    fn status_and_mainpid_are_kept_until_the_next_spawn() {
        let t = Instant::now();
        let mut svc = running(spec("web"), t);
        let told = NotifyMessage {
            main_pid: Some(150),
            status: Some("serving".into()),
            ..NotifyMessage::default()
        };
        svc.notify(1, &told, t);
        assert_eq!(svc.main_pid, Some(pid(150)));
        assert_eq!(svc.notify_status(), Some("serving"));
        svc.exited(Exit::Code(1), t);
        svc.tick(t + Duration::from_secs(1));
        assert_eq!((svc.main_pid, svc.notify_status()), (None, None));
    }

    #[test]
    fn reloading_announced_by_the_service_waits_for_ready_again() {
        let t = Instant::now();
        let mut svc = Service::new(id(0), with_ready(Ready::Notify));
        svc.start(t);
        svc.spawned(pid(100), t);
        svc.notify(1, &ready_msg(), t);
        let reloading = NotifyMessage {
            reloading: true,
            ..NotifyMessage::default()
        };
        svc.notify(1, &reloading, t + ms(1));
        assert_eq!(svc.state.name(), "running");
        assert!(!svc.is_ready() && svc.is_started());
        assert_eq!(svc.deadline(), Some(t + ms(1) + Duration::from_secs(10)));
        svc.notify(1, &ready_msg(), t + ms(2));
        assert!(svc.is_ready());
    }
}
