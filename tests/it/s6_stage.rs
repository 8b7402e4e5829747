//! What corral leaves in s6-overlay's runtime dir for scripts (SPEC section
//! 9, "Environment" and "Commands"), and the `S6_*` variables read at
//! startup: `S6_STAGE2_HOOK`, `S6_CMD_ARG0`, `S6_VERBOSITY`. The harness
//! points `CORRAL_S6_RUNTIME_DIR` at `$T/s6run` for every corral it starts,
//! so the host's `/run/s6` is never touched.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::common::*;

/// `services/NAME/run` (an s6 service directory, which makes the layout
/// s6-overlay's).
fn s6_service(dir: &TestDir, name: &str, body: &str) {
    let path = dir.join(&format!("services/{name}"));
    fs::create_dir_all(&path).expect("mkdir");
    fs::write(path.join("run"), body).expect("write run");
    fs::set_permissions(path.join("run"), fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn an_s6_layout_gets_the_container_environment_and_corrals_commands_first_on_path() {
    let dir = TestDir::new("s6-stage");
    s6_service(
        &dir,
        "web",
        "#!/bin/sh\necho \"$PATH\" > \"$T/path\"\ncommand -v s6-svc > \"$T/which\"\nexec sleep 1000\n",
    );
    let mut corral = dir
        .corral()
        .env("STAGE_TEST", "a value\nwith a newline")
        .start();
    let path = corral.wait_file("path");
    let bin = corral.dir().join("s6run/basedir/bin");
    assert!(
        path.trim().starts_with(&format!("{}:", bin.display())),
        "corral's commands come first: {path}"
    );
    assert_eq!(
        corral.wait_file("which").trim(),
        bin.join("s6-svc").display().to_string()
    );
    for name in [
        "halt",
        "s6-svc",
        "s6-svwait",
        "s6-svstat",
        "s6-svok",
        "s6-rc",
    ] {
        assert_eq!(
            fs::read_link(bin.join(name)).expect("a link"),
            fs::canonicalize(corral_bin()).expect("corral's path"),
            "{name}"
        );
    }
    let envdir = corral.dir().join("s6run/container_environment");
    let meta = fs::metadata(&envdir).expect("container_environment");
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert_eq!(
        fs::read_to_string(envdir.join("STAGE_TEST")).expect("the variable"),
        "a value\nwith a newline"
    );
    assert_eq!(
        fs::metadata(envdir.join("STAGE_TEST"))
            .expect("file")
            .mode()
            & 0o777,
        0o600
    );
    // The PATH with-contenv gives back is the one services have.
    assert_eq!(
        fs::read_to_string(envdir.join("PATH")).expect("PATH"),
        path.trim()
    );
    assert_eq!(corral.stop(), 0);
}

#[test]
fn toml_services_alone_leave_no_s6_runtime_dir() {
    let dir = TestDir::new("s6-stage-none");
    dir.service(
        "web",
        "command = \"echo up > $T/web.out; exec sleep 1000\"\n",
    );
    let mut corral = dir.corral().start();
    corral.wait_file("web.out");
    assert!(
        !corral.dir().exists("s6run"),
        "corral writes nothing but its socket"
    );
    assert_eq!(corral.stop(), 0);
}

#[test]
fn the_stage2_hook_runs_before_the_definitions_are_read() {
    let dir = TestDir::new("s6-hook");
    // The hook adds a service that does not exist when corral starts.
    dir.write(
        "hook.sh",
        "#!/bin/sh\nmkdir -p \"$T/services/hooked\"\nprintf '#!/bin/sh\\necho hooked >> \"$T/hooked.out\"\\nexec sleep 1000\\n' > \"$T/services/hooked/run\"\nchmod +x \"$T/services/hooked/run\"\n",
    );
    // Through sh: a script just written may be ETXTBSY for exec while
    // another test thread forks (the child holds the write fd until exec).
    let hook = format!("/bin/sh {}", dir.join("hook.sh").display());
    let mut corral = dir.corral().env("S6_STAGE2_HOOK", &hook).start();
    assert_eq!(corral.wait_file("hooked.out").trim(), "hooked");
    assert_eq!(corral.stop(), 0);
}

#[test]
fn a_failing_stage2_hook_stops_the_container_only_when_s6_behaviour_says_so() {
    let dir = TestDir::new("s6-hook-fails");
    dir.write("hook.sh", "#!/bin/sh\nexit 7\n");
    dir.service(
        "web",
        "command = \"echo up >> $T/web.out; exec sleep 1000\"\n",
    );
    // Through sh: a script just written may be ETXTBSY for exec while
    // another test thread forks (the child holds the write fd until exec).
    let hook = format!("/bin/sh {}", dir.join("hook.sh").display());
    let mut stops = dir
        .corral()
        .env("S6_STAGE2_HOOK", &hook)
        .env("S6_BEHAVIOUR_IF_STAGE2_FAILS", "2")
        .start();
    assert_eq!(stops.wait_exit(DEADLINE), 7, "{}", stops.stderr());
    assert!(!stops.dir().exists("web.out"), "nothing started");

    let dir = TestDir::new("s6-hook-warns");
    dir.write("hook.sh", "#!/bin/sh\nexit 7\n");
    dir.service(
        "web",
        "command = \"echo up >> $T/web.out; exec sleep 1000\"\n",
    );
    // Through sh: a script just written may be ETXTBSY for exec while
    // another test thread forks (the child holds the write fd until exec).
    let hook = format!("/bin/sh {}", dir.join("hook.sh").display());
    let mut goes_on = dir
        .corral()
        .env("S6_STAGE2_HOOK", &hook)
        .env("S6_BEHAVIOUR_IF_STAGE2_FAILS", "1")
        .start();
    goes_on.wait_file("web.out");
    goes_on.wait_stderr_line(&["S6_STAGE2_HOOK failed"]);
    assert_eq!(goes_on.stop(), 0);
}

#[test]
fn s6_cmd_arg0_goes_before_the_main_command() {
    let dir = TestDir::new("s6-arg0");
    let out = dir.join("argv").display().to_string();
    let mut corral = dir
        .corral()
        .env("S6_CMD_ARG0", "/bin/sh -c")
        .main(["echo \"$0 $1\" > \"$T/argv\"", "zero", "one"])
        .start();
    assert_eq!(corral.wait_exit(DEADLINE), 0);
    assert_eq!(fs::read_to_string(out).expect("argv").trim(), "zero one");
}

#[test]
fn s6_verbosity_sets_the_log_level_unless_corral_is_told() {
    let dir = TestDir::new("s6-verbosity");
    let mut quiet = dir.corral().env("S6_VERBOSITY", "1").main(["true"]).start();
    assert_eq!(quiet.wait_exit(DEADLINE), 0);
    assert!(
        !quiet.stderr().contains("corral starting"),
        "info lines hidden: {}",
        quiet.stderr()
    );
    let dir = TestDir::new("s6-verbosity-given");
    let mut told = dir
        .corral()
        .env("S6_VERBOSITY", "1")
        .env("CORRAL_LOG_LEVEL", "info")
        .env("S6_LOGGING", "1")
        .main(["true"])
        .start();
    assert_eq!(told.wait_exit(DEADLINE), 0);
    let err = told.stderr();
    assert!(err.contains("corral starting"), "{err}");
    assert!(
        err.contains("S6_LOGGING") && err.contains("no effect"),
        "a variable without effect is named: {err}"
    );
}

#[test]
fn corral_check_names_the_s6_variables_it_ignores() {
    let dir = TestDir::new("s6-check-vars");
    dir.service("web", "command = [\"sleep\", \"1\"]\n");
    let out = std::process::Command::new(corral_bin())
        .args(["check", "--services"])
        .arg(dir.join("services"))
        .env("S6_SYNC_DISKS", "1")
        .env("S6_KEEP_ENV", "1")
        .output()
        .expect("corral check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("S6_SYNC_DISKS: no effect under corral"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("S6_KEEP_ENV"),
        "honoured, so not listed: {stdout}"
    );
}
