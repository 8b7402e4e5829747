//! s6-overlay compatibility (SPEC section 4), against the real binary:
//! `with-contenv` and `s6-svc` as links to corral in the test dir, used the
//! way s6-overlay images use them (shebangs, service directory paths, s6's
//! exit codes), and the `S6_*` variables corral honours.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

// ---------------------------------------------------------------------------
// with-contenv

#[test]
fn with_contenv_execs_its_program_with_the_environment() {
    let dir = TestDir::new("contenv-exec");
    let link = dir.link_corral("with-contenv");
    // exec: the program is the process with-contenv was (same pid).
    let mut bg = Background::spawn(Command::new(&link).env("CORRAL_S6_TEST", "from-env").args([
        "sh",
        "-c",
        "echo \"$$ $CORRAL_S6_TEST $0 $1\"",
        "zero",
        "one",
    ]));
    let line = bg.next_line(DEADLINE);
    assert_eq!(line, format!("{} from-env zero one", bg.pid()));
    assert_eq!(bg.finish(DEADLINE).code, 0);

    // The explicit form does the same.
    let ran = run_within(
        Command::new(corral_bin())
            .env("CORRAL_S6_TEST", "explicit")
            .args(["with-contenv", "sh", "-c", "echo $CORRAL_S6_TEST"]),
        DEADLINE,
    );
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "explicit\n"),
        "{ran:?}"
    );
}

#[test]
fn with_contenv_exits_like_a_shell_when_it_cannot_run_its_program() {
    let dir = TestDir::new("contenv-fail");
    let link = dir.link_corral("with-contenv");
    let missing = dir.join("no-such-program");
    let ran = run_within(Command::new(&link).arg(&missing), DEADLINE);
    assert_eq!(ran.code, 127, "{ran:?}");
    assert_eq!(
        ran.stderr,
        format!(
            "with-contenv: {}: No such file or directory\n",
            missing.display()
        )
    );

    dir.write("not-executable", "#!/bin/sh\necho no\n");
    let ran = run_within(
        Command::new(&link).arg(dir.join("not-executable")),
        DEADLINE,
    );
    assert_eq!(ran.code, 126, "{ran:?}");
    assert!(ran.stderr.ends_with(": Permission denied\n"), "{ran:?}");

    let ran = run_within(&mut Command::new(&link), DEADLINE);
    assert_eq!(ran.code, 100, "{ran:?}");
    assert!(ran.stderr.contains("usage: with-contenv PROG"), "{ran:?}");
}

/// `#!/usr/bin/with-contenv sh`: the kernel runs the link with the
/// interpreter's name and the script's path.
#[test]
fn a_with_contenv_shebang_runs_the_script() {
    let dir = TestDir::new("contenv-shebang");
    let link = dir.link_corral("with-contenv");
    let script = dir.executable(
        "script",
        &format!(
            "#!{} sh\necho \"args=$* var=$CORRAL_S6_TEST\"\nexit 7\n",
            link.display()
        ),
    );
    let ran = run_within(
        Command::new(&script)
            .env("CORRAL_S6_TEST", "seen")
            .args(["a1", "a2"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 7, "{ran:?}");
    assert_eq!(ran.stdout, "args=a1 a2 var=seen\n");
}

/// The directory cont-init scripts write to is `/run/s6/container_environment`:
/// tested in a private mount namespace with a tmpfs over `/run`, so the
/// machine's own `/run` is never touched.
#[test]
fn with_contenv_applies_the_container_environment_directory() {
    let dir = TestDir::new("contenv-dir");
    let link = dir.link_corral("with-contenv");
    let root = nix::unistd::geteuid().is_root();
    let mut probe = Command::new("unshare");
    if !root {
        probe.args(["--user", "--map-root-user"]);
    }
    let probe = run_within(probe.args(["--mount", "true"]), DEADLINE);
    assert_eq!(
        probe.code,
        0,
        "cannot make a mount namespace here (unshare --mount: {}): this test needs \
         root or unprivileged user namespaces (CI runs as root)",
        probe.stderr.trim()
    );
    // s6-envdir -Lf: whole file less one trailing newline, NUL -> newline,
    // empty file unsets, dot files and names with `=` skipped.
    let setup = format!(
        r#"set -e
mount -t tmpfs corral-test /run
[ -L /var/run ] || mount -t tmpfs corral-test /var/run
d=/run/s6/container_environment
mkdir -p $d
printf 'a b  \nsecond\n' > $d/MULTI
: > $d/GONE
printf '\n' > $d/BLANK
printf 'x\0y' > $d/NUL
printf 'new' > $d/REPLACED
printf 'no' > $d/.SKIPPED
printf 'no' > '{eq}'
exec "$@"
"#,
        eq = "/run/s6/container_environment/A=B"
    );
    let show = r#"printf '[%s]' "$MULTI" "${GONE-unset}" "$BLANK" "$NUL" "$REPLACED" "$(env | grep -c SKIPPED || true)""#;
    let run = |keep: Option<&str>| {
        let mut cmd = Command::new("unshare");
        if !root {
            cmd.args(["--user", "--map-root-user"]);
        }
        cmd.args(["--mount", "sh", "-c", &setup, "setup"])
            .arg(&link)
            .args(["sh", "-c", show])
            .env("GONE", "was set")
            .env("REPLACED", "old")
            .env_remove("S6_KEEP_ENV");
        if let Some(keep) = keep {
            cmd.env("S6_KEEP_ENV", keep);
        }
        run_within(&mut cmd, DEADLINE)
    };
    let ran = run(None);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.stdout, "[a b  \nsecond][unset][][x\ny][new][0]\n");
    // S6_KEEP_ENV=1: with-contenv leaves the environment alone, as in s6-overlay.
    let ran = run(Some("1"));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.stdout, "[][was set][][][old][0]\n");
}

// ---------------------------------------------------------------------------
// s6-svc

/// An s6-style service directory `services/NAME/` whose `run` starts with
/// `#!<link> sh` (with-contenv), records its pid, and traps HUP.
fn s6_service(dir: &TestDir, name: &str, contenv: &Path) {
    fs::create_dir_all(dir.join(&format!("services/{name}"))).expect("mkdir service");
    dir.executable(
        &format!("services/{name}/run"),
        &format!(
            r#"#!{} sh
echo $$ >> "$T/{name}.pids"
trap 'echo hup >> "$T/{name}.hup"' HUP
while :; do sleep 1 & wait $!; done
"#,
            contenv.display()
        ),
    );
}

struct Svc {
    link: PathBuf,
    socket: PathBuf,
}

impl Svc {
    fn new(c: &Corral) -> Svc {
        Svc {
            link: c.dir().join("s6-svc"),
            socket: c.socket(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        link_command(&self.link, &self.socket, args)
    }

    fn run(&self, args: &[&str]) -> Ran {
        run_within(&mut self.command(args), DEADLINE)
    }

    /// Run, expecting exit 0.
    fn ok(&self, args: &[&str]) -> Ran {
        let ran = self.run(args);
        assert_eq!(ran.code, 0, "s6-svc {args:?}: {ran:?}");
        ran
    }
}

fn started(dir: TestDir) -> Corral {
    dir.link_corral("s6-svc");
    let mut c = dir.corral().ctl_socket().start();
    c.wait_socket();
    c
}

#[test]
fn s6_svc_signals_stops_starts_and_restarts_by_directory_path() {
    let dir = TestDir::new("svc-commands");
    let contenv = dir.link_corral("with-contenv");
    s6_service(&dir, "web", &contenv);
    let mut c = started(dir);
    let svc = Svc::new(&c);
    let first = c.wait_pids("web.pids", 1)[0];
    c.wait_state("web", "running");

    // -h: the run script's HUP trap (its pid only: s6 dirs do not signal
    // the group), and it keeps running.
    svc.ok(&["-h", "/var/run/s6/services/web"]);
    c.wait_file("web.hup");
    assert!(c.process_running(first));

    // -d: stopped, and stays so.
    svc.ok(&["-d", "/run/service/web/"]);
    c.wait_state("web", "stopped");
    c.wait_for("the old run process to be gone", |c| {
        if c.process_running(first) {
            Err(format!("{first} still runs"))
        } else {
            Ok(())
        }
    });

    // A signal to a service that is down: nothing, as with s6-supervise.
    let ran = svc.ok(&["-h", "web"]);
    assert!(ran.stderr.contains("web is not running"), "{ran:?}");

    // -u: a new process.
    svc.ok(&["-u", "web"]);
    let pids = c.wait_pids("web.pids", 2);
    assert_ne!(pids[1], first);

    // -r: restarted, yet another process.
    c.wait_state("web", "running");
    svc.ok(&["-r", "web"]);
    let pids = c.wait_pids("web.pids", 3);
    assert_ne!(pids[2], pids[1]);

    // -t -wr: returns once a new process runs.
    c.wait_state("web", "running");
    svc.ok(&["-t", "-wr", "web"]);
    let after = c.ctl_service("web").expect("web in status");
    assert!(after["pid"].as_i64().is_some(), "{after}");
    c.wait_pids("web.pids", 4);

    // -wD -d: down (and finished) when it returns.
    svc.ok(&["-wD", "-d", "web"]);
    let after = c.ctl_service("web").expect("web in status");
    assert_eq!(after["state"], "stopped", "{after}");

    // -wU -u: up and ready when it returns.
    svc.ok(&["-wU", "-u", "web"]);
    let after = c.ctl_service("web").expect("web in status");
    assert_eq!(after["ready"], true, "{after}");
}

/// A `finish` script that takes its own service down (`s6-svc -d .`, in its
/// service directory): s6-svc returns at once, the finish script ends, and
/// the service is not started again.
#[test]
fn a_finish_script_can_take_its_own_service_down() {
    let dir = TestDir::new("svc-finish-down");
    let svc_link = dir.join("s6-svc");
    fs::create_dir_all(dir.join("services/once")).expect("mkdir");
    dir.executable(
        "services/once/run",
        "#!/bin/sh\necho run >> \"$T/once.runs\"\nexit 3\n",
    );
    dir.executable(
        "services/once/finish",
        &format!(
            "#!/bin/sh\nCORRAL_SOCKET=\"$T/{CTL_SOCKET}\" {} -d .\necho \"finish $1 $2 s6-svc=$?\" >> \"$T/once.finish\"\n",
            svc_link.display()
        ),
    );
    let mut c = started(dir);
    let finished = c.wait_file("once.finish");
    assert_eq!(finished, "finish 3 0 s6-svc=0\n");
    // Wanted down, and down. (The core reports a service that exits non-zero
    // while wanted down as `failed`, with its exit; `stopped` would read better.)
    c.wait_service("once", "wanted down, not running", |s| {
        s["want"] == "down"
            && s["pid"].is_null()
            && (s["state"] == "stopped" || s["state"] == "failed")
    });
    stays(
        "once not started again",
        Duration::from_millis(300),
        || match c.dir().lines("once.runs").len() {
            1 => Ok(()),
            n => Err(format!("{n} runs")),
        },
    );
}

#[test]
fn s6_svc_wu_waits_for_readiness_and_times_out_with_99() {
    let dir = TestDir::new("svc-ready");
    dir.service(
        "slow",
        r#"command = "exec sleep 1000"
ready = { exec = ["sh", "-c", "test -e \"$T/go\""] }
"#,
    );
    dir.service(
        "never",
        r#"command = "exec sleep 1000"
ready = { exec = ["false"] }
"#,
    );
    let c = started(dir);
    let svc = Svc::new(&c);

    let mut waiting = Background::spawn(&mut svc.command(&["-wU", "/run/service/slow"]));
    stays(
        "s6-svc -wU waiting while slow is not ready",
        Duration::from_millis(300),
        || {
            if waiting.is_running() {
                Ok(())
            } else {
                Err("s6-svc exited before slow was ready".into())
            }
        },
    );
    c.dir().write("go", "");
    let ran = waiting.finish(DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(c.ctl_service("slow").expect("slow")["ready"], true);

    let ran = svc.run(&["-T", "200", "-wU", "never"]);
    assert_eq!(ran.code, 99, "{ran:?}");
    assert_eq!(ran.stderr, "s6-svc: fatal: never: timed out after 200 ms\n");
    assert!(
        ran.took >= Duration::from_millis(200) && ran.took < Duration::from_secs(10),
        "took {:?}",
        ran.took
    );
}

#[test]
fn s6_svc_fails_with_s6s_exit_codes_and_says_why() {
    let dir = TestDir::new("svc-errors");
    dir.service("web", "command = \"exec sleep 1000\"\n");
    let c = started(dir);
    let svc = Svc::new(&c);

    let ran = svc.run(&["-Z", "web"]);
    assert_eq!(ran.code, 100, "{ran:?}");
    assert!(
        ran.stderr.starts_with(
            "s6-svc: fatal: unknown option -Z (corral's s6-svc supports -u -U -d -D -o -r"
        ),
        "{ran:?}"
    );
    assert!(
        ran.stderr.contains("\ns6-svc: usage: s6-svc [ -wu"),
        "{ran:?}"
    );

    let ran = svc.run(&["-O", "web"]);
    assert_eq!(ran.code, 100, "{ran:?}");
    assert!(ran.stderr.contains("restart = \"never\""), "{ran:?}");

    let ran = svc.run(&["-u"]);
    assert_eq!(ran.code, 100, "{ran:?}");

    let ran = svc.run(&["-h", "/run/service/wbe"]);
    assert_eq!(ran.code, 102, "{ran:?}");
    assert_eq!(
        ran.stderr,
        "s6-svc: fatal: unable to control /run/service/wbe: no service \"wbe\" (did you mean \"web\"?)\n"
    );

    let nowhere = c.dir().join("nowhere.sock");
    let ran = run_within(
        &mut link_command(&svc.link, &nowhere, &["-h", "web"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 111, "{ran:?}");
    assert!(
        ran.stderr
            .starts_with("s6-svc: fatal: unable to reach corral: no control socket at"),
        "{ran:?}"
    );

    // `corral s6-svc` is the same program.
    let ran = run_within(
        Command::new(corral_bin())
            .env("CORRAL_SOCKET", &svc.socket)
            .args(["s6-svc", "-h", "nope"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 102, "{ran:?}");
}

// ---------------------------------------------------------------------------
// S6_* variables

/// A service that ignores SIGTERM (its children too: SIG_IGN is inherited)
/// and would get 30 s before SIGKILL: only the shutdown budget ends it.
const STUBBORN: &str = r#"command = '''trap "" TERM; echo $$ > "$T/stubborn.pid"; while :; do sleep 0.05; done'''
stop-timeout = "30s"
"#;

/// corral's time from SIGTERM to exit, with `env`.
fn shutdown_time(name: &str, env: &[(&str, &str)]) -> (Duration, Corral) {
    let dir = TestDir::new(name);
    dir.service("stubborn", STUBBORN);
    let mut builder = dir.corral().ctl_socket();
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let mut c = builder.start();
    c.wait_file("stubborn.pid");
    c.wait_state("stubborn", "running");
    let at = Instant::now();
    c.signal(Signal::SIGTERM);
    let code = c.wait_exit(DEADLINE);
    let took = at.elapsed();
    assert_eq!(code, 0, "{}", c.output_excerpt());
    (took, c)
}

#[test]
fn s6_grace_times_make_the_shutdown_budget() {
    let (took, c) = shutdown_time(
        "s6-budget",
        &[
            ("S6_SERVICES_GRACETIME", "200"),
            ("S6_KILL_GRACETIME", "200"),
        ],
    );
    // A 400 ms budget (the service ignores SIGTERM, so it is spent): a
    // generous bound for a loaded machine, far below the default 9 s.
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(
        c.stderr_lines(&["shutdown budget from S6_SERVICES_GRACETIME + S6_KILL_GRACETIME"])
            .len(),
        1,
        "{}",
        c.output_excerpt()
    );
}

#[test]
fn corrals_own_shutdown_timeout_wins_over_s6s() {
    let (took, _c) = shutdown_time(
        "s6-budget-corral",
        &[
            ("S6_SERVICES_GRACETIME", "100"),
            ("S6_KILL_GRACETIME", "100"),
            ("CORRAL_SHUTDOWN_TIMEOUT", "1500ms"),
        ],
    );
    assert!(
        took >= Duration::from_millis(1200) && took < Duration::from_secs(8),
        "took {took:?}"
    );
}

#[test]
fn an_invalid_s6_variable_is_a_usage_error_naming_it() {
    let dir = TestDir::new("s6-invalid");
    dir.service("web", "command = \"exec sleep 1000\"\n");
    let done = dir
        .corral()
        .env("S6_KILL_GRACETIME", "3s")
        .env("S6_BEHAVIOUR_IF_STAGE2_FAILS", "exit")
        .run();
    assert_eq!(done.code(), 2, "{}", done.stderr());
    let err = done.stderr();
    assert!(
        err.contains(
            "corral: S6_KILL_GRACETIME: expected a number of milliseconds such as 3000, found \"3s\""
        ),
        "{err}"
    );
    assert!(
        err.contains("corral: S6_BEHAVIOUR_IF_STAGE2_FAILS: expected 0 (continue), 1 (continue with a warning) or 2 (stop the container), found \"exit\""),
        "{err}"
    );
    assert!(!done.dir().exists("web.pids"));
}

/// SPEC's rule without the variable, and s6-overlay's `2`: the failing
/// script's code ends startup.
#[test]
fn a_failing_init_script_stops_startup_by_default_and_with_2() {
    for value in [None, Some("2")] {
        let dir = TestDir::new("s6-stage2-stop");
        dir.init_script("10-fail", "exit 3");
        dir.service(
            "web",
            "command = 'echo up > \"$T/web.up\"; exec sleep 1000'\n",
        );
        let mut builder = dir.corral();
        if let Some(value) = value {
            builder = builder.env("S6_BEHAVIOUR_IF_STAGE2_FAILS", value);
        }
        let done = builder.run();
        assert_eq!(done.code(), 3, "{value:?}: {}", done.stderr());
        assert!(!done.dir().exists("web.up"), "{value:?}");
    }
}

/// s6-overlay's `0` and `1`: startup goes on after a failing init script
/// (corral logs a warning either way).
#[test]
fn s6_behaviour_0_and_1_continue_after_a_failing_init_script() {
    for value in ["0", "1"] {
        let dir = TestDir::new("s6-stage2-continue");
        dir.init_script("10-fail", "exit 3");
        dir.init_script("20-next", "echo ran > \"$T/next.ran\"");
        dir.service(
            "web",
            "command = 'echo up > \"$T/web.up\"; exec sleep 1000'\n",
        );
        let mut c = dir
            .corral()
            .env("S6_BEHAVIOUR_IF_STAGE2_FAILS", value)
            .start();
        c.wait_file("web.up");
        assert!(c.dir().exists("next.ran"), "{value}");
        assert_eq!(
            c.stderr_lines(&["WARN", "init script failed", "10-fail"])
                .len(),
            1,
            "{value}: {}",
            c.output_excerpt()
        );
        assert_eq!(c.stop(), 0, "{value}");
    }
}

/// `S6_SERVICES_GRACETIME` is the default `stop-timeout` of `services.d`
/// directories (a TOML service keeps corral's 5 s).
#[test]
fn s6_services_gracetime_is_the_stop_timeout_of_service_directories() {
    let dir = TestDir::new("s6-stop-timeout");
    fs::create_dir_all(dir.join("services/stubborn")).expect("mkdir");
    dir.executable(
        "services/stubborn/run",
        "#!/bin/sh\ntrap '' TERM\necho $$ > \"$T/stubborn.pid\"\nwhile :; do sleep 0.05; done\n",
    );
    let mut c = dir
        .corral()
        .ctl_socket()
        .env("S6_SERVICES_GRACETIME", "300")
        .start();
    c.wait_file("stubborn.pid");
    c.wait_state("stubborn", "running");
    let ran = c.ctl(&["stop", "stubborn"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stdout
            .contains("did not stop within stop-timeout 300ms, sent SIGKILL"),
        "{ran:?}"
    );
    assert!(ran.took < Duration::from_secs(4), "took {:?}", ran.took);
}
