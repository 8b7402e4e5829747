//! `--http ADDR`: `/healthz`, `/readyz` and `/metrics` for orchestrators and
//! Prometheus, over a small HTTP/1.1 server of its own: request heads are
//! parsed by the `httparse` crate, everything else is std and `poll(2)`.
//!
//! Owns the listening socket and one thread, "http", with one `poll(2)`
//! over the listener, a wake-up pipe and every connection; every socket is
//! non-blocking, so a client that is slow or silent costs a slot and its
//! buffers, never a thread, and never delays another client (SPEC 12: a
//! probe with a 1 s timeout succeeds while 1000 idle or slow connections
//! are open). One request per connection. A page is rendered from a fresh
//! `status` asked of the loop (`Input::Control`), as `corral ctl status`
//! does: this thread never touches service state. The requests waiting at
//! one time share one status request, so however many clients ask, the
//! loop has at most one of ours to answer; an answer not there within
//! `REPLY_TIMEOUT` is a 503, not a hung probe. `poll(2)` cannot wait for a
//! channel, so the `Reply` writes a byte to the wake-up pipe once the loop
//! has answered (as in `control::server`).
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
//! fields, blank lines before it not counted) longer than `MAX_HEAD` bytes,
//! or with more than `MAX_HEADERS` fields, is 431; a malformed request line
//! or header field (as `httparse` finds it, or a target that is not ASCII)
//! is 400; an HTTP version other than 1.0 and 1.1 is 505; a head that has
//! not fully arrived within `IO_TIMEOUT` is 408 (or, if nothing came at
//! all, the connection is just closed). Header fields are not interpreted
//! (a missing `Host` is let pass), except `Content-Length` /
//! `Transfer-Encoding`, which only say that a body follows: it is never
//! read, only drained before closing (see `LINGER`). Every answer has
//! `Date`, `Content-Type`, `Content-Length` and `Connection: close`.
//!
//! The head is framed here (up to its first empty line, found by looking
//! at each byte once, however it trickles in) and parsed once whole:
//! parsing on every read would cost a byte-at-a-time client
//! `MAX_HEAD` squared. `exchange` runs the same steps without sockets, for
//! the `http_request` fuzz target.
//!
//! What it never does:
//! - keep a connection open: no keep-alive, no pipelining; the connection
//!   is closed after its one answer, and `Connection: close` tells clients
//!   (kubelet, Prometheus) to open a new one for the next request;
//! - let a client hold a connection for long: the head must arrive within
//!   `IO_TIMEOUT` of the connection overall (not per read: a client that
//!   trickles bytes gains nothing), the answer must be taken within
//!   `IO_TIMEOUT` of being ready, a drain lasts at most `LINGER`;
//! - let connections lock a probe out: at most `max_connections` are open
//!   (`MAX_CONNECTIONS`, or a quarter of the fds corral may open if that is
//!   fewer). A new connection over the cap, or an accept that fails for want
//!   of fds (EMFILE, ENFILE), closes the connection that has waited longest
//!   without sending a whole request (if there is none, the oldest
//!   connection; if there is none either, a spare fd kept for this), so the
//!   newest client, a probe, is served;
//! - spin: accept errors (ENOBUFS, or EMFILE with nothing to close) are
//!   logged once per burst and accepting pauses for `ACCEPT_PAUSE`; the
//!   listener is never left readable for nothing;
//! - block on a client, touch service state, or die of a panic (a bug drops
//!   the connections and serving goes on);
//! - let services inherit an fd: the listening socket, every accepted one,
//!   the wake-up pipe and the spare fd are close-on-exec (std's `bind`,
//!   `accept4` and `open`, `pipe2(O_CLOEXEC)`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use tracing::{debug, error, info, warn};

use crate::event::Input;
use crate::polling::{self, Wake, new_burst, open_files_limit, share_of_fds, spare_fd};
use crate::protocol::{Request, Response, ServiceStatus};
use crate::text::http_date;

/// How long a request waits for the loop's answer before a 503.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a client has to send its whole request head (from the
/// connection), and then to take the whole answer (from it being ready).
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest request head (request line, header fields, blank line)
/// read; a longer one is answered 431.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header fields a request may have; more is answered 431.
pub const MAX_HEADERS: usize = 64;

/// Connections open at once, at most (see `connection_cap`). Each costs an
/// fd and at most `MAX_HEAD` bytes of head (an answer, while it is written).
pub const MAX_CONNECTIONS: usize = 2048;

/// The listen backlog asked for (the kernel caps it at
/// `net.core.somaxconn`): std's 128 fills up in a burst of connects, and a
/// probe's SYN dropped on a full queue is retried only after a second.
const BACKLOG: libc::c_int = 4096;

/// Connections accepted per wake-up, so that a flood of connects cannot
/// starve the clients already connected.
const ACCEPT_BATCH: usize = 64;

/// How long accepting pauses when accept(2) fails and nothing can be
/// closed to make room: the listener stays readable, so retrying at once
/// would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// After an answer to a request not read to its end (a body, a head too
/// long, a second request), what the client still sends is read and
/// dropped until it closes, for at most this long and `LINGER_BYTES`:
/// closing a socket with unread data resets the connection, and the reset
/// can destroy the answer before the client reads it (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Bytes read from a connection per wake-up.
const READ_CHUNK: usize = 8 * 1024;

/// The http thread's stack: buffers are on the heap; httparse's header
/// array (`MAX_HEADERS` fields) is the largest thing on it.
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
    // listen(2) again on a listening socket only sets its backlog (Linux).
    // SAFETY: listen takes an fd, borrowed from `listener`, which is open
    // for the duration of the call, and an int.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        debug!(err = %io::Error::last_os_error(), "http: cannot raise the listen backlog");
    }
    let max_connections = connection_cap(open_files_limit());
    info!(%addr, max_connections, "http endpoint listening");
    serve(listener, inputs, REPLY_TIMEOUT, max_connections)
}

fn serve(
    listener: TcpListener,
    inputs: Sender<Input>,
    reply_timeout: Duration,
    max_connections: usize,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let (wake_rx, wake_tx) = polling::wake_pipe()?;
    let poller = Poller {
        listener,
        wake: wake_rx,
        wake_tx: Arc::new(wake_tx),
        spare: spare_fd(),
        conns: BTreeMap::new(),
        next_token: 0,
        max_connections,
        inputs,
        reply_timeout,
        status: None,
        scratch: vec![0; READ_CHUNK],
        failed_accepts: 0,
        accept_failed_at: None,
        evicted_at: None,
        poll_failed_at: None,
        paused_until: None,
    };
    thread::Builder::new()
        .name("http".into())
        .stack_size(STACK_SIZE)
        .spawn(move || poller.run())?;
    Ok(())
}

/// How many connections may be open at once: `MAX_CONNECTIONS`, but never
/// more than a quarter of the fds corral may open (`soft_limit`): the
/// control socket may take half (`control::server`), services' pipes,
/// notify sockets and watches keep the rest. Children inherit corral's
/// limits, so corral does not raise its own.
fn connection_cap(soft_limit: Option<u64>) -> usize {
    share_of_fds(soft_limit, 4, MAX_CONNECTIONS)
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

// ---------------------------------------------------------------------------
// The request path, without sockets

/// A request head as it arrives, read by read: `push` frames it, and parses
/// it once whole.
#[derive(Debug, Default)]
struct Incoming {
    /// The head so far, blank lines before it left out; never more than
    /// `MAX_HEAD` bytes.
    head: Vec<u8>,
    /// Every byte received, blank lines and all.
    got: usize,
}

impl Incoming {
    /// Add what one read brought. `Some` once the head is whole (or too
    /// long): what the request gets; `None` while more is needed.
    fn push(&mut self, data: &[u8]) -> Option<Received> {
        self.got = self.got.saturating_add(data.len());
        let data = if self.head.is_empty() {
            // Blank lines before the request line are skipped (RFC 9112 §2.2).
            let start = data.iter().position(|&b| b != b'\r' && b != b'\n')?;
            data.get(start..).unwrap_or_default()
        } else {
            data
        };
        let from = self.head.len();
        let room = MAX_HEAD.saturating_sub(from);
        let taken = data.get(..room).unwrap_or(data);
        self.head.extend_from_slice(taken);
        if let Some(end) = head_end(&self.head, from) {
            // Bytes past the head: a body, or a second request.
            let more = end < self.head.len() || taken.len() < data.len();
            let head = self.head.get(..end).unwrap_or_default();
            return Some(received(head, more));
        }
        (self.head.len() >= MAX_HEAD).then(|| Received {
            asked: Asked::Now(Reply::text(
                431,
                format!("request head longer than {MAX_HEAD} bytes\n"),
            )),
            head_only: false,
            unread: true,
        })
    }

    /// The answer when the head is not whole in time: 408 if anything came
    /// at all; a client that sent nothing is closed without a word.
    fn timed_out(&self) -> Option<Reply> {
        (self.got > 0).then(|| {
            Reply::text(
                408,
                format!("request head not complete within {IO_TIMEOUT:?}\n"),
            )
        })
    }
}

/// Where the head in `buf` ends: just past its first empty line (a line end
/// followed by `\n` or `\r\n`; a bare LF counts as a line end, as RFC 9112
/// §2.2 allows). Only line ends at `from` or later are looked for: bytes
/// before it were looked at already. `buf` does not start with a blank line.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf.get(i) != Some(&b'\n') {
            return None;
        }
        let before = i.checked_sub(1).and_then(|j| buf.get(j));
        let two_before = i.checked_sub(2).and_then(|j| buf.get(j));
        match (two_before, before) {
            (_, Some(b'\n')) | (Some(b'\n'), Some(b'\r')) => Some(i + 1),
            _ => None,
        }
    })
}

/// What a whole head gets.
#[derive(Debug, PartialEq, Eq)]
struct Received {
    asked: Asked,
    /// A HEAD request: the answer has no body.
    head_only: bool,
    /// The client sent (or says it sends) more than the head: drain it
    /// before closing (see `LINGER`).
    unread: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// A page, rendered from the loop's status.
    Page(Page),
    /// Refused, or not found: answered at once.
    Now(Reply),
}

/// What the whole head `head` (ending with its empty line) asks for;
/// `more`: bytes came after it.
fn received(head: &[u8], more: bool) -> Received {
    let request = match parse(head) {
        Ok(request) => request,
        Err(why) => {
            debug!(code = why.code, why = why.body, "http request refused");
            return Received {
                asked: Asked::Now(why),
                head_only: false,
                unread: true,
            };
        }
    };
    debug!(
        method = request.method,
        target = request.target,
        "http request"
    );
    let page = match path(request.target) {
        "/healthz" => Some(Page::Health),
        "/readyz" => Some(Page::Ready),
        "/metrics" => Some(Page::Metrics),
        _ => None,
    };
    let asked = match (page, matches!(request.method, "GET" | "HEAD")) {
        (None, _) => Asked::Now(Reply::text(
            404,
            "not found: try /healthz, /readyz or /metrics\n",
        )),
        (Some(_), false) => Asked::Now(Reply::text(405, "method not allowed: use GET\n")),
        (Some(page), true) => Asked::Page(page),
    };
    Received {
        asked,
        head_only: request.method == "HEAD",
        unread: request.body || more,
    }
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

/// The request line and header fields of the whole head `head`, parsed by
/// `httparse` (RFC 9112 §3, §5: no space before a field's colon, no
/// obs-fold), or the 400, 431 or 505 answer.
fn parse(head: &[u8]) -> Result<HttpRequest<'_>, Reply> {
    let bad_line = || Reply::text(400, "bad request: malformed request line\n");
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // Cannot be: `head` ends with an empty line.
        Ok(httparse::Status::Partial) => return Err(bad_line()),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reply::text(
                431,
                format!("more than {MAX_HEADERS} header fields\n"),
            ));
        }
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(Reply::text(400, "bad request: malformed header field\n"));
        }
        Err(httparse::Error::Version) if names_a_version(head) => {
            return Err(Reply::text(
                505,
                "HTTP version not supported: use HTTP/1.1\n",
            ));
        }
        Err(_) => return Err(bad_line()),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(bad_line());
    };
    // httparse lets UTF-8 through; a request target is ASCII (RFC 3986).
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad_line());
    }
    let body = request.headers.iter().any(|field| {
        field.name.eq_ignore_ascii_case("transfer-encoding")
            || (field.name.eq_ignore_ascii_case("content-length")
                && field.value.trim_ascii() != b"0")
    });
    Ok(HttpRequest {
        method,
        target,
        body,
    })
}

/// Whether the request line's third word is a version, `HTTP/` digit `.`
/// digit, one that httparse refused (not 1.0 or 1.1): 505 rather than 400.
fn names_a_version(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    matches!(
        line.split(|&b| b == b' ').nth(2),
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit()
    )
}

/// The answer to `page`, from the loop's status or why there is none.
fn page_reply(page: Page, status: &Result<Response, String>) -> Reply {
    match status {
        Ok(status) if status.ok => render(page, status),
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

/// The request path without sockets, step by step as the server takes it:
/// `reads` are what a new connection's client sent, read by read; the
/// answer is rendered from `status` (the loop's answer to `status`, or why
/// there is none, e.g. "corral busy"). `Some`: the bytes the client gets
/// (nothing more is sent on the connection); `None`: the head is not whole,
/// the server waits for more. For the `http_request` fuzz target.
pub fn exchange<'a>(
    reads: impl IntoIterator<Item = &'a [u8]>,
    status: &Result<Response, String>,
    now: SystemTime,
) -> Option<Vec<u8>> {
    let mut incoming = Incoming::default();
    let received = reads.into_iter().find_map(|data| incoming.push(data))?;
    let reply = match received.asked {
        Asked::Page(page) => page_reply(page, status),
        Asked::Now(reply) => reply,
    };
    Some(response(&reply, received.head_only, now))
}

// ---------------------------------------------------------------------------
// The poll thread

/// The poll thread's state.
struct Poller {
    listener: TcpListener,
    /// The read end of the wake-up pipe.
    wake: OwnedFd,
    wake_tx: Arc<Wake>,
    spare: Option<File>,
    /// By token, which grows with each accept: the first is the oldest.
    conns: BTreeMap<u64, Conn>,
    next_token: u64,
    max_connections: usize,
    inputs: Sender<Input>,
    reply_timeout: Duration,
    /// The status request in flight, shared by every connection `Asking`.
    status: Option<Pending>,
    scratch: Vec<u8>,
    /// Accepts failed since the last that worked without making room.
    failed_accepts: u64,
    /// When accept(2) last failed, a connection was last closed to make
    /// room, and poll(2) last failed: each is logged once per burst.
    accept_failed_at: Option<Instant>,
    evicted_at: Option<Instant>,
    poll_failed_at: Option<Instant>,
    /// Accepting pauses until then.
    paused_until: Option<Instant>,
}

/// A status request to the loop: its answer comes on `answer` (the `Reply`
/// wakes the poll thread), and is given up on at `by`.
struct Pending {
    answer: Receiver<Response>,
    by: Instant,
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
}

enum Phase {
    /// Receiving the request head, which must be whole by `by`.
    Reading { incoming: Incoming, by: Instant },
    /// Waiting for the loop's status (`Poller::status`).
    Asking {
        page: Page,
        head_only: bool,
        unread: bool,
    },
    /// Writing the answer, `out[sent..]` still to go, all taken by `by`;
    /// then draining if `unread`, else closing.
    Writing {
        out: Vec<u8>,
        sent: usize,
        by: Instant,
        unread: bool,
    },
    /// Answered, our side shut down: dropping what the client still sends
    /// until it closes, `by`, or `LINGER_BYTES`.
    Draining { by: Instant, dropped: usize },
}

impl Conn {
    fn events(&self) -> PollFlags {
        match self.phase {
            Phase::Reading { .. } | Phase::Draining { .. } => PollFlags::POLLIN,
            Phase::Writing { .. } => PollFlags::POLLOUT,
            // POLLHUP and POLLERR are reported whatever is asked (poll(2)).
            Phase::Asking { .. } => PollFlags::empty(),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Reading { by, .. } | Phase::Writing { by, .. } | Phase::Draining { by, .. } => {
                Some(by)
            }
            // `Pending::by`.
            Phase::Asking { .. } => None,
        }
    }
}

/// What to do with a connection after a step.
enum Next {
    Keep,
    Close,
}

impl Poller {
    /// Serve forever. A panic (a bug) drops every connection, not the
    /// endpoint.
    fn run(mut self) {
        loop {
            if panic::catch_unwind(AssertUnwindSafe(|| self.serve())).is_err() {
                error!("http: internal error; every http connection was dropped, serving goes on");
                self.conns.clear();
                self.status = None;
            }
        }
    }

    fn serve(&mut self) {
        loop {
            let now = Instant::now();
            self.expire(now);
            self.take_status(now);
            if self.paused_until.is_some_and(|at| now >= at) {
                self.paused_until = None;
            }
            if self.spare.is_none() {
                self.spare = spare_fd();
            }
            let accepting = self.paused_until.is_none();
            let deadline = self
                .conns
                .values()
                .filter_map(Conn::deadline)
                .chain(self.status.as_ref().map(|pending| pending.by))
                .chain(self.paused_until)
                .min();
            let timeout = polling::timeout(deadline, now);
            let mut tokens = Vec::with_capacity(self.conns.len());
            let revents: Vec<PollFlags> = {
                let mut fds = Vec::with_capacity(self.conns.len() + 2);
                fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
                if accepting {
                    fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
                }
                for (&token, conn) in &self.conns {
                    tokens.push(token);
                    fds.push(PollFd::new(conn.stream.as_fd(), conn.events()));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(err) => {
                        // ENOMEM: try again a little later, without spinning.
                        if new_burst(&mut self.poll_failed_at) {
                            warn!(%err, "http: poll failed");
                        }
                        thread::sleep(ACCEPT_PAUSE);
                        continue;
                    }
                }
                fds.iter()
                    .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
                    .collect()
            };
            let mut revents = revents.into_iter();
            if revents.next().is_some_and(|r| !r.is_empty()) {
                polling::drain(&self.wake);
            }
            let listener_ready = accepting && revents.next().is_some_and(|r| !r.is_empty());
            for (token, r) in tokens.into_iter().zip(revents) {
                if !r.is_empty() {
                    self.on_event(token, r);
                }
            }
            // After the connections' events: room is made by closing the
            // oldest waiting one, which may just have sent its request.
            if listener_ready {
                self.accept();
            }
        }
    }

    /// Heads not whole in time are answered 408 (or closed, if nothing
    /// came); answers not taken in time, and drains that last too long,
    /// end their connection.
    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.deadline().is_some_and(|by| now >= by))
            .map(|(&token, _)| token)
            .collect();
        for token in late {
            let timed_out = match self.conns.get(&token).map(|conn| &conn.phase) {
                Some(Phase::Reading { incoming, .. }) => incoming.timed_out(),
                Some(Phase::Writing { .. }) => {
                    debug!("http client did not take its answer in time");
                    None
                }
                _ => None,
            };
            match timed_out {
                Some(reply) => {
                    debug!("http request refused: head not complete in time");
                    self.respond(token, &reply, false, false);
                }
                None => self.close(token),
            }
        }
    }

    /// The loop's status is there (or overdue): every connection waiting
    /// for it is answered.
    fn take_status(&mut self, now: Instant) {
        let Some(pending) = &self.status else {
            return;
        };
        let status = match pending.answer.try_recv() {
            Ok(response) => Ok(response),
            Err(TryRecvError::Empty) if now < pending.by => return,
            Err(TryRecvError::Empty) => Err("corral busy".to_string()),
            // The loop dropped the request unanswered: it is exiting.
            Err(TryRecvError::Disconnected) => Err("corral is exiting".to_string()),
        };
        self.status = None;
        let waiting: Vec<(u64, Page, bool, bool)> = self
            .conns
            .iter()
            .filter_map(|(&token, conn)| match conn.phase {
                Phase::Asking {
                    page,
                    head_only,
                    unread,
                } => Some((token, page, head_only, unread)),
                _ => None,
            })
            .collect();
        for (token, page, head_only, unread) in waiting {
            let reply = page_reply(page, &status);
            debug!(code = reply.code, ?page, "http answer");
            self.respond(token, &reply, head_only, unread);
        }
    }

    fn accept(&mut self) {
        // Room was made for this accept by closing a connection or the spare.
        let mut made_room = false;
        for attempt in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.failed_accepts > 0 && !made_room {
                        info!(
                            failed = self.failed_accepts,
                            "http: accepting connections again"
                        );
                        self.failed_accepts = 0;
                    }
                    self.admit(stream);
                    if made_room {
                        // The next poll says whether another client waits.
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if lost_connection(&err) => {
                    debug!(%err, "http: connection lost before accept");
                }
                Err(err) => {
                    self.failed_accepts = self.failed_accepts.saturating_add(1);
                    if new_burst(&mut self.accept_failed_at) {
                        warn!(%err, "http: cannot accept connections");
                    }
                    let out_of_fds =
                        matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    // Out of fds: close the connection that waited longest
                    // (or the spare) and take the new client with its fd.
                    // Only on the first try after poll(2) said a client
                    // waits: Linux takes the fd before it looks for a
                    // client, so EMFILE says nothing of one waiting.
                    if out_of_fds && attempt == 0 && (self.evict() || self.spare.take().is_some()) {
                        made_room = true;
                        continue;
                    }
                    if attempt == 0 {
                        // ENOBUFS / ENOMEM, or nothing to close: the
                        // listener stays readable, retrying at once would spin.
                        self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    }
                    return;
                }
            }
        }
    }

    /// Close the connection that has waited longest without sending a
    /// whole request; if every one has, the oldest. `false`: none is open.
    fn evict(&mut self) -> bool {
        let token = self
            .conns
            .iter()
            .find(|(_, conn)| matches!(conn.phase, Phase::Reading { .. }))
            .or_else(|| self.conns.first_key_value())
            .map(|(&token, _)| token);
        let Some(token) = token else {
            return false;
        };
        if new_burst(&mut self.evicted_at) {
            warn!(
                open = self.conns.len(),
                max = self.max_connections,
                "http: too many connections or out of fds; closing the ones waiting longest for a request"
            );
        }
        self.close(token);
        true
    }

    /// Serve a new connection, making room for it when at the cap.
    fn admit(&mut self, stream: TcpStream) {
        if self.conns.len() >= self.max_connections {
            self.evict();
        }
        if let Err(err) = stream.set_nonblocking(true) {
            debug!(%err, "http connection dropped");
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.conns.insert(
            token,
            Conn {
                stream,
                phase: Phase::Reading {
                    incoming: Incoming::default(),
                    by: Instant::now() + IO_TIMEOUT,
                },
            },
        );
        // The request often came with the connection.
        self.read(token);
    }

    /// poll(2) reported `revents` for connection `token`.
    fn on_event(&mut self, token: u64, revents: PollFlags) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        match conn.phase {
            // Data, EOF, or an error: read(2) tells which.
            Phase::Reading { .. } => self.read(token),
            Phase::Asking { .. } => {
                if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
                {
                    debug!("http client hung up before its answer");
                    self.close(token);
                }
            }
            // Room, or an error: write(2) tells which.
            Phase::Writing { .. } => self.flush(token),
            Phase::Draining { .. } => self.drain(token),
        }
    }

    fn read(&mut self, token: u64) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let Phase::Reading { incoming, .. } = &mut conn.phase else {
            return;
        };
        let received = match (&conn.stream).read(&mut self.scratch) {
            // The client left before its head was whole: nobody to answer.
            Ok(0) => None,
            Ok(n) => match incoming.push(self.scratch.get(..n).unwrap_or_default()) {
                Some(received) => Some(received),
                None => return,
            },
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                return;
            }
            Err(err) => {
                debug!(%err, "http: cannot read a request");
                None
            }
        };
        let Some(received) = received else {
            self.close(token);
            return;
        };
        match received.asked {
            Asked::Now(reply) => self.respond(token, &reply, received.head_only, received.unread),
            Asked::Page(page) => self.ask(token, page, received.head_only, received.unread),
        }
    }

    /// Wait for the loop's status to answer `page`: the status request in
    /// flight, or a new one.
    fn ask(&mut self, token: u64, page: Page, head_only: bool, unread: bool) {
        if self.status.is_none() {
            let (reply, answer) = crossbeam_channel::bounded(1);
            let wake = Arc::clone(&self.wake_tx);
            let reply = crate::event::Reply::then(reply, move || wake.wake());
            let request = Request::Status { services: vec![] };
            if self.inputs.send(Input::Control { request, reply }).is_err() {
                let reply = Reply::text(503, "corral is exiting\n");
                self.respond(token, &reply, head_only, unread);
                return;
            }
            self.status = Some(Pending {
                answer,
                by: Instant::now() + self.reply_timeout,
            });
        }
        if let Some(conn) = self.conns.get_mut(&token) {
            conn.phase = Phase::Asking {
                page,
                head_only,
                unread,
            };
        }
    }

    /// Answer connection `token` with `reply`.
    fn respond(&mut self, token: u64, reply: &Reply, head_only: bool, unread: bool) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.phase = Phase::Writing {
            out: response(reply, head_only, SystemTime::now()),
            sent: 0,
            by: Instant::now() + IO_TIMEOUT,
            unread,
        };
        self.flush(token);
    }

    /// Write what the socket takes now; once all is written, drain or close.
    fn flush(&mut self, token: u64) {
        let next = match self.conns.get_mut(&token) {
            Some(conn) => conn.flush(),
            None => return,
        };
        match next {
            Next::Keep => {
                if let Some(Phase::Draining { .. }) = self.conns.get(&token).map(|c| &c.phase) {
                    self.drain(token);
                }
            }
            Next::Close => self.close(token),
        }
    }

    fn drain(&mut self, token: u64) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let Phase::Draining { dropped, .. } = &mut conn.phase else {
            return;
        };
        loop {
            match (&conn.stream).read(&mut self.scratch) {
                Ok(n) if n > 0 && *dropped + n < LINGER_BYTES => *dropped += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                // The client closed, sent too much, or failed.
                _ => break,
            }
        }
        self.close(token);
    }

    fn close(&mut self, token: u64) {
        // Dropping the stream closes it; an `Asking` one is simply not
        // answered (the status request is shared, and stays).
        self.conns.remove(&token);
    }
}

impl Conn {
    /// Write what the socket takes now. Once all is written: with unread
    /// bytes, shut down our side and drain; else close.
    fn flush(&mut self) -> Next {
        let Phase::Writing {
            out, sent, unread, ..
        } = &mut self.phase
        else {
            return Next::Keep;
        };
        while *sent < out.len() {
            // std sends with MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
            match (&self.stream).write(out.get(*sent..).unwrap_or_default()) {
                Ok(0) => return Next::Close,
                Ok(n) => *sent += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(err) => {
                    // The client is gone; nothing to do about it.
                    debug!(%err, "http: cannot send an answer");
                    return Next::Close;
                }
            }
        }
        if !*unread || self.stream.shutdown(Shutdown::Write).is_err() {
            return Next::Close;
        }
        self.phase = Phase::Draining {
            by: Instant::now() + LINGER,
            dropped: 0,
        };
        Next::Keep
    }
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
fn metrics(status: &Response) -> String {
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
    use std::sync::atomic::{AtomicUsize, Ordering};
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
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n\n", 0), Some(17));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(head_end(b"", 0), None);
        // Only line ends at `from` or later, looking back at what is before.
        let head = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(head_end(head, 17), Some(18));
        assert_eq!(head_end(head, 18), None);
    }

    /// `push` of each read in turn: what the first whole head gets.
    fn pushed(reads: &[&[u8]]) -> Option<Received> {
        let mut incoming = Incoming::default();
        reads.iter().find_map(|data| incoming.push(data))
    }

    #[test]
    fn a_head_is_framed_the_same_however_it_arrives() {
        let page = |page, head_only, unread| {
            Some(Received {
                asked: Asked::Page(page),
                head_only,
                unread,
            })
        };
        for (request, expected) in [
            (
                &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                page(Page::Health, false, false),
            ),
            // Empty lines before the request line are skipped (RFC 9112 2.2).
            (
                b"\r\n\r\nHEAD /readyz HTTP/1.0\n\n",
                page(Page::Ready, true, false),
            ),
            // A body announced: drained.
            (
                b"GET /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
                page(Page::Metrics, false, true),
            ),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", None),
            (b"\r\n\r\n\n", None),
            (b"", None),
        ] {
            assert_eq!(pushed(&[request]), expected, "{request:?}");
            let bytes: Vec<&[u8]> = request.chunks(1).collect();
            assert_eq!(pushed(&bytes), expected, "{request:?} byte by byte");
            let halves: Vec<&[u8]> = request.chunks(request.len() / 2 + 1).collect();
            assert_eq!(pushed(&halves), expected, "{request:?} in two");
        }
        // Bytes read with the head (a body, a second request): drained.
        assert_eq!(
            pushed(&[b"GET /metrics HTTP/1.1\r\n\r\nGET /"]),
            page(Page::Metrics, false, true)
        );
        // 431 as soon as MAX_HEAD bytes came without an end, and not before.
        let mut incoming = Incoming::default();
        assert_eq!(incoming.push(b"GET / HTTP/1.1\r\nX: "), None);
        let pad = vec![b'a'; MAX_HEAD - 20];
        assert_eq!(incoming.push(&pad), None);
        let refused = incoming.push(b"a");
        assert!(
            matches!(&refused, Some(Received { asked: Asked::Now(r), unread: true, .. }) if r.code == 431),
            "{refused:?}"
        );
    }

    #[test]
    fn a_head_not_whole_in_time_is_408_unless_nothing_came() {
        let mut incoming = Incoming::default();
        assert_eq!(incoming.timed_out(), None);
        assert_eq!(incoming.push(b"\r\n"), None);
        assert_eq!(incoming.timed_out().map(|r| r.code), Some(408));
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
        // httparse knows 1.0 and 1.1 only: any other version is 505.
        for head in [
            "GET /healthz HTTP/2.0\r\n\r\n",
            "GET /healthz HTTP/1.2\r\n\r\n",
            "GET /healthz HTTP/0.9\r\n\r\n",
        ] {
            assert_eq!(parsed(head).map_err(|(code, _)| code), Err(505), "{head:?}");
        }
        let fields = "X: y\r\n".repeat(MAX_HEADERS);
        assert!(parsed(&format!("GET / HTTP/1.1\r\n{fields}\r\n")).is_ok());
        assert_eq!(
            parsed(&format!("GET / HTTP/1.1\r\n{fields}X: y\r\n\r\n")),
            Err((431, format!("more than {MAX_HEADERS} header fields\n")))
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
    fn answers_have_their_header_fields_and_head_has_no_body() {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
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
