//! `pre-stop` (SPEC section 11): a hook or a delay before the stop signal,
//! on every stop, inside `stop-timeout`. The service files' errors first,
//! then the real binary: the hook runs (in the service's context) before
//! SIGTERM reaches the service, a hanging one is killed at its timeout, a
//! delay holds the signal back, and a restart, a config change and the
//! shutdown (dependants first) all run it.

use std::path::Path;

use corral::config::{PreStop, parse_service};

use crate::common::*;

/// `web.toml`'s errors, as `path:line:col: message`.
fn errors(text: &str) -> Vec<String> {
    match parse_service(Path::new("web.toml"), text) {
        Ok(spec) => panic!("expected errors, got {spec:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn pre_stop_forms_and_their_errors() {
    let spec = |text: &str| parse_service(Path::new("web.toml"), text).expect("valid");
    assert_eq!(
        spec("command = \"x\"\npre-stop = { exec = \"serf leave\", timeout = \"2s\" }").pre_stop,
        Some(PreStop::Exec {
            command: vec!["/bin/sh".into(), "-c".into(), "serf leave".into()],
            timeout: Some(std::time::Duration::from_secs(2)),
        })
    );
    assert_eq!(
        spec("command = \"x\"\npre-stop = { exec = [\"leave\", \"now\"] }").pre_stop,
        Some(PreStop::Exec {
            command: vec!["leave".into(), "now".into()],
            timeout: None,
        })
    );
    assert_eq!(
        spec("command = \"x\"\npre-stop = { delay = \"2s\" }").pre_stop,
        Some(PreStop::Delay(std::time::Duration::from_secs(2)))
    );
    let cases: [(&str, &[&str]); 8] = [
        (
            "pre-stop = { exce = \"x\" }",
            &["web.toml:2:14: unknown key `exce` in `pre-stop` (did you mean `exec`?)"],
        ),
        (
            "pre-stop = { exec = \"x\", delay = \"1s\" }",
            &[
                "web.toml:2:26: `pre-stop`: expected exactly one of `exec` or `delay`, found `exec` and `delay`",
            ],
        ),
        (
            "pre-stop = { timeout = \"1s\" }",
            &["web.toml:2:12: `pre-stop`: expected exactly one of `exec` or `delay`, found none"],
        ),
        (
            "pre-stop = { delay = \"1s\", timeout = \"1s\" }",
            &[
                "web.toml:2:28: `pre-stop.timeout` applies to `exec`: a `delay` is its own time limit",
            ],
        ),
        (
            "pre-stop = { delay = \"0\" }",
            &["web.toml:2:22: `pre-stop.delay`: must be longer than zero"],
        ),
        (
            "pre-stop = { exec = [] }",
            &["web.toml:2:21: `pre-stop.exec`: must not be empty"],
        ),
        (
            "pre-stop = { delay = \"5s\" }",
            &[
                "web.toml:2:1: `pre-stop.delay` (5.0s) must be shorter than `stop-timeout` (5.0s), which it counts in: raise `stop-timeout`",
            ],
        ),
        (
            "stop-timeout = \"2s\"\npre-stop = { exec = \"x\", timeout = \"3s\" }",
            &[
                "web.toml:3:1: `pre-stop.timeout` (3.0s) must not be longer than `stop-timeout` (2.0s), which it counts in: raise `stop-timeout`",
            ],
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            errors(&format!("command = \"x\"\n{line}")),
            expected,
            "{line}"
        );
    }
    // A hook that may take the whole stop-timeout is fine.
    spec("command = \"x\"\nstop-timeout = \"2s\"\npre-stop = { exec = \"x\", timeout = \"2s\" }");
}

/// A service that records its pid, and on SIGTERM the time and "NAME
/// term" in `$T/order`, then exits.
fn trapping(name: &str) -> String {
    format!(
        r#"command = '''trap 'date +%s.%N > "$T/{name}.term"; echo "{name} term" >> "$T/order"; exit 0' TERM; echo $$ >> "$T/{name}.pids"; sleep 1000 & wait'''
"#
    )
}

#[test]
fn the_hook_runs_in_the_services_context_before_sigterm_reaches_it_as_pid1() {
    let dir = TestDir::new("pre-stop-order");
    let work = dir.join("work");
    std::fs::create_dir(&work).expect("mkdir work");
    dir.write("web.env", "SECRET=s3cret\n");
    dir.service(
        "web",
        &format!(
            r#"{}working-dir = "{work}"
env = {{ GREETING = "hello" }}
env-file = "{env}"
stop-timeout = "8s"
pre-stop = {{ exec = '''date +%s.%N > "$T/hook.start"; echo "$MAINPID $GREETING $SECRET $(pwd)" > "$T/hook.out"; echo "web hook" >> "$T/order"; echo draining; sleep 0.5; date +%s.%N > "$T/hook.end"''', timeout = "4s" }}
"#,
            trapping("web"),
            work = work.display(),
            env = dir.join("web.env").display(),
        ),
    );
    let mut c = dir.corral().pid1().start();
    let web = c.wait_pids("web.pids", 1)[0];
    assert_eq!(c.stop(), 0);

    let d = c.dir();
    assert_eq!(d.lines("order"), ["web hook", "web term"]);
    let (hook_end, term) = (d.time("hook.end"), d.time("web.term"));
    assert!(
        term >= hook_end,
        "SIGTERM reached web at {term}, before its pre-stop ended at {hook_end}"
    );
    assert_eq!(
        d.read("hook.out").trim(),
        format!("{web} hello s3cret {}", work.display()),
        "MAINPID, env, env-file and working-dir of the service"
    );
    assert!(
        c.stdout().contains("web | draining"),
        "the hook's output goes where the service's goes:\n{}",
        c.output_excerpt()
    );
    assert_eq!(c.stderr_lines(&["pre-stop done", "web"]).len(), 1);
}

#[test]
fn a_hanging_hook_is_killed_at_its_timeout_and_the_stop_goes_on_as_pid1() {
    let dir = TestDir::new("pre-stop-hang");
    dir.service(
        "web",
        &format!(
            r#"{}stop-timeout = "20s"
pre-stop = {{ exec = '''echo $$ > "$T/hook.pid"; date +%s.%N > "$T/hook.start"; sleep 1000; echo never >> "$T/order"''', timeout = "1s" }}
"#,
            trapping("web")
        ),
    );
    let mut c = dir.corral().ctl_socket().pid1().start();
    c.wait_pids("web.pids", 1);
    let ran = c.ctl(&["stop", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.lines(), ["web: stopped (exit 0)"], "no SIGKILL needed");

    let d = c.dir();
    // The hook stamps its start a moment after corral started the clock.
    let waited = d.time("web.term") - d.time("hook.start");
    assert!(
        (0.9..10.0).contains(&waited),
        "SIGTERM came {waited:.3}s after the hook started: not at its 1s timeout"
    );
    assert_eq!(d.lines("order"), ["web term"], "the hook never finished");
    assert_eq!(
        c.stderr_lines(&["pre-stop timed out after 1.0s; stopping the service anyway"])
            .len(),
        1,
        "{}",
        c.output_excerpt()
    );
    let hook = d.pids("hook.pid")[0];
    c.wait_for("the hook and its sleep to be gone", |c| {
        match c.describe_descendants() {
            left if left.is_empty() && !c.process_running(hook) => Ok(()),
            left => Err(format!("left: {left:?}")),
        }
    });
    assert_eq!(c.stop(), 0);
}

#[test]
fn a_delay_holds_the_stop_signal_back_and_status_shows_it() {
    let dir = TestDir::new("pre-stop-delay");
    dir.service(
        "web",
        &format!(
            "{}stop-timeout = \"20s\"\npre-stop = {{ delay = \"2s\" }}\n",
            trapping("web")
        ),
    );
    let mut c = dir.corral().ctl_socket().start();
    c.wait_pids("web.pids", 1);
    let asked = epoch_now();
    let stop = c.ctl_background(&["stop", "web"]);
    let seen = c.wait_service("web", "stopping in its pre-stop delay", |s| {
        s["state"] == "stopping"
            && s["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("pre-stop delay"))
    });
    assert!(
        seen["pid"].is_i64(),
        "still running during the delay: {seen}"
    );
    assert!(!c.dir().exists("web.term"), "no SIGTERM during the delay");
    let ran = stop.finish(DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    let waited = c.dir().time("web.term") - asked;
    assert!(
        (1.95..15.0).contains(&waited),
        "SIGTERM came {waited:.3}s after the stop was asked for, not after the 2s delay"
    );
    assert_eq!(c.stop(), 0);
}

#[test]
fn pre_stop_runs_on_ctl_restart_and_on_a_config_change() {
    let dir = TestDir::new("pre-stop-restart");
    let web = |greeting: &str| {
        format!(
            r#"{}env = {{ GREETING = "{greeting}" }}
pre-stop = {{ exec = '''echo "$MAINPID $GREETING" >> "$T/hooks"; echo "web hook" >> "$T/order"''' }}
"#,
            trapping("web")
        )
    };
    let path = dir.service("web", &web("one"));
    let mut c = dir.corral().ctl_socket().start();
    let first = c.wait_pids("web.pids", 1)[0];

    let ran = c.ctl(&["restart", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let second = c.wait_pids("web.pids", 2)[1];
    assert_eq!(c.dir().lines("hooks"), [format!("{first} one")]);

    std::fs::write(&path, web("two")).expect("rewrite web.toml");
    let ran = c.ctl(&["reload"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    c.wait_pids("web.pids", 3);
    // The hook of the definition that was running: the old one.
    assert_eq!(
        c.dir().lines("hooks"),
        [format!("{first} one"), format!("{second} one")]
    );
    assert_eq!(
        c.dir().lines("order"),
        ["web hook", "web term", "web hook", "web term"],
        "each stop: the hook, then SIGTERM"
    );
    assert_eq!(c.stop(), 0);
    assert_eq!(
        c.dir().lines("hooks").len(),
        3,
        "and the shutdown ran it too"
    );
}

#[test]
fn at_shutdown_pre_stops_run_dependants_first_as_pid1() {
    let dir = TestDir::new("pre-stop-shutdown");
    let svc = |name: &str, after: &str| {
        format!(
            r#"{}after = [{after}]
pre-stop = {{ exec = '''echo "{name} hook" >> "$T/order"''' }}
"#,
            trapping(name)
        )
    };
    dir.service("db", &svc("db", ""));
    dir.service("api", &svc("api", "\"db\""));
    let mut c = dir.corral().pid1().start();
    c.wait_pids("db.pids", 1);
    c.wait_pids("api.pids", 1);
    assert_eq!(c.stop(), 0);
    assert_eq!(
        c.dir().lines("order"),
        ["api hook", "api term", "db hook", "db term"]
    );
}
