//! ARCHITECTURE.md's invariants that a reading of the source can check, so
//! that they hold by test rather than by review:
//!
//! - the reaper is the only `waitpid` (invariant 2);
//! - the pure core (service and supervisor state machines) reads no clock,
//!   sleeps nowhere and makes no system call (invariant 4): it is handed
//!   `now` and returns actions;
//! - no two modules import each other, directly or round a loop: neither
//!   the top-level modules of `src/` nor the files of one directory module
//!   (`imports_run_one_way`), so that each layer can be read, and changed,
//!   knowing only the ones below it.
//!
//! Each file is read up to its inline test module (tests may do as they
//! like; a file of test helpers starts with `#![cfg(test)]`), with `//`
//! comments taken out; a `tests.rs` file is test code and is not read at
//! all.

use std::fs;
use std::path::{Path, PathBuf};

/// The files of the pure core, as paths below `src/`: a directory means
/// every file in it. (The edge, which turns thread messages into events,
/// has no reason to reach out either.)
const PURE: [&str; 3] = ["service", "supervisor/core", "supervisor/edge.rs"];

/// What the pure core must not contain: clocks, sleeps, and the ways in
/// which code reaches the system.
const IMPURE: [&str; 15] = [
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
    // The wall clock and the zone, which the executor reads for schedules.
    "wall_now",
    "localtime",
    "Local",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`, but test modules of their own (`tests.rs`).
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
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The code of `path` before its inline test module, without `//`
/// comments, as (line number, line). A test module declared here and
/// written in a file of its own (`#[cfg(test)] mod tests;`) ends nothing.
fn code(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let all: Vec<&str> = text.lines().collect();
    let mut lines = Vec::new();
    let mut skip_next = false;
    for (n, line) in all.iter().enumerate() {
        if skip_next {
            skip_next = false;
            continue;
        }
        // A whole file of test helpers.
        if line.trim() == "#![cfg(test)]" {
            break;
        }
        if line.trim() == "#[cfg(test)]" {
            let next = all[n + 1..].iter().find(|l| !l.trim().is_empty());
            if next
                .is_some_and(|l| l.trim_start().starts_with("mod ") && l.trim_end().ends_with(';'))
            {
                skip_next = true;
                continue;
            }
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

// ---------------------------------------------------------------------------
// Import cycles

/// Edges allowed to close a loop, as (parent module, from, to): none. A
/// new one needs a reason written here.
const ALLOWED: [(&str, &str, &str); 0] = [];

/// The module path of a file below `src/` (`config/raw.rs`: config::raw;
/// `http/mod.rs`: http; `lib.rs`: the crate).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut path: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        path.pop();
    }
    path
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e` (`as` renames dropped).
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let plain = tree.split(" as ").next().unwrap_or(tree);
        return vec![plain.split_whitespace().collect()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| format!("{}{p}", prefix.trim()))
        .collect()
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path a file's code names from `crate`, `super` or `self`, with the
/// line it is on: in `use` trees (braces expanded) and in expressions.
fn paths_named(lines: &[(usize, String)]) -> Vec<(usize, String)> {
    let mut text = String::new();
    let mut line_at = Vec::new();
    for (n, line) in lines {
        line_at.push((text.len(), *n));
        text.push_str(line);
        text.push('\n');
    }
    let line_of = |at: usize| {
        let i = line_at.partition_point(|&(start, _)| start <= at);
        line_at.get(i.saturating_sub(1)).map_or(0, |&(_, n)| n)
    };
    let boundary = |at: usize| {
        text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !ident_char(c) && c != ':')
    };
    let mut found = Vec::new();
    for (at, _) in text.match_indices("use ") {
        if boundary(at) {
            let end = text[at..].find(';').map_or(text.len(), |e| at + e);
            for path in expand(&text[at + 4..end]) {
                found.push((line_of(at), path));
            }
        }
    }
    for root in ["crate::", "super::", "self::"] {
        for (at, _) in text.match_indices(root) {
            if !boundary(at) {
                continue;
            }
            let end = text[at..]
                .find(|c: char| !ident_char(c) && c != ':')
                .map_or(text.len(), |e| at + e);
            found.push((line_of(at), text[at..end].trim_end_matches(':').to_string()));
        }
    }
    found
}

/// `path` as named in the module `me`, made absolute (from the crate root);
/// `None` for a path from outside the crate (`std::`, `nix::`).
fn resolve(me: &[String], path: &str) -> Option<Vec<String>> {
    let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut target: Vec<String> = match segments.peek().copied() {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        Some("super" | "self") => me.to_vec(),
        _ => return None,
    };
    for segment in segments {
        match segment {
            "super" => {
                target.pop();
            }
            // `use super::value::{self, ..}` names the module itself.
            "self" => {}
            name => target.push(name.to_string()),
        }
    }
    Some(target)
}

/// A module's dependency on a sibling: (parent, from, to) and where.
type Edges = std::collections::BTreeMap<(String, String, String), String>;

/// The imports between sibling modules below `src`: for each reference
/// from module `a::b::x` to `a::c::..`, the edge b -> c in `a`. Only
/// modules that are files or directories count (not items of a `mod.rs`).
fn sibling_imports(src: &Path) -> Edges {
    let files = rust_files(src);
    let modules: std::collections::BTreeSet<Vec<String>> =
        files.iter().map(|f| module_of(src, f)).collect();
    let mut edges = Edges::new();
    for file in &files {
        if file.ends_with("main.rs") || file.ends_with("invariants.rs") {
            continue;
        }
        let me = module_of(src, file);
        for (line, path) in paths_named(&code(file)) {
            let Some(target) = resolve(&me, &path) else {
                continue;
            };
            let k = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            let (Some(from), Some(to)) = (me.get(k), target.get(k)) else {
                continue;
            };
            if !modules.contains(&target[..=k]) {
                continue;
            }
            let parent = if k == 0 {
                "crate".to_string()
            } else {
                me[..k].join("::")
            };
            edges
                .entry((parent, from.clone(), to.clone()))
                .or_insert_with(|| format!("{}:{line}: {path}", file.display()));
        }
    }
    edges
}

/// Every loop among the edges of one parent, each as its modules in order
/// (the first again at the end), found by a depth-first search.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut by_parent: std::collections::BTreeMap<&str, Vec<(&str, &str)>> = Default::default();
    for (parent, from, to) in edges.keys() {
        by_parent.entry(parent).or_default().push((from, to));
    }
    let mut found = Vec::new();
    for (parent, pairs) in by_parent {
        let next = |m: &str| -> Vec<&str> {
            pairs
                .iter()
                .filter(|(from, _)| *from == m)
                .map(|(_, to)| *to)
                .collect()
        };
        let mut nodes: Vec<&str> = pairs.iter().map(|(from, _)| *from).collect();
        nodes.sort();
        nodes.dedup();
        // A loop is reported once, from its smallest module.
        for &start in &nodes {
            let mut stack = vec![(start, vec![start])];
            while let Some((at, trail)) = stack.pop() {
                for to in next(at) {
                    if to == start {
                        let mut cycle: Vec<String> =
                            trail.iter().map(|m| format!("{parent}::{m}")).collect();
                        cycle.push(format!("{parent}::{start}"));
                        found.push(cycle);
                    } else if to > start && !trail.contains(&to) {
                        let mut longer = trail.clone();
                        longer.push(to);
                        stack.push((to, longer));
                    }
                }
            }
        }
    }
    found
}

/// The loops of `edges` once the `allowed` ones are taken out, each with
/// the line that makes each of its steps.
fn import_cycles(mut edges: Edges, allowed: &[(&str, &str, &str)]) -> Vec<String> {
    for (parent, from, to) in allowed {
        edges.remove(&(parent.to_string(), from.to_string(), to.to_string()));
    }
    cycles(&edges)
        .into_iter()
        .map(|cycle| {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|pair| {
                    let (parent, from) = pair[0].rsplit_once("::").unwrap_or(("", &pair[0]));
                    let to = pair[1].rsplit_once("::").map_or(&*pair[1], |(_, m)| m);
                    let key = (parent.to_string(), from.to_string(), to.to_string());
                    format!("  {from} -> {to} ({})", edges.get(&key).map_or("?", |w| w))
                })
                .collect();
            format!("{}:\n{}", cycle.join(" -> "), steps.join("\n"))
        })
        .collect()
}

#[test]
fn imports_run_one_way() {
    let edges = sibling_imports(&src());
    assert!(
        edges
            .keys()
            .any(|(p, from, to)| p == "crate" && from == "supervisor" && to == "service"),
        "the import scan found nothing it should: update this test"
    );
    let stale: Vec<_> = ALLOWED
        .iter()
        .filter(|(p, from, to)| {
            !edges.contains_key(&(p.to_string(), from.to_string(), to.to_string()))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "these imports are gone: remove them from ALLOWED: {stale:?}"
    );
    let found = import_cycles(edges, &ALLOWED);
    assert!(
        found.is_empty(),
        "modules that import each other (make one of them not need the other, e.g. by moving what both need below both):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_import_scan_sees_loops_at_every_level() {
    let dir = std::env::temp_dir().join(format!("corral-imports-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("d")).unwrap();
    let write = |path: &str, text: &str| fs::write(dir.join(path), text).unwrap();
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n");
    write("c.rs", "");
    write("a.rs", "use crate::{b::{self, B}, d};\n");
    write(
        "b.rs",
        "// crate::a is only a comment\nfn f() { crate::a::g() }\n",
    );
    write(
        "d/mod.rs",
        "mod x;\nmod y;\npub struct Item;\n#[cfg(test)]\nmod tests;\nuse crate::c;\n",
    );
    write("d/x.rs", "use super::y::Y;\nuse super::Item;\n");
    write(
        "d/y.rs",
        "pub(super) fn f() { super::x::f() }\n#[cfg(test)]\nmod tests {\n use super::super::super::a;\n}\n",
    );
    write("d/tests.rs", "use crate::a;\n");
    let edges = sibling_imports(&dir);
    let found = import_cycles(edges.clone(), &[]);
    let allowed = import_cycles(edges.clone(), &[("crate", "a", "b")]);
    fs::remove_dir_all(&dir).unwrap();
    let keys: Vec<String> = edges
        .keys()
        .map(|(p, from, to)| format!("{p}: {from} -> {to}"))
        .collect();
    assert_eq!(
        keys,
        [
            "crate: a -> b",
            "crate: a -> d",
            "crate: b -> a",
            "crate: d -> c",
            "d: x -> y",
            "d: y -> x",
        ],
        "{edges:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("crate::a -> crate::b -> crate::a:\n  a -> b ("),
        "{found:?}"
    );
    assert!(found[1].starts_with("d::x -> d::y -> d::x:"), "{found:?}");
    assert_eq!(allowed.len(), 1, "{allowed:?}");
}
