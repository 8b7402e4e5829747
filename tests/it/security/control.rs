//! Attacks on the control socket and `corral ctl` (SPEC sections 8 and 12):
//! a socket planted where root's client looks (through a symbolic link, in
//! an open directory, in the default places), a server's answer full of
//! terminal escapes, and a request with a key twice. The attacker is uid
//! 65534 (`setpriv`); the fake servers are python3, listening on a Unix
//! socket and answering one JSON line per connection.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use serde_json::{Value, json};

/// A fake control server: listens on argv[1] (mode 0777: the attacker
/// wants visitors), appends each request line it gets to argv[2], and
/// answers with argv[3][op] (a JSON object of answer lines; `*` for any
/// other op). Prints `listening` once it accepts connections.
const FAKE_SERVER: &str = r#"
import json, os, socket, sys
path, record, answers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o777)
server.listen(16)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.settimeout(5)
    data = b""
    try:
        while b"\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    if data:
        with open(record, "ab") as f:
            f.write(data.split(b"\n")[0] + b"\n")
    try:
        op = json.loads(data).get("op", "")
    except ValueError:
        op = ""
    try:
        conn.sendall((answers.get(op) or answers["*"]).encode() + b"\n")
    except OSError:
        pass
    conn.close()
"#;

/// An HTTP server on 127.0.0.1:argv[1] whose every answer is a 503 with
/// terminal escapes in its reason phrase: ESC ] (set the window title), BEL,
/// ESC [ 2 J (clear the screen), DEL and C1 CSI (U+009B, in UTF-8).
const EVIL_HTTP: &str = r#"
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(16)
while True:
    conn, _ = server.accept()
    conn.settimeout(5)
    try:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 503 \x1b]0;owned\x07\x1b[2J \x7f\xc2\x9b31m\r\n\r\n")
    except OSError:
        pass
    conn.close()
"#;

/// The reason phrase of `EVIL_HTTP`, as the client must show it.
const EVIL_REASON_SHOWN: &str = r"503 \x1b]0;owned\x07\x1b[2J \x7f\x9b31m";

/// Run `cmd` to completion; it must succeed.
fn ok(cmd: &mut Command) {
    let ran = run_within(cmd, DEADLINE);
    assert_eq!(ran.code, 0, "{cmd:?}: {ran:?}");
}

/// `FAKE_SERVER` as `cmd` (python3 under setpriv, or plain), listening on
/// `socket` and recording requests in `record`; returns once it listens.
fn fake_server(mut cmd: Command, socket: &Path, record: &Path, answers: &Value) -> Background {
    cmd.args(["-c", FAKE_SERVER])
        .arg(socket)
        .arg(record)
        .arg(answers.to_string());
    let mut server = Background::spawn(&mut cmd);
    assert_eq!(server.next_line(DEADLINE), "listening");
    server
}

/// Answers that would fool a client into thinking all is well, each
/// marked `PLANTED`: none may ever be printed.
fn planted_answers() -> Value {
    let status = json!({"ok": true, "services": [{
        "name": "web", "state": "running", "want": "up", "pid": 1, "restarts": 0,
        "ready": true, "oneshot": false, "enabled": true, "detail": "PLANTED"
    }]});
    let fine = json!({"ok": true, "messages": ["PLANTED: all fine"]});
    json!({"status": status.to_string(), "*": fine.to_string()})
}

/// The socket answers `status`, and `web` is still the process it was.
fn still_serving(c: &mut Corral, web: i32) {
    let ran = c.ctl(&["status"]);
    assert_eq!(ran.code, 0, "ctl status: {ran:?}");
    assert!(ran.stdout.contains("running"), "{ran:?}");
    assert!(
        c.process_running(web),
        "web is gone: {}",
        c.output_excerpt()
    );
}

/// Every byte of `text` that a terminal would act on (below 0x20 but a
/// line break, DEL, or a C1 control character), as a list for messages.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| c.is_control() && c != '\n')
        .collect()
}

/// The attack of issue 11, in a test dir: in a directory open to all
/// (sticky, as /tmp), nobody makes `sub` a link to a directory of their own
/// and listens there. corral refuses to put its socket there, and root's
/// client refuses nobody's server without sending it anything, and prints
/// none of its answers; the real corral serves on.
#[test]
fn a_socket_dir_planted_through_a_symlink_is_refused_by_corral_and_by_ctl() {
    require_root("the control attacks run processes as uid 65534");
    let dir = TestDir::new("sec-ctl-plant");
    dir.service("web", &sleeper("web"));
    let public = dir.join("public");
    fs::create_dir(&public).expect("mkdir");
    fs::set_permissions(&public, fs::Permissions::from_mode(0o1777)).expect("chmod");
    let w = public.join("w");
    let sub = public.join("sub");
    ok(as_nobody("sh")
        .args([
            "-c",
            r#"mkdir "$1" && chmod 1777 "$1" && ln -s "$1" "$2""#,
            "sh",
        ])
        .arg(&w)
        .arg(&sub));
    let planted = sub.join("control.sock");
    let record = w.join("requests");
    let _fake = fake_server(
        as_nobody(python3()),
        &w.join("control.sock"),
        &record,
        &planted_answers(),
    );

    let mut c = dir.corral().ctl_socket().pid1().start();
    let web = c.wait_pids("web.pids", 1)[0];

    // A corral told to listen there refuses to start.
    let other = TestDir::new("sec-ctl-plant-2");
    other.service("web", &sleeper("web"));
    let refused = other
        .corral()
        .args(["--socket", &planted.display().to_string()])
        .run();
    assert_eq!(refused.code(), 111, "{}", refused.stderr());
    assert!(
        refused.stderr().contains(&format!(
            "corral: control socket {}: not a safe place: {} is a symbolic link",
            planted.display(),
            sub.display()
        )),
        "{}",
        refused.stderr()
    );
    assert!(!refused.dir().exists("web.pids"), "a service started");

    // Root's client, pointed at it, will not talk to nobody.
    for args in [&["status"][..], &["health"], &["stop", "web"]] {
        let ran = run_within(&mut ctl_command(Some(&planted), args), DEADLINE);
        assert_eq!(ran.code, 1, "{args:?}: {ran:?}");
        assert_eq!(
            ran.stderr,
            format!(
                "corral ctl: refusing the server at {}: it runs as uid 65534, not root or you\n",
                planted.display()
            ),
            "{args:?}"
        );
        assert_eq!(ran.stdout, "", "{args:?}: printed the fake answer");
    }
    assert_eq!(
        fs::read_to_string(&record).unwrap_or_default(),
        "",
        "a request reached nobody's server"
    );

    still_serving(&mut c, web);
    assert_eq!(c.stop(), 0);
}

/// Issue 11 as reported: nobody makes `/tmp/corral-0` a link to `/dev/shm`
/// and listens there, and in a directory of its own at /dev/shm/corral-0
/// (the last default place); root's `corral ctl`, looking in the default places,
/// must not use it. In a mount namespace of its own (fresh /run, /tmp and
/// /dev/shm) and a PID namespace (everything ends with it); then a real
/// corral in the same namespace, on /run/corral, is found and answers.
#[test]
fn the_default_places_skip_a_planted_tmp_corral_0() {
    require_root("the control attacks run processes as uid 65534");
    const SCRIPT: &str = r#"
mount -t tmpfs -o mode=0755 tmpfs /run || exit 90
# The checkout may live under /tmp (a CI clone): keep the binary reachable
# once /tmp is a fresh tmpfs, and leave the directory it hides.
cp "$CORRAL" /run/corral-under-test || exit 90
CORRAL=/run/corral-under-test
cd /
mount -t tmpfs -o mode=1777 tmpfs /tmp || exit 90
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || exit 90
nobody() { setpriv --reuid 65534 --regid 65534 --clear-groups "$@"; }
nobody ln -s /dev/shm /tmp/corral-0 || exit 91
nobody "$PYTHON" -c "$FAKE" /dev/shm/control.sock /dev/shm/requests "$ANSWERS" > /run/fake.out 2>&1 &
fake=$!
# The last default place too, /dev/shm/corral-0: nobody's own directory.
nobody mkdir -m 0700 /dev/shm/corral-0 || exit 91
nobody "$PYTHON" -c "$FAKE" /dev/shm/corral-0/control.sock /dev/shm/requests "$ANSWERS" > /run/fake2.out 2>&1 &
fake2=$!
n=0
until [ -s /run/fake.out ] && [ -s /run/fake2.out ]; do n=$((n+1)); [ $n -lt 3000 ] || exit 92; sleep 0.01; done
unset XDG_RUNTIME_DIR CORRAL_SOCKET
for args in "status" "health" "stop web"; do
    echo "== ctl $args"
    "$CORRAL" ctl $args 2>&1; echo "exit $?"
    echo "== ctl --socket $args"
    "$CORRAL" ctl --socket /tmp/corral-0/control.sock $args 2>&1; echo "exit $?"
done
echo "== requests"
cat /dev/shm/requests 2>/dev/null
mkdir /run/services /run/empty
echo 'command = "exec sleep 1000"' > /run/services/web.toml
"$CORRAL" --services /run/services --init-dir /run/empty --finish-dir /run/empty > /run/corral.out 2>&1 &
corral=$!
n=0
until "$CORRAL" ctl status > /run/status.out 2>&1; do n=$((n+1)); [ $n -lt 3000 ] || exit 93; sleep 0.01; done
echo "== real status"
cat /run/status.out
kill -TERM $corral
wait $corral
echo "corral exit $?"
kill $fake $fake2
"#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "sh",
        "-c",
        SCRIPT,
    ])
    .env("FAKE", FAKE_SERVER)
    .env("PYTHON", python3())
    .env("ANSWERS", planted_answers().to_string())
    .env("CORRAL", corral_bin());
    let ran = run_within(&mut cmd, DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    let out = &ran.stdout;
    let refusal = "corral ctl: refusing the server at /tmp/corral-0/control.sock: it runs as uid 65534, not root or you\nexit 1\n";
    for args in ["status", "health", "stop web"] {
        let looked = format!(
            "== ctl {args}\ncorral ctl: no control socket found. Looked at:\n  /run/corral/control.sock: no such file\n  /tmp/corral-0/control.sock: not used: /tmp/corral-0 is a symbolic link\n  /dev/shm/corral-0/control.sock: not used: /dev/shm/corral-0 is owned by uid 65534, not by root or uid 0\nIs corral running? If it uses another socket, point at it with --socket PATH or CORRAL_SOCKET=PATH.\nexit 1\n== ctl --socket {args}\n{refusal}"
        );
        assert!(
            out.contains(&looked),
            "{args}: expected\n{looked}\nin\n{out}"
        );
    }
    assert!(
        !out.contains("PLANTED"),
        "a fake answer was printed:\n{out}"
    );
    assert!(
        out.contains("== requests\n== real status\nNAME"),
        "nobody's server got a request, or the real corral did not answer:\n{out}"
    );
    assert!(out.contains("\nweb "), "{out}");
    assert!(out.ends_with("corral exit 0\n"), "{out}");
}

/// Real directories that others may write, or that belong to another uid,
/// here or above: corral refuses each with the reason, creates nothing in
/// them, and starts nothing. A sticky directory above (as /tmp) and a link
/// of root's own to a safe place are fine, and that corral serves.
#[test]
fn open_or_foreign_socket_dirs_are_refused_with_the_reason() {
    require_root("the control attacks run processes as uid 65534");
    let dir = TestDir::new("sec-ctl-dirs");
    let mkdir = |rel: &str, mode: u32| -> PathBuf {
        let path = dir.join(rel);
        fs::create_dir(&path).expect("mkdir");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    };
    let public = mkdir("public", 0o1777);
    let open = mkdir("open", 0o777);
    let group = mkdir("group", 0o770);
    let shm = mkdir("shm", 0o1777);
    let above = mkdir("above", 0o757);
    mkdir("above/run", 0o700);
    let safe = mkdir("safe", 0o700);
    let theirs = public.join("theirs");
    let link = public.join("link");
    ok(as_nobody("sh")
        .args(["-c", r#"mkdir -m 0700 "$1" && ln -s "$2" "$3""#, "sh"])
        .arg(&theirs)
        .arg(&safe)
        .arg(&link));

    let shown = |p: &Path| p.display().to_string();
    let cases = [
        (
            open.join("ctl.sock"),
            format!(
                "{} is writable by group or others (mode 0777)",
                shown(&open)
            ),
        ),
        (
            group.join("ctl.sock"),
            format!(
                "{} is writable by group or others (mode 0770)",
                shown(&group)
            ),
        ),
        // /dev/shm's mode: sticky does not make the socket's own directory safe.
        (
            shm.join("ctl.sock"),
            format!("{} is writable by group or others (mode 1777)", shown(&shm)),
        ),
        (
            theirs.join("ctl.sock"),
            format!(
                "{} is owned by uid 65534, not by root or uid 0",
                shown(&theirs)
            ),
        ),
        (
            above.join("run/ctl.sock"),
            format!(
                "{} is writable by group or others and not sticky (mode 0757)",
                shown(&above)
            ),
        ),
        // Missing, below an open directory: refused before it is created.
        (
            open.join("new/ctl.sock"),
            format!(
                "{} is writable by group or others and not sticky (mode 0777)",
                shown(&open)
            ),
        ),
        // nobody's link to a safe directory: nobody could point it elsewhere.
        (
            link.join("run/ctl.sock"),
            format!(
                "{} is a symbolic link owned by uid 65534, not by root or uid 0",
                shown(&link)
            ),
        ),
    ];
    for (socket, reason) in &cases {
        let attempt = TestDir::new("sec-ctl-dirs-try");
        attempt.service("web", &sleeper("web"));
        let done = attempt.corral().args(["--socket", &shown(socket)]).run();
        assert_eq!(done.code(), 111, "{}: {}", shown(socket), done.stderr());
        let expected = format!(
            "corral: control socket {}: not a safe place: {reason} (",
            shown(socket)
        );
        assert!(
            done.stderr().contains(&expected),
            "expected {expected:?} in\n{}",
            done.stderr()
        );
        assert!(
            !done.dir().exists("web.pids"),
            "{}: a service started",
            shown(socket)
        );
        assert!(!socket.exists(), "{}: created", shown(socket));
    }
    assert!(
        !open.join("new").exists(),
        "a directory was created in an open one"
    );

    // Root's link to a safe directory is followed; below a sticky
    // directory, corral makes its own, 0700.
    let root_link = dir.join("alias");
    std::os::unix::fs::symlink(&safe, &root_link).expect("symlink");
    for socket in [root_link.join("run/ctl.sock"), public.join("mine/ctl.sock")] {
        let fine = TestDir::new("sec-ctl-dirs-ok");
        fine.service("web", &sleeper("web"));
        let mut c = fine.corral().args(["--socket", &shown(&socket)]).start();
        let web = c.wait_pids("web.pids", 1)[0];
        let created = socket.parent().expect("a directory");
        let meta = fs::symlink_metadata(created).expect("lstat");
        assert!(meta.is_dir(), "{}", shown(created));
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, 0));
        let ran = run_within(&mut ctl_command(Some(&socket), &["status"]), DEADLINE);
        assert_eq!(ran.code, 0, "{ran:?}");
        assert!(c.process_running(web));
        assert_eq!(c.stop(), 0);
    }
}

/// `/tmp/corral-UID`, removed before and after the test that uses it.
struct TmpCorralDir(PathBuf);

impl TmpCorralDir {
    fn new(uid: u32) -> TmpCorralDir {
        let path = PathBuf::from(format!("/tmp/corral-{uid}"));
        let _ = fs::remove_dir_all(&path);
        TmpCorralDir(path)
    }
}

impl Drop for TmpCorralDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A non-root corral (uid 4242, so /run is not writable) with
/// `$XDG_RUNTIME_DIR` pointing at a directory nobody owns, where nobody
/// listens: corral skips it with a warning that names it and says why, and
/// takes `/tmp/corral-4242`. Its own client, looking in the same places,
/// skips nobody's socket too and reaches the real corral.
#[test]
fn an_unsafe_default_place_is_skipped_with_a_warning_by_corral_and_ctl() {
    require_root("the control attacks run processes as uid 65534");
    const UID: u32 = 4242;
    let tmp = TmpCorralDir::new(UID);
    let dir = TestDir::new("sec-ctl-xdg");
    dir.service("web", "command = \"exec sleep 1000\"\n");
    let xdg = dir.join("xdg");
    fs::create_dir(&xdg).expect("mkdir");
    std::os::unix::fs::chown(&xdg, Some(65534), Some(65534)).expect("chown");
    ok(as_nobody("mkdir")
        .args(["-m", "0777"])
        .arg(xdg.join("corral")));
    let record = xdg.join("corral/requests");
    let _fake = fake_server(
        as_nobody(python3()),
        &xdg.join("corral/control.sock"),
        &record,
        &planted_answers(),
    );

    let mut c = dir
        .corral()
        .env_remove("CORRAL_SOCKET")
        .env("XDG_RUNTIME_DIR", &xdg.display().to_string())
        .user(UID)
        .start();
    let warning = c.wait_stderr_line(&["control socket place not safe, skipped"]);
    assert!(
        warning.contains(&xdg.join("corral/control.sock").display().to_string())
            && warning.contains(&format!(
                "{} is owned by uid 65534, not by root or uid {UID}",
                xdg.display()
            )),
        "{warning}"
    );
    let socket = tmp.0.join("control.sock");
    c.wait_for("the socket in /tmp/corral-4242", |_| {
        socket.exists().then_some(()).ok_or("not yet".to_string())
    });
    let meta = fs::symlink_metadata(&tmp.0).expect("lstat");
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, UID));

    // uid 4242's client, in the same environment, skips nobody's socket.
    let mut ctl = as_uid(UID, corral_bin());
    ctl.args(["ctl", "status", "--json"])
        .env_remove("CORRAL_SOCKET")
        .env("XDG_RUNTIME_DIR", &xdg);
    let ran = run_within(&mut ctl, DEADLINE);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(!ran.stdout.contains("PLANTED"), "{ran:?}");
    let services: Value = serde_json::from_str(&ran.stdout).expect("json");
    assert_eq!(services[0]["name"], "web", "{ran:?}");
    assert_eq!(services[0]["state"], "running", "{ran:?}");
    assert_eq!(
        fs::read_to_string(&record).unwrap_or_default(),
        "",
        "a request reached nobody's server"
    );

    // Told to use nobody's socket, the client refuses it.
    let mut ctl = as_uid(UID, corral_bin());
    ctl.args(["ctl", "--socket"])
        .arg(xdg.join("corral/control.sock"))
        .arg("status")
        .env_remove("CORRAL_SOCKET");
    let ran = run_within(&mut ctl, DEADLINE);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.stderr.contains("it runs as uid 65534, not root or you"),
        "{ran:?}"
    );
    assert_eq!(ran.stdout, "");
    assert_eq!(c.stop(), 0);
    assert!(!socket.exists(), "the socket outlived corral");
}

/// A service's health endpoint answers with terminal escapes in its HTTP
/// reason phrase; the failure reason reaches `ctl status` and `ctl health`.
/// The client shows every control character escaped (and `--json` keeps
/// them JSON-escaped); corral serves on.
#[test]
fn escapes_from_a_health_endpoint_are_shown_escaped_by_status_and_health() {
    require_root("the control attacks run processes as uid 65534");
    let dir = TestDir::new("sec-ctl-esc");
    dir.write("evil_http.py", EVIL_HTTP);
    let port = free_port();
    dir.service(
        "web",
        &format!(
            r#"command = 'exec {python} "$T/evil_http.py" {port}'
user = "65534"
ready = {{ tcp = "127.0.0.1:{port}" }}
health = {{ http = "http://127.0.0.1:{port}/", interval = "100ms", retries = 1 }}
restart-delay = "1h"
restart-delay-max = "1h"
"#,
            python = python3()
        ),
    );
    dir.service("db", &sleeper("db"));
    let mut c = dir.corral().ctl_socket().pid1().start();
    let db = c.wait_pids("db.pids", 1)[0];
    c.wait_state("web", "backoff");

    // The server did send the escapes: ESC and BEL, JSON-escaped on the wire.
    let mut raw = UnixStream::connect(c.socket()).expect("connect");
    raw.write_all(b"{\"v\":1,\"op\":\"status\"}\n")
        .expect("write");
    let mut wire = String::new();
    BufReader::new(&raw).read_line(&mut wire).expect("read");
    assert!(
        wire.contains(r"503 \u001b]0;owned\u0007\u001b[2J"),
        "the escapes did not reach corral's answer: {wire}"
    );

    let status = c.ctl(&["status"]);
    assert_eq!(status.code, 0, "{status:?}");
    let health = c.ctl(&["health"]);
    assert_eq!(health.code, 1, "{health:?}");
    let json = c.ctl(&["status", "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    for (what, text) in [
        ("status", &status.stdout),
        ("health stdout", &health.stdout),
        ("health stderr", &health.stderr),
        ("status --json", &json.stdout),
    ] {
        assert_eq!(raw_controls(text), Vec::<char>::new(), "{what}: {text:?}");
    }
    let web_line = status
        .lines()
        .into_iter()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("no web line: {status:?}"))
        .to_string();
    assert!(
        web_line.contains("backoff") && web_line.contains(EVIL_REASON_SHOWN),
        "{web_line}"
    );
    assert!(
        health.stdout.starts_with(&format!(
            "web: backoff (health check failed 1 times: GET http://127.0.0.1:{port}/: {EVIL_REASON_SHOWN}"
        )),
        "{health:?}"
    );
    assert_eq!(health.stderr, "corral ctl: 1 not running\n");
    assert!(
        json.stdout
            .contains(r"503 \u001b]0;owned\u0007\u001b[2J \u007f\u009b31m"),
        "{}",
        json.stdout
    );
    let parsed: Value = serde_json::from_str(&json.stdout).expect("still JSON");
    let detail = parsed
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "web"))
        .and_then(|s| s["detail"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains("503 \u{1b}]0;owned\u{7}\u{1b}[2J \u{7f}\u{9b}31m"),
        "{detail:?}"
    );

    still_serving(&mut c, db);
    assert_eq!(c.stop(), 0);
}

/// A server that passes the uid check (root's own) but answers with control
/// characters in every field the client prints: all shown escaped, line
/// breaks inside a one-line field included; only `logs` prints a service's
/// bytes as they are (as `docker logs`).
#[test]
fn escapes_in_any_answer_of_a_trusted_server_are_shown_escaped() {
    require_root("the control attacks run processes as uid 65534");
    let dir = TestDir::new("sec-ctl-esc-fake");
    let status = json!({"ok": true, "services": [{
        "name": "web\u{1b}[2J", "state": "running\u{7}", "want": "up", "pid": 12,
        "restarts": 0, "ready": true, "oneshot": false, "enabled": true,
        "last_exit": "exit\u{9b}1m", "detail": "one\nforged line\u{1b}]0;x\u{7}\t\u{7f}"
    }]});
    let health = json!({"ok": false, "error": "1 not running\u{1b}[5m",
        "problems": ["web\u{1b}[2J: backoff\nforged"]});
    let stop = json!({"ok": true, "messages": ["web: stopped\u{1b}[31m\r"]});
    let restart = json!({"ok": false, "error": "line one\u{1b}[2J\nline two\u{7}"});
    let logs = json!({"ok": true, "lines": [{"stream": "stdout", "line": "raw\u{1b}[1mbold"}]});
    let answers = json!({
        "status": status.to_string(),
        "health": health.to_string(),
        "stop": stop.to_string(),
        "restart": restart.to_string(),
        "logs": logs.to_string(),
        // Not even a response: the client quotes what it could not read,
        // escaped.
        "*": "{\"ok\":\u{1b}[2J}",
    });
    let socket = dir.join("fake.sock");
    let _fake = fake_server(
        Command::new(python3()),
        &socket,
        &dir.join("requests"),
        &answers,
    );
    let ctl = |args: &[&str]| run_within(&mut ctl_command(Some(&socket), args), DEADLINE);

    let expected: [(&[&str], i32, &str, &str); 6] = [
        (
            &["status"],
            0,
            "NAME        STATE        PID  UPTIME  RESTARTS  READY  LAST-EXIT   DETAIL\n\
             web\\x1b[2J  running\\x07  12   -       0         yes    exit\\x9b1m  one\\nforged line\\x1b]0;x\\x07\\t\\x7f\n",
            "",
        ),
        (
            &["health"],
            1,
            "web\\x1b[2J: backoff\\nforged\n",
            "corral ctl: 1 not running\\x1b[5m\n",
        ),
        (&["stop", "web"], 0, "web: stopped\\x1b[31m\\r\n", ""),
        // Free text keeps its line breaks.
        (
            &["restart", "web"],
            1,
            "",
            "corral ctl: line one\\x1b[2J\nline two\\x07\n",
        ),
        (&["logs", "web"], 0, "raw\u{1b}[1mbold\n", ""),
        (
            &["start", "web"],
            1,
            "",
            "corral ctl: malformed response from corral: expected a boolean at line 1 column 7: \\x1b[2J}\n",
        ),
    ];
    for (args, code, stdout, stderr) in expected {
        let ran = ctl(args);
        assert_eq!(
            (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
            (code, stdout, stderr),
            "{args:?}"
        );
    }
    let json = ctl(&["status", "--json"]);
    assert_eq!(raw_controls(&json.stdout), Vec::<char>::new(), "{json:?}");
    assert!(json.stdout.contains(r#""exit\u009b1m""#), "{json:?}");
}

/// Send one raw request line; the answer line, and whether the connection
/// then ended.
fn raw_request(socket: &Path, line: &str) -> (Value, bool) {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    stream.write_all(line.as_bytes()).expect("write");
    stream.write_all(b"\n").expect("write");
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).expect("read the answer");
    let mut rest = Vec::new();
    let closed = matches!(reader.read_to_end(&mut rest), Ok(0));
    let answer = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    (answer, closed)
}

/// A request with a key twice, at the top or deeper, escaped or not: an
/// error, the connection closed, and no shutdown (serde_json alone took the
/// last `op`, so `{"op":"health","op":"shutdown"}` shut corral down).
#[test]
fn a_request_with_a_key_twice_is_refused_and_corral_stays_up() {
    let dir = TestDir::new("sec-ctl-dup");
    dir.service("web", &sleeper("web"));
    let mut c = dir.corral().ctl_socket().pid1().start();
    let web = c.wait_pids("web.pids", 1)[0];
    c.wait_state("web", "running");
    let socket = c.socket();
    for (line, key) in [
        (r#"{"v":1,"op":"health","op":"shutdown"}"#, "op"),
        (
            r#"{"v":1,"op":"shutdown","exit_code":7,"exit_code":7}"#,
            "exit_code",
        ),
        (r#"{"v":1,"op":"health","o\u0070":"shutdown"}"#, "op"),
        (
            r#"{"v":1,"op":"stop","services":[{"web":1,"web":2}]}"#,
            "web",
        ),
        (r#"{"v":1,"op":"shutdown","x":{"y":{"k":1,"k":2}}}"#, "k"),
    ] {
        let (answer, closed) = raw_request(&socket, line);
        assert_eq!(answer["ok"], false, "{line}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(&format!(
                "malformed request: duplicate key \"{key}\" at line 1"
            )),
            "{line}: {error}"
        );
        assert!(closed, "{line}: the connection stayed open");
        assert!(
            c.is_alive(),
            "{line}: corral exited: {}",
            c.output_excerpt()
        );
    }
    still_serving(&mut c, web);
    let code = c.stop();
    assert_eq!(code, 0, "corral exited with {code}, not SIGTERM's 0");
}
