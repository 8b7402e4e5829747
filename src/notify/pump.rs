//! The notify thread: one epoll(7) set over the wake-up pipe and every
//! registered socket and pipe, the registrations (`Msg`, applied before
//! anything is read, so a replaced socket is never read again), and what
//! is read: datagrams judged by `sender::admit` and passed on as
//! `Input::Notify`, the first newline on a notification fd as
//! `Input::FdReady`, drops counted in `Drops`.
//!
//! A socket or pipe is in the set from its registration (a socket from its
//! run's `Started`) until it is replaced, forgotten or ends, under a key
//! (`Slab`) that names its service; an event under a key removed meanwhile
//! finds nothing. So a wake-up costs what is ready, not every service, and
//! only services with drops counted are looked at for their report.
//!
//! What it must never do: touch service state, block on anything but
//! `epoll_wait` (every fd it reads is non-blocking), read a socket before
//! its run's pid is known, or read more than `BURST` datagrams of one
//! socket per wake-up.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::poll::PollTimeout;

use super::drops::{Dropped, Drops, warn_counted, warn_dropped};
use super::message::MAX_DATAGRAM;
use super::receive::{close_passed, receive};
use super::sender::{Run, admit, read_stat};
use crate::event::{Input, NotifyMessage};
use crate::log::{debug, warn};
use crate::polling::{self, Epoll, Events, READABLE, Slab};

/// Datagrams read from one socket per wake-up, so that a chatty service
/// cannot starve the others (epoll is level-triggered: the rest comes next).
const BURST: usize = 32;

/// Ready fds taken per wait (the others come first in the next one).
const READY_BATCH: usize = 64;

/// The wake-up pipe's key (a `Slab` never hands it out).
const WAKE: u64 = u64::MAX;

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
    /// In the epoll set under this key (from `Started` on).
    key: Option<u64>,
}

struct Pipe {
    run: u32,
    fd: OwnedFd,
    /// A newline came: `FdReady` was sent; later bytes are read and ignored.
    told: bool,
    /// In the epoll set under this key.
    key: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Socket,
    Pipe,
}

/// The epoll set and whose fd each of its keys is.
struct Watched {
    epoll: Epoll,
    keys: Slab<(String, Kind)>,
}

impl Watched {
    /// Watch `fd`, `service`'s socket or pipe; its key, unless epoll_ctl
    /// failed (logged: readiness then times out, visibly).
    fn add(&mut self, fd: BorrowedFd<'_>, service: &str, kind: Kind) -> Option<u64> {
        let key = self.keys.insert((service.to_string(), kind));
        match self.epoll.add(fd, READABLE, key) {
            Ok(()) => Some(key),
            Err(err) => {
                warn!(service, %err, "cannot watch a notify socket or pipe");
                self.keys.remove(key);
                None
            }
        }
    }

    fn remove(&mut self, fd: BorrowedFd<'_>, key: Option<u64>) {
        if let Some(key) = key {
            let _ = self.epoll.delete(fd);
            self.keys.remove(key);
        }
    }
}

/// The thread's state.
struct Pump {
    services: HashMap<String, Entry>,
    watched: Watched,
    /// Services with dropped datagrams counted, not logged yet (a few at
    /// most: those a flood of forged datagrams is aimed at).
    counting: Vec<String>,
}

pub(super) fn pump(
    rx: &Receiver<Msg>,
    wake: &OwnedFd,
    epoll: Epoll,
    inputs: &Sender<Input>,
    own: i32,
) {
    let mut pump = Pump {
        services: HashMap::new(),
        watched: Watched {
            epoll,
            keys: Slab::default(),
        },
        counting: Vec::new(),
    };
    if let Err(err) = pump.watched.epoll.add(wake.as_fd(), READABLE, WAKE) {
        // Never woken, nothing registered would be read: end, so that
        // every later registration fails ("the notify thread has stopped").
        warn!(%err, "notify thread: cannot watch its wake-up pipe");
        return;
    }
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut events = Events::with_capacity(READY_BATCH);
    loop {
        for msg in rx.try_iter() {
            if !pump.apply(msg) {
                return;
            }
        }
        // Wake up for the earliest count of drops due, if any.
        let timeout = pump
            .counting
            .iter()
            .filter_map(|name| pump.services.get(name)?.drops.report_at())
            .min()
            .map_or(PollTimeout::NONE, |at| {
                // Rounded up: waking before `at` would find nothing due.
                let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            });
        let waited = pump.watched.epoll.wait(&mut events, timeout);
        pump.report_due(Instant::now());
        match waited {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(err) => {
                // Not expected (EINVAL, EFAULT). Retrying at once would
                // spin: wait for the registrations to change instead.
                warn!(%err, "notify wait failed; waiting for a registration change");
                match rx.recv() {
                    Ok(msg) => {
                        if !pump.apply(msg) {
                            return;
                        }
                        continue;
                    }
                    Err(_) => return,
                }
            }
        }
        if events.iter().any(|(key, _)| key == WAKE) {
            polling::drain(wake);
            // Apply what was registered before reading anything, so a
            // replaced socket is never read again.
            continue;
        }
        for (key, _) in events.iter() {
            pump.read(key, own, &mut buf, inputs);
        }
    }
}

impl Pump {
    /// Read the socket or pipe under `key`, if it is still registered.
    fn read(&mut self, key: u64, own: i32, buf: &mut [u8], inputs: &Sender<Input>) {
        let Some((name, kind)) = self.watched.keys.get(key) else {
            return;
        };
        let kind = *kind;
        let Some(entry) = self.services.get_mut(name) else {
            return;
        };
        let alive = match kind {
            Kind::Socket => match entry.socket.as_mut().filter(|s| s.key == Some(key)) {
                Some(socket) => read_socket(name, socket, &mut entry.drops, own, buf, inputs),
                None => return,
            },
            Kind::Pipe => match entry.pipe.as_mut().filter(|p| p.key == Some(key)) {
                Some(pipe) => read_pipe(name, pipe, buf, inputs),
                None => return,
            },
        };
        if entry.drops.report_at().is_some() && !self.counting.contains(name) {
            self.counting.push(name.clone());
        }
        if alive {
            return;
        }
        let name = name.clone();
        match kind {
            Kind::Socket => {
                if let Some(old) = entry.socket.take() {
                    self.watched.remove(old.socket.as_fd(), old.key);
                }
            }
            Kind::Pipe => {
                if let Some(old) = entry.pipe.take() {
                    self.watched.remove(old.fd.as_fd(), old.key);
                }
            }
        }
        if entry.socket.is_none() && entry.pipe.is_none() {
            self.forget(&name);
        }
    }

    /// Log the counts of drops due at `now`.
    fn report_due(&mut self, now: Instant) {
        let services = &mut self.services;
        self.counting.retain(|name| {
            let Some(entry) = services.get_mut(name) else {
                return false;
            };
            if let Some(due) = entry.drops.report_due(now) {
                warn_counted(name, due);
            }
            entry.drops.report_at().is_some()
        });
    }

    /// Drop `service`'s entry; a count of drops not logged yet is logged now.
    fn forget(&mut self, service: &str) {
        self.counting.retain(|name| name != service);
        let Some(mut entry) = self.services.remove(service) else {
            return;
        };
        if let Some(old) = entry.socket.take() {
            self.watched.remove(old.socket.as_fd(), old.key);
        }
        if let Some(old) = entry.pipe.take() {
            self.watched.remove(old.fd.as_fd(), old.key);
        }
        if let Some(counted) = entry.drops.take() {
            warn_counted(service, counted);
        }
    }

    /// Apply one registration change; false on `Stop`.
    fn apply(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Socket {
                service,
                run,
                socket,
            } => {
                let entry = self.services.entry(service).or_default();
                let new = Socket {
                    run,
                    socket,
                    members: None,
                    key: None,
                };
                if let Some(old) = entry.socket.replace(new) {
                    self.watched.remove(old.socket.as_fd(), old.key);
                }
            }
            Msg::Pipe { service, run, fd } => {
                let key = self.watched.add(fd.as_fd(), &service, Kind::Pipe);
                let entry = self.services.entry(service).or_default();
                let new = Pipe {
                    run,
                    fd,
                    told: false,
                    key,
                };
                if let Some(old) = entry.pipe.replace(new) {
                    self.watched.remove(old.fd.as_fd(), old.key);
                }
            }
            Msg::Started { service, run, pid } => {
                // A later run's socket may have replaced this one already.
                if let Some(socket) = self
                    .services
                    .get_mut(&service)
                    .and_then(|e| e.socket.as_mut())
                    .filter(|s| s.run == run)
                {
                    socket.members = Some(Run {
                        pid,
                        main_pid: None,
                    });
                    if socket.key.is_none() {
                        socket.key =
                            self.watched
                                .add(socket.socket.as_fd(), &service, Kind::Socket);
                    }
                }
            }
            Msg::Forget { service } => self.forget(&service),
            Msg::Stop => return false,
        }
        true
    }
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

#[cfg(test)]
mod tests {
    use nix::fcntl::OFlag;

    use super::*;

    fn pump() -> Pump {
        Pump {
            services: HashMap::new(),
            watched: Watched {
                epoll: Epoll::new().expect("epoll"),
                keys: Slab::default(),
            },
            counting: Vec::new(),
        }
    }

    /// A notification-fd pipe for `service`'s run 1: its key, write end.
    fn pipe(pump: &mut Pump, service: &str) -> (u64, OwnedFd) {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).expect("pipe");
        let msg = Msg::Pipe {
            service: service.to_string(),
            run: 1,
            fd: read,
        };
        assert!(pump.apply(msg));
        let key = pump.services[service].pipe.as_ref().and_then(|p| p.key);
        (key.expect("watched"), write)
    }

    #[test]
    fn a_key_of_a_forgotten_or_replaced_pipe_reads_nothing() {
        let mut pump = pump();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (old, _old_w) = pipe(&mut pump, "old");
        assert!(pump.apply(Msg::Forget {
            service: "old".into()
        }));
        assert!(pump.watched.keys.is_empty(), "its key is gone");
        let (new, new_w) = pipe(&mut pump, "new");
        assert_eq!(new as u32, old as u32, "its slot is reused");
        assert_ne!(new, old, "under a new key");
        nix::unistd::write(&new_w, b"\n").expect("write");
        pump.read(old, 0, &mut buf, &tx);
        assert!(rx.try_recv().is_err(), "the old key reads nothing");
        // A later run's pipe replaces the earlier one, and its key.
        let (newer, newer_w) = pipe(&mut pump, "new");
        assert_ne!(newer, new);
        assert_eq!(pump.watched.keys.len(), 1);
        pump.read(new, 0, &mut buf, &tx);
        assert!(rx.try_recv().is_err(), "the replaced pipe is not read");
        nix::unistd::write(&newer_w, b"\n").expect("write");
        pump.read(newer, 0, &mut buf, &tx);
        match rx.try_recv() {
            Ok(Input::FdReady { service, run }) => assert_eq!((service.as_str(), run), ("new", 1)),
            other => panic!("unexpected {other:?}"),
        }
        // EOF ends the registration, and the entry with it.
        drop(newer_w);
        pump.read(newer, 0, &mut buf, &tx);
        assert!(pump.services.is_empty() && pump.watched.keys.is_empty());
    }
}
