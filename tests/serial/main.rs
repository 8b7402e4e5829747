//! The tests that must have the machine to themselves, run one at a time
//! (each holds `common::serial()`): they measure timing, CPU and memory
//! under load, which a test running beside them would skew on a 2-core
//! machine, or they build and run containers.
//!
//! - `ctl_abuse`: abusive control clients while the operator's `ctl status`
//!   and a flapping service's restarts are timed.
//! - `chaos`: corral as PID 1 under a minute of kills, reloads and clients,
//!   with its fds, threads, RSS and CPU compared before and after.
//! - `docker_e2e`: the haproxy + serf + node example in real containers
//!   (or namespaces where Docker is missing), timing joins and drains.
//! - `docker_s6v3`: an s6-overlay v3 tree in linuxserver's shape
//!   (`examples/s6-v3/`) booted, restarted and stopped by corral in Docker.
//! - `docker_readonly`: corral as uid 1000 on a read-only root (`docker run
//!   --read-only --user 1000:1000`): the demo image, and ha and web as
//!   `examples/kubernetes/` runs them.
//! - `orchestrators`: the same example under docker-compose (scaled 3, 6,
//!   2) and as a Swarm stack (scaled 5, 1, a rolling update, a drain), with
//!   haproxy's running config and a client checked at each step.
//! - `deb_package`: `packaging/deb.sh`'s .deb installed, used and removed
//!   with dpkg in a container.
//! - `docker_common`: what the Docker tests share (the `docker` command, the
//!   release build of corral for the images).
//!
//! A crate of their own, not modules of `tests/it/`: cargo runs test crates
//! one after another, so nothing else runs while these do.

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

mod chaos;
mod ctl_abuse;
mod deb_package;
mod docker_common;
mod docker_e2e;
mod docker_readonly;
mod docker_s6v3;
mod orchestrators;
