//! Control requests, answered by the pure core: status, start / stop /
//! restart (answered when done), signal, wait, health, shutdown.
//!
//! A request that completes later becomes a `Pending` entry, checked after
//! every event; its reply is an `Action::Reply`. Nothing here blocks: a
//! client waiting for a stop is only an entry in a list.

use std::time::{Duration, Instant};

use super::{Phase, Supervisor};
use crate::config::{Output, closest_name, parse_signal};
use crate::control::protocol::{Request, Response, ServiceStatus, Targets};
use crate::event::{Action, RequestId};
use crate::exit::Exit;
use crate::service::{State, Want, human};

#[derive(Debug, Clone)]
pub struct Pending {
    id: RequestId,
    op: PendingOp,
    deadline: Option<Instant>,
}

#[derive(Debug, Clone)]
enum PendingOp {
    /// Started (oneshots: exited 0), or failed.
    Start(Vec<usize>),
    /// Down; with whether each was running when asked.
    Stop(Vec<(usize, bool)>),
    /// Started again after the request: `starts` beyond the snapshot.
    Restart(Vec<(usize, u32)>),
    /// Started (or ready, with `true`), before the deadline.
    Wait(Vec<usize>, bool),
    /// Reloaded: each service's reload number `asked` finished, or (for a
    /// reload that is a restart, or one asked while starting) ready again in
    /// a run after `starts`.
    Reload(Vec<ReloadWait>),
}

#[derive(Debug, Clone)]
struct ReloadWait {
    service: usize,
    asked: u32,
    starts: u32,
    was_ready: bool,
}

/// How a pending start is doing for one service.
enum Progress {
    Done(String),
    Failed(String),
    Waiting,
}

impl Pending {
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn id(&self) -> RequestId {
        self.id
    }
}

impl Supervisor {
    pub(super) fn on_request(
        &mut self,
        id: RequestId,
        request: Request,
        now: Instant,
    ) -> Vec<Action> {
        let response = match request {
            Request::Status { services } => self.status(&services, now),
            Request::Start(targets) => self.request_start(id, &targets, now),
            Request::Stop(targets) => self.request_stop(id, &targets),
            Request::Restart(targets) => return self.request_restart(id, &targets, now),
            Request::Signal { signal, services } => {
                return self.request_signal(id, &signal, &services);
            }
            Request::Logs { service, .. } => self.request_logs(&service),
            Request::Wait {
                services,
                timeout_ms,
                ready,
            } => self.request_wait(id, &services, timeout_ms, ready, now),
            Request::Reload { services } if services.is_empty() => {
                if let Some(refusal) = self.not_up() {
                    Some(refusal)
                } else {
                    return vec![Action::LoadConfig { id: Some(id) }];
                }
            }
            Request::Reload { services } => return self.request_reload(id, &services, now),
            Request::Health {} => self.health(now),
            Request::Shutdown { exit_code } => return self.request_shutdown(id, exit_code, now),
        };
        response.map_or_else(Vec::new, |response| vec![Action::Reply { id, response }])
    }

    /// Indices of the named services (or all); every unknown name in one error.
    fn resolve(&self, names: &[String], all: bool) -> Result<Vec<usize>, String> {
        if all {
            return Ok((0..self.services.len())
                .filter(|&i| !self.services[i].removed)
                .collect());
        }
        if names.is_empty() {
            return Err("name at least one service (or use --all)".into());
        }
        let mut found = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match self
                .services
                .iter()
                .position(|s| s.name() == name && !s.removed)
            {
                Some(i) if !found.contains(&i) => found.push(i),
                Some(_) => {}
                None => unknown.push(self.no_such_service(name)),
            }
        }
        if unknown.is_empty() {
            Ok(found)
        } else {
            Err(unknown.join("; "))
        }
    }

    fn no_such_service(&self, name: &str) -> String {
        let live = self.services.iter().filter(|s| !s.removed);
        match closest_name(name, live.map(|s| s.name())) {
            Some(near) => format!("no service \"{name}\" (did you mean \"{near}\"?)"),
            None if self.services.is_empty() => {
                format!("no service \"{name}\" (corral has no services)")
            }
            None => format!("no service \"{name}\""),
        }
    }

    /// For requests that act on services: refused unless services are up;
    /// else the named ones (or all), or the answer saying which are unknown.
    fn up_and_resolved(&self, names: &[String], all: bool) -> Result<Vec<usize>, Box<Response>> {
        if let Some(refusal) = self.not_up() {
            return Err(Box::new(refusal));
        }
        self.resolve(names, all)
            .map_err(|e| Box::new(Response::error(e)))
    }

    fn not_up(&self) -> Option<Response> {
        match self.phase {
            Phase::Up => None,
            Phase::Init => Some(Response::error("corral is still running its init scripts")),
            _ => Some(Response::error("corral is shutting down")),
        }
    }

    fn status(&self, names: &[String], now: Instant) -> Option<Response> {
        let mut indices = match self.resolve(names, names.is_empty()) {
            Ok(indices) => indices,
            Err(e) => return Some(Response::error(e)),
        };
        if names.is_empty() {
            // By name, also after a config reload appended new services.
            indices.sort_by(|&a, &b| self.services[a].name().cmp(self.services[b].name()));
        }
        Some(Response {
            services: indices
                .into_iter()
                .map(|i| self.service_status(i, now))
                .collect(),
            orphans_reaped: Some(self.orphans_reaped),
            phase: Some(self.phase_name().to_string()),
            ..Response::ok()
        })
    }

    pub fn service_status(&self, i: usize, now: Instant) -> ServiceStatus {
        let svc = &self.services[i];
        let waiting_for: Vec<&str> = self.deps[i]
            .iter()
            .filter(|&&j| !self.services[j].is_started())
            .map(|&j| self.services[j].name())
            .collect();
        let (state, detail, next_start_ms) = match &svc.state {
            State::Idle if svc.want == Want::Up && self.phase == Phase::Up => {
                let detail = (!waiting_for.is_empty())
                    .then(|| format!("waiting for {}", waiting_for.join(", ")));
                ("starting", detail, None)
            }
            State::Idle if !svc.spec.enabled => ("stopped", Some("disabled".to_string()), None),
            State::Backoff { retry_at, why } => {
                let left = retry_at.saturating_duration_since(now);
                let detail = format!("{why}; next start in {}", human(left));
                ("backoff", Some(detail), Some(millis(left)))
            }
            State::Failed { reason } => ("failed", Some(reason.clone()), None),
            State::Starting { ready_by, .. } => {
                let left = human(ready_by.saturating_duration_since(now));
                let detail = format!("not ready yet ({left} left of ready-timeout)");
                ("starting", Some(detail), None)
            }
            State::Running { .. } if svc.spec.ready.is_some() => ("ready", None, None),
            State::Reloading { .. } => ("running", Some("reloading".to_string()), None),
            other => (other.name(), None, None),
        };
        let uptime_ms = match svc.state {
            State::Starting { since, .. }
            | State::Running { since, .. }
            | State::Reloading { since, .. } => Some(millis(now.saturating_duration_since(since))),
            _ => None,
        };
        ServiceStatus {
            name: svc.name().to_string(),
            state: state.to_string(),
            want: match svc.want {
                Want::Up => "up",
                Want::Down => "down",
            }
            .to_string(),
            pid: svc.pid().map(|p| p.as_raw()),
            uptime_ms,
            restarts: svc.restarts(),
            ready: svc.is_ready(),
            last_exit: svc.last_exit.map(|e| e.to_string()),
            last_exit_code: svc.last_exit.map(Exit::code),
            detail,
            next_start_ms,
            oneshot: svc.spec.oneshot,
            enabled: svc.spec.enabled,
            essential: svc.spec.essential,
            notify_status: svc.notify_status.clone(),
        }
    }

    fn request_start(
        &mut self,
        id: RequestId,
        targets: &Targets,
        now: Instant,
    ) -> Option<Response> {
        if let Some(refusal) = self.not_up() {
            return Some(refusal);
        }
        let indices = match self.resolve(&targets.services, targets.all) {
            Ok(indices) => indices,
            Err(e) => return Some(Response::error(e)),
        };
        for &i in &indices {
            self.want_up(i, true, self.services.len());
        }
        let _ = now;
        self.pending.push(Pending {
            id,
            op: PendingOp::Start(indices),
            deadline: None,
        });
        None
    }

    /// Want `i` up, and (transitively) whatever it starts `after` that is not
    /// up: "start web" when db is down starts db, then web. `explicit`: named
    /// by the operator, so a finished oneshot runs again.
    fn want_up(&mut self, i: usize, explicit: bool, depth: usize) {
        let svc = &mut self.services[i];
        svc.want = Want::Up;
        let restartable = matches!(
            svc.state,
            State::Stopped | State::Failed { .. } | State::Backoff { .. }
        ) || (explicit && svc.state == State::Exited);
        if restartable {
            svc.state = State::Idle;
            svc.failures = 0;
        }
        if depth == 0 {
            return;
        }
        for j in self.deps[i].clone() {
            if !self.services[j].is_started() {
                self.want_up(j, false, depth - 1);
            }
        }
    }

    fn request_stop(&mut self, id: RequestId, targets: &Targets) -> Option<Response> {
        if self.phase == Phase::Init {
            return self.not_up();
        }
        let indices = match self.resolve(&targets.services, targets.all) {
            Ok(indices) => indices,
            Err(e) => return Some(Response::error(e)),
        };
        let mut stops = Vec::new();
        for i in indices {
            let svc = &mut self.services[i];
            stops.push((i, !svc.is_down()));
            // `schedule` sends the stop signals, dependants first.
            svc.want = Want::Down;
        }
        self.pending.push(Pending {
            id,
            op: PendingOp::Stop(stops),
            deadline: None,
        });
        None
    }

    fn request_restart(&mut self, id: RequestId, targets: &Targets, now: Instant) -> Vec<Action> {
        let indices = match self.up_and_resolved(&targets.services, targets.all) {
            Ok(indices) => indices,
            Err(response) => {
                return vec![Action::Reply {
                    id,
                    response: *response,
                }];
            }
        };
        let mut actions = Vec::new();
        let mut restarts = Vec::new();
        for i in indices {
            restarts.push((i, self.services[i].starts));
            if self.services[i].pid().is_some() {
                actions.extend(self.services[i].restart(now));
            } else {
                self.want_up(i, true, self.services.len());
            }
        }
        self.pending.push(Pending {
            id,
            op: PendingOp::Restart(restarts),
            deadline: None,
        });
        actions
    }

    fn request_signal(&mut self, id: RequestId, signal: &str, names: &[String]) -> Vec<Action> {
        let reply = |response| vec![Action::Reply { id, response }];
        let signal = match parse_signal(signal) {
            Ok(signal) => signal,
            Err(e) => return reply(Response::error(e)),
        };
        let indices = match self.resolve(names, false) {
            Ok(indices) => indices,
            Err(e) => return reply(Response::error(e)),
        };
        let mut actions = Vec::new();
        let mut messages = Vec::new();
        let mut failed = Vec::new();
        for i in indices {
            let svc = &self.services[i];
            match svc.pid() {
                Some(pid) => {
                    let target = if svc.spec.kill_group {
                        "process group"
                    } else {
                        "pid"
                    };
                    messages.push(format!(
                        "{}: sent {} to {target} {}",
                        svc.name(),
                        signal.as_str(),
                        pid.as_raw()
                    ));
                    actions.push(Action::Signal {
                        pid,
                        signal,
                        group: svc.spec.kill_group,
                    });
                }
                None => failed.push(format!(
                    "{} is not running ({})",
                    svc.name(),
                    svc.state.name()
                )),
            }
        }
        let response = if failed.is_empty() {
            Response::messages(messages)
        } else {
            Response {
                messages,
                ..Response::error(failed.join("; "))
            }
        };
        actions.push(Action::Reply { id, response });
        actions
    }

    fn request_logs(&self, name: &str) -> Option<Response> {
        let i = match self.resolve(&[name.to_string()], false) {
            Ok(indices) => indices.first().copied()?,
            Err(e) => return Some(Response::error(e)),
        };
        let spec = &self.services[i].spec;
        Some(match spec.output {
            Output::Prefix => Response::ok(),
            Output::Inherit => Response::error(format!(
                "{name} writes straight to the container's output (output = \"inherit\"): corral keeps no copy; see docker logs"
            )),
            Output::Null => Response::error(format!(
                "{name} has output = \"null\": its output is discarded"
            )),
        })
    }

    fn request_wait(
        &mut self,
        id: RequestId,
        names: &[String],
        timeout_ms: Option<u64>,
        ready: bool,
        now: Instant,
    ) -> Option<Response> {
        let indices = match self.resolve(names, false) {
            Ok(indices) => indices,
            Err(e) => return Some(Response::error(e)),
        };
        self.pending.push(Pending {
            id,
            op: PendingOp::Wait(indices, ready),
            deadline: timeout_ms.map(|ms| now + Duration::from_millis(ms)),
        });
        None
    }

    /// What `ctl wait` waits for: ready (readiness passed), or merely started
    /// (a process runs; for a oneshot, it exited 0).
    fn reached(&self, i: usize, ready: bool) -> bool {
        let svc = &self.services[i];
        if ready || svc.spec.oneshot {
            svc.is_ready()
        } else {
            matches!(
                svc.state,
                State::Starting { .. } | State::Running { .. } | State::Reloading { .. }
            )
        }
    }

    fn request_reload(&mut self, id: RequestId, names: &[String], now: Instant) -> Vec<Action> {
        let indices = match self.up_and_resolved(names, false) {
            Ok(indices) => indices,
            Err(response) => {
                return vec![Action::Reply {
                    id,
                    response: *response,
                }];
            }
        };
        let mut actions = Vec::new();
        let mut waits = Vec::new();
        for i in indices {
            let svc = &mut self.services[i];
            let starts = svc.starts;
            let was_ready = svc.is_ready();
            actions.extend(svc.reload(now));
            waits.push(ReloadWait {
                service: i,
                asked: svc.reloads_asked,
                starts,
                was_ready,
            });
        }
        self.pending.push(Pending {
            id,
            op: PendingOp::Reload(waits),
            deadline: None,
        });
        actions
    }

    /// `None` while a service's reload is under way.
    fn reload_outcome(&self, w: &ReloadWait) -> Option<Result<String, String>> {
        let svc = &self.services[w.service];
        let name = svc.name();
        if let Some((n, result)) = &svc.last_reload
            && *n >= w.asked
        {
            return Some(match result {
                Ok(()) => Ok(format!("{name}: reloaded")),
                Err(e) => Err(format!("{name}: {e}")),
            });
        }
        if svc.is_ready() && (svc.starts > w.starts || !w.was_ready) {
            return Some(Ok(format!("{name}: reloaded (restarted)")));
        }
        match &svc.state {
            State::Failed { reason } => Some(Err(format!("{name} failed: {reason}"))),
            State::Backoff { why, .. } => Some(Err(format!("{name}: {why}"))),
            State::Stopped => Some(Err(format!("{name} is stopped"))),
            _ => None,
        }
    }

    fn health(&self, now: Instant) -> Option<Response> {
        if let Some(Response { error: Some(e), .. }) = self.not_up() {
            return Some(Response {
                problems: vec![e.clone()],
                ..Response::error(e)
            });
        }
        let live = self.services.iter().filter(|s| !s.removed).count();
        let wanted = self
            .services
            .iter()
            .filter(|s| s.want == Want::Up && !s.removed)
            .count();
        let problems: Vec<String> = (0..self.services.len())
            .filter(|&i| {
                let svc = &self.services[i];
                svc.want == Want::Up && !svc.removed && !svc.is_ready()
            })
            .map(|i| {
                let status = self.service_status(i, now);
                match status.detail {
                    Some(detail) => format!("{}: {} ({detail})", status.name, status.state),
                    None => format!("{}: {}", status.name, status.state),
                }
            })
            .collect();
        Some(if problems.is_empty() {
            let others = live - wanted;
            let mut message = format!("all {wanted} wanted services up");
            if others > 0 {
                message.push_str(&format!(" ({others} stopped or disabled on purpose)"));
            }
            Response::messages(vec![message])
        } else {
            Response {
                problems: problems.clone(),
                ..Response::error(format!("{} not running", problems.len()))
            }
        })
    }

    fn request_shutdown(
        &mut self,
        id: RequestId,
        exit_code: Option<i32>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let message = match self.phase {
            Phase::Init | Phase::Up => {
                if let Some(code) = exit_code {
                    self.set_exit_code(code);
                }
                tracing::info!(exit_code, "shutdown requested over the control socket");
                actions.extend(self.begin_shutdown(now));
                "shutting down"
            }
            _ => "already shutting down",
        };
        actions.push(Action::Reply {
            id,
            response: Response::messages(vec![message.to_string()]),
        });
        actions
    }

    /// Answer every pending request whose condition now holds (or can no
    /// longer hold).
    pub(super) fn check_pending(&mut self, now: Instant) -> Vec<Action> {
        let pending = std::mem::take(&mut self.pending);
        let mut actions = Vec::new();
        for p in pending {
            match self.progress(&p, now) {
                Some(response) => actions.push(Action::Reply { id: p.id, response }),
                None => self.pending.push(p),
            }
        }
        actions
    }

    fn progress(&self, p: &Pending, now: Instant) -> Option<Response> {
        let shutting_down = !matches!(self.phase, Phase::Up | Phase::Init);
        match &p.op {
            PendingOp::Start(indices) => {
                if shutting_down {
                    return Some(Response::error("corral is shutting down"));
                }
                self.all_started(indices.iter().map(|&i| (i, 0)))
            }
            PendingOp::Restart(indices) => {
                if shutting_down {
                    return Some(Response::error("corral is shutting down"));
                }
                self.all_started(indices.iter().copied())
            }
            PendingOp::Stop(indices) => {
                if indices.iter().any(|&(i, _)| !self.services[i].is_down()) {
                    return None;
                }
                let messages = indices
                    .iter()
                    .map(|&(i, was_running)| {
                        let svc = &self.services[i];
                        match (was_running, svc.last_exit) {
                            (false, _) => format!("{}: was not running", svc.name()),
                            (true, Some(exit)) if svc.stop_escalated => format!(
                                "{}: did not stop within stop-timeout {}, sent SIGKILL ({exit})",
                                svc.name(),
                                human(svc.spec.stop_timeout)
                            ),
                            (true, Some(exit)) => format!("{}: stopped ({exit})", svc.name()),
                            (true, None) => format!("{}: stopped", svc.name()),
                        }
                    })
                    .collect();
                Some(Response::messages(messages))
            }
            PendingOp::Reload(waits) => {
                let mut outcomes = Vec::new();
                for w in waits {
                    outcomes.push(self.reload_outcome(w)?);
                }
                let messages = outcomes.iter().filter_map(|o| o.clone().ok()).collect();
                let errors: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
                Some(if errors.is_empty() {
                    Response::messages(messages)
                } else {
                    Response {
                        messages,
                        ..Response::error(errors.join("; "))
                    }
                })
            }
            PendingOp::Wait(indices, ready) => {
                let ready = *ready;
                if indices.iter().all(|&i| self.reached(i, ready)) {
                    let word = if ready { "ready" } else { "started" };
                    let messages = indices
                        .iter()
                        .map(|&i| format!("{}: {word}", self.services[i].name()))
                        .collect();
                    return Some(Response::messages(messages));
                }
                if shutting_down {
                    return Some(Response::error("corral is shutting down"));
                }
                if p.deadline.is_some_and(|at| now >= at) {
                    let left: Vec<String> = indices
                        .iter()
                        .filter(|&&i| !self.reached(i, ready))
                        .map(|&i| {
                            format!(
                                "{} ({})",
                                self.services[i].name(),
                                self.service_status(i, now).state
                            )
                        })
                        .collect();
                    return Some(Response::error(format!(
                        "timed out waiting for {}",
                        left.join(", ")
                    )));
                }
                None
            }
        }
    }

    /// Every service started since `starts` (a count snapshot), or a reply
    /// naming what failed. `None`: keep waiting.
    fn all_started(&self, indices: impl Iterator<Item = (usize, u32)>) -> Option<Response> {
        let mut messages = Vec::new();
        let mut failures = Vec::new();
        for (i, since) in indices {
            match self.start_progress(i, since) {
                Progress::Done(m) => messages.push(m),
                Progress::Failed(m) => failures.push(m),
                Progress::Waiting => return None,
            }
        }
        Some(if failures.is_empty() {
            Response::messages(messages)
        } else {
            Response {
                messages,
                ..Response::error(failures.join("; "))
            }
        })
    }

    fn start_progress(&self, i: usize, since: u32) -> Progress {
        let svc = &self.services[i];
        let name = svc.name();
        let last = svc
            .last_exit
            .map_or_else(String::new, |e| format!(" ({e})"));
        if svc.want == Want::Down {
            return Progress::Failed(format!("{name} was stopped"));
        }
        if svc.starts > since && svc.is_started() {
            return Progress::Done(match svc.pid() {
                Some(pid) => format!("{name}: started (pid {})", pid.as_raw()),
                None => format!("{name}: done"),
            });
        }
        match &svc.state {
            State::Failed { reason } => Progress::Failed(format!("{name} failed: {reason}")),
            State::Stopped => Progress::Failed(format!("{name} exited{last}")),
            State::Backoff { why, .. } => Progress::Failed(format!(
                "{name}: {why}; it will be started again after its backoff"
            )),
            State::Idle if self.blocked(i, self.services.len()) => {
                Progress::Failed(format!("{name} waits for a service that failed"))
            }
            _ => Progress::Waiting,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
