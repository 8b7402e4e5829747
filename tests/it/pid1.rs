//! corral as a true PID 1, in a fresh PID namespace
//! (`unshare --pid --fork --mount-proc`): orphan reaping at scale, and the
//! shutdown of many services at once. (The restart of a SIGKILLed service as
//! PID 1 is in `lifecycle.rs`, `docker stop` as PID 1 in `exit_codes.rs`.)

use std::time::Duration;

use crate::common::*;

/// 10,000 double-forked orphans: each `(: &)` forks a subshell that forks a
/// background child and exits at once, so the child ends up re-parented to
/// PID 1. Four loops run side by side to keep this quick on two cores. Once
/// they are done, no zombie may be left in the namespace, and the only
/// process besides corral must be the service itself.
#[test]
fn ten_thousand_orphans_leave_no_zombie() {
    let dir = TestDir::new("orphans");
    dir.service(
        "forker",
        r#"
command = '''
for k in 1 2 3 4; do
  ( i=0; while [ $i -lt 2500 ]; do (: &); i=$((i+1)); done ) &
done
wait
echo $$ > "$T/forker.pid"
echo done > "$T/done"
exec sleep 1000
'''
"#,
    );
    let mut c = dir.corral().pid1().start();
    // Slow by nature (20,000 forks); generous for a loaded machine.
    c.wait_for_within(Duration::from_secs(180), "the forker to finish", |c| {
        if c.dir().read("done").trim() == "done" {
            Ok(())
        } else {
            Err(format!("{} processes under corral", c.descendants().len()))
        }
    });
    let forker = c.dir().pids("forker.pid")[0];

    c.wait_for(
        "no zombie in the namespace, and only the service left besides corral",
        |c| {
            let all = c.descendants();
            let zombies = all.iter().filter(|&&p| zombie(p)).count();
            let only_service = c.host_pid(forker).is_some_and(|s| all == vec![s]);
            if zombies == 0 && only_service {
                Ok(())
            } else {
                let left = c.describe_descendants();
                Err(format!(
                    "{zombies} zombie(s); {} process(es): {:?}",
                    left.len(),
                    left.iter().take(10).collect::<Vec<_>>()
                ))
            }
        },
    );
    assert_eq!(c.stop(), 0, "no main command, stopped by SIGTERM: exit 0");
}

/// SIGTERM to PID 1 stops 10 independent services together: each one's
/// SIGTERM trap waits (up to ~10 s) until all 10 have entered their traps,
/// and records whether they all did. Stopping them one after another would
/// leave the first alone for the whole 10 s (and take 100 s in all). None is
/// SIGKILLed (`stop-timeout` is far above the barrier), and corral exits 0.
#[test]
fn sigterm_to_pid1_stops_ten_services_in_parallel() {
    const N: usize = 10;
    let dir = TestDir::new("parallel-stop");
    for n in 0..N {
        dir.service(
            &format!("s{n}"),
            &format!(
                r#"
stop-timeout = "40s"
command = '''
trap '
  echo TERM > "$T/s{n}.sig"
  touch "$T/stopping.s{n}"
  i=0
  while [ "$(ls "$T" | grep -c "^stopping\.")" -lt {N} ] && [ $i -lt 200 ]; do
    sleep 0.05; i=$((i+1))
  done
  if [ $i -lt 200 ]; then echo together; else echo alone; fi > "$T/s{n}.stopped"
  exit 0
' TERM
echo $$ > "$T/s{n}.pid"
while :; do sleep 1; done
'''
"#
            ),
        );
    }
    let mut c = dir
        .corral()
        .args(["--shutdown-timeout", "60s"])
        .pid1()
        .start();
    for n in 0..N {
        c.wait_pids(&format!("s{n}.pid"), 1);
    }

    c.signal(nix::sys::signal::Signal::SIGTERM);
    // Stopped one by one, the first trap alone would take ~10 s and all ten
    // ~100 s: this wait times out, showing which traps ended and how.
    c.wait_for("every service's stop trap to end", |c| {
        let stopped: Vec<String> = (0..N)
            .map(|n| c.dir().read(&format!("s{n}.stopped")).trim().to_string())
            .collect();
        if stopped.iter().all(|s| !s.is_empty()) {
            Ok(())
        } else {
            Err(format!("s0..s9 traps: {stopped:?}"))
        }
    });
    let code = c.wait_exit(DEADLINE);
    assert_eq!(code, 0, "no main command, stopped by SIGTERM: exit 0");

    let d = c.dir();
    for n in 0..N {
        assert_eq!(
            d.read(&format!("s{n}.sig")).trim(),
            "TERM",
            "s{n} did not get SIGTERM (or its trap never ran: SIGKILLed?)"
        );
        assert_eq!(
            d.read(&format!("s{n}.stopped")).trim(),
            "together",
            "s{n} was stopping while not all 10 were: the stops were not parallel"
        );
    }
    let stderr = c.stderr();
    assert!(
        !stderr.contains("SIGKILL"),
        "a service was SIGKILLed:\n{stderr}"
    );
}
