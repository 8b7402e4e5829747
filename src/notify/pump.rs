//! The notify thread: one `poll(2)` over the wake-up pipe and every
//! registered socket and pipe, the registrations (`Msg`, applied before
//! anything is read, so a replaced socket is never read again), and what
//! is read: datagrams judged by `sender::admit` and passed on as
//! `Input::Notify`, the first newline on a notification fd as
//! `Input::FdReady`, drops counted in `Drops`.
//!
//! What it must never do: touch service state, block on anything but
//! `poll` (every fd it reads is non-blocking), read a socket before its
//! run's pid is known, or read more than `BURST` datagrams of one socket
//! per wake-up.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::drops::{Dropped, Drops, warn_counted, warn_dropped};
use super::message::MAX_DATAGRAM;
use super::receive::{close_passed, receive};
use super::sender::{Run, admit, read_stat};
use crate::event::{Input, NotifyMessage};
use crate::log::{debug, warn};

/// Datagrams read from one socket per wake-up, so that a chatty service
/// cannot starve the others (poll is level-triggered: the rest comes next).
const BURST: usize = 32;

/// What the handle (`Notify`) tells the thread.
pub(super) enum Msg {
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
    /// Run `run` of `service` was spawned as `pid`: its socket may be read.
    Started {
        service: String,
        run: u32,
        pid: i32,
    },
    Forget {
        service: String,
    },
    Stop,
}

/// What the thread holds for one service.
#[derive(Default)]
struct Entry {
    socket: Option<Socket>,
    pipe: Option<Pipe>,
    drops: Drops,
}

struct Socket {
    run: u32,
    socket: UnixDatagram,
    /// Known once the run is spawned (`Msg::Started`); not read before.
    members: Option<Run>,
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

pub(super) fn pump(rx: &Receiver<Msg>, wake: &OwnedFd, inputs: &Sender<Input>, own: i32) {
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
        // Wake up for the earliest count of drops due, if any.
        let timeout = services
            .values()
            .filter_map(|e| e.drops.report_at())
            .min()
            .map_or(PollTimeout::NONE, |at| {
                // Rounded up: waking before `at` would find nothing due.
                let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            });
        let polled = {
            let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            for (name, entry) in &services {
                if let Some(socket) = entry.socket.as_ref().filter(|s| s.members.is_some()) {
                    fds.push(PollFd::new(socket.socket.as_fd(), PollFlags::POLLIN));
                    order.push((name.clone(), Kind::Socket));
                }
                if let Some(pipe) = &entry.pipe {
                    fds.push(PollFd::new(pipe.fd.as_fd(), PollFlags::POLLIN));
                    order.push((name.clone(), Kind::Pipe));
                }
            }
            match poll(&mut fds, timeout) {
                Ok(_) => Ok(fds
                    .iter()
                    .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
                    .collect::<Vec<_>>()),
                Err(err) => Err(err),
            }
        };
        let now = Instant::now();
        for (name, entry) in &mut services {
            if let Some(due) = entry.drops.report_due(now) {
                warn_counted(name, due);
            }
        }
        let ready = match polled {
            Ok(ready) => ready,
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
                Kind::Socket => match entry.socket.as_mut() {
                    Some(socket) => {
                        read_socket(name, socket, &mut entry.drops, own, &mut buf, inputs)
                    }
                    None => true,
                },
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
                    forget(&mut services, name);
                }
            }
        }
    }
}

/// Drop `service`'s entry; a count of drops not logged yet is logged now.
fn forget(services: &mut HashMap<String, Entry>, service: &str) {
    if let Some(mut entry) = services.remove(service)
        && let Some(counted) = entry.drops.take()
    {
        warn_counted(service, counted);
    }
}

/// Apply one registration change; false on `Stop`.
fn apply(services: &mut HashMap<String, Entry>, msg: Msg) -> bool {
    match msg {
        Msg::Socket {
            service,
            run,
            socket,
        } => {
            services.entry(service).or_default().socket = Some(Socket {
                run,
                socket,
                members: None,
            })
        }
        Msg::Pipe { service, run, fd } => {
            services.entry(service).or_default().pipe = Some(Pipe {
                run,
                fd,
                told: false,
            })
        }
        Msg::Started { service, run, pid } => {
            // A later run's socket may have replaced this one already.
            if let Some(socket) = services
                .get_mut(&service)
                .and_then(|e| e.socket.as_mut())
                .filter(|s| s.run == run)
            {
                socket.members = Some(Run {
                    pid,
                    main_pid: None,
                });
            }
        }
        Msg::Forget { service } => forget(services, &service),
        Msg::Stop => return false,
    }
    true
}

/// Read up to `BURST` datagrams; false when the socket is unusable.
fn read_socket(
    service: &str,
    socket: &mut Socket,
    drops: &mut Drops,
    own: i32,
    buf: &mut [u8],
    inputs: &Sender<Input>,
) -> bool {
    let Some(members) = socket.members.as_mut() else {
        return true;
    };
    for _ in 0..BURST {
        let datagram = match receive(&socket.socket, buf) {
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
        let verdict = admit(
            datagram.sender,
            buf.get(..datagram.len).unwrap_or_default(),
            datagram.truncated,
            members,
            own,
            read_stat,
        );
        // Only now: a sender waiting for its fd to close (a barrier) is
        // alive while it is checked.
        close_passed(datagram.fds);
        let message = match verdict {
            Ok(message) => message,
            Err(why) => {
                let now = Instant::now();
                if let Some(counted) = drops.report_due(now) {
                    warn_counted(service, counted);
                }
                let dropped = Dropped {
                    pid: datagram.sender.map(|c| c.pid),
                    uid: datagram.sender.map(|c| c.uid),
                    why,
                };
                if let Some(dropped) = drops.record(dropped, now) {
                    warn_dropped(service, &dropped);
                }
                continue;
            }
        };
        if let Some(cred) = datagram.sender {
            debug!(
                service,
                run = socket.run,
                pid = cred.pid,
                uid = cred.uid,
                "notify datagram"
            );
        }
        if let Some(pid) = message.main_pid {
            members.main_pid = Some(pid);
        }
        if message == NotifyMessage::default() {
            continue;
        }
        let input = Input::Notify {
            service: service.to_string(),
            run: socket.run,
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
