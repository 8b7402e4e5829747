//! Service output as a log stream (SPEC section 10), against the real
//! binary: `--output-format json` lines parse with every field, for stdout,
//! stderr and bytes that are not UTF-8 (every byte 0x00-0xff comes back);
//! timestamps never go back within a service; `--output-timestamps` text
//! lines; `ctl logs --all` merges services in time order, `--since` keeps
//! the newer lines, `--json` prints the same objects; `/metrics` counts
//! lines by service and stream, and counts the lines dropped while corral's
//! stdout cannot be written (a full disk: /dev/full).

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::common::*;
use corral::output::format::unescape_line;
use nix::sys::signal::Signal;
use serde_json::Value;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l:?}")))
        .collect()
}

fn time_of(record: &Value) -> SystemTime {
    let ts = record["ts"].as_str().expect("ts");
    assert!(
        ts.len() == 24 && ts.ends_with('Z'),
        "not RFC 3339 UTC with milliseconds: {ts}"
    );
    humantime::parse_rfc3339(ts).expect("ts parses")
}

fn line_bytes(record: &Value) -> Vec<u8> {
    unescape_line(record["line"].as_str().expect("line"))
}

/// The records of `service` in corral's `stdout` (JSON lines).
fn records_of(records: &[Value], service: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["service"] == service)
        .cloned()
        .collect()
}

#[test]
fn json_lines_have_every_field_for_stdout_stderr_and_any_bytes() {
    let dir = TestDir::new("out-json");
    dir.service(
        "web",
        &format!(
            r#"command = '''
echo $$ >> "$T/web.pids"
echo hello
printf '%s\n' 'oops "quoted" \x41 \\' >&2
{py} -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) + b"\n")'
i=0; while [ $i -lt 50 ]; do echo "tick $i"; i=$((i+1)); done
echo done > "$T/done"
exec sleep 1000
'''
"#,
            py = python3()
        ),
    );
    let mut c = dir
        .corral()
        .ctl_socket()
        .args(["--output-format", "json"])
        .start();
    let pid = c.wait_pids("web.pids", 1)[0];
    c.wait_file("done");
    c.wait_for("web's lines on stdout and stderr", |c| {
        let ticks = c.stdout().matches("tick 49").count();
        let oops = c.stderr().contains("oops");
        (ticks == 1 && oops).then_some(()).ok_or("not yet".into())
    });
    let out = json_lines(&c.stdout());
    let web = records_of(&out, "web");
    for record in &web {
        let keys: Vec<&str> = record
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{record}");
        assert_eq!(record["pid"], pid, "{record}");
        assert_eq!(record["stream"], "stdout", "{record}");
        time_of(record);
    }
    let lines: Vec<Vec<u8>> = web.iter().map(line_bytes).collect();
    assert_eq!(lines[0], b"hello");
    // 0x00-0x09, then (the newline ended that line) 0x0b-0xff: every byte
    // back as it was written.
    assert_eq!(lines[1], (0u8..10).collect::<Vec<u8>>());
    assert_eq!(lines[2], (11u8..=255).collect::<Vec<u8>>());
    assert_eq!(lines[3], b"tick 0");
    assert_eq!(lines.len(), 3 + 50);
    // Timestamps never go back within a service.
    let times: Vec<SystemTime> = web.iter().map(time_of).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // stderr: the service's line among corral's own (text) log lines.
    let err: Vec<Value> = c
        .stderr()
        .lines()
        .filter(|l| l.starts_with("{\"ts\""))
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let oops = records_of(&err, "web");
    assert_eq!(oops.len(), 1, "{}", c.output_excerpt());
    assert_eq!(oops[0]["stream"], "stderr");
    assert_eq!(oops[0]["pid"], pid);
    assert_eq!(line_bytes(&oops[0]), br#"oops "quoted" \x41 \\"#);

    // ctl logs --json: the same objects.
    let logs = c.ctl(&["logs", "web", "--json", "-n", "1000"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    let got = json_lines(&logs.stdout);
    assert_eq!(got.len(), 1 + 3 + 50, "{}", logs.stdout);
    let stdout_ones: Vec<&Value> = got.iter().filter(|r| r["stream"] == "stdout").collect();
    for (a, b) in stdout_ones.iter().zip(&web) {
        assert_eq!(*a, b);
    }
    c.stop();
}

#[test]
fn text_lines_can_start_with_the_time_they_were_read() {
    let dir = TestDir::new("out-ts");
    dir.service(
        "web",
        r#"command = '''echo listening; echo warn >&2; exec sleep 1000'''
"#,
    );
    let before = SystemTime::now() - Duration::from_secs(1);
    let mut c = dir.corral().env("CORRAL_OUTPUT_TIMESTAMPS", "1").start();
    c.wait_for("web's lines", |c| {
        (c.stdout().contains("web | listening") && c.stderr().contains("web | warn"))
            .then_some(())
            .ok_or("not yet".into())
    });
    let stdout = c.stdout();
    let stderr = c.stderr();
    let line = stdout
        .lines()
        .find(|l| l.ends_with("web | listening"))
        .expect("the line");
    let (ts, rest) = line.split_once(' ').expect("a timestamp first");
    assert_eq!(rest, "web | listening");
    assert_eq!(ts.len(), 24, "{ts}");
    let t = humantime::parse_rfc3339(ts).expect("RFC 3339");
    assert!(t >= before && t <= SystemTime::now() + Duration::from_secs(1));
    let warn = stderr
        .lines()
        .find(|l| l.ends_with("web | warn"))
        .expect("the line");
    assert!(humantime::parse_rfc3339(&warn[..24]).is_ok(), "{warn}");
    c.stop();
}

#[test]
fn ctl_logs_all_merges_services_in_time_order_and_since_keeps_newer_lines() {
    let dir = TestDir::new("out-all");
    // a and b take turns, each waiting for the other's file: a1 b1 a2 b2.
    dir.service(
        "a",
        r#"command = '''
echo a1; touch "$T/a1"
until [ -e "$T/b1" ]; do sleep 0.01; done
echo a2 >&2; touch "$T/a2"
exec sleep 1000
'''
"#,
    );
    dir.service(
        "b",
        r#"command = '''
until [ -e "$T/a1" ]; do sleep 0.01; done
echo b1; touch "$T/b1"
until [ -e "$T/a2" ]; do sleep 0.01; done
echo b2; echo b2 > "$T/b2"
until [ -e "$T/late" ]; do sleep 0.01; done
echo late
exec sleep 1000
'''
"#,
    );
    let mut c = dir.corral().ctl_socket().start();
    c.wait_file("b2");
    let ran = c.wait_for("every line in corral's logs", |c| {
        let ran = c.ctl(&["logs", "--all"]);
        if ran.code == 0 && ran.stdout.contains("b | b2") {
            Ok(ran)
        } else {
            Err(format!("{ran:?}"))
        }
    });
    // stderr lines go to stderr, so stdout has a1 b1 b2 and stderr a2.
    assert_eq!(ran.lines(), ["a | a1", "b | b1", "b | b2"], "{ran:?}");
    assert_eq!(ran.stderr, "a | a2\n");
    // The JSON form has the order across both streams.
    let json = c.ctl(&["logs", "--all", "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    let records = json_lines(&json.stdout);
    let order: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["service"].as_str().unwrap(),
                r["line"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(order, ["a:a1", "b:b1", "a:a2", "b:b2"]);
    assert!(records.iter().all(|r| r["pid"].as_u64().is_some()));
    let times: Vec<SystemTime> = records.iter().map(time_of).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // -n counts across services.
    let two = c.ctl(&["logs", "--all", "--json", "-n", "2"]);
    assert_eq!(json_lines(&two.stdout).len(), 2, "{two:?}");

    // --since: wait until the lines so far are more than 1s old, then one more.
    let newest = *times.last().unwrap();
    c.wait_for(
        "the lines so far to be over a second old",
        |_| match newest.elapsed() {
            Ok(age) if age > Duration::from_millis(1500) => Ok(()),
            _ => Err("not yet".into()),
        },
    );
    c.dir().write("late", "");
    let recent = c.wait_for("the late line", |c| {
        let ran = c.ctl(&["logs", "--all", "--since", "1s"]);
        if ran.stdout.contains("late") {
            Ok(ran)
        } else {
            Err(format!("{ran:?}"))
        }
    });
    assert_eq!(recent.lines(), ["b | late"], "{recent:?}");
    let web_since = c.ctl(&["logs", "b", "--since", "1s"]);
    assert_eq!(web_since.lines(), ["late"], "{web_since:?}");
    let everything = c.ctl(&["logs", "b", "--since", "1h"]);
    assert_eq!(everything.lines(), ["b1", "b2", "late"], "{everything:?}");

    // Usage: a name or --all.
    assert_eq!(c.ctl(&["logs"]).code, 2);
    assert_eq!(c.ctl(&["logs", "a", "--all"]).code, 2);
    c.stop();
}

#[test]
fn ctl_logs_follow_all_gets_lines_of_every_service() {
    let dir = TestDir::new("out-follow-all");
    for name in ["a", "b"] {
        dir.service(
            name,
            &format!(
                r#"command = '''trap 'echo {name}-fresh' USR1; echo $$ >> "$T/{name}.pids"; while :; do sleep 1000 & wait; done'''
"#
            ),
        );
    }
    let mut c = dir.corral().ctl_socket().start();
    let a = c.wait_pids("a.pids", 1)[0];
    let b = c.wait_pids("b.pids", 1)[0];
    c.wait_socket();
    let mut follow = c.ctl_background(&["logs", "--all", "-f", "--json"]);
    // Subscribed once a first answer came: a line from a, then one from b.
    c.signal_process(a, Signal::SIGUSR1);
    let first: Value = serde_json::from_str(&follow.next_line(DEADLINE)).expect("json");
    assert_eq!(
        (first["service"].as_str(), first["line"].as_str()),
        (Some("a"), Some("a-fresh"))
    );
    c.signal_process(b, Signal::SIGUSR1);
    let second: Value = serde_json::from_str(&follow.next_line(DEADLINE)).expect("json");
    assert_eq!(
        (second["service"].as_str(), second["line"].as_str()),
        (Some("b"), Some("b-fresh"))
    );
    assert_eq!(second["pid"], b);
    send(follow.pid(), Signal::SIGKILL);
    drop(follow);
    c.stop();
}

/// The value of the sample `name` in a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let (code, page) = http_get(port, "/metrics").ok()?;
    (code == 200).then(|| sample(&page, name))?
}

#[test]
fn metrics_count_lines_by_service_and_stream() {
    let port = free_port();
    let dir = TestDir::new("out-metrics");
    dir.service(
        "web",
        r#"command = '''echo 1; echo 2; echo 3; echo e1 >&2; echo e2 >&2; exec sleep 1000'''
"#,
    );
    let addr = format!("127.0.0.1:{port}");
    let mut c = dir.corral().args(["--http", &addr]).start();
    let out = r#"corral_output_lines_total{service="web",stream="stdout"}"#;
    let err = r#"corral_output_lines_total{service="web",stream="stderr"}"#;
    let dropped = r#"corral_output_dropped_lines_total{service="web"}"#;
    c.wait_for("the counts", |_| {
        let got = (metric(port, out), metric(port, err), metric(port, dropped));
        if got == (Some(3.0), Some(2.0), Some(0.0)) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    c.stop();
}

/// corral run by hand with its stdout on /dev/full (every write fails with
/// ENOSPC); killed by pid when dropped.
struct FullDisk {
    child: Child,
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        kill_descendants(pid);
        send(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[test]
fn lines_that_cannot_be_written_are_dropped_and_counted() {
    let port = free_port();
    let dir = TestDir::new("out-full");
    dir.service(
        "web",
        r#"command = '''i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); sleep 0.005; done; exec sleep 1000'''
"#,
    );
    let stderr = fs::File::create(dir.join("corral.stderr")).expect("stderr file");
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut cmd = Command::new(corral_bin());
    for var in FOREIGN_ENV {
        cmd.env_remove(var);
    }
    cmd.env("T", dir.path())
        .env("CORRAL_SOCKET", dir.join("control.sock"))
        .env("CORRAL_S6_RUNTIME_DIR", dir.join("s6run"))
        .args(["--services", &dir.join("services").display().to_string()])
        .args(["--init-dir", &dir.join("init").display().to_string()])
        .args(["--finish-dir", &dir.join("finish").display().to_string()])
        .args(["--http", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(stderr);
    let mut corral = FullDisk {
        child: cmd.spawn().expect("spawn corral"),
    };
    let out = r#"corral_output_lines_total{service="web",stream="stdout"}"#;
    let dropped = r#"corral_output_dropped_lines_total{service="web"}"#;
    let failed = r#"corral_output_write_failed_lines_total{stream="stdout"}"#;
    let (lines, dropped, failed) = wait_until("all 200 lines counted", DEADLINE, || {
        let got = (
            metric(port, out),
            metric(port, dropped),
            metric(port, failed),
        );
        match got {
            (Some(n), Some(d), Some(f)) if n == 200.0 && d + f == n => Ok((n, d, f)),
            _ => Err(format!("{got:?}")),
        }
    });
    // Every line was lost, in a failed write or dropped before one.
    assert!(dropped > 0.0, "none dropped: {dropped} {failed}");
    assert_eq!(dropped + failed, lines);
    let log = dir.read("corral.stderr");
    assert!(log.contains("dropped (and counted)"), "{log}");
    assert!(
        matches!(corral.child.try_wait(), Ok(None)),
        "corral died: {log}"
    );
}
