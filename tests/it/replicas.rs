//! `replicas` and `ctl scale` (SPEC section 11) against the real binary as
//! PID 1: the instances' processes and environment (read from /proc),
//! `{replica}`, scaling up and down, `ctl stop` of one instance or all,
//! a dependant waiting for every replica, per-instance logs and metrics;
//! then the errors of a service file with `replicas` and `corral check`.

use std::path::Path;

use crate::common::*;
use corral::config::parse_service;

/// The instances' names and pids (in corral's namespace), running ones only.
fn up(c: &Corral) -> Vec<(String, i64)> {
    c.ctl_status()
        .into_iter()
        .filter(|s| s["state"] == "running")
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["pid"].as_i64()?)))
        .collect()
}

fn alive(pid: i32) -> bool {
    running(pid) && !zombie(pid)
}

/// `KEY=value` of a process's environment (/proc/PID/environ).
fn environ(pid: i32, key: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|&b| b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{key}=")).map(str::to_string)
    })
}

/// Waits until exactly `names` run, and checks each one's process: alive,
/// with its `CORRAL_REPLICA` and the `CORRAL_REPLICAS` it started with.
fn expect_instances(c: &mut Corral, names: &[(&str, &str)]) -> Vec<i32> {
    let want: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
    let found = c.wait_for(&format!("exactly {want:?} running"), |c| {
        let now = up(c);
        let names: Vec<&str> = now.iter().map(|(n, _)| n.as_str()).collect();
        if names == want {
            Ok(now)
        } else {
            Err(format!("running: {names:?}"))
        }
    });
    let mut pids = Vec::new();
    for ((name, pid), (_, replicas)) in found.iter().zip(names) {
        let host = c
            .host_pid(i32::try_from(*pid).expect("a pid"))
            .unwrap_or_else(|| panic!("{name}: no process {pid}"));
        let index = name.rsplit('.').next().unwrap_or("");
        assert_eq!(environ(host, "CORRAL_REPLICA").as_deref(), Some(index));
        assert_eq!(
            environ(host, "CORRAL_REPLICAS").as_deref(),
            Some(*replicas),
            "{name}"
        );
        assert_eq!(environ(host, "PORT"), Some(format!("80{index}")), "{name}");
        pids.push(host);
    }
    pids
}

#[test]
fn scale_from_3_to_5_to_1_as_pid1_leaves_exactly_the_right_processes() {
    let dir = TestDir::new("replicas-scale");
    dir.service(
        "web",
        r#"
replicas = 3
env = { PORT = "80{replica}" }
command = '''echo "replica {replica} of $CORRAL_REPLICAS on $PORT"; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().ctl_socket().pid1().start();
    c.wait_socket();
    let first = expect_instances(&mut c, &[("web.1", "3"), ("web.2", "3"), ("web.3", "3")]);
    c.wait_for("each instance's line, {replica} replaced", |c| {
        let out = c.stdout();
        let all = (1..=3).all(|i| out.contains(&format!("web.{i} | replica {i} of 3 on 80{i}")));
        if all { Ok(()) } else { Err(out) }
    });

    let up = c.ctl(&["scale", "web", "5"]);
    assert_eq!(up.code, 0, "{up:?}");
    assert_eq!(up.stdout.trim(), "web: 5 replicas (was 3)");
    let five = expect_instances(
        &mut c,
        &[
            ("web.1", "3"),
            ("web.2", "3"),
            ("web.3", "3"),
            ("web.4", "5"),
            ("web.5", "5"),
        ],
    );
    assert_eq!(five[..3], first[..], "the first three run on, untouched");

    let down = c.ctl(&["scale", "web", "1"]);
    assert_eq!(down.code, 0, "{down:?}");
    let one = expect_instances(&mut c, &[("web.1", "3")]);
    assert_eq!(one, first[..1]);
    c.wait_for("web.2 to web.5 gone", |_| {
        let alive: Vec<i32> = five[1..].iter().copied().filter(|&p| alive(p)).collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("{alive:?}"))
        }
    });
    let stops = c.stderr();
    let order: Vec<usize> = (2..=5)
        .map(|i| {
            stops
                .find(&format!("stopping service service=web.{i} "))
                .unwrap_or_else(|| panic!("web.{i} stopped: {stops}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] > w[1]),
        "the highest stopped first: {stops}"
    );

    let plain = c.ctl(&["scale", "nope", "2"]);
    assert_eq!(plain.code, 1);
    assert!(plain.stderr.contains("no service \"nope\""), "{plain:?}");
    assert_eq!(c.stop(), 0);
}

#[test]
fn ctl_stop_acts_on_one_instance_or_all_and_logs_and_metrics_are_per_instance() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = TestDir::new("replicas-stop");
    dir.service(
        "web",
        r#"
replicas = 3
env = { PORT = "80{replica}" }
command = '''echo "hello from {replica}"; exec sleep 1000'''
"#,
    );
    let mut c = dir
        .corral()
        .ctl_socket()
        .args(["--http", &addr])
        .pid1()
        .start();
    c.wait_socket();
    let pids = expect_instances(&mut c, &[("web.1", "3"), ("web.2", "3"), ("web.3", "3")]);

    let logs = c.wait_for("web.2's own line in its logs", |c| {
        let ran = c.ctl(&["logs", "web.2"]);
        if ran.stdout.contains("hello from 2") {
            Ok(ran)
        } else {
            Err(format!("{ran:?}"))
        }
    });
    assert!(!logs.stdout.contains("hello from 1") && !logs.stdout.contains("hello from 3"));
    let merged = c.ctl(&["logs", "web"]);
    assert_eq!(merged.code, 1);
    assert!(
        merged.stderr.contains("web names 3 services: name one"),
        "{merged:?}"
    );

    let (code, page) = http_get(port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    for i in 1..=3 {
        assert!(page.contains(&format!("service=\"web.{i}\"")), "{page}");
    }

    let one = c.ctl(&["stop", "web.2"]);
    assert_eq!(one.code, 0, "{one:?}");
    expect_instances(&mut c, &[("web.1", "3"), ("web.3", "3")]);
    assert!(!alive(pids[1]));
    assert_eq!(
        c.ctl_service("web.2").expect("still listed")["state"],
        "stopped"
    );

    let all = c.ctl(&["stop", "web"]);
    assert_eq!(all.code, 0, "{all:?}");
    assert!(running_names(&c).is_empty(), "{:?}", c.ctl_status());
    let again = c.ctl(&["start", "web"]);
    assert_eq!(again.code, 0, "{again:?}");
    expect_instances(&mut c, &[("web.1", "3"), ("web.2", "3"), ("web.3", "3")]);
    assert_eq!(c.stop(), 0);
}

fn running_names(c: &Corral) -> Vec<String> {
    up(c).into_iter().map(|(n, _)| n).collect()
}

#[test]
fn a_dependant_waits_for_every_replica_including_one_added_while_it_waits() {
    let dir = TestDir::new("replicas-after");
    dir.service(
        "web",
        r#"
replicas = 2
env = { PORT = "80{replica}" }
ready = { exec = ["sh", "-c", 'test -e "$T/go$CORRAL_REPLICA"'] }
command = "exec sleep 1000"
"#,
    );
    dir.service("app", &format!("after = [\"web\"]\n{}", sleeper("app")));
    let mut c = dir.corral().ctl_socket().pid1().start();
    c.wait_socket();
    dir_write(&c, "go1");
    c.wait_service("web.1", "ready", |s| s["ready"] == true);
    let up = c.ctl(&["scale", "web", "3"]);
    assert_eq!(up.code, 0, "{up:?}");
    dir_write(&c, "go2");
    c.wait_service("web.2", "ready", |s| s["ready"] == true);
    let app = c.ctl_service("app").expect("app listed");
    assert_ne!(app["state"], "running", "web.3 is not ready yet: {app}");
    assert!(!c.dir().exists("app.pids"));
    dir_write(&c, "go3");
    c.wait_pids("app.pids", 1);
    assert_eq!(c.stop(), 0);
}

fn dir_write(c: &Corral, name: &str) {
    c.dir().write(name, "");
}

/// Parses `web.toml` and expects errors: their `Display` strings.
fn errors(text: &str) -> Vec<String> {
    match parse_service(Path::new("web.toml"), text) {
        Ok(spec) => panic!("expected errors, got {spec:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn service_file_errors_name_the_key_with_its_position() {
    assert_eq!(
        errors("command = \"x\"\nreplicas = 0\n"),
        ["web.toml:2:12: `replicas`: expected an integer from 1 to 1000, found 0"]
    );
    assert_eq!(
        errors("command = \"x\"\nreplicas = -2\n"),
        ["web.toml:2:12: `replicas`: expected an integer from 1 to 1000, found -2"]
    );
    assert_eq!(
        errors("command = \"x\"\nreplicas = \"3\"\n"),
        ["web.toml:2:12: `replicas`: expected an integer from 1 to 1000, found string"]
    );
    assert_eq!(
        errors("command = \"x\"\nreplica = 3\n"),
        ["web.toml:2:1: unknown key `replica` (did you mean `replicas`?)"]
    );
    assert_eq!(
        errors("command = \"x\"\nschedule = \"@hourly\"\nreplicas = 2\n"),
        [
            "web.toml:3:1: `replicas` does not apply to a scheduled service (`schedule`): its runs never overlap; define one service per job"
        ]
    );
    assert_eq!(
        errors("command = \"x\"\nreplicas = 2\nlog-file = { path = \"/tmp/web.log\" }\n"),
        [
            "web.toml:3:21: `log-file.path` needs `{replica}` with `replicas`: each instance writes a file of its own"
        ]
    );
    // A oneshot may have replicas: N parallel runs.
    let spec = parse_service(
        Path::new("web.toml"),
        "command = \"x\"\noneshot = true\nreplicas = 2\n",
    )
    .expect("valid");
    assert_eq!(spec.replicas, Some(2));
}

#[test]
fn check_prints_the_instances_and_refuses_a_clashing_name() {
    let dir = TestDir::new("replicas-check");
    dir.service("web", "command = \"x\"\nreplicas = 3\n");
    dir.service("app", "command = \"x\"\nafter = [\"web\"]\n");
    let ok = dir.corral().check();
    assert_eq!(ok.code(), 0, "{}", ok.stderr());
    let plan = ok.stdout();
    assert!(plan.contains("1.  web.1..web.3"), "{plan}");
    assert!(plan.contains("2.  app"), "app after every instance: {plan}");

    let dir = TestDir::new("replicas-clash");
    dir.service("web", "command = \"x\"\nreplicas = 3\n");
    let clash = dir.service("web.7", "command = \"x\"\n");
    let bad = dir.corral().check();
    assert_eq!(bad.code(), 2, "{}", bad.stdout());
    assert!(
        bad.stderr().contains(&format!(
            "{}: service \"web.7\" clashes with the instances of \"web\", which has `replicas`",
            clash.display()
        )),
        "{}",
        bad.stderr()
    );
}
