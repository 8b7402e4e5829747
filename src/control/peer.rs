//! Who is at the other end of a Unix socket: SO_PEERCRED, which the kernel
//! fills in and neither side can fake. The server admits root and its own
//! uid; the client talks only to a server that runs as root or as itself.
//!
//! What it must never do: take a uid from anything the peer sends.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// The uid of the process at the other end, from SO_PEERCRED (unix(7)): for
/// a client, the server's credentials when it called listen(2); for the
/// server, the client's when it called connect(2). Kept by the kernel, so
/// neither side can claim another uid.
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    // Fail closed: should the kernel not fill it in, this is no one's uid.
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let size = std::mem::size_of::<libc::ucred>();
    let mut len = libc::socklen_t::try_from(size).map_err(|_| io::Error::other("ucred size"))?;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is a
    // valid, properly aligned `ucred` of exactly that size; the fd is open
    // for the duration of the call (borrowed from `stream`).
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::try_from(len).ok() != Some(size) {
        return Err(io::Error::other("short SO_PEERCRED answer"));
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_credentials_are_our_own_on_a_pair() {
        let (client, _server) = UnixStream::pair().expect("pair");
        assert_eq!(
            peer_uid(&client).expect("SO_PEERCRED"),
            nix::unistd::geteuid().as_raw()
        );
    }
}
