//! No client can stall corral (SPEC section 8): garbage, oversized, deeply
//! nested, slow, half-closed and hundreds of concurrent clients each get an
//! answer or an error while a flapping service keeps being restarted on time.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// corral's per-request read deadline (`control::server::REQUEST_TIMEOUT`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Concurrent `status` clients.
const CLIENTS: usize = 200;

/// Clients that send half a request and then idle.
const SLOW: usize = 10;

/// corral's cap on connections served at once (`control::server::MAX_CONNECTIONS`).
const MAX_CONNECTIONS: usize = 128;

/// The longest pause allowed between two starts of the flapping service.
const MAX_GAP: f64 = 1.0;

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a raw client got back: the first line, parsed, and how long it took.
#[derive(Debug)]
struct Answer {
    response: Value,
    took: Duration,
}

/// Connect, send `bytes`, optionally half-close, optionally idle before
/// reading; read one answer line.
fn raw(socket: &Path, bytes: &[u8], half_close: bool) -> Answer {
    let started = Instant::now();
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    // corral may answer (and close) before taking everything: too long.
    let _ = stream.write_all(bytes);
    if half_close {
        stream.shutdown(Shutdown::Write).expect("shutdown");
    }
    let mut line = String::new();
    let read = BufReader::new(&stream).read_line(&mut line);
    let took = started.elapsed();
    match read {
        Ok(n) if n > 0 => Answer {
            response: serde_json::from_str(line.trim_end())
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}")),
            took,
        },
        other => panic!(
            "no answer to {:?}: {other:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
        ),
    }
}

fn error_of(answer: &Answer) -> String {
    assert_eq!(answer.response["ok"], false, "{answer:?}");
    answer.response["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn abusive_clients_get_errors_while_restarts_go_on() {
    let dir = TestDir::new("ctl-abuse");
    dir.service(
        "flap",
        r#"command = '''date +%s.%N >> "$T/flap.times"; exit 1'''
restart-delay = "0s"
"#,
    );
    dir.service(
        "web",
        r#"command = '''echo $$ >> "$T/web.pids"; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().ctl_socket().start();
    c.wait_pids("web.pids", 1);
    c.wait_for("the flapper to flap", |c| {
        let n = c.dir().lines("flap.times").len();
        if n >= 20 {
            Ok(())
        } else {
            Err(format!("{n} starts"))
        }
    });
    let socket: PathBuf = c.socket();
    let threads_before = c.threads();
    assert!(threads_before > 0, "cannot count corral's threads");
    let abuse_from = now_epoch();

    // Slow clients: half a request, then nothing. Each must get "request
    // timed out" once REQUEST_TIMEOUT has passed, not before, not much after.
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            let socket = socket.clone();
            thread::spawn(move || raw(&socket, br#"{"v":1,"op":"sta"#, false))
        })
        .collect();

    // The one-shot abusers.
    let garbage = raw(&socket, b"\x00\xff not json at all\n", false);
    assert!(
        error_of(&garbage).starts_with("malformed request"),
        "{garbage:?}"
    );
    let oversized = raw(&socket, &vec![b'a'; 70 * 1024], false);
    assert_eq!(error_of(&oversized), "request too long (more than 64 KiB)");
    let nested = raw(&socket, &[&[b'['; 60_000][..], b"\n"].concat(), false);
    assert_eq!(
        error_of(&nested),
        "malformed request: nested deeper than 16 levels"
    );
    let unknown = raw(&socket, b"{\"v\":1,\"op\":\"explode\"}\n", false);
    assert!(
        error_of(&unknown).contains("unknown variant `explode`"),
        "{unknown:?}"
    );
    // Half-closed after a request without newline: that is the request.
    let half = raw(&socket, br#"{"v":1,"op":"status"}"#, true);
    assert_eq!(half.response["ok"], true, "{half:?}");
    assert_eq!(half.response["services"].as_array().map(Vec::len), Some(2));
    let half_garbage = raw(&socket, b"hello", true);
    assert!(error_of(&half_garbage).starts_with("malformed request"));
    // Connect and leave without a word: nothing to answer, nothing breaks.
    for _ in 0..20 {
        drop(UnixStream::connect(&socket).expect("connect"));
    }

    // Hundreds of status clients at once, beside the slow ones.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let socket = socket.clone();
            let barrier = Arc::clone(&barrier);
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    barrier.wait();
                    raw(&socket, b"{\"v\":1,\"op\":\"status\"}\n", false)
                })
                .expect("client thread")
        })
        .collect();
    let mut answered = 0;
    let mut turned_away = 0;
    for client in clients {
        let answer = client.join().expect("client thread");
        if answer.response["ok"] == true {
            assert_eq!(
                answer.response["services"].as_array().map(Vec::len),
                Some(2)
            );
            answered += 1;
        } else {
            assert!(
                error_of(&answer).starts_with("too many control connections"),
                "{answer:?}"
            );
            turned_away += 1;
        }
    }
    assert_eq!(answered + turned_away, CLIENTS);
    assert!(answered > 0, "no status client was served");

    // The slow clients still hold their connections; corral answers anyway.
    let status = c.ctl(&["status", "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status.took < Duration::from_secs(2),
        "status took {:?} beside slow clients",
        status.took
    );
    let flap_state: Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(flap_state[0]["name"], "flap");

    for client in slow {
        let answer = client.join().expect("slow client");
        let error = error_of(&answer);
        assert!(error.starts_with("request timed out"), "{answer:?}");
        assert!(
            answer.took >= REQUEST_TIMEOUT - Duration::from_millis(100)
                && answer.took < REQUEST_TIMEOUT + Duration::from_secs(2),
            "the timeout came after {:?}",
            answer.took
        );
    }

    // Fill every connection slot with clients that say nothing: the next
    // one is turned away at once with an error; once they leave, served.
    let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(&socket).expect("connect"))
        .collect();
    c.wait_for("a thread per idle connection", |c| {
        let now = c.threads();
        if now >= threads_before + MAX_CONNECTIONS {
            Ok(())
        } else {
            Err(format!("{now} threads"))
        }
    });
    let full = c.ctl(&["status"]);
    assert_eq!(full.code, 1, "{full:?}");
    assert_eq!(
        full.stderr,
        format!(
            "corral ctl: too many control connections (more than {MAX_CONNECTIONS}); try again\n"
        )
    );
    assert!(
        full.took < Duration::from_secs(2),
        "turned away after {:?}",
        full.took
    );
    drop(idle);
    c.wait_for("status to be served again", |c| {
        let ran = c.ctl(&["status"]);
        if ran.code == 0 {
            Ok(())
        } else {
            Err(ran.stderr)
        }
    });
    let abuse_until = now_epoch();

    // The flapper was restarted all along: no pause longer than MAX_GAP.
    let times: Vec<f64> = c
        .dir()
        .lines("flap.times")
        .iter()
        .map(|l| parse_time(l))
        .filter(|&t| t >= abuse_from - MAX_GAP && t <= abuse_until)
        .collect();
    assert!(
        times.len() >= 20,
        "only {} flapper starts in {:.1}s",
        times.len(),
        abuse_until - abuse_from
    );
    let (gap, at) = times
        .windows(2)
        .map(|w| (w[1] - w[0], w[0]))
        .fold((0.0, 0.0), |worst, g| if g.0 > worst.0 { g } else { worst });
    let edges = [
        times.first().map_or(0.0, |first| first - abuse_from),
        times.last().map_or(0.0, |last| abuse_until - last),
    ];
    eprintln!(
        "abuse: {answered} status clients served, {turned_away} turned away; flapper: {} starts in {:.1}s, longest pause {gap:.3}s",
        times.len(),
        abuse_until - abuse_from
    );
    assert!(
        gap <= MAX_GAP && edges.iter().all(|&e| e <= MAX_GAP),
        "the flapper paused {gap:.3}s (at {:.3}s into the abuse; edges {edges:?}) over {} starts",
        at - abuse_from,
        times.len()
    );

    // Every connection thread has ended; corral is fine and stops cleanly.
    c.wait_for("connection threads to end", |c| {
        let now = c.threads();
        if now <= threads_before {
            Ok(())
        } else {
            Err(format!("{now} threads, {threads_before} before"))
        }
    });
    assert_eq!(c.stop(), 0);
}
