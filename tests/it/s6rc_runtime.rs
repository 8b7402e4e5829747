//! s6-overlay v3 at run time (SPEC section 9): what the supervisor does with
//! an s6-rc tree once it is read, and the S6_* variables of stage 2.
//!
//! - oneshot `down`s run at the shutdown in reverse dependency order,
//!   independent ones together; a `down` that hangs is killed at its
//!   `timeout-down` and the shutdown goes on; `ctl stop` of a oneshot runs
//!   its `down`, `ctl start` its `up` again;
//! - `timeout-up` of a oneshot, and a boot step that fails, under each
//!   `S6_BEHAVIOUR_IF_STAGE2_FAILS` (stop: the container ends with the
//!   step's code; continue: its dependants never start, the main COMMAND
//!   runs anyway); `timeout-finish`;
//! - `S6_CMD_WAIT_FOR_SERVICES_MAXTIME`, `S6_CMD_RECEIVE_SIGNALS`,
//!   `S6_KILL_FINISH_MAXTIME`, and a wait for a service that will never come
//!   up failing at once (s6-svwait's permanent failure).
//!
//! The trees are written under `$T/s6-rc.d` and passed with `--s6-rc-dir`;
//! each `up` / `down` holds one absolute path, as linuxserver's trees do.

use std::fs;
use std::path::PathBuf;

use nix::sys::signal::Signal;

use crate::common::*;

/// Where the tests write their s6-rc source tree.
const TREE: &str = "s6-rc.d";

/// `$T/s6-rc.d/NAME/FILE` with `contents`.
fn tree_file(dir: &TestDir, name: &str, file: &str, contents: &str) {
    let path = dir.join(&format!("{TREE}/{name}"));
    fs::create_dir_all(&path).expect("mkdir service definition dir");
    fs::write(path.join(file), contents).expect("write tree file");
}

/// `NAME/dependencies.d/DEP` for each of `deps`.
fn depends(dir: &TestDir, name: &str, deps: &[&str]) {
    let path = dir.join(&format!("{TREE}/{name}/dependencies.d"));
    fs::create_dir_all(&path).expect("mkdir dependencies.d");
    for dep in deps {
        fs::write(path.join(dep), "").expect("write dependency");
    }
}

/// An executable sh script `$T/scripts/FILE` with `body`; its absolute path.
fn script(dir: &TestDir, file: &str, body: &str) -> PathBuf {
    fs::create_dir_all(dir.join("scripts")).expect("mkdir scripts");
    dir.executable(&format!("scripts/{file}"), &format!("#!/bin/sh\n{body}"))
}

/// A oneshot NAME: `up` (and `down`, if any) run these sh bodies.
fn oneshot(dir: &TestDir, name: &str, up: &str, down: Option<&str>, deps: &[&str]) {
    tree_file(dir, name, "type", "oneshot\n");
    let up = script(dir, &format!("{name}-up"), up);
    tree_file(dir, name, "up", &format!("{}\n", up.display()));
    if let Some(down) = down {
        let down = script(dir, &format!("{name}-down"), down);
        tree_file(dir, name, "down", &format!("{}\n", down.display()));
    }
    depends(dir, name, deps);
}

/// A longrun NAME whose `run` is this sh body.
fn longrun(dir: &TestDir, name: &str, run: &str, deps: &[&str]) {
    tree_file(dir, name, "type", "longrun\n");
    let path = dir.join(&format!("{TREE}/{name}/run"));
    fs::write(&path, format!("#!/bin/sh\n{run}")).expect("write run");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod run");
    depends(dir, name, deps);
}

/// The `user` bundle, holding `contents`.
fn user(dir: &TestDir, contents: &[&str]) {
    tree_file(dir, "user", "type", "bundle\n");
    let path = dir.join(&format!("{TREE}/user/contents.d"));
    fs::create_dir_all(&path).expect("mkdir contents.d");
    for name in contents {
        fs::write(path.join(name), "").expect("write contents entry");
    }
}

/// corral with the tree, and `S6_BEHAVIOUR_IF_STAGE2_FAILS` = `stage2`.
fn with_tree(dir: TestDir, stage2: &str) -> CorralBuilder {
    let tree = dir.join(TREE).display().to_string();
    dir.corral()
        .args(["--s6-rc-dir", &tree])
        .env("S6_BEHAVIOUR_IF_STAGE2_FAILS", stage2)
}

/// A line appended to `$T/order`.
fn record(what: &str) -> String {
    format!("echo \"{what}\" >> \"$T/order\"\n")
}

/// A longrun body: records its start, and its stop on SIGTERM.
fn recorded_longrun(name: &str) -> String {
    format!(
        "trap 'echo \"stop {name}\" >> \"$T/order\"; kill $!; exit 0' TERM\n{}sleep 1000 &\nwait\n",
        record(&format!("run {name}"))
    )
}

/// Oneshot `name` done, not only past its last line: one still running at
/// a stop gets its stop signal and has no down to run. Needs `ctl_socket`.
fn wait_exited(c: &mut Corral, name: &str) {
    c.wait_for(&format!("{name} exited"), |c| {
        let status = c.ctl(&["status", name]);
        if status.stdout.contains("exited") {
            Ok(())
        } else {
            Err(status.stdout)
        }
    });
}

fn wait_line(c: &mut Corral, rel: &str, line: &str) {
    c.wait_for(&format!("{line:?} in {rel}"), |c| {
        let lines = if c.dir().exists(rel) {
            c.dir().lines(rel)
        } else {
            Vec::new()
        };
        if lines.iter().any(|l| l == line) {
            Ok(())
        } else {
            Err(format!("{lines:?}"))
        }
    });
}

#[test]
fn oneshot_downs_run_at_shutdown_in_reverse_dependency_order() {
    let dir = TestDir::new("s6rc-down-order");
    oneshot(&dir, "a", &record("up a"), Some(&record("down a")), &[]);
    oneshot(&dir, "b", &record("up b"), Some(&record("down b")), &["a"]);
    longrun(&dir, "svc", &recorded_longrun("svc"), &["b"]);
    user(&dir, &["svc"]);
    let mut c = with_tree(dir, "2").start();
    wait_line(&mut c, "order", "run svc");
    assert_eq!(c.stop(), 0, "{}", c.output_excerpt());
    assert_eq!(
        c.dir().lines("order"),
        ["up a", "up b", "run svc", "stop svc", "down b", "down a"],
        "{}",
        c.output_excerpt()
    );
}

#[test]
fn independent_downs_run_together() {
    let dir = TestDir::new("s6rc-down-together");
    // Each down says it began, then waits (at most 10 s) for the other's.
    for (me, other) in [("x", "y"), ("y", "x")] {
        let down = format!(
            "touch \"$T/{me}.down\"
i=0
while [ ! -e \"$T/{other}.down\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
[ -e \"$T/{other}.down\" ] && echo together > \"$T/{me}.result\"
exit 0
"
        );
        oneshot(&dir, me, &record(&format!("up {me}")), Some(&down), &[]);
    }
    user(&dir, &["x", "y"]);
    let mut c = with_tree(dir, "2").ctl_socket().start();
    wait_exited(&mut c, "x");
    wait_exited(&mut c, "y");
    assert_eq!(c.stop(), 0, "{}", c.output_excerpt());
    for me in ["x", "y"] {
        assert!(
            c.dir().exists(&format!("{me}.result")),
            "{me}'s down did not see the other's running: {}",
            c.output_excerpt()
        );
    }
}

#[test]
fn a_hanging_down_is_killed_at_its_timeout_down_and_the_shutdown_goes_on() {
    let dir = TestDir::new("s6rc-down-hangs");
    longrun(&dir, "base-svc", &recorded_longrun("base-svc"), &[]);
    oneshot(
        &dir,
        "hang",
        &record("up hang"),
        Some("echo $$ > \"$T/hang.down.pid\"\nexec sleep 1000\n"),
        &["base-svc"],
    );
    tree_file(&dir, "hang", "timeout-down", "300\n");
    user(&dir, &["hang"]);
    let mut c = with_tree(dir, "2")
        .args(["--shutdown-timeout", "20s"])
        .ctl_socket()
        .start();
    wait_exited(&mut c, "hang");
    assert_eq!(c.stop(), 0, "{}", c.output_excerpt());
    let down: i32 = c.dir().read("hang.down.pid").trim().parse().expect("pid");
    assert!(!running(down) || zombie(down), "the down still runs");
    // The longrun it depends on was stopped after the down was killed.
    assert_eq!(
        c.dir().lines("order").last().map(String::as_str),
        Some("stop base-svc")
    );
    let err = c.stderr();
    assert!(
        err.contains("down still running after stop-timeout 300ms") && err.contains("service=hang"),
        "{err}"
    );
}

#[test]
fn ctl_stop_runs_a_oneshots_down_and_ctl_start_its_up_again() {
    let dir = TestDir::new("s6rc-down-ctl");
    oneshot(
        &dir,
        "setup",
        &record("up setup"),
        Some(&record("down setup")),
        &[],
    );
    user(&dir, &["setup"]);
    let mut c = with_tree(dir, "2").ctl_socket().start();
    wait_exited(&mut c, "setup");
    let stop = c.ctl(&["stop", "setup"]);
    assert_eq!(stop.code, 0, "{stop:?}");
    assert_eq!(c.dir().lines("order"), ["up setup", "down setup"]);
    let start = c.ctl(&["start", "setup"]);
    assert_eq!(start.code, 0, "{start:?}");
    assert_eq!(
        c.dir().lines("order"),
        ["up setup", "down setup", "up setup"]
    );
    assert_eq!(c.stop(), 0);
    assert_eq!(
        c.dir().lines("order"),
        ["up setup", "down setup", "up setup", "down setup"]
    );
}

/// `slow` (a oneshot past its 300 ms `timeout-up`), `app` after it, `other`
/// beside them; the main COMMAND waits for `other`, then says it ran.
fn timed_out_boot(name: &str) -> TestDir {
    let dir = TestDir::new(name);
    oneshot(
        &dir,
        "slow",
        "echo $$ > \"$T/slow.pid\"\nexec sleep 1000\n",
        None,
        &[],
    );
    tree_file(&dir, "slow", "timeout-up", "300\n");
    longrun(
        &dir,
        "app",
        "touch \"$T/app.ran\"\nexec sleep 1000\n",
        &["slow"],
    );
    longrun(
        &dir,
        "other",
        "touch \"$T/other.ran\"\nexec sleep 1000\n",
        &[],
    );
    user(&dir, &["app", "other"]);
    dir
}

const MAIN_AFTER_OTHER: [&str; 3] = [
    "sh",
    "-c",
    "while [ ! -e \"$T/other.ran\" ]; do sleep 0.05; done; touch \"$T/main.ran\"",
];

#[test]
fn timeout_up_under_stage2_stop_ends_the_container_with_code_1() {
    let dir = timed_out_boot("s6rc-timeout-stop");
    let done = with_tree(dir, "2").main(MAIN_AFTER_OTHER).run();
    assert_eq!(done.code(), 1, "{}", done.stderr());
    let d = done.dir();
    assert!(
        !d.exists("app.ran"),
        "a dependant of the failed step started"
    );
    assert!(!d.exists("main.ran"), "the main COMMAND ran");
    let slow: i32 = d.read("slow.pid").trim().parse().expect("pid");
    assert!(!running(slow) || zombie(slow));
    let err = done.stderr();
    assert!(
        err.contains("boot step failed to come up") && err.contains("timed out after 300ms"),
        "{err}"
    );
}

#[test]
fn timeout_up_under_stage2_continue_holds_dependants_and_runs_the_main_command() {
    let dir = timed_out_boot("s6rc-timeout-continue");
    let done = with_tree(dir, "0").main(MAIN_AFTER_OTHER).run();
    assert_eq!(done.code(), 0, "{}", done.stderr());
    let d = done.dir();
    assert!(d.exists("main.ran") && d.exists("other.ran"));
    assert!(
        !d.exists("app.ran"),
        "a dependant of the failed step started"
    );
    assert!(done.stderr().contains("boot step failed to come up"));
}

#[test]
fn a_failing_boot_step_under_stage2_stop_gives_the_container_its_code() {
    let dir = TestDir::new("s6rc-step-code");
    oneshot(&dir, "init-config", "exit 7\n", None, &[]);
    longrun(
        &dir,
        "app",
        "touch \"$T/app.ran\"\nexec sleep 1000\n",
        &["init-config"],
    );
    user(&dir, &["app"]);
    let done = with_tree(dir, "2").run();
    assert_eq!(done.code(), 7, "{}", done.stderr());
    assert!(!done.dir().exists("app.ran"));
}

#[test]
fn timeout_finish_bounds_a_longruns_finish_script() {
    let dir = TestDir::new("s6rc-timeout-finish");
    longrun(&dir, "web", "echo $$ >> \"$T/web.pids\"\nexit 3\n", &[]);
    let finish = dir.join(&format!("{TREE}/web/finish"));
    fs::write(
        &finish,
        "#!/bin/sh\necho $$ >> \"$T/finish.pids\"\nexec sleep 1000\n",
    )
    .expect("write finish");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&finish, fs::Permissions::from_mode(0o755)).expect("chmod");
    tree_file(&dir, "web", "timeout-finish", "300\n");
    user(&dir, &["web"]);
    let mut c = with_tree(dir, "0").start();
    // The first finish is killed at 300 ms: web runs again.
    c.wait_pids("web.pids", 2);
    let finish = c.dir().pids("finish.pids")[0];
    assert!(!running(finish) || zombie(finish));
    c.wait_stderr_line(&["finish script still running after 300ms", "service=web"]);
    c.stop();
}

// ---- the S6_* variables, with plain service files ----

#[test]
fn cmd_wait_maxtime_under_stage2_stop_ends_the_container_with_code_1() {
    let dir = TestDir::new("s6rc-maxtime-stop");
    dir.service(
        "gate",
        "command = 'exec sleep 1000'\nready = { fd = 3 }\nready-timeout = \"60s\"\n",
    );
    let done = dir
        .corral()
        .env("S6_BEHAVIOUR_IF_STAGE2_FAILS", "2")
        .env("S6_CMD_WAIT_FOR_SERVICES_MAXTIME", "500")
        .main(["sh", "-c", "touch \"$T/main.ran\""])
        .run();
    assert_eq!(done.code(), 1, "{}", done.stderr());
    assert!(!done.dir().exists("main.ran"));
    let err = done.stderr();
    assert!(
        err.contains("S6_CMD_WAIT_FOR_SERVICES_MAXTIME") && err.contains("gate (starting)"),
        "{err}"
    );
}

#[test]
fn cmd_wait_maxtime_under_stage2_continue_starts_the_main_command_anyway() {
    let dir = TestDir::new("s6rc-maxtime-continue");
    dir.service(
        "gate",
        "command = 'exec sleep 1000'\nready = { fd = 3 }\nready-timeout = \"60s\"\n",
    );
    let done = dir
        .corral()
        .env("S6_BEHAVIOUR_IF_STAGE2_FAILS", "0")
        .env("S6_CMD_WAIT_FOR_SERVICES_MAXTIME", "500")
        .main(["sh", "-c", "touch \"$T/main.ran\""])
        .run();
    assert_eq!(done.code(), 0, "{}", done.stderr());
    assert!(done.dir().exists("main.ran"));
}

#[test]
fn cmd_receive_signals_forwards_sigterm_to_the_main_command() {
    let dir = TestDir::new("s6rc-receive-signals");
    dir.service("web", &sleeper("web"));
    let mut c = dir
        .corral()
        .env("S6_CMD_RECEIVE_SIGNALS", "1")
        .main([
            "sh",
            "-c",
            "trap 'echo term >> \"$T/main.signals\"' TERM
trap 'exit 5' USR1
echo up > \"$T/main.up\"
while :; do sleep 0.05; done",
        ])
        .start();
    let web = c.wait_pids("web.pids", 1)[0];
    c.wait_file("main.up");
    c.signal(Signal::SIGTERM);
    c.wait_file("main.signals");
    // No shutdown: corral and web run on.
    assert!(c.is_alive(), "{}", c.output_excerpt());
    assert!(c.process_running(web));
    assert!(!c.stderr().contains("shutting down"), "{}", c.stderr());
    // The main COMMAND's exit ends the run, with its status.
    c.signal(Signal::SIGUSR1);
    assert_eq!(c.wait_exit(DEADLINE), 5);
}

#[test]
fn kill_finish_maxtime_kills_each_finish_script_in_time() {
    let dir = TestDir::new("s6rc-kill-finish");
    dir.finish_script("01-hang", "echo $$ > \"$T/hang.pid\"\nexec sleep 1000\n");
    dir.finish_script("02-after", "touch \"$T/after.ran\"\n");
    let mut c = dir
        .corral()
        .args(["--shutdown-timeout", "60s"])
        .env("S6_KILL_FINISH_MAXTIME", "300")
        .start();
    c.wait_stderr_line(&["corral starting"]);
    assert_eq!(c.stop(), 0);
    assert!(c.dir().exists("after.ran"), "the next finish script ran");
    let hang: i32 = c.dir().read("hang.pid").trim().parse().expect("pid");
    assert!(!running(hang) || zombie(hang));
    assert!(
        c.stderr().contains("S6_KILL_FINISH_MAXTIME"),
        "{}",
        c.stderr()
    );
}

#[test]
fn a_wait_for_a_service_that_failed_for_good_fails_at_once() {
    let dir = TestDir::new("s6rc-wait-failed");
    dir.service(
        "init",
        "oneshot = true\nrestart = \"never\"\ncommand = 'exit 4'\n",
    );
    let mut c = dir.corral().ctl_socket().start();
    c.wait_for("init failed", |c| {
        let status = c.ctl(&["status", "init"]);
        if status.stdout.contains("failed") {
            Ok(())
        } else {
            Err(status.stdout)
        }
    });
    let wait = c.ctl(&["wait", "init", "--ready", "--timeout", "60s"]);
    assert_eq!(wait.code, 1, "{wait:?}");
    assert!(
        wait.stderr.contains("init failed: exit 4") && wait.stderr.contains("it will not come up"),
        "{wait:?}"
    );
    assert!(wait.took < std::time::Duration::from_secs(30), "{wait:?}");
}

/// One of corral's s6 commands, through the link corral put in
/// `$T/s6run/basedir/bin` (first on every service's PATH).
fn s6_command(c: &Corral, name: &str, args: &[&str]) -> Ran {
    let mut cmd = std::process::Command::new(c.dir().join(&format!("s6run/basedir/bin/{name}")));
    cmd.args(args).env("CORRAL_SOCKET", c.socket());
    run_within(&mut cmd, DEADLINE)
}

#[test]
fn a_bundle_outside_user_starts_and_stops_by_its_name() {
    let dir = TestDir::new("s6rc-bundle");
    longrun(&dir, "base-svc", &recorded_longrun("base-svc"), &[]);
    longrun(&dir, "extra-a", &recorded_longrun("extra-a"), &[]);
    longrun(&dir, "extra-b", &recorded_longrun("extra-b"), &[]);
    // extras = extra-a + inner, inner = extra-b: a bundle inside a bundle.
    tree_file(&dir, "inner", "type", "bundle\n");
    tree_file(&dir, "inner", "contents", "extra-b\n");
    tree_file(&dir, "extras", "type", "bundle\n");
    tree_file(&dir, "extras", "contents", "extra-a\ninner\n");
    user(&dir, &["base-svc"]);
    let mut c = with_tree(dir, "2").ctl_socket().start();
    wait_line(&mut c, "order", "run base-svc");
    let ran = s6_command(&c, "s6-rc", &["-u", "change", "extras"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    wait_line(&mut c, "order", "run extra-a");
    wait_line(&mut c, "order", "run extra-b");
    let ran = s6_command(&c, "s6-rc", &["-a", "list"]);
    let mut active: Vec<&str> = ran.stdout.lines().collect();
    active.sort_unstable();
    assert_eq!(active, ["base-svc", "extra-a", "extra-b"], "{ran:?}");
    // `ctl` takes bundle names too: the status of `user` is its members'.
    let status = c.ctl(&["status", "user"]);
    assert!(
        status.stdout.contains("base-svc") && !status.stdout.contains("extra-a"),
        "{status:?}"
    );
    let ran = s6_command(&c, "s6-rc", &["-d", "change", "extras"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    wait_line(&mut c, "order", "stop extra-b");
    wait_line(&mut c, "order", "stop extra-a");
    assert_eq!(c.stop(), 0, "{}", c.output_excerpt());
}

#[test]
fn oneshots_with_no_order_between_them_run_together() {
    let dir = TestDir::new("s6rc-parallel-up");
    // Each `up` says it began, then waits (at most 10 s) for the other's
    // word: both succeed only if they run at the same time.
    let both = |me: &str, other: &str| {
        format!(
            "touch \"$T/{me}.began\"\ni=0\nwhile [ ! -e \"$T/{other}.began\" ]; do\n  i=$((i+1)); [ $i -gt 1000 ] && exit 1\n  sleep 0.01\ndone\n{}",
            record(&format!("up {me}"))
        )
    };
    oneshot(&dir, "left", &both("left", "right"), None, &[]);
    oneshot(&dir, "right", &both("right", "left"), None, &[]);
    longrun(&dir, "app", &recorded_longrun("app"), &["left", "right"]);
    user(&dir, &["app"]);
    let mut c = with_tree(dir, "2").start();
    wait_line(&mut c, "order", "run app");
    let lines = c.dir().lines("order");
    assert!(
        lines.contains(&"up left".to_string()) && lines.contains(&"up right".to_string()),
        "{lines:?}"
    );
    assert_eq!(c.stop(), 0, "{}", c.output_excerpt());
}

#[test]
fn an_up_of_only_comments_is_done_at_once_and_the_chain_goes_on() {
    let dir = TestDir::new("s6rc-empty-up");
    oneshot(&dir, "init-a", &record("up init-a"), None, &[]);
    tree_file(&dir, "init-end", "type", "oneshot\n");
    tree_file(
        &dir,
        "init-end",
        "up",
        "# This file doesn't do anything, it's just the end of the chain\n",
    );
    depends(&dir, "init-end", &["init-a"]);
    longrun(&dir, "svc", &recorded_longrun("svc"), &["init-end"]);
    user(&dir, &["init-a", "init-end", "svc"]);
    let mut c = with_tree(dir, "2").ctl_socket().start();
    wait_line(&mut c, "order", "run svc");
    let status = c.ctl(&["status", "init-end"]);
    assert!(status.stdout.contains("exited"), "{status:?}");
    assert_eq!(c.stop(), 0, "{}", c.output_excerpt());
}
