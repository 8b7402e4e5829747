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

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::stat::{Mode, umask};
use tracing::{debug, error, info, warn};

use super::{DirError, check_socket_dir, create_socket_dir, peer_uid};
use crate::event::{Input, Reply};
use crate::output::{FOLLOW_BACKLOG, LogEntry, Logs};
use crate::polling::{self, Wake, new_burst, open_files_limit, share_of_fds, spare_fd};
use crate::protocol::{
    LogLine, MAX_NESTING, MAX_REQUEST, Request, Response, decode_request, encode_response, nesting,
};

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

/// Make sure the directory of the socket at `path` is safe (see
/// `control::check_socket_dir`), creating what is missing, mode 0700. What
/// exists is checked before anything is created in it, and everything again
/// after: a directory someone else made in between is refused, not trusted.
fn safe_dir(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let euid = nix::unistd::geteuid().as_raw();
    let refuse = |why: DirError| {
        format!(
            "control socket {}: not a safe place: {why} (its directory must be a real directory owned by root or uid {euid} that no one else can write, below directories others cannot write unless sticky; choose another --socket / CORRAL_SOCKET)",
            path.display()
        )
    };
    match check_socket_dir(dir, euid) {
        Ok(()) => return Ok(()),
        Err(DirError::Missing(_)) => {}
        Err(why) => return Err(refuse(why)),
    }
    create_socket_dir(dir).map_err(|e| {
        format!(
            "cannot create the control socket's directory {}: {e}",
            dir.display()
        )
    })?;
    check_socket_dir(dir, euid).map_err(refuse)
}

/// A socket file at `path` from an earlier corral that is gone (connect says
/// ECONNREFUSED) is removed; a live one means another corral: an error.
/// Anything that is not a socket is never removed.
fn replace_stale(path: &Path) -> Result<(), String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("control socket {}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; not replacing it (remove it, or choose another path with --socket)",
            path.display()
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(format!(
            "another corral is already listening on {} (stop it, or give this one its own --socket / CORRAL_SOCKET)",
            path.display()
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            info!(path = %path.display(), "replacing a stale control socket");
            fs::remove_file(path)
                .map_err(|e| format!("cannot remove stale control socket {}: {e}", path.display()))
        }
        Err(e) => Err(format!(
            "cannot tell whether another corral listens on {}: {e}",
            path.display()
        )),
    }
}

/// bind(2) with umask 0177, so the socket file is created mode 0600: there
/// is no moment at which it is wider. The umask is process-wide; at this
/// point of startup no other thread creates files (the signal thread only
/// forwards signals, the output thread is not started yet).
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let old = umask(Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    umask(old);
    // std creates the socket with SOCK_CLOEXEC and accepts with accept4(SOCK_CLOEXEC).
    listener
}

/// How many connections may be open at once: `MAX_CONNECTIONS`, but never
/// more than half the fds corral may open (`soft_limit`), so that services'
/// pipes, notify sockets and watches always have the other half. Children
/// inherit corral's limits, so corral does not raise its own.
fn connection_cap(soft_limit: Option<u64>) -> usize {
    share_of_fds(soft_limit, 2, MAX_CONNECTIONS)
}

/// What the poll thread asks the relay: watch follower `token`'s channel of
/// new lines, or stop watching it (the connection is gone).
enum Watch {
    Lines(u64, Receiver<LogEntry>),
    Forget(u64),
}

/// The relay thread: wait until a watched channel has a message (or has
/// ended), then pass its token to the poll thread and wake it. A channel is
/// watched once: the poll thread watches it again if it wants more.
fn relay(orders: &Receiver<Watch>, ready: &Sender<u64>, wake: &Wake) {
    let mut watched: Vec<(u64, Receiver<LogEntry>)> = Vec::new();
    loop {
        let index = {
            let mut select = Select::new();
            select.recv(orders);
            for (_, channel) in &watched {
                select.recv(channel);
            }
            // Never empty: `orders` is always there.
            select.ready()
        };
        if index == 0 {
            loop {
                match orders.try_recv() {
                    Ok(Watch::Lines(token, r)) => watched.push((token, r)),
                    Ok(Watch::Forget(token)) => watched.retain(|(t, _)| *t != token),
                    Err(TryRecvError::Empty) => break,
                    // The poll thread ended.
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if watched.is_empty() && watched.capacity() > KEEP_CONNS {
                watched = Vec::new();
            }
            continue;
        }
        // The one found ready (perhaps only ended), and any other that has
        // a message by now.
        let hit = index - 1;
        let mut woke = false;
        let mut kept = Vec::with_capacity(watched.len());
        for (i, (token, channel)) in watched.drain(..).enumerate() {
            if i == hit || !channel.is_empty() {
                if ready.send(token).is_err() {
                    return;
                }
                woke = true;
            } else {
                kept.push((token, channel));
            }
        }
        watched = kept;
        if woke {
            wake.wake();
        }
    }
}

/// The poll thread's state.
struct Poller {
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

struct Conn {
    stream: UnixStream,
    uid: u32,
    phase: Phase,
    /// What is still to be written: `out[sent..]`.
    out: Vec<u8>,
    sent: usize,
    /// The client must have taken `out` by then.
    write_by: Option<Instant>,
}

enum Phase {
    /// Reading the request line, which must be whole by `by`.
    Reading { line: Vec<u8>, by: Instant },
    /// The loop has the request; its answer comes on `answer` (the `Reply`
    /// tells this thread). `reply` is a clone of the loop's sender, to cancel.
    Asking {
        answer: Receiver<Response>,
        reply: Sender<Response>,
        then: Then,
    },
    /// `logs -f`: new lines come on `lines`; `watched` while the relay has
    /// it (the client took everything and nothing new has come yet).
    Following {
        lines: Receiver<LogEntry>,
        watched: bool,
    },
    /// Writing the last answer; the connection ends once it is taken.
    Closing,
}

/// What to do with the loop's answer.
enum Then {
    Answer,
    /// The loop checked the name and the output mode; the lines come from
    /// `Logs`.
    Logs {
        service: String,
        lines: Option<usize>,
        follow: bool,
    },
}

/// What one read did to a request line.
#[derive(Debug, PartialEq, Eq)]
enum Taken {
    More,
    Complete,
    TooLong,
}

/// Add `data` to the request `line` (up to its newline). The line never
/// grows past `MAX_REQUEST`, newline excluded: the whole line is then too
/// long, whatever follows.
fn take_line(line: &mut Vec<u8>, data: &[u8]) -> Taken {
    let (part, complete) = match data.iter().position(|&b| b == b'\n') {
        Some(pos) => (data.get(..pos).unwrap_or_default(), true),
        None => (data, false),
    };
    if line.len().saturating_add(part.len()) > MAX_REQUEST {
        return Taken::TooLong;
    }
    line.extend_from_slice(part);
    if complete {
        Taken::Complete
    } else {
        Taken::More
    }
}

fn too_long() -> Response {
    Response::error(format!(
        "request too long (more than {} KiB)",
        MAX_REQUEST / 1024
    ))
}

fn timed_out() -> Response {
    Response::error(format!(
        "request timed out: no complete request line within {}s",
        REQUEST_TIMEOUT.as_secs()
    ))
}

fn exiting() -> Response {
    Response::error("corral is exiting")
}

impl Conn {
    fn pending(&self) -> bool {
        self.sent < self.out.len()
    }

    fn queue(&mut self, response: &Response) {
        if !self.pending() {
            self.write_by = Some(Instant::now() + WRITE_TIMEOUT);
        }
        self.out
            .extend_from_slice(encode_response(response).as_bytes());
    }

    /// Write what the socket takes now. `Ok(true)`: everything is written.
    /// A client that took something has `WRITE_TIMEOUT` again for the rest.
    fn flush(&mut self) -> io::Result<bool> {
        while self.sent < self.out.len() {
            match (&self.stream).write(self.out.get(self.sent..).unwrap_or_default()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.write_by = Some(Instant::now() + WRITE_TIMEOUT);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        self.write_by = None;
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        Ok(true)
    }

    fn events(&self) -> PollFlags {
        match self.phase {
            Phase::Reading { .. } => PollFlags::POLLIN,
            _ if self.pending() => PollFlags::POLLOUT,
            // POLLHUP and POLLERR are reported whatever is asked (poll(2)).
            _ => PollFlags::empty(),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let read_by = match self.phase {
            Phase::Reading { by, .. } => Some(by),
            _ => None,
        };
        match (read_by, self.write_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Poller {
    /// Serve until corral exits. A panic (a bug) drops every connection,
    /// not the control socket.
    fn run(mut self) {
        loop {
            match panic::catch_unwind(AssertUnwindSafe(|| self.serve())) {
                Ok(()) => return,
                Err(_) => {
                    error!(
                        "control socket: internal error; every control connection was dropped, serving goes on"
                    );
                    let tokens: Vec<u64> = self.conns.keys().copied().collect();
                    for token in tokens {
                        self.close_conn(token);
                    }
                }
            }
        }
    }

    fn serve(&mut self) {
        loop {
            if self.listener.is_some() && self.closing.load(Ordering::SeqCst) {
                self.begin_close();
            }
            let now = Instant::now();
            self.expire(now);
            if self.listener.is_none() && self.conns.is_empty() {
                let _ = self.done.try_send(());
                return;
            }
            if self.paused_until.is_some_and(|at| now >= at) {
                self.paused_until = None;
            }
            let accepting = self.listener.is_some() && self.paused_until.is_none();
            let deadline = self
                .conns
                .values()
                .filter_map(Conn::deadline)
                .chain(self.paused_until)
                .min();
            let timeout = polling::timeout(deadline, now);
            let mut tokens = Vec::with_capacity(self.conns.len());
            let revents: Vec<PollFlags> = {
                let mut fds = Vec::with_capacity(self.conns.len() + 2);
                fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
                if let Some(listener) = self.listener.as_ref().filter(|_| accepting) {
                    fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
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
                            warn!(%err, "control socket: poll failed");
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
            // The relay sends a token before it writes the wake-up byte, so
            // no token is missed; a stale one finds nothing to do.
            let ready: Vec<u64> = self.ready.try_iter().collect();
            for token in ready {
                self.on_ready(token);
            }
            if accepting && revents.next().is_some_and(|r| !r.is_empty()) {
                self.accept();
            }
            for (token, r) in tokens.into_iter().zip(revents) {
                if !r.is_empty() {
                    self.on_event(token, r);
                }
            }
            // A table grown by a burst of clients is given back once they
            // are all gone (a HashMap never shrinks by itself).
            if self.conns.is_empty() && self.conns.capacity() > KEEP_CONNS {
                self.conns = HashMap::new();
            }
        }
    }

    /// corral is exiting: no new connections; a request still being read
    /// would find no loop to answer it.
    fn begin_close(&mut self) {
        self.listener = None;
        let reading: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Reading { .. }))
            .map(|(&t, _)| t)
            .collect();
        for token in reading {
            self.answer(token, &exiting());
        }
    }

    /// Requests not whole in time are answered so; answers not taken in
    /// time end their connection.
    fn expire(&mut self, now: Instant) {
        let mut late_requests = Vec::new();
        let mut late_answers = Vec::new();
        for (&token, conn) in &self.conns {
            if conn.write_by.is_some_and(|by| now >= by) {
                late_answers.push(token);
            } else if matches!(conn.phase, Phase::Reading { by, .. } if now >= by) {
                late_requests.push(token);
            }
        }
        for token in late_requests {
            if let Some(conn) = self.conns.get(&token) {
                debug!(uid = conn.uid, "control request timed out");
            }
            self.answer(token, &timed_out());
        }
        for token in late_answers {
            debug!("control client did not take its answer in time");
            self.close_conn(token);
        }
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(err) => match err.raw_os_error() {
                    _ if err.kind() == io::ErrorKind::WouldBlock => return,
                    Some(libc::EINTR | libc::ECONNABORTED) => {}
                    Some(libc::EMFILE | libc::ENFILE) => {
                        self.out_of_fds(&err);
                        return;
                    }
                    _ => {
                        // ENOBUFS / ENOMEM: retrying at once would spin.
                        if new_burst(&mut self.accept_failed_at) {
                            warn!(%err, "control socket: cannot accept connections");
                        }
                        self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                        return;
                    }
                },
            }
        }
    }

    /// accept(2) failed with EMFILE / ENFILE: the client waiting in the
    /// listen queue is taken with the spare fd, told, and closed, so the
    /// listener does not stay readable for nothing. Without a spare (or if
    /// the fds are gone again at once), accepting pauses.
    fn out_of_fds(&mut self, err: &io::Error) {
        if new_burst(&mut self.accept_failed_at) {
            warn!(
                %err,
                "control socket: out of file descriptors, refusing connections until some close"
            );
        }
        if let (Some(spare), Some(listener)) = (self.spare.take(), &self.listener) {
            drop(spare);
            if let Ok((stream, _)) = listener.accept() {
                refuse(stream, "corral is out of file descriptors; try again later");
            }
            self.spare = spare_fd();
        }
        if self.spare.is_none() {
            self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
        }
    }

    /// Serve a new connection, or refuse it at once when over the cap.
    fn admit(&mut self, stream: UnixStream) {
        if self.conns.len() >= self.max_connections {
            if new_burst(&mut self.refused_at) {
                warn!(
                    max = self.max_connections,
                    "control socket: too many connections, refusing new ones"
                );
            }
            refuse(
                stream,
                &format!(
                    "too many control connections (more than {}); try again",
                    self.max_connections
                ),
            );
            return;
        }
        if let Err(err) = stream.set_nonblocking(true) {
            debug!(%err, "control connection dropped");
            return;
        }
        let uid = match peer_uid(&stream) {
            Ok(uid) => uid,
            Err(err) => {
                debug!(%err, "control client without credentials, closed");
                return;
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        let mut conn = Conn {
            stream,
            uid,
            phase: Phase::Reading {
                line: Vec::new(),
                by: Instant::now() + REQUEST_TIMEOUT,
            },
            out: Vec::new(),
            sent: 0,
            write_by: None,
        };
        if uid != 0 && uid != self.euid {
            warn!(uid, "control client refused (not root, not corral's uid)");
            conn.phase = Phase::Closing;
            conn.queue(&Response::error(format!(
                "permission denied: uid {uid} may not use corral's control socket (root and uid {} only)",
                self.euid
            )));
        }
        self.conns.insert(token, conn);
        self.settle(token);
    }

    /// poll(2) reported `revents` for connection `token`.
    fn on_event(&mut self, token: u64, revents: PollFlags) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        if let Phase::Reading { .. } = conn.phase {
            // Data, EOF, or an error: read(2) tells which.
            self.read(token);
            return;
        }
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            if let Phase::Asking { .. } = conn.phase {
                debug!("control client hung up before its answer");
            }
            self.close_conn(token);
            return;
        }
        if revents.contains(PollFlags::POLLOUT) {
            self.settle(token);
        }
    }

    fn read(&mut self, token: u64) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let Phase::Reading { line, .. } = &mut conn.phase else {
            return;
        };
        let taken = match (&conn.stream).read(&mut self.scratch) {
            Ok(0) if line.is_empty() => {
                // Connected and left without a word.
                self.close_conn(token);
                return;
            }
            // EOF after a partial line (a client that half-closed): that is
            // the request.
            Ok(0) => Taken::Complete,
            Ok(n) => take_line(line, self.scratch.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                return;
            }
            Err(err) => {
                debug!(%err, "control connection failed");
                self.close_conn(token);
                return;
            }
        };
        match taken {
            Taken::More => {}
            Taken::Complete => {
                let line = std::mem::take(line);
                self.request(token, &line);
            }
            Taken::TooLong => {
                debug!(uid = conn.uid, "control request too long");
                // Its buffer goes with the phase; the rest is never read.
                self.answer(token, &too_long());
            }
        }
    }

    fn request(&mut self, token: u64, line: &[u8]) {
        let uid = self.conns.get(&token).map_or(u32::MAX, |c| c.uid);
        if nesting(line) > MAX_NESTING {
            debug!(uid, "control request nested too deeply");
            self.answer(
                token,
                &Response::error(format!(
                    "malformed request: nested deeper than {MAX_NESTING} levels"
                )),
            );
            return;
        }
        let request = match decode_request(line) {
            Ok(request) => request,
            Err(message) => {
                debug!(uid, %message, "bad control request");
                self.answer(token, &Response::error(message));
                return;
            }
        };
        debug!(uid, ?request, "control request");
        let then = match &request {
            Request::Logs {
                service,
                lines,
                follow,
            } => Then::Logs {
                service: service.clone(),
                lines: *lines,
                follow: *follow,
            },
            _ => Then::Answer,
        };
        self.ask(token, request, then);
    }

    /// Send `request` to the loop. Once the loop has answered (or dropped
    /// the request), the `Reply` itself names the connection on `ready` and
    /// wakes this thread: one hand-over less than going through the relay.
    fn ask(&mut self, token: u64, request: Request, then: Then) {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let ready = self.ready_tx.clone();
        let wake = Arc::clone(&self.wake_tx);
        let notify = move || {
            if ready.send(token).is_ok() {
                wake.wake();
            }
        };
        if self
            .inputs
            .send(Input::Control {
                request,
                reply: Reply::then(reply.clone(), notify),
            })
            .is_err()
        {
            self.answer(token, &exiting());
            return;
        }
        if let Some(conn) = self.conns.get_mut(&token) {
            conn.phase = Phase::Asking {
                answer,
                reply,
                then,
            };
        }
    }

    /// Start the relay thread unless it runs: with the first follower, so
    /// that a corral nobody follows has no such thread. Should the spawn
    /// fail, its orders channel is dropped with it, and sending to it fails
    /// (`relay_gone`) from then on.
    fn start_relay(&mut self) {
        let Some(orders) = self.relay_unstarted.take() else {
            return;
        };
        let (ready, wake) = (self.ready_tx.clone(), Arc::clone(&self.wake_tx));
        if let Err(err) = thread::Builder::new()
            .name("control-relay".into())
            .spawn(move || relay(&orders, &ready, &wake))
        {
            error!(%err, "cannot start the control socket's relay thread");
        }
    }

    /// The relay thread ended (it cannot, short of a bug): nothing would
    /// tell this thread of answers any more.
    fn relay_gone(&mut self, token: u64) {
        error!("control socket: the relay thread is gone; requests cannot be answered");
        self.answer(
            token,
            &Response::error("internal error: corral cannot wait for the answer"),
        );
    }

    /// The relay found connection `token`'s channel ready.
    fn on_ready(&mut self, token: u64) {
        let Some(conn) = self.conns.get_mut(&token) else {
            // Closed since: nothing to do.
            return;
        };
        let got = match &mut conn.phase {
            Phase::Asking { answer, .. } => answer.try_recv(),
            Phase::Following { watched, .. } => {
                *watched = false;
                self.settle(token);
                return;
            }
            _ => return,
        };
        match got {
            Ok(response) => self.answered(token, response),
            // Told, yet no answer: the loop dropped the request unanswered
            // (this thread's clone of the sender keeps the channel open).
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                self.answer(token, &exiting());
            }
        }
    }

    /// The loop answered connection `token`'s request.
    fn answered(&mut self, token: u64, response: Response) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let then = match std::mem::replace(&mut conn.phase, Phase::Closing) {
            Phase::Asking { then, .. } => then,
            other => {
                conn.phase = other;
                return;
            }
        };
        let Then::Logs {
            service,
            lines,
            follow,
        } = then
        else {
            self.answer(token, &response);
            return;
        };
        if !response.ok {
            self.answer(token, &response);
            return;
        }
        let n = lines.unwrap_or(DEFAULT_LOG_LINES);
        if !follow {
            let recent = self.logs.tail(&service, n);
            self.answer(token, &lines_response(recent));
            return;
        }
        let Some((recent, new_lines)) = self.logs.follow(&service, n) else {
            self.answer(token, &exiting());
            return;
        };
        conn.queue(&lines_response(recent));
        conn.phase = Phase::Following {
            lines: new_lines,
            watched: false,
        };
        self.settle(token);
    }

    /// Answer with `response` and close once it is taken.
    fn answer(&mut self, token: u64, response: &Response) {
        if let Some(conn) = self.conns.get_mut(&token) {
            if let Phase::Following { watched: true, .. } = conn.phase {
                let _ = self.relay.send(Watch::Forget(token));
            }
            conn.phase = Phase::Closing;
            conn.queue(response);
            self.settle(token);
        }
    }

    /// Write what can be written; then close a finished connection, or give
    /// a follower its next lines (only once it took the last ones: what it
    /// does not take waits in its channel, bounded by `FOLLOW_BACKLOG`).
    fn settle(&mut self, token: u64) {
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if conn.pending() {
                match conn.flush() {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(err) => {
                        debug!(%err, "control client did not take its answer");
                        self.close_conn(token);
                        return;
                    }
                }
            }
            let (lines, watched) = match &mut conn.phase {
                Phase::Closing => {
                    self.close_conn(token);
                    return;
                }
                Phase::Following { lines, watched } if !*watched => (lines, watched),
                _ => return,
            };
            // Every line already queued goes in the same write, one
            // response each, up to FOLLOW_CHUNK bytes.
            let mut ended = false;
            while conn.out.len() < FOLLOW_CHUNK {
                match lines.try_recv() {
                    Ok(entry) => conn.out.extend_from_slice(
                        encode_response(&lines_response(vec![entry])).as_bytes(),
                    ),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        ended = true;
                        break;
                    }
                }
            }
            // (`pending()` would borrow all of `conn`, `lines` included.)
            if conn.sent < conn.out.len() {
                conn.write_by = Some(Instant::now() + WRITE_TIMEOUT);
                // Written at the top of the loop; an end is seen next round.
                continue;
            }
            if ended {
                // Dropped by the output thread for falling behind, or corral
                // is exiting (`Logs::close`).
                let response = if self.closing.load(Ordering::SeqCst) {
                    None
                } else {
                    Some(Response::error(format!(
                        "this client fell more than {FOLLOW_BACKLOG} lines behind and was dropped; run logs -f again"
                    )))
                };
                conn.phase = Phase::Closing;
                if let Some(response) = response {
                    conn.queue(&response);
                }
                continue;
            }
            // Nothing new: the relay watches for the next line.
            *watched = true;
            let lines = lines.clone();
            self.start_relay();
            if self.relay.send(Watch::Lines(token, lines)).is_err() {
                self.relay_gone(token);
            }
            return;
        }
    }

    /// Close connection `token`; a request in flight is cancelled, so the
    /// core forgets it (the action itself, a stop say, goes on).
    fn close_conn(&mut self, token: u64) {
        let Some(conn) = self.conns.remove(&token) else {
            return;
        };
        match conn.phase {
            Phase::Asking { reply, .. } => {
                let _ = self.inputs.send(Input::Cancel { reply });
            }
            Phase::Following { watched: true, .. } => {
                let _ = self.relay.send(Watch::Forget(token));
            }
            _ => {}
        }
    }
}

/// Answer with one error line without ever blocking: a fresh connection's
/// send buffer is empty, so one short line fits; if it does not, the client
/// gets nothing.
fn refuse(stream: UnixStream, message: &str) {
    let line = encode_response(&Response::error(message));
    if stream.set_nonblocking(true).is_ok() {
        let _ = (&stream).write(line.as_bytes());
    }
}

fn lines_response(entries: Vec<LogEntry>) -> Response {
    Response {
        lines: entries
            .into_iter()
            .map(|e| LogLine {
                stream: e.stream.as_str().to_string(),
                line: e.line,
            })
            .collect(),
        ..Response::ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    use crate::output::Stream;

    #[test]
    fn a_request_line_ends_at_its_newline_and_never_outgrows_the_limit() {
        let mut line = Vec::new();
        assert_eq!(take_line(&mut line, b"{\"v\":1,"), Taken::More);
        assert_eq!(
            take_line(&mut line, b"\"op\":\"health\"}\nignored"),
            Taken::Complete
        );
        assert_eq!(line, b"{\"v\":1,\"op\":\"health\"}");

        // Exactly MAX_REQUEST bytes, then the newline: accepted.
        let mut line = vec![b'a'; MAX_REQUEST - 1];
        assert_eq!(take_line(&mut line, b"a\n"), Taken::Complete);
        assert_eq!(line.len(), MAX_REQUEST);

        // One more, with or without the newline yet: too long, and the
        // line kept no more than it had.
        let mut line = vec![b'a'; MAX_REQUEST];
        assert_eq!(take_line(&mut line, b"a"), Taken::TooLong);
        assert_eq!(take_line(&mut line, b"a\n"), Taken::TooLong);
        assert_eq!(line.len(), MAX_REQUEST);
    }

    #[test]
    fn connections_take_at_most_half_the_fds() {
        assert_eq!(connection_cap(Some(1024)), 512);
        assert_eq!(connection_cap(Some(20_000)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(u64::MAX)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(10)), 5);
        assert_eq!(connection_cap(Some(0)), 1);
        assert_eq!(connection_cap(None), 512);
    }

    #[test]
    fn the_relay_names_the_ready_channel_and_wakes_the_poll_thread() {
        let (wake_rx, wake) = polling::wake_pipe().expect("pipe");
        let (orders, watch_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready) = crossbeam_channel::unbounded();
        let relay_thread = thread::spawn(move || relay(&watch_rx, &ready_tx, &wake));

        let (first_tx, first) = crossbeam_channel::bounded::<LogEntry>(4);
        let (line_tx, lines) = crossbeam_channel::bounded::<LogEntry>(4);
        let (_quiet_tx, quiet) = crossbeam_channel::bounded::<LogEntry>(4);
        orders.send(Watch::Lines(1, first.clone())).expect("order");
        orders.send(Watch::Lines(2, lines.clone())).expect("order");
        orders.send(Watch::Lines(3, quiet)).expect("order");
        orders.send(Watch::Forget(3)).expect("order");
        first_tx
            .send(LogEntry {
                stream: Stream::Stdout,
                line: "zero".into(),
            })
            .expect("line");
        assert_eq!(ready.recv_timeout(Duration::from_secs(10)), Ok(1));
        // It only tells: the line is still there for the poll thread.
        assert_eq!(first.try_recv().map(|e| e.line), Ok("zero".to_string()));
        // The relay names the channel, then wakes: the byte may come a moment later.
        let mut fds = [PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN)];
        assert!(matches!(
            poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)),
            Ok(1)
        ));
        let mut byte = [0u8; 8];
        assert!(matches!(nix::unistd::read(&wake_rx, &mut byte), Ok(n) if n > 0));

        // A channel is watched once; the next line needs a new order.
        line_tx
            .send(LogEntry {
                stream: Stream::Stdout,
                line: "one".into(),
            })
            .expect("line");
        assert_eq!(ready.recv_timeout(Duration::from_secs(10)), Ok(2));
        assert_eq!(lines.try_iter().count(), 1);
        // An ended channel is ready too.
        orders.send(Watch::Lines(2, lines.clone())).expect("order");
        drop(line_tx);
        assert_eq!(ready.recv_timeout(Duration::from_secs(10)), Ok(2));
        // Token 3 was forgotten: nothing more comes.
        assert!(ready.recv_timeout(Duration::from_millis(100)).is_err());

        drop(orders);
        relay_thread.join().expect("the relay ends with its orders");
    }

    /// A server on a socket in a fresh directory, with a fake loop that
    /// answers every request but `wait` at once with `ok`, and forwards
    /// what it gets to the test.
    struct Fixture {
        dir: PathBuf,
        server: Option<Server>,
        seen: Receiver<Input>,
        logs: Logs,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir =
                std::env::temp_dir().join(format!("corral-unit-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            let (inputs, loop_rx) = crossbeam_channel::unbounded::<Input>();
            let (seen_tx, seen) = crossbeam_channel::unbounded();
            thread::spawn(move || {
                for mut input in loop_rx {
                    if let Input::Control { request, reply } = &mut input
                        && !matches!(request, Request::Wait { .. })
                    {
                        reply.send(Response::ok());
                    }
                    if seen_tx.send(input).is_err() {
                        return;
                    }
                }
            });
            let logs = Logs::new();
            let server = Server::start(&dir.join("s.sock"), inputs, logs.clone()).expect("start");
            Fixture {
                dir,
                server: Some(server),
                seen,
                logs,
            }
        }

        fn connect(&self) -> UnixStream {
            let stream = UnixStream::connect(self.dir.join("s.sock")).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            stream
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if let Some(server) = self.server.take() {
                server.close(Instant::now() + Duration::from_secs(5));
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn read_response(reader: &mut impl BufRead) -> Response {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    #[test]
    fn requests_are_answered_and_errors_explained() {
        let f = Fixture::new("answers");
        let mut client = f.connect();
        client
            .write_all(b"{\"v\":1,\"op\":\"health\"}\n")
            .expect("write");
        let response = read_response(&mut BufReader::new(&client));
        assert!(response.ok, "{response:?}");
        assert!(matches!(
            f.seen.recv_timeout(Duration::from_secs(10)),
            Ok(Input::Control {
                request: Request::Health {},
                ..
            })
        ));

        // Half-closed after the request: still answered.
        let mut client = f.connect();
        client
            .write_all(b"{\"v\":1,\"op\":\"health\"}")
            .expect("write");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        assert!(read_response(&mut BufReader::new(&client)).ok);

        let mut client = f.connect();
        client.write_all(&[b'['; 100]).expect("write");
        client.write_all(b"\n").expect("write");
        let response = read_response(&mut BufReader::new(&client));
        assert_eq!(
            response.error.as_deref(),
            Some("malformed request: nested deeper than 16 levels")
        );

        let client = f.connect();
        let writer = {
            let mut client = client.try_clone().expect("clone");
            thread::spawn(move || {
                let _ = client.write_all(&vec![b'a'; MAX_REQUEST + 10]);
            })
        };
        let response = read_response(&mut BufReader::new(&client));
        assert_eq!(
            response.error.as_deref(),
            Some("request too long (more than 64 KiB)")
        );
        let _ = writer.join();
    }

    #[test]
    fn a_client_that_hangs_up_before_its_answer_cancels_its_request() {
        let f = Fixture::new("cancel");
        let mut client = f.connect();
        client
            .write_all(b"{\"v\":1,\"op\":\"wait\",\"services\":[\"web\"]}\n")
            .expect("write");
        let Ok(Input::Control { reply, .. }) = f.seen.recv_timeout(Duration::from_secs(10)) else {
            panic!("no request reached the loop");
        };
        drop(client);
        match f.seen.recv_timeout(Duration::from_secs(10)) {
            Ok(Input::Cancel { reply: cancelled }) => assert!(reply.is_for(&cancelled)),
            other => panic!("expected a cancel, got {other:?}"),
        }
    }

    #[test]
    fn a_follower_that_falls_too_far_behind_is_told_and_dropped() {
        let f = Fixture::new("behind");
        let mut client = f.connect();
        client
            .write_all(b"{\"v\":1,\"op\":\"logs\",\"service\":\"web\",\"follow\":true}\n")
            .expect("write");
        let mut reader = BufReader::new(&client);
        assert!(read_response(&mut reader).lines.is_empty());
        // While the client reads nothing, corral can hold a few hundred of
        // these lines (its buffer and the socket's); the rest waits in the
        // follower's channel, which overflows.
        let line = vec![b'x'; 1024];
        let lines: Vec<&[u8]> = vec![&line; FOLLOW_BACKLOG + 2000];
        f.logs.append("web", Stream::Stdout, &lines);
        let mut got = 0;
        let last = loop {
            let response = read_response(&mut reader);
            if !response.ok {
                break response;
            }
            got += response.lines.len();
        };
        assert!(got >= FOLLOW_BACKLOG && got < lines.len(), "{got} lines");
        assert_eq!(
            last.error.as_deref(),
            Some("this client fell more than 4096 lines behind and was dropped; run logs -f again")
        );
        let mut rest = String::new();
        reader.read_line(&mut rest).expect("read");
        assert_eq!(rest, "", "the connection ends");
    }

    #[test]
    fn followers_get_new_lines_until_corral_exits() {
        let mut f = Fixture::new("follow");
        f.logs.append("web", Stream::Stdout, &[b"old"]);
        let mut client = f.connect();
        client
            .write_all(b"{\"v\":1,\"op\":\"logs\",\"service\":\"web\",\"follow\":true}\n")
            .expect("write");
        let mut reader = BufReader::new(&client);
        let recent = read_response(&mut reader);
        assert_eq!(recent.lines.len(), 1);
        assert_eq!(recent.lines[0].line, "old");
        for text in ["new 1", "new 2"] {
            f.logs.append("web", Stream::Stderr, &[text.as_bytes()]);
            let response = read_response(&mut reader);
            assert_eq!(response.lines.len(), 1);
            assert_eq!(response.lines[0].line, text);
            assert_eq!(response.lines[0].stream, "stderr");
        }
        // Closing ends the follow without an error line.
        if let Some(server) = f.server.take() {
            server.close(Instant::now() + Duration::from_secs(5));
        }
        let mut rest = String::new();
        reader.read_line(&mut rest).expect("read");
        assert_eq!(rest, "");
    }
}
