//! The notify thread: readiness notifications from services, systemd's
//! `NOTIFY_SOCKET` datagrams (sd_notify(3)) and s6's notification fd (a
//! newline on fd N), turned into `Input::Notify` / `Input::FdReady`.
//!
//! One thread, one `poll(2)` over every registered socket and pipe plus a
//! wake-up pipe, like the output thread. The loop registers a socket or pipe
//! before a start (`socket`, `fd_pipe`) and drops it with `forget`; the
//! registration carries the service's start count (`run`), which every
//! message repeats, so the core can ignore what an earlier run says.
//!
//! Sockets live in Linux's abstract namespace (`@corral/...`): no file to
//! create, clean up or protect, and both libsystemd's `sd_notify` and
//! haproxy's own implementation (`-Ws`) accept an `@` address. The name
//! carries corral's pid and a random part, so two corrals sharing a network
//! namespace (`--network host`) never collide.
//!
//! This thread never touches service state and never blocks on anything but
//! `poll`: every fd it reads is non-blocking, and it hands messages to the
//! loop on its unbounded channel.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tracing::{debug, warn};

use crate::event::{Input, NotifyMessage};

/// Longest datagram accepted, as systemd does (`NOTIFY_BUFFER_MAX`, PIPE_BUF):
/// a longer one is dropped whole.
pub const MAX_DATAGRAM: usize = 4096;

/// Longest abstract socket name: `sun_path` (108 bytes) less the leading NUL.
const MAX_NAME: usize = 107;

/// Datagrams read from one socket per wake-up, so that a chatty service
/// cannot starve the others (poll is level-triggered: the rest comes next).
const BURST: usize = 32;

/// The notify thread's handle. Dropping it stops the thread and closes every
/// socket and pipe it holds. The thread starts with the first socket or pipe
/// (most containers have no service with readiness: no thread, no stack).
pub struct Notify {
    tx: Sender<Msg>,
    wake: OwnedFd,
    /// `corral/<pid>-<random>`: the common part of every socket name.
    prefix: String,
    /// What the thread takes when it starts; `None` once it runs.
    unstarted: Mutex<Option<Unstarted>>,
}

/// What the notify thread takes when it starts: its messages, the read end
/// of its wake-up pipe, and where its inputs go.
type Unstarted = (Receiver<Msg>, OwnedFd, Sender<Input>);

enum Msg {
    Socket {
        service: String,
        run: u32,
        socket: UnixDatagram,
    },
    Pipe {
        service: String,
        run: u32,
        fd: OwnedFd,
    },
    Forget {
        service: String,
    },
    Stop,
}

impl Notify {
    /// The notify thread's handle; its messages go to `inputs`. The thread
    /// itself starts when first needed (`socket`, `fd_pipe`).
    pub fn start(inputs: Sender<Input>) -> io::Result<Notify> {
        let (wake_r, wake_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(io::Error::from)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        // RandomState is seeded from the OS's random source.
        let random = RandomState::new().build_hasher().finish() as u32;
        Ok(Notify {
            tx,
            wake: wake_w,
            prefix: format!("corral/{}-{random:08x}", std::process::id()),
            unstarted: Mutex::new(Some((rx, wake_r, inputs))),
        })
    }

    /// Start the thread unless it runs. Should the spawn fail, what it
    /// would have taken is dropped with it, so every later `send` fails
    /// with "the notify thread has stopped" (a failed start for the
    /// service that needed it).
    fn run_thread(&self) -> io::Result<()> {
        let taken = self
            .unstarted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some((rx, wake_r, inputs)) = taken else {
            return Ok(());
        };
        thread::Builder::new()
            .name("notify".into())
            .spawn(move || pump(&rx, &wake_r, &inputs))
            .map(|_| ())
    }

    /// A datagram socket for `service`'s start number `run`, bound to an
    /// abstract address; returns the value for the service's
    /// `NOTIFY_SOCKET` (`@corral/<pid>-<random>/<service>/<run>`). Replaces
    /// the service's earlier socket: what is still queued there is dropped.
    pub fn socket(&self, service: &str, run: u32) -> io::Result<String> {
        let name = socket_name(&self.prefix, service, run, None);
        let socket = match bind(&name) {
            // The same (service, run) again before the thread dropped the
            // old one, or a name cut short that clashes: make it unique.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let unique = socket_name(&self.prefix, service, run, Some(next_seq()));
                bind(&unique).map(|socket| (socket, unique))
            }
            other => other.map(|socket| (socket, name)),
        };
        let (socket, name) = socket?;
        self.run_thread()?;
        self.send(Msg::Socket {
            service: service.to_string(),
            run,
            socket,
        })?;
        Ok(format!("@{name}"))
    }

    /// A pipe for s6's notification fd: the read end stays here, the write
    /// end is returned (close-on-exec; the spawn dup2s it to fd N in the
    /// child, and the loop must drop its copy once the child is started, or
    /// the EOF that ends the registration never comes). The first newline
    /// read sends `Input::FdReady` once; EOF drops the pipe.
    pub fn fd_pipe(&self, service: &str, run: u32) -> io::Result<OwnedFd> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        // Only our end is non-blocking: the flag belongs to the open file
        // description, which the child's end does not share.
        fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
        self.run_thread()?;
        self.send(Msg::Pipe {
            service: service.to_string(),
            run,
            fd: read,
        })?;
        Ok(write)
    }

    /// Drop `service`'s socket and pipe, if any.
    pub fn forget(&self, service: &str) {
        let _ = self.send(Msg::Forget {
            service: service.to_string(),
        });
    }

    fn send(&self, msg: Msg) -> io::Result<()> {
        self.tx
            .send(msg)
            .map_err(|_| io::Error::other("the notify thread has stopped"))?;
        // Non-blocking: a full wake pipe already guarantees a wake-up.
        let _ = nix::unistd::write(&self.wake, &[1]);
        Ok(())
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        let _ = self.send(Msg::Stop);
    }
}

fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// `<prefix>/<service>/<run>`, or `<prefix>/<service>~<seq>/<run>` when
/// `seq` is given; the service part is cut (and `seq` always added) so the
/// whole fits an abstract address.
fn socket_name(prefix: &str, service: &str, run: u32, seq: Option<u64>) -> String {
    let full = match seq {
        None => format!("{prefix}/{service}/{run}"),
        Some(seq) => format!("{prefix}/{service}~{seq}/{run}"),
    };
    if full.len() <= MAX_NAME {
        return full;
    }
    let seq = seq.unwrap_or_else(next_seq);
    let tail = format!("~{seq}/{run}");
    let room = MAX_NAME.saturating_sub(prefix.len() + 1 + tail.len());
    let mut cut = room.min(service.len());
    while !service.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{prefix}/{}{tail}", service.get(..cut).unwrap_or_default())
}

/// A non-blocking, close-on-exec datagram socket bound to abstract `name`,
/// with `SO_PASSCRED` so each datagram says who sent it.
fn bind(name: &str) -> io::Result<UnixDatagram> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    // std creates every socket with SOCK_CLOEXEC.
    let socket = UnixDatagram::bind_addr(&addr)?;
    socket.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// One sd_notify datagram: newline-separated `KEY=VALUE` assignments
/// (sd_notify(3)). Only the keys corral acts on are kept; unknown keys and
/// lines without `=` are ignored, bytes that are not UTF-8 replaced.
pub fn parse(datagram: &[u8]) -> NotifyMessage {
    let text = String::from_utf8_lossy(datagram);
    let mut message = NotifyMessage::default();
    for line in text.split('\n') {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "READY" => message.ready |= value == "1",
            "RELOADING" => message.reloading |= value == "1",
            "STOPPING" => message.stopping |= value == "1",
            "MAINPID" => {
                if let Some(pid) = value.parse::<i32>().ok().filter(|&pid| pid > 0) {
                    message.main_pid = Some(pid);
                }
            }
            "STATUS" => message.status = Some(value.to_string()),
            _ => {}
        }
    }
    message
}

/// What the thread holds for one service.
#[derive(Default)]
struct Entry {
    socket: Option<(u32, UnixDatagram)>,
    pipe: Option<Pipe>,
}

struct Pipe {
    run: u32,
    fd: OwnedFd,
    /// A newline came: `FdReady` was sent; later bytes are read and ignored.
    told: bool,
}

#[derive(Clone, Copy)]
enum Kind {
    Socket,
    Pipe,
}

fn pump(rx: &Receiver<Msg>, wake: &OwnedFd, inputs: &Sender<Input>) {
    let mut services: HashMap<String, Entry> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        for msg in rx.try_iter() {
            if !apply(&mut services, msg) {
                return;
            }
        }
        // Which fd is whose, in poll order (after the wake pipe).
        let mut order: Vec<(String, Kind)> = Vec::new();
        let ready: Vec<PollFlags> = {
            let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            for (name, entry) in &services {
                if let Some((_, socket)) = &entry.socket {
                    fds.push(PollFd::new(socket.as_fd(), PollFlags::POLLIN));
                    order.push((name.clone(), Kind::Socket));
                }
                if let Some(pipe) = &entry.pipe {
                    fds.push(PollFd::new(pipe.fd.as_fd(), PollFlags::POLLIN));
                    order.push((name.clone(), Kind::Pipe));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    // Not expected (EINVAL: more fds than RLIMIT_NOFILE,
                    // ENOMEM). Retrying at once would spin: wait for the
                    // registrations to change instead.
                    warn!(%err, "notify poll failed; waiting for a registration change");
                    match rx.recv() {
                        Ok(msg) => {
                            if !apply(&mut services, msg) {
                                return;
                            }
                            continue;
                        }
                        Err(_) => return,
                    }
                }
            }
            fds.iter()
                .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        if ready.first().is_some_and(|r| !r.is_empty()) {
            while matches!(nix::unistd::read(wake, &mut buf), Ok(n) if n > 0) {}
            // Apply what was registered before reading anything, so a
            // replaced socket is never read again.
            continue;
        }
        for ((name, kind), revents) in order.iter().zip(ready.iter().skip(1)) {
            if revents.is_empty() {
                continue;
            }
            let Some(entry) = services.get_mut(name) else {
                continue;
            };
            let alive = match kind {
                Kind::Socket => entry
                    .socket
                    .as_ref()
                    .is_none_or(|(run, socket)| read_socket(name, *run, socket, &mut buf, inputs)),
                Kind::Pipe => entry
                    .pipe
                    .as_mut()
                    .is_none_or(|pipe| read_pipe(name, pipe, &mut buf, inputs)),
            };
            if !alive {
                match kind {
                    Kind::Socket => entry.socket = None,
                    Kind::Pipe => entry.pipe = None,
                }
                if entry.socket.is_none() && entry.pipe.is_none() {
                    services.remove(name);
                }
            }
        }
    }
}

/// Apply one registration change; false on `Stop`.
fn apply(services: &mut HashMap<String, Entry>, msg: Msg) -> bool {
    match msg {
        Msg::Socket {
            service,
            run,
            socket,
        } => services.entry(service).or_default().socket = Some((run, socket)),
        Msg::Pipe { service, run, fd } => {
            services.entry(service).or_default().pipe = Some(Pipe {
                run,
                fd,
                told: false,
            })
        }
        Msg::Forget { service } => {
            services.remove(&service);
        }
        Msg::Stop => return false,
    }
    true
}

/// Read up to `BURST` datagrams; false when the socket is unusable.
fn read_socket(
    service: &str,
    run: u32,
    socket: &UnixDatagram,
    buf: &mut [u8],
    inputs: &Sender<Input>,
) -> bool {
    for _ in 0..BURST {
        let datagram = match receive(socket, buf) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Poll would report it again at once: drop the socket
                // rather than spin (readiness then times out, visibly).
                warn!(service, err = %e, "notify socket read failed; socket dropped");
                return false;
            }
        };
        // Any user may send: the service can run as another user than
        // corral, and the abstract namespace has no permissions. Say who.
        match datagram.sender {
            Some(cred) => debug!(
                service,
                run,
                pid = cred.pid,
                uid = cred.uid,
                "notify datagram"
            ),
            None => debug!(service, run, "notify datagram without credentials"),
        }
        if datagram.truncated {
            warn!(
                service,
                "notify datagram longer than {MAX_DATAGRAM} bytes ignored"
            );
            continue;
        }
        let message = parse(buf.get(..datagram.len).unwrap_or_default());
        if message == NotifyMessage::default() {
            continue;
        }
        let input = Input::Notify {
            service: service.to_string(),
            run,
            message,
        };
        if inputs.send(input).is_err() {
            // The loop is gone: corral is exiting.
            return true;
        }
    }
    true
}

/// Read what the pipe holds; false at EOF or on an error.
fn read_pipe(service: &str, pipe: &mut Pipe, buf: &mut [u8], inputs: &Sender<Input>) -> bool {
    match nix::unistd::read(&pipe.fd, buf) {
        Ok(0) => false,
        Ok(n) => {
            let got = buf.get(..n).unwrap_or_default();
            if !pipe.told && got.contains(&b'\n') {
                pipe.told = true;
                let _ = inputs.send(Input::FdReady {
                    service: service.to_string(),
                    run: pipe.run,
                });
            }
            true
        }
        Err(Errno::EAGAIN | Errno::EINTR) => true,
        Err(err) => {
            debug!(service, %err, "notification fd read failed");
            false
        }
    }
}

struct Datagram {
    len: usize,
    truncated: bool,
    sender: Option<libc::ucred>,
}

/// recvmsg(2) one datagram with its `SCM_CREDENTIALS`. Any fds passed along
/// (`SCM_RIGHTS`, e.g. sd_notify's `FDSTORE=1`) arrive close-on-exec and are
/// closed at once: corral keeps no fd it did not ask for.
fn receive(socket: &UnixDatagram, buf: &mut [u8]) -> io::Result<Datagram> {
    // u64s: cmsg headers need their alignment. Room for the credentials
    // and a good number of fds; fds beyond it are discarded by the kernel.
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is its documented empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers of the lengths it states.
    let n = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut sender = None;
    // SAFETY: walking the control buffer the kernel just filled, with the
    // libc macros that bound every step by msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let payload = (header.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            if header.cmsg_level == libc::SOL_SOCKET {
                if header.cmsg_type == libc::SCM_CREDENTIALS
                    && payload >= std::mem::size_of::<libc::ucred>()
                {
                    sender = Some(std::ptr::read_unaligned(data.cast::<libc::ucred>()));
                } else if header.cmsg_type == libc::SCM_RIGHTS {
                    let count = payload / std::mem::size_of::<libc::c_int>();
                    for i in 0..count {
                        let fd = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                        if fd >= 0 {
                            drop(OwnedFd::from_raw_fd(fd));
                        }
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Datagram {
        len: usize::try_from(n).unwrap_or(0),
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        sender,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);
    const QUIET: Duration = Duration::from_millis(300);

    fn address(notify_socket: &str) -> SocketAddr {
        let name = notify_socket.strip_prefix('@').expect("abstract address");
        SocketAddr::from_abstract_name(name.as_bytes()).expect("address")
    }

    fn send(notify_socket: &str, datagram: &[u8]) -> io::Result<usize> {
        UnixDatagram::unbound()?.send_to_addr(datagram, &address(notify_socket))
    }

    fn next(rx: &Receiver<Input>) -> Input {
        rx.recv_timeout(WAIT).expect("an input within 5s")
    }

    #[test]
    fn parse_keeps_the_keys_corral_acts_on() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=Listening on :80\nMAINPID=42\n"),
            NotifyMessage {
                ready: true,
                main_pid: Some(42),
                status: Some("Listening on :80".into()),
                ..NotifyMessage::default()
            }
        );
        assert_eq!(
            parse(b"RELOADING=1\nMONOTONIC_USEC=123"),
            NotifyMessage {
                reloading: true,
                ..NotifyMessage::default()
            }
        );
        assert_eq!(
            parse(b"STOPPING=1"),
            NotifyMessage {
                stopping: true,
                ..NotifyMessage::default()
            }
        );
        // Unknown keys, lines without '=', READY=0, bad pids: nothing.
        assert_eq!(
            parse(b"WATCHDOG=1\nFDSTORE=1\ngarbage\nREADY=0\nMAINPID=-1\nMAINPID=x\n\n"),
            NotifyMessage::default()
        );
        // The value may contain '='; invalid UTF-8 is replaced.
        assert_eq!(
            parse(b"STATUS=a=b \xff").status.as_deref(),
            Some("a=b \u{fffd}")
        );
        // An empty STATUS= clears the status: it is a message.
        assert_eq!(parse(b"STATUS=").status.as_deref(), Some(""));
    }

    #[test]
    fn names_fit_an_abstract_address() {
        let prefix = "corral/1234567-deadbeef";
        assert_eq!(
            socket_name(prefix, "web", 3, None),
            "corral/1234567-deadbeef/web/3"
        );
        assert_eq!(
            socket_name(prefix, "web", 3, Some(9)),
            "corral/1234567-deadbeef/web~9/3"
        );
        let long = "x".repeat(200);
        let name = socket_name(prefix, &long, u32::MAX, None);
        assert!(name.len() <= MAX_NAME, "{} bytes", name.len());
        assert!(name.starts_with("corral/1234567-deadbeef/xxx"), "{name}");
        assert!(name.ends_with(&format!("/{}", u32::MAX)), "{name}");
        assert_ne!(name, socket_name(prefix, &long, u32::MAX, None));
    }

    #[test]
    fn datagrams_become_notify_inputs() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let notify = Notify::start(tx).expect("start");
        let addr = notify.socket("web", 1).expect("socket");
        assert!(
            addr.starts_with(&format!("@corral/{}-", std::process::id())),
            "{addr}"
        );
        assert!(addr.ends_with("/web/1"), "{addr}");
        send(&addr, b"STATUS=starting").expect("send");
        send(&addr, b"WATCHDOG=1").expect("send"); // nothing corral uses: skipped
        send(&addr, b"READY=1\nMAINPID=77").expect("send");
        match next(&rx) {
            Input::Notify {
                service,
                run,
                message,
            } => {
                assert_eq!((service.as_str(), run), ("web", 1));
                assert_eq!(message.status.as_deref(), Some("starting"));
            }
            other => panic!("unexpected {other:?}"),
        }
        match next(&rx) {
            Input::Notify { message, .. } => {
                assert!(message.ready);
                assert_eq!(message.main_pid, Some(77));
            }
            other => panic!("unexpected {other:?}"),
        }
        // A datagram over 4 KiB is dropped whole; the next one still counts.
        send(&addr, &vec![b'x'; MAX_DATAGRAM + 1]).expect("send");
        send(&addr, b"STOPPING=1").expect("send");
        match next(&rx) {
            Input::Notify { message, .. } => assert!(message.stopping),
            other => panic!("unexpected {other:?}"),
        }
        assert!(rx.recv_timeout(QUIET).is_err());
    }

    #[test]
    fn a_later_run_replaces_the_earlier_socket() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let notify = Notify::start(tx).expect("start");
        let first = notify.socket("web", 1).expect("socket");
        let second = notify.socket("web", 2).expect("socket");
        assert_ne!(first, second);
        // Queued in the old socket at most, and dropped with it.
        let _ = send(&first, b"READY=1");
        send(&second, b"STATUS=second").expect("send");
        match next(&rx) {
            Input::Notify { run, message, .. } => {
                assert_eq!(run, 2);
                assert_eq!(message.status.as_deref(), Some("second"));
            }
            other => panic!("unexpected {other:?}"),
        }
        // The thread applied the replacement before reading: the old
        // address is gone.
        let refused = send(&first, b"READY=1").unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        assert!(rx.recv_timeout(QUIET).is_err());

        // The same run again (a reused count) still gets a socket.
        let again = notify.socket("web", 2).expect("socket");
        assert_ne!(again, second);

        // forget: once a later registration has been served, the socket is gone.
        notify.forget("web");
        let other = notify.socket("other", 1).expect("socket");
        send(&other, b"READY=1").expect("send");
        match next(&rx) {
            Input::Notify { service, .. } => assert_eq!(service, "other"),
            unexpected => panic!("unexpected {unexpected:?}"),
        }
        let refused = send(&again, b"READY=1").unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_newline_on_the_fd_pipe_is_ready_once() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let notify = Notify::start(tx).expect("start");
        let write = notify.fd_pipe("db", 3).expect("pipe");
        let flags = fcntl(&write, FcntlArg::F_GETFD).expect("flags");
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "the write end is close-on-exec"
        );
        let file_flags = fcntl(&write, FcntlArg::F_GETFL).expect("flags");
        assert_eq!(file_flags & libc::O_NONBLOCK, 0, "the child's end blocks");
        nix::unistd::write(&write, b"warming up").expect("write");
        assert!(rx.recv_timeout(QUIET).is_err(), "no newline yet");
        nix::unistd::write(&write, b"\n").expect("write");
        match next(&rx) {
            Input::FdReady { service, run } => assert_eq!((service.as_str(), run), ("db", 3)),
            other => panic!("unexpected {other:?}"),
        }
        nix::unistd::write(&write, b"\nmore\n").expect("write");
        drop(write);
        assert!(rx.recv_timeout(QUIET).is_err(), "ready is said once");
    }

    #[test]
    fn fds_passed_along_are_closed() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let notify = Notify::start(tx).expect("start");
        let addr = notify.socket("fds", 1).expect("socket");
        // Pass the write end of a pipe with the datagram (FDSTORE style): if
        // corral kept it, the read end would never see EOF.
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let sender = UnixDatagram::unbound().expect("socket");
        sender.connect_addr(&address(&addr)).expect("connect");
        send_with_fd(&sender, b"FDSTORE=1\nSTATUS=kept?", write.as_raw_fd());
        drop(write);
        match next(&rx) {
            Input::Notify { message, .. } => assert_eq!(message.status.as_deref(), Some("kept?")),
            other => panic!("unexpected {other:?}"),
        }
        let mut buf = [0u8; 1];
        assert_eq!(
            nix::unistd::read(&read, &mut buf),
            Ok(0),
            "EOF: nobody holds it"
        );
    }

    fn send_with_fd(socket: &UnixDatagram, data: &[u8], fd: libc::c_int) {
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: test code building one SCM_RIGHTS message in live buffers.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
            assert!(libc::sendmsg(socket.as_raw_fd(), &msg, 0) >= 0);
        }
    }
}
