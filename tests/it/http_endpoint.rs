//! `--http ADDR` (SPEC section 1): `/readyz`, `/healthz` and `/metrics`
//! against the real binary, read with a plain HTTP/1.0 GET over a fresh TCP
//! connection: `/readyz` is 503 while a service is not ready and flips to
//! 200 once it is; `/healthz` follows the essential services; the metrics
//! count restarts and reaped orphans as they happen.
//!
//! Then the HTTP server itself, over raw TCP connections: a silent client
//! delays nobody and is closed after `IO_TIMEOUT`, a trickling one gets 408
//! then; a head longer than `MAX_HEAD` is 431, a bad request line 400, any
//! method but GET and HEAD 405; HEAD has no body; an accept error (EMFILE,
//! from a lowered RLIMIT_NOFILE) closes the oldest waiting client to serve
//! the new one, is logged once, does not spin, and serving resumes.
//! (Floods of idle and slow clients: `security/http.rs`.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use corral::http::{IO_TIMEOUT, MAX_HEAD};
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

// ---------------------------------------------------------------------------
// The HTTP server, over raw connections

/// A corral with one essential service, serving `--http` on a free port,
/// once `/healthz` answers 200.
fn serving(name: &str) -> (Corral, u16) {
    let port = free_port();
    let dir = TestDir::new(name);
    dir.service("core", "essential = true\ncommand = 'exec sleep 1000'\n");
    let addr = format!("127.0.0.1:{port}");
    let mut c = dir.corral().args(["--http", &addr]).start();
    c.wait_for("/healthz 200", |_| match http_get(port, "/healthz") {
        Ok((200, _)) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    (c, port)
}

fn connect(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to corral");
    // Long enough that corral's own timeouts, not the client's, end things.
    stream
        .set_read_timeout(Some(IO_TIMEOUT * 4))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT * 4))
        .expect("write timeout");
    stream
}

/// An answer read to the end (corral closes every connection).
#[derive(Debug)]
struct Answer {
    code: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> Result<Answer, String> {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no end of head in {text:?}"))?;
        let code = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no HTTP/1.1 status line in {head:?}"))?;
        Ok(Answer {
            code,
            head: head.to_string(),
            body: body.to_string(),
        })
    }

    /// The value of the header field `name` (as corral spells it).
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
    }
}

/// Send `request` in one write on a fresh connection; read the answer.
fn exchange(port: u16, request: &[u8]) -> Answer {
    let mut stream = connect(port);
    stream.write_all(request).expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    Answer::parse(&raw).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_silent_client_delays_nobody_and_is_closed_at_the_io_timeout() {
    let (c, port) = serving("http-silent");
    let silent_at = Instant::now();
    let mut silent = connect(port);
    // Connections are served side by side: the silent one, accepted
    // first, holds nobody up (one at a time, this one waited IO_TIMEOUT).
    let asked_at = Instant::now();
    let (code, body) = http_get(port, "/healthz")
        .unwrap_or_else(|e| panic!("second client: {e}\n{}", c.output_excerpt()));
    let waited = asked_at.elapsed();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    assert!(
        waited < Duration::from_secs(1),
        "the second client waited {waited:?} behind a silent one"
    );
    // The silent client was closed without an answer, and not before its
    // time was up.
    let mut got = Vec::new();
    let read = silent.read_to_end(&mut got);
    let held = silent_at.elapsed();
    assert!(
        matches!(read, Ok(0)),
        "silent client: {read:?}, {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        held >= IO_TIMEOUT && held < IO_TIMEOUT * 2,
        "the silent client was closed after {held:?}"
    );
}

#[test]
fn a_trickled_head_is_cut_off_at_the_io_timeout_with_408() {
    let (_c, port) = serving("http-trickle");
    let started = Instant::now();
    let mut stream = connect(port);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .expect("send the request line");
    // One header line every 500 ms, each well within any per-read timeout,
    // never the blank line. Stops a second before the head's time is up,
    // so nothing is written to a socket corral closed.
    let mut lines = 0;
    while started.elapsed() + Duration::from_secs(1) < IO_TIMEOUT {
        thread::sleep(Duration::from_millis(500));
        stream.write_all(b"X-A: b\r\n").expect("send a header line");
        lines += 1;
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let took = started.elapsed();
    let answer = Answer::parse(&raw).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.code, 408, "{answer:?}");
    assert_eq!(answer.header("Connection"), Some("close"));
    assert!(lines >= 3, "only {lines} header lines sent");
    // A timeout per read would let it run to the last line + IO_TIMEOUT.
    assert!(
        took >= IO_TIMEOUT && took < IO_TIMEOUT + Duration::from_secs(3),
        "the trickled head was cut off after {took:?}"
    );
}

#[test]
fn a_head_longer_than_the_limit_is_431() {
    let (_c, port) = serving("http-431");
    let start = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    let end = "\r\n\r\n";
    // Exactly MAX_HEAD bytes: served.
    let fits = format!(
        "{start}{}{end}",
        "a".repeat(MAX_HEAD - start.len() - end.len())
    );
    assert_eq!(fits.len(), MAX_HEAD);
    let answer = exchange(port, fits.as_bytes());
    assert_eq!((answer.code, answer.body.as_str()), (200, "ok\n"));
    // One byte more: refused, the answer intact although corral did not
    // read the whole request.
    let long = format!(
        "{start}{}{end}",
        "a".repeat(MAX_HEAD - start.len() - end.len() + 1)
    );
    let answer = exchange(port, long.as_bytes());
    assert_eq!(answer.code, 431, "{answer:?}");
    assert_eq!(
        answer.body,
        format!("request head longer than {MAX_HEAD} bytes\n")
    );
    assert_eq!(answer.header("Connection"), Some("close"));
    // Far more (a head that never ends): the same.
    let mut endless = format!("{start}{}", "a".repeat(4 * MAX_HEAD)).into_bytes();
    endless.extend_from_slice(end.as_bytes());
    assert_eq!(exchange(port, &endless).code, 431);
    assert_eq!(http_get(port, "/healthz"), Ok((200, "ok\n".into())));
}

#[test]
fn a_bad_request_line_is_400() {
    let (_c, port) = serving("http-400");
    for request in [
        "GARBAGE\r\n\r\n",
        "GET /healthz\r\n\r\n",
        "GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        "GET  /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz XTTP/1.1\r\n\r\n",
    ] {
        let answer = exchange(port, request.as_bytes());
        assert_eq!(
            (answer.code, answer.body.as_str()),
            (400, "bad request: malformed request line\n"),
            "{request:?}"
        );
        assert_eq!(
            answer.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
    }
    let answer = exchange(port, b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n");
    assert_eq!(answer.code, 400, "{answer:?}");
    assert_eq!(
        exchange(port, b"GET /healthz HTTP/2.0\r\n\r\n").code,
        505,
        "a version other than 1.x"
    );
    // Blank lines before the request line are allowed; so is a bare LF.
    let answer = exchange(port, b"\r\nGET /healthz HTTP/1.0\n\n");
    assert_eq!((answer.code, answer.body.as_str()), (200, "ok\n"));
}

#[test]
fn head_has_the_headers_of_get_and_no_body() {
    let (_c, port) = serving("http-head");
    let get = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = exchange(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((get.code, get.body.as_str()), (200, "ok\n"));
    assert_eq!((head.code, head.body.as_str()), (200, ""), "{head:?}");
    for name in ["Content-Type", "Content-Length", "Connection"] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
    assert_eq!(head.header("Content-Length"), Some("3"));
    assert!(head.header("Date").is_some_and(|d| d.ends_with(" GMT")));
    let metrics = exchange(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((metrics.code, metrics.body.as_str()), (200, ""));
    assert_eq!(
        metrics.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        metrics
            .header("Content-Length")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > 0),
        "{metrics:?}"
    );
    let missing = exchange(port, b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((missing.code, missing.body.as_str()), (404, ""));
}

#[test]
fn post_is_405_with_allow() {
    let (_c, port) = serving("http-405");
    let answer = exchange(port, b"POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        (answer.code, answer.body.as_str()),
        (405, "method not allowed: use GET\n")
    );
    assert_eq!(answer.header("Allow"), Some("GET, HEAD"));
    assert_eq!(answer.header("Connection"), Some("close"));
    // With a body corral does not read: the answer still arrives whole.
    let mut request =
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 20_000));
    let answer = exchange(port, &request);
    assert_eq!(answer.code, 405, "{answer:?}");
    assert_eq!(answer.body, "method not allowed: use GET\n");
    // Methods are case-sensitive: `get` is not GET.
    assert_eq!(exchange(port, b"get /healthz HTTP/1.1\r\n\r\n").code, 405);
}

/// `prlimit --pid PID --nofile=SOFT:` (the soft limit only).
fn set_fd_limit(pid: i32, soft: &str) {
    let ran = run_within(
        std::process::Command::new("prlimit").args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={soft}:"),
        ]),
        DEADLINE,
    );
    assert_eq!(ran.code, 0, "prlimit: {ran:?}");
}

/// Whether `stream` has nothing to read yet (and is not closed).
fn nothing_yet(stream: &TcpStream) -> Result<(), String> {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let peeked = stream.peek(&mut byte);
    stream.set_nonblocking(false).expect("blocking");
    match peeked {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn accept_errors_close_the_oldest_waiting_client_do_not_spin_and_serving_resumes() {
    let (mut c, port) = serving("http-emfile");
    let pid = c.pid();
    let soft = soft_limit(pid, "Max open files").to_string();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let what = ["http: cannot accept connections", "Too many open files"];

    // Out of fds: accept(2) fails with EMFILE. A client that sends nothing
    // is taken with corral's spare fd ...
    set_fd_limit(pid, &lowest_free_fd(pid).to_string());
    let mut idle = connect(port);
    c.wait_stderr_line(&what);
    // ... and closed to make room for the next, a probe, which is served.
    let probe = exchange(port, request);
    assert_eq!((probe.code, probe.body.as_str()), (200, "ok\n"));
    let mut raw = Vec::new();
    let closed = idle.read_to_end(&mut raw);
    assert!(
        matches!(closed, Ok(0)),
        "the idle client: {closed:?}, {:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(exchange(port, request).code, 200, "the next probe");

    // No fd at all (the limit below every fd corral has): nothing can be
    // closed to make room, the client waits in the backlog.
    set_fd_limit(pid, "3");
    let mut client = connect(port);
    client.write_all(request).expect("send");
    let before = thread_cpu_ticks(pid, |name| name == "http").expect("corral's http thread");
    stays(
        "one log line for the burst of failed accepts, no answer",
        Duration::from_secs(2),
        || {
            nothing_yet(&client).map_err(|e| format!("answered while corral had no fd: {e}"))?;
            match c.stderr_lines(&what[..1]).len() {
                1 => Ok(()),
                n => Err(format!("{n} lines:\n{}", c.stderr())),
            }
        },
    );
    let after = thread_cpu_ticks(pid, |name| name == "http").expect("corral's http thread");
    // USER_HZ is 100: a thread spinning on accept would use about 200
    // ticks in these 2 s; pausing between tries, about none.
    assert!(
        after - before < 40,
        "the http thread used {} ticks of CPU in 2 s of failing accepts",
        after - before
    );
    set_fd_limit(pid, &soft);
    let mut raw = Vec::new();
    client.read_to_end(&mut raw).expect("read the answer");
    let answer = Answer::parse(&raw).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((answer.code, answer.body.as_str()), (200, "ok\n"));
    c.wait_stderr_line(&["http: accepting connections again"]);
    assert_eq!(http_get(port, "/healthz"), Ok((200, "ok\n".into())));
    assert_eq!(c.stop(), 0);
}
