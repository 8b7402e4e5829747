//! The command line (SPEC section 1): options, their environment variables,
//! and the default directories.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::ffi::OsString;

use tracing::warn;

use crate::args::{Opt, Positional, Scanned, Stop, env, scan};
use crate::config::parse_duration;
use crate::log::{LogArgs, LogFormat, LogLevel};

/// The directories: as given (each option repeatable, or one `:`-separated
/// `CORRAL_*` variable); empty means the defaults (`Dirs::services` etc.).
#[derive(Debug, Clone, Default)]
pub struct Dirs {
    pub services: Vec<PathBuf>,
    pub init_dirs: Vec<PathBuf>,
    pub finish_dirs: Vec<PathBuf>,
}

/// `corral [OPTIONS] [--] [COMMAND...]`: the supervisor.
#[derive(Debug)]
pub struct Cli {
    pub dirs: Dirs,
    pub socket: Option<PathBuf>,
    pub http: Option<String>,
    /// An `Option`, so that s6-overlay's variables apply only when this is not given.
    pub shutdown_timeout: Option<Duration>,
    pub log: LogArgs,
    /// The main program and its arguments: its exit ends the container.
    pub command: Vec<String>,
}

/// `corral check [OPTIONS]`.
#[derive(Debug)]
pub struct CheckCli {
    pub dirs: Dirs,
    pub log: LogArgs,
}

/// `corral ctl [--socket PATH] SUBCOMMAND`: the control client.
#[derive(Debug)]
pub struct CtlCli {
    pub socket: Option<PathBuf>,
    pub command: CtlCommand,
}

/// Services to act on: names, or `all`.
#[derive(Debug, Clone)]
pub struct Names {
    pub names: Vec<String>,
    pub all: bool,
}

#[derive(Debug, Clone)]
pub enum CtlCommand {
    Status {
        names: Vec<String>,
        json: bool,
    },
    Start(Names),
    Stop(Names),
    Restart(Names),
    Signal {
        signal: String,
        names: Vec<String>,
    },
    Logs {
        name: String,
        lines: usize,
        follow: bool,
    },
    Wait {
        names: Vec<String>,
        ready: bool,
        timeout: Option<Duration>,
    },
    Reload {
        names: Vec<String>,
    },
    Health,
    Shutdown {
        exit_code: Option<i32>,
    },
}

// ---------------------------------------------------------------------------
// Parsing. Each command line is a table of options; `args[0]` is the
// program name. Help and version are a `Stop::Print`, errors a `Stop::Usage`.

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The options shared by the supervisor and `check`, in table order.
const SERVICES: usize = 0;
const INIT_DIR: usize = 1;
const FINISH_DIR: usize = 2;
const LOG_FORMAT: usize = 3;
const LOG_LEVEL: usize = 4;
const SOCKET: usize = 5;
const HTTP: usize = 6;
const SHUTDOWN_TIMEOUT: usize = 7;

const SUPERVISOR_OPTS: &[Opt] = &[
    Opt::value("services", "DIR"),
    Opt::value("init-dir", "DIR"),
    Opt::value("finish-dir", "DIR"),
    Opt::value("log-format", "FORMAT"),
    Opt::value("log-level", "LEVEL"),
    Opt::value("socket", "PATH"),
    Opt::value("http", "ADDR"),
    Opt::value("shutdown-timeout", "DUR"),
];

/// `check` takes the first five.
const CHECK_OPTS: &[Opt] = SUPERVISOR_OPTS.split_at(5).0;

const DIRS_HELP: &str = "\
  --services DIR          a services directory (repeatable, or DIR:DIR)
                          [env CORRAL_SERVICES; default /etc/corral/services.d,
                          plus /etc/services.d when it exists]
  --init-dir DIR          init scripts, run in lexical order before the services
                          [env CORRAL_INIT_DIR; default /etc/corral/init.d,
                          plus /etc/cont-init.d when it exists]
  --finish-dir DIR        finish scripts, run after the services stopped
                          [env CORRAL_FINISH_DIR; default /etc/corral/finish.d,
                          plus /etc/cont-finish.d when it exists]
  --log-format FORMAT     corral's own messages on stderr: text or json
                          [env CORRAL_LOG_FORMAT; default text]
  --log-level LEVEL       error, warn, info, debug, trace or off
                          [env CORRAL_LOG_LEVEL; default info]
";

fn supervisor_help() -> String {
    format!(
        "A process supervisor for containers: runs as PID 1, starts, restarts, reaps,
signals and stops services.

Usage: corral [OPTIONS] [--] [COMMAND [ARG]...]

COMMAND is the main program, started once every service is started; its exit
ends the container. Its own options follow its name (corral app -v).

Options:
{DIRS_HELP}  --socket PATH           the control socket [env CORRAL_SOCKET; default
                          /run/corral/control.sock; if /run is not writable,
                          $XDG_RUNTIME_DIR/corral/control.sock, else
                          /tmp/corral-$UID/control.sock; never a symbolic
                          link, nor a directory others can write]
  --http ADDR             serve /healthz, /readyz and /metrics on ADDR
                          (e.g. 0.0.0.0:9000) [env CORRAL_HTTP]
  --shutdown-timeout DUR  total budget for the shutdown (e.g. 9s, 500ms)
                          [env CORRAL_SHUTDOWN_TIMEOUT; default 9s, or
                          S6_SERVICES_GRACETIME + S6_KILL_GRACETIME when set]
  -h, --help              print this help
  -V, --version           print the version

Other modes:
  corral check [OPTIONS]        validate every service definition, print the start plan
  corral ctl SUBCOMMAND ...     control a running corral (also as `corralctl`)
  corral with-contenv PROG ...  s6-overlay's with-contenv (also as a link `with-contenv`)
  corral s6-svc [-udr...] DIR   s6-overlay's s6-svc on corral's services (also `s6-svc`)

A COMMAND named like a mode must follow `--`: corral -- check
"
    )
}

fn check_help() -> String {
    format!(
        "Validate every service definition and print the start plan
(exit 0, or 2 with every error).

Usage: corral check [OPTIONS]

Options:
{DIRS_HELP}  -h, --help              print this help
"
    )
}

impl Cli {
    pub fn parse(args: &[OsString]) -> Result<Cli, Stop> {
        const P: &str = "corral";
        let s = scan(rest(args), SUPERVISOR_OPTS, Positional::Trailing)
            .map_err(|e| Stop::usage(P, e))?;
        if s.help {
            return Err(Stop::Print(supervisor_help()));
        }
        if s.version {
            return Err(Stop::Print(format!("corral {VERSION}\n")));
        }
        let shutdown_timeout = match given(&s, SHUTDOWN_TIMEOUT, "CORRAL_SHUTDOWN_TIMEOUT") {
            Some((text, from)) => Some(
                parse_duration(&text)
                    .map_err(|e| Stop::usage(P, format!("invalid value for {from}: {e}")))?,
            ),
            None => None,
        };
        Ok(Cli {
            dirs: dirs(&s),
            socket: given(&s, SOCKET, "CORRAL_SOCKET").map(|(v, _)| PathBuf::from(v)),
            http: given(&s, HTTP, "CORRAL_HTTP").map(|(v, _)| v),
            shutdown_timeout,
            log: log_args(&s).map_err(|e| Stop::usage(P, e))?,
            command: s.positional,
        })
    }
}

impl CheckCli {
    pub fn parse(args: &[OsString]) -> Result<CheckCli, Stop> {
        const P: &str = "corral check";
        let s = scan(rest(args), CHECK_OPTS, Positional::Mixed).map_err(|e| Stop::usage(P, e))?;
        if s.help {
            return Err(Stop::Print(check_help()));
        }
        if let Some(extra) = s.positional.first() {
            return Err(Stop::usage(P, format!("unexpected argument {extra}")));
        }
        Ok(CheckCli {
            dirs: dirs(&s),
            log: log_args(&s).map_err(|e| Stop::usage(P, e))?,
        })
    }
}

fn rest(args: &[OsString]) -> &[OsString] {
    args.get(1..).unwrap_or_default()
}

/// The option's last value, else its environment variable's; with where it
/// came from, for messages.
fn given(s: &Scanned, index: usize, var: &'static str) -> Option<(String, String)> {
    match s.last(index) {
        Some(v) => Some((v.to_string(), format!("--{}", SUPERVISOR_OPTS[index].long))),
        None => env(var).map(|v| (v, var.to_string())),
    }
}

fn dirs(s: &Scanned) -> Dirs {
    let list = |index: usize, var: &str| -> Vec<PathBuf> {
        let mut values: Vec<String> = s.values(index).map(str::to_string).collect();
        if values.is_empty() {
            values.extend(env(var));
        }
        values
            .iter()
            .flat_map(|v| v.split(':'))
            .map(PathBuf::from)
            .collect()
    };
    Dirs {
        services: list(SERVICES, "CORRAL_SERVICES"),
        init_dirs: list(INIT_DIR, "CORRAL_INIT_DIR"),
        finish_dirs: list(FINISH_DIR, "CORRAL_FINISH_DIR"),
    }
}

fn log_args(s: &Scanned) -> Result<LogArgs, String> {
    let log_format = match given(s, LOG_FORMAT, "CORRAL_LOG_FORMAT") {
        None => LogFormat::Text,
        Some((v, from)) => match v.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(format!(
                    "invalid value {v:?} for {from} (expected text or json)"
                ));
            }
        },
    };
    let log_level = match given(s, LOG_LEVEL, "CORRAL_LOG_LEVEL") {
        None => LogLevel::Info,
        Some((v, from)) => match v.to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            "off" => LogLevel::Off,
            _ => {
                return Err(format!(
                    "invalid value {v:?} for {from} (expected error, warn, info, debug, trace or off)"
                ));
            }
        },
    };
    Ok(LogArgs {
        log_format,
        log_level,
    })
}

// ---------------------------------------------------------------------------
// `corral ctl`.

/// The subcommands: name, arguments, what it does (for the help).
const CTL_COMMANDS: &[(&str, &str, &str)] = &[
    (
        "status",
        "[NAME...] [--json]",
        "state, pid, uptime, restarts, readiness, last exit",
    ),
    (
        "start",
        "NAME... | --all",
        "start services (and what they start after); returns once started",
    ),
    (
        "stop",
        "NAME... | --all",
        "stop services (dependants first); returns once they exited",
    ),
    (
        "restart",
        "NAME... | --all",
        "stop and start services again; returns once started",
    ),
    (
        "signal",
        "SIG NAME...",
        "send a signal (HUP, SIGUSR1, 10, ...) to services",
    ),
    (
        "logs",
        "NAME [-n N] [-f]",
        "the last N lines (default 100; corral keeps 1000) of a prefix service; -f follows",
    ),
    (
        "wait",
        "NAME... [--ready] [--timeout DUR]",
        "wait until started (--ready: ready); exit 1 at the timeout",
    ),
    (
        "reload",
        "[NAME...]",
        "reload services; no name: re-read every definition, like SIGHUP",
    ),
    (
        "health",
        "",
        "exit 0 if every wanted service is running, else name the others, exit 1",
    ),
    (
        "shutdown",
        "[--exit-code N]",
        "stop every service and exit, gracefully",
    ),
];

fn ctl_help(bin: &str) -> String {
    let mut text = format!(
        "Control a running corral through its socket.

Usage: {bin} [--socket PATH] COMMAND [ARGS]

Commands:
"
    );
    for (name, args, about) in CTL_COMMANDS {
        text.push_str(&format!("  {name:<9} {args}\n            {about}\n"));
    }
    text.push_str(
        "
Options:
  --socket PATH  corral's control socket [env CORRAL_SOCKET; default: the first
                 that exists in a safe directory of /run/corral/control.sock,
                 $XDG_RUNTIME_DIR/corral/control.sock, /tmp/corral-$UID/control.sock]
                 corral ctl talks only to a corral that runs as root or as you.
  -h, --help     print this help (COMMAND --help: that command's)

Exit status: 0 done; 1 corral answered with an error (or could not be reached); 2 usage.
",
    );
    text
}

fn ctl_command_help(bin: &str, name: &str) -> String {
    let (_, args, about) = CTL_COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .copied()
        .unwrap_or((name, "", ""));
    format!("{about}\n\nUsage: {bin} [--socket PATH] {name} {args}\n")
}

impl CtlCli {
    /// `args[0]` is the program (`corral ctl` or `corralctl`), as `bin` says.
    pub fn parse(args: &[OsString], bin: &str) -> Result<CtlCli, Stop> {
        const SOCKET_ONLY: &[Opt] = &[Opt::value("socket", "PATH")];
        let top =
            scan(rest(args), SOCKET_ONLY, Positional::Trailing).map_err(|e| Stop::usage(bin, e))?;
        if top.help || top.version {
            return Err(Stop::Print(ctl_help(bin)));
        }
        let Some((name, sub_args)) = top.positional.split_first() else {
            return Err(Stop::usage(
                bin,
                "a command is required (status, stop, ...)",
            ));
        };
        if name == "help" {
            return Err(Stop::Print(match sub_args.first() {
                Some(sub) if CTL_COMMANDS.iter().any(|(n, _, _)| n == sub) => {
                    ctl_command_help(bin, sub)
                }
                _ => ctl_help(bin),
            }));
        }
        if !CTL_COMMANDS.iter().any(|(n, _, _)| n == name) {
            let names = CTL_COMMANDS.iter().map(|(n, _, _)| *n);
            return Err(Stop::usage(
                bin,
                match crate::text::closest(name, names) {
                    Some(close) => format!("unknown command {name} (did you mean {close}?)"),
                    None => format!("unknown command {name}"),
                },
            ));
        }
        let program = format!("{bin} {name}");
        let usage = |msg: String| Stop::usage(&program, msg);
        // --socket is accepted after the command too; it is always index 0.
        let table: &[Opt] = match name.as_str() {
            "status" => &[Opt::value("socket", "PATH"), Opt::flag("json")],
            "start" | "stop" | "restart" => &[Opt::value("socket", "PATH"), Opt::flag("all")],
            "logs" => &[
                Opt::value("socket", "PATH"),
                Opt::value("lines", "N").short('n'),
                Opt::flag("follow").short('f'),
            ],
            "wait" => &[
                Opt::value("socket", "PATH"),
                Opt::flag("ready"),
                Opt::value("timeout", "DUR"),
            ],
            "shutdown" => &[Opt::value("socket", "PATH"), Opt::value("exit-code", "N")],
            _ => SOCKET_ONLY,
        };
        let owned: Vec<OsString> = sub_args.iter().map(OsString::from).collect();
        let s = scan(&owned, table, Positional::Mixed).map_err(usage)?;
        if s.help {
            return Err(Stop::Print(ctl_command_help(bin, name)));
        }
        let names = s.positional.clone();
        let no_more = |max: usize| match names.get(max) {
            Some(extra) => Err(usage(format!("unexpected argument {extra}"))),
            None => Ok(()),
        };
        let some_names = || {
            if names.is_empty() {
                Err(usage("name at least one service".into()))
            } else {
                Ok(names.clone())
            }
        };
        let targets = || match (names.is_empty(), s.has(1)) {
            (true, false) => Err(usage("name at least one service, or --all".into())),
            (false, true) => Err(usage("give service names or --all, not both".into())),
            (_, all) => Ok(Names {
                names: names.clone(),
                all,
            }),
        };
        let command = match name.as_str() {
            "status" => CtlCommand::Status {
                names: names.clone(),
                json: s.has(1),
            },
            "start" => CtlCommand::Start(targets()?),
            "stop" => CtlCommand::Stop(targets()?),
            "restart" => CtlCommand::Restart(targets()?),
            "signal" => {
                let Some((signal, names)) = names.split_first() else {
                    return Err(usage("give a signal and at least one service".into()));
                };
                if names.is_empty() {
                    return Err(usage("name at least one service".into()));
                }
                CtlCommand::Signal {
                    signal: signal.clone(),
                    names: names.to_vec(),
                }
            }
            "logs" => {
                no_more(1)?;
                let name = names
                    .first()
                    .cloned()
                    .ok_or_else(|| usage("name the service".into()))?;
                let lines = match s.last(1) {
                    None => 100,
                    Some(n) => n.parse().map_err(|_| {
                        usage(format!(
                            "invalid value {n:?} for --lines (expected a number)"
                        ))
                    })?,
                };
                CtlCommand::Logs {
                    name,
                    lines,
                    follow: s.has(2),
                }
            }
            "wait" => CtlCommand::Wait {
                names: some_names()?,
                ready: s.has(1),
                timeout: match s.last(2) {
                    None => None,
                    Some(t) => Some(
                        parse_duration(t)
                            .map_err(|e| usage(format!("invalid value for --timeout: {e}")))?,
                    ),
                },
            },
            "reload" => CtlCommand::Reload {
                names: names.clone(),
            },
            "health" => {
                no_more(0)?;
                CtlCommand::Health
            }
            _ => {
                no_more(0)?;
                let exit_code = match s.last(1) {
                    None => None,
                    Some(n) => match n.parse::<i32>() {
                        Ok(code @ 0..=255) => Some(code),
                        _ => {
                            return Err(usage(format!(
                                "invalid value {n:?} for --exit-code (expected 0 to 255)"
                            )));
                        }
                    },
                };
                CtlCommand::Shutdown { exit_code }
            }
        };
        let socket = s
            .last(0)
            .or(top.last(0))
            .map(str::to_string)
            .or_else(|| env("CORRAL_SOCKET"))
            .map(PathBuf::from);
        Ok(CtlCli { socket, command })
    }
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
