//! `--http ADDR`: `/healthz`, `/readyz` and `/metrics` for orchestrators and
//! Prometheus, over a small HTTP/1.1 server of its own (std only).
//!
//! Owns the listening socket and one thread, "http", that accepts
//! connections and answers them one at a time, one request per connection.
//! Each answer starts from a fresh `status` asked of the loop
//! (`Input::Control`), like `corral ctl status` does, and waits for it at
//! most `REPLY_TIMEOUT`: this thread never touches service state, and a busy
//! loop gets a 503, not a hung probe.
//!
//! | path | 200 when | otherwise |
//! |---|---|---|
//! | `/healthz` | every essential service is up (running, ready, or a oneshot that exited 0) | 503, the ones that are not |
//! | `/readyz` | corral is up and every service wanted up is ready | 503, the ones that are not |
//! | `/metrics` | always (Prometheus text format 0.0.4) | 503 if the loop does not answer |
//!
//! Any other path is 404; a query string is ignored. GET and HEAD are served
//! (HEAD: the same status and header fields, no body); any other method is
//! 405 with `Allow: GET, HEAD`. A request head (request line and header
//! fields) longer than `MAX_HEAD` bytes is 431; a malformed request line or
//! header field is 400; an HTTP version other than 1.x is 505; a head that
//! has not fully arrived within `IO_TIMEOUT` is 408 (or, if nothing came at
//! all, the connection is just closed). Header fields are not interpreted
//! (a missing `Host` is let pass), except `Content-Length` /
//! `Transfer-Encoding`, which only say that a body follows: it is never
//! read, only drained before closing (see `LINGER`). Every answer has
//! `Date`, `Content-Type`, `Content-Length` and `Connection: close`.
//!
//! What it never does:
//! - keep a connection open: no keep-alive, no pipelining; the connection
//!   is closed after its one answer, and `Connection: close` tells clients
//!   (kubelet, Prometheus) to open a new one for the next request;
//! - let one client hold the thread for long: the head must arrive within
//!   `IO_TIMEOUT` overall (not per read), the answer must be taken within
//!   `IO_TIMEOUT`, a drain lasts at most `LINGER`; so one connection takes
//!   at most 2 x `IO_TIMEOUT` + `REPLY_TIMEOUT` + `LINGER`, while the next
//!   clients wait in the listen backlog;
//! - stop serving on an accept error (EMFILE, ENOBUFS, ...): it is logged
//!   once per burst and accept is retried every `ACCEPT_PAUSE`, never in a
//!   busy loop;
//! - touch service state, or panic;
//! - let services inherit a socket: the listening socket and every
//!   accepted one are close-on-exec (std's `bind` and `accept4`).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use tracing::{debug, info, warn};

use crate::control::protocol::{Request, Response, ServiceStatus};
use crate::event::Input;

/// How long a request waits for the loop's answer before a 503.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a client has to send its whole request head, and then to take
/// the whole answer: a silent or slow client holds the thread no longer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest request head (request line, header fields, blank line)
/// read; a longer one is answered 431.
pub const MAX_HEAD: usize = 8 * 1024;

/// Pause after a failed accept (EMFILE, ENFILE, ENOBUFS, ...): the
/// connection stays in the backlog, so retrying at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// After an answer to a request not read to its end (a body, a head too
/// long, a second request), what the client still sends is read and
/// dropped until it closes, for at most this long and `LINGER_BYTES`:
/// closing a socket with unread data resets the connection, and the reset
/// can destroy the answer before the client reads it (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// The http thread's stack: the head buffer and the answer are on the heap.
const STACK_SIZE: usize = 256 * 1024;

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
    thread::Builder::new()
        .name("http".into())
        .stack_size(STACK_SIZE)
        .spawn(move || run(&listener, &inputs, timeout))?;
    Ok(())
}

/// Accept and answer, one connection at a time, forever.
fn run(listener: &TcpListener, inputs: &Sender<Input>, timeout: Duration) {
    let mut buf = vec![0u8; MAX_HEAD];
    // Accepts failed in a row (0: the last one worked).
    let mut failed: u64 = 0;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if failed > 0 {
                    info!(failed, "http: accepting connections again");
                    failed = 0;
                }
                connection(stream, &mut buf, inputs, timeout);
            }
            Err(err) if lost_connection(&err) => {
                debug!(%err, "http: connection lost before accept")
            }
            Err(err) => {
                if failed == 0 {
                    warn!(%err, retry_every = ?ACCEPT_PAUSE, "http: cannot accept connections");
                }
                failed = failed.saturating_add(1);
                thread::sleep(ACCEPT_PAUSE);
            }
        }
    }
}

/// accept(2) errors about the one connection being accepted (it is gone
/// from the backlog, so the next accept does not fail the same way), as
/// opposed to errors about corral (EMFILE, ENOBUFS, ...). Linux passes on
/// the new socket's pending network errors; accept(2) says to retry those.
fn lost_connection(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Read one request, answer it, close.
fn connection(mut stream: TcpStream, buf: &mut [u8], inputs: &Sender<Input>, timeout: Duration) {
    let (reply, head_only, unread) = match read_head(&mut stream, buf) {
        Ok((end, read)) => {
            let head = buf.get(..end).unwrap_or_default();
            match parse(head) {
                Ok(request) => {
                    let reply = answer(&request, inputs, timeout);
                    debug!(
                        method = request.method,
                        target = request.target,
                        code = reply.code,
                        "http request"
                    );
                    // Bytes past the head: a body, or a second request.
                    let unread = request.body || read > end;
                    (reply, request.method == "HEAD", unread)
                }
                Err(why) => {
                    debug!(code = why.code, why = why.body, "http request refused");
                    (why, false, true)
                }
            }
        }
        Err(HeadError::TooLong) => {
            let body = format!("request head longer than {MAX_HEAD} bytes\n");
            debug!(code = 431, "http request refused: head too long");
            (Reply::text(431, body), false, true)
        }
        Err(HeadError::TimedOut { got: 0 }) | Err(HeadError::Closed) => return,
        Err(HeadError::TimedOut { got }) => {
            let body = format!("request head not complete within {IO_TIMEOUT:?}\n");
            debug!(got, "http request refused: head not complete in time");
            (Reply::text(408, body), false, false)
        }
        Err(HeadError::Io(err)) => {
            debug!(%err, "http: cannot read a request");
            return;
        }
    };
    let bytes = response(&reply, head_only, SystemTime::now());
    if let Err(err) = send(&mut stream, &bytes) {
        // The client is gone or does not read; nothing to do about it.
        debug!(%err, "http: cannot send an answer");
        return;
    }
    if unread {
        linger(&mut stream, buf);
    }
}

enum HeadError {
    /// `MAX_HEAD` bytes without the blank line that ends a head.
    TooLong,
    /// `IO_TIMEOUT` passed after `got` bytes.
    TimedOut {
        got: usize,
    },
    /// The client closed before the end of the head.
    Closed,
    Io(io::Error),
}

/// Read until the blank line that ends the request head, within
/// `IO_TIMEOUT` overall (not per read: a client that trickles bytes gains
/// nothing). Returns where the head ends in `buf`, and how much was read.
fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(usize, usize), HeadError> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut got = 0;
    loop {
        let filled = buf.get(..got).unwrap_or_default();
        if let Some(end) = head_end(filled) {
            return Ok((end, got));
        }
        let Some(free) = buf.get_mut(got..).filter(|free| !free.is_empty()) else {
            return Err(HeadError::TooLong);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::TimedOut { got });
        }
        // A zero timeout would be refused (it means "none" to the kernel).
        stream.set_read_timeout(Some(left)).map_err(HeadError::Io)?;
        match stream.read(free) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => got += n.min(free.len()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // SO_RCVTIMEO expiring is EAGAIN (socket(7)).
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::TimedOut { got });
            }
            Err(err) => return Err(HeadError::Io(err)),
        }
    }
}

/// Where the head in `buf` ends: just past its first empty line, blank
/// lines before the request line skipped (RFC 9112 §2.2). A bare LF counts
/// as a line end too, as §2.2 allows.
fn head_end(buf: &[u8]) -> Option<usize> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let rest = buf.get(start..)?;
    rest.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match (rest.get(i + 1), rest.get(i + 2)) {
            (Some(b'\n'), _) => Some(start + i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(start + i + 3),
            _ => None,
        }
    })
}

/// The parts of a request this server looks at.
#[derive(Debug, PartialEq, Eq)]
struct HttpRequest<'a> {
    method: &'a str,
    target: &'a str,
    /// `Content-Length` (not 0) or `Transfer-Encoding` is present: a body
    /// follows, which is not read.
    body: bool,
}

/// The request line and header fields of `head` (RFC 9112 §3, §5), or the
/// 400 or 505 answer.
fn parse(head: &[u8]) -> Result<HttpRequest<'_>, Reply> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .skip_while(|line| line.is_empty());
    let line = lines.next().unwrap_or_default();
    let bad_line = || Reply::text(400, "bad request: malformed request line\n");
    let line = std::str::from_utf8(line).map_err(|_| bad_line())?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_line());
    };
    if method.is_empty()
        || !method.bytes().all(is_token)
        || target.is_empty()
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad_line());
    }
    match version.strip_prefix("HTTP/").map(str::as_bytes) {
        Some([b'1', b'.', minor]) if minor.is_ascii_digit() => {}
        Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err(Reply::text(
                505,
                "HTTP version not supported: use HTTP/1.1\n",
            ));
        }
        _ => return Err(bad_line()),
    }
    let mut body = false;
    for field in lines.take_while(|line| !line.is_empty()) {
        // A name, a colon, a value; a continuation line (obs-fold) or space
        // before the colon is refused (RFC 9112 §5.1, §5.2).
        let name = field
            .iter()
            .position(|&b| b == b':')
            .and_then(|colon| field.get(..colon))
            .filter(|name| !name.is_empty() && name.iter().copied().all(is_token))
            .ok_or_else(|| Reply::text(400, "bad request: malformed header field\n"))?;
        let value = field.get(name.len() + 1..).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"transfer-encoding")
            || (name.eq_ignore_ascii_case(b"content-length") && value != b"0")
        {
            body = true;
        }
    }
    Ok(HttpRequest {
        method,
        target,
        body,
    })
}

/// A `tchar` of RFC 9110 §5.6.2: what methods and field names are made of.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The path of a request target: origin form (`/metrics?x`) or absolute
/// form (`http://host/metrics`), without the query.
fn path(target: &str) -> &str {
    let scheme = ["http://", "https://"].into_iter().find(|scheme| {
        target
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    });
    let path = match scheme {
        Some(scheme) => {
            let rest = target.get(scheme.len()..).unwrap_or_default();
            rest.find('/').and_then(|at| rest.get(at..)).unwrap_or("/")
        }
        None => target,
    };
    path.split(['?', '#']).next().unwrap_or_default()
}

/// Write all of `bytes` within `IO_TIMEOUT` overall.
fn send(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not take the answer in time",
            ));
        }
        stream.set_write_timeout(Some(left))?;
        // std sends with MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Say we are done (FIN), then read and drop what the client still sends
/// until it closes, `LINGER` passes or `LINGER_BYTES` came (see `LINGER`).
fn linger(stream: &mut TcpStream, buf: &mut [u8]) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(buf) {
            Ok(0) => return,
            Ok(n) => dropped += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The answer as bytes: status line, header fields, and the body unless
/// it answers a HEAD.
fn response(reply: &Reply, head_only: bool, now: SystemTime) -> Vec<u8> {
    let mut out = String::with_capacity(200 + reply.body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n\
         Date: {}\r\n\
         Content-Type: {}\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n",
        reply.code,
        reason(reply.code),
        http_date(now),
        reply.content_type,
        reply.body.len(),
    );
    if reply.code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&reply.body);
    }
    out.into_bytes()
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// `now` as an IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (year, month, day) = civil(days);
    let weekday = DAYS.get((days % 7) as usize).copied().unwrap_or_default();
    let month = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or_default();
    let time = secs % 86_400;
    format!(
        "{weekday}, {day:02} {month} {year} {:02}:{:02}:{:02} GMT",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01, by
/// the proleptic Gregorian calendar: 400-year eras of 146097 days, counted
/// from a March 1st so that the leap day ends a year.
fn civil(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 0 = March ... 11 = February.
    let month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month + 2) / 5 + 1;
    let (month, year_shift) = if month < 10 {
        (month + 3, 0)
    } else {
        (month - 9, 1)
    };
    (era * 400 + year_of_era + year_shift, month, day)
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

fn answer(request: &HttpRequest<'_>, inputs: &Sender<Input>, timeout: Duration) -> Reply {
    let page = match path(request.target) {
        "/healthz" => Some(Page::Health),
        "/readyz" => Some(Page::Ready),
        "/metrics" => Some(Page::Metrics),
        _ => None,
    };
    let get = matches!(request.method, "GET" | "HEAD");
    match (page, get) {
        (None, _) => Reply::text(404, "not found: try /healthz, /readyz or /metrics\n"),
        (Some(_), false) => Reply::text(405, "method not allowed: use GET\n"),
        (Some(page), true) => match ask(inputs, timeout) {
            Ok(status) => render(page, &status),
            Err(why) => Reply::text(503, format!("{why}\n")),
        },
    }
}

/// The loop's `status` of every service, or why there is none.
fn ask(inputs: &Sender<Input>, timeout: Duration) -> Result<Response, String> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    let request = Request::Status { services: vec![] };
    let reply = crate::event::Reply::new(reply);
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
                        mut reply,
                    } => {
                        assert!(services.is_empty(), "asks for every service");
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

    #[test]
    fn a_head_ends_at_its_first_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        // Empty lines before the request line are skipped (RFC 9112 2.2).
        assert_eq!(head_end(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Some(22));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"\r\n\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    fn parsed(head: &str) -> Result<HttpRequest<'_>, (u16, String)> {
        parse(head.as_bytes()).map_err(|reply| (reply.code, reply.body))
    }

    #[test]
    fn request_lines_and_header_fields_are_parsed_or_refused() {
        assert_eq!(
            parsed("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"),
            Ok(HttpRequest {
                method: "GET",
                target: "/metrics?x=1",
                body: false
            })
        );
        assert_eq!(
            parsed("\r\nPOST /healthz HTTP/1.0\r\ncontent-length : 3\r\n\r\n")
                .map_err(|(code, _)| code),
            Err(400),
            "space before the colon"
        );
        for (head, body) in [
            ("POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\n", true),
            ("POST /healthz HTTP/1.1\r\ncontent-length:0\r\n\r\n", false),
            (
                "POST /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                true,
            ),
        ] {
            assert_eq!(parsed(head).map(|r| r.body), Ok(body), "{head:?}");
        }
        let bad_line = Err((400, "bad request: malformed request line\n".to_string()));
        for head in [
            "GARBAGE\r\n\r\n",
            "GET /healthz\r\n\r\n",
            "GET  /healthz HTTP/1.1\r\n\r\n",
            "GET /healthz HTTP/1.1 x\r\n\r\n",
            "GET /a\tb HTTP/1.1\r\n\r\n",
            "GET /healthz FTP/1.1\r\n\r\n",
            "GET /healthz HTTP/1\r\n\r\n",
            "G(T /healthz HTTP/1.1\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parsed(head), bad_line, "{head:?}");
        }
        assert_eq!(
            parse(b"GET /\xff HTTP/1.1\r\n\r\n").map_err(|r| r.code),
            Err(400)
        );
        assert_eq!(
            parsed("GET /healthz HTTP/2.0\r\n\r\n").map_err(|(code, _)| code),
            Err(505)
        );
        for head in [
            "GET /healthz HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /healthz HTTP/1.1\r\n: empty name\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        ] {
            assert_eq!(
                parsed(head),
                Err((400, "bad request: malformed header field\n".to_string())),
                "{head:?}"
            );
        }
        // Field values are not looked at: obs-text passes.
        assert!(parse(b"GET / HTTP/1.1\r\nX: \xe9t\xe9\r\n\r\n").is_ok());
    }

    #[test]
    fn the_path_is_the_target_without_query_or_origin() {
        assert_eq!(path("/metrics"), "/metrics");
        assert_eq!(path("/healthz?verbose=1#x"), "/healthz");
        assert_eq!(path("http://example:9100/readyz?x"), "/readyz");
        assert_eq!(path("HTTPS://example"), "/");
        assert_eq!(path("*"), "*");
    }

    #[test]
    fn dates_are_imf_fixdates() {
        let at = |secs| http_date(UNIX_EPOCH + Duration::from_secs(secs));
        // The example of RFC 9110 5.6.7.
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // 2000 has a leap day (divisible by 400), 2100 none (by 100 only);
        // checked with `date -u -d @SECS`.
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(978_307_199), "Sun, 31 Dec 2000 23:59:59 GMT");
        assert_eq!(at(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
    }

    #[test]
    fn answers_have_their_header_fields_and_head_has_no_body() {
        let at = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let get = String::from_utf8(response(&Reply::text(200, "ok\n"), false, at));
        let expected = "HTTP/1.1 200 OK\r\n\
                        Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                        Content-Type: text/plain; charset=utf-8\r\n\
                        Content-Length: 3\r\n\
                        Connection: close\r\n\r\n";
        assert_eq!(get.as_deref(), Ok(format!("{expected}ok\n").as_str()));
        let head = String::from_utf8(response(&Reply::text(200, "ok\n"), true, at));
        assert_eq!(head.as_deref(), Ok(expected));
        let refused = String::from_utf8(response(&Reply::text(405, "no\n"), false, at));
        assert!(
            refused
                .as_deref()
                .is_ok_and(|r| r.contains("\r\nAllow: GET, HEAD\r\n")),
            "{refused:?}"
        );
    }
}
