//! What s6-overlay's stage 2 leaves in `/run/s6` for scripts, written by
//! corral at startup when an s6 layout is in use (SPEC section 9): the
//! container environment as an envdir (`container_environment/`, one file
//! per variable, read by `with-contenv` — corral's or s6-overlay's own — and
//! changed by init scripts), and `basedir/bin/` with `halt` and the
//! commands that talk to a supervisor (`s6-svc`, `s6-svwait`,
//! `s6-notifyoncheck`...), as links
//! to corral, put first on the `PATH` of everything corral starts.
//!
//! What it owns: the runtime dir (`/run/s6`, or `CORRAL_S6_RUNTIME_DIR`,
//! which tests point at a directory of their own) and every file in it.
//!
//! What it must never do: follow a link or write into a directory someone
//! else could have planted or could write (every directory on the way is
//! lstat'ed: ours, not a symbolic link, not group- or world-writable), leave
//! a variable readable by others (0700 directory, 0600 files), or fail the
//! startup: a problem here is a warning, and scripts that need the files
//! fail on their own.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// s6-overlay's runtime dir.
pub const RUNTIME_DIR: &str = "/run/s6";

/// Names corral answers to through the links in `basedir/bin`: what talks
/// to a supervisor (and must reach corral, not s6-overlay's copy that
/// expects s6-svscan). The standalone commands (`s6-setuidgid`,
/// `s6-envdir`, execline, with-contenv) keep resolving to the image's own.
pub const SUPERVISOR_COMMANDS: &[&str] = &[
    "halt",
    // s6's own fails unless s6-supervise runs the service (exit 100).
    "s6-notifyoncheck",
    "s6-rc",
    "s6-svc",
    "s6-svok",
    "s6-svstat",
    "s6-svwait",
];

/// The runtime dir: `CORRAL_S6_RUNTIME_DIR` when set and not empty, else
/// `/run/s6`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("CORRAL_S6_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(RUNTIME_DIR),
    }
}

/// `dir/container_environment`: the variables of `vars`, one file each
/// (the value as it is, no newline added: s6-overlay's `with-contenv` reads
/// whole files), in a 0700 directory emptied first (a second boot on a
/// stale `/run` leaves the last run's there). Names that cannot be file
/// names (`/`, a leading `.`, empty) are skipped.
pub fn write_container_environment(
    dir: &Path,
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> io::Result<PathBuf> {
    own_dir(dir, 0o755)?;
    let envdir = dir.join("container_environment");
    own_dir(&envdir, 0o700)?;
    for entry in fs::read_dir(&envdir)? {
        let entry = entry?;
        // A directory in it is not a variable: left alone.
        if !entry.file_type()?.is_dir() {
            fs::remove_file(entry.path())?;
        }
    }
    for (name, value) in vars {
        if !is_file_name(&name) {
            continue;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(envdir.join(&name))?;
        file.write_all(value.as_bytes())?;
    }
    Ok(envdir)
}

/// `dir/basedir/bin` holding a link to `exe` for each of
/// `SUPERVISOR_COMMANDS`; returns the bin dir, to be put first on `PATH`.
pub fn install_commands(dir: &Path, exe: &Path) -> io::Result<PathBuf> {
    own_dir(dir, 0o755)?;
    let basedir = dir.join("basedir");
    // s6-overlay makes `basedir` a link to its package; a stale one from
    // a boot under s6-overlay is replaced (it is ours: the check above
    // holds for `dir`, and nobody else can write in it).
    if fs::symlink_metadata(&basedir).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(&basedir)?;
    }
    own_dir(&basedir, 0o755)?;
    let bin = basedir.join("bin");
    own_dir(&bin, 0o755)?;
    for name in SUPERVISOR_COMMANDS {
        let link = bin.join(name);
        match fs::read_link(&link) {
            Ok(target) if target == exe => continue,
            Ok(_) => fs::remove_file(&link)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Something that is not a link: not ours to replace.
            Err(_) => {
                return Err(io::Error::other(format!(
                    "{} exists and is not a symbolic link",
                    link.display()
                )));
            }
        }
        std::os::unix::fs::symlink(exe, &link)?;
    }
    Ok(bin)
}

/// `PATH` with `first` in front (once: a `PATH` that already starts with
/// it is kept).
pub fn path_with(first: &Path, path: Option<&OsStr>) -> OsString {
    let mut out = OsString::from(first);
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        if std::env::split_paths(path).next().as_deref() == Some(first) {
            return path.to_os_string();
        }
        out.push(":");
        out.push(path);
    }
    out
}

/// `dir` exists as a directory of our own that only we can write: created
/// with `mode` when missing; an existing one must not be a symbolic link,
/// must belong to our euid and must not be group- or world-writable.
fn own_dir(dir: &Path, mode: u32) -> io::Result<()> {
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            // The umask may have taken bits off: set exactly `mode`.
            fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            return Ok(());
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", dir.display()),
            ));
        }
    }
    let meta = fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no failure mode and touches no memory.
    let euid = unsafe { libc::geteuid() };
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: {why}; not writing there", dir.display()),
        ))
    };
    if !meta.file_type().is_dir() {
        return refuse("not a directory (or a symbolic link)");
    }
    if meta.uid() != euid {
        return refuse(&format!("owned by uid {}, not {euid}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse("writable by others");
    }
    Ok(())
}

fn is_file_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty() && !bytes.starts_with(b".") && !bytes.contains(&b'/') && !bytes.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("corral-stage-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn the_environment_is_an_envdir_only_we_can_read_and_a_second_boot_replaces_it() {
        let root = tmp("env");
        let s6 = root.join("s6");
        let envdir =
            write_container_environment(&s6, vars(&[("TZ", "Etc/UTC"), ("MULTI", "a\nb")]))
                .unwrap();
        assert_eq!(fs::read_to_string(envdir.join("TZ")).unwrap(), "Etc/UTC");
        assert_eq!(fs::read_to_string(envdir.join("MULTI")).unwrap(), "a\nb");
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&envdir), 0o700);
        assert_eq!(mode(&envdir.join("TZ")), 0o600);
        // An init script of the last boot added a variable: gone now.
        fs::write(envdir.join("STALE"), "x").unwrap();
        write_container_environment(&s6, vars(&[("TZ", "Europe/Paris"), ("/x", "skipped")]))
            .unwrap();
        assert!(!envdir.join("STALE").exists());
        assert_eq!(
            fs::read_to_string(envdir.join("TZ")).unwrap(),
            "Europe/Paris"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_planted_link_or_a_dir_others_can_write_is_refused() {
        let root = tmp("planted");
        let target = root.join("elsewhere");
        fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, root.join("s6")).unwrap();
        let err = write_container_environment(&root.join("s6"), vars(&[("A", "1")])).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(
            fs::read_dir(&target).unwrap().next().is_none(),
            "nothing written through the link"
        );

        let open = root.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = write_container_environment(&open, vars(&[("A", "1")])).unwrap_err();
        assert!(err.to_string().contains("writable by others"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn commands_link_to_corral_and_a_second_install_changes_nothing() {
        let root = tmp("bin");
        let s6 = root.join("s6");
        let exe = Path::new("/usr/bin/corral");
        let bin = install_commands(&s6, exe).unwrap();
        assert_eq!(bin, s6.join("basedir/bin"));
        for name in SUPERVISOR_COMMANDS {
            assert_eq!(fs::read_link(bin.join(name)).unwrap(), exe);
        }
        install_commands(&s6, exe).unwrap();
        // A stale basedir link (a boot under s6-overlay) is replaced.
        fs::remove_dir_all(s6.join("basedir")).unwrap();
        std::os::unix::fs::symlink(&root, s6.join("basedir")).unwrap();
        install_commands(&s6, exe).unwrap();
        assert!(fs::symlink_metadata(s6.join("basedir")).unwrap().is_dir());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn path_gets_the_bin_dir_first_once() {
        let bin = Path::new("/run/s6/basedir/bin");
        assert_eq!(
            path_with(bin, Some(OsStr::new("/usr/bin:/bin"))),
            "/run/s6/basedir/bin:/usr/bin:/bin"
        );
        assert_eq!(
            path_with(bin, Some(OsStr::new("/run/s6/basedir/bin:/bin"))),
            "/run/s6/basedir/bin:/bin"
        );
        assert_eq!(path_with(bin, None), "/run/s6/basedir/bin");
    }
}
