//! The integration tests: the real `corral` binary against real processes,
//! one module per part of the SPEC, sharing one harness (`common`).
//!
//! One crate, so the harness is compiled once and cargo runs these tests side
//! by side (a test binary runs as many at a time as there are cores). Tests
//! that measure time or load, or run containers, must not share the machine
//! with these: they are in `tests/serial/`, a crate of its own that cargo runs
//! after this one, one test at a time.
//!
//! A test that cannot run here fails and says why (e.g. "needs root"): CI
//! runs the suite as root with every tool it uses installed; nothing is
//! skipped in silence.

// A test fails by panicking: unwrap, expect, panic! and indexing are how it
// says so (the workspace denies them in src/ only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod completions;
mod conditions;
mod config;
mod config_cli;
mod ctl;
mod environment;
mod exit_codes;
mod fuzz_regressions;
mod haproxy;
mod http_endpoint;
mod kubernetes;
mod lifecycle;
mod limits;
mod log_file;
mod log_line;
mod notify_child;
mod ordering;
mod output;
mod output_format;
mod output_integrity;
mod pid1;
mod pre_stop;
mod readiness;
mod reload;
mod replicas;
mod s6_commands;
mod s6_dirs;
mod s6_links;
mod s6_stage;
mod s6_wait;
mod s6rc_pipeline;
mod s6rc_runtime;
mod s6rc_tree;
mod schedule;
mod security;
mod signals;
mod success_codes;
mod syslog;
mod tini;
