//! `--http ADDR`: `/healthz`, `/readyz` and `/metrics` for orchestrators and
//! Prometheus.
//!
//! tiny_http does the HTTP (parsing, keep-alive, HEAD); one thread here
//! answers its requests one at a time. Each answer starts from a fresh
//! `status` asked of the loop (`Input::Control`), like `corral ctl status`
//! does, and waits for it at most `REPLY_TIMEOUT`: this thread never touches
//! service state, and a busy loop gets a 503, not a hung probe.
//!
//! | path | 200 when | otherwise |
//! |---|---|---|
//! | `/healthz` | every essential service is up (running, ready, or a oneshot that exited 0) | 503, the ones that are not |
//! | `/readyz` | corral is up and every service wanted up is ready | 503, the ones that are not |
//! | `/metrics` | always (Prometheus text format 0.0.4) | 503 if the loop does not answer |
//!
//! Any other path is 404; a method other than GET (or HEAD) is 405.

use std::fmt::Write as _;
use std::io;
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;
use tiny_http::{Header, Method, Request as HttpRequest, Response as HttpResponse, Server};
use tracing::{debug, warn};

use crate::control::protocol::{Request, Response, ServiceStatus};
use crate::event::Input;

/// How long a request waits for the loop's answer before a 503.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause before serving again after tiny_http's accept thread gave up (it
/// stops at the first accept error, e.g. EMFILE). Not the supervisor path.
const RESTART_DELAY: Duration = Duration::from_secs(1);

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serve `addr` (`host:port`; `:port` means every IPv4 interface) on a new
/// thread. Binding errors are returned, so a bad `--http` stops corral at
/// startup.
pub fn start(addr: &str, inputs: Sender<Input>) -> io::Result<()> {
    let addr = match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    };
    // std creates the socket close-on-exec.
    let listener = TcpListener::bind(&addr)?;
    serve(listener, inputs, REPLY_TIMEOUT)
}

fn serve(listener: TcpListener, inputs: Sender<Input>, timeout: Duration) -> io::Result<()> {
    let server = server_on(&listener)?;
    thread::Builder::new()
        .name("http".into())
        .spawn(move || run(listener, server, &inputs, timeout))?;
    Ok(())
}

/// A tiny_http server on a duplicate of `listener` (kept, to serve again if
/// tiny_http's accept thread stops).
fn server_on(listener: &TcpListener) -> io::Result<Server> {
    let listener = listener.try_clone()?;
    Server::from_listener(listener, None).map_err(|e| io::Error::other(e.to_string()))
}

fn run(listener: TcpListener, mut server: Server, inputs: &Sender<Input>, timeout: Duration) {
    loop {
        match server.recv() {
            Ok(request) => answer(request, inputs, timeout),
            Err(err) => {
                warn!(%err, "http server stopped accepting; serving again in 1s");
                drop(server);
                server = loop {
                    thread::sleep(RESTART_DELAY);
                    match server_on(&listener) {
                        Ok(server) => break server,
                        Err(err) => warn!(%err, "http server cannot restart; trying again in 1s"),
                    }
                };
            }
        }
    }
}

/// What one request gets: status code, content type, body.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    code: u16,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn text(code: u16, body: impl Into<String>) -> Reply {
        Reply {
            code,
            content_type: TEXT,
            body: body.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Health,
    Ready,
    Metrics,
}

fn answer(request: HttpRequest, inputs: &Sender<Input>, timeout: Duration) {
    let path = request.url().split('?').next().unwrap_or_default();
    let page = match path {
        "/healthz" => Some(Page::Health),
        "/readyz" => Some(Page::Ready),
        "/metrics" => Some(Page::Metrics),
        _ => None,
    };
    let get = matches!(request.method(), Method::Get | Method::Head);
    let reply = match (page, get) {
        (None, _) => Reply::text(404, "not found: try /healthz, /readyz or /metrics\n"),
        (Some(_), false) => Reply::text(405, "method not allowed: use GET\n"),
        (Some(page), true) => match ask(inputs, timeout) {
            Ok(status) => render(page, &status),
            Err(why) => Reply::text(503, format!("{why}\n")),
        },
    };
    debug!(method = %request.method(), url = request.url(), code = reply.code, "http request");
    let mut response = HttpResponse::from_string(reply.body).with_status_code(reply.code);
    if let Ok(header) = format!("Content-Type: {}", reply.content_type).parse::<Header>() {
        response = response.with_header(header);
    }
    if reply.code == 405
        && let Ok(header) = "Allow: GET, HEAD".parse::<Header>()
    {
        response = response.with_header(header);
    }
    // The client may be gone; nothing to do about it.
    let _ = request.respond(response);
}

/// The loop's `status` of every service, or why there is none.
fn ask(inputs: &Sender<Input>, timeout: Duration) -> Result<Response, String> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    let request = Request::Status { services: vec![] };
    if inputs.send(Input::Control { request, reply }).is_err() {
        return Err("corral is exiting".into());
    }
    match answer.recv_timeout(timeout) {
        Ok(response) if response.ok => Ok(response),
        Ok(response) => Err(response
            .error
            .unwrap_or_else(|| "corral answered with an error".into())),
        Err(_) => Err("corral busy".into()),
    }
}

fn render(page: Page, status: &Response) -> Reply {
    match page {
        Page::Health => health(status),
        Page::Ready => ready(status),
        Page::Metrics => Reply {
            code: 200,
            content_type: PROMETHEUS_TEXT,
            body: metrics(status),
        },
    }
}

/// Running, ready, or a oneshot that did its job.
fn is_up(service: &ServiceStatus) -> bool {
    matches!(service.state.as_str(), "running" | "ready")
        || (service.oneshot && service.state == "exited")
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
        .filter(|s| s.essential && !is_up(s))
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
        .filter(|s| s.want == "up" && !s.ready)
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
fn metrics(status: &Response) -> String {
    let mut out = String::new();
    let services = &status.services;
    family(
        &mut out,
        "corral_service_up",
        "gauge",
        "Whether the service is up: running, ready, or a oneshot that exited 0.",
        services.iter().map(|s| (s, Some(i64::from(is_up(s))))),
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
    let orphans = status.orphans_reaped.unwrap_or(0);
    let _ = write!(
        out,
        "# HELP corral_orphans_reaped_total Processes not started by corral that it reaped.\n\
         # TYPE corral_orphans_reaped_total counter\n\
         corral_orphans_reaped_total {orphans}\n"
    );
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::Receiver;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::{Arc, Mutex};

    fn service(name: &str, state: &str, ready: bool) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            state: state.into(),
            want: "up".into(),
            ready,
            enabled: true,
            ..ServiceStatus::default()
        }
    }

    /// Every service up and ready; `db` essential, restarted twice, last
    /// exit 1; `migrate` a oneshot that exited 0.
    fn all_good() -> Response {
        let mut db = service("db", "running", true);
        db.essential = true;
        db.restarts = 2;
        db.last_exit_code = Some(1);
        let mut migrate = service("migrate", "exited", true);
        migrate.oneshot = true;
        migrate.essential = true;
        migrate.last_exit_code = Some(0);
        let mut off = service("off", "stopped", false);
        off.want = "down".into();
        off.enabled = false;
        Response {
            services: vec![db, migrate, service("web", "running", true), off],
            orphans_reaped: Some(3),
            phase: Some("up".into()),
            ..Response::ok()
        }
    }

    /// A stand-in for the loop: answers each status request with the
    /// current canned response, or not at all while it is `None`.
    fn fake_loop(canned: Arc<Mutex<Option<Response>>>) -> Sender<Input> {
        let (tx, rx): (Sender<Input>, Receiver<Input>) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            // Replies not sent stay open, as with a loop that is busy.
            let mut unanswered = Vec::new();
            for input in rx {
                match input {
                    Input::Control {
                        request: Request::Status { services },
                        reply,
                    } => {
                        assert!(services.is_empty(), "asks for every service");
                        let answer = canned.lock().expect("lock").clone();
                        match answer {
                            Some(answer) => {
                                let _ = reply.send(answer);
                            }
                            None => unanswered.push(reply),
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        tx
    }

    struct Fixture {
        port: u16,
        canned: Arc<Mutex<Option<Response>>>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let canned = Arc::new(Mutex::new(Some(all_good())));
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            serve(
                listener,
                fake_loop(Arc::clone(&canned)),
                Duration::from_millis(300),
            )
            .expect("serve");
            Fixture { port, canned }
        }

        fn set(&self, response: Option<Response>) {
            *self.canned.lock().expect("lock") = response;
        }

        fn edit(&self, change: impl FnOnce(&mut Response)) {
            let mut canned = self.canned.lock().expect("lock");
            if let Some(response) = canned.as_mut() {
                change(response);
            }
        }

        /// (status code, content type, body) of `METHOD path`.
        fn get(&self, method: &str, path: &str) -> (u16, String, String) {
            let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            write!(
                conn,
                "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
            )
            .expect("send");
            let mut raw = String::new();
            conn.read_to_string(&mut raw).expect("read");
            let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
            let code = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status code");
            let content_type = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .unwrap_or_default()
                .to_string();
            (code, content_type, body.to_string())
        }
    }

    #[test]
    fn healthz_follows_the_essential_services() {
        let f = Fixture::new();
        assert_eq!(f.get("GET", "/healthz"), (200, TEXT.into(), "ok\n".into()));
        // A non-essential service down does not matter.
        f.edit(|r| r.services[2].state = "backoff".into());
        assert_eq!(f.get("GET", "/healthz").0, 200);
        f.edit(|r| {
            r.services[0].state = "backoff".into();
            r.services[1].state = "failed".into();
        });
        assert_eq!(
            f.get("GET", "/healthz"),
            (
                503,
                TEXT.into(),
                "essential services not up: db (backoff), migrate (failed)\n".into()
            )
        );
        f.set(Some(Response {
            phase: Some("stopping".into()),
            ..all_good()
        }));
        assert_eq!(
            f.get("GET", "/healthz").2,
            "corral is shutting down (phase stopping)\n"
        );
    }

    #[test]
    fn readyz_needs_every_wanted_service_ready_and_the_up_phase() {
        let f = Fixture::new();
        assert_eq!(
            f.get("GET", "/readyz"),
            (200, TEXT.into(), "ready\n".into())
        );
        assert_eq!(f.get("HEAD", "/readyz").0, 200);
        f.edit(|r| {
            r.services[0].ready = false;
            r.services[2].ready = false;
        });
        assert_eq!(
            f.get("GET", "/readyz"),
            (503, TEXT.into(), "not ready: db, web\n".into())
        );
        f.set(Some(Response {
            phase: Some("init".into()),
            ..all_good()
        }));
        assert_eq!(
            f.get("GET", "/readyz"),
            (503, TEXT.into(), "corral is starting (phase init)\n".into())
        );
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let f = Fixture::new();
        let (code, content_type, body) = f.get("GET", "/metrics");
        assert_eq!((code, content_type.as_str()), (200, PROMETHEUS_TEXT));
        assert_eq!(
            body,
            "\
# HELP corral_service_up Whether the service is up: running, ready, or a oneshot that exited 0.
# TYPE corral_service_up gauge
corral_service_up{service=\"db\"} 1
corral_service_up{service=\"migrate\"} 1
corral_service_up{service=\"web\"} 1
corral_service_up{service=\"off\"} 0
# HELP corral_service_ready Whether the service is ready.
# TYPE corral_service_ready gauge
corral_service_ready{service=\"db\"} 1
corral_service_ready{service=\"migrate\"} 1
corral_service_ready{service=\"web\"} 1
corral_service_ready{service=\"off\"} 0
# HELP corral_service_restarts_total Times the service was started again since corral started.
# TYPE corral_service_restarts_total counter
corral_service_restarts_total{service=\"db\"} 2
corral_service_restarts_total{service=\"migrate\"} 0
corral_service_restarts_total{service=\"web\"} 0
corral_service_restarts_total{service=\"off\"} 0
# HELP corral_service_last_exit_code Exit status of the service's last run, shell-style (128+N for signal N).
# TYPE corral_service_last_exit_code gauge
corral_service_last_exit_code{service=\"db\"} 1
corral_service_last_exit_code{service=\"migrate\"} 0
# HELP corral_orphans_reaped_total Processes not started by corral that it reaped.
# TYPE corral_orphans_reaped_total counter
corral_orphans_reaped_total 3
"
        );
    }

    #[test]
    fn other_paths_and_methods_and_a_busy_loop() {
        let f = Fixture::new();
        assert_eq!(f.get("GET", "/").0, 404);
        assert_eq!(f.get("GET", "/metricsx").0, 404);
        assert_eq!(f.get("GET", "/healthz?verbose=1").0, 200);
        assert_eq!(f.get("POST", "/healthz").0, 405);
        assert_eq!(f.get("DELETE", "/metrics").0, 405);
        // The loop does not answer in time (300 ms here).
        f.set(None);
        let asked = std::time::Instant::now();
        assert_eq!(
            f.get("GET", "/metrics"),
            (503, TEXT.into(), "corral busy\n".into())
        );
        assert!(asked.elapsed() >= Duration::from_millis(300));
        // The loop answers with an error.
        f.set(Some(Response::error("corral is shutting down")));
        assert_eq!(f.get("GET", "/readyz").2, "corral is shutting down\n");
        // And the server still serves afterwards.
        f.set(Some(all_good()));
        assert_eq!(f.get("GET", "/healthz").0, 200);
    }

    #[test]
    fn binding_errors_are_returned() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let (tx, _rx) = crossbeam_channel::unbounded();
        let err = start(&addr, tx.clone()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(start("not an address", tx).is_err());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
