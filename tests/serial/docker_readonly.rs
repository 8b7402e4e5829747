//! corral as PID 1 as uid 1000 on a read-only root file system, in real
//! containers: what `examples/kubernetes/` claims (`runAsNonRoot`,
//! `readOnlyRootFilesystem`, every capability dropped), tried with
//! `docker run --read-only --user 1000:1000`.
//!
//! - `demo` (Dockerfile.example's default target), four ways, each with
//!   the control socket where corral's fallback rules put it (README,
//!   "Where the socket is"):
//!   - `--tmpfs /run`: Docker gives the tmpfs the image's `/run` mode and
//!     owner (root, 0755), so uid 1000 cannot write it; no
//!     `$XDG_RUNTIME_DIR`; `/tmp` is the read-only root's; Docker's
//!     `/dev/shm` (a sticky tmpfs) is writable:
//!     `/dev/shm/corral-1000/control.sock`;
//!   - the same with `--ipc none` (no `/dev/shm`): nothing is writable.
//!     corral says so and runs every service without a socket; `corral
//!     ctl` says where it looked;
//!   - `--tmpfs /run:uid=1000,gid=1000`: `/run/corral/control.sock` (as a
//!     Kubernetes tmpfs emptyDir, mode 1777, gives it);
//!   - `--tmpfs /run --tmpfs /tmp`: `/tmp/corral-1000/control.sock`;
//!
//!   and each time: the services start and run (as uid 1000), `docker diff`
//!   is empty, no zombie, `docker stop` ends it with exit code 0 within
//!   its grace period;
//! - `ha` and `web` of examples/haproxy-serf/, as `examples/kubernetes/`
//!   runs them: `/etc/haproxy` a copy made by ha.yaml's init step, haproxy
//!   on port 80 through the pod sysctl `net.ipv4.ip_unprivileged_port_start`,
//!   haproxy's syslog on `/run/syslog.sock`, `--http 0.0.0.0:9000`: ha
//!   balances to web, `/healthz` and `/readyz` answer 200, `ctl health`
//!   passes, and web's graceful stop (its pre-stop hook) works read-only.
//!
//! Containers, networks and images carry the label `org.corral.readonly=PID`
//! and unique names; a guard removes them, also when the test fails (first
//! printing the containers' output); ones left by a test process that no
//! longer exists are removed at the start. Where Docker is absent, the tests
//! say so and do nothing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{TestDir, on_path, run_within, serial, wait_until};
use crate::docker_common::{
    Leftover, STOP_GRACE, corral_release, docker, docker_ok, docker_usable, repo, sweep_dead,
};

const LABEL: &str = "org.corral.readonly";
/// From `docker run` to the services up: generous, for a loaded machine; a
/// passing wait ends as soon as its condition holds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
const UID: &str = "1000";

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "docker_readonly: {text}");
}

/// `Some(reason)` where Docker is absent: the only case these tests skip.
fn docker_absent() -> Option<String> {
    if !on_path("docker") {
        return Some("no docker command on PATH".to_string());
    }
    docker_usable().err()
}

#[test]
fn demo_runs_as_uid_1000_on_a_read_only_root() {
    let _serial = serial();
    if let Some(why) = docker_absent() {
        say(&format!("skipped: Docker is absent ({why})"));
        return;
    }
    let mut lab = Lab::new("demo");
    let image = lab.build("demo");
    for (case, flags, socket) in [
        (
            "tmpfs-run",
            vec!["--tmpfs", "/run"],
            Some("/dev/shm/corral-1000/control.sock"),
        ),
        ("no-shm", vec!["--tmpfs", "/run", "--ipc", "none"], None),
        (
            "run-uid",
            vec!["--tmpfs", "/run:uid=1000,gid=1000"],
            Some("/run/corral/control.sock"),
        ),
        (
            "tmpfs-tmp",
            vec!["--tmpfs", "/run", "--tmpfs", "/tmp"],
            Some("/tmp/corral-1000/control.sock"),
        ),
    ] {
        let name = lab.run(case, &flags, &image, &[]);
        // Services start and run: setup (a oneshot) before ticker, and
        // ticker ticks (its lines are in the container's output).
        wait_until(
            &format!("{case}: ticker's second tick"),
            BOOT_TIMEOUT,
            || {
                let logs = lab.logs(&name);
                if logs.contains("ticker | tick 2") && logs.contains("oneshot done service=setup") {
                    Ok(())
                } else {
                    Err(logs)
                }
            },
        );
        let run_mode = lab.exec_ok(&name, &["stat", "-c", "%a %u", "/run"]);
        match socket {
            None => {
                assert_eq!(
                    run_mode.trim(),
                    "755 0",
                    "{case}: Docker's tmpfs /run (the image's mode and owner)"
                );
                let logs = lab.logs(&name);
                assert!(
                    logs.contains("no writable directory for the control socket")
                        && logs.contains("/run/corral/control.sock")
                        && logs.contains("/tmp/corral-1000/control.sock")
                        && logs.contains("/dev/shm/corral-1000/control.sock"),
                    "{case}: corral does not say it runs without a socket, and where it looked:\n{logs}"
                );
                let ctl = lab.exec(&name, &["corral", "ctl", "status"]);
                assert!(
                    ctl.code == 1 && ctl.stderr.contains("no control socket found"),
                    "{case}: corral ctl status without a socket: {ctl:?}"
                );
            }
            Some(path) => {
                let status =
                    wait_until(&format!("{case}: corral ctl status"), BOOT_TIMEOUT, || {
                        let ran = lab.exec(&name, &["corral", "ctl", "status"]);
                        if ran.code == 0 && ran.stdout.contains("ticker") {
                            Ok(ran.stdout)
                        } else {
                            Err(format!("{ran:?}"))
                        }
                    });
                for service in ["setup", "flaky", "ticker", "report"] {
                    assert!(status.contains(service), "{case}: no {service}:\n{status}");
                }
                // The socket is where the rules put it (found by ctl, and
                // there), in a 0700 directory of uid 1000.
                let dir = path.trim_end_matches("/control.sock");
                let stat = lab.exec_ok(&name, &["stat", "-c", "%n %F %a %u", dir, path]);
                assert_eq!(
                    stat.trim(),
                    format!("{dir} directory 700 {UID}\n{path} socket 600 {UID}"),
                    "{case}: the socket's place"
                );
                let logs = lab.logs(&name);
                assert!(
                    logs.contains(&format!("control socket listening path={path}")),
                    "{case}: corral's log names another socket:\n{logs}"
                );
            }
        }
        lab.check_running_clean(&name);
        let took = lab.stop(&name);
        say(&format!(
            "demo, {case} ({}): services up, socket {}, docker diff empty, no zombie, \
             docker stop {:.0} ms, exit 0",
            flags.join(" "),
            socket.unwrap_or("none (as the rules say)"),
            took.as_secs_f64() * 1000.0
        ));
    }
}

/// ha.yaml's init container: a copy of the image's /etc/haproxy, haproxy's
/// log pointed at corral's syslog socket on /run. The same text as there
/// (checked below), run the same way: read-only root, uid 1000.
const HA_INIT: &str = "cp -R /etc/haproxy/. /mnt/haproxy/ && \
    sed -i 's#^\\( *log\\) /dev/log #\\1 /run/syslog.sock #' /mnt/haproxy/haproxy.cfg.in && \
    grep -q '^ *log /run/syslog.sock ' /mnt/haproxy/haproxy.cfg.in";

#[test]
fn ha_and_web_run_as_uid_1000_on_a_read_only_root() {
    let _serial = serial();
    if let Some(why) = docker_absent() {
        say(&format!("skipped: Docker is absent ({why})"));
        return;
    }
    let manifest = fs::read_to_string(repo().join("examples/kubernetes/ha.yaml")).unwrap();
    for part in [
        "cp -R /etc/haproxy/. /mnt/haproxy/ &&",
        "sed -i 's#^\\( *log\\) /dev/log #\\1 /run/syslog.sock #'",
        "grep -q '^ *log /run/syslog.sock ' /mnt/haproxy/haproxy.cfg.in",
        "value: /run/syslog.sock",
        "name: net.ipv4.ip_unprivileged_port_start",
        "args: [\"--http\", \"0.0.0.0:9000\", \"--shutdown-timeout\", \"9s\"]",
    ] {
        assert!(
            manifest.contains(part),
            "examples/kubernetes/ha.yaml no longer has {part:?}: update this test"
        );
    }
    let mut lab = Lab::new("haweb");
    let ha_image = lab.build("ha");
    let web_image = lab.build("web");
    let network = lab.network();

    // The emptyDir of /etc/haproxy: a directory of mode 0777, as the
    // kubelet makes it, filled by the init step.
    let etc_haproxy = lab.scratch.join("etc-haproxy");
    fs::create_dir(&etc_haproxy).unwrap();
    fs::set_permissions(&etc_haproxy, fs::Permissions::from_mode(0o777)).unwrap();
    let mount = format!("{}:/mnt/haproxy", etc_haproxy.display());
    let init = docker(&[
        "run",
        "--rm",
        "--read-only",
        "--user",
        "1000:1000",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--label",
        &label(),
        "-v",
        &mount,
        "--entrypoint",
        "/bin/sh",
        &ha_image,
        "-c",
        HA_INIT,
    ]);
    assert_eq!(init.code, 0, "ha's init step: {init:?}");

    let corral_args = ["--http", "0.0.0.0:9000", "--shutdown-timeout", "9s"];
    let common = [
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--network",
        &network,
        "--tmpfs",
        "/run:uid=1000,gid=1000",
    ];
    let etc = format!("{}:/etc/haproxy", etc_haproxy.display());
    let mut ha_flags: Vec<&str> = common.to_vec();
    ha_flags.extend([
        "--hostname",
        "ha",
        "--network-alias",
        "ha",
        "--tmpfs",
        "/tmp",
        "-v",
        &etc,
        "-e",
        "CORRAL_SYSLOG=/run/syslog.sock",
        "--sysctl",
        "net.ipv4.ip_unprivileged_port_start=80",
    ]);
    let ha = lab.run("ha", &ha_flags, &ha_image, &corral_args);
    let mut web_flags: Vec<&str> = common.to_vec();
    web_flags.extend(["--hostname", "web1"]);
    let web = lab.run("web1", &web_flags, &web_image, &corral_args);

    for name in [&ha, &web] {
        wait_until(&format!("{name}: corral ctl health"), BOOT_TIMEOUT, || {
            let ran = lab.exec(name, &["corral", "ctl", "health"]);
            if ran.code == 0 {
                Ok(())
            } else {
                Err(format!("{ran:?}"))
            }
        });
        // The probes of examples/kubernetes/, from inside the container.
        for path in ["/healthz", "/readyz"] {
            let url = format!("http://127.0.0.1:9000{path}");
            let code = lab.exec_ok(
                name,
                &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &url],
            );
            assert_eq!(code.trim(), "200", "{name}: GET {path}");
        }
        let socket = lab.exec_ok(name, &["stat", "-c", "%F %u", "/run/corral/control.sock"]);
        assert_eq!(
            socket.trim(),
            format!("socket {UID}"),
            "{name}: the control socket"
        );
    }
    // haproxy, as uid 1000 on port 80, sends requests to web1, once serf
    // has brought it in.
    wait_until("haproxy on :80 to answer from web1", BOOT_TIMEOUT, || {
        let ran = lab.exec(
            &ha,
            &["curl", "-s", "--max-time", "2", "http://127.0.0.1:80/"],
        );
        if ran.code == 0 && ran.stdout.trim() == "web1" {
            Ok(())
        } else {
            Err(format!("{ran:?}"))
        }
    });
    // haproxy's syslog messages reach corral on /run/syslog.sock.
    wait_until("a syslog line from haproxy", BOOT_TIMEOUT, || {
        let logs = lab.logs(&ha);
        if logs.contains("syslog | haproxy[") {
            Ok(())
        } else {
            Err(logs)
        }
    });
    lab.check_running_clean(&ha);
    lab.check_running_clean(&web);

    // web's graceful stop: serf leaves, the pre-stop hook sees haproxy drop
    // the node, node stops; exit 0.
    let took = lab.stop(&web);
    let logs = lab.logs(&web);
    assert!(
        logs.contains("leave-haproxy: haproxy no longer lists web1")
            && logs.contains("pre-stop done service=web")
            && logs.contains("corral exiting code=0"),
        "web1's stop did not drain through its pre-stop hook:\n{logs}"
    );
    say(&format!(
        "web: read-only, uid 1000: healthy, balanced to by ha, docker diff empty, no zombie; \
         docker stop {:.0} ms through the pre-stop hook, exit 0",
        took.as_secs_f64() * 1000.0
    ));
    let took = lab.stop(&ha);
    say(&format!(
        "ha: read-only, uid 1000, port 80 by the sysctl, syslog on /run: docker stop {:.0} ms, exit 0",
        took.as_secs_f64() * 1000.0
    ));
}

fn label() -> String {
    format!("{LABEL}={}", std::process::id())
}

/// The images, containers and network of one test; `Drop` removes them
/// (printing the containers' output first when the test failed).
struct Lab {
    prefix: String,
    images: Vec<String>,
    containers: Vec<String>,
    networks: Vec<String>,
    scratch: TestDir,
}

impl Lab {
    fn new(test: &str) -> Lab {
        sweep_dead(
            LABEL,
            &[Leftover::Containers, Leftover::Networks, Leftover::Images],
        );
        Lab {
            prefix: format!("corral-ro-{}-{test}", std::process::id()),
            images: Vec::new(),
            containers: Vec::new(),
            networks: Vec::new(),
            scratch: TestDir::new(&format!("readonly-{test}")),
        }
    }

    /// Dockerfile.example's `target`, on the local base, with the corral
    /// of this tree.
    fn build(&mut self, target: &str) -> String {
        let binary = corral_release();
        assert!(binary.exists(), "no {}", binary.display());
        let image = format!("{}-{target}:test", self.prefix);
        // Pushed first: the guard must try, whatever happens.
        self.images.push(image.clone());
        let built = run_within(
            Command::new("docker")
                .args(["build", "-q", "--force-rm", "-f", "Dockerfile.example"])
                .args(["--target", target, "--label", &label()])
                .args(["--build-arg", "RUST_IMAGE=corral-base:bookworm"])
                .args(["--build-arg", "BASE_IMAGE=corral-base:bookworm"])
                .args(["--build-arg", "CORRAL_BINARY=target/release/corral"])
                .args(["-t", &image, "."])
                .current_dir(repo()),
            Duration::from_secs(900),
        );
        assert_eq!(
            built.code, 0,
            "docker build --target {target} failed (is corral-base:bookworm built? \
             docker/build-base.sh):\n{}{}",
            built.stdout, built.stderr
        );
        image
    }

    fn network(&mut self) -> String {
        let name = format!("{}-net", self.prefix);
        self.networks.push(name.clone());
        docker_ok(&["network", "create", "--label", &label(), &name]);
        name
    }

    /// `docker run -d --read-only --user 1000:1000 FLAGS IMAGE ARGS`.
    fn run(&mut self, name: &str, flags: &[&str], image: &str, args: &[&str]) -> String {
        let container = format!("{}-{name}", self.prefix);
        self.containers.push(container.clone());
        let label = label();
        let mut argv = vec![
            "run",
            "-d",
            "--name",
            &container,
            "--label",
            &label,
            "--read-only",
            "--user",
            "1000:1000",
        ];
        argv.extend_from_slice(flags);
        argv.push(image);
        argv.extend_from_slice(args);
        docker_ok(&argv);
        container
    }

    fn exec(&self, container: &str, cmd: &[&str]) -> crate::common::Ran {
        let mut argv = vec!["exec", container];
        argv.extend_from_slice(cmd);
        docker(&argv)
    }

    fn exec_ok(&self, container: &str, cmd: &[&str]) -> String {
        let ran = self.exec(container, cmd);
        assert_eq!(ran.code, 0, "docker exec {container} {cmd:?}: {ran:?}");
        ran.stdout
    }

    fn logs(&self, container: &str) -> String {
        let ran = docker(&["logs", container]);
        format!("{}{}", ran.stdout, ran.stderr)
    }

    /// While it runs: every process is uid 1000's, no zombie (reaped
    /// within a few seconds: flaky crashes every 3 s), nothing written
    /// outside the tmpfs mounts (`docker diff` empty), and no complaint
    /// of a read-only file system or a denied permission in its output.
    fn check_running_clean(&self, container: &str) {
        let table = self.exec_ok(container, &["ps", "-eo", "pid,uid,stat,cmd"]);
        let foreign: Vec<&str> = table
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().nth(1) != Some(UID))
            .collect();
        assert!(
            foreign.is_empty(),
            "{container}: processes not of uid {UID}:\n{table}"
        );
        wait_until(
            &format!("no zombie in {container}"),
            Duration::from_secs(10),
            || {
                let table = self.exec_ok(container, &["ps", "-eo", "pid,ppid,stat,cmd"]);
                let zombies = table
                    .lines()
                    .skip(1)
                    .filter(|l| {
                        l.split_whitespace()
                            .nth(2)
                            .is_some_and(|s| s.starts_with('Z'))
                    })
                    .count();
                if zombies == 0 { Ok(()) } else { Err(table) }
            },
        );
        let diff = docker_ok(&["diff", container]);
        assert!(diff.trim().is_empty(), "{container}: docker diff:\n{diff}");
        let logs = self.logs(container);
        for bad in ["Read-only file system", "Permission denied", "ERROR"] {
            assert!(
                !logs.contains(bad),
                "{container}: {bad:?} in its output:\n{logs}"
            );
        }
    }

    /// `docker stop`: exit code 0 within the grace period, no process
    /// killed by corral's shutdown deadline.
    fn stop(&self, container: &str) -> Duration {
        let at = Instant::now();
        docker_ok(&["stop", "-t", &STOP_GRACE.as_secs().to_string(), container]);
        let took = at.elapsed();
        let code = docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", container]);
        let logs = self.logs(container);
        assert!(
            took < STOP_GRACE && code.trim() == "0",
            "{container}: docker stop took {took:?} (grace {STOP_GRACE:?}), exit code {}\n{logs}",
            code.trim()
        );
        assert!(
            logs.contains("corral exiting code=0") && !logs.contains("killed=true"),
            "{container}: not a clean shutdown:\n{logs}"
        );
        took
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for container in &self.containers {
            if thread::panicking() {
                let logs = self.logs(container);
                let tail: Vec<&str> = logs.lines().rev().take(60).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                say(&format!(
                    "{container}, the last lines:\n{}",
                    tail.join("\n")
                ));
            }
            let _ = docker(&["rm", "-f", "-v", container]);
        }
        for network in &self.networks {
            let _ = docker(&["network", "rm", network]);
        }
        for image in &self.images {
            let _ = docker(&["rmi", "-f", image]);
        }
    }
}
