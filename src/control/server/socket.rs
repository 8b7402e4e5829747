//! The socket file: its directory made and checked safe, a stale socket
//! of an earlier corral replaced (a live one refused), and the bind done
//! with a umask that never lets the file be wider than 0600.
//!
//! What it must never do: remove anything that is not a socket, or trust a
//! directory it did not check after creating it.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::sys::stat::{Mode, umask};

use crate::control::{DirError, check_socket_dir, create_socket_dir};
use crate::log::info;

/// Make sure the directory of the socket at `path` is safe (see
/// `control::check_socket_dir`), creating what is missing, mode 0700. What
/// exists is checked before anything is created in it, and everything again
/// after: a directory someone else made in between is refused, not trusted.
pub(super) fn safe_dir(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let euid = nix::unistd::geteuid().as_raw();
    let refuse = |why: DirError| {
        format!(
            "control socket {}: not a safe place: {why} (its directory must be a real directory owned by root or uid {euid} that no one else can write, below directories others cannot write unless sticky; choose another --socket / CORRAL_SOCKET)",
            path.display()
        )
    };
    match check_socket_dir(dir, euid) {
        Ok(()) => return Ok(()),
        Err(DirError::Missing(_)) => {}
        Err(why) => return Err(refuse(why)),
    }
    create_socket_dir(dir).map_err(|e| {
        format!(
            "cannot create the control socket's directory {}: {e}",
            dir.display()
        )
    })?;
    check_socket_dir(dir, euid).map_err(refuse)
}

/// A socket file at `path` from an earlier corral that is gone (connect says
/// ECONNREFUSED) is removed; a live one means another corral: an error.
/// Anything that is not a socket is never removed.
pub(super) fn replace_stale(path: &Path) -> Result<(), String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("control socket {}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; not replacing it (remove it, or choose another path with --socket)",
            path.display()
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(format!(
            "another corral is already listening on {} (stop it, or give this one its own --socket / CORRAL_SOCKET)",
            path.display()
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            info!(path = %path.display(), "replacing a stale control socket");
            fs::remove_file(path)
                .map_err(|e| format!("cannot remove stale control socket {}: {e}", path.display()))
        }
        Err(e) => Err(format!(
            "cannot tell whether another corral listens on {}: {e}",
            path.display()
        )),
    }
}

/// bind(2) with umask 0177, so the socket file is created mode 0600: there
/// is no moment at which it is wider. The umask is process-wide; at this
/// point of startup no other thread creates files (the signal thread only
/// forwards signals, the output thread is not started yet).
///
/// The socket is bound (and listening) under a temporary name in the same
/// directory, then renamed into place without replacing anything: the file
/// at `path` never exists before corral listens on it, so a client that
/// sees it (a health check at startup, a test) is never refused. Where the
/// file system cannot rename without replacing, it is bound in place.
pub(super) fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let mut temp = path.as_os_str().to_os_string();
    temp.push(format!(".{}.new", std::process::id()));
    let temp = std::path::PathBuf::from(temp);
    // A leftover of an earlier corral with this pid, in our own directory.
    if fs::symlink_metadata(&temp).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = fs::remove_file(&temp);
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(&temp);
    umask(old);
    // std creates the socket with SOCK_CLOEXEC and accepts with accept4(SOCK_CLOEXEC).
    let listener = match bound {
        Ok(listener) => listener,
        // A path too long for its suffix: in place, as before.
        Err(_) => return bind_in_place(path),
    };
    let placed = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        temp.as_path(),
        nix::fcntl::AT_FDCWD,
        path,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    );
    match placed {
        Ok(()) => Ok(listener),
        Err(errno) => {
            let _ = fs::remove_file(&temp);
            drop(listener);
            match errno {
                nix::errno::Errno::EEXIST => Err(io::Error::from(io::ErrorKind::AddrInUse)),
                _ => bind_in_place(path),
            }
        }
    }
}

fn bind_in_place(path: &Path) -> io::Result<UnixListener> {
    let old = umask(Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    umask(old);
    listener
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_socket_appears_listening_mode_0600_and_never_replaces_a_file() {
        let dir = std::env::temp_dir().join(format!("corral-bind-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let path = dir.join("control.sock");
        let listener = bind_private(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        UnixStream::connect(&path).unwrap();
        drop(listener);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["control.sock"], "no temporary name left");
        // Something already there (a socket another corral just bound): refused.
        let err = bind_private(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        fs::remove_dir_all(&dir).unwrap();
    }
}
