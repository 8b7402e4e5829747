//! One s6-rc source directory (s6-rc-compile's source format) → its
//! definitions: each `NAME/` with its `type`, its name lists
//! (`dependencies`, `contents`, `producer-for`, `consumer-for`,
//! `pipeline-name`, as a file of lines or a `.d/` directory of empty files),
//! and, for atomic services, the spec `service.rs` makes of the directory.
//!
//! What it must never do: resolve a name (which bundle holds what, what a
//! dependency means is `graph.rs`'s), or read a file any other way than
//! through `crate::files`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::service;
use super::{Ctx, Ref, SMALL_LIMIT, small_file};
use crate::config::ConfigError;
use crate::config::spec::ServiceSpec;
use crate::text::closest;

/// What a definition directory declares.
pub(super) enum Def {
    Atomic(Box<Atomic>),
    Bundle(Bundle),
}

impl Def {
    pub fn dir(&self) -> &Path {
        match self {
            Def::Atomic(a) => &a.dir,
            Def::Bundle(b) => &b.dir,
        }
    }
}

/// A oneshot or a longrun.
pub(super) struct Atomic {
    pub dir: PathBuf,
    /// `None` when the directory has errors (they are in `Ctx::errors`).
    pub spec: Option<ServiceSpec>,
    pub longrun: bool,
    pub deps: Vec<Ref>,
    pub producer_for: Option<Ref>,
    pub consumer_for: Vec<Ref>,
    pub pipeline_name: Option<Ref>,
}

pub(super) struct Bundle {
    pub dir: PathBuf,
    pub contents: Vec<Ref>,
}

/// The largest name list read (`dependencies`, `contents`): thousands of names.
const LIST_LIMIT: u64 = 256 * 1024;

/// Bundles that s6-overlay v3 creates at boot when the tree has their
/// directory without a `type` file.
const TYPELESS_BUNDLES: [&str; 2] = ["user", "user2"];

/// Every definition of source directory `dir`, by name. Entries that are
/// not directories are skipped, as s6-rc-compile does, and so are hidden
/// ones.
pub(super) fn read(dir: &Path, ctx: &mut Ctx) -> BTreeMap<String, Def> {
    let mut defs = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            ctx.errors.push(ConfigError::whole_file(
                dir,
                format!(
                    "cannot read the s6-rc source directory: {}",
                    crate::text::io_reason(&e)
                ),
            ));
            return defs;
        }
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    crate::sort::sort(&mut paths);
    for path in paths {
        let Some(file_name) = path.file_name() else {
            continue;
        };
        let Some(name) = file_name.to_str() else {
            ctx.errors.push(ConfigError::whole_file(
                &path,
                "the name of a service must be valid UTF-8".to_string(),
            ));
            continue;
        };
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        if let Err(message) = check_name(name) {
            ctx.errors.push(ConfigError::whole_file(&path, message));
            ctx.broken.insert(name.to_string());
            continue;
        }
        match read_def(&path, name, ctx) {
            Some(def) => {
                defs.insert(name.to_string(), def);
            }
            None => {
                ctx.broken.insert(name.to_string());
            }
        }
    }
    defs
}

/// s6-rc accepts any name without `/` or newline; corral also refuses what
/// would be unsafe or unreadable in a log line or a command line.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with('.')
        || name.starts_with('-')
        || name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(format!(
            "invalid service name \"{}\": no `/`, blanks or control characters, no leading `.` or `-`, at most 255 bytes",
            name.escape_debug()
        ));
    }
    if name.starts_with("s6rc-") || name.starts_with("s6-rc-") {
        return Err(format!(
            "invalid service name \"{name}\": the prefixes `s6rc-` and `s6-rc-` are reserved by s6-rc"
        ));
    }
    Ok(())
}

fn read_def(dir: &Path, name: &str, ctx: &mut Ctx) -> Option<Def> {
    let type_path = dir.join("type");
    let kind = match small_file(ctx, &type_path, SMALL_LIMIT)? {
        Some(text) => {
            let word = text.trim();
            match word {
                "oneshot" | "longrun" | "bundle" => word.to_string(),
                _ => {
                    let offset = text.len() - text.trim_start().len();
                    let (line, col) = crate::config::file::line_col(&text, offset);
                    let mut message = format!(
                        "unknown type \"{}\", expected oneshot, longrun or bundle",
                        word.escape_debug()
                    );
                    if let Some(guess) = closest(word, ["oneshot", "longrun", "bundle"]) {
                        message.push_str(&format!(" (did you mean \"{guess}\"?)"));
                    }
                    ctx.errors.push(ConfigError {
                        path: type_path,
                        line,
                        col,
                        message,
                    });
                    return None;
                }
            }
        }
        None if TYPELESS_BUNDLES.contains(&name) => "bundle".to_string(),
        None => {
            ctx.errors.push(ConfigError::whole_file(
                dir,
                "no `type` file: an s6-rc service directory says oneshot, longrun or bundle in `type`".to_string(),
            ));
            return None;
        }
    };
    ctx.unknown_files(dir, &kind);
    if kind == "bundle" {
        let contents = name_list(ctx, dir, "contents").unwrap_or_default();
        for ignored in ["dependencies", "dependencies.d"] {
            if dir.join(ignored).exists() {
                ctx.note(
                    &dir.join(ignored),
                    "a bundle has no dependencies of its own (s6-rc ignores it too)",
                );
            }
        }
        return Some(Def::Bundle(Bundle {
            dir: dir.to_path_buf(),
            contents,
        }));
    }
    let longrun = kind == "longrun";
    let before = ctx.errors.len();
    let deps = name_list(ctx, dir, "dependencies").unwrap_or_default();
    let spec = if longrun {
        service::longrun(name, dir, ctx)
    } else {
        service::oneshot(name, dir, ctx)
    };
    let mut atomic = Atomic {
        dir: dir.to_path_buf(),
        spec,
        longrun,
        deps,
        producer_for: None,
        consumer_for: Vec::new(),
        pipeline_name: None,
    };
    if longrun {
        atomic.producer_for = single_name(ctx, dir, "producer-for");
        atomic.consumer_for = lines(ctx, &dir.join("consumer-for")).unwrap_or_default();
        atomic.pipeline_name = single_name(ctx, dir, "pipeline-name");
    }
    if ctx.errors.len() > before {
        atomic.spec = None;
    }
    Some(Def::Atomic(Box::new(atomic)))
}

/// `LIST.d/` (each entry's name; hidden ones skipped), else the file `LIST`
/// (one name per line); `None` when neither exists.
fn name_list(ctx: &mut Ctx, dir: &Path, list: &str) -> Option<Vec<Ref>> {
    let listd = dir.join(format!("{list}.d"));
    match fs::read_dir(&listd) {
        Ok(entries) => {
            let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            crate::sort::sort(&mut names);
            let mut refs = Vec::new();
            for path in names {
                let Some(file_name) = path.file_name() else {
                    continue;
                };
                match file_name.to_str() {
                    Some(n) if n.starts_with('.') => {}
                    Some(n) => refs.push(Ref {
                        name: n.to_string(),
                        path: path.clone(),
                        line: 0,
                        col: 0,
                    }),
                    None => ctx.errors.push(ConfigError::whole_file(
                        &path,
                        "the name of a service must be valid UTF-8".to_string(),
                    )),
                }
            }
            return Some(refs);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            ctx.errors
                .push(ConfigError::whole_file(&listd, crate::text::io_reason(&e)));
            return Some(Vec::new());
        }
    }
    lines(ctx, &dir.join(list))
}

/// A file of names, one per line: blanks before a name and after it are
/// ignored, and lines that are empty or start with `#`. `None` when the file
/// does not exist.
pub(super) fn lines(ctx: &mut Ctx, path: &Path) -> Option<Vec<Ref>> {
    let text = small_file(ctx, path, LIST_LIMIT)??;
    let mut refs: Vec<Ref> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim_start_matches([' ', '\t']);
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        let col = line.chars().count() - name.chars().count() + 1;
        let name = name.trim_end();
        if refs.iter().any(|r| r.name == name) {
            continue;
        }
        refs.push(Ref {
            name: name.to_string(),
            path: path.to_path_buf(),
            line: i + 1,
            col,
        });
    }
    Some(refs)
}

/// A file that must hold exactly one name (`producer-for`, `pipeline-name`).
fn single_name(ctx: &mut Ctx, dir: &Path, file: &str) -> Option<Ref> {
    let path = dir.join(file);
    let mut refs = lines(ctx, &path)?;
    if refs.len() != 1 {
        ctx.errors.push(ConfigError::whole_file(
            &path,
            format!("expected exactly one name, found {}", refs.len()),
        ));
        return None;
    }
    refs.pop()
}
