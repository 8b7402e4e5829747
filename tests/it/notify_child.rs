//! A readiness datagram from a separate process running as another user
//! reaches corral's sd_notify socket (a service that drops privileges still
//! notifies), when that process is the run's. Lives here, not in `src/notify.rs`: it starts and waits for a
//! child process, which corral's own code never does outside the reaper.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use corral::event::Input;
use corral::notify::Notify;

fn send(notify_socket: &str, datagram: &[u8]) -> io::Result<usize> {
    let name = notify_socket
        .strip_prefix('@')
        .ok_or_else(|| io::Error::other("not an abstract address"))?;
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixDatagram::unbound()?.send_to_addr(datagram, &addr)
}

/// Not a test on its own: the child process of
/// `a_child_process_as_another_user_can_notify` (does nothing otherwise).
#[test]
fn child_sender() {
    if let Ok(addr) = std::env::var("CORRAL_TEST_NOTIFY_SOCKET") {
        send(&addr, b"READY=1\nSTATUS=up").expect("child send");
    }
}

#[test]
fn a_child_process_as_another_user_can_notify() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let notify = Notify::start(tx).expect("start");
    let addr = notify.socket("db", 4).expect("socket");
    let child = |as_nobody: bool| {
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .args(["--exact", "notify_child::child_sender", "--quiet"])
            .env("CORRAL_TEST_NOTIFY_SOCKET", &addr)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if as_nobody {
            command.uid(65534).gid(65534);
        }
        // The child plays the service: its pid is the run's. It may send
        // before `started`; the datagram waits in the socket until then.
        let mut child = command.spawn()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        notify.started("db", 4, pid).expect("started");
        child.wait()
    };
    // As root, send as nobody (uid 65534): accepted all the same.
    let root = nix::unistd::geteuid().is_root();
    let status = match child(root) {
        Err(e) if root && e.kind() == io::ErrorKind::PermissionDenied => child(false),
        other => other,
    };
    assert!(status.expect("run child").success());
    match rx
        .recv_timeout(Duration::from_secs(5))
        .expect("an input within 5s")
    {
        Input::Notify {
            service,
            run,
            message,
        } => {
            assert_eq!((service.as_str(), run), ("db", 4));
            assert!(message.ready);
            assert_eq!(message.status.as_deref(), Some("up"));
        }
        other => panic!("unexpected {other:?}"),
    }
}
