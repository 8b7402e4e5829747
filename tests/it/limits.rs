//! `limits` (SPEC section 11): resource limits set in the service before
//! exec. The service file's errors, the limits a service really runs with
//! (`/proc/PID/limits`, also under another user), and the values corral
//! could not set: refused by `corral check` (as uid 65534, which has no
//! CAP_SYS_RESOURCE; above `fs.nr_open` for root), and by a SIGHUP re-read
//! that keeps the running set.

use std::path::Path;

use corral::config::{UNLIMITED, parse_service};
use nix::sys::resource::{Resource, getrlimit};

use crate::common::*;

fn hard(resource: Resource) -> u64 {
    getrlimit(resource).expect("getrlimit").1
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .expect("read /proc/sys/fs/nr_open")
        .trim()
        .parse()
        .expect("a number")
}

/// The (soft, hard) limits of `/proc/PID/limits` line `name`; `u64::MAX`
/// for "unlimited".
fn limits_of(pid: i32, name: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} missing from /proc/{pid}/limits"));
    let mut values = line
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(u64::MAX));
    (values.next().expect("soft"), values.next().expect("hard"))
}

#[test]
fn limits_forms_and_their_errors() {
    let parse = |line: &str| {
        parse_service(Path::new("web.toml"), &format!("command = \"x\"\n{line}"))
            .map(|spec| spec.limits)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    // Values every machine allows (`"unlimited"` needs an unlimited hard
    // limit: the test below).
    assert_eq!(
        parse("limits = { nofile = 1024, nproc = 0x40, core = 0, memlock = \"64KiB\", stack = \"1MiB\" }")
            .map(|mut limits| {
                limits.sort();
                limits
            }),
        Ok(vec![
            (Resource::RLIMIT_STACK, 1 << 20),
            (Resource::RLIMIT_CORE, 0),
            (Resource::RLIMIT_NPROC, 64),
            (Resource::RLIMIT_NOFILE, 1024),
            (Resource::RLIMIT_MEMLOCK, 65536),
        ])
    );
    assert_eq!(parse(""), Ok(vec![]));
    let errors = parse(
        "limits = { nofiles = 10, files = 1, nofile = \"64MiB\", core = \"64 potatoes\", stack = -1, nproc = 1.5 }",
    )
    .expect_err("all bad");
    assert_eq!(
        errors,
        [
            "web.toml:2:12: unknown limit `nofiles` in `limits` (did you mean `nofile`?)",
            "web.toml:2:26: unknown limit `files` in `limits` (known: nofile, nproc, core, memlock, stack)",
            "web.toml:2:46: `limits.nofile`: expected a whole number or \"unlimited\", found \"64MiB\"",
            "web.toml:2:62: `limits.core`: invalid size \"64 potatoes\": expected a whole number and a unit: B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), such as \"10MB\"",
            "web.toml:2:85: `limits.stack`: expected a number of bytes, a size such as \"64MiB\" or \"unlimited\", found -1",
            "web.toml:2:97: `limits.nproc`: expected a whole number or \"unlimited\", found float",
        ]
    );
    assert_eq!(
        parse("limits = [\"nofile\"]"),
        Err(vec![
            "web.toml:2:10: `limits`: expected a table such as { nofile = 65536 }, found array"
                .to_string()
        ])
    );
    let nofile = nr_open() + 1;
    assert_eq!(
        parse(&format!("limits = {{ nofile = {nofile} }}")),
        Err(vec![format!(
            "web.toml:2:21: `limits.nofile = {nofile}` is above fs.nr_open ({}), the most open files the kernel allows",
            nofile - 1
        )])
    );
}

/// The limits a service runs with, soft = hard, also once it has switched
/// to another user (set before the switch, which drops the capability a
/// raise would need); its hooks and probes get them too (same context),
/// shown here by an exec readiness probe.
#[test]
fn services_run_with_their_limits_also_as_another_user() {
    require_root("to run a service as uid 65534");
    let core = hard(Resource::RLIMIT_CORE);
    assert_eq!(
        core, UNLIMITED,
        "this test needs an unlimited hard core limit (ulimit -Hc unlimited)"
    );
    assert!(
        hard(Resource::RLIMIT_MEMLOCK) >= 65536 && hard(Resource::RLIMIT_NOFILE) >= 1000,
        "this test needs hard limits of at least 64 KiB of locked memory and 1000 open files"
    );
    let dir = TestDir::new("limits");
    let limits =
        "limits = { nofile = 1000, core = \"unlimited\", memlock = \"64KiB\", nproc = 4000 }\n";
    dir.service("web", &format!("{}{limits}", sleeper("web")));
    dir.service(
        "nobody",
        &format!(
            r#"command = "exec sleep 1000"
user = 65534
ready = {{ exec = '''grep -Eq '^Max open files +1000 +1000 ' /proc/self/limits''' }}
{limits}"#
        ),
    );
    let mut c = dir.corral().ctl_socket().start();
    let web = c.wait_pids("web.pids", 1)[0];
    // Ready: its probe, as uid 65534 too, found the limit in its own /proc.
    let nobody = c.wait_state("nobody", "ready")["pid"]
        .as_i64()
        .expect("a pid") as i32;
    for pid in [web, nobody] {
        assert_eq!(limits_of(pid, "Max open files"), (1000, 1000), "{pid}");
        assert_eq!(
            limits_of(pid, "Max core file size"),
            (u64::MAX, u64::MAX),
            "{pid}"
        );
        assert_eq!(limits_of(pid, "Max locked memory"), (65536, 65536), "{pid}");
        assert_eq!(limits_of(pid, "Max processes"), (4000, 4000), "{pid}");
    }
    assert_eq!(c.stop(), 0);
}

/// `corral check` refuses what corral could not set, naming the file, the
/// position, the limit and why: as uid 65534 (no CAP_SYS_RESOURCE) a value
/// above the hard limit; for anyone, open files above `fs.nr_open`.
#[test]
fn corral_check_refuses_limits_corral_could_not_set() {
    require_root("to run corral check as uid 65534 through setpriv");
    require_program("setpriv", "util-linux");
    let dir = TestDir::new("limits-check");
    let above = hard(Resource::RLIMIT_NOFILE) + 1;
    dir.service(
        "web",
        &format!("command = \"x\"\nlimits = {{ nofile = {above} }}\n"),
    );
    let services = dir.join("services");
    let ran = run_within(
        as_nobody(corral_bin())
            .arg("check")
            .arg("--services")
            .arg(&services),
        DEADLINE,
    );
    assert_eq!(ran.code, 2, "{ran:?}");
    assert_eq!(
        ran.stderr.lines().next(),
        Some(
            format!(
                "{}:2:21: `limits.nofile = {above}` is above the hard limit {}, which corral (without CAP_SYS_RESOURCE) cannot raise",
                services.join("web.toml").display(),
                above - 1
            )
            .as_str()
        ),
        "{ran:?}"
    );

    let too_many = nr_open() + 1;
    dir.service(
        "web",
        &format!("command = \"x\"\nlimits = {{ nofile = {too_many} }}\n"),
    );
    let done = dir.corral().check();
    assert_eq!(done.code(), 2, "{}", done.stderr());
    assert!(
        done.stderr().contains(&format!(
            "web.toml:2:21: `limits.nofile = {too_many}` is above fs.nr_open ({})",
            too_many - 1
        )),
        "{}",
        done.stderr()
    );
}

/// A good `limits` is printed in the start plan; a re-read (`ctl reload`)
/// that asks for a limit corral cannot set is refused whole, and the
/// running service stays as it was.
#[test]
fn the_plan_shows_limits_and_a_reload_asking_too_much_keeps_the_running_set() {
    let dir = TestDir::new("limits-reload");
    let path = dir.service(
        "web",
        &format!("{}limits = {{ nofile = 512 }}\n", sleeper("web")),
    );
    let plan = TestDir::new("limits-plan");
    plan.service(
        "web",
        &format!("{}limits = {{ nofile = 512, core = 0 }}\n", sleeper("web")),
    );
    let done = plan.corral().check();
    assert_eq!(done.code(), 0, "{}", done.stderr());
    assert!(
        done.stdout().contains("limits nofile = 512, core = 0")
            || done.stdout().contains("limits core = 0, nofile = 512"),
        "{}",
        done.stdout()
    );

    let mut c = dir.corral().ctl_socket().start();
    let web = c.wait_pids("web.pids", 1)[0];
    let too_many = nr_open() + 1;
    std::fs::write(
        &path,
        format!("{}limits = {{ nofile = {too_many} }}\n", sleeper("web")),
    )
    .expect("rewrite web.toml");
    let ran = c.ctl(&["reload"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.stderr.contains("`limits.nofile") && ran.stderr.contains("fs.nr_open"),
        "{ran:?}"
    );
    let status = c.ctl_service("web").expect("listed");
    assert_eq!(status["pid"], web, "{status}");
    assert_eq!(limits_of(web, "Max open files"), (512, 512));
    assert_eq!(c.stop(), 0);
}

/// 120 services need about 64 + 240 open files in corral, above a soft
/// limit of 200: corral raises its own (the hard limit allows) and says so,
/// every service starts, and each keeps the limit corral was given.
#[test]
fn a_soft_open_file_limit_too_low_is_raised_for_corral_only() {
    let dir = TestDir::new("nofile-raised");
    for i in 0..120 {
        dir.service(&format!("s{i:03}"), &sleeper("s"));
    }
    let mut c = dir.corral().ctl_socket().nofile(200, 4096).start();
    let line = c.wait_stderr_line(&["open-file limit raised"]);
    assert!(line.contains("from=200"), "{line}");
    let running = c.wait_for("120 services running", |c| {
        let services = c.try_ctl_status()?;
        let pids: Vec<i32> = services
            .iter()
            .filter(|s| s["state"] == "running")
            .filter_map(|s| s["pid"].as_i64().map(|p| p as i32))
            .collect();
        if pids.len() == 120 {
            Ok(pids)
        } else {
            Err(format!("{} of 120 running", pids.len()))
        }
    });
    assert_eq!(limits_of(running[0], "Max open files"), (200, 4096));
    assert_eq!(limits_of(running[119], "Max open files"), (200, 4096));
    let (soft, hard) = limits_of(c.pid(), "Max open files");
    assert!(
        soft >= 64 + 240 && hard == 4096,
        "corral's own: {soft} {hard}"
    );
    assert_eq!(c.stop(), 0);
}

/// The hard limit too: one warning with the figures and what to do, the
/// services that do not fit fail with the limit named, and the others run.
#[test]
fn a_hard_open_file_limit_too_low_is_named_at_startup_and_in_each_failure() {
    let dir = TestDir::new("nofile-hard");
    for i in 0..100 {
        dir.service(
            &format!("s{i:03}"),
            &format!("{}restart = \"never\"\n", sleeper("s")),
        );
    }
    let mut c = dir.corral().ctl_socket().nofile(150, 150).start();
    let warning = c.wait_stderr_line(&["hard limit of 150", "ulimit -Hn"]);
    assert!(
        warning.contains("100 services need about 264 open files"),
        "{warning}"
    );
    let (running, failed) = c.wait_for("every service started or failed", |c| {
        let services = c.try_ctl_status()?;
        let running = services.iter().filter(|s| s["state"] == "running").count();
        let failed: Vec<String> = services
            .iter()
            .filter(|s| s["state"] != "running")
            .map(|s| s["detail"].as_str().unwrap_or_default().to_string())
            .collect();
        if running + failed.len() == 100 {
            Ok((running, failed))
        } else {
            Err(format!("{running} running, {} failed", failed.len()))
        }
    });
    assert!(running > 0 && !failed.is_empty(), "{running} running");
    assert!(
        failed
            .iter()
            .all(|f| f.contains("Too many open files")
                && f.contains("open-file limit (150, ulimit -n)")),
        "{failed:?}"
    );
    assert_eq!(c.stop(), 0);
}
