//! The notify thread: readiness notifications from services, systemd's
//! `NOTIFY_SOCKET` datagrams (sd_notify(3)) and s6's notification fd (a
//! newline on fd N), turned into `Input::Notify` / `Input::FdReady`.
//!
//! One thread, one epoll(7) set over every registered socket and pipe plus
//! a wake-up pipe, like the output thread. The loop registers a socket or pipe
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
//! Who may speak for a service (SPEC 12, "Readiness messages"): the abstract
//! namespace has no permissions and every name is listed in
//! `/proc/net/unix`, so anyone in the network namespace can send. Each
//! datagram carries its sender's credentials (`SO_PASSCRED`, unix(7)), and
//! it counts only if the sender belongs to the service's current run
//! (`membership`): it is the spawned pid, or in its process group, or a
//! descendant of the spawned pid or of the `MAINPID=` accepted so far. A
//! `MAINPID=` must name such a process too, never PID 1 or corral; a
//! datagram with a bad one is dropped whole. Services are spawned in a
//! session of their own (`process`), so no other process can join their
//! group. A socket is read only once the loop has said which pid its run
//! has (`started`): until then, datagrams wait in the socket's queue. What
//! is dropped is logged, at most one line per service per 10 s (`Drops`).
//! A sender must still be alive when its datagram is checked (a helper that
//! exits at once may be gone from /proc): every fd passed along is closed
//! only after the check, which is what sd_notify_barrier(3) and
//! `systemd-notify` wait for.
//!
//! This thread never touches service state and never blocks on anything but
//! `poll`: every fd it reads is non-blocking (so are /proc reads), and it
//! hands messages to the loop on its unbounded channel.
//!
//! The parts: `message.rs`, what a datagram says (`parse`, `Refusal`);
//! `sender.rs`, who may speak for a run (the SPEC 12 rules); `receive.rs`,
//! one datagram off a socket with its credentials and passed fds;
//! `drops.rs`, the rate-limited warnings for dropped datagrams; `pump.rs`,
//! the thread. This file is the handle the loop holds (`Notify`) and the
//! sockets it binds; it never reads a socket or pipe (the thread does),
//! and no call of it waits: each binds or makes a pipe, sends on the
//! thread's channel and writes a byte to the non-blocking wake-up pipe.

mod drops;
mod message;
mod pump;
pub(crate) mod receive;
mod sender;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::Pid;

pub use message::{MAX_DATAGRAM, Refusal, parse};
use pump::{Msg, pump};

use crate::event::Input;
use crate::polling::Epoll;

/// Longest abstract socket name: `sun_path` (108 bytes) less the leading NUL.
const MAX_NAME: usize = 107;

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
/// of its wake-up pipe, where its inputs go, and corral's own pid.
type Unstarted = (Receiver<Msg>, OwnedFd, Sender<Input>, i32);

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
            unstarted: Mutex::new(Some((rx, wake_r, inputs, std::process::id() as i32))),
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
        let Some((rx, wake_r, inputs, own)) = taken else {
            return Ok(());
        };
        let epoll = Epoll::new()?;
        thread::Builder::new()
            .name("notify".into())
            .spawn(move || pump(&rx, &wake_r, epoll, &inputs, own))
            .map(|_| ())
    }

    /// A datagram socket for `service`'s start number `run`, bound to an
    /// abstract address; returns the value for the service's
    /// `NOTIFY_SOCKET` (`@corral/<pid>-<random>/<service>/<run>`). Replaces
    /// the service's earlier socket: what is still queued there is dropped.
    /// Nothing is read from it before `started` says whose it is.
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

    /// Run `run` of `service` is process `pid` (spawned in a session of its
    /// own): from now on its socket is read, and a datagram counts if its
    /// sender is that process, in its group, or below it.
    pub fn started(&self, service: &str, run: u32, pid: Pid) -> io::Result<()> {
        self.send(Msg::Started {
            service: service.to_string(),
            run,
            pid: pid.as_raw(),
        })
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

#[cfg(test)]
mod tests;
