//! The directories a command line names (services, init and finish
//! scripts), their defaults (corral's own, and s6-overlay's when they
//! exist), and the scripts in them.
//!
//! What it must never do: read a script, or fail on a directory that is
//! only a default.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::log::warn;

/// The directories: as given (each option repeatable, or one `:`-separated
/// `CORRAL_*` variable); empty means the defaults (`Dirs::services` etc.).
#[derive(Debug, Clone, Default)]
pub struct Dirs {
    pub services: Vec<PathBuf>,
    pub init_dirs: Vec<PathBuf>,
    pub finish_dirs: Vec<PathBuf>,
    /// `--s6-rc-dir` / `CORRAL_S6_RC_DIR`: `None` when not given, an empty
    /// path for "no tree".
    pub s6_rc_dir: Option<PathBuf>,
}

impl Dirs {
    pub fn services(&self) -> Vec<PathBuf> {
        resolve(&self.services, "/etc/corral/services.d", "/etc/services.d")
    }

    pub fn init(&self) -> Vec<PathBuf> {
        resolve(&self.init_dirs, "/etc/corral/init.d", "/etc/cont-init.d")
    }

    /// The s6-rc source tree to read: as given (empty: none), else
    /// `default` (s6-overlay v3's, `S6Env::default_tree`) when it exists.
    pub fn s6_rc_dir(&self, default: &Path) -> Option<PathBuf> {
        match &self.s6_rc_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(dir.clone()),
            None => Some(default.to_path_buf()).filter(|d| d.is_dir()),
        }
    }

    pub fn finish(&self) -> Vec<PathBuf> {
        resolve(
            &self.finish_dirs,
            "/etc/corral/finish.d",
            "/etc/cont-finish.d",
        )
    }
}

/// Given dirs as they are (an empty `CORRAL_*` entry is dropped); else the
/// defaults that exist.
fn resolve(given: &[PathBuf], default: &str, s6: &str) -> Vec<PathBuf> {
    let given: Vec<PathBuf> = given
        .iter()
        .filter(|p| !p.as_os_str().is_empty())
        .cloned()
        .collect();
    if !given.is_empty() {
        return given;
    }
    [default, s6]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .collect()
}

/// The executable files of `dirs`, each dir in lexical order. Hidden files
/// are skipped; other non-executable files are skipped with a warning.
pub fn collect_scripts(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut scripts = Vec::new();
    for dir in dirs {
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        crate::sort::sort(&mut paths);
        for path in paths {
            if is_hidden(&path) {
                continue;
            }
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
                    scripts.push(path)
                }
                Ok(meta) if meta.is_file() => {
                    warn!(script = %path.display(), "not executable, skipped")
                }
                _ => {}
            }
        }
    }
    Ok(scripts)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}
