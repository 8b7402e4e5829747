//! Reloads (SPEC sections 3, 5 and 8): `watch` → debounced `reload`, the
//! reload signal and the `reload = { exec = [...] }` hook, `ctl reload NAME`
//! answering only once the service is ready again, and SIGHUP / `ctl reload`
//! re-reading every definition (add, change, remove; a broken set rejected
//! whole). Real processes throughout: every claim is checked through what
//! the services themselves record (pids, environment, the signals they got).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

/// How long "exactly once" is watched for after the expected reloads came:
/// several debounce periods (100 ms), so a second reload would show.
const QUIET: Duration = Duration::from_millis(500);

/// A shell service that appends a `date +%s%N` line to `$T/NAME.hups` per
/// SIGHUP, records its pid in `$T/NAME.pids`, and otherwise waits. The
/// `sleep` child is its only child for its whole life: a HUP interrupts
/// `wait`, the trap runs, and it waits again.
fn hup_counter(name: &str) -> String {
    format!(
        r#"command = '''
trap 'date +%s%N >> "$T/{name}.hups"' HUP
echo $$ >> "$T/{name}.pids"
sleep 1000 &
child=$!
while kill -0 $child 2>/dev/null; do wait $child; done
'''
"#
    )
}

fn count(c: &Corral, rel: &str) -> usize {
    c.dir().lines(rel).len()
}

/// Wait until `rel` has `n` lines, then watch it stay at `n` for `QUIET`.
fn exactly(c: &mut Corral, rel: &str, n: usize) {
    c.wait_for(&format!("{n} line(s) in {rel}"), |c| {
        let seen = count(c, rel);
        if seen >= n {
            Ok(())
        } else {
            Err(format!("{seen}"))
        }
    });
    stays(&format!("{rel} at {n} line(s)"), QUIET, || {
        let seen = count(c, rel);
        if seen == n {
            Ok(())
        } else {
            Err(format!("{seen} lines: {:?}", c.dir().lines(rel)))
        }
    });
}

/// Wait until `rel`'s line count has not changed for `QUIET`; returns it.
/// (A deadline-bounded observation: at most `DEADLINE`.)
fn settled(c: &mut Corral, rel: &str) -> usize {
    let mut last = (count(c, rel), Instant::now());
    c.wait_for(&format!("{rel} to settle"), |c| {
        let seen = count(c, rel);
        if seen != last.0 {
            last = (seen, Instant::now());
        }
        if last.1.elapsed() >= QUIET {
            Ok(seen)
        } else {
            Err(format!("{seen} lines, still changing"))
        }
    })
}

/// When corral's watch thread read each inotify event about `name`, in
/// seconds of the day, from its JSON debug log (`--log-format json
/// --log-level debug`).
fn watch_events(c: &Corral, name: &str) -> Vec<f64> {
    let quoted = format!(r#""name":"\"{name}\"""#);
    c.stderr()
        .lines()
        .filter(|l| l.contains(r#""message":"inotify event""#) && l.contains(&quoted))
        .filter_map(|l| {
            let serde_json::Value::Object(line) = serde_json::from_str(l).ok()? else {
                return None;
            };
            // "2026-11-24T22:22:27.563475Z" -> seconds since midnight.
            let time = line.get("timestamp")?.as_str()?.split_once('T')?.1;
            let mut parts = time.trim_end_matches('Z').split(':');
            let (h, m, s): (f64, f64, f64) = (
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
            );
            Some(h * 3600.0 + m * 60.0 + s)
        })
        .collect()
}

/// `watch` + `reload = { signal = "HUP" }`: a burst of in-place writes (10
/// writes over ~50 ms) is one HUP; replacing the file by rename (write a
/// temporary file, `mv` it over, as templating tools do) is one more. The
/// service is never restarted.
///
/// On a loaded machine the test thread (or corral's watch thread) can be
/// held up for longer than the 100 ms debounce in the middle of a burst;
/// corral then rightly sees two bursts. So the number of HUPs a burst must
/// cause is computed from when corral's watch thread read the events (its
/// JSON debug log): one, plus one per pause of 100 ms or more (a 90-110 ms
/// pause may go either way). A burst with such a pause proves little, so it
/// is tried again, up to 3 times, until one has none.
#[test]
fn watched_file_changes_send_the_reload_signal_once_per_burst() {
    let dir = TestDir::new("watch-hup");
    fs::create_dir_all(dir.join("etc")).expect("mkdir etc");
    dir.write("etc/app.conf", "v0\n");
    let conf = dir.join("etc/app.conf");
    dir.service(
        "w",
        &format!(
            "{}reload = {{ signal = \"HUP\" }}\nwatch = [\"{}\"]\n",
            hup_counter("w"),
            conf.display()
        ),
    );
    let mut c = dir
        .corral()
        .ctl_socket()
        .args(["--log-format", "json", "--log-level", "debug"])
        .start();
    let pid = c.wait_pids("w.pids", 1)[0];
    c.wait_state("w", "running");

    let mut clean = None;
    for attempt in 1..=3 {
        let (hups_before, events_before) =
            (count(&c, "w.hups"), watch_events(&c, "app.conf").len());
        // A burst of in-place writes, each an open/write/close of the file
        // itself. (The 5 ms pauses shape the burst; nothing is awaited by them.)
        let start = Instant::now();
        let mut written = Vec::new();
        for i in 1..=10 {
            fs::write(&conf, format!("v{i}\n")).expect("write in place");
            written.push(start.elapsed().as_secs_f64() * 1000.0);
            std::thread::sleep(Duration::from_millis(5));
        }
        c.wait_for("a HUP after the burst", |c| {
            if count(c, "w.hups") > hups_before {
                Ok(())
            } else {
                Err("none yet".into())
            }
        });
        let hups = settled(&mut c, "w.hups") - hups_before;
        let events: Vec<f64> = watch_events(&c, "app.conf").split_off(events_before);
        let gaps: Vec<f64> = events.windows(2).map(|w| (w[1] - w[0]) * 1000.0).collect();
        let least = 1 + gaps.iter().filter(|&&g| g >= 110.0).count();
        let most = 1 + gaps.iter().filter(|&&g| g >= 90.0).count();
        let evidence = format!(
            "attempt {attempt}: {hups} HUP(s); the test wrote at {written:.1?} ms; corral read {} events, gaps {gaps:.1?} ms; HUP stamps {:?}",
            events.len(),
            c.dir().lines("w.hups")
        );
        assert!(
            (least..=most).contains(&hups),
            "one burst must be {least}..={most} HUP(s): {evidence}"
        );
        eprintln!("{evidence}");
        if most == 1 {
            clean = Some(start.elapsed());
            break;
        }
    }
    assert!(
        clean.is_some(),
        "3 bursts in a row were interrupted by a pause of 90 ms or more: the machine is too busy to tell"
    );
    let hups = count(&c, "w.hups");

    // Replaced by rename: a new inode under the same name.
    let tmp = c.dir().join("etc/app.conf.tmp");
    fs::write(&tmp, "v11\n").expect("write tmp");
    let renamed = epoch_nanos();
    fs::rename(&tmp, &conf).expect("rename over the watched file");
    exactly(&mut c, "w.hups", hups + 1);
    let got: i128 = c.dir().lines("w.hups")[hups]
        .trim()
        .parse()
        .expect("a date +%s%N stamp");
    eprintln!("rename -> HUP in {:.1} ms", (got - renamed) as f64 / 1e6);

    // A third change after the file was replaced: still watched (the watch
    // is on the directory, not on the old inode).
    fs::write(&conf, "v12\n").expect("write in place again");
    exactly(&mut c, "w.hups", hups + 2);

    assert_eq!(c.dir().pids("w.pids"), [pid], "w was restarted");
    let status = c.ctl_service("w").expect("w");
    assert_eq!(
        (status["pid"].as_i64(), status["restarts"].as_u64()),
        (Some(pid.into()), Some(0)),
        "{status}"
    );
    assert_eq!(
        c.stderr_lines(&[
            r#""message":"reloading""#,
            r#""service":"w""#,
            r#""signal":"SIGHUP""#
        ])
        .len(),
        hups + 2,
        "{}",
        c.stderr()
    );
    assert_eq!(c.stop(), 0);
}

fn epoch_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// `reload = { exec = [...] }`: the hook runs with the service's environment
/// and `$MAINPID` set to the service's pid; `ctl reload` answers when it is
/// done; a failing hook makes `ctl reload` exit 1 with the reason, and the
/// service keeps running with the same pid.
#[test]
fn the_reload_hook_gets_mainpid_and_its_failure_is_reported() {
    let dir = TestDir::new("reload-hook");
    dir.write("hook.rc", "0\n");
    dir.service(
        "x",
        r#"env = { FOO = "from-env" }
reload = { exec = ["sh", "-c", 'echo "$MAINPID $FOO" >> "$T/hook.log"; exit $(cat "$T/hook.rc")'] }
command = '''echo $$ >> "$T/x.pids"; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().ctl_socket().start();
    let pid = c.wait_pids("x.pids", 1)[0];
    c.wait_state("x", "running");

    let ok = c.ctl(&["reload", "x"]);
    assert_eq!(
        (ok.code, ok.stdout.as_str()),
        (0, "x: reloaded\n"),
        "{ok:?}"
    );
    // Answered once the hook is done: its line is there already.
    assert_eq!(c.dir().lines("hook.log"), [format!("{pid} from-env")]);

    c.dir().write("hook.rc", "3\n");
    let failed = c.ctl(&["reload", "x"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert_eq!(
        failed.stderr, "corral ctl: x: reload hook failed: exit 3\n",
        "{failed:?}"
    );
    assert_eq!(c.dir().lines("hook.log").len(), 2);
    c.wait_stderr_line(&["reload hook failed", "service=x"]);
    let status = c.ctl_service("x").expect("x");
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["pid"], pid, "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    assert!(c.process_running(pid));
    assert_eq!(c.dir().pids("x.pids"), [pid]);
    assert_eq!(c.stop(), 0);
}

/// A TCP server for `reload_waits_for_tcp_readiness_again`: on SIGUSR1 it
/// closes its listening socket, then listens again only once
/// `$T/t.reopen.N` exists (N: how many times it closed).
const TCP_SERVICE: &str = r#"#!/usr/bin/env python3
import os, signal, socket, sys, time
T, port = os.environ["T"], int(sys.argv[1])
asked = 0
def on_usr1(signum, frame):
    global asked
    asked += 1
signal.signal(signal.SIGUSR1, on_usr1)
def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    s.setblocking(False)
    return s
with open(f"{T}/t.pids", "a") as f:
    f.write(f"{os.getpid()}\n")
server, closes = listen(), 0
while True:
    try:
        while True:
            conn, _ = server.accept()
            conn.close()
    except (BlockingIOError, InterruptedError):
        pass
    if asked > closes:
        server.close()
        closes += 1
        while not os.path.exists(f"{T}/t.reopen.{closes}"):
            time.sleep(0.01)
        server = listen()
    time.sleep(0.01)
"#;

/// `ctl reload NAME` of a service with tcp readiness: the hook tells the
/// server to close its port (and waits until it is closed); corral probes
/// again; `ctl reload` answers only once the port answers again. Not ready
/// again within `ready-timeout`: `ctl reload` exits 1 with the reason and
/// the service is restarted.
#[test]
fn reload_waits_for_tcp_readiness_again() {
    let port = free_port();
    let dir = TestDir::new("reload-tcp");
    let server = dir.executable("t.py", TCP_SERVICE);
    dir.service(
        "t",
        &format!(
            r#"ready = {{ tcp = "127.0.0.1:{port}" }}
ready-timeout = "3s"
reload = {{ exec = ["bash", "-c", 'kill -USR1 $MAINPID; while (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.01; done; echo closed >> "$T/hook.log"'] }}
command = ["{}", "{port}"]
"#,
            server.display()
        ),
    );
    let mut c = dir.corral().ctl_socket().start();
    let pid = c.wait_pids("t.pids", 1)[0];
    c.wait_state("t", "ready");

    let mut reload = c.ctl_background(&["reload", "t"]);
    c.wait_file("hook.log");
    stays(
        "ctl reload waiting while the port is closed",
        Duration::from_millis(400),
        || {
            if !reload.is_running() {
                return Err(format!("ctl reload returned: {}", reload.stderr()));
            }
            let s = c.ctl_service("t").expect("t");
            if s["ready"] != false || s["detail"] != "reloading" {
                return Err(s.to_string());
            }
            Ok(())
        },
    );
    let reopened = Instant::now();
    c.dir().write("t.reopen.1", "");
    let ran = reload.finish(DEADLINE);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "t: reloaded\n"),
        "{ran:?}"
    );
    assert!(
        port_open(port),
        "ctl reload answered, but the port is closed"
    );
    eprintln!(
        "ready again {:?} after the port reopened",
        reopened.elapsed()
    );
    let status = c.ctl_service("t").expect("t");
    assert_eq!(
        (status["state"].as_str(), status["pid"].as_i64()),
        (Some("ready"), Some(pid.into())),
        "{status}"
    );

    // Not reopened this time: the reload fails at ready-timeout (3 s).
    let failed = c.ctl(&["reload", "t"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert_eq!(
        failed.stderr, "corral ctl: t: not ready again within ready-timeout 3.0s after a reload\n",
        "{failed:?}"
    );
    assert!(failed.took >= Duration::from_millis(2900), "{failed:?}");
    c.wait_stderr_line(&[
        "not ready again within ready-timeout 3.0s after a reload, restarting",
        "service=t",
    ]);
    // ... and the service starts again, as after a failed start.
    let pids = c.wait_pids("t.pids", 2);
    assert_ne!(pids[0], pids[1]);
    c.wait_service("t", "ready after its restart", |s| {
        s["state"] == "ready" && s["restarts"] == 1
    });
    assert_eq!(c.stop(), 0);
}

/// An sd_notify service: READY=1 at start (with `$START_GATE` set, only once
/// `$T/n.started` exists); on SIGHUP, RELOADING=1, then
/// READY=1 once `$T/n.release.N` exists (N: the reload's number). Each
/// reload is recorded in `$T/n.hups`; with `$CONF` set, the configuration it
/// "loads" at each reload (the file's content) is appended to `$T/n.loaded`.
const NOTIFY_SERVICE: &str = r#"#!/usr/bin/env python3
import os, signal, socket, time
T = os.environ["T"]
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def notify(message):
    sock.sendto(message.encode(), addr)
hups = 0
def on_hup(signum, frame):
    global hups
    hups += 1
signal.signal(signal.SIGHUP, on_hup)
with open(f"{T}/n.pids", "a") as f:
    f.write(f"{os.getpid()}\n")
if "START_GATE" in os.environ:
    while not os.path.exists(f"{T}/n.started"):
        time.sleep(0.01)
notify("READY=1\nSTATUS=up")
done = 0
while True:
    if done < hups:
        done += 1
        # The configuration first: once n.hups shows this reload, n.loaded
        # already holds what it read.
        if "CONF" in os.environ:
            with open(os.environ["CONF"]) as conf, open(f"{T}/n.loaded", "a") as f:
                f.write(conf.read())
        with open(f"{T}/n.hups", "a") as f:
            f.write(f"{done}\n")
        notify(f"RELOADING=1\nSTATUS=reloading {done}")
        while not os.path.exists(f"{T}/n.release.{done}"):
            time.sleep(0.01)
        notify(f"READY=1\nSTATUS=reloaded {done}")
    time.sleep(0.01)
"#;

/// `ctl reload NAME` of a `notify = true` service with a reload signal:
/// answered only after the service said READY=1 again; `ctl wait --ready`
/// meanwhile waits too.
#[test]
fn reload_waits_for_ready_again_by_notify() {
    let dir = TestDir::new("reload-notify");
    let script = dir.executable("n.py", NOTIFY_SERVICE);
    dir.service(
        "n",
        &format!(
            r#"ready = {{ notify = true }}
reload = {{ signal = "HUP" }}
command = ["{}"]
"#,
            script.display()
        ),
    );
    let mut c = dir.corral().ctl_socket().start();
    let pid = c.wait_pids("n.pids", 1)[0];
    c.wait_state("n", "ready");

    let mut reload = c.ctl_background(&["reload", "n"]);
    c.wait_file("n.hups");
    c.wait_service("n", "STATUS=reloading 1", |s| {
        s["notify_status"] == "reloading 1"
    });
    let mut wait_ready = c.ctl_background(&["wait", "n", "--ready"]);
    stays(
        "ctl reload waiting for READY=1",
        Duration::from_millis(400),
        || {
            if !reload.is_running() {
                return Err(format!("ctl reload returned: {}", reload.stderr()));
            }
            if !wait_ready.is_running() {
                return Err("ctl wait --ready returned during the reload".into());
            }
            let s = c.ctl_service("n").expect("n");
            if s["ready"] != false || s["state"] != "running" || s["detail"] != "reloading" {
                return Err(s.to_string());
            }
            Ok(())
        },
    );
    let released = epoch_now();
    c.dir().write("n.release.1", "");
    let ran = reload.finish(DEADLINE);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "n: reloaded\n"),
        "{ran:?}"
    );
    let waited = wait_ready.finish(DEADLINE);
    assert_eq!(waited.code, 0, "{waited:?}");
    assert!(epoch_now() > released);
    let status = c.ctl_service("n").expect("n");
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["pid"], pid, "{status}");
    assert_eq!(status["notify_status"], "reloaded 1", "{status}");
    assert_eq!(c.dir().pids("n.pids"), [pid]);
    assert_eq!(c.stop(), 0);
}

/// The names listed by `ctl status`, sorted (a service added by a reload is
/// listed after the others).
fn names(c: &Corral) -> Vec<String> {
    let mut names: Vec<String> = c
        .ctl_status()
        .iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    names.sort();
    names
}

fn remove(path: &Path) {
    fs::remove_file(path).unwrap_or_else(|e| panic!("rm {}: {e}", path.display()));
}

/// b's runs: `pid greeting` per start.
fn runs(c: &Corral, name: &str) -> Vec<(i32, String)> {
    c.dir()
        .lines(&format!("{name}.runs"))
        .iter()
        .map(|l| {
            let (pid, word) = l.split_once(' ').unwrap_or((l, ""));
            (pid.parse().expect("pid"), word.to_string())
        })
        .collect()
}

fn greeter(name: &str, greeting: &str) -> String {
    format!(
        r#"env = {{ GREETING = "{greeting}" }}
command = '''echo "$$ $GREETING" >> "$T/{name}.runs"; exec sleep 1000'''
"#
    )
}

/// SIGHUP after adding d, changing b (its env) and removing c: d starts, b
/// restarts with a new pid and the new env, c is stopped and gone from
/// `ctl status`, a is untouched, and r (which defines a reload) gets its
/// reload signal. Then `ctl reload` does the same and prints what changed.
#[test]
fn sighup_and_ctl_reload_apply_added_changed_and_removed_definitions() {
    let dir = TestDir::new("sighup-config");
    dir.service("a", &sleeper("a"));
    dir.service("b", &greeter("b", "hello"));
    let c_file = dir.service("c", &sleeper("c"));
    dir.service(
        "r",
        &format!("{}reload = {{ signal = \"HUP\" }}\n", hup_counter("r")),
    );
    let mut c = dir.corral().ctl_socket().start();
    let a = c.wait_pids("a.pids", 1)[0];
    let cpid = c.wait_pids("c.pids", 1)[0];
    let r = c.wait_pids("r.pids", 1)[0];
    c.wait_for("b's first run", |c| {
        if runs(c, "b").len() == 1 {
            Ok(())
        } else {
            Err("none".into())
        }
    });
    let b = runs(&c, "b")[0].0;
    assert_eq!(names(&c), ["a", "b", "c", "r"]);

    c.dir().service("d", &sleeper("d"));
    c.dir().service("b", &greeter("b", "bonjour"));
    remove(&c_file);
    let hup = Instant::now();
    c.signal(Signal::SIGHUP);
    let d = c.wait_pids("d.pids", 1)[0];
    let d_started = hup.elapsed();
    c.wait_for("b's second run", |c| {
        let runs = runs(c, "b");
        if runs.len() >= 2 {
            Ok(())
        } else {
            Err(format!("{runs:?}"))
        }
    });
    let b_runs = runs(&c, "b");
    assert_eq!(b_runs.len(), 2, "{b_runs:?}");
    assert_ne!(b_runs[1].0, b, "b kept its pid");
    assert_eq!(b_runs[1].1, "bonjour", "b restarted without its new env");
    assert!(!running(b), "b's old run ({b}) is still there");
    c.wait_for("c to be gone", |_| {
        if running(cpid) {
            Err(format!("{cpid} alive"))
        } else {
            Ok(())
        }
    });
    c.wait_for("c gone from ctl status", |c| {
        let names = names(c);
        if names == ["a", "b", "d", "r"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    exactly(&mut c, "r.hups", 1);
    assert_eq!(c.dir().pids("a.pids"), [a], "a was restarted");
    assert_eq!(
        c.dir().pids("r.pids"),
        [r],
        "r was restarted instead of reloaded"
    );
    let a_status = c.ctl_service("a").expect("a");
    assert_eq!(
        (a_status["pid"].as_i64(), a_status["restarts"].as_u64()),
        (Some(a.into()), Some(0))
    );
    assert!(running(a) && running(d));
    for line in [
        "reload: d: added",
        "reload: b: definition changed, restarting",
        "reload: c: removed",
        "reload: r: reloaded",
    ] {
        assert_eq!(
            c.stderr_lines(&[line]).len(),
            1,
            "no {line:?} in\n{}",
            c.stderr()
        );
    }
    eprintln!("SIGHUP -> d started (seen by the test) in {d_started:?}");

    // `ctl reload`: the same, answered with what changed.
    c.dir().service("e", &sleeper("e"));
    c.dir().service("a", &greeter("a", "changed"));
    remove(&c.dir().join("services/d.toml"));
    let ran = c.ctl(&["reload"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let mut printed = ran.lines();
    printed.sort();
    assert_eq!(
        printed,
        [
            "a: definition changed, restarting",
            "d: removed",
            "e: added",
            "r: reloaded"
        ],
        "{ran:?}"
    );
    c.wait_pids("e.pids", 1);
    c.wait_for("a's run with the new definition", |c| {
        let runs = runs(c, "a");
        if runs.len() == 1 {
            Ok(())
        } else {
            Err(format!("{runs:?}"))
        }
    });
    assert_eq!(runs(&c, "a")[0].1, "changed");
    assert!(!c.process_running(a), "a's old run ({a}) is still there");
    c.wait_for("d to be gone", |_| {
        if running(d) {
            Err(format!("{d} alive"))
        } else {
            Ok(())
        }
    });
    c.wait_for("d gone from ctl status", |c| {
        let names = names(c);
        if names == ["a", "b", "e", "r"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    exactly(&mut c, "r.hups", 2);
    assert_eq!(
        runs(&c, "b").len(),
        2,
        "b restarted though it did not change"
    );
    assert_eq!(c.stop(), 0);
}

/// SIGHUP with one broken file (and one new good one): nothing changes at all
/// (same pids, same services, the new one not started, no service reloaded),
/// the error is in corral's log as path:line:col; `ctl reload` exits 1 with
/// the errors.
#[test]
fn a_broken_file_rejects_the_whole_new_set() {
    let dir = TestDir::new("sighup-broken");
    dir.service("a", &sleeper("a"));
    let b_file = dir.service("b", &greeter("b", "hello"));
    dir.service(
        "r",
        &format!("{}reload = {{ signal = \"HUP\" }}\n", hup_counter("r")),
    );
    let mut c = dir.corral().ctl_socket().start();
    let a = c.wait_pids("a.pids", 1)[0];
    let r = c.wait_pids("r.pids", 1)[0];
    c.wait_for("b's first run", |c| {
        if runs(c, "b").len() == 1 {
            Ok(())
        } else {
            Err("none".into())
        }
    });
    let b = runs(&c, "b")[0].0;
    c.wait_state("r", "running");

    c.dir().service("f", &sleeper("f"));
    c.dir().service("b", "comand = \"sleep 1000\"\n");
    c.signal(Signal::SIGHUP);
    c.wait_stderr_line(&["new service definitions rejected", "the running ones stay"]);
    let path = format!("{}:1:1:", b_file.display());
    let error = c.wait_stderr_line(&[&path, "unknown key `comand`"]);
    assert!(error.contains("did you mean `command`"), "{error}");
    let unchanged = |c: &Corral| -> Result<(), String> {
        let names = names(c);
        if names != ["a", "b", "r"] {
            return Err(format!("services now {names:?}"));
        }
        if c.dir().exists("f.pids") {
            return Err("f was started".into());
        }
        if runs(c, "b") != [(b, "hello".to_string())] || !running(b) {
            return Err(format!("b changed: {:?}", runs(c, "b")));
        }
        if c.dir().pids("a.pids") != [a] || c.dir().pids("r.pids") != [r] {
            return Err("a or r restarted".into());
        }
        if c.dir().exists("r.hups") {
            return Err("r was reloaded by a rejected set".into());
        }
        Ok(())
    };
    stays("nothing changed after the rejected SIGHUP", QUIET, || {
        unchanged(&c)
    });

    let ran = c.ctl(&["reload"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.stderr
            .starts_with("corral ctl: new service definitions rejected (")
            && ran.stderr.contains("nothing changed:")
            && ran.stderr.contains(&path)
            && ran.stderr.contains("unknown key `comand`"),
        "{ran:?}"
    );
    stays(
        "nothing changed after the rejected ctl reload",
        QUIET,
        || unchanged(&c),
    );
    assert_eq!(c.stop(), 0);
}

/// A watched file changed *while a reload is in flight* (the service got its
/// signal and has not said READY=1 yet) must still be reloaded: the service
/// may have read the file before that change. This is haproxy's case when a
/// templating tool writes its configuration twice, 100-200 ms apart: the
/// second write lands during the reload the first one started.
#[test]
fn a_change_during_a_reload_is_reloaded_too() {
    let dir = TestDir::new("watch-during-reload");
    fs::create_dir_all(dir.join("etc")).expect("mkdir etc");
    dir.write("etc/app.conf", "v0\n");
    let conf = dir.join("etc/app.conf");
    let script = dir.executable("n.py", NOTIFY_SERVICE);
    dir.service(
        "n",
        &format!(
            r#"ready = {{ notify = true }}
reload = {{ signal = "HUP" }}
watch = ["{conf}"]
env = {{ CONF = "{conf}" }}
command = ["{}"]
"#,
            script.display(),
            conf = conf.display()
        ),
    );
    // The second reload, if it comes, may complete at once.
    dir.write("n.release.2", "");
    // Debug: corral logs each change it receives from the watch thread.
    let mut c = dir
        .corral()
        .ctl_socket()
        .args(["--log-level", "debug"])
        .start();
    c.wait_state("n", "ready");

    fs::write(&conf, "v1\n").expect("write v1");
    c.wait_file("n.hups");
    assert_eq!(c.dir().lines("n.loaded"), ["v1"]);
    c.wait_service("n", "reloading", |s| s["detail"] == "reloading");
    // The service has read v1 and is still reloading: now v2 arrives.
    let before = c.stderr_lines(&["watched path changed"]).len();
    fs::write(&conf, "v2\n").expect("write v2");
    c.wait_for("corral to see the change to v2", |c| {
        let seen = c
            .stderr_lines(&["watched path changed", "service=\"n\""])
            .len();
        if seen > before {
            Ok(())
        } else {
            Err(format!("{seen} changes seen"))
        }
    });
    c.dir().write("n.release.1", "");
    c.wait_for("v2 to be loaded by a second reload", |c| {
        let loaded = c.dir().lines("n.loaded");
        if loaded.last().is_some_and(|l| l == "v2") {
            Ok(())
        } else {
            Err(format!(
                "{} reload(s), loaded {loaded:?}; status {:?}",
                count(c, "n.hups"),
                c.ctl_service("n").map(|s| s.to_string())
            ))
        }
    });
    exactly(&mut c, "n.hups", 2);
    assert_eq!(c.stop(), 0);
}

/// The same while the service is starting (not ready yet): it may have read
/// its configuration already, so a change then is reloaded once it is ready.
#[test]
fn a_change_while_starting_is_reloaded_once_ready() {
    let dir = TestDir::new("watch-during-start");
    fs::create_dir_all(dir.join("etc")).expect("mkdir etc");
    dir.write("etc/app.conf", "v0\n");
    let conf = dir.join("etc/app.conf");
    let script = dir.executable("n.py", NOTIFY_SERVICE);
    dir.service(
        "n",
        &format!(
            r#"ready = {{ notify = true }}
reload = {{ signal = "HUP" }}
watch = ["{conf}"]
env = {{ CONF = "{conf}", START_GATE = "1" }}
command = ["{}"]
"#,
            script.display(),
            conf = conf.display()
        ),
    );
    dir.write("n.release.1", "");
    let mut c = dir
        .corral()
        .ctl_socket()
        .args(["--log-level", "debug"])
        .start();
    c.wait_pids("n.pids", 1);
    c.wait_state("n", "starting");
    fs::write(&conf, "v1\n").expect("write v1");
    c.wait_stderr_line(&["watched path changed", "service=\"n\""]);
    assert!(!c.dir().exists("n.hups"), "reloaded before it was ready");
    c.dir().write("n.started", "");
    exactly(&mut c, "n.hups", 1);
    assert_eq!(c.dir().lines("n.loaded"), ["v1"]);
    c.wait_state("n", "ready");
    assert_eq!(c.stop(), 0);
}
