//! `ready = { log-line = "regex" }` at run time: the output thread shows
//! each whole line of a run's stdout and stderr to the run's `LineReady`
//! until one matches; then it tells the loop, once, with
//! `Input::FdReady` for that run (readiness that carries nothing but its
//! run, as a notification fd's newline), and both pipes stop looking.
//!
//! The run number is the guard against stale lines: each run has pipes of
//! its own, and the loop ignores a readiness for a run that is not the
//! current one, so a line from an old run (or a process it left behind)
//! never makes a new run ready.
//!
//! What it must never do: block (the input channel is unbounded) or
//! touch the line, which goes on to the output and the log ring as usual.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Sender;
use regex_lite::Regex;

use crate::event::Input;

/// One run's readiness by log line, shared by its stdout and stderr.
pub struct LineReady {
    regex: Regex,
    service: String,
    run: u32,
    inputs: Sender<Input>,
    /// A line of either stream matched.
    matched: AtomicBool,
}

impl LineReady {
    /// Run `run` of `service` is ready once a line matches `regex`; the
    /// loop hears it on `inputs`.
    pub fn new(regex: Regex, service: &str, run: u32, inputs: Sender<Input>) -> LineReady {
        LineReady {
            regex,
            service: service.to_string(),
            run,
            inputs,
            matched: AtomicBool::new(false),
        }
    }

    /// Looks at one line: true once the run's readiness is settled (by this
    /// line, or by one before on either stream), when its pipes stop
    /// looking. The line is matched as UTF-8, bytes that are not replaced
    /// (U+FFFD): no copy for a line that is valid.
    pub(super) fn settled_by(&self, line: &[u8]) -> bool {
        if self.matched.load(Ordering::Relaxed) {
            return true;
        }
        if !self.regex.is_match(&String::from_utf8_lossy(line)) {
            return false;
        }
        if !self.matched.swap(true, Ordering::Relaxed) {
            // The loop is gone only when corral exits: nothing to tell then.
            let _ = self.inputs.send(Input::FdReady {
                service: self.service.clone(),
                run: self.run,
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_line_of_either_stream_tells_the_loop_once() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let regex = Regex::new(r"listening on \d+").unwrap();
        let ready = LineReady::new(regex, "web", 3, tx);
        assert!(!ready.settled_by(b"starting"));
        assert!(!ready.settled_by(b"listening on port"));
        assert!(rx.try_recv().is_err());
        // Bytes that are not UTF-8 around the match do not hide it.
        assert!(ready.settled_by(b"\xff\xfe listening on 8080 \xc3"));
        match rx.try_recv() {
            Ok(Input::FdReady { service, run }) => assert_eq!((service.as_str(), run), ("web", 3)),
            other => panic!("expected FdReady, got {other:?}"),
        }
        // The other stream's next line: settled, nothing sent again.
        assert!(ready.settled_by(b"anything"));
        assert!(ready.settled_by(b"listening on 9090"));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_huge_line_with_a_hostile_pattern_is_matched_in_linear_time() {
        // Catastrophic for a backtracking engine; regex-lite runs a Pike VM.
        let (tx, _rx) = crossbeam_channel::unbounded();
        let ready = LineReady::new(Regex::new(r"^(a+)+$").unwrap(), "web", 1, tx);
        let mut line = vec![b'a'; crate::output::MAX_LINE - 1];
        line.push(b'!');
        let started = std::time::Instant::now();
        assert!(!ready.settled_by(&line));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}
