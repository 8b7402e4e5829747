//! `--http ADDR` (SPEC section 1): `/readyz`, `/healthz` and `/metrics`
//! against the real binary, read with a plain HTTP/1.0 GET over a fresh TCP
//! connection: `/readyz` is 503 while a service is not ready and flips to
//! 200 once it is; `/healthz` follows the essential services; the metrics
//! count restarts and reaped orphans as they happen.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// The value of the sample `name` (e.g. `corral_service_up{service="x"}`)
/// in a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn get(c: &Corral, port: u16, path: &str) -> (u16, String) {
    http_get(port, path).unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", c.output_excerpt()))
}

fn metric(c: &Corral, port: u16, name: &str) -> Option<f64> {
    let (code, page) = get(c, port, "/metrics");
    assert_eq!(code, 200, "{page}");
    sample(&page, name)
}

#[test]
fn readyz_flips_to_200_and_metrics_count_restarts_and_orphans() {
    let port = free_port();
    let dir = TestDir::new("http");
    dir.sd_notify();
    dir.service(
        "slow",
        r#"ready = { notify = true }
command = '''
echo $$ >> "$T/slow.pids"
while [ ! -e "$T/release" ]; do sleep 0.01; done
"$T/sd_notify" READY=1
exec sleep 1000
'''
"#,
    );
    dir.service(
        "core",
        r#"essential = true
command = '''echo $$ >> "$T/core.pids"; exec sleep 1000'''
"#,
    );
    dir.service(
        "crashy",
        r#"restart-delay = "100ms"
command = '''echo $$ >> "$T/crashy.pids"; exec sleep 1000'''
"#,
    );
    // Leaves an orphan behind: the inner shell exits at once, its `sleep`
    // is re-parented to corral (the subreaper), which reaps it.
    dir.service(
        "orphaner",
        r#"command = '''sh -c 'sleep 0.1 &'; echo $$ >> "$T/orphaner.pids"; exec sleep 1000'''
"#,
    );
    let addr = format!("127.0.0.1:{port}");
    let mut c = dir.corral().ctl_socket().args(["--http", &addr]).start();
    c.wait_pids("slow.pids", 1);
    c.wait_pids("core.pids", 1);
    let crashy = c.wait_pids("crashy.pids", 1)[0];
    c.wait_pids("orphaner.pids", 1);
    c.wait_state("slow", "starting");

    stays(
        "/readyz 503 while slow is not ready",
        Duration::from_millis(300),
        || match http_get(port, "/readyz") {
            Ok((503, body)) if body.contains("not ready: slow") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let (code, body) = get(&c, port, "/healthz");
    assert_eq!(
        (code, body.as_str()),
        (200, "ok\n"),
        "healthz with every essential service up"
    );
    assert_eq!(
        metric(&c, port, r#"corral_service_up{service="slow"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(&c, port, r#"corral_service_ready{service="slow"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(&c, port, r#"corral_service_up{service="core"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &c,
            port,
            r#"corral_service_restarts_total{service="crashy"}"#
        ),
        Some(0.0)
    );

    c.dir().write("release", "");
    let body = c.wait_for("/readyz 200", |_| match http_get(port, "/readyz") {
        Ok((200, body)) => Ok(body),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(body, "ready\n");
    let status = c.ctl_service("slow").expect("slow");
    assert_eq!(status["ready"], true, "{status}");
    let (_, page) = get(&c, port, "/metrics");
    for name in [
        r#"corral_service_up{service="slow"}"#,
        r#"corral_service_ready{service="slow"}"#,
        r#"corral_service_up{service="crashy"}"#,
    ] {
        assert_eq!(sample(&page, name), Some(1.0), "{name} in\n{page}");
    }
    assert!(
        page.contains("# TYPE corral_service_restarts_total counter"),
        "{page}"
    );

    // A crash: the restart counter grows, the last exit code is 128+9.
    c.signal_process(crashy, Signal::SIGKILL);
    c.wait_pids("crashy.pids", 2);
    c.wait_for("crashy's restart in /metrics", |c| {
        match metric(
            c,
            port,
            r#"corral_service_restarts_total{service="crashy"}"#,
        ) {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        metric(
            &c,
            port,
            r#"corral_service_last_exit_code{service="crashy"}"#
        ),
        Some(137.0)
    );
    c.wait_for("an orphan counted in /metrics", |c| {
        match metric(c, port, "corral_orphans_reaped_total") {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(get(&c, port, "/nope").0, 404);
    // Still ready: crashy is up again.
    c.wait_for("/readyz 200 after crashy's restart", |_| {
        match http_get(port, "/readyz") {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(c.stop(), 0);
}
