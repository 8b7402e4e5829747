//! The poll thread, "control": one `poll(2)` over the listener, the
//! wake-up pipe and every connection; accepting (the cap, the spare fd when
//! fds run out, a pause instead of a spin), deadlines, and the close at
//! exit. What a connection does once admitted is `connection.rs`.
//!
//! What it must never do: block on one client, touch service state, or
//! die of a panic (a bug drops the connections, the socket stays).

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::log::{debug, error, warn};

use super::Poller;
use super::connection::{Conn, Phase, exiting, timed_out};
use super::{ACCEPT_BATCH, ACCEPT_PAUSE, KEEP_CONNS, REQUEST_TIMEOUT};
use crate::control::peer_uid;
use crate::polling::{self, new_burst, spare_fd};
use crate::protocol::{Response, encode_response};

impl Poller {
    /// Serve until corral exits. A panic (a bug) drops every connection,
    /// not the control socket.
    pub(super) fn run(mut self) {
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
            let listener = self.listener.as_ref().filter(|_| accepting);
            let conns = self
                .conns
                .iter()
                .map(|(&token, conn)| (token, conn.stream.as_fd(), conn.events()));
            let Some(found) = polling::wait(
                &self.wake,
                listener.map(AsFd::as_fd),
                conns,
                timeout,
                &mut self.poll_failed_at,
                "control socket",
            ) else {
                continue;
            };
            // The relay sends a token before it writes the wake-up byte, so
            // no token is missed; a stale one finds nothing to do.
            let ready: Vec<u64> = self.ready.try_iter().collect();
            for token in ready {
                self.on_ready(token);
            }
            if found.listener {
                self.accept();
            }
            for (token, r) in found.conns {
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
