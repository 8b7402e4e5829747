//! corral: a process supervisor that runs as PID 1 in containers.
//!
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod event;
pub mod exit;
pub mod log;
pub mod output;
pub mod process;
pub mod reaper;
pub mod service;
pub mod signals;
pub mod supervisor;
