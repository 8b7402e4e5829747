//! Memory given back when corral is quiet (src/memory.rs): once the
//! supervisor loop has had no event for 2 s, corral's code pages are
//! unmapped; the next event maps what it runs again, and the next quiet
//! spell unmaps it again.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// How long a release may take to show: the 2 s quiet period, plus a loaded
/// machine's delays.
const RELEASED_WITHIN: Duration = Duration::from_secs(30);

/// `(mapped, size)` in kB of corral's own executable that `pid` maps
/// without write permission (headers, read-only data, code): how much of it
/// is mapped now, and its whole size. From `/proc/PID/smaps`.
fn mapped_code_kb(pid: i32) -> Result<(u64, u64), String> {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| e.to_string())?;
    let exe = exe.to_string_lossy().into_owned();
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).map_err(|e| e.to_string())?;
    let (mut mapped, mut size) = (0, 0);
    let mut counting = false;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let kb = || {
            fields
                .get(1)
                .and_then(|kb| kb.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match fields.first() {
            Some(&"Rss:") if counting => mapped += kb(),
            Some(&"Size:") if counting => size += kb(),
            Some(range) if range.contains('-') && fields.len() >= 5 => {
                counting = fields.get(5) == Some(&exe.as_str())
                    && fields.get(1).is_some_and(|perms| !perms.contains('w'));
            }
            _ => {}
        }
    }
    Ok((mapped, size))
}

/// Wait until `pid` has at most a third of its code mapped: after a release
/// only the memory thread's own few lines (and the relocated read-only data,
/// which is never dropped) are, while anything that ran since maps 64 KiB
/// around each page it touched. Returns the kB mapped.
fn wait_released(pid: i32, what: &str) -> u64 {
    wait_until(what, RELEASED_WITHIN, || {
        let (mapped, size) = mapped_code_kb(pid)?;
        if mapped * 3 <= size {
            Ok(mapped)
        } else {
            Err(format!("{mapped} of {size} kB of code mapped"))
        }
    })
}

#[test]
fn code_pages_are_given_back_when_corral_is_quiet() {
    let dir = TestDir::new("memory-release");
    for name in ["a", "b", "c"] {
        dir.service(
            name,
            &format!("command = 'echo $$ >> \"$T/{name}.pids\"; exec sleep 100000'"),
        );
    }
    let mut c = dir.corral().ctl_socket().start();
    for name in ["a", "b", "c"] {
        c.wait_pids(&format!("{name}.pids"), 1);
    }
    let pid = c.pid();
    // Startup (option and TOML parsing, spawning) mapped most of the code.
    let low = wait_released(pid, "code unmapped after startup");
    // An event (a status request) maps what it runs again...
    let status = c.ctl(&["status"]);
    assert!(status.lines().len() == 4, "{:?}", status.lines());
    let (busy, _) = mapped_code_kb(pid).expect("smaps");
    assert!(
        busy > 2 * low,
        "after a status request: {busy} kB, quiet: {low} kB"
    );
    // ...and the next quiet spell gives it back again; corral goes on working.
    wait_released(pid, "code unmapped after the status request");
    let status = c.ctl(&["status"]);
    assert!(status.lines().len() == 4, "{:?}", status.lines());
    assert_eq!(c.stop(), 0);
}
