//! Signals corral receives (SPEC section 5): SIGUSR1, SIGUSR2 and SIGWINCH
//! go to the main COMMAND; without one they are logged and ignored.

use crate::common::*;
use nix::sys::signal::Signal;

/// Traps in the main command record each forwarded signal. The signals go to
/// its process group, so its `sleep` child gets them too (and dies of USR1
/// and USR2, which the loop shrugs off).
#[test]
fn usr1_usr2_winch_are_forwarded_to_the_main_command() {
    let dir = TestDir::new("forward");
    let mut c = dir
        .corral()
        .main([
            "sh",
            "-c",
            r#"
for sig in USR1 USR2 WINCH; do trap "echo $sig >> \"\$T/main.sig\"" $sig; done
echo $$ > "$T/main.pid"
while :; do sleep 1; done
"#,
        ])
        .start();
    let main = c.wait_pids("main.pid", 1)[0];
    for (signal, name) in [
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGWINCH, "WINCH"),
    ] {
        c.signal(signal);
        c.wait_for(&format!("the main command's {name} trap"), |c| {
            let got = c.dir().lines("main.sig");
            if got.iter().any(|l| l == name) {
                Ok(())
            } else {
                Err(format!("main.sig: {got:?}"))
            }
        });
    }
    assert!(running(main), "the main command died of a forwarded signal");
    assert!(c.is_alive(), "corral died of a forwarded signal");
    assert_eq!(c.dir().lines("main.sig"), ["USR1", "USR2", "WINCH"]);
    // SIGTERM is passed on as well: the shell has no trap for it and dies.
    assert_eq!(c.stop(), 128 + 15);
}

/// With no main command, SIGUSR1/USR2/WINCH change nothing: corral and its
/// service keep running, and a later SIGTERM still ends corral with 0 (had a
/// signal's default action killed corral, the status would say so).
#[test]
fn usr1_without_main_command_is_ignored() {
    let dir = TestDir::new("usr1-no-main");
    dir.service(
        "web",
        r#"command = '''echo $$ >> "$T/web.pids"; exec sleep 1000'''"#,
    );
    let mut c = dir.corral().start();
    let web = c.wait_pids("web.pids", 1)[0];
    for signal in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH] {
        c.signal(signal);
    }
    // SPEC: "logged and ignored".
    c.wait_stderr_line(&["USR1"]);
    assert!(c.is_alive(), "corral died of SIGUSR1");
    assert!(running(web), "web was disturbed");
    assert_eq!(c.dir().pids("web.pids"), vec![web], "web was restarted");
    assert_eq!(c.stop(), 0);
}
