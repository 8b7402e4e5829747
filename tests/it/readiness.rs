//! Readiness and liveness (SPEC section 3: `ready`, `ready-timeout`,
//! `health`), against the real binary and real processes: a dependant (and
//! the main COMMAND) starts only once what it comes `after` is *ready*, by
//! each protocol (tcp, http, exec, s6 notification fd, sd_notify); a start
//! that is not ready in time is a failed start with backoff; a liveness
//! probe failing `retries` times in a row restarts the service.
//!
//! Services that must "become ready later" wait for a file the test writes
//! (`$T/release`), so "not ready yet" is a state the test controls, not a
//! race against a sleep.

use std::time::Duration;

use crate::common::*;

/// `while [ ! -e "$T/FILE" ]; do sleep 0.01; done`: hold until the test says.
fn hold_until(file: &str) -> String {
    format!(r#"while [ ! -e "$T/{file}" ]; do sleep 0.01; done"#)
}

/// A dependant that records when it started, its pid, and exec's a sleeper.
fn dependant(name: &str, after: &str) -> String {
    format!(
        r#"after = ["{after}"]
command = '''date +%s.%N > "$T/{name}.start"; echo $$ >> "$T/{name}.pids"; exec sleep 1000'''
"#
    )
}

/// B opens its TCP port only when released; A comes `after` B. A starts only
/// once the port answers: A itself checks the port first thing, and finds it
/// open; meanwhile `ctl status` shows B `starting` (not ready) and A waiting
/// for it; then B `ready`.
#[test]
fn tcp_readiness_holds_a_dependant_until_the_port_answers() {
    let port = free_port();
    let dir = TestDir::new("ready-tcp");
    dir.service(
        "b",
        &format!(
            r#"ready = {{ tcp = "127.0.0.1:{port}" }}
output = "null"
command = '''
echo $$ >> "$T/b.pids"
{hold}
exec python3 -m http.server {port} --bind 127.0.0.1
'''
"#,
            hold = hold_until("release")
        ),
    );
    dir.service(
        "a",
        &format!(
            r#"after = ["b"]
command = ["bash", "-c", '''
if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo open; else echo closed; fi > "$T/a.saw"
date +%s.%N > "$T/a.start"
echo $$ >> "$T/a.pids"
exec sleep 1000
''']
"#
        ),
    );
    let mut c = dir.corral().ctl_socket().start();
    let b = c.wait_pids("b.pids", 1)[0];
    let starting = c.wait_state("b", "starting");
    assert_eq!(starting["pid"], b, "{starting}");
    assert_eq!(starting["ready"], false, "{starting}");
    assert!(
        starting["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not ready yet")),
        "{starting}"
    );
    let a = c.ctl_service("a").expect("a in status");
    assert_eq!(a["state"], "starting", "{a}");
    assert_eq!(a["detail"], "waiting for b", "{a}");
    assert!(a["pid"].is_null(), "{a}");
    // Probes keep failing for a while: nothing starts a meanwhile.
    stays(
        "a not started while b's port is closed",
        Duration::from_millis(300),
        || {
            if c.dir().exists("a.start") {
                Err("a started".into())
            } else {
                Ok(())
            }
        },
    );

    let released = epoch_now();
    c.dir().write("release", "");
    // The test's own view: when did the port first answer?
    let opened = wait_until("b's port to answer", DEADLINE, || {
        if port_open(port) {
            Ok(epoch_now())
        } else {
            Err("closed".into())
        }
    });
    c.wait_file("a.start");
    assert_eq!(
        c.dir().read("a.saw").trim(),
        "open",
        "a started before b's port answered"
    );
    let a_start = c.dir().time("a.start");
    assert!(
        a_start > released,
        "a started ({a_start}) before b was released ({released})"
    );
    let b_status = c.wait_state("b", "ready");
    assert_eq!(
        (b_status["pid"].clone(), b_status["ready"].clone()),
        (b.into(), true.into())
    );
    assert_eq!(c.dir().pids("b.pids"), [b], "b was restarted");
    eprintln!(
        "released at {released:.3}, port seen open by the test {:.0} ms later, a started {:.0} ms after release",
        (opened - released) * 1000.0,
        (a_start - released) * 1000.0
    );
    assert_eq!(c.stop(), 0);
}

/// `notify = true`: `STATUS=` shows in `ctl status` while the service is not
/// ready; `ctl wait` returns at once (started), `ctl wait --ready` only
/// once READY=1 came; the dependant and the main COMMAND start only after it.
#[test]
fn notify_ready_gates_dependants_the_main_command_and_ctl_wait_ready() {
    let dir = TestDir::new("ready-notify");
    dir.sd_notify();
    dir.service(
        "n",
        &format!(
            r#"ready = {{ notify = true }}
command = '''
echo $$ >> "$T/n.pids"
"$T/sd_notify" "STATUS=waiting for the test"
{hold}
date +%s.%N > "$T/n.ready-sent"
"$T/sd_notify" READY=1 "STATUS=serving"
exec sleep 1000
'''
"#,
            hold = hold_until("release")
        ),
    );
    dir.service("d", &dependant("d", "n"));
    let mut c = dir
        .corral()
        .ctl_socket()
        .main([
            "sh",
            "-c",
            r#"date +%s.%N > "$T/main.start"; exec sleep 1000"#,
        ])
        .start();
    let n = c.wait_pids("n.pids", 1)[0];
    let status = c.wait_service("n", "STATUS= shown", |s| {
        s["notify_status"] == "waiting for the test"
    });
    assert_eq!(status["state"], "starting", "{status}");
    assert_eq!(status["ready"], false, "{status}");
    assert_eq!(status["pid"], n, "{status}");

    let started = c.ctl(&["wait", "n", "--timeout", "10s"]);
    assert_eq!(started.code, 0, "ctl wait (started) {started:?}");
    assert_eq!(started.stdout, "n: started\n");
    let timed_out = c.ctl(&["wait", "n", "--ready", "--timeout", "300ms"]);
    assert_eq!(timed_out.code, 1, "{timed_out:?}");
    assert!(
        timed_out
            .stderr
            .contains("timed out waiting for n (starting)"),
        "{timed_out:?}"
    );
    let mut waiting = c.ctl_background(&["wait", "n", "--ready"]);
    stays(
        "nothing ready before READY=1",
        Duration::from_millis(300),
        || {
            if !waiting.is_running() {
                return Err("ctl wait --ready returned".into());
            }
            for file in ["d.start", "main.start"] {
                if c.dir().exists(file) {
                    return Err(format!("{file} exists"));
                }
            }
            Ok(())
        },
    );

    c.dir().write("release", "");
    let ran = waiting.finish(DEADLINE);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "n: ready\n"),
        "{ran:?}"
    );
    c.wait_file("d.start");
    c.wait_file("main.start");
    let sent = c.dir().time("n.ready-sent");
    for file in ["d.start", "main.start"] {
        let at = c.dir().time(file);
        assert!(at > sent, "{file} ({at}) before READY=1 was sent ({sent})");
    }
    let ready = c.wait_state("n", "ready");
    assert_eq!(ready["notify_status"], "serving", "{ready}");
    assert_eq!(ready["ready"], true, "{ready}");
    // The main COMMAND (killed by SIGTERM) decides corral's status.
    assert_eq!(c.stop(), 143);
}

/// `ready = { fd = 3 }` (s6's notification-fd): a newline on fd 3 is
/// readiness; the dependant starts after it.
#[test]
fn a_newline_on_the_notification_fd_is_readiness() {
    let dir = TestDir::new("ready-fd");
    dir.service(
        "f",
        &format!(
            r#"ready = {{ fd = 3 }}
command = '''
echo $$ >> "$T/f.pids"
{hold}
date +%s.%N > "$T/f.told"
echo >&3
exec sleep 1000
'''
"#,
            hold = hold_until("release")
        ),
    );
    dir.service("d", &dependant("d", "f"));
    let mut c = dir.corral().ctl_socket().start();
    let f = c.wait_pids("f.pids", 1)[0];
    let status = c.wait_state("f", "starting");
    assert_eq!(status["pid"], f);
    stays(
        "d not started before f wrote to fd 3",
        Duration::from_millis(300),
        || {
            if c.dir().exists("d.start") {
                Err("d started".into())
            } else {
                Ok(())
            }
        },
    );
    c.dir().write("release", "");
    let ran = c.ctl(&["wait", "f", "--ready", "--timeout", "20s"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    c.wait_file("d.start");
    let (told, d) = (c.dir().time("f.told"), c.dir().time("d.start"));
    assert!(d > told, "d started ({d}) before f was ready ({told})");
    let ready = c.wait_state("f", "ready");
    assert_eq!(ready["pid"], f, "{ready}");
    assert_eq!(c.dir().pids("f.pids"), [f]);
    assert_eq!(c.stop(), 0);
}

/// The two probe-based readiness methods not covered above: `http` (2xx
/// only: a 404 is "not yet") and `exec` (exit 0).
#[test]
fn http_and_exec_readiness_probes() {
    let port = free_port();
    let dir = TestDir::new("ready-http-exec");
    fs_mkdir(&dir, "www");
    let flag = dir.join("exec-ok");
    dir.service(
        "web",
        &format!(
            r#"ready = {{ http = "http://127.0.0.1:{port}/ready.txt" }}
output = "null"
command = '''echo $$ >> "$T/web.pids"; exec python3 -m http.server {port} --bind 127.0.0.1 --directory "$T/www"'''
"#
        ),
    );
    dir.service(
        "job",
        &format!(
            r#"ready = {{ exec = ["test", "-e", "{}"] }}
command = '''echo $$ >> "$T/job.pids"; exec sleep 1000'''
"#,
            flag.display()
        ),
    );
    dir.service("d1", &dependant("d1", "web"));
    dir.service("d2", &dependant("d2", "job"));
    let mut c = dir.corral().ctl_socket().start();
    c.wait_pids("web.pids", 1);
    c.wait_pids("job.pids", 1);
    // The server answers (404) well before it is "ready".
    c.wait_for("web's port to answer", |_| {
        if port_open(port) {
            Ok(())
        } else {
            Err("closed".into())
        }
    });
    stays(
        "nothing ready before its probe passes",
        Duration::from_millis(400),
        || {
            for name in ["web", "job"] {
                let s = c.ctl_service(name).expect("listed");
                if s["state"] != "starting" || s["ready"] != false {
                    return Err(s.to_string());
                }
            }
            if c.dir().exists("d1.start") || c.dir().exists("d2.start") {
                return Err("a dependant started".into());
            }
            Ok(())
        },
    );
    c.dir().write("www/ready.txt", "ok\n");
    c.wait_state("web", "ready");
    c.wait_file("d1.start");
    assert_eq!(c.ctl_service("job").expect("job")["state"], "starting");
    assert!(
        !c.dir().exists("d2.start"),
        "d2 started before job was ready"
    );
    c.dir().write("exec-ok", "");
    c.wait_state("job", "ready");
    c.wait_file("d2.start");
    assert_eq!(c.stop(), 0);
}

fn fs_mkdir(dir: &TestDir, rel: &str) {
    std::fs::create_dir_all(dir.join(rel)).expect("mkdir");
}

/// Never ready, `ready-timeout = "500ms"`: corral stops it, reports backoff
/// with the reason, starts it again (a new pid); its dependant waits.
#[test]
fn not_ready_within_ready_timeout_is_a_failed_start_with_backoff() {
    let dir = TestDir::new("ready-timeout");
    dir.service(
        "r",
        r#"ready = { fd = 3 }
ready-timeout = "500ms"
restart-delay = "1s"
command = '''echo $$ >> "$T/r.pids"; exec sleep 1000'''
"#,
    );
    dir.service("d", &dependant("d", "r"));
    let mut c = dir.corral().ctl_socket().start();
    let first = c.wait_pids("r.pids", 1)[0];
    let backoff = c.wait_state("r", "backoff");
    let detail = backoff["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.starts_with("not ready within ready-timeout 500ms; next start in"),
        "{backoff}"
    );
    assert_eq!(backoff["last_exit"], "killed by SIGTERM", "{backoff}");
    assert!(backoff["pid"].is_null(), "{backoff}");
    assert!(
        !running(first),
        "the first run ({first}) is still running in backoff"
    );
    c.wait_stderr_line(&[
        "not ready within ready-timeout 500ms, restarting",
        "service=r",
    ]);

    let pids = c.wait_pids("r.pids", 2);
    assert_ne!(pids[0], pids[1], "restarted with a new pid");
    let again = c.wait_service("r", "restarted", |s| s["restarts"] == 1);
    assert!(
        matches!(again["state"].as_str(), Some("starting" | "backoff")),
        "{again}"
    );
    assert!(
        !c.dir().exists("d.start"),
        "d started though r was never ready"
    );
    let d = c.ctl_service("d").expect("d");
    assert_eq!(d["detail"], "waiting for r", "{d}");
    assert_eq!(c.stop(), 0);
}

/// The same, `essential` with `max-restarts = 1`: after the second failed
/// start the container exits with the service's status (SIGTERM: 143).
#[test]
fn an_essential_service_never_ready_ends_the_container() {
    let dir = TestDir::new("ready-timeout-essential");
    dir.service(
        "r",
        r#"ready = { fd = 3 }
ready-timeout = "500ms"
essential = true
max-restarts = 1
restart-delay = "100ms"
command = '''echo $$ >> "$T/r.pids"; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().ctl_socket().start();
    let code = c.wait_exit(DEADLINE);
    assert_eq!(code, 143, "{}", c.output_excerpt());
    let pids = c.dir().pids("r.pids");
    assert_eq!(pids.len(), 2, "one start and one restart: {pids:?}");
    assert_eq!(
        c.stderr_lines(&["not ready within ready-timeout 500ms, restarting"])
            .len(),
        2,
        "{}",
        c.stderr()
    );
    assert_eq!(
        c.stderr_lines(&[
            "essential service ended, shutting down",
            "service=r",
            "code=143"
        ])
        .len(),
        1,
        "{}",
        c.stderr()
    );
    assert!(pids.iter().all(|&p| !running(p)), "{pids:?} left running");
}

/// `health`: an exec probe every 200 ms. While it passes nothing restarts;
/// once it fails 3 times in a row the service is restarted (new pid), and
/// corral's log names the health check, each failure and the restart.
#[test]
fn a_health_check_failing_three_times_restarts_the_service() {
    let dir = TestDir::new("health");
    dir.write("healthy", "");
    dir.service(
        "h",
        r#"health = { exec = ["sh", "-c", 'echo x >> "$T/probes"; test -f "$T/healthy"'], interval = "200ms", retries = 3, timeout = "2s" }
restart-delay = "100ms"
command = '''echo $$ >> "$T/h.pids"; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().ctl_socket().start();
    let first = c.wait_pids("h.pids", 1)[0];
    // Five probes pass: nothing happens.
    c.wait_for("5 health probes", |c| {
        let n = c.dir().lines("probes").len();
        if n >= 5 {
            Ok(())
        } else {
            Err(format!("{n} probes"))
        }
    });
    let status = c.ctl_service("h").expect("h");
    assert_eq!(
        (status["state"].as_str(), status["restarts"].as_u64()),
        (Some("running"), Some(0)),
        "{status}"
    );
    assert_eq!(c.dir().pids("h.pids"), [first]);
    assert!(
        c.stderr_lines(&["health check failed"]).is_empty(),
        "{}",
        c.stderr()
    );

    std::fs::remove_file(c.dir().join("healthy")).expect("rm healthy");
    let pids = c.wait_pids("h.pids", 2);
    // Healthy again, so the new run stays.
    c.dir().write("healthy", "");
    assert_ne!(pids[0], pids[1]);
    assert!(
        !running(first),
        "the unhealthy run ({first}) is still there"
    );
    let restart = c.wait_stderr_line(&["health check failed 3 times", "restarting", "service=h"]);
    let log = c.stderr();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in corral's log:\n{log}"))
    };
    let fails: Vec<usize> = (1..=3)
        .map(|n| at(&format!("failures={n} retries=3")))
        .collect();
    assert!(fails.windows(2).all(|w| w[0] < w[1]), "{log}");
    assert!(
        at(&restart) > fails[2],
        "restarted before the third failure:\n{log}"
    );
    let stopping = log[fails[0]..]
        .find("stopping service")
        .map(|i| i + fails[0]);
    assert!(
        stopping.is_some_and(|s| s > fails[2]),
        "stopped before the third failure:\n{log}"
    );
    assert!(
        c.stderr_lines(&["failures=4"]).is_empty(),
        "more failures than retries before the restart:\n{log}"
    );
    let after = c.wait_service("h", "running again", |s| {
        s["state"] == "running" && s["restarts"] == 1
    });
    assert_eq!(after["pid"], pids[1], "{after}");
    assert_eq!(after["last_exit"], "killed by SIGTERM", "{after}");
    assert_eq!(c.stop(), 0);
}

/// A liveness probe that hangs: it counts as failed at its `timeout` and is
/// killed (no probe process is left behind, none is a zombie), and while it
/// hangs corral keeps answering (`ctl status` is quick).
#[test]
fn a_hanging_health_probe_times_out_is_killed_and_blocks_nothing() {
    let dir = TestDir::new("health-hang");
    dir.service(
        "h",
        r#"health = { exec = ["sh", "-c", 'echo $$ >> "$T/probe.pids"; exec sleep 30'], interval = "200ms", timeout = "300ms", retries = 2 }
restart-delay = "100ms"
command = '''echo $$ >> "$T/h.pids"; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().ctl_socket().start();
    let first = c.wait_pids("h.pids", 1)[0];
    let probe = c.wait_pids("probe.pids", 1)[0];
    let ran = c.ctl(&["status", "h"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        ran.took < Duration::from_secs(2),
        "ctl status took {:?} while a probe hung",
        ran.took
    );
    c.wait_for("the hanging probe to be killed and reaped", |_| {
        if running(probe) || zombie(probe) {
            Err(format!("probe {probe} still there"))
        } else {
            Ok(())
        }
    });
    let pids = c.wait_pids("h.pids", 2);
    assert_eq!(pids[0], first);
    c.wait_stderr_line(&["health check failed 2 times: timed out", "service=h"]);
    c.wait_for("every probe of the first run gone", |c| {
        let left: Vec<i32> = c
            .dir()
            .pids("probe.pids")
            .into_iter()
            .take(2)
            .filter(|&p| running(p) || zombie(p))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    assert_eq!(c.stop(), 0);
    let left: Vec<i32> = c
        .dir()
        .pids("probe.pids")
        .into_iter()
        .filter(|&p| running(p))
        .collect();
    assert!(
        left.is_empty(),
        "probes left running after corral exited: {left:?}"
    );
}
