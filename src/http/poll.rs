//! The http thread: one `poll(2)` over the listener, the wake-up pipe and
//! every connection, each a small state machine (`Phase`): reading its
//! head, asking the loop (one status request shared by every connection
//! waiting at once), writing its answer, draining what the client still
//! sends. Accepting makes room at the cap and when fds run out (see the
//! module doc of `http`).
//!
//! What it must never do: block on a client (every socket is
//! non-blocking), touch service state (it only sends `Input::Control`), or
//! die of a panic (a bug drops the connections, serving goes on).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use nix::poll::PollFlags;

use super::pages::{OutputCounts, Page, Reply, page_reply};
use super::request::{Asked, Incoming, response};
use super::{ACCEPT_BATCH, ACCEPT_PAUSE, IO_TIMEOUT, LINGER, LINGER_BYTES, READ_CHUNK, STACK_SIZE};
use crate::event::Input;
use crate::log::{debug, error, info, warn};
use crate::output::Logs;
use crate::polling::{self, Wake, new_burst, spare_fd};
use crate::protocol::{Request, Response};

pub(super) fn serve(
    listener: TcpListener,
    inputs: Sender<Input>,
    reply_timeout: Duration,
    max_connections: usize,
    logs: Logs,
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
        logs,
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
    /// The output counters, read for `/metrics` (a short lock, no loop).
    logs: Logs,
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
            let conns = self
                .conns
                .iter()
                .map(|(&token, conn)| (token, conn.stream.as_fd(), conn.events()));
            let Some(found) = polling::wait(
                &self.wake,
                accepting.then(|| self.listener.as_fd()),
                conns,
                timeout,
                &mut self.poll_failed_at,
                "http",
            ) else {
                continue;
            };
            for (token, r) in found.conns {
                if !r.is_empty() {
                    self.on_event(token, r);
                }
            }
            // After the connections' events: room is made by closing the
            // oldest waiting one, which may just have sent its request.
            if found.listener {
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
        let output = if waiting.iter().any(|w| w.1 == Page::Metrics) {
            OutputCounts {
                services: self.logs.counts(),
                lost: self.logs.lost_lines(),
            }
        } else {
            OutputCounts::default()
        };
        for (token, page, head_only, unread) in waiting {
            let reply = page_reply(page, &status, &output);
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
