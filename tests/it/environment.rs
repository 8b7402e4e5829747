//! What a service runs with: `env`, `env-file` (read at each start), the
//! container environment, `working-dir`, `user` / `group`, `kill-group`, and
//! corral's own JSON log lines.

use crate::common::*;
use nix::sys::signal::Signal;

#[test]
fn env_env_file_and_working_dir_reach_the_service_and_env_file_is_reread_at_each_start() {
    let dir = TestDir::new("env");
    dir.write("vars.env", "# the release\nexport RELEASE='blue'\n");
    std::fs::create_dir_all(dir.join("work")).expect("mkdir work");
    dir.service(
        "web",
        &format!(
            r#"
command = '''echo "$GREETING|$RELEASE|$FROM_CONTAINER|$(pwd)" >> "$T/env.out"; echo $$ >> "$T/web.pids"; exec sleep 1000'''
env = {{ GREETING = "hello world" }}
env-file = "{vars}"
working-dir = "{work}"
restart-delay = "0s"
"#,
            vars = dir.join("vars.env").display(),
            work = dir.join("work").display(),
        ),
    );
    let mut c = dir.corral().env("FROM_CONTAINER", "inherited").start();
    let first = c.wait_pids("web.pids", 1)[0];
    let work = c.dir().join("work").display().to_string();
    assert_eq!(
        c.dir().lines("env.out"),
        vec![format!("hello world|blue|inherited|{work}")]
    );

    // A new release in the env-file: the next start sees it, without a reload.
    c.dir().write("vars.env", "RELEASE=\"green\"\n");
    c.signal_process(first, Signal::SIGKILL);
    c.wait_pids("web.pids", 2);
    assert_eq!(
        c.dir().lines("env.out").last().map(String::as_str),
        Some(format!("hello world|green|inherited|{work}").as_str())
    );
    assert_eq!(c.stop(), 0);
}

#[test]
fn a_broken_env_file_is_a_failed_start_with_a_clear_reason_and_corral_keeps_running() {
    let dir = TestDir::new("env-file-broken");
    dir.write("vars.env", "RELEASE=blue\nthis line has no equals sign\n");
    dir.service(
        "web",
        &format!(
            "command = 'echo started >> \"$T/web.out\"'\nenv-file = \"{}\"\nmax-restarts = 1\nrestart-delay = \"0s\"\n",
            dir.join("vars.env").display()
        ),
    );
    dir.service(
        "other",
        "command = 'echo $$ >> \"$T/other.pids\"; exec sleep 1000'",
    );
    let mut c = dir.corral().start();
    let line = c.wait_stderr_line(&["web", "could not be started", "vars.env:2"]);
    assert!(line.contains("expected KEY=value"), "{line}");
    c.wait_stderr_line(&["giving up", "web"]);
    assert!(!c.dir().exists("web.out"), "web must not have run");
    let other = c.wait_pids("other.pids", 1)[0];
    assert!(c.process_running(other));
    assert_eq!(c.stop(), 0);
}

#[test]
fn user_and_group_drop_privileges_with_supplementary_groups() {
    require_root("this test switches users");
    let dir = TestDir::new("user");
    dir.service(
        "web",
        r#"
command = '''echo "$(id -u) $(id -g) $(id -G)" > "$T/id.out"; exec sleep 1000'''
user = "nobody"
group = "nogroup"
"#,
    );
    // The output file is written by nobody: let it into the test dir, as
    // into /tmp (sticky); the control socket goes into a private directory
    // below it (an open one is no place for it, SPEC 12).
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("chmod test dir");
    let socket = dir.join("run/control.sock").display().to_string();
    let mut c = dir.corral().env("CORRAL_SOCKET", &socket).start();
    let id = c.wait_file("id.out");
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("user nobody");
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .ok()
        .flatten()
        .expect("group nogroup");
    let fields: Vec<&str> = id.split_whitespace().collect();
    assert_eq!(fields[0], nobody.uid.to_string(), "uid in {id:?}");
    assert_eq!(fields[1], nogroup.gid.to_string(), "gid in {id:?}");
    // Root's supplementary groups (e.g. 0) must be gone.
    assert!(
        !fields[2..].contains(&"0"),
        "root's groups leaked into the service: {id:?}"
    );
    assert_eq!(c.stop(), 0);
}

#[test]
fn kill_group_false_signals_only_the_services_pid() {
    let dir = TestDir::new("kill-group");
    // The background child records, when its own SIGTERM finally comes,
    // whether the service's shell was still alive: with kill-group = false the
    // stop signal went to the shell alone, so the child outlives it and is
    // only reached by the last sweep after the service was reaped. It
    // writes its pid once its trap is set: a SIGTERM before that (a loaded
    // machine, a fast stop) would end it without a word.
    dir.service(
        "web",
        r#"
kill-group = false
command = '''
svc=$$
sh -c "trap 'if kill -0 $svc 2>/dev/null; then echo alive; else echo dead; fi > \"$T/child.out\"; exit 0' TERM; echo \$\$ > \"$T/child.pid\"; while :; do sleep 0.05; done" &
wait
'''
"#,
    );
    let mut c = dir.corral().start();
    let child: i32 = c.wait_file("child.pid").trim().parse().expect("child pid");
    assert!(c.process_running(child));
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait_exit(DEADLINE), 0);
    assert_eq!(
        c.dir().read("child.out").trim(),
        "dead",
        "the child got SIGTERM while the service's shell still ran: the group was signalled"
    );
    assert!(!running(child), "the child survived corral");
}

#[test]
fn json_log_lines() {
    let dir = TestDir::new("json-log");
    dir.service(
        "web",
        "command = 'echo $$ >> \"$T/web.pids\"; exec sleep 1000'",
    );
    let mut c = dir.corral().args(["--log-format", "json"]).start();
    c.wait_pids("web.pids", 1);
    c.wait_stderr_line(&["service started"]);
    assert_eq!(c.stop(), 0);
    let stderr = c.stderr();
    assert!(!stderr.trim().is_empty());
    for line in stderr.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"),
            "not a JSON log line: {line}"
        );
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("\"message\":\"service started\"")
                && l.contains("\"service\":\"web\"")),
        "{stderr}"
    );
}
