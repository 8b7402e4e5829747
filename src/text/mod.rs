//! Text for people, in one place: durations (`3m12s`), did-you-mean
//! suggestions, dates (RFC 3339 for JSON log lines, the IMF-fixdate of
//! HTTP), execline command lines read into an argv, control characters escaped before they reach a terminal or a log,
//! and system errors as strerror(3) words them.
//!
//! What it owns: the one spelling of each, so that `ctl status`, the log and
//! an error message say the same thing the same way.
//!
//! What it must never do: use any other module of corral (every module may
//! use this one), read the clock (a time is handed in), or do I/O.

mod date;
mod escape;
pub mod execline;
mod suggest;

use std::io;
use std::time::Duration;

pub use date::{civil_from_days, http_date, rfc3339};
pub use escape::{Escaped, Form, escape};
pub use suggest::closest;

/// `850ms`, `4.2s`, `3m12s`, `2h05m`: a duration as `ctl status` and the log
/// show it, to a precision a person reads at a glance.
pub fn human(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => {
            // Tenths of a second, rounded as `{:.1}` of the seconds would
            // (half to even), in integers: no float formatting in the binary.
            let nanos = d.as_nanos();
            let (tenths, rest) = (nanos / 100_000_000, nanos % 100_000_000);
            let up = rest > 50_000_000 || (rest == 50_000_000 && tenths % 2 == 1);
            let tenths = tenths + u128::from(up);
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// strerror(3) text, without std's " (os error N)": `No such file or
/// directory`, as a shell reports a program it cannot run.
pub fn strerror(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => err.to_string(),
    }
}

/// strerror(3) text in lower case, without std's " (os error N)", as in
/// `web.toml: permission denied`.
pub fn io_reason(err: &io::Error) -> String {
    let text = strerror(err);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        let ms = Duration::from_millis;
        assert_eq!(human(ms(850)), "850ms");
        assert_eq!(human(ms(4_200)), "4.2s");
        // As `{:.1}` of the seconds as f64 would print them.
        for n in (1_000..60_000)
            .step_by(7)
            .chain([1_250, 1_350, 1_450, 59_949, 59_950, 59_999])
        {
            let d = Duration::from_micros(n * 1000 + n % 997);
            assert_eq!(human(d), format!("{:.1}s", d.as_secs_f64()), "{d:?}");
        }
        assert_eq!(human(ms(192_000)), "3m12s");
        assert_eq!(human(ms(7_500_000)), "2h05m");
        assert_eq!(human(Duration::MAX), "5124095576030h25m");
    }

    #[test]
    fn system_errors_are_worded_as_strerror() {
        let gone = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(strerror(&gone), "No such file or directory");
        assert_eq!(io_reason(&gone), "no such file or directory");
        assert_eq!(io_reason(&io::Error::other("Odd")), "odd");
    }
}
