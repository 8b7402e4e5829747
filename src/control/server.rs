//! The control socket server: an accept thread, and one small thread per
//! connection that turns one request line into an `Input::Control` for the
//! loop and writes the answer back.
//!
//! What it owns: the socket file (created mode 0600, replaced when stale,
//! removed at exit), client authentication (SO_PEERCRED: root and corral's
//! own uid only), and every defence against clients: a request must arrive
//! whole within `REQUEST_TIMEOUT` and fit `MAX_REQUEST`; at most
//! `MAX_CONNECTIONS` are served at once; every write has a timeout.
//!
//! What it must never do: block the supervisor loop, or touch service state.
//! Its only link to the loop is an unbounded channel send (which never
//! blocks) and a reply channel the loop sends on once (bounded(1): never
//! blocks either). A client that stalls, stalls only its own thread.
//!
//! One request per connection: read one line, answer, close. `logs` with
//! `follow` answers with the recent lines, then one response per new line
//! until the client hangs up (or corral exits). See `protocol` for the
//! format.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::{Mode, umask};
use tracing::{debug, info, warn};

use super::protocol::{LogLine, MAX_REQUEST, Request, Response, decode_request, encode_response};
use crate::event::Input;
use crate::output::{LogEntry, Logs};

/// A request line must be complete within this time of the connection.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client must take each answer within this time.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more get an error line and are closed.
pub const MAX_CONNECTIONS: usize = 128;

/// Stack of a connection thread; 128 threads reserve 16 MiB of address
/// space, of which only the touched pages become memory. serde_json recurses
/// once per nesting level (up to 128, about 1.5 KiB each in a debug build:
/// 128 KiB overflowed at 64 levels, and an overflow aborts the whole
/// process, PID 1 included), so requests nested deeper than `MAX_NESTING`
/// are refused before they are parsed.
const STACK_SIZE: usize = 128 * 1024;

/// The deepest request the protocol needs is 2 (an object holding a list).
const MAX_NESTING: usize = 16;

/// While waiting for the loop's answer or for new log lines, how often to
/// check whether the client hung up.
const HANGUP_CHECK: Duration = Duration::from_secs(1);

/// `logs` without `lines`.
pub const DEFAULT_LOG_LINES: usize = 100;

/// The running server. `close` (or drop) removes the socket file.
pub struct Server {
    path: PathBuf,
    /// (dev, ino) of the socket we bound: we only ever remove our own.
    id: (u64, u64),
    shared: Arc<Shared>,
}

/// What the accept thread and the connection threads share.
struct Shared {
    inputs: Sender<Input>,
    logs: Logs,
    euid: u32,
    /// corral is exiting: followers end.
    closing: AtomicBool,
    /// Connections being served, and a condvar signalled when one ends.
    active: Mutex<usize>,
    ended: Condvar,
    /// Over the cap right now (so the warning is logged once per burst).
    refusing: AtomicBool,
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
        if let Some(dir) = path.parent() {
            super::create_socket_dir(dir).map_err(|e| {
                format!(
                    "cannot create the control socket's directory {}: {e}",
                    dir.display()
                )
            })?;
        }
        replace_stale(path)?;
        let listener = bind_private(path)
            .map_err(|e| format!("cannot create the control socket {}: {e}", path.display()))?;
        let meta =
            fs::metadata(path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
        let shared = Arc::new(Shared {
            inputs,
            logs,
            euid: nix::unistd::geteuid().as_raw(),
            closing: AtomicBool::new(false),
            active: Mutex::new(0),
            ended: Condvar::new(),
            refusing: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        let server = Server {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
            shared,
        };
        // On failure `server` is dropped here, which removes the socket.
        thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(&listener, &accepting))
            .map_err(|e| format!("cannot start the control socket thread: {e}"))?;
        info!(path = %path.display(), "control socket listening");
        Ok(server)
    }

    /// corral is exiting: remove the socket (no new client can find it), end
    /// every `logs -f`, and give connections until `deadline` to write their
    /// last answers (the loop answered each pending request before it
    /// returned). The accept thread dies with the process.
    pub fn close(self, deadline: Instant) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.logs.close();
        self.remove();
        let mut active = self.shared.lock_active();
        while *active > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                debug!(
                    connections = *active,
                    "control connections still open at exit"
                );
                break;
            }
            active = match self.shared.ended.wait_timeout(active, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
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

impl Shared {
    fn lock_active(&self) -> std::sync::MutexGuard<'_, usize> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One connection's place under `MAX_CONNECTIONS`, given back on drop (also
/// when its thread panics and unwinds).
struct Slot(Arc<Shared>);

impl Slot {
    fn take(shared: &Arc<Shared>) -> Option<Slot> {
        let mut active = shared.lock_active();
        if *active >= MAX_CONNECTIONS {
            return None;
        }
        *active += 1;
        Some(Slot(Arc::clone(shared)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut active = self.0.lock_active();
        *active = active.saturating_sub(1);
        self.0.ended.notify_all();
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    let mut failing = false;
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                failing = false;
                admit(stream, shared);
            }
            Err(err) => match err.raw_os_error() {
                Some(libc::EINTR | libc::ECONNABORTED) => {}
                _ => {
                    // EMFILE / ENFILE / ENOMEM: retrying at once would spin.
                    // A short pause here costs nothing but control clients
                    // (this is not the supervisor loop).
                    if !failing {
                        warn!(%err, "control socket: cannot accept connections");
                        failing = true;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            },
        }
    }
}

/// Hand the connection to a thread of its own, or refuse it at once.
fn admit(stream: UnixStream, shared: &Arc<Shared>) {
    let Some(slot) = Slot::take(shared) else {
        if !shared.refusing.swap(true, Ordering::Relaxed) {
            warn!(
                max = MAX_CONNECTIONS,
                "control socket: too many connections, refusing new ones"
            );
        }
        refuse(
            stream,
            &format!("too many control connections (more than {MAX_CONNECTIONS}); try again"),
        );
        return;
    };
    shared.refusing.store(false, Ordering::Relaxed);
    // A second handle, to answer should the thread not start.
    let spare = stream.try_clone().ok();
    let conn = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("control-conn".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let _slot = slot;
            serve(stream, &conn);
        });
    if let Err(err) = spawned {
        warn!(%err, "control socket: cannot start a connection thread");
        if let Some(stream) = spare {
            refuse(stream, "corral is out of threads; try again");
        }
    }
}

/// Answer with one error line without ever blocking (the accept thread calls
/// this): a fresh connection's send buffer is empty, so one short line fits;
/// if it does not, the client gets nothing.
fn refuse(stream: UnixStream, message: &str) {
    let line = encode_response(&Response::error(message));
    if stream.set_nonblocking(true).is_ok() {
        let _ = (&stream).write(line.as_bytes());
    }
}

fn serve(mut stream: UnixStream, shared: &Shared) {
    let uid = match peer_uid(&stream) {
        Ok(uid) => uid,
        Err(err) => {
            debug!(%err, "control client without credentials, closed");
            return;
        }
    };
    if uid != 0 && uid != shared.euid {
        warn!(uid, "control client refused (not root, not corral's uid)");
        write_response(
            &mut stream,
            &Response::error(format!(
                "permission denied: uid {uid} may not use corral's control socket (root and uid {} only)",
                shared.euid
            )),
        );
        return;
    }
    let line = match read_request(&mut stream, REQUEST_TIMEOUT) {
        Ok(Some(line)) => line,
        Ok(None) => return,
        Err(err) => {
            debug!(uid, error = %err, "bad control request");
            if let Some(message) = err.message() {
                write_response(&mut stream, &Response::error(message));
            }
            return;
        }
    };
    if nesting(&line) > MAX_NESTING {
        debug!(uid, "control request nested too deeply");
        write_response(
            &mut stream,
            &Response::error(format!(
                "malformed request: nested deeper than {MAX_NESTING} levels"
            )),
        );
        return;
    }
    let request = match decode_request(&line) {
        Ok(request) => request,
        Err(message) => {
            debug!(uid, %message, "bad control request");
            write_response(&mut stream, &Response::error(message));
            return;
        }
    };
    debug!(uid, ?request, "control request");
    match request {
        Request::Logs {
            service,
            lines,
            follow,
        } => logs(&mut stream, shared, service, lines, follow),
        request => {
            if let Some(response) = ask(&stream, shared, request) {
                write_response(&mut stream, &response);
            }
        }
    }
}

/// Send `request` to the loop and wait for its answer. `None`: the client
/// hung up first (nobody to answer).
fn ask(stream: &UnixStream, shared: &Shared, request: Request) -> Option<Response> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    let token = reply.clone();
    if shared
        .inputs
        .send(Input::Control { request, reply })
        .is_err()
    {
        return Some(Response::error("corral is exiting"));
    }
    loop {
        match answer.recv_timeout(HANGUP_CHECK) {
            Ok(response) => return Some(response),
            Err(RecvTimeoutError::Timeout) => {
                if hung_up(stream) {
                    debug!("control client hung up before its answer");
                    // Let the core forget the request (the action itself, a
                    // stop say, goes on).
                    let _ = shared.inputs.send(Input::Cancel { reply: token });
                    return None;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Some(Response::error("corral is exiting"));
            }
        }
    }
}

/// `logs`: the loop checks the name and the output mode; then the recent
/// lines come from `Logs`, and with `follow` each new line as it comes.
fn logs(
    stream: &mut UnixStream,
    shared: &Shared,
    service: String,
    lines: Option<usize>,
    follow: bool,
) {
    let check = Request::Logs {
        service: service.clone(),
        lines,
        follow,
    };
    match ask(stream, shared, check) {
        None => return,
        Some(response) if !response.ok => {
            write_response(stream, &response);
            return;
        }
        Some(_) => {}
    }
    let n = lines.unwrap_or(DEFAULT_LOG_LINES);
    if !follow {
        let recent = shared.logs.tail(&service, n);
        write_response(stream, &lines_response(recent));
        return;
    }
    let Some((recent, new_lines)) = shared.logs.follow(&service, n) else {
        write_response(stream, &Response::error("corral is exiting"));
        return;
    };
    if !write_response(stream, &lines_response(recent)) {
        return;
    }
    loop {
        match new_lines.recv_timeout(HANGUP_CHECK) {
            Ok(entry) => {
                // Whatever else is already queued goes in the same write.
                let mut out = String::new();
                for entry in std::iter::once(entry).chain(new_lines.try_iter()) {
                    out.push_str(&encode_response(&lines_response(vec![entry])));
                }
                if !write_all(stream, out.as_bytes()) {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if hung_up(stream) || shared.closing.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if !shared.closing.load(Ordering::SeqCst) {
                    write_response(
                        stream,
                        &Response::error(format!(
                            "this client fell more than {} lines behind and was dropped; run logs -f again",
                            crate::output::FOLLOW_BACKLOG
                        )),
                    );
                }
                return;
            }
        }
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

fn write_response(stream: &mut UnixStream, response: &Response) -> bool {
    write_all(stream, encode_response(response).as_bytes())
}

/// Write everything within `WRITE_TIMEOUT`; `false` if the client is gone or
/// does not read.
fn write_all(stream: &mut UnixStream, data: &[u8]) -> bool {
    if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return false;
    }
    match stream.write_all(data) {
        Ok(()) => true,
        Err(err) => {
            debug!(%err, "control client did not take its answer");
            false
        }
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    TooLong,
    TimedOut,
    Io(io::Error),
}

impl ReadError {
    /// The line to answer with; `None` when the client cannot hear it anyway.
    fn message(&self) -> Option<String> {
        match self {
            ReadError::TooLong => Some(format!(
                "request too long (more than {} KiB)",
                MAX_REQUEST / 1024
            )),
            ReadError::TimedOut => Some(format!(
                "request timed out: no complete request line within {}s",
                REQUEST_TIMEOUT.as_secs()
            )),
            ReadError::Io(_) => None,
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLong => write!(f, "request too long"),
            ReadError::TimedOut => write!(f, "request timed out"),
            ReadError::Io(err) => write!(f, "{err}"),
        }
    }
}

/// Read one request line (without its newline) within `timeout` in all —
/// not per read, so a client trickling a byte at a time is cut off too — and
/// at most `MAX_REQUEST` bytes. EOF after a partial line (a client that
/// half-closed) makes those bytes the request; EOF before any byte: `None`.
pub fn read_request(
    stream: &mut UnixStream,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, ReadError> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::TimedOut);
        }
        stream.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::TimedOut);
            }
            Err(e) => return Err(ReadError::Io(e)),
        };
        let data = chunk.get(..n).unwrap_or_default();
        if n == 0 {
            return Ok((!line.is_empty()).then_some(line));
        }
        match data.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                line.extend_from_slice(data.get(..pos).unwrap_or_default());
                return if line.len() > MAX_REQUEST {
                    Err(ReadError::TooLong)
                } else {
                    Ok(Some(line))
                };
            }
            None => {
                line.extend_from_slice(data);
                if line.len() > MAX_REQUEST {
                    return Err(ReadError::TooLong);
                }
            }
        }
    }
}

/// How deeply JSON arrays and objects nest in `text` (brackets inside
/// strings do not count). Invalid JSON is counted all the same: the parser
/// rejects it afterwards.
fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The client closed its end for good. A client that only shut down its
/// writing side (`shutdown(SHUT_WR)`, as `socat` does after sending) still
/// waits for its answer: only the full close raises POLLHUP on a Unix
/// stream socket (unix(7); `unix_poll` sets EPOLLHUP only when both
/// directions are shut down, EPOLLRDHUP for the half close).
pub fn hung_up(stream: &UnixStream) -> bool {
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
        Err(_) => false,
    }
}

/// The uid of the process at the other end, from SO_PEERCRED (unix(7)): the
/// credentials it had when it called connect(2), kept by the kernel, so a
/// client cannot claim another uid.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    // Fail closed: should the kernel not fill it in, this is no one's uid.
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let size = std::mem::size_of::<libc::ucred>();
    let mut len = libc::socklen_t::try_from(size).map_err(|_| io::Error::other("ucred size"))?;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is a
    // valid, properly aligned `ucred` of exactly that size; the fd is open
    // for the duration of the call (borrowed from `stream`).
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::try_from(len).ok() != Some(size) {
        return Err(io::Error::other("short SO_PEERCRED answer"));
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_line() {
        let (mut client, mut server) = UnixStream::pair().expect("pair");
        client
            .write_all(b"{\"v\":1,\"op\":\"health\"}\nignored")
            .expect("write");
        let line = read_request(&mut server, Duration::from_secs(5)).expect("read");
        assert_eq!(line.as_deref(), Some(&b"{\"v\":1,\"op\":\"health\"}"[..]));
    }

    #[test]
    fn eof_after_a_partial_line_is_the_request_and_before_any_byte_none() {
        let (mut client, mut server) = UnixStream::pair().expect("pair");
        client.write_all(b"{\"v\":1}").expect("write");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let line = read_request(&mut server, Duration::from_secs(5)).expect("read");
        assert_eq!(line.as_deref(), Some(&b"{\"v\":1}"[..]));

        let (client, mut server) = UnixStream::pair().expect("pair");
        drop(client);
        assert!(matches!(
            read_request(&mut server, Duration::from_secs(5)),
            Ok(None)
        ));
    }

    #[test]
    fn too_long_and_too_slow_requests_are_errors() {
        let (mut client, mut server) = UnixStream::pair().expect("pair");
        let writer = thread::spawn(move || {
            let _ = client.write_all(&vec![b'a'; MAX_REQUEST + 10]);
        });
        assert!(matches!(
            read_request(&mut server, Duration::from_secs(5)),
            Err(ReadError::TooLong)
        ));
        drop(server);
        let _ = writer.join();

        // Exactly MAX_REQUEST bytes, then the newline: accepted.
        let (mut client, mut server) = UnixStream::pair().expect("pair");
        let writer = thread::spawn(move || {
            let mut line = vec![b'a'; MAX_REQUEST];
            line.push(b'\n');
            let _ = client.write_all(&line);
        });
        let line = read_request(&mut server, Duration::from_secs(5)).expect("read");
        assert_eq!(line.map(|l| l.len()), Some(MAX_REQUEST));
        let _ = writer.join();

        let (mut client, mut server) = UnixStream::pair().expect("pair");
        client.write_all(b"{\"v\":1,").expect("write");
        let started = Instant::now();
        assert!(matches!(
            read_request(&mut server, Duration::from_millis(200)),
            Err(ReadError::TimedOut)
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn nesting_counts_brackets_outside_strings() {
        assert_eq!(nesting(br#"{"v":1,"op":"status"}"#), 1);
        assert_eq!(nesting(br#"{"v":1,"op":"stop","services":["web"]}"#), 2);
        assert_eq!(nesting(br#"{"v":1,"op":"logs","service":"[[[{{{\"[["}"#), 1);
        assert_eq!(nesting(&[b'['; 5000]), 5000);
        assert_eq!(nesting(b"]]]]{"), 1);
    }

    #[test]
    fn only_a_full_close_is_a_hang_up() {
        let (client, server) = UnixStream::pair().expect("pair");
        assert!(!hung_up(&server));
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        assert!(
            !hung_up(&server),
            "half-closed clients still wait for their answer"
        );
        drop(client);
        assert!(hung_up(&server));
    }

    #[test]
    fn peer_credentials_are_our_own_on_a_pair() {
        let (client, _server) = UnixStream::pair().expect("pair");
        assert_eq!(
            peer_uid(&client).expect("SO_PEERCRED"),
            nix::unistd::geteuid().as_raw()
        );
    }
}
