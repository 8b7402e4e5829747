//! The control socket and `corral ctl` (SPEC section 8), against the real
//! binary: every subcommand's effect is checked through the processes
//! themselves (pids alive or gone, files the services write), not only
//! through corral's answers. Socket creation, authentication, stale and
//! live sockets, and how errors read. The abuse tests are in `tests/serial/ctl_abuse.rs`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// corral with `--socket <dir>/ctl.sock`.
fn start(dir: TestDir) -> Corral {
    dir.corral().ctl_socket().start()
}

/// Wait until the socket answers (corral creates it before the first spawn,
/// but the test may get there first).
fn wait_socket(c: &mut Corral) {
    let socket = c.socket();
    c.wait_for("the control socket", |_| {
        if socket.exists() {
            Ok(())
        } else {
            Err("no socket yet".into())
        }
    });
}

fn service<'a>(services: &'a [Value], name: &str) -> &'a Value {
    services
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {services:?}"))
}

/// Wait until `status` shows `name` in `state`; returns its entry.
fn wait_state(c: &mut Corral, name: &str, state: &str) -> Value {
    c.wait_for(&format!("{name} to be {state}"), |c| {
        let services = c.ctl_status();
        let svc = service(&services, name).clone();
        if svc["state"] == state {
            Ok(svc)
        } else {
            Err(svc.to_string())
        }
    })
}

#[test]
fn status_reports_states_pids_and_reasons_as_json_and_as_a_table() {
    let dir = TestDir::new("ctl-status");
    dir.service("web", &sleeper("web"));
    dir.service(
        "job",
        r#"oneshot = true
command = '''echo done > "$T/job.done"'''
"#,
    );
    dir.service("off", &format!("{}enabled = false\n", sleeper("off")));
    dir.service(
        "crash",
        r#"command = "exit 3"
restart = "never"
"#,
    );
    let mut c = start(dir);
    let web = c.wait_pids("web.pids", 1)[0];
    c.wait_file("job.done");
    wait_state(&mut c, "crash", "failed");
    wait_state(&mut c, "job", "exited");

    let services = c.ctl_status();
    let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["crash", "job", "off", "web"]);
    let w = service(&services, "web");
    assert_eq!(w["state"], "running");
    assert_eq!(w["pid"], web, "the pid corral reports is the one web wrote");
    assert!(c.process_running(web));
    assert_eq!(w["ready"], true);
    assert!(w["uptime_ms"].is_u64(), "{w}");
    let job = service(&services, "job");
    assert_eq!(
        (job["state"].as_str(), job["pid"].is_null()),
        (Some("exited"), true)
    );
    let off = service(&services, "off");
    assert_eq!(off["state"], "stopped");
    assert_eq!(off["detail"], "disabled");
    assert!(
        !c.dir().exists("off.pids"),
        "a disabled service was started"
    );
    let crash = service(&services, "crash");
    assert_eq!(crash["last_exit"], "exit 3");
    assert_eq!(crash["last_exit_code"], 3);
    assert!(
        crash["detail"]
            .as_str()
            .is_some_and(|d| d.contains("exit 3")),
        "failed, with its reason: {crash}"
    );

    // The table: a header, one row per service, columns aligned.
    let table = c.ctl(&["status"]);
    assert_eq!(table.code, 0, "{table:?}");
    let lines = table.lines();
    assert_eq!(lines.len(), 5, "{}", table.stdout);
    assert!(lines[0].starts_with("NAME"), "{}", table.stdout);
    for column in [
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "READY",
        "LAST-EXIT",
        "DETAIL",
    ] {
        assert!(lines[0].contains(column), "no {column}: {}", lines[0]);
    }
    let state_at = lines[0].find("STATE").unwrap_or_default();
    for (line, state) in lines[1..]
        .iter()
        .zip(["failed", "exited", "stopped", "running"])
    {
        assert_eq!(
            line.get(state_at..state_at + state.len()),
            Some(state),
            "{}",
            table.stdout
        );
    }
    let web_row = lines[4];
    assert!(
        web_row.contains(&web.to_string()) && web_row.contains("yes"),
        "{web_row}"
    );
    assert!(lines[1].contains("exit 3"), "{}", lines[1]);

    // Named services only; an unknown name is an error.
    let one = c.ctl(&["status", "web", "--json"]);
    let parsed: Value = serde_json::from_str(&one.stdout).expect("json");
    assert_eq!(parsed.as_array().map(Vec::len), Some(1), "{}", one.stdout);
    let unknown = c.ctl(&["status", "nope"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown.stderr.contains("no service \"nope\""),
        "{}",
        unknown.stderr
    );
}

#[test]
fn stop_ends_the_process_and_reports_its_exit() {
    let dir = TestDir::new("ctl-stop");
    dir.service("web", &sleeper("web"));
    let mut c = start(dir);
    let web = c.wait_pids("web.pids", 1)[0];

    let ran = c.ctl(&["stop", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.stdout, "web: stopped (killed by SIGTERM)\n");
    // Answered when done: the process is gone (reaped) by the time it returns.
    assert!(
        !running(web) && !zombie(web),
        "web ({web}) still there after stop returned"
    );
    let w = wait_state(&mut c, "web", "stopped");
    assert_eq!(w["want"], "down");
    assert_eq!(
        c.dir().pids("web.pids"),
        [web],
        "a stopped service was restarted"
    );

    // Stopping it again says so.
    let again = c.ctl(&["stop", "web"]);
    assert_eq!(
        (again.code, again.stdout.as_str()),
        (0, "web: was not running\n")
    );
}

#[test]
fn stop_of_a_service_ignoring_sigterm_reports_the_sigkill() {
    let dir = TestDir::new("ctl-stop-kill");
    dir.service(
        "stubborn",
        r#"command = '''trap "" TERM; echo $$ >> "$T/stubborn.pids"; exec sleep 1000'''
stop-timeout = "1s"
"#,
    );
    let mut c = start(dir);
    let pid = c.wait_pids("stubborn.pids", 1)[0];
    let ran = c.ctl(&["stop", "stubborn"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        ran.stdout,
        "stubborn: did not stop within stop-timeout 1.0s, sent SIGKILL (killed by SIGKILL)\n"
    );
    assert!(
        ran.took >= Duration::from_secs(1),
        "SIGKILL before stop-timeout: {ran:?}"
    );
    assert!(!running(pid) && !zombie(pid));
}

#[test]
fn start_of_a_stopped_service_runs_a_new_process() {
    let dir = TestDir::new("ctl-start");
    dir.service("web", &sleeper("web"));
    let mut c = start(dir);
    let first = c.wait_pids("web.pids", 1)[0];
    assert_eq!(c.ctl(&["stop", "web"]).code, 0);

    let ran = c.ctl(&["start", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let pids = c.wait_pids("web.pids", 2);
    let second = pids[1];
    assert_ne!(first, second);
    assert_eq!(ran.stdout, format!("web: started (pid {second})\n"));
    assert!(c.process_running(second) && !running(first));
    assert_eq!(service(&c.ctl_status(), "web")["pid"], second);

    // Starting a running service changes nothing.
    let again = c.ctl(&["start", "web"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(c.dir().pids("web.pids"), [first, second]);
}

#[test]
fn start_starts_a_stopped_dependency_first() {
    let dir = TestDir::new("ctl-start-dep");
    dir.service("db", &sleeper("db"));
    dir.service("web", &format!("{}after = [\"db\"]\n", sleeper("web")));
    let mut c = start(dir);
    c.wait_pids("db.pids", 1);
    c.wait_pids("web.pids", 1);
    let stopped = c.ctl(&["stop", "web", "db"]);
    assert_eq!(stopped.code, 0, "{stopped:?}");
    let log_mark = c.stderr().len();

    let ran = c.ctl(&["start", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let db = c.wait_pids("db.pids", 2)[1];
    let web = c.wait_pids("web.pids", 2)[1];
    assert!(c.process_running(db), "db was not started again");
    assert!(c.process_running(web));
    // Spawn order, from corral's log: db before web.
    let log = c.stderr()[log_mark..].to_string();
    let db_at = log.find(&format!("service=db pid={db}"));
    let web_at = log.find(&format!("service=web pid={web}"));
    assert!(
        matches!((db_at, web_at), (Some(d), Some(w)) if d < w),
        "db must start before web:\n{log}"
    );
}

#[test]
fn restart_replaces_the_process() {
    let dir = TestDir::new("ctl-restart");
    dir.service("web", &sleeper("web"));
    let mut c = start(dir);
    let first = c.wait_pids("web.pids", 1)[0];
    let ran = c.ctl(&["restart", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let second = c.wait_pids("web.pids", 2)[1];
    assert_eq!(ran.stdout, format!("web: started (pid {second})\n"));
    assert!(
        !running(first) && !zombie(first),
        "the old process survived"
    );
    assert!(c.process_running(second));
    let w = service(&c.ctl_status(), "web").clone();
    assert_eq!(
        (w["pid"].as_i64(), w["restarts"].as_u64()),
        (Some(second.into()), Some(1))
    );
}

#[test]
fn stop_all_stops_dependants_before_their_dependencies() {
    let dir = TestDir::new("ctl-stop-all");
    // Each records its name when it gets SIGTERM, then exits.
    let svc = |name: &str, after: &str| {
        format!(
            r#"command = '''trap 'echo {name} >> "$T/stops"; exit 0' TERM; echo $$ >> "$T/{name}.pids"; sleep 1000 & wait'''
after = [{after}]
"#
        )
    };
    dir.service("db", &svc("db", ""));
    dir.service("api", &svc("api", "\"db\""));
    dir.service("web", &svc("web", "\"api\""));
    let mut c = start(dir);
    let pids: Vec<i32> = ["db", "api", "web"]
        .iter()
        .map(|n| c.wait_pids(&format!("{n}.pids"), 1)[0])
        .collect();

    let ran = c.ctl(&["stop", "--all"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        ran.lines(),
        [
            "api: stopped (exit 0)",
            "db: stopped (exit 0)",
            "web: stopped (exit 0)"
        ]
    );
    assert_eq!(c.dir().lines("stops"), ["web", "api", "db"]);
    for pid in pids {
        assert!(!running(pid) && !zombie(pid), "{pid} survived stop --all");
    }
    for s in c.ctl_status() {
        assert_eq!(s["state"], "stopped", "{s}");
    }
}

#[test]
fn signal_reaches_the_service() {
    let dir = TestDir::new("ctl-signal");
    dir.service(
        "web",
        r#"command = '''trap 'echo hup >> "$T/hup"' HUP; echo $$ >> "$T/web.pids"; while :; do sleep 1000 & wait; done'''
"#,
    );
    let mut c = start(dir);
    let web = c.wait_pids("web.pids", 1)[0];
    let ran = c.ctl(&["signal", "HUP", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        ran.stdout,
        format!("web: sent SIGHUP to process group {web}\n")
    );
    c.wait_file("hup");
    assert!(c.process_running(web), "a signal is not a restart");
    assert_eq!(c.dir().pids("web.pids"), [web]);

    let bad = c.ctl(&["signal", "NOPE", "web"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.starts_with("corral ctl: "), "{}", bad.stderr);
}

#[test]
fn logs_prints_the_last_lines_each_on_its_stream() {
    let dir = TestDir::new("ctl-logs");
    dir.service(
        "web",
        // stdout and stderr are two pipes: corral cannot know which of two
        // lines written to both came first. So the stderr line waits until
        // corral has the stdout ones (the test creates $T/go when it saw them).
        r#"command = '''seq 1 1500; until [ -e "$T/go" ]; do sleep 0.01; done; echo to-stderr >&2; exec sleep 1000'''
"#,
    );
    dir.service("quiet", &format!("{}output = \"null\"\n", sleeper("quiet")));
    let mut c = start(dir);
    c.wait_for("web's stdout lines in corral's output", |c| {
        if c.stdout().contains("web | 1500\n") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    c.dir().write("go", "");
    c.wait_for("web's stderr line in corral's output", |c| {
        if c.stderr().contains("web | to-stderr\n") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });

    let five = c.ctl(&["logs", "web", "-n", "5"]);
    assert_eq!(five.code, 0, "{five:?}");
    assert_eq!(five.lines(), ["1497", "1498", "1499", "1500"]);
    assert_eq!(five.stderr, "to-stderr\n");

    // 100 by default; corral keeps the last 1000.
    let default = c.ctl(&["logs", "web"]);
    assert_eq!(default.lines().len(), 99, "{default:?}");
    let all = c.ctl(&["logs", "web", "-n", "5000"]);
    let lines = all.lines();
    assert_eq!(lines.len(), 999);
    assert_eq!((lines.first(), lines.last()), (Some(&"502"), Some(&"1500")));

    let null = c.ctl(&["logs", "quiet"]);
    assert_eq!(null.code, 1, "{null:?}");
    assert!(null.stderr.contains("discarded"), "{}", null.stderr);
}

#[test]
fn logs_follow_sees_new_lines_and_ends_when_the_client_goes() {
    let dir = TestDir::new("ctl-logs-f");
    dir.service(
        "web",
        r#"command = '''trap 'echo fresh line' USR1; echo hello; echo $$ >> "$T/web.pids"; while :; do sleep 1000 & wait; done'''
"#,
    );
    let mut c = start(dir);
    let web = c.wait_pids("web.pids", 1)[0];
    c.wait_for("hello in corral's output", |c| {
        c.stdout()
            .contains("web | hello")
            .then_some(())
            .ok_or("no".into())
    });
    let threads = c.threads();
    assert!(threads > 0, "cannot count corral's threads");
    let fds = open_fds(c.pid()).len();

    let mut follow = c.ctl_background(&["logs", "web", "-f"]);
    // The recent lines come first; the follow is subscribed by then.
    assert_eq!(follow.next_line(DEADLINE), "hello");
    c.signal_process(web, Signal::SIGUSR1);
    assert_eq!(follow.next_line(DEADLINE), "fresh line");
    c.signal_process(web, Signal::SIGUSR1);
    assert_eq!(follow.next_line(DEADLINE), "fresh line");
    assert!(follow.is_running(), "logs -f ended by itself");

    // Kill the client: corral notices and closes the connection. The
    // control socket has no thread per connection; the first follower
    // starts the relay thread, which stays.
    send(follow.pid(), Signal::SIGKILL);
    drop(follow);
    c.wait_for("the follower's connection to be closed", |c| {
        let (now, open) = (c.threads(), open_fds(c.pid()).len());
        if now <= threads + 1 && open <= fds {
            Ok(())
        } else {
            Err(format!(
                "{now} threads ({threads} before), {open} fds ({fds} before)"
            ))
        }
    });
}

#[test]
fn wait_returns_once_a_slow_dependency_is_up_or_fails_at_its_timeout() {
    let dir = TestDir::new("ctl-wait");
    // gate: a oneshot that ends only once the test creates $T/open.
    dir.service(
        "gate",
        r#"oneshot = true
command = '''while [ ! -e "$T/open" ]; do sleep 0.02; done'''
"#,
    );
    dir.service("slow", &format!("{}after = [\"gate\"]\n", sleeper("slow")));
    dir.service(
        "shut",
        r#"oneshot = true
command = "exec sleep 1000"
"#,
    );
    dir.service(
        "never",
        &format!("{}after = [\"shut\"]\n", sleeper("never")),
    );
    let mut c = start(dir);
    wait_socket(&mut c);

    let mut waiting = c.ctl_background(&["wait", "slow"]);
    let slow = wait_state(&mut c, "slow", "starting");
    assert_eq!(slow["detail"], "waiting for gate");
    assert!(
        waiting.is_running(),
        "wait returned before slow started: {:?}",
        waiting.stderr()
    );
    assert!(!c.dir().exists("slow.pids"));

    c.dir().write("open", "");
    let done = waiting.finish(DEADLINE);
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (0, "slow: started\n"),
        "{done:?}"
    );
    let pid = c.wait_pids("slow.pids", 1)[0];
    assert!(c.process_running(pid));

    let timed_out = c.ctl(&["wait", "never", "--timeout", "300ms"]);
    assert_eq!(timed_out.code, 1, "{timed_out:?}");
    assert_eq!(
        timed_out.stderr,
        "corral ctl: timed out waiting for never (starting)\n"
    );
    assert!(
        timed_out.took >= Duration::from_millis(300),
        "{timed_out:?}"
    );
    assert!(!c.dir().exists("never.pids"));
}

#[test]
fn health_fails_naming_a_service_in_backoff_and_passes_once_all_run() {
    let dir = TestDir::new("ctl-health");
    dir.service("web", &sleeper("web"));
    dir.service(
        "flap",
        r#"command = '''echo $$ >> "$T/flap.pids"; exit 1'''
restart-delay = "20s"
"#,
    );
    let mut c = start(dir);
    c.wait_pids("web.pids", 1);
    c.wait_pids("flap.pids", 1);
    wait_state(&mut c, "flap", "backoff");

    let sick = c.ctl(&["health"]);
    assert_eq!(sick.code, 1, "{sick:?}");
    let problems = sick.lines();
    assert_eq!(problems.len(), 1, "{sick:?}");
    assert!(
        problems[0].starts_with("flap: backoff (exit 1; next start in "),
        "{}",
        problems[0]
    );
    assert_eq!(sick.stderr, "corral ctl: 1 not running\n");

    // The table shows the same backoff, with the time to the next start.
    let table = c.ctl(&["status", "flap"]);
    assert!(table.stdout.contains("next start in"), "{}", table.stdout);

    // Not wanted any more: healthy.
    assert_eq!(c.ctl(&["stop", "flap"]).code, 0);
    let healthy = c.ctl(&["health"]);
    assert_eq!(healthy.code, 0, "{healthy:?}");
    assert_eq!(c.dir().pids("flap.pids").len(), 1, "flap restarted");
}

#[test]
fn shutdown_with_an_exit_code_ends_corral_with_it() {
    let dir = TestDir::new("ctl-shutdown");
    dir.service("web", &sleeper("web"));
    let mut c = start(dir);
    let web = c.wait_pids("web.pids", 1)[0];
    let ran = c.ctl(&["shutdown", "--exit-code", "7"]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "shutting down\n"),
        "{ran:?}"
    );
    assert_eq!(c.wait_exit(DEADLINE), 7);
    assert!(!running(web), "web survived the shutdown");
    assert!(!c.socket().exists(), "the socket outlived corral");

    let usage = run_within(
        &mut ctl_command(None, &["shutdown", "--exit-code", "300"]),
        DEADLINE,
    );
    assert_eq!(usage.code, 2, "{usage:?}");
}

#[test]
fn a_misspelt_name_gets_a_suggestion_and_changes_nothing() {
    let dir = TestDir::new("ctl-wbe");
    dir.service("web", &sleeper("web"));
    let mut c = start(dir);
    let web = c.wait_pids("web.pids", 1)[0];
    let ran = c.ctl(&["stop", "wbe"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(
        ran.stderr,
        "corral ctl: no service \"wbe\" (did you mean \"web\"?)\n"
    );
    assert_eq!(ran.stdout, "");
    assert!(c.process_running(web));

    // Usage errors are exit 2, before any connection.
    for args in [
        &["stop"][..],
        &["stop", "--all", "web"],
        &["frobnicate"],
        &["wait"],
    ] {
        let usage = c.ctl(args);
        assert_eq!(usage.code, 2, "{args:?}: {usage:?}");
    }
}

#[test]
fn without_a_socket_the_client_says_where_it_looked() {
    let dir = TestDir::new("ctl-nosock");
    let given = dir.join("nothing.sock");
    let ran = run_within(&mut ctl_command(Some(&given), &["status"]), DEADLINE);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.stderr.contains(&given.display().to_string()),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("--socket"), "{}", ran.stderr);

    // The default places, with $XDG_RUNTIME_DIR among them.
    let uid = nix::unistd::getuid().as_raw();
    let candidates = [
        "/run/corral/control.sock".to_string(),
        dir.join("xdg/corral/control.sock").display().to_string(),
        format!("/tmp/corral-{uid}/control.sock"),
        format!("/dev/shm/corral-{uid}/control.sock"),
    ];
    let taken: Vec<&String> = candidates
        .iter()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    assert!(
        taken.is_empty(),
        "a corral socket exists at {taken:?} on this machine: this test needs \
         the default places free (stop that corral, or run the suite in a container)"
    );
    let ran = run_within(
        ctl_command(None, &["status"]).env("XDG_RUNTIME_DIR", dir.join("xdg")),
        DEADLINE,
    );
    assert_eq!(ran.code, 1, "{ran:?}");
    let expected = format!(
        "corral ctl: no control socket found. Looked at:\n  {}: no such file\n  {}: no such file\n  {}: no such file\n  {}: no such file\n\
Is corral running? If it uses another socket, point at it with --socket PATH or CORRAL_SOCKET=PATH.\n",
        candidates[0], candidates[1], candidates[2], candidates[3]
    );
    assert_eq!(ran.stderr, expected);
}

#[test]
fn corralctl_link_is_the_client() {
    let dir = TestDir::new("ctl-link");
    dir.service("web", &sleeper("web"));
    let link = dir.join("corralctl");
    std::os::unix::fs::symlink(corral_bin(), &link).expect("symlink");
    let mut c = start(dir);
    let web = c.wait_pids("web.pids", 1)[0];
    let mut cmd = Command::new(&link);
    cmd.env_remove("CORRAL_SOCKET")
        .env("CORRAL_SOCKET", c.socket())
        .args(["status", "--json"]);
    let ran = run_within(&mut cmd, DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    let parsed: Value = serde_json::from_str(&ran.stdout).expect("json");
    assert_eq!(parsed[0]["pid"], web);
}

#[test]
fn the_socket_is_private_and_removed_at_exit() {
    let dir = TestDir::new("ctl-mode");
    dir.service("web", &sleeper("web"));
    let mut c = start(dir);
    wait_socket(&mut c);
    let meta = fs::symlink_metadata(c.socket()).expect("stat socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    assert_eq!(c.stop(), 0);
    assert!(!c.socket().exists(), "the socket outlived corral");
}

/// Run `corral ctl` as uid 65534 (needs root and setpriv).
fn ctl_as_nobody(socket: &std::path::Path, args: &[&str]) -> Ran {
    require_root("runs a client as another uid");
    run_within(&mut ctl_command_as_nobody(socket, args), DEADLINE)
}

#[test]
fn a_client_of_another_uid_is_refused_by_the_file_mode_then_by_its_credentials() {
    let dir = TestDir::new("ctl-uid");
    dir.service("web", &sleeper("web"));
    let mut c = start(dir);
    let web = c.wait_pids("web.pids", 1)[0];
    wait_socket(&mut c);
    let socket = c.socket();

    let denied = ctl_as_nobody(&socket, &["stop", "web"]);
    assert_eq!(denied.code, 1, "{denied:?}");
    assert_eq!(
        denied.stderr,
        format!(
            "corral ctl: cannot connect to {}: permission denied: the control socket is mode 0600; only root and its owner (uid 0) may use it, and you are uid 65534\n",
            socket.display()
        )
    );

    // Even with the file opened up, SO_PEERCRED keeps the door shut.
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).expect("chmod");
    let refused = ctl_as_nobody(&socket, &["stop", "web"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(
        refused.stderr,
        "corral ctl: permission denied: uid 65534 may not use corral's control socket (root and uid 0 only)\n"
    );
    assert!(c.process_running(web), "a refused client stopped web");
    c.wait_stderr_line(&["control client refused", "uid=65534"]);
    assert_eq!(c.ctl(&["status"]).code, 0, "root is still served");
}

#[test]
fn a_non_root_corral_puts_its_socket_under_xdg_runtime_dir() {
    require_root("runs corral as another uid");
    let dir = TestDir::new("ctl-xdg");
    dir.service("web", &sleeper("web"));
    let xdg = dir.join("xdg");
    fs::create_dir(&xdg).expect("mkdir xdg");
    std::os::unix::fs::chown(&xdg, Some(65534), Some(65534)).expect("chown xdg");
    // web writes its pid into $T as uid 65534. Sticky, as /tmp: an open
    // directory that is not would make $XDG_RUNTIME_DIR unsafe (SPEC 12).
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).expect("chmod");
    let mut c = dir
        .corral()
        .env_remove("CORRAL_SOCKET")
        .env("XDG_RUNTIME_DIR", &xdg.display().to_string())
        .user(65534)
        .start();
    let web = c.wait_pids("web.pids", 1)[0];
    let socket = xdg.join("corral/control.sock");
    c.wait_for("the socket under $XDG_RUNTIME_DIR", |_| {
        socket.exists().then_some(()).ok_or("not yet".into())
    });
    let dir_meta = fs::metadata(xdg.join("corral")).expect("stat");
    assert_eq!(
        (dir_meta.permissions().mode() & 0o7777, dir_meta.uid()),
        (0o700, 65534)
    );
    let sock_meta = fs::metadata(&socket).expect("stat");
    assert_eq!(
        (sock_meta.permissions().mode() & 0o777, sock_meta.uid()),
        (0o600, 65534)
    );

    // The same user finds it without being told where (a root corral's
    // socket at /run/corral/control.sock would come first: the client looks
    // there before $XDG_RUNTIME_DIR).
    assert!(
        !std::path::Path::new("/run/corral/control.sock").exists(),
        "a corral listens on /run/corral/control.sock on this machine: this test \
         needs that place free (stop that corral, or run the suite in a container)"
    );
    let mut cmd = as_nobody(corral_bin());
    cmd.args(["ctl", "status", "--json"])
        .env_remove("CORRAL_SOCKET")
        .env("XDG_RUNTIME_DIR", &xdg);
    let ran = run_within(&mut cmd, DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    let parsed: Value = serde_json::from_str(&ran.stdout).expect("json");
    assert_eq!(parsed[0]["pid"], web);
    assert_eq!(c.stop(), 0);
    assert!(!socket.exists());
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = TestDir::new("ctl-stale");
    dir.service("web", &sleeper("web"));
    let path = dir.join(CTL_SOCKET);
    // A socket file nobody listens on: what a killed corral leaves behind.
    drop(UnixListener::bind(&path).expect("bind"));
    let refused = std::os::unix::net::UnixStream::connect(&path).map(|_| ());
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    let mut c = start(dir);
    c.wait_pids("web.pids", 1);
    c.wait_stderr_line(&["replacing a stale control socket"]);
    assert_eq!(c.ctl(&["status"]).code, 0, "the new socket serves");
}

#[test]
fn something_else_at_the_socket_path_is_left_alone_and_fatal() {
    let dir = TestDir::new("ctl-notsock");
    dir.service("web", &sleeper("web"));
    dir.write(CTL_SOCKET, "precious");
    let done = dir.corral().ctl_socket().run();
    assert_eq!(done.code(), 111, "{}", done.stderr());
    assert!(
        done.stderr().contains("exists and is not a socket"),
        "{}",
        done.stderr()
    );
    assert_eq!(done.dir().read(CTL_SOCKET), "precious");
    assert!(!done.dir().exists("web.pids"), "a service started");
}

#[test]
fn a_second_corral_on_a_live_socket_fails_with_111() {
    let dir = TestDir::new("ctl-live");
    dir.service("web", &sleeper("web"));
    let mut first = start(dir);
    first.wait_pids("web.pids", 1);
    wait_socket(&mut first);
    let socket = first.socket();

    let other = TestDir::new("ctl-live-2");
    other.service("web", &sleeper("web"));
    let done = other
        .corral()
        .args(["--socket", &socket.display().to_string()])
        .run();
    assert_eq!(done.code(), 111, "{}", done.stderr());
    let expected = format!(
        "another corral is already listening on {}",
        socket.display()
    );
    assert!(done.stderr().contains(&expected), "{}", done.stderr());
    assert!(
        !done.dir().exists("web.pids"),
        "the second corral started a service"
    );

    // The first one is untouched.
    assert!(socket.exists());
    assert_eq!(first.ctl(&["status"]).code, 0);
}

#[test]
fn ctl_works_with_corral_as_pid1() {
    let dir = TestDir::new("ctl-pid1");
    dir.service("web", &sleeper("web"));
    let mut c = dir.corral().ctl_socket().pid1().start();
    let web = c.wait_pids("web.pids", 1)[0];
    wait_socket(&mut c);
    let services = c.ctl_status();
    assert_eq!(
        service(&services, "web")["pid"],
        web,
        "namespace pids, as the services see them"
    );
    let host = c.host_pid(web).expect("host pid of web");
    let started = Instant::now();
    let ran = c.ctl(&["stop", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        !running(host),
        "web still running after stop ({:?})",
        started.elapsed()
    );
    assert_eq!(c.ctl(&["shutdown", "--exit-code", "3"]).code, 0);
    assert_eq!(c.wait_exit(DEADLINE), 3);
}
