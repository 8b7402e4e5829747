//! End to end, in real containers: the haproxy + serf + node example of
//! `examples/haproxy-serf/`, built by `Dockerfile.example` on the local base
//! image of `docker/build-base.sh`, with corral as PID 1 (ENTRYPOINT) of every
//! container. Once for each variant: corral's TOML service files, and the
//! same services as s6-overlay service directories.
//!
//! One `ha` container (haproxy + serf, haproxy's port published on
//! 127.0.0.1) and web containers (node + serf) on a user-defined network. A
//! client thread sends requests to 127.0.0.1 only, throughout, and records
//! each answer and the node that gave it. What must hold:
//!
//! - both webs are in rotation; a third joins by itself;
//! - `docker stop` of a web: it leaves the rotation, with zero failed
//!   requests although haproxy neither retries nor redispatches, and Docker
//!   reports exit code 0 (shutdown by a signal, no main COMMAND). The node's
//!   log shows why (corral's lines, in this order): serf is stopped first,
//!   then web's `pre-stop` hook runs and ends with success (it waits until
//!   haproxy no longer lists the node), then node gets SIGTERM;
//! - `docker kill` of a web: Docker reports 137; haproxy's health checks
//!   mark it DOWN first, and haproxy's syslog message saying so (`log
//!   /dev/log`, corral's `--syslog`) is in `docker logs` as a `syslog` line;
//!   the node is taken out once serf declares it failed. Requests sent to it
//!   meanwhile may fail (nothing retries them): counted, not asserted;
//! - `docker kill -s HUP ha`: haproxy is reloaded (same master pid, no
//!   restart) and keeps serving;
//! - no request fails outside the kill's window;
//! - the HEALTHCHECK (`corral ctl health`) turns healthy; no zombie in `ha`.
//!
//! The figures (time to first served request, time from SIGTERM to removal
//! from haproxy, the timing of the pre-stop, failed requests, zombies) are
//! printed on stderr (past the test harness's capture) and written to
//! `target/docker-e2e-LAB-VARIANT.txt`.
//!
//! Every container and network the test makes carries the label
//! `org.corral.e2e=PID` and is removed by a guard, also when the test fails;
//! ones left by a test process that no longer exists are removed at the
//! start. Images stay, for reuse.
//!
//! **Without Docker.** When `docker info` fails (or with
//! `CORRAL_E2E_LAB=netns`), the test says so and runs the same scenario on
//! "containers" made of namespaces: the same rootfs (`docker/build-base.sh
//! --rootfs`) under an overlay with what the Dockerfile adds, corral as PID 1
//! of a PID namespace (`unshare`, `docker/ns-node.sh`), each node in its own
//! network namespace on a bridge in a lab namespace, 10.213.0.0/24. The
//! client joins the lab namespace (setns) and talks to 10.213.0.2. `docker
//! stop` is SIGTERM to corral and SIGKILL after 10 s, `docker kill` SIGKILL,
//! `docker exec` nsenter, HEALTHCHECK its command, `corral ctl health`. Each
//! node has a private /dev as Docker gives (corral's `/dev/log` stays in
//! it), and corral gets the image's `ENV` (`HA_IMAGE_ENV`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{Background, Ran, http_get_at, run_within, serial, wait_child, wait_until};
use crate::docker_common::{
    DOCKER_TIMEOUT, Leftover, STOP_GRACE, build_base, build_example, corral_release, docker,
    docker_ok, docker_usable, owner_dead, repo, sweep_dead, web_servers,
};

/// How long a web node may take from its start to serving through haproxy.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// serf's failure detection (lan profile: suspicion, then `member-failed`,
/// coalesced for a second) took about 15 s here; generous bound.
const FAILED_TIMEOUT: Duration = Duration::from_secs(60);
/// The client: one request every this often ...
const CLIENT_PACE: Duration = Duration::from_millis(20);
/// ... and never more than this many, nor for longer than this.
const CLIENT_MAX_REQUESTS: usize = 50_000;
const CLIENT_MAX_TIME: Duration = Duration::from_secs(600);
/// Requests sent after a stopped node is gone that must have their answers
/// before the stop's window is judged (about half a second of requests).
const AFTER_GONE: usize = 20;
/// Label of every container and network the test makes; its value is the
/// test process's pid.
const LABEL: &str = "org.corral.e2e";
/// The `ENV` of Dockerfile.example's `ha` target, which the namespace lab
/// gives corral as Docker would: haproxy logs to `/dev/log`
/// (haproxy.cfg), where corral listens (`--syslog`).
const HA_IMAGE_ENV: &[(&str, &str)] = &[("CORRAL_SYSLOG", "/dev/log")];

#[test]
fn toml_variant_balances_joins_drains_and_reloads() {
    scenario(Variant::Toml);
}

#[test]
fn s6_variant_balances_joins_drains_and_reloads() {
    scenario(Variant::S6);
}

/// Without any container: every services dir of the example passes
/// `corral check`, with the plan the README describes (serf after haproxy on
/// `ha`; serf after web on a web node, and web's pre-stop hook).
#[test]
fn example_service_definitions_pass_corral_check() {
    let example = repo().join("examples/haproxy-serf");
    for (variant, dir) in [("toml", "etc/corral/services.d"), ("s6", "etc/services.d")] {
        for (role, first, second) in [("ha", "haproxy", "serf"), ("web", "web", "serf")] {
            let services = example.join(variant).join(role).join(dir);
            let ran = run_within(
                Command::new(crate::common::corral_bin())
                    .arg("check")
                    .arg("--services")
                    .arg(&services),
                Duration::from_secs(30),
            );
            assert_eq!(
                ran.code,
                0,
                "corral check --services {}: {ran:?}",
                services.display()
            );
            let plan = ran.stdout;
            let at = |name: &str| {
                plan.lines()
                    .position(|l| l.split_whitespace().nth(1) == Some(name))
                    .unwrap_or_else(|| {
                        panic!("{name} not in the plan of {variant}/{role}:\n{plan}")
                    })
            };
            assert!(
                at(first) < at(second),
                "{variant}/{role}: {first} must start before {second}:\n{plan}"
            );
            assert!(
                plan.contains(&format!("after {first}")),
                "{variant}/{role}: {second} is not after {first}:\n{plan}"
            );
            if role == "web" {
                assert!(
                    plan.contains("pre-stop \"/usr/local/bin/leave-haproxy"),
                    "{variant}/web: web has no pre-stop leave-haproxy:\n{plan}"
                );
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    Toml,
    S6,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Toml => "toml",
            Variant::S6 => "s6",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Ha,
    Web,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Ha => "ha",
            Role::Web => "web",
        }
    }

    /// What the image's `ENV` adds to corral's environment.
    fn image_env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Role::Ha => HA_IMAGE_ENV,
            Role::Web => &[],
        }
    }
}

// ---------------------------------------------------------------------------
// The scenario

fn scenario(variant: Variant) {
    // One scenario at a time: they time things (joins, drains) that a second
    // cluster on the same two cores would blur; and they share the images.
    let _serial = serial();

    let began = Instant::now();
    let mut lab = open_lab(variant);
    let mut figures = Figures::new(lab.kind(), variant);
    figures.line(format!(
        "{} ready after {:.1}s",
        lab.kind(),
        began.elapsed().as_secs_f64()
    ));

    // The load balancer: 503 until a web node joins.
    lab.start("ha", Role::Ha);
    let www = lab.haproxy();
    let stats = lab.stats();
    wait_until(
        "haproxy to answer (503: no web node yet)",
        JOIN_TIMEOUT,
        || http_get(&www, "/").map(|(code, _)| code),
    );

    let client = Client::start(www.clone());

    // Two web nodes join; both get requests.
    for name in ["web1", "web2"] {
        let at = Instant::now();
        lab.start(name, Role::Web);
        let first = client.wait_served_by(name, at, JOIN_TIMEOUT);
        figures.line(format!(
            "{name}: first request served through haproxy {:.2}s after its start",
            first.as_secs_f64()
        ));
    }
    let both_at = Instant::now();
    wait_until("web1 and web2 to both keep serving", JOIN_TIMEOUT, || {
        let names = client.served_since(both_at);
        if names.contains(&"web1".to_string()) && names.contains(&"web2".to_string()) {
            Ok(())
        } else {
            Err(format!("served since: {names:?}"))
        }
    });

    // HEALTHCHECK: corral ctl health.
    for name in ["ha", "web1", "web2"] {
        let since = Instant::now();
        wait_until(
            &format!("{name}'s HEALTHCHECK (corral ctl health) to pass"),
            JOIN_TIMEOUT,
            || lab.healthy(name),
        );
        figures.line(format!(
            "{name}: HEALTHCHECK healthy ({:.1}s after the wait began)",
            since.elapsed().as_secs_f64()
        ));
    }

    // A third web node joins the rotation by itself.
    let web3_at = Instant::now();
    lab.start("web3", Role::Web);
    let first3 = client.wait_served_by("web3", web3_at, JOIN_TIMEOUT);
    figures.line(format!(
        "web3: first request served through haproxy {:.2}s after its start",
        first3.as_secs_f64()
    ));

    // `docker stop web2`: corral stops serf first (it comes after web; its
    // SIGINT is a leave), then runs web's pre-stop hook, which waits until
    // haproxy has dropped the node, and only then sends node SIGTERM. With
    // neither retries nor redispatch in haproxy.cfg, no request may fail.
    let stop_at = Instant::now();
    let stop_wall = SystemTime::now();
    lab.stop_begin("web2");
    let removed_after = wait_until(
        "web2 to leave haproxy's running config",
        JOIN_TIMEOUT,
        || {
            let servers = stats_servers(&stats)?;
            if servers.iter().any(|s| s == "web2") {
                Err(format!("haproxy still lists {servers:?}"))
            } else {
                Ok(stop_at.elapsed())
            }
        },
    );
    let (web2_exit, stop_took) = lab.stop_end("web2");
    let stop_done = Instant::now();
    // Requests sent until a moment after the node is gone are the ones a bad
    // drain would have failed: the window ends once some sent after it have
    // their answers.
    client.wait_answered_since(stop_done, AFTER_GONE, JOIN_TIMEOUT);
    let stop_window = client.between(stop_at, Instant::now());
    let stop_failed = failures(&stop_window);
    figures.line(format!(
        "web2: removed from haproxy's running config {:.2}s after the stop (SIGTERM); \
         ended {:.2}s after it, exit code {web2_exit}",
        removed_after.as_secs_f64(),
        stop_took.as_secs_f64()
    ));
    // The pre-stop ran before node's SIGTERM, and after serf's stop, as
    // web2's log tells (corral's lines, the hook's and node's).
    let trace = StopTrace::read(&lab.timed_logs("web2"), stop_wall)
        .unwrap_or_else(|why| panic!("web2's stop: {why}\n{}", lab.logs_tail(&["web2"])));
    figures.line(format!("web2's stop, from its log: {trace}"));
    figures.line(format!(
        "graceful stop: {} failed requests of {} sent meanwhile",
        stop_failed.len(),
        stop_window.len()
    ));
    assert!(
        stop_failed.is_empty(),
        "requests failed during the graceful stop of web2: {stop_failed:#?}\n{}",
        lab.logs_tail(&["ha", "web2"])
    );
    assert_eq!(
        web2_exit, 0,
        "stop: corral (no main COMMAND) exits 0 on SIGTERM"
    );
    let late = client.between(stop_done, Instant::now());
    assert!(
        late.iter().all(|s| s.served_by() != Some("web2")),
        "web2 answered after it ended"
    );
    let cfg = lab.exec_ok("ha", &["cat", "/etc/haproxy/haproxy.cfg"]);
    assert!(
        !cfg.contains("server web2 "),
        "web2 still in the rendered haproxy.cfg:\n{cfg}"
    );

    // `docker kill web3`: SIGKILL to corral; serf on `ha` declares the node
    // failed, and the handler takes it out.
    let downs_before = haproxy_syslog(&lab.logs("ha"), WEB3_DOWN).len();
    let kill_at = Instant::now();
    let web3_exit = lab.kill("web3");
    assert_eq!(web3_exit, 137, "kill: 128 + SIGKILL");
    // Long before serf does, haproxy's health checks (inter 1s fall 2) mark
    // it DOWN, and haproxy says so to syslog: `log /dev/log` in haproxy.cfg,
    // where corral listens (the image's CORRAL_SYSLOG). The message must
    // reach the container's log (`docker logs`) as a line of `syslog`; the
    // copy haproxy also writes on stderr (`haproxy | [WARNING] ...`) does
    // not count.
    let (down_after, down_line) = wait_until(
        "haproxy's syslog message that web3 is DOWN in ha's log",
        FAILED_TIMEOUT,
        || {
            let logs = lab.logs("ha");
            let downs = haproxy_syslog(&logs, WEB3_DOWN);
            match downs.get(downs_before) {
                Some(line) => Ok((kill_at.elapsed(), line.to_string())),
                None => {
                    let all = haproxy_syslog(&logs, "");
                    Err(format!(
                        "{} such lines (before the kill: {downs_before}); haproxy's last syslog lines: {:?}",
                        downs.len(),
                        &all[all.len().saturating_sub(10)..]
                    ))
                }
            }
        },
    );
    figures.line(format!(
        "web3: haproxy's health checks marked it DOWN; in ha's log {:.2}s after the kill: {down_line}",
        down_after.as_secs_f64()
    ));
    let (failed_after, removed_at) = wait_until(
        "web3 to leave haproxy's running config (serf: member-failed)",
        FAILED_TIMEOUT,
        || {
            let servers = stats_servers(&stats)?;
            if servers.iter().any(|s| s == "web3") {
                Err(format!("haproxy still lists {servers:?}"))
            } else {
                Ok((kill_at.elapsed(), Instant::now()))
            }
        },
    );
    // A node that dies gets no pre-stop, and haproxy neither retries nor
    // redispatches: the requests sent to web3 until the health checks took
    // it out fail. Expected; counted, not asserted. They were all sent
    // before its removal, which ends the window.
    let kill_window = client.between(kill_at, removed_at);
    let kill_failed = failures(&kill_window);
    let down_at = kill_at + down_after;
    figures.line(format!(
        "web3: killed (exit code {web3_exit}); removed from haproxy's running config \
         {:.2}s after the kill; {} failed requests of {} meanwhile ({} sent before \
         haproxy's DOWN message; no retry, no redispatch: expected)",
        failed_after.as_secs_f64(),
        kill_failed.len(),
        kill_window.len(),
        kill_failed.iter().filter(|s| s.sent_at < down_at).count()
    ));

    // `docker kill -s HUP ha`: corral reloads every service that defines a
    // reload; haproxy's master re-execs itself and keeps its pid.
    let before = haproxy_status(lab.as_ref());
    let workers_before = haproxy_workers(lab.as_ref(), before.pid);
    let reloads_before = lab
        .logs("ha")
        .matches("reload done service=haproxy")
        .count();
    let hup_at = Instant::now();
    lab.hup("ha");
    wait_until(
        "haproxy's reload after SIGHUP to corral",
        JOIN_TIMEOUT,
        || {
            let reloads = lab
                .logs("ha")
                .matches("reload done service=haproxy")
                .count();
            let workers = haproxy_workers(lab.as_ref(), before.pid);
            if reloads > reloads_before && !workers.is_empty() && workers != workers_before {
                Ok(())
            } else {
                Err(format!(
                    "{reloads} reloads logged (before: {reloads_before}); workers {workers:?} \
                 (before: {workers_before:?})"
                ))
            }
        },
    );
    let after = haproxy_status(lab.as_ref());
    assert_eq!(
        after.pid, before.pid,
        "haproxy's master pid changed: restarted"
    );
    assert_eq!(after.restarts, before.restarts, "haproxy was restarted");
    assert_eq!(after.state, "ready", "haproxy after the reload: {after:?}");
    let status_table = lab.exec_ok("ha", &["corral", "ctl", "status"]);
    let hup_served = client.wait_served_by("web1", hup_at, JOIN_TIMEOUT);
    let hup_window = client.between(hup_at, Instant::now());
    figures.line(format!(
        "SIGHUP to ha: haproxy reloaded, master pid {} kept (workers {:?} -> {:?}), \
         still serving ({:.2}s to the next answer); {} failed requests of {}",
        after.pid,
        workers_before,
        haproxy_workers(lab.as_ref(), after.pid),
        hup_served.as_secs_f64(),
        failures(&hup_window).len(),
        hup_window.len()
    ));
    figures.line(format!(
        "ha: corral ctl status after the reload:\n{status_table}"
    ));

    // No zombie in `ha`, after all those reloads and handler runs.
    let states = lab.exec_ok("ha", &["ps", "-eo", "stat="]);
    let zombies = states
        .lines()
        .filter(|l| l.trim_start().starts_with('Z'))
        .count();
    figures.line(format!("zombies in ha: {zombies}"));
    assert_eq!(
        zombies,
        0,
        "zombies in ha:\n{}",
        lab.exec_ok("ha", &["ps", "-eo", "pid,ppid,stat,cmd"])
    );

    // Every phase but the kill must have lost nothing: joins, the graceful
    // stop, haproxy's reloads.
    let samples = client.stop();
    let joined_at = first_served_at(&samples).unwrap_or(began);
    let failed: Vec<Sample> = failures(&samples)
        .into_iter()
        .filter(|s| s.sent_at >= joined_at)
        .collect();
    let (in_kill, elsewhere): (Vec<Sample>, Vec<Sample>) = failed
        .iter()
        .cloned()
        .partition(|s| s.sent_at >= kill_at && s.sent_at < removed_at);
    figures.line(format!(
        "client: {} requests, {} failed after the first node joined (all phases): \
         {} while killed web3 was listed, {} elsewhere",
        samples.len(),
        failed.len(),
        in_kill.len(),
        elsewhere.len()
    ));
    assert!(
        elsewhere.is_empty(),
        "requests failed outside the kill of web3: {elsewhere:#?}\n{}",
        lab.logs_tail(&["ha"])
    );

    // The last ones are stopped too: exit 0 each.
    for name in ["web1", "ha"] {
        lab.stop_begin(name);
        let (code, took) = lab.stop_end(name);
        figures.line(format!(
            "{name}: stopped in {:.2}s, exit code {code}",
            took.as_secs_f64()
        ));
        assert_eq!(code, 0, "stop {name}\n{}", lab.logs_tail(&[name]));
    }
    figures.line(format!(
        "whole scenario: {:.1}s",
        began.elapsed().as_secs_f64()
    ));
    figures.publish();
}

/// The Docker lab, or, when the engine is not usable (or
/// `CORRAL_E2E_LAB=netns`), the namespace lab.
fn open_lab(variant: Variant) -> Box<dyn Lab> {
    let forced = std::env::var("CORRAL_E2E_LAB").unwrap_or_default();
    let docker = match docker_usable() {
        Ok(()) if forced != "netns" => return Box::new(DockerLab::new(variant)),
        Ok(()) => "CORRAL_E2E_LAB=netns".to_string(),
        Err(why) => why,
    };
    say(&format!(
        "[{}] not using Docker ({docker}): falling back to network and PID namespaces \
         (ip netns + unshare, 10.213.0.0/24)",
        variant.name()
    ));
    Box::new(NetnsLab::new(variant))
}

// ---------------------------------------------------------------------------
// Where the containers run

/// How the scenario reaches haproxy: an address, and the network namespace
/// it is in (`None`: this one).
#[derive(Clone, Debug)]
struct Endpoint {
    addr: SocketAddr,
    netns: Option<PathBuf>,
}

/// What the scenario does to containers, by name (`ha`, `web1`, ...).
trait Lab {
    fn kind(&self) -> &'static str;
    fn start(&mut self, name: &str, role: Role);
    /// haproxy's port 80 and its stats page (8404), as the client sees them.
    fn haproxy(&self) -> Endpoint;
    fn stats(&self) -> Endpoint;
    /// `docker stop` begins: SIGTERM to corral ...
    fn stop_begin(&mut self, name: &str);
    /// ... and ends: the exit code as Docker reports it, and how long since
    /// `stop_begin`.
    fn stop_end(&mut self, name: &str) -> (i32, Duration);
    /// `docker kill`: the exit code as Docker reports it.
    fn kill(&mut self, name: &str) -> i32;
    /// `docker kill -s HUP`.
    fn hup(&mut self, name: &str);
    /// `docker exec`.
    fn exec(&self, name: &str, cmd: &[&str]) -> Ran;
    /// Everything the container printed (corral's stdout and stderr).
    fn logs(&self, name: &str) -> String;
    /// The same lines, each with the time it was written (Docker's `docker
    /// logs --timestamps`; in the namespace lab, when the test read it), in
    /// time order; each stream (stdout, stderr) keeps its own order.
    fn timed_logs(&self, name: &str) -> Vec<(SystemTime, String)>;
    /// One look at the HEALTHCHECK.
    fn healthy(&self, name: &str) -> Result<(), String>;

    fn exec_ok(&self, name: &str, cmd: &[&str]) -> String {
        let ran = self.exec(name, cmd);
        assert_eq!(ran.code, 0, "exec {cmd:?} in {name}: {ran:?}");
        ran.stdout
    }

    fn logs_tail(&self, names: &[&str]) -> String {
        let mut text = String::new();
        for name in names {
            let logs = self.logs(name);
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            let _ = write!(text, "--- last lines of {name}\n{}\n", tail.join("\n"));
        }
        text
    }
}

/// Docker's exit code for a process that ended with `status`.
fn docker_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

// ---------------------------------------------------------------------------
// Docker

/// The containers and the network of one scenario. `Drop` removes them all
/// (`docker rm -f`, `docker network rm`, by name), also when the test fails,
/// first printing the containers' logs when it does.
struct DockerLab {
    run_id: String,
    variant: Variant,
    containers: Vec<String>,
    network_made: bool,
    stopping: HashMap<String, (Background, Instant)>,
}

impl DockerLab {
    fn new(variant: Variant) -> DockerLab {
        for role in [Role::Ha, Role::Web] {
            build_example(role.name(), variant.name(), &image(role, variant));
        }
        // The images these builds superseded (untagged now, and labelled by
        // Dockerfile.example): they would pile up, one set per change of corral.
        let _ = docker(&[
            "image",
            "prune",
            "-f",
            "--filter",
            "label=org.corral.dockerfile=example",
        ]);
        sweep_dead(LABEL, &[Leftover::Containers, Leftover::Networks]);
        let mut lab = DockerLab {
            run_id: format!("corral-e2e-{}-{}", variant.name(), std::process::id()),
            variant,
            containers: Vec::new(),
            network_made: false,
            stopping: HashMap::new(),
        };
        // Marked made before it exists: the guard must try, whatever happens.
        lab.network_made = true;
        docker_ok(&["network", "create", "--label", &label(), &lab.run_id]);
        lab
    }

    fn container(&self, name: &str) -> String {
        format!("{}-{name}", self.run_id)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.container(name)])
            .stdout
            .trim()
            .to_string()
    }

    fn exit_code(&self, name: &str) -> i32 {
        let code = self.inspect(name, "{{.State.ExitCode}}");
        code.parse()
            .unwrap_or_else(|_| panic!("exit code of {name}: {code:?}"))
    }

    /// The host port (on 127.0.0.1) published for the container's `port`.
    fn published(&self, name: &str, port: u16) -> Endpoint {
        let out = docker_ok(&["port", &self.container(name), &format!("{port}/tcp")]);
        let host_port: u16 = out
            .lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no 127.0.0.1 port for {name}:{port} in {out:?}"));
        Endpoint {
            addr: SocketAddr::from(([127, 0, 0, 1], host_port)),
            netns: None,
        }
    }
}

fn image(role: Role, variant: Variant) -> String {
    format!("corral-e2e-{}:{}", role.name(), variant.name())
}

fn label() -> String {
    format!("{LABEL}={}", std::process::id())
}

impl Lab for DockerLab {
    fn kind(&self) -> &'static str {
        "docker"
    }

    /// `docker run -d` as `NAME` (host name `NAME`: serf's node name) on the
    /// network; `ha` with the alias `ha` and its ports published on
    /// 127.0.0.1 only.
    fn start(&mut self, name: &str, role: Role) {
        let container = self.container(name);
        self.containers.push(container.clone());
        let label = label();
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &container,
            "--hostname",
            name,
            "--label",
            &label,
            "--network",
            &self.run_id,
        ];
        if role == Role::Ha {
            args.extend([
                "--network-alias",
                "ha",
                "-p",
                "127.0.0.1::80",
                "-p",
                "127.0.0.1::8404",
            ]);
        }
        let image = image(role, self.variant);
        args.push(&image);
        docker_ok(&args);
    }

    fn haproxy(&self) -> Endpoint {
        self.published("ha", 80)
    }

    fn stats(&self) -> Endpoint {
        self.published("ha", 8404)
    }

    fn stop_begin(&mut self, name: &str) {
        let stop = Background::spawn(Command::new("docker").args(["stop", &self.container(name)]));
        self.stopping
            .insert(name.to_string(), (stop, Instant::now()));
    }

    fn stop_end(&mut self, name: &str) -> (i32, Duration) {
        let (stop, since) = self
            .stopping
            .remove(name)
            .unwrap_or_else(|| panic!("{name} is not being stopped"));
        let ran = stop.finish(DOCKER_TIMEOUT);
        let took = since.elapsed();
        assert_eq!(ran.code, 0, "docker stop {name}: {ran:?}");
        (self.exit_code(name), took)
    }

    fn kill(&mut self, name: &str) -> i32 {
        docker_ok(&["kill", &self.container(name)]);
        wait_until(&format!("{name} to be dead"), DOCKER_TIMEOUT, || {
            let state = self.inspect(name, "{{.State.Status}} {{.State.ExitCode}}");
            match state.split_once(' ') {
                Some(("exited", code)) => code.parse::<i32>().map_err(|e| e.to_string()),
                _ => Err(state),
            }
        })
    }

    fn hup(&mut self, name: &str) {
        docker_ok(&["kill", "-s", "HUP", &self.container(name)]);
    }

    fn exec(&self, name: &str, cmd: &[&str]) -> Ran {
        let container = self.container(name);
        let mut args = vec!["exec", container.as_str()];
        args.extend_from_slice(cmd);
        docker(&args)
    }

    fn logs(&self, name: &str) -> String {
        let ran = docker(&["logs", &self.container(name)]);
        format!("{}{}", ran.stdout, ran.stderr)
    }

    /// `docker logs --timestamps`: `2026-12-04T14:00:00.123456789Z line`.
    /// The CLI writes the container's stdout and stderr apart; merged by
    /// time, a stable sort keeps each stream's order.
    fn timed_logs(&self, name: &str) -> Vec<(SystemTime, String)> {
        let ran = docker(&["logs", "--timestamps", &self.container(name)]);
        let mut lines: Vec<(SystemTime, String)> = [ran.stdout, ran.stderr]
            .iter()
            .flat_map(|text| {
                text.lines().filter_map(|l| {
                    let (time, line) = l.split_once(' ').unwrap_or((l, ""));
                    Some((parse_rfc3339(time)?, line.to_string()))
                })
            })
            .collect();
        lines.sort_by_key(|(at, _)| *at);
        lines
    }

    fn healthy(&self, name: &str) -> Result<(), String> {
        match self.inspect(name, "{{.State.Health.Status}}").as_str() {
            "healthy" => Ok(()),
            other => Err(other.to_string()),
        }
    }
}

impl Drop for DockerLab {
    fn drop(&mut self) {
        if thread::panicking() {
            let names: Vec<String> = self
                .containers
                .iter()
                .map(|c| c.rsplit('-').next().unwrap_or(c).to_string())
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            say(&self.logs_tail(&names));
        }
        for container in &self.containers {
            let _ = docker(&["rm", "-f", "-v", container]);
        }
        if self.network_made {
            let _ = docker(&["network", "rm", &self.run_id]);
        }
    }
}

// ---------------------------------------------------------------------------
// Namespaces, when Docker is not usable

const NETNS_PREFIX: &str = "ce2e-";
const SUBNET: &str = "10.213.0";

struct NsNode {
    /// `docker/ns-node.sh`, whose only child is corral (PID 1 of the node);
    /// its exit status is the node's, as Docker reports it.
    script: Child,
    corral: i32,
    ip: String,
    /// What the node printed (stdout and stderr, one pipe), as written, ...
    log: PathBuf,
    /// ... and each line with the time it was read.
    lines: Arc<Mutex<Vec<(SystemTime, String)>>>,
    stop_at: Option<Instant>,
    exit: Option<ExitStatus>,
}

/// Network namespaces on a bridge (in a lab namespace of their own), one per
/// node, and a PID + mount + UTS namespace per node with corral as its PID 1.
/// `Drop` SIGKILLs every node's corral (which ends its PID namespace and
/// mounts), deletes the network namespaces and the scratch directory.
struct NetnsLab {
    variant: Variant,
    id: String,
    lab_ns: String,
    lower: PathBuf,
    binary: PathBuf,
    scratch: PathBuf,
    nodes: HashMap<String, NsNode>,
    order: Vec<String>,
    next_ip: u8,
    made: Vec<String>,
}

fn ip(args: &[&str]) {
    let ran = run_within(Command::new("ip").args(args), DOCKER_TIMEOUT);
    assert_eq!(ran.code, 0, "ip {args:?}: {}", ran.stderr);
}

impl NetnsLab {
    fn new(variant: Variant) -> NetnsLab {
        sweep_netns_leftovers();
        let lower = PathBuf::from(build_base(&["--rootfs"]));
        assert!(
            lower.join("usr/sbin/haproxy").exists(),
            "no haproxy in {}",
            lower.display()
        );
        // The image's ENV that this lab passes by hand must be the one
        // Dockerfile.example declares.
        let dockerfile =
            fs::read_to_string(repo().join("Dockerfile.example")).expect("Dockerfile.example");
        for (var, value) in HA_IMAGE_ENV {
            let env = format!("ENV {var}={value}");
            assert!(
                dockerfile.lines().any(|l| l.trim() == env),
                "Dockerfile.example has no `{env}`: HA_IMAGE_ENV is out of date"
            );
        }
        let binary = corral_release();
        let pid = std::process::id();
        let id = format!("{pid}-{}", variant.name());
        let scratch = std::env::temp_dir().join(format!("corral-e2e-{id}"));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch).expect("scratch dir");
        let mut lab = NetnsLab {
            variant,
            lab_ns: format!("{NETNS_PREFIX}{id}-lab"),
            id,
            lower,
            binary,
            scratch,
            nodes: HashMap::new(),
            order: Vec::new(),
            next_ip: 2,
            made: Vec::new(),
        };
        let ns = lab.lab_ns.clone();
        lab.made.push(ns.clone());
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{SUBNET}.1/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &ns, "link", "set", "br0", "up"]);
        lab
    }

    fn node(&self, name: &str) -> &NsNode {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The node's file system as the Dockerfile would make it: corral and
    /// its links, the example's common files, then the variant's.
    fn image_layer(&self, upper: &Path, name: &str, role: Role) {
        let bin = upper.join("usr/local/bin");
        fs::create_dir_all(&bin).expect("upper dir");
        fs::create_dir_all(upper.join("usr/bin")).expect("upper dir");
        fs::create_dir_all(upper.join("command")).expect("upper dir");
        fs::copy(&self.binary, bin.join("corral")).expect("copy corral");
        let links = [
            ("corral", "usr/local/bin/corralctl"),
            ("/usr/local/bin/corral", "usr/bin/with-contenv"),
            ("/usr/local/bin/corral", "usr/bin/s6-svc"),
            ("/usr/local/bin/corral", "command/with-contenv"),
            ("/usr/local/bin/corral", "command/s6-svc"),
        ];
        for (target, link) in links {
            std::os::unix::fs::symlink(target, upper.join(link)).expect("symlink");
        }
        let example = repo().join("examples/haproxy-serf");
        for layer in [
            example.join("common").join(role.name()),
            example.join(self.variant.name()).join(role.name()),
        ] {
            let ran = run_within(
                Command::new("cp")
                    .arg("-a")
                    .arg(format!("{}/.", layer.display()))
                    .arg(upper),
                DOCKER_TIMEOUT,
            );
            assert_eq!(ran.code, 0, "cp {}: {}", layer.display(), ran.stderr);
        }
        // What Docker's network gives a container: its own name, and `ha`.
        let etc = upper.join("etc");
        fs::create_dir_all(&etc).expect("upper etc");
        let ha_ip = self
            .nodes
            .get("ha")
            .map(|n| n.ip.clone())
            .unwrap_or_else(|| format!("{SUBNET}.{}", self.next_ip));
        let own_ip = format!("{SUBNET}.{}", self.next_ip);
        fs::write(
            etc.join("hosts"),
            format!("127.0.0.1 localhost\n{own_ip} {name}\n{ha_ip} ha\n"),
        )
        .expect("hosts");
        fs::write(etc.join("hostname"), format!("{name}\n")).expect("hostname");
        fs::write(etc.join("resolv.conf"), "").expect("resolv.conf");
    }

    fn wait_exit(&mut self, name: &str, timeout: Duration) -> Option<ExitStatus> {
        let node = self.nodes.get_mut(name)?;
        if node.exit.is_none() {
            node.exit = wait_child(&mut node.script, timeout).ok();
        }
        node.exit
    }

    fn signal(&self, name: &str, signal: nix::sys::signal::Signal) {
        crate::common::send(self.node(name).corral, signal);
    }
}

impl Lab for NetnsLab {
    fn kind(&self) -> &'static str {
        "netns"
    }

    fn start(&mut self, name: &str, role: Role) {
        let index = self.next_ip;
        let node_ip = format!("{SUBNET}.{index}");
        let netns = format!("{NETNS_PREFIX}{}-{name}", self.id);
        let dir = self.scratch.join(name);
        let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("root"));
        for d in [&upper, &work, &root] {
            fs::create_dir_all(d).expect("node dirs");
        }
        self.image_layer(&upper, name, role);

        // The node's network: a veth pair from the lab's bridge.
        self.made.push(netns.clone());
        ip(&["netns", "add", &netns]);
        let (outer, inner) = (
            format!("v{}{index}", std::process::id() % 100_000),
            format!("w{}{index}", std::process::id() % 100_000),
        );
        let lab = self.lab_ns.clone();
        ip(&[
            "-n", &lab, "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns",
            &netns,
        ]);
        ip(&["-n", &lab, "link", "set", &outer, "master", "br0", "up"]);
        ip(&["-n", &netns, "link", "set", &inner, "name", "eth0"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{node_ip}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);

        // The node's stdout and stderr: one pipe, so that their lines keep
        // their order, read by a thread that writes them to the log file
        // and notes when each came (the timestamps `docker logs -t` has).
        // It ends when the last process of the node closes the pipe.
        let log = dir.join("log");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (out, err) = {
            let (reader, writer) = std::io::pipe().expect("pipe");
            let mut file = fs::File::create(&log).expect("log file");
            let lines = Arc::clone(&lines);
            thread::spawn(move || {
                let mut reader = BufReader::new(reader);
                let mut line = Vec::new();
                while let Ok(1..) = reader.read_until(b'\n', &mut line) {
                    let at = SystemTime::now();
                    let _ = file.write_all(&line);
                    let text = String::from_utf8_lossy(&line);
                    if let Ok(mut lines) = lines.lock() {
                        lines.push((at, text.trim_end_matches('\n').to_string()));
                    }
                    line.clear();
                }
            });
            let err = writer.try_clone().expect("pipe");
            (writer, err)
        };
        let script = Command::new("ip")
            .args(["netns", "exec", &netns])
            .args(["setpriv", "--pdeathsig", "KILL"])
            .args([
                "unshare",
                "--pid",
                "--mount",
                "--uts",
                "--propagation",
                "private",
            ])
            .arg(repo().join("docker/ns-node.sh"))
            .arg(name)
            .args([&self.lower, &upper, &work, &root])
            .args(role.image_env().iter().map(|(k, v)| format!("{k}={v}")))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let script_pid = script.id() as i32;
        let mut node = NsNode {
            script,
            corral: 0,
            ip: node_ip,
            log: log.clone(),
            lines,
            stop_at: None,
            exit: None,
        };
        let corral = wait_until(
            &format!("corral to be PID 1 of {name}"),
            DOCKER_TIMEOUT,
            || {
                if let Ok(Some(status)) = node.script.try_wait() {
                    panic!(
                        "{name} ended at once ({status:?}): {}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                match crate::common::children(script_pid).as_slice() {
                    [pid] if crate::common::cmdline(*pid).starts_with("/usr/local/bin/corral") => {
                        Ok(*pid)
                    }
                    other => Err(format!("children of ns-node.sh: {other:?}")),
                }
            },
        );
        node.corral = corral;
        self.next_ip += 1;
        self.nodes.insert(name.to_string(), node);
        self.order.push(name.to_string());
    }

    fn haproxy(&self) -> Endpoint {
        let ip: std::net::Ipv4Addr = self.node("ha").ip.parse().expect("ha's address");
        Endpoint {
            addr: SocketAddr::from((ip, 80)),
            netns: Some(PathBuf::from("/run/netns").join(&self.lab_ns)),
        }
    }

    fn stats(&self) -> Endpoint {
        let mut endpoint = self.haproxy();
        endpoint.addr.set_port(8404);
        endpoint
    }

    fn stop_begin(&mut self, name: &str) {
        self.signal(name, nix::sys::signal::Signal::SIGTERM);
        if let Some(node) = self.nodes.get_mut(name) {
            node.stop_at = Some(Instant::now());
        }
    }

    fn stop_end(&mut self, name: &str) -> (i32, Duration) {
        let since = self.node(name).stop_at.unwrap_or_else(Instant::now);
        let status = match self.wait_exit(name, STOP_GRACE) {
            Some(status) => status,
            None => {
                self.signal(name, nix::sys::signal::Signal::SIGKILL);
                self.wait_exit(name, DOCKER_TIMEOUT)
                    .unwrap_or_else(|| panic!("{name} did not end after SIGKILL"))
            }
        };
        (docker_code(status), since.elapsed())
    }

    fn kill(&mut self, name: &str) -> i32 {
        self.signal(name, nix::sys::signal::Signal::SIGKILL);
        let status = self
            .wait_exit(name, DOCKER_TIMEOUT)
            .unwrap_or_else(|| panic!("{name} did not end after SIGKILL"));
        docker_code(status)
    }

    fn hup(&mut self, name: &str) {
        self.signal(name, nix::sys::signal::Signal::SIGHUP);
    }

    /// nsenter into every namespace of the node's corral, and its root.
    fn exec(&self, name: &str, cmd: &[&str]) -> Ran {
        let pid = self.node(name).corral.to_string();
        run_within(
            Command::new("nsenter")
                .args(["-t", &pid, "-m", "-u", "-n", "-p", "-r", "-w"])
                .env_clear()
                .env(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                )
                .args(cmd),
            DOCKER_TIMEOUT,
        )
    }

    fn logs(&self, name: &str) -> String {
        fs::read_to_string(&self.node(name).log).unwrap_or_default()
    }

    fn timed_logs(&self, name: &str) -> Vec<(SystemTime, String)> {
        self.node(name)
            .lines
            .lock()
            .map(|lines| lines.clone())
            .unwrap_or_default()
    }

    /// The image's HEALTHCHECK command.
    fn healthy(&self, name: &str) -> Result<(), String> {
        let ran = self.exec(name, &["corral", "ctl", "health"]);
        if ran.code == 0 {
            Ok(())
        } else {
            Err(format!("{}{}", ran.stdout, ran.stderr))
        }
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        if thread::panicking() {
            let names: Vec<&str> = self.order.iter().map(String::as_str).collect();
            say(&self.logs_tail(&names));
        }
        let names = self.order.clone();
        for name in &names {
            if self.node(name).exit.is_none() {
                self.signal(name, nix::sys::signal::Signal::SIGKILL);
                if let Some(node) = self.nodes.get_mut(name) {
                    let _ = node.script.kill();
                }
                let _ = self.wait_exit(name, DOCKER_TIMEOUT);
            }
        }
        for ns in self.made.iter().rev() {
            let _ = run_within(
                Command::new("ip").args(["netns", "del", ns]),
                DOCKER_TIMEOUT,
            );
        }
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// Network namespaces and scratch directories of a test process that no
/// longer exists are removed.
fn sweep_netns_leftovers() {
    let list = run_within(Command::new("ip").args(["netns", "list"]), DOCKER_TIMEOUT);
    for line in list.stdout.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let owner = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split('-').next());
        if owner.is_some_and(owner_dead) {
            let _ = run_within(
                Command::new("ip").args(["netns", "del", name]),
                DOCKER_TIMEOUT,
            );
        }
    }
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name
                .strip_prefix("corral-e2e-")
                .and_then(|rest| rest.split('-').next());
            if owner.is_some_and(owner_dead) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// haproxy, seen from outside

/// What haproxy logs when its health checks take web3 out: `Server
/// web/web3 is DOWN, reason: Layer4 connection problem, ...`.
const WEB3_DOWN: &str = "web/web3 is DOWN";

/// The lines of a container's log that are haproxy's syslog messages, as
/// corral writes them (`syslog | haproxy[PID]: ...`, after the time when
/// corral runs with `--output-timestamps`), and contain `text`.
fn haproxy_syslog<'a>(logs: &'a str, text: &str) -> Vec<&'a str> {
    logs.lines()
        .filter(|line| {
            let line = match line.split_once(' ') {
                Some((time, rest)) if is_rfc3339(time) => rest,
                _ => line,
            };
            line.starts_with("syslog | haproxy[") && line.contains(text)
        })
        .collect()
}

/// `2026-12-04T14:00:00.123Z`, corral's `--output-timestamps`.
fn is_rfc3339(word: &str) -> bool {
    word.len() == 24
        && word.ends_with('Z')
        && word.as_bytes().get(10) == Some(&b'T')
        && word.bytes().take(4).all(|b| b.is_ascii_digit())
}

#[derive(Debug)]
struct ServiceStatus {
    pid: i64,
    restarts: i64,
    state: String,
}

/// haproxy's line of `corral ctl status --json` in `ha`.
fn haproxy_status(lab: &dyn Lab) -> ServiceStatus {
    let json = lab.exec_ok("ha", &["corral", "ctl", "status", "haproxy", "--json"]);
    let parsed: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("status --json: {e}: {json}"));
    let entry = parsed
        .as_array()
        .and_then(|a| a.first())
        .unwrap_or_else(|| panic!("no haproxy in {json}"));
    ServiceStatus {
        pid: entry["pid"].as_i64().unwrap_or(-1),
        restarts: entry["restarts"].as_i64().unwrap_or(-1),
        state: entry["state"].as_str().unwrap_or("?").to_string(),
    }
}

/// The pids of haproxy's workers in `ha`: the children of its master.
fn haproxy_workers(lab: &dyn Lab, master: i64) -> Vec<i64> {
    let ps = lab.exec("ha", &["ps", "-eo", "pid=,ppid=,comm="]).stdout;
    ps.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [pid, ppid, "haproxy"] if ppid.parse() == Ok(master) => pid.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

/// The servers of backend `web` in haproxy's running config, from its stats
/// page as CSV (`pxname,svname,...`).
fn stats_servers(stats: &Endpoint) -> Result<Vec<String>, String> {
    let (code, body) = http_get(stats, "/;csv")?;
    if code != 200 {
        return Err(format!("stats page: {code}"));
    }
    Ok(web_servers(&body))
}

/// Move the calling thread into the network namespace at `path`
/// (setns(2): a thread's network namespace is its own).
fn enter_netns(path: &Path) -> Result<(), String> {
    let file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: setns on an fd we own; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "setns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ))
    }
}

/// `GET path` at `endpoint` (from a short-lived thread inside its network
/// namespace, if it has one).
fn http_get(endpoint: &Endpoint, path: &str) -> Result<(u16, String), String> {
    match &endpoint.netns {
        None => http_get_at(endpoint.addr, path),
        Some(ns) => thread::scope(|s| {
            s.spawn(|| {
                enter_netns(ns)?;
                http_get_at(endpoint.addr, path)
            })
            .join()
            .unwrap_or_else(|_| Err("request thread panicked".to_string()))
        }),
    }
}

// ---------------------------------------------------------------------------
// A graceful stop, from the node's log

/// What a web node's log says about its stop: corral's lines (serf's stop,
/// web's pre-stop as it begins and ends, web's stop signal), the hook's
/// verdict and node's own lines, each with its time since the stop began.
struct StopTrace {
    serf_stopped: Moment,
    pre_stop_began: Moment,
    pre_stop_ended: Moment,
    term: Moment,
    /// `leave-haproxy: haproxy no longer lists web2, 0.31s after ...`.
    hook: Option<Moment>,
    /// node's `SIGTERM: closing; ...` and `closed after ...`.
    node: Vec<Moment>,
}

/// A line of the log, where it is in it, and when it came (seconds since
/// the stop began).
struct Moment {
    index: usize,
    after: f64,
    line: String,
}

impl StopTrace {
    /// From `lines` (`Lab::timed_logs`) and the time the stop began: each
    /// line found, in the order the design needs, or why not. The order is
    /// judged on corral's own lines only, which share one stream (stderr):
    /// Docker stamps stdout and stderr apart, a few milliseconds may swap
    /// lines across the two.
    fn read(lines: &[(SystemTime, String)], since: SystemTime) -> Result<StopTrace, String> {
        let find = |from: usize, needles: &[&str]| {
            lines
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, (_, line))| needles.iter().all(|n| line.contains(n)))
                .map(|(index, (at, line))| Moment {
                    index,
                    after: seconds_between(since, *at),
                    line: strip_level(line).to_string(),
                })
        };
        let need = |from: usize, needles: &[&str], what: &str| {
            find(from, needles).ok_or_else(|| format!("no line {needles:?} ({what}) in its log"))
        };
        let serf_stopped = need(0, &["stopping service", "service=serf"], "serf's stop")?;
        let pre_stop_began = need(
            0,
            &["pre-stop running its hook", "service=web"],
            "web's pre-stop begins",
        )?;
        let pre_stop_ended = need(
            pre_stop_began.index + 1,
            &["pre-stop", "service=web"],
            "web's pre-stop ends",
        )?;
        let term = need(
            0,
            &["stopping service", "service=web", "signal=\"SIGTERM\""],
            "node's SIGTERM",
        )?;
        if !pre_stop_ended.line.contains("pre-stop done") {
            return Err(format!(
                "the pre-stop did not succeed: {}",
                pre_stop_ended.line
            ));
        }
        if !(serf_stopped.index < pre_stop_began.index
            && pre_stop_began.index < pre_stop_ended.index
            && pre_stop_ended.index < term.index)
        {
            return Err(format!(
                "out of order (must be serf's stop, pre-stop begins, pre-stop done, \
                 SIGTERM to node): lines {}, {}, {}, {}",
                serf_stopped.index, pre_stop_began.index, pre_stop_ended.index, term.index
            ));
        }
        let hook = find(0, &["leave-haproxy: haproxy no longer lists"]);
        let node = ["SIGTERM: closing", "closed after"]
            .iter()
            .filter_map(|n| find(0, &[n]))
            .collect();
        Ok(StopTrace {
            serf_stopped,
            pre_stop_began,
            pre_stop_ended,
            term,
            hook,
            node,
        })
    }
}

impl std::fmt::Display for StopTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |m: &Moment| format!("{:+.2}s `{}`", m.after, m.line);
        write!(
            f,
            "{}; {}; {} (pre-stop {:.2}s); {}",
            at(&self.serf_stopped),
            at(&self.pre_stop_began),
            at(&self.pre_stop_ended),
            self.pre_stop_ended.after - self.pre_stop_began.after,
            at(&self.term)
        )?;
        if let Some(hook) = &self.hook {
            write!(f, "; hook: {}", at(hook))?;
        }
        for line in &self.node {
            write!(f, "; node: {}", at(line))?;
        }
        Ok(())
    }
}

/// A line as written, but for the level that starts corral's own lines
/// (` INFO pre-stop done service=web` -> `pre-stop done service=web`).
fn strip_level(line: &str) -> &str {
    let trimmed = line.trim();
    ["TRACE ", "DEBUG ", "INFO ", "WARN ", "ERROR "]
        .iter()
        .find_map(|level| trimmed.strip_prefix(level))
        .unwrap_or(trimmed)
}

/// `to - from` in seconds, negative when `to` is earlier.
fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// `2026-12-04T14:00:00.123456789Z` (UTC; any number of fraction digits,
/// up to 9, or none: Go's RFC3339Nano, as `docker logs -t` writes it).
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let number = |s: &str| s.parse::<i64>().ok().filter(|_| !s.is_empty());
    let mut ymd = date.splitn(3, '-').map(number);
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = hms.splitn(3, ':').map(number);
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    // Days since 1970-01-01 of a date in the proleptic Gregorian calendar
    // (Howard Hinnant's days_from_civil: years from March, in 400-year eras).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(seconds).ok()?, nanos))
}

#[test]
fn docker_timestamps_parse() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
    assert_eq!(
        parse_rfc3339("2000-03-01T00:00:00.5Z"),
        Some(UNIX_EPOCH + Duration::from_millis(951_868_800_500))
    );
    assert_eq!(
        parse_rfc3339("2026-12-04T14:00:00.123456789Z"),
        Some(UNIX_EPOCH + Duration::new(1_796_392_800, 123_456_789))
    );
    assert_eq!(parse_rfc3339("2026-12-04 14:00:00Z"), None);
    assert_eq!(parse_rfc3339("2026-12-04T14:00:00.1234567890Z"), None);
}

// ---------------------------------------------------------------------------
// The client

#[derive(Clone, Debug)]
struct Sample {
    sent_at: Instant,
    done_at: Instant,
    /// The status and body, or why there is none.
    answer: Result<(u16, String), String>,
}

impl Sample {
    fn served_by(&self) -> Option<&str> {
        match &self.answer {
            Ok((200, body)) => Some(body.trim()),
            _ => None,
        }
    }
}

/// Requests that did not get a 200.
fn failures(samples: &[Sample]) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| s.served_by().is_none())
        .cloned()
        .collect()
}

fn first_served_at(samples: &[Sample]) -> Option<Instant> {
    samples
        .iter()
        .find(|s| s.served_by().is_some())
        .map(|s| s.sent_at)
}

/// A thread sending `GET /` to haproxy every `CLIENT_PACE`, bounded in count
/// and time, recording every answer.
struct Client {
    samples: Arc<Mutex<Vec<Sample>>>,
    done: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Client {
    fn start(endpoint: Endpoint) -> Client {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let samples = Arc::clone(&samples);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                if let Some(ns) = &endpoint.netns
                    && let Err(e) = enter_netns(ns)
                {
                    say(&format!("client: {e}"));
                    return;
                }
                let began = Instant::now();
                for _ in 0..CLIENT_MAX_REQUESTS {
                    if done.load(Ordering::Relaxed) || began.elapsed() > CLIENT_MAX_TIME {
                        break;
                    }
                    let sent_at = Instant::now();
                    let answer = http_get_at(endpoint.addr, "/");
                    let sample = Sample {
                        sent_at,
                        done_at: Instant::now(),
                        answer,
                    };
                    if let Ok(mut all) = samples.lock() {
                        all.push(sample);
                    }
                    thread::sleep(CLIENT_PACE);
                }
            })
        };
        Client {
            samples,
            done,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Samples sent in `[from, to)`.
    fn between(&self, from: Instant, to: Instant) -> Vec<Sample> {
        self.snapshot()
            .into_iter()
            .filter(|s| s.sent_at >= from && s.sent_at < to)
            .collect()
    }

    /// The nodes that answered requests sent since `since`.
    fn served_since(&self, since: Instant) -> Vec<String> {
        let mut names: Vec<String> = self
            .snapshot()
            .iter()
            .filter(|s| s.sent_at >= since)
            .filter_map(|s| s.served_by().map(String::from))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Wait until `n` requests sent since `since` have their answers
    /// (whatever they are).
    fn wait_answered_since(&self, since: Instant, n: usize, timeout: Duration) {
        wait_until(
            &format!("answers to {n} requests sent after the node is gone"),
            timeout,
            || {
                let answered = self
                    .snapshot()
                    .iter()
                    .filter(|s| s.sent_at >= since)
                    .count();
                if answered >= n {
                    Ok(())
                } else {
                    Err(format!("{answered} answered"))
                }
            },
        );
    }

    /// Wait for the first answer from `name` to a request sent after
    /// `since`; how long after `since` that answer came.
    fn wait_served_by(&self, name: &str, since: Instant, timeout: Duration) -> Duration {
        wait_until(
            &format!("{name} to serve a request through haproxy"),
            timeout,
            || {
                let samples = self.snapshot();
                samples
                    .iter()
                    .find(|s| s.sent_at >= since && s.served_by() == Some(name))
                    .map(|s| s.done_at.duration_since(since))
                    .ok_or_else(|| {
                        let last: Vec<String> = samples
                            .iter()
                            .rev()
                            .take(3)
                            .map(|s| format!("{:?}", s.answer))
                            .collect();
                        format!("last answers: {last:?}")
                    })
            },
        )
    }

    fn stop(mut self) -> Vec<Sample> {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.snapshot()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Figures

/// Written straight to stderr, not through `eprintln!`: the test harness
/// captures the print macros of passing tests, and these are for everyone.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "docker_e2e: {text}");
}

struct Figures {
    lab: &'static str,
    variant: Variant,
    lines: Vec<String>,
}

impl Figures {
    fn new(lab: &'static str, variant: Variant) -> Figures {
        Figures {
            lab,
            variant,
            lines: Vec::new(),
        }
    }

    fn line(&mut self, text: String) {
        say(&format!("[{} {}] {text}", self.lab, self.variant.name()));
        self.lines.push(text);
    }

    fn publish(&self) {
        let path = repo().join("target").join(format!(
            "docker-e2e-{}-{}.txt",
            self.lab,
            self.variant.name()
        ));
        let _ = fs::write(&path, self.lines.join("\n") + "\n");
        say(&format!("figures written to {}", path.display()));
    }
}
