//! Restarts and stops of single services: SIGKILL -> restart (as a subreaper
//! and as PID 1), `restart-delay`, `max-restarts`, `stop-timeout`.

use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;

/// A service that records each of its pids and then just runs.
const WEB: &str = r#"
command = '''echo $$ >> "$T/web.pids"; exec sleep 1000'''
"#;

/// Kill the service's process with SIGKILL (behind corral's back): corral
/// must reap it and start a new one.
fn sigkilled_service_is_restarted(pid1: bool) {
    let dir = TestDir::new(if pid1 { "restart-pid1" } else { "restart" });
    dir.service("web", WEB);
    let builder = dir.corral();
    let mut c = if pid1 {
        builder.pid1().start()
    } else {
        builder.start()
    };

    let first = c.wait_pids("web.pids", 1)[0];
    assert!(
        c.process_running(first),
        "web's first process {first} is not running"
    );
    c.signal_process(first, Signal::SIGKILL);

    let pids = c.wait_pids("web.pids", 2);
    let second = pids[1];
    assert_ne!(first, second, "the restarted service has the old pid");
    c.wait_for(
        "the killed process to be gone and the new one to run",
        |c| match (c.process_running(first), c.process_running(second)) {
            (false, true) => Ok(()),
            seen => Err(format!("(first running, second running) = {seen:?}")),
        },
    );
    assert_eq!(
        c.dir().pids("web.pids").len(),
        2,
        "one kill, one restart: {:?}",
        c.dir().pids("web.pids")
    );

    let host_second = c
        .host_pid(second)
        .expect("host pid of web's second process");
    assert_eq!(c.stop(), 0, "no main command, stopped by SIGTERM: exit 0");
    assert!(
        !running(host_second),
        "web ({host_second}) survived corral's shutdown"
    );
}

#[test]
fn sigkilled_service_is_restarted_as_subreaper() {
    sigkilled_service_is_restarted(false);
}

#[test]
fn sigkilled_service_is_restarted_as_pid1() {
    sigkilled_service_is_restarted(true);
}

/// `restart-delay = "0s"`: a service that exits at once is restarted again
/// and again without waiting (with the default 100 ms doubling, 25 runs would
/// take hours, far past the deadline).
#[test]
fn zero_restart_delay_restarts_a_flapping_service_promptly() {
    let dir = TestDir::new("flap");
    dir.service(
        "flap",
        r#"
command = '''echo $$ >> "$T/flap.pids"; exit 1'''
restart-delay = "0s"
"#,
    );
    let mut c = dir.corral().start();
    let pids = c.wait_pids("flap.pids", 25);
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        pids.len(),
        "each run is a new process: {pids:?}"
    );
    assert!(c.is_alive(), "a flapping service must not end corral");
    assert_eq!(c.stop(), 0);
}

/// `max-restarts = 2`: three runs in all (the first start and two restarts),
/// then the service is `failed` and corral goes on with the others.
#[test]
fn max_restarts_gives_up_after_three_runs_and_corral_keeps_running() {
    let dir = TestDir::new("max-restarts");
    dir.service(
        "limited",
        r#"
command = '''echo $$ >> "$T/limited.pids"; exit 1'''
restart-delay = "10ms"
max-restarts = 2
"#,
    );
    dir.service(
        "steady",
        r#"
command = '''echo $$ >> "$T/steady.pids"; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().start();
    let steady = c.wait_pids("steady.pids", 1)[0];

    // The give-up is the one thing that tells "no further restart is coming"
    // from "the next restart is late", so it is awaited through corral's log.
    c.wait_for(
        "corral to give up on `limited` (a log line naming it)",
        |c| {
            let gave_up = c.stderr().lines().any(|l| {
                l.contains("limited")
                    && ["giving up", "gave up", "failed"]
                        .iter()
                        .any(|w| l.contains(w))
            });
            match gave_up {
                true => Ok(()),
                false => Err(format!(
                    "{} runs so far: {:?}",
                    c.dir().pids("limited.pids").len(),
                    c.dir().pids("limited.pids")
                )),
            }
        },
    );
    let runs = c.dir().pids("limited.pids");
    assert_eq!(runs.len(), 3, "max-restarts = 2 means 3 runs: {runs:?}");

    assert!(c.is_alive(), "a failed service must not end corral");
    assert!(c.process_running(steady), "the other service was disturbed");
    assert_eq!(c.dir().pids("steady.pids"), vec![steady]);
    assert_eq!(c.stop(), 0);
    assert_eq!(
        c.dir().pids("limited.pids").len(),
        3,
        "restarted after giving up"
    );
}

/// A service that ignores SIGTERM is SIGKILLed at its `stop-timeout`, long
/// before the shutdown budget ends; a polite sibling still stops on SIGTERM.
#[test]
fn service_ignoring_sigterm_is_killed_at_its_stop_timeout() {
    let dir = TestDir::new("stop-timeout");
    dir.service(
        "stubborn",
        r#"
command = '''trap '' TERM; echo $$ > "$T/stubborn.pid"; exec sleep 1000'''
stop-timeout = "1s"
"#,
    );
    dir.service(
        "polite",
        r#"
command = '''trap 'echo TERM > "$T/polite.sig"; exit 0' TERM; echo $$ > "$T/polite.pid"; while :; do sleep 1; done'''
"#,
    );
    let mut c = dir.corral().args(["--shutdown-timeout", "60s"]).start();
    let stubborn = c.wait_pids("stubborn.pid", 1)[0];
    c.wait_pids("polite.pid", 1);
    // The premise: the process really ignores SIGTERM (SigIgn bit 15).
    c.wait_for("stubborn to ignore SIGTERM", |_| {
        let status =
            std::fs::read_to_string(format!("/proc/{stubborn}/status")).unwrap_or_default();
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        if ignored & (1 << (libc::SIGTERM - 1)) != 0 {
            Ok(())
        } else {
            Err(format!("SigIgn = {ignored:#x}"))
        }
    });

    c.signal(Signal::SIGTERM);
    // 1 s stop timeout against a 60 s budget: corral must be done well
    // inside 30 s; if it waited for the budget, this times out.
    let code = c.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "no main command: exit 0");
    assert!(!running(stubborn), "stubborn ({stubborn}) survived");
    assert_eq!(c.dir().read("polite.sig").trim(), "TERM");
    let stderr = c.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("SIGKILL") && l.contains("stubborn")),
        "no log line about SIGKILLing stubborn:\n{stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("SIGKILL") && l.contains("polite")),
        "polite stopped on SIGTERM and must not be SIGKILLed:\n{stderr}"
    );
}

/// `stop-signal = "INT"`: the service is stopped with SIGINT, not SIGTERM.
#[test]
fn stop_signal_is_sent_instead_of_sigterm() {
    let dir = TestDir::new("stop-signal");
    dir.service(
        "serf",
        r#"
stop-signal = "INT"
command = '''
trap 'echo INT >> "$T/serf.sig"; exit 0' INT
trap 'echo TERM >> "$T/serf.sig"; exit 0' TERM
echo $$ > "$T/serf.pid"
while :; do sleep 1; done
'''
"#,
    );
    let mut c = dir.corral().start();
    c.wait_pids("serf.pid", 1);
    assert_eq!(c.stop(), 0);
    assert_eq!(c.dir().lines("serf.sig"), ["INT"]);
}

/// A service that daemonizes a child into its own session (out of the
/// service's process group, so the stop signal does not reach it): at
/// shutdown corral still sends it SIGTERM (SPEC section 6: every remaining
/// process), as a subreaper and as PID 1.
fn escaped_daemon_gets_sigterm_at_shutdown(pid1: bool) {
    let dir = TestDir::new(if pid1 { "daemon-pid1" } else { "daemon" });
    dir.service(
        "spawner",
        r#"
command = '''
setsid sh -c 'trap "echo TERM > \"\$T/daemon.sig\"; exit 0" TERM; echo $$ > "$T/daemon.pid"; while :; do sleep 1; done' &
exec sleep 1000
'''
"#,
    );
    let builder = dir.corral();
    let mut c = if pid1 {
        builder.pid1().start()
    } else {
        builder.start()
    };
    let daemon = c.wait_pids("daemon.pid", 1)[0];
    let host = c.host_pid(daemon).expect("the daemon runs under corral");
    assert_eq!(c.stop(), 0);
    assert_eq!(
        c.dir().read("daemon.sig").trim(),
        "TERM",
        "the escaped daemon was not sent SIGTERM at shutdown"
    );
    assert!(!running(host), "the daemon ({host}) outlived corral");
}

#[test]
fn escaped_daemon_gets_sigterm_at_shutdown_as_subreaper() {
    escaped_daemon_gets_sigterm_at_shutdown(false);
}

#[test]
fn escaped_daemon_gets_sigterm_at_shutdown_as_pid1() {
    escaped_daemon_gets_sigterm_at_shutdown(true);
}
