//! The output thread: reads every `output = "prefix"` service's stdout and
//! stderr and writes each complete line to corral's own as `NAME | line`.
//!
//! One thread, one `poll(2)` over all pipes (plus a wake-up pipe for newly
//! added streams), so 100 services cost one thread, not 200. A line is
//! written with a single `write` of whole lines, so two services' lines never
//! interleave. A partial last line is written (with a newline) at EOF; a line
//! longer than `MAX_LINE` is cut into `MAX_LINE` pieces. This thread never
//! touches service state: it only reads pipes and writes fds 1 and 2.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tracing::debug;

pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

enum Msg {
    Add {
        name: Arc<str>,
        stream: Stream,
        fd: OwnedFd,
    },
    /// Stop once every stream has reached EOF.
    Finish,
}

pub struct Output {
    tx: Sender<Msg>,
    wake: OwnedFd,
    done: Receiver<()>,
}

struct Source {
    name: Arc<str>,
    stream: Stream,
    fd: OwnedFd,
    partial: Vec<u8>,
}

impl Output {
    pub fn start() -> io::Result<Output> {
        let (wake_r, wake_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(io::Error::from)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        thread::Builder::new()
            .name("output".into())
            .spawn(move || {
                pump(rx, wake_r);
                let _ = done_tx.send(());
            })?;
        Ok(Output {
            tx,
            wake: wake_w,
            done,
        })
    }

    pub fn add(&self, name: Arc<str>, stream: Stream, fd: OwnedFd) {
        if self.tx.send(Msg::Add { name, stream, fd }).is_ok() {
            self.wake();
        }
    }

    fn wake(&self) {
        // Non-blocking: a full wake pipe already guarantees a wake-up.
        let _ = nix::unistd::write(&self.wake, &[1]);
    }

    /// Wait until every stream has been read to EOF and written, or `deadline`.
    pub fn finish(&self, deadline: Instant) -> bool {
        if self.tx.send(Msg::Finish).is_err() {
            return true;
        }
        self.wake();
        self.done.recv_deadline(deadline).is_ok()
    }
}

fn pump(rx: Receiver<Msg>, wake: OwnedFd) {
    let mut sources: Vec<Source> = Vec::new();
    let mut finishing = false;
    let mut buf = vec![0u8; MAX_LINE];
    loop {
        for msg in rx.try_iter() {
            match msg {
                Msg::Add { name, stream, fd } => sources.push(Source {
                    name,
                    stream,
                    fd,
                    partial: Vec::new(),
                }),
                Msg::Finish => finishing = true,
            }
        }
        if finishing && sources.is_empty() {
            return;
        }
        let ready: Vec<(bool, bool)> = {
            let mut fds: Vec<PollFd> = Vec::with_capacity(sources.len() + 1);
            fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
            fds.extend(
                sources
                    .iter()
                    .map(|s| PollFd::new(s.fd.as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    debug!(%err, "output poll failed");
                    continue;
                }
            }
            fds.iter()
                .map(|fd| {
                    let r = fd.revents().unwrap_or(PollFlags::empty());
                    (
                        r.contains(PollFlags::POLLIN),
                        r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL),
                    )
                })
                .collect()
        };
        if ready.first().is_some_and(|&(r, h)| r || h) {
            while matches!(nix::unistd::read(&wake, &mut buf), Ok(n) if n > 0) {}
        }
        let mut closed = Vec::new();
        for (i, source) in sources.iter_mut().enumerate() {
            let (readable, hung_up) = ready.get(i + 1).copied().unwrap_or((false, false));
            if !readable && !hung_up {
                continue;
            }
            match nix::unistd::read(&source.fd, &mut buf) {
                Ok(0) => {
                    source.flush_partial();
                    closed.push(i);
                }
                Ok(n) => source.take(buf.get(..n).unwrap_or_default()),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => {
                    source.flush_partial();
                    closed.push(i);
                }
            }
        }
        for i in closed.into_iter().rev() {
            sources.swap_remove(i);
        }
    }
}

impl Source {
    /// Append `data`; write every complete line.
    fn take(&mut self, data: &[u8]) {
        self.partial.extend_from_slice(data);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.partial[start..].iter().position(|&b| b == b'\n') {
            format_line(&mut out, &self.name, &self.partial[start..start + pos]);
            start += pos + 1;
        }
        while self.partial.len() - start >= MAX_LINE {
            format_line(&mut out, &self.name, &self.partial[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        self.partial.drain(..start);
        self.write(&out);
    }

    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let mut out = Vec::new();
            format_line(&mut out, &self.name, &self.partial);
            self.partial.clear();
            self.write(&out);
        }
    }

    fn write(&self, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        let fd = match self.stream {
            Stream::Stdout => io::stdout().as_raw_fd(),
            Stream::Stderr => io::stderr().as_raw_fd(),
        };
        // SAFETY: fds 1 and 2 stay open for corral's whole life.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        write_all(fd, out);
    }
}

fn format_line(out: &mut Vec<u8>, name: &str, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b" | ");
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// Write everything, retrying on EINTR and short writes; give up silently on
/// a real error (a closed stdout must not take corral down).
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return,
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_and_carriage_returns_dropped() {
        let mut out = Vec::new();
        format_line(&mut out, "web", b"hello\r");
        assert_eq!(out, b"web | hello\n");
    }
}
