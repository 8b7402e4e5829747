//! `success-exit-codes` (SPEC section 11): which exits count as a success,
//! for the restart policy, a oneshot's dependants, an essential service's
//! end and `ctl status`. The service file's errors first, then the real
//! binary.

use std::path::Path;

use corral::config::parse_service;

use crate::common::*;

#[test]
fn success_exit_codes_forms_and_their_errors() {
    let codes = |line: &str| {
        parse_service(Path::new("web.toml"), &format!("command = \"x\"\n{line}"))
            .map(|spec| spec.success_exit_codes)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    assert_eq!(codes(""), Ok(vec![0]));
    assert_eq!(
        codes("success-exit-codes = [0, 3, 3, 255]"),
        Ok(vec![0, 3, 255])
    );
    assert_eq!(codes("success-exit-codes = [3]"), Ok(vec![3]));
    let bad = "`success-exit-codes`: an exit code is a whole number from 0 to 255";
    assert_eq!(
        codes("success-exit-codes = [0, 256, -1, \"3\"]"),
        Err(vec![
            format!("web.toml:2:26: {bad}"),
            format!("web.toml:2:31: {bad}"),
            format!("web.toml:2:35: {bad}"),
        ])
    );
    assert_eq!(
        codes("success-exit-codes = []"),
        Err(vec![
            "web.toml:2:22: `success-exit-codes`: must not be empty (without the key, only 0 is a success)"
                .to_string()
        ])
    );
    assert_eq!(
        codes("success-exit-codes = 3"),
        Err(vec![
            "web.toml:2:22: `success-exit-codes`: expected an array of exit codes such as [0, 3], found integer"
                .to_string()
        ])
    );
    assert_eq!(
        codes("success-exit-code = [3]"),
        Err(vec![
            "web.toml:2:1: unknown key `success-exit-code` (did you mean `success-exit-codes`?)"
                .to_string()
        ])
    );
}

/// `restart = "on-failure"` with `[0, 3]`: exit 3 is a success (no
/// restart), exit 4 a failure (restarted).
#[test]
fn on_failure_restarts_exit_4_but_not_exit_3() {
    let dir = TestDir::new("success-codes");
    let exits = |code: u8| {
        format!(
            r#"command = '''echo $$ >> "$T/exit{code}.pids"; exit {code}'''
restart = "on-failure"
restart-delay = "10ms"
success-exit-codes = [0, 3]
"#
        )
    };
    dir.service("three", &exits(3));
    dir.service("four", &exits(4));
    let mut c = dir.corral().ctl_socket().start();
    // exit 4 is restarted again and again (10, 20, 40 ms apart): by its
    // fourth run, a restart of the other, due 10 ms after its exit, would
    // have come long ago.
    c.wait_pids("exit4.pids", 4);
    let three = c.wait_state("three", "stopped");
    assert_eq!(c.dir().pids("exit3.pids").len(), 1, "exit 3 was restarted");
    assert_eq!(three["last_exit"], "exit 3");
    assert_eq!(three["last_exit_ok"], true);
    assert_eq!(three["restarts"], 0);
    let four = c.ctl_service("four").expect("listed");
    assert_eq!(four["last_exit_ok"], false, "{four}");

    let table = c.ctl(&["status", "three", "four"]);
    assert_eq!(table.code, 0, "{table:?}");
    let row = |name: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}: {}", table.stdout))
            .to_string()
    };
    assert!(row("three").contains("exit 3 (ok)"), "{}", table.stdout);
    assert!(
        row("four").contains("exit 4") && !row("four").contains("(ok)"),
        "{}",
        table.stdout
    );
    assert_eq!(
        c.stderr_lines(&["service exited successfully", "three", "exit 3"])
            .len(),
        1,
        "{}",
        c.output_excerpt()
    );
    assert_eq!(c.stop(), 0);
}

/// A oneshot that exits 3, with 3 among its success codes, lets its
/// dependant start; one that exits 4 holds its own back.
#[test]
fn a_oneshot_exiting_with_a_success_code_lets_its_dependant_start() {
    let dir = TestDir::new("success-codes-oneshot");
    let oneshot = |code: u8| {
        format!(
            r#"command = "exit {code}"
oneshot = true
success-exit-codes = [0, 3]
"#
        )
    };
    dir.service("migrate3", &oneshot(3));
    dir.service("migrate4", &oneshot(4));
    dir.service(
        "app3",
        &format!("{}after = [\"migrate3\"]\n", sleeper("app3")),
    );
    dir.service(
        "app4",
        &format!("{}after = [\"migrate4\"]\n", sleeper("app4")),
    );
    let mut c = dir.corral().ctl_socket().start();
    c.wait_pids("app3.pids", 1);
    let migrate = c.wait_state("migrate3", "exited");
    assert_eq!(migrate["last_exit_ok"], true);
    c.wait_state("migrate4", "failed");
    let app4 = c.wait_state("app4", "starting");
    assert_eq!(
        app4["detail"],
        "waiting for migrate4 (failed: exit 4, restart = \"never\")"
    );
    assert!(!c.dir().exists("app4.pids"));
    assert_eq!(c.stop(), 0);
}

/// An essential service ending with a success code takes the container
/// down with its own code, logged as a success.
#[test]
fn an_essential_service_exiting_3_ends_the_container_with_3_as_pid1() {
    let dir = TestDir::new("success-codes-essential");
    // It waits for the test, so that corral is seen as PID 1 before it ends.
    dir.service(
        "job",
        r#"command = '''while [ ! -e "$T/go" ]; do sleep 0.01; done; exit 3'''
essential = true
restart = "on-failure"
success-exit-codes = [0, 3]
"#,
    );
    let mut c = dir.corral().pid1().start();
    c.dir().write("go", "");
    assert_eq!(c.wait_exit(DEADLINE), 3, "{}", c.output_excerpt());
    assert_eq!(
        c.stderr_lines(&["essential service exited successfully", "job"])
            .len(),
        1,
        "{}",
        c.stderr()
    );
}
