//! `--syslog PATH` (SPEC section 10): a service that logs with `logger`,
//! `logger` and a Python RFC 5424 sender from outside, as `syslog | ...`
//! lines on corral's stdout, in `corral ctl logs syslog` and in JSON
//! output with facility and severity; a forged line break stays escaped;
//! the socket file is 0666 while corral runs and gone after; what is at
//! PATH and not a stale socket is refused, untouched.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Command, Stdio};

use crate::common::*;

/// Run `command` to its end; fails with its stderr.
fn run(command: &mut Command) {
    let out = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn logger(socket: &std::path::Path, args: &[&str]) {
    run(Command::new("logger")
        .arg("--socket-errors=on")
        .arg("-u")
        .arg(socket)
        .args(args));
}

/// A Python sender writing one RFC 5424 datagram (BOM, structured data).
fn python_rfc5424(socket: &std::path::Path) {
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'<165>1 2026-12-04T19:00:00.003Z web-1 py-app 777 ID47 [origin@32473 ip="10.0.0.1"] \xef\xbb\xbfhello 5424', sys.argv[1])
"#;
    run(Command::new(python3()).arg("-c").arg(script).arg(socket));
}

fn wait_stdout(c: &mut Corral, what: &str, line: impl Fn(&str) -> bool) {
    c.wait_for(what, |c| {
        if c.stdout().lines().any(&line) {
            Ok(())
        } else {
            Err(c.output_excerpt())
        }
    });
}

#[test]
fn syslog_messages_are_lines_of_the_syslog_pseudo_service() {
    let dir = TestDir::new("syslog-lines");
    // A service that logs only through syslog, as cron or postfix do.
    dir.service(
        "cronlike",
        r#"
command = '''
logger --socket-errors=on -u "$T/log" -t cronlike -- "hello from a service"
exec sleep 1000
'''
"#,
    );
    let socket = dir.join("log");
    let socket_arg = socket.display().to_string();
    let mut c = dir
        .corral()
        .ctl_socket()
        .args(["--syslog", &socket_arg])
        .start();
    wait_stdout(&mut c, "the service's syslog line", |l| {
        l == "syslog | cronlike: hello from a service"
    });
    let meta = fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);

    // haproxy's classic line, as glibc's syslog(3) and `logger` send it.
    logger(
        &socket,
        &[
            "-t",
            "haproxy",
            "--id=12",
            "-p",
            "local0.info",
            "--",
            "Server be/s1 is DOWN",
        ],
    );
    wait_stdout(&mut c, "haproxy's line", |l| {
        l == "syslog | haproxy[12]: Server be/s1 is DOWN"
    });
    logger(
        &socket,
        &["--rfc5424", "-t", "app", "--", "hello logger 5424"],
    );
    wait_stdout(&mut c, "logger's RFC 5424 line", |l| {
        l == "syslog | app: hello logger 5424"
    });
    python_rfc5424(&socket);
    wait_stdout(&mut c, "Python's RFC 5424 line", |l| {
        l == "syslog | py-app[777]: hello 5424"
    });

    // A line break in a message cannot forge a line.
    let forged = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'<13>evil: a\nsyslog | haproxy[12]: forged\x1b[2J', sys.argv[1])
"#;
    run(Command::new(python3()).arg("-c").arg(forged).arg(&socket));
    wait_stdout(&mut c, "the escaped line", |l| {
        l == "syslog | evil: a\\x0asyslog | haproxy[12]: forged\\x1b[2J"
    });
    assert!(
        !c.stdout()
            .lines()
            .any(|l| l.starts_with("syslog | haproxy[12]: forged")),
        "{}",
        c.stdout()
    );

    let logs = c.ctl(&["logs", "syslog"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    for line in [
        "cronlike: hello from a service",
        "haproxy[12]: Server be/s1 is DOWN",
        "app: hello logger 5424",
        "py-app[777]: hello 5424",
    ] {
        assert!(logs.lines().contains(&line), "{line:?} not in {logs:?}");
    }

    assert_eq!(c.stop(), 0);
    assert!(
        fs::symlink_metadata(&socket).is_err(),
        "the socket file is removed at exit"
    );
}

#[test]
fn syslog_lines_in_json_carry_facility_and_severity() {
    let dir = TestDir::new("syslog-json");
    let socket = dir.join("log");
    let mut c = dir
        .corral()
        .env("CORRAL_SYSLOG", &socket.display().to_string())
        .args(["--output-format", "json"])
        .ctl_socket()
        .main(["sleep", "1000"])
        .start();
    c.wait_for("the syslog socket", |_| {
        if socket.exists() {
            Ok(())
        } else {
            Err("no socket yet".into())
        }
    });
    logger(
        &socket,
        &[
            "-t",
            "haproxy",
            "--id=12",
            "-p",
            "local0.warning",
            "--",
            "Server be/s1 is DOWN",
        ],
    );
    let object = c.wait_for("haproxy's JSON line", |c| {
        c.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["service"] == "syslog")
            .ok_or_else(|| c.output_excerpt())
    });
    assert_eq!(
        object["line"], "haproxy[12]: Server be/s1 is DOWN",
        "{object}"
    );
    assert_eq!(object["facility"], "local0", "{object}");
    assert_eq!(object["severity"], "warning", "{object}");
    assert!(
        object["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{object}"
    );
    assert_eq!(object["pid"], 12, "{object}");

    // `ctl logs --json` of the ring: the same fields.
    c.wait_socket();
    let logs = c.ctl(&["logs", "--json", "syslog"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    let kept: Vec<serde_json::Value> = logs
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let [kept] = kept.as_slice() else {
        panic!("one line kept: {logs:?}");
    };
    for key in ["service", "line", "facility", "severity", "pid", "stream"] {
        assert_eq!(kept[key], object[key], "{key}: {kept} vs {object}");
    }
    c.stop();
}

#[test]
fn what_is_at_the_syslog_path_and_not_a_stale_socket_is_refused() {
    let dir = TestDir::new("syslog-refused");
    let path = dir.join("log");
    fs::write(&path, "precious").unwrap();
    let path_arg = path.display().to_string();
    let finished = dir
        .corral()
        .args(["--syslog", &path_arg])
        .main(["true"])
        .run();
    assert_ne!(finished.code(), 0, "{}", finished.stderr());
    assert!(
        finished.stderr().contains(&path_arg) && finished.stderr().contains("not a socket"),
        "{}",
        finished.stderr()
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");

    // A stale socket (an earlier run's) is replaced.
    let dir = TestDir::new("syslog-stale");
    let path = dir.join("log");
    drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());
    let path_arg = path.display().to_string();
    let mut c = dir
        .corral()
        .args(["--syslog", &path_arg])
        .main(["sleep", "1000"])
        .start();
    c.wait_for(
        "the syslog socket to be corral's",
        |_| match fs::symlink_metadata(&path) {
            Ok(meta) if meta.permissions().mode() & 0o777 == 0o666 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    logger(&path, &["-t", "after", "--", "the stale one"]);
    wait_stdout(&mut c, "a line through the new socket", |l| {
        l == "syslog | after: the stale one"
    });
    c.stop();
}
