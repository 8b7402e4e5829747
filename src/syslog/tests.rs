//! The syslog listener through its handle, over a real socket in a
//! temporary directory: datagrams sent by the test itself, by util-linux
//! `logger`, by a Python RFC 5424 sender, and a flood from uid 65534.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, unbounded};

use super::*;

const WAIT: Duration = Duration::from_secs(5);

/// A directory removed when dropped; traversable by every uid (the flood
/// comes from uid 65534).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("corral-syslog-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("log")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A listener whose records arrive on a channel.
fn listening(path: &Path) -> (Syslog, Receiver<Record>) {
    let (tx, rx) = unbounded();
    let syslog = start(path, move |record| {
        let _ = tx.send(record);
        Ok(())
    })
    .unwrap();
    (syslog, rx)
}

fn send(path: &Path, datagram: &[u8]) {
    let socket = UnixDatagram::unbound().unwrap();
    socket.send_to(datagram, path).unwrap();
}

fn next(rx: &Receiver<Record>) -> Record {
    rx.recv_timeout(WAIT).expect("a record within 5s")
}

fn me() -> Option<Peer> {
    Some(Peer {
        pid: std::process::id(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
    })
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 5s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn datagrams_become_records_with_their_sender() {
    let dir = TempDir::new("records");
    let path = dir.socket();
    let (syslog, rx) = listening(&path);
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o666,
        "every service may log"
    );

    let before = SystemTime::now();
    send(
        &path,
        b"<134>Dec  4 19:00:00 haproxy[12]: Server be/s1 is DOWN",
    );
    let record = next(&rx);
    assert_eq!(record.text_line(), "haproxy[12]: Server be/s1 is DOWN");
    assert_eq!(
        (record.facility_name(), record.severity_name()),
        ("local0", "info")
    );
    assert_eq!(record.peer, me(), "the kernel's word for who sent it");
    assert!(record.ts >= before && record.ts <= SystemTime::now());

    // Control characters never reach a line; invalid UTF-8 is replaced.
    send(&path, b"<11>app: one\ntwo\x1b[2J\tthree\xff\0");
    let record = next(&rx);
    assert_eq!(record.message, "one\\x0atwo\\x1b[2J\tthree\u{fffd}");
    assert_eq!(
        record.text_line(),
        "app: one\\x0atwo\\x1b[2J\tthree\u{fffd}"
    );
    assert_eq!(
        (record.facility_name(), record.severity_name()),
        ("user", "err")
    );

    // Empty datagrams are no record; a long one is cut at MAX_MESSAGE.
    send(&path, b"");
    send(&path, b"\0\n");
    let long = format!("<13>big: {}", "x".repeat(3 * MAX_MESSAGE));
    send(&path, long.as_bytes());
    let record = next(&rx);
    assert_eq!(record.tag, "big");
    assert_eq!(record.message.len(), MAX_MESSAGE - "<13>big: ".len());
    send(&path, b"no header at all");
    let record = next(&rx);
    assert_eq!(record.text_line(), "no header at all");
    assert_eq!((record.facility, record.severity), (1, 5));
    assert_eq!(
        syslog.stats(),
        Stats {
            received: 6,
            dropped: 2,
            truncated: 1,
            throttled: 0,
            refused: 0,
        }
    );
    syslog.close();
    assert!(!path.exists(), "the socket file is removed at close");
}

#[test]
fn record_text_is_escaped_as_the_log_form_of_text_escape() {
    let samples: [&[u8]; 7] = [
        b"plain",
        b"tab\tkept, line\nbreak, esc\x1b[31m, del\x7f, nul\0",
        "c1 \u{9b}31m, nbsp \u{a0}, \u{e9}".as_bytes(),
        b"\xff\xfe not utf-8 \xc3",
        b"\xc2\x80\xc2\x9f\xc2\xa0\xc2",
        b"\xed\xa0\x80 surrogate, overlong \xc0\x80, \xf0\x9f\x98\x80 emoji",
        b"",
    ];
    for bytes in samples {
        let lossy = String::from_utf8_lossy(bytes);
        assert_eq!(
            text(bytes),
            crate::text::escape(&lossy, crate::text::Form::Log),
            "{bytes:?}"
        );
        assert!(!text(bytes).chars().any(|c| c.is_control() && c != '\t'));
    }
}

#[test]
fn only_a_stale_socket_is_replaced() {
    let dir = TempDir::new("stale");
    let path = dir.socket();

    // A regular file, a link (to a socket even): refused, left as they are.
    fs::write(&path, "precious").unwrap();
    let err = start(&path, |_| Ok(())).err().expect("a file is refused");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
    fs::remove_file(&path).unwrap();
    let target = dir.0.join("elsewhere");
    let _elsewhere = UnixDatagram::bind(&target).unwrap();
    symlink(&target, &path).unwrap();
    let err = start(&path, |_| Ok(())).err().expect("a link is refused");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert!(
        fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(target.exists());
    fs::remove_file(&path).unwrap();

    // A live socket (a syslog daemon, the host's /dev/log): refused.
    let live = UnixDatagram::bind(&path).unwrap();
    let err = start(&path, |_| Ok(()))
        .err()
        .expect("a live socket is refused");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    drop(live);

    // Its file once nobody listens: replaced.
    assert!(path.exists(), "a closed socket leaves its file");
    let (syslog, rx) = listening(&path);
    send(&path, b"<13>app: after the stale one");
    assert_eq!(next(&rx).message, "after the stale one");

    // At close, a file that replaced ours is not removed.
    fs::remove_file(&path).unwrap();
    fs::write(&path, "someone else's").unwrap();
    syslog.close();
    assert_eq!(fs::read_to_string(&path).unwrap(), "someone else's");

    // No such directory: an error, nothing left behind.
    let err = start(&dir.0.join("missing/log"), |_| Ok(()))
        .err()
        .expect("no directory");
    assert!(err.to_string().contains("missing/log"), "{err}");
}

#[test]
fn a_sink_without_room_pauses_reading_and_nothing_is_lost() {
    let dir = TempDir::new("room");
    let path = dir.socket();
    let full = Arc::new(AtomicBool::new(true));
    let got = Arc::new(Mutex::new(Vec::new()));
    let syslog = {
        let (full, got) = (full.clone(), got.clone());
        start(&path, move |record: Record| {
            if full.load(Ordering::SeqCst) {
                return Err(record);
            }
            got.lock().unwrap().push(record.message);
            Ok(())
        })
        .unwrap()
    };
    // A blocking sender, as glibc's syslog(3): it waits while corral does
    // not read.
    const COUNT: usize = 2_000;
    let sender = {
        let path = path.clone();
        std::thread::spawn(move || {
            let socket = UnixDatagram::unbound().unwrap();
            // A listener that never reads again fails the test, not hangs it.
            socket.set_write_timeout(Some(WAIT)).unwrap();
            for i in 0..COUNT {
                socket
                    .send_to(format!("<13>app: {i}").as_bytes(), &path)
                    .unwrap();
            }
        })
    };
    wait_for("a refusal", || syslog.stats().refused > 0);
    std::thread::sleep(Duration::from_millis(100));
    // While the sink is full, one record waits and nothing more is read.
    assert_eq!(syslog.stats().received, 1, "{:?}", syslog.stats());
    assert!(got.lock().unwrap().is_empty());
    full.store(false, Ordering::SeqCst);
    sender.join().unwrap();
    wait_for("every message", || got.lock().unwrap().len() == COUNT);
    let expected: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    assert_eq!(*got.lock().unwrap(), expected, "all of them, in order");
    let stats = syslog.stats();
    assert_eq!((stats.received, stats.dropped), (COUNT as u64, 0));
    assert!(stats.refused >= 2, "offered again while full: {stats:?}");
}

/// Run `command` to its end; its stderr if it failed.
fn run(command: &mut Command) {
    let out = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logger_from_util_linux_in_each_of_its_formats() {
    let dir = TempDir::new("logger");
    let path = dir.socket();
    let (syslog, rx) = listening(&path);
    let logger = |args: &[&str]| {
        let mut cmd = Command::new("logger");
        cmd.arg("--socket-errors=on")
            .arg("-u")
            .arg(&path)
            .args(args);
        run(&mut cmd);
        next(&rx)
    };

    // Its local format (`<PRI>TIME TAG[PID]: MSG`, as glibc's).
    let record = logger(&[
        "-t",
        "web",
        "--id=4242",
        "-p",
        "local0.warning",
        "--",
        "hello local",
    ]);
    assert_eq!(record.text_line(), "web[4242]: hello local");
    assert_eq!(
        (record.facility_name(), record.severity_name()),
        ("local0", "warning")
    );
    let peer = record.peer.expect("credentials");
    assert_eq!(peer.uid, nix::unistd::getuid().as_raw());
    assert_ne!(
        peer.pid, 4242,
        "the pid the message claims is not the sender's"
    );

    // RFC 3164 with a hostname.
    let record = logger(&[
        "--rfc3164",
        "-t",
        "cron",
        "-p",
        "cron.info",
        "--",
        "hello 3164",
    ]);
    assert_eq!(record.text_line(), "cron: hello 3164");
    assert_eq!(record.facility_name(), "cron");

    // RFC 5424, structured data included.
    let record = logger(&[
        "--rfc5424",
        "-t",
        "app",
        "--id=77",
        "-p",
        "daemon.err",
        "--sd-id",
        "zoo@123",
        "--sd-param",
        "tiger=\"hungry\"",
        "--",
        "hello 5424",
    ]);
    assert_eq!(record.text_line(), "app[77]: hello 5424");
    assert_eq!(
        (record.facility_name(), record.severity_name()),
        ("daemon", "err")
    );
    assert!(
        record
            .structured_data
            .contains(r#"[zoo@123 tiger="hungry"]"#),
        "{record:?}"
    );
    syslog.close();
}

/// A datagram that passes an fd along: refused by the kernel (Linux
/// 6.16's SO_PASSRIGHTS: the sender gets EPERM), or, on older kernels,
/// received and the fd closed at once; either way the listener goes on.
#[test]
fn fds_passed_along_are_refused_or_closed() {
    let dir = TempDir::new("fds");
    let path = dir.socket();
    let (syslog, rx) = listening(&path);
    let script = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
r, w = os.pipe()
try:
    socket.send_fds(s, [b'<13>fd: passed'], [r])
    print('sent')
except PermissionError:
    print('refused')
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    match String::from_utf8_lossy(&out.stdout).trim() {
        "refused" => {}
        "sent" => assert_eq!(next(&rx).message, "passed"),
        other => panic!("{other}"),
    }
    send(&path, b"<13>app: still listening");
    assert_eq!(next(&rx).message, "still listening");
    syslog.close();
}

#[test]
fn a_python_sender_in_rfc5424() {
    let dir = TempDir::new("python");
    let path = dir.socket();
    let (syslog, rx) = listening(&path);
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
msg = '<165>1 2026-12-04T19:00:00.003Z web-1 py-app 777 ID47 [origin@32473 ip="10.0.0.1" note="a \\"quoted\\" \\] value"] '
s.sendto(msg.encode() + b'\xef\xbb\xbf' + 'h\u00e9llo from python'.encode(), sys.argv[1])
s.sendto(b'<14>1 - - - - - -', sys.argv[1])
"#;
    run(Command::new("python3").arg("-c").arg(script).arg(&path));
    let record = next(&rx);
    assert_eq!(record.text_line(), "py-app[777]: h\u{e9}llo from python");
    assert_eq!(
        (record.facility_name(), record.severity_name()),
        ("local4", "notice")
    );
    assert_eq!(
        record.structured_data,
        r#"[origin@32473 ip="10.0.0.1" note="a \"quoted\" \] value"]"#
    );
    let record = next(&rx);
    assert_eq!(
        (record.text_line().as_str(), record.severity_name()),
        ("", "info")
    );
    syslog.close();
}

/// CPU time of this process's thread `tid` so far (schedstat: ns on a CPU).
fn thread_cpu(tid: i32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
}

fn rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A flood from an unprivileged service (uid 65534, which the 0666 socket
/// lets in): oversized datagrams as fast as it can, from two processes.
/// The listener reads no more than its budget (so its CPU is bounded), its
/// memory does not grow, and a message of another sender still gets
/// through while the flood goes on.
#[test]
fn a_flood_from_uid_65534_is_bounded_and_stalls_nothing() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (to send as uid 65534 with setpriv)"
    );
    let dir = TempDir::new("flood");
    let path = dir.socket();
    // A small budget: 500 messages a second (the test runs unoptimised,
    // where a message of 8 KiB to escape costs a good part of a ms).
    let limits = Limits {
        messages: 5,
        bytes: 1024 * 1024,
    };
    let count = Arc::new(AtomicU64::new(0));
    let legit = Arc::new(Mutex::new(Vec::new()));
    let tid = Arc::new(AtomicU64::new(0));
    let syslog = {
        let (count, legit, tid) = (count.clone(), legit.clone(), tid.clone());
        start_with(&path, limits, move |record: Record| {
            tid.store(nix::unistd::gettid().as_raw() as u64, Ordering::Relaxed);
            count.fetch_add(1, Ordering::Relaxed);
            if record.tag == "legit" {
                legit.lock().unwrap().push(record.message);
            }
            Ok(())
        })
        .unwrap()
    };
    send(&path, b"<13>warmup: x");
    wait_for("the first record", || count.load(Ordering::Relaxed) == 1);
    let tid = tid.load(Ordering::Relaxed) as i32;
    // What one flood message costs the listener in this build on this
    // machine: 20 of them, one at a time, within the budget.
    let junk = [b"<13>flood[1]: ".as_slice(), &b"\x1b\n".repeat(8000)].concat();
    let calibration_start = thread_cpu(tid);
    for n in 0..20u64 {
        send(&path, &junk);
        wait_for("a calibration record", || {
            count.load(Ordering::Relaxed) == 2 + n
        });
    }
    let per_message = (thread_cpu(tid) - calibration_start) / 20;
    let rss_before = rss_kib();
    let cpu_before = thread_cpu(tid);
    let started = Instant::now();

    const SECONDS: u64 = 3;
    // Blocking sends (a non-blocking spin would only burn the test
    // machine's CPU: the kernel queue is what it would fill either way).
    let flood = r#"
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(1.0)
junk = b'<13>flood[1]: ' + b'\x1b\n' * 8000
end = time.monotonic() + float(sys.argv[2])
sent = 0
while time.monotonic() < end:
    try:
        s.sendto(junk, sys.argv[1])
        sent += 1
    except socket.timeout:
        pass
print(sent)
"#;
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            Command::new("setpriv")
                .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                .args(["/usr/bin/python3", "-c", flood])
                .arg(&path)
                .arg(SECONDS.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Meanwhile a service logs as usual (blocking, as glibc does), once
    // every 100 ms: each message gets through.
    let socket = UnixDatagram::unbound().unwrap();
    socket.set_write_timeout(Some(WAIT)).unwrap();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(SECONDS) {
        socket
            .send_to(format!("<13>legit: {sent}").as_bytes(), &path)
            .expect("a message sent during the flood within 5s");
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut flooded = 0;
    for flooder in flooders {
        let out = flooder.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        flooded += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap();
    }
    wait_for("every legit message", || {
        legit.lock().unwrap().len() == sent
    });
    let expected: Vec<String> = (0..sent).map(|i| i.to_string()).collect();
    assert_eq!(*legit.lock().unwrap(), expected);

    let stats = syslog.stats();
    let elapsed = started.elapsed();
    assert!(stats.throttled > 0, "{stats:?}");
    assert!(stats.truncated > 0, "{stats:?}");
    // Never more than the budget: one window's worth per window (and the
    // one before the flood).
    let windows = elapsed.as_micros() / Limits::WINDOW.as_micros() + 2;
    assert!(
        u128::from(stats.received) <= windows * u128::from(limits.messages) + 1,
        "{stats:?} in {elapsed:?}"
    );
    assert!(
        flooded > 0 && stats.received >= flooded / 2,
        "sent {flooded}: {stats:?}"
    );
    // Bounded CPU: the listener spent on the flood what the messages it
    // took in cost, one by one (`per_message`, measured above in this
    // build: escaping 8 KiB of control characters is most of it, a few ms
    // unoptimised on a slow machine), plus its wake-ups; the budget bounds
    // how many it takes in (asserted above). A thread that spun, or read
    // and dropped what is over the budget, would cost more.
    let cpu = thread_cpu(tid) - cpu_before;
    eprintln!(
        "flood: {cpu:?} of CPU in {elapsed:?}, {per_message:?} per message, {stats:?}, flooded {flooded}"
    );
    let bound = per_message * 2 * u32::try_from(stats.received).unwrap() + elapsed / 10;
    assert!(
        cpu < bound,
        "{cpu:?} of CPU in {elapsed:?} (bound {bound:?}, {per_message:?} per message): {stats:?}, flooded {flooded}"
    );
    // Memory: what waits is in the kernel's queue, not here.
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB");
    syslog.close();
}
