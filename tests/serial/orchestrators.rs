//! The haproxy + serf + node example scaled by orchestrators, for real:
//! `examples/haproxy-serf/compose.yml` under docker-compose (Compose v2's
//! `docker compose` where docker-compose is missing) and
//! `examples/haproxy-serf/stack.yml` as a Swarm stack on this one node.
//! The images are Dockerfile.example's `ha` and `web` (TOML variant), built
//! on the local base with the release build of corral, as `docker_e2e` does.
//!
//! A client container on the project's network (node, from the web image)
//! sends `GET http://ha/` every 20 ms throughout and prints one line per
//! answer; no port is published anywhere. What must hold:
//!
//! - Compose: `up -d --scale web=3`, then `--scale web=6`, then
//!   `--scale web=2`: after each step the servers of haproxy's running
//!   config (its stats page as CSV, read inside `ha`) are exactly the web
//!   containers that run;
//! - Swarm: `docker stack deploy`, `docker service scale STACK_web=5` then
//!   `=1`, a rolling update to a second tag of the web image (start-first),
//!   the same check after each; then `docker service scale STACK_web=0`;
//! - zero failed requests from the first answer on, except, at the very end
//!   of the Swarm run, the 503s haproxy gives once no web node is left;
//! - every web node that went away (scale-down, update, drain) ran its
//!   pre-stop hook to the end (`haproxy no longer lists ...`) and its corral
//!   exited 0 (read from `docker logs -f`, followed from each node's start:
//!   Compose removes the containers it scales away);
//! - no zombie in any container (their process tables, before stopping).
//!
//! Why `scale=0` and not `docker node update --availability drain` for the
//! drain: on one node a drain stops every task, `ha` included, so it would
//! show the load balancer going away rather than web nodes leaving it; and
//! the node may be a swarm that other work on this machine also uses, whose
//! tasks a drain would stop. `scale=0` makes every web task leave the way a
//! drain makes the tasks of a node leave (`docker stop`, the pre-stop, the
//! grace period), and `ha` stays to show it.
//!
//! The figures (time from `--scale`/`scale` to the new nodes in haproxy's
//! running config, to the removed ones gone, the pre-stop's time, failed
//! requests, zombies) are printed on stderr and written to
//! `target/orchestrators-{compose,swarm}.txt`.
//!
//! Skipped, saying why, only where `docker info` fails. With Docker but
//! without docker-compose or Compose v2, the Compose test fails naming the
//! package.
//!
//! What it leaves behind: nothing. Guards remove, also when the test fails,
//! the Compose project (`down -v`), the stack (and waits until its
//! containers and network are gone), the swarm if the test initialised it
//! (`docker swarm leave --force`, and the `docker_gwbridge` network it made),
//! the client containers and the image tags it made. At the start, what a
//! test process that no longer exists left is removed: projects and stacks
//! named `corral-orch-*-PID`, containers labelled `org.corral.orch=PID`, the
//! image tags `corral-orch-*:PID-*`, and a swarm it initialised when no
//! service is left in it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{Background, Ran, on_path, run_within, serial, wait_until};
use crate::docker_common::{
    DOCKER_TIMEOUT, Leftover, build_example, docker, docker_ok, docker_usable, owner_dead, repo,
    sweep_dead, web_servers,
};

/// Every Docker object the test names starts with this (then its kind and
/// the test process's pid).
const PREFIX: &str = "corral-orch-";
/// Label of the containers the test runs itself (the clients); its value is
/// the test process's pid.
const LABEL: &str = "org.corral.orch";
/// How long a scaling step may take to show in haproxy's running config
/// (a join is ~2 s, a leave ~1.5 s; starting 3 containers at once on a
/// loaded 2-core machine takes longer). Generous: a passing wait ends early.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an orchestrator command may take (`docker service scale` and
/// `update` wait until the service converged, i.e. healthy tasks).
const ORCH_TIMEOUT: Duration = Duration::from_secs(180);
/// The client's pace, and its own end (it is removed well before).
const CLIENT_PACE_MS: u64 = 20;
const CLIENT_MAX_MS: u64 = 600_000;

#[test]
fn compose_scales_web_nodes_out_and_in() {
    let _serial = serial();
    if skipped("compose_scales_web_nodes_out_and_in") {
        return;
    }
    sweep_leftovers();
    let compose = compose_command();
    let mut figures = Figures::new("compose");
    let mut images = Images::build("compose");
    let lab = ComposeLab::new(compose, &images);

    let t = Instant::now();
    lab.compose_ok(&["up", "-d", "--no-build", "--scale", "web=3"]);
    figures.line(format!(
        "up -d --scale web=3 returned after {:.2}s (ha healthy first: depends_on)",
        t.elapsed().as_secs_f64()
    ));
    let client = Client::start(&images.web, &lab.network());
    let mut nodes = Nodes::new(lab.ha(), web_filter_compose(&lab.project));
    let took = nodes.wait_exactly(3, t);
    figures.line(format!(
        "up --scale web=3 to 3 nodes in haproxy's running config: {took:.2}s"
    ));

    let out = nodes.scale(&mut figures, 6, || {
        lab.compose_bg(&["up", "-d", "--no-build", "--scale", "web=6"])
    });
    assert!(
        out.removed.is_empty(),
        "scaling out removed {:?}",
        out.removed
    );
    client.wait_served_by_all(&nodes.live_names());

    nodes.check_zombies(&mut figures);
    let out = nodes.scale(&mut figures, 2, || {
        lab.compose_bg(&["up", "-d", "--no-build", "--scale", "web=2"])
    });
    assert_eq!(
        out.removed.len(),
        4,
        "scaling in to 2 removed {:?}",
        out.removed
    );
    nodes.check_left_cleanly(&mut figures, &out.removed);
    client.wait_served_by_all(&nodes.live_names());

    nodes.check_zombies(&mut figures);
    let samples = client.samples();
    let failed = failed_after_first_success(&samples);
    figures.line(format!(
        "failed requests after the first answer: {} of {} (one every {CLIENT_PACE_MS} ms); the slowest answer {} ms",
        failed.len(),
        samples.len(),
        slowest_ms(&samples)
    ));
    assert!(failed.is_empty(), "failed requests: {failed:#?}");
    figures.publish();
    drop(client);
    drop(lab);
    images.remove();
}

#[test]
fn swarm_scales_updates_and_drains_web_nodes() {
    let _serial = serial();
    if skipped("swarm_scales_updates_and_drains_web_nodes") {
        return;
    }
    sweep_leftovers();
    let mut figures = Figures::new("swarm");
    let mut images = Images::build("swarm");
    let web_b = images.tag(&images.web.clone(), "web", "b");
    let mut lab = SwarmLab::new(&mut figures);

    let t = Instant::now();
    lab.deploy(&images);
    figures.line(format!(
        "stack deploy returned after {:.2}s",
        t.elapsed().as_secs_f64()
    ));
    let mut nodes = Nodes::new(lab.ha(), web_filter_swarm(&lab.stack));
    let took = nodes.wait_exactly(2, t);
    figures.line(format!(
        "stack deploy to its 2 web nodes in haproxy's running config: {took:.2}s"
    ));
    let client = Client::start(&images.web, &lab.network());
    client.wait_served_by_all(&nodes.live_names());

    let service = format!("{}_web", lab.stack);
    let out = nodes.scale(&mut figures, 5, || {
        swarm_bg(&["service", "scale", &format!("{service}=5")])
    });
    assert!(
        out.removed.is_empty(),
        "scaling out removed {:?}",
        out.removed
    );
    client.wait_served_by_all(&nodes.live_names());

    nodes.check_zombies(&mut figures);
    let out = nodes.scale(&mut figures, 1, || {
        swarm_bg(&["service", "scale", &format!("{service}=1")])
    });
    assert_eq!(
        out.removed.len(),
        4,
        "scaling in to 1 removed {:?}",
        out.removed
    );
    nodes.check_left_cleanly(&mut figures, &out.removed);

    // The rolling update: a new task from the second tag, healthy (= in
    // haproxy's rotation, stack.yml's healthcheck) before the old one stops.
    let before = nodes.live_names();
    let t = Instant::now();
    let update = swarm_bg(&[
        "service",
        "update",
        "--image",
        &web_b,
        "--no-resolve-image",
        &service,
    ]);
    let mut update = Pending::new("service update", update, t);
    let took = nodes.wait_replaced(&before, 1, t, || update.poll());
    let (_, returned) = update.finish();
    figures.line(format!(
        "service update (start-first) to the old node replaced in haproxy's running config: {took:.2}s; the command returned after {returned:.2}s"
    ));
    let image_now = docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        &service,
    ]);
    assert_eq!(
        image_now.trim(),
        web_b,
        "the service's image after the update"
    );
    nodes.check_left_cleanly(&mut figures, &before);
    client.wait_served_by_all(&nodes.live_names());
    nodes.check_zombies(&mut figures);

    let samples = client.samples();
    let failed = failed_after_first_success(&samples);
    figures.line(format!(
        "failed requests after the first answer, through deploy, scale 5, scale 1, update: {} of {}; the slowest answer {} ms",
        failed.len(),
        samples.len(),
        slowest_ms(&samples)
    ));
    assert!(failed.is_empty(), "failed requests: {failed:#?}");

    // The drain: every web task leaves the way a drained node's do.
    let last = nodes.live_names();
    let drain_at = epoch_ms();
    let out = nodes.scale(&mut figures, 0, || {
        swarm_bg(&["service", "scale", &format!("{service}=0")])
    });
    assert_eq!(out.removed, last, "scale=0 removed");
    nodes.check_left_cleanly(&mut figures, &last);
    // Served until the node left haproxy; after that, haproxy's 503 (no
    // server left), and nothing else.
    let samples = client.samples_until_after(epoch_ms());
    let drain: Vec<&Sample> = samples.iter().filter(|s| s.sent_ms >= drain_at).collect();
    let last_ok = drain.iter().rposition(|s| s.status == 200);
    let (served, after) = match last_ok {
        Some(i) => drain.split_at(i + 1),
        None => panic!("no request served after scale=0 began: {drain:#?}"),
    };
    let failed: Vec<&&Sample> = served.iter().filter(|s| s.status != 200).collect();
    assert!(failed.is_empty(), "failed while draining: {failed:#?}");
    let not_503: Vec<&&Sample> = after.iter().filter(|s| s.status != 503).collect();
    assert!(
        not_503.is_empty(),
        "once no web node was left, haproxy must answer 503: {not_503:#?}"
    );
    assert!(
        served.iter().any(|s| s.body == last[0]),
        "the last node served no request after scale=0 began"
    );
    figures.line(format!(
        "scale=0: {} requests served while the last node drained, 0 failed; then {} answered 503 by haproxy (no server left), as expected",
        served.len(),
        after.len()
    ));
    figures.publish();
    drop(client);
    drop(lab);
    images.remove();
}

/// True (and says why) when Docker is not usable here.
fn skipped(test: &str) -> bool {
    match docker_usable() {
        Ok(()) => false,
        Err(why) => {
            say(&format!(
                "{test}: skipped: Docker is not usable here: {why}"
            ));
            true
        }
    }
}

fn pid() -> u32 {
    std::process::id()
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn example() -> PathBuf {
    repo().join("examples/haproxy-serf")
}

/// An orchestrator command running while the test watches its effect: it
/// must succeed, and when it returned is a figure.
struct Pending {
    what: String,
    cmd: Option<Background>,
    since: Instant,
    ended: Option<(Ran, f64)>,
}

impl Pending {
    fn new(what: &str, cmd: Background, since: Instant) -> Pending {
        Pending {
            what: what.to_string(),
            cmd: Some(cmd),
            since,
            ended: None,
        }
    }

    /// Once it has exited: its exit code must be 0 (a failed command fails
    /// the test at once, not at the end of a wait for its effect).
    fn poll(&mut self) {
        if let Some(cmd) = self.cmd.as_mut()
            && !cmd.is_running()
            && let Some(cmd) = self.cmd.take()
        {
            let ran = cmd.finish(ORCH_TIMEOUT);
            assert_eq!(ran.code, 0, "{}: {ran:?}", self.what);
            self.ended = Some((ran, self.since.elapsed().as_secs_f64()));
        }
    }

    /// Its end (within ORCH_TIMEOUT): what it printed and when it returned,
    /// in seconds since it began.
    fn finish(mut self) -> (Ran, f64) {
        if let Some(cmd) = self.cmd.take() {
            let ran = cmd.finish(ORCH_TIMEOUT);
            assert_eq!(ran.code, 0, "{}: {ran:?}", self.what);
            self.ended = Some((ran, self.since.elapsed().as_secs_f64()));
        }
        self.ended
            .take()
            .unwrap_or_else(|| panic!("{}: no end", self.what))
    }
}

/// An orchestrator command in the background, with ORCH_TIMEOUT's bound
/// applied by its `finish`.
fn swarm_bg(args: &[&str]) -> Background {
    Background::spawn(Command::new("docker").args(args))
}

// ---------------------------------------------------------------------------
// Images

/// The images of one test, `corral-orch-{ha,web}:PID-KIND` (and any other
/// tag it makes): `Drop` removes the tags, also when the test fails.
struct Images {
    ha: String,
    web: String,
    tags: Vec<String>,
}

impl Images {
    fn build(kind: &str) -> Images {
        let ha = format!("{PREFIX}ha:{}-{kind}", pid());
        let web = format!("{PREFIX}web:{}-{kind}", pid());
        // Listed before they exist: the guard must try, whatever happens.
        let images = Images {
            ha: ha.clone(),
            web: web.clone(),
            tags: vec![ha.clone(), web.clone()],
        };
        let t = Instant::now();
        build_example("ha", "toml", &ha);
        build_example("web", "toml", &web);
        say(&format!(
            "{kind}: images {ha} and {web} built in {:.1}s",
            t.elapsed().as_secs_f64()
        ));
        images
    }

    /// A second tag of `image`, `corral-orch-ROLE:PID-SUFFIX`.
    fn tag(&mut self, image: &str, role: &str, suffix: &str) -> String {
        let tag = format!("{PREFIX}{role}:{}-{suffix}", pid());
        self.tags.push(tag.clone());
        docker_ok(&["tag", image, &tag]);
        tag
    }

    fn remove(&mut self) {
        for tag in self.tags.drain(..) {
            remove_tag(&tag);
        }
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Untag (the image goes with its last tag; one in use by a container that
/// is still being removed keeps its layers, untagged).
fn remove_tag(tag: &str) {
    if docker(&["rmi", tag]).code != 0 {
        let _ = docker(&["rmi", "-f", tag]);
    }
}

// ---------------------------------------------------------------------------
// Compose

/// `docker-compose`, or Compose v2's `docker compose`; the test fails
/// naming the package when neither is there.
fn compose_command() -> Vec<String> {
    if on_path("docker-compose") {
        return vec!["docker-compose".to_string()];
    }
    if docker(&["compose", "version"]).code == 0 {
        return vec!["docker".to_string(), "compose".to_string()];
    }
    panic!(
        "neither docker-compose nor `docker compose` is installed: install the Debian package \
         docker-compose (1.29) or Docker's docker-compose-plugin (Compose v2)"
    );
}

/// One Compose project, `corral-orch-c-PID`, from compose.yml with the
/// test's images. `Drop`: `down -v --remove-orphans` (and whatever a failed
/// `down` left, by the project's label).
struct ComposeLab {
    command: Vec<String>,
    project: String,
    env: Vec<(&'static str, String)>,
}

impl ComposeLab {
    fn new(command: Vec<String>, images: &Images) -> ComposeLab {
        ComposeLab {
            command,
            project: format!("{PREFIX}c-{}", pid()),
            env: vec![
                ("CORRAL_HA_IMAGE", images.ha.clone()),
                ("CORRAL_WEB_IMAGE", images.web.clone()),
                // Nothing published on a fixed port (other tests run
                // beside this one): empty = a port Docker picks, on
                // 127.0.0.1.
                ("HA_PORT", String::new()),
                ("HA_STATS_PORT", String::new()),
            ],
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(example().join("compose.yml"))
            .args(args)
            .current_dir(example());
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }

    fn compose_ok(&self, args: &[&str]) -> Ran {
        let ran = run_within(&mut self.cmd(args), ORCH_TIMEOUT);
        assert_eq!(ran.code, 0, "compose {args:?}: {ran:?}");
        ran
    }

    fn compose_bg(&self, args: &[&str]) -> Background {
        Background::spawn(&mut self.cmd(args))
    }

    fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// The `ha` container's id.
    fn ha(&self) -> String {
        let out = self.compose_ok(&["ps", "-q", "ha"]).stdout;
        out.lines()
            .next()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no ha container in project {}", self.project))
    }
}

impl Drop for ComposeLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            say(&format!(
                "--- compose logs (last lines)\n{}",
                run_within(&mut self.cmd(&["logs", "--tail", "60"]), DOCKER_TIMEOUT).stdout
            ));
        }
        let _ = run_within(
            &mut self.cmd(&["down", "-v", "--remove-orphans", "-t", "10"]),
            ORCH_TIMEOUT,
        );
        remove_compose_project(&self.project);
    }
}

/// Containers, networks and volumes of a Compose project, by its label.
fn remove_compose_project(project: &str) {
    let filter = format!("label=com.docker.compose.project={project}");
    for id in docker(&["ps", "-aq", "--filter", &filter]).stdout.lines() {
        let _ = docker(&["rm", "-f", "-v", id]);
    }
    for id in docker(&["network", "ls", "-q", "--filter", &filter])
        .stdout
        .lines()
    {
        let _ = docker(&["network", "rm", id]);
    }
    for id in docker(&["volume", "ls", "-q", "--filter", &filter])
        .stdout
        .lines()
    {
        let _ = docker(&["volume", "rm", id]);
    }
}

fn web_filter_compose(project: &str) -> Vec<String> {
    vec![
        format!("label=com.docker.compose.project={project}"),
        "label=com.docker.compose.service=web".to_string(),
    ]
}

// ---------------------------------------------------------------------------
// Swarm

/// The swarm (initialised by the test when the node is in none) and one
/// stack, `corral-orch-s-PID`, from stack.yml. `Drop`: `stack rm`, waiting
/// until its containers and network are gone; then, if the test made the
/// swarm, `swarm leave --force` and the `docker_gwbridge` it made.
struct SwarmLab {
    stack: String,
    deployed: bool,
    made_swarm: bool,
    made_gwbridge: bool,
}

/// Where a test that initialised the swarm writes its pid, so that a later
/// run can undo it if that test died first.
fn swarm_marker() -> PathBuf {
    repo().join("target/orchestrators-swarm-init.pid")
}

fn swarm_state() -> String {
    docker_ok(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
    ])
    .trim()
    .to_string()
}

fn network_exists(name: &str) -> bool {
    docker(&["network", "inspect", "--format", "{{.Name}}", name]).code == 0
}

impl SwarmLab {
    fn new(figures: &mut Figures) -> SwarmLab {
        let mut lab = SwarmLab {
            stack: format!("{PREFIX}s-{}", pid()),
            deployed: false,
            made_swarm: false,
            made_gwbridge: false,
        };
        match swarm_state().as_str() {
            "active true" => {
                figures.line("the node is in a swarm already, as a manager: used as is".into())
            }
            "inactive false" => {
                let gwbridge = network_exists("docker_gwbridge");
                lab.made_swarm = true;
                lab.made_gwbridge = !gwbridge;
                let _ = fs::write(swarm_marker(), format!("{}\n", pid()));
                let t = Instant::now();
                docker_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
                figures.line(format!(
                    "docker swarm init --advertise-addr 127.0.0.1: {:.2}s (left at the end)",
                    t.elapsed().as_secs_f64()
                ));
            }
            other => panic!(
                "the node's swarm state is {other:?}: neither a manager nor out of any swarm"
            ),
        }
        lab
    }

    fn deploy(&mut self, images: &Images) {
        self.deployed = true;
        let ran = run_within(
            Command::new("docker")
                .args(["stack", "deploy", "--resolve-image", "never", "-c"])
                .arg(example().join("stack.yml"))
                .arg(&self.stack)
                .env("CORRAL_HA_IMAGE", &images.ha)
                .env("CORRAL_WEB_IMAGE", &images.web),
            ORCH_TIMEOUT,
        );
        assert_eq!(ran.code, 0, "stack deploy: {ran:?}");
    }

    fn network(&self) -> String {
        format!("{}_lab", self.stack)
    }

    /// The `ha` task's container id, once it runs.
    fn ha(&self) -> String {
        let filter = format!("label=com.docker.swarm.service.name={}_ha", self.stack);
        wait_until("the ha task's container", STEP_TIMEOUT, || {
            docker(&["ps", "-q", "--filter", &filter])
                .stdout
                .lines()
                .next()
                .map(str::to_string)
                .ok_or_else(|| "none running".to_string())
        })
    }
}

impl Drop for SwarmLab {
    fn drop(&mut self) {
        if self.deployed {
            if std::thread::panicking() {
                for service in ["ha", "web"] {
                    let ran = docker(&[
                        "service",
                        "ps",
                        "--no-trunc",
                        &format!("{}_{service}", self.stack),
                    ]);
                    say(&format!(
                        "--- service ps {service}\n{}{}",
                        ran.stdout, ran.stderr
                    ));
                }
            }
            remove_stack(&self.stack);
        }
        if self.made_swarm {
            let _ = docker(&["swarm", "leave", "--force"]);
            if self.made_gwbridge {
                let _ = docker(&["network", "rm", "docker_gwbridge"]);
            }
            let _ = fs::remove_file(swarm_marker());
        }
    }
}

/// `docker stack rm`, then wait (60 s at most) until its containers are
/// gone and its network too (removed by hand once they are).
fn remove_stack(stack: &str) {
    let _ = docker(&["stack", "rm", stack]);
    let filter = format!("label=com.docker.stack.namespace={stack}");
    let network = format!("{stack}_lab");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = docker(&["ps", "-aq", "--filter", &filter]).stdout;
        if left.trim().is_empty() {
            if !network_exists(&network) || docker(&["network", "rm", &network]).code == 0 {
                return;
            }
        } else if Instant::now() >= deadline {
            for id in left.lines() {
                let _ = docker(&["rm", "-f", "-v", id]);
            }
        }
        if Instant::now() >= deadline + Duration::from_secs(15) {
            say(&format!(
                "stack {stack}: still not entirely gone after 75 s"
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn web_filter_swarm(stack: &str) -> Vec<String> {
    vec![format!("label=com.docker.swarm.service.name={stack}_web")]
}

// ---------------------------------------------------------------------------
// Leftovers of test processes that no longer exist

fn sweep_leftovers() {
    // Clients.
    sweep_dead(LABEL, &[Leftover::Containers]);
    // Compose projects and stacks: `corral-orch-c-PID`, `corral-orch-s-PID`.
    let dead = |name: &str, kind: &str| {
        name.strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix(kind))
            .is_some_and(owner_dead)
    };
    let projects: BTreeSet<String> = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.project",
        "--format",
        "{{.Label \"com.docker.compose.project\"}}",
    ])
    .stdout
    .lines()
    .chain(
        docker(&[
            "network",
            "ls",
            "--filter",
            "label=com.docker.compose.project",
            "--format",
            "{{.Label \"com.docker.compose.project\"}}",
        ])
        .stdout
        .lines(),
    )
    .filter(|p| dead(p, "c-"))
    .map(str::to_string)
    .collect();
    for project in projects {
        say(&format!(
            "removing compose project {project}, left by a dead test"
        ));
        remove_compose_project(&project);
    }
    if swarm_state().starts_with("active") {
        for stack in docker(&["stack", "ls", "--format", "{{.Name}}"])
            .stdout
            .lines()
        {
            if dead(stack, "s-") {
                say(&format!("removing stack {stack}, left by a dead test"));
                remove_stack(stack);
            }
        }
        // A swarm a dead test made, once nothing runs in it any more.
        if let Ok(owner) = fs::read_to_string(swarm_marker())
            && owner_dead(owner.trim())
            && docker(&["service", "ls", "-q"]).stdout.trim().is_empty()
        {
            say("leaving the swarm a dead test initialised");
            let _ = docker(&["swarm", "leave", "--force"]);
            let _ = fs::remove_file(swarm_marker());
        }
    }
    // Image tags: `corral-orch-ROLE:PID-KIND`.
    for image in docker(&[
        "images",
        "--filter",
        &format!("reference={PREFIX}*"),
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])
    .stdout
    .lines()
    {
        let owner = image
            .rsplit_once(':')
            .and_then(|(_, tag)| tag.split_once('-'))
            .map(|(owner, _)| owner);
        if owner.is_some_and(owner_dead) {
            remove_tag(image);
        }
    }
}

// ---------------------------------------------------------------------------
// The web nodes: running containers, haproxy's running config, their logs

struct Step {
    removed: Vec<String>,
}

/// The web containers that run (by the orchestrator's labels), haproxy's
/// servers, and a `docker logs -f` of every web container seen, from its
/// start (Compose removes what it scales away, with its logs).
struct Nodes {
    ha: String,
    filters: Vec<String>,
    /// Container id -> host name (serf's node name, haproxy's server name).
    names: BTreeMap<String, String>,
    followers: BTreeMap<String, Background>,
    /// Host names running at the last check.
    live: BTreeSet<String>,
}

impl Nodes {
    fn new(ha: String, filters: Vec<String>) -> Nodes {
        Nodes {
            ha,
            filters,
            names: BTreeMap::new(),
            followers: BTreeMap::new(),
            live: BTreeSet::new(),
        }
    }

    /// The host names of the web containers running now; followers for the
    /// new ones.
    fn running(&mut self) -> BTreeSet<String> {
        let mut args = vec!["ps", "-q", "--no-trunc"];
        for filter in &self.filters {
            args.extend(["--filter", filter.as_str()]);
        }
        let ids: Vec<String> = docker(&args).stdout.lines().map(str::to_string).collect();
        let mut live = BTreeSet::new();
        for id in ids {
            if !self.names.contains_key(&id) {
                let host = docker(&["inspect", "--format", "{{.Config.Hostname}}", &id]);
                if host.code != 0 {
                    continue; // gone meanwhile
                }
                let host = host.stdout.trim().to_string();
                // Both streams in one pipe; each keeps its own order.
                self.followers.insert(
                    host.clone(),
                    Background::spawn(Command::new("sh").args([
                        "-c",
                        "exec docker logs -f \"$0\" 2>&1",
                        &id,
                    ])),
                );
                self.names.insert(id.clone(), host);
            }
            if let Some(host) = self.names.get(&id) {
                live.insert(host.clone());
            }
        }
        self.live = live.clone();
        live
    }

    fn live_names(&self) -> Vec<String> {
        self.live.iter().cloned().collect()
    }

    /// The servers of backend `web` in haproxy's running config: its stats
    /// page as CSV (`pxname,svname,...`), asked inside `ha`.
    fn servers(&self) -> Result<BTreeSet<String>, String> {
        let ran = docker(&[
            "exec",
            &self.ha,
            "curl",
            "-fsS",
            "--max-time",
            "2",
            "http://127.0.0.1:8404/;csv",
        ]);
        if ran.code != 0 {
            return Err(format!("stats page: {}", ran.stderr.trim()));
        }
        Ok(web_servers(&ran.stdout).into_iter().collect())
    }

    /// Wait until haproxy's running config has exactly the `n` web nodes
    /// that run; seconds since `since`.
    fn wait_exactly(&mut self, n: usize, since: Instant) -> f64 {
        wait_until(
            &format!("haproxy's running config to have exactly the {n} running web nodes"),
            STEP_TIMEOUT,
            || {
                let running = self.running();
                let servers = self.servers()?;
                if running.len() == n && servers == running {
                    Ok(since.elapsed().as_secs_f64())
                } else {
                    Err(format!(
                        "running {running:?}, haproxy's servers {servers:?}"
                    ))
                }
            },
        )
    }

    /// Scale to `n` with `command` (run in the background): the time until
    /// haproxy's running config has the `n` nodes (new ones in, removed
    /// ones out), the command's time, and which nodes went away.
    fn scale(
        &mut self,
        figures: &mut Figures,
        n: usize,
        command: impl FnOnce() -> Background,
    ) -> Step {
        let before = self.running();
        let t = Instant::now();
        let mut cmd = Pending::new(&format!("scaling to {n}"), command(), t);
        let mut first_out = None;
        let took = wait_until(
            &format!("scaling to {n}: haproxy's running config with {n} web nodes, all running"),
            STEP_TIMEOUT,
            || {
                cmd.poll();
                let running = self.running();
                let servers = self.servers()?;
                if first_out.is_none() && servers.len() < before.len() && n < before.len() {
                    first_out = Some(t.elapsed().as_secs_f64());
                }
                let new_in = servers.difference(&before).count() == n.saturating_sub(before.len());
                if servers.len() == n && new_in && servers.is_subset(&running) {
                    Ok(t.elapsed().as_secs_f64())
                } else {
                    Err(format!(
                        "running {running:?}, haproxy's servers {servers:?}"
                    ))
                }
            },
        );
        let (_, returned) = cmd.finish();
        let settled = self.wait_exactly(n, t);
        let removed: Vec<String> = before.difference(&self.live).cloned().collect();
        if n >= before.len() {
            figures.line(format!(
                "scale {} -> {n}: the new nodes in haproxy's running config after {took:.2}s (the command returned after {returned:.2}s)",
                before.len(),
            ));
        } else {
            figures.line(format!(
                "scale {} -> {n}: the first removed node out of haproxy's running config after {:.2}s, all {} after {took:.2}s (the command returned after {returned:.2}s; no removed node running after {settled:.2}s)",
                before.len(),
                first_out.unwrap_or(took),
                removed.len(),
            ));
        }
        Step { removed }
    }

    /// Wait until the `n` nodes running after an update are all new (none
    /// of `old`), and haproxy has exactly them; seconds since `since`.
    fn wait_replaced(
        &mut self,
        old: &[String],
        n: usize,
        since: Instant,
        mut each: impl FnMut(),
    ) -> f64 {
        wait_until(
            "the update: haproxy's running config with only new nodes, all running",
            STEP_TIMEOUT,
            || {
                each();
                let running = self.running();
                let servers = self.servers()?;
                let fresh = servers.iter().all(|s| !old.contains(s));
                if servers.len() == n && fresh && servers == running {
                    Ok(since.elapsed().as_secs_f64())
                } else {
                    Err(format!(
                        "running {running:?}, haproxy's servers {servers:?}"
                    ))
                }
            },
        )
    }

    /// The nodes `gone` stopped the graceful way: their whole log (the
    /// follower ends with the container) has the pre-stop hook's success,
    /// corral's `pre-stop done` before node's SIGTERM, and corral's exit 0.
    fn check_left_cleanly(&mut self, figures: &mut Figures, gone: &[String]) {
        let mut hooks = Vec::new();
        for name in gone {
            let follower = self
                .followers
                .remove(name)
                .unwrap_or_else(|| panic!("no log followed for {name}"));
            let ran = follower.finish(Duration::from_secs(60));
            let log = format!("{}{}", ran.stdout, ran.stderr);
            let at = |text: &str| {
                log.lines()
                    .position(|l| l.contains(text))
                    .unwrap_or_else(|| panic!("{name}: no {text:?} in its log:\n{log}"))
            };
            // corral's own lines (one stream) in order; the hook's verdict
            // is the web service's output, another stream, whose order
            // relative to corral's the log does not keep.
            let lists = at(&format!("haproxy no longer lists {name}"));
            let done = at("pre-stop done service=web");
            let term = at("stopping service service=web");
            let exit = at("corral exiting code=0");
            at("0 requests served after SIGTERM");
            assert!(
                done < term && term < exit,
                "{name}: pre-stop done, web's stop signal, corral's exit 0 out of order:\n{log}"
            );
            assert!(
                !log.contains("pre-stop failed"),
                "{name}: its pre-stop failed:\n{log}"
            );
            // `leave-haproxy: haproxy no longer lists NAME, 0.06s after the hook began`
            if let Some(secs) = log
                .lines()
                .nth(lists)
                .and_then(|l| l.rsplit_once(", "))
                .and_then(|(_, t)| t.split_once('s'))
                .and_then(|(t, _)| t.parse::<f64>().ok())
            {
                hooks.push(secs);
            }
        }
        hooks.sort_by(f64::total_cmp);
        figures.line(format!(
            "{} node(s) left cleanly (pre-stop until haproxy dropped it, then SIGTERM, exit 0); the hook's wait: {}",
            gone.len(),
            match (hooks.first(), hooks.last()) {
                (Some(a), Some(b)) => format!("{a:.2}-{b:.2}s"),
                _ => "?".to_string(),
            }
        ));
    }

    /// No process in Z state in `ha` or any running web container.
    fn check_zombies(&mut self, figures: &mut Figures) {
        let mut ids = vec![self.ha.clone()];
        self.running();
        ids.extend(
            self.names
                .iter()
                .filter(|(_, host)| self.live.contains(*host))
                .map(|(id, _)| id.clone()),
        );
        let mut zombies = Vec::new();
        for id in &ids {
            let ps = docker_ok(&["exec", id, "ps", "-eo", "stat=,pid=,ppid=,comm="]);
            zombies.extend(
                ps.lines()
                    .filter(|l| l.trim_start().starts_with('Z'))
                    .map(|l| format!("{}: {l}", &id[..12.min(id.len())])),
            );
        }
        figures.line(format!(
            "zombies in {} containers (ha and the running webs): {}",
            ids.len(),
            zombies.len()
        ));
        assert!(zombies.is_empty(), "zombies: {zombies:#?}");
    }
}

// ---------------------------------------------------------------------------
// The client

/// The client, as a node program: `GET URL` every 20 ms, one line per
/// answer, `SENT_MS DONE_MS STATUS BODY` (status 0: no answer, the error
/// as the body).
const CLIENT_JS: &str = r#"
const http = require('http');
const url = process.argv[1];
const began = Date.now();
function one() {
  if (Date.now() - began > MAX_MS) process.exit(0);
  const sent = Date.now();
  let over = false;
  const done = (status, text) => {
    if (over) return;
    over = true;
    const body = String(text).trim().replace(/\s+/g, '_').slice(0, 80) || '-';
    process.stdout.write(sent + ' ' + Date.now() + ' ' + status + ' ' + body + '\n');
    setTimeout(one, PACE_MS);
  };
  const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (chunk) => { body += chunk; });
    res.on('end', () => done(res.statusCode, body));
    res.on('error', (e) => done(0, e.code || e.message));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => done(0, e.code || e.message));
}
one();
"#;

#[derive(Debug)]
struct Sample {
    sent_ms: u64,
    done_ms: u64,
    status: u16,
    body: String,
}

/// The client container, `corral-orch-client-PID-N`, labelled with the
/// test's pid. `Drop` removes it.
struct Client {
    name: String,
}

impl Client {
    fn start(web_image: &str, network: &str) -> Client {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client = Client {
            name: format!("{PREFIX}client-{}-{n}", pid()),
        };
        let script = CLIENT_JS
            .replace("MAX_MS", &CLIENT_MAX_MS.to_string())
            .replace("PACE_MS", &CLIENT_PACE_MS.to_string());
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &client.name,
            "--label",
            &format!("{LABEL}={}", pid()),
            "--network",
            network,
            "--entrypoint",
            "node",
            web_image,
            "-e",
            &script,
            "http://ha/",
        ]);
        client
    }

    fn samples(&self) -> Vec<Sample> {
        let ran = docker(&["logs", &self.name]);
        assert_eq!(ran.code, 0, "docker logs {}: {ran:?}", self.name);
        ran.stdout
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(4, ' ');
                Some(Sample {
                    sent_ms: f.next()?.parse().ok()?,
                    done_ms: f.next()?.parse().ok()?,
                    status: f.next()?.parse().ok()?,
                    body: f.next()?.to_string(),
                })
            })
            .collect()
    }

    /// The samples, once the client has answers to requests sent after
    /// `epoch_ms` (what came before is complete then).
    fn samples_until_after(&self, epoch_ms: u64) -> Vec<Sample> {
        wait_until(
            "the client's answers to catch up",
            Duration::from_secs(30),
            || {
                let samples = self.samples();
                if samples.last().is_some_and(|s| s.sent_ms > epoch_ms) {
                    Ok(samples)
                } else {
                    Err(format!(
                        "{} samples, the last {:?}",
                        samples.len(),
                        samples.last()
                    ))
                }
            },
        )
    }

    /// Wait until every node of `names` has answered a request.
    fn wait_served_by_all(&self, names: &[String]) {
        let since = epoch_ms();
        wait_until(
            &format!("every node of {names:?} to serve a request"),
            STEP_TIMEOUT,
            || {
                let served: BTreeSet<String> = self
                    .samples()
                    .into_iter()
                    .filter(|s| s.sent_ms >= since && s.status == 200)
                    .map(|s| s.body)
                    .collect();
                let missing: Vec<&String> = names.iter().filter(|n| !served.contains(*n)).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not yet: {missing:?}"))
                }
            },
        );
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// The longest a request waited for its answer, in ms.
fn slowest_ms(samples: &[Sample]) -> u64 {
    samples
        .iter()
        .map(|s| s.done_ms.saturating_sub(s.sent_ms))
        .max()
        .unwrap_or(0)
}

/// The requests that did not get a 200, from the first that did on.
fn failed_after_first_success(samples: &[Sample]) -> Vec<&Sample> {
    samples
        .iter()
        .skip_while(|s| s.status != 200)
        .filter(|s| s.status != 200)
        .collect()
}

// ---------------------------------------------------------------------------
// Figures

/// Straight to stderr, past the test harness's capture.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "orchestrators: {text}");
}

struct Figures {
    kind: &'static str,
    lines: Vec<String>,
}

impl Figures {
    fn new(kind: &'static str) -> Figures {
        Figures {
            kind,
            lines: Vec::new(),
        }
    }

    fn line(&mut self, text: String) {
        say(&format!("[{}] {text}", self.kind));
        self.lines.push(text);
    }

    fn publish(&self) {
        let path = repo().join(format!("target/orchestrators-{}.txt", self.kind));
        let _ = fs::write(&path, self.lines.join("\n") + "\n");
        say(&format!("figures written to {}", path.display()));
    }
}
