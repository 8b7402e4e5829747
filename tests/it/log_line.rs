//! `ready = { log-line = "regex" }` (SPEC section 11) against the real
//! binary: a service is ready once a whole line of its stdout or stderr
//! matches, and the line still reaches corral's output and `ctl logs`; a
//! service that never prints it fails its `ready-timeout`; a line from an
//! earlier run (a process it left behind) never makes a new run ready;
//! with `output = "null"` the lines are read for the match alone.
//!
//! "Not yet" is a state the test holds (a file the services wait for),
//! never a race against a sleep.

use std::time::Duration;

use crate::common::*;

/// `while [ ! -e "$T/FILE" ]; do sleep 0.01; done`: hold until the test says.
fn hold_until(file: &str) -> String {
    format!(r#"while [ ! -e "$T/{file}" ]; do sleep 0.01; done"#)
}

/// `web` prints a few lines, then, once released, "listening on 8080" (on
/// stderr, to show both streams count); `app` comes after it. app starts
/// only after the line, web is `starting` until then; the line is in
/// corral's stderr and in `ctl logs web`. `quiet` (`output = "null"`)
/// becomes ready by its line, which corral does not show but keeps.
#[test]
fn a_service_is_ready_once_it_prints_the_line_which_still_reaches_the_output() {
    let dir = TestDir::new("log-line");
    dir.service(
        "web",
        &format!(
            r#"ready = {{ log-line = 'listening on \d+$' }}
command = '''
echo "starting up"
echo "not listening on the port yet" >&2
{hold}
date +%s.%N > "$T/web.said"
echo "listening on 8080" >&2
exec sleep 1000
'''
"#,
            hold = hold_until("release")
        ),
    );
    dir.service(
        "app",
        r#"after = ["web"]
command = '''date +%s.%N > "$T/app.start"; exec sleep 1000'''
"#,
    );
    dir.service(
        "quiet",
        r#"output = "null"
ready = { log-line = "^ready$" }
command = '''echo warming; echo ready; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().ctl_socket().start();
    c.wait_for("web's first lines in corral's output", |c| {
        let (out, err) = (c.stdout(), c.stderr());
        if out.contains("web | starting up\n")
            && err.contains("web | not listening on the port yet\n")
        {
            Ok(())
        } else {
            Err(format!("stdout {out:?}"))
        }
    });
    let web = c.ctl_service("web").expect("web in status");
    assert_eq!(web["state"], "starting", "{web}");
    let app = c.ctl_service("app").expect("app in status");
    assert_eq!(app["detail"], "waiting for web", "{app}");
    stays(
        "app not started before web's line",
        Duration::from_millis(300),
        || {
            if c.dir().exists("app.start") {
                Err("app started".into())
            } else {
                Ok(())
            }
        },
    );

    c.dir().write("release", "");
    c.wait_file("app.start");
    let (said, started) = (c.dir().time("web.said"), c.dir().time("app.start"));
    assert!(
        started >= said,
        "app started ({started}) before web said the line ({said})"
    );
    let web = c.wait_state("web", "ready");
    assert_eq!(web["restarts"], 0, "{web}");
    // The line is not swallowed: corral's stderr and the log ring have it.
    c.wait_for("web's line in corral's stderr", |c| {
        if c.stderr().contains("web | listening on 8080\n") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let logs = c.ctl(&["logs", "web"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    assert_eq!(logs.lines(), ["starting up"], "{logs:?}");
    assert_eq!(
        logs.stderr, "not listening on the port yet\nlistening on 8080\n",
        "{logs:?}"
    );

    let quiet = c.wait_state("quiet", "ready");
    assert_eq!(quiet["restarts"], 0, "{quiet}");
    assert!(!c.stdout().contains("quiet |"), "{}", c.stdout());
    let kept = c.ctl(&["logs", "quiet"]);
    assert_eq!(kept.lines(), ["warming", "ready"], "{kept:?}");
    assert_eq!(c.stop(), 0);
}

/// A service that never prints its line: not ready within its
/// `ready-timeout`, so the start failed (backoff, with the reason), and
/// it is started again.
#[test]
fn a_service_that_never_prints_the_line_fails_its_ready_timeout() {
    let dir = TestDir::new("log-line-timeout");
    dir.service(
        "web",
        r#"ready = { log-line = "^listening" }
ready-timeout = "300ms"
restart-delay = "50ms"
command = '''echo $$ >> "$T/web.pids"; echo "still listening? no"; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().ctl_socket().start();
    let first = c.wait_pids("web.pids", 1)[0];
    c.wait_stderr_line(&["web", "not ready within ready-timeout 300ms"]);
    let pids = c.wait_pids("web.pids", 2);
    assert_ne!(pids[1], first, "a new run");
    assert!(
        !c.process_running(first),
        "the first run was stopped: {first}"
    );
    assert_eq!(c.stop(), 0);
}

/// Run 1 leaves a process behind that prints the ready line (into run 1's
/// pipe) only once released, then exits; run 2 prints nothing yet. The
/// left-over line reaches the output but does not make run 2 ready; run
/// 2's own line does.
#[test]
fn a_line_from_an_earlier_run_does_not_make_a_new_run_ready() {
    let dir = TestDir::new("log-line-old-run");
    dir.service(
        "web",
        &format!(
            r#"ready = {{ log-line = "^listening" }}
restart-delay = "10ms"
command = '''
echo $$ >> "$T/web.pids"
if [ ! -e "$T/run1" ]; then
  : > "$T/run1"
  ( {hold_old}; echo "listening (left over from run 1)"; exec sleep 1000 ) &
  exit 1
fi
{hold_new}
echo "listening (run 2)"
exec sleep 1000
'''
"#,
            hold_old = hold_until("release-old"),
            hold_new = hold_until("release-new")
        ),
    );
    let mut c = dir.corral().ctl_socket().start();
    c.wait_pids("web.pids", 2);
    c.wait_state("web", "starting");
    c.dir().write("release-old", "");
    c.wait_for("the left-over line in corral's output", |c| {
        if c.stdout()
            .contains("web | listening (left over from run 1)\n")
        {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    stays(
        "run 2 not made ready by run 1's line",
        Duration::from_millis(300),
        || match c.ctl_service("web") {
            Some(web) if web["state"] == "starting" && web["run"] == 2 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    c.dir().write("release-new", "");
    let web = c.wait_state("web", "ready");
    assert_eq!(web["run"], 2, "{web}");
    assert_eq!(c.stop(), 0);
}
