//! The supervisor loop: the one thread that owns all state, spawns, signals
//! and reaps.
//!
//! It blocks in `recv_deadline(earliest deadline)` and wakes only for an
//! event or a due deadline: an idle corral makes no wakeups at all. Each
//! input becomes events (`edge`), each event goes to the pure `Supervisor`;
//! the actions it returns are carried out (`execute`), and what they produce
//! (a spawned pid, a spawn error) goes back in as events before the next
//! input is received. The spawns of one round run side by side
//! (`Flights`): their events go in once the round's children have exec'd,
//! before any other action is carried out.
//!
//! From the first spawn on, nothing here may end the process except
//! `Action::Exit`: errors are logged and become states.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use nix::sys::signal::Signal;

use super::core::Supervisor;
use super::edge::Edge;
use super::execute::{Flights, Setup, execute, reap_events};
use crate::event::{Action, Event, Input};
use crate::log::warn;
use crate::protocol::Response;

/// Run until the supervisor is done; returns corral's exit status.
pub fn run(mut sup: Supervisor, setup: Setup) -> i32 {
    // corral's own lines of one round of events reach the writer together.
    crate::log::hold();
    let mut pending: VecDeque<Action> = sup.start(Instant::now()).into();
    let mut edge = Edge::new();
    let mut flights = Flights::default();
    loop {
        loop {
            let action = match pending.pop_front() {
                Some(action) if flights.is_empty() || Flights::takes(&action) => action,
                // Whatever follows the spawns in flight comes after their
                // events, as if each had been told at once.
                Some(action) => {
                    pending.push_front(action);
                    for event in flights.land(&setup) {
                        pending.extend(sup.on_event(event, Instant::now()));
                    }
                    continue;
                }
                None if flights.is_empty() => break,
                None => {
                    for event in flights.land(&setup) {
                        pending.extend(sup.on_event(event, Instant::now()));
                    }
                    continue;
                }
            };
            match action {
                Action::Exit(code) => {
                    crate::log::stop_holding();
                    edge.answer_all(&Response::error("corral is exiting"));
                    let deadline = Instant::now() + Duration::from_secs(1);
                    if !setup.output.finish(deadline) {
                        warn!("some service output could not be flushed");
                    }
                    // What the output thread handed the log files, on disk.
                    if !setup.log_files.flush(Duration::from_secs(1)) {
                        warn!("some log-file lines could not be written before exit");
                    }
                    return code;
                }
                Action::Reply { id, response } => edge.reply(id, response),
                action => {
                    for event in execute(action, &setup, &mut flights) {
                        pending.extend(sup.on_event(event, Instant::now()));
                    }
                }
            }
        }
        crate::log::release();
        let received = match sup.next_deadline() {
            Some(deadline) => setup.inputs.recv_deadline(deadline),
            None => setup
                .inputs
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        let events = match received {
            Ok(Input::Signal(Signal::SIGCHLD)) => reap_events(),
            Ok(input) => edge.events(input, &sup),
            Err(RecvTimeoutError::Timeout) => vec![Event::Tick],
            Err(RecvTimeoutError::Disconnected) => {
                // Cannot happen while `setup` holds the receiver and the signal
                // thread its sender; if it ever does, keep supervising by deadlines.
                warn!("input channel closed");
                vec![Event::Tick]
            }
        };
        let now = Instant::now();
        for event in events {
            pending.extend(sup.on_event(event, now));
        }
    }
}
