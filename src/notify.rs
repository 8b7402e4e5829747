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

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;
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

/// The most parents walked up from a sender to find the service's process:
/// far more than any service's tree is deep, and a bound on what one forged
/// datagram costs (one /proc read per step).
const MAX_DEPTH: usize = 32;

/// After a dropped datagram is logged, the next ones of that service are
/// only counted for this long; then the count is logged. A flood costs one
/// log line per service per period.
const QUIET_PERIOD: Duration = Duration::from_secs(10);

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
        thread::Builder::new()
            .name("notify".into())
            .spawn(move || pump(&rx, &wake_r, &inputs, own))
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

/// One sd_notify datagram: newline-separated `KEY=VALUE` assignments
/// (sd_notify(3)). Only the keys corral acts on are kept; unknown keys and
/// lines without `=` are ignored, bytes that are not UTF-8 replaced. A
/// `MAINPID=` that is not a pid (a positive number) makes the whole
/// datagram invalid: a sender that names a process wrongly may have meant
/// the rest for someone else too.
pub fn parse(datagram: &[u8]) -> Result<NotifyMessage, Refusal> {
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
            "MAINPID" => match value.parse::<i32>() {
                Ok(pid) if pid > 0 => message.main_pid = Some(pid),
                _ => return Err(Refusal::BadMainPid),
            },
            "STATUS" => message.status = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(message)
}

/// Why a datagram was dropped; said in the warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The kernel attached no `SCM_CREDENTIALS` (not expected with `SO_PASSCRED`).
    NoCredentials,
    /// Sender pid 0: a process outside corral's pid namespace.
    Hidden,
    /// The sender is not the service's process, in its group or below it.
    Outside,
    /// The sender exited (and was reaped) before it could be checked.
    Gone,
    /// Longer than `MAX_DATAGRAM`.
    TooLong,
    /// `MAINPID=` is not a positive number.
    BadMainPid,
    /// `MAINPID=1`.
    MainPidInit,
    /// `MAINPID=` of corral itself.
    MainPidCorral,
    /// `MAINPID=` of a process that is not the service's.
    MainPidOutside(i32),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoCredentials => f.write_str("no sender credentials"),
            Refusal::Hidden => f.write_str("sender outside corral's pid namespace"),
            Refusal::Outside => f.write_str("sender is not a process of the service"),
            Refusal::Gone => f.write_str("sender exited before it could be checked"),
            Refusal::TooLong => write!(f, "longer than {MAX_DATAGRAM} bytes"),
            Refusal::BadMainPid => f.write_str("MAINPID= is not a pid"),
            Refusal::MainPidInit => f.write_str("MAINPID=1 names PID 1"),
            Refusal::MainPidCorral => f.write_str("MAINPID= names corral itself"),
            Refusal::MainPidOutside(pid) => {
                write!(f, "MAINPID={pid} is not a process of the service")
            }
        }
    }
}

/// Who speaks for one run of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// The spawned pid; also the id of its session and process group.
    pid: i32,
    /// The last `MAINPID=` accepted in this run.
    main_pid: Option<i32>,
}

/// What `/proc/PID/stat` says of a process, as far as membership goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: i32,
    pgrp: i32,
}

/// `ppid` and `pgrp` of `pid` from `/proc/PID/stat` (proc(5)): the command
/// name is in parentheses and may hold spaces and ')', so fields are
/// counted after the last ')'. `None` if the process is gone.
fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { ppid, pgrp })
}

/// Does process `pid` belong to `run`: is it the spawned pid or the
/// accepted main pid, in the spawned pid's process group, or below one of
/// them (parents walked up through `stat`, at most `MAX_DEPTH` steps)? A
/// descendant of a group member counts too: with the service in a session
/// of its own, only its own processes can be in its group. The walk stops
/// at PID 1 and at corral (`own`): orphans are reparented there, so
/// whatever lies above is not the service's. A pure function of `stat`.
fn membership(
    pid: i32,
    run: &Run,
    own: i32,
    mut stat: impl FnMut(i32) -> Option<Stat>,
) -> Result<(), Refusal> {
    if pid <= 0 {
        // SCM_CREDENTIALS says 0 for a process our namespace cannot see.
        return Err(Refusal::Hidden);
    }
    let mut at = pid;
    for _ in 0..MAX_DEPTH {
        if at == run.pid || Some(at) == run.main_pid {
            return Ok(());
        }
        if at <= 1 || at == own {
            return Err(Refusal::Outside);
        }
        let Some(found) = stat(at) else {
            return Err(if at == pid {
                Refusal::Gone
            } else {
                Refusal::Outside
            });
        };
        if found.pgrp == run.pid {
            return Ok(());
        }
        at = found.ppid;
    }
    Err(Refusal::Outside)
}

/// The message of one datagram, if it counts for `run`: its sender belongs
/// to the run, it fits, it parses, and its `MAINPID=`, if any, names a
/// process of the run other than PID 1 and corral. A pure function of `stat`.
fn admit(
    sender: Option<libc::ucred>,
    datagram: &[u8],
    truncated: bool,
    run: &Run,
    own: i32,
    mut stat: impl FnMut(i32) -> Option<Stat>,
) -> Result<NotifyMessage, Refusal> {
    let sender = sender.ok_or(Refusal::NoCredentials)?;
    membership(sender.pid, run, own, &mut stat)?;
    if truncated {
        return Err(Refusal::TooLong);
    }
    let message = parse(datagram)?;
    if let Some(pid) = message.main_pid {
        if pid == 1 {
            return Err(Refusal::MainPidInit);
        }
        if pid == own {
            return Err(Refusal::MainPidCorral);
        }
        membership(pid, run, own, &mut stat).map_err(|_| Refusal::MainPidOutside(pid))?;
    }
    Ok(message)
}

/// One dropped datagram, as the warning names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dropped {
    pid: Option<i32>,
    uid: Option<u32>,
    why: Refusal,
}

/// Dropped datagrams of one service, for warnings that a flood cannot
/// multiply: the first drop is logged, those in the `QUIET_PERIOD` after
/// it only counted, and the count logged when the period is over (the
/// thread's poll wakes up for it). Kept across runs, so restarts do not
/// reset it.
#[derive(Debug, Default)]
struct Drops {
    /// Until then, drops are counted, not logged.
    quiet_until: Option<Instant>,
    /// Counted since the last warning, and the last of them.
    count: u64,
    last: Option<Dropped>,
}

impl Drops {
    /// A datagram was dropped at `now`: `Some` if it is to be logged now.
    /// Call `report_due` first, so an overdue count is logged before.
    fn record(&mut self, dropped: Dropped, now: Instant) -> Option<Dropped> {
        if self.quiet_until.is_some_and(|until| now < until) {
            self.count += 1;
            self.last = Some(dropped);
            return None;
        }
        self.quiet_until = Some(now + QUIET_PERIOD);
        Some(dropped)
    }

    /// When the count is to be logged, if anything is counted.
    fn report_at(&self) -> Option<Instant> {
        self.quiet_until.filter(|_| self.count > 0)
    }

    /// The count and the last one counted, if they are due at `now` (then
    /// a new quiet period starts).
    fn report_due(&mut self, now: Instant) -> Option<(u64, Dropped)> {
        if self.report_at().is_none_or(|at| now < at) {
            return None;
        }
        self.quiet_until = Some(now + QUIET_PERIOD);
        self.take()
    }

    /// The count and the last one counted, due or not (the service's
    /// registration ends).
    fn take(&mut self) -> Option<(u64, Dropped)> {
        let count = std::mem::take(&mut self.count);
        let last = self.last.take()?;
        (count > 0).then_some((count, last))
    }
}

fn warn_dropped(service: &str, dropped: &Dropped) {
    warn!(
        service = %service,
        pid = dropped.pid,
        uid = dropped.uid,
        reason = %dropped.why,
        "notify datagram dropped; more are counted for {}s",
        QUIET_PERIOD.as_secs()
    );
}

fn warn_counted(service: &str, (count, last): (u64, Dropped)) {
    warn!(
        service = %service,
        dropped = count,
        pid = last.pid,
        uid = last.uid,
        reason = %last.why,
        "more notify datagrams dropped (the last one's sender and reason)"
    );
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

fn pump(rx: &Receiver<Msg>, wake: &OwnedFd, inputs: &Sender<Input>, own: i32) {
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

/// Close fds a datagram passed along without blocking on them. The last
/// close of a TCP socket with `SO_LINGER` set waits until its unsent data
/// is gone (socket(7)), and a sender controls both the data and the peer
/// that does not read it: one datagram would stall this thread, and every
/// service's readiness with it. Linger is turned off first (the setting
/// belongs to the socket, which our fd shares), so the close returns at
/// once and the kernel sends what it can in the background.
fn close_passed(fds: Vec<OwnedFd>) {
    for fd in fds {
        let is_socket =
            nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
        if is_socket {
            let off = libc::linger {
                l_onoff: 0,
                l_linger: 0,
            };
            // SAFETY: a valid fd and a linger struct of the size we pass.
            // Failing (not an inet socket) leaves nothing to undo.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&off as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        drop(fd);
    }
}

struct Datagram {
    len: usize,
    truncated: bool,
    sender: Option<libc::ucred>,
    /// Passed along with it; closed once the datagram is judged.
    fds: Vec<OwnedFd>,
}

/// recvmsg(2) one datagram with its `SCM_CREDENTIALS`. Any fds passed along
/// (`SCM_RIGHTS`, e.g. sd_notify's `FDSTORE=1` or `BARRIER=1`) arrive
/// close-on-exec; the caller closes them once it has judged the datagram
/// (corral keeps no fd it did not ask for).
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
    let mut fds = Vec::new();
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
                            fds.push(OwnedFd::from_raw_fd(fd));
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
        fds,
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

    /// The test process itself plays the service: its datagrams come from
    /// the run's own pid.
    fn me() -> Pid {
        Pid::this()
    }

    fn parsed(datagram: &[u8]) -> NotifyMessage {
        parse(datagram).expect("a valid datagram")
    }

    #[test]
    fn parse_keeps_the_keys_corral_acts_on() {
        assert_eq!(
            parsed(b"READY=1\nSTATUS=Listening on :80\nMAINPID=42\n"),
            NotifyMessage {
                ready: true,
                main_pid: Some(42),
                status: Some("Listening on :80".into()),
                ..NotifyMessage::default()
            }
        );
        assert_eq!(
            parsed(b"RELOADING=1\nMONOTONIC_USEC=123"),
            NotifyMessage {
                reloading: true,
                ..NotifyMessage::default()
            }
        );
        assert_eq!(
            parsed(b"STOPPING=1"),
            NotifyMessage {
                stopping: true,
                ..NotifyMessage::default()
            }
        );
        // Unknown keys, lines without '=', READY=0: nothing.
        assert_eq!(
            parsed(b"WATCHDOG=1\nFDSTORE=1\ngarbage\nREADY=0\n\n"),
            NotifyMessage::default()
        );
        // The value may contain '='; invalid UTF-8 is replaced.
        assert_eq!(
            parsed(b"STATUS=a=b \xff").status.as_deref(),
            Some("a=b \u{fffd}")
        );
        // An empty STATUS= clears the status: it is a message.
        assert_eq!(parsed(b"STATUS=").status.as_deref(), Some(""));
    }

    #[test]
    fn a_mainpid_that_is_not_a_pid_spoils_the_whole_datagram() {
        for bad in [
            "0",
            "-1",
            "-42",
            "x",
            "",
            " 42",
            "42 ",
            "0x10",
            "2147483648",
        ] {
            let datagram = format!("READY=1\nMAINPID={bad}\nSTATUS=up");
            assert_eq!(
                parse(datagram.as_bytes()),
                Err(Refusal::BadMainPid),
                "{datagram:?}"
            );
        }
        // The last valid one wins; MAINPID=1 parses (it is refused later,
        // where corral's pid is known).
        assert_eq!(parsed(b"MAINPID=7\nMAINPID=9").main_pid, Some(9));
        assert_eq!(parsed(b"MAINPID=1").main_pid, Some(1));
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
        // Queued until the run's pid is known.
        assert!(rx.recv_timeout(QUIET).is_err(), "read before `started`");
        notify.started("web", 1, me()).expect("started");
        // Not a pid of this run: the whole datagram is dropped.
        send(&addr, b"READY=1\nMAINPID=77").expect("send");
        // corral's own pid (the test's here): dropped too.
        let own = format!("READY=1\nMAINPID={}", std::process::id());
        send(&addr, own.as_bytes()).expect("send");
        send(&addr, b"READY=1\nMAINPID=1").expect("send");
        send(&addr, b"READY=1\nSTATUS=ready").expect("send");
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
                assert_eq!(message.status.as_deref(), Some("ready"));
                assert_eq!(message.main_pid, None);
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
        notify.started("web", 1, me()).expect("started");
        let second = notify.socket("web", 2).expect("socket");
        // Late: a replaced run's pid is not the current run's.
        notify.started("web", 1, me()).expect("started");
        assert_ne!(first, second);
        // Queued in the old socket at most, and dropped with it.
        let _ = send(&first, b"READY=1");
        send(&second, b"STATUS=second").expect("send");
        assert!(rx.recv_timeout(QUIET).is_err(), "run 2 has no pid yet");
        notify.started("web", 2, me()).expect("started");
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
        notify.started("other", 1, me()).expect("started");
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
        notify.started("fds", 1, me()).expect("started");
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

    #[test]
    fn a_barrier_fd_is_closed_after_its_datagram_is_judged_even_when_dropped() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let notify = Notify::start(tx).expect("start");
        let addr = notify.socket("barrier", 1).expect("socket");
        notify.started("barrier", 1, me()).expect("started");
        let sender = UnixDatagram::unbound().expect("socket");
        sender.connect_addr(&address(&addr)).expect("connect");
        // Dropped (MAINPID=1), and its fd closed all the same: a sender
        // waiting on a barrier is never left hanging.
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        send_with_fd(&sender, b"READY=1\nMAINPID=1", write.as_raw_fd());
        drop(write);
        let mut buf = [0u8; 1];
        let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
        assert_eq!(
            poll(&mut fds, PollTimeout::from(5000u16)),
            Ok(1),
            "EOF in time"
        );
        assert_eq!(nix::unistd::read(&read, &mut buf), Ok(0));
        // sd_notify_barrier(3): BARRIER=1 with an fd, after the message.
        send(&addr, b"STATUS=before the barrier").expect("send");
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        send_with_fd(&sender, b"BARRIER=1", write.as_raw_fd());
        drop(write);
        let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
        assert_eq!(
            poll(&mut fds, PollTimeout::from(5000u16)),
            Ok(1),
            "EOF in time"
        );
        // The message before the barrier was judged (and passed on) first.
        match rx.try_recv() {
            Ok(Input::Notify { message, .. }) => {
                assert_eq!(message.status.as_deref(), Some("before the barrier"))
            }
            other => panic!("expected the message before the barrier, got {other:?}"),
        }
        assert!(rx.recv_timeout(QUIET).is_err(), "the barrier is no message");
    }

    #[test]
    fn datagrams_from_outside_the_run_are_dropped() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let notify = Notify::start(tx).expect("start");
        let addr = notify.socket("victim", 1).expect("socket");
        // A pid above any pid_max: no process is it, in its group or below it.
        notify
            .started("victim", 1, Pid::from_raw(i32::MAX - 1))
            .expect("started");
        for _ in 0..100 {
            send(&addr, b"READY=1").expect("send");
        }
        assert!(rx.recv_timeout(QUIET).is_err(), "nothing is passed on");
        // The service's next run is its own pid: that one counts.
        let addr = notify.socket("victim", 2).expect("socket");
        notify.started("victim", 2, me()).expect("started");
        send(&addr, b"READY=1").expect("send");
        match next(&rx) {
            Input::Notify { run, message, .. } => assert!(run == 2 && message.ready),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A fake /proc: pid -> (ppid, pgrp).
    fn procs(table: &[(i32, i32, i32)]) -> impl FnMut(i32) -> Option<Stat> + '_ {
        |pid| {
            table
                .iter()
                .find(|&&(p, _, _)| p == pid)
                .map(|&(_, ppid, pgrp)| Stat { ppid, pgrp })
        }
    }

    /// corral is 10 (a subreaper under the host's init 1); the service was
    /// spawned as 100 (session and group 100). Its tree:
    /// 100 -> 101 (own group, e.g. a shell job) -> 102 -> 103;
    /// 110 in group 100 but an orphan (reparented to corral), and its child
    /// 111 in a group of its own; 120, told as MAINPID, in its own session,
    /// orphaned, with a child 121. Outside: 200 (another service, group
    /// 200) and its child 201; 300, a host process under init; 400, whose
    /// parent chain is deeper than anything a service has.
    const CORRAL: i32 = 10;
    const TABLE: &[(i32, i32, i32)] = &[
        (10, 1, 10),
        (100, 10, 100),
        (101, 100, 101),
        (102, 101, 101),
        (103, 102, 101),
        (110, 10, 100),
        (111, 110, 111),
        (120, 10, 120),
        (121, 120, 120),
        (200, 10, 200),
        (201, 200, 200),
        (300, 1, 300),
    ];
    const RUN: Run = Run {
        pid: 100,
        main_pid: None,
    };

    #[test]
    fn membership_is_the_pid_its_group_and_what_lies_below_them() {
        let check = |pid: i32, run: &Run| membership(pid, run, CORRAL, procs(TABLE));
        for pid in [100, 101, 102, 103, 110, 111] {
            assert_eq!(check(pid, &RUN), Ok(()), "pid {pid}");
        }
        for pid in [120, 121, 200, 201, 300, CORRAL, 1] {
            assert_eq!(check(pid, &RUN), Err(Refusal::Outside), "pid {pid}");
        }
        // Once 120 is the accepted MAINPID, it and its tree count.
        let told = Run {
            pid: 100,
            main_pid: Some(120),
        };
        for pid in [120, 121] {
            assert_eq!(check(pid, &told), Ok(()), "pid {pid}");
        }
        assert_eq!(check(200, &told), Err(Refusal::Outside));
        // Not in our namespace; gone from /proc.
        assert_eq!(check(0, &RUN), Err(Refusal::Hidden));
        assert_eq!(check(-5, &RUN), Err(Refusal::Hidden));
        assert_eq!(check(999, &RUN), Err(Refusal::Gone));
        // The spawned pid itself needs no /proc at all (it may be a zombie
        // already, or /proc a foreign one).
        assert_eq!(membership(100, &RUN, CORRAL, |_| None), Ok(()));
        // As PID 1, corral's pid is 1: the walk stops there too.
        let table: Vec<(i32, i32, i32)> = vec![(5, 1, 5), (6, 5, 5), (7, 1, 7)];
        let run = Run {
            pid: 5,
            main_pid: None,
        };
        assert_eq!(membership(6, &run, 1, procs(&table)), Ok(()));
        assert_eq!(membership(7, &run, 1, procs(&table)), Err(Refusal::Outside));
        assert_eq!(membership(1, &run, 1, procs(&table)), Err(Refusal::Outside));
    }

    #[test]
    fn membership_walks_a_bounded_number_of_parents() {
        // A chain 1000 -> 999 -> ... -> 900 -> 100: deeper than MAX_DEPTH.
        let mut table: Vec<(i32, i32, i32)> = (901..=1000).map(|p| (p, p - 1, p)).collect();
        table.push((900, 100, 900));
        let mut reads = 0;
        let verdict = membership(1000, &RUN, CORRAL, |pid| {
            reads += 1;
            procs(&table)(pid)
        });
        assert_eq!(verdict, Err(Refusal::Outside));
        assert_eq!(reads, MAX_DEPTH);
        // Within the bound, the same kind of chain is the service's.
        assert_eq!(membership(910, &RUN, CORRAL, procs(&table)), Ok(()));
        // A loop in a (hostile or racy) /proc ends too.
        let table = [(500, 501, 500), (501, 500, 501)];
        assert_eq!(
            membership(500, &RUN, CORRAL, procs(&table)),
            Err(Refusal::Outside)
        );
    }

    fn cred(pid: i32, uid: u32) -> Option<libc::ucred> {
        Some(libc::ucred { pid, uid, gid: uid })
    }

    #[test]
    fn admit_checks_the_sender_then_the_mainpid() {
        let admit = |sender, datagram: &[u8], run: &Run| {
            admit(sender, datagram, false, run, CORRAL, procs(TABLE))
        };
        // A child of the service, whatever its uid: accepted.
        let ready = admit(cred(102, 65534), b"READY=1\nMAINPID=102", &RUN).expect("admitted");
        assert!(ready.ready);
        assert_eq!(ready.main_pid, Some(102));
        // Another service's process, even root: dropped.
        assert_eq!(admit(cred(201, 0), b"READY=1", &RUN), Err(Refusal::Outside));
        assert_eq!(admit(None, b"READY=1", &RUN), Err(Refusal::NoCredentials));
        assert_eq!(admit(cred(0, 0), b"READY=1", &RUN), Err(Refusal::Hidden));
        // The service's own process naming what is not the service's.
        for (datagram, why) in [
            (&b"READY=1\nMAINPID=1"[..], Refusal::MainPidInit),
            (b"MAINPID=10", Refusal::MainPidCorral),
            (b"MAINPID=200", Refusal::MainPidOutside(200)),
            (b"MAINPID=300", Refusal::MainPidOutside(300)),
            (b"MAINPID=120", Refusal::MainPidOutside(120)),
            (b"MAINPID=999", Refusal::MainPidOutside(999)),
            (b"MAINPID=0", Refusal::BadMainPid),
            (b"MAINPID=-1", Refusal::BadMainPid),
        ] {
            assert_eq!(
                admit(cred(100, 0), datagram, &RUN),
                Err(why),
                "{datagram:?}"
            );
        }
        // As PID 1 (own = 1), MAINPID=1 is refused as PID 1.
        assert_eq!(
            super::admit(cred(100, 0), b"MAINPID=1", false, &RUN, 1, procs(TABLE)),
            Err(Refusal::MainPidInit)
        );
        // The sender is checked first: a stranger's long datagram is
        // "outside", not "too long".
        assert_eq!(
            super::admit(cred(201, 0), b"", true, &RUN, CORRAL, procs(TABLE)),
            Err(Refusal::Outside)
        );
        assert_eq!(
            super::admit(cred(100, 0), b"", true, &RUN, CORRAL, procs(TABLE)),
            Err(Refusal::TooLong)
        );
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        assert_eq!(
            parse_stat("42 (a) b) c (d)) S 7 42 42 0 -1 4194560 ..."),
            Some(Stat { ppid: 7, pgrp: 42 })
        );
        assert_eq!(parse_stat("42 (sh) S 7"), None);
        assert_eq!(parse_stat(""), None);
        let me = read_stat(std::process::id() as i32).expect("our own stat");
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(me.pgrp, nix::unistd::getpgrp().as_raw());
    }

    #[test]
    fn a_flood_of_drops_is_one_warning_per_quiet_period() {
        let t = Instant::now();
        let d = |pid| Dropped {
            pid: Some(pid),
            uid: Some(65534),
            why: Refusal::Outside,
        };
        let mut drops = Drops::default();
        assert_eq!(drops.report_at(), None, "nothing to report: no wake-up");
        assert_eq!(drops.record(d(1), t), Some(d(1)), "the first is logged");
        assert_eq!(drops.report_at(), None, "nothing counted yet");
        let mut logged = 0;
        for i in 0..10_000u32 {
            let now = t + Duration::from_micros(u64::from(i) * 100); // 1 s in all
            logged += usize::from(drops.report_due(now).is_some());
            logged += usize::from(drops.record(d(2), now).is_some());
        }
        assert_eq!(logged, 0, "the rest of the flood is counted");
        assert_eq!(drops.report_at(), Some(t + QUIET_PERIOD));
        assert_eq!(
            drops.report_due(t + QUIET_PERIOD - Duration::from_millis(1)),
            None
        );
        assert_eq!(drops.report_due(t + QUIET_PERIOD), Some((10_000, d(2))));
        assert_eq!(drops.report_due(t + QUIET_PERIOD), None, "reported once");
        // Drops right after the report are counted for the next period.
        assert_eq!(drops.record(d(3), t + QUIET_PERIOD), None);
        assert_eq!(drops.report_at(), Some(t + QUIET_PERIOD + QUIET_PERIOD));
        // Long quiet: the count is still due, and the next drop logged.
        let later = t + QUIET_PERIOD * 5;
        assert_eq!(drops.report_due(later), Some((1, d(3))));
        assert_eq!(drops.record(d(4), later), None, "a new period began");
        assert_eq!(drops.take(), Some((1, d(4))));
        assert_eq!(drops.take(), None);
        assert_eq!(drops.record(d(5), later + QUIET_PERIOD), Some(d(5)));
    }

    #[test]
    fn a_passed_socket_that_lingers_does_not_stall_the_thread() {
        use std::io::Write;
        use std::net::{TcpListener, TcpStream};
        let (tx, rx) = crossbeam_channel::unbounded();
        let notify = Notify::start(tx).expect("start");
        let addr = notify.socket("linger", 1).expect("socket");
        notify.started("linger", 1, me()).expect("started");
        // A connection whose peer never reads, its send buffer full, with
        // a minute of linger: its last close would wait that minute.
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let mut stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_peer, _) = listener.accept().expect("accept");
        stream.set_nonblocking(true).expect("nonblocking");
        let chunk = vec![0u8; 65536];
        while stream.write(&chunk).is_ok() {}
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 60,
        };
        // SAFETY: test code: a valid fd and a linger struct of its size.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let sender = UnixDatagram::unbound().expect("socket");
        sender.connect_addr(&address(&addr)).expect("connect");
        send_with_fd(&sender, b"STATUS=here, hold this", stream.as_raw_fd());
        drop(stream);
        send(&addr, b"READY=1").expect("send");
        for expected in ["status", "ready"] {
            match next(&rx) {
                Input::Notify { message, .. } => {
                    assert_eq!(message.ready, expected == "ready", "{message:?}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
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
