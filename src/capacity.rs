//! What the services need from the kernel, and what it gives: open files
//! and processes. Checked once at startup, so that a container too small
//! for its services is told so in one line naming the limit and how to
//! raise it, instead of a few hundred services failing one by one.
//!
//! Open files: corral holds a pipe end per stream it reads of each service
//! (stdout and stderr), a socket or pipe for a readiness notification, a
//! log file; plus its own handful. When that exceeds its soft
//! `RLIMIT_NOFILE`, corral raises its own soft limit (up to the hard one)
//! and gives every child the limit it had itself before (`child_nofile`),
//! as systemd does: a program using select(2) breaks on fds above 1024, so
//! what services get is not changed behind their back. A hard limit too low
//! is a warning with the figures.
//!
//! Processes: the cgroup's `pids.max` (v2, or v1's pids controller) below
//! what the services and corral's threads need is a warning; so is
//! `RLIMIT_NPROC` for a non-root corral.

use std::sync::OnceLock;

use crate::config::{Output, Ready, ServiceSpec};

/// fds corral holds whatever the services: its stdio, threads' wake-up
/// pipes, sockets, inotify, /dev/null slots, one spare, and room to accept.
const BASE_FDS: u64 = 64;

/// Threads and the odd helper process (probes, hooks) beside the services.
const BASE_PIDS: u64 = 32;

/// The open-file limit children get when corral raised its own.
static CHILD_NOFILE: OnceLock<libc::rlimit> = OnceLock::new();

/// The `RLIMIT_NOFILE` to give a child (`spawn`, `process`), if corral
/// changed its own: what it had when it started.
pub fn child_nofile() -> Option<libc::rlimit> {
    CHILD_NOFILE.get().copied()
}

/// The fds corral holds for `spec` while it runs.
pub fn fds_for(spec: &ServiceSpec) -> u64 {
    let streams = if spec.reads_output() {
        match spec.output {
            // stdout and stderr.
            Output::Prefix | Output::Null => 2,
            Output::Inherit => 0,
        }
    } else {
        0
    };
    let notify = u64::from(matches!(spec.ready, Some(Ready::Notify | Ready::Fd(_))));
    let log_file = u64::from(spec.log_file.is_some());
    streams + notify + log_file
}

/// What the services need and what the kernel allows; the lines to log.
pub struct Report {
    pub raised: Option<(u64, u64)>,
    pub warnings: Vec<String>,
}

/// Check `services` against corral's limits; raise its own soft open-file
/// limit where it is too low and the hard one allows.
pub fn check(services: &[ServiceSpec]) -> Report {
    let n = services.len() as u64;
    let mut report = Report {
        raised: None,
        warnings: Vec::new(),
    };
    let need = BASE_FDS + services.iter().map(fds_for).sum::<u64>();
    if let Some(limit) = nofile() {
        let soft = limit.rlim_cur;
        let hard = limit.rlim_max;
        if need > soft {
            let target = need.saturating_add(need / 4).min(hard);
            if target > soft && set_nofile(target, hard) {
                let _ = CHILD_NOFILE.set(limit);
                report.raised = Some((soft, target));
            }
            if need > hard {
                report.warnings.push(format!(
                    "{n} services need about {need} open files in corral, above its hard limit of {hard} \
                     (ulimit -Hn): some will fail to start with \"Too many open files\"; \
                     raise it (docker run --ulimit nofile={need}, or ulimit -n as root)"
                ));
            }
        }
    }
    let pids = n + BASE_PIDS;
    if let Some(max) = pids_max()
        && pids > max
    {
        report.warnings.push(format!(
            "{n} services need at least {pids} processes, above the container's pids.max of {max}: \
             some will fail to start with \"Resource temporarily unavailable\"; \
             raise it (docker run --pids-limit {pids})"
        ));
    }
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } != 0
        && let Some(nproc) = rlimit(libc::RLIMIT_NPROC).map(|l| l.rlim_cur)
        && pids > nproc
    {
        report.warnings.push(format!(
            "{n} services need at least {pids} processes, above corral's limit of {nproc} \
             processes for its user (ulimit -u): some will fail to start; raise it"
        ));
    }
    report
}

/// How an error from a spawn reads with the limit behind it, where one is:
/// EMFILE names corral's open-file limit, EAGAIN from fork the process
/// limits.
pub fn explain(err: &std::io::Error) -> Option<String> {
    match err.raw_os_error()? {
        libc::EMFILE => {
            let soft = nofile()?.rlim_cur;
            Some(format!(
                "corral's open-file limit ({soft}, ulimit -n) is reached"
            ))
        }
        libc::EAGAIN => Some(
            "a process limit is reached (the container's pids.max, ulimit -u or kernel.pid_max)"
                .to_string(),
        ),
        _ => None,
    }
}

fn nofile() -> Option<libc::rlimit> {
    rlimit(libc::RLIMIT_NOFILE)
}

fn rlimit(resource: libc::__rlimit_resource_t) -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the exclusively borrowed `limit`.
    (unsafe { libc::getrlimit(resource, &mut limit) } == 0).then_some(limit)
}

fn set_nofile(soft: u64, hard: u64) -> bool {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one valid `rlimit`.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 }
}

/// The cgroup's process limit: v2's `pids.max` at the root of corral's
/// cgroup namespace, else v1's pids controller; `None` for "max" or when
/// neither is there.
fn pids_max() -> Option<u64> {
    ["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| text.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_read_stream_notification_and_log_file_is_an_fd() {
        let plain = ServiceSpec::new("a", vec!["true".into()]);
        assert_eq!(fds_for(&plain), 2, "stdout and stderr");
        let mut inherit = plain.clone();
        inherit.output = Output::Inherit;
        assert_eq!(fds_for(&inherit), 0);
        let mut notify = plain.clone();
        notify.ready = Some(Ready::Notify);
        assert_eq!(fds_for(&notify), 3);
        let mut null = plain;
        null.output = Output::Null;
        assert_eq!(fds_for(&null), 0, "nothing read");
    }

    #[test]
    fn errors_of_a_spawn_name_the_limit_behind_them() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let text = explain(&emfile).expect("EMFILE is a limit");
        assert!(text.contains("ulimit -n"), "{text}");
        let eagain = std::io::Error::from_raw_os_error(libc::EAGAIN);
        assert!(explain(&eagain).expect("a limit").contains("process limit"));
        assert_eq!(
            explain(&std::io::Error::from_raw_os_error(libc::ENOENT)),
            None
        );
    }
}
