//! `log-file` (SPEC section 10): a service's lines also go to a file, each
//! with its time and stream, rotated at `max-size` into `path.1` …
//! `path.keep`; a path corral cannot write is an error at `corral check`
//! and at startup; a full or read-only log directory costs lines (dropped
//! and counted), never the supervisor.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::*;

/// One line of a log file: its time, stream and the service's bytes.
fn parse(file: &Path, line: &str) -> (SystemTime, String, String) {
    let mut parts = line.splitn(3, ' ');
    let (Some(ts), Some(stream), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("{}: not `TIME STREAM line`: {line:?}", file.display());
    };
    assert!(
        ts.len() == 24 && ts.ends_with('Z'),
        "{}: not RFC 3339 UTC with milliseconds: {line:?}",
        file.display()
    );
    let ts = humantime::parse_rfc3339(ts)
        .unwrap_or_else(|e| panic!("{}: bad time in {line:?}: {e}", file.display()));
    assert!(
        stream == "stdout" || stream == "stderr",
        "{}: bad stream in {line:?}",
        file.display()
    );
    (ts, stream.to_string(), body.to_string())
}

/// The lines of a log file, each checked whole (it ends with a newline).
fn log_lines(file: &Path) -> Vec<(SystemTime, String, String)> {
    let bytes = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: ends inside a line",
        file.display()
    );
    text.lines().map(|l| parse(file, l)).collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn numbered(path: &Path, k: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{k}"));
    PathBuf::from(name)
}

/// `corral check` (and startup) name the file, line, column and key of a
/// log path corral could not write, and create nothing; a good one is in
/// the plan.
#[test]
fn a_log_path_corral_cannot_write_is_an_error_at_check_and_at_startup() {
    // `not-a-dir` is a file: nothing can be created below it.
    let bad = |dir: &TestDir| {
        dir.write("not-a-dir", "");
        dir.service(
            "web",
            &format!(
                "command = 'touch \"$T/web.ran\"; exec sleep 1000'\nlog-file = {{ path = \"{}/not-a-dir/logs/web.log\", keep = 2 }}\n",
                dir.path().display()
            ),
        )
    };
    let want = |file: &Path, dir: &TestDir| {
        format!(
            "{}:2:21: `log-file.path`: cannot create {t}/not-a-dir/logs/web.log: {t}/not-a-dir is not a directory",
            file.display(),
            t = dir.path().display()
        )
    };
    for startup in [false, true] {
        let dir = TestDir::new("log-file-unwritable");
        let file = bad(&dir);
        let finished = if startup {
            dir.corral().run()
        } else {
            dir.corral().check()
        };
        assert_eq!(finished.code(), 2, "{}", finished.stderr());
        let want = want(&file, finished.dir());
        assert!(
            finished.stderr().lines().any(|l| l == want),
            "startup {startup}: want {want:?} in:\n{}",
            finished.stderr()
        );
        assert!(!finished.dir().exists("web.ran"));
    }

    // A good one, relative to the services dir: in the plan, its directory
    // not created by check.
    let dir = TestDir::new("log-file-plan");
    dir.service(
        "db",
        "command = 'exec sleep 1000'\nlog-file = { path = \"../logs/db.log\", max-size = \"2MB\" }\n",
    );
    let finished = dir.corral().check();
    assert_eq!(finished.code(), 0, "{}", finished.stderr());
    let plan = finished.stdout();
    let log = finished.dir().join("services/../logs/db.log");
    assert!(
        plan.contains(&format!(
            "logs to {} (rotated at 2000000 bytes, 5 kept)",
            log.display()
        )),
        "{plan}"
    );
    assert!(!finished.dir().exists("logs"));
}

/// Every line, from stdout and stderr, invalid UTF-8 included, goes to the
/// file (whose directory corral creates) with its time and stream, also
/// with `output = "null"`; stdout still follows `output`.
///
/// Needs the integrator's wiring: the output thread calling
/// `LogFiles::line` for each line of a service with a `log-file`.
#[test]
fn every_line_goes_to_the_file_with_its_time_and_stream() {
    let dir = TestDir::new("log-file-lines");
    let script = r#"
echo "hello from $0"
echo oops >&2
printf 'bin\377ary\n'
printf 'no newline at the end'
exec sleep 1000
"#;
    for (name, output) in [("web", "prefix"), ("quiet", "null")] {
        dir.service(
            name,
            &format!(
                "output = \"{output}\"\nlog-file = {{ path = \"$T/logs/deep/{name}.log\" }}\ncommand = ['/bin/sh', '-c', '''{script}''', '{name}']\n"
            )
            .replace("$T", &dir.path().display().to_string()),
        );
    }
    let before = SystemTime::now() - Duration::from_secs(1);
    let mut c = dir.corral().start();
    for name in ["web", "quiet"] {
        let file = c.dir().join(&format!("logs/deep/{name}.log"));
        let lines = c.wait_for(&format!("{name}'s 3 lines in its log file"), |_| {
            let text = fs::read(&file).unwrap_or_default();
            match text.iter().filter(|&&b| b == b'\n').count() {
                3.. => Ok(log_lines(&file)),
                n => Err(format!("{n} lines")),
            }
        });
        let after = SystemTime::now() + Duration::from_secs(1);
        let shown: Vec<(&str, &str)> = lines
            .iter()
            .map(|(_, stream, body)| (stream.as_str(), body.as_str()))
            .collect();
        let hello = format!("hello from {name}");
        // The two streams are read apart: stderr's line may come first.
        let mut sorted = shown.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                ("stderr", "oops"),
                ("stdout", "bin\u{fffd}ary"),
                ("stdout", hello.as_str()),
            ],
            "{name}"
        );
        for (ts, _, _) in &lines {
            assert!(*ts >= before && *ts <= after, "{name}: time {ts:?}");
        }
        let raw = fs::read(&file).unwrap();
        assert!(
            raw.windows(6).any(|w| w == b"bin\xffar"),
            "{name}: the service's bytes as they came"
        );
    }
    assert!(c.stdout().contains("web | hello from web"));
    assert!(!c.stdout().contains("quiet"), "{}", c.stdout());
    // The partial last line comes out when the service is stopped, and is
    // in the file once corral has exited.
    assert_eq!(c.stop(), 0);
    for name in ["web", "quiet"] {
        let text = c.dir().read(&format!("logs/deep/{name}.log"));
        assert!(
            text.ends_with(" stdout no newline at the end\n"),
            "{name}: {text}"
        );
    }
}

/// 50 MB through a `log-file` with `max-size = "1MB", keep = 3` leaves
/// exactly the file and three rotated ones, each at most 1 MB (and nearly
/// full), every line whole and in order.
///
/// Needs the integrator's wiring (as above).
#[test]
fn fifty_megabytes_leave_exactly_keep_files_of_whole_lines_in_order() {
    let dir = TestDir::new("log-file-rotation");
    // 500,000 lines of 100 bytes (newline included); then, once the flood
    // is written, a last line to wait for.
    let pad = "x".repeat(84);
    dir.service(
        "web",
        &format!(
            r#"restart = "never"
log-file = {{ path = "../logs/web.log", max-size = "1MB", keep = 3 }}
command = '''
seq -f 'line-%09g-{pad}' 1 500000
sleep 1
echo done
'''
"#
        ),
    );
    let mut c = dir.corral().start();
    let logs = c.dir().join("logs");
    let path = logs.join("web.log");
    c.wait_for_within(Duration::from_secs(180), "the last line in web.log", |_| {
        let text = fs::read_to_string(&path).unwrap_or_default();
        if text.ends_with(" stdout done\n") {
            Ok(())
        } else {
            Err(format!("{} bytes", text.len()))
        }
    });
    assert_eq!(
        names_in(&logs),
        ["web.log", "web.log.1", "web.log.2", "web.log.3"]
    );
    let line_size = 24 + 1 + 6 + 1 + 100;
    let mut last: Option<u64> = None;
    let mut last_ts = SystemTime::UNIX_EPOCH;
    for k in [3, 2, 1, 0] {
        let file = if k == 0 {
            path.clone()
        } else {
            numbered(&path, k)
        };
        let size = fs::metadata(&file).unwrap().len();
        assert!(size <= 1_000_000, "{}: {size} bytes", file.display());
        if k > 0 {
            // Rotated only when the next line would not fit.
            assert!(
                size > 1_000_000 - line_size,
                "{}: only {size} bytes",
                file.display()
            );
        }
        for (ts, stream, body) in log_lines(&file) {
            assert!(ts >= last_ts, "{}: time went back", file.display());
            last_ts = ts;
            assert_eq!(stream, "stdout");
            if body == "done" {
                assert_eq!(k, 0, "done before the end");
                continue;
            }
            let n: u64 = body
                .strip_prefix("line-")
                .and_then(|rest| rest.strip_suffix(&format!("-{pad}")))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{}: torn line {body:?}", file.display()));
            assert!(
                last.is_none_or(|l| n > l),
                "{}: line {n} after {last:?}",
                file.display()
            );
            last = Some(n);
        }
    }
    assert_eq!(last, Some(500_000), "the flood's last line");
    assert_eq!(c.stop(), 0);
}

/// A service that prints 300 lines of 100 bytes and exits, restarted
/// again and again.
fn flapping(log: &str) -> String {
    let pad = "y".repeat(80);
    format!(
        r#"restart-delay = "50ms"
restart-delay-max = "50ms"
log-file = {{ path = "{log}", max-size = "1MB", keep = 1 }}
command = '''
echo $$ >> "$T/web.pids"
seq -f "run-$$-%06g-{pad}" 1 300
'''
"#
    )
}

/// Restarts of `web` go on: `ctl status` answers and counts more of them.
fn restarts_go_on(c: &mut Corral) {
    let before = c.ctl_service("web").expect("web in status")["restarts"]
        .as_u64()
        .unwrap();
    c.wait_service("web", "three more restarts", |s| {
        s["restarts"].as_u64().is_some_and(|r| r >= before + 3)
    });
}

/// A log directory on a full file system (a 64 KiB tmpfs): lines are
/// dropped and counted (a warning, `/metrics`), the file keeps whole lines
/// only, and the service's restarts and `ctl status` go on.
///
/// corral runs as PID 1 of its own namespaces; an init script mounts the
/// tmpfs over the log directory, so that nothing outside sees it (the test
/// reads the files through /proc/PID/root). Needs the integrator's wiring:
/// lines to `LogFiles`, `LogFiles::open` when the service starts (after the
/// init scripts), the dropped lines in `corral_output_dropped_lines_total`.
#[test]
fn a_full_log_directory_drops_and_counts_lines_while_restarts_go_on() {
    require_root("mounts a small tmpfs in a mount namespace of its own");
    let port = free_port();
    let dir = TestDir::new("log-file-full");
    fs::create_dir(dir.join("logs")).unwrap();
    dir.init_script(
        "10-small-disk",
        r#"mount -t tmpfs -o size=64k corral-test "$T/logs""#,
    );
    dir.service(
        "web",
        &flapping("$T/logs/web.log").replace("$T", &dir.path().display().to_string()),
    );
    let addr = format!("127.0.0.1:{port}");
    let mut c = dir
        .corral()
        .pid1()
        .ctl_socket()
        .args(["--http", &addr])
        .start();
    c.wait_socket();
    // The test's view of corral's mounts.
    let inside = PathBuf::from(format!("/proc/{}/root", c.pid()))
        .join(c.dir().path().strip_prefix("/").unwrap())
        .join("logs/web.log");
    c.wait_for(
        "web.log to fill the 64 KiB tmpfs",
        |_| match fs::metadata(&inside).map(|m| m.len()) {
            Ok(n) if n > 60 * 1024 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    c.wait_for("a warning about dropped lines", |c| {
        match c.stderr_lines(&["log file: lines dropped", "web"]).first() {
            Some(line) => Ok(line.clone()),
            None => Err("none yet".into()),
        }
    });
    restarts_go_on(&mut c);
    // What is in the file is whole lines.
    for (_, _, body) in log_lines(&inside) {
        assert!(
            body.starts_with("run-") && body.ends_with(&"y".repeat(80)),
            "torn line {body:?}"
        );
    }
    let dropped = c.wait_for("dropped lines in /metrics", |_| {
        let (_, page) = http_get(port, "/metrics")?;
        page.lines()
            .find_map(|l| {
                l.strip_prefix("corral_output_dropped_lines_total{service=\"web\"} ")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .filter(|&n| n > 0.0)
            .ok_or(page)
    });
    assert!(dropped > 0.0);
    assert_eq!(c.stop(), 0);
}

/// A log directory corral can no longer write (corral runs as uid 65534,
/// the directory is made read-only once the file is open): the file grows
/// to `max-size`, then the rotation fails and lines are dropped and
/// counted, while restarts and `ctl status` go on.
///
/// Needs the integrator's wiring (lines to `LogFiles`).
#[test]
fn a_read_only_log_directory_drops_lines_at_rotation_while_restarts_go_on() {
    require_root("runs corral as uid 65534");
    let dir = TestDir::new("log-file-ro");
    // corral as uid 65534 writes its socket below $T (as /tmp, sticky).
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let logs = dir.join("logs");
    fs::create_dir(&logs).unwrap();
    nix::unistd::chown(
        &logs,
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    let log = logs.join("web.log");
    dir.service("web", &flapping(&log.display().to_string()));
    let socket = dir.join("run/ctl.sock").display().to_string();
    let mut c = dir.corral().args(["--socket", &socket]).user(65534).start();
    c.wait_for("lines in web.log", |_| match fs::metadata(&log) {
        Ok(m) if m.len() > 0 => Ok(()),
        other => Err(format!("{other:?}")),
    });
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o555)).unwrap();
    c.wait_for("a warning about dropped lines", |c| {
        match c.stderr_lines(&["log file: lines dropped", "web"]).first() {
            Some(line) => Ok(line.clone()),
            None => Err(format!(
                "web.log: {:?}",
                fs::metadata(&log).map(|m| m.len())
            )),
        }
    });
    // corral runs as uid 65534: so must its client.
    let socket = PathBuf::from(socket);
    let restarts = |c: &Corral| -> u64 {
        let ran = run_within(
            &mut ctl_command_as_nobody(&socket, &["status", "--json"]),
            DEADLINE,
        );
        assert_eq!(ran.code, 0, "{ran:?}\n{}", c.output_excerpt());
        let services: Vec<serde_json::Value> = serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("{e}: {ran:?}\n{}", c.output_excerpt()));
        services
            .iter()
            .find(|s| s["name"] == "web")
            .and_then(|s| s["restarts"].as_u64())
            .unwrap()
    };
    let before = restarts(&c);
    c.wait_for("three more restarts", |c| match restarts(c) {
        n if n >= before + 3 => Ok(()),
        n => Err(format!("{n} restarts")),
    });
    assert!(fs::metadata(&log).unwrap().len() <= 1_000_000);
    assert!(
        !numbered(&log, 1).exists(),
        "rotated in a read-only directory?"
    );
    for (_, _, body) in log_lines(&log) {
        assert!(body.starts_with("run-"), "torn line {body:?}");
    }
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(c.stop(), 0);
}
