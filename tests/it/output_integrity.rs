//! Service output under pressure (issues 6 and 7): `prefix` lines are
//! never lost, torn or repeated at volume; a line without newlines comes
//! out in bounded pieces as it is written; and a container stdout/stderr
//! that nobody reads stalls neither the supervisor loop (reaping,
//! restarting, the control socket) nor the shutdown.
//!
//! Here corral's stdout and stderr are pipes the test holds (the harness
//! sends them to files), so that it can read them as they come, check a
//! stream too big to keep, or not read them at all.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::*;
use crossbeam_channel::{Receiver, Sender};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

/// corral's longest line piece (`output::MAX_LINE`).
const MAX_LINE: usize = 64 * 1024;

/// A corral (as a child subreaper) whose stdout and stderr are pipes held
/// by the test. `Drop` closes them (so no write of corral's can block),
/// then ends corral and everything under it, by pid, even when the test
/// fails.
struct Piped {
    child: Child,
    pid: i32,
    /// The read ends, until a test takes them.
    stdout: Option<File>,
    stderr: Option<File>,
    /// The test's own copies of the write ends, to see whether the pipes
    /// are full (`full`); dropped by `release_write_ends`.
    write_ends: Vec<OwnedFd>,
    dir: TestDir,
}

impl Piped {
    fn start(dir: TestDir, args: &[&str]) -> Piped {
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let mut cmd = Command::new(corral_bin());
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        for (flag, sub) in [
            ("--services", "services"),
            ("--init-dir", "init"),
            ("--finish-dir", "finish"),
        ] {
            cmd.arg(flag).arg(dir.join(sub));
        }
        cmd.arg("--socket").arg(dir.join(CTL_SOCKET));
        let child = cmd
            .args(args)
            .env("T", dir.path())
            .env("CORRAL_SOCKET", dir.join(CTL_SOCKET))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_w.try_clone().expect("dup")))
            .stderr(Stdio::from(err_w.try_clone().expect("dup")))
            .spawn()
            .expect("spawn corral");
        let pid = child.id() as i32;
        Piped {
            child,
            pid,
            stdout: Some(File::from(out_r)),
            stderr: Some(File::from(err_r)),
            write_ends: vec![out_w, err_w],
            dir,
        }
    }

    /// Both pipes are full: not even one more byte fits (pipe(7): POLLOUT
    /// is set while a pipe has room).
    fn full(&self) -> bool {
        self.write_ends.iter().all(|w| {
            let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLOUT)];
            matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
        })
    }

    /// Drop the test's write ends: from now on the pipes end when corral's
    /// side does.
    fn release_write_ends(&mut self) {
        self.write_ends.clear();
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Wait up to `timeout` for corral to exit; its exit code, or why not.
    fn wait_exit(&mut self, timeout: Duration) -> Result<i32, String> {
        wait_child(&mut self.child, timeout).and_then(exit_code)
    }

    fn ctl_status(&self) -> Ran {
        run_within(
            &mut ctl_command(Some(&self.dir.join(CTL_SOCKET)), &["status"]),
            DEADLINE,
        )
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        self.write_ends.clear();
        self.stdout = None;
        self.stderr = None;
        if self.exited() {
            return;
        }
        send(self.pid, Signal::SIGTERM);
        if wait_child(&mut self.child, Duration::from_secs(15)).is_err() {
            // Freeze corral so it restarts nothing, kill its tree by pid.
            send(self.pid, Signal::SIGSTOP);
            kill_descendants(self.pid);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Read `file` line by line on a thread until EOF; `each` gets every line
/// (without its newline) and says whether to keep reading. The thread's
/// result is `each`'s final state.
fn read_lines<S: Send + 'static>(
    file: File,
    mut state: S,
    mut each: impl FnMut(&mut S, &[u8]) -> bool + Send + 'static,
) -> JoinHandle<S> {
    thread::spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::with_capacity(MAX_LINE + 128);
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    if !each(&mut state, text) {
                        break;
                    }
                }
            }
        }
        state
    })
}

/// A short, printable excerpt of a line, for messages.
fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let shown: String = text.chars().take(120).collect();
    format!("{shown:?} ({} bytes)", line.len())
}

// ---------------------------------------------------------------------------
// (a) 200 MB through prefix, two services at once

/// One generator: `NAME | NAME <seq> <pad>`, seq from 1 to `count`.
struct Numbered {
    name: &'static str,
    pad: &'static str,
    count: u64,
}

impl Numbered {
    /// `seq` writes in stdio blocks that cut lines anywhere.
    fn command(&self) -> String {
        format!(
            "restart = \"never\"\ncommand = '''seq -f '{} %.0f {}' 1 {}'''\n",
            self.name, self.pad, self.count
        )
    }
}

/// What the checker of corral's stdout knows.
#[derive(Default)]
struct Progress {
    /// Per generator: the next seq expected.
    next: Vec<u64>,
    lines: u64,
    bytes: u64,
    /// The first wrong line, described.
    error: Option<String>,
    /// Lines seen after every generator was complete.
    extra: u64,
}

/// Two services print about 100 MB each of numbered lines, as fast as
/// `seq` goes: `alpha` long lines, `bravo` short ones (so their pieces
/// never line up). The test reads corral's stdout as it comes and checks
/// every line on the fly: whole (exactly `NAME | NAME seq pad`), each seq
/// once and in order per service; the two services may interleave, but
/// only between lines. Nothing else may come after the last line.
#[test]
fn a_hundred_megabytes_each_from_two_services_are_neither_lost_nor_torn() {
    let gens = [
        Numbered {
            name: "alpha",
            pad: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-abcdefgh",
            count: 1_050_000,
        },
        Numbered {
            name: "bravo",
            pad: "0123456789abcdefghijklmnopqrstuvwxyz",
            count: 2_000_000,
        },
    ];
    let dir = TestDir::new("integrity-volume");
    for g in &gens {
        dir.service(g.name, &g.command());
    }
    let mut c = Piped::start(dir, &[]);
    c.release_write_ends();
    // stderr: corral's own lines, kept for a failure message.
    let stderr_text = Arc::new(Mutex::new(String::new()));
    let kept = Arc::clone(&stderr_text);
    let stderr = c.stderr.take().expect("stderr");
    let stderr_reader = read_lines(stderr, (), move |_, line| {
        if let Ok(mut text) = kept.lock() {
            text.push_str(&String::from_utf8_lossy(line));
            text.push('\n');
        }
        true
    });

    let (done_tx, done): (Sender<()>, Receiver<()>) = crossbeam_channel::bounded(1);
    let expected: Vec<(String, &'static str, u64)> = gens
        .iter()
        .map(|g| (format!("{} | {} ", g.name, g.name), g.pad, g.count))
        .collect();
    let progress = Progress {
        next: vec![1; gens.len()],
        ..Progress::default()
    };
    let stdout = c.stdout.take().expect("stdout");
    let checker = read_lines(stdout, progress, move |p, line| {
        if p.error.is_some() {
            // Keep draining, so corral never blocks on this pipe.
            let _ = done_tx.try_send(());
            return true;
        }
        p.lines += 1;
        p.bytes += line.len() as u64 + 1;
        let complete = |p: &Progress| {
            p.next
                .iter()
                .zip(&expected)
                .all(|(next, (_, _, count))| *next > *count)
        };
        if complete(p) {
            p.extra += 1;
            p.error = Some(format!("a line after the last one: {}", excerpt(line)));
            return true;
        }
        let Some(k) = expected
            .iter()
            .position(|(prefix, _, _)| line.starts_with(prefix.as_bytes()))
        else {
            p.error = Some(format!(
                "line {}: not a service line: {}",
                p.lines,
                excerpt(line)
            ));
            return true;
        };
        let (prefix, pad, _) = &expected[k];
        let rest = &line[prefix.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let seq: Option<u64> = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok());
        let tail = &rest[digits..];
        let intact = tail.len() == pad.len() + 1
            && tail.first() == Some(&b' ')
            && &tail[1..] == pad.as_bytes();
        match seq {
            Some(seq) if intact => {
                if seq != p.next[k] {
                    p.error = Some(format!(
                        "line {}: {} printed {seq} where {} was due ({}): {}",
                        p.lines,
                        prefix.trim_end(),
                        p.next[k],
                        if seq > p.next[k] {
                            "lost lines"
                        } else {
                            "a repeated or reordered line"
                        },
                        excerpt(line)
                    ));
                    return true;
                }
                p.next[k] += 1;
                if complete(p) {
                    let _ = done_tx.send(());
                }
            }
            _ => p.error = Some(format!("line {}: torn: {}", p.lines, excerpt(line))),
        }
        true
    });

    // Done when every line has been checked, or at the first wrong one
    // (the checker then reports at its next line).
    let waited = done.recv_timeout(Duration::from_secs(180));
    send(c.pid, Signal::SIGTERM);
    let code = c.wait_exit(DEADLINE);
    let progress = checker.join().expect("checker thread");
    let _ = stderr_reader.join();
    let log = stderr_text.lock().map(|t| t.clone()).unwrap_or_default();
    if let Some(error) = &progress.error {
        panic!("{error}\n--- corral stderr ---\n{log}");
    }
    assert!(
        waited.is_ok(),
        "not every line arrived within 180 s: next due {:?} of {:?}, {} lines, {} bytes\n--- corral stderr ---\n{log}",
        progress.next,
        gens.iter().map(|g| g.count).collect::<Vec<_>>(),
        progress.lines,
        progress.bytes
    );
    assert_eq!(code, Ok(0), "corral's exit\n{log}");
    assert_eq!(progress.extra, 0);
    assert!(
        progress.bytes > 200_000_000,
        "only {} bytes",
        progress.bytes
    );
}

// ---------------------------------------------------------------------------
// (b) no newline at all

/// Lengths of the lines a reader saw for one service, as they came.
type Pieces = Arc<Mutex<Vec<usize>>>;

/// Keep the lengths of `prefix`'s lines, each checked to be nothing but
/// `byte` and at most `MAX_LINE` long; other lines (corral's own log) pass.
fn pieces_of(
    file: File,
    prefix: &'static str,
    byte: u8,
    seen: Pieces,
) -> JoinHandle<Option<String>> {
    read_lines(file, None, move |error: &mut Option<String>, line| {
        let Some(body) = line.strip_prefix(prefix.as_bytes()) else {
            return true;
        };
        if body.len() > MAX_LINE || body.iter().any(|&b| b != byte) {
            error.get_or_insert_with(|| format!("a bad piece: {}", excerpt(line)));
        }
        if let Ok(mut seen) = seen.lock() {
            seen.push(body.len());
        }
        true
    })
}

fn pieces(seen: &Pieces) -> Vec<usize> {
    seen.lock().map(|s| s.clone()).unwrap_or_default()
}

/// A service writes 1,049,000 `x` to stdout and 200,000 `y` to stderr,
/// no newline anywhere, then sleeps with both pipes open. corral writes
/// each full `MAX_LINE` piece as soon as it has it, prefixed, without
/// waiting for a newline or EOF; the rest (under `MAX_LINE`) comes out
/// when the pipes end at shutdown.
#[test]
fn a_stream_without_newlines_comes_out_in_bounded_pieces_before_eof() {
    const X: usize = 1_049_000;
    const Y: usize = 200_000;
    let dir = TestDir::new("integrity-nonewline");
    dir.service(
        "long",
        &format!(
            r#"command = '''
head -c {X} /dev/zero | tr '\0' x
head -c {Y} /dev/zero | tr '\0' y >&2
echo $$ > "$T/long.pid"
exec sleep 1000
'''"#
        ),
    );
    let mut c = Piped::start(dir, &[]);
    c.release_write_ends();
    let out_seen: Pieces = Arc::default();
    let err_seen: Pieces = Arc::default();
    let out_reader = pieces_of(
        c.stdout.take().expect("stdout"),
        "long | ",
        b'x',
        Arc::clone(&out_seen),
    );
    let err_reader = pieces_of(
        c.stderr.take().expect("stderr"),
        "long | ",
        b'y',
        Arc::clone(&err_seen),
    );
    let (full_x, full_y) = (X / MAX_LINE, Y / MAX_LINE);
    wait_until("every full piece, before EOF", DEADLINE, || {
        let (out, err) = (pieces(&out_seen), pieces(&err_seen));
        if out.len() >= full_x && err.len() >= full_y {
            Ok(())
        } else {
            Err(format!("stdout pieces {out:?}, stderr pieces {err:?}"))
        }
    });
    // The service still runs (`sleep`, with both pipes open): no EOF yet.
    // (It writes its pid after its last piece, so that may take a moment.)
    let pid: i32 = wait_until("long.pid", DEADLINE, || {
        let text = c.dir.read("long.pid");
        text.trim().parse().map_err(|e| format!("{text:?}: {e}"))
    });
    assert!(running(pid), "the service ended: this proves nothing");
    assert_eq!(pieces(&out_seen), vec![MAX_LINE; full_x]);
    assert_eq!(pieces(&err_seen), vec![MAX_LINE; full_y]);

    send(c.pid, Signal::SIGTERM);
    assert_eq!(c.wait_exit(DEADLINE), Ok(0));
    assert_eq!(out_reader.join().expect("reader"), None);
    assert_eq!(err_reader.join().expect("reader"), None);
    let mut want_x = vec![MAX_LINE; full_x];
    want_x.push(X % MAX_LINE);
    let mut want_y = vec![MAX_LINE; full_y];
    want_y.push(Y % MAX_LINE);
    assert_eq!(pieces(&out_seen), want_x, "stdout, after EOF");
    assert_eq!(pieces(&err_seen), want_y, "stderr, after EOF");
}

// ---------------------------------------------------------------------------
// (c) a container stdout and stderr nobody reads

/// `chatty` floods stdout and stderr; `crashy` crash-loops with no delay,
/// noting each run's pid in `$T/starts` (and printing a line on each
/// stream), so corral logs two lines per run.
fn stall_services(dir: &TestDir) {
    dir.service(
        "chatty",
        r#"command = '''
while :; do
  echo "chatty says something on stdout, padded to be a longer line"
  echo "chatty says something on stderr, padded as well" >&2
done
'''"#,
    );
    dir.service(
        "crashy",
        r#"
restart-delay = "0s"
restart-delay-max = "0s"
command = '''echo $$ >> "$T/starts"; echo "crashy run $$"; echo "crashy err $$" >&2; exit 3'''
"#,
    );
}

/// Wait until both of corral's pipes are full: no free page left (a write
/// small enough to fit in the last page still goes through).
fn wait_stalled(c: &mut Piped) {
    wait_until("corral's stdout and stderr pipes to fill", DEADLINE, || {
        if c.exited() {
            return Err("corral exited".into());
        }
        if c.full() {
            Ok(())
        } else {
            Err("still room in a pipe".into())
        }
    });
}

/// The pids `crashy` wrote so far (complete lines).
fn starts(c: &Piped) -> Vec<i32> {
    c.dir
        .lines("starts")
        .iter()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether corral's pipes stay stalled, the loop keeps reaping (no run of
/// `crashy` but the newest few stays a zombie), keeps restarting (many
/// more runs) and answers `corral ctl status`.
fn check_alive_while_stalled(c: &mut Piped) {
    let before = starts(c).len();
    // 600 runs: 1200 of corral's own lines, more than its queue holds
    // (1024), so some are dropped.
    let target = before + 600;
    wait_until(
        "crashy restarted 600 more times",
        Duration::from_secs(120),
        || {
            let n = starts(c).len();
            if n >= target {
                Ok(())
            } else {
                Err(format!("{n} runs, waiting for {target}"))
            }
        },
    );
    assert!(c.full(), "the pipes were read meanwhile?");
    wait_until("every earlier run of crashy reaped", DEADLINE, || {
        let pids = starts(c);
        let earlier = &pids[before..pids.len().saturating_sub(3)];
        let zombies: Vec<i32> = earlier.iter().copied().filter(|&p| zombie(p)).collect();
        if zombies.is_empty() {
            Ok(())
        } else {
            Err(format!("zombies: {zombies:?}"))
        }
    });
    let status = c.ctl_status();
    assert_eq!(status.code, 0, "ctl status while stalled: {status:?}");
    assert!(
        status.stdout.contains("chatty") && status.stdout.contains("crashy"),
        "{}",
        status.stdout
    );
    assert!(c.full(), "the pipes were read meanwhile?");
}

/// stdout and stderr stay full (nobody reads them) while a service floods
/// both and another crash-loops: corral goes on reaping, restarting and
/// answering `ctl status`. Once the test reads the pipes again, corral
/// says how many of its own log lines it dropped meanwhile, and it shuts
/// down normally.
#[test]
fn a_stalled_stdout_and_stderr_stall_neither_the_loop_nor_its_answers() {
    let dir = TestDir::new("integrity-stall");
    stall_services(&dir);
    let mut c = Piped::start(dir, &["--shutdown-timeout", "5s"]);
    wait_stalled(&mut c);
    check_alive_while_stalled(&mut c);
    // The output threads wait, they do not spin: well under half a core
    // over two seconds (a busy loop would take all of one).
    let ticks = clock_ticks_per_sec();
    let output_threads_cpu = |pid| {
        thread_cpu_ticks(pid, |name| name.starts_with("output"))
            .unwrap_or_else(|| panic!("no thread of corral (pid {pid}) is named output*"))
    };
    let before = output_threads_cpu(c.pid);
    thread::sleep(Duration::from_secs(2));
    let used = output_threads_cpu(c.pid) - before;
    assert!(
        used < ticks,
        "the output threads took {used} ticks of CPU in 2 s while stalled ({ticks} ticks/s)"
    );
    assert!(c.full(), "the pipes were read meanwhile?");

    // Read again: stdout is thrown away, stderr kept but for chatty's
    // and crashy's lines (chatty goes on printing until the end).
    c.release_write_ends();
    let stdout = c.stdout.take().expect("stdout");
    let stdout_reader = read_lines(stdout, (), |_, _| true);
    let own = Arc::new(Mutex::new(Vec::<String>::new()));
    let kept = Arc::clone(&own);
    let stderr = c.stderr.take().expect("stderr");
    let stderr_reader = read_lines(stderr, (), move |_, line| {
        if !line.starts_with(b"chatty | ")
            && !line.starts_with(b"crashy | ")
            && let Ok(mut own) = kept.lock()
        {
            own.push(String::from_utf8_lossy(line).into_owned());
        }
        true
    });
    let dropped_line = wait_until("corral's line about its dropped lines", DEADLINE, || {
        let own = own.lock().map(|o| o.clone()).unwrap_or_default();
        own.iter()
            .find(|l| l.contains("corral's own log lines were dropped"))
            .cloned()
            .ok_or_else(|| format!("{} of corral's lines so far", own.len()))
    });
    let dropped: u64 = dropped_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("dropped="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no dropped=N in {dropped_line:?}"));
    assert!(dropped > 0, "{dropped_line}");

    let started = Instant::now();
    send(c.pid, Signal::SIGTERM);
    let code = c.wait_exit(Duration::from_secs(30));
    let took = started.elapsed();
    let _ = stdout_reader.join();
    let _ = stderr_reader.join();
    assert_eq!(code, Ok(0));
    // The budget (5 s) plus a margin for a loaded machine.
    assert!(took < Duration::from_secs(20), "shutdown took {took:?}");
    let own = own.lock().map(|o| o.clone()).unwrap_or_default();
    assert!(
        own.iter().any(|l| l.contains("corral exiting")),
        "corral's last line is missing:\n{}",
        own.join("\n")
    );
}

/// Both pipes full and never read again: SIGTERM still ends corral within
/// its shutdown budget (the output it cannot write is given up after a
/// second), and nothing is left running.
#[test]
fn a_stalled_stdout_and_stderr_do_not_hold_up_the_shutdown() {
    let dir = TestDir::new("integrity-stall-exit");
    stall_services(&dir);
    let mut c = Piped::start(dir, &["--shutdown-timeout", "2s"]);
    wait_stalled(&mut c);
    // 200 more runs, 400 of corral's lines: more than the last page of
    // the pipe takes (a full pipe still takes small writes into it), so
    // a corral that wrote its lines itself would be blocked by now.
    let target = starts(&c).len() + 200;
    wait_until("crashy restarting while stalled", DEADLINE, || {
        let n = starts(&c).len();
        if n >= target {
            Ok(())
        } else {
            Err(format!("{n} runs, waiting for {target}"))
        }
    });
    assert!(c.full(), "the pipes were read meanwhile?");
    let tree = descendants(c.pid);
    let started = Instant::now();
    send(c.pid, Signal::SIGTERM);
    // The budget (2 s), then at most 1 s for output and 0.5 s each for the
    // control socket and the last log lines: 4 s, plus a margin.
    let code = c.wait_exit(Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(code, Ok(0), "after {took:?}");
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    // (By command line: a pid of the tree may be reused meanwhile.)
    let left: Vec<i32> = tree
        .into_iter()
        .filter(|&p| running(p) && cmdline(p).contains("chatty says"))
        .collect();
    assert!(
        left.is_empty(),
        "still running after corral exited: {left:?}"
    );
}
