//! `after` conditions (SPEC section 11): the table form `after = { NAME =
//! CONDITION }` against the real binary. Each condition gates its
//! dependant: `started` does not wait for readiness, `ready` does,
//! `healthy` waits for the first health probe that passes, `completed`
//! starts after a oneshot that failed while `succeeded` waits (and says
//! why in `ctl status`) until a run that succeeds; `corral check` prints
//! the conditions and refuses those a dependency cannot reach.
//!
//! "Not yet" is a state the test holds (a file the services wait for),
//! never a race against a sleep.

use std::time::Duration;

use crate::common::*;

/// `while [ ! -e "$T/FILE" ]; do sleep 0.01; done`: hold until the test says.
fn hold_until(file: &str) -> String {
    format!(r#"while [ ! -e "$T/{file}" ]; do sleep 0.01; done"#)
}

/// A service that comes after `after` (TOML), records its start as
/// `$T/NAME.start` and sleeps.
fn dependant(name: &str, after: &str) -> String {
    format!(
        r#"after = {after}
command = '''date +%s.%N >> "$T/{name}.start"; exec sleep 1000'''
"#
    )
}

/// Nothing starts `name` for a while.
fn not_started(c: &Corral, name: &str) {
    stays(
        &format!("{name} not started"),
        Duration::from_millis(300),
        || {
            if c.dir().exists(&format!("{name}.start")) {
                Err(format!("{name} started"))
            } else {
                Ok(())
            }
        },
    );
}

/// db is spawned at once and ready (sd_notify) only once released; `early`
/// comes after it `started`, `late` after it `ready` (array form). early
/// starts while db is not ready; late only after db said READY=1.
#[test]
fn started_does_not_wait_for_readiness_and_ready_does() {
    let dir = TestDir::new("after-started");
    dir.sd_notify();
    dir.service(
        "db",
        &format!(
            r#"ready = {{ notify = true }}
command = '''
date +%s.%N > "$T/db.start"
{hold}
date +%s.%N > "$T/db.ready"
"$T/sd_notify" READY=1
exec sleep 1000
'''
"#,
            hold = hold_until("release")
        ),
    );
    dir.service("early", &dependant("early", r#"{ db = "started" }"#));
    dir.service("late", &dependant("late", r#"["db"]"#));
    let mut c = dir.corral().ctl_socket().start();
    c.wait_file("early.start");
    let db = c.ctl_service("db").expect("db in status");
    assert_eq!(db["state"], "starting", "{db}");
    assert_eq!(db["ready"], false, "{db}");
    assert!(!c.dir().exists("db.ready"), "db is held: not ready");
    let late = c.ctl_service("late").expect("late in status");
    assert_eq!(late["detail"], "waiting for db", "{late}");
    not_started(&c, "late");

    c.dir().write("release", "");
    c.wait_file("late.start");
    let (ready, late) = (c.dir().time("db.ready"), c.dir().time("late.start"));
    assert!(
        late >= ready,
        "late started ({late}) before db was ready ({ready})"
    );
    assert_eq!(c.stop(), 0);
}

/// db is ready at once (no readiness) but its health check (`test -e
/// $T/healthy`, every 200 ms) passes only once the test creates the file:
/// `web` (after db `healthy`) waits for that, and `ctl status` says so;
/// `api` (after db `ready`) does not. The main COMMAND waits for web.
#[test]
fn healthy_waits_for_the_first_health_probe_that_passes() {
    let dir = TestDir::new("after-healthy");
    dir.service(
        "db",
        r#"health = { exec = ["sh", "-c", 'echo probe >> "$T/probes"; test -e "$T/healthy"'], interval = "200ms", retries = 1000 }
command = '''date +%s.%N >> "$T/db.start"; exec sleep 1000'''
"#,
    );
    dir.service("web", &dependant("web", r#"{ db = "healthy" }"#));
    dir.service("api", &dependant("api", r#"{ db = "ready" }"#));
    let mut c = dir
        .corral()
        .ctl_socket()
        .main([
            "sh",
            "-c",
            r#"date +%s.%N > "$T/main.start"; exec sleep 1000"#,
        ])
        .start();
    c.wait_file("api.start");
    // Probes run and fail: web keeps waiting, and says for what.
    c.wait_for("two failed health probes", |c| {
        let probes = c.dir().lines("probes").len();
        if probes >= 2 {
            Ok(())
        } else {
            Err(format!("{probes} probes"))
        }
    });
    let web = c.ctl_service("web").expect("web in status");
    assert_eq!(web["state"], "starting", "{web}");
    assert_eq!(web["detail"], "waiting for db to be healthy", "{web}");
    not_started(&c, "web");
    assert!(
        !c.dir().exists("main.start"),
        "the main COMMAND waits for web"
    );

    let healthy_at = epoch_now();
    c.dir().write("healthy", "");
    c.wait_file("web.start");
    assert!(c.dir().time("web.start") >= healthy_at);
    c.wait_file("main.start");
    assert_eq!(c.dir().lines("db.start").len(), 1, "db was not restarted");
    c.stop();
}

/// `migrate` (a oneshot) exits 3 on its first run and 0 once `$T/fixed`
/// exists. `cleanup` (after it `completed`) starts after the failed run;
/// `web` (after it `succeeded`) waits, `ctl status` says it waits for
/// migrate to succeed and why that will not come; the main COMMAND is not
/// held by it. `ctl restart migrate` runs it again, it succeeds, web
/// starts. corral runs as PID 1.
#[test]
fn completed_starts_after_a_failed_oneshot_and_succeeded_waits_for_a_run_that_succeeds() {
    let dir = TestDir::new("after-oneshot");
    dir.service(
        "migrate",
        r#"oneshot = true
command = '''date +%s.%N >> "$T/migrate.runs"; test -e "$T/fixed" || exit 3'''
"#,
    );
    dir.service(
        "cleanup",
        &dependant("cleanup", r#"{ migrate = "completed" }"#),
    );
    dir.service("web", &dependant("web", r#"{ migrate = "succeeded" }"#));
    // As PID 1 of a namespace, as in a container.
    let mut c = dir
        .corral()
        .ctl_socket()
        .pid1()
        .main([
            "sh",
            "-c",
            r#"date +%s.%N > "$T/main.start"; exec sleep 1000"#,
        ])
        .start();
    c.wait_file("cleanup.start");
    c.wait_file("main.start");
    let migrate = c.wait_state("migrate", "failed");
    assert_eq!(migrate["last_exit_code"], 3, "{migrate}");
    let web = c.ctl_service("web").expect("web in status");
    assert_eq!(web["state"], "starting", "{web}");
    assert_eq!(
        web["detail"], "waiting for migrate to succeed (failed: exit 3, restart = \"never\")",
        "{web}"
    );
    not_started(&c, "web");
    // The table of `ctl status` says it too.
    let table = c.ctl(&["status"]);
    assert!(
        table
            .stdout
            .contains("waiting for migrate to succeed (failed: exit 3"),
        "{table:?}"
    );

    c.dir().write("fixed", "");
    let ran = c.ctl(&["restart", "migrate"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    c.wait_file("web.start");
    assert_eq!(c.dir().lines("migrate.runs").len(), 2);
    assert_eq!(c.wait_state("migrate", "exited")["last_exit_code"], 0);
    assert_eq!(
        c.dir().lines("cleanup.start").len(),
        1,
        "cleanup left alone"
    );
    c.stop();
}

/// `corral check` prints each condition that is not the default in the
/// plan, and refuses, with `path:line:col`, a condition the dependency
/// cannot reach and one it does not know.
#[test]
fn check_prints_conditions_and_refuses_those_that_cannot_be_met() {
    let dir = TestDir::new("after-check");
    dir.service(
        "db",
        "command = \"sleep 1000\"\nhealth = { tcp = \"127.0.0.1:1\" }\n",
    );
    dir.service("migrate", "command = \"true\"\noneshot = true\n");
    dir.service(
        "web",
        "command = \"sleep 1000\"\nafter = { db = \"healthy\", migrate = \"completed\" }\n",
    );
    dir.service(
        "api",
        "command = \"sleep 1000\"\nafter = { db = \"ready\" }\n",
    );
    let finished = dir.corral().check();
    assert_eq!(finished.code(), 0, "{}", finished.stderr());
    let stdout = finished.stdout();
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("{name} missing from the plan:\n{stdout}"))
            .to_string()
    };
    assert!(
        line("web").contains("after db (healthy), migrate (completed)"),
        "{stdout}"
    );
    assert!(line("api").contains("after db;"), "{stdout}");

    let dir = TestDir::new("after-check-bad");
    dir.service("db", "command = \"sleep 1000\"\n");
    let web = dir.service(
        "web",
        "command = \"sleep 1000\"\nafter = { db = \"succeeded\" }\n",
    );
    let api = dir.service(
        "api",
        "command = \"sleep 1000\"\nafter = { db = \"helthy\" }\n",
    );
    let finished = dir.corral().check();
    assert_eq!(finished.code(), 2);
    let stderr = finished.stderr();
    assert!(
        stderr.contains(&format!(
            "{}:2:16: `after.db`: \"succeeded\" needs a oneshot",
            web.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:2:16: `after.db`: unknown condition \"helthy\" (did you mean \"healthy\"?)",
            api.display()
        )),
        "{stderr}"
    );
}
