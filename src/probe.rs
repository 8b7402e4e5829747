//! TCP and HTTP probes (readiness and liveness), each on its own short-lived
//! thread that reports back as `Input::ProbeDone`.
//!
//! `check` is the probe itself: a blocking function that always returns
//! within its `timeout` (connect, write and read share one deadline; a name
//! lookup runs on a helper thread so a slow resolver cannot stretch it).
//! `spawn` runs `check` off the loop thread. Exec probes are not here: they
//! are child processes, which only the loop may spawn and reap.
//!
//! This module owns no state and never touches the supervisor's: a probe's
//! only effect is one message on the loop's channel.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::config::spec::Probe;
use crate::event::{Input, ProbeToken};

/// Stack of a probe thread. Generous on purpose: a stack overflow aborts the
/// whole process (it does not unwind), and corral is PID 1; the memory is
/// only reserved, the pages a probe never touches cost nothing.
const PROBE_STACK: usize = 256 * 1024;

/// Stack of a name-lookup helper: getaddrinfo(3) and NSS modules can use a
/// fair amount of stack.
const RESOLVER_STACK: usize = 512 * 1024;

/// Longest HTTP status line read; more without a newline is garbage.
const MAX_STATUS_LINE: usize = 1024;

/// Run `probe` once. `Ok(())` when it passes; otherwise what failed, for the
/// log (`"connect 127.0.0.1:9: Connection refused"`,
/// `"GET http://127.0.0.1:8080/ready: 503 Service Unavailable"`).
/// Returns within `timeout` (plus scheduling noise).
pub fn check(probe: &Probe, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    match probe {
        Probe::Tcp { addr } => {
            let stream = connect(addr, deadline, timeout)?;
            // Closing at once is fine: the listener saw an accepted connection.
            drop(stream);
            Ok(())
        }
        Probe::Http { url } => http_get(url, deadline, timeout),
        Probe::Exec { .. } => Err("exec probes run as child processes".to_string()),
    }
}

/// Run `check(&probe, timeout)` on a new thread and send its result as
/// `Input::ProbeDone { token, result }`. Never blocks the caller and never
/// panics: if the thread cannot be started, that error is the result.
pub fn spawn(probe: Probe, timeout: Duration, token: ProbeToken, inputs: Sender<Input>) {
    let sender = inputs.clone();
    let started = thread::Builder::new()
        .name("probe".into())
        .stack_size(PROBE_STACK)
        .spawn(move || {
            let result = check(&probe, timeout);
            // The loop is gone only when corral is exiting: nothing to do.
            let _ = sender.send(Input::ProbeDone { token, result });
        });
    if let Err(e) = started {
        let _ = inputs.send(Input::ProbeDone {
            token,
            result: Err(format!("cannot start a probe thread: {}", describe(&e))),
        });
    }
}

/// Connect to `addr` (`host:port`), trying each address it resolves to until
/// one accepts, all before `deadline`.
fn connect(addr: &str, deadline: Instant, timeout: Duration) -> Result<TcpStream, String> {
    let addrs = resolve(addr, deadline, timeout)?;
    let mut last = format!("connect {addr}: no address");
    for sock in addrs {
        let Some(left) = remaining(deadline) else {
            return Err(format!(
                "connect {addr}: no connection within {}",
                human(timeout)
            ));
        };
        match TcpStream::connect_timeout(&sock, left) {
            Ok(stream) => return Ok(stream),
            Err(e) if is_timeout(&e) => {
                last = format!("connect {sock}: no connection within {}", human(timeout));
            }
            Err(e) => last = format!("connect {sock}: {}", describe(&e)),
        }
    }
    Err(last)
}

/// `host:port` to socket addresses. An IP literal needs no lookup; a name is
/// looked up on a helper thread, abandoned (it ends on its own, when the
/// resolver gives up) if it does not answer before `deadline`.
fn resolve(addr: &str, deadline: Instant, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    if let Ok(sock) = addr.parse::<SocketAddr>() {
        return Ok(vec![sock]);
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let name = addr.to_string();
    thread::Builder::new()
        .name("probe-resolve".into())
        .stack_size(RESOLVER_STACK)
        .spawn(move || {
            let result = name
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>());
            let _ = tx.send(result);
        })
        .map_err(|e| format!("resolve {addr}: cannot start a thread: {}", describe(&e)))?;
    match rx.recv_deadline(deadline) {
        Ok(Ok(addrs)) if addrs.is_empty() => Err(format!("resolve {addr}: no address")),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(format!("resolve {addr}: {}", describe(&e))),
        Err(_) => Err(format!(
            "resolve {addr}: no answer within {}",
            human(timeout)
        )),
    }
}

/// The parts of a plain `http://host[:port]/path` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url<'a> {
    /// `host:port`, with the default port added; what we connect to.
    addr: String,
    /// As written in the URL, for the `Host` header.
    host: &'a str,
    /// Path and query, `/` when the URL has none.
    path: &'a str,
}

fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "unsupported URL \"{url}\": only plain http:// is supported"
        ));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        // `http://host?x` means `/?x`; keep it simple and ask for `/`.
        "/"
    } else {
        path
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "unsupported URL \"{url}\": expected http://host[:port]/path"
        ));
    }
    // A port follows the last ':' unless that ':' is inside an IPv6 `[...]`.
    let has_port = match authority.rfind(':') {
        Some(i) => !authority.get(i..).unwrap_or_default().contains(']'),
        None => false,
    };
    let addr = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(Url {
        addr,
        host: authority,
        path,
    })
}

fn http_get(url: &str, deadline: Instant, timeout: Duration) -> Result<(), String> {
    let parts = parse_url(url)?;
    let mut stream = connect(&parts.addr, deadline, timeout)?;
    let late = || format!("GET {url}: no answer within {}", human(timeout));
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\nUser-Agent: corral\r\nAccept: */*\r\n\r\n",
        parts.path, parts.host
    );
    let left = remaining(deadline).ok_or_else(late)?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| format!("GET {url}: {}", describe(&e)))?;
    match stream.write_all(request.as_bytes()) {
        Ok(()) => {}
        Err(e) if is_timeout(&e) => return Err(late()),
        Err(e) => return Err(format!("GET {url}: {}", describe(&e))),
    }
    let line = read_status_line(&mut stream, deadline).map_err(|e| match e {
        ReadError::Late => late(),
        ReadError::Closed(got) if got.is_empty() => {
            format!("GET {url}: connection closed without an answer")
        }
        ReadError::Closed(got) | ReadError::TooLong(got) => {
            format!("GET {url}: malformed status line \"{}\"", printable(&got))
        }
        ReadError::Io(e) => format!("GET {url}: {}", describe(&e)),
    })?;
    match parse_status_line(&line) {
        Some((code, _)) if (200..300).contains(&code) => Ok(()),
        Some((code, reason)) if reason.is_empty() => Err(format!("GET {url}: {code}")),
        Some((code, reason)) => Err(format!("GET {url}: {code} {reason}")),
        None => Err(format!(
            "GET {url}: malformed status line \"{}\"",
            printable(&line)
        )),
    }
}

enum ReadError {
    Late,
    /// EOF before a newline, with what came.
    Closed(Vec<u8>),
    TooLong(Vec<u8>),
    Io(io::Error),
}

/// Read up to the first `\n` (not included), each read bounded by what is
/// left until `deadline`.
fn read_status_line(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let left = remaining(deadline).ok_or(ReadError::Late)?;
        stream.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(ReadError::Closed(line)),
            Ok(n) => {
                let got = buf.get(..n).unwrap_or_default();
                if let Some(end) = got.iter().position(|&b| b == b'\n') {
                    line.extend_from_slice(got.get(..end).unwrap_or_default());
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(line);
                }
                line.extend_from_slice(got);
                if line.len() > MAX_STATUS_LINE {
                    line.truncate(80);
                    return Err(ReadError::TooLong(line));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(ReadError::Late),
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// `HTTP/1.1 503 Service Unavailable` -> (503, "Service Unavailable").
fn parse_status_line(line: &[u8]) -> Option<(u16, String)> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("HTTP/")?;
    let (_version, rest) = rest.split_once(' ')?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((code.parse().ok()?, reason.trim().to_string()))
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    // A zero timeout means "no timeout" to set_read_timeout and is an error
    // to connect_timeout: the time is up.
    (!left.is_zero()).then_some(left)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// An io::Error as strerror(3) says it, without Rust's " (os error N)".
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text.get(..i).unwrap_or_default().to_string(),
        None => text,
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Bytes for a log line: lossy UTF-8, control characters escaped.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn tcp(addr: impl Into<String>) -> Probe {
        Probe::Tcp { addr: addr.into() }
    }

    fn http(url: impl Into<String>) -> Probe {
        Probe::Http { url: url.into() }
    }

    /// A port that was free a moment ago (bound, then closed).
    fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    /// A one-connection HTTP server answering `answer` to whatever comes.
    /// Returns its port and a thread yielding the request it read.
    fn serve_once(answer: &'static [u8]) -> (u16, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(answer);
            String::from_utf8_lossy(&request).into_owned()
        });
        (port, server)
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn tcp_passes_on_an_open_port_and_fails_on_a_closed_one() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(check(&tcp(format!("127.0.0.1:{port}")), SECOND), Ok(()));
        // localhost may resolve to ::1 first: every address is tried.
        assert_eq!(check(&tcp(format!("localhost:{port}")), SECOND), Ok(()));
        let port = closed_port();
        assert_eq!(
            check(&tcp(format!("127.0.0.1:{port}")), SECOND),
            Err(format!("connect 127.0.0.1:{port}: Connection refused"))
        );
    }

    #[test]
    fn tcp_reports_names_that_do_not_resolve() {
        let err = check(&tcp("no-such-host.invalid:80"), SECOND).unwrap_err();
        assert!(
            err.starts_with("resolve no-such-host.invalid:80: "),
            "{err}"
        );
        let err = check(&tcp("127.0.0.1"), SECOND).unwrap_err();
        assert!(err.starts_with("resolve 127.0.0.1: "), "{err}");
    }

    #[test]
    fn http_2xx_passes_and_sends_a_plain_request() {
        let (port, server) = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        let url = format!("http://127.0.0.1:{port}/ready?x=1");
        assert_eq!(check(&http(&url), SECOND), Ok(()));
        let request = server.join().expect("server");
        assert_eq!(
            request,
            format!(
                "GET /ready?x=1 HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
                 User-Agent: corral\r\nAccept: */*\r\n\r\n"
            )
        );
    }

    #[test]
    fn http_other_statuses_fail_with_the_status() {
        let (port, server) =
            serve_once(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        let url = format!("http://127.0.0.1:{port}/ready");
        assert_eq!(
            check(&http(&url), SECOND),
            Err(format!("GET {url}: 503 Service Unavailable"))
        );
        server.join().expect("server");

        let (port, server) = serve_once(b"HTTP/1.0 302\r\n\r\n");
        let url = format!("http://127.0.0.1:{port}");
        assert_eq!(check(&http(&url), SECOND), Err(format!("GET {url}: 302")));
        assert!(
            server
                .join()
                .expect("server")
                .starts_with("GET / HTTP/1.0\r\n")
        );
    }

    #[test]
    fn http_garbage_and_silence_fail() {
        let (port, server) = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n");
        let url = format!("http://127.0.0.1:{port}/");
        assert_eq!(
            check(&http(&url), SECOND),
            Err(format!(
                "GET {url}: malformed status line \"SSH-2.0-OpenSSH_9.2\""
            ))
        );
        server.join().expect("server");

        let (port, server) = serve_once(b"");
        let url = format!("http://127.0.0.1:{port}/");
        assert_eq!(
            check(&http(&url), SECOND),
            Err(format!("GET {url}: connection closed without an answer"))
        );
        server.join().expect("server");

        let port = closed_port();
        assert_eq!(
            check(&http(format!("http://127.0.0.1:{port}/x")), SECOND),
            Err(format!("connect 127.0.0.1:{port}: Connection refused"))
        );
        assert_eq!(
            check(&http("https://example.com/"), SECOND),
            Err("unsupported URL \"https://example.com/\": only plain http:// is supported".into())
        );
    }

    #[test]
    fn a_server_that_never_answers_fails_within_the_timeout() {
        // Accepted by the kernel (backlog), never read or answered.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let timeout = Duration::from_millis(300);
        let url = format!("http://127.0.0.1:{port}/");
        let started = Instant::now();
        let result = check(&http(&url), timeout);
        let took = started.elapsed();
        assert_eq!(result, Err(format!("GET {url}: no answer within 300ms")));
        assert!(took >= timeout, "gave up early: {took:?}");
        assert!(took < timeout + Duration::from_millis(500), "took {took:?}");
        drop(listener);
    }

    #[test]
    fn exec_probes_are_not_run_here() {
        let probe = Probe::Exec {
            command: vec!["true".into()],
        };
        assert_eq!(
            check(&probe, SECOND),
            Err("exec probes run as child processes".into())
        );
    }

    #[test]
    fn spawn_reports_on_the_channel_with_its_token() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = crossbeam_channel::unbounded();
        let token = |seq| ProbeToken {
            service: crate::event::ServiceId::from_index(3),
            seq,
        };
        spawn(
            tcp(format!("127.0.0.1:{port}")),
            SECOND,
            token(7),
            tx.clone(),
        );
        spawn(
            tcp(format!("127.0.0.1:{}", closed_port())),
            SECOND,
            token(8),
            tx,
        );
        let mut results = Vec::new();
        for _ in 0..2 {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Input::ProbeDone { token, result }) => results.push((token, result.is_ok())),
                other => panic!("unexpected {other:?}"),
            }
        }
        results.sort_by_key(|(token, _)| token.seq);
        assert_eq!(results, [(token(7), true), (token(8), false)]);
    }

    #[test]
    fn urls_are_split_into_address_host_and_path() {
        assert_eq!(
            parse_url("http://web:8080/health?deep=1"),
            Ok(Url {
                addr: "web:8080".into(),
                host: "web:8080",
                path: "/health?deep=1"
            })
        );
        assert_eq!(
            parse_url("http://[::1]/"),
            Ok(Url {
                addr: "[::1]:80".into(),
                host: "[::1]",
                path: "/"
            })
        );
        assert_eq!(
            parse_url("http://[::1]:81"),
            Ok(Url {
                addr: "[::1]:81".into(),
                host: "[::1]:81",
                path: "/"
            })
        );
        assert!(parse_url("http://user@host/").is_err());
        assert!(parse_url("http:///x").is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 OK"),
            Some((200, "OK".into()))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 404"),
            Some((404, String::new()))
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"ICY 200 OK"), None);
    }
}
