//! `corral [OPTIONS] [--] [COMMAND...]` (the supervisor) and `corral check
//! [OPTIONS]`: one table of options, `check` taking the first six; each
//! option's `CORRAL_*` variable when it is not given.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::{Dirs, rest};
use crate::args::{Opt, Positional, Scanned, Stop, env, scan};
use crate::config::parse_duration;
use crate::log::{LogArgs, LogFormat, LogLevel};
use crate::output::{Format, OutputFormat};

/// `corral [OPTIONS] [--] [COMMAND...]`: the supervisor.
#[derive(Debug)]
pub struct Cli {
    pub dirs: Dirs,
    pub socket: Option<PathBuf>,
    pub http: Option<String>,
    /// An `Option`, so that s6-overlay's variables apply only when this is not given.
    pub shutdown_timeout: Option<Duration>,
    pub log: LogArgs,
    /// How services' lines are written (`--output-format`, `--output-timestamps`).
    pub output: Format,
    /// `--syslog PATH`: a datagram socket for syslog(3) messages, which become
    /// lines of the pseudo-service `syslog`.
    pub syslog: Option<PathBuf>,
    /// The main program and its arguments: its exit ends the container.
    pub command: Vec<String>,
}

/// `corral check [OPTIONS]`.
#[derive(Debug)]
pub struct CheckCli {
    pub dirs: Dirs,
    pub log: LogArgs,
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The options shared by the supervisor and `check`, in table order.
const SERVICES: usize = 0;
const INIT_DIR: usize = 1;
const FINISH_DIR: usize = 2;
const S6_RC_DIR: usize = 3;
const LOG_FORMAT: usize = 4;
const LOG_LEVEL: usize = 5;
const SOCKET: usize = 6;
const HTTP: usize = 7;
const SHUTDOWN_TIMEOUT: usize = 8;
const OUTPUT_FORMAT: usize = 9;
const OUTPUT_TIMESTAMPS: usize = 10;
const SYSLOG: usize = 11;

/// The supervisor's options (the completions and the man page read it too).
pub const SUPERVISOR_OPTS: &[Opt] = &[
    Opt::value("services", "DIR"),
    Opt::value("init-dir", "DIR"),
    Opt::value("finish-dir", "DIR"),
    Opt::value("s6-rc-dir", "DIR"),
    Opt::value("log-format", "FORMAT"),
    Opt::value("log-level", "LEVEL"),
    Opt::value("socket", "PATH"),
    Opt::value("http", "ADDR"),
    Opt::value("shutdown-timeout", "DUR"),
    Opt::value("output-format", "FORMAT"),
    Opt::flag("output-timestamps"),
    Opt::value("syslog", "PATH"),
];

/// `check` takes the first six.
pub const CHECK_OPTS: &[Opt] = SUPERVISOR_OPTS.split_at(6).0;

/// `--log-level`'s values, as the parser reads them (in any case).
pub const LOG_LEVELS: [(&str, LogLevel); 6] = [
    ("error", LogLevel::Error),
    ("warn", LogLevel::Warn),
    ("info", LogLevel::Info),
    ("debug", LogLevel::Debug),
    ("trace", LogLevel::Trace),
    ("off", LogLevel::Off),
];

/// `--log-format`'s and `--output-format`'s values (a test checks that the
/// parsers take each).
pub const FORMATS: [&str; 2] = ["text", "json"];

// The first line is not continued with `\`: that would eat its indent.
pub(super) const DIRS_HELP: &str =
    "  --services DIR          a services directory (repeatable, or DIR:DIR)
                          [env CORRAL_SERVICES; default /etc/corral/services.d,
                          plus /etc/services.d when it exists]
  --init-dir DIR          init scripts, run in lexical order before the services
                          [env CORRAL_INIT_DIR; default /etc/corral/init.d,
                          plus /etc/cont-init.d when it exists]
  --finish-dir DIR        finish scripts, run after the services stopped
                          [env CORRAL_FINISH_DIR; default /etc/corral/finish.d,
                          plus /etc/cont-finish.d when it exists]
  --s6-rc-dir DIR         an s6-overlay v3 s6-rc source tree; empty: none
                          [env CORRAL_S6_RC_DIR; default
                          /etc/s6-overlay/s6-rc.d when it exists]
  --log-format FORMAT     corral's own messages on stderr: text or json
                          [env CORRAL_LOG_FORMAT; default text]
  --log-level LEVEL       error, warn, info, debug, trace or off
                          [env CORRAL_LOG_LEVEL; default info]
";

pub fn supervisor_help() -> String {
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
                          /tmp/corral-$UID/control.sock, else
                          /dev/shm/corral-$UID/control.sock; never a
                          symbolic link, nor a directory others can write]
  --http ADDR             serve /healthz, /readyz and /metrics on ADDR
                          (e.g. 0.0.0.0:9000) [env CORRAL_HTTP]
  --shutdown-timeout DUR  total budget for the shutdown (e.g. 9s, 500ms)
                          [env CORRAL_SHUTDOWN_TIMEOUT; default 9s, or
                          S6_SERVICES_GRACETIME + S6_KILL_GRACETIME when set]
  --output-format FORMAT  services' lines on stdout / stderr: text (NAME | line)
                          or json (one object per line: ts, service, stream,
                          pid, line) [env CORRAL_OUTPUT_FORMAT; default text]
  --output-timestamps     text lines start with the time they were read
                          (2026-12-04T14:00:00.123Z web | ...)
                          [env CORRAL_OUTPUT_TIMESTAMPS=1]
  --syslog PATH           listen for syslog messages on the Unix datagram socket
                          PATH (e.g. /dev/log) and write each as a line of
                          `syslog` (syslog | TAG[PID]: message) [env CORRAL_SYSLOG]
  -h, --help              print this help
  -V, --version           print the version

Other modes:
  corral check [OPTIONS]        validate every service definition, print the start plan
  corral ctl SUBCOMMAND ...     control a running corral (also as `corralctl`)
  corral with-contenv PROG ...  s6-overlay's with-contenv (also as a link `with-contenv`)
  corral s6-svc [-udr...] DIR   s6-overlay's s6-svc on corral's services (also `s6-svc`)
  corral s6-svwait [-uUdDrR] [-a|-o] [-t MS] DIR...
                                wait until services are up, ready, down, restarted
  corral s6-svstat [-o FIELDS] DIR
                                a service's state in s6-svstat's words
  corral s6-svok DIR            exit 0 if corral supervises that service
  corral s6-rc [-u|-d] change NAME...  |  corral s6-rc -a list
                                start or stop services; list the active ones
  corral s6-setuidgid USER PROG ...    run PROG as USER (groups, gid, uid)
  corral s6-envdir [-I] DIR PROG ...   run PROG with the variables of an envdir
  corral s6-notifyoncheck [-d] [-n N] [-w MS] [-c CMD] PROG ...
                                run PROG; ready once ./data/check (or CMD) passes
  corral printcontenv VAR       a variable of /run/s6/container_environment
  corral halt                   graceful shutdown (s6-overlay's
                                /run/s6/basedir/bin/halt)
  corral s6-links [--force] DIR
                                install every command above, and corralctl, as
                                links to corral in DIR; each also runs as a
                                link of its name
  corral completions SHELL      a completion script for bash, zsh or fish

A COMMAND named like a mode must follow `--`: corral -- check
"
    )
}

pub fn check_help() -> String {
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
            output: output_args(&s).map_err(|e| Stop::usage(P, e))?,
            syslog: given(&s, SYSLOG, "CORRAL_SYSLOG")
                .map(|(v, _)| PathBuf::from(v))
                .filter(|p| !p.as_os_str().is_empty()),
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

/// The option's last value, else its environment variable's; with where it
/// came from, for messages.
fn given(s: &Scanned, index: usize, var: &'static str) -> Option<(String, String)> {
    match s.last(index) {
        Some(v) => {
            let long = SUPERVISOR_OPTS.get(index).map_or("", |o| o.long);
            Some((v.to_string(), format!("--{long}")))
        }
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
        s6_rc_dir: given(s, S6_RC_DIR, "CORRAL_S6_RC_DIR").map(|(v, _)| PathBuf::from(v)),
    }
}

fn output_args(s: &Scanned) -> Result<Format, String> {
    let format = match given(s, OUTPUT_FORMAT, "CORRAL_OUTPUT_FORMAT") {
        None => OutputFormat::Text,
        Some((v, from)) => match v.as_str() {
            "text" => OutputFormat::Text,
            "json" => OutputFormat::Json,
            _ => {
                return Err(format!(
                    "invalid value {v:?} for {from} (expected text or json)"
                ));
            }
        },
    };
    let timestamps = if s.has(OUTPUT_TIMESTAMPS) {
        true
    } else {
        match env("CORRAL_OUTPUT_TIMESTAMPS") {
            None => false,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => true,
                "" | "0" | "false" | "no" => false,
                _ => {
                    return Err(format!(
                        "invalid value {v:?} for CORRAL_OUTPUT_TIMESTAMPS (expected 1 or 0, true or false)"
                    ));
                }
            },
        }
    };
    Ok(Format { format, timestamps })
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
    let level = given(s, LOG_LEVEL, "CORRAL_LOG_LEVEL");
    let level_given = level.is_some();
    let log_level = match level {
        None => LogLevel::Info,
        Some((v, from)) => {
            let lower = v.to_ascii_lowercase();
            match LOG_LEVELS.iter().find(|(name, _)| *name == lower) {
                Some(&(_, level)) => level,
                None => {
                    return Err(format!(
                        "invalid value {v:?} for {from} (expected error, warn, info, debug, trace or off)"
                    ));
                }
            }
        }
    };
    Ok(LogArgs {
        log_format,
        log_level,
        level_given,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Cli, String> {
        let args: Vec<OsString> = std::iter::once("corral")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect();
        Cli::parse(&args).map_err(|stop| match stop {
            Stop::Usage { message, .. } => message,
            Stop::Print(text) => text,
        })
    }

    #[test]
    fn output_format_and_timestamps_are_options() {
        let cli = parse(&[
            "--output-format",
            "json",
            "--output-timestamps",
            "--",
            "app",
        ])
        .expect("parses");
        assert_eq!(
            cli.output,
            Format {
                format: OutputFormat::Json,
                timestamps: true
            }
        );
        assert_eq!(cli.command, ["app"]);
        let text = parse(&["--output-format", "text"]).expect("parses");
        assert_eq!(text.output.format, OutputFormat::Text);
        for format in FORMATS {
            let cli = parse(&["--output-format", format, "--log-format", format]);
            assert!(cli.is_ok(), "{format}");
        }
        for (level, _) in LOG_LEVELS {
            assert!(parse(&["--log-level", level]).is_ok(), "{level}");
        }
        let bad = parse(&["--output-format", "xml"]).map(|c| c.output);
        assert_eq!(
            bad,
            Err("invalid value \"xml\" for --output-format (expected text or json)".into())
        );
    }
}
