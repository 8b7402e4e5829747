//! `corral completions bash|zsh|fish`: each script parses in its real
//! shell, and completes, in that shell, every option of the parsers'
//! tables (the tests iterate the tables: an option added to a parser and
//! not completed fails here), the values of the options that have a fixed
//! set, directories, signal names, and the service names of a running
//! corral.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use corral::args::Opt;
use corral::cli::{CHECK_OPTS, CTL_COMMANDS, FORMATS, LOG_LEVELS, SUPERVISOR_OPTS};
use nix::sys::signal::Signal;

/// The script for `shell`, written into `dir`.
fn script(dir: &TestDir, shell: &str) -> String {
    let ran = run_within(
        Command::new(corral_bin()).args(["completions", shell]),
        DEADLINE,
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let path = dir.join(&format!("completion.{shell}"));
    std::fs::write(&path, &ran.stdout).unwrap();
    path.display().to_string()
}

fn require_shell(shell: &str) {
    require_program(shell, shell);
}

/// Single-quoted for a shell.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// Ask `shell` to complete each command line (words; the last is the word
/// under the cursor), in one shell process with corral's directory first
/// on PATH; the candidates of each, in order.
fn complete(shell: &str, dir: &TestDir, lines: &[Vec<String>]) -> Vec<BTreeSet<String>> {
    require_shell(shell);
    let file = script(dir, shell);
    let mut driver = match shell {
        "bash" => format!(
            "source {file}\nt() {{ COMP_WORDS=(\"$@\"); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMPREPLY=(); _corral; printf '== %s\\n' \"${{COMPREPLY[*]}}\"; }}\n"
        ),
        // Outside the completion system: compadd and _files recorded.
        "zsh" => format!(
            "compdef() {{ : }}\nsource {file}\ncompadd() {{ while [[ $1 == -* && $1 != -- ]]; do shift; done; [[ $1 == -- ]] && shift; out+=(\"$@\") }}\n_files() {{ out+=(\"_files$*\") }}\n_command_names() {{ out+=(_command_names) }}\ncompset() {{ : }}\nt() {{ words=(\"$@\"); CURRENT=${{#words}}; out=(); _corral; print -r -- \"== ${{out[*]}}\" }}\n"
        ),
        _ => format!(
            "source {file}\nfunction t\n    printf '== %s\\n' (string join ' ' -- (complete -C \"$argv[1]\" | string split -f1 \\t))\nend\n"
        ),
    };
    for words in lines {
        if shell == "fish" {
            driver.push_str(&format!("t {}\n", quote(&words.join(" "))));
        } else {
            let quoted: Vec<String> = words.iter().map(|w| quote(w)).collect();
            driver.push_str(&format!("t {}\n", quoted.join(" ")));
        }
    }
    let bin_dir = Path::new(corral_bin())
        .parent()
        .unwrap()
        .display()
        .to_string();
    let path = format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new(shell);
    if shell == "zsh" {
        cmd.arg("-f");
    }
    let ran = run_within(
        cmd.args(["-c", &driver])
            .env("PATH", path)
            .env_remove("CORRAL_SOCKET")
            .current_dir(dir.path()),
        DEADLINE,
    );
    assert_eq!(ran.code, 0, "{shell}: {ran:?}");
    assert_eq!(ran.stderr, "", "{shell} said something on stderr");
    let answers: Vec<BTreeSet<String>> = ran
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("=="))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(answers.len(), lines.len(), "{}", ran.stdout);
    answers
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}

/// Every name of an option table, as typed.
fn spelled(table: &[Opt]) -> Vec<String> {
    table
        .iter()
        .flat_map(|o| {
            o.short
                .map(|c| format!("-{c}"))
                .into_iter()
                .chain([format!("--{}", o.long)])
        })
        .collect()
}

/// (command line, what must be among the candidates) for every table.
fn expectations() -> Vec<(Vec<String>, Vec<String>)> {
    let mut out = vec![
        (words(&["corral", "-"]), spelled(SUPERVISOR_OPTS)),
        (words(&["corral", "check", "-"]), spelled(CHECK_OPTS)),
        (
            words(&["corral", "ctl", ""]),
            CTL_COMMANDS.iter().map(|d| d.name.to_string()).collect(),
        ),
        (
            words(&["corral", "--log-level", ""]),
            LOG_LEVELS.iter().map(|(n, _)| n.to_string()).collect(),
        ),
        (
            words(&["corral", "--log-format", ""]),
            FORMATS.map(String::from).to_vec(),
        ),
        (
            words(&["corral", "--output-format", ""]),
            FORMATS.map(String::from).to_vec(),
        ),
        (
            words(&["corral", "ctl", "signal", ""]),
            Signal::iterator()
                .map(|s| s.as_str().trim_start_matches("SIG").to_string())
                .collect(),
        ),
        (
            words(&["corral", "completions", ""]),
            words(&["bash", "zsh", "fish"]),
        ),
        (
            words(&["corral", ""]),
            words(&[
                "check",
                "ctl",
                "s6-links",
                "completions",
                "with-contenv",
                "s6-svc",
            ]),
        ),
    ];
    for def in CTL_COMMANDS {
        out.push((words(&["corral", "ctl", def.name, "-"]), spelled(def.opts)));
        out.push((words(&["corralctl", def.name, "-"]), spelled(def.opts)));
    }
    out
}

fn check_expectations(shell: &str) {
    let dir = TestDir::new(&format!("completions-{shell}"));
    let cases = expectations();
    let lines: Vec<Vec<String>> = cases.iter().map(|(l, _)| l.clone()).collect();
    let answers = complete(shell, &dir, &lines);
    for ((line, want), got) in cases.iter().zip(&answers) {
        for word in want {
            assert!(
                got.contains(word),
                "{shell}: {line:?} does not offer {word}: {got:?}"
            );
        }
    }
}

#[test]
fn each_script_parses_in_its_shell() {
    let dir = TestDir::new("completions-parse");
    for (shell, check) in [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")] {
        require_shell(shell);
        let file = script(&dir, shell);
        let ran = run_within(Command::new(shell).args([check, &file]), DEADLINE);
        assert_eq!((ran.code, ran.stderr.as_str()), (0, ""), "{shell}: {ran:?}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let ran = run_within(
        Command::new(corral_bin()).args(["completions", "tcsh"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("unknown shell \"tcsh\""), "{ran:?}");
    assert_eq!(ran.stdout, "");
    let ran = run_within(Command::new(corral_bin()).arg("completions"), DEADLINE);
    assert_eq!(ran.code, 2, "{ran:?}");
}

#[test]
fn bash_completes_every_option_and_value_of_the_tables() {
    check_expectations("bash");
}

#[test]
fn zsh_completes_every_option_and_value_of_the_tables() {
    check_expectations("zsh");
}

#[test]
fn fish_completes_every_option_and_value_of_the_tables() {
    check_expectations("fish");
}

#[test]
fn directories_for_directory_options_in_each_shell() {
    let dir = TestDir::new("completions-dirs");
    std::fs::create_dir(dir.join("svc-dir")).unwrap();
    dir.write("svc-file", "");
    let prefix = dir.join("svc-").display().to_string();
    let lines = [
        words(&["corral", "--services", &prefix]),
        words(&["corral", "s6-links", &prefix]),
        words(&["corral", "--socket", &prefix]),
    ];
    let subdir = dir.join("svc-dir").display().to_string();
    let file = dir.join("svc-file").display().to_string();
    for shell in ["bash", "fish"] {
        let got = complete(shell, &dir, &lines);
        let has =
            |set: &BTreeSet<String>, p: &str| set.iter().any(|c| c.trim_end_matches('/') == p);
        assert!(
            has(&got[0], &subdir) && !has(&got[0], &file),
            "{shell}: {got:?}"
        );
        assert!(
            has(&got[1], &subdir) && !has(&got[1], &file),
            "{shell}: {got:?}"
        );
        assert!(has(&got[2], &file), "{shell}: {got:?}");
    }
    // zsh: its own _files, for directories only.
    let got = complete("zsh", &dir, &lines);
    assert_eq!(
        got.iter()
            .map(|s| s.iter().cloned().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        ["_files-/", "_files-/", "_files"]
    );
}

#[test]
fn service_names_come_from_the_running_corral() {
    let dir = TestDir::new("completions-names");
    let quiet = TestDir::new("completions-none");
    dir.service("web", &sleeper("web"));
    dir.service("db", &sleeper("db"));
    let mut c = dir.corral().ctl_socket().start();
    c.wait_socket();
    let socket = c.socket().display().to_string();
    let corralctl = quiet.link_corral("corralctl").display().to_string();
    let lines = [
        words(&["corral", "ctl", "--socket", &socket, "stop", ""]),
        words(&["corral", "ctl", "restart", "--socket", &socket, "w"]),
        words(&["corral", "ctl", "signal", "--socket", &socket, "TERM", ""]),
        words(&[&corralctl, "--socket", &socket, "logs", ""]),
        // No corral there: nothing, and nothing said.
        words(&["corral", "ctl", "--socket", "/nonexistent/sock", "stop", ""]),
    ];
    let both: BTreeSet<String> = ["db", "web"].map(String::from).into();
    let web: BTreeSet<String> = ["web".to_string()].into();
    for shell in ["bash", "zsh", "fish"] {
        let got = complete(shell, &quiet, &lines);
        assert_eq!(got[0], both, "{shell}");
        // zsh filters by prefix itself (compadd): all names are offered.
        if shell != "zsh" {
            assert_eq!(got[1], web, "{shell}");
        }
        assert_eq!(got[2], both, "{shell}");
        assert_eq!(got[3], both, "{shell}");
        assert!(got[4].is_empty(), "{shell}: {:?}", got[4]);
    }
}
