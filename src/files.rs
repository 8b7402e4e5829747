//! The one way corral reads a file (SPEC section 12, "Files corral reads"):
//! service files, every file of an s6 service directory, env-files and
//! s6-overlay's container environment all go through [`read`].
//!
//! What it owns: opening without blocking (`O_NONBLOCK`: the open of a FIFO
//! or a device never waits for a writer or a carrier), refusing anything but
//! a regular file, and a size cap (1 MiB) checked on the open fd and again
//! while reading (the file may grow meanwhile); and reading an env-file with
//! the permissions of the service's user ([`read_as`]).
//!
//! What it must never do: put any byte of what it read into an error (an
//! env-file may hold secrets; its errors go to logs and `ctl status`), block
//! the loop thread on what it opens, or leave a thread of corral with the
//! credentials of a service user.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

use crate::credentials::Credentials;
use crate::text::io_reason;

/// The largest file corral reads: a service file or env-file is a few KiB; a
/// 25 MB one took 734 MB of memory to parse.
pub const MAX_SIZE: u64 = 1 << 20;

/// How long an env-file read (on its own thread) may take before the start
/// fails. Reading 1 MiB of a local file takes a millisecond; only a file
/// system that does not answer (a hung FUSE or NFS server) gets here, and
/// the loop must not wait on it.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a file could not be read, with its path. Never holds any of its
/// contents.
#[derive(Debug)]
pub struct ReadError {
    pub path: PathBuf,
    pub why: Why,
}

#[derive(Debug)]
pub enum Why {
    /// A directory, FIFO, socket or device.
    NotRegular,
    /// `size` bytes (at least), more than `limit`.
    TooLarge { size: u64, limit: u64 },
    /// The open or read failed: no such file, permission denied, ...
    Io(io::Error),
    /// No read: the service user's permissions could not be taken, or the
    /// file system did not answer in time.
    Unread(String),
}

impl Why {
    /// The file does not exist (or a dangling symlink).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Why::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NotRegular => f.write_str("not a regular file"),
            Why::TooLarge { size, limit } => write!(
                f,
                "too large ({size} bytes, the limit is {})",
                human_size(*limit)
            ),
            Why::Io(err) => f.write_str(&io_reason(err)),
            Why::Unread(why) => f.write_str(why),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for ReadError {}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// The whole of the regular file `path`, at most [`MAX_SIZE`] bytes.
pub fn read(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_limited(path, MAX_SIZE)
}

/// The whole of the regular file `path`, at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let error = |why| ReadError {
        path: path.to_path_buf(),
        why,
    };
    // stat first, so that a device is not even opened when the path names
    // one (opening some has effects: a tape rewinds, a watchdog arms). The
    // fstat below is the check that counts: the path may change in between.
    let meta = fs::metadata(path).map_err(|e| error(Why::Io(e)))?;
    if !meta.is_file() {
        return Err(error(Why::NotRegular));
    }
    let file = open(path).map_err(|e| error(Why::Io(e)))?;
    let meta = file.metadata().map_err(|e| error(Why::Io(e)))?;
    if !meta.is_file() {
        return Err(error(Why::NotRegular));
    }
    if meta.len() > limit {
        return Err(error(Why::TooLarge {
            size: meta.len(),
            limit,
        }));
    }
    // One byte past the limit tells a file that grew since the fstat.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(Why::Io(e)))?;
    let size = bytes.len() as u64;
    if size > limit {
        return Err(error(Why::TooLarge { size, limit }));
    }
    Ok(bytes)
}

/// open(2) with `O_RDONLY | O_NONBLOCK | O_NOCTTY` (std adds `O_CLOEXEC`):
/// a FIFO without a writer, or a device, never blocks the open, and a
/// terminal never becomes corral's controlling terminal.
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// [`read`], with the file-system permissions of `creds` when corral runs as
/// root and they name a user or group: a file that user could not read is
/// an error, as it would be for the service itself. Without root, or
/// without a user or group, corral's own permissions are the service's.
///
/// The read runs on a thread of its own, which takes the credentials for
/// itself alone (Linux credentials are per thread; see below) and ends with
/// them: no thread of corral ever has to switch back, so there is no way
/// back that could fail and leave the loop with a service user's rights.
/// The caller waits at most [`READ_TIMEOUT`] for it. A thread costs about
/// as much as the open; re-reading in the child after its setuid would cost
/// an exec per start instead.
pub fn read_as(path: &Path, creds: &Credentials) -> Result<Vec<u8>, ReadError> {
    let switch = nix::unistd::geteuid().is_root()
        && (creds.uid.is_some() || creds.gid.is_some() || !creds.groups.is_empty());
    let owned = path.to_path_buf();
    let creds = creds.clone();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let reader = thread::Builder::new()
        .name("read-as-user".into())
        // It only opens and reads into a heap buffer.
        .stack_size(64 * 1024)
        .spawn(move || {
            let result = if switch {
                take_credentials(&creds).map_err(|why| ReadError {
                    path: owned.clone(),
                    why: Why::Unread(why),
                })
            } else {
                Ok(())
            };
            let _ = tx.send(result.and_then(|()| read(&owned)));
        });
    let unread = |why: String| ReadError {
        path: path.to_path_buf(),
        why: Why::Unread(why),
    };
    if let Err(err) = reader {
        return Err(unread(format!(
            "cannot start a thread to read it: {}",
            io_reason(&err)
        )));
    }
    // The thread is not joined: when it is late, it ends on its own (its
    // send finds no receiver).
    match rx.recv_timeout(READ_TIMEOUT) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(unread(format!(
            "no answer from the file system within {READ_TIMEOUT:?}"
        ))),
        Err(RecvTimeoutError::Disconnected) => Err(unread("the read failed".into())),
    }
}

/// The raw setgroups(2) of this architecture: with 32-bit gids (the 16-bit
/// one still has the plain name on 32-bit x86 and arm).
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups32;
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups;

/// Give the calling thread, and it alone, the file-system identity of
/// `creds`: supplementary groups, then fsgid, then fsuid (as root; once
/// fsuid is not 0, the kernel takes CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
/// out of the thread's effective set, capabilities(7)). Each step is checked,
/// and an error means nothing may be read.
///
/// setgroups goes through syscall(2): glibc's and musl's setgroups(3) change
/// every thread of the process (POSIX requires it). setfsuid(2) and
/// setfsgid(2) are per thread in every libc; they return the previous id
/// whatever happens, so each is checked by asking again with an invalid id
/// (-1), which changes nothing and returns the current one.
fn take_credentials(creds: &Credentials) -> Result<(), String> {
    if !creds.groups.is_empty() {
        let groups: Vec<libc::gid_t> = creds.groups.iter().map(|g| g.as_raw()).collect();
        // SAFETY: a pointer to `groups.len()` gids that outlive the call.
        let rc = unsafe { libc::syscall(SYS_SETGROUPS, groups.len(), groups.as_ptr()) };
        if rc != 0 {
            return Err(format!(
                "cannot take the service user's groups: {}",
                io_reason(&io::Error::last_os_error())
            ));
        }
    }
    if let Some(gid) = creds.gid {
        let gid = gid.as_raw();
        // SAFETY: plain syscalls on integers.
        let now = unsafe {
            libc::setfsgid(gid);
            libc::setfsgid(libc::gid_t::MAX) as libc::gid_t
        };
        if now != gid {
            return Err(format!("cannot take the permissions of group {gid}"));
        }
    }
    if let Some(uid) = creds.uid {
        let uid = uid.as_raw();
        // SAFETY: plain syscalls on integers.
        let now = unsafe {
            libc::setfsuid(uid);
            libc::setfsuid(libc::uid_t::MAX) as libc::uid_t
        };
        if now != uid {
            return Err(format!("cannot take the permissions of user {uid}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("corral-files-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("mkdir");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// No user or group: corral's own credentials.
    fn corral() -> Credentials {
        Credentials::default()
    }

    fn why(result: Result<Vec<u8>, ReadError>) -> String {
        match result {
            Ok(bytes) => panic!("read {} bytes", bytes.len()),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn reads_a_regular_file_up_to_the_limit() {
        let dir = Scratch::new("regular");
        let path = dir.0.join("f");
        fs::write(&path, "A=1\n").expect("write");
        assert_eq!(read(&path).expect("read"), b"A=1\n");
        fs::write(&path, vec![b'x'; 4096]).expect("write");
        assert_eq!(read_limited(&path, 4096).expect("read").len(), 4096);
        assert_eq!(
            why(read_limited(&path, 4095)),
            format!(
                "{}: too large (4096 bytes, the limit is 4095 bytes)",
                path.display()
            )
        );
    }

    #[test]
    fn a_file_over_one_mib_is_too_large() {
        let dir = Scratch::new("large");
        let path = dir.0.join("big");
        let file = File::create(&path).expect("create");
        // Sparse: the size is what counts, nothing is read.
        file.set_len(25_000_000).expect("truncate");
        assert_eq!(
            why(read(&path)),
            format!(
                "{}: too large (25000000 bytes, the limit is 1 MiB)",
                path.display()
            )
        );
    }

    #[test]
    fn a_fifo_or_a_directory_or_a_device_is_not_read() {
        let dir = Scratch::new("special");
        let fifo = dir.0.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        // No writer: a blocking open would never return.
        assert_eq!(
            why(read(&fifo)),
            format!("{}: not a regular file", fifo.display())
        );
        assert_eq!(
            why(read(&dir.0)),
            format!("{}: not a regular file", dir.0.display())
        );
        assert_eq!(
            why(read(Path::new("/dev/null"))),
            "/dev/null: not a regular file"
        );
    }

    #[test]
    fn the_fd_is_checked_not_only_the_path() {
        // What the stat before the open cannot see: a FIFO put in place
        // between the two. The fstat of the open fd catches it.
        let dir = Scratch::new("fd");
        let fifo = dir.0.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let file = open(&fifo).expect("a FIFO opens without blocking");
        assert!(!file.metadata().expect("fstat").is_file());
    }

    #[test]
    fn errors_say_why_in_plain_words() {
        let missing = Path::new("/nonexistent/corral/env");
        let err = read(missing).expect_err("missing");
        assert!(err.why.is_not_found());
        assert_eq!(
            err.to_string(),
            "/nonexistent/corral/env: no such file or directory"
        );
    }

    #[test]
    fn read_as_corral_itself_reads_the_file() {
        let dir = Scratch::new("as-self");
        let path = dir.0.join("env");
        fs::write(&path, "A=1\n").expect("write");
        assert_eq!(read_as(&path, &corral()).expect("read"), b"A=1\n");
    }

    #[test]
    fn read_as_a_user_has_that_users_permissions_only() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test takes another user's permissions: run it as root (CI does)");
        }
        let dir = Scratch::new("as-user");
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).expect("chmod");
        let secret = dir.0.join("secret");
        fs::write(&secret, "SECRET=hunter2\n").expect("write");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
        let public = dir.0.join("public");
        fs::write(&public, "A=1\n").expect("write");
        fs::set_permissions(&public, fs::Permissions::from_mode(0o644)).expect("chmod");
        let nobody = Credentials {
            uid: Some(nix::unistd::Uid::from_raw(65534)),
            gid: Some(nix::unistd::Gid::from_raw(65534)),
            groups: vec![nix::unistd::Gid::from_raw(65534)],
        };
        assert_eq!(
            why(read_as(&secret, &nobody)),
            format!("{}: permission denied", secret.display())
        );
        assert_eq!(read_as(&public, &nobody).expect("read"), b"A=1\n");
        // A group-readable file through a supplementary group of root's is
        // not readable either: the groups are the user's.
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(read_as(&secret, &nobody).is_err());
        // And the thread that asked still reads as root.
        assert_eq!(read(&secret).expect("read as root"), b"SECRET=hunter2\n");
        assert_eq!(
            read_as(&secret, &corral()).expect("root"),
            b"SECRET=hunter2\n"
        );
    }
}
