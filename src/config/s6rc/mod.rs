//! s6-overlay v3 trees (SPEC section 9): an s6-rc *source* directory
//! (`/etc/s6-overlay/s6-rc.d`) → the same validated `ServiceSpec`s as the
//! services dirs, `Origin::S6Rc`, with `after`, `enabled` and `boot_step`
//! saying what v3 would start and in which order.
//!
//! What it owns: the tree's format (`source.rs` reads a directory,
//! `service.rs` maps a oneshot or longrun, `ignored.rs` says which files
//! corral does not act on), pipelines (`pipeline.rs`), bundles and the v3
//! pseudo-services (`graph.rs`), and what starts:
//! - everything `user` and `user2` reach, with what they depend on, is
//!   `enabled` and a `boot_step`; the tree's other services are defined
//!   but disabled (`corral ctl start` or `s6-rc -u change` start them);
//! - `user2` has no order of its own: its members declare a dependency on
//!   `legacy-services` when they must start after the services dirs, as the
//!   v3 README says;
//! - every services-dir service comes after the atomic members of `user`
//!   (v3's `legacy-services` depends on `user`).
//!
//! The bundle dir (`S6_RUNTIME_BUNDLEDIR`, `user-bundles.d`) is a second
//! source directory read only when the tree has no `user` of its own, as
//! s6-overlay's stage 2 does (it then ignores the bundle dir, with a
//! deprecation warning). `user` and `user2` need no `type` file (v3 writes
//! it at boot); when absent, they are empty.
//!
//! What it must never do: run or open a script (`up`/`down` are read as
//! text, `run`/`finish` stat'ed), read a file other than through
//! `crate::files`, or stop at the first error.

mod graph;
mod ignored;
mod pipeline;
mod service;
mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::file::{AfterAt, Parsed};
use super::{ConfigError, LoadOptions};
use crate::text::closest;
use graph::{BEFORE_SERVICES, Graph, LEGACY_SERVICES, TOP};
use source::Def;

/// The largest one-value control file (`type`, `timeout-up`, ...).
const SMALL_LIMIT: u64 = 4096;

/// A name written in a list (`dependencies.d/NAME`, a line of `contents`),
/// and where, for messages.
#[derive(Debug, Clone)]
pub(super) struct Ref {
    pub name: String,
    pub path: PathBuf,
    /// 0 for an entry of a `.d/` directory (the file is the place).
    pub line: usize,
    pub col: usize,
}

impl Ref {
    fn error(&self, message: String) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            line: self.line,
            col: self.col,
            message,
        }
    }
}

/// `unknown service "NAME"`, with a "did you mean".
fn unknown<'a>(r: &Ref, known: impl IntoIterator<Item = &'a String>) -> ConfigError {
    let pseudo = BEFORE_SERVICES
        .iter()
        .copied()
        .chain([LEGACY_SERVICES, TOP]);
    let names = known.into_iter().map(String::as_str).chain(pseudo);
    let message = match closest(&r.name, names) {
        Some(guess) => format!(
            "unknown service \"{}\" (did you mean \"{guess}\"?)",
            r.name.escape_debug()
        ),
        None => format!("unknown service \"{}\"", r.name.escape_debug()),
    };
    r.error(message)
}

/// What reading a tree collects besides definitions.
pub(super) struct Ctx<'a> {
    pub errors: Vec<ConfigError>,
    /// `PATH: ignored: why`, for `corral check`.
    pub notes: Vec<String>,
    pub options: &'a LoadOptions,
    /// Where `execlineb` is looked for.
    pub path_env: Option<OsString>,
    /// Names whose directory has errors (bad `type`, bad name): defined,
    /// so that naming them is not also "unknown service".
    pub broken: BTreeSet<String>,
}

impl Ctx<'_> {
    fn note(&mut self, path: &Path, why: &str) {
        self.notes
            .push(format!("{}: ignored: {why}", path.display()));
    }

    /// A note for each file of `dir` that corral does not act on.
    fn unknown_files(&mut self, dir: &Path, kind: &str) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        crate::sort::sort(&mut names);
        // A oneshot's `up` or `down` may name a script of its own directory
        // (`/etc/s6-overlay/s6-rc.d/init-x/run`, `.../stop`): read, then.
        let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let named: Vec<String> = if kind == "oneshot" {
            ["up", "down"]
                .iter()
                .filter_map(|f| crate::files::read_limited(&dir.join(f), 64 * 1024).ok())
                .flat_map(|bytes| {
                    String::from_utf8_lossy(&bytes)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect()
        } else {
            Vec::new()
        };
        for name in names {
            let own = dir_name.as_ref().is_some_and(|d| {
                let tail = format!("/{d}/{name}");
                named.iter().any(|w| w.ends_with(&tail))
            });
            if own {
                continue;
            }
            match ignored::role(kind, &name) {
                ignored::Role::Read => {}
                ignored::Role::Ignored(why) => self.note(&dir.join(&name), why),
                ignored::Role::Unknown => {
                    let why = match closest(&name, ignored::known(kind)) {
                        Some(guess) => {
                            format!("not a file of an s6-rc {kind} (did you mean \"{guess}\"?)")
                        }
                        None => format!("not a file of an s6-rc {kind}"),
                    };
                    self.note(&dir.join(&name), &why);
                }
            }
        }
    }
}

/// What a tree adds to the definitions of the services dirs.
#[derive(Debug, Default)]
pub(super) struct Tree {
    /// The tree's oneshots and longruns, `after` resolved.
    pub services: Vec<Parsed>,
    /// Each bundle (`user`, `user2`, the tree's, pipelines') → its atomic
    /// members, sorted.
    pub bundles: BTreeMap<String, Vec<String>>,
    pub notes: Vec<String>,
    /// The atomic members of `user`, which every services-dir service
    /// comes after.
    pub user: Vec<String>,
}

/// Reads tree `dir` (and the bundle dir of `options`), given the services
/// dirs' definitions `legacy`. Errors are appended to `errors`.
pub(super) fn load(
    dir: &Path,
    options: &LoadOptions,
    legacy: &BTreeMap<String, Parsed>,
    path_env: Option<OsString>,
    errors: &mut Vec<ConfigError>,
) -> Tree {
    let mut ctx = Ctx {
        errors: Vec::new(),
        notes: Vec::new(),
        options,
        path_env,
        broken: BTreeSet::new(),
    };
    let mut defs = source::read(dir, &mut ctx);
    add_bundle_dir(&mut defs, dir, options.s6_bundle_dir.as_deref(), &mut ctx);
    for name in BEFORE_SERVICES.iter().chain(&[LEGACY_SERVICES, TOP]) {
        if let Some(def) = defs.remove(*name) {
            ctx.errors.push(ConfigError::whole_file(
                def.dir(),
                format!(
                    "\"{name}\" is reserved by s6-overlay (its pseudo-service, which corral provides): rename this service"
                ),
            ));
        }
    }
    for (name, def) in &defs {
        if let Some(other) = legacy.get(name) {
            ctx.errors.push(ConfigError::whole_file(
                def.dir(),
                format!(
                    "service \"{name}\" is already defined in {}",
                    other.path.display()
                ),
            ));
        }
    }
    pipeline::link(&mut defs, &mut ctx);

    let legacy_all: BTreeSet<String> = legacy.keys().cloned().collect();
    let legacy_enabled: Vec<String> = legacy
        .values()
        .filter(|p| p.spec.as_ref().is_none_or(|s| s.enabled))
        .map(|p| p.name.clone())
        .collect();
    let mut graph = Graph::new(&defs, &legacy_enabled, &legacy_all);

    // Each atomic service's `after`: its dependencies, bundles expanded.
    let mut after: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, def) in &defs {
        let Def::Atomic(atomic) = def else { continue };
        let mut deps = BTreeSet::new();
        for r in &atomic.deps {
            let members = graph.resolve(r, &mut ctx);
            if members.contains(name) {
                let message = if r.name == *name {
                    "a service cannot depend on itself".to_string()
                } else {
                    format!(
                        "\"{}\" holds this service itself: a dependency loop",
                        r.name
                    )
                };
                ctx.errors.push(r.error(message));
            }
            deps.extend(members.into_iter().filter(|m| m != name));
        }
        after.insert(name.clone(), deps);
    }
    let mut bundles = BTreeMap::new();
    for (name, def) in &defs {
        if let Def::Bundle(_) = def
            && let Some(members) = graph.members(name, &mut Vec::new(), &mut ctx)
        {
            bundles.insert(name.clone(), members.into_iter().collect::<Vec<_>>());
        }
    }
    for name in ["user", "user2"] {
        bundles.entry(name.to_string()).or_default();
    }
    if !defs.contains_key("user") {
        ctx.notes.push(format!(
            "{}: no `user` bundle: none of the tree's services starts at boot",
            dir.display()
        ));
    }

    let mut roots: BTreeSet<String> = BTreeSet::new();
    for name in ["user", "user2"] {
        roots.extend(bundles.get(name).into_iter().flatten().cloned());
    }
    let boot = graph::reach(&roots, &after);
    let user: Vec<String> = bundles
        .get("user")
        .into_iter()
        .flatten()
        .filter(|m| after.contains_key(*m))
        .cloned()
        .collect();

    let mut services = Vec::new();
    for (name, def) in defs {
        let Def::Atomic(atomic) = def else { continue };
        let deps: Vec<String> = after
            .remove(&name)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let spec = atomic.spec.map(|mut spec| {
            // The default condition: ready, a oneshot exited with success.
            spec.after = deps.iter().map(|d| d.as_str().into()).collect();
            spec.enabled = boot.contains(&name);
            spec.boot_step = spec.enabled;
            spec
        });
        services.push(Parsed {
            name,
            path: atomic.dir,
            spec,
            after_key: None,
            after: deps.iter().map(|d| AfterAt::implied(d)).collect(),
            log_file_at: None,
            errors: Vec::new(),
        });
    }
    errors.append(&mut ctx.errors);
    Tree {
        services,
        bundles,
        notes: ctx.notes,
        user,
    }
}

/// s6-overlay's stage 2 compiles the bundle dir with the tree, unless the
/// tree defines `user` itself.
fn add_bundle_dir(
    defs: &mut BTreeMap<String, Def>,
    tree: &Path,
    bundle_dir: Option<&Path>,
    ctx: &mut Ctx,
) {
    let Some(bundle_dir) = bundle_dir.filter(|d| d.is_dir()) else {
        return;
    };
    if defs.contains_key("user") {
        let user = bundle_dir.join("user");
        let holds_something = fs::read_dir(user.join("contents.d")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| !e.file_name().to_string_lossy().starts_with('.'))
        }) || user.join("contents").is_file();
        if holds_something {
            ctx.note(
                bundle_dir,
                &format!(
                    "{} defines `user` itself, so s6-overlay does not read the bundle dir either",
                    tree.display()
                ),
            );
        }
        return;
    }
    for (name, def) in source::read(bundle_dir, ctx) {
        match defs.get(&name) {
            Some(first) => ctx.errors.push(ConfigError::whole_file(
                def.dir(),
                format!(
                    "service \"{name}\" is already defined in {}",
                    first.dir().display()
                ),
            )),
            None => {
                defs.insert(name, def);
            }
        }
    }
}

/// The text of a file of the tree: `Some(None)` when it does not exist,
/// `None` (with an error pushed) when it cannot be read.
fn small_file(ctx: &mut Ctx, path: &Path, limit: u64) -> Option<Option<String>> {
    match crate::files::read_limited(path, limit) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(Some(text)),
            Err(_) => {
                ctx.errors
                    .push(ConfigError::whole_file(path, "not valid UTF-8".to_string()));
                None
            }
        },
        Err(e) if e.why.is_not_found() => Some(None),
        Err(e) => {
            ctx.errors
                .push(ConfigError::whole_file(path, e.why.to_string()));
            None
        }
    }
}

#[cfg(test)]
mod tests;
