//! The command line (SPEC section 1): options, their environment variables,
//! and the default directories.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::warn;

use crate::config::{LoadOptions, parse_duration};
use crate::supervisor::InitFailure;

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
    after_help = "Other modes:\n  corral check [OPTIONS]        validate every service definition and print the start plan\n  corral ctl SUBCOMMAND ...     control a running corral (also as `corralctl`); see corral ctl --help\n  corral with-contenv PROG ...  s6-overlay's with-contenv (also as a link named `with-contenv`)\n  corral s6-svc [-udr...] DIR   s6-overlay's s6-svc, on corral's services (also as a link named `s6-svc`)\n\nA COMMAND named like a mode must follow `--`: corral -- check"
)]
pub struct Cli {
    #[command(flatten)]
    pub dirs: Dirs,

    /// The control socket [default: /run/corral/control.sock; if /run is not
    /// writable, $XDG_RUNTIME_DIR/corral/control.sock, else /tmp/corral-$UID/control.sock]
    #[arg(long, value_name = "PATH", env = "CORRAL_SOCKET")]
    pub socket: Option<PathBuf>,

    /// Serve /healthz, /readyz and /metrics over HTTP on this address (e.g. 0.0.0.0:9000)
    #[arg(long, value_name = "ADDR", env = "CORRAL_HTTP")]
    pub http: Option<String>,

    /// Total budget for the shutdown sequence (e.g. 9s, 500ms) [default: 9s; when
    /// S6_SERVICES_GRACETIME or S6_KILL_GRACETIME is set, their sum]
    // An `Option`, so that s6-overlay's variables apply only when this is not given.
    #[arg(long, value_name = "DUR", env = "CORRAL_SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

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

/// `corral ctl [--socket PATH] SUBCOMMAND`: the control client.
#[derive(Debug, Parser)]
#[command(
    name = "corral ctl",
    about = "Control a running corral through its socket",
    after_help = "Exit status: 0 done; 1 corral answered with an error (or could not be reached); 2 usage.\n\
Without --socket / CORRAL_SOCKET, the first existing of /run/corral/control.sock,\n\
$XDG_RUNTIME_DIR/corral/control.sock and /tmp/corral-$UID/control.sock is used."
)]
pub struct CtlCli {
    /// corral's control socket [default: the first that exists, see below]
    #[arg(long, value_name = "PATH", env = "CORRAL_SOCKET", global = true)]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub command: CtlCommand,
}

/// Services to act on: names, or `--all`.
#[derive(Debug, Clone, Args)]
pub struct Names {
    /// Service names
    #[arg(value_name = "NAME", required_unless_present = "all")]
    pub names: Vec<String>,

    /// Every service
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// Every service (or the named ones): state, pid, uptime, restarts, readiness, last exit
    Status {
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// The services as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Start services (and what they start after); returns once they are started
    Start(Names),
    /// Stop services (dependants first); returns once they have exited
    Stop(Names),
    /// Stop and start services again; returns once they are started
    Restart(Names),
    /// Send a signal (HUP, SIGUSR1, 10, ...) to services
    Signal {
        #[arg(value_name = "SIG")]
        signal: String,
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// The recent output of a service (`output = "prefix"` only)
    Logs {
        #[arg(value_name = "NAME")]
        name: String,
        /// How many recent lines (corral keeps 1000)
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines until interrupted
        #[arg(short, long)]
        follow: bool,
    },
    /// Wait until services are started (or, with --ready, ready)
    Wait {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
        /// Until ready (their `ready` probe or notification passed), not just started
        #[arg(long)]
        ready: bool,
        /// Give up after this long (e.g. 30s, 500ms): exit 1
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Reload services (their `reload`, then ready again); no name: re-read
    /// every definition, like SIGHUP, then reload every service that has a reload
    Reload {
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Exit 0 if every wanted service is running; else print which are not and exit 1
    Health,
    /// Stop every service and exit, gracefully
    Shutdown {
        /// corral's exit status (when no main COMMAND or essential service decides it)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..=255))]
        exit_code: Option<i32>,
    },
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

// ---------------------------------------------------------------------------
// s6-overlay's variables (SPEC section 4), honoured when corral's own
// settings are absent.

/// The shutdown budget when neither `--shutdown-timeout` /
/// `CORRAL_SHUTDOWN_TIMEOUT` nor an s6-overlay grace time is given: under
/// Docker's 10 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(9);

/// s6-overlay's default for `S6_SERVICES_GRACETIME` and `S6_KILL_GRACETIME`
/// (3000 ms each), used for the one that is not set when the other is.
pub const S6_GRACETIME_DEFAULT: Duration = Duration::from_millis(3000);

/// The s6-overlay variables corral honours, parsed and validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct S6Env {
    /// `S6_SERVICES_GRACETIME` (ms): how long services get to stop.
    pub services_gracetime: Option<Duration>,
    /// `S6_KILL_GRACETIME` (ms): how long the last processes get between
    /// SIGTERM and SIGKILL.
    pub kill_gracetime: Option<Duration>,
    /// `S6_BEHAVIOUR_IF_STAGE2_FAILS`: `0` and `1` (continue; corral logs a
    /// warning either way) are `Continue`, `2` and more (stop) are `Stop`.
    pub behaviour_if_stage2_fails: Option<InitFailure>,
}

impl S6Env {
    /// From this process's environment; every invalid variable, one message each.
    pub fn from_env() -> Result<S6Env, Vec<String>> {
        S6Env::parse(|name| std::env::var_os(name))
    }

    /// From the variables `get` returns. An unset or empty variable is absent
    /// (as corral's own `CORRAL_*` variables are).
    pub fn parse(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<S6Env, Vec<String>> {
        let value = |name: &str| {
            get(name)
                .map(|v| v.to_string_lossy().trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();
        let mut millis = |name: &str| {
            let text = value(name)?;
            match text.parse::<u64>() {
                Ok(ms) => Some(Duration::from_millis(ms)),
                Err(_) => {
                    errors.push(format!(
                        "{name}: expected a number of milliseconds such as 3000, found \"{text}\""
                    ));
                    None
                }
            }
        };
        let services_gracetime = millis("S6_SERVICES_GRACETIME");
        let kill_gracetime = millis("S6_KILL_GRACETIME");
        let behaviour_if_stage2_fails =
            value("S6_BEHAVIOUR_IF_STAGE2_FAILS").and_then(|text| match text.parse::<u64>() {
                Ok(0 | 1) => Some(InitFailure::Continue),
                Ok(_) => Some(InitFailure::Stop),
                Err(_) => {
                    errors.push(format!(
                        "S6_BEHAVIOUR_IF_STAGE2_FAILS: expected 0 (continue), 1 (continue with a warning) or 2 (stop the container), found \"{text}\""
                    ));
                    None
                }
            });
        if errors.is_empty() {
            Ok(S6Env {
                services_gracetime,
                kill_gracetime,
                behaviour_if_stage2_fails,
            })
        } else {
            Err(errors)
        }
    }

    /// The shutdown budget: `given` (`--shutdown-timeout` or
    /// `CORRAL_SHUTDOWN_TIMEOUT`) when there is one; else, when either s6
    /// grace time is set, services' grace time plus the kill grace time (each
    /// 3000 ms when not set), as s6-overlay's shutdown spends them one after
    /// the other; else 9 s.
    pub fn shutdown_timeout(&self, given: Option<Duration>) -> Duration {
        if let Some(given) = given {
            return given;
        }
        if self.services_gracetime.is_none() && self.kill_gracetime.is_none() {
            return DEFAULT_SHUTDOWN_TIMEOUT;
        }
        self.services_gracetime.unwrap_or(S6_GRACETIME_DEFAULT)
            + self.kill_gracetime.unwrap_or(S6_GRACETIME_DEFAULT)
    }

    /// What a failing init script does: `S6_BEHAVIOUR_IF_STAGE2_FAILS`, or
    /// corral's own rule without it (SPEC section 2: startup stops, corral
    /// exits with the script's code). Unlike s6-overlay, which runs every
    /// script before it decides, corral stops at the first failure with `2`.
    pub fn init_failure(&self) -> InitFailure {
        self.behaviour_if_stage2_fails.unwrap_or_default()
    }

    /// How definitions are loaded: `S6_SERVICES_GRACETIME` is the default
    /// `stop-timeout` of s6-style service directories, as s6-overlay gives
    /// its services that long to stop.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            s6_stop_timeout: self.services_gracetime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn s6(vars: &[(&str, &str)]) -> Result<S6Env, Vec<String>> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        S6Env::parse(|name| map.get(name).cloned())
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_shutdown_budget_is_corrals_then_s6s_grace_times_then_9s() {
        let none = s6(&[]).unwrap();
        assert_eq!(none.shutdown_timeout(None), Duration::from_secs(9));
        assert_eq!(none.shutdown_timeout(Some(MS(500))), MS(500));

        let both = s6(&[
            ("S6_SERVICES_GRACETIME", "200"),
            ("S6_KILL_GRACETIME", "300"),
        ])
        .unwrap();
        assert_eq!(both.shutdown_timeout(None), MS(500));
        // corral's own setting wins.
        assert_eq!(both.shutdown_timeout(Some(MS(2000))), MS(2000));

        // One alone: the other takes s6-overlay's default, 3000 ms.
        let kill = s6(&[("S6_KILL_GRACETIME", "200")]).unwrap();
        assert_eq!(kill.shutdown_timeout(None), MS(3200));
        let services = s6(&[("S6_SERVICES_GRACETIME", "0")]).unwrap();
        assert_eq!(services.shutdown_timeout(None), MS(3000));
        assert_eq!(services.services_gracetime, Some(Duration::ZERO));

        // Empty is unset.
        let empty = s6(&[
            ("S6_KILL_GRACETIME", ""),
            ("S6_BEHAVIOUR_IF_STAGE2_FAILS", " "),
        ])
        .unwrap();
        assert_eq!(empty, S6Env::default());
    }

    #[test]
    fn stage2_behaviour_follows_s6_overlay() {
        let of = |v: &str| {
            s6(&[("S6_BEHAVIOUR_IF_STAGE2_FAILS", v)])
                .unwrap()
                .init_failure()
        };
        assert_eq!(of("0"), InitFailure::Continue);
        assert_eq!(of("1"), InitFailure::Continue);
        assert_eq!(of("2"), InitFailure::Stop);
        // s6-overlay stops for anything from 2 up.
        assert_eq!(of("3"), InitFailure::Stop);
        assert_eq!(s6(&[]).unwrap().init_failure(), InitFailure::Stop);
    }

    #[test]
    fn invalid_s6_variables_are_all_named() {
        let errors = s6(&[
            ("S6_KILL_GRACETIME", "3s"),
            ("S6_SERVICES_GRACETIME", "-1"),
            ("S6_BEHAVIOUR_IF_STAGE2_FAILS", "exit"),
        ])
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "S6_SERVICES_GRACETIME: expected a number of milliseconds such as 3000, found \"-1\"",
                "S6_KILL_GRACETIME: expected a number of milliseconds such as 3000, found \"3s\"",
                "S6_BEHAVIOUR_IF_STAGE2_FAILS: expected 0 (continue), 1 (continue with a warning) or 2 (stop the container), found \"exit\"",
            ]
        );
    }
}
