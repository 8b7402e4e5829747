//! tini mode: `corral -- COMMAND` with no services at all. corral reaps the
//! orphans under it, passes the command's exit code on, and leaves nothing
//! behind.

use crate::common::*;

/// The default dirs corral would read when given none.
const DEFAULT_DIRS: [&str; 6] = [
    "/etc/corral/services.d",
    "/etc/services.d",
    "/etc/corral/init.d",
    "/etc/cont-init.d",
    "/etc/corral/finish.d",
    "/etc/cont-finish.d",
];

#[test]
fn tini_mode_reaps_orphans_and_exits_with_the_command_code() {
    for dir in DEFAULT_DIRS {
        assert!(
            !std::path::Path::new(dir).exists(),
            "{dir} exists on this machine: corral without --services would use it, so this test cannot run here"
        );
    }
    let dir = TestDir::new("tini");
    let mut c = dir
        .corral()
        .without_dirs()
        .main([
            "sh",
            "-c",
            r#"
i=0; while [ $i -lt 200 ]; do (: &); i=$((i+1)); done
(sleep 1000 & echo $! > "$T/orphan.pid")
echo $$ > "$T/main.pid"
while [ ! -e "$T/go" ]; do sleep 0.01; done
exit 7
"#,
        ])
        .start();
    let main = c.wait_pids("main.pid", 1)[0];
    let orphan = c.wait_pids("orphan.pid", 1)[0];
    // The orphan's parent died: as a subreaper, corral adopted it.
    c.wait_for(
        "the orphan to be re-parented to corral",
        |c| match proc_stat(orphan) {
            Some((_, ppid)) if ppid == c.pid() => Ok(()),
            seen => Err(format!("orphan (state, ppid) = {seen:?}")),
        },
    );
    c.wait_for("no zombie under corral", |c| {
        let zombies: Vec<i32> = c.descendants().into_iter().filter(|&p| zombie(p)).collect();
        if zombies.is_empty() {
            Ok(())
        } else {
            Err(format!("zombies: {zombies:?}"))
        }
    });

    c.dir().write("go", "");
    assert_eq!(c.wait_exit(DEADLINE), 7);
    assert!(!running(main), "the main command ({main}) is still running");
    assert!(
        !running(orphan),
        "the orphan ({orphan}) outlived corral (or is an unreaped zombie)"
    );
}
