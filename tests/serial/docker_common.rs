//! What the Docker tests (`docker_e2e`, `docker_s6v3`, `orchestrators`)
//! share: the repo, a release build of corral for their images (once per
//! test process), the local base image and the example's images built on
//! it, the `docker` command with a deadline, and the test process a label
//! names.
//!
//! What it must never do: leave a process running (every command runs
//! within a deadline), or decide anything about a scenario.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::common::{Ran, run_within};

/// How long one docker command may take (a `docker stop` is up to 10 s).
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
/// `docker stop`'s grace period before SIGKILL (its default).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Once per test process: a fresh release build of corral for the images.
pub fn corral_release() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let build = run_within(
            Command::new(cargo)
                .args(["build", "--release", "--locked", "--bin", "corral"])
                .current_dir(repo()),
            Duration::from_secs(1200),
        );
        if build.code != 0 {
            return Err(format!("cargo build --release failed: {}", build.stderr));
        }
        // Straight to stderr, past the test harness's capture.
        let _ = writeln!(
            std::io::stderr(),
            "docker: cargo build --release: {:.1}s",
            build.took.as_secs_f64()
        );
        Ok(())
    });
    if let Err(why) = result {
        panic!("{why}");
    }
    repo().join("target/release/corral")
}

/// `Ok` when `docker info` answers; else why not.
pub fn docker_usable() -> Result<(), String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "docker info failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("no docker command: {e}")),
    }
}

pub fn docker(args: &[&str]) -> Ran {
    run_within(Command::new("docker").args(args), DOCKER_TIMEOUT)
}

/// `docker ARGS`, which must succeed: its stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let ran = docker(args);
    assert_eq!(
        ran.code, 0,
        "docker {args:?} failed: {}{}",
        ran.stderr, ran.stdout
    );
    ran.stdout
}

/// True when `owner`, a label's value, is the pid of a process that no
/// longer exists (its test process was killed before its guard ran).
pub fn owner_dead(owner: &str) -> bool {
    owner
        .parse::<u32>()
        .map(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .unwrap_or(false)
}

/// `docker/build-base.sh ARGS`: its stdout, once per test process and args.
pub fn build_base(args: &[&str]) -> String {
    static RUNS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let key = args.join(" ");
    let mut runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, out)) = runs.iter().find(|(k, _)| *k == key) {
        return out.clone();
    }
    let ran = run_within(
        Command::new("bash")
            .arg(repo().join("docker/build-base.sh"))
            .args(args)
            .current_dir(repo()),
        Duration::from_secs(1200),
    );
    let _ = writeln!(
        std::io::stderr(),
        "docker: docker/build-base.sh{}{key} ({:.1}s):\n{}",
        if key.is_empty() { "" } else { " " },
        ran.took.as_secs_f64(),
        ran.stderr.trim()
    );
    assert_eq!(ran.code, 0, "docker/build-base.sh {key} failed: {ran:?}");
    let out = ran.stdout.trim().to_string();
    runs.push((key, out.clone()));
    out
}

/// `docker build` of `target` (`ha`, `web`) of Dockerfile.example in
/// `variant` (`toml`, `s6`), on the local base with the release build of
/// corral, tagged `tag`.
pub fn build_example(target: &str, variant: &str, tag: &str) {
    build_base(&[]);
    let binary = corral_release();
    assert!(binary.exists(), "no {}", binary.display());
    let built = run_within(
        Command::new("docker")
            .args(["build", "-q", "-f", "Dockerfile.example"])
            .args(["--target", target])
            .args(["--build-arg", "RUST_IMAGE=corral-base:bookworm"])
            .args(["--build-arg", "BASE_IMAGE=corral-base:bookworm"])
            .args(["--build-arg", "CORRAL_BINARY=target/release/corral"])
            .args(["--build-arg", &format!("VARIANT={variant}")])
            .args(["-t", tag, "."])
            .current_dir(repo()),
        Duration::from_secs(600),
    );
    assert_eq!(
        built.code, 0,
        "docker build --target {target} failed:\n{}",
        built.stderr
    );
}

/// What `sweep_dead` removes.
#[derive(Clone, Copy)]
pub enum Leftover {
    Containers,
    Networks,
    Images,
}

/// Docker objects of each kind in `kinds` labelled `label` by a test
/// process that no longer exists (killed before its guard ran) are removed.
pub fn sweep_dead(label: &str, kinds: &[Leftover]) {
    let filter = format!("label={label}");
    let format = format!("{{{{.ID}}}} {{{{.Label \"{label}\"}}}}");
    for &kind in kinds {
        let (list, remove): (&[&str], &[&str]) = match kind {
            Leftover::Containers => (&["ps", "-a"], &["rm", "-f", "-v"]),
            Leftover::Networks => (&["network", "ls"], &["network", "rm"]),
            Leftover::Images => {
                sweep_dead_images(label, &filter);
                continue;
            }
        };
        let mut args = list.to_vec();
        args.extend(["--filter", &filter, "--format", &format]);
        for line in docker(&args).stdout.lines() {
            if let Some((id, owner)) = line.split_once(' ')
                && owner_dead(owner)
            {
                let mut args = remove.to_vec();
                args.push(id);
                let _ = docker(&args);
            }
        }
    }
}

/// `docker images` cannot print a label: each image's is read by inspect.
fn sweep_dead_images(label: &str, filter: &str) {
    let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
    let mut ids: Vec<String> = docker(&["images", "-q", "--filter", filter])
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let owner = docker(&["image", "inspect", "--format", &format, &id]).stdout;
        if owner_dead(owner.trim()) {
            let _ = docker(&["rmi", "-f", &id]);
        }
    }
}

/// The servers of backend `web` in haproxy's stats page as CSV (one
/// `web,NAME,...` line each, besides its FRONTEND and BACKEND lines).
pub fn web_servers(csv: &str) -> Vec<String> {
    csv.lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            match (f.next(), f.next()) {
                (Some("web"), Some(sv)) if sv != "FRONTEND" && sv != "BACKEND" => {
                    Some(sv.to_string())
                }
                _ => None,
            }
        })
        .collect()
}
