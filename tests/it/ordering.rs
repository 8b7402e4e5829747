//! Order (SPEC sections 2 and 6): `after` at start and at stop, init scripts
//! before services, finish scripts after them.

use crate::common::*;

/// B `after` A, A a oneshot: B starts only once A has exited 0. A holds on
/// until the test releases it, so "B has not started yet" is checked while A
/// is certainly running.
#[test]
fn dependant_of_a_oneshot_starts_after_it_exited() {
    let dir = TestDir::new("after-oneshot");
    dir.service(
        "a",
        r#"
oneshot = true
command = '''
echo $$ > "$T/a.pid"
while [ ! -e "$T/release" ]; do sleep 0.01; done
echo done > "$T/a.done"
exit 0
'''
"#,
    );
    dir.service(
        "b",
        r#"
after = ["a"]
command = '''
apid=$(cat "$T/a.pid")
if [ -e "/proc/$apid" ]; then echo running; else echo gone; fi > "$T/b.saw-a"
cat "$T/a.done" > "$T/b.saw-done"
echo $$ > "$T/b.pid"
exec sleep 1000
'''
"#,
    );
    let mut c = dir.corral().start();
    let a = c.wait_pids("a.pid", 1)[0];
    assert!(running(a), "a ({a}) is not running");
    assert!(
        !c.dir().exists("b.pid") && !c.dir().exists("b.saw-a"),
        "b started while its dependency a was still running"
    );

    c.dir().write("release", "");
    c.wait_pids("b.pid", 1);
    assert_eq!(
        c.dir().read("b.saw-a").trim(),
        "gone",
        "b started before a had exited"
    );
    assert_eq!(c.dir().read("b.saw-done").trim(), "done");
    assert_eq!(c.stop(), 0);
}

/// A chain c -> b -> a (c `after` b, b `after` a). Start: in that order
/// (corral's "service started" lines). Stop: each service is down before
/// what it depends on gets its signal; every trap appends to one log, and
/// takes a moment, so a signal sent too early would interleave the entries.
#[test]
fn services_stop_dependants_first() {
    let dir = TestDir::new("stop-order");
    for (name, after) in [("alpha", ""), ("bravo", "alpha"), ("charlie", "bravo")] {
        let after = if after.is_empty() {
            String::new()
        } else {
            format!("after = [\"{after}\"]")
        };
        dir.service(
            name,
            &format!(
                r#"
{after}
command = '''
trap 'echo "{name} term" >> "$T/stop.log"; sleep 0.2; echo "{name} exit" >> "$T/stop.log"; exit 0' TERM
echo $$ > "$T/{name}.pid"
while :; do sleep 1; done
'''
"#
            ),
        );
    }
    let mut c = dir.corral().start();
    for name in ["alpha", "bravo", "charlie"] {
        c.wait_pids(&format!("{name}.pid"), 1);
    }

    // corral's log lines reach stderr through its writer thread: a service's
    // pid file can come first.
    let stderr = c.wait_for("three \"service started\" lines", |c| {
        let stderr = c.stderr();
        let n = stderr.matches("service started").count();
        (n >= 3).then_some(stderr).ok_or(format!("{n} so far"))
    });
    let started_at = |name: &str| {
        stderr
            .lines()
            .position(|l| l.contains("service started") && l.contains(&format!("service={name}")))
            .unwrap_or_else(|| panic!("no \"service started\" line for {name}:\n{stderr}"))
    };
    assert!(
        started_at("alpha") < started_at("bravo") && started_at("bravo") < started_at("charlie"),
        "services did not start in `after` order:\n{stderr}"
    );

    assert_eq!(c.stop(), 0);
    assert_eq!(
        c.dir().lines("stop.log"),
        [
            "charlie term",
            "charlie exit",
            "bravo term",
            "bravo exit",
            "alpha term",
            "alpha exit"
        ],
        "dependants must be down before their dependencies are stopped"
    );
}

/// Init scripts run one at a time, in lexical order ("10" < "9" < "a"),
/// before any service; finish scripts run after every service has stopped.
#[test]
fn init_scripts_run_in_lexical_order_before_services_and_finish_scripts_after() {
    let dir = TestDir::new("init-finish");
    // Created in another order than they must run in.
    for name in ["a-alpha", "9-nine", "10-ten"] {
        dir.init_script(
            name,
            &format!(
                r#"
[ -e "$T/busy" ] && echo overlap >> "$T/order.log"
touch "$T/busy"
echo {name} >> "$T/order.log"
[ -e "$T/web.pid" ] && echo "web-before-{name}" >> "$T/order.log"
sleep 0.05
rm "$T/busy"
exit 0"#
            ),
        );
    }
    dir.service(
        "web",
        r#"
command = '''
trap 'echo web-stopped >> "$T/order.log"; exit 0' TERM
echo web >> "$T/order.log"
echo $$ > "$T/web.pid"
while :; do sleep 1; done
'''
"#,
    );
    dir.finish_script(
        "fin",
        r#"
[ -e "/proc/$(cat "$T/web.pid")" ] && echo web-still-running >> "$T/order.log"
echo finish >> "$T/order.log"
exit 0"#,
    );
    let mut c = dir.corral().start();
    c.wait_pids("web.pid", 1);
    assert_eq!(
        c.dir().lines("order.log"),
        ["10-ten", "9-nine", "a-alpha", "web"]
    );
    assert_eq!(c.stop(), 0);
    assert_eq!(
        c.dir().lines("order.log"),
        [
            "10-ten",
            "9-nine",
            "a-alpha",
            "web",
            "web-stopped",
            "finish"
        ]
    );
}

/// An init script that exits 5 stops the startup: corral exits 5, the next
/// init script, the services and the main command never run.
#[test]
fn failing_init_script_exit_code_ends_corral_and_nothing_starts() {
    let dir = TestDir::new("init-fails");
    dir.init_script("01-fail", r#"echo 01-fail >> "$T/order.log"; exit 5"#);
    dir.init_script("02-next", r#"echo 02-next >> "$T/order.log"; exit 0"#);
    dir.service(
        "web",
        r#"command = '''echo web >> "$T/order.log"; exec sleep 1000'''"#,
    );
    let finished = dir
        .corral()
        .main(["sh", "-c", r#"echo main >> "$T/order.log""#])
        .run();
    assert_eq!(finished.code(), 5);
    assert_eq!(finished.dir().lines("order.log"), ["01-fail"]);
}
