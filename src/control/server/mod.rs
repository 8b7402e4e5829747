//! The control socket server: one thread and one `poll(2)` over the
//! listening socket, a wake-up pipe and every connection. It turns each
//! request line into an `Input::Control` for the loop and writes the answer
//! back.
//!
//! What it owns: the socket file (created mode 0600, replaced when stale,
//! removed at exit) in a directory checked safe before and after it is
//! created (`control::check_socket_dir`; an unsafe one is a startup error),
//! client authentication (SO_PEERCRED: root and corral's own uid only), and
//! every defence against clients. A request must arrive whole within
//! `REQUEST_TIMEOUT`, fit `MAX_REQUEST` and nest at most `MAX_NESTING` deep;
//! one that is not valid (duplicate keys included, see `protocol`) gets an
//! error and is closed. At most `max_connections` are served at once
//! (`MAX_CONNECTIONS`, or half the fds corral may open if that is fewer);
//! more get an error line. A client that takes nothing of its answer for
//! `WRITE_TIMEOUT` is dropped. Every socket is non-blocking: a client that
//! stalls costs a slot and its buffers, never a thread, and never delays
//! another client. When corral is out of fds (accept(2) fails with EMFILE or
//! ENFILE), a spare fd is closed to take the waiting client, tell it so and
//! close it; the listener never stays readable for nothing, so the thread
//! never spins. Every fd it holds is close-on-exec.
//!
//! What it must never do: block the supervisor loop, wait for one client, or
//! touch service state. Its only link to the loop is an unbounded channel
//! send, which never blocks, and one reply channel per request
//! (`bounded(1)`) that the loop sends on once, which never blocks either.
//! `poll(2)` cannot wait for a channel, so each request's `Reply` also names
//! its connection on the `ready` channel and writes a byte to the wake-up
//! pipe once the loop has answered: the loop wakes this thread directly.
//!
//! The relay: `logs -f` followers get their lines from the output thread on
//! bounded channels. A second small thread, `control-relay`, waits
//! (crossbeam `Select`) on the channels of followers that have taken all
//! they were sent; when one has a line, it hands the connection's token over
//! and wakes the poll thread. It holds no socket and never takes a message
//! itself. So a follower's channel stays bounded, and a follower that falls
//! `FOLLOW_BACKLOG` lines behind is still dropped by the output thread: the
//! poll thread reads a follower's channel only when the client has taken
//! everything written before.
//!
//! One request per connection: read one line, answer, close. `logs` with
//! `follow` answers with the recent lines, then one response per new line
//! until the client hangs up (or corral exits). A client that only shut
//! down its writing side (`shutdown(SHUT_WR)`, as `socat` does after
//! sending) still gets its answer. Only a full close raises POLLHUP on a
//! Unix stream socket, and only that ends the connection early (unix(7);
//! `unix_poll` sets EPOLLHUP when both directions are shut down). A hang-up
//! before the answer sends `Input::Cancel`. See `protocol` for the format.
//!
//! The parts: this file, the `Server` handle and the limits; `socket.rs`,
//! the socket file; `poll.rs`, the poll thread and accepting;
//! `connection.rs`, one connection from request to answer (and `logs -f`);
//! `relay.rs`, the relay thread. Peer credentials are `control::peer`.

mod connection;
mod poll;
mod relay;
mod socket;

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::event::Input;
use crate::log::{debug, info, warn};
use crate::output::Logs;
use crate::polling::{self, Wake, open_files_limit, share_of_fds, spare_fd};

use connection::Conn;
use relay::Watch;
use socket::{bind_private, replace_stale, safe_dir};

/// A request line must be complete within this time of the connection.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client must take some of its answer within this time of it being
/// ready, and then of each part it took; one that takes nothing for this
/// long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once, at most; more get an error line and are
/// closed. A connection costs one fd and a few hundred bytes (plus its
/// partial request line, at most `MAX_REQUEST`), so the bound is the fds:
/// see `connection_cap`.
pub const MAX_CONNECTIONS: usize = 1024;

/// `logs` without `lines`.
pub const DEFAULT_LOG_LINES: usize = 100;

/// Connections accepted per wake-up, so that a flood of connects cannot
/// starve the clients already connected.
const ACCEPT_BATCH: usize = 64;

/// How long accepting pauses when accept(2) fails for want of fds or
/// memory (and the spare fd cannot help): the listener stays readable, so
/// retrying at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Bytes read from a connection per wake-up (a request is one short line;
/// a longer one just takes more wake-ups). The buffer stays allocated, so
/// it is kept to one page.
const READ_CHUNK: usize = 4 * 1024;

/// New log lines written to a follower per batch, at most this many bytes
/// (the rest stays in its channel, where it counts toward `FOLLOW_BACKLOG`).
const FOLLOW_CHUNK: usize = 256 * 1024;

/// An output buffer that has grown past this is given back once written.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Room for this many connections is kept once they are gone; more is
/// given back.
const KEEP_CONNS: usize = 64;

/// The running server. `close` (or drop) removes the socket file.
pub struct Server {
    path: PathBuf,
    /// (dev, ino) of the socket we bound: we only ever remove our own.
    id: (u64, u64),
    logs: Logs,
    /// corral is exiting: the poll thread answers what is left and ends.
    closing: Arc<AtomicBool>,
    wake: Arc<Wake>,
    /// The poll thread is done: every connection is closed.
    done: Receiver<()>,
}

impl Server {
    /// Where the socket is (passed to services as `CORRAL_SOCKET`).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Server {
    /// Create the socket at `path` (replacing a stale one) and start serving.
    /// Errors name the path and say what to do.
    pub fn start(path: &Path, inputs: Sender<Input>, logs: Logs) -> Result<Server, String> {
        safe_dir(path)?;
        replace_stale(path)?;
        let listener = bind_private(path)
            .map_err(|e| format!("cannot create the control socket {}: {e}", path.display()))?;
        let meta =
            fs::metadata(path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
        let (wake_rx, wake_tx) = polling::wake_pipe()
            .map_err(|e| format!("cannot create the control socket's wake-up pipe: {e}"))?;
        let wake = Arc::new(wake_tx);
        let closing = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let (watch_tx, watch_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        let max_connections = connection_cap(open_files_limit());
        // From here on, a failure drops `server`, which removes the socket.
        let server = Server {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
            logs: logs.clone(),
            closing: Arc::clone(&closing),
            wake: Arc::clone(&wake),
            done,
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket {}: {e}", path.display()))?;
        let poller = Poller {
            listener: Some(listener),
            wake: wake_rx,
            spare: spare_fd(),
            conns: HashMap::new(),
            next_token: 0,
            max_connections,
            inputs,
            logs,
            euid: nix::unistd::geteuid().as_raw(),
            closing,
            relay: watch_tx,
            relay_unstarted: Some(watch_rx),
            ready: ready_rx,
            ready_tx,
            wake_tx: Arc::clone(&wake),
            done: done_tx,
            scratch: vec![0; READ_CHUNK],
            refused_at: None,
            accept_failed_at: None,
            poll_failed_at: None,
            paused_until: None,
        };
        thread::Builder::new()
            .name("control".into())
            .spawn(move || poller.run())
            .map_err(|e| format!("cannot start the control socket thread: {e}"))?;
        info!(path = %path.display(), max_connections, "control socket listening");
        Ok(server)
    }

    /// corral is exiting: remove the socket (no new client can find it), end
    /// every `logs -f`, and give connections until `deadline` to take their
    /// last answers (the loop answered each pending request before it
    /// returned). A client still sending its request is told "corral is
    /// exiting" at once.
    pub fn close(self, deadline: Instant) {
        // Before `logs.close`: a follower whose channel ends while closing
        // is not told it fell behind.
        self.closing.store(true, Ordering::SeqCst);
        self.logs.close();
        self.remove();
        self.wake.wake();
        if self.done.recv_deadline(deadline).is_err() {
            debug!("control connections still open at exit");
        }
    }

    fn remove(&self) {
        // Only our own socket: a file someone put there since is not ours.
        if let Ok(meta) = fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.id
            && let Err(err) = fs::remove_file(&self.path)
        {
            warn!(path = %self.path.display(), %err, "cannot remove the control socket");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The poll thread's state.
pub(super) struct Poller {
    /// `None` once corral is exiting.
    listener: Option<UnixListener>,
    /// The read end of the wake-up pipe.
    wake: OwnedFd,
    spare: Option<File>,
    conns: HashMap<u64, Conn>,
    next_token: u64,
    max_connections: usize,
    inputs: Sender<Input>,
    logs: Logs,
    euid: u32,
    closing: Arc<AtomicBool>,
    relay: Sender<Watch>,
    /// The relay's orders, until the first `logs -f` starts it.
    relay_unstarted: Option<Receiver<Watch>>,
    /// Tokens of connections whose answer is there (told by the `Reply`)
    /// or whose follower channel the relay found ready.
    ready: Receiver<u64>,
    ready_tx: Sender<u64>,
    /// This thread's own wake-up, for the `Reply`s it hands the loop.
    wake_tx: Arc<Wake>,
    done: Sender<()>,
    scratch: Vec<u8>,
    /// When a client was last refused for being over the cap, and when
    /// accept(2) and poll(2) last failed: each is logged once per burst
    /// (see `polling::BURST`).
    refused_at: Option<Instant>,
    accept_failed_at: Option<Instant>,
    poll_failed_at: Option<Instant>,
    /// Accepting pauses until then.
    paused_until: Option<Instant>,
}

/// How many connections may be open at once: `MAX_CONNECTIONS`, but never
/// more than half the fds corral may open (`soft_limit`), so that services'
/// pipes, notify sockets and watches always have the other half. Children
/// inherit corral's limits, so corral does not raise its own.
fn connection_cap(soft_limit: Option<u64>) -> usize {
    share_of_fds(soft_limit, 2, MAX_CONNECTIONS)
}

#[cfg(test)]
mod tests;
