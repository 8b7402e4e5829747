//! s6-svc's `-w` waits and `corral ctl wait`'s conditions against the real
//! binary: each returns the moment its condition holds (corral answers
//! the `wait` request then; nothing polls), and not before. A `finish`
//! script that runs until a file appears keeps `-wD` (and `ctl wait
//! --finished`) waiting, while `-wd` (and `--down`) return once the
//! process is gone; a readiness gate per run keeps `-wR` waiting while
//! `-wr` returns once the new process runs.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Long enough to see that a waiting command has not returned.
const STILL: Duration = Duration::from_millis(300);

/// s6-svc's own limit in these tests: a wait that never ends fails with 99
/// and says so, instead of running into the harness's deadline.
const LIMIT_MS: &str = "20000";

/// An s6 service directory `services/web/`: `run` records its pid and
/// `exec`s a sleeper; `finish` records its start, then runs until the file
/// `release` exists, and says it is done.
fn web_with_a_held_finish(dir: &TestDir) {
    fs::create_dir_all(dir.join("services/web")).expect("mkdir web");
    dir.executable(
        "services/web/run",
        "#!/bin/sh\necho $$ >> \"$T/web.pids\"\nexec sleep 1000\n",
    );
    dir.executable(
        "services/web/finish",
        "#!/bin/sh
echo \"$1\" >> \"$T/finish.runs\"
while [ ! -e \"$T/release\" ]; do sleep 0.02; done
echo done >> \"$T/finish.done\"
",
    );
}

/// An s6 service directory `services/web/` that declares readiness on
/// `notification-fd` 3, and is ready in its run N only once the file
/// `go.N` exists.
fn web_ready_per_run(dir: &TestDir) {
    fs::create_dir_all(dir.join("services/web")).expect("mkdir web");
    dir.write("services/web/notification-fd", "3\n");
    dir.executable(
        "services/web/run",
        "#!/bin/sh
echo $$ >> \"$T/web.pids\"
n=$(wc -l < \"$T/web.pids\")
while [ ! -e \"$T/go.$n\" ]; do sleep 0.02; done
echo >&3
exec sleep 1000
",
    );
}

fn started(dir: TestDir) -> Corral {
    dir.link_corral("s6-svc");
    let mut c = dir.corral().ctl_socket().start();
    c.wait_socket();
    c
}

fn s6_svc(c: &Corral, args: &[&str]) -> Command {
    let link: PathBuf = c.dir().join("s6-svc");
    let mut all = vec!["-T", LIMIT_MS];
    all.extend_from_slice(args);
    link_command(&link, &c.socket(), &all)
}

/// `waiting` has not returned, over `STILL`.
fn keeps_waiting(what: &str, waiting: &mut Background) {
    stays(what, STILL, || {
        if waiting.is_running() {
            Ok(())
        } else {
            Err(format!("it returned; stderr: {:?}", waiting.stderr()))
        }
    });
}

fn returned_ok(what: &str, waiting: Background) -> Ran {
    let ran = waiting.finish(DEADLINE);
    assert_eq!(ran.code, 0, "{what}: {ran:?}");
    ran
}

#[test]
fn wd_returns_when_the_process_is_gone_and_wd_capital_when_finish_is_done() {
    let dir = TestDir::new("s6-wait-down");
    web_with_a_held_finish(&dir);
    let mut c = started(dir);
    let web = c.wait_pids("web.pids", 1)[0];
    c.wait_state("web", "running");

    // A wait alone, for finished: it keeps waiting while web runs.
    let mut finished = Background::spawn(&mut s6_svc(&c, &["-wD", "web"]));
    keeps_waiting("s6-svc -wD while web runs", &mut finished);

    // -wd -d: back once web is gone, while its finish script is held.
    let ran = run_within(&mut s6_svc(&c, &["-wd", "-d", "web"]), DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(!c.process_running(web), "web {web} still runs");
    c.wait_file("finish.runs");
    keeps_waiting("s6-svc -wD while finish runs", &mut finished);

    // -wD -d on a service that is down but not finished: it waits too.
    let mut stop = Background::spawn(&mut s6_svc(&c, &["-wD", "-d", "web"]));
    keeps_waiting("s6-svc -wD -d while finish runs", &mut stop);
    assert!(finished.is_running(), "-wD returned");

    c.dir().write("release", "");
    returned_ok("s6-svc -wD once finish is done", finished);
    returned_ok("s6-svc -wD -d once finish is done", stop);
    // Answered only after the finish script ended: its last line is there.
    assert_eq!(c.dir().lines("finish.done"), vec!["done"]);
    let status = c.ctl_service("web").expect("web in status");
    assert_eq!(
        (status["state"].as_str(), status["want"].as_str()),
        (Some("stopped"), Some("down")),
        "{status}"
    );
    // Down already: at once.
    let ran = run_within(&mut s6_svc(&c, &["-wd", "web"]), DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
}

#[test]
fn wr_returns_once_the_new_process_runs_and_wr_capital_once_it_is_ready() {
    let dir = TestDir::new("s6-wait-restart");
    web_ready_per_run(&dir);
    dir.write("go.1", "");
    let mut c = started(dir);
    c.wait_state("web", "ready");

    // -wr -r: back once run 2 runs, though it is not ready (no go.2).
    let ran = run_within(&mut s6_svc(&c, &["-wr", "-r", "web"]), DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    let pids = c.wait_pids("web.pids", 2);
    let status = c.ctl_service("web").expect("web in status");
    assert_eq!(status["pid"].as_i64(), Some(i64::from(pids[1])), "{status}");
    assert_eq!(status["ready"], false, "{status}");

    // -wR alone: a run after run 2, ready; run 2 getting ready is not it.
    let mut later = Background::spawn(&mut s6_svc(&c, &["-wR", "web"]));
    c.dir().write("go.2", "");
    c.wait_state("web", "ready");
    keeps_waiting("s6-svc -wR while only run 2 is ready", &mut later);

    // -wR -r: run 3 is spawned, but keeps it waiting until it is ready.
    let mut restarted = Background::spawn(&mut s6_svc(&c, &["-wR", "-r", "web"]));
    let pids = c.wait_pids("web.pids", 3);
    keeps_waiting("s6-svc -wR -r while run 3 is not ready", &mut restarted);
    assert!(later.is_running(), "-wR waits for readiness too");
    c.dir().write("go.3", "");
    returned_ok("s6-svc -wR -r once run 3 is ready", restarted);
    returned_ok("s6-svc -wR once run 3 is ready", later);
    let status = c.ctl_service("web").expect("web in status");
    assert_eq!(status["pid"].as_i64(), Some(i64::from(pids[2])), "{status}");
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["run"], 3, "{status}");
}

#[test]
fn a_w_that_never_holds_fails_with_99_at_its_deadline() {
    let dir = TestDir::new("s6-wait-timeout");
    web_with_a_held_finish(&dir);
    let mut c = started(dir);
    c.wait_state("web", "running");
    let link = c.dir().join("s6-svc");
    let ran = run_within(
        &mut link_command(&link, &c.socket(), &["-T", "300", "-wr", "web"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 99, "{ran:?}");
    assert_eq!(ran.stderr, "s6-svc: fatal: web: timed out after 300 ms\n");
    assert!(ran.took >= Duration::from_millis(300), "{ran:?}");
    c.dir().write("release", "");
}

#[test]
fn ctl_wait_down_and_finished_return_when_each_holds() {
    let dir = TestDir::new("ctl-wait-down");
    web_with_a_held_finish(&dir);
    let mut c = started(dir);
    c.wait_state("web", "running");

    let mut down = c.ctl_background(&["wait", "web", "--down"]);
    let mut finished = c.ctl_background(&["wait", "web", "--finished"]);
    keeps_waiting("ctl wait --down while web runs", &mut down);
    assert!(finished.is_running(), "ctl wait --finished returned");

    let ran = c.ctl(&["signal", "KILL", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    c.wait_file("finish.runs");
    let ran = returned_ok("ctl wait --down", down);
    assert_eq!(ran.stdout, "web: down\n");
    keeps_waiting("ctl wait --finished while finish runs", &mut finished);

    c.dir().write("release", "");
    let ran = returned_ok("ctl wait --finished", finished);
    assert_eq!(ran.stdout, "web: finished\n");
    assert_eq!(c.dir().lines("finish.done"), vec!["done"]);

    // Killed, web was started again by its restart policy, before this
    // wait: it counts from its run when it asks.
    c.wait_pids("web.pids", 2);
    c.wait_state("web", "running");
    let ran = c.ctl(&["wait", "web", "--restarted", "--timeout", "300ms"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(
        ran.stderr,
        "corral ctl: timed out waiting for web (running)\n"
    );
    let mut restarted = c.ctl_background(&["wait", "web", "--restarted"]);
    keeps_waiting("ctl wait --restarted while web runs", &mut restarted);
    let ran = c.ctl(&["signal", "KILL", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let ran = returned_ok("ctl wait --restarted", restarted);
    assert_eq!(ran.stdout, "web: restarted\n");
    c.wait_pids("web.pids", 3);
}
