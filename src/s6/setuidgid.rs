//! `s6-setuidgid ACCOUNT PROG...`: exec PROG as another user, as s6's
//! does (s6-setuidgid(8)): ACCOUNT empty, exec without a change; `uid:gid`,
//! those ids and no supplementary group; else a user name looked up in the
//! user database (its uid, its primary gid, and the groups the group
//! database lists it in); an unknown name exits 1. Like s6's (through
//! s6-envuidgid and s6-applyuidgid -z), it leaves no `UID`, `GID` or
//! `GIDLIST` in PROG's environment, and changes nothing else (no `HOME`,
//! no `USER`).
//!
//! What it must never do: exec PROG with privileges it was asked to drop.
//! Supplementary groups go first, then the gid, then the uid (after
//! setuid, the others are no longer allowed); any step that fails ends
//! it with 111, before PROG runs.

use std::ffi::{CString, OsString};
use std::process::Command;

use nix::unistd::{Gid, Uid, User, getgrouplist, setgid, setgroups, setuid};

use super::exec::exec;
use super::{EXIT_SYSTEM, EXIT_USAGE};

const USAGE: &str = "s6-setuidgid: usage: s6-setuidgid username prog...";
/// What PROG's name follows when it cannot be run.
const EXEC_FAILED: &str = "s6-setuidgid: fatal: unable to exec ";
/// An account the user database does not know.
const EXIT_UNKNOWN: u8 = 1;

/// Who to become.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Account {
    /// The empty string: no change.
    Same,
    /// `uid:gid`.
    Ids(Uid, Gid),
    /// A name for the user database.
    Name(String),
}

pub(super) fn parse_account(text: &str) -> Result<Account, String> {
    if text.is_empty() {
        return Ok(Account::Same);
    }
    match text.split_once(':') {
        Some((uid, gid)) => {
            let number = |s: &str, what: &str| {
                s.parse::<u32>()
                    .map_err(|_| format!("invalid {what} in {text}: expected uid:gid"))
            };
            Ok(Account::Ids(
                Uid::from_raw(number(uid, "uid")?),
                Gid::from_raw(number(gid, "gid")?),
            ))
        }
        None => Ok(Account::Name(text.to_string())),
    }
}

/// `s6-setuidgid ACCOUNT PROG...` (`args` without the program name).
pub fn setuidgid(args: &[OsString]) -> u8 {
    let [account, prog, rest @ ..] = args else {
        eprintln!("{USAGE}");
        return EXIT_USAGE;
    };
    let account = match account.to_str().map(parse_account) {
        Some(Ok(account)) => account,
        Some(Err(why)) => {
            eprintln!("s6-setuidgid: fatal: {why}");
            return EXIT_USAGE;
        }
        None => {
            eprintln!(
                "s6-setuidgid: fatal: unknown user {}",
                account.to_string_lossy()
            );
            return EXIT_UNKNOWN;
        }
    };
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    let (uid, gid, groups) = match account {
        Account::Same => return exec(&mut cmd, prog, EXEC_FAILED),
        Account::Ids(uid, gid) => (uid, gid, Vec::new()),
        Account::Name(name) => match User::from_name(&name) {
            Ok(Some(user)) => {
                let groups = CString::new(name.as_str())
                    .map_err(|e| e.to_string())
                    .and_then(|c| getgrouplist(&c, user.gid).map_err(|e| e.desc().to_string()));
                match groups {
                    Ok(groups) => (user.uid, user.gid, groups),
                    Err(why) => {
                        eprintln!(
                            "s6-setuidgid: fatal: unable to read the groups of {name}: {why}"
                        );
                        return EXIT_SYSTEM;
                    }
                }
            }
            Ok(None) => {
                eprintln!("s6-setuidgid: fatal: unknown user {name}");
                return EXIT_UNKNOWN;
            }
            Err(errno) => {
                eprintln!(
                    "s6-setuidgid: fatal: unable to look up user {name}: {}",
                    errno.desc()
                );
                return EXIT_SYSTEM;
            }
        },
    };
    // Groups, then gid, then uid: each while still allowed to.
    if let Err(errno) = setgroups(&groups) {
        eprintln!(
            "s6-setuidgid: fatal: unable to set supplementary groups: {}",
            errno.desc()
        );
        return EXIT_SYSTEM;
    }
    if let Err(errno) = setgid(gid) {
        eprintln!(
            "s6-setuidgid: fatal: unable to set gid to {gid}: {}",
            errno.desc()
        );
        return EXIT_SYSTEM;
    }
    if let Err(errno) = setuid(uid) {
        eprintln!(
            "s6-setuidgid: fatal: unable to set uid to {uid}: {}",
            errno.desc()
        );
        return EXIT_SYSTEM;
    }
    cmd.env_remove("UID")
        .env_remove("GID")
        .env_remove("GIDLIST");
    exec(&mut cmd, prog, EXEC_FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_empty_ids_or_names() {
        assert_eq!(parse_account(""), Ok(Account::Same));
        assert_eq!(
            parse_account("65534:65533"),
            Ok(Account::Ids(Uid::from_raw(65534), Gid::from_raw(65533)))
        );
        assert_eq!(parse_account("abc"), Ok(Account::Name("abc".into())));
        assert_eq!(
            parse_account("x:1"),
            Err("invalid uid in x:1: expected uid:gid".into())
        );
        assert_eq!(
            parse_account("1:"),
            Err("invalid gid in 1:: expected uid:gid".into())
        );
    }
}
