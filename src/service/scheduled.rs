//! A scheduled service (`schedule`): its timer, what a tick does (a run,
//! or a skip that says why), the record of its last run, `ctl run`.
//!
//! The timer is apart from the state: it goes on while a run is under way,
//! so a tick that comes during a run is seen, skipped and logged (never two
//! runs at once). It is a deadline like any other (`Timer::Armed`'s `at`),
//! but what a tick is belongs to the wall clock, which the core never
//! reads: at the deadline the service asks the executor
//! (`Action::Clock`), which reads the wall clock and answers
//! (`Event::Clock`) whether the tick is due and which comes next
//! (`calendar::consult`). Between asking and the answer the timer is
//! `Asking`, so a second ask cannot happen (invariant 5).
//!
//! A scheduled service is "started" (for `after`, `ctl start`, `ctl
//! health`) while its timer runs; a run that fails is reported (log,
//! status) and the next tick runs it again: no restart policy applies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Service, State, Want};
use crate::calendar::{SLACK, Wall};
use crate::event::{Action, NextTick};
use crate::exit::Exit;
use crate::log::{error, info, warn};
use crate::text::human;

/// A tick taken later than this after its wall time is logged as late.
const LATE: Wall = 1000;

/// A scheduled service's timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// Not running: not scheduled, not wanted up, or no tick will ever come.
    Off,
    /// The wall clock was asked; its answer comes back at once. With the
    /// deadline that fired, if any.
    Asking(Option<Instant>),
    /// The next tick, and when it is due on the loop's clock.
    Armed(NextTick),
}

/// How the last run of a scheduled service ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    /// Its exit, or why it could not be started.
    pub result: Result<Exit, String>,
    pub ended: Instant,
    pub took: Duration,
}

impl LastRun {
    pub fn succeeded(&self) -> bool {
        self.result.as_ref().is_ok_and(|exit| exit.success())
    }

    /// `exit 0`, `killed by SIGTERM`, `could not be started: ...`.
    pub fn outcome(&self) -> String {
        match &self.result {
            Ok(exit) => exit.to_string(),
            Err(error) => format!("could not be started: {error}"),
        }
    }
}

impl Service {
    /// It has a `schedule` (the definition it runs with next).
    pub fn is_scheduled(&self) -> bool {
        self.current_spec().schedule.is_some()
    }

    pub fn timer(&self) -> &Timer {
        &self.timer
    }

    pub fn last_run(&self) -> Option<&LastRun> {
        self.last_run.as_ref()
    }

    /// Runs that have ended (or failed to start) so far.
    pub fn runs_ended(&self) -> u32 {
        self.runs_ended
    }

    /// Ticks skipped because the previous run was still going.
    pub fn skipped_ticks(&self) -> u32 {
        self.skipped_ticks
    }

    /// Its timer runs: between runs, or during one, wanted up.
    pub(super) fn is_armed(&self) -> bool {
        self.want == Want::Up
            && matches!(
                self.state,
                State::Scheduled
                    | State::Spawning
                    | State::Running { .. }
                    | State::Finishing { .. }
            )
    }

    /// Start it: a longrun or oneshot spawns; a scheduled service waits for
    /// its first tick. A pending definition takes effect now.
    pub(super) fn begin(&mut self) -> Vec<Action> {
        if let Some(spec) = self.next_spec.take() {
            self.spec = Arc::new(spec);
        }
        if self.spec.schedule.is_none() {
            return self.spawn();
        }
        self.state = State::Scheduled;
        // For the main COMMAND's wait: nothing more to wait for.
        self.ever_ready = true;
        self.ask(None)
    }

    /// Ask the wall clock about the timer (`pending`: the tick it was armed
    /// for and its deadline, which has come; none: arm it afresh).
    fn ask(&mut self, pending: Option<(Wall, Instant)>) -> Vec<Action> {
        let Some(schedule) = self.current_spec().schedule.clone() else {
            self.timer = Timer::Off;
            return Vec::new();
        };
        self.timer = Timer::Asking(pending.map(|(_, at)| at));
        vec![Action::Clock {
            service: self.id,
            schedule,
            pending: pending.map(|(tick, _)| tick),
            last: self.last_tick,
        }]
    }

    pub(super) fn timer_deadline(&self) -> Option<Instant> {
        match &self.timer {
            Timer::Armed(next) if self.want == Want::Up => Some(next.at),
            _ => None,
        }
    }

    /// The timer's deadline has come (within `SLACK`): ask whether the
    /// tick is due on the wall clock.
    pub(super) fn timer_due(&mut self, now: Instant) -> Vec<Action> {
        match &self.timer {
            Timer::Armed(next) if self.want == Want::Up && now + SLACK >= next.at => {
                let pending = (next.tick, next.at);
                self.ask(Some(pending))
            }
            _ => Vec::new(),
        }
    }

    /// The wall clock's answer (`Event::Clock`, read at `wall`): take the
    /// tick if it is due (a run, or a skip: a run still going, a dependency
    /// not started (`deps_met`)), then arm the timer for the next one.
    pub fn clocked(
        &mut self,
        due: Option<Wall>,
        wall: Wall,
        next: Result<NextTick, String>,
        deps_met: bool,
        now: Instant,
    ) -> Vec<Action> {
        let Timer::Asking(deadline) = self.timer else {
            return Vec::new();
        };
        if self.want != Want::Up {
            self.timer = Timer::Off;
            return Vec::new();
        }
        let mut actions = Vec::new();
        if let Some(tick) = due {
            // Late on the wall clock beyond the loop's own delay: the wall
            // clock jumped forward, or the machine was suspended (the
            // monotonic deadline does not count that time).
            let busy = deadline.map_or(0, |at| {
                Wall::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(0)
            });
            let jumped = wall - tick - busy;
            if jumped > LATE {
                let late = human(Duration::from_millis(u64::try_from(jumped).unwrap_or(0)));
                warn!(service = %self.spec.name, %late, "tick taken late (the wall clock jumped, or the machine slept); the ticks missed meanwhile are not made up");
            }
            self.last_tick = Some(tick);
            actions = self.take_tick(deps_met, now);
        }
        match next {
            Ok(next) => self.timer = Timer::Armed(next),
            Err(why) => {
                error!(service = %self.spec.name, schedule = %self.schedule_text(), %why, "no next tick: the schedule never runs again");
                self.timer = Timer::Off;
                if self.state == State::Scheduled {
                    self.state = State::Failed {
                        reason: format!("no next tick: {why}"),
                    };
                }
            }
        }
        actions
    }

    fn take_tick(&mut self, deps_met: bool, now: Instant) -> Vec<Action> {
        let why = match (self.state == State::Scheduled, self.pid()) {
            (true, _) if deps_met => {
                self.run_started = Some(now);
                return self.spawn();
            }
            (true, _) => "a service it runs after is not started".to_string(),
            (false, Some(pid)) => format!(
                "the previous run is still running (pid {}, for {})",
                pid.as_raw(),
                human(now.saturating_duration_since(self.run_started.unwrap_or(now)))
            ),
            (false, None) => format!("the previous run has not ended ({})", self.state.name()),
        };
        warn!(service = %self.spec.name, %why, "tick skipped");
        self.skipped_ticks += 1;
        Vec::new()
    }

    /// The process of a run was reaped: its record. A run stopped on
    /// purpose (a stop, the shutdown) is no failure to warn about: "service
    /// stopped" says what happened.
    pub(super) fn note_run(&mut self, exit: Exit, now: Instant) {
        if let Some(started) = self.run_started.take() {
            let stopped = matches!(self.state, State::Stopping { .. });
            self.record_run(Ok(exit), started, now, !stopped);
        }
    }

    fn record_run(
        &mut self,
        result: Result<Exit, String>,
        started: Instant,
        now: Instant,
        log: bool,
    ) {
        let run = LastRun {
            result,
            ended: now,
            took: now.saturating_duration_since(started),
        };
        let took = human(run.took);
        let outcome = run.outcome();
        if run.succeeded() {
            info!(service = %self.spec.name, %outcome, %took, "run done");
        } else if log {
            warn!(service = %self.spec.name, %outcome, %took, "run failed");
        }
        self.last_run = Some(run);
        self.runs_ended += 1;
    }

    /// A run ended by itself (`Ok`), or could not be started (`Err`): wait
    /// for the next tick, whatever the outcome; stopped if not wanted up
    /// (a run of a stopped service, from `ctl run`).
    pub(super) fn run_ended(&mut self, result: Result<Exit, String>, now: Instant) -> Vec<Action> {
        if let (Err(error), Some(started)) = (&result, self.run_started.take()) {
            self.record_run(Err(error.clone()), started, now, true);
        }
        if self.want != Want::Up {
            self.state = State::Stopped;
            return Vec::new();
        }
        if self.timer == Timer::Off {
            return self.begin();
        }
        self.state = State::Scheduled;
        Vec::new()
    }

    /// `ctl run`: a scheduled service or a oneshot runs now (a oneshot
    /// that already ran runs again); not while a run is under way.
    pub fn run_now(&mut self, now: Instant) -> Result<Vec<Action>, String> {
        let name = &self.spec.name;
        if let Some(pid) = self.pid() {
            let since = match self.state {
                State::Starting { since, .. } | State::Running { since, .. } => {
                    Some(self.run_started.unwrap_or(since))
                }
                _ => self.run_started,
            };
            let since = since.map_or_else(String::new, |at| {
                format!(" since {} ago", human(now.saturating_duration_since(at)))
            });
            return Err(format!(
                "{name} is already running{since} (pid {})",
                pid.as_raw()
            ));
        }
        match self.state {
            State::Scheduled
            | State::Stopped
            | State::Failed { .. }
            | State::Exited
            | State::Idle => {}
            State::Backoff { .. } if self.spec.oneshot => {}
            ref other => {
                return Err(format!(
                    "{name} is {}: try again once it is down",
                    other.name()
                ));
            }
        }
        if self.is_scheduled() {
            self.run_started = Some(now);
            if let Some(spec) = self.next_spec.take() {
                self.spec = Arc::new(spec);
            }
            return Ok(self.spawn());
        }
        self.want = Want::Up;
        self.failures = 0;
        self.up_failure = None;
        Ok(self.spawn())
    }

    /// A config reload that keeps the service scheduled: the run under way
    /// (if any) goes on, the new definition applies from the next run, and
    /// the timer follows the new schedule at once.
    pub(super) fn reschedule(
        &mut self,
        new: crate::config::ServiceSpec,
        _now: Instant,
    ) -> (Vec<Action>, String) {
        let name = new.name.clone();
        let message = if self.is_down() {
            self.spec = Arc::new(new);
            self.next_spec = None;
            format!("{name}: definition updated")
        } else {
            self.next_spec = Some(new);
            format!("{name}: definition updated (the run under way goes on; the next runs use it)")
        };
        let actions = if self.timer == Timer::Off {
            Vec::new()
        } else {
            self.ask(None)
        };
        (actions, message)
    }

    fn schedule_text(&self) -> &str {
        self.current_spec()
            .schedule
            .as_deref()
            .map_or("", |s| s.text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use crate::calendar::Utc;
    use nix::sys::signal::Signal;

    use super::super::testing::*;
    use super::*;
    use crate::calendar::{self, Schedule, When};
    use crate::event::{Child, Target};

    impl Service {
        /// Place the timer (the core's tests spread deadlines).
        pub(crate) fn set_timer_for_test(&mut self, timer: Timer) {
            self.timer = timer;
        }
    }

    /// A fake pair of clocks: the loop's `Instant` and a wall clock that
    /// agree until `step` moves the wall clock alone.
    struct Clocks {
        t0: Instant,
        wall0: Wall,
        /// How far the wall clock was moved away from the monotonic one.
        step: Wall,
    }

    impl Clocks {
        fn new() -> Clocks {
            Clocks {
                t0: Instant::now(),
                // 2026-12-04T20:00:00.250Z
                wall0: 1_796_414_400_250,
                step: 0,
            }
        }

        fn wall(&self, now: Instant) -> Wall {
            self.wall0 + now.duration_since(self.t0).as_millis() as Wall + self.step
        }

        /// The executor: answer every `Action::Clock` in `actions` (in UTC)
        /// and return what the service does with the answers.
        fn answer(&self, svc: &mut Service, actions: Vec<Action>, now: Instant) -> Vec<Action> {
            let mut out = Vec::new();
            for action in actions {
                match action {
                    Action::Clock {
                        schedule,
                        pending,
                        last,
                        ..
                    } => {
                        let wall = self.wall(now);
                        let reading = calendar::consult(&schedule, &Utc, wall, pending, last);
                        let next = reading.next.map(|tick| NextTick {
                            tick,
                            at: now + Duration::from_millis((tick - wall).max(0) as u64),
                            local: calendar::rfc3339(&Utc, tick),
                        });
                        let more = svc.clocked(reading.due, wall, next, true, now);
                        out.extend(self.answer(svc, more, now));
                    }
                    other => out.push(other),
                }
            }
            out
        }
    }

    fn every_second() -> crate::config::ServiceSpec {
        let mut s = spec("job");
        s.schedule = Some(Arc::new(Schedule {
            text: "@every 1s".into(),
            when: When::Every(1000),
        }));
        s
    }

    fn armed_at(svc: &Service) -> (Instant, Wall) {
        match svc.timer() {
            Timer::Armed(next) => (next.at, next.tick),
            other => panic!("expected an armed timer, got {other:?}"),
        }
    }

    /// A scheduled service, started (waiting for its first tick) at `c.t0`.
    fn scheduled(c: &Clocks) -> Service {
        let mut svc = Service::new(id(0), every_second());
        let actions = svc.start(c.t0);
        assert!(matches!(
            actions.as_slice(),
            [Action::Clock {
                pending: None,
                last: None,
                ..
            }]
        ));
        assert!(
            c.answer(&mut svc, actions, c.t0).is_empty(),
            "no run at the start"
        );
        svc
    }

    /// Tick at its deadline; answer the clock.
    fn tick(c: &Clocks, svc: &mut Service, now: Instant) -> Vec<Action> {
        let actions = svc.tick(now);
        c.answer(svc, actions, now)
    }

    #[test]
    fn a_scheduled_service_waits_for_its_tick_runs_and_waits_again() {
        let c = Clocks::new();
        let mut svc = scheduled(&c);
        assert_eq!(svc.state, State::Scheduled);
        assert_eq!(svc.state.name(), "scheduled");
        assert!(
            svc.is_started() && svc.is_ready(),
            "armed counts as started"
        );
        // The first tick is the next whole second of the wall clock.
        let (at, tick_wall) = armed_at(&svc);
        assert_eq!(tick_wall, 1_796_414_401_000);
        assert_eq!(at, c.t0 + ms(750));
        assert_eq!(svc.deadline(), Some(at));
        assert!(
            tick(&c, &mut svc, at - ms(11)).is_empty(),
            "not before the slack"
        );
        // Taken a few ms early (the slack), at once.
        let actions = tick(&c, &mut svc, at - ms(5));
        assert_eq!(targets(&actions), vec![Target::Service(id(0))]);
        assert_eq!(svc.last_tick, Some(tick_wall));
        let (next_at, next_wall) = armed_at(&svc);
        assert_eq!(
            next_wall,
            tick_wall + 1000,
            "the next tick, not this one again"
        );
        assert_eq!(next_at, at - ms(5) + ms(1005));
        svc.on_spawned(Child::Service, pid(100), at);
        assert_eq!(svc.state.name(), "running");
        assert!(svc.is_started());
        let t = at + ms(200);
        assert!(
            svc.reaped(Child::Service, pid(100), Exit::Code(0), t)
                .unwrap()
                .is_empty()
        );
        assert_eq!(svc.state, State::Scheduled);
        let run = svc.last_run().unwrap();
        assert!(run.succeeded());
        assert_eq!(
            (run.outcome(), run.took, run.ended),
            ("exit 0".to_string(), ms(205), t)
        );
        assert_eq!(svc.runs_ended(), 1);
        assert_eq!(svc.restarts(), 0);
        assert_eq!(
            svc.deadline(),
            Some(next_at),
            "the timer went on through the run"
        );
    }

    #[test]
    fn a_tick_during_a_run_is_skipped_and_counted_never_a_second_run() {
        let c = Clocks::new();
        let mut svc = scheduled(&c);
        let (at, _) = armed_at(&svc);
        tick(&c, &mut svc, at);
        svc.on_spawned(Child::Service, pid(100), at);
        // Still running at the next two ticks.
        for n in 1..=2 {
            let (at, _) = armed_at(&svc);
            assert!(tick(&c, &mut svc, at).is_empty(), "tick {n}: no second run");
            assert_eq!(svc.skipped_ticks(), n);
            assert_eq!(svc.pid(), Some(pid(100)));
        }
        let (next, _) = armed_at(&svc);
        svc.reaped(Child::Service, pid(100), Exit::Code(0), next - ms(100));
        assert_eq!(
            targets(&tick(&c, &mut svc, next)),
            vec![Target::Service(id(0))]
        );
    }

    #[test]
    fn a_failed_run_is_reported_and_the_next_tick_runs_it_again() {
        let c = Clocks::new();
        let mut svc = scheduled(&c);
        for (n, exit) in [Exit::Code(3), Exit::Signal(Signal::SIGSEGV)]
            .into_iter()
            .enumerate()
        {
            let (at, _) = armed_at(&svc);
            assert_eq!(targets(&tick(&c, &mut svc, at)).len(), 1, "run {n}");
            svc.on_spawned(Child::Service, pid(100), at);
            svc.reaped(Child::Service, pid(100), exit, at + ms(10));
            assert_eq!(svc.state, State::Scheduled, "no backoff, no restart");
            assert!(!svc.last_run().unwrap().succeeded());
            assert_eq!(svc.last_exit(), Some(exit));
        }
        assert_eq!(svc.last_run().unwrap().outcome(), "killed by SIGSEGV");
        // One that cannot even be spawned: reported, and the timer goes on.
        let (at, _) = armed_at(&svc);
        tick(&c, &mut svc, at);
        assert!(
            svc.on_spawn_failed(Child::Service, "No such file or directory", 127, at)
                .is_empty()
        );
        assert_eq!(svc.state, State::Scheduled);
        assert_eq!(
            svc.last_run().unwrap().outcome(),
            "could not be started: No such file or directory"
        );
        assert_eq!(svc.runs_ended(), 3);
        assert!(svc.deadline().is_some());
    }

    #[test]
    fn the_wall_clock_stepping_back_delays_the_tick_and_never_repeats_one() {
        let mut c = Clocks::new();
        let mut svc = scheduled(&c);
        let (at, tick_wall) = armed_at(&svc);
        // The wall clock is set back 10 s while the timer runs.
        c.step = -10_000;
        assert!(
            tick(&c, &mut svc, at).is_empty(),
            "not due on the wall clock"
        );
        let (again_at, again_wall) = armed_at(&svc);
        assert_eq!(again_wall, tick_wall, "the same tick waits");
        assert_eq!(again_at, at + ms(10_000));
        let actions = tick(&c, &mut svc, again_at);
        assert_eq!(targets(&actions).len(), 1);
        svc.on_spawned(Child::Service, pid(100), again_at);
        svc.reaped(Child::Service, pid(100), Exit::Code(0), again_at);
        // Set back again after that run: the tick it ran is not run again.
        c.step -= 5_000;
        let (at, next_wall) = armed_at(&svc);
        assert_eq!(next_wall, tick_wall + 1000);
        assert!(tick(&c, &mut svc, at).is_empty());
        assert_eq!(armed_at(&svc).1, tick_wall + 1000);
        assert_eq!(svc.starts(), 1);
    }

    #[test]
    fn the_wall_clock_jumping_forward_gives_one_late_run_not_a_burst() {
        let mut c = Clocks::new();
        let mut svc = scheduled(&c);
        let (at, tick_wall) = armed_at(&svc);
        // An hour jumps by (a suspended VM resumes) before the deadline fires.
        c.step = 3_600_000;
        let actions = tick(&c, &mut svc, at);
        assert_eq!(targets(&actions).len(), 1, "one run for the tick due");
        let (next_at, next_wall) = armed_at(&svc);
        assert_eq!(
            next_wall,
            tick_wall + 3_601_000,
            "the next after now: none made up"
        );
        assert_eq!(next_at, at + ms(1000));
    }

    #[test]
    fn a_stop_ends_the_timer_between_runs_and_stops_a_run_like_any_service() {
        let c = Clocks::new();
        let mut idle = scheduled(&c);
        assert!(idle.stop(c.t0, None).is_empty());
        assert_eq!(idle.state, State::Stopped);
        assert_eq!(idle.deadline(), None, "no more ticks");
        assert!(idle.is_fully_down());
        assert!(!idle.is_started());

        let mut busy = scheduled(&c);
        let (at, _) = armed_at(&busy);
        tick(&c, &mut busy, at);
        busy.on_spawned(Child::Service, pid(100), at);
        assert_eq!(
            busy.stop(at, None),
            vec![Action::Signal {
                pid: pid(100),
                signal: Signal::SIGTERM,
                group: true
            }]
        );
        assert_eq!(
            busy.deadline(),
            Some(at + Duration::from_secs(5)),
            "stop-timeout, no tick"
        );
        busy.reaped(
            Child::Service,
            pid(100),
            Exit::Signal(Signal::SIGTERM),
            at + ms(3),
        );
        assert_eq!(busy.state, State::Stopped);
        assert_eq!(busy.last_run().unwrap().outcome(), "killed by SIGTERM");
        // Started again: armed afresh, after the last tick taken.
        let actions = busy.start(at + ms(4));
        assert!(matches!(
            actions.as_slice(),
            [Action::Clock {
                pending: None,
                last: Some(_),
                ..
            }]
        ));
    }

    #[test]
    fn run_now_runs_between_ticks_but_never_beside_a_run() {
        let c = Clocks::new();
        let mut svc = scheduled(&c);
        let t = c.t0 + ms(100);
        let actions = svc.run_now(t).unwrap();
        assert_eq!(targets(&actions), vec![Target::Service(id(0))]);
        svc.on_spawned(Child::Service, pid(100), t);
        assert_eq!(
            svc.run_now(t + Duration::from_secs(12)),
            Err("job is already running since 12.0s ago (pid 100)".into())
        );
        // Its tick meanwhile is skipped.
        let (at, _) = armed_at(&svc);
        assert!(tick(&c, &mut svc, at).is_empty());
        svc.reaped(Child::Service, pid(100), Exit::Code(0), at + ms(1));
        assert_eq!(svc.state, State::Scheduled);
        // A stopped one runs once and stays stopped.
        svc.stop(at, None);
        assert_eq!(targets(&svc.run_now(at).unwrap()).len(), 1);
        svc.on_spawned(Child::Service, pid(101), at);
        svc.reaped(Child::Service, pid(101), Exit::Code(0), at + ms(1));
        assert_eq!(svc.state, State::Stopped);
        assert_eq!(svc.deadline(), None);
        assert_eq!(svc.runs_ended(), 2);
    }

    #[test]
    fn a_config_reload_reschedules_at_once_and_leaves_a_run_alone() {
        let c = Clocks::new();
        let mut svc = scheduled(&c);
        let (at, _) = armed_at(&svc);
        tick(&c, &mut svc, at);
        svc.on_spawned(Child::Service, pid(100), at);
        let mut hourly = every_second();
        hourly.schedule = Some(Arc::new(Schedule {
            text: "@every 1h".into(),
            when: When::Every(3_600_000),
        }));
        let (actions, message) = svc.redefine(hourly.clone(), at);
        assert_eq!(
            message,
            "job: definition updated (the run under way goes on; the next runs use it)"
        );
        assert!(
            c.answer(&mut svc, actions, at).is_empty(),
            "no signal to the run"
        );
        assert_eq!(svc.pid(), Some(pid(100)));
        assert_eq!(armed_at(&svc).1 % 3_600_000, 0, "on the new schedule");
        svc.reaped(Child::Service, pid(100), Exit::Code(0), at);
        assert_eq!(svc.state, State::Scheduled);
        // No longer scheduled: a longrun, started anew by the core.
        let (actions, _) = svc.redefine(spec("job"), at);
        assert!(actions.is_empty());
        assert_eq!(svc.state, State::Idle);
        assert_eq!(targets(&svc.start(at)), vec![Target::Service(id(0))]);
    }

    #[test]
    fn a_schedule_with_no_next_tick_fails_with_the_reason() {
        let c = Clocks::new();
        let mut svc = Service::new(id(0), every_second());
        svc.start(c.t0);
        assert!(
            svc.clocked(None, 0, Err("out of range".into()), true, c.t0)
                .is_empty()
        );
        assert_eq!(
            svc.state,
            State::Failed {
                reason: "no next tick: out of range".into()
            }
        );
        assert_eq!(svc.deadline(), None);
        // A late answer when not asking changes nothing.
        assert!(
            svc.clocked(Some(1), 0, Err("x".into()), true, c.t0)
                .is_empty()
        );
    }
}
