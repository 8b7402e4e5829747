//! What a child inherits (SPEC 12, "Children"): default dispositions and an
//! empty mask for every signal, glibc's internal real-time ones included, as
//! under tini; and a service runs in a session of its own, so another
//! service cannot move a process into its process group (which is what the
//! notify thread trusts).
//!
//! corral is started by this test binary through std's `Command`, which uses
//! glibc's `posix_spawn`: corral itself begins with signals 32 and 33
//! ignored, the very case where a child used to inherit them.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use nix::sys::signal::Signal;

/// A service that writes its `/proc/self/status` to `$T/shared/NAME.status`
/// (through a temporary file, so the test never reads half of it), then
/// sleeps.
fn status_writer(name: &str, user: Option<u32>) -> String {
    let user = user
        .map(|u| format!("user = \"{u}\"\n"))
        .unwrap_or_default();
    format!(
        r#"command = ["sh", "-c", "cat /proc/self/status > \"$T/shared/{name}.tmp\" && mv \"$T/shared/{name}.tmp\" \"$T/shared/{name}.status\"; exec sleep 100000"]
{user}"#
    )
}

/// `$T/shared`, where uid 65534 may write too (the test dir itself holds
/// the control socket, so it must stay closed to others: SPEC 12).
fn open_to_nobody(dir: &TestDir) {
    let shared = dir.join("shared");
    fs::create_dir(&shared).expect("mkdir shared");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod shared");
}

#[test]
fn every_child_starts_with_no_signal_ignored_or_blocked() {
    let dir = TestDir::new("sec-children-signals");
    open_to_nobody(&dir);
    dir.service("root", &status_writer("root", None));
    dir.service("nobody", &status_writer("nobody", Some(65534)));
    dir.init_script(
        "10-status",
        "#!/bin/sh\ncat /proc/self/status > \"$T/shared/init.tmp\" && mv \"$T/shared/init.tmp\" \"$T/shared/init.status\"\n",
    );
    let main = format!(
        "cat /proc/self/status > {0}/shared/main.tmp && mv {0}/shared/main.tmp {0}/shared/main.status; exec sleep 100000",
        dir.path().display()
    );
    let mut c = dir
        .corral()
        .ctl_socket()
        .pid1()
        .main(["sh", "-c", &main])
        .start();
    for who in ["root", "nobody", "init", "main"] {
        let status = c.wait_file(&format!("shared/{who}.status"));
        let (blocked, ignored) = signal_masks(&status);
        assert_eq!(blocked, 0, "{who}: blocked signals\n{status}");
        assert_eq!(ignored, 0, "{who}: ignored signals\n{status}");
    }
    let ran = c.ctl(&["status"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    c.signal(Signal::SIGTERM);
    // The main COMMAND (sleep) was killed by SIGTERM: 128 + 15, as with tini.
    assert_eq!(c.wait_exit(DEADLINE), 143, "{}", c.output_excerpt());
}

/// `victim` writes its pid; `intruder`, as uid 65534, tries to move itself
/// into the victim's process group (setpgid(2), which only needs the
/// group to be in the caller's session) and records what happened.
#[test]
fn a_service_cannot_join_another_services_process_group() {
    let dir = TestDir::new("sec-children-pgrp");
    open_to_nobody(&dir);
    dir.service(
        "victim",
        r#"command = ["sh", "-c", "echo $$ > \"$T/shared/victim.tmp\" && mv \"$T/shared/victim.tmp\" \"$T/shared/victim.pid\"; exec sleep 100000"]"#,
    );
    dir.service(
        "intruder",
        r#"command = ["sh", "-c", "while [ ! -s \"$T/shared/victim.pid\" ]; do sleep 0.05; done; python3 -c 'import os, sys\ntry:\n    os.setpgid(0, int(sys.argv[1]))\n    print(\"joined\")\nexcept OSError as e:\n    print(\"refused\", e.errno)' $(cat \"$T/shared/victim.pid\") > \"$T/shared/intruder.tmp\"; ps -o pgid= -o sid= -p $$ >> \"$T/shared/intruder.tmp\"; mv \"$T/shared/intruder.tmp\" \"$T/shared/intruder.out\"; exec sleep 100000"]
user = "65534"
restart = "never"
"#,
    );
    let mut c = dir.corral().ctl_socket().pid1().start();
    let out = c.wait_file("shared/intruder.out");
    assert!(
        out.starts_with(&format!("refused {}", libc::EPERM)),
        "the intruder got into the victim's group: {out}"
    );
    // The victim leads a session and a group of its own.
    let victim: i32 = c
        .wait_file("shared/victim.pid")
        .trim()
        .parse()
        .expect("victim pid");
    let host_pid = c.host_pid(victim).expect("victim in the namespace");
    let stat = fs::read_to_string(format!("/proc/{host_pid}/stat")).expect("victim stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    // proc(5): state, ppid, pgrp, session, in this (the host's) namespace.
    let host = host_pid.to_string();
    assert_eq!(
        (fields[2], fields[3]),
        (host.as_str(), host.as_str()),
        "the victim does not lead its own group and session: {stat}"
    );
    let ran = c.ctl(&["status", "victim"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("running"), "{}", ran.stdout);
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait_exit(DEADLINE), 0, "{}", c.output_excerpt());
}
