//! The command line (SPEC section 1): options, their environment variables,
//! and the default directories.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use tracing::warn;

use crate::config::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct Dirs {
    /// A services directory (repeatable) [default: /etc/corral/services.d,
    /// plus /etc/services.d when it exists]
    #[arg(
        long = "services",
        value_name = "DIR",
        env = "CORRAL_SERVICES",
        value_delimiter = ':'
    )]
    pub services: Vec<PathBuf>,

    /// Init scripts run before the services, in lexical order (repeatable)
    /// [default: /etc/corral/init.d, plus /etc/cont-init.d when it exists]
    #[arg(
        long = "init-dir",
        value_name = "DIR",
        env = "CORRAL_INIT_DIR",
        value_delimiter = ':'
    )]
    pub init_dirs: Vec<PathBuf>,

    /// Finish scripts run after the services stopped (repeatable)
    /// [default: /etc/corral/finish.d, plus /etc/cont-finish.d when it exists]
    #[arg(
        long = "finish-dir",
        value_name = "DIR",
        env = "CORRAL_FINISH_DIR",
        value_delimiter = ':'
    )]
    pub finish_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// corral's own messages on stderr: text or JSON lines
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = "CORRAL_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    #[arg(
        long,
        value_enum,
        value_name = "LEVEL",
        env = "CORRAL_LOG_LEVEL",
        default_value = "info",
        ignore_case = true
    )]
    pub log_level: LogLevel,
}

/// `corral [OPTIONS] [--] [COMMAND [ARG]...]`: the supervisor.
#[derive(Debug, Parser)]
#[command(
    name = "corral",
    version,
    about = "A process supervisor for containers: runs as PID 1, starts, restarts, reaps, signals and stops services.",
    after_help = "Other modes:\n  corral check [OPTIONS]   validate every service definition and print the start plan\n\nA COMMAND named like a mode must follow `--`: corral -- check"
)]
pub struct Cli {
    #[command(flatten)]
    pub dirs: Dirs,

    /// Total budget for the shutdown sequence (e.g. 9s, 500ms)
    #[arg(long, value_name = "DUR", env = "CORRAL_SHUTDOWN_TIMEOUT", default_value = "9s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,

    /// The main program, started once every service is started; its exit ends the container
    // Options of COMMAND after its name are its own (`corral app -v` passes -v to app);
    // an unknown option before it is a usage error, not a program to run.
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<String>,
}

/// `corral check [OPTIONS]`.
#[derive(Debug, Parser)]
#[command(
    name = "corral check",
    about = "Validate every service definition and print the start plan (exit 0, or 2 with every error)"
)]
pub struct CheckCli {
    #[command(flatten)]
    pub dirs: Dirs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Dirs {
    pub fn services(&self) -> Vec<PathBuf> {
        resolve(&self.services, "/etc/corral/services.d", "/etc/services.d")
    }

    pub fn init(&self) -> Vec<PathBuf> {
        resolve(&self.init_dirs, "/etc/corral/init.d", "/etc/cont-init.d")
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
        paths.sort();
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
