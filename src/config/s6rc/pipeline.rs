//! s6-rc pipelines: `producer-for` / `consumer-for` declared on both ends
//! (each producer feeds one consumer, a consumer may read several
//! producers), no loop, and the `pipeline-name` bundle of a last consumer.
//!
//! What it must never do: add an order between a producer and its consumer
//! (s6-rc adds none: the pipe, held by corral, outlives either end).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::source::{Bundle, Def, check_name};
use super::{Ctx, Ref, unknown};
use crate::config::ConfigError;

/// Checks both ends of every pipe, sets each producer's `pipe_to`, and adds
/// the `pipeline-name` bundles to `defs`.
pub(super) fn link(defs: &mut BTreeMap<String, Def>, ctx: &mut Ctx) {
    let names: Vec<String> = defs.keys().cloned().collect();
    let mut pipe_to: BTreeMap<String, String> = BTreeMap::new();
    for name in &names {
        let Some(Def::Atomic(a)) = defs.get(name) else {
            continue;
        };
        if let Some(r) = &a.producer_for {
            match defs.get(&r.name) {
                None => ctx.errors.push(unknown(r, defs.keys())),
                Some(Def::Atomic(t)) if t.longrun => {
                    if t.consumer_for.iter().any(|c| &c.name == name) {
                        pipe_to.insert(name.clone(), r.name.clone());
                    } else {
                        ctx.errors.push(r.error(format!(
                            "\"{}\" does not name \"{name}\" back in its `consumer-for`",
                            r.name
                        )));
                    }
                }
                Some(_) => ctx.errors.push(r.error(format!(
                    "\"{}\" is not a longrun: a producer's output goes to a longrun",
                    r.name
                ))),
            }
        }
        for c in &a.consumer_for {
            match defs.get(&c.name) {
                None => ctx.errors.push(unknown(c, defs.keys())),
                Some(Def::Atomic(p))
                    if p.longrun && p.producer_for.as_ref().is_some_and(|f| &f.name == name) => {}
                Some(Def::Atomic(p)) if p.longrun => ctx.errors.push(c.error(format!(
                    "\"{}\" does not name \"{name}\" back in its `producer-for`",
                    c.name
                ))),
                Some(_) => ctx.errors.push(c.error(format!(
                    "\"{}\" is not a longrun: only a longrun can be a producer",
                    c.name
                ))),
            }
        }
    }
    // A loop would feed a service its own output.
    let mut reported = BTreeSet::new();
    for start in pipe_to.keys() {
        let mut at = start;
        let mut seen = vec![start.clone()];
        while let Some(next) = pipe_to.get(at) {
            if next == start {
                let mut key = seen.clone();
                crate::sort::sort(&mut key);
                if reported.insert(key) {
                    seen.push(start.clone());
                    let dir = defs.get(start).map(|d| d.dir().join("producer-for"));
                    ctx.errors.push(ConfigError::whole_file(
                        &dir.unwrap_or_else(|| PathBuf::from(start)),
                        format!("pipeline loop: {}", seen.join(" -> ")),
                    ));
                }
                break;
            }
            if seen.contains(next) || seen.len() > pipe_to.len() {
                break;
            }
            seen.push(next.clone());
            at = next;
        }
    }
    for (producer, consumer) in &pipe_to {
        if let Some(Def::Atomic(a)) = defs.get_mut(producer)
            && let Some(spec) = a.spec.as_mut()
        {
            spec.pipe_to = Some(consumer.clone());
        }
    }
    let mut bundles = Vec::new();
    for name in &names {
        let Some(Def::Atomic(a)) = defs.get(name) else {
            continue;
        };
        let Some(r) = &a.pipeline_name else { continue };
        if a.consumer_for.is_empty() || a.producer_for.is_some() {
            ctx.note(
                &a.dir.join("pipeline-name"),
                "only the last consumer of a pipeline names it (s6-rc ignores it here too)",
            );
            continue;
        }
        if let Err(message) = check_name(&r.name) {
            ctx.errors.push(r.error(message));
            continue;
        }
        if let Some((_, first)) = bundles
            .iter()
            .find(|(n, _): &&(String, Bundle)| *n == r.name)
        {
            ctx.errors.push(r.error(format!(
                "pipeline name \"{}\" is already the name of the pipeline ending at {}",
                r.name,
                first.dir.display()
            )));
            continue;
        }
        if let Some(other) = defs.get(&r.name) {
            ctx.errors.push(r.error(format!(
                "pipeline name \"{}\" is already defined in {}",
                r.name,
                other.dir().display()
            )));
            continue;
        }
        // The last consumer and everything that feeds it, however far back.
        let mut members = vec![name.clone()];
        let mut i = 0;
        while let Some(m) = members.get(i).cloned() {
            i += 1;
            for (p, c) in &pipe_to {
                if *c == m && !members.contains(p) {
                    members.push(p.clone());
                }
            }
        }
        let contents = members
            .into_iter()
            .map(|m| Ref {
                name: m,
                path: r.path.clone(),
                line: r.line,
                col: r.col,
            })
            .collect();
        bundles.push((
            r.name.clone(),
            Bundle {
                dir: a.dir.clone(),
                contents,
            },
        ));
    }
    for (name, bundle) in bundles {
        defs.entry(name).or_insert(Def::Bundle(bundle));
    }
}
