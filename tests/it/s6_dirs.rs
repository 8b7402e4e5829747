//! s6-style service directories (SPEC section 4): `run`, `finish` (with the
//! exit code and signal, 256 when killed, 125 = no restart), `down`,
//! `notification-fd`, `corral.toml`, and `kill-group` off by default — which
//! the classic `haproxy -sf` reload idiom depends on.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use nix::sys::signal::Signal;

/// `services/NAME/FILE`, executable when `exec`.
fn svc_file(dir: &TestDir, service: &str, file: &str, body: &str, exec: bool) {
    let path = dir.join(&format!("services/{service}"));
    fs::create_dir_all(&path).expect("mkdir service dir");
    let path = path.join(file);
    fs::write(&path, body).expect("write service file");
    if exec {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

#[test]
fn run_finish_down_notification_fd_and_corral_toml() {
    let dir = TestDir::new("s6-dir");
    svc_file(
        &dir,
        "web",
        "run",
        "#!/bin/sh\necho $$ >> \"$T/web.pids\"\npwd > \"$T/web.cwd\"\nsleep 0.3\necho >&3\nexec sleep 1000\n",
        true,
    );
    svc_file(&dir, "web", "notification-fd", "3\n", false);
    svc_file(
        &dir,
        "web",
        "finish",
        "#!/bin/sh\necho \"$1 $2\" >> \"$T/finish.args\"\n",
        true,
    );
    svc_file(
        &dir,
        "web",
        "corral.toml",
        "restart-delay = \"0s\"\n",
        false,
    );
    svc_file(
        &dir,
        "api",
        "run",
        "#!/bin/sh\necho started >> \"$T/api.out\"\nexec sleep 1000\n",
        true,
    );
    svc_file(&dir, "api", "corral.toml", "after = [\"web\"]\n", false);
    svc_file(
        &dir,
        "off",
        "run",
        "#!/bin/sh\necho ran >> \"$T/off.out\"\n",
        true,
    );
    svc_file(&dir, "off", "down", "", false);

    let mut c = dir.corral().ctl_socket().start();
    let first = c.wait_pids("web.pids", 1)[0];
    c.wait_file("api.out");
    // Started in its own directory, as s6 does.
    let cwd = fs::canonicalize(c.dir().join("services/web")).expect("canonical");
    assert_eq!(c.dir().read("web.cwd").trim(), cwd.display().to_string());
    // api (after web) started only once web had written to its notification
    // fd. corral's log lines reach stderr through its writer thread: api's
    // file can come before the line saying it started.
    c.wait_stderr_line(&["service started", "service=api"]);
    let err = c.stderr();
    let ready = err
        .find("service ready service=web")
        .expect("web ready line");
    let api = err
        .find("service started service=api")
        .expect("api start line");
    assert!(ready < api, "api started before web was ready:\n{err}");

    // Killed: finish gets "256 9", then the service starts again.
    c.signal_process(first, Signal::SIGKILL);
    let pids = c.wait_pids("web.pids", 2);
    assert_ne!(pids[0], pids[1]);
    assert_eq!(c.dir().lines("finish.args"), vec!["256 9".to_string()]);

    // `down`: defined, not started.
    let status = c.ctl(&["status", "off"]);
    assert!(
        status.stdout.contains("stopped") && status.stdout.contains("disabled"),
        "{status:?}"
    );
    assert!(!c.dir().exists("off.out"));
    assert_eq!(c.stop(), 0);
    // The stop ran finish too (killed by SIGTERM: 256 15).
    assert_eq!(
        c.dir().lines("finish.args").last().map(String::as_str),
        Some("256 15")
    );
}

#[test]
fn finish_exiting_125_stops_restarts() {
    let dir = TestDir::new("s6-finish-125");
    svc_file(
        &dir,
        "job",
        "run",
        "#!/bin/sh\necho run >> \"$T/runs\"\nexit 3\n",
        true,
    );
    svc_file(
        &dir,
        "job",
        "finish",
        "#!/bin/sh\necho \"$1 $2\" >> \"$T/finish.args\"\nexit 125\n",
        true,
    );
    svc_file(&dir, "other", "run", "#!/bin/sh\nexec sleep 1000\n", true);
    let mut c = dir.corral().ctl_socket().start();
    c.wait_for("job to be failed", |c| {
        let ran = c.ctl(&["status", "job"]);
        if ran.stdout.contains("failed") {
            Ok(())
        } else {
            Err(ran.stdout)
        }
    });
    assert_eq!(c.dir().lines("finish.args"), vec!["3 0".to_string()]);
    assert_eq!(
        c.dir().lines("runs").len(),
        1,
        "restarted despite finish 125"
    );
    assert!(
        c.ctl(&["status", "job"])
            .stdout
            .contains("finish exited 125")
    );
    assert_eq!(c.stop(), 0);
}

#[test]
fn directory_errors_are_reported_with_the_rest() {
    let dir = TestDir::new("s6-dir-errors");
    svc_file(&dir, "norun", "finish", "#!/bin/sh\n", true);
    svc_file(&dir, "noexec", "run", "#!/bin/sh\n", false);
    svc_file(&dir, "badfd", "run", "#!/bin/sh\n", true);
    svc_file(&dir, "badfd", "notification-fd", "1\n", false);
    svc_file(&dir, "cmd", "run", "#!/bin/sh\n", true);
    svc_file(&dir, "cmd", "corral.toml", "command = \"x\"\n", false);
    let done = dir.corral().check();
    assert_eq!(done.code(), 2, "{}", done.stderr());
    let err = done.stderr();
    for expected in [
        "norun: a service directory needs an executable `run` script",
        "noexec/run: not executable (chmod +x it)",
        "badfd/notification-fd: expected a file descriptor number from 3 to 1023, found \"1\"",
        "cmd/corral.toml:1:1: `command` cannot be set here: the service directory's `run` script is the command",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

fn haproxy_cfg(port: u16, body: &str) -> String {
    format!(
        "global\n  log stdout format raw local0\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  http-request return status 200 content-type text/plain string {body}\n"
    )
}

/// The s6-overlay reload idiom: `run` starts haproxy in the background with
/// `-sf <old pids>` and `wait`s. A HUP to `run` alone (kill-group is off
/// for directories) ends the script but not haproxy; corral starts `run`
/// again; the new haproxy tells the old one to finish; the old one, an
/// orphan now, is reaped by corral.
#[test]
fn classic_haproxy_sf_reload_idiom() {
    require_program("haproxy", "haproxy");
    let port = free_port();
    let dir = TestDir::new("s6-haproxy-sf");
    dir.write("haproxy.cfg", &haproxy_cfg(port, "v1"));
    svc_file(
        &dir,
        "haproxy",
        "run",
        // `-sf` only with an old pid: an empty `-sf` list makes haproxy
        // soft-stop its own process group (what s6 users guard against too).
        "#!/bin/sh\nOLD=$(cat \"$T/haproxy.pid\" 2>/dev/null)\nhaproxy -f \"$T/haproxy.cfg\" -db ${OLD:+-sf $OLD} &\necho $! > \"$T/haproxy.pid\"\necho $! >> \"$T/haproxy.pids\"\nwait\n",
        true,
    );
    svc_file(
        &dir,
        "haproxy",
        "corral.toml",
        "restart-delay = \"0s\"\n",
        false,
    );
    let mut c = dir.corral().ctl_socket().start();
    let old = c.wait_pids("haproxy.pids", 1)[0];
    wait_until("haproxy to answer v1", DEADLINE, || {
        match http_get(port, "/") {
            Ok((200, body)) if body.trim() == "v1" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    c.dir().write("haproxy.cfg", &haproxy_cfg(port, "v2"));
    // As an s6-overlay image's handler does it: s6-svc -h on the service dir.
    let s6_svc = c.dir().link_corral("s6-svc");
    let service_dir = c.dir().join("services/haproxy");
    let ran = run_within(
        &mut link_command(
            &s6_svc,
            &c.socket(),
            &["-h", &service_dir.display().to_string()],
        ),
        DEADLINE,
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let new = c.wait_pids("haproxy.pids", 2)[1];
    assert_ne!(old, new);
    wait_until(
        "the new haproxy to answer v2",
        DEADLINE,
        || match http_get(port, "/") {
            Ok((200, body)) if body.trim() == "v2" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // The old haproxy retired (-sf) and was reaped: gone, not a zombie.
    c.wait_for("the old haproxy to be reaped", |_| match proc_stat(old) {
        None => Ok(()),
        Some((state, ppid)) => Err(format!("pid {old} still there: state {state}, ppid {ppid}")),
    });
    assert!(c.process_running(new), "the new haproxy died");
    assert_eq!(c.stop(), 0);
}
