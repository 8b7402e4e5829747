//! The HTTP endpoint (SPEC section 12): no client can delay another; a
//! probe with a 1 s timeout, kubelet's default, succeeds while 1000 idle or
//! slow connections are open; at the connection cap, the connection that
//! has waited longest for a request is closed to serve a new one.
//!
//! The attacker is any process in corral's network namespace (in a pod,
//! every other container): here a python3 client run as uid 65534 through
//! `setpriv`, outside corral's PID namespace (corral is PID 1 of its own),
//! as a neighbouring container would be. It opens idle connections that
//! never send, and slow ones that send a request head one byte every
//! 100 ms, never finishing it in time; each one corral closes is opened
//! again at once, so the flood does not thin out. The probes and
//! `corral ctl status` are the kubelet and the operator: run by the test
//! process as root.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use corral::http::{IO_TIMEOUT, MAX_CONNECTIONS};

use crate::common::*;

/// The attacker's uid and gid.
const NOBODY: u32 = 65534;

/// Connections the flood holds open: idle ones, and byte-at-a-time ones.
const IDLE: usize = 1000;
const SLOW: usize = 100;

/// kubelet's default probe timeout (`timeoutSeconds: 1`): connect, send,
/// and the whole answer within it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes sent during the flood, one every `PROBE_EVERY`: 20 of them span
/// 7.6 s, more than an `IO_TIMEOUT`, so they also meet the moment when
/// corral closes the flood's first connections and the attacker opens them
/// again.
const PROBES: usize = 20;
const PROBE_EVERY: Duration = Duration::from_millis(400);

/// `ctl status` runs measured before and during the flood.
const STATUS_RUNS: usize = 5;

/// The lowest bound on `ctl status` latency the flood is held to: below
/// it, the times are process start-up and 10 ms polling noise (see
/// `status_not_slowed`).
const STATUS_FLOOR: Duration = Duration::from_millis(200);

/// The attacker. Arguments: PORT IDLE SLOW MODE TIMEOUT_MS. It raises its
/// own RLIMIT_NOFILE soft limit to the hard one, starts its connections
/// and prints `ready`; then each connection corral ends is opened again at
/// once. MODE `cap` prints a line per connection ended, `closed KIND INDEX
/// MS ANSWER` (MS since it was opened, ANSWER the status code corral sent
/// or `-`); MODE `flood` prints every second `stats SECONDS SLOW_408
/// EARLY`: the slow connections ended with a 408, and the connections
/// ended without an answer before TIMEOUT_MS (less 200 ms), since `ready`,
/// and a line `early KIND INDEX MS` for each of the latter. Runs until
/// killed.
const ATTACKER: &str = r#"
import resource, selectors, socket, sys, time
port, n_idle, n_slow, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
timeout_ms = int(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard != resource.RLIM_INFINITY and hard < n_idle + n_slow + 64:
    print(f"error: RLIMIT_NOFILE hard limit {hard} is below {n_idle + n_slow + 64}", flush=True)
    sys.exit(3)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
# Never whole within IO_TIMEOUT at one byte per 100 ms.
HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400 + b"\r\n\r\n"
sel = selectors.DefaultSelector()
conns = {}
def open_one(kind, index):
    # Not waiting for the handshake: a full backlog must not stall the attacker.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    conns[s] = [kind, index, 0, time.monotonic()]
    sel.register(s, selectors.EVENT_READ)
for i in range(n_idle):
    open_one("idle", i)
for i in range(n_slow):
    open_one("slow", i)
print("ready", flush=True)
start = time.monotonic()
tick = start
stats = start + 1
slow_408 = early = 0
while True:
    for key, _ in sel.select(max(0.0, min(tick, stats) - time.monotonic())):
        s = key.fileobj
        kind, index, _, opened = conns.pop(s)
        sel.unregister(s)
        try:
            data = s.recv(64)
        except OSError:
            data = b""
        s.close()
        ms = int((time.monotonic() - opened) * 1000)
        answer = data.split(b" ")[1].decode() if data.startswith(b"HTTP/1.1 ") else "-"
        if kind == "slow" and answer == "408":
            slow_408 += 1
        # The margin: the attacker times from just after its connect, and
        # corral may accept before that; it sees the close only later.
        if answer == "-" and ms < timeout_ms - 200:
            early += 1
            if mode == "flood":
                print(f"early {kind} {index} {ms}", flush=True)
        if mode == "cap":
            print(f"closed {kind} {index} {ms} {answer}", flush=True)
        open_one(kind, index)
    now = time.monotonic()
    if mode == "flood" and now >= stats:
        print(f"stats {int(now - start)} {slow_408} {early}", flush=True)
        stats += 1
    if now >= tick:
        tick += 0.1
        for s, state in list(conns.items()):
            if state[0] == "slow" and state[2] < len(HEAD):
                try:
                    s.send(HEAD[state[2]:state[2] + 1])
                    state[2] += 1
                except OSError:
                    pass
"#;

/// How many connections corral serves at once (`http::connection_cap`).
fn connection_cap(pid: i32) -> usize {
    usize::try_from(soft_limit(pid, "Max open files") / 4)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_CONNECTIONS)
}

/// The attacker, as uid 65534, against `port`; back once every connection
/// is open. Killed by pid when dropped.
fn attack(port: u16, idle: usize, slow: usize, mode: &str) -> Background {
    let mut attacker = Background::spawn(as_nobody(python3()).args(["-c", ATTACKER]).args([
        &port.to_string(),
        &idle.to_string(),
        &slow.to_string(),
        mode,
        &IO_TIMEOUT.as_millis().to_string(),
    ]));
    let line = attacker.next_line(DEADLINE);
    assert_eq!(line, "ready", "the attacker: {}", attacker.stderr());
    let uid = fs::read_to_string(format!("/proc/{}/status", attacker.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        });
    assert_eq!(uid, Some(NOBODY.to_string()), "the attacker's uid");
    attacker
}

/// One line of the attacker: a connection corral ended.
#[derive(Debug)]
struct Closed {
    kind: String,
    index: usize,
    after: Duration,
    /// The status code corral sent first, if any.
    answer: Option<u16>,
}

fn closed(line: &str) -> Closed {
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["closed", kind, index, ms, answer] => Closed {
            kind: kind.to_string(),
            index: index.parse().expect("an index"),
            after: Duration::from_millis(ms.parse().expect("milliseconds")),
            answer: answer.parse().ok(),
        },
        _ => panic!("unexpected attacker line {line:?}"),
    }
}

/// The server-side TCP connections on `port` that corral holds (accepted;
/// not those still in the listen backlog): its socket fds whose inodes
/// /proc/net/tcp lists as established with that local port.
fn held(pid: i32, port: u16) -> usize {
    let inodes: HashSet<String> = open_fds(pid)
        .into_iter()
        .filter_map(|(_, target)| {
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|row| {
                    let fields: Vec<&str> = row.split_whitespace().collect();
                    // local_address, state 01 (ESTABLISHED), inode (proc(5)).
                    fields.get(1).is_some_and(|l| l.ends_with(&local))
                        && fields.get(3) == Some(&"01")
                        && fields.get(9).is_some_and(|i| inodes.contains(*i))
                })
                .count()
        })
        .sum()
}

/// GET /healthz as a kubelet probe does it: everything within
/// `PROBE_TIMEOUT`. The status code and how long it took.
fn probe(port: u16) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let left = || {
        PROBE_TIMEOUT
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {PROBE_TIMEOUT:?}"))
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kube-probe/1.30\r\n\r\n",
        )
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read after {:?}: {e}", started.elapsed())),
        }
    }
    let took = started.elapsed();
    if took >= PROBE_TIMEOUT {
        return Err(format!("the answer took {took:?}"));
    }
    let text = String::from_utf8_lossy(&raw);
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    Ok((code, took))
}

/// A corral as PID 1 with an essential service, a control socket and
/// `--http` on a free loopback port, once `/healthz` answers 200.
fn corral_with_http(name: &str) -> (Corral, u16) {
    let port = free_port();
    let dir = TestDir::new(name);
    dir.service("core", "essential = true\ncommand = 'exec sleep 1000'\n");
    let addr = format!("127.0.0.1:{port}");
    let mut c = dir
        .corral()
        .pid1()
        .ctl_socket()
        .args(["--http", &addr])
        .start();
    c.wait_for("/healthz 200", |_| match probe(port) {
        Ok((200, _)) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    (c, port)
}

/// How long `ctl status` takes (process start included); it must succeed.
fn status_time(c: &Corral) -> Duration {
    let ran = c.ctl(&["status"]);
    assert_eq!(ran.code, 0, "ctl status failed: {ran:?}");
    assert!(ran.stdout.contains("core"), "{ran:?}");
    ran.took
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// The control socket's latency is not badly worse during the flood: the
/// median of the runs during it under max(5 x the median before, 200 ms).
/// A median, not the slowest run: the machine is shared, and one slow
/// process start says nothing of corral; 5x and 200 ms, because the runs
/// take tens of ms and are timed by 10 ms polling, while a loop slowed by
/// the flood would take seconds (a status request behind a 5 s timeout).
fn status_not_slowed(before: &[Duration], during: &[Duration]) {
    let usual = median(before.to_vec());
    let bound = (usual * 5).max(STATUS_FLOOR);
    let seen = median(during.to_vec());
    assert!(
        seen < bound,
        "ctl status took {seen:?} (median) during the flood, {usual:?} before; bound {bound:?}: \
         before {before:?}, during {during:?}"
    );
}

#[test]
fn probes_succeed_within_a_second_through_a_flood_of_idle_and_slow_connections() {
    require_root("the attacker runs as uid 65534");
    // The attacker holds 1100 sockets; corral holds them at a quarter of
    // its limit (`http::connection_cap`), with room for the probes.
    let flood = IDLE + SLOW;
    raise_fd_limit(4 * (flood as u64 + 100));
    let (mut c, port) = corral_with_http("sec-http-flood");
    let cap = connection_cap(c.pid());
    assert!(
        cap >= flood + PROBES,
        "corral serves at most {cap} connections: too few to hold the flood ({flood}) and the probes"
    );
    let before: Vec<Duration> = (0..STATUS_RUNS).map(|_| status_time(&c)).collect();

    let mut attacker = attack(port, IDLE, SLOW, "flood");
    let attacked = Instant::now();
    // The flood is in corral's hands, not waiting in the backlog.
    c.wait_for("corral to hold the flood's connections", |c| {
        match held(c.pid(), port) {
            n if n >= flood => Ok(()),
            n => Err(format!("{n} held")),
        }
    });

    let mut during = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut next = Instant::now();
    for i in 0..PROBES {
        // Paced, so that the probes span the flood's reconnections.
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        next += PROBE_EVERY;
        match probe(port) {
            Ok((200, took)) => slowest = slowest.max(took),
            other => panic!(
                "probe {i} of {PROBES} during the flood (corral holds {} connections): {other:?}",
                held(c.pid(), port)
            ),
        }
        if i % (PROBES / STATUS_RUNS) == 0 {
            during.push(status_time(&c));
        }
    }
    // The flood lasted throughout: corral still held it at the end, and
    // had been ending its connections (408 for the slow ones) as they timed
    // out, while the attacker opened them again.
    let held_at_end = held(c.pid(), port);
    assert!(
        held_at_end >= flood * 9 / 10,
        "corral holds only {held_at_end} of the flood's {flood} connections"
    );
    // Counted until the probes ended, and at least until the first slow
    // clients' IO_TIMEOUT has surely passed.
    let covered = attacked.elapsed().max(IO_TIMEOUT + Duration::from_secs(2));
    let (slow_408, early) = flood_stats(&mut attacker, covered);
    assert!(
        slow_408 > 0,
        "no slow client was cut off with 408 at its IO_TIMEOUT"
    );
    assert_eq!(
        early, 0,
        "corral closed flood connections before their IO_TIMEOUT without an answer \
         (room made although it was below its cap)"
    );
    status_not_slowed(&before, &during);
    eprintln!(
        "flood of {flood}: {PROBES} probes, slowest {slowest:?}; ctl status before {before:?}, during {during:?}"
    );

    // corral keeps serving, and SIGTERM stops it with the flood still on.
    assert_eq!(probe(port).map(|(code, _)| code), Ok(200));
    assert!(c.try_ctl_status().is_ok());
    assert_eq!(c.stop(), 0, "corral's exit code after SIGTERM");
    drop(attacker);
}

/// The flood attacker's counts, `(SLOW_408, EARLY)`, from its first
/// `stats` line covering at least `since` of the flood; `early` lines are
/// printed.
fn flood_stats(attacker: &mut Background, since: Duration) -> (usize, usize) {
    loop {
        let line = attacker.next_line(Duration::from_secs(3));
        if line.starts_with("early ") {
            eprintln!("attacker: {line}");
            continue;
        }
        let fields: Vec<usize> = line
            .strip_prefix("stats ")
            .map(|rest| rest.split(' ').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        match fields.as_slice() {
            [seconds, slow_408, early] if *seconds as u64 >= since.as_secs() => {
                return (*slow_408, *early);
            }
            [_, _, _] => {}
            _ => panic!("unexpected attacker line {line:?}"),
        }
    }
}

#[test]
fn at_the_connection_cap_a_probe_closes_the_oldest_idle_connection() {
    require_root("the attacker runs as uid 65534");
    // corral's cap is a quarter of this limit at most, so the attacker
    // (with the same limit) can always reach it.
    raise_fd_limit(1024);
    let (mut c, port) = corral_with_http("sec-http-cap");
    let cap = connection_cap(c.pid());
    // Exactly as many idle connections as corral serves; each one corral
    // closes is opened again.
    let mut attacker = attack(port, cap, 0, "cap");
    let opened = Instant::now();
    for oldest in 0..2 {
        c.wait_for(
            "corral to hold as many connections as its cap",
            |c| match held(c.pid(), port) {
                n if n >= cap => Ok(()),
                n => Err(format!("{n} held of {cap}")),
            },
        );
        match probe(port) {
            Ok((200, _)) => {}
            other => panic!("probe at the cap of {cap}: {other:?}"),
        }
        // The one that waited longest made room: closed without an answer,
        // well before its IO_TIMEOUT.
        let line = attacker.next_line(Duration::from_secs(2));
        let ended = closed(&line);
        assert!(
            ended.kind == "idle" && ended.index == oldest && ended.answer.is_none(),
            "expected idle connection {oldest} to be closed, got {ended:?}"
        );
        assert!(
            ended.after < IO_TIMEOUT && opened.elapsed() < IO_TIMEOUT,
            "closed after {:?}, too late to tell room made from its IO_TIMEOUT",
            ended.after
        );
    }
    // Only those: corral holds the cap again, with the two opened anew.
    c.wait_for("the cap again", |c| match held(c.pid(), port) {
        n if n == cap => Ok(()),
        n => Err(format!("{n} held of {cap}")),
    });
    assert!(c.try_ctl_status().is_ok());
    assert_eq!(c.stop(), 0, "corral's exit code after SIGTERM");
    drop(attacker);
}
