//! SPEC section 9, "Pipelines": a `producer-for` longrun's stdout feeds its
//! consumer's stdin through one pipe corral holds across restarts of either
//! end, so no line is lost while one end restarts, and the consumer sees no
//! EOF while the producer restarts.
//!
//! The tree is an s6-rc source tree as s6-overlay v3 images ship it:
//! `producer/` and `consumer/` longruns linked by `producer-for` /
//! `consumer-for`, and a `user` bundle without a `type` file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Corral, TestDir};

/// Lines the producer writes, `1` to `LINES`. (In the scripts, `$T` and
/// `LINES` are replaced when the tree is written.)
const LINES: u32 = 2000;

/// The producer: numbered lines, one write(2) each (atomic in a pipe, as
/// any write of at most PIPE_BUF bytes), a few ms apart. It keeps its place
/// in `$T/next`, so a restarted producer goes on where the last one
/// stopped; it stops on SIGTERM only between lines (the trap sets a flag
/// the loop reads), so a restart neither repeats nor skips a line. While
/// `$T/pause` exists it writes nothing (and says so in `$T/paused`); once
/// `$T/fast` exists it no longer sleeps between lines. Its stderr is
/// corral's, prefixed.
const PRODUCER: &str = r#"#!/bin/sh
: "${PATH:=/usr/bin:/bin}"
echo $$ >> "$T/producer.pids"
echo "producer up" >&2
stop=
trap 'stop=1' TERM
i=1
[ -e "$T/next" ] && read -r i < "$T/next"
while [ -z "$stop" ] && [ "$i" -le LINES ]; do
    if [ -e "$T/pause" ]; then
        : > "$T/paused"
        sleep 0.01
        continue
    fi
    echo "$i"
    i=$((i + 1))
    echo "$i" > "$T/next"
    [ -e "$T/fast" ] || sleep 0.003
done
[ -n "$stop" ] && exit 0
exec sleep 1000
"#;

/// The consumer: appends each line it reads to `$T/got`. `read` takes a
/// pipe a byte at a time and a line arrives whole, so it never holds more
/// than the line it is on; SIGTERM takes effect between lines only. A
/// partial line (which would mean a line split in the pipe) is written as
/// such, and an EOF is recorded in `$T/consumer.eof` before it exits 1:
/// with corral holding the pipe, neither may happen. Its stdout is
/// corral's, prefixed.
const CONSUMER: &str = r#"#!/bin/sh
echo $$ >> "$T/consumer.pids"
echo "consumer up"
stop=
trap 'stop=1' TERM
while [ -z "$stop" ]; do
    if IFS= read -r line; then
        echo "$line" >> "$T/got"
    elif [ -n "$line" ]; then
        echo "partial: $line" >> "$T/got"
    elif [ -z "$stop" ]; then
        echo "EOF in $$" >> "$T/consumer.eof"
        exit 1
    fi
done
"#;

/// `tree/`: the two longruns and the `user` bundle listing them. The
/// scripts name the test dir itself rather than `$T`: a v3 `run` script may
/// start with a cleared environment (`S6_KEEP_ENV`), as under s6-overlay.
fn write_tree(dir: &TestDir) {
    let here = dir.path().display().to_string();
    let file = |rel: &str, text: &str| {
        let path = dir.join(&format!("tree/{rel}"));
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(&path, text).expect("write tree file");
        path
    };
    let script = |rel: &str, text: &str| {
        let path = file(rel, text);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    file("producer/type", "longrun\n");
    script(
        "producer/run",
        &PRODUCER
            .replace("$T", &here)
            .replace("LINES", &LINES.to_string()),
    );
    file("producer/producer-for", "consumer\n");
    file("consumer/type", "longrun\n");
    script("consumer/run", &CONSUMER.replace("$T", &here));
    file("consumer/consumer-for", "producer\n");
    // s6-overlay writes `user`'s type at boot: trees ship it without one.
    file("user/contents.d/producer", "");
    file("user/contents.d/consumer", "");
}

fn start() -> Corral {
    let dir = TestDir::new("s6rc-pipeline");
    write_tree(&dir);
    let tree = dir.join("tree").display().to_string();
    // `services/` (passed by the harness) is empty: the tree is all there is.
    let mut c = dir
        .corral()
        .ctl_socket()
        .args(["--s6-rc-dir", &tree])
        .start();
    c.wait_state("producer", "running");
    c.wait_state("consumer", "running");
    c
}

/// The lines the consumer has written so far.
fn got(c: &Corral) -> Vec<String> {
    c.dir().lines("got")
}

/// Wait until the consumer has written `more` lines beyond `than`.
fn wait_more(c: &mut Corral, than: usize, more: usize) {
    c.wait_for(&format!("{more} more lines past {than}"), |c| {
        let n = got(c).len();
        if n >= than + more {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    });
}

fn pid(c: &Corral, name: &str) -> i64 {
    let svc: Value = c.ctl_service(name).expect("listed");
    svc["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{name} has no pid: {svc}"))
}

fn ctl_ok(c: &Corral, args: &[&str]) {
    let ran = c.ctl(args);
    assert_eq!(ran.code, 0, "ctl {args:?}: {ran:?}");
}

#[test]
fn a_pipeline_loses_no_line_while_either_end_restarts() {
    let mut c = start();
    wait_more(&mut c, 0, 20);

    // The consumer restarts (SIGTERM, a new process) while the producer
    // writes: what is written meanwhile waits in the pipe. Halfway, the
    // definitions are read again (as on SIGHUP): a pipeline still defined
    // keeps its pipe, so the next consumer reads where the last one stopped.
    for restart in 1..=4 {
        if restart == 3 {
            ctl_ok(&c, &["reload"]);
        }
        let before = got(&c).len();
        ctl_ok(&c, &["restart", "consumer"]);
        c.wait_pids("consumer.pids", restart + 1);
        wait_more(&mut c, before, 20);
    }

    // The producer restarts: the consumer sees no EOF, it stays the same
    // process and goes on reading from the next producer.
    let consumer = pid(&c, "consumer");
    let before = got(&c).len();
    ctl_ok(&c, &["restart", "producer"]);
    c.wait_pids("producer.pids", 2);
    wait_more(&mut c, before, 20);
    assert_eq!(
        pid(&c, "consumer"),
        consumer,
        "the consumer was not restarted"
    );
    assert_eq!(c.dir().pids("consumer.pids").len(), 5);

    // SIGKILL loses what a consumer has read and not yet written, which no
    // supervisor can prevent: kill it while the pipe is empty (the producer
    // paused, every line written so far consumed), then let the producer
    // write while no consumer runs.
    c.dir().write("pause", "");
    c.wait_for("the producer to pause, and the consumer to catch up", |c| {
        let next: usize = c.dir().read("next").trim().parse().unwrap_or(0);
        let n = got(c).len();
        if c.dir().exists("paused") && n + 1 == next {
            Ok(())
        } else {
            Err(format!("next {next}, {n} lines"))
        }
    });
    ctl_ok(&c, &["signal", "KILL", "consumer"]);
    fs::remove_file(c.dir().join("pause")).expect("unpause");
    c.wait_pids("consumer.pids", 6);
    let n = got(&c).len();
    wait_more(&mut c, n, 20);
    // The rest at full speed: a burst the consumer may fall behind on, which
    // the pipe holds.
    c.dir().write("fast", "");

    // Every line, once, in order.
    c.wait_for_within(Duration::from_secs(120), "every line", |c| {
        let n = got(c).len();
        if n >= LINES as usize {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    });
    let expected: Vec<String> = (1..=LINES).map(|i| i.to_string()).collect();
    let lines = got(&c);
    if lines != expected {
        let first = lines
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(lines.len().min(expected.len()));
        panic!(
            "{} lines, first difference at line {}: {:?}\n{}",
            lines.len(),
            first + 1,
            lines.get(first.saturating_sub(2)..(first + 3).min(lines.len())),
            c.output_excerpt()
        );
    }
    // The producer never got EPIPE (SIGPIPE would have killed it) while
    // the consumer was down: it ran twice, as restarted; the consumer ran
    // once per restart and never saw EOF.
    assert_eq!(c.dir().pids("producer.pids").len(), 2, "producer runs");
    assert_eq!(c.dir().pids("consumer.pids").len(), 6, "consumer runs");
    assert!(
        !c.dir().exists("consumer.eof"),
        "a consumer saw EOF: {}",
        c.dir().read("consumer.eof")
    );

    // The producer's stdout went into the pipe, not to corral's output; its
    // stderr and the consumer's stdout are prefixed as usual.
    let out = c.stdout();
    assert!(
        out.lines().any(|l| l.contains("consumer | consumer up")),
        "{}",
        c.output_excerpt()
    );
    assert!(
        !out.lines().any(|l| l.contains("producer |")),
        "the producer's stdout reached corral's: {}",
        c.output_excerpt()
    );
    assert!(
        c.stderr()
            .lines()
            .any(|l| l.contains("producer | producer up")),
        "{}",
        c.output_excerpt()
    );
    assert_eq!(c.stop(), 0);
}
