//! s6-rc pipelines (SPEC section 9): the pipe from a consumer's producers to
//! the consumer, which corral creates once and holds across restarts of
//! either end, so that nothing written is lost while one end restarts.
//!
//! A producer names its consumer (`ServiceSpec::pipe_to`); a consumer may
//! have several producers, which then all write into its one pipe (s6-rc
//! calls these funnels), and a consumer may itself produce for the next
//! service (a chain). So the table is keyed by consumer: one pipe per
//! service that something pipes into. The pipe is made at the first spawn
//! of either end (`Pipelines::ends`) and closed when a config reload leaves
//! nothing piping into that consumer (`Pipelines::redefine`), or when corral
//! exits; a reload that keeps the pipeline keeps its pipe, whatever else
//! changed in the two definitions.
//!
//! Why corral holds both ends (as s6-rc's `s6rc-fdholder` does): while the
//! producer restarts, the consumer's read end still has a writer (corral),
//! so it sees no EOF and simply waits; while the consumer restarts, the
//! producer's writes still have a reader, so it gets no EPIPE / SIGPIPE and
//! what it writes waits in the pipe for the next consumer. The pipe buffer
//! (64 KiB by default, pipe(7)) is the bound: a producer that fills it while
//! its consumer is down blocks in write(2) until a consumer reads, as under
//! s6. A line is lost only if a consumer dies between reading it and acting
//! on it, which no supervisor can prevent.
//!
//! A service's run and its `finish` script get the pipe, as s6-rc gives
//! both (its generated wrappers fetch the ends before `run` and `finish`
//! alike); reload hooks and exec probes, corral's own, keep `/dev/null` as
//! stdin and their usual output. s6-rc orders nothing between the two ends
//! (no implicit dependency), and neither does this: the pipe exists from
//! whichever end starts first.
//!
//! Security (SPEC section 12): both ends are corral's own fds, opened
//! close-on-exec; a spawn gets fresh copies (also close-on-exec, until std
//! dup2s them onto fd 0 or 1 of that one child), so no service outside the
//! pipeline ever holds them. Every producer of a consumer shares its one
//! pipe: that is the funnel s6-rc defines.
//!
//! Fd budget: two fds per consumer, held for corral's life (plus a copy
//! per end for the moment of a spawn). They come out of what the control
//! and HTTP servers leave of the fd limit (`polling::share_of_fds`) for
//! everything else, like each service's output pipes; a producer's stdout
//! costs the output thread nothing, corral does not read it.
//!
//! What it must never do: set `O_NONBLOCK` on a pipe (the flag belongs to
//! the pipe, which the services read and write expecting blocking I/O), or
//! read or write a pipe itself.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;

use crate::config::{ServiceSpec, Spec};

/// The pipes of every pipeline, by consumer name. Lives in the executor's
/// `Setup`, on the loop's thread (hence the `RefCell`: the executor gets a
/// shared `Setup`).
#[derive(Debug, Default)]
pub struct Pipelines {
    table: RefCell<Table>,
}

/// What one spawn of a service gets from its pipelines: copies of the ends,
/// close-on-exec, for `process::Launch::stdin` / `stdout`.
#[derive(Debug, Default)]
pub struct Ends {
    /// The read end of the pipe into this service (it is a consumer).
    pub stdin: Option<OwnedFd>,
    /// The write end of the pipe into its consumer (it is a producer).
    pub stdout: Option<OwnedFd>,
}

#[derive(Debug, Default)]
struct Table {
    /// Every service that some producer pipes into, by the current
    /// definitions.
    consumers: BTreeSet<String>,
    /// The pipe into each consumer, once either end has been spawned.
    pipes: BTreeMap<String, Pipe>,
}

#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipelines {
    /// The pipelines of the definitions corral starts with; no pipe is made
    /// before a spawn needs it.
    pub fn new(spec: &Spec) -> Pipelines {
        let pipelines = Pipelines::default();
        pipelines.redefine(spec);
        pipelines
    }

    /// A new set of definitions (SIGHUP, `ctl reload`), as the core will
    /// apply it: the pipes into services nothing pipes into any more are
    /// closed (their consumers, if still running, read what is left and
    /// then see EOF once their producers are gone); the others stay, with
    /// whatever they hold. Returns the consumers whose pipe was closed.
    pub fn redefine(&self, spec: &Spec) -> Vec<String> {
        let Ok(mut table) = self.table.try_borrow_mut() else {
            return Vec::new();
        };
        table.consumers = spec
            .services
            .iter()
            .filter_map(|s| s.pipe_to.clone())
            .collect();
        let gone: Vec<String> = table
            .pipes
            .keys()
            .filter(|name| !table.consumers.contains(*name))
            .cloned()
            .collect();
        for name in &gone {
            table.pipes.remove(name);
        }
        gone
    }

    /// The ends a spawn of `spec`'s run gets: the read end of the pipe into
    /// it when it is a consumer, the write end of the pipe into its consumer
    /// when it is a producer; each pipe made the first time an end of it is
    /// needed. An error (EMFILE...) fails this spawn, nothing else.
    pub fn ends(&self, spec: &ServiceSpec) -> io::Result<Ends> {
        let mut table = self
            .table
            .try_borrow_mut()
            .map_err(|_| io::Error::other("pipelines in use"))?;
        let mut ends = Ends::default();
        if table.consumers.contains(&spec.name) {
            ends.stdin = Some(table.pipe(&spec.name)?.read.try_clone()?);
        }
        if let Some(consumer) = &spec.pipe_to {
            // Known already from the definitions; inserted again in case
            // this spec is newer than the last `redefine`.
            table.consumers.insert(consumer.clone());
            ends.stdout = Some(table.pipe(consumer)?.write.try_clone()?);
        }
        Ok(ends)
    }

    /// The fds corral holds for pipelines (two per pipe).
    #[cfg(test)]
    fn held_fds(&self) -> usize {
        self.table.try_borrow().map_or(0, |t| 2 * t.pipes.len())
    }
}

impl Table {
    fn pipe(&mut self, consumer: &str) -> io::Result<&Pipe> {
        if !self.pipes.contains_key(consumer) {
            // Close-on-exec: children get only the copies dup2'ed onto their
            // fd 0 / fd 1. Blocking, as any stdin/stdout a program expects.
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            self.pipes
                .insert(consumer.to_string(), Pipe { read, write });
        }
        self.pipes
            .get(consumer)
            .ok_or_else(|| io::Error::other("pipe vanished"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd};

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::stat::fstat;

    use super::*;

    fn spec(services: &[(&str, Option<&str>)]) -> Spec {
        Spec {
            services: services
                .iter()
                .map(|(name, to)| {
                    let mut s = ServiceSpec::new(name, vec!["true".into()]);
                    s.pipe_to = to.map(String::from);
                    s
                })
                .collect(),
        }
    }

    fn service(spec: &Spec, name: &str) -> ServiceSpec {
        spec.get(name).cloned().expect("defined")
    }

    fn write(fd: &OwnedFd, text: &str) {
        assert_eq!(nix::unistd::write(fd, text.as_bytes()), Ok(text.len()));
    }

    /// What is waiting in the pipe, read without blocking: poll first.
    fn read_now(fd: &OwnedFd) -> String {
        let mut out = String::new();
        while readable(fd) {
            let mut buf = [0u8; 256];
            let n = nix::unistd::read(fd, &mut buf).expect("read");
            if n == 0 {
                out.push_str("<EOF>");
                break;
            }
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        out
    }

    /// Whether a read would return at once (data, or EOF: POLLHUP).
    fn readable(fd: &OwnedFd) -> bool {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).expect("poll");
        fds[0].revents().is_some_and(|r| !r.is_empty())
    }

    fn inode(fd: &OwnedFd) -> u64 {
        fstat(fd).expect("fstat").st_ino
    }

    fn cloexec(fd: &OwnedFd) -> bool {
        // SAFETY: F_GETFD on a live fd.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        flags >= 0 && flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn a_producer_and_its_consumer_share_one_pipe_made_at_the_first_spawn() {
        let defs = spec(&[("app", Some("log")), ("log", None), ("other", None)]);
        let pipes = Pipelines::new(&defs);
        assert_eq!(pipes.held_fds(), 0, "no pipe before a spawn needs it");

        let other = pipes.ends(&service(&defs, "other")).expect("ends");
        assert!(other.stdin.is_none() && other.stdout.is_none());
        assert_eq!(pipes.held_fds(), 0, "a service outside any pipeline");

        // Either end may start first: here the consumer.
        let log = pipes.ends(&service(&defs, "log")).expect("ends");
        assert!(log.stdout.is_none(), "a last consumer writes to corral");
        let log_in = log.stdin.expect("the consumer reads the pipe");
        assert_eq!(pipes.held_fds(), 2);
        let app = pipes.ends(&service(&defs, "app")).expect("ends");
        assert!(app.stdin.is_none());
        let app_out = app.stdout.expect("the producer writes the pipe");
        assert_eq!(pipes.held_fds(), 2, "one pipe, not two");
        assert_eq!(inode(&app_out), inode(&log_in));

        write(&app_out, "one\n");
        assert_eq!(read_now(&log_in), "one\n");
        for fd in [&app_out, &log_in] {
            assert!(cloexec(fd), "a spawn's copy is close-on-exec until dup2");
        }
    }

    #[test]
    fn nothing_is_lost_and_no_eof_while_either_end_restarts() {
        let defs = spec(&[("app", Some("log")), ("log", None)]);
        let pipes = Pipelines::new(&defs);
        let app = pipes.ends(&service(&defs, "app")).expect("ends");
        let log = pipes.ends(&service(&defs, "log")).expect("ends");
        let (app_out, log_in) = (app.stdout.expect("out"), log.stdin.expect("in"));

        // The consumer dies (its copy is closed): the producer's writes
        // still succeed (no EPIPE) and wait in the pipe...
        drop(log_in);
        write(&app_out, "while the consumer was down\n");
        // ...for the next consumer.
        let log_in = pipes
            .ends(&service(&defs, "log"))
            .expect("ends")
            .stdin
            .expect("in");
        assert_eq!(read_now(&log_in), "while the consumer was down\n");

        // The producer dies: the consumer sees no EOF (corral still holds a
        // write end), it just has nothing to read.
        drop(app_out);
        assert!(!readable(&log_in), "no EOF while the producer restarts");
        let app_out = pipes
            .ends(&service(&defs, "app"))
            .expect("ends")
            .stdout
            .expect("out");
        write(&app_out, "after the restart\n");
        assert_eq!(read_now(&log_in), "after the restart\n");
    }

    #[test]
    fn several_producers_feed_one_consumer_and_a_consumer_may_produce() {
        // a, b -> mid -> last
        let defs = spec(&[
            ("a", Some("mid")),
            ("b", Some("mid")),
            ("mid", Some("last")),
            ("last", None),
        ]);
        let pipes = Pipelines::new(&defs);
        let a = pipes.ends(&service(&defs, "a")).expect("a");
        let b = pipes.ends(&service(&defs, "b")).expect("b");
        let mid = pipes.ends(&service(&defs, "mid")).expect("mid");
        let last = pipes.ends(&service(&defs, "last")).expect("last");
        let mid_in = mid.stdin.expect("mid reads");
        write(&a.stdout.expect("a writes"), "from a\n");
        write(&b.stdout.expect("b writes"), "from b\n");
        assert_eq!(read_now(&mid_in), "from a\nfrom b\n", "one funnel");
        write(&mid.stdout.expect("mid writes"), "from mid\n");
        assert_eq!(read_now(&last.stdin.expect("last reads")), "from mid\n");
        assert_eq!(pipes.held_fds(), 4, "one pipe per consumer");
    }

    #[test]
    fn a_reload_keeps_the_pipes_of_pipelines_it_keeps_and_closes_the_others() {
        let defs = spec(&[
            ("app", Some("log")),
            ("log", None),
            ("web", Some("weblog")),
            ("weblog", None),
        ]);
        let pipes = Pipelines::new(&defs);
        let app_out = pipes
            .ends(&service(&defs, "app"))
            .expect("ends")
            .stdout
            .expect("out");
        let web_out = pipes
            .ends(&service(&defs, "web"))
            .expect("ends")
            .stdout
            .expect("out");
        write(&app_out, "kept\n");
        assert_eq!(pipes.held_fds(), 4);

        // `web` and `weblog` removed; `app` redefined but still a producer
        // for `log`.
        let mut next = spec(&[("app", Some("log")), ("log", None)]);
        if let Some(app) = next.services.first_mut() {
            app.command = vec!["changed".into()];
        }
        assert_eq!(pipes.redefine(&next), vec!["weblog".to_string()]);
        assert_eq!(pipes.held_fds(), 2);
        let log_in = pipes
            .ends(&service(&next, "log"))
            .expect("ends")
            .stdin
            .expect("in");
        assert_eq!(inode(&log_in), inode(&app_out), "the same pipe");
        assert_eq!(read_now(&log_in), "kept\n", "with what it held");

        // The old producer's copy now has no reader left but its own
        // process's: corral no longer holds the closed pipe.
        assert_eq!(
            nix::unistd::write(&web_out, b"x"),
            Err(nix::errno::Errno::EPIPE)
        );
        // A service that is no longer a consumer gets no pipe.
        let weblog = ServiceSpec::new("weblog", vec!["true".into()]);
        assert!(pipes.ends(&weblog).expect("ends").stdin.is_none());
    }
}
