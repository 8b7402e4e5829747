//! The case corral's reload exists for (SPEC section 3's example): real
//! haproxy in master-worker mode (`-Ws -db`) as a corral service with
//! `ready = { notify = true }`, `reload = { signal = "USR2" }` and `watch`
//! on its configuration, in front of two backends that are corral services
//! too. A client runs GETs in a loop while the configuration is rewritten
//! (temporary file + rename, as a templating tool does) to add the second
//! backend: the watch sends USR2, haproxy re-executes itself (same master
//! pid) and says READY=1 again, and from then on both backends answer.
//! Not one request may fail during the whole run.
//!
//! Needs the `haproxy` binary (Debian: `apt-get install -y haproxy`).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// The client's bounds: it stops when told, or after this long, or after
/// this many requests, whichever comes first.
const CLIENT_MAX_TIME: Duration = Duration::from_secs(30);
const CLIENT_MAX_REQUESTS: usize = 20_000;

/// haproxy's configuration: one frontend on `front`, a backend with a
/// server per port in `servers`. Old workers leave quickly
/// (`hard-stop-after`), and short timeouts keep a lost connection from
/// hiding as a slow one.
fn haproxy_cfg(front: u16, servers: &[(&str, u16)]) -> String {
    let mut cfg = format!(
        "global
    hard-stop-after 3s

defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    timeout http-keep-alive 200ms

frontend fe
    bind 127.0.0.1:{front}
    default_backend be

backend be
    balance roundrobin
"
    );
    for (name, port) in servers {
        cfg.push_str(&format!("    server {name} 127.0.0.1:{port}\n"));
    }
    cfg
}

/// A backend: python's http.server on `port`, serving `$T/NAME/`, whose
/// index names it.
fn backend(dir: &TestDir, name: &str, port: u16) {
    fs::create_dir_all(dir.join(name)).expect("mkdir backend dir");
    dir.write(&format!("{name}/index.html"), &format!("{name}\n"));
    dir.service(
        name,
        &format!(
            r#"ready = {{ tcp = "127.0.0.1:{port}" }}
output = "null"
command = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "{}"]
"#,
            dir.join(name).display()
        ),
    );
}

/// What the client saw.
#[derive(Default)]
struct Tally {
    requests: AtomicUsize,
    b1: AtomicUsize,
    b2: AtomicUsize,
    errors: AtomicUsize,
    first_errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, result: Result<(u16, String), String>) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok((200, body)) if body == "b1\n" => {
                self.b1.fetch_add(1, Ordering::SeqCst);
            }
            Ok((200, body)) if body == "b2\n" => {
                self.b2.fetch_add(1, Ordering::SeqCst);
            }
            other => {
                self.errors.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut first) = self.first_errors.lock()
                    && first.len() < 10
                {
                    first.push(format!("{other:?}"));
                }
            }
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} requests: {} from b1, {} from b2, {} failed {:?}",
            self.requests.load(Ordering::SeqCst),
            self.b1.load(Ordering::SeqCst),
            self.b2.load(Ordering::SeqCst),
            self.errors.load(Ordering::SeqCst),
            self.first_errors
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default()
        )
    }
}

/// Stops and joins the client thread, also when the test fails.
struct Client {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Client {
    fn start(port: u16, tally: Arc<Tally>) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let began = Instant::now();
            while !flag.load(Ordering::SeqCst)
                && began.elapsed() < CLIENT_MAX_TIME
                && tally.requests.load(Ordering::SeqCst) < CLIENT_MAX_REQUESTS
            {
                tally.record(http_get(port, "/"));
            }
        });
        Client {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_by_rename(path: &Path, contents: &str) {
    let tmp = path.with_extension("cfg.tmp");
    fs::write(&tmp, contents).expect("write the new config");
    fs::rename(&tmp, path).expect("rename it over the old one");
}

#[test]
fn haproxy_reloads_on_a_watched_config_change_without_failing_a_request() {
    require_program("haproxy", "haproxy");
    let (front, p1, p2) = (free_port(), free_port(), free_port());
    assert!(
        front != p1 && front != p2 && p1 != p2,
        "ports {front} {p1} {p2}"
    );
    let dir = TestDir::new("haproxy");
    backend(&dir, "b1", p1);
    backend(&dir, "b2", p2);
    fs::create_dir_all(dir.join("haproxy")).expect("mkdir haproxy");
    let cfg = dir.join("haproxy/haproxy.cfg");
    fs::write(&cfg, haproxy_cfg(front, &[("b1", p1)])).expect("write haproxy.cfg");
    dir.service(
        "haproxy",
        &format!(
            r#"command = ["haproxy", "-Ws", "-db", "-f", "{cfg}"]
after = ["b1", "b2"]
ready = {{ notify = true }}
reload = {{ signal = "USR2" }}
watch = ["{cfg}"]
"#,
            cfg = cfg.display()
        ),
    );
    let mut c = dir.corral().ctl_socket().start();
    let ready = c.wait_state("haproxy", "ready");
    let master = ready["pid"].as_i64().expect("haproxy's pid") as i32;
    let old_workers = children(master);
    assert!(
        !old_workers.is_empty(),
        "haproxy master {master} has no worker"
    );

    let tally = Arc::new(Tally::default());
    let mut client = Client::start(front, Arc::clone(&tally));
    c.wait_for("100 answers from b1", |_| {
        if tally.b1.load(Ordering::SeqCst) >= 100 {
            Ok(())
        } else {
            Err(tally.summary())
        }
    });
    assert_eq!(
        tally.b2.load(Ordering::SeqCst),
        0,
        "b2 answered before it was configured"
    );

    let before = tally.requests.load(Ordering::SeqCst);
    let changed = Instant::now();
    write_by_rename(&cfg, &haproxy_cfg(front, &[("b1", p1), ("b2", p2)]));
    c.wait_stderr_line(&["reloading", "service=haproxy", "SIGUSR2"]);
    c.wait_stderr_line(&["reload done", "service=haproxy"]);
    let reloaded = changed.elapsed();
    let during = tally.requests.load(Ordering::SeqCst) - before;
    c.wait_for("b2 to answer through haproxy 100 times", |_| {
        if tally.b2.load(Ordering::SeqCst) >= 100 {
            Ok(())
        } else {
            Err(tally.summary())
        }
    });
    // The old worker leaves (hard-stop-after 3s at most) while the client
    // keeps going; then a few hundred more requests, with both backends.
    c.wait_for("the old haproxy worker to leave", |_| {
        let left: Vec<i32> = old_workers
            .iter()
            .copied()
            .filter(|&w| running(w))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?} still running"))
        }
    });
    let mark = tally.requests.load(Ordering::SeqCst);
    c.wait_for("300 more requests", |_| {
        if tally.requests.load(Ordering::SeqCst) >= mark + 300 {
            Ok(())
        } else {
            Err(tally.summary())
        }
    });
    assert!(
        client.is_running(),
        "the client hit its bound before the test was done: {}",
        tally.summary()
    );
    client.stop();
    let summary = tally.summary();
    eprintln!(
        "haproxy: {summary}; {before} before the config change, {during} between the change and READY=1 again; \
         watch -> USR2 -> READY=1 again in {reloaded:?}"
    );
    assert_eq!(
        tally.errors.load(Ordering::SeqCst),
        0,
        "failed requests: {summary}"
    );
    assert!(
        tally.b1.load(Ordering::SeqCst) > 100 && tally.b2.load(Ordering::SeqCst) >= 100,
        "{summary}"
    );

    let after = c.wait_state("haproxy", "ready");
    assert_eq!(after["pid"], master, "haproxy's master changed: {after}");
    assert_eq!(after["restarts"], 0, "{after}");
    assert_eq!(
        c.stderr_lines(&["reloading", "service=haproxy"]).len(),
        1,
        "one change, one reload:\n{}",
        c.stderr()
    );
    // A new worker serves.
    let workers = children(master);
    assert!(
        !workers.is_empty() && workers.iter().all(|w| !old_workers.contains(w)),
        "workers before {old_workers:?}, after {workers:?}"
    );
    assert_eq!(c.stop(), 0);
}
