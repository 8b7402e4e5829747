//! `schedule` (SPEC section 11): cron jobs run by the real binary as PID 1,
//! with the container environment and prefixed lines; `ctl run`; a tick
//! during a run skipped and logged; status; `corral check`; the errors of
//! a service file with a schedule.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use corral::config::parse_service;

/// Parses `job.toml` and expects errors: their `Display` strings.
fn errors(text: &str) -> Vec<String> {
    match parse_service(Path::new("job.toml"), text) {
        Ok(spec) => panic!("expected errors, got {spec:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn an_every_second_job_runs_as_pid1_with_the_container_env_and_its_lines_prefixed() {
    let dir = TestDir::new("schedule-every");
    dir.service(
        "job",
        r#"
schedule = "@every 1s"
command = '''echo "run by $FROM_CONTAINER with $GREETING"; echo $$ >> "$T/job.pids"'''
env = { GREETING = "hello" }
"#,
    );
    let mut c = dir
        .corral()
        .env("FROM_CONTAINER", "the container")
        .pid1()
        .start();
    // Two runs: two ticks, each a new process.
    let pids = c.wait_pids("job.pids", 2);
    assert_ne!(pids[0], pids[1]);
    c.wait_for("the job's prefixed line", |c| {
        let out = c.stdout();
        if out.contains("job | run by the container with hello") {
            Ok(())
        } else {
            Err(format!("stdout: {out}"))
        }
    });
    assert!(
        !c.stderr().contains("tick skipped"),
        "a run that ends at once overlaps nothing: {}",
        c.stderr()
    );
    assert_eq!(c.stop(), 0);
}

#[test]
fn ctl_run_runs_a_job_now_reports_its_outcome_and_status_shows_it() {
    let dir = TestDir::new("schedule-run");
    // Yearly: no tick during the test; runs only when asked. Its second run fails.
    dir.service(
        "job",
        r#"
schedule = "@yearly"
command = '''n=$(cat "$T/n" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$T/n"; echo "run $n"; exit $((n - 1))'''
"#,
    );
    dir.service("web", &sleeper("web"));
    let mut c = dir.corral().ctl_socket().env("TZ", "UTC0").pid1().start();
    c.wait_socket();
    c.wait_pids("web.pids", 1);
    c.wait_for("the job scheduled", |c| match c.ctl_service("job") {
        Some(job) if job["state"] == "scheduled" => Ok(()),
        other => Err(format!("{other:?}")),
    });

    let first = c.ctl(&["run", "job"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.starts_with("job: exit 0 after "), "{first:?}");
    assert_eq!(c.dir().read("n").trim(), "1");
    let second = c.ctl(&["run", "job"]);
    assert_eq!(second.code, 1, "a failed run fails the command: {second:?}");
    assert!(second.stderr.contains("job: exit 1 after "), "{second:?}");

    let job = c.ctl_service("job").expect("job in status");
    assert_eq!(
        job["state"], "scheduled",
        "a failed run waits for the next tick"
    );
    assert_eq!(job["schedule"], "@yearly");
    assert_eq!(job["last_run"], "exit 1");
    assert_eq!(job["last_run_code"], 1);
    assert_eq!(job["last_run_ok"], false);
    assert!(job["last_run_took_ms"].is_u64() && job["last_run_ago_ms"].is_u64());
    // The next 1 January, 00:00, in the container's zone (UTC here).
    let next = job["next_run"].as_str().expect("next_run");
    assert!(next.ends_with("-01-01T00:00:00+00:00"), "{next}");
    assert!(job["next_run_ms"].as_u64().is_some_and(|ms| ms > 0));
    let table = c.ctl(&["status", "job"]);
    assert!(
        table.stdout.contains(&format!("next run {next} (in "))
            && table.stdout.contains("last run: exit 1 "),
        "{table:?}"
    );

    let longrun = c.ctl(&["run", "web"]);
    assert_eq!(longrun.code, 1);
    assert!(
        longrun.stderr.contains(
            "web is a long-running service: `run` is for scheduled and oneshot services; use `corral ctl start` or `restart`"
        ),
        "{longrun:?}"
    );
    assert_eq!(c.stop(), 0);
}

#[test]
fn a_tick_during_a_run_is_skipped_and_logged_and_the_next_free_tick_runs() {
    let dir = TestDir::new("schedule-overlap");
    // Each run holds on until the test lets it go.
    dir.service(
        "job",
        r#"
schedule = "@every 1s"
command = '''echo $$ >> "$T/job.pids"; while [ ! -e "$T/go" ]; do sleep 0.05; done; rm -f "$T/go"'''
"#,
    );
    let mut c = dir.corral().ctl_socket().pid1().start();
    c.wait_socket();
    let first = c.wait_pids("job.pids", 1)[0];
    let line = c.wait_stderr_line(&["tick skipped", "job", "the previous run is still running"]);
    assert!(line.contains(&format!("pid {first}")), "{line}");
    assert_eq!(
        c.dir().pids("job.pids"),
        vec![first],
        "never two runs at once"
    );
    let skipped = c.ctl_service("job").expect("job")["skipped_ticks"]
        .as_u64()
        .expect("skipped_ticks");
    assert!(skipped >= 1);
    // `ctl run` during the run: refused, saying since when.
    let again = c.ctl(&["run", "job"]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("job is already running since ")
            && again.stderr.contains(&format!("(pid {first})")),
        "{again:?}"
    );
    c.dir().write("go", "");
    let pids = c.wait_pids("job.pids", 2);
    assert_ne!(pids[1], first);
    c.dir().write("go", "");
    // Shut down with a run (maybe) under way: it is stopped like any service.
    assert_eq!(c.stop(), 0);
}

#[test]
fn a_running_job_is_stopped_at_shutdown_like_any_service() {
    let dir = TestDir::new("schedule-stop");
    dir.service(
        "job",
        r#"
schedule = "@every 1s"
command = '''echo $$ >> "$T/job.pids"; trap 'echo stopped >> "$T/job.out"; exit 0' TERM; while :; do sleep 0.05; done'''
"#,
    );
    let mut c = dir.corral().pid1().start();
    c.wait_pids("job.pids", 1);
    assert_eq!(c.stop(), 0);
    assert_eq!(c.dir().read("job.out").trim(), "stopped");
}

fn check_with_tz(dir: &TestDir, tz: &str) -> Ran {
    let mut cmd = Command::new(corral_bin());
    cmd.arg("check")
        .arg("--services")
        .arg(dir.join("services"))
        .env("TZ", tz);
    run_within(&mut cmd, DEADLINE)
}

#[test]
fn corral_check_prints_each_schedule_and_its_next_ticks_in_the_local_zone() {
    let dir = TestDir::new("schedule-check");
    dir.service("backup", "schedule = \"0 3 * * *\"\ncommand = \"true\"\n");
    dir.service("ping", "schedule = \"@every 30s\"\ncommand = \"true\"\n");
    let utc = check_with_tz(&dir, "UTC0");
    assert_eq!(utc.code, 0, "{utc:?}");
    let line = utc
        .stdout
        .lines()
        .find(|l| l.contains("backup"))
        .expect("backup in the plan");
    assert!(line.contains("schedule \"0 3 * * *\", next "), "{line}");
    assert_eq!(line.matches("T03:00:00+00:00").count(), 3, "{line}");
    let ping = utc
        .stdout
        .lines()
        .find(|l| l.contains("ping"))
        .expect("ping in the plan");
    assert!(ping.contains("schedule \"@every 30s\", next "), "{ping}");
    assert_eq!(
        ping.matches(":00+00:00").count() + ping.matches(":30+00:00").count(),
        3,
        "{ping}"
    );
    // New York's rule: 03:00 local, with its offset (EST or EDT).
    let ny = check_with_tz(&dir, "EST5EDT,M3.2.0,M11.1.0");
    let line = ny
        .stdout
        .lines()
        .find(|l| l.contains("backup"))
        .expect("backup in the plan");
    assert_eq!(
        line.matches("T03:00:00-05:00").count() + line.matches("T03:00:00-04:00").count(),
        3,
        "{line}"
    );
}

#[test]
fn a_bad_schedule_is_an_error_at_its_line_and_column() {
    let dir = TestDir::new("schedule-check-bad");
    dir.service("job", "command = \"true\"\nschedule = \"*/10 * * * * *\"\n");
    let ran = check_with_tz(&dir, "UTC0");
    assert_eq!(ran.code, 2, "{ran:?}");
    let path = dir.join("services/job.toml").display().to_string();
    assert!(
        ran.stderr.contains(&format!(
            "{path}:2:12: `schedule`: expected a cron expression of 5 fields (minute hour day-of-month month day-of-week), found 6 (corral takes no seconds field: use \"@every 10s\" to run more often than once a minute)"
        )),
        "{ran:?}"
    );
}

#[test]
fn schedule_errors_name_the_field_and_the_keys_it_excludes() {
    assert_eq!(
        errors("command = \"true\"\nschedule = \"61 * * * *\"\n"),
        vec![
            "job.toml:2:12: `schedule`: invalid cron expression \"61 * * * *\" in the minute (0-59) field \"61\": Component error: Number out of bounds."
        ]
    );
    assert_eq!(
        errors("command = \"true\"\nschedule = \"@dayly\"\n"),
        vec![
            "job.toml:2:12: `schedule`: unknown alias `@dayly` (did you mean `@daily`?); expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually or @every DURATION"
        ]
    );
    assert_eq!(
        errors("command = \"true\"\nschedule = \"0 0 30 2 *\"\n"),
        vec![
            "job.toml:2:12: `schedule`: \"0 0 30 2 *\" never matches a date (CronScheduler time search limit exceeded.)"
        ]
    );
    assert_eq!(
        errors("command = \"true\"\nschedul = \"@daily\"\n"),
        vec!["job.toml:2:1: unknown key `schedul` (did you mean `schedule`?)"]
    );
    assert_eq!(
        errors(
            r#"command = "true"
schedule = "@every 30s"
restart = "always"
max-restarts = 3
oneshot = true
ready = { tcp = "localhost:80" }
health = { tcp = "localhost:80" }
essential = true
watch = ["/etc/job.conf"]
"#
        ),
        vec![
            "job.toml:3:1: `restart` does not apply to a scheduled service (`schedule`): a failed run is reported, and the next tick runs it again",
            "job.toml:4:1: `max-restarts` does not apply to a scheduled service (`schedule`): a failed run is reported, and the next tick runs it again",
            "job.toml:5:1: `oneshot` does not apply to a scheduled service (`schedule`): a scheduled service already runs to completion, at each tick",
            // A oneshot has no readiness either: both say so.
            "job.toml:6:1: `ready` does not apply to a oneshot: its dependants wait for its exit 0",
            "job.toml:6:1: `ready` does not apply to a scheduled service (`schedule`): it runs to completion at each tick",
            "job.toml:7:1: `health` does not apply to a oneshot: its dependants wait for its exit 0",
            "job.toml:7:1: `health` does not apply to a scheduled service (`schedule`): it runs to completion at each tick",
            "job.toml:8:1: `essential` does not apply to a scheduled service (`schedule`): it ends after each run by design; a failed run is reported in `ctl status` and the log",
            "job.toml:9:1: `watch` does not apply to a scheduled service (`schedule`): a changed definition applies from its next run",
        ]
    );
    // `oneshot = false` and `essential = false` say nothing against it.
    let spec = parse_service(
        Path::new("job.toml"),
        "command = \"true\"\nschedule = \"@hourly\"\noneshot = false\nessential = false\n",
    )
    .expect("valid");
    assert_eq!(
        spec.schedule.as_ref().map(|s| s.text.as_str()),
        Some("@hourly")
    );
}
