//! A readiness datagram from a separate process running as another user
//! reaches corral's sd_notify socket (a service that drops privileges still
//! notifies), when that process is the run's. Lives here, not in
//! `src/notify.rs`: it starts and waits for a child process, which corral's
//! own code never does outside the reaper.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use corral::event::Input;
use corral::notify::Notify;

/// `sd_notify(0, "READY=1\nSTATUS=up")` to `$NOTIFY_SOCKET` (an abstract
/// `@...` address), as a service would.
const SEND: &str = r#"
import os, socket
addr = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nSTATUS=up", "\0" + addr[1:])
"#;

#[test]
fn a_child_process_as_another_user_can_notify() {
    require_root("the child runs as uid 65534");
    let (tx, rx) = crossbeam_channel::unbounded();
    let notify = Notify::start(tx).expect("start");
    let addr = notify.socket("db", 4).expect("socket");
    assert!(addr.starts_with('@'), "not an abstract address: {addr}");
    // The child plays the service: its pid is the run's (setpriv execs
    // python3 in place). It may send before `started`; the datagram waits
    // in the socket until then.
    let mut child = as_nobody(python3())
        .args(["-c", SEND])
        .env("NOTIFY_SOCKET", &addr)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn setpriv python3");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    notify.started("db", 4, pid).expect("started");
    let status = wait_child(&mut child, DEADLINE);
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "the child: {status:?}"
    );
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
