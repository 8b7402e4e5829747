//! The Debian package: `packaging/deb.sh` builds it (cargo-deb), then in a
//! real container from `corral-base:bookworm` `dpkg -i` installs it: the
//! binary runs, every link (corralctl, with-contenv and printcontenv in
//! /usr/bin; every s6 command of `s6::COMMANDS` in /command, s6-overlay
//! v3's place) resolves to /usr/bin/corral and works, the man page and the
//! completions are in place and owned by the package; `dpkg -r` removes
//! them all.
//!
//! Skipped (saying why) only where Docker is absent; cargo-deb missing is a
//! failure naming its install.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crate::common::{Ran, run_within, serial};
use crate::docker_common::{Leftover, docker, docker_ok, docker_usable, repo, sweep_dead};
use corral::s6::COMMANDS;

/// Label of the container the test makes; its value is the test's pid.
const LABEL: &str = "org.corral.deb";
/// deb.sh builds the release binary: minutes on a loaded 2-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);

/// The container, removed with its volumes when the test ends, passed or not.
struct Container {
    name: String,
}

impl Container {
    fn start(deb: &str) -> Container {
        let pid = std::process::id().to_string();
        // Containers of earlier runs whose test process was killed.
        sweep_dead(LABEL, &[Leftover::Containers]);
        let name = format!("corral-deb-test-{pid}");
        let container = Container { name };
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &container.name,
            "--label",
            &format!("{LABEL}={pid}"),
            "-v",
            &format!("{deb}:/tmp/corral.deb:ro"),
            "--entrypoint",
            "sleep",
            "corral-base:bookworm",
            "infinity",
        ]);
        container
    }

    /// `sh -c SCRIPT` in the container.
    fn sh(&self, script: &str) -> Ran {
        docker(&["exec", &self.name, "sh", "-c", script])
    }

    /// `sh -c SCRIPT`, which must succeed: its stdout.
    fn ok(&self, script: &str) -> String {
        let ran = self.sh(script);
        assert_eq!(
            ran.code, 0,
            "in the container: {script}\nstdout: {}\nstderr: {}",
            ran.stdout, ran.stderr
        );
        ran.stdout
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// Every path the package must install (links, man pages, completions).
fn installed_paths() -> Vec<String> {
    let mut paths: Vec<String> = COMMANDS
        .iter()
        .map(|(name, _)| format!("/command/{name}"))
        .collect();
    for name in ["corral", "corralctl", "with-contenv", "printcontenv"] {
        paths.push(format!("/usr/bin/{name}"));
    }
    for name in ["corral", "corralctl", "with-contenv", "printcontenv"] {
        paths.push(format!("/usr/share/man/man1/{name}.1.gz"));
    }
    paths.extend(
        [
            "/usr/share/bash-completion/completions/corral",
            "/usr/share/bash-completion/completions/corralctl",
            "/usr/share/zsh/vendor-completions/_corral",
            "/usr/share/fish/vendor_completions.d/corral.fish",
            "/usr/share/fish/vendor_completions.d/corralctl.fish",
        ]
        .map(String::from),
    );
    paths
}

#[test]
fn deb_installs_every_link_page_and_completion_and_removes_them() {
    let _serial = serial();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let has_cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_cargo_deb,
        "cargo-deb is not installed: this test builds the package with it (cargo install cargo-deb; CI's .ci/run installs it)"
    );
    if let Err(why) = docker_usable() {
        let _ = writeln!(
            std::io::stderr(),
            "deb_package: skipped, Docker is not usable here: {why}"
        );
        return;
    }

    let built = run_within(
        Command::new(repo().join("packaging/deb.sh")).env("CARGO", &cargo),
        BUILD_TIMEOUT,
    );
    assert_eq!(built.code, 0, "packaging/deb.sh failed: {built:?}");
    let deb = built.stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        deb.ends_with(".deb") && std::path::Path::new(&deb).is_file(),
        "deb.sh did not print the package's path: {built:?}"
    );

    let c = Container::start(&deb);
    // The base image keeps man pages out (dpkg.cfg.d/01-lean, as Docker's
    // Debian images do): let them in, to see the package's.
    c.ok("dpkg --path-include='/usr/share/man/*' -i /tmp/corral.deb");
    let version = c.ok("corral --version");
    assert_eq!(
        version,
        format!("corral {}\n", env!("CARGO_PKG_VERSION")),
        "corral --version"
    );

    // Every path is there and owned by the package.
    let owned = c.ok("dpkg -L corral");
    let owned: Vec<&str> = owned.lines().collect();
    for path in installed_paths() {
        c.ok(&format!("test -e {path}"));
        assert!(
            owned.contains(&path.as_str()),
            "{path} is not the package's: {owned:?}"
        );
    }

    // Every link resolves to /usr/bin/corral.
    let links = installed_paths().into_iter().filter(|p| {
        p.starts_with("/command/") || (p.starts_with("/usr/bin/") && p != "/usr/bin/corral")
    });
    for link in links {
        c.ok(&format!("test -L {link}"));
        let target = c.ok(&format!("readlink -f {link}"));
        assert_eq!(target.trim(), "/usr/bin/corral", "{link}");
    }
    // Debian's s6 package owns these names in /usr/bin: not this package.
    for (name, _) in COMMANDS {
        if !["with-contenv", "printcontenv"].contains(&name) {
            assert!(
                !owned.contains(&format!("/usr/bin/{name}").as_str()),
                "/usr/bin/{name} would clash with Debian's s6 or init"
            );
        }
    }

    // The links work as their names.
    let help = c.ok("corralctl --help");
    assert!(help.contains("Control a running corral"), "{help}");
    let ran = c.ok("with-contenv echo via-path");
    assert_eq!(ran, "via-path\n");
    // The s6-overlay v3 shape: a script whose shebang is /command/with-contenv.
    let ran = c.ok(
        "printf '#!/command/with-contenv sh\\necho shebang \"$1\"\\n' > /tmp/v3 && chmod +x /tmp/v3 && /tmp/v3 ok",
    );
    assert_eq!(ran, "shebang ok\n");
    // s6-svc as its name: s6's usage error (exit 100), from corral.
    let ran = c.sh("/command/s6-svc");
    assert_eq!(ran.code, 100, "{ran:?}");
    assert!(ran.stderr.contains("s6-svc: usage:"), "{ran:?}");

    // The man page and the completions.
    let page = c.ok("zcat /usr/share/man/man1/corral.1.gz");
    assert!(page.contains(".SH SYNOPSIS"), "{page}");
    let reply = c.ok(
        "bash -c '. /usr/share/bash-completion/completions/corral; COMP_WORDS=(corral ctl \"\"); COMP_CWORD=2; _corral; echo \"${COMPREPLY[*]}\"'",
    );
    assert!(
        reply.contains("status") && reply.contains("shutdown"),
        "{reply}"
    );

    // Removal takes every file and link away.
    c.ok("dpkg -r corral");
    for path in installed_paths() {
        let ran = c.sh(&format!("test -e {path} || test -L {path}"));
        assert_ne!(ran.code, 0, "{path} is still there after dpkg -r");
    }
    let left = c.sh("test -d /command");
    assert_ne!(left.code, 0, "/command is still there after dpkg -r");
}
