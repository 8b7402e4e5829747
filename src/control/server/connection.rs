//! One connection: its request line read (whole within `REQUEST_TIMEOUT`,
//! at most `MAX_REQUEST` bytes, nested at most `MAX_NESTING` deep), handed
//! to the loop with a `Reply` that wakes this thread, the answer written
//! as the client takes it; for `logs -f`, the recent lines and then each
//! new one, a batch at a time, only once the client took the last.
//!
//! What it must never do: wait for a client or the loop (every step is
//! non-blocking and resumes on the next poll), or let a follower's lines
//! pile up here (they wait in its bounded channel).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use nix::poll::PollFlags;

use super::Poller;
use super::relay::{Watch, relay};
use super::{DEFAULT_LOG_LINES, FOLLOW_CHUNK, KEEP_CAPACITY, REQUEST_TIMEOUT, WRITE_TIMEOUT};
use crate::event::{Input, Reply};
use crate::log::{debug, error};
use crate::output::format::{escape_line, rfc3339};
use crate::output::{FOLLOW_BACKLOG, LogEntry};
use crate::protocol::{
    LogLine, MAX_NESTING, MAX_REQUEST, Request, Response, decode_request, encode_response, nesting,
};

pub(super) struct Conn {
    pub(super) stream: UnixStream,
    pub(super) uid: u32,
    pub(super) phase: Phase,
    /// What is still to be written: `out[sent..]`.
    pub(super) out: Vec<u8>,
    pub(super) sent: usize,
    /// The client must have taken `out` by then.
    pub(super) write_by: Option<Instant>,
}

pub(super) enum Phase {
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
        /// Lines as `LogLine`s escaped for JSON (`logs --json`).
        json: bool,
    },
    /// Writing the last answer; the connection ends once it is taken.
    Closing,
}

/// What to do with the loop's answer.
pub(super) enum Then {
    Answer,
    /// The loop checked the name and the output mode; the lines come from
    /// `Logs`.
    Logs(Wanted),
}

/// What `logs` asked for.
pub(super) struct Wanted {
    /// `None`: every service (`all`, which the loop is not asked about).
    service: Option<String>,
    lines: Option<usize>,
    follow: bool,
    since: Option<SystemTime>,
    json: bool,
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

pub(super) fn timed_out() -> Response {
    Response::error(format!(
        "request timed out: no complete request line within {}s",
        REQUEST_TIMEOUT.as_secs()
    ))
}

pub(super) fn exiting() -> Response {
    Response::error("corral is exiting")
}

impl Conn {
    fn pending(&self) -> bool {
        self.sent < self.out.len()
    }

    pub(super) fn queue(&mut self, response: &Response) {
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

    pub(super) fn events(&self) -> PollFlags {
        match self.phase {
            Phase::Reading { .. } => PollFlags::POLLIN,
            _ if self.pending() => PollFlags::POLLOUT,
            // POLLHUP and POLLERR are reported whatever is asked (poll(2)).
            _ => PollFlags::empty(),
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
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
    /// poll(2) reported `revents` for connection `token`.
    pub(super) fn on_event(&mut self, token: u64, revents: PollFlags) {
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
                all,
                since_ms,
                json,
            } => {
                if *all && !service.is_empty() {
                    let message = "logs: name a service or ask for all, not both";
                    self.answer(token, &Response::error(message));
                    return;
                }
                let since = since_ms.map(|ms| {
                    SystemTime::now()
                        .checked_sub(Duration::from_millis(ms))
                        .unwrap_or(SystemTime::UNIX_EPOCH)
                });
                let wanted = Wanted {
                    service: (!*all).then(|| service.clone()),
                    lines: *lines,
                    follow: *follow,
                    since,
                    json: *json,
                };
                if *all {
                    // No name to check: the lines are at hand.
                    self.serve_logs(token, wanted);
                    return;
                }
                Then::Logs(wanted)
            }
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
}

impl Poller {
    /// The relay found connection `token`'s channel ready.
    pub(super) fn on_ready(&mut self, token: u64) {
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
        let Then::Logs(wanted) = then else {
            self.answer(token, &response);
            return;
        };
        if !response.ok {
            self.answer(token, &response);
            return;
        }
        self.serve_logs(token, wanted);
    }

    /// Answer a `logs` request from `Logs`: the recent lines, and with
    /// `follow`, each new one.
    fn serve_logs(&mut self, token: u64, wanted: Wanted) {
        let n = wanted.lines.unwrap_or(DEFAULT_LOG_LINES);
        let json = wanted.json;
        if !wanted.follow {
            let recent = match &wanted.service {
                Some(service) => self.logs.tail(service, n, wanted.since),
                None => self.logs.tail_all(n, wanted.since),
            };
            self.answer(token, &lines_response(recent, json));
            return;
        }
        let followed = self.logs.follow(wanted.service.as_deref(), n, wanted.since);
        let Some((recent, new_lines)) = followed else {
            self.answer(token, &exiting());
            return;
        };
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.queue(&lines_response(recent, json));
        conn.phase = Phase::Following {
            lines: new_lines,
            watched: false,
            json,
        };
        self.settle(token);
    }

    /// Answer with `response` and close once it is taken.
    pub(super) fn answer(&mut self, token: u64, response: &Response) {
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
    pub(super) fn settle(&mut self, token: u64) {
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
            let (lines, watched, json) = match &mut conn.phase {
                Phase::Closing => {
                    self.close_conn(token);
                    return;
                }
                Phase::Following {
                    lines,
                    watched,
                    json,
                } if !*watched => (lines, watched, *json),
                _ => return,
            };
            // Every line already queued goes in the same write, one
            // response each, up to FOLLOW_CHUNK bytes.
            let mut ended = false;
            while conn.out.len() < FOLLOW_CHUNK {
                match lines.try_recv() {
                    Ok(entry) => conn.out.extend_from_slice(
                        encode_response(&lines_response(vec![entry], json)).as_bytes(),
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
    pub(super) fn close_conn(&mut self, token: u64) {
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

/// `entries` as `LogLine`s; with `json`, each line escaped as
/// `--output-format json` writes it, else as text (lossy).
fn lines_response(entries: Vec<LogEntry>, json: bool) -> Response {
    Response {
        lines: entries
            .into_iter()
            .map(|e| LogLine {
                stream: e.stream.as_str().to_string(),
                line: if json {
                    escape_line(&e.line).into_owned()
                } else {
                    e.text().into_owned()
                },
                service: Some(e.service.to_string()),
                ts: Some(rfc3339(e.time)),
                pid: e.pid,
                facility: e.priority.map(|p| p.facility.to_string()),
                severity: e.priority.map(|p| p.severity.to_string()),
            })
            .collect(),
        ..Response::ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
