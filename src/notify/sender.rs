//! Who may speak for a service (SPEC 12, "Readiness messages"): a datagram
//! counts only if its sender belongs to the service's current run
//! (`membership`: the spawned pid, its process group, or below it or below
//! the accepted `MAINPID=`), and a `MAINPID=` must name such a process too,
//! never PID 1 or corral (`admit`, the verdict on a whole datagram).
//! Processes are looked up in `/proc/PID/stat` (`read_stat`).
//!
//! What it must never do: take a sender's word for who it is (only the
//! kernel's `SCM_CREDENTIALS` and /proc count), walk more than `MAX_DEPTH`
//! parents for one pid, or read /proc itself in `membership` and `admit`:
//! they are pure functions of a `stat` lookup, so a fake /proc tests them.

use super::message::{Refusal, parse};
use crate::event::NotifyMessage;

/// The most parents walked up from a sender to find the service's process:
/// far more than any service's tree is deep, and a bound on what one forged
/// datagram costs (one /proc read per step).
const MAX_DEPTH: usize = 32;

/// Who speaks for one run of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    /// The spawned pid; also the id of its session and process group.
    pub(super) pid: i32,
    /// The last `MAINPID=` accepted in this run.
    pub(super) main_pid: Option<i32>,
}

/// What `/proc/PID/stat` says of a process, as far as membership goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    ppid: i32,
    pgrp: i32,
}

/// `ppid` and `pgrp` of `pid` from `/proc/PID/stat` (proc(5)): the command
/// name is in parentheses and may hold spaces and ')', so fields are
/// counted after the last ')'. `None` if the process is gone.
pub(super) fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { ppid, pgrp })
}

/// Does process `pid` belong to `run`: is it the spawned pid or the
/// accepted main pid, in the spawned pid's process group, or below one of
/// them (parents walked up through `stat`, at most `MAX_DEPTH` steps)? A
/// descendant of a group member counts too: with the service in a session
/// of its own, only its own processes can be in its group. The walk stops
/// at PID 1 and at corral (`own`): orphans are reparented there, so
/// whatever lies above is not the service's. A pure function of `stat`.
fn membership(
    pid: i32,
    run: &Run,
    own: i32,
    mut stat: impl FnMut(i32) -> Option<Stat>,
) -> Result<(), Refusal> {
    if pid <= 0 {
        // SCM_CREDENTIALS says 0 for a process our namespace cannot see.
        return Err(Refusal::Hidden);
    }
    let mut at = pid;
    for _ in 0..MAX_DEPTH {
        if at == run.pid || Some(at) == run.main_pid {
            return Ok(());
        }
        if at <= 1 || at == own {
            return Err(Refusal::Outside);
        }
        let Some(found) = stat(at) else {
            return Err(if at == pid {
                Refusal::Gone
            } else {
                Refusal::Outside
            });
        };
        if found.pgrp == run.pid {
            return Ok(());
        }
        at = found.ppid;
    }
    Err(Refusal::Outside)
}

/// The message of one datagram, if it counts for `run`: its sender belongs
/// to the run, it fits, it parses, and its `MAINPID=`, if any, names a
/// process of the run other than PID 1 and corral. A pure function of `stat`.
pub(super) fn admit(
    sender: Option<libc::ucred>,
    datagram: &[u8],
    truncated: bool,
    run: &Run,
    own: i32,
    mut stat: impl FnMut(i32) -> Option<Stat>,
) -> Result<NotifyMessage, Refusal> {
    let sender = sender.ok_or(Refusal::NoCredentials)?;
    membership(sender.pid, run, own, &mut stat)?;
    if truncated {
        return Err(Refusal::TooLong);
    }
    let message = parse(datagram)?;
    if let Some(pid) = message.main_pid {
        if pid == 1 {
            return Err(Refusal::MainPidInit);
        }
        if pid == own {
            return Err(Refusal::MainPidCorral);
        }
        membership(pid, run, own, &mut stat).map_err(|_| Refusal::MainPidOutside(pid))?;
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc: pid -> (ppid, pgrp).
    fn procs(table: &[(i32, i32, i32)]) -> impl FnMut(i32) -> Option<Stat> + '_ {
        |pid| {
            table
                .iter()
                .find(|&&(p, _, _)| p == pid)
                .map(|&(_, ppid, pgrp)| Stat { ppid, pgrp })
        }
    }

    /// corral is 10 (a subreaper under the host's init 1); the service was
    /// spawned as 100 (session and group 100). Its tree:
    /// 100 -> 101 (own group, e.g. a shell job) -> 102 -> 103;
    /// 110 in group 100 but an orphan (reparented to corral), and its child
    /// 111 in a group of its own; 120, told as MAINPID, in its own session,
    /// orphaned, with a child 121. Outside: 200 (another service, group
    /// 200) and its child 201; 300, a host process under init; 400, whose
    /// parent chain is deeper than anything a service has.
    const CORRAL: i32 = 10;
    const TABLE: &[(i32, i32, i32)] = &[
        (10, 1, 10),
        (100, 10, 100),
        (101, 100, 101),
        (102, 101, 101),
        (103, 102, 101),
        (110, 10, 100),
        (111, 110, 111),
        (120, 10, 120),
        (121, 120, 120),
        (200, 10, 200),
        (201, 200, 200),
        (300, 1, 300),
    ];
    const RUN: Run = Run {
        pid: 100,
        main_pid: None,
    };

    #[test]
    fn membership_is_the_pid_its_group_and_what_lies_below_them() {
        let check = |pid: i32, run: &Run| membership(pid, run, CORRAL, procs(TABLE));
        for pid in [100, 101, 102, 103, 110, 111] {
            assert_eq!(check(pid, &RUN), Ok(()), "pid {pid}");
        }
        for pid in [120, 121, 200, 201, 300, CORRAL, 1] {
            assert_eq!(check(pid, &RUN), Err(Refusal::Outside), "pid {pid}");
        }
        // Once 120 is the accepted MAINPID, it and its tree count.
        let told = Run {
            pid: 100,
            main_pid: Some(120),
        };
        for pid in [120, 121] {
            assert_eq!(check(pid, &told), Ok(()), "pid {pid}");
        }
        assert_eq!(check(200, &told), Err(Refusal::Outside));
        // Not in our namespace; gone from /proc.
        assert_eq!(check(0, &RUN), Err(Refusal::Hidden));
        assert_eq!(check(-5, &RUN), Err(Refusal::Hidden));
        assert_eq!(check(999, &RUN), Err(Refusal::Gone));
        // The spawned pid itself needs no /proc at all (it may be a zombie
        // already, or /proc a foreign one).
        assert_eq!(membership(100, &RUN, CORRAL, |_| None), Ok(()));
        // As PID 1, corral's pid is 1: the walk stops there too.
        let table: Vec<(i32, i32, i32)> = vec![(5, 1, 5), (6, 5, 5), (7, 1, 7)];
        let run = Run {
            pid: 5,
            main_pid: None,
        };
        assert_eq!(membership(6, &run, 1, procs(&table)), Ok(()));
        assert_eq!(membership(7, &run, 1, procs(&table)), Err(Refusal::Outside));
        assert_eq!(membership(1, &run, 1, procs(&table)), Err(Refusal::Outside));
    }

    #[test]
    fn membership_walks_a_bounded_number_of_parents() {
        // A chain 1000 -> 999 -> ... -> 900 -> 100: deeper than MAX_DEPTH.
        let mut table: Vec<(i32, i32, i32)> = (901..=1000).map(|p| (p, p - 1, p)).collect();
        table.push((900, 100, 900));
        let mut reads = 0;
        let verdict = membership(1000, &RUN, CORRAL, |pid| {
            reads += 1;
            procs(&table)(pid)
        });
        assert_eq!(verdict, Err(Refusal::Outside));
        assert_eq!(reads, MAX_DEPTH);
        // Within the bound, the same kind of chain is the service's.
        assert_eq!(membership(910, &RUN, CORRAL, procs(&table)), Ok(()));
        // A loop in a (hostile or racy) /proc ends too.
        let table = [(500, 501, 500), (501, 500, 501)];
        assert_eq!(
            membership(500, &RUN, CORRAL, procs(&table)),
            Err(Refusal::Outside)
        );
    }

    fn cred(pid: i32, uid: u32) -> Option<libc::ucred> {
        Some(libc::ucred { pid, uid, gid: uid })
    }

    #[test]
    fn admit_checks_the_sender_then_the_mainpid() {
        let admit = |sender, datagram: &[u8], run: &Run| {
            admit(sender, datagram, false, run, CORRAL, procs(TABLE))
        };
        // A child of the service, whatever its uid: accepted.
        let ready = admit(cred(102, 65534), b"READY=1\nMAINPID=102", &RUN).expect("admitted");
        assert!(ready.ready);
        assert_eq!(ready.main_pid, Some(102));
        // Another service's process, even root: dropped.
        assert_eq!(admit(cred(201, 0), b"READY=1", &RUN), Err(Refusal::Outside));
        assert_eq!(admit(None, b"READY=1", &RUN), Err(Refusal::NoCredentials));
        assert_eq!(admit(cred(0, 0), b"READY=1", &RUN), Err(Refusal::Hidden));
        // The service's own process naming what is not the service's.
        for (datagram, why) in [
            (&b"READY=1\nMAINPID=1"[..], Refusal::MainPidInit),
            (b"MAINPID=10", Refusal::MainPidCorral),
            (b"MAINPID=200", Refusal::MainPidOutside(200)),
            (b"MAINPID=300", Refusal::MainPidOutside(300)),
            (b"MAINPID=120", Refusal::MainPidOutside(120)),
            (b"MAINPID=999", Refusal::MainPidOutside(999)),
            (b"MAINPID=0", Refusal::BadMainPid),
            (b"MAINPID=-1", Refusal::BadMainPid),
        ] {
            assert_eq!(
                admit(cred(100, 0), datagram, &RUN),
                Err(why),
                "{datagram:?}"
            );
        }
        // As PID 1 (own = 1), MAINPID=1 is refused as PID 1.
        assert_eq!(
            super::admit(cred(100, 0), b"MAINPID=1", false, &RUN, 1, procs(TABLE)),
            Err(Refusal::MainPidInit)
        );
        // The sender is checked first: a stranger's long datagram is
        // "outside", not "too long".
        assert_eq!(
            super::admit(cred(201, 0), b"", true, &RUN, CORRAL, procs(TABLE)),
            Err(Refusal::Outside)
        );
        assert_eq!(
            super::admit(cred(100, 0), b"", true, &RUN, CORRAL, procs(TABLE)),
            Err(Refusal::TooLong)
        );
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        assert_eq!(
            parse_stat("42 (a) b) c (d)) S 7 42 42 0 -1 4194560 ..."),
            Some(Stat { ppid: 7, pgrp: 42 })
        );
        assert_eq!(parse_stat("42 (sh) S 7"), None);
        assert_eq!(parse_stat(""), None);
        let me = read_stat(std::process::id() as i32).expect("our own stat");
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(me.pgrp, nix::unistd::getpgrp().as_raw());
    }
}
