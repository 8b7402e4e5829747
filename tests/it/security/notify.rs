//! Attacks on readiness messages (SPEC 12, "Readiness messages"): corral's
//! sd_notify sockets are abstract, so anyone in the network namespace can
//! send to them, and their names are listed in `/proc/net/unix`. A
//! datagram must count only if its sender is the service's own process (its
//! group, or below it), and `MAINPID=` must name such a process. The
//! attacker is a service running as uid 65534, or a process the test starts
//! with `setpriv --reuid 65534`; corral is PID 1 unless said otherwise.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// What an unprivileged process can do to corral's sd_notify sockets
/// (`$T/attack COMMAND ...`):
///
/// - `send NAME LINE...`: one datagram to NAME (`self`: `$NOTIFY_SOCKET`),
///   then a barrier (sd_notify_barrier(3): an fd passed along, waiting until
///   corral closed it), so the sender is alive while corral checks it.
/// - `find SERVICE FILE`: find SERVICE's socket in `/proc/net/unix` (the one
///   of this corral: same prefix as our own `$NOTIFY_SOCKET`) and write its
///   name to FILE.
/// - `join PGID FILE NAME LINE...`: try to join process group PGID
///   (setpgid(2)), write the outcome to FILE, then send as `send` does.
/// - `flood NAME N FILE LINE...`: N datagrams, as fast as they are taken;
///   FILE gets `started`, then `done` once all are sent.
const ATTACK: &str = r#"#!/usr/bin/python3
import array, os, select, socket, sys, time

def addr(name):
    if name == "self":
        name = os.environ["NOTIFY_SOCKET"]
    return "\0" + name.lstrip("@")

def send(name, lines):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto("\n".join(lines).encode(), addr(name))
    r, w = os.pipe()
    fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))]
    s.sendmsg([b"BARRIER=1"], fds, 0, addr(name))
    os.close(w)
    select.select([r], [], [], 5)

def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "send":
    send(args[0], args[1:])
elif cmd == "find":
    mine = os.environ["NOTIFY_SOCKET"].lstrip("@")
    prefix = "@" + mine.rsplit("/", 2)[0] + "/" + args[0] + "/"
    deadline = time.time() + 20
    while time.time() < deadline:
        with open("/proc/net/unix") as f:
            names = [l.split()[7] for l in f if len(l.split()) >= 8]
        found = [n for n in names if n.startswith(prefix)]
        if found:
            write(args[1], found[0])
            break
        time.sleep(0.01)
elif cmd == "join":
    try:
        os.setpgid(0, int(args[0]))
        outcome = "joined"
    except OSError as e:
        outcome = "refused: " + os.strerror(e.errno)
    write(args[1], outcome)
    send(args[2], args[3:])
elif cmd == "flood":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    data = "\n".join(args[3:]).encode()
    write(args[2], "started")
    for _ in range(int(args[1])):
        s.sendto(data, addr(args[0]))
    write(args[2], "done")
"#;

/// A test dir with `$T/attack` and `$T/pub`, a directory uid 65534 may
/// write its evidence to.
fn setup(name: &str) -> TestDir {
    let dir = TestDir::new(name);
    dir.executable("attack", ATTACK);
    fs::create_dir(dir.join("pub")).expect("mkdir pub");
    fs::set_permissions(dir.join("pub"), fs::Permissions::from_mode(0o777)).expect("chmod pub");
    dir
}

/// A root service that records each SIGHUP it gets in `$T/victim.hup`.
const VICTIM: &str = r#"command = '''
trap 'echo HUP >> "$T/victim.hup"' HUP
echo $$ > "$T/victim.pid"
while :; do sleep 1 & wait; done
'''
"#;

/// An unprivileged notify service with a HUP reload: on SIGHUP it records
/// it in `$T/pub/hup` (with its own pid) and says READY=1 again. Before its
/// own READY=1 it sends `MAINPID=` of each of `targets` (shell words), each
/// in a datagram of its own (only the first drop of a service is logged
/// with its reason; the next ones in 10 s are counted).
fn evil(targets: &str) -> String {
    format!(
        r#"user = "65534"
ready = {{ notify = true }}
ready-timeout = "5s"
reload = {{ signal = "HUP" }}
command = '''
trap 'echo $$ >> "$T/pub/hup"; "$T/attack" send self READY=1' HUP
while [ ! -s "$T/victim.pid" ]; do sleep 0.01; done
for target in {targets}; do "$T/attack" send self "MAINPID=$target"; done
"$T/attack" send self READY=1
while :; do sleep 1 & wait; done
'''
"#
    )
}

fn pid_in(dir: &TestDir, rel: &str) -> i32 {
    dir.read(rel)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{rel}: not a pid: {:?}", dir.read(rel)))
}

/// `ctl reload NAME` (HUP to its main pid), then `check` of what the HUP
/// must not have reached; then the reload must have succeeded, its HUP
/// reaching the service itself.
fn reload_then(c: &mut Corral, name: &str, check: impl FnOnce(&Corral)) {
    let pid = c.ctl_service(name).expect("listed")["pid"].clone();
    let ran = c.ctl(&["reload", name]);
    check(c);
    assert_eq!(ran.code, 0, "ctl reload {name}: {ran:?}");
    let hups = c.dir().pids("pub/hup");
    assert_eq!(
        hups.last().map(|&p| serde_json::json!(p)),
        Some(pid),
        "{hups:?}"
    );
}

/// corral serves on: `ctl status` answers, and SIGTERM stops it, exit 0.
fn still_serving_then_stop(c: &mut Corral) {
    let status = c.ctl(&["status"]);
    assert_eq!(status.code, 0, "ctl status: {status:?}");
    assert_eq!(c.stop(), 0, "SIGTERM: the normal exit");
}

/// A definition added after the start: it runs only if corral re-read the
/// definitions (what a SIGHUP to corral does).
fn add_canary(dir: &TestDir) {
    dir.service(
        "canary",
        "command = 'echo $$ > \"$T/canary.pid\"; exec sleep 1000'\n",
    );
}

/// No definition was read again: no SIGHUP reached corral.
fn corral_was_not_signalled(c: &Corral) {
    stays(
        "corral not reloading its definitions",
        Duration::from_millis(500),
        || {
            if c.dir().exists("canary.pid") {
                return Err("the canary service started".into());
            }
            // A service's reload names its signal too: corral's own SIGHUP
            // line names no service.
            let lines: Vec<String> = c
                .stderr_lines(&["SIGHUP"])
                .into_iter()
                .filter(|l| !l.contains("service="))
                .collect();
            if !lines.is_empty() {
                return Err(format!("{lines:?}"));
            }
            Ok(())
        },
    );
}

/// Attack 1: an unprivileged service says another service's pid is its main
/// pid; its reload must not signal that service.
#[test]
fn mainpid_of_another_service_is_refused() {
    let dir = setup("notify-mainpid-other");
    dir.service("victim", VICTIM);
    dir.service("evil", &evil(r#""$(cat "$T/victim.pid")""#));
    let mut c = dir.corral().pid1().ctl_socket().start();
    c.wait_state("evil", "ready");
    let victim = pid_in(c.dir(), "victim.pid");
    reload_then(&mut c, "evil", |c| {
        stays(
            "victim not signalled",
            Duration::from_millis(300),
            || match c.dir().exists("victim.hup") {
                true => Err("victim got SIGHUP".into()),
                false => Ok(()),
            },
        );
    });
    assert!(c.process_running(victim), "the victim still runs");
    let status = c.ctl_service("victim").expect("victim listed");
    assert_eq!(status["pid"], victim, "{status}");
    let line = c.wait_stderr_line(&[
        "notify datagram dropped",
        "service=evil",
        "uid=65534",
        &format!("MAINPID={victim} is not a process of the service"),
    ]);
    assert!(line.contains("WARN"), "{line}");
    still_serving_then_stop(&mut c);
}

/// Attack 2: `MAINPID=1`, with corral as PID 1: a reload would be a SIGHUP
/// to corral, i.e. a reload of every definition.
#[test]
fn mainpid_1_is_refused_as_pid_1() {
    let dir = setup("notify-mainpid-1");
    dir.service("victim", VICTIM);
    dir.service("evil", &evil("1"));
    let mut c = dir.corral().pid1().ctl_socket().start();
    c.wait_state("evil", "ready");
    add_canary(c.dir());
    reload_then(&mut c, "evil", corral_was_not_signalled);
    let dropped = c.stderr_lines(&["notify datagram dropped", "service=evil"]);
    assert!(
        dropped.iter().any(|l| l.contains("MAINPID=1 names PID 1")),
        "{dropped:?}"
    );
    still_serving_then_stop(&mut c);
}

/// Ends a process the test started, by its pid, even when the test fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Attack 3 (corral as a subreaper, not PID 1): `MAINPID=` of a host
/// process outside corral, and of corral itself.
#[test]
fn mainpid_of_a_host_process_or_of_corral_is_refused_as_a_subreaper() {
    let dir = setup("notify-mainpid-host");
    let mut host = Guard(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    );
    let host_pid = host.0.id() as i32;
    dir.write("host.pid", &format!("{host_pid}\n"));
    dir.service("victim", VICTIM);
    dir.service("evil", &evil(r#""$(cat "$T/host.pid")""#));
    // A subreaper's services have it as their parent.
    dir.service("evil2", &evil(r#""$PPID""#));
    let mut c = dir.corral().ctl_socket().start();
    c.wait_state("evil", "ready");
    c.wait_state("evil2", "ready");
    add_canary(c.dir());
    let host_alive = |host: &mut Guard| matches!(host.0.try_wait(), Ok(None));
    reload_then(&mut c, "evil", |_| {
        stays(
            "the host process alive",
            Duration::from_millis(300),
            || match host_alive(&mut host) {
                true => Ok(()),
                false => Err("the host process was signalled".into()),
            },
        )
    });
    reload_then(&mut c, "evil2", corral_was_not_signalled);
    assert!(host_alive(&mut host), "the host process was signalled");
    let dropped = c.stderr_lines(&["notify datagram dropped", "service=evil "]);
    assert!(
        dropped.iter().any(|l| l.contains(&format!(
            "MAINPID={host_pid} is not a process of the service"
        ))),
        "{dropped:?}"
    );
    let dropped = c.stderr_lines(&["notify datagram dropped", "service=evil2 "]);
    assert!(
        dropped
            .iter()
            .any(|l| l.contains("MAINPID= names corral itself")),
        "corral's pid {}: {dropped:?}",
        c.pid()
    );
    still_serving_then_stop(&mut c);
}

/// Attack 4: a forged READY=1 for a service that is not ready, from an
/// unprivileged service (from its own process, and after trying to join
/// the victim's process group), and from a host process outside corral's
/// PID namespace: the dependant must not start.
#[test]
fn forged_ready_does_not_start_a_dependant() {
    let dir = setup("notify-forged-ready");
    dir.service(
        "slow",
        r#"ready = { notify = true }
command = '''
echo $$ > "$T/pub/slow.pid"
exec sleep 1000
'''
"#,
    );
    dir.service(
        "dependant",
        r#"after = ["slow"]
command = 'date > "$T/dependant.start"; exec sleep 1000'
"#,
    );
    dir.service(
        "attacker",
        r#"user = "65534"
ready = { notify = true }
command = '''
"$T/attack" send self READY=1
"$T/attack" find slow "$T/pub/slow.socket"
while [ ! -s "$T/pub/slow.pid" ]; do sleep 0.01; done
socket=$(cat "$T/pub/slow.socket")
"$T/attack" send "$socket" READY=1
"$T/attack" join "$(cat "$T/pub/slow.pid")" "$T/pub/joined" "$socket" READY=1
echo done > "$T/pub/attacked"
exec sleep 1000
'''
"#,
    );
    let mut c = dir.corral().pid1().ctl_socket().start();
    c.wait_file("pub/attacked");
    // From the host, as uid 65534: a pid corral's namespace cannot see.
    let socket = c.dir().read("pub/slow.socket");
    assert!(socket.ends_with("/slow/1"), "{socket:?}");
    let ran = run_within(
        as_nobody(c.dir().join("attack")).args(["send", &socket, "READY=1"]),
        DEADLINE,
    );
    assert_eq!(ran.code, 0, "{ran:?}");

    stays(
        "slow not ready, dependant not started",
        Duration::from_millis(500),
        || {
            if c.dir().exists("dependant.start") {
                return Err("the dependant started".into());
            }
            let slow = c
                .try_ctl_status()?
                .into_iter()
                .find(|s| s["name"] == "slow")
                .ok_or("slow not listed")?;
            match slow["state"] == "starting" {
                true => Ok(()),
                false => Err(slow.to_string()),
            }
        },
    );
    // The service's session is its own: nobody else can join its group.
    assert_eq!(
        c.dir().read("pub/joined"),
        "refused: Operation not permitted"
    );
    c.wait_stderr_line(&[
        "notify datagram dropped",
        "service=slow",
        "uid=65534",
        "sender is not a process of the service",
    ]);
    still_serving_then_stop(&mut c);
}

/// Attack 5: a forged RELOADING=1 (and STOPPING=1, MAINPID=) to a root
/// service that is ready: it must stay ready, not be put into a reload that
/// times out into a restart.
#[test]
fn forged_reloading_leaves_a_root_service_alone() {
    let dir = setup("notify-forged-reloading");
    dir.service(
        "web",
        r#"ready = { notify = true }
ready-timeout = "500ms"
command = '''
echo $$ > "$T/pub/web.pid"
"$T/attack" send self READY=1
exec sleep 1000
'''
"#,
    );
    dir.service(
        "attacker",
        r#"user = "65534"
ready = { notify = true }
command = '''
"$T/attack" send self READY=1
"$T/attack" find web "$T/pub/web.socket"
while [ ! -s "$T/pub/web.pid" ]; do sleep 0.01; done
socket=$(cat "$T/pub/web.socket")
"$T/attack" send "$socket" RELOADING=1
"$T/attack" send "$socket" "MAINPID=$$" RELOADING=1 STOPPING=1
echo done > "$T/pub/attacked"
exec sleep 1000
'''
"#,
    );
    let mut c = dir.corral().pid1().ctl_socket().start();
    let ready = c.wait_state("web", "ready");
    let pid = ready["pid"].clone();
    c.wait_file("pub/attacked");
    // Longer than web's ready-timeout: a reload it was put into would have
    // failed into a restart by then.
    stays("web ready, never restarted", Duration::from_secs(1), || {
        let web = c
            .try_ctl_status()?
            .into_iter()
            .find(|s| s["name"] == "web")
            .ok_or("web not listed")?;
        if web["state"] == "ready" && web["pid"] == pid && web["restarts"] == 0 {
            Ok(())
        } else {
            Err(web.to_string())
        }
    });
    assert!(
        c.stderr_lines(&["web", "reloading"]).is_empty(),
        "{:?}",
        c.stderr_lines(&["web", "reloading"])
    );
    c.wait_stderr_line(&["notify datagram dropped", "service=web", "uid=65534"]);
    still_serving_then_stop(&mut c);
}

/// Attack 6: thousands of bogus datagrams. The log gets one warning, and
/// then one count per 10 s; `ctl status` answers at once; a flapping
/// service is still restarted.
#[test]
fn a_flood_costs_a_bounded_log_and_stalls_nothing() {
    const FLOOD: u64 = 20_000;
    let dir = setup("notify-flood");
    dir.service(
        "victim",
        r#"ready = { notify = true }
command = '''
echo $$ > "$T/pub/victim.pid"
"$T/attack" send self READY=1
exec sleep 1000
'''
"#,
    );
    dir.service(
        "flap",
        r#"restart-delay = "50ms"
restart-delay-max = "50ms"
command = 'exit 1'
"#,
    );
    dir.service(
        "attacker",
        &format!(
            r#"user = "65534"
ready = {{ notify = true }}
command = '''
"$T/attack" send self READY=1
"$T/attack" find victim "$T/pub/victim.socket"
while [ ! -s "$T/pub/victim.pid" ]; do sleep 0.01; done
"$T/attack" flood "$(cat "$T/pub/victim.socket")" {FLOOD} "$T/pub/flood" READY=1 RELOADING=1
exec sleep 1000
'''
"#
        ),
    );
    let mut c = dir.corral().pid1().ctl_socket().start();
    c.wait_state("victim", "ready");
    c.wait_for("the flood under way", |c| {
        match c.dir().read("pub/flood").as_str() {
            "" => Err("not yet".into()),
            seen => Ok(seen.to_string()),
        }
    });
    let restarts = |c: &Corral| {
        c.ctl_service("flap").expect("flap listed")["restarts"]
            .as_u64()
            .expect("restarts")
    };
    let before = restarts(&c);
    let started = Instant::now();
    let status = c.ctl(&["status"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status.took < Duration::from_secs(2),
        "ctl status took {:?} during the flood",
        status.took
    );
    c.wait_for("flap restarted during the flood", |c| {
        let now = restarts(c);
        if now >= before + 3 {
            Ok(())
        } else {
            Err(format!("{before} -> {now}"))
        }
    });
    c.wait_for("the flood sent", |c| {
        match c.dir().read("pub/flood").as_str() {
            "done" => Ok(()),
            seen => Err(seen.to_string()),
        }
    });
    // Every datagram is accounted for: one warning, then counts.
    let counted = |c: &Corral| -> u64 {
        c.stderr_lines(&["more notify datagrams dropped", "service=victim"])
            .iter()
            .map(|l| {
                let n = l
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("dropped="))
                    .unwrap_or_else(|| panic!("no dropped= in {l}"));
                n.parse::<u64>().unwrap_or_else(|_| panic!("{l}"))
            })
            .sum()
    };
    c.wait_for("every dropped datagram counted", |c| {
        let first = c
            .stderr_lines(&["notify datagram dropped", "service=victim"])
            .len() as u64;
        match first + counted(c) {
            n if n == FLOOD => Ok(()),
            n => Err(format!("{n} of {FLOOD}")),
        }
    });
    let lines = c.stderr_lines(&["service=victim", "dropped"]);
    // One warning, then one count per 10 s of flood (and the last one).
    let most = 2 + started.elapsed().as_secs() / 10;
    assert!(
        lines.len() as u64 <= most,
        "{} lines (at most {most}): {lines:#?}",
        lines.len()
    );
    let victim = c.ctl_service("victim").expect("victim listed");
    assert_eq!(victim["state"], "ready", "{victim}");
    assert_eq!(victim["restarts"], 0, "{victim}");
    still_serving_then_stop(&mut c);
}

/// Not an attack: what the checks must let through. A service's orphaned
/// worker (reparented to corral, still in the service's group) is told as
/// MAINPID=; the reload signal goes to it, and its own READY=1 counts.
#[test]
fn a_services_own_worker_may_be_its_main_pid() {
    let dir = setup("notify-own-worker");
    dir.executable(
        "worker",
        r#"#!/bin/sh
trap 'echo HUP >> "$T/pub/worker.hup"; "$T/attack" send self READY=1' HUP
echo $$ > "$T/pub/worker.pid"
while :; do sleep 1 & wait; done
"#,
    );
    dir.service(
        "svc",
        r#"user = "65534"
ready = { notify = true }
reload = { signal = "HUP" }
command = '''
trap 'echo HUP >> "$T/pub/svc.hup"' HUP
( "$T/worker" & )
while [ ! -s "$T/pub/worker.pid" ]; do sleep 0.01; done
"$T/attack" send self "MAINPID=$(cat "$T/pub/worker.pid")" READY=1
while :; do sleep 1 & wait; done
'''
"#,
    );
    let mut c = dir.corral().pid1().ctl_socket().start();
    c.wait_state("svc", "ready");
    let worker = pid_in(c.dir(), "pub/worker.pid");
    // Orphaned: corral (PID 1) is its parent now.
    let host = c.host_pid(worker).expect("the worker runs under corral");
    assert_eq!(proc_stat(host).map(|(_, ppid)| ppid), Some(c.pid()));
    let ran = c.ctl(&["reload", "svc"]);
    assert_eq!(ran.code, 0, "ctl reload svc: {ran:?}");
    assert_eq!(c.dir().lines("pub/worker.hup"), vec!["HUP"]);
    assert!(!c.dir().exists("pub/svc.hup"), "the HUP went to the worker");
    assert!(
        c.stderr_lines(&["notify datagram dropped"]).is_empty(),
        "{:?}",
        c.stderr_lines(&["notify datagram dropped"])
    );
    still_serving_then_stop(&mut c);
}
