//! Where the control socket lives, and when a directory is safe for it.
//!
//! The path is `--socket` / `CORRAL_SOCKET` when given; otherwise the first
//! usable of `/run/corral/control.sock`, `$XDG_RUNTIME_DIR/corral/control.sock`
//! and `/tmp/corral-$UID/control.sock` (SPEC section 1), and last
//! `/dev/shm/corral-$UID/control.sock`: a container with a read-only root
//! still has a writable, sticky `/dev/shm` (Docker and Kubernetes mount one
//! there), so `docker run --read-only --user 1000 --tmpfs /run`, whose
//! `/run` is root's, still gets a socket. The server takes the
//! first whose directory is safe (`check_socket_dir`) and that it can write
//! (or create); the client, the first that exists in a safe directory. A
//! directory corral creates for its socket gets mode 0700.
//!
//! Who may put a socket where the client looks decides whom the client talks
//! to, so a socket directory must be safe for the uid that uses it (SPEC
//! section 12): seen with lstat(2), a real directory (not a symbolic link),
//! owned by that uid or root, that no one else may write; and every
//! directory above it owned by that uid or root and not writable by anyone
//! else unless sticky (as `/tmp`: others may add entries there, but not
//! rename or remove ours). OpenSSH checks `authorized_keys` paths the same
//! way. A symbolic link above the directory is followed only when it is
//! owned by that uid or root; where it leads is checked the same way.
//! What this module must never do: trust a path because `stat(2)`, which
//! follows links, says it is fine.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::{AccessFlags, access};

use crate::log::warn;

/// Where corral listens when `/run` is writable (as root in a container).
pub const DEFAULT_SOCKET: &str = "/run/corral/control.sock";

/// Symbolic links followed while checking one path, at most (as the
/// kernel's ELOOP limit, path_resolution(7)).
const MAX_SYMLINKS: usize = 40;

/// The default socket paths, in the order they are tried: `/run`, then
/// `$XDG_RUNTIME_DIR` (when set to an absolute path), then `/tmp/corral-$UID`,
/// then `/dev/shm/corral-$UID`.
pub fn candidates(xdg_runtime_dir: Option<OsString>, uid: u32) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(DEFAULT_SOCKET)];
    if let Some(xdg) = xdg_runtime_dir.map(PathBuf::from)
        && xdg.is_absolute()
    {
        paths.push(xdg.join("corral/control.sock"));
    }
    paths.push(PathBuf::from(format!("/tmp/corral-{uid}/control.sock")));
    paths.push(PathBuf::from(format!("/dev/shm/corral-{uid}/control.sock")));
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
/// whose directory is safe and this process can use (see `usable_dir`); an
/// unsafe one is skipped with a warning that says why. `None`: nothing is
/// usable; corral runs without a socket. A given path is checked by
/// `server::Server::start`, where an unsafe one is a startup error.
pub fn server_path(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path.to_path_buf());
    }
    let euid = nix::unistd::geteuid().as_raw();
    default_candidates().into_iter().find(|path| {
        let Some(dir) = path.parent() else {
            return false;
        };
        match usable_dir(dir, euid) {
            Ok(usable) => usable,
            Err(unsafe_dir) => {
                warn!(path = %path.display(), reason = %unsafe_dir, "control socket place not safe, skipped");
                false
            }
        }
    })
}

/// Whether a default socket directory can be used: `Ok(true)` when it is
/// safe (`check_socket_dir`) and we may write it, or when it is missing and
/// we may create it in a safe parent; `Ok(false)` when it is safe but not
/// ours to write (root's `/run` for another uid); `Err` when it is not safe.
fn usable_dir(dir: &Path, euid: u32) -> Result<bool, Unsafe> {
    let writable = |d: &Path| access(d, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
    match check_socket_dir(dir, euid) {
        Ok(()) => Ok(writable(dir)),
        Err(DirError::Missing(missing)) => Ok(missing.parent().is_some_and(writable)),
        Err(DirError::Unsafe(why)) => Err(why),
    }
}

/// Why a socket directory was not used.
#[derive(Debug)]
pub enum DirError {
    /// This directory (`dir` or one above it) does not exist; everything
    /// above it is safe, so it may be created.
    Missing(PathBuf),
    Unsafe(Unsafe),
}

/// A directory that is not safe for a socket, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsafe {
    pub path: PathBuf,
    pub why: String,
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path.display(), self.why)
    }
}

impl fmt::Display for DirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirError::Missing(path) => write!(f, "{} does not exist", path.display()),
            DirError::Unsafe(why) => why.fmt(f),
        }
    }
}

fn unsafe_dir(path: &Path, why: impl Into<String>) -> DirError {
    DirError::Unsafe(Unsafe {
        path: path.to_path_buf(),
        why: why.into(),
    })
}

/// Whether `dir` is a safe place for the control socket of uid `uid` (the
/// rules are in the module doc). `dir` may be relative (to the working
/// directory); `..` is taken after the links before it, as the kernel does.
pub fn check_socket_dir(dir: &Path, uid: u32) -> Result<(), DirError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let dir = std::path::absolute(dir)
        .map_err(|e| unsafe_dir(dir, format!("cannot be made absolute: {e}")))?;
    // Above it first: a missing or unsafe parent is the real problem.
    if let Some(parent) = dir.parent() {
        resolve_checked(parent, uid)?;
    }
    let meta = lstat(&dir)?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir(&dir, "is a symbolic link"));
    }
    check_entry(&dir, &meta, uid, Level::SocketDir)
}

/// Where the checked directory stands: the socket's own may not be
/// writable by anyone else, sticky or not; one above it may be, if sticky.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    SocketDir,
    Above,
}

fn lstat(path: &Path) -> Result<fs::Metadata, DirError> {
    fs::symlink_metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DirError::Missing(path.to_path_buf()),
        _ => unsafe_dir(path, format!("cannot be checked: {e}")),
    })
}

/// A directory (already known not to be a link) is owned by `uid` or root
/// and writable by no one else (above the socket's: unless sticky).
fn check_entry(path: &Path, meta: &fs::Metadata, uid: u32, level: Level) -> Result<(), DirError> {
    if !meta.is_dir() {
        return Err(unsafe_dir(path, "is not a directory"));
    }
    if meta.uid() != 0 && meta.uid() != uid {
        return Err(unsafe_dir(
            path,
            format!("is owned by uid {}, not by root or uid {uid}", meta.uid()),
        ));
    }
    let mode = meta.mode() & 0o7777;
    let others_write = mode & 0o022 != 0;
    let sticky = mode & libc::S_ISVTX != 0;
    match level {
        Level::SocketDir if others_write => Err(unsafe_dir(
            path,
            format!("is writable by group or others (mode {mode:04o})"),
        )),
        Level::Above if others_write && !sticky => Err(unsafe_dir(
            path,
            format!("is writable by group or others and not sticky (mode {mode:04o})"),
        )),
        _ => Ok(()),
    }
}

/// Walk `path` from `/`, one component at a time, as the kernel resolves
/// it, checking every directory passed (`Level::Above`) and following only
/// links owned by `uid` or root. Each link's own directory was checked just
/// before, so no one else can swap it.
fn resolve_checked(path: &Path, uid: u32) -> Result<(), DirError> {
    let mut resolved = PathBuf::from("/");
    check_entry(&resolved, &lstat(&resolved)?, uid, Level::Above)?;
    // Components still to walk, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let next = resolved.join(&name);
        let meta = lstat(&next)?;
        if meta.file_type().is_symlink() {
            if meta.uid() != 0 && meta.uid() != uid {
                return Err(unsafe_dir(
                    &next,
                    format!(
                        "is a symbolic link owned by uid {}, not by root or uid {uid}",
                        meta.uid()
                    ),
                ));
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(unsafe_dir(&next, "has too many levels of symbolic links"));
            }
            let target = fs::read_link(&next)
                .map_err(|e| unsafe_dir(&next, format!("cannot be read: {e}")))?;
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            push_components(&mut pending, &target);
            continue;
        }
        check_entry(&next, &meta, uid, Level::Above)?;
        resolved = next;
    }
    Ok(())
}

/// Push `path`'s names onto `pending` so that its first one pops first
/// (`/` and `.` dropped; `..` kept).
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(names.into_iter().rev());
}

/// Create `dir` and any missing parent, each with mode 0700. Existing
/// directories are left as they are, and nothing is trusted here: the caller
/// checks the result with `check_socket_dir`, after creating.
pub fn create_socket_dir(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(d) = next {
        // lstat: a dangling link is not missing, and is not created through.
        if d.as_os_str().is_empty() || fs::symlink_metadata(d).is_ok() {
            break;
        }
        missing.push(d);
        next = d.parent();
    }
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => private(d)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The umask may have taken bits away from a directory we just made; 0700
/// is what we promise. Through an fd opened without following links, so a
/// link put there in the meantime is never chmod-ed through.
fn private(dir: &Path) -> io::Result<()> {
    let fd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // Only our own: someone else's directory is not ours to change (and
    // the check after creation refuses it).
    if fstat(&fd)?.st_uid == nix::unistd::geteuid().as_raw() {
        fchmod(&fd, Mode::from_bits_truncate(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn candidates_are_run_then_xdg_then_tmp_then_shm() {
        assert_eq!(
            candidates(Some("/run/user/1000".into()), 1000),
            vec![
                PathBuf::from("/run/corral/control.sock"),
                PathBuf::from("/run/user/1000/corral/control.sock"),
                PathBuf::from("/tmp/corral-1000/control.sock"),
                PathBuf::from("/dev/shm/corral-1000/control.sock"),
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
                    PathBuf::from("/dev/shm/corral-0/control.sock"),
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

    /// A fresh, private scratch directory for one test, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let base =
                std::env::temp_dir().join(format!("corral-unit-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&base);
            fs::create_dir_all(&base).expect("mkdir");
            fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).expect("chmod");
            Scratch(base)
        }

        fn dir(&self, rel: &str, mode: u32) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir(&path).expect("mkdir");
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn reason(result: Result<(), DirError>) -> String {
        match result {
            Err(DirError::Unsafe(why)) => why.to_string(),
            other => panic!("expected an unsafe directory, got {other:?}"),
        }
    }

    /// What these tests assume: the temporary directory and everything
    /// above it are safe for us (true of `/tmp` as root, and of a user's own
    /// `$TMPDIR`). Otherwise they would prove nothing.
    fn assert_temp_is_safe(uid: u32) {
        let tmp = std::env::temp_dir();
        assert!(
            check_socket_dir(&tmp.join("x"), uid).is_ok()
                || matches!(
                    check_socket_dir(&tmp.join("x"), uid),
                    Err(DirError::Missing(_))
                ),
            "{} is not safe for uid {uid}",
            tmp.display()
        );
    }

    #[test]
    fn a_private_dir_is_safe_and_an_open_one_is_not() {
        let euid = nix::unistd::geteuid().as_raw();
        assert_temp_is_safe(euid);
        let s = Scratch::new("safe");
        let private = s.dir("private", 0o700);
        assert!(check_socket_dir(&private, euid).is_ok());
        assert!(check_socket_dir(&s.dir("readable", 0o755), euid).is_ok());
        // The socket's own directory: no write bit for anyone else, sticky or not.
        for (name, mode) in [("g", 0o770), ("o", 0o703), ("sticky", 0o1777)] {
            let dir = s.dir(name, mode);
            assert_eq!(
                reason(check_socket_dir(&dir, euid)),
                format!(
                    "{} is writable by group or others (mode {mode:04o})",
                    dir.display()
                )
            );
        }
        // Above it: sticky is fine (as /tmp), open and not sticky is not.
        let inner = s.dir("sticky/inner", 0o700);
        assert!(check_socket_dir(&inner, euid).is_ok());
        let inner = s.dir("g/inner", 0o700);
        assert_eq!(
            reason(check_socket_dir(&inner, euid)),
            format!(
                "{} is writable by group or others and not sticky (mode 0770)",
                s.0.join("g").display()
            )
        );
        // Someone else's (neither us nor root): not safe, here or above.
        let owner = fs::metadata(&private).expect("stat").uid();
        if owner != 0 {
            assert_eq!(
                reason(check_socket_dir(&private, owner + 1)),
                format!(
                    "{} is owned by uid {owner}, not by root or uid {}",
                    s.0.display(),
                    owner + 1
                )
            );
        }
        // A file is not a directory.
        fs::write(s.0.join("f"), "").expect("write");
        assert_eq!(
            reason(check_socket_dir(&s.0.join("f"), euid)),
            format!("{} is not a directory", s.0.join("f").display())
        );
    }

    #[test]
    fn a_link_is_never_the_socket_dir_and_is_followed_above_it_when_ours() {
        let euid = nix::unistd::geteuid().as_raw();
        let s = Scratch::new("links");
        let real = s.dir("real", 0o700);
        s.dir("real/run", 0o700);
        std::os::unix::fs::symlink(&real, s.0.join("link")).expect("symlink");
        std::os::unix::fs::symlink("real", s.0.join("relative")).expect("symlink");
        assert_eq!(
            reason(check_socket_dir(&s.0.join("link"), euid)),
            format!("{} is a symbolic link", s.0.join("link").display())
        );
        // Our own links above the directory lead to a safe place: fine.
        assert!(check_socket_dir(&s.0.join("link/run"), euid).is_ok());
        assert!(check_socket_dir(&s.0.join("relative/run"), euid).is_ok());
        assert!(check_socket_dir(&s.0.join("relative/../real/run"), euid).is_ok());
        // ... but not to an open one.
        let open = s.dir("open", 0o777);
        s.dir("open/run", 0o700);
        std::os::unix::fs::symlink(&open, s.0.join("to-open")).expect("symlink");
        assert_eq!(
            reason(check_socket_dir(&s.0.join("to-open/run"), euid)),
            format!(
                "{} is writable by group or others and not sticky (mode 0777)",
                open.display()
            )
        );
        // A loop ends.
        std::os::unix::fs::symlink(s.0.join("loop"), s.0.join("loop")).expect("symlink");
        assert!(reason(check_socket_dir(&s.0.join("loop/run"), euid)).ends_with("symbolic links"));
        // Missing: the first missing one is named, once what is above it is safe.
        match check_socket_dir(&s.0.join("real/none/deeper"), euid) {
            Err(DirError::Missing(path)) => assert_eq!(path, s.0.join("real/none")),
            other => panic!("{other:?}"),
        }
        match check_socket_dir(&s.0.join("open/none"), euid) {
            Err(DirError::Unsafe(why)) => assert_eq!(why.path, open),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn default_dirs_are_usable_when_safe_and_writable_or_creatable() {
        let euid = nix::unistd::geteuid().as_raw();
        let s = Scratch::new("usable");
        // Missing in a writable, safe parent: usable (it will be created).
        assert!(matches!(usable_dir(&s.0.join("corral"), euid), Ok(true)));
        assert!(matches!(usable_dir(&s.0, euid), Ok(true)));
        let open = s.dir("open", 0o777);
        assert!(usable_dir(&open, euid).is_err());
        assert!(usable_dir(&open.join("corral"), euid).is_err());
        let link = s.0.join("link");
        std::os::unix::fs::symlink(&s.0, &link).expect("symlink");
        assert!(usable_dir(&link, euid).is_err());
    }

    #[test]
    fn a_dangling_link_is_not_created_through() {
        let s = Scratch::new("dangling");
        std::os::unix::fs::symlink(s.0.join("nowhere"), s.0.join("dangling")).expect("symlink");
        assert!(create_socket_dir(&s.0.join("dangling/run")).is_err());
        assert!(!s.0.join("nowhere").exists());
    }
}
