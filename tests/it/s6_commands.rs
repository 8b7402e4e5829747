//! s6-overlay v3's commands (SPEC section 9, "Commands scripts call") as
//! links to corral, against a real corral: `s6-svwait`, `s6-svstat`,
//! `s6-svok`, `s6-rc`, `halt` through its control socket; `s6-setuidgid`,
//! `s6-envdir`, `s6-notifyoncheck` (inside a corral service) and
//! `printcontenv` standalone; `corral s6-links`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// A corral with `--socket <dir>/ctl.sock`, its socket there.
fn started(dir: TestDir) -> Corral {
    let mut c = dir.corral().ctl_socket().start();
    c.wait_socket();
    c
}

/// The s6 command `name`, as a link to corral in the test dir, talking to
/// corral's socket.
fn command(c: &Corral, name: &str, args: &[&str]) -> Command {
    let link = c.dir().join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(corral_bin(), &link).expect("symlink to corral");
    }
    link_command(&link, &c.socket(), args)
}

fn run(c: &Corral, name: &str, args: &[&str]) -> Ran {
    run_within(&mut command(c, name, args), DEADLINE)
}

fn still_running(what: &str, bg: &mut Background) {
    stays(what, Duration::from_millis(300), || {
        if bg.is_running() {
            Ok(())
        } else {
            Err("it exited".into())
        }
    });
}

/// A service that is ready once `$T/NAME.go` exists.
fn gated(name: &str) -> String {
    format!(
        r#"command = '''echo $$ >> "$T/{name}.pids"; exec sleep 1000'''
ready = {{ exec = ["sh", "-c", "test -e \"$T/{name}.go\""] }}
ready-timeout = "60s"
"#
    )
}

// ---------------------------------------------------------------------------
// s6-svwait

#[test]
fn svwait_u_and_big_u_wait_for_up_and_ready() {
    let dir = TestDir::new("svwait-up");
    dir.service("web", &gated("web"));
    let mut c = started(dir);
    c.wait_state("web", "starting");

    // -u: up (a process runs) is enough, ready or not.
    let ran = run(&c, "s6-svwait", &["-t", "20000", "-u", "/run/service/web"]);
    assert_eq!(ran.code, 0, "{ran:?}");

    // -U: waits until ready.
    let mut ready = Background::spawn(&mut command(
        &c,
        "s6-svwait",
        &["-U", "/var/run/s6/services/web"],
    ));
    still_running("s6-svwait -U while web is not ready", &mut ready);
    c.dir().write("web.go", "");
    let ran = ready.finish(DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(c.ctl_service("web").expect("web")["ready"], true);

    // No directory: nothing to wait for.
    assert_eq!(run(&c, "s6-svwait", &[]).code, 0);
    let ran = run(&c, "s6-svwait", &["-x", "web"]);
    assert_eq!(ran.code, 100, "{ran:?}");
    assert!(ran.stderr.contains("s6-svwait: usage:"), "{ran:?}");
}

#[test]
fn svwait_d_big_d_r_and_big_r_follow_stops_and_restarts() {
    let dir = TestDir::new("svwait-down");
    dir.service("web", &sleeper("web"));
    let mut c = started(dir);
    c.wait_state("web", "running");

    // -d and -D: down once stopped.
    let mut down = Background::spawn(&mut command(&c, "s6-svwait", &["-d", "web"]));
    let mut finished = Background::spawn(&mut command(&c, "s6-svwait", &["-D", "web"]));
    still_running("s6-svwait -d while web runs", &mut down);
    assert!(finished.is_running());
    assert_eq!(c.ctl(&["stop", "web"]).code, 0);
    assert_eq!(down.finish(DEADLINE).code, 0);
    assert_eq!(finished.finish(DEADLINE).code, 0);

    // -r: a new run; -R: a new run, ready.
    assert_eq!(c.ctl(&["start", "web"]).code, 0);
    c.wait_state("web", "running");
    let mut restarted = Background::spawn(&mut command(&c, "s6-svwait", &["-r", "web"]));
    let mut restarted_ready = Background::spawn(&mut command(&c, "s6-svwait", &["-R", "web"]));
    still_running("s6-svwait -r before a restart", &mut restarted);
    assert!(restarted_ready.is_running());
    assert_eq!(c.ctl(&["restart", "web"]).code, 0);
    assert_eq!(restarted.finish(DEADLINE).code, 0);
    assert_eq!(restarted_ready.finish(DEADLINE).code, 0);
    assert_eq!(c.dir().pids("web.pids").len(), 3);
}

#[test]
fn svwait_a_waits_for_all_and_o_for_one() {
    let dir = TestDir::new("svwait-any");
    dir.service("one", &gated("one"));
    dir.service("two", &gated("two"));
    let c = started(dir);

    let mut all = Background::spawn(&mut command(&c, "s6-svwait", &["-U", "-a", "one", "two"]));
    let mut any = Background::spawn(&mut command(&c, "s6-svwait", &["-U", "-o", "one", "two"]));
    still_running("-a and -o while neither is ready", &mut all);
    assert!(any.is_running());
    c.dir().write("two.go", "");
    let ran = any.finish(DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    still_running("-a while one is not ready", &mut all);
    c.dir().write("one.go", "");
    assert_eq!(all.finish(DEADLINE).code, 0);
}

#[test]
fn svwait_times_out_with_99_and_fails_at_once_with_102_on_a_failed_service() {
    let dir = TestDir::new("svwait-fail");
    dir.service("never", &gated("never"));
    dir.service("broken", "command = \"exit 3\"\nrestart = \"never\"\n");
    let mut c = started(dir);

    let ran = run(&c, "s6-svwait", &["-U", "-t", "300", "never"]);
    assert_eq!(ran.code, 99, "{ran:?}");
    assert_eq!(ran.stderr, "s6-svwait: fatal: timed out after 300 ms\n");
    assert!(ran.took >= Duration::from_millis(300), "{ran:?}");

    c.wait_state("broken", "failed");
    let ran = run(
        &c,
        "s6-svwait",
        &["-U", "-t", "20000", "/run/service/broken"],
    );
    assert_eq!(ran.code, 102, "{ran:?}");
    assert!(
        ran.stderr.starts_with(
            "s6-svwait: fatal: /run/service/broken: broken failed and will not come up"
        ),
        "{ran:?}"
    );
    assert!(ran.took < Duration::from_secs(10), "{ran:?}");
    // Down it is, though.
    assert_eq!(run(&c, "s6-svwait", &["-d", "broken"]).code, 0);

    let ran = run(&c, "s6-svwait", &["-u", "nope"]);
    assert_eq!(ran.code, 102, "{ran:?}");
}

/// A service that fails while s6-svwait waits for it to come up: the wait
/// ends at once with 102, not at its deadline.
#[test]
fn svwait_ends_with_102_when_the_service_fails_during_the_wait() {
    let dir = TestDir::new("svwait-fails-later");
    dir.service(
        "doomed",
        r#"command = '''while [ ! -e "$T/fail" ]; do sleep 0.02; done; exit 3'''
restart = "never"
ready = { exec = ["false"] }
ready-timeout = "60s"
"#,
    );
    let mut c = started(dir);
    c.wait_state("doomed", "starting");
    let mut bg = Background::spawn(&mut command(
        &c,
        "s6-svwait",
        &["-U", "-t", "20000", "doomed"],
    ));
    still_running("s6-svwait -U while doomed starts", &mut bg);
    c.dir().write("fail", "");
    let ran = bg.finish(DEADLINE);
    assert_eq!(ran.code, 102, "{ran:?}");
    assert!(ran.took < Duration::from_secs(10), "{ran:?}");
}

// ---------------------------------------------------------------------------
// s6-svstat, s6-svok

/// `up (pid P pgid P) N seconds[, ...]`: (P, N, rest).
fn parse_up(line: &str) -> (i32, u64, String) {
    let rest = line
        .strip_prefix("up (pid ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let (pid, rest) = rest
        .split_once(" pgid ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let (pgid, rest) = rest.split_once(") ").unwrap_or_else(|| panic!("{line:?}"));
    assert_eq!(pid, pgid, "{line:?}");
    let (secs, rest) = rest
        .split_once(" seconds")
        .unwrap_or_else(|| panic!("{line:?}"));
    (
        pid.parse().unwrap(),
        secs.parse().unwrap(),
        rest.to_string(),
    )
}

#[test]
fn svstat_prints_s6s_summary_and_fields() {
    let dir = TestDir::new("svstat");
    dir.service("web", &sleeper("web"));
    dir.service("off", "command = \"exec sleep 1000\"\nenabled = false\n");
    let mut c = started(dir);
    let pid = c.wait_pids("web.pids", 1)[0];
    c.wait_state("web", "running");

    let ran = run(&c, "s6-svstat", &["/run/service/web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let (shown, secs, rest) = parse_up(ran.stdout.trim_end());
    assert_eq!(shown, pid);
    assert!(secs < 30, "{ran:?}");
    assert!(rest.starts_with(", ready "), "{ran:?}");
    assert!(rest.ends_with(" seconds"), "{ran:?}");

    let ran = run(
        &c,
        "s6-svstat",
        &[
            "-o",
            "up,wantedup,normallyup,ready,paused,pid,exitcode,signal",
            "web",
        ],
    );
    assert_eq!(
        ran.stdout,
        format!("true true true true false {pid} -1 NA\n"),
        "{ran:?}"
    );
    let ran = run(&c, "s6-svstat", &["-upr", "web"]);
    assert_eq!(ran.stdout, format!("true {pid} true\n"), "{ran:?}");

    // Stopped: killed by its SIGTERM, wanted down, normally up.
    assert_eq!(c.ctl(&["stop", "web"]).code, 0);
    let ran = run(&c, "s6-svstat", &["web"]);
    let line = ran.stdout.trim_end();
    let rest = line
        .strip_prefix("down (signal SIGTERM) ")
        .unwrap_or_else(|| panic!("{ran:?}"));
    let (secs, rest) = rest
        .split_once(" seconds")
        .unwrap_or_else(|| panic!("{ran:?}"));
    assert!(secs.parse::<u64>().unwrap() < 30, "{ran:?}");
    assert!(rest.starts_with(", normally up, ready "), "{ran:?}");
    let ran = run(&c, "s6-svstat", &["-n", "web"]);
    assert!(ran.stdout.starts_with("down (signal 15) "), "{ran:?}");
    let ran = run(
        &c,
        "s6-svstat",
        &["-o", "up,wantedup,pid,exitcode,signal,signum", "web"],
    );
    assert_eq!(ran.stdout, "false false -1 -1 SIGTERM 15\n", "{ran:?}");

    // Never started, disabled.
    let ran = run(&c, "s6-svstat", &["off"]);
    assert_eq!(ran.stdout, "down (not started yet) \n", "{ran:?}");
    let ran = run(&c, "s6-svstat", &["-N", "off"]);
    assert_eq!(ran.stdout, "false\n", "{ran:?}");

    // Not corral's: exit 1; usage: 100.
    let ran = run(&c, "s6-svstat", &["/run/service/nope"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let ran = run(&c, "s6-svstat", &["-o", "bogus", "web"]);
    assert_eq!(ran.code, 100, "{ran:?}");
    assert!(
        ran.stderr.contains("invalid option field: bogus"),
        "{ran:?}"
    );
}

#[test]
fn svok_says_whether_corral_supervises_the_service() {
    let dir = TestDir::new("svok");
    dir.service("web", &sleeper("web"));
    let c = started(dir);
    let ran = run(&c, "s6-svok", &["/run/service/web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(run(&c, "s6-svok", &["/var/run/s6/services/nope"]).code, 1);
    assert_eq!(run(&c, "s6-svok", &[]).code, 100);
    assert_eq!(run(&c, "s6-svok", &["a", "b"]).code, 100);
    let nowhere = c.dir().join("nowhere.sock");
    let ran = run_within(
        &mut link_command(&c.dir().join("s6-svok"), &nowhere, &["web"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 111, "{ran:?}");
    assert!(
        ran.stderr
            .starts_with("s6-svok: fatal: unable to reach corral"),
        "{ran:?}"
    );
}

// ---------------------------------------------------------------------------
// s6-rc

#[test]
fn s6_rc_changes_services_down_and_up_and_lists_the_active_ones() {
    let dir = TestDir::new("s6-rc");
    dir.service("web", &sleeper("web"));
    dir.service("db", &sleeper("db"));
    let mut c = started(dir);
    c.wait_state("web", "running");
    c.wait_state("db", "running");

    let ran = run(&c, "s6-rc", &["-a", "list"]);
    assert_eq!(ran.stdout, "db\nweb\n", "{ran:?}");

    let ran = run(&c, "s6-rc", &["-v2", "-t", "20000", "-d", "change", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(c.ctl_service("web").expect("web")["state"], "stopped");
    let ran = run(&c, "s6-rc", &["-a", "list"]);
    assert_eq!(ran.stdout, "db\n", "{ran:?}");
    let ran = run(&c, "s6-rc", &["-da", "list"]);
    assert_eq!(ran.stdout, "web\n", "{ran:?}");

    let ran = run(&c, "s6-rc", &["-u", "change", "web"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    c.wait_state("web", "running");
    assert_eq!(c.dir().pids("web.pids").len(), 2);

    let ran = run(&c, "s6-rc", &["-u", "change", "nope"]);
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stderr.contains("unknown service name: nope"), "{ran:?}");
    let ran = run(&c, "s6-rc", &["-p", "change", "web"]);
    assert_eq!(ran.code, 100, "{ran:?}");
}

// ---------------------------------------------------------------------------
// halt

#[test]
fn halt_shuts_corral_down_gracefully() {
    let dir = TestDir::new("halt");
    dir.service("web", &sleeper("web"));
    let mut c = started(dir);
    let pid = c.wait_pids("web.pids", 1)[0];
    let ran = run(&c, "halt", &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(c.wait_exit(DEADLINE), 0, "{}", c.output_excerpt());
    assert!(!running(pid), "the service outlived corral");
    // No corral any more: 111.
    let ran = run(&c, "halt", &[]);
    assert_eq!(ran.code, 111, "{ran:?}");
}

// ---------------------------------------------------------------------------
// s6-notifyoncheck

/// A service with `ready = { fd = 3 }` whose working dir is an s6 service
/// dir holding `notification-fd` and `data/check` (passes once `$T/go`
/// exists), run under s6-notifyoncheck with `extra` options.
fn checked_service(dir: &TestDir, name: &str, extra: &str) {
    let home = dir.join(&format!("{name}.d"));
    fs::create_dir_all(home.join("data")).expect("mkdir");
    fs::write(home.join("notification-fd"), "3\n").expect("write");
    dir.executable(
        &format!("{name}.d/data/check"),
        &format!("#!/bin/sh\necho $PPID >> \"$T/{name}.checks\"\ntest -e \"$T/{name}.go\"\n"),
    );
    fs::create_dir_all(dir.join("bin")).expect("mkdir");
    let link = dir.link_corral("bin/s6-notifyoncheck");
    dir.service(
        name,
        &format!(
            r#"command = ["{link}", {extra} "-w", "50", "-n", "0", "sh", "-c", "echo $$ >> \"$T/{name}.pids\"; exec sleep 1000"]
working-dir = "{home}"
ready = {{ fd = 3 }}
ready-timeout = "60s"
"#,
            link = link.display(),
            home = home.display(),
        ),
    );
}

#[test]
fn notifyoncheck_makes_the_service_ready_only_once_its_check_passes() {
    let dir = TestDir::new("notifyoncheck");
    checked_service(&dir, "app", "");
    let mut c = started(dir);
    let pid = c.wait_pids("app.pids", 1)[0];
    // The checks run, and fail: not ready.
    c.wait_for("two failed checks", |c| {
        match c.dir().lines("app.checks").len() {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} checks")),
        }
    });
    let status = c.ctl_service("app").expect("app");
    assert_eq!(
        (status["state"].as_str(), status["ready"].as_bool()),
        (Some("starting"), Some(false)),
        "{status}"
    );
    // PROG is the service's process (exec), and the checker its child.
    assert_eq!(status["pid"].as_i64(), Some(i64::from(pid)), "{status}");
    assert!(cmdline(pid).contains("sleep"), "{}", cmdline(pid));
    assert_eq!(children(pid).len(), 1, "the checker under PROG");
    let checker = c.dir().pids("app.checks")[0];
    assert_eq!(children(pid), vec![checker]);

    c.dir().write("app.go", "");
    c.wait_state("app", "ready");
    // The checker exits once it said so (a zombie: `sleep` reaps no child,
    // which is what -d is for).
    c.wait_for("the checker to exit", |_| {
        if children(pid).iter().all(|&p| zombie(p)) {
            Ok(())
        } else {
            Err(format!("children {:?}", children(pid)))
        }
    });
    // PROG does not hold the notification fd.
    assert!(
        !open_fds(pid).iter().any(|&(fd, _)| fd == 3),
        "{:?}",
        open_fds(pid)
    );
}

#[test]
fn notifyoncheck_d_double_forks_so_the_checker_is_not_progs_child() {
    let dir = TestDir::new("notifyoncheck-d");
    checked_service(&dir, "app", "\"-d\",");
    let mut c = started(dir);
    let pid = c.wait_pids("app.pids", 1)[0];
    c.wait_for("a failed check", |c| {
        match c.dir().lines("app.checks").len() {
            0 => Err("no check yet".into()),
            _ => Ok(()),
        }
    });
    assert!(
        children(pid).is_empty(),
        "PROG has children {:?}",
        children(pid)
    );
    // PROG's sibling: corral's child, which corral reaps.
    let checker = c.dir().pids("app.checks")[0];
    assert_eq!(proc_stat(checker).map(|(_, ppid)| ppid), Some(c.pid()));
    c.dir().write("app.go", "");
    c.wait_state("app", "ready");
    c.wait_for("the checker reaped", |_| {
        if proc_stat(checker).is_none() {
            Ok(())
        } else {
            Err(format!("{checker} is still there"))
        }
    });
}

#[test]
fn notifyoncheck_gives_up_after_n_tries() {
    let dir = TestDir::new("notifyoncheck-n");
    let home = dir.join("app.d");
    fs::create_dir_all(home.join("data")).expect("mkdir");
    dir.executable(
        "app.d/data/check",
        "#!/bin/sh\necho check >> \"$T/app.checks\"\nexit 1\n",
    );
    let link = dir.link_corral("s6-notifyoncheck");
    let mut bg = Background::spawn(
        Command::new(&link)
            .current_dir(&home)
            .env("T", dir.path())
            .args([
                "-3",
                "2",
                "-s",
                "0",
                "-w",
                "20",
                "-n",
                "3",
                "sh",
                "-c",
                "echo $$; exec sleep 1000",
            ]),
    );
    let pid: i32 = bg.next_line(DEADLINE).parse().unwrap();
    assert_eq!(pid, bg.pid(), "PROG is the process s6-notifyoncheck was");
    wait_until("3 checks and the checker gone", DEADLINE, || {
        let checks = dir.lines("app.checks").len();
        if checks == 3 && children(pid).iter().all(|&p| zombie(p)) {
            Ok(())
        } else {
            Err(format!("{checks} checks, children {:?}", children(pid)))
        }
    });
    stays(
        "no fourth check",
        Duration::from_millis(200),
        || match dir.lines("app.checks").len() {
            3 => Ok(()),
            n => Err(format!("{n} checks")),
        },
    );
    // Usage, and a missing ./notification-fd.
    let ran = run_within(Command::new(&link).current_dir(&home).arg("true"), DEADLINE);
    assert_eq!(ran.code, 111, "{ran:?}");
    assert!(ran.stderr.contains("notification-fd"), "{ran:?}");
    let ran = run_within(Command::new(&link).arg("-d"), DEADLINE);
    assert_eq!(ran.code, 100, "{ran:?}");
}

/// `-c` with one plain command line runs it without execline; the
/// newline goes to the `-3` fd (stderr here, which PROG closes).
#[test]
fn notifyoncheck_c_runs_a_plain_command_line_without_execline() {
    let dir = TestDir::new("notifyoncheck-c");
    let link = dir.link_corral("s6-notifyoncheck");
    let go = dir.join("go");
    let check = format!("test -e \"{}\"", go.display());
    let mut bg = Background::spawn(Command::new(&link).args([
        "-3",
        "2",
        "-s",
        "0",
        "-w",
        "20",
        "-n",
        "0",
        "-c",
        &check,
        "sh",
        "-c",
        "echo $$; exec sleep 1000",
    ]));
    let pid: i32 = bg.next_line(DEADLINE).parse().unwrap();
    stays(
        "no notification before the check passes",
        Duration::from_millis(200),
        || match bg.stderr().as_str() {
            "" => Ok(()),
            other => Err(format!("stderr {other:?}")),
        },
    );
    dir.write("go", "");
    wait_until("the notification newline", DEADLINE, || {
        match bg.stderr().as_str() {
            "\n" => Ok(()),
            other => Err(format!("stderr {other:?}")),
        }
    });
    assert!(running(pid));
    let ran = run_within(
        Command::new(&link).args(["-3", "2", "-c", "nc \"open", "true"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 100, "{ran:?}");
    assert!(ran.stderr.contains("-c: 1:"), "{ran:?}");
}

// ---------------------------------------------------------------------------
// s6-setuidgid, s6-envdir, printcontenv

#[test]
fn setuidgid_drops_to_the_account_with_its_groups() {
    require_root("s6-setuidgid changes uid");
    let dir = TestDir::new("setuidgid");
    let link = dir.link_corral("s6-setuidgid");
    let ran = run_within(
        Command::new(&link).env("UID", "0").args([
            "65534:65534",
            "sh",
            "-c",
            "id -u; id -g; id -G; echo \"[${UID-unset}]\"",
        ]),
        DEADLINE,
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.stdout, "65534\n65534\n65534\n[unset]\n", "{ran:?}");

    let nobody = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(65534))
        .ok()
        .flatten()
        .expect("a passwd entry for uid 65534");
    let ran = run_within(
        Command::new(&link).args([&nobody.name, "id", "-u"]),
        DEADLINE,
    );
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "65534\n"), "{ran:?}");

    let ran = run_within(
        Command::new(&link).args(["no-such-user-here", "true"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 1, "{ran:?}");
    // The empty account: no change.
    let ran = run_within(Command::new(&link).args(["", "id", "-u"]), DEADLINE);
    assert_eq!(ran.stdout, "0\n", "{ran:?}");
    assert_eq!(
        run_within(Command::new(&link).arg("nobody"), DEADLINE).code,
        100
    );

    // Without the privilege to: 111, and the program never runs.
    let ran = run_within(
        as_nobody(&link).args(["0:0", "sh", "-c", "echo ran"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 111, "{ran:?}");
    assert_eq!(ran.stdout, "", "{ran:?}");
}

#[test]
fn envdir_sets_and_unsets_variables_from_a_directory() {
    let dir = TestDir::new("envdir");
    let link = dir.link_corral("s6-envdir");
    fs::create_dir_all(dir.join("env")).expect("mkdir");
    dir.write("env/FIRST", "first line \t\nsecond\n");
    dir.write("env/GONE", "");
    dir.write("env/.hidden", "x");
    let show = r#"printf '[%s][%s]' "$FIRST" "${GONE-unset}""#;
    let ran = run_within(
        Command::new(&link).env("GONE", "was set").args([
            dir.join("env").to_str().unwrap(),
            "sh",
            "-c",
            show,
        ]),
        DEADLINE,
    );
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "[first line][unset]\n"),
        "{ran:?}"
    );
    let ran = run_within(
        Command::new(&link).args(["-fn", dir.join("env").to_str().unwrap(), "sh", "-c", show]),
        DEADLINE,
    );
    assert_eq!(ran.stdout, "[first line \t\nsecond\n][unset]\n", "{ran:?}");

    let missing = dir.join("none");
    let ran = run_within(
        Command::new(&link).args([missing.to_str().unwrap(), "true"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 111, "{ran:?}");
    let ran = run_within(
        Command::new(&link).args(["-I", missing.to_str().unwrap(), "sh", "-c", "echo ran"]),
        DEADLINE,
    );
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "ran\n"), "{ran:?}");
    assert_eq!(run_within(Command::new(&link).arg("x"), DEADLINE).code, 100);
}

/// In `$CORRAL_S6_RUNTIME_DIR/container_environment` (`/run/s6/...` in a
/// container), where corral writes the container environment.
#[test]
fn printcontenv_prints_a_variable_of_the_container_environment() {
    let dir = TestDir::new("printcontenv");
    let link = dir.link_corral("printcontenv");
    fs::create_dir_all(dir.join("s6run/container_environment")).expect("mkdir");
    dir.write("s6run/container_environment/TZ", "Europe/Paris");
    let print = |var: &str| {
        run_within(
            Command::new(&link)
                .env("CORRAL_S6_RUNTIME_DIR", dir.join("s6run"))
                .env("KEPT", "mine")
                .arg(var),
            DEADLINE,
        )
    };
    let ran = print("TZ");
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "Europe/Paris\n"),
        "{ran:?}"
    );
    let ran = print("KEPT");
    assert_eq!((ran.code, ran.stdout.as_str()), (1, ""), "{ran:?}");
    let ran = print("../s6run/container_environment/TZ");
    assert_eq!(ran.code, 1, "{ran:?}");
    // With S6_KEEP_ENV, its own environment, as s6-overlay's.
    let ran = run_within(
        Command::new(&link)
            .env("S6_KEEP_ENV", "1")
            .env("KEPT", "mine")
            .arg("KEPT"),
        DEADLINE,
    );
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "mine\n"), "{ran:?}");
    assert_eq!(run_within(&mut Command::new(&link), DEADLINE).code, 100);

    // with-contenv reads the same directory.
    let contenv = dir.link_corral("with-contenv");
    let ran = run_within(
        Command::new(&contenv)
            .env("CORRAL_S6_RUNTIME_DIR", dir.join("s6run"))
            .env("TZ", "UTC")
            .args(["sh", "-c", "echo $TZ"]),
        DEADLINE,
    );
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "Europe/Paris\n"),
        "{ran:?}"
    );
}

// ---------------------------------------------------------------------------
// corral s6-links

fn s6_links(dir: &Path, extra: &[&str]) -> Ran {
    run_within(
        Command::new(corral_bin())
            .arg("s6-links")
            .args(extra)
            .arg(dir),
        DEADLINE,
    )
}

#[test]
fn s6_links_installs_every_command_once_and_leaves_real_files_alone() {
    let dir = TestDir::new("s6-links");
    let bin: PathBuf = dir.join("bin");
    let names = [
        "with-contenv",
        "s6-svc",
        "s6-svwait",
        "s6-svstat",
        "s6-svok",
        "s6-rc",
        "s6-setuidgid",
        "s6-envdir",
        "s6-notifyoncheck",
        "printcontenv",
        "halt",
        "corralctl",
    ];
    let ran = s6_links(&bin, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let exe = fs::canonicalize(corral_bin()).unwrap();
    for name in names {
        let path = bin.join(name);
        assert_eq!(fs::read_link(&path).ok(), Some(exe.clone()), "{name}");
        assert!(
            ran.stdout.contains(&format!("{}: created", path.display())),
            "{ran:?}"
        );
    }
    assert_eq!(ran.stdout.lines().count(), names.len(), "{ran:?}");

    // Again: nothing to do.
    let ran = s6_links(&bin, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stdout
            .lines()
            .all(|l| l.ends_with(": already a link to corral")),
        "{ran:?}"
    );

    // s6-overlay's own program is left alone without --force.
    fs::remove_file(bin.join("s6-envdir")).unwrap();
    fs::write(bin.join("s6-envdir"), "#!/bin/sh\n").unwrap();
    let ran = s6_links(&bin, &[]);
    assert_eq!(ran.code, 111, "{ran:?}");
    assert!(
        ran.stderr
            .contains("s6-envdir: not a symbolic link: left alone (--force replaces it)"),
        "{ran:?}"
    );
    assert_eq!(
        fs::read_to_string(bin.join("s6-envdir")).unwrap(),
        "#!/bin/sh\n"
    );
    let ran = s6_links(&bin, &["--force"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(fs::read_link(bin.join("s6-envdir")).ok(), Some(exe));

    // The links run as what they are named.
    let ran = run_within(&mut Command::new(bin.join("s6-svok")), DEADLINE);
    assert_eq!(ran.code, 100, "{ran:?}");
    assert!(ran.stderr.contains("s6-svok: usage"), "{ran:?}");
    assert_eq!(s6_links(Path::new(""), &["--bogus"]).code, 100);
}
