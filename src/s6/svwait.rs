//! `s6-svwait [-u|-U|-d|-D|-r|-R] [-a|-o] [-t ms] DIR...`: block until
//! every service (`-a`, the default) or one of them (`-o`) reaches a state,
//! through the control socket's `wait` (corral answers the moment it
//! holds; nothing here polls).
//!
//! Exit codes (s6-svwait(8)): 0 reached, 99 timed out, 100 usage, 102 a
//! service will not come up (failed for good, or not corral's), 111 corral
//! cannot be asked.
//!
//! What it must never do: wait past `-t`, or wait for a failed service to
//! come up: a wait that corral refuses on a failed service (or that finds
//! it failed before it starts) ends at once with 102.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use super::getopt::{getopt, millis};
use super::link::{Failure, Link, refusal};
use super::svc::service_name;
use super::{EXIT_SYSTEM, EXIT_USAGE};
use crate::protocol::{Request, Until};
use crate::text::{Form, escape};

const USAGE: &str = "s6-svwait: usage: s6-svwait [ -U | -u | -D | -d | -r | -R ] [ -a | -o ] [ -t timeout ] servicedir...";

#[derive(Debug, PartialEq, Eq)]
pub(super) struct SvwaitArgs {
    pub(super) until: Until,
    /// `-o`: one service is enough.
    pub(super) any: bool,
    /// `-t ms`; 0 or none: no limit.
    pub(super) timeout: Option<Duration>,
    pub(super) dirs: Vec<PathBuf>,
}

pub(super) fn parse_svwait(args: &[OsString]) -> Result<SvwaitArgs, String> {
    let (opts, next) = getopt(args, "uUdDrRao", "t")?;
    let mut parsed = SvwaitArgs {
        until: Until::Started,
        any: false,
        timeout: None,
        dirs: Vec::new(),
    };
    for opt in opts {
        match opt.letter {
            'u' => parsed.until = Until::Started,
            'U' => parsed.until = Until::Ready,
            'd' => parsed.until = Until::Down,
            'D' => parsed.until = Until::Finished,
            'r' => parsed.until = Until::Restarted,
            'R' => parsed.until = Until::RestartedReady,
            'a' => parsed.any = false,
            'o' => parsed.any = true,
            _ => {
                let ms = millis('t', opt.value.as_deref())?;
                parsed.timeout = (ms > 0).then(|| Duration::from_millis(ms));
            }
        }
    }
    parsed.dirs = args
        .get(next..)
        .unwrap_or_default()
        .iter()
        .map(PathBuf::from)
        .collect();
    Ok(parsed)
}

/// `s6-svwait [OPTIONS] DIR...` (`args` without the program name).
pub fn svwait(args: &[OsString]) -> u8 {
    let args = match parse_svwait(args) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("s6-svwait: fatal: {why}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    // s6: no directory, nothing to wait for.
    if args.dirs.is_empty() {
        return 0;
    }
    let link = Link::from_env(args.timeout);
    // One wait per service, side by side: `-o` ends with the first to
    // reach the state, `-a` with the last (or the first failure).
    let (tx, rx) = mpsc::channel();
    for dir in &args.dirs {
        let (tx, link, dir, until) = (tx.clone(), link.clone(), dir.clone(), args.until);
        let spawned = std::thread::Builder::new()
            .name("s6-svwait".into())
            .spawn(move || {
                let result = match service_name(&dir) {
                    Some(name) => wait_one(&link, &name, until),
                    None => Err(Failure::NoService(
                        "cannot tell which service this is (its last path component names it)"
                            .into(),
                    )),
                };
                let _ = tx.send((dir, result));
            });
        if let Err(err) = spawned {
            eprintln!("s6-svwait: fatal: unable to start a thread: {err}");
            return EXIT_SYSTEM;
        }
    }
    drop(tx);
    let mut last_failure = None;
    for (dir, result) in rx {
        match (result, args.any) {
            (Ok(()), true) => return 0,
            (Ok(()), false) => {}
            (Err(failure), any) => {
                let code = report(&dir, &failure, args.timeout);
                // A timeout ends every wait; `-o` goes on while another may
                // still reach the state.
                if !any || failure == Failure::TimedOut {
                    return code;
                }
                last_failure = Some(code);
            }
        }
    }
    last_failure.unwrap_or(0)
}

/// Wait until `until` holds of `name`, counting restarts from the run it
/// has now.
fn wait_one(link: &Link, name: &str, until: Until) -> Result<(), Failure> {
    let before = link.status(name)?;
    let up = matches!(
        until,
        Until::Started | Until::Ready | Until::Restarted | Until::RestartedReady
    );
    if up && before.state == "failed" {
        return Err(gave_up(name, before.detail));
    }
    let request = Request::wait(vec![name.to_string()], None, until, Some(before.run));
    let response = link.ask(&request)?;
    if response.ok {
        return Ok(());
    }
    // The wait was refused: because the service failed for good while we
    // waited (corral ends such a wait at once), or for another reason.
    match link.status(name) {
        Ok(now) if up && now.state == "failed" => Err(gave_up(name, now.detail)),
        _ => Err(Failure::Refused(refusal(&response))),
    }
}

fn gave_up(name: &str, detail: Option<String>) -> Failure {
    Failure::GaveUp(match detail {
        Some(why) => format!("{name} failed and will not come up: {why}"),
        None => format!("{name} failed and will not come up"),
    })
}

fn report(dir: &std::path::Path, failure: &Failure, timeout: Option<Duration>) -> u8 {
    let dir = dir.display();
    match failure {
        Failure::TimedOut => {
            let ms = timeout.unwrap_or_default().as_millis();
            eprintln!("s6-svwait: fatal: timed out after {ms} ms");
        }
        Failure::Unreachable(why) => {
            eprintln!(
                "s6-svwait: fatal: unable to reach corral: {}",
                escape(why, Form::Text)
            );
        }
        Failure::NoService(why) | Failure::Refused(why) | Failure::GaveUp(why) => {
            eprintln!("s6-svwait: fatal: {dir}: {}", escape(why, Form::Text));
        }
    }
    failure.code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s6::args;

    fn parse(words: &[&str]) -> Result<SvwaitArgs, String> {
        parse_svwait(&args(words))
    }

    #[test]
    fn svwait_flags_the_last_one_wins() {
        assert_eq!(
            parse(&["/run/service/web"]),
            Ok(SvwaitArgs {
                until: Until::Started,
                any: false,
                timeout: None,
                dirs: vec!["/run/service/web".into()],
            })
        );
        let p = parse(&["-u", "-D", "-o", "-t", "250", "a", "b"]).unwrap();
        assert_eq!(
            (p.until, p.any, p.timeout, p.dirs.len()),
            (Until::Finished, true, Some(Duration::from_millis(250)), 2)
        );
        for (flag, until) in [
            ("-U", Until::Ready),
            ("-d", Until::Down),
            ("-r", Until::Restarted),
            ("-R", Until::RestartedReady),
        ] {
            assert_eq!(parse(&[flag, "x"]).unwrap().until, until, "{flag}");
        }
        assert!(!parse(&["-oa", "x"]).unwrap().any);
        assert_eq!(parse(&["-t0", "x"]).unwrap().timeout, None);
        assert_eq!(parse(&[]).unwrap().dirs, Vec::<PathBuf>::new());
        assert_eq!(parse(&["-x", "d"]), Err("unknown option -x".into()));
        assert_eq!(
            parse(&["-t", "soon", "d"]),
            Err("-t soon: expected a number of milliseconds".into())
        );
    }
}
