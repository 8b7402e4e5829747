//! The http thread against a stand-in for the loop, over real sockets.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::pages::{PROMETHEUS_TEXT, TEXT};
use super::poll::serve;
use super::*;
use crate::protocol::{Request, Response, ServiceStatus};

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
fn fake_loop(canned: Arc<Mutex<Option<Response>>>, asked: Arc<AtomicUsize>) -> Sender<Input> {
    let (tx, rx): (Sender<Input>, Receiver<Input>) = crossbeam_channel::unbounded();
    thread::spawn(move || {
        // Replies not sent stay open, as with a loop that is busy.
        let mut unanswered = Vec::new();
        for input in rx {
            match input {
                Input::Control {
                    request: Request::Status { services },
                    mut reply,
                } => {
                    assert!(services.is_empty(), "asks for every service");
                    asked.fetch_add(1, Ordering::SeqCst);
                    let answer = canned.lock().expect("lock").clone();
                    match answer {
                        Some(answer) => reply.send(answer),
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
    /// Status requests the fake loop received.
    asked: Arc<AtomicUsize>,
}

impl Fixture {
    /// The loop's answer is given up on after 300 ms.
    fn new() -> Fixture {
        Fixture::with(Duration::from_millis(300), MAX_CONNECTIONS)
    }

    fn with(reply_timeout: Duration, max_connections: usize) -> Fixture {
        let canned = Arc::new(Mutex::new(Some(all_good())));
        let asked = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        serve(
            listener,
            fake_loop(Arc::clone(&canned), Arc::clone(&asked)),
            reply_timeout,
            max_connections,
            crate::output::Logs::new(),
        )
        .expect("serve");
        Fixture {
            port,
            canned,
            asked,
        }
    }

    fn connect(&self) -> TcpStream {
        let conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        conn
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
# HELP corral_schedule_runs_total Runs of a scheduled service since corral started (by its ticks or `ctl run`).
# TYPE corral_schedule_runs_total counter
# HELP corral_schedule_skipped_ticks_total Ticks of a scheduled service skipped: its previous run was still going, or a service it runs after was down.
# TYPE corral_schedule_skipped_ticks_total counter
# HELP corral_orphans_reaped_total Processes not started by corral that it reaped.
# TYPE corral_orphans_reaped_total counter
corral_orphans_reaped_total 3
# HELP corral_output_lines_total Lines of service output read by corral.
# TYPE corral_output_lines_total counter
# HELP corral_output_dropped_lines_total Lines of service output corral could not write (dropped while its output failed).
# TYPE corral_output_dropped_lines_total counter
# HELP corral_output_write_failed_lines_total Lines lost in writes of corral's stdout or stderr that failed (any service's).
# TYPE corral_output_write_failed_lines_total counter
corral_output_write_failed_lines_total{stream=\"stdout\"} 0
corral_output_write_failed_lines_total{stream=\"stderr\"} 0
"
    );
}

#[test]
fn metrics_count_the_runs_and_skipped_ticks_of_scheduled_services_only() {
    let f = Fixture::new();
    f.edit(|r| {
        r.services[0].skipped_ticks = Some(2);
        r.services[0].run = 7;
    });
    let body = f.get("GET", "/metrics").2;
    assert!(
        body.contains("corral_schedule_runs_total{service=\"db\"} 7\n"),
        "{body}"
    );
    assert!(
        body.contains("corral_schedule_skipped_ticks_total{service=\"db\"} 2\n"),
        "{body}"
    );
    assert!(
        !body.contains("corral_schedule_runs_total{service=\"web\"}"),
        "{body}"
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

/// Send `GET path` on `conn` and read the status code of the answer.
fn code_of(mut conn: TcpStream, path: &str) -> u16 {
    write!(conn, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("send");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read");
    raw.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {raw:?}"))
}

#[test]
fn silent_and_trickling_clients_delay_nobody() {
    let f = Fixture::new();
    let silent: Vec<TcpStream> = (0..50).map(|_| f.connect()).collect();
    let mut trickling: Vec<TcpStream> = (0..50).map(|_| f.connect()).collect();
    for conn in &mut trickling {
        conn.write_all(b"GET /healthz HT").expect("send a part");
    }
    for _ in 0..5 {
        let asked = Instant::now();
        assert_eq!(f.get("GET", "/healthz").0, 200);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "took {:?}",
            asked.elapsed()
        );
    }
    drop((silent, trickling));
}

#[test]
fn requests_waiting_at_once_share_one_status_request() {
    // The loop never answers; its status is given up on after 2 s.
    let f = Fixture::with(Duration::from_secs(2), MAX_CONNECTIONS);
    f.set(None);
    let first = f.connect();
    let port = f.port;
    let asked = Instant::now();
    let first = thread::spawn(move || code_of(first, "/healthz"));
    wait_until(|| f.asked.load(Ordering::SeqCst) == 1);
    // Four more while the first waits: they join its request.
    let others: Vec<_> = ["/readyz", "/metrics", "/healthz", "/healthz"]
        .into_iter()
        .map(|path| {
            let conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            thread::spawn(move || code_of(conn, path))
        })
        .collect();
    assert_eq!(first.join().ok(), Some(503));
    for other in others {
        assert_eq!(other.join().ok(), Some(503));
    }
    // Every one answered when the shared request was given up on.
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(f.asked.load(Ordering::SeqCst), 1);
    // Once answered, the next request asks anew.
    f.set(Some(all_good()));
    assert_eq!(f.get("GET", "/healthz").0, 200);
    assert_eq!(f.asked.load(Ordering::SeqCst), 2);
}

#[test]
fn at_the_cap_the_oldest_waiting_connection_makes_room() {
    let f = Fixture::with(Duration::from_millis(300), 3);
    let mut idle: Vec<TcpStream> = (0..3).map(|_| f.connect()).collect();
    // Accepted in the order they came (the backlog is FIFO), before it.
    assert_eq!(f.get("GET", "/healthz").0, 200);
    let mut rest = Vec::new();
    assert_eq!(
        idle[0].read_to_end(&mut rest).ok(),
        Some(0),
        "the oldest was closed"
    );
    for conn in &mut idle[1..] {
        conn.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let read = conn.read(&mut byte);
        assert!(
            read.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock),
            "the others stay open: {read:?}"
        );
    }
}

/// Wait (up to 10 s) until `check` holds.
fn wait_until(check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "condition not met in 10 s");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_cap_is_a_quarter_of_the_fds() {
    assert_eq!(connection_cap(Some(1024)), 256);
    assert_eq!(connection_cap(Some(u64::MAX)), MAX_CONNECTIONS);
    assert_eq!(connection_cap(Some(2)), 1);
    assert_eq!(connection_cap(None), 256);
}

#[test]
fn binding_errors_are_returned() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (tx, _rx) = crossbeam_channel::unbounded();
    let err = start(&addr, tx.clone(), crate::output::Logs::new()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(start("not an address", tx, crate::output::Logs::new()).is_err());
}
