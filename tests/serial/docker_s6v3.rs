//! An s6-overlay v3 image booted by corral, in a real container: the tree of
//! `examples/s6-v3/` (written for this project in the shape of
//! linuxserver.io's base image and of an app image built on it), built by
//! its Dockerfile on the local base image of `docker/build-base.sh`, with
//! corral as ENTRYPOINT. Once per variant of the image: corral's links as the
//! only s6 commands (`links`), and Debian's `s6` and `execline` installed
//! with only `with-contenv` and `printcontenv` linked to corral (`s6pkg`, as
//! an image that keeps s6's programs: the commands that talk to a
//! supervisor must then resolve to corral's through `/run/s6/basedir/bin`).
//! The same checks for both:
//!
//! - the stage 2 hook ran first and added a service to the tree; every
//!   oneshot ran exactly once per boot (`ctl status`: exited 0, run 1; the
//!   trace every step appends to `/config/trace.log`), each after everything
//!   it depends on, through bundles and the app's additions to the base
//!   chain; the `user2` oneshot (which depends on `legacy-services`) after
//!   the whole `user` bundle; the oneshot that depends on the app only once
//!   the app answers (s6-notifyoncheck readiness);
//! - the longruns are up, the app answers on a port published on 127.0.0.1,
//!   as the uid init-adduser gave `abc` (s6-setuidgid), with the boot number
//!   an init step wrote into `/run/s6/container_environment/` and the secret
//!   init-envfile read from the file `FILE__APP_SECRET` names (with-contenv);
//! - `docker exec C s6-svc -r /run/service/svc-app` restarts it: a new pid
//!   that answers; `s6-svstat`, `s6-svok`, `s6-svwait`, `s6-rc -a list`,
//!   `printcontenv` answer; no zombie, at any point;
//! - `docker stop` returns within its grace period, exit code 0; the
//!   oneshot's `down` ran once the app was down; the worker its run script
//!   does not exec was stopped by the last SIGTERM to every process (its
//!   parent then: 1) and shut down cleanly;
//! - `docker start` (a stale `/run`: it is the container's own layer, not a
//!   tmpfs) boots again, every oneshot once more, the stale pid file
//!   removed, migrations not re-applied; `docker kill -s TERM` ends it with
//!   exit code 0 as cleanly.
//!
//! Figures (from `docker run` to the end of the init chain and to the app
//! answering, the `docker stop` time) are printed on stderr and written to
//! `target/docker-s6v3-VARIANT.txt`.
//!
//! The container and the image carry the label `org.corral.s6v3=PID`; a
//! guard removes both, also when the test fails (first printing the
//! container's output); ones left by a test process that no longer exists
//! are removed at the start. Docker must be usable: the test fails, saying
//! why, when it is not.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{Ran, TestDir, corral_bin, http_get_at, run_within, serial, wait_until};
use crate::docker_common::{
    DOCKER_TIMEOUT, Leftover, STOP_GRACE, corral_release, docker, docker_ok, docker_usable, repo,
    sweep_dead,
};

/// From `docker run` (or `start`) to the whole tree up: generous, for a
/// loaded 2-core machine; a passing wait ends as soon as its condition holds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Label of the container and image the test makes; its value is the test
/// process's pid.
const LABEL: &str = "org.corral.s6v3";
/// What the tree's scripts see, as `docker run -e` gives it.
const PUID: u32 = 1000;
const PGID: u32 = 1000;
/// The names of the v3 pseudo-services a tree may depend on.
const PSEUDO: [&str; 3] = ["base", "legacy-cont-init", "legacy-services"];

#[test]
fn links_variant_boots_restarts_and_stops_the_v3_tree() {
    scenario(Variant::Links);
}

#[test]
fn s6pkg_variant_boots_restarts_and_stops_the_v3_tree() {
    scenario(Variant::S6Pkg);
}

/// Without any container: the example's tree (base and app merged, as the
/// image holds them) has the shape the scenario relies on, and every script
/// is valid bash.
#[test]
fn example_tree_has_the_published_shape() {
    let tree = Tree::read(&example_roots());
    let problems = tree.problems();
    assert!(
        problems.is_empty(),
        "examples/s6-v3 is not well formed:\n{}",
        problems.join("\n")
    );
    // What the published trees use, and the scenario checks.
    for bundle in ["user", "user2"] {
        let def = tree.get(bundle);
        assert!(
            def.kind.is_none() && !def.contents.is_empty(),
            "{bundle}: a bundle with contents.d and no type file (s6-overlay writes it at boot): {def:?}"
        );
    }
    let chain = tree.longest_oneshot_chain();
    assert!(
        chain.len() >= 10,
        "the init chain is {} oneshots long, not about ten: {chain:?}",
        chain.len()
    );
    let by_path = tree
        .oneshots()
        .filter(|name| tree.up_script(name).is_some())
        .count();
    assert!(
        by_path >= 10,
        "{by_path} oneshots have an `up` that is one absolute path"
    );
    assert!(
        tree.get("init-config-end").deps.contains("init-app-config"),
        "the app tree adds a dependency to the base's init-config-end"
    );
    assert!(
        tree.services
            .values()
            .any(|d| d.deps.contains("legacy-services")),
        "nothing depends on legacy-services"
    );
    assert!(
        tree.get("init-app-poststart").deps.contains("svc-app"),
        "the poststart oneshot waits for svc-app"
    );
    let app = tree.get("svc-app");
    assert_eq!(app.file("notification-fd").trim(), "3");
    let run = app.file("run");
    for needle in [
        "#!/usr/bin/with-contenv bash",
        "s6-notifyoncheck -d -n 300 -w 1000 -c \"nc -z localhost",
        "s6-setuidgid abc",
    ] {
        assert!(run.contains(needle), "svc-app/run lacks {needle:?}:\n{run}");
    }
    let worker = tree.get("svc-worker").file("run");
    assert!(
        worker.contains("s6-setuidgid abc node")
            && !worker.lines().any(|l| l.trim_start().starts_with("exec")),
        "svc-worker/run must start its daemon without exec:\n{worker}"
    );
    assert!(
        !tree.get("init-app-state").file("down").is_empty(),
        "init-app-state has no down"
    );
    let hook = fs::read_to_string(repo().join("examples/s6-v3/app/docker-mods")).unwrap();
    assert!(
        hook.contains("svc-hooked"),
        "the stage 2 hook adds svc-hooked"
    );
    // Every script is bash that parses.
    let mut scripts = tree.scripts();
    scripts.push(repo().join("examples/s6-v3/app/docker-mods"));
    scripts.push(repo().join("examples/s6-v3/base/usr/local/bin/boot-trace"));
    for script in scripts {
        let ran = run_within(
            Command::new("bash").arg("-n").arg(&script),
            Duration::from_secs(30),
        );
        assert_eq!(ran.code, 0, "bash -n {}: {ran:?}", script.display());
    }
}

/// `corral check --s6-rc-dir` on the example's tree (the hook's service
/// added, as at boot): valid, every service in the plan, each at a later
/// start level than what it depends on.
#[test]
fn example_tree_passes_corral_check() {
    let dir = TestDir::new("s6v3-check");
    let tree_dir = dir.join("s6-rc.d");
    for root in example_roots() {
        copy_tree(&root, &tree_dir);
    }
    // What /docker-mods adds at boot.
    fs::create_dir_all(tree_dir.join("svc-hooked/dependencies.d")).unwrap();
    fs::write(tree_dir.join("svc-hooked/type"), "longrun\n").unwrap();
    fs::write(tree_dir.join("svc-hooked/dependencies.d/init-services"), "").unwrap();
    fs::write(
        tree_dir.join("svc-hooked/run"),
        "#!/usr/bin/with-contenv bash\nexec sleep infinity\n",
    )
    .unwrap();
    fs::set_permissions(
        tree_dir.join("svc-hooked/run"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::write(tree_dir.join("user/contents.d/svc-hooked"), "").unwrap();

    let ran = run_within(
        Command::new(corral_bin())
            .arg("check")
            .arg("--s6-rc-dir")
            .arg(&tree_dir)
            .env_remove("S6_STAGE2_HOOK")
            .env_remove("CORRAL_S6_RC_DIR"),
        Duration::from_secs(30),
    );
    assert_eq!(ran.code, 0, "corral check --s6-rc-dir: {ran:?}");
    let levels = plan_levels(&ran.stdout);
    let tree = Tree::read(std::slice::from_ref(&tree_dir));
    for name in tree.runnable() {
        let Some(level) = levels.get(&name) else {
            panic!("{name} is not in the plan:\n{}", ran.stdout);
        };
        for dep in tree.closure(&name) {
            if let Some(dep_level) = levels.get(&dep) {
                assert!(
                    dep_level < level,
                    "{name} (step {level}) must start after {dep} (step {dep_level}):\n{}",
                    ran.stdout
                );
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    Links,
    S6Pkg,
}

impl Variant {
    /// The Dockerfile target, also the image tag.
    fn name(self) -> &'static str {
        match self {
            Variant::Links => "links",
            Variant::S6Pkg => "s6pkg",
        }
    }
}

// ---------------------------------------------------------------------------
// The scenario

fn scenario(variant: Variant) {
    let _serial = serial();
    if let Err(why) = docker_usable() {
        panic!("this test needs a usable Docker engine: {why}");
    }
    let began = Instant::now();
    let mut figures = Figures::new(variant);
    let mut lab = Lab::build(variant);
    figures.line(format!(
        "image {} built in {:.1}s",
        lab.image,
        began.elapsed().as_secs_f64()
    ));

    // Boot 1.
    let run_ms = epoch_ms();
    let run_at = Instant::now();
    lab.run();
    let app = lab.app_endpoint();
    let first = wait_app(&lab, &app, |a| a.boot == "1");
    let answered = run_at.elapsed();
    let trace = wait_booted(&lab, 1);
    let boot1 = trace.boot(1);
    let tree = lab.live_tree();
    check_boot(&tree, &boot1, 1, &lab.logs_tail());
    check_status(&lab, &tree, 1);
    check_app(&lab, &first);
    check_commands(&lab, first.pid, 1);
    figures.line(check_variant(&lab, variant));
    figures.line(format!(
        "boot 1: from docker run: stage 2 hook {} ms, svc-app started {} ms, app answering \
         (seen from the host) {:.0} ms, init chain done {} ms (last oneshot: {})",
        boot1.ms("hook stage2").saturating_sub(run_ms),
        boot1.ms("begin svc-app").saturating_sub(run_ms),
        answered.as_secs_f64() * 1000.0,
        boot1.chain_end().saturating_sub(run_ms),
        boot1.last_oneshot(),
    ));
    figures.line(format!(
        "boot 1, steps with no order between them: {}; {}",
        boot1.side_by_side("init-migrations", "init-envfile"),
        boot1.side_by_side("init-app-config", "init-runtime-env")
    ));
    let run_fs = lab.exec_ok(&["stat", "-f", "-c", "%T", "/run"]);
    figures.line(format!("/run in the container: {}", run_fs.trim()));
    assert_ne!(
        run_fs.trim(),
        "tmpfs",
        "/run must be the container's own layer here, for the stale second boot"
    );
    assert_zombies(&lab, "after boot 1");

    // s6-svc -r from docker exec: a new app process, answering again.
    lab.exec_ok(&["s6-svc", "-r", "/run/service/svc-app"]);
    let restarted = wait_app(&lab, &app, |a| a.pid != first.pid);
    lab.exec_ok(&["s6-svwait", "-U", "-t", "30000", "/run/service/svc-app"]);
    let status = lab.wait_status("svc-app to be ready again, in its second run", |s| {
        s["name"] == "svc-app" && s["ready"] == true && s["run"] == 2
    });
    figures.line(format!(
        "s6-svc -r: app pid {} -> {}; ctl status: {status}",
        first.pid, restarted.pid
    ));
    assert_ne!(
        lab.exec(&["kill", "-0", &first.pid.to_string()]).code,
        0,
        "the first app process {} still runs",
        first.pid
    );
    let begins = lab.trace().boot(1).count("begin svc-app");
    assert_eq!(begins, 2, "svc-app's run script ran {begins} times, not 2");
    assert_zombies(&lab, "after the restart");

    // docker stop: everything down well within the grace period, exit 0.
    let took = lab.stop();
    figures.line(format!(
        "docker stop: {:.0} ms, exit code 0",
        took.as_secs_f64() * 1000.0
    ));
    let after1 = lab.trace_stopped();
    check_shutdown(&lab, &after1.boot(1), 1, "docker stop");
    assert!(
        lab.copy_out("/run/app/app.pid").is_some(),
        "/run/app/app.pid did not survive the stop: /run is not stale"
    );

    // Boot 2, on the stale /run of boot 1.
    let start_ms = epoch_ms();
    let start_at = Instant::now();
    lab.start();
    let app = lab.app_endpoint();
    let second = wait_app(&lab, &app, |a| a.boot == "2");
    let answered = start_at.elapsed();
    let trace = wait_booted(&lab, 2);
    let boot2 = trace.boot(2);
    let tree = lab.live_tree();
    check_boot(&tree, &boot2, 2, &lab.logs_tail());
    check_status(&lab, &tree, 1);
    check_app(&lab, &second);
    check_commands(&lab, second.pid, 2);
    assert_eq!(
        trace.boot(1).count("begin init-migrations"),
        1,
        "boot 1's lines changed"
    );
    figures.line(format!(
        "boot 2 (docker start, stale /run): from docker start: svc-app started {} ms, app \
         answering (seen from the host) {:.0} ms, init chain done {} ms",
        boot2.ms("begin svc-app").saturating_sub(start_ms),
        answered.as_secs_f64() * 1000.0,
        boot2.chain_end().saturating_sub(start_ms)
    ));
    assert_zombies(&lab, "after boot 2");

    // docker kill -s TERM: the same shutdown, exit 0.
    let took = lab.kill_term();
    figures.line(format!(
        "docker kill -s TERM: exited {:.0} ms after the signal, exit code 0",
        took.as_secs_f64() * 1000.0
    ));
    let after2 = lab.trace_stopped();
    check_shutdown(&lab, &after2.boot(2), 2, "docker kill -s TERM");

    figures.line(format!(
        "whole scenario: {:.1}s",
        began.elapsed().as_secs_f64()
    ));
    figures.publish();
}

/// Boot `n`, as its trace shows it: the hook first; every oneshot that
/// traces itself exactly once, after all it depends on; user2 after user;
/// what each step found.
fn check_boot(tree: &Tree, boot: &Boot, n: u32, logs: &str) {
    let context = || format!("boot {n}:\n{}\n{logs}", boot.text());
    // The hook: first, and its service is in the tree.
    assert_eq!(boot.count("hook stage2"), 1, "{}", context());
    assert!(
        tree.services.contains_key("svc-hooked")
            && tree.get("user").contents.contains("svc-hooked"),
        "the stage 2 hook did not add svc-hooked to the tree"
    );
    let hook_at = boot.ms("hook stage2");
    assert!(
        boot.lines.iter().all(|l| l.ms >= hook_at),
        "a line before the stage 2 hook: {}",
        context()
    );
    // Each oneshot that traces itself: once.
    let traced: Vec<String> = tree.oneshots().filter(|name| boot.traces(name)).collect();
    assert!(
        traced.len() >= 10,
        "only {} oneshots traced themselves: {traced:?}\n{}",
        traced.len(),
        context()
    );
    for name in &traced {
        let (begins, ends) = (
            boot.count_event("begin", name),
            boot.count_event("end", name),
        );
        let marks = boot.count_event("mark", name);
        assert!(
            (begins == 1 && ends == 1 && marks == 0) || (begins == 0 && ends == 0 && marks == 1),
            "{name} ran {} times (begin {begins}, end {ends}, mark {marks}): {}",
            begins.max(ends).max(marks),
            context()
        );
    }
    // Dependency order, through bundles and untraced oneshots: whatever a
    // step depends on ended before it began. Longruns: their run began after
    // their dependencies ended.
    for name in tree.runnable() {
        let Some(begin) = boot.begin(&name) else {
            continue;
        };
        for dep in tree.closure(&name) {
            if let Some(end) = boot.end(&dep) {
                assert!(
                    end <= begin,
                    "{name} began at {begin} before {dep}, which it depends on, ended at {end}: {}",
                    context()
                );
            } else if let Some(dep_begin) = boot.begin(&dep) {
                // A longrun dependency: it had at least started.
                assert!(
                    dep_begin <= begin,
                    "{name} began before the longrun {dep} it depends on: {}",
                    context()
                );
            }
        }
    }
    // user2 (init-boot-done depends on legacy-services) after all of user.
    let done = boot.ms("mark init-boot-done");
    for name in tree.closure("user") {
        if let Some(end) = boot.end(&name) {
            assert!(
                end <= done,
                "the user2 oneshot ran before {name} (in user) ended: {}",
                context()
            );
        }
    }
    // What the steps found.
    let expect = |line: &str| {
        assert_eq!(boot.count(line), 1, "no line {line:?}: {}", context());
    };
    expect(&format!("end init-adduser uid={PUID} gid={PGID}"));
    expect("end init-envfile secrets=1");
    expect(&format!("end init-runtime-env boot={n}"));
    expect("custom-script 10-greeting");
    expect("end init-app-poststart app-port=open");
    if n == 1 {
        expect("end init-migrations applied=1");
        expect("migration 01-data-layout");
        expect("end init-app-config stale-pid=no");
        expect("end init-app-state previous=none");
    } else {
        expect("end init-migrations applied=0");
        assert_eq!(boot.count("migration 01-data-layout"), 0, "{}", context());
        expect("end init-app-config stale-pid=removed");
        expect("end init-app-state previous=closed");
    }
    for longrun in ["svc-app", "svc-worker", "svc-hooked"] {
        assert!(
            boot.begin(longrun).is_some(),
            "{longrun} never started: {}",
            context()
        );
    }
}

/// `corral ctl status`: every oneshot of the tree exited 0 after exactly
/// `runs` run; every longrun up, svc-app ready.
fn check_status(lab: &Lab, tree: &Tree, runs: u32) {
    let status = lab.status();
    let find = |name: &str| {
        status
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in ctl status: {status:#?}"))
    };
    for name in tree.oneshots() {
        let s = find(&name);
        assert!(
            s["state"] == "exited" && s["last_exit_code"] == 0 && s["run"] == runs,
            "oneshot {name}: not exited 0 after {runs} run: {s}"
        );
    }
    for name in tree.longruns() {
        let s = find(&name);
        assert!(
            s["state"] == "running" || s["state"] == "ready",
            "longrun {name} is not up: {s}"
        );
    }
    let app = find("svc-app");
    assert!(app["ready"] == true, "svc-app is not ready: {app}");
}

/// What the app says of itself: abc's uid and gid from PUID/PGID, the
/// secret init-envfile took from the file (its fingerprint).
fn check_app(lab: &Lab, app: &AppAnswer) {
    assert_eq!(
        (app.uid, app.gid),
        (PUID, PGID),
        "the app's uid/gid: {app:?}"
    );
    let sum = lab.exec_ok(&["sha256sum", "/secrets/app-secret"]);
    let want = sum.split_whitespace().next().unwrap_or_default();
    assert_eq!(
        app.secret_sha256.as_deref(),
        Some(want),
        "the app did not get APP_SECRET from FILE__APP_SECRET: {app:?}"
    );
}

/// The s6 commands scripts and operators call, from `docker exec`.
fn check_commands(lab: &Lab, app_pid: u32, boot: u32) {
    lab.exec_ok(&["s6-svok", "/run/service/svc-app"]);
    let svstat = lab.exec_ok(&["s6-svstat", "/run/service/svc-app"]);
    assert!(
        svstat.starts_with("up") && svstat.contains(&app_pid.to_string()),
        "s6-svstat /run/service/svc-app: {svstat:?} (app pid {app_pid})"
    );
    let list = lab.exec_ok(&["s6-rc", "-a", "list"]);
    for name in ["svc-app", "init-adduser", "init-boot-done"] {
        assert!(
            list.lines().any(|l| l.trim() == name),
            "s6-rc -a list lacks {name}:\n{list}"
        );
    }
    let boots = lab.exec_ok(&["printcontenv", "BOOT_COUNT"]);
    assert_eq!(
        boots.trim(),
        boot.to_string(),
        "printcontenv BOOT_COUNT: what init-runtime-env wrote into the container environment"
    );
    lab.exec_ok(&["test", "-x", "/run/s6/basedir/bin/halt"]);
}

/// The image is the variant it claims, and the commands resolve where
/// they must. `links`: no s6 or execline program, every command a link to
/// corral. `s6pkg`: Debian's s6 and execline; the standalone commands
/// (`s6-setuidgid`) are Debian's, those that talk to a supervisor
/// corral's, through `/run/s6/basedir/bin` first on `PATH`: in `docker
/// exec` (the image's `PATH`) and in every service (corral's). Says where
/// each resolved.
fn check_variant(lab: &Lab, variant: Variant) -> String {
    const CORRAL: &str = "/usr/local/bin/corral";
    let resolve = |cmd: &str| {
        let ran = lab.exec(&[
            "sh",
            "-c",
            &format!("p=$(command -v {cmd}) && echo \"$p $(readlink -f \"$p\")\""),
        ]);
        let out = ran.stdout.trim().to_string();
        match out.split_once(' ') {
            Some((at, target)) if ran.code == 0 => Some((at.to_string(), target.to_string())),
            _ => None,
        }
    };
    let mut seen = Vec::new();
    let mut expect = |cmd: &str, at: Option<&str>, target: &str| {
        let (found, resolved) = resolve(cmd).unwrap_or_else(|| panic!("{cmd} is not on PATH"));
        assert!(
            at.is_none_or(|at| found == at) && resolved == target,
            "{cmd} is {found} -> {resolved}, not {} -> {target}",
            at.unwrap_or("anywhere")
        );
        seen.push(format!("{cmd} = {found}"));
    };
    let s6_installed = lab.exec(&["test", "-x", "/usr/bin/s6-supervise"]).code == 0;
    let execline = resolve("execlineb");
    match variant {
        Variant::Links => {
            for cmd in [
                "with-contenv",
                "s6-svc",
                "s6-svstat",
                "s6-setuidgid",
                "s6-notifyoncheck",
                "printcontenv",
            ] {
                expect(cmd, None, CORRAL);
            }
            assert!(
                !s6_installed && execline.is_none(),
                "the links image holds s6 or execline programs ({execline:?})"
            );
        }
        Variant::S6Pkg => {
            assert!(
                s6_installed && execline.is_some(),
                "the s6pkg image lacks Debian's s6 or execline"
            );
            for cmd in ["s6-svc", "s6-svstat", "s6-svok", "s6-svwait", "s6-rc"] {
                let at = format!("/run/s6/basedir/bin/{cmd}");
                expect(cmd, Some(&at), CORRAL);
            }
            expect("with-contenv", Some("/usr/bin/with-contenv"), CORRAL);
            expect(
                "s6-setuidgid",
                Some("/usr/bin/s6-setuidgid"),
                "/usr/bin/s6-setuidgid",
            );
        }
    }
    // Every service finds corral's supervisor commands first: svc-hooked's
    // (it runs as root: docker exec cannot read the environment of abc's
    // app without CAP_SYS_PTRACE).
    let hooked = lab
        .status()
        .into_iter()
        .find(|s| s["name"] == "svc-hooked")
        .and_then(|s| s["pid"].as_u64())
        .unwrap_or_else(|| panic!("svc-hooked has no pid in ctl status"));
    let environ = lab.exec_ok(&["cat", &format!("/proc/{hooked}/environ")]);
    let path = environ
        .split('\0')
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or_default()
        .to_string();
    assert!(
        path.starts_with("/run/s6/basedir/bin:"),
        "svc-hooked's PATH does not start with /run/s6/basedir/bin: {path:?}"
    );
    format!(
        "commands: {}; a service's PATH: {path}; execlineb: {}",
        seen.join(", "),
        execline.map_or("none".to_string(), |(at, _)| at)
    )
}

/// After a stop of boot `n`: the oneshot's down ran once, after the app
/// was down; the worker got the last SIGTERM as an orphan, after the down
/// scripts, and wrote its clean-shutdown line.
fn check_shutdown(lab: &Lab, boot: &Boot, n: usize, how: &str) {
    assert_eq!(
        boot.count("down init-app-state app-port=closed"),
        1,
        "{how}: init-app-state's down did not run once after the app stopped:\n{}\n{}",
        boot.text(),
        lab.logs_tail()
    );
    let down_at = boot.ms("down init-app-state");
    let log = lab
        .copy_out("/config/worker/shutdown.log")
        .unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines.len(),
        n,
        "{how}: the worker's clean-shutdown log has {} lines, not {n}:\n{log}\n{}",
        lines.len(),
        lab.logs_tail()
    );
    let last = lines.last().copied().unwrap_or_default();
    let words: Vec<&str> = last.split_whitespace().collect();
    assert!(
        words.get(1) == Some(&"clean") && words.contains(&"ppid=1"),
        "{how}: the worker did not shut down cleanly as an orphan reached by the last SIGTERM: {last:?}"
    );
    let at: u64 = words.first().and_then(|w| w.parse().ok()).unwrap_or(0);
    assert!(
        at >= down_at,
        "{how}: the worker was stopped ({at}) before the oneshots' down ({down_at}): \
         not by the last SIGTERM"
    );
}

/// No zombie in the container. A process that has just exited is a zombie
/// until corral reaps it, a moment later: only one that stays (5 s) fails.
fn assert_zombies(lab: &Lab, when: &str) {
    let zombies = || {
        let table = lab.exec_ok(&["ps", "-eo", "pid,ppid,stat,user,cmd"]);
        let found: Vec<&str> = table
            .lines()
            .skip(1)
            .filter(|l| {
                l.split_whitespace()
                    .nth(2)
                    .is_some_and(|s| s.starts_with('Z'))
            })
            .collect();
        if found.is_empty() {
            Ok(())
        } else {
            Err(format!("{found:?}\n{table}"))
        }
    };
    wait_until(
        &format!("no zombie in the container {when}"),
        Duration::from_secs(5),
        zombies,
    );
}

// ---------------------------------------------------------------------------
// The app

#[derive(Debug, Clone)]
struct AppAnswer {
    pid: u32,
    uid: u32,
    gid: u32,
    boot: String,
    secret_sha256: Option<String>,
}

fn ask_app(app: SocketAddr) -> Result<AppAnswer, String> {
    let (code, body) = http_get_at(app, "/")?;
    if code != 200 {
        return Err(format!("HTTP {code}: {body}"));
    }
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| format!("{e}: {body:?}"))?;
    let number = |key: &str| {
        v[key]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("no {key} in {body:?}"))
    };
    Ok(AppAnswer {
        pid: number("pid")?,
        uid: number("uid")?,
        gid: number("gid")?,
        boot: v["boot"].as_str().unwrap_or_default().to_string(),
        secret_sha256: v["secret_sha256"].as_str().map(String::from),
    })
}

/// Ask the app until an answer satisfies `want` (failing at once if the
/// container has exited).
fn wait_app(lab: &Lab, app: &SocketAddr, want: impl Fn(&AppAnswer) -> bool) -> AppAnswer {
    wait_until(
        &format!("the app to answer on {app}"),
        BOOT_TIMEOUT,
        || match ask_app(*app) {
            Ok(a) if want(&a) => Ok(a),
            Ok(a) => Err(format!("answered {a:?}")),
            Err(e) => {
                lab.assert_running("the app to answer");
                Err(e)
            }
        },
    )
}

/// Wait until boot `n`'s trace has its user2 oneshot's line (the last step).
fn wait_booted(lab: &Lab, n: usize) -> Trace {
    wait_until(
        &format!("boot {n} to reach its user2 oneshot"),
        BOOT_TIMEOUT,
        || {
            lab.assert_running(&format!("boot {n} to reach its user2 oneshot"));
            let trace = lab.trace();
            if trace.boots() >= n && trace.boot(n).count("mark init-boot-done") >= 1 {
                Ok(trace)
            } else {
                Err(trace.text.clone())
            }
        },
    )
}

// ---------------------------------------------------------------------------
// The trace: `/config/trace.log`, "EPOCH_MS EVENT NAME DETAIL..." lines

#[derive(Clone, Debug)]
struct TraceLine {
    ms: u64,
    /// Everything after the time.
    text: String,
}

struct Trace {
    text: String,
    lines: Vec<TraceLine>,
}

impl Trace {
    fn parse(text: &str) -> Trace {
        let lines = text
            .lines()
            .filter_map(|l| {
                let (ms, rest) = l.split_once(' ')?;
                Some(TraceLine {
                    ms: ms.parse().ok()?,
                    text: rest.to_string(),
                })
            })
            .collect();
        Trace {
            text: text.to_string(),
            lines,
        }
    }

    /// How many boots began (each begins with the stage 2 hook's line).
    fn boots(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.text == "hook stage2")
            .count()
    }

    /// The lines of boot `n` (1-based): from its hook's line to the next's,
    /// its shutdown's lines included.
    fn boot(&self, n: usize) -> Boot {
        let mut seen = 0;
        let lines = self
            .lines
            .iter()
            .filter(|l| {
                if l.text == "hook stage2" {
                    seen += 1;
                }
                seen == n
            })
            .cloned()
            .collect();
        Boot { lines }
    }
}

struct Boot {
    lines: Vec<TraceLine>,
}

impl Boot {
    fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| format!("{} {}", l.ms, l.text))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Lines that are `prefix` or start with `prefix` and a space.
    fn matching<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a TraceLine> + 'a {
        self.lines.iter().filter(move |l| {
            l.text == prefix
                || l.text
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with(' '))
        })
    }

    /// How two steps with no order between them ran: each one's start
    /// and end relative to the first start, and whether they overlapped.
    fn side_by_side(&self, a: &str, b: &str) -> String {
        let span = |name: &str| Some((self.begin(name)?, self.end(name)?));
        let (Some((a0, a1)), Some((b0, b1))) = (span(a), span(b)) else {
            return format!("{a} / {b}: not both traced");
        };
        let zero = a0.min(b0);
        format!(
            "{a} {}-{} ms, {b} {}-{} ms ({})",
            a0.saturating_sub(zero),
            a1.saturating_sub(zero),
            b0.saturating_sub(zero),
            b1.saturating_sub(zero),
            if a0 < b1 && b0 < a1 {
                "overlapping"
            } else {
                "one after the other"
            }
        )
    }

    fn count(&self, prefix: &str) -> usize {
        self.matching(prefix).count()
    }

    fn count_event(&self, event: &str, name: &str) -> usize {
        self.count(&format!("{event} {name}"))
    }

    /// The time of the first line matching `prefix`.
    fn ms(&self, prefix: &str) -> u64 {
        self.matching(prefix)
            .next()
            .map(|l| l.ms)
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{}", self.text()))
    }

    fn first(&self, prefix: &str) -> Option<u64> {
        self.matching(prefix).next().map(|l| l.ms)
    }

    /// Whether `name` wrote any line of its own.
    fn traces(&self, name: &str) -> bool {
        self.begin(name).is_some() || self.end(name).is_some()
    }

    /// When `name` began (its first run: begin or mark).
    fn begin(&self, name: &str) -> Option<u64> {
        self.first(&format!("begin {name}"))
            .or_else(|| self.first(&format!("mark {name}")))
    }

    /// When `name` (a oneshot) ended.
    fn end(&self, name: &str) -> Option<u64> {
        self.first(&format!("end {name}"))
            .or_else(|| self.first(&format!("mark {name}")))
    }

    /// The end of the init chain: the last oneshot's end or mark.
    fn chain_end(&self) -> u64 {
        self.last_oneshot_line().map(|l| l.ms).unwrap_or(0)
    }

    fn last_oneshot(&self) -> String {
        self.last_oneshot_line()
            .map(|l| l.text.clone())
            .unwrap_or_default()
    }

    fn last_oneshot_line(&self) -> Option<&TraceLine> {
        self.lines
            .iter()
            .filter(|l| l.text.starts_with("end ") || l.text.starts_with("mark "))
            .max_by_key(|l| l.ms)
    }
}

// ---------------------------------------------------------------------------
// The tree, as files: the example's source, or the container's live copy

/// `examples/s6-v3`'s two layers, in the order the Dockerfile copies them.
fn example_roots() -> Vec<PathBuf> {
    ["base", "app"]
        .iter()
        .map(|layer| {
            repo()
                .join("examples/s6-v3")
                .join(layer)
                .join("etc/s6-overlay/s6-rc.d")
        })
        .collect()
}

#[derive(Debug, Default)]
struct Def {
    /// The `type` file's word; `None`: no type file.
    kind: Option<String>,
    deps: BTreeSet<String>,
    contents: BTreeSet<String>,
    /// Its other files by name (`up`, `run`, `notification-fd`, ...), the
    /// later layer's winning.
    files: BTreeMap<String, PathBuf>,
}

impl Def {
    fn file(&self, name: &str) -> String {
        self.files
            .get(name)
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }
}

struct Tree {
    services: BTreeMap<String, Def>,
}

impl Tree {
    /// The service directories of each root, merged as layers of an image
    /// are: a later root adds files to a directory an earlier one made.
    fn read(roots: &[PathBuf]) -> Tree {
        let mut services: BTreeMap<String, Def> = BTreeMap::new();
        for root in roots {
            let mut entries: Vec<_> = fs::read_dir(root)
                .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
                .flatten()
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let name = entry.file_name().to_string_lossy().into_owned();
                let dir = entry.path();
                if !dir.is_dir() || name.starts_with('.') {
                    continue;
                }
                let def = services.entry(name).or_default();
                for file in fs::read_dir(&dir).unwrap().flatten() {
                    let file_name = file.file_name().to_string_lossy().into_owned();
                    let path = file.path();
                    match file_name.as_str() {
                        "type" => {
                            def.kind = Some(fs::read_to_string(&path).unwrap().trim().to_string())
                        }
                        "dependencies.d" => def.deps.extend(names_in(&path)),
                        "contents.d" => def.contents.extend(names_in(&path)),
                        "dependencies" | "contents" => {
                            let words: Vec<String> = fs::read_to_string(&path)
                                .unwrap()
                                .split_whitespace()
                                .map(String::from)
                                .collect();
                            if file_name == "dependencies" {
                                def.deps.extend(words);
                            } else {
                                def.contents.extend(words);
                            }
                        }
                        _ => {
                            def.files.insert(file_name, path);
                        }
                    }
                }
            }
        }
        Tree { services }
    }

    fn get(&self, name: &str) -> &Def {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("no service {name} in the tree"))
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = String> + 'a {
        self.services
            .iter()
            .filter(move |(_, d)| d.kind.as_deref() == Some(kind))
            .map(|(n, _)| n.clone())
    }

    fn oneshots(&self) -> impl Iterator<Item = String> + '_ {
        self.of_kind("oneshot")
    }

    fn longruns(&self) -> impl Iterator<Item = String> + '_ {
        self.of_kind("longrun")
    }

    /// Oneshots and longruns.
    fn runnable(&self) -> Vec<String> {
        self.oneshots().chain(self.longruns()).collect()
    }

    /// Everything `name` needs started first: its dependencies, theirs, and
    /// the contents of bundles among them (a bundle's own name excluded).
    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<String> = match self.services.get(name) {
            Some(def) if def.kind.as_deref() == Some("bundle") || def.kind.is_none() => {
                def.contents.iter().cloned().collect()
            }
            Some(def) => def.deps.iter().cloned().collect(),
            None => Vec::new(),
        };
        while let Some(next) = todo.pop() {
            if !out.insert(next.clone()) {
                continue;
            }
            if let Some(def) = self.services.get(&next) {
                todo.extend(def.deps.iter().cloned());
                todo.extend(def.contents.iter().cloned());
            }
        }
        out.retain(|n| {
            n != name
                && self
                    .services
                    .get(n)
                    .is_some_and(|d| matches!(d.kind.as_deref(), Some("oneshot" | "longrun")))
        });
        out
    }

    /// A oneshot's `up` when it is one absolute path to a script in the
    /// tree: that script.
    fn up_script(&self, name: &str) -> Option<PathBuf> {
        let up = self.get(name).file("up");
        let mut lines = up.lines().filter(|l| !l.trim().is_empty());
        let line = lines.next()?.trim();
        if lines.next().is_some() || !line.starts_with('/') || line.contains(' ') {
            return None;
        }
        let rest = line.strip_prefix("/etc/s6-overlay/s6-rc.d/")?;
        let (svc, file) = rest.split_once('/')?;
        self.services.get(svc)?.files.get(file).cloned()
    }

    /// Every script of the tree: each file that starts with `#!`.
    fn scripts(&self) -> Vec<PathBuf> {
        self.services
            .values()
            .flat_map(|def| def.files.values())
            .filter(|path| fs::read_to_string(path).is_ok_and(|text| text.starts_with("#!")))
            .cloned()
            .collect()
    }

    /// The longest chain of oneshots, each depending on the previous one.
    fn longest_oneshot_chain(&self) -> Vec<String> {
        fn longest(tree: &Tree, name: &str, depth: usize) -> Vec<String> {
            let mut best = Vec::new();
            if depth > tree.services.len() {
                return best;
            }
            for dep in &tree.get(name).deps {
                if tree.services.get(dep).and_then(|d| d.kind.as_deref()) == Some("oneshot") {
                    let chain = longest(tree, dep, depth + 1);
                    if chain.len() > best.len() {
                        best = chain;
                    }
                }
            }
            best.push(name.to_string());
            best
        }
        self.oneshots()
            .map(|name| longest(self, &name, 0))
            .max_by_key(Vec::len)
            .unwrap_or_default()
    }

    /// What is wrong with the tree, one line each.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let known = |n: &str| self.services.contains_key(n) || PSEUDO.contains(&n);
        for (name, def) in &self.services {
            match def.kind.as_deref() {
                None if name == "user" || name == "user2" => {}
                None => out.push(format!("{name}: no type file")),
                Some("oneshot") => {
                    let up = def.file("up");
                    let commands: Vec<&str> = up
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .collect();
                    if !def.files.contains_key("up") {
                        out.push(format!("{name}: a oneshot without up"));
                    } else if commands.len() > 1 {
                        out.push(format!("{name}: up is more than one command line: {up:?}"));
                    } else if let Some(line) = commands.first()
                        && line.starts_with("/etc/")
                        && self.up_script(name).is_none()
                    {
                        out.push(format!("{name}: up names no script of the tree: {line}"));
                    }
                    if let Some(script) = self.up_script(name) {
                        check_script(&mut out, name, &script);
                    }
                    if def.files.contains_key("down") {
                        let down = def.file("down");
                        let path = down.trim();
                        let target = path
                            .strip_prefix("/etc/s6-overlay/s6-rc.d/")
                            .and_then(|rest| rest.split_once('/'))
                            .and_then(|(svc, file)| self.services.get(svc)?.files.get(file));
                        match target {
                            Some(script) => check_script(&mut out, name, script),
                            None => out.push(format!("{name}: down names no script: {down:?}")),
                        }
                    }
                }
                Some("longrun") => match def.files.get("run") {
                    Some(run) => check_script(&mut out, name, run),
                    None => out.push(format!("{name}: a longrun without run")),
                },
                Some("bundle") => {}
                Some(other) => out.push(format!("{name}: unknown type {other:?}")),
            }
            for dep in &def.deps {
                if !known(dep) {
                    out.push(format!(
                        "{name}: depends on {dep}, which is not in the tree"
                    ));
                }
            }
            for item in &def.contents {
                if !known(item) {
                    out.push(format!("{name}: contains {item}, which is not in the tree"));
                }
            }
        }
        // No cycle: every runnable service's closure leaves it out.
        for (name, def) in &self.services {
            if def.kind.is_none() || def.kind.as_deref() == Some("bundle") {
                continue;
            }
            let mut seen = BTreeSet::new();
            let mut todo: Vec<String> = def.deps.iter().cloned().collect();
            while let Some(next) = todo.pop() {
                if next == *name {
                    out.push(format!("{name}: in a dependency cycle"));
                    break;
                }
                if seen.insert(next.clone())
                    && let Some(d) = self.services.get(&next)
                {
                    todo.extend(d.deps.iter().cloned());
                    todo.extend(d.contents.iter().cloned());
                }
            }
        }
        out
    }
}

/// A script of the tree must be executable and start with a shebang.
fn check_script(out: &mut Vec<String>, name: &str, script: &Path) {
    let mode = fs::metadata(script)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o111 == 0 {
        out.push(format!("{name}: {} is not executable", script.display()));
    }
    let text = fs::read_to_string(script).unwrap_or_default();
    if !text.starts_with("#!/usr/bin/with-contenv bash\n") {
        out.push(format!(
            "{name}: {} does not start with #!/usr/bin/with-contenv bash",
            script.display()
        ));
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// `cp -a SRC/. DST/` (merging into DST).
fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    let ran = run_within(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.display()))
            .arg(dst),
        Duration::from_secs(30),
    );
    assert_eq!(ran.code, 0, "cp -a {}: {ran:?}", src.display());
}

/// `corral check`'s plan: each service's start step ("  3.  name  ...",
/// then "      other  ..." for the others of the same step).
fn plan_levels(plan: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut step = 0;
    for line in plan.lines().skip(1) {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let name = match first.strip_suffix('.').map(str::parse::<usize>) {
            Some(Ok(n)) => {
                step = n;
                words.next()
            }
            _ => Some(first),
        };
        if let Some(name) = name
            && step > 0
        {
            out.insert(name.to_string(), step);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Docker

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn label() -> String {
    format!("{LABEL}={}", std::process::id())
}

/// One image and its one container. `Drop` removes both (printing the
/// container's output first when the test fails), and the build context.
struct Lab {
    image: String,
    container: String,
    scratch: TestDir,
    made_container: bool,
}

impl Lab {
    /// `docker build` of the variant's target from a context made of the
    /// example and a release corral.
    fn build(variant: Variant) -> Lab {
        let status = run_within(
            Command::new("bash")
                .arg(repo().join("docker/build-base.sh"))
                .current_dir(repo()),
            Duration::from_secs(1200),
        );
        assert_eq!(status.code, 0, "docker/build-base.sh failed: {status:?}");
        let binary = corral_release();
        sweep_dead(LABEL, &[Leftover::Containers, Leftover::Images]);
        let pid = std::process::id();
        let lab = Lab {
            image: format!("corral-s6v3-{pid}:{}", variant.name()),
            container: format!("corral-s6v3-{pid}-{}", variant.name()),
            scratch: TestDir::new(&format!("s6v3-{}", variant.name())),
            made_container: false,
        };
        let context = lab.scratch.join("context");
        copy_tree(&repo().join("examples/s6-v3"), &context);
        fs::copy(&binary, context.join("corral")).unwrap();
        let built = run_within(
            Command::new("docker")
                .args(["build", "-q", "--force-rm", "--target", variant.name()])
                .args(["--label", &label()])
                .args(["-t", &lab.image])
                .arg(&context),
            Duration::from_secs(900),
        );
        assert_eq!(
            built.code,
            0,
            "docker build --target {} failed:\n{}{}",
            variant.name(),
            built.stdout,
            built.stderr
        );
        lab
    }

    /// `docker run -d`: the app's port published on 127.0.0.1 only.
    fn run(&mut self) {
        self.made_container = true;
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &self.container,
            "--label",
            &label(),
            "-p",
            "127.0.0.1::8080",
            "-e",
            &format!("PUID={PUID}"),
            "-e",
            &format!("PGID={PGID}"),
            "-e",
            "FILE__APP_SECRET=/secrets/app-secret",
            &self.image,
        ]);
    }

    fn start(&mut self) {
        docker_ok(&["start", &self.container]);
    }

    /// `docker stop` (grace period 10 s): how long it took; the container
    /// must have exited 0 within the grace period.
    fn stop(&mut self) -> Duration {
        let at = Instant::now();
        docker_ok(&[
            "stop",
            "-t",
            &STOP_GRACE.as_secs().to_string(),
            &self.container,
        ]);
        let took = at.elapsed();
        let code = self.exit_code();
        assert!(
            took < STOP_GRACE && code == 0,
            "docker stop took {took:?} (grace {STOP_GRACE:?}), exit code {code}\n{}",
            self.logs_tail()
        );
        took
    }

    /// `docker kill -s TERM`: how long until the container had exited; it
    /// must have, with code 0, within `docker stop`'s grace period.
    fn kill_term(&mut self) -> Duration {
        let at = Instant::now();
        docker_ok(&["kill", "-s", "TERM", &self.container]);
        let code = wait_until(
            "the container to exit after SIGTERM",
            DOCKER_TIMEOUT,
            || {
                let state = self.inspect("{{.State.Status}} {{.State.ExitCode}}");
                match state.split_once(' ') {
                    Some(("exited", code)) => code.parse::<i32>().map_err(|e| e.to_string()),
                    _ => Err(state),
                }
            },
        );
        let took = at.elapsed();
        assert!(
            took < STOP_GRACE && code == 0,
            "docker kill -s TERM: exited after {took:?}, exit code {code}\n{}",
            self.logs_tail()
        );
        took
    }

    /// Fails the test at once, with the container's output, when it is no
    /// longer running: whatever was awaited will not come.
    fn assert_running(&self, awaited: &str) {
        let state = self.inspect("{{.State.Status}} {{.State.ExitCode}}");
        if !state.starts_with("running") {
            panic!(
                "the container is not running ({state}) while waiting for {awaited}\n{}",
                self.logs_tail()
            );
        }
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.container])
            .stdout
            .trim()
            .to_string()
    }

    fn exit_code(&self) -> i32 {
        let code = self.inspect("{{.State.ExitCode}}");
        code.parse()
            .unwrap_or_else(|_| panic!("exit code of {}: {code:?}", self.container))
    }

    /// The host address (127.0.0.1) of the app's published port; it
    /// changes with each `docker start`.
    fn app_endpoint(&self) -> SocketAddr {
        let out = docker_ok(&["port", &self.container, "8080/tcp"]);
        let port: u16 = out
            .lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no 127.0.0.1 port for 8080 in {out:?}"));
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn exec(&self, cmd: &[&str]) -> Ran {
        let mut args = vec!["exec", self.container.as_str()];
        args.extend_from_slice(cmd);
        docker(&args)
    }

    fn exec_ok(&self, cmd: &[&str]) -> String {
        let ran = self.exec(cmd);
        assert_eq!(
            ran.code,
            0,
            "docker exec {cmd:?}: {ran:?}\n{}",
            self.logs_tail()
        );
        ran.stdout
    }

    fn trace(&self) -> Trace {
        Trace::parse(&self.exec(&["cat", "/config/trace.log"]).stdout)
    }

    /// The trace of a stopped container.
    fn trace_stopped(&self) -> Trace {
        Trace::parse(&self.copy_out("/config/trace.log").unwrap_or_default())
    }

    /// A file of the container (running or not), through `docker cp`.
    fn copy_out(&self, path: &str) -> Option<String> {
        let name = path.trim_start_matches('/').replace('/', "_");
        let dest = self.scratch.join(&name);
        let _ = fs::remove_file(&dest);
        let ran = docker(&[
            "cp",
            &format!("{}:{path}", self.container),
            &dest.to_string_lossy(),
        ]);
        if ran.code != 0 {
            return None;
        }
        fs::read_to_string(&dest).ok()
    }

    /// The running container's tree, after its stage 2 hook.
    fn live_tree(&self) -> Tree {
        let dest = self.scratch.join("live-tree");
        let _ = fs::remove_dir_all(&dest);
        docker_ok(&[
            "cp",
            &format!("{}:/etc/s6-overlay/s6-rc.d", self.container),
            &dest.to_string_lossy(),
        ]);
        Tree::read(&[dest])
    }

    fn status(&self) -> Vec<serde_json::Value> {
        let out = self.exec_ok(&["corral", "ctl", "status", "--json"]);
        match serde_json::from_str(&out) {
            Ok(serde_json::Value::Array(services)) => services,
            other => panic!("ctl status --json: not a JSON array: {other:?}\n{out}"),
        }
    }

    fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_until(what, BOOT_TIMEOUT, || {
            let ran = self.exec(&["corral", "ctl", "status", "--json"]);
            let services: Vec<serde_json::Value> =
                serde_json::from_str(&ran.stdout).map_err(|e| format!("{e}: {ran:?}"))?;
            services
                .into_iter()
                .find(|s| pred(s))
                .ok_or_else(|| ran.stdout.clone())
        })
    }

    fn logs_tail(&self) -> String {
        let ran = docker(&["logs", "--tail", "120", &self.container]);
        format!(
            "--- last lines of {}:\n{}{}",
            self.container, ran.stdout, ran.stderr
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.made_container {
            if thread::panicking() {
                say(&self.logs_tail());
            }
            let _ = docker(&["rm", "-f", "-v", &self.container]);
        }
        let _ = docker(&["rmi", "-f", &self.image]);
        // The build's intermediate images (the other target's included).
        let _ = docker(&[
            "image",
            "prune",
            "-f",
            "--filter",
            "label=org.corral.dockerfile=s6-v3",
        ]);
    }
}

// ---------------------------------------------------------------------------
// Figures

/// Written straight to stderr, not through `eprintln!`: the test harness
/// captures the print macros of passing tests, and these are for everyone.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "docker_s6v3: {text}");
}

struct Figures {
    variant: Variant,
    lines: Vec<String>,
}

impl Figures {
    fn new(variant: Variant) -> Figures {
        Figures {
            variant,
            lines: Vec::new(),
        }
    }

    fn line(&mut self, text: String) {
        say(&format!("[{}] {text}", self.variant.name()));
        self.lines.push(text);
    }

    fn publish(&self) {
        let path = repo()
            .join("target")
            .join(format!("docker-s6v3-{}.txt", self.variant.name()));
        let _ = fs::write(&path, self.lines.join("\n") + "\n");
        say(&format!("figures written to {}", path.display()));
    }
}
