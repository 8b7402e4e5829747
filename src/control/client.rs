//! `corral ctl` (also run as `corralctl`): one request to the control socket,
//! its answer printed for people (or as JSON), and an exit status.
//!
//! Exit status: 0 when corral says `ok`; 1 when it answers with an error,
//! or cannot be reached; 2 for usage errors. Every error says
//! what a person can do about it: where the socket was looked for, who may
//! use it.
//!
//! The client trusts only a server that runs as root or as its own uid
//! (SO_PEERCRED, checked before the request is sent), and looks for the
//! default sockets only in safe directories (`control::check_socket_dir`):
//! whoever else could listen there could tell it anything (SPEC section 12).
//! And nothing a server says reaches the terminal raw: every control
//! character in it is shown escaped (`text::escape`),
//! except in `logs`, which prints a service's own bytes, as `docker logs`.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::{DirError, check_socket_dir, peer_uid};
use crate::cli::{CtlCli, CtlCommand, Names};
use crate::output::format::{Record, write_record};
use crate::protocol::{Request, Response, ServiceStatus, Targets, decode_response, encode_request};
use crate::text::{Form, escape, human};

const EXIT_FAILED: u8 = 1;

/// `args[0]` is the program name as the user typed it (`corral ctl`, or the
/// `corralctl` link); the subcommand follows.
pub fn main(args: &[OsString], bin_name: &'static str) -> u8 {
    let cli = match CtlCli::parse(args, bin_name) {
        Ok(cli) => cli,
        // --help prints and exits 0; usage errors exit 2.
        Err(stop) => return stop.report(),
    };
    let socket = cli.socket.filter(|p| !p.as_os_str().is_empty());
    match run(socket.as_deref(), cli.command) {
        Ok(code) => code,
        Err(message) => {
            // Our own text, with what a server said inside (a malformed
            // answer is quoted): escaped, line breaks kept.
            eprintln!("corral ctl: {}", escape(&message, Form::Text));
            EXIT_FAILED
        }
    }
}

fn run(socket: Option<&Path>, command: CtlCommand) -> Result<u8, String> {
    let request = request_for(&command);
    let stream = connect(socket)?;
    let mut answers = send(stream, &request)?;
    let first_line = answers.next().ok_or_else(|| {
        "corral closed the connection without answering (is it exiting?)".to_string()
    })??;
    let mut out = Output::new();
    let first = decode_response(&first_line)?;
    let mut answers = answers.map(|line| line.and_then(|line| decode_response(&line)));
    let code = match command {
        CtlCommand::Status { json: false, .. } => {
            if first.ok {
                let rows: Vec<Row<'_>> = first.services.iter().map(Row::from).collect();
                out.text(&status_table(&rows));
            }
            finish(&first, &mut out)
        }
        CtlCommand::Status { json: true, .. } => {
            if first.ok {
                let json = serde_json::to_string_pretty(&first.services)
                    .map_err(|e| format!("cannot encode the status: {e}"))?;
                out.stdout(&escape(&json, Form::Json));
            }
            finish(&first, &mut out)
        }
        CtlCommand::Logs {
            follow,
            ref name,
            json,
            ..
        } => {
            let print_lines = |response: &Response, out: &mut Output| {
                print_lines(response, out, name.is_none(), json);
            };
            print_lines(&first, &mut out);
            if first.ok && follow {
                // One response per new line, until corral closes (or we are
                // interrupted, or stdout goes away).
                for next in answers.by_ref() {
                    let next = next?;
                    print_lines(&next, &mut out);
                    if !next.ok {
                        return Ok(finish(&next, &mut out));
                    }
                    if out.broken {
                        break;
                    }
                }
            }
            finish(&first, &mut out)
        }
        CtlCommand::Health => {
            for problem in &first.problems {
                out.stdout(&escape(problem, Form::Line));
            }
            finish(&first, &mut out)
        }
        _ => finish(&first, &mut out),
    };
    Ok(code)
}

fn request_for(command: &CtlCommand) -> Request {
    let targets = |names: &Names| Targets {
        services: names.names.clone(),
        all: names.all,
    };
    match command {
        CtlCommand::Status { names, .. } => Request::Status {
            services: names.clone(),
        },
        CtlCommand::Start(names) => Request::Start(targets(names)),
        CtlCommand::Stop(names) => Request::Stop(targets(names)),
        CtlCommand::Restart(names) => Request::Restart(targets(names)),
        CtlCommand::Signal { signal, names } => Request::Signal {
            signal: signal.clone(),
            services: names.clone(),
        },
        CtlCommand::Logs {
            name,
            lines,
            follow,
            since,
            json,
        } => Request::Logs {
            service: name.clone().unwrap_or_default(),
            lines: Some(*lines),
            follow: *follow,
            all: name.is_none(),
            since_ms: since.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            json: *json,
        },
        CtlCommand::Wait {
            names,
            until,
            timeout,
        } => Request::wait(
            names.clone(),
            timeout.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            *until,
            None,
        ),
        CtlCommand::Reload { names } => Request::Reload {
            services: names.clone(),
        },
        CtlCommand::Health => Request::Health {},
        CtlCommand::Shutdown { exit_code } => Request::Shutdown {
            exit_code: *exit_code,
        },
        CtlCommand::Run { name } => Request::Run {
            service: name.clone(),
        },
        CtlCommand::Scale { name, replicas } => Request::Scale {
            service: name.clone(),
            replicas: *replicas,
        },
    }
}

/// Messages on stdout; on `ok: false`, the error on stderr and exit 1.
fn finish(response: &Response, out: &mut Output) -> u8 {
    for message in &response.messages {
        out.stdout(&escape(message, Form::Line));
    }
    if response.ok {
        return 0;
    }
    let error = response
        .error
        .as_deref()
        .unwrap_or("failed (no reason given)");
    // Free text: a reload's error lists one definition error per line.
    out.stderr(&format!("corral ctl: {}", escape(error, Form::Text)));
    EXIT_FAILED
}

/// A service's lines as it wrote them (stderr's on stderr); with `all`,
/// each as `NAME | line`; with `json`, each as one JSON object on stdout
/// (`output::format::Record`, the line as the server escaped it).
fn print_lines(response: &Response, out: &mut Output, all: bool, json: bool) {
    for line in &response.lines {
        let service = line.service.as_deref().unwrap_or("");
        if json {
            let record = Record {
                ts: line.ts.as_deref().unwrap_or(""),
                service,
                stream: &line.stream,
                pid: line.pid,
                line: &line.line,
                facility: line.facility.as_deref(),
                severity: line.severity.as_deref(),
            };
            let mut text = Vec::new();
            write_record(&mut text, &record);
            out.stdout(String::from_utf8_lossy(&text).trim_end_matches('\n'));
            continue;
        }
        let text = if all {
            Cow::Owned(format!("{service} | {}", line.line))
        } else {
            Cow::Borrowed(line.line.as_str())
        };
        if line.stream == "stderr" {
            out.stderr(&text);
        } else {
            out.stdout(&text);
        }
    }
    out.flush();
}

/// stdout / stderr that tolerate a closed pipe (`corral ctl logs -f | head`):
/// after the first failed write, stop writing and end quietly.
struct Output {
    stdout: io::Stdout,
    broken: bool,
}

impl Output {
    fn new() -> Output {
        Output {
            stdout: io::stdout(),
            broken: false,
        }
    }

    fn stdout(&mut self, line: &str) {
        if !self.broken && writeln!(self.stdout.lock(), "{line}").is_err() {
            self.broken = true;
        }
    }

    /// `text` as it is, lines and their newlines: one write.
    fn text(&mut self, text: &str) {
        if !self.broken && self.stdout.lock().write_all(text.as_bytes()).is_err() {
            self.broken = true;
        }
    }

    fn stderr(&mut self, line: &str) {
        let _ = writeln!(io::stderr().lock(), "{line}");
    }

    fn flush(&mut self) {
        if !self.broken && self.stdout.lock().flush().is_err() {
            self.broken = true;
        }
    }
}

/// One service's row of the `status` table, borrowed from its status.
pub struct Row<'a> {
    pub name: &'a str,
    pub state: &'a str,
    pub pid: Option<i32>,
    pub uptime_ms: Option<u64>,
    pub restarts: u32,
    pub ready: bool,
    pub last_exit: Option<&'a str>,
    pub last_exit_code: Option<i32>,
    pub last_exit_ok: Option<bool>,
    pub detail: Option<&'a str>,
}

impl<'a> From<&'a ServiceStatus> for Row<'a> {
    fn from(s: &'a ServiceStatus) -> Row<'a> {
        Row {
            name: &s.name,
            state: &s.state,
            pid: s.pid,
            uptime_ms: s.uptime_ms,
            restarts: s.restarts,
            ready: s.ready,
            last_exit: s.last_exit.as_deref(),
            last_exit_code: s.last_exit_code,
            last_exit_ok: s.last_exit_ok,
            detail: s.detail.as_deref(),
        }
    }
}

/// The aligned `status` table: each cell made once, the widths measured,
/// then every line written into one string, padded by hand.
pub fn status_table(services: &[Row<'_>]) -> String {
    const COLUMNS: usize = 8;
    const HEADER: [&str; COLUMNS] = [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "READY",
        "LAST-EXIT",
        "DETAIL",
    ];
    let dash = || Cow::Borrowed("-");
    let mut cells: Vec<Cow<'_, str>> = Vec::with_capacity((services.len() + 1) * COLUMNS);
    cells.extend(HEADER.map(Cow::Borrowed));
    for s in services {
        let cell = |text: &str| Cow::Owned(escape(text, Form::Line).into_owned());
        cells.push(escape(s.name, Form::Line));
        cells.push(escape(s.state, Form::Line));
        cells.push(s.pid.map_or_else(dash, |p| Cow::Owned(p.to_string())));
        cells.push(s.uptime_ms.map_or_else(dash, |ms| {
            Cow::Owned(human(std::time::Duration::from_millis(ms)))
        }));
        cells.push(Cow::Owned(s.restarts.to_string()));
        cells.push(Cow::Borrowed(if s.ready { "yes" } else { "no" }));
        cells.push(
            s.last_exit
                .map_or_else(dash, |exit| cell(&last_exit(exit, s))),
        );
        cells.push(s.detail.map_or(Cow::Borrowed(""), cell));
    }
    // Display width: the byte length of ASCII (nearly every cell), else chars.
    let width_of = |cell: &str| {
        if cell.is_ascii() {
            cell.len()
        } else {
            cell.chars().count()
        }
    };
    let mut widths = [0usize; COLUMNS];
    for row in cells.chunks(COLUMNS) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(width_of(cell));
        }
    }
    const SPACES: &str = "                                                                ";
    let mut table =
        String::with_capacity(cells.len() / COLUMNS * (widths.iter().sum::<usize>() + 2 * COLUMNS));
    for row in cells.chunks(COLUMNS) {
        let line_start = table.len();
        // Padding up to the last cell with text only: trailing blanks go.
        let last = row.iter().rposition(|cell| !cell.is_empty()).unwrap_or(0);
        for (i, (cell, width)) in row.iter().zip(widths).enumerate().take(last + 1) {
            table.push_str(cell);
            if i == last {
                break;
            }
            let mut pad = width.saturating_sub(width_of(cell)) + 2;
            while pad > 0 {
                let n = pad.min(SPACES.len());
                table.push_str(SPACES.get(..n).unwrap_or_default());
                pad -= n;
            }
        }
        let end = table[line_start..].trim_end().len() + line_start;
        table.truncate(end);
        table.push('\n');
    }
    table
}

/// The last exit, marked where `success-exit-codes` make it count other
/// than a shell would: `exit 3 (ok)`, `exit 0 (failed)`.
fn last_exit(exit: &str, s: &Row<'_>) -> String {
    match (s.last_exit_ok, s.last_exit_code == Some(0)) {
        (Some(true), false) => format!("{exit} (ok)"),
        (Some(false), true) => format!("{exit} (failed)"),
        _ => exit.to_string(),
    }
}

/// Connect to `given`, or to the first default candidate that accepts, and
/// make sure the server runs as root or as us (`trusted`). Only default
/// sockets in safe directories are tried (`control::check_socket_dir`); a
/// given path is the user's choice, and the server's uid is still checked.
/// The error says where corral's socket was looked for (also used by `s6-svc`).
pub fn connect(given: Option<&Path>) -> Result<UnixStream, String> {
    if let Some(path) = given {
        let stream = UnixStream::connect(path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => format!(
                "no control socket at {} (is corral running? it must use the same --socket / CORRAL_SOCKET)",
                path.display()
            ),
            _ => format!("cannot connect to {}: {}", path.display(), why(path, &err)),
        })?;
        return trusted(stream, path);
    }
    let candidates = super::default_candidates();
    let euid = nix::unistd::geteuid().as_raw();
    let mut tried: Vec<(PathBuf, String)> = Vec::new();
    let mut denied = false;
    for path in candidates {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() => {
                let dir = path.parent().unwrap_or(Path::new("/"));
                match check_socket_dir(dir, euid) {
                    Ok(()) => {}
                    Err(DirError::Missing(_)) => {
                        tried.push((path, "no such file".into()));
                        continue;
                    }
                    Err(DirError::Unsafe(why)) => {
                        tried.push((path, format!("not used: {why}")));
                        continue;
                    }
                }
            }
            Ok(_) => {
                tried.push((path, "not a socket".into()));
                continue;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                tried.push((path, "no such file".into()));
                continue;
            }
            Err(err) => {
                denied |= err.kind() == io::ErrorKind::PermissionDenied;
                tried.push((path.clone(), why(&path, &err)));
                continue;
            }
        }
        match UnixStream::connect(&path) {
            Ok(stream) => return trusted(stream, &path),
            Err(err) => {
                denied |= err.kind() == io::ErrorKind::PermissionDenied;
                tried.push((path.clone(), why(&path, &err)));
            }
        }
    }
    let mut message = if denied {
        "cannot use corral's control socket. Looked at:".to_string()
    } else {
        "no control socket found. Looked at:".to_string()
    };
    for (path, reason) in &tried {
        message.push_str(&format!("\n  {}: {reason}", path.display()));
    }
    message.push_str(
        "\nIs corral running? If it uses another socket, point at it with --socket PATH or CORRAL_SOCKET=PATH.",
    );
    Err(message)
}

/// `stream`, if the server at `path` runs as root or as this client's uid
/// (SO_PEERCRED: the uid it had when it called listen(2), which it cannot
/// fake). Anyone else could answer anything; nothing is sent to it.
fn trusted(stream: UnixStream, path: &Path) -> Result<UnixStream, String> {
    let me = nix::unistd::geteuid().as_raw();
    match peer_uid(&stream) {
        Ok(uid) if uid == 0 || uid == me => Ok(stream),
        Ok(uid) => Err(format!(
            "refusing the server at {}: it runs as uid {uid}, not root or you",
            path.display()
        )),
        Err(err) => Err(format!(
            "refusing the server at {}: cannot tell which uid it runs as ({err})",
            path.display()
        )),
    }
}

/// What a connect error means for the person at the keyboard.
fn why(path: &Path, err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::PermissionDenied => {
            let me = nix::unistd::geteuid().as_raw();
            let owner = fs::metadata(path)
                .map(|m| format!("uid {}", m.uid()))
                .unwrap_or_else(|_| "the user corral runs as".into());
            format!(
                "permission denied: the control socket is mode 0600; only root and its owner ({owner}) may use it, and you are uid {me}"
            )
        }
        io::ErrorKind::ConnectionRefused => {
            "nothing listens there (a stale socket: corral is not running)".into()
        }
        io::ErrorKind::NotFound => "no such file".into(),
        _ => err.to_string(),
    }
}

/// Write the request, then hand out the response lines as they come.
fn send(
    mut stream: UnixStream,
    request: &Request,
) -> Result<impl Iterator<Item = Result<String, String>>, String> {
    if let Err(err) = stream.write_all(encode_request(request).as_bytes()) {
        // corral may have answered (and closed) before reading it all: a
        // request too long. Its answer says why; read it.
        if err.kind() != io::ErrorKind::BrokenPipe && err.kind() != io::ErrorKind::ConnectionReset {
            return Err(format!("cannot send the request: {err}"));
        }
    }
    let reader = BufReader::new(stream);
    Ok(reader.lines().map_while(|line| match line {
        Ok(line) => Some(Ok(line)),
        // A reset after the last answer is an end like EOF.
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => None,
        Err(err) => Some(Err(format!("reading corral's answer: {err}"))),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of `services`, as `ctl status` prints it.
    fn table(services: &[ServiceStatus]) -> String {
        let rows: Vec<Row<'_>> = services.iter().map(Row::from).collect();
        status_table(&rows)
    }

    #[test]
    fn status_cells_are_escaped_and_stay_aligned() {
        let services = vec![
            ServiceStatus {
                name: "web".into(),
                state: "back\x1b[2Joff".into(),
                detail: Some("GET /: 503 \x07\nforged".into()),
                last_exit: Some("\u{9b}1m".into()),
                ..ServiceStatus::default()
            },
            ServiceStatus {
                name: "db".into(),
                state: "running".into(),
                ..ServiceStatus::default()
            },
        ];
        assert_eq!(
            table(&services),
            "\
NAME  STATE           PID  UPTIME  RESTARTS  READY  LAST-EXIT  DETAIL
web   back\\x1b[2Joff  -    -       0         no     \\x9b1m     GET /: 503 \\x07\\nforged
db    running         -    -       0         no     -
"
        );
    }

    #[test]
    fn the_status_table_is_aligned_with_dashes_for_nothing() {
        let services = vec![
            ServiceStatus {
                name: "web".into(),
                state: "running".into(),
                pid: Some(1234),
                uptime_ms: Some(192_000),
                ready: true,
                ..ServiceStatus::default()
            },
            ServiceStatus {
                name: "flapper".into(),
                state: "backoff".into(),
                restarts: 12,
                last_exit: Some("exit 1".into()),
                last_exit_code: Some(1),
                last_exit_ok: Some(false),
                detail: Some("next start in 1.2s".into()),
                ..ServiceStatus::default()
            },
            ServiceStatus {
                name: "job".into(),
                state: "stopped".into(),
                last_exit: Some("exit 3".into()),
                last_exit_code: Some(3),
                last_exit_ok: Some(true),
                ..ServiceStatus::default()
            },
        ];
        assert_eq!(
            table(&services),
            "\
NAME     STATE    PID   UPTIME  RESTARTS  READY  LAST-EXIT    DETAIL
web      running  1234  3m12s   0         yes    -
flapper  backoff  -     -       12        no     exit 1       next start in 1.2s
job      stopped  -     -       0         no     exit 3 (ok)
"
        );
    }
}
