//! corral's exit status (SPEC section 6): the main COMMAND's, 128+N when it
//! was killed by signal N (also under `docker stop`), an essential service's.

use crate::common::*;
use nix::sys::signal::Signal;

/// A service whose SIGTERM trap leaves `NAME.sig`; its pid goes to `NAME.pid`.
fn trapping_service(name: &str) -> String {
    format!(
        r#"
command = '''trap 'echo TERM > "$T/{name}.sig"; exit 0' TERM; echo $$ > "$T/{name}.pid"; while :; do sleep 1; done'''
"#
    )
}

#[test]
fn main_command_exit_code_is_corrals() {
    let dir = TestDir::new("main-exit-3");
    dir.service("web", &trapping_service("web"));
    let finished = dir
        .corral()
        .main([
            "sh",
            "-c",
            r#"while [ ! -s "$T/web.pid" ]; do sleep 0.01; done; exit 3"#,
        ])
        .run();
    assert_eq!(finished.code(), 3);
    // The service was stopped (gracefully) before corral exited.
    assert_eq!(finished.dir().read("web.sig").trim(), "TERM");
    let web = finished.dir().pids("web.pid")[0];
    assert!(!running(web), "web ({web}) outlived corral");
}

#[test]
fn main_command_killed_by_sigkill_gives_137() {
    let dir = TestDir::new("main-kill-9");
    let mut c = dir
        .corral()
        .main(["sh", "-c", r#"echo $$ > "$T/main.pid"; exec sleep 1000"#])
        .start();
    let main = c.wait_pids("main.pid", 1)[0];
    send(main, Signal::SIGKILL);
    assert_eq!(c.wait_exit(DEADLINE), 128 + 9);
}

/// `docker stop` of `corral -- sleep 1000`: SIGTERM to corral, which passes
/// it on to the main COMMAND; the command dies of it, so corral exits 143,
/// as tini would.
fn docker_stop_gives_143(pid1: bool) {
    let dir = TestDir::new(if pid1 {
        "docker-stop-pid1"
    } else {
        "docker-stop"
    });
    let builder = dir.corral().main(["sleep", "1000"]);
    let mut c = if pid1 {
        builder.pid1().start()
    } else {
        builder.start()
    };
    let sleeper = c.wait_for("the main command `sleep 1000` to run", |c| {
        c.descendants()
            .into_iter()
            .find(|&p| cmdline(p) == "sleep 1000")
            .ok_or_else(|| format!("{:?}", c.describe_descendants()))
    });
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait_exit(DEADLINE), 128 + 15);
    assert!(!running(sleeper), "the main command ({sleeper}) survived");
}

#[test]
fn docker_stop_gives_143_as_subreaper() {
    docker_stop_gives_143(false);
}

#[test]
fn docker_stop_gives_143_as_pid1() {
    docker_stop_gives_143(true);
}

/// An essential service that exits 4 and is not restarted takes the
/// container down with its code; the other services are stopped first.
#[test]
fn essential_service_exit_code_ends_corral() {
    let dir = TestDir::new("essential");
    dir.service("other", &trapping_service("other"));
    dir.service(
        "boss",
        r#"
command = '''while [ ! -s "$T/other.pid" ]; do sleep 0.01; done; exit 4'''
essential = true
restart = "never"
"#,
    );
    let finished = dir.corral().run();
    assert_eq!(finished.code(), 4);
    let d = finished.dir();
    assert_eq!(d.read("other.sig").trim(), "TERM", "other was not stopped");
    let other = d.pids("other.pid")[0];
    assert!(!running(other), "other ({other}) outlived corral");
}
