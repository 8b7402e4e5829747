//! ARCHITECTURE.md's invariants that a reading of the source can check, so
//! that they hold by test rather than by review:
//!
//! - the reaper is the only `waitpid` (invariant 2);
//! - the pure core (service and supervisor state machines) reads no clock,
//!   sleeps nowhere and makes no system call (invariant 4): it is handed
//!   `now` and returns actions.
//!
//! Each file is read up to its `#[cfg(test)]` module (tests may do as they
//! like; a file of test helpers starts with `#![cfg(test)]`), with `//`
//! comments taken out.

use std::fs;
use std::path::{Path, PathBuf};

/// The files of the pure core, as paths below `src/`: a directory means
/// every file in it. (The edge, which turns thread messages into events,
/// has no reason to reach out either.)
const PURE: [&str; 3] = ["service", "supervisor/core", "supervisor/edge.rs"];

/// What the pure core must not contain: clocks, sleeps, and the ways in
/// which code reaches the system.
const IMPURE: [&str; 12] = [
    "Instant::now",
    "SystemTime::now",
    "sleep(",
    "libc::",
    "std::fs",
    "fs::",
    "std::process",
    "Command",
    "kill(",
    "killpg(",
    "std::net",
    "std::thread",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if dir.is_file() {
        found.push(dir.to_path_buf());
        return found;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The code of `path` before its test module, without `//` comments, as
/// (line number, line).
fn code(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // A test module, or a whole file of test helpers (`#![cfg(test)]`).
        if matches!(line.trim(), "#[cfg(test)]" | "#![cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        lines.push((n + 1, code.to_string()));
    }
    lines
}

fn offences(files: &[PathBuf], words: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for path in files {
        for (n, line) in code(path) {
            for word in words {
                if line.contains(word) {
                    found.push(format!("{}:{n}: {word}: {}", path.display(), line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_reaper_is_the_only_waitpid() {
    let files: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|p| !p.ends_with("reaper.rs") && !p.ends_with("invariants.rs"))
        .collect();
    assert!(files.len() > 20, "found only {} source files", files.len());
    let found = offences(&files, &["waitpid", "wait4", "waitid", ".wait()"]);
    assert!(
        found.is_empty(),
        "waiting outside the reaper:\n{}",
        found.join("\n")
    );
    let reaper = offences(&[src().join("reaper.rs")], &["waitpid"]);
    assert!(
        !reaper.is_empty(),
        "the reaper no longer calls waitpid: update this test"
    );
}

#[test]
fn the_pure_core_reads_no_clock_sleeps_nowhere_and_makes_no_system_call() {
    for path in PURE {
        assert!(
            src().join(path).exists(),
            "the pure core moved: update PURE ({path} is gone)"
        );
    }
    let files: Vec<PathBuf> = PURE
        .iter()
        .flat_map(|p| rust_files(&src().join(p)))
        .collect();
    assert!(
        files.len() >= 10,
        "the pure core moved: update PURE ({files:?})"
    );
    let found = offences(&files, &IMPURE);
    assert!(
        found.is_empty(),
        "the pure core reaches out:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    // The scan itself, on a line it must catch and one it must not.
    let dir = std::env::temp_dir().join(format!("corral-invariants-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.rs");
    fs::write(
        &file,
        "let t = Instant::now(); // sleep(1)\n// waitpid\n#[cfg(test)]\nwaitpid\n",
    )
    .unwrap();
    // A file of test helpers is skipped whole.
    let helpers = dir.join("testing.rs");
    fs::write(
        &helpers,
        "//! helpers\n#![cfg(test)]\nlet t = Instant::now();\n",
    )
    .unwrap();
    let found = offences(&[file, helpers], &["Instant::now", "sleep(", "waitpid"]);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains(":1: Instant::now"), "{found:?}");
}
