//! What the fuzzers (fuzz/, cargo-fuzz on nightly) found and checked, kept
//! on stable Rust: every committed corpus input (fuzz/corpus/TARGET/) is
//! replayed through its target's properties (fuzz/src/lib.rs, included
//! here), and each crash found has its own test below, with its input.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod fuzz;

/// Feeds every input of `target`'s committed corpus to `check`; names the
/// files that broke a property (each panic message is printed above).
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("read the corpus dir").path())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 10,
        "{}: only {} inputs",
        dir.display(),
        inputs.len()
    );
    let broken: Vec<String> = inputs
        .iter()
        .filter(|path| {
            let data = fs::read(path).expect("read a corpus input");
            panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        broken.is_empty(),
        "inputs that broke a property: {broken:#?}"
    );
}

#[test]
fn service_file_corpus() {
    replay("service_file", fuzz::service_file);
}

#[test]
fn config_load_corpus() {
    replay("config_load", fuzz::config_load);
}

#[test]
fn s6_small_files_corpus() {
    replay("s6_small_files", fuzz::s6_small_files);
}

#[test]
fn duration_signal_corpus() {
    replay("duration_signal", fuzz::duration_signal);
}

#[test]
fn notify_datagram_corpus() {
    replay("notify_datagram", fuzz::notify_datagram);
}

#[test]
fn control_protocol_corpus() {
    replay("control_protocol", fuzz::control_protocol);
}

#[test]
fn http_request_corpus() {
    replay("http_request", fuzz::http_request);
}

#[test]
fn execline_corpus() {
    replay("execline", fuzz::execline);
}

#[test]
fn syslog_datagram_corpus() {
    replay("syslog_datagram", fuzz::syslog_datagram);
}

/// The multi-file format of the `config_load` target reads as documented,
/// so its seeds really hold the files they show.
#[test]
fn config_load_inputs_are_read_as_files() {
    let files = fuzz::services_dir_files(
        b"ignored\n=== web.toml\ncommand = \"x\"\n=== db/run\n#!/bin/sh\n=== ../x\nno\n=== a/b/c\nno\n",
    );
    assert_eq!(
        files,
        vec![
            (PathBuf::from("web.toml"), b"command = \"x\"\n".to_vec()),
            (PathBuf::from("db/run"), b"#!/bin/sh\n".to_vec()),
        ]
    );
}

/// Found by the `duration_signal` properties: a number of more than 39
/// digits overflowed the parser's integer and was reported as "not a
/// number"; it is a duration too long.
#[test]
fn a_huge_duration_is_too_long_not_a_non_number() {
    let digits = "9".repeat(41);
    for text in [
        format!("{digits}h"),
        format!("{digits}.5s"),
        format!("1s{digits}ms"),
    ] {
        assert_eq!(
            corral::config::parse_duration(&text),
            Err(format!(
                "invalid duration \"{text}\": too long (at most 100 years, 876000h)"
            )),
        );
    }
}

/// Found by the `control_protocol` properties: a version that is not a whole
/// number was reported as missing ("add \"v\": 1" to a request that has it).
#[test]
fn a_version_of_the_wrong_type_is_named_not_called_missing() {
    for (request, shown) in [
        (r#"{"v":"1","op":"status"}"#, r#""1""#),
        (r#"{"v":1.0,"op":"status"}"#, "1.0"),
        (r#"{"v":-1,"op":"status"}"#, "-1"),
        (r#"{"v":null,"op":"status"}"#, "null"),
    ] {
        assert_eq!(
            corral::control::protocol::decode_request(request.as_bytes()),
            Err(format!(
                "unsupported protocol version {shown}: this corral speaks version 1"
            )),
        );
    }
}
