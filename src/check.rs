//! `corral check`: the start plan of a valid set of definitions, then the
//! bundles of an s6-rc tree and what of it corral does not act on.

use std::fmt::Write;

use crate::calendar::{self, Schedule, Wall};
use crate::config::{Condition, Origin, PreStop, Ready, Restart, ServiceSpec, Spec, show_limit};
use crate::text::human;

/// Start levels: level 0 needs nothing, level n waits for something at n-1.
/// Services in one level start together. Definitions are validated (no
/// cycles), but a depth bound keeps this total anyway.
pub fn levels(spec: &Spec) -> Vec<Vec<&ServiceSpec>> {
    let n = spec.services.len();
    let mut level: Vec<Option<usize>> = vec![None; n];
    for _ in 0..=n {
        for (i, svc) in spec.services.iter().enumerate() {
            // `after` a replicated service: after each of its instances.
            let deps: Option<Vec<usize>> = svc
                .after
                .iter()
                .flat_map(|d| {
                    spec.services.iter().enumerate().filter_map(|(j, s)| {
                        let group = s.replica.as_ref().map(|r| &r.group);
                        (s.name == d.name || group == Some(&d.name))
                            .then(|| level.get(j).copied().flatten())
                    })
                })
                .collect();
            if let (Some(deps), Some(slot)) = (deps, level.get_mut(i)) {
                *slot = Some(deps.into_iter().map(|l| l + 1).max().unwrap_or(0));
            }
        }
    }
    let depth = level.iter().flatten().max().map_or(0, |m| m + 1);
    let mut out: Vec<Vec<&ServiceSpec>> = vec![Vec::new(); depth];
    for (svc, l) in spec.services.iter().zip(&level) {
        if let Some(slot) = l.and_then(|l| out.get_mut(l)) {
            slot.push(svc);
        }
    }
    out
}

pub fn plan(spec: &Spec, main: &[String]) -> String {
    let mut out = String::new();
    let count = spec.services.len();
    let _ = writeln!(
        out,
        "{count} service{} defined",
        if count == 1 { "" } else { "s" }
    );
    let width = spec
        .services
        .iter()
        .filter_map(|s| shown(spec, s))
        .map(|s| s.len())
        .max()
        .unwrap_or(0);
    let mut step = 0;
    for level in levels(spec) {
        step += 1;
        let named = level
            .iter()
            .filter_map(|svc| Some((shown(spec, svc)?, svc)));
        for (k, (name, svc)) in named.enumerate() {
            let num = if k == 0 {
                format!("{step}.")
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {num:<4}{name:<width$}  {}", describe(svc));
        }
    }
    if !main.is_empty() {
        let _ = writeln!(
            out,
            "  {:<4}main command: {}",
            format!("{}.", step + 1),
            main.join(" ")
        );
    }
    if !spec.bundles.is_empty() {
        let _ = writeln!(out, "s6-rc bundles:");
        for (name, members) in &spec.bundles {
            let members = if members.is_empty() {
                "(empty)".to_string()
            } else {
                members.join(", ")
            };
            let _ = writeln!(out, "  {name}: {members}");
        }
    }
    if !spec.notes.is_empty() {
        let _ = writeln!(out, "not acted on:");
        for note in &spec.notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    out
}

/// A service's name in the plan; a replicated service's instances as one
/// row, `web.1..web.3`, on its first (`None` for the others).
fn shown(spec: &Spec, svc: &ServiceSpec) -> Option<String> {
    let Some(r) = &svc.replica else {
        return Some(svc.name.clone());
    };
    let count = spec
        .replicated
        .iter()
        .find(|t| t.name == r.group)
        .and_then(|t| t.replicas)
        .unwrap_or(1);
    match r.index {
        1 if count > 1 => Some(format!("{0}.1..{0}.{count}", r.group)),
        1 => Some(svc.name.clone()),
        _ => None,
    }
}

fn describe(svc: &ServiceSpec) -> String {
    let mut parts = Vec::new();
    if svc.oneshot {
        parts.push("oneshot".to_string());
    }
    if !svc.enabled && svc.origin == Origin::S6Rc {
        parts.push(
            "disabled: not in `user` or `user2` (starts on `corral ctl start` or `s6-rc -u change`)"
                .to_string(),
        );
    } else if !svc.enabled {
        parts.push("disabled (starts on `corral ctl start`)".to_string());
    }
    if svc.essential {
        parts.push("essential".to_string());
    }
    if let Some(schedule) = &svc.schedule {
        parts.push(schedule_line(
            schedule,
            &calendar::Local,
            calendar::wall_now(),
        ));
    }
    if !svc.after.is_empty() {
        let after: Vec<String> = svc
            .after
            .iter()
            .map(|a| match a.condition {
                Condition::Ready => a.name.clone(),
                other => format!("{} ({})", a.name, other.name()),
            })
            .collect();
        parts.push(format!("after {}", after.join(", ")));
    }
    if let Some(Ready::LogLine(pattern)) = &svc.ready {
        parts.push(format!(
            "ready when a line matches \"{}\"",
            pattern.as_str().escape_debug()
        ));
    }
    let default_restart = if svc.oneshot {
        Restart::Never
    } else {
        Restart::Always
    };
    if svc.restart != default_restart {
        parts.push(format!("restart {}", svc.restart));
    }
    if let Some(log) = &svc.log_file {
        parts.push(format!(
            "logs to {} (rotated at {} bytes, {} kept)",
            log.path.display(),
            log.max_size,
            log.keep
        ));
    }
    if svc.success_exit_codes != [0] {
        let codes: Vec<String> = svc.success_exit_codes.iter().map(u8::to_string).collect();
        parts.push(format!("success exit codes {}", codes.join(", ")));
    }
    match &svc.pre_stop {
        Some(PreStop::Exec { command, timeout }) => parts.push(format!(
            "pre-stop {:?}{}",
            command.join(" "),
            timeout.map_or_else(String::new, |t| format!(" (timeout {})", human(t)))
        )),
        Some(PreStop::Delay(delay)) => parts.push(format!("pre-stop delay {}", human(*delay))),
        None => {}
    }
    if !svc.limits.is_empty() {
        let limits: Vec<String> = svc.limits.iter().map(|&(r, v)| show_limit(r, v)).collect();
        parts.push(format!("limits {}", limits.join(", ")));
    }
    parts.push(format!("from {}", svc.source.display()));
    parts.join("; ")
}

/// `schedule "*/5 * * * *", next 2026-12-04T21:05:00+01:00, 21:10, ...`:
/// the next 3 ticks after `now` in `zone`.
fn schedule_line<Z: calendar::Zone>(schedule: &Schedule, zone: &Z, now: Wall) -> String {
    let ticks: Vec<String> = schedule
        .upcoming(zone, now, 3)
        .into_iter()
        .map(|tick| calendar::rfc3339(zone, tick))
        .collect();
    if ticks.is_empty() {
        format!("schedule \"{}\" (no tick to come)", schedule.text)
    } else {
        format!("schedule \"{}\", next {}", schedule.text, ticks.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_after() {
        let mut a = ServiceSpec::new("a", vec!["true".into()]);
        let mut b = ServiceSpec::new("b", vec!["true".into()]);
        let c = ServiceSpec::new("c", vec!["true".into()]);
        a.after = vec!["b".into()];
        b.after = vec!["c".into()];
        let spec = Spec {
            services: vec![a, b, c.clone()],
            ..Default::default()
        };
        let names: Vec<Vec<&str>> = levels(&spec)
            .iter()
            .map(|l| l.iter().map(|s| s.name.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["c"], vec!["b"], vec!["a"]]);
    }
}
