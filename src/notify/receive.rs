//! One datagram off a notify socket (or the syslog socket, `syslog`):
//! recvmsg(2) with the sender's
//! `SCM_CREDENTIALS` and whatever fds it passed along (`SCM_RIGHTS`), and
//! the closing of those fds once the datagram is judged.
//!
//! What it must never do: keep a passed fd (corral holds no fd it did not
//! ask for), or block, on the socket (`MSG_DONTWAIT`) or on closing what a
//! sender passed (`close_passed`). Its tests are the thread's (tests.rs):
//! fds passed along, a barrier, a socket that lingers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

/// Close fds a datagram passed along without blocking on them. The last
/// close of a TCP socket with `SO_LINGER` set waits until its unsent data
/// is gone (socket(7)), and a sender controls both the data and the peer
/// that does not read it: one datagram would stall this thread, and every
/// service's readiness with it. Linger is turned off first (the setting
/// belongs to the socket, which our fd shares), so the close returns at
/// once and the kernel sends what it can in the background.
pub(crate) fn close_passed(fds: Vec<OwnedFd>) {
    for fd in fds {
        let is_socket =
            nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
        if is_socket {
            let off = libc::linger {
                l_onoff: 0,
                l_linger: 0,
            };
            // SAFETY: a valid fd and a linger struct of the size we pass.
            // Failing (not an inet socket) leaves nothing to undo.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&off as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        drop(fd);
    }
}

/// One datagram received: its length in the caller's buffer, whether it
/// was longer, who sent it, and the fds it passed along.
pub(crate) struct Datagram {
    pub(crate) len: usize,
    pub(crate) truncated: bool,
    pub(crate) sender: Option<libc::ucred>,
    /// Passed along with it; closed once the datagram is judged.
    pub(crate) fds: Vec<OwnedFd>,
}

/// recvmsg(2) one datagram with its `SCM_CREDENTIALS`. Any fds passed along
/// (`SCM_RIGHTS`, e.g. sd_notify's `FDSTORE=1` or `BARRIER=1`) arrive
/// close-on-exec; the caller closes them once it has judged the datagram
/// (corral keeps no fd it did not ask for).
pub(crate) fn receive(socket: &UnixDatagram, buf: &mut [u8]) -> io::Result<Datagram> {
    // u64s: cmsg headers need their alignment. Room for the credentials
    // and a good number of fds; fds beyond it are discarded by the kernel.
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is its documented empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers of the lengths it states.
    let n = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut sender = None;
    let mut fds = Vec::new();
    // SAFETY: walking the control buffer the kernel just filled, with the
    // libc macros that bound every step by msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let payload = (header.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            if header.cmsg_level == libc::SOL_SOCKET {
                if header.cmsg_type == libc::SCM_CREDENTIALS
                    && payload >= std::mem::size_of::<libc::ucred>()
                {
                    sender = Some(std::ptr::read_unaligned(data.cast::<libc::ucred>()));
                } else if header.cmsg_type == libc::SCM_RIGHTS {
                    let count = payload / std::mem::size_of::<libc::c_int>();
                    for i in 0..count {
                        let fd = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                        if fd >= 0 {
                            fds.push(OwnedFd::from_raw_fd(fd));
                        }
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Datagram {
        len: usize::try_from(n).unwrap_or(0),
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        sender,
        fds,
    })
}
