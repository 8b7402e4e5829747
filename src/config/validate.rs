//! Checks between services: every `after` target exists, is not the service
//! itself, can reach the condition asked of it (`completed` and `succeeded`
//! need a oneshot, `healthy` a `health` check), and the `after` relation
//! has no cycle (a cycle could never start); no two services write the
//! same `log-file`.

use std::collections::{BTreeMap, VecDeque};

use super::ConfigError;
use super::file::{Parsed, Pos};
use super::spec::Condition;
use crate::text::closest;

/// Checks the `after` lists of `services` (one entry per service name, files
/// with errors included, so that a typo elsewhere in a file does not turn
/// into "unknown service" for everyone who depends on it).
pub(super) fn check_after(services: &[&Parsed]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    // Sorted by name, so that everything below is deterministic.
    let mut sorted: Vec<&Parsed> = services.to_vec();
    crate::sort::sort_by(&mut sorted, |a, b| a.name.cmp(&b.name));
    let index: BTreeMap<&str, usize> = sorted
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();

    let mut edges: Vec<Vec<usize>> = Vec::with_capacity(sorted.len());
    for service in &sorted {
        let mut targets = Vec::new();
        for after in &service.after {
            let (target, pos) = (&after.name, &after.at);
            if *target == service.name {
                errors.push(error(
                    service,
                    *pos,
                    format!(
                        "`after`: service \"{}\" cannot come after itself",
                        target.escape_debug()
                    ),
                ));
            } else if let Some(&i) = index.get(target.as_str()) {
                targets.push(i);
                // A target whose own file has errors is not judged further.
                let spec = sorted.get(i).and_then(|p| p.spec.as_ref());
                let why = match (after.condition, spec) {
                    (Condition::Completed | Condition::Succeeded, Some(spec)) if !spec.oneshot => {
                        "needs a oneshot: it is a long-running service (use \"started\", \"ready\" or \"healthy\")"
                    }
                    (Condition::Healthy, Some(spec)) if spec.health.is_none() => {
                        "needs a `health` check, and it has none (use \"ready\")"
                    }
                    _ => "",
                };
                if !why.is_empty() {
                    errors.push(error(
                        service,
                        after.condition_at,
                        format!("`after.{target}`: \"{}\" {why}", after.condition.name()),
                    ));
                }
            } else {
                let message = match closest(target, index.keys().copied()) {
                    Some(guess) => format!(
                        "`after`: unknown service \"{}\" (did you mean \"{guess}\"?)",
                        target.escape_debug()
                    ),
                    None => format!("`after`: unknown service \"{}\"", target.escape_debug()),
                };
                errors.push(error(service, *pos, message));
            }
        }
        crate::sort::sort(&mut targets);
        edges.push(targets);
    }

    for component in strongly_connected(&edges) {
        if component.len() < 2 {
            continue;
        }
        let Some(cycle) = shortest_cycle(&edges, &component) else {
            continue;
        };
        let names: Vec<&str> = cycle
            .iter()
            .filter_map(|&i| sorted.get(i).map(|p| p.name.as_str()))
            .collect();
        let Some(start) = cycle.first().and_then(|&i| sorted.get(i)) else {
            continue;
        };
        let pos = start.after_key.unwrap_or((0, 0));
        errors.push(error(
            start,
            pos,
            format!("dependency cycle: {}", names.join(" -> ")),
        ));
    }
    errors
}

/// Two services may not share a log file: each would rotate the other's
/// lines away. Paths are compared as resolved (`Path` equality: `a//b` and
/// `a/./b` are one), not through links.
pub(super) fn check_log_files(services: &[&Parsed]) -> Vec<ConfigError> {
    let mut sorted: Vec<&Parsed> = services.to_vec();
    crate::sort::sort_by(&mut sorted, |a, b| a.name.cmp(&b.name));
    let mut owners: BTreeMap<&std::path::Path, &str> = BTreeMap::new();
    let mut errors = Vec::new();
    for service in sorted {
        let Some(log) = service.spec.as_ref().and_then(|s| s.log_file.as_ref()) else {
            continue;
        };
        match owners.get(log.path.as_path()) {
            Some(owner) => errors.push(error(
                service,
                service.log_file_at.unwrap_or((0, 0)),
                format!(
                    "`log-file.path`: {} is already the log file of service \"{owner}\"",
                    log.path.display()
                ),
            )),
            None => {
                owners.insert(log.path.as_path(), service.name.as_str());
            }
        }
    }
    errors
}

/// The instances of a replicated service are named `NAME.N`, up to
/// `MAX_REPLICAS` (`ctl scale`): no other service may have such a name.
pub(super) fn check_replica_names(services: &[&Parsed]) -> Vec<ConfigError> {
    let replicated = |name: &str| {
        services
            .iter()
            .any(|p| p.name == name && p.spec.as_ref().is_some_and(|s| s.replicas.is_some()))
    };
    let mut errors = Vec::new();
    for service in services {
        if let Some((group, n)) = service.name.rsplit_once('.')
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && replicated(group)
        {
            errors.push(error(
                service,
                (0, 0),
                format!(
                    "service \"{}\" clashes with the instances of \"{group}\", which has `replicas`",
                    service.name
                ),
            ));
        }
    }
    errors
}

fn error(service: &Parsed, (line, col): Pos, message: String) -> ConfigError {
    ConfigError {
        path: service.path.clone(),
        line,
        col,
        message,
    }
}

/// Tarjan's algorithm, iterative so that a long chain of services cannot
/// overflow the stack. Returns each strongly connected component.
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut tarjan = Tarjan {
        order: vec![None; edges.len()],
        low: vec![0; edges.len()],
        on_stack: vec![false; edges.len()],
        stack: Vec::new(),
        next_order: 0,
        components: Vec::new(),
    };
    for root in 0..edges.len() {
        if tarjan.order_of(root).is_some() {
            continue;
        }
        // The explicit call stack: (node, how many of its edges were followed).
        let mut calls = vec![(root, 0)];
        tarjan.visit(root);
        while let Some(&(v, followed)) = calls.last() {
            if let Some(&w) = edges.get(v).and_then(|e| e.get(followed)) {
                if let Some(top) = calls.last_mut() {
                    top.1 += 1;
                }
                match tarjan.order_of(w) {
                    None => {
                        tarjan.visit(w);
                        calls.push((w, 0));
                    }
                    Some(w_order) if tarjan.on_stack.get(w).copied().unwrap_or(false) => {
                        tarjan.lower(v, w_order);
                    }
                    Some(_) => {}
                }
            } else {
                calls.pop();
                let v_low = tarjan.low.get(v).copied().unwrap_or(0);
                if let Some(&(parent, _)) = calls.last() {
                    tarjan.lower(parent, v_low);
                }
                if tarjan.order_of(v) == Some(v_low) {
                    tarjan.pop_component(v);
                }
            }
        }
    }
    tarjan.components
}

struct Tarjan {
    /// The order in which each node was first visited.
    order: Vec<Option<usize>>,
    /// The smallest order reachable from the node through the DFS tree and
    /// one back edge.
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next_order: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan {
    fn order_of(&self, v: usize) -> Option<usize> {
        self.order.get(v).copied().flatten()
    }

    fn visit(&mut self, v: usize) {
        set(&mut self.order, v, Some(self.next_order));
        set(&mut self.low, v, self.next_order);
        set(&mut self.on_stack, v, true);
        self.next_order += 1;
        self.stack.push(v);
    }

    fn lower(&mut self, v: usize, to: usize) {
        if let Some(low) = self.low.get_mut(v) {
            *low = (*low).min(to);
        }
    }

    /// `v` is the root of a component: everything above it on the stack.
    fn pop_component(&mut self, v: usize) {
        let mut component = Vec::new();
        while let Some(w) = self.stack.pop() {
            set(&mut self.on_stack, w, false);
            component.push(w);
            if w == v {
                break;
            }
        }
        self.components.push(component);
    }
}

fn set<T>(values: &mut [T], i: usize, value: T) {
    if let Some(slot) = values.get_mut(i) {
        *slot = value;
    }
}

/// The shortest cycle through the smallest node of `component`, as nodes
/// from that node back to itself (breadth-first, edges in sorted order, so
/// the answer is deterministic).
fn shortest_cycle(edges: &[Vec<usize>], component: &[usize]) -> Option<Vec<usize>> {
    let start = *component.iter().min()?;
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in edges.get(v).into_iter().flatten() {
            if w == start {
                let mut path = vec![start, v];
                let mut at = v;
                while at != start {
                    at = *parent.get(&at)?;
                    path.push(at);
                }
                // `path` runs backwards: start, v, ..., start.
                path.reverse();
                return Some(path);
            }
            if component.contains(&w) && !parent.contains_key(&w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    None
}
