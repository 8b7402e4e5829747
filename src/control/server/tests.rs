//! The server on a real socket, with a stand-in for the loop.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::*;
use crate::event::Input;
use crate::output::{FOLLOW_BACKLOG, Logs, Stream};
use crate::protocol::{MAX_REQUEST, Request, Response};

#[test]
fn connections_take_at_most_half_the_fds() {
    assert_eq!(connection_cap(Some(1024)), 512);
    assert_eq!(connection_cap(Some(20_000)), MAX_CONNECTIONS);
    assert_eq!(connection_cap(Some(u64::MAX)), MAX_CONNECTIONS);
    assert_eq!(connection_cap(Some(10)), 5);
    assert_eq!(connection_cap(Some(0)), 1);
    assert_eq!(connection_cap(None), 512);
}

/// A server on a socket in a fresh directory, with a fake loop that
/// answers every request but `wait` at once with `ok`, and forwards
/// what it gets to the test.
struct Fixture {
    dir: PathBuf,
    server: Option<Server>,
    seen: Receiver<Input>,
    logs: Logs,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("corral-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (inputs, loop_rx) = crossbeam_channel::unbounded::<Input>();
        let (seen_tx, seen) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            for mut input in loop_rx {
                if let Input::Control { request, reply } = &mut input
                    && !matches!(request, Request::Wait { .. })
                {
                    reply.send(Response::ok());
                }
                if seen_tx.send(input).is_err() {
                    return;
                }
            }
        });
        let logs = Logs::new();
        let server = Server::start(&dir.join("s.sock"), inputs, logs.clone()).expect("start");
        Fixture {
            dir,
            server: Some(server),
            seen,
            logs,
        }
    }

    fn connect(&self) -> UnixStream {
        let stream = UnixStream::connect(self.dir.join("s.sock")).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.close(Instant::now() + Duration::from_secs(5));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn read_response(reader: &mut impl BufRead) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[test]
fn requests_are_answered_and_errors_explained() {
    let f = Fixture::new("answers");
    let mut client = f.connect();
    client
        .write_all(b"{\"v\":1,\"op\":\"health\"}\n")
        .expect("write");
    let response = read_response(&mut BufReader::new(&client));
    assert!(response.ok, "{response:?}");
    assert!(matches!(
        f.seen.recv_timeout(Duration::from_secs(10)),
        Ok(Input::Control {
            request: Request::Health {},
            ..
        })
    ));

    // Half-closed after the request: still answered.
    let mut client = f.connect();
    client
        .write_all(b"{\"v\":1,\"op\":\"health\"}")
        .expect("write");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    assert!(read_response(&mut BufReader::new(&client)).ok);

    let mut client = f.connect();
    client.write_all(&[b'['; 100]).expect("write");
    client.write_all(b"\n").expect("write");
    let response = read_response(&mut BufReader::new(&client));
    assert_eq!(
        response.error.as_deref(),
        Some("malformed request: nested deeper than 16 levels")
    );

    let client = f.connect();
    let writer = {
        let mut client = client.try_clone().expect("clone");
        thread::spawn(move || {
            let _ = client.write_all(&vec![b'a'; MAX_REQUEST + 10]);
        })
    };
    let response = read_response(&mut BufReader::new(&client));
    assert_eq!(
        response.error.as_deref(),
        Some("request too long (more than 64 KiB)")
    );
    let _ = writer.join();
}

#[test]
fn a_client_that_hangs_up_before_its_answer_cancels_its_request() {
    let f = Fixture::new("cancel");
    let mut client = f.connect();
    client
        .write_all(b"{\"v\":1,\"op\":\"wait\",\"services\":[\"web\"]}\n")
        .expect("write");
    let Ok(Input::Control { reply, .. }) = f.seen.recv_timeout(Duration::from_secs(10)) else {
        panic!("no request reached the loop");
    };
    drop(client);
    match f.seen.recv_timeout(Duration::from_secs(10)) {
        Ok(Input::Cancel { reply: cancelled }) => assert!(reply.is_for(&cancelled)),
        other => panic!("expected a cancel, got {other:?}"),
    }
}

#[test]
fn a_follower_that_falls_too_far_behind_is_told_and_dropped() {
    let f = Fixture::new("behind");
    let mut client = f.connect();
    client
        .write_all(b"{\"v\":1,\"op\":\"logs\",\"service\":\"web\",\"follow\":true}\n")
        .expect("write");
    let mut reader = BufReader::new(&client);
    assert!(read_response(&mut reader).lines.is_empty());
    // While the client reads nothing, corral can hold a few hundred of
    // these lines (its buffer and the socket's); the rest waits in the
    // follower's channel, which overflows.
    let line = vec![b'x'; 1024];
    let lines: Vec<&[u8]> = vec![&line; FOLLOW_BACKLOG + 2000];
    f.logs.append("web", Stream::Stdout, &lines);
    let mut got = 0;
    let last = loop {
        let response = read_response(&mut reader);
        if !response.ok {
            break response;
        }
        got += response.lines.len();
    };
    assert!(got >= FOLLOW_BACKLOG && got < lines.len(), "{got} lines");
    assert_eq!(
        last.error.as_deref(),
        Some("this client fell more than 4096 lines behind and was dropped; run logs -f again")
    );
    let mut rest = String::new();
    reader.read_line(&mut rest).expect("read");
    assert_eq!(rest, "", "the connection ends");
}

#[test]
fn followers_get_new_lines_until_corral_exits() {
    let mut f = Fixture::new("follow");
    f.logs.append("web", Stream::Stdout, &[b"old"]);
    let mut client = f.connect();
    client
        .write_all(b"{\"v\":1,\"op\":\"logs\",\"service\":\"web\",\"follow\":true}\n")
        .expect("write");
    let mut reader = BufReader::new(&client);
    let recent = read_response(&mut reader);
    assert_eq!(recent.lines.len(), 1);
    assert_eq!(recent.lines[0].line, "old");
    for text in ["new 1", "new 2"] {
        f.logs.append("web", Stream::Stderr, &[text.as_bytes()]);
        let response = read_response(&mut reader);
        assert_eq!(response.lines.len(), 1);
        assert_eq!(response.lines[0].line, text);
        assert_eq!(response.lines[0].stream, "stderr");
    }
    // Closing ends the follow without an error line.
    if let Some(server) = f.server.take() {
        server.close(Instant::now() + Duration::from_secs(5));
    }
    let mut rest = String::new();
    reader.read_line(&mut rest).expect("read");
    assert_eq!(rest, "");
}
