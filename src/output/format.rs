//! How a service's line is written: `--output-format text|json` and
//! `--output-timestamps` (SPEC section 10), and the JSON record that
//! `corral ctl logs --json` prints too.
//!
//! Text: `NAME | line`, or with timestamps `2026-12-04T14:00:00.123Z NAME |
//! line` (the time the line was read, RFC 3339 UTC with milliseconds). The
//! line's bytes are written as the service wrote them.
//!
//! JSON: one object per line, `{"ts":"…","service":"web","stream":"stdout",
//! "pid":123,"line":"…"}` (`pid` left out when unknown). JSON strings are
//! Unicode, a service's bytes need not be: `line` is the line's bytes
//! escaped by `escape_line`, which `unescape_line` undoes exactly:
//!
//! - valid UTF-8 is kept as it is (JSON itself escapes `"` and control
//!   characters);
//! - every byte that is not part of valid UTF-8 becomes the four
//!   characters `\xNN` (two lowercase hex digits);
//! - a backslash is doubled (`\\`) only when the next character written is
//!   `\` or `x`; any other backslash stays single.
//!
//! So a line that is valid UTF-8 and has no `\x` or `\\` in it (nearly
//! every line; a JSON log's `\"` and `\n` included) comes out unchanged,
//! and decoding is unambiguous: reading left to right, `\\` is a
//! backslash, `\x` and two hex digits is that byte, and any other
//! backslash is itself (a literal backslash before `x` or `\` was doubled,
//! so `\x` can only start an escaped byte).
//!
//! What it must never do: drop or replace a byte, or write anything but
//! one line of valid JSON per line.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Serialize;

use super::Stream;

/// `--output-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// How the output thread writes service lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Format {
    pub format: OutputFormat,
    /// `--output-timestamps` (text only: JSON always has `ts`).
    pub timestamps: bool,
}

/// `2026-12-04T14:00:00.123Z`.
/// A clock set before 1970 or past 9999 (a broken RTC) gives the nearest
/// end of that range: humantime cannot write those years, and must not
/// panic in the output thread.
pub fn rfc3339(time: SystemTime) -> String {
    /// 9999-12-31T23:59:59Z.
    const LAST_SECOND: u64 = 253_402_300_799;
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .min(std::time::Duration::from_secs(LAST_SECOND));
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + since).to_string()
}

/// `line` as a string per the scheme in the module doc.
pub fn escape_line(line: &[u8]) -> Cow<'_, str> {
    // No backslash at all (nearly every line): nothing to escape. One
    // pass for the backslash, one for UTF-8.
    if !line.contains(&b'\\')
        && let Ok(text) = std::str::from_utf8(line)
    {
        return Cow::Borrowed(text);
    }
    if let Ok(text) = std::str::from_utf8(line)
        && !text.contains("\\\\")
        && !text.contains("\\x")
    {
        return Cow::Borrowed(text);
    }
    // Pieces: valid text, and single invalid bytes.
    let mut out = String::with_capacity(line.len() + 16);
    for chunk in line.utf8_chunks() {
        let valid = chunk.valid();
        let invalid = chunk.invalid();
        let mut chars = valid.chars().peekable();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '\\' {
                // What comes next in the output: the next character, or an
                // escaped byte (`\x..`).
                let next_is_special = match chars.peek() {
                    Some(&n) => n == '\\' || n == 'x',
                    None => !invalid.is_empty(),
                };
                if next_is_special {
                    out.push('\\');
                }
            }
        }
        for byte in invalid {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    Cow::Owned(out)
}

/// The bytes `escape_line` was given.
pub fn unescape_line(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            match bytes.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                    continue;
                }
                Some(b'x') => {
                    let hex = bytes
                        .get(i + 2..i + 4)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(byte) = hex {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// One line as a JSON object (`--output-format json`, `ctl logs --json`).
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub ts: &'a str,
    pub service: &'a str,
    pub stream: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub line: &'a str,
    /// `syslog` lines: the message's facility and severity (`local0`, `notice`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'a str>,
}

/// Append `record` and a newline to `out`.
pub fn write_record(out: &mut Vec<u8>, record: &Record<'_>) {
    // Serializing strings and numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, record).is_ok() {
        out.push(b'\n');
    }
}

/// What every line of one read starts with, built once per read (the
/// output thread's hot path: millions of lines a second): text, `NAME | `
/// (after the timestamp with `--output-timestamps`); JSON, the object up to
/// the `line` key, `{"ts":"…","service":"…","stream":"…","pid":N,"line":`.
/// `ts` is the read's time already formatted (`rfc3339`), `prefix` is
/// `NAME | `.
pub(super) fn line_head(
    head: &mut Vec<u8>,
    format: Format,
    ts: &str,
    service: &str,
    prefix: &[u8],
    stream: Stream,
    pid: Option<u32>,
) {
    head.clear();
    match format.format {
        OutputFormat::Text => {
            if format.timestamps {
                head.extend_from_slice(ts.as_bytes());
                head.push(b' ');
            }
            head.extend_from_slice(prefix);
        }
        OutputFormat::Json => {
            // The keys as the literals serde_json would write; every value
            // through serde_json (tested against `write_record`). Writing
            // into a Vec cannot fail.
            head.extend_from_slice(b"{\"ts\":");
            let mut whole = serde_json::to_writer(&mut *head, ts).is_ok();
            head.extend_from_slice(b",\"service\":");
            whole &= serde_json::to_writer(&mut *head, service).is_ok();
            head.extend_from_slice(b",\"stream\":\"");
            head.extend_from_slice(stream.as_str().as_bytes());
            head.push(b'"');
            if let Some(pid) = pid {
                head.extend_from_slice(b",\"pid\":");
                whole &= serde_json::to_writer(&mut *head, &pid).is_ok();
            }
            head.extend_from_slice(b",\"line\":");
            debug_assert!(whole);
        }
    }
}

/// Append one service line to `out` in `format`, after `head`
/// (`line_head` of its read). JSON: the same bytes as `write_record`
/// (tested).
pub(super) fn write_line(out: &mut Vec<u8>, format: Format, head: &[u8], line: &[u8]) {
    out.extend_from_slice(head);
    match format.format {
        OutputFormat::Text => {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        OutputFormat::Json => {
            if is_plain_json(line) {
                // Nearly every line: ASCII that neither `escape_line` nor
                // JSON changes, copied between quotes after one scan.
                out.push(b'"');
                out.extend_from_slice(line);
                out.extend_from_slice(b"\"}\n");
                return;
            }
            let text = escape_line(line);
            if !needs_json_escape(text.as_bytes()) {
                out.push(b'"');
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
            } else {
                // Writing into a Vec cannot fail.
                let whole = serde_json::to_writer(&mut *out, &*text).is_ok();
                debug_assert!(whole);
            }
            out.extend_from_slice(b"}\n");
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is below 0x20, `"` or `\` (and
/// perhaps of others when one is: only "none" is exact). For a byte with
/// its high bit clear, subtracting 0x20 borrows into its high bit exactly
/// when it is below 0x20; a byte equal to `c` is a zero byte of `x ^ c`.
fn json_specials(x: u64) -> u64 {
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    (x.wrapping_sub(0x20 * ONES)
        | zero_byte(x ^ (u64::from(b'"') * ONES))
        | zero_byte(x ^ (u64::from(b'\\') * ONES)))
        & !x
        & HIGHS
}

/// Whether `bytes` hold a byte JSON strings must escape: a control
/// character below 0x20, `"` or `\`. Eight bytes at a time.
fn needs_json_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if json_specials(u64::from_ne_bytes(word)) != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Whether `line` is ASCII without control characters, `"` or `\`: then
/// `escape_line` and JSON leave it as it is. One pass, eight bytes at a
/// time, instead of a backslash search, a UTF-8 check and a JSON scan.
fn is_plain_json(line: &[u8]) -> bool {
    let mut chunks = line.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        if (x & HIGHS) | json_specials(x) != 0 {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\')
}

/// Append one line of the pseudo-service `syslog` (SPEC section 10) to
/// `out`: text as a service line, JSON with its facility and severity.
pub(super) fn write_syslog(out: &mut Vec<u8>, format: Format, ts: &str, line: &SyslogLine) {
    match format.format {
        OutputFormat::Text => {
            if format.timestamps {
                out.extend_from_slice(ts.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(SYSLOG.as_bytes());
            out.extend_from_slice(b" | ");
            out.extend_from_slice(line.text.as_bytes());
            out.push(b'\n');
        }
        OutputFormat::Json => write_record(
            out,
            &Record {
                ts,
                service: SYSLOG,
                stream: Stream::Stdout.as_str(),
                pid: line.pid,
                line: &line.text,
                facility: Some(line.priority.facility),
                severity: Some(line.priority.severity),
            },
        ),
    }
}

/// The pseudo-service whose lines `--syslog` messages become.
pub const SYSLOG: &str = "syslog";

/// One syslog message as a line: `TAG[PID]: message`, already escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogLine {
    pub time: SystemTime,
    /// The pid the message gives.
    pub pid: Option<u32>,
    pub priority: super::Priority,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(bytes: &[u8]) {
        let text = escape_line(bytes);
        assert_eq!(unescape_line(&text), bytes, "{text:?}");
        // And through JSON.
        let json = serde_json::to_string(&*text).expect("json");
        let back: String = serde_json::from_str(&json).expect("parse");
        assert_eq!(unescape_line(&back), bytes);
    }

    #[test]
    fn the_eight_byte_scan_finds_what_a_byte_loop_finds() {
        let naive = |b: &[u8]| b.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        let plain = |b: &[u8]| !naive(b) && b.is_ascii();
        // Each byte value at each position of two words and a tail.
        for len in [1usize, 7, 8, 9, 16, 19] {
            for at in 0..len {
                for value in 0u8..=255 {
                    let mut bytes = vec![b'a'; len];
                    if let Some(b) = bytes.get_mut(at) {
                        *b = value;
                    }
                    assert_eq!(needs_json_escape(&bytes), naive(&bytes), "{bytes:?}");
                    assert_eq!(is_plain_json(&bytes), plain(&bytes), "{bytes:?}");
                }
            }
        }
        // Pseudo-random words, high bytes (UTF-8) included.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let bytes: Vec<u8> = (0..24)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x & 0xff) as u8 | if x & 0x100 == 0 { 0x20 } else { 0 }
                })
                .collect();
            assert_eq!(needs_json_escape(&bytes), naive(&bytes), "{bytes:?}");
            assert_eq!(is_plain_json(&bytes), plain(&bytes), "{bytes:?}");
        }
    }

    /// `line_head` and `write_line`, as the output thread calls them.
    fn json_line(
        ts: &str,
        service: &str,
        stream: Stream,
        pid: Option<u32>,
        line: &[u8],
    ) -> Vec<u8> {
        let format = Format {
            format: OutputFormat::Json,
            timestamps: false,
        };
        let mut head = Vec::new();
        line_head(&mut head, format, ts, service, b"", stream, pid);
        let mut out = Vec::new();
        write_line(&mut out, format, &head, line);
        out
    }

    #[test]
    fn json_string_is_what_serde_json_writes() {
        // Every ASCII character, alone and amid text; and beyond ASCII.
        let mut texts: Vec<String> = (0u8..0x80)
            .flat_map(|b| [char::from(b).to_string(), format!("ab{}cd", char::from(b))])
            .collect();
        texts.extend(
            [
                "caf\u{e9}",
                "\u{2028}\u{2029}",
                "\u{10ffff}",
                "\u{7f}\u{80}\u{9f}",
                "",
            ]
            .map(String::from),
        );
        for text in texts {
            let fast = json_line("t", &text, Stream::Stdout, None, text.as_bytes());
            let mut slow = Vec::new();
            write_record(
                &mut slow,
                &Record {
                    ts: "t",
                    service: &text,
                    stream: "stdout",
                    pid: None,
                    line: &escape_line(text.as_bytes()),
                    facility: None,
                    severity: None,
                },
            );
            assert_eq!(fast, slow, "{text:?}");
        }
    }

    #[test]
    fn a_service_line_in_json_is_what_write_record_writes() {
        let lines: [&[u8]; 6] = [
            b"listening on :80",
            b"",
            b"tab\there \"quoted\" back\\slash",
            b"\x00\x1f\x7f bytes \xff\xfe",
            "caf\u{e9} \u{2028}".as_bytes(),
            b"\\x41 looks escaped",
        ];
        for line in lines {
            for pid in [None, Some(4_194_304)] {
                for (service, stream) in [("web", Stream::Stdout), ("a\"b", Stream::Stderr)] {
                    let fast = json_line("2026-12-04T14:00:00.123Z", service, stream, pid, line);
                    let mut slow = Vec::new();
                    write_record(
                        &mut slow,
                        &Record {
                            ts: "2026-12-04T14:00:00.123Z",
                            service,
                            stream: stream.as_str(),
                            pid,
                            line: &escape_line(line),
                            facility: None,
                            severity: None,
                        },
                    );
                    assert_eq!(
                        String::from_utf8_lossy(&fast),
                        String::from_utf8_lossy(&slow)
                    );
                }
            }
        }
    }

    #[test]
    fn times_outside_what_rfc3339_can_write_are_pinned_not_a_panic() {
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(
            rfc3339(epoch - std::time::Duration::from_secs(10)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(epoch + std::time::Duration::from_secs(400_000_000_000)),
            "9999-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn plain_text_and_json_logs_are_kept_as_they_are() {
        for line in [
            "listening on :80",
            r#"{"msg":"a \"quoted\" word\n","path":"C:\temp"}"#,
            "ends with a backslash \\",
            "héllo wörld ✓",
        ] {
            assert_eq!(escape_line(line.as_bytes()), line);
            round_trip(line.as_bytes());
        }
    }

    #[test]
    fn invalid_bytes_and_ambiguous_backslashes_are_escaped() {
        assert_eq!(escape_line(b"a\xffb"), "a\\xffb");
        assert_eq!(escape_line(b"\\x41"), "\\\\x41");
        assert_eq!(escape_line(b"\\\\"), "\\\\\\");
        assert_eq!(escape_line(b"\\\xfe"), "\\\\\\xfe");
        assert_eq!(unescape_line("a\\xffb"), b"a\xffb");
        assert_eq!(unescape_line("\\q \\x4"), b"\\q \\x4");
    }

    #[test]
    fn every_byte_sequence_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        round_trip(&all);
        // A deterministic pseudo-random walk over short sequences heavy in
        // backslashes, x, hex digits and invalid bytes.
        let alphabet = [
            b'\\', b'x', b'4', b'f', b'a', 0xff, 0xc3, 0xa9, 0x80, b'\n', 0,
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut line = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 9) as usize;
            let mut s = seed;
            for _ in 0..len {
                line.push(alphabet[(s % alphabet.len() as u64) as usize]);
                s /= alphabet.len() as u64;
            }
            round_trip(&line);
        }
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                round_trip(&[a, b]);
                round_trip(&[b'\\', a, b]);
            }
        }
    }

    #[test]
    fn a_json_line_is_one_object_with_every_field() {
        let ts = "2026-12-04T14:00:00.123Z";
        let out = json_line(ts, "web", Stream::Stderr, Some(12), b"a\x00\"\xff");
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["ts"], ts);
        assert_eq!(v["service"], "web");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["pid"], 12);
        assert_eq!(v["line"], "a\u{0}\"\\xff");
        let format = Format {
            format: OutputFormat::Text,
            timestamps: true,
        };
        let mut head = Vec::new();
        line_head(
            &mut head,
            format,
            ts,
            "web",
            b"web | ",
            Stream::Stdout,
            None,
        );
        let mut text = Vec::new();
        write_line(&mut text, format, &head, b"hi");
        assert_eq!(text, b"2026-12-04T14:00:00.123Z web | hi\n");
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_796_392_800_123);
        assert_eq!(rfc3339(t), "2026-12-04T14:00:00.123Z");
    }
}
