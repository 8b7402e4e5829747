//! The Kubernetes manifests of `examples/kubernetes/`, checked offline (no
//! cluster here): against the API's schemas with `kubernetes-validate
//! --strict` (PyPI), and against what no schema knows: corral's own options
//! in the containers' args, the images' service files, Dockerfile.example.
//!
//! - every probe asks corral: an exec probe runs `corral ctl health`, an
//!   HTTP probe asks `/healthz` or `/readyz` on the port of corral's `--http`;
//! - `terminationGracePeriodSeconds` covers Kubernetes' preStop and corral's
//!   `--shutdown-timeout`, and that covers the services' `stop-timeout`s
//!   one after another (the worst case of a dependency chain);
//! - images are named as Dockerfile.example's comments build them;
//! - non-root, read-only root, no capability, no privilege escalation, and
//!   /run a tmpfs emptyDir (where a non-root corral can put its socket);
//! - the names the images hard-code (`-retry-join=ha`, `http://ha:8404/`)
//!   are the headless Service's.
//!
//! Needs `kubernetes-validate` on PATH and PyYAML (its dependency) for
//! `python3`: `pip install kubernetes-validate==1.37.0`. Missing, the tests
//! fail saying so.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

const PIP: &str = "pip install kubernetes-validate==1.37.0";

/// The Kubernetes versions validated against: the package's newest, and an
/// older one the manifests are meant to work with (the pod sysctl
/// `net.ipv4.ip_unprivileged_port_start` is safe from 1.22 on).
const VERSIONS: [&str; 2] = ["1.37.0", "1.27.0"];

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(example())
        .expect("examples/kubernetes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "expected the manifests of ha and web in examples/kubernetes, found {files:?}"
    );
    files
}

fn require_validator() {
    assert!(
        on_path("kubernetes-validate"),
        "kubernetes-validate is not installed: this test needs the real program \
         ({PIP}; CI's .ci/run installs it)"
    );
}

fn validate(files: &[PathBuf], version: &str) -> Ran {
    run_within(
        Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", version])
            .args(files),
        Duration::from_secs(120),
    )
}

#[test]
fn kubernetes_validate_strict_passes_every_manifest() {
    require_validator();
    let files = manifests();
    for version in VERSIONS {
        let ran = validate(&files, version);
        assert_eq!(
            ran.code, 0,
            "kubernetes-validate --strict -k {version} failed:\n{}{}",
            ran.stdout, ran.stderr
        );
        // One "passed" line per resource: nothing was skipped.
        let resources: usize = documents().iter().map(|(_, docs)| docs.len()).sum();
        let passed = format!("{}{}", ran.stdout, ran.stderr)
            .lines()
            .filter(|l| l.contains(" passed for resource "))
            .count();
        assert_eq!(
            passed, resources,
            "-k {version}: {resources} resources, {passed} passed:\n{}{}",
            ran.stdout, ran.stderr
        );
    }
    // And --strict does reject what it should: a misspelt field of a copy.
    let dir = TestDir::new("k8s-strict");
    let web = fs::read_to_string(example().join("web.yaml")).expect("web.yaml");
    let bad = web.replacen(
        "terminationGracePeriodSeconds:",
        "terminationGracePeriodSecond:",
        1,
    );
    assert_ne!(bad, web, "web.yaml has no terminationGracePeriodSeconds");
    let copy = dir.join("web.yaml");
    fs::write(&copy, bad).expect("write the copy");
    let ran = validate(&[copy], VERSIONS[0]);
    assert_ne!(
        ran.code, 0,
        "kubernetes-validate --strict accepted an unknown field:\n{}{}",
        ran.stdout, ran.stderr
    );
    assert!(
        format!("{}{}", ran.stdout, ran.stderr).contains("terminationGracePeriodSecond"),
        "the rejection does not name the field:\n{}{}",
        ran.stdout,
        ran.stderr
    );
}

/// Every manifest's documents, as JSON (PyYAML does the YAML).
fn documents() -> Vec<(String, Vec<Value>)> {
    let files = manifests();
    let script = "import json, sys, yaml\n\
                  json.dump([[d for d in yaml.safe_load_all(open(f)) if d is not None] \
                  for f in sys.argv[1:]], sys.stdout)";
    let ran = run_within(
        Command::new("python3").args(["-c", script]).args(&files),
        Duration::from_secs(60),
    );
    assert_eq!(
        ran.code, 0,
        "python3 could not read the manifests as YAML (PyYAML comes with \
         kubernetes-validate: {PIP}):\n{}",
        ran.stderr
    );
    let parsed: Vec<Vec<Value>> = serde_json::from_str(&ran.stdout).expect("python's JSON");
    files
        .iter()
        .map(|f| f.file_name().expect("name").to_string_lossy().into_owned())
        .zip(parsed)
        .collect()
}

/// `v[key]...` along `path` (dot-separated), or a failure naming `what`
/// and the path.
fn at<'a>(v: &'a Value, path: &str, what: &str) -> &'a Value {
    path.split('.').fold(v, |v, key| match v.get(key) {
        Some(next) => next,
        None => panic!("{what}: no {path} (missing {key:?})"),
    })
}

fn text<'a>(v: &'a Value, path: &str, what: &str) -> &'a str {
    at(v, path, what)
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {path} is not a string"))
}

fn list<'a>(v: &'a Value, path: &str, what: &str) -> &'a Vec<Value> {
    at(v, path, what)
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {path} is not a list"))
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: not a list"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what}: {s} is not a string"))
                .to_string()
        })
        .collect()
}

/// Seconds of a duration as corral writes them: `9s`, `500ms`, `1m30s`.
fn seconds(text: &str) -> f64 {
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let n: f64 = number
            .parse()
            .unwrap_or_else(|_| panic!("duration {text:?}"));
        number.clear();
        total += match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                n / 1000.0
            }
            'h' => n * 3600.0,
            'm' => n * 60.0,
            's' => n,
            _ => panic!("duration {text:?}: unit {c:?}"),
        };
    }
    assert!(number.is_empty(), "duration {text:?} has no unit");
    total
}

/// The value after `--NAME` in corral's args (also `--NAME=VALUE`).
fn option<'a>(args: &'a [String], name: &str, what: &str) -> &'a str {
    let flag = format!("--{name}");
    let eq = format!("--{name}=");
    args.iter()
        .enumerate()
        .find_map(|(i, a)| {
            if *a == flag {
                args.get(i + 1).map(String::as_str)
            } else {
                a.strip_prefix(&eq)
            }
        })
        .unwrap_or_else(|| panic!("{what}: no {flag} in args {args:?}"))
}

/// `stop-timeout = "…"` of a service file (corral's default 10s if none),
/// read line by line: these files set it on a line of its own.
fn stop_timeout(toml: &str) -> f64 {
    toml.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find_map(|l| {
            let value = l.strip_prefix("stop-timeout")?.trim().strip_prefix('=')?;
            Some(seconds(value.trim().trim_matches('"')))
        })
        .unwrap_or(10.0)
}

/// Dockerfile.example's comments: `--target TARGET  -t IMAGE` per target.
fn image_names() -> BTreeMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Dockerfile.example");
    let text = fs::read_to_string(&path).expect("Dockerfile.example");
    let mut names = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
        };
        if let (Some(target), Some(image)) = (after("--target"), after("-t")) {
            names.insert(target.to_string(), image.to_string());
        }
    }
    assert!(
        names.contains_key("ha") && names.contains_key("web"),
        "Dockerfile.example names no image for ha and web: {names:?}"
    );
    names
}

struct Pod<'a> {
    what: String,
    /// Deployment (or StatefulSet) name: the Dockerfile.example target.
    name: String,
    spec: &'a Value,
}

fn pods(docs: &[(String, Vec<Value>)]) -> Vec<Pod<'_>> {
    docs.iter()
        .flat_map(|(file, docs)| docs.iter().map(move |d| (file, d)))
        .filter(|(_, d)| {
            matches!(
                d.get("kind").and_then(Value::as_str),
                Some("Deployment" | "StatefulSet")
            )
        })
        .map(|(file, d)| {
            let name = text(d, "metadata.name", file).to_string();
            let what = format!("{file}: {} {name}", text(d, "kind", file));
            let spec = at(d, "spec.template.spec", &what);
            Pod { what, name, spec }
        })
        .collect()
}

fn find<'a>(docs: &'a [(String, Vec<Value>)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .flat_map(|(_, docs)| docs.iter())
        .find(|d| {
            d.get("kind").and_then(Value::as_str) == Some(kind)
                && d.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in examples/kubernetes"))
}

/// The port a probe names (a number, or a container port's name).
fn port_number(port: &Value, container: &Value, what: &str) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port
        .as_str()
        .unwrap_or_else(|| panic!("{what}: port {port}"));
    list(container, "ports", what)
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
        .unwrap_or_else(|| panic!("{what}: no container port named {name:?}"))
}

/// Seconds Kubernetes' preStop may take: `sleep N` as exec or as the sleep
/// action; none: 0. Any other preStop would have to be timed by hand.
fn pre_stop_seconds(container: &Value, what: &str) -> f64 {
    let Some(pre_stop) = container.pointer("/lifecycle/preStop") else {
        return 0.0;
    };
    if let Some(s) = pre_stop.pointer("/sleep/seconds").and_then(Value::as_f64) {
        return s;
    }
    let command = strings(at(pre_stop, "exec.command", what), what);
    match command.as_slice() {
        [sleep, n] if sleep == "sleep" || sleep == "/bin/sleep" => seconds(&format!("{n}s")),
        _ => panic!(
            "{what}: a preStop other than `sleep N` ({command:?}): \
             this test cannot tell how long it takes"
        ),
    }
}

/// The image's service files (TOML variant), with the ones the manifests
/// replace (a ConfigMap mounted over a file, by subPath) replaced.
fn service_files(
    pod: &Pod,
    container: &Value,
    docs: &[(String, Vec<Value>)],
) -> BTreeMap<String, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "examples/haproxy-serf/toml/{}/etc/corral/services.d",
        pod.name
    ));
    let mut files: BTreeMap<String, String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, fs::read_to_string(&p).expect("service file"))
        })
        .collect();
    for mount in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = text(mount, "mountPath", &pod.what);
        let Some(file) = path.strip_prefix("/etc/corral/services.d/") else {
            continue;
        };
        let volume = text(mount, "name", &pod.what);
        let key = text(mount, "subPath", &pod.what);
        let map = list(pod.spec, "volumes", &pod.what)
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(volume))
            .and_then(|v| v.pointer("/configMap/name"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: {path} is not from a ConfigMap", pod.what));
        let config = find(docs, "ConfigMap", map);
        // By hand: the key has a dot, which `at` would split.
        let contents = config
            .get("data")
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("ConfigMap {map} has no data key {key:?}"));
        files.insert(file.to_string(), contents.to_string());
    }
    files
}

#[test]
fn manifests_agree_with_corral_the_images_and_dockerfile_example() {
    let docs = documents();
    let images = image_names();
    let pods = pods(&docs);
    let mut names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["ha", "web"], "the workloads of examples/kubernetes");
    for pod in &pods {
        let what = &pod.what;
        let spec = pod.spec;
        assert_eq!(
            spec.pointer("/securityContext/runAsNonRoot"),
            Some(&Value::Bool(true)),
            "{what}: securityContext.runAsNonRoot"
        );
        let uid = at(spec, "securityContext.runAsUser", what).as_u64();
        assert!(uid.is_some_and(|u| u > 0), "{what}: runAsUser {uid:?}");
        let grace = at(spec, "terminationGracePeriodSeconds", what)
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: terminationGracePeriodSeconds"));

        let mut all = list(spec, "containers", what).clone();
        if let Some(init) = spec.get("initContainers").and_then(Value::as_array) {
            all.extend(init.iter().cloned());
        }
        for c in &all {
            let what = format!("{what}, container {}", text(c, "name", what));
            let sc = at(c, "securityContext", &what);
            for (key, want) in [
                ("readOnlyRootFilesystem", true),
                ("allowPrivilegeEscalation", false),
            ] {
                assert_eq!(
                    sc.get(key),
                    Some(&Value::Bool(want)),
                    "{what}: securityContext.{key}"
                );
            }
            assert_eq!(
                strings(at(sc, "capabilities.drop", &what), &what),
                ["ALL"],
                "{what}: capabilities.drop"
            );
            assert!(
                sc.pointer("/capabilities/add").is_none(),
                "{what}: capabilities.add (a non-root process loses them at exec)"
            );
            let image = text(c, "image", &what);
            let repo = image.split(':').next().unwrap_or(image);
            assert_eq!(
                Some(repo),
                images.get(&pod.name).map(String::as_str),
                "{what}: image {image}, but Dockerfile.example builds --target {} as {:?}",
                pod.name,
                images.get(&pod.name)
            );
        }

        let containers = list(spec, "containers", what);
        assert_eq!(containers.len(), 1, "{what}: one container, corral's");
        let c = &containers[0];
        let what = format!("{what}, container {}", text(c, "name", what));
        assert!(
            c.get("command").is_none(),
            "{what}: a command replaces the image's ENTRYPOINT, corral"
        );
        let args = strings(at(c, "args", &what), &what);
        let http = option(&args, "http", &what);
        let (host, port) = http
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{what}: --http {http}"));
        assert!(
            host.is_empty() || host == "0.0.0.0",
            "{what}: --http {http}: the kubelet probes the pod's IP, not loopback"
        );
        let http_port: u64 = port
            .parse()
            .unwrap_or_else(|_| panic!("{what}: --http {http}"));
        let shutdown = seconds(option(&args, "shutdown-timeout", &what));

        // Probes: exec ones run `corral ctl health`, HTTP ones ask corral.
        let mut paths = Vec::new();
        let mut execs = 0;
        for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let Some(probe) = c.get(kind) else { continue };
            let what = format!("{what}, {kind}");
            if let Some(exec) = probe.get("exec") {
                assert_eq!(
                    strings(at(exec, "command", &what), &what),
                    ["corral", "ctl", "health"],
                    "{what}: exec command"
                );
                execs += 1;
            } else if let Some(get) = probe.get("httpGet") {
                let port = port_number(at(get, "port", &what), c, &what);
                assert_eq!(
                    port, http_port,
                    "{what}: port, but corral's --http is {http}"
                );
                let path = text(get, "path", &what);
                paths.push((kind, path.to_string()));
            } else {
                panic!("{what}: neither exec nor httpGet: {probe}");
            }
        }
        assert!(execs >= 1, "{what}: no exec probe on `corral ctl health`");
        assert!(
            paths.contains(&("livenessProbe", "/healthz".to_string()))
                && paths.contains(&("readinessProbe", "/readyz".to_string())),
            "{what}: liveness on /healthz and readiness on /readyz, not {paths:?}"
        );

        // Grace: Kubernetes' preStop, then corral's whole shutdown, then
        // at least a second for corral to exit.
        let pre_stop = pre_stop_seconds(c, &what);
        assert!(
            grace >= pre_stop + shutdown + 1.0,
            "{what}: terminationGracePeriodSeconds {grace} < preStop {pre_stop}s + \
             --shutdown-timeout {shutdown}s + 1s"
        );
        // corral's budget covers every service stopping in turn.
        let files = service_files(pod, c, &docs);
        let stops: f64 = files.values().map(|f| stop_timeout(f)).sum();
        assert!(
            stops <= shutdown,
            "{what}: the services' stop-timeouts add up to {stops}s, over \
             --shutdown-timeout {shutdown}s"
        );

        // /run: a tmpfs emptyDir (sticky, mode 1777), where a non-root
        // corral may make /run/corral for its control socket.
        let run = c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .and_then(|m| {
                m.iter()
                    .find(|m| m.get("mountPath").and_then(Value::as_str) == Some("/run"))
            })
            .unwrap_or_else(|| panic!("{what}: nothing mounted on /run"));
        let volume = text(run, "name", &what);
        let medium = list(spec, "volumes", &what)
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(volume))
            .and_then(|v| v.pointer("/emptyDir/medium"))
            .and_then(Value::as_str);
        assert_eq!(
            medium,
            Some("Memory"),
            "{what}: /run must be an emptyDir of medium Memory (a disk emptyDir \
             is 0777 without the sticky bit: corral would run without a socket)"
        );
    }
}

#[test]
fn names_the_images_hard_code_are_the_services_of_the_manifests() {
    let docs = documents();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let read = |rel: &str| fs::read_to_string(repo.join(rel)).expect(rel);
    // web joins serf at `ha` and reads haproxy's stats at http://ha:8404/.
    let web_serf = read("examples/haproxy-serf/toml/web/etc/corral/services.d/serf.toml");
    assert!(web_serf.contains("\"-retry-join=ha\""), "web's serf.toml");
    let hook = read("examples/haproxy-serf/common/web/usr/local/bin/leave-haproxy");
    assert!(
        hook.contains("http://ha:8404/"),
        "leave-haproxy's stats URL"
    );
    let ha = find(&docs, "Service", "ha");
    assert_eq!(
        text(ha, "spec.clusterIP", "Service ha"),
        "None",
        "Service ha must be headless: serf needs the pods' own IPs"
    );
    let ports: Vec<(u64, String)> = list(ha, "spec.ports", "Service ha")
        .iter()
        .map(|p| {
            (
                p.get("port").and_then(Value::as_u64).unwrap_or(0),
                p.get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string(),
            )
        })
        .collect();
    for want in [(7946, "TCP"), (7946, "UDP"), (8404, "TCP")] {
        assert!(
            ports.contains(&(want.0, want.1.to_string())),
            "Service ha lacks port {}/{}: {ports:?}",
            want.0,
            want.1
        );
    }
    // Each Service selects the pods of a workload.
    for (service, workload) in [("ha", "ha"), ("ha-http", "ha"), ("web-gossip", "web")] {
        let selector = at(find(&docs, "Service", service), "spec.selector", service);
        let labels = at(
            find(&docs, "Deployment", workload),
            "spec.template.metadata.labels",
            workload,
        );
        for (key, value) in selector.as_object().expect("selector") {
            assert_eq!(
                labels.get(key),
                Some(value),
                "Service {service} selects {key}={value}, not a label of {workload}'s pods"
            );
        }
    }
    // ha's serf, replaced by the ConfigMap: the image's arguments, plus a
    // retry-join at the web nodes' headless Service; and corral accepts it.
    let deployment = find(&docs, "Deployment", "ha");
    let pod = Pod {
        what: "Deployment ha".to_string(),
        name: "ha".to_string(),
        spec: at(deployment, "spec.template.spec", "Deployment ha"),
    };
    let container = &list(pod.spec, "containers", &pod.what)[0];
    let image_serf = read("examples/haproxy-serf/toml/ha/etc/corral/services.d/serf.toml");
    let files = service_files(&pod, container, &docs);
    let serf = files
        .values()
        .find(|f| f.contains("\"serf-agent\""))
        .expect("ha's serf service");
    assert_ne!(serf, &image_serf, "ha's serf.toml is not replaced");
    for arg in image_serf
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"'))
    {
        assert!(serf.contains(arg), "ha-serf's serf.toml lacks {arg}");
    }
    assert!(
        serf.contains("\"-retry-join=web-gossip\""),
        "ha-serf joins web-gossip"
    );
    find(&docs, "Service", "web-gossip");
    let dir = TestDir::new("k8s-ha-services");
    for (name, contents) in &files {
        dir.write(&format!("services/{name}"), contents);
    }
    let ran = run_within(
        Command::new(corral_bin())
            .arg("check")
            .arg("--services")
            .arg(dir.join("services")),
        Duration::from_secs(30),
    );
    assert_eq!(ran.code, 0, "corral check of ha's services: {ran:?}");
    // haproxy logs where corral listens: the init container's sed writes
    // the path of CORRAL_SYSLOG into haproxy.cfg.in.
    let syslog = list(container, "env", &pod.what)
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some("CORRAL_SYSLOG"))
        .map(|e| text(e, "value", "CORRAL_SYSLOG"))
        .expect("ha sets CORRAL_SYSLOG");
    assert!(
        Path::new(syslog).starts_with("/run/"),
        "CORRAL_SYSLOG {syslog}: not on the writable /run"
    );
    let init = strings(
        at(
            &list(pod.spec, "initContainers", &pod.what)[0],
            "command",
            "initContainer",
        ),
        "initContainer",
    );
    assert!(
        init.iter().any(|a| a.contains(&format!("log {syslog} "))),
        "the init container does not point haproxy's log at {syslog}: {init:?}"
    );
}
