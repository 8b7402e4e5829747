//! The pages: `/healthz`, `/readyz` and `/metrics` rendered from the
//! loop's `status` answer, as the table in the module doc of `http` says;
//! `/metrics` also shows the output counters (`OutputCounts`, read from
//! `Logs` at scrape time, never through the loop).
//! What "up" and "ready as wanted" mean is `ServiceStatus`'s (`protocol`),
//! shared with `ctl health`.
//!
//! What it must never do: ask for anything but the one status (and the
//! output counters) it is given.

use std::fmt::Write as _;

use crate::output::ServiceCounts;
use crate::protocol::{Response, ServiceStatus};

pub(super) const TEXT: &str = "text/plain; charset=utf-8";
pub(super) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one request gets: status code, content type, body.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) code: u16,
    pub(super) content_type: &'static str,
    pub(super) body: String,
}

impl Reply {
    pub(super) fn text(code: u16, body: impl Into<String>) -> Reply {
        Reply {
            code,
            content_type: TEXT,
            body: body.into(),
        }
    }
}

/// What the output thread counted, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct OutputCounts {
    /// By service name.
    pub(super) services: Vec<ServiceCounts>,
    /// Lines lost in writes that failed, stdout's and stderr's.
    pub(super) lost: [u64; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Page {
    Health,
    Ready,
    Metrics,
}

fn render(page: Page, status: &Response, output: &OutputCounts) -> Reply {
    match page {
        Page::Health => health(status),
        Page::Ready => ready(status),
        Page::Metrics => Reply {
            code: 200,
            content_type: PROMETHEUS_TEXT,
            body: metrics(status, output),
        },
    }
}

/// `phase` as the loop reports it; an older core that leaves it out counts
/// as up.
fn phase(status: &Response) -> &str {
    status.phase.as_deref().unwrap_or("up")
}

fn shutting_down(phase: &str) -> bool {
    !matches!(phase, "init" | "up")
}

fn health(status: &Response) -> Reply {
    let phase = phase(status);
    if shutting_down(phase) {
        return Reply::text(503, format!("corral is shutting down (phase {phase})\n"));
    }
    let down: Vec<String> = status
        .services
        .iter()
        .filter(|s| s.essential && !s.is_up())
        .map(|s| format!("{} ({})", s.name, s.state))
        .collect();
    if down.is_empty() {
        Reply::text(200, "ok\n")
    } else {
        Reply::text(
            503,
            format!("essential services not up: {}\n", down.join(", ")),
        )
    }
}

fn ready(status: &Response) -> Reply {
    let phase = phase(status);
    if phase != "up" {
        let what = if shutting_down(phase) {
            "shutting down"
        } else {
            "starting"
        };
        return Reply::text(503, format!("corral is {what} (phase {phase})\n"));
    }
    let waiting: Vec<&str> = status
        .services
        .iter()
        .filter(|s| !s.is_ready_as_wanted())
        .map(|s| s.name.as_str())
        .collect();
    if waiting.is_empty() {
        Reply::text(200, "ready\n")
    } else {
        Reply::text(503, format!("not ready: {}\n", waiting.join(", ")))
    }
}

/// Prometheus text exposition format 0.0.4: each family's HELP and TYPE,
/// then its samples, one per service in the loop's order.
fn metrics(status: &Response, output: &OutputCounts) -> String {
    let mut out = String::new();
    let services = &status.services;
    family(
        &mut out,
        "corral_service_up",
        "gauge",
        "Whether the service is up: running, ready, or a oneshot that exited 0.",
        services.iter().map(|s| (s, Some(i64::from(s.is_up())))),
    );
    family(
        &mut out,
        "corral_service_ready",
        "gauge",
        "Whether the service is ready.",
        services.iter().map(|s| (s, Some(i64::from(s.ready)))),
    );
    family(
        &mut out,
        "corral_service_restarts_total",
        "counter",
        "Times the service was started again since corral started.",
        services.iter().map(|s| (s, Some(i64::from(s.restarts)))),
    );
    family(
        &mut out,
        "corral_service_last_exit_code",
        "gauge",
        "Exit status of the service's last run, shell-style (128+N for signal N).",
        services
            .iter()
            .map(|s| (s, s.last_exit_code.map(i64::from))),
    );
    // Scheduled services only (`schedule`): runs started, ticks skipped.
    family(
        &mut out,
        "corral_schedule_runs_total",
        "counter",
        "Runs of a scheduled service since corral started (by its ticks or `ctl run`).",
        services
            .iter()
            .map(|s| (s, s.skipped_ticks.map(|_| i64::from(s.run)))),
    );
    family(
        &mut out,
        "corral_schedule_skipped_ticks_total",
        "counter",
        "Ticks of a scheduled service skipped: its previous run was still going, or a service it runs after was down.",
        services.iter().map(|s| (s, s.skipped_ticks.map(i64::from))),
    );
    let orphans = status.orphans_reaped.unwrap_or(0);
    let _ = write!(
        out,
        "# HELP corral_orphans_reaped_total Processes not started by corral that it reaped.\n\
         # TYPE corral_orphans_reaped_total counter\n\
         corral_orphans_reaped_total {orphans}\n"
    );
    output_metrics(&mut out, output);
    out
}

/// The output thread's counters: lines passed on by service and stream,
/// lines dropped by service, lines lost in failed writes by stream.
fn output_metrics(out: &mut String, output: &OutputCounts) {
    let _ = write!(
        out,
        "# HELP corral_output_lines_total Lines of service output read by corral.\n\
         # TYPE corral_output_lines_total counter\n"
    );
    for counts in &output.services {
        for (stream, n) in ["stdout", "stderr"].iter().zip(counts.lines) {
            let _ = writeln!(
                out,
                "corral_output_lines_total{{service=\"{}\",stream=\"{stream}\"}} {n}",
                label(&counts.service)
            );
        }
    }
    let _ = write!(
        out,
        "# HELP corral_output_dropped_lines_total Lines of service output corral could not write (dropped while its output failed).\n\
         # TYPE corral_output_dropped_lines_total counter\n"
    );
    for counts in &output.services {
        let _ = writeln!(
            out,
            "corral_output_dropped_lines_total{{service=\"{}\"}} {}",
            label(&counts.service),
            counts.dropped
        );
    }
    let _ = write!(
        out,
        "# HELP corral_output_write_failed_lines_total Lines lost in writes of corral's stdout or stderr that failed (any service's).\n\
         # TYPE corral_output_write_failed_lines_total counter\n"
    );
    for (stream, n) in ["stdout", "stderr"].iter().zip(output.lost) {
        let _ = writeln!(
            out,
            "corral_output_write_failed_lines_total{{stream=\"{stream}\"}} {n}"
        );
    }
}

fn family<'a>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl Iterator<Item = (&'a ServiceStatus, Option<i64>)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (service, value) in samples {
        if let Some(value) = value {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\"}} {value}",
                label(&service.name)
            );
        }
    }
}

/// A label value, escaped as the format requires (`\\`, `\"`, `\n`).
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The answer to `page`, from the loop's status or why there is none.
pub(super) fn page_reply(
    page: Page,
    status: &Result<Response, String>,
    output: &OutputCounts,
) -> Reply {
    match status {
        Ok(status) if status.ok => render(page, status, output),
        Ok(status) => Reply::text(
            503,
            format!(
                "{}\n",
                status
                    .error
                    .as_deref()
                    .unwrap_or("corral answered with an error")
            ),
        ),
        Err(why) => Reply::text(503, format!("{why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn metrics_count_output_lines_by_service_and_stream() {
        let output = OutputCounts {
            services: vec![ServiceCounts {
                service: "web".into(),
                lines: [3, 1],
                dropped: 2,
            }],
            lost: [5, 0],
        };
        let body = metrics(&Response::ok(), &output);
        for sample in [
            "corral_output_lines_total{service=\"web\",stream=\"stdout\"} 3\n",
            "corral_output_lines_total{service=\"web\",stream=\"stderr\"} 1\n",
            "corral_output_dropped_lines_total{service=\"web\"} 2\n",
            "corral_output_write_failed_lines_total{stream=\"stdout\"} 5\n",
            "# TYPE corral_output_lines_total counter\n",
        ] {
            assert!(body.contains(sample), "{sample} not in\n{body}");
        }
    }
}
