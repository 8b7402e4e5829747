//! s6-overlay v3 trees (SPEC section 9, "The tree" and "What starts"):
//! `corral check --s6-rc-dir DIR` (and `CORRAL_S6_RC_DIR`) on s6-rc source
//! trees written to a temporary directory: the printed start plan follows
//! the tree's dependencies, `user`, `user2` and `legacy-services`; a bad
//! tree is exit 2 with every error as `path:line:col: message`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;

/// Writes `tree/REL` under the test dir (parents created).
fn put(dir: &TestDir, rel: &str, text: &str) -> PathBuf {
    let path = dir.join("tree").join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn executable(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A oneshot in linuxserver's shape: `up` is the absolute path of its own
/// `run` script, and it depends on `after` through `dependencies.d/`.
fn init_step(dir: &TestDir, name: &str, after: &[&str]) {
    put(dir, &format!("{name}/type"), "oneshot\n");
    let run = put(
        dir,
        &format!("{name}/run"),
        &format!("#!/bin/sh\necho {name} >> \"$T/ran\"\n"),
    );
    executable(&run);
    put(dir, &format!("{name}/up"), &format!("{}\n", run.display()));
    for dep in after {
        put(dir, &format!("{name}/dependencies.d/{dep}"), "");
    }
}

fn longrun(dir: &TestDir, name: &str, after: &[&str]) {
    put(dir, &format!("{name}/type"), "longrun\n");
    let run = put(dir, &format!("{name}/run"), "#!/bin/sh\nexec sleep 1000\n");
    executable(&run);
    for dep in after {
        put(dir, &format!("{name}/dependencies.d/{dep}"), "");
    }
}

/// The start step of each service in `corral check`'s plan (`  3.  name
/// ...`, or the name alone under the same step), and the plan's other
/// lines.
fn steps(plan: &str) -> BTreeMap<String, usize> {
    let mut steps = BTreeMap::new();
    let mut step = 0;
    for line in plan.lines().skip(1) {
        if !line.starts_with("  ") {
            break;
        }
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let name = match first
            .strip_suffix('.')
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => {
                step = n;
                words.next().unwrap()
            }
            None => first,
        };
        steps.insert(name.to_string(), step);
    }
    steps
}

/// A tree in the shape of linuxserver's base image: a chain of oneshots
/// through `dependencies.d/`, a `user` bundle without `type`, a longrun
/// after the chain, a `user2` check depending on `legacy-services`, and a
/// service of a services dir between `user` and `user2`.
#[test]
fn a_linuxserver_shaped_tree_is_planned_in_dependency_order() {
    let dir = TestDir::new("s6rc-lsio");
    let chain = [
        "init-migrations",
        "init-adduser",
        "init-os-end",
        "init-config",
        "init-crontab-config",
        "init-config-end",
        "init-mods",
        "init-mods-end",
        "init-custom-files",
        "init-services",
    ];
    init_step(&dir, chain[0], &["base"]);
    for pair in chain.windows(2) {
        init_step(&dir, pair[1], &[pair[0]]);
    }
    // Two branches that join at init-config: init-envfile and init-os-end
    // start together.
    init_step(&dir, "init-envfile", &["init-adduser"]);
    put(&dir, "init-config/dependencies.d/init-envfile", "");
    longrun(&dir, "svc-cron", &["init-services"]);
    put(&dir, "svc-cron/notification-fd", "3\n");
    init_step(&dir, "ci-service-check", &["legacy-services"]);
    for name in chain.iter().chain(&["init-envfile", "svc-cron"]) {
        put(&dir, &format!("user/contents.d/{name}"), "");
    }
    put(&dir, "user2/contents.d/ci-service-check", "");
    // Defined, in no bundle: not started at boot.
    longrun(&dir, "svc-spare", &["init-services"]);
    dir.service("legacy-app", "command = [\"sleep\", \"1000\"]\n");

    let tree = dir.join("tree").display().to_string();
    let finished = dir.corral().args(["--s6-rc-dir", &tree]).check();
    let stdout = finished.stdout();
    assert_eq!(finished.code(), 0, "{}\n{stdout}", finished.stderr());
    let steps = steps(&stdout);
    for (i, name) in chain.iter().enumerate() {
        assert_eq!(steps.get(*name), Some(&(i + 1)), "{name}:\n{stdout}");
    }
    assert_eq!(steps["init-envfile"], steps["init-os-end"], "{stdout}");
    assert_eq!(steps["svc-cron"], chain.len() + 1, "{stdout}");
    // legacy-services comes after `user`, user2's check after it.
    assert_eq!(steps["legacy-app"], steps["svc-cron"] + 1, "{stdout}");
    assert_eq!(
        steps["ci-service-check"],
        steps["legacy-app"] + 1,
        "{stdout}"
    );
    let spare = stdout.lines().find(|l| l.contains("svc-spare")).unwrap();
    assert!(
        spare.contains("disabled: not in `user` or `user2`"),
        "{stdout}"
    );
    let cron = stdout.lines().find(|l| l.contains(" svc-cron ")).unwrap();
    assert!(!cron.contains("disabled"), "{stdout}");
    assert!(
        stdout.contains("  user2: ci-service-check\n"),
        "the bundles are listed:\n{stdout}"
    );
    assert!(
        !finished.dir().exists("tree/user/type"),
        "check writes nothing"
    );
    assert!(!finished.dir().exists("ran"), "check runs nothing");
}

/// Every mistake of a bad tree at once, each at its file, line and column;
/// exit 2.
#[test]
fn a_bad_tree_is_exit_2_with_every_error_at_its_place() {
    let dir = TestDir::new("s6rc-bad");
    init_step(&dir, "init-adduser", &[]);
    put(&dir, "typo/type", "longrunn\n");
    put(&dir, "noup/type", "oneshot\n");
    init_step(&dir, "chain", &[]);
    put(
        &dir,
        "chain/dependencies",
        "# the old format\ninit-adduser\n  init-addusr\n",
    );
    init_step(&dir, "a", &["b"]);
    init_step(&dir, "b", &["a"]);
    put(&dir, "user/contents.d/chain", "");

    let tree = dir.join("tree");
    let finished = dir
        .corral()
        .args(["--s6-rc-dir", &tree.display().to_string()])
        .check();
    let stderr = finished.stderr();
    assert_eq!(finished.code(), 2, "{stderr}");
    let t = tree.display();
    let expected = [
        format!("{t}/a: dependency cycle: a -> b -> a"),
        format!(
            "{t}/chain/dependencies:3:3: unknown service \"init-addusr\" (did you mean \"init-adduser\"?)"
        ),
        format!("{t}/noup: a oneshot needs an `up` file (its command line)"),
        format!(
            "{t}/typo/type:1:1: unknown type \"longrunn\", expected oneshot, longrun or bundle (did you mean \"longrun\"?)"
        ),
        "corral: 4 errors in service definitions, nothing started".to_string(),
    ];
    assert_eq!(stderr.lines().collect::<Vec<_>>(), expected, "{stderr}");
    assert!(finished.stdout().is_empty());
}

/// The files corral accepts and does not act on are listed, one line each
/// with the reason.
#[test]
fn check_lists_what_corral_does_not_act_on() {
    let dir = TestDir::new("s6rc-notes");
    longrun(&dir, "svc-app", &[]);
    put(&dir, "svc-app/timeout-down", "3000\n");
    put(&dir, "svc-app/max-death-tally", "5\n");
    put(&dir, "user/contents.d/svc-app", "");
    let tree = dir.join("tree");
    let finished = dir
        .corral()
        .args(["--s6-rc-dir", &tree.display().to_string()])
        .check();
    let stdout = finished.stdout();
    assert_eq!(finished.code(), 0, "{}", finished.stderr());
    let notes: Vec<&str> = stdout
        .lines()
        .skip_while(|l| *l != "not acted on:")
        .skip(1)
        .collect();
    let t = tree.display();
    assert_eq!(notes.len(), 2, "{stdout}");
    assert!(
        notes[0].starts_with(&format!("  {t}/svc-app/max-death-tally: ignored: ")),
        "{stdout}"
    );
    assert!(
        notes[1].starts_with(&format!("  {t}/svc-app/timeout-down: ignored: ")),
        "{stdout}"
    );
}

/// `CORRAL_S6_RC_DIR` names the tree for the supervisor too: a bad tree
/// starts nothing; an empty value means no tree.
#[test]
fn the_tree_from_corral_s6_rc_dir() {
    let dir = TestDir::new("s6rc-env");
    put(&dir, "bad/type", "daemon\n");
    dir.init_script("01-init", r#"echo ran > "$T/init.ran""#);
    let tree = dir.join("tree").display().to_string();
    let finished = dir
        .corral()
        .env("CORRAL_S6_RC_DIR", &tree)
        .main(["sh", "-c", r#"echo ran > "$T/main.ran""#])
        .run();
    let stderr = finished.stderr();
    assert_eq!(finished.code(), 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{tree}/bad/type:1:1: unknown type \"daemon\"")),
        "{stderr}"
    );
    assert!(!finished.dir().exists("init.ran") && !finished.dir().exists("main.ran"));

    let dir = TestDir::new("s6rc-env-empty");
    put(&dir, "bad/type", "daemon\n");
    let finished = dir
        .corral()
        .env("CORRAL_S6_RC_DIR", "")
        .main(["sh", "-c", r#"echo ran > "$T/main.ran""#])
        .run();
    assert_eq!(finished.code(), 0, "{}", finished.stderr());
    assert!(finished.dir().exists("main.ran"));
}
