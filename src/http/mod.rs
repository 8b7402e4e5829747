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
//! | `/metrics` | always (Prometheus text format 0.0.4; the output counters read from `Logs`, not the loop) | 503 if the loop does not answer |
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
//! The parts: `poll.rs`, the thread and its connections; `request.rs`, the
//! request path without sockets (framing, parsing, routing, the answer's
//! bytes); `pages.rs`, the three pages rendered from a status.
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

mod pages;
mod poll;
mod request;

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::event::Input;
use crate::log::{debug, info};
use crate::output::Logs;
use crate::polling::{open_files_limit, share_of_fds};

use poll::serve;
pub use request::exchange;

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

/// Serve `addr` (`host:port`; `:port` means every IPv4 interface) on a new
/// thread. Binding errors are returned, so a bad `--http` stops corral at
/// startup.
pub fn start(addr: &str, inputs: Sender<Input>, logs: Logs) -> io::Result<()> {
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
    serve(listener, inputs, REPLY_TIMEOUT, max_connections, logs)
}

/// How many connections may be open at once: `MAX_CONNECTIONS`, but never
/// more than a quarter of the fds corral may open (`soft_limit`): the
/// control socket may take half (`control::server`), services' pipes,
/// notify sockets and watches keep the rest. Children inherit corral's
/// limits, so corral does not raise its own.
fn connection_cap(soft_limit: Option<u64>) -> usize {
    share_of_fds(soft_limit, 4, MAX_CONNECTIONS)
}

#[cfg(test)]
mod tests;
