//! The notify thread through its handle, over real sockets and pipes: the
//! test process plays the service.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::*;

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

#[test]
fn a_newline_on_the_last_of_a_thousand_pipes_is_read() {
    // Two fds a pipe while the test runs: raise the soft limit if it is
    // lower (the hard one is the ceiling; fewer pipes if need be).
    let mut pipes: usize = 1000;
    let nofile = nix::sys::resource::Resource::RLIMIT_NOFILE;
    if let Ok((soft, hard)) = nix::sys::resource::getrlimit(nofile) {
        let want = soft.max((2 * pipes as u64 + 256).min(hard));
        let _ = nix::sys::resource::setrlimit(nofile, want, hard);
        pipes = pipes.min((want.saturating_sub(256) / 2) as usize);
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let notify = Notify::start(tx).expect("start");
    let writes: Vec<OwnedFd> = (0..pipes)
        .map(|i| notify.fd_pipe(&format!("s{i}"), 1).expect("pipe"))
        .collect();
    let last = writes.last().expect("a pipe");
    nix::unistd::write(last, b"\n").expect("write");
    match next(&rx) {
        Input::FdReady { service, run } => {
            assert_eq!((service, run), (format!("s{}", pipes - 1), 1))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(rx.recv_timeout(QUIET).is_err(), "nothing from the others");
}
