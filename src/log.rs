//! corral's own messages: tracing to stderr, as text or JSON lines.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;

use crate::cli::{LogArgs, LogFormat, LogLevel};

pub fn init(args: &LogArgs) {
    let level = match args.log_level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Off => LevelFilter::OFF,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    // try_init: a second initialisation (tests) is not an error worth dying for.
    let _ = match args.log_format {
        // Container runtimes timestamp each line already.
        LogFormat::Text => builder
            .without_time()
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
