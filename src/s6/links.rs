//! The s6 commands by name (`command`), and `corral s6-links [--force]
//! DIR`, which installs them (and `corralctl`) as symbolic links to
//! corral's own executable.
//!
//! What it must never do: replace a file that is not a symbolic link
//! without `--force` (it may be s6-overlay's own program), or write
//! anywhere but DIR.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{EXIT_SYSTEM, EXIT_USAGE};

/// A command's entry point: its arguments without the program name, its
/// exit status back.
pub type Command = fn(&[OsString]) -> u8;

/// Every s6-overlay command corral provides, by the name it is invoked by.
pub const COMMANDS: [(&str, Command); 11] = [
    ("with-contenv", super::with_contenv),
    ("s6-svc", super::svc),
    ("s6-svwait", super::svwait),
    ("s6-svstat", super::svstat),
    ("s6-svok", super::svok),
    ("s6-rc", super::rc),
    ("s6-setuidgid", super::setuidgid),
    ("s6-envdir", super::envdir),
    ("s6-notifyoncheck", super::notifyoncheck),
    ("printcontenv", super::printcontenv),
    ("halt", super::halt),
];

/// The s6 command called `name`, if corral has one.
pub fn command(name: &str) -> Option<Command> {
    COMMANDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, command)| command)
}

const USAGE: &str = "usage: corral s6-links [--force] DIR";

/// What one link needed.
#[derive(Debug, PartialEq, Eq)]
enum Done {
    Created,
    Replaced,
    AlreadyThere,
}

/// `corral s6-links [--force] DIR` (`args` after `s6-links`).
pub fn install_links(args: &[OsString]) -> u8 {
    let mut force = false;
    let mut dir = None;
    for arg in args {
        match arg.to_str() {
            Some("--force") => force = true,
            Some("-h" | "--help") => {
                println!(
                    "Install corral's s6-overlay commands in DIR, as symbolic links to corral:\n  {}, corralctl\n\n{USAGE}\n\nAn existing link is pointed at corral; a file that is not a link is left\nalone unless --force is given.",
                    COMMANDS.map(|(n, _)| n).join(", ")
                );
                return 0;
            }
            _ if dir.is_none() && !arg.to_string_lossy().starts_with('-') => {
                dir = Some(PathBuf::from(arg));
            }
            _ => {
                eprintln!(
                    "corral s6-links: unexpected argument {}\n{USAGE}",
                    arg.to_string_lossy()
                );
                return EXIT_USAGE;
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("corral s6-links: no directory given\n{USAGE}");
        return EXIT_USAGE;
    };
    let target = match fs::read_link("/proc/self/exe") {
        Ok(target) => target,
        Err(err) => {
            eprintln!("corral s6-links: cannot tell where corral's executable is: {err}");
            return EXIT_SYSTEM;
        }
    };
    if let Err(err) = fs::create_dir_all(&dir) {
        eprintln!("corral s6-links: cannot create {}: {err}", dir.display());
        return EXIT_SYSTEM;
    }
    let mut code = 0;
    let names = COMMANDS.iter().map(|&(n, _)| n).chain(["corralctl"]);
    for name in names {
        let path = dir.join(name);
        match link(&path, &target, force) {
            Ok(Done::Created) => println!("{}: created", path.display()),
            Ok(Done::Replaced) => println!("{}: replaced", path.display()),
            Ok(Done::AlreadyThere) => println!("{}: already a link to corral", path.display()),
            Err(why) => {
                eprintln!("corral s6-links: {}: {why}", path.display());
                code = EXIT_SYSTEM;
            }
        }
    }
    code
}

/// Make `path` a symbolic link to `target`.
fn link(path: &Path, target: &Path, force: bool) -> Result<Done, String> {
    let done = match fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Done::Created,
        Err(err) => return Err(err.to_string()),
        Ok(meta) if meta.file_type().is_symlink() => {
            if fs::read_link(path).is_ok_and(|t| t == target) {
                return Ok(Done::AlreadyThere);
            }
            Done::Replaced
        }
        Ok(meta) if meta.is_dir() => return Err("a directory is in the way".into()),
        Ok(_) if force => Done::Replaced,
        Ok(_) => {
            return Err("not a symbolic link: left alone (--force replaces it)".into());
        }
    };
    // A new link beside it, renamed over it: the name never goes missing.
    let temporary = path.with_file_name(format!(
        ".{}.corral-link",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary).map_err(|e| e.to_string())?;
    fs::rename(&temporary, path).map_err(|e| {
        let _ = fs::remove_file(&temporary);
        e.to_string()
    })?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_found_by_name() {
        for (name, _) in COMMANDS {
            assert!(command(name).is_some(), "{name}");
        }
        assert!(command("s6-svscan").is_none());
        // What corral links in /run/s6/basedir/bin at startup.
        for name in super::super::stage::SUPERVISOR_COMMANDS {
            assert!(command(name).is_some(), "{name}");
        }
        assert!(command("corralctl").is_none());
    }

    #[test]
    fn links_are_made_replaced_and_kept_but_files_are_not_replaced() {
        let dir = std::env::temp_dir().join(format!("corral-unit-links-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let target = Path::new("/bin/true");
        let path = dir.join("s6-svc");
        assert_eq!(link(&path, target, false), Ok(Done::Created));
        assert_eq!(link(&path, target, false), Ok(Done::AlreadyThere));
        assert_eq!(
            link(&path, Path::new("/bin/false"), false),
            Ok(Done::Replaced)
        );
        let file = dir.join("s6-envdir");
        fs::write(&file, "s6's own").unwrap();
        assert!(link(&file, target, false).unwrap_err().contains("--force"));
        assert_eq!(fs::read_to_string(&file).unwrap(), "s6's own");
        assert_eq!(link(&file, target, true), Ok(Done::Replaced));
        assert_eq!(fs::read_link(&file).unwrap(), target);
        let _ = fs::remove_dir_all(&dir);
    }
}
