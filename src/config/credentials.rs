//! `user` and `group` resolved to ids at load time, so that a spawn never
//! reads `/etc/passwd` (which may change, or be unreadable, after startup).

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User, getgid, getgrouplist};

use super::raw::Id;
use super::spec::Credentials;
use super::value::{At, Problem};

/// Resolves what the file says into ids:
///
/// - a user with a passwd entry (by name or by id): its uid; gid = `group` if
///   given, else the user's primary group; groups = its memberships from
///   getgrouplist(3), which include gid;
/// - a numeric user without a passwd entry: that uid; gid = `group` if given,
///   else corral's own gid (root's 0 when corral runs as root, as Docker
///   does for `--user 1000`); groups = `[gid]`, so corral's supplementary
///   groups are dropped;
/// - only a group: gid, groups = `[gid]`;
/// - neither: nothing changes, corral's credentials are kept.
pub(super) fn resolve(
    user: Option<&At<Id>>,
    group: Option<&At<Id>>,
) -> Result<Credentials, Vec<Problem>> {
    let mut problems = Vec::new();
    let gid = match group.map(resolve_group) {
        None => None,
        Some(Ok(gid)) => Some(gid),
        Some(Err(problem)) => {
            problems.push(problem);
            None
        }
    };
    let credentials = match user {
        None => Credentials {
            uid: None,
            gid,
            groups: gid.into_iter().collect(),
        },
        Some(user) => match resolve_user(user, gid) {
            Ok(credentials) => credentials,
            Err(problem) => {
                problems.push(problem);
                Credentials::default()
            }
        },
    };
    if problems.is_empty() {
        Ok(credentials)
    } else {
        Err(problems)
    }
}

fn resolve_group(group: &At<Id>) -> Result<Gid, Problem> {
    match &group.value {
        Id::Number(n) => Ok(Gid::from_raw(*n)),
        Id::Name(name) => match Group::from_name(name) {
            Ok(Some(entry)) => Ok(entry.gid),
            Ok(None) => Err(Problem::at(
                group.at,
                format!("`group`: unknown group \"{}\"", name.escape_debug()),
            )),
            Err(errno) => Err(Problem::at(
                group.at,
                format!(
                    "`group`: cannot look up group \"{}\": {errno}",
                    name.escape_debug()
                ),
            )),
        },
    }
}

/// `gid` is the resolved `group`, if one was given (and resolved).
fn resolve_user(user: &At<Id>, gid: Option<Gid>) -> Result<Credentials, Problem> {
    let (entry, shown) = match &user.value {
        Id::Name(name) => (
            User::from_name(name),
            format!("\"{}\"", name.escape_debug()),
        ),
        Id::Number(n) => (User::from_uid(Uid::from_raw(*n)), n.to_string()),
    };
    let entry = entry.map_err(|errno| {
        Problem::at(
            user.at,
            format!("`user`: cannot look up user {shown}: {errno}"),
        )
    })?;
    match (entry, &user.value) {
        (Some(entry), _) => {
            let gid = gid.unwrap_or(entry.gid);
            let groups = CString::new(entry.name.as_bytes())
                .map_err(|e| e.to_string())
                .and_then(|name| getgrouplist(&name, gid).map_err(|e| e.to_string()))
                .map_err(|e| {
                    Problem::at(
                        user.at,
                        format!("`user`: cannot list the groups of user {shown}: {e}"),
                    )
                })?;
            Ok(Credentials {
                uid: Some(entry.uid),
                gid: Some(gid),
                groups,
            })
        }
        (None, Id::Number(n)) => {
            let gid = gid.unwrap_or_else(getgid);
            Ok(Credentials {
                uid: Some(Uid::from_raw(*n)),
                gid: Some(gid),
                groups: vec![gid],
            })
        }
        (None, Id::Name(_)) => Err(Problem::at(
            user.at,
            format!("`user`: unknown user {shown}"),
        )),
    }
}
