//! The s6-rc source format's rules, one test per file and per mistake, on
//! trees written to a temporary directory.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::spec::{Origin, Ready, Restart, ServiceSpec, Spec};
use crate::config::{ConfigError, LoadOptions, MAX_DURATION, load_with};

/// A temporary `tree/` (the s6-rc source dir) and `services/` (a services
/// dir), removed on drop.
struct T {
    root: PathBuf,
    options: LoadOptions,
}

impl T {
    fn new(name: &str) -> T {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "corral-s6rc-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("tree")).unwrap();
        fs::create_dir_all(root.join("services")).unwrap();
        let options = LoadOptions {
            s6_rc_dir: Some(root.join("tree")),
            ..LoadOptions::default()
        };
        T { root, options }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `tree/REL` holding `text` (parent dirs created).
    fn file(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path("tree").join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn exe(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.file(rel, text);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn oneshot(&self, name: &str, up: &str) {
        self.file(&format!("{name}/type"), "oneshot\n");
        self.file(&format!("{name}/up"), up);
    }

    fn longrun(&self, name: &str) {
        self.file(&format!("{name}/type"), "longrun\n");
        self.exe(&format!("{name}/run"), "#!/bin/sh\nexec sleep 1000\n");
    }

    /// `NAME/dependencies.d/DEP` for each dep.
    fn deps(&self, name: &str, deps: &[&str]) {
        for dep in deps {
            self.file(&format!("{name}/dependencies.d/{dep}"), "");
        }
    }

    /// `BUNDLE/contents.d/NAME` for each name (no `type`: fine for `user`
    /// and `user2`).
    fn contents(&self, bundle: &str, names: &[&str]) {
        fs::create_dir_all(self.path("tree").join(bundle).join("contents.d")).unwrap();
        for name in names {
            self.file(&format!("{bundle}/contents.d/{name}"), "");
        }
    }

    fn bundle(&self, bundle: &str, names: &[&str]) {
        self.file(&format!("{bundle}/type"), "bundle\n");
        self.contents(bundle, names);
    }

    fn service(&self, name: &str, toml: &str) {
        fs::write(self.path(&format!("services/{name}.toml")), toml).unwrap();
    }

    fn load(&self) -> Result<Spec, Vec<ConfigError>> {
        load_with(&[self.path("services")], &self.options)
    }

    fn spec(&self) -> Spec {
        self.load()
            .unwrap_or_else(|e| panic!("errors: {:#?}", self.show(&e)))
    }

    fn get(&self, name: &str) -> ServiceSpec {
        self.spec().get(name).unwrap().clone()
    }

    /// The errors as printed, the temporary root shown as `T`.
    fn errors(&self) -> Vec<String> {
        match self.load() {
            Ok(_) => panic!("no error"),
            Err(errors) => self.show(&errors),
        }
    }

    fn show(&self, errors: &[ConfigError]) -> Vec<String> {
        let root = self.root.display().to_string();
        errors
            .iter()
            .map(|e| e.to_string().replace(&root, "T"))
            .collect()
    }
}

impl Drop for T {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn names(specs: &[&ServiceSpec]) -> Vec<String> {
    specs.iter().map(|s| s.name.clone()).collect()
}

// ---------------------------------------------------------------------------
// type

#[test]
fn each_type_and_the_typeless_user_bundles() {
    let t = T::new("types");
    t.oneshot("init", "/bin/true\n");
    t.longrun("daemon");
    t.file("daemon/type", "longrun \n\n");
    t.bundle("both", &["init", "daemon"]);
    t.contents("user", &["both"]);
    t.contents("user2", &[]);
    let spec = t.spec();
    assert_eq!(
        names(&spec.services.iter().collect::<Vec<_>>()),
        ["daemon", "init"]
    );
    assert!(spec.get("init").unwrap().oneshot);
    assert!(!spec.get("daemon").unwrap().oneshot);
    assert_eq!(spec.bundles.get("both").unwrap(), &["daemon", "init"]);
    assert_eq!(spec.bundles.get("user").unwrap(), &["daemon", "init"]);
    assert_eq!(spec.bundles.get("user2").unwrap(), &Vec::<String>::new());
    for s in &spec.services {
        assert_eq!(s.origin, Origin::S6Rc);
        assert_eq!(s.source, t.path(&format!("tree/{}", s.name)));
    }
}

#[test]
fn an_unknown_type_is_an_error_with_a_suggestion() {
    let t = T::new("bad-type");
    t.longrun("a");
    t.file("a/type", "longrunn\n");
    t.file("b/type", "\n  daemon\n");
    t.file("c/run", "");
    // Already an error: naming it is not "unknown service" too.
    t.oneshot("d", "true\n");
    t.deps("d", &["a", "b"]);
    assert_eq!(
        t.errors(),
        [
            "T/tree/a/type:1:1: unknown type \"longrunn\", expected oneshot, longrun or bundle (did you mean \"longrun\"?)",
            "T/tree/b/type:2:3: unknown type \"daemon\", expected oneshot, longrun or bundle",
            "T/tree/c: no `type` file: an s6-rc service directory says oneshot, longrun or bundle in `type`",
        ]
    );
}

#[test]
fn hidden_entries_and_plain_files_are_skipped() {
    let t = T::new("hidden");
    t.file(".git/HEAD", "x");
    t.file("README", "not a service");
    t.oneshot("a", "true\n");
    t.file("a/dependencies.d/.keep", "");
    t.contents("user", &["a"]);
    t.file("user/contents.d/.empty", "");
    let spec = t.spec();
    assert_eq!(spec.services.len(), 1);
    assert!(spec.get("a").unwrap().after.is_empty());
}

// ---------------------------------------------------------------------------
// longrun

#[test]
fn a_longrun_runs_its_run_script_in_its_own_directory() {
    let t = T::new("longrun");
    t.longrun("web");
    t.contents("user", &["web"]);
    let web = t.get("web");
    let dir = fs::canonicalize(t.path("tree/web")).unwrap();
    assert_eq!(web.command, [dir.join("run").display().to_string()]);
    assert_eq!(web.working_dir, dir);
    assert!(!web.kill_group);
    assert_eq!(web.restart, Restart::Always);
    assert_eq!(web.ready, None);
    assert_eq!(
        web.ready_timeout, MAX_DURATION,
        "s6-rc: no timeout-up, no limit"
    );
    assert_eq!(web.stop_timeout, ServiceSpec::new("x", vec![]).stop_timeout);
    assert_eq!(web.finish, None);
    assert!(web.env.is_empty());
}

#[test]
fn every_file_of_a_longrun_that_corral_acts_on() {
    let t = T::new("longrun-files");
    t.longrun("web");
    t.file("web/notification-fd", "3\n");
    t.file("web/timeout-up", "2500\n");
    t.file("web/timeout-kill", "7000\n");
    t.file("web/timeout-finish", "1500\n");
    t.file("web/down-signal", "SIGHUP\n");
    t.exe("web/finish", "#!/bin/sh\n");
    t.file("web/env/PLAIN", "value\nsecond line ignored\n");
    t.file("web/env/TRAILING", "spaces \t \n");
    t.file("web/env/NUL", "a\0b\n");
    t.file("web/env/EMPTY", "");
    t.file("web/data/check", "anything");
    t.contents("user", &["web"]);
    let web = t.get("web");
    let dir = fs::canonicalize(t.path("tree/web")).unwrap();
    assert_eq!(web.ready, Some(Ready::Fd(3)));
    assert_eq!(web.ready_timeout, Duration::from_millis(2500));
    assert_eq!(web.stop_timeout, Duration::from_secs(7));
    assert_eq!(web.finish_timeout, Duration::from_millis(1500));
    assert_eq!(web.stop_signal, Signal::SIGHUP);
    assert_eq!(web.finish, Some(dir.join("finish")));
    let env: Vec<(&str, &str)> = web
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("NUL", "a\nb"), ("PLAIN", "value"), ("TRAILING", "spaces")]
    );
}

#[test]
fn zero_timeouts_mean_no_limit_or_the_default() {
    let mut t = T::new("zero");
    t.longrun("web");
    t.file("web/timeout-up", "0\n");
    t.file("web/timeout-kill", "0\n");
    t.file("web/timeout-finish", "0");
    t.contents("user", &["web"]);
    t.options.s6_stop_timeout = Some(Duration::from_secs(11));
    let web = t.get("web");
    assert_eq!(web.ready_timeout, MAX_DURATION);
    assert_eq!(
        web.stop_timeout,
        Duration::from_secs(11),
        "S6_SERVICES_GRACETIME"
    );
    assert_eq!(web.finish_timeout, Duration::from_secs(5));
}

#[test]
fn longrun_mistakes_are_reported_at_their_files() {
    let t = T::new("longrun-errors");
    t.file("norun/type", "longrun\n");
    t.file("upinstead/type", "longrun\n");
    t.file("upinstead/up", "true\n");
    t.longrun("noexec");
    fs::set_permissions(t.path("tree/noexec/run"), fs::Permissions::from_mode(0o644)).unwrap();
    t.longrun("files");
    t.file("files/notification-fd", "1\n");
    t.file("files/timeout-up", "soon\n");
    t.file("files/down-signal", "NOPE\n");
    t.file("files/finish", "#!/bin/sh\n");
    t.file("files/env/A=B", "x");
    let errors = t.errors();
    assert_eq!(errors.len(), 8, "{errors:#?}");
    let expect = [
        "T/tree/files/env/A=B: a variable name cannot contain `=`",
        "T/tree/files/finish: not executable (chmod +x it)",
        "T/tree/files/notification-fd:1:1: expected a file descriptor number from 3 to 1023, found \"1\"",
        "T/tree/files/timeout-up:1:1: expected a number of milliseconds (0 = no limit), found \"soon\"",
        "T/tree/noexec/run: not executable (chmod +x it)",
        "T/tree/norun: a longrun needs an executable `run` script",
        "T/tree/upinstead: a longrun needs an executable `run` script; `up` is a oneshot's (is `type` wrong?)",
    ];
    for e in expect {
        assert!(errors.iter().any(|x| x == e), "missing {e}:\n{errors:#?}");
    }
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("T/tree/files/down-signal:1:1: unknown signal \"NOPE")),
        "{errors:#?}"
    );
}

// ---------------------------------------------------------------------------
// oneshot

#[test]
fn a_oneshot_runs_its_up_command_line_and_down_at_stop() {
    let t = T::new("oneshot");
    t.oneshot("init-adduser", "/etc/s6-overlay/s6-rc.d/init-adduser/run\n");
    t.exe("init-adduser/run", "#!/bin/sh\n");
    t.file("init-adduser/down", "  rm -f \"/run/a file\" # cleanup\n");
    t.file("init-adduser/timeout-up", "30000\n");
    t.oneshot("init-end", "# This file does nothing, it ends the chain\n");
    t.file("init-end/timeout-up", "0\n");
    t.file("init-end/down", "\n");
    t.contents("user", &["init-adduser", "init-end"]);
    let spec = t.spec();
    let add = spec.get("init-adduser").unwrap();
    assert_eq!(add.command, ["/etc/s6-overlay/s6-rc.d/init-adduser/run"]);
    assert_eq!(
        add.down,
        Some(vec!["rm".to_string(), "-f".into(), "/run/a file".into()])
    );
    assert_eq!(add.run_timeout, Some(Duration::from_secs(30)));
    assert!(add.oneshot);
    assert_eq!(add.restart, Restart::Never);
    assert_eq!(add.working_dir, PathBuf::from("/"));
    let end = spec.get("init-end").unwrap();
    assert!(end.command.is_empty(), "nothing to run: success at once");
    assert_eq!(end.run_timeout, None);
    assert_eq!(end.down, None);
    assert!(spec.notes.is_empty(), "{:?}", spec.notes);
}

#[test]
fn oneshot_mistakes_are_reported_at_their_files() {
    let t = T::new("oneshot-errors");
    t.file("noup/type", "oneshot\n");
    t.file("runinstead/type", "oneshot\n");
    t.exe("runinstead/run", "#!/bin/sh\n");
    t.oneshot("quote", "echo \"unterminated\n");
    t.oneshot("timeout", "true\n");
    t.file("timeout/timeout-up", "-1\n");
    assert_eq!(
        t.errors(),
        [
            "T/tree/noup: a oneshot needs an `up` file (its command line)",
            "T/tree/quote/up:1:6: a double quote opened here is never closed",
            "T/tree/runinstead: a oneshot needs an `up` file (its command line); `run` is a longrun's (is `type` wrong?)",
            "T/tree/timeout/timeout-up:1:1: expected a number of milliseconds (0 = no limit), found \"-1\"",
        ]
    );
}

#[test]
fn an_execline_script_needs_execlineb() {
    let t = T::new("execline");
    t.oneshot("block", "foreground { echo a } echo b\n");
    t.contents("user", &["block"]);
    let bin = t.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let run = |path: Option<OsString>| {
        let mut errors = Vec::new();
        let tree = super::load(
            &t.path("tree"),
            &t.options,
            &BTreeMap::new(),
            path,
            &mut errors,
        );
        (tree, t.show(&errors))
    };
    let (_, errors) = run(Some(bin.clone().into_os_string()));
    assert_eq!(
        errors,
        [
            "T/tree/block/up: this is an execline script (it uses blocks), and `execlineb` is not on PATH: install execline, or make it one command line"
        ]
    );
    let execlineb = bin.join("execlineb");
    fs::write(&execlineb, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&execlineb, fs::Permissions::from_mode(0o755)).unwrap();
    let (tree, errors) = run(Some(OsString::from(format!(
        "/nonexistent:{}",
        bin.display()
    ))));
    assert!(errors.is_empty(), "{errors:?}");
    let up = fs::canonicalize(t.path("tree/block")).unwrap().join("up");
    let spec = tree.services[0].spec.as_ref().unwrap();
    assert_eq!(spec.command, ["execlineb", "-P", &up.display().to_string()]);
}

// ---------------------------------------------------------------------------
// dependencies and bundles

#[test]
fn dependencies_as_a_directory_or_a_file_of_lines() {
    let t = T::new("deps");
    t.oneshot("a", "true\n");
    t.oneshot("b", "true\n");
    t.oneshot("c", "true\n");
    t.deps("b", &["a"]);
    t.file("c/dependencies", "# the list\n\n  a\n\tb  \n");
    t.contents("user", &["c"]);
    let spec = t.spec();
    assert_eq!(spec.get("b").unwrap().after, ["a"]);
    assert_eq!(spec.get("c").unwrap().after, ["a", "b"]);
    let levels: Vec<Vec<String>> = crate::check::levels(&spec)
        .iter()
        .map(|l| names(l))
        .collect();
    assert_eq!(levels, [vec!["a"], vec!["b"], vec!["c"]]);
}

#[test]
fn a_dependency_on_nothing_points_at_its_file_or_line() {
    let t = T::new("unknown-dep");
    t.oneshot("init-adduser", "true\n");
    t.oneshot("a", "true\n");
    t.deps("a", &["init-addusr"]);
    t.oneshot("b", "true\n");
    t.file("b/dependencies", "init-adduser\n  nothing-here\n");
    t.bundle("x", &["ghost"]);
    assert_eq!(
        t.errors(),
        [
            "T/tree/a/dependencies.d/init-addusr: unknown service \"init-addusr\" (did you mean \"init-adduser\"?)",
            "T/tree/b/dependencies:2:3: unknown service \"nothing-here\"",
            "T/tree/x/contents.d/ghost: unknown service \"ghost\"",
        ]
    );
}

#[test]
fn bundles_inside_bundles_expand_to_their_atomic_services() {
    let t = T::new("nested");
    for name in ["a", "b", "c", "d"] {
        t.oneshot(name, "true\n");
    }
    t.bundle("inner", &["a", "b"]);
    t.file("outer/type", "bundle\n");
    t.file("outer/contents", "# deprecated format\ninner\nc\n");
    t.deps("d", &["outer"]);
    t.contents("user", &["d"]);
    let spec = t.spec();
    assert_eq!(spec.bundles.get("outer").unwrap(), &["a", "b", "c"]);
    assert_eq!(spec.get("d").unwrap().after, ["a", "b", "c"]);
    assert_eq!(spec.bundles.get("user").unwrap(), &["d"]);
    for name in ["a", "b", "c", "d"] {
        assert!(
            spec.get(name).unwrap().enabled,
            "{name} is reached through d"
        );
    }
}

#[test]
fn a_bundle_loop_and_a_dependency_loop_are_named() {
    let t = T::new("loops");
    t.bundle("x", &["y"]);
    t.bundle("y", &["x"]);
    t.oneshot("a", "true\n");
    t.oneshot("b", "true\n");
    t.deps("a", &["b"]);
    t.deps("b", &["a"]);
    t.oneshot("self", "true\n");
    t.deps("self", &["self"]);
    assert_eq!(
        t.errors(),
        [
            "T/tree/a: dependency cycle: a -> b -> a",
            "T/tree/self/dependencies.d/self: a service cannot depend on itself",
            "T/tree/x: bundle loop: x -> y -> x",
        ]
    );
}

// ---------------------------------------------------------------------------
// s6-overlay's pseudo-services and what starts

#[test]
fn what_starts_is_what_user_and_user2_reach() {
    let t = T::new("reach");
    for name in ["init", "dep-of-late", "late", "spare", "spare-dep"] {
        t.oneshot(name, "true\n");
    }
    t.longrun("svc");
    t.deps("svc", &["init", "base"]);
    t.deps("late", &["dep-of-late", "legacy-services"]);
    t.deps("spare", &["spare-dep", "init"]);
    t.contents("user", &["svc"]);
    t.contents("user2", &["late"]);
    t.service("web", "command = [\"true\"]\n");
    t.service("off", "command = [\"true\"]\nenabled = false\n");
    let spec = t.spec();
    for name in ["init", "svc", "dep-of-late", "late"] {
        let s = spec.get(name).unwrap();
        assert!(s.enabled && s.boot_step, "{name}");
    }
    for name in ["spare", "spare-dep"] {
        let s = spec.get(name).unwrap();
        assert!(!s.enabled && !s.boot_step, "{name}");
    }
    // `base` holds before any service: left out.
    assert_eq!(spec.get("svc").unwrap().after, ["init"]);
    // `legacy-services`: the enabled services of the services dirs, and
    // `user` (which legacy-services depends on in v3).
    assert_eq!(
        spec.get("late").unwrap().after,
        ["dep-of-late", "svc", "web"]
    );
    // v3's legacy-services depends on `user`.
    assert_eq!(spec.get("web").unwrap().after, ["svc"]);
    assert_eq!(spec.get("off").unwrap().after, ["svc"]);
    assert!(!spec.get("web").unwrap().boot_step);
}

#[test]
fn the_pseudo_service_names_are_reserved() {
    let t = T::new("reserved");
    t.bundle("base", &[]);
    t.oneshot("legacy-services", "true\n");
    assert_eq!(
        t.errors(),
        [
            "T/tree/base: \"base\" is reserved by s6-overlay (its pseudo-service, which corral provides): rename this service",
            "T/tree/legacy-services: \"legacy-services\" is reserved by s6-overlay (its pseudo-service, which corral provides): rename this service",
        ]
    );
}

#[test]
fn names_s6_rc_accepts_and_names_it_does_not() {
    let t = T::new("names");
    t.oneshot("Init@1+x", "true\n");
    t.contents("user", &["Init@1+x"]);
    assert!(t.spec().get("Init@1+x").unwrap().enabled);
    t.oneshot("-dash", "true\n");
    t.oneshot("s6rc-mine", "true\n");
    let errors = t.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("T/tree/-dash: invalid service name \"-dash\""));
    assert!(errors[1].contains("reserved by s6-rc"), "{errors:?}");
}

#[test]
fn a_name_in_both_the_tree_and_a_services_dir_is_an_error() {
    let t = T::new("twice");
    t.oneshot("web", "true\n");
    t.service("web", "command = [\"true\"]\n");
    assert_eq!(
        t.errors(),
        ["T/tree/web: service \"web\" is already defined in T/services/web.toml"]
    );
}

#[test]
fn the_bundle_dir_is_read_only_when_the_tree_has_no_user() {
    let mut t = T::new("bundle-dir");
    t.oneshot("a", "true\n");
    let bundles = t.path("bundles");
    fs::create_dir_all(bundles.join("user/contents.d")).unwrap();
    fs::write(bundles.join("user/type"), "bundle\n").unwrap();
    fs::write(bundles.join("user/contents.d/a"), "").unwrap();
    t.options.s6_bundle_dir = Some(bundles.clone());
    let spec = t.spec();
    assert!(spec.get("a").unwrap().enabled);
    assert_eq!(spec.bundles.get("user").unwrap(), &["a"]);
    // The tree's own `user` wins, and the bundle dir is not read (s6-overlay).
    t.contents("user", &[]);
    let spec = t.spec();
    assert!(!spec.get("a").unwrap().enabled);
    assert_eq!(spec.notes.len(), 1, "{:?}", spec.notes);
    assert!(
        spec.notes[0].contains("defines `user` itself"),
        "{:?}",
        spec.notes
    );
}

// ---------------------------------------------------------------------------
// pipelines

#[test]
fn a_pipeline_feeds_its_consumer_and_names_a_bundle() {
    let t = T::new("pipeline");
    t.longrun("app");
    t.longrun("app-log");
    t.file("app/producer-for", "app-log\n");
    t.file("app-log/consumer-for", "app\n");
    t.file("app-log/pipeline-name", "app-pipeline\n");
    t.contents("user", &["app-pipeline"]);
    let spec = t.spec();
    assert_eq!(spec.get("app").unwrap().pipe_to.as_deref(), Some("app-log"));
    assert_eq!(spec.get("app-log").unwrap().pipe_to, None);
    assert_eq!(
        spec.bundles.get("app-pipeline").unwrap(),
        &["app", "app-log"]
    );
    assert!(spec.get("app").unwrap().enabled && spec.get("app-log").unwrap().enabled);
    // No order between the two ends: the pipe outlives both.
    assert!(spec.get("app").unwrap().after.is_empty());
}

#[test]
fn both_ends_of_a_pipe_must_name_each_other() {
    let t = T::new("pipe-errors");
    t.longrun("a");
    t.longrun("b");
    t.oneshot("c", "true\n");
    t.file("a/producer-for", "b\n");
    t.longrun("d");
    t.file("d/producer-for", "c\n");
    t.longrun("e");
    t.file("e/consumer-for", "a\n");
    assert_eq!(
        t.errors(),
        [
            "T/tree/a/producer-for:1:1: \"b\" does not name \"a\" back in its `consumer-for`",
            "T/tree/d/producer-for:1:1: \"c\" is not a longrun: a producer's output goes to a longrun",
            "T/tree/e/consumer-for:1:1: \"a\" does not name \"e\" back in its `producer-for`",
        ]
    );
}

// ---------------------------------------------------------------------------
// files corral does not act on

#[test]
fn files_corral_does_not_act_on_are_listed() {
    let t = T::new("notes");
    t.longrun("web");
    t.file("web/max-death-tally", "10\n");
    t.file("web/timeout-down", "1000\n");
    t.file("web/down", "");
    t.file("web/flag-essential", "");
    t.file("web/dependencies.d/.keep", "");
    t.file("web/notifcation-fd", "3\n");
    t.contents("user", &["web"]);
    let notes: Vec<String> = t
        .spec()
        .notes
        .iter()
        .map(|n| n.replace(&t.root.display().to_string(), "T"))
        .collect();
    let files: Vec<&str> = notes
        .iter()
        .map(|n| n.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "T/tree/web/down",
            "T/tree/web/flag-essential",
            "T/tree/web/max-death-tally",
            "T/tree/web/notifcation-fd",
            "T/tree/web/timeout-down",
        ]
    );
    assert!(
        notes[3].ends_with("not a file of an s6-rc longrun (did you mean \"notification-fd\"?)"),
        "{notes:?}"
    );
}

#[test]
fn no_tree_no_bundles() {
    let t = T::new("no-tree");
    t.service("web", "command = [\"true\"]\n");
    let spec = load_with(&[t.path("services")], &LoadOptions::default()).unwrap();
    assert!(spec.bundles.is_empty() && spec.notes.is_empty());
    assert!(spec.get("web").unwrap().after.is_empty());
}

#[test]
fn a_pipeline_name_is_a_name_like_any_other() {
    let t = T::new("pipe-names");
    for (producer, consumer) in [("a", "a-log"), ("b", "b-log")] {
        t.longrun(producer);
        t.longrun(consumer);
        t.file(
            &format!("{producer}/producer-for"),
            &format!("{consumer}\n"),
        );
        t.file(
            &format!("{consumer}/consumer-for"),
            &format!("{producer}\n"),
        );
        t.file(&format!("{consumer}/pipeline-name"), "logs\n");
    }
    t.oneshot("taken", "true\n");
    t.file("b-log/pipeline-name", "taken\n");
    t.file("a/pipeline-name", "ignored\n");
    let errors = t.errors();
    assert_eq!(
        errors,
        [
            "T/tree/b-log/pipeline-name:1:1: pipeline name \"taken\" is already defined in T/tree/taken"
        ]
    );
    t.file("b-log/pipeline-name", "logs\n");
    assert_eq!(
        t.errors(),
        [
            "T/tree/b-log/pipeline-name:1:1: pipeline name \"logs\" is already the name of the pipeline ending at T/tree/a-log"
        ]
    );
}

#[test]
fn a_pipeline_loop_is_an_error() {
    let t = T::new("pipe-loop");
    for (me, other) in [("a", "b"), ("b", "a")] {
        t.longrun(me);
        t.file(&format!("{me}/producer-for"), &format!("{other}\n"));
        t.file(&format!("{me}/consumer-for"), &format!("{other}\n"));
    }
    assert_eq!(
        t.errors(),
        ["T/tree/a/producer-for: pipeline loop: a -> b -> a"]
    );
}

#[test]
fn scripts_a_oneshot_names_in_its_own_dir_are_not_listed_as_ignored() {
    let t = T::new("own-scripts");
    t.oneshot("init-x", "/etc/s6-overlay/s6-rc.d/init-x/run\n");
    t.file("init-x/down", "/etc/s6-overlay/s6-rc.d/init-x/stop\n");
    t.file("init-x/run", "#!/bin/sh\n");
    t.file("init-x/stop", "#!/bin/sh\n");
    t.file("init-x/extra", "not named by up or down\n");
    t.contents("user", &["init-x"]);
    let spec = t.spec();
    let notes = spec.notes.join("\n");
    assert!(
        !notes.contains("init-x/stop") && !notes.contains("init-x/run"),
        "{notes}"
    );
    assert!(notes.contains("init-x/extra"), "{notes}");
}
