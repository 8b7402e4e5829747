//! corral: a process supervisor that runs as PID 1 in containers.
//!
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod args;
pub mod calendar;
pub mod capacity;
pub mod check;
pub mod cli;
pub mod completions;
pub mod config;
pub mod control;
pub mod credentials;
pub mod event;
pub mod exit;
pub mod files;
pub mod http;
#[cfg(test)]
mod invariants;
pub mod log;
pub mod notify;
pub mod output;
pub mod polling;
pub mod probe;
pub mod process;
pub mod protocol;
pub mod reaper;
pub mod s6;
pub mod service;
pub mod signals;
pub mod sort;
pub mod spawn;
pub mod supervisor;
pub mod syslog;
pub mod text;
pub mod watch;
