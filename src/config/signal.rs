//! Signal names as users write them: `"TERM"`, `"SIGTERM"`, `"term"`.

use std::str::FromStr;

use nix::sys::signal::Signal;

/// Parses a signal name, with or without the `SIG` prefix, in any case.
/// Numbers are refused: signal numbers differ between architectures.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let upper = s.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| {
        format!(
            "unknown signal \"{s}\": use a name such as \"TERM\", \"INT\", \"QUIT\", \"HUP\", \"USR1\", \"USR2\" or \"KILL\""
        )
    })
}

/// The conventional name, e.g. `"SIGTERM"`.
pub fn signal_name(sig: Signal) -> &'static str {
    sig.as_str()
}
