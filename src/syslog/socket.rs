//! The syslog socket file: a stale socket at the path replaced, the bind,
//! mode 0666 (every service may log), the socket's options (credentials
//! with each datagram, no fds passed along, a larger receive buffer), and
//! the file's removal at exit, if it is still ours.
//!
//! What it must never do: remove anything that is not a socket (lstat(2),
//! so a link is never followed), replace a socket someone listens on, or
//! change the mode of anything but the socket it bound.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{FchmodatFlags, Mode, fchmodat};

use crate::log::{info, warn};

/// SO_RCVBUF asked for: room for bursts. For Unix datagram sockets the
/// kernel bounds the queue by its length (`net.unix.max_dgram_qlen`) and
/// charges each datagram to its sender, so this costs corral nothing until
/// used.
const RECEIVE_BUFFER: libc::c_int = 1024 * 1024;

/// SO_PASSRIGHTS (Linux 6.16, asm-generic/socket.h): 0 refuses fds passed
/// along with a datagram (`SCM_RIGHTS`), so the sender's sendmsg(2) fails
/// and no fd ever reaches corral. The architectures with their own numbers
/// (alpha, mips, parisc, sparc) do without: passed fds are then received
/// and closed at once.
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
const SO_PASSRIGHTS: Option<libc::c_int> = Some(83);
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
const SO_PASSRIGHTS: Option<libc::c_int> = None;

/// Bind a datagram socket at `path`, mode 0666, with its options; returns
/// it (non-blocking, close-on-exec) and the file's (device, inode).
pub(super) fn bind(path: &Path) -> io::Result<(UnixDatagram, (u64, u64))> {
    replace_stale(path)?;
    // std creates every socket with SOCK_CLOEXEC.
    let socket = UnixDatagram::bind(path).map_err(|e| context(path, e))?;
    let meta = fs::symlink_metadata(path).map_err(|e| context(path, e))?;
    if !meta.file_type().is_socket() {
        // Not removed: whatever it is, it is not what was bound.
        return Err(context(
            path,
            io::Error::other("replaced while it was being bound"),
        ));
    }
    let file = (meta.dev(), meta.ino());
    // Not through a link, should one have replaced the socket since.
    let set_up = fchmodat(
        AT_FDCWD,
        path,
        Mode::from_bits_truncate(0o666),
        FchmodatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
    .and_then(|()| options(&socket));
    match set_up {
        Ok(()) => Ok((socket, file)),
        Err(e) => {
            remove(path, file);
            Err(context(path, e))
        }
    }
}

fn context(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("syslog socket {}: {err}", path.display()),
    )
}

/// Remove a socket at `path` that nobody listens on (connect(2) says
/// ECONNREFUSED: an earlier run's). A live one (a syslog daemon, a host's
/// `/dev/log` mounted in) and anything that is not a socket are errors.
fn replace_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(context(path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "syslog socket {}: it exists and is not a socket; not replacing it",
                path.display()
            ),
        ));
    }
    let probe = UnixDatagram::unbound()?;
    match probe.connect(path) {
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "syslog socket {}: another program listens there",
                path.display()
            ),
        )),
        // ECONNREFUSED: nobody; EPROTOTYPE: a stream socket, which no
        // syslog(3) writes to and which nobody here could share.
        Err(e)
            if e.kind() == io::ErrorKind::ConnectionRefused
                || e.raw_os_error() == Some(libc::EPROTOTYPE) =>
        {
            info!(path = %path.display(), "replacing a stale syslog socket");
            fs::remove_file(path).map_err(|e| context(path, e))
        }
        Err(e) => Err(context(path, e)),
    }
}

fn set_option(socket: &UnixDatagram, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid socket fd and a c_int option of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Non-blocking; credentials with each datagram (`SO_PASSCRED`); no fds
/// passed along where the kernel can refuse them; a larger receive buffer
/// (the kernel's cap applies; not having it changes nothing that matters).
fn options(socket: &UnixDatagram) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    set_option(socket, libc::SO_PASSCRED, 1)?;
    if let Some(option) = SO_PASSRIGHTS {
        // ENOPROTOOPT before Linux 6.16: passed fds are closed as read.
        let _ = set_option(socket, option, 0);
    }
    let _ = set_option(socket, libc::SO_RCVBUF, RECEIVE_BUFFER);
    Ok(())
}

/// Remove the socket file at `path` if it is still the one bound (`file`:
/// device, inode): a file someone put there since is not ours.
pub(super) fn remove(path: &Path, file: (u64, u64)) {
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.file_type().is_socket()
        && (meta.dev(), meta.ino()) == file
        && let Err(err) = fs::remove_file(path)
    {
        warn!(path = %path.display(), %err, "cannot remove the syslog socket");
    }
}
