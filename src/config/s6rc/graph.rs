//! Names → atomic services: bundles expanded (bundles inside bundles, a
//! loop is an error), s6-overlay v3's pseudo-services, and what the boot
//! reaches from `user` and `user2`.
//!
//! The pseudo-services of v3 (its `top` = `base` + `legacy-services` +
//! `user` + `user2`; `base` = `fix-attrs` + `legacy-cont-init`;
//! `legacy-services` starts the services dirs and depends on `base` and
//! `user`) mean this here:
//! - `base`, `fix-attrs`, `legacy-cont-init`: nothing. corral runs the init
//!   scripts (cont-init.d) before any service starts, so a dependency on
//!   them always holds and is left out of `after`.
//! - `legacy-services`: every enabled service of the services dirs (TOML
//!   files and s6 service directories).
//! - `top`: `user`, `user2` and `legacy-services`.
//!
//! A name the tree does not define but a services dir does is that service
//! (s6-rc would not know it; in corral both live in one graph).
//!
//! What it must never do: recurse without a bound (a deep chain of bundles
//! is an error, not a stack overflow in PID 1), or report one loop twice.

use std::collections::{BTreeMap, BTreeSet};

use super::source::Def;
use super::{Ctx, Ref, unknown};
use crate::config::ConfigError;

/// Satisfied before any service starts: the init phase.
pub(super) const BEFORE_SERVICES: [&str; 3] = ["base", "fix-attrs", "legacy-cont-init"];
pub(super) const LEGACY_SERVICES: &str = "legacy-services";
pub(super) const TOP: &str = "top";

/// Bundles nested deeper than this are refused.
const MAX_DEPTH: usize = 1000;

pub(super) struct Graph<'a> {
    defs: &'a BTreeMap<String, Def>,
    /// The enabled services of the services dirs (`legacy-services`).
    legacy_enabled: &'a [String],
    /// Every name a services dir defines.
    legacy_all: &'a BTreeSet<String>,
    /// Each bundle's atomic members, once known.
    memo: BTreeMap<String, BTreeSet<String>>,
    reported: BTreeSet<Vec<String>>,
}

impl<'a> Graph<'a> {
    pub fn new(
        defs: &'a BTreeMap<String, Def>,
        legacy_enabled: &'a [String],
        legacy_all: &'a BTreeSet<String>,
    ) -> Graph<'a> {
        Graph {
            defs,
            legacy_enabled,
            legacy_all,
            memo: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    /// The atomic services `r` stands for, or an "unknown service" error.
    pub fn resolve(&mut self, r: &Ref, ctx: &mut Ctx) -> BTreeSet<String> {
        match self.members(&r.name, &mut Vec::new(), ctx) {
            Some(members) => members,
            None => {
                let known: Vec<&String> = self.defs.keys().chain(self.legacy_all).collect();
                ctx.errors.push(unknown(r, known));
                BTreeSet::new()
            }
        }
    }

    /// The atomic members of `name` (itself, for an atomic service); `None`
    /// when nothing defines it. `stack` holds the bundles being expanded.
    pub fn members(
        &mut self,
        name: &str,
        stack: &mut Vec<String>,
        ctx: &mut Ctx,
    ) -> Option<BTreeSet<String>> {
        if BEFORE_SERVICES.contains(&name) || ctx.broken.contains(name) {
            return Some(BTreeSet::new());
        }
        if name == LEGACY_SERVICES {
            // v3's legacy-services depends on `user`: what waits for it
            // (the `user2` services, by s6-overlay's rule) waits for both.
            let mut all: BTreeSet<String> = self.legacy_enabled.iter().cloned().collect();
            if let Some(user) = self.members("user", stack, ctx) {
                all.extend(user);
            }
            return Some(all);
        }
        if name == TOP {
            let mut all: BTreeSet<String> = self.legacy_enabled.iter().cloned().collect();
            for bundle in ["user", "user2"] {
                if let Some(m) = self.members(bundle, stack, ctx) {
                    all.extend(m);
                }
            }
            return Some(all);
        }
        let bundle = match self.defs.get(name) {
            Some(Def::Atomic(_)) => return Some(BTreeSet::from([name.to_string()])),
            Some(Def::Bundle(b)) => b,
            None if self.legacy_all.contains(name) => {
                return Some(BTreeSet::from([name.to_string()]));
            }
            None => return None,
        };
        if let Some(m) = self.memo.get(name) {
            return Some(m.clone());
        }
        if let Some(at) = stack.iter().position(|b| b == name) {
            let mut cycle: Vec<String> = stack.get(at..).unwrap_or_default().to_vec();
            let mut key = cycle.clone();
            crate::sort::sort(&mut key);
            if self.reported.insert(key) {
                cycle.push(name.to_string());
                ctx.errors.push(ConfigError::whole_file(
                    &bundle.dir,
                    format!("bundle loop: {}", cycle.join(" -> ")),
                ));
            }
            return Some(BTreeSet::new());
        }
        if stack.len() >= MAX_DEPTH {
            ctx.errors.push(ConfigError::whole_file(
                &bundle.dir,
                format!("bundles nested more than {MAX_DEPTH} deep"),
            ));
            return Some(BTreeSet::new());
        }
        stack.push(name.to_string());
        let mut all = BTreeSet::new();
        for r in &bundle.contents {
            match self.members(&r.name, stack, ctx) {
                Some(m) => all.extend(m),
                None => {
                    let known: Vec<&String> = self.defs.keys().chain(self.legacy_all).collect();
                    ctx.errors.push(unknown(r, known));
                }
            }
        }
        stack.pop();
        self.memo.insert(name.to_string(), all.clone());
        Some(all)
    }
}

/// Everything the boot starts: `roots` and, transitively, what they come
/// `after` (within the tree; services dirs start on their own terms).
pub(super) fn reach(
    roots: &BTreeSet<String>,
    after: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeSet<String> {
    let mut reached: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<&String> = roots.iter().collect();
    while let Some(name) = todo.pop() {
        let Some(deps) = after.get(name) else {
            continue;
        };
        if !reached.insert(name.clone()) {
            continue;
        }
        todo.extend(deps.iter());
    }
    reached
}
