//! The control socket: protocol types, the server threads, the `ctl` client,
//! and where the socket lives.
//!
//! The path is `--socket` / `CORRAL_SOCKET` when given; otherwise the first
//! usable of `/run/corral/control.sock`, `$XDG_RUNTIME_DIR/corral/control.sock`
//! and `/tmp/corral-$UID/control.sock` (SPEC section 1). The server takes the
//! first whose directory it can write (or create); the client, the first that
//! exists. A directory corral creates for its socket gets mode 0700.

pub mod client;
pub mod protocol;
pub mod server;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, access};

/// Where corral listens when `/run` is writable (as root in a container).
pub const DEFAULT_SOCKET: &str = "/run/corral/control.sock";

/// The default socket paths, in the order they are tried: `/run`, then
/// `$XDG_RUNTIME_DIR` (when set to an absolute path), then `/tmp/corral-$UID`.
pub fn candidates(xdg_runtime_dir: Option<OsString>, uid: u32) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(DEFAULT_SOCKET)];
    if let Some(xdg) = xdg_runtime_dir.map(PathBuf::from)
        && xdg.is_absolute()
    {
        paths.push(xdg.join("corral/control.sock"));
    }
    paths.push(PathBuf::from(format!("/tmp/corral-{uid}/control.sock")));
    paths
}

/// The default candidates for this process (its environment and real uid).
pub fn default_candidates() -> Vec<PathBuf> {
    candidates(
        std::env::var_os("XDG_RUNTIME_DIR"),
        nix::unistd::getuid().as_raw(),
    )
}

/// The socket path the server uses: `given`, or the first default candidate
/// whose directory this process can use (see `usable_dir`). `None`: nothing
/// is writable; corral runs without a socket.
pub fn server_path(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path.to_path_buf());
    }
    let euid = nix::unistd::geteuid().as_raw();
    default_candidates()
        .into_iter()
        .find(|path| path.parent().is_some_and(|dir| usable_dir(dir, euid)))
}

/// A default socket directory is usable when it exists, is ours (or
/// root's), and we may write it; or when it does not exist and we may create
/// it in its parent. A directory someone else owns is never used: whoever
/// owns it could swap our socket for theirs, and clients would talk to them.
fn usable_dir(dir: &Path, euid: u32) -> bool {
    let writable = |d: &Path| access(d, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
    match fs::metadata(dir) {
        Ok(meta) => meta.is_dir() && (meta.uid() == euid || meta.uid() == 0) && writable(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => dir
            .parent()
            .is_some_and(|parent| parent.is_dir() && writable(parent)),
        Err(_) => false,
    }
}

/// The client's side of the same rule: a default socket is only trusted in
/// a directory owned by root or by the client's own uid.
pub fn trusted_dir(dir: &Path, euid: u32) -> Result<(), String> {
    match fs::metadata(dir) {
        Ok(meta) if meta.uid() == euid || meta.uid() == 0 => Ok(()),
        Ok(meta) => Err(format!(
            "not used: its directory belongs to uid {}, not to you or root",
            meta.uid()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Create `dir` and any missing parent, each with mode 0700. Existing
/// directories are left as they are.
pub fn create_socket_dir(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(d) = next {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        next = d.parent();
    }
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {
                // The umask may have taken bits away; 0700 is what we promise.
                fs::set_permissions(d, fs::Permissions::from_mode(0o700))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_run_then_xdg_then_tmp() {
        assert_eq!(
            candidates(Some("/run/user/1000".into()), 1000),
            vec![
                PathBuf::from("/run/corral/control.sock"),
                PathBuf::from("/run/user/1000/corral/control.sock"),
                PathBuf::from("/tmp/corral-1000/control.sock"),
            ]
        );
        // Unset, empty or relative XDG_RUNTIME_DIR is skipped (XDG base
        // directory spec: relative paths are invalid and must be ignored).
        for xdg in [None, Some("".into()), Some("run/user".into())] {
            assert_eq!(
                candidates(xdg, 0),
                vec![
                    PathBuf::from("/run/corral/control.sock"),
                    PathBuf::from("/tmp/corral-0/control.sock"),
                ]
            );
        }
    }

    #[test]
    fn socket_dirs_are_created_0700_with_their_parents() {
        let base = std::env::temp_dir().join(format!("corral-unit-sockdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("a/b");
        create_socket_dir(&dir).expect("create");
        for d in [&base, &base.join("a"), &dir] {
            let mode = fs::metadata(d).expect("stat").permissions().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        // Existing: left alone.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).expect("chmod");
        create_socket_dir(&dir).expect("again");
        let mode = fs::metadata(&dir).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o750);
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn a_dir_owned_by_someone_else_is_not_usable() {
        let base = std::env::temp_dir().join(format!("corral-unit-usable-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).expect("mkdir");
        let euid = nix::unistd::geteuid().as_raw();
        let owner = fs::metadata(&base).expect("stat").uid();
        // Missing dir in a writable parent: usable (it will be created).
        assert!(usable_dir(&base.join("corral"), euid));
        // Ours: usable. Someone else's (neither us nor root): not.
        assert!(usable_dir(&base, owner));
        if owner == 0 {
            assert!(usable_dir(&base, 4242));
        } else {
            assert!(!usable_dir(&base, owner + 1));
        }
        // The client trusts the same directories.
        assert_eq!(trusted_dir(&base, owner), Ok(()));
        if owner != 0 {
            assert!(trusted_dir(&base, owner + 1).is_err());
        }
        // A file is not a directory.
        fs::write(base.join("f"), "").expect("write");
        assert!(!usable_dir(&base.join("f"), euid));
        let _ = fs::remove_dir_all(&base);
    }
}
