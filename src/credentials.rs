//! `Credentials`: the user, group and supplementary groups a service runs
//! as, and reads its env-file as. Resolved from names once, at load time
//! (`config`), so that a spawn never looks up `/etc/passwd`; used by
//! `process` to spawn and by `files` to read with the service's permissions.
//!
//! Plain data, below both: it must never look anything up, nor change the
//! ids of any process or thread.

use nix::unistd::{Gid, Uid};

/// Credentials resolved at load time, so a spawn never looks up `/etc/passwd`.
/// The default names no user and no group: corral's own are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
    /// Supplementary groups to set (from the user's group membership, plus `gid`).
    /// Empty when neither `user` nor `group` is set: corral's groups are kept.
    pub groups: Vec<Gid>,
}
