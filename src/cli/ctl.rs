//! `corral ctl [--socket PATH] COMMAND [ARGS]` (also `corralctl`): the
//! subcommands, their help, and each one's options.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::rest;
use crate::args::{Opt, Positional, Stop, env, scan};
use crate::config::parse_duration;
use crate::protocol::Until;
use crate::text;

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
        /// `None`: every service (`--all`).
        name: Option<String>,
        lines: usize,
        follow: bool,
        /// `--since DUR`: only lines read in the last DUR.
        since: Option<Duration>,
        /// `--json`: one JSON object per line, as `--output-format json`.
        json: bool,
    },
    Wait {
        names: Vec<String>,
        until: Until,
        timeout: Option<Duration>,
    },
    Reload {
        names: Vec<String>,
    },
    Health,
    Shutdown {
        exit_code: Option<i32>,
    },
    /// Run a scheduled or oneshot service now.
    Run {
        name: String,
    },
    /// Run N instances of a service with `replicas`.
    Scale {
        name: String,
        replicas: u32,
    },
}

/// A subcommand of `corral ctl`: for its help, its parser, the completions
/// and the man page.
#[derive(Debug)]
pub struct CtlDef {
    pub name: &'static str,
    /// Its arguments, as the help writes them.
    pub args: &'static str,
    /// What it does.
    pub about: &'static str,
    /// Its options; `--socket` first, always index 0.
    pub opts: &'static [Opt],
}

/// `--socket PATH`, before the subcommand and after it.
const SOCKET: Opt = Opt::value("socket", "PATH");
const SOCKET_ONLY: &[Opt] = &[SOCKET];
const TARGETS: &[Opt] = &[SOCKET, Opt::flag("all")];

/// The subcommands, in the help's order.
pub const CTL_COMMANDS: &[CtlDef] = &[
    CtlDef {
        name: "status",
        args: "[NAME...] [--json]",
        about: "state, pid, uptime, restarts, readiness, last exit",
        opts: &[SOCKET, Opt::flag("json")],
    },
    CtlDef {
        name: "start",
        args: "NAME... | --all",
        about: "start services (and what they start after); returns once started",
        opts: TARGETS,
    },
    CtlDef {
        name: "stop",
        args: "NAME... | --all",
        about: "stop services (dependants first); returns once they exited",
        opts: TARGETS,
    },
    CtlDef {
        name: "restart",
        args: "NAME... | --all",
        about: "stop and start services again; returns once started",
        opts: TARGETS,
    },
    CtlDef {
        name: "signal",
        args: "SIG NAME...",
        about: "send a signal (by name: HUP, SIGUSR1, ...; numbers differ between architectures) to services",
        opts: SOCKET_ONLY,
    },
    CtlDef {
        name: "logs",
        args: "NAME|--all [-n N] [-f] [--since DUR] [--json]",
        about: "the last N lines (default 100; corral keeps 1000) of a prefix service, or of all merged in time order; -f follows; --since 5m: only newer lines; --json: one object per line (ts, service, stream, pid, line)",
        opts: &[
            SOCKET,
            Opt::value("lines", "N").short('n'),
            Opt::flag("follow").short('f'),
            Opt::flag("all"),
            Opt::value("since", "DUR"),
            Opt::flag("json"),
        ],
    },
    CtlDef {
        name: "wait",
        args: "NAME... [--ready | --down | --finished | --restarted [--ready]] [--timeout DUR]",
        about: "wait until started (--ready: ready; --down: no process; --finished: no finish script either; --restarted: a new process since the request); exit 1 at the timeout",
        opts: &[
            SOCKET,
            Opt::flag("ready"),
            Opt::value("timeout", "DUR"),
            Opt::flag("down"),
            Opt::flag("finished"),
            Opt::flag("restarted"),
        ],
    },
    CtlDef {
        name: "reload",
        args: "[NAME...]",
        about: "reload services; no name: re-read every definition, like SIGHUP",
        opts: SOCKET_ONLY,
    },
    CtlDef {
        name: "health",
        args: "",
        about: "exit 0 if every wanted service is running, else name the others, exit 1",
        opts: SOCKET_ONLY,
    },
    CtlDef {
        name: "shutdown",
        args: "[--exit-code N]",
        about: "stop every service and exit, gracefully",
        opts: &[SOCKET, Opt::value("exit-code", "N")],
    },
    CtlDef {
        name: "run",
        args: "NAME",
        about: "run a scheduled or oneshot service now (not while a run is under way); returns when the run ends, exit 1 if it failed",
        opts: SOCKET_ONLY,
    },
    CtlDef {
        name: "scale",
        args: "NAME N",
        about: "run N instances of a service with `replicas` (NAME.1 ... NAME.N): new ones start, the highest stop; returns at once (wait NAME --ready waits for them)",
        opts: SOCKET_ONLY,
    },
];

fn ctl_help(bin: &str) -> String {
    let mut text = format!(
        "Control a running corral through its socket.

Usage: {bin} [--socket PATH] COMMAND [ARGS]

Commands:
"
    );
    for CtlDef {
        name, args, about, ..
    } in CTL_COMMANDS
    {
        text.push_str(&format!("  {name:<9} {args}\n            {about}\n"));
    }
    text.push_str(
        "
Options:
  --socket PATH  corral's control socket [env CORRAL_SOCKET; default: the first
                 that exists in a safe directory of /run/corral/control.sock,
                 $XDG_RUNTIME_DIR/corral/control.sock, /tmp/corral-$UID/control.sock,
                 /dev/shm/corral-$UID/control.sock]
                 corral ctl talks only to a corral that runs as root or as you.
  -h, --help     print this help (COMMAND --help: that command's)

Exit status: 0 done; 1 corral answered with an error (or could not be reached); 2 usage.
",
    );
    text
}

fn ctl_command_help(bin: &str, name: &str) -> String {
    let (args, about) = def(name).map_or(("", ""), |d| (d.args, d.about));
    format!("{about}\n\nUsage: {bin} [--socket PATH] {name} {args}\n")
}

/// The subcommand called `name`.
fn def(name: &str) -> Option<&'static CtlDef> {
    CTL_COMMANDS.iter().find(|d| d.name == name)
}

impl CtlCli {
    /// `args[0]` is the program (`corral ctl` or `corralctl`), as `bin` says.
    pub fn parse(args: &[OsString], bin: &str) -> Result<CtlCli, Stop> {
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
                Some(sub) if def(sub).is_some() => ctl_command_help(bin, sub),
                _ => ctl_help(bin),
            }));
        }
        let Some(table) = def(name).map(|d| d.opts) else {
            let names = CTL_COMMANDS.iter().map(|d| d.name);
            return Err(Stop::usage(
                bin,
                match text::closest(name, names) {
                    Some(close) => format!("unknown command {name} (did you mean {close}?)"),
                    None => format!("unknown command {name}"),
                },
            ));
        };
        let program = format!("{bin} {name}");
        let usage = |msg: String| Stop::usage(&program, msg);
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
                let name = match (names.first(), s.has(3)) {
                    (Some(name), false) => Some(name.clone()),
                    (None, true) => None,
                    (Some(_), true) => {
                        return Err(usage("name a service or give --all, not both".into()));
                    }
                    (None, false) => return Err(usage("name the service (or --all)".into())),
                };
                let since = match s.last(4) {
                    None => None,
                    Some(t) => Some(
                        parse_duration(t)
                            .map_err(|e| usage(format!("invalid value for --since: {e}")))?,
                    ),
                };
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
                    since,
                    json: s.has(5),
                }
            }
            "wait" => CtlCommand::Wait {
                names: some_names()?,
                until: match (s.has(1), s.has(3), s.has(4), s.has(5)) {
                    (false, false, false, false) => Until::Started,
                    (true, false, false, false) => Until::Ready,
                    (false, true, false, false) => Until::Down,
                    (false, false, true, false) => Until::Finished,
                    (false, false, false, true) => Until::Restarted,
                    (true, false, false, true) => Until::RestartedReady,
                    _ => {
                        return Err(usage(
                            "give one of --down, --finished, --restarted (only --restarted goes with --ready)".into(),
                        ));
                    }
                },
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
            "scale" => {
                no_more(2)?;
                let (Some(name), Some(n)) = (names.first(), names.get(1)) else {
                    return Err(usage("give the service and the number of replicas".into()));
                };
                let replicas = n.parse().map_err(|_| {
                    usage(format!(
                        "invalid number of replicas {n:?} (expected 1 or more)"
                    ))
                })?;
                CtlCommand::Scale {
                    name: name.clone(),
                    replicas,
                }
            }
            "run" => {
                no_more(1)?;
                match names.first() {
                    Some(name) => CtlCommand::Run { name: name.clone() },
                    None => return Err(usage("name the service to run".into())),
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(words: &[&str]) -> Result<Until, String> {
        let args: Vec<OsString> = ["corralctl", "wait"]
            .iter()
            .chain(words)
            .map(OsString::from)
            .collect();
        match CtlCli::parse(&args, "corralctl") {
            Ok(CtlCli {
                command: CtlCommand::Wait { until, .. },
                ..
            }) => Ok(until),
            Ok(other) => Err(format!("{other:?}")),
            Err(Stop::Usage { message, .. }) => Err(message),
            Err(Stop::Print(text)) => Err(text),
        }
    }

    #[test]
    fn wait_flags_name_the_condition() {
        assert_eq!(wait(&["web"]), Ok(Until::Started));
        assert_eq!(wait(&["web", "--ready"]), Ok(Until::Ready));
        assert_eq!(wait(&["--down", "web"]), Ok(Until::Down));
        assert_eq!(wait(&["web", "--finished"]), Ok(Until::Finished));
        assert_eq!(wait(&["web", "--restarted"]), Ok(Until::Restarted));
        assert_eq!(
            wait(&["web", "--restarted", "--ready", "--timeout", "5s"]),
            Ok(Until::RestartedReady)
        );
        for words in [
            &["web", "--down", "--ready"][..],
            &["web", "--down", "--finished"],
            &["web", "--finished", "--restarted"],
        ] {
            assert_eq!(
                wait(words),
                Err(
                    "give one of --down, --finished, --restarted (only --restarted goes with --ready)"
                        .into()
                ),
                "{words:?}"
            );
        }
    }
}
