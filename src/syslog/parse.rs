//! One syslog datagram read into its parts: priority (facility and
//! severity), tag (app-name), pid (procid) and message, in either format a
//! local sender uses, with or without the `<PRI>` header:
//!
//! - RFC 3164 as glibc's syslog(3), haproxy and `logger` send it on a
//!   local socket: `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`, a hostname after
//!   the time when `logger --rfc3164` adds one, no time at all from some
//!   senders, an RFC 3339 time from others;
//! - RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`,
//!   each header field `-` or printable ASCII, the structured data `-` or
//!   `[id k="v"]...`, the message after an optional UTF-8 BOM.
//!
//! A datagram that follows neither is still a message: what cannot be read
//! as a header stays in the message, so nothing a sender wrote is lost
//! (RFC 3164 section 4.3.3: no `<PRI>` means user.notice).
//!
//! Written here rather than taken from a crate: `syslog_loose` does this,
//! but brings chrono and nom (about 105 KB of a stripped binary); this file
//! is fuzzed (target `syslog_datagram`).
//!
//! What it must never do: panic, allocate, or take more than one pass over
//! the input (every scan is linear: a sender chooses the bytes). The time
//! and hostname a sender claims are skipped, not trusted: the time of a
//! record is when corral received it.

/// RFC 3164 section 4.3.3: a message without `<PRI>` is user.notice.
pub const DEFAULT_FACILITY: u8 = 1;
pub const DEFAULT_SEVERITY: u8 = 5;
/// The longest tag read as one: RFC 5424's APP-NAME (RFC 3164 says 32,
/// which real programs exceed: `postfix/submission/smtpd`).
pub const MAX_TAG: usize = 48;

/// A datagram's parts, each a piece of the datagram (nothing is copied or
/// decoded here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// 0 to 23 (kern ... local7).
    pub facility: u8,
    /// 0 to 7 (emerg ... debug).
    pub severity: u8,
    /// The sender's tag or APP-NAME; empty when it gave none. ASCII
    /// letters, digits and `-_./@+~#`, at most `MAX_TAG` bytes.
    pub tag: &'a [u8],
    /// The pid the sender claims (`TAG[PID]:`, PROCID), when it is a number.
    pub pid: Option<u32>,
    /// RFC 5424's structured data as written (`[id k="v"]`); empty for `-`
    /// and in RFC 3164.
    pub structured_data: &'a [u8],
    /// The message, without the trailing NULs and line breaks some senders
    /// add (Python's SysLogHandler ends each datagram with a NUL).
    pub message: &'a [u8],
}

/// Read one datagram. Never fails: what is not a header is message.
pub fn parse(datagram: &[u8]) -> Parsed<'_> {
    let data = trim_end(datagram);
    let (priority, rest) = match priority(data) {
        Some((pri, rest)) => (Some(pri), rest),
        None => (None, data),
    };
    let (facility, severity) = priority.map_or((DEFAULT_FACILITY, DEFAULT_SEVERITY), |pri| {
        (pri >> 3, pri & 7)
    });
    // RFC 5424 only comes with its `<PRI>`: its header starts with it.
    if priority.is_some()
        && let Some(parts) = rfc5424(rest)
    {
        return Parsed {
            facility,
            severity,
            ..parts
        };
    }
    let (tag, pid, message) = rfc3164(rest);
    Parsed {
        facility,
        severity,
        tag,
        pid,
        structured_data: &[],
        message,
    }
}

/// `data` without the NULs, `\n` and `\r` at its end.
fn trim_end(mut data: &[u8]) -> &[u8] {
    while let [rest @ .., b'\0' | b'\n' | b'\r'] = data {
        data = rest;
    }
    data
}

/// `<N>` with N from 0 to 191 (`facility * 8 + severity`), 1 to 3 digits.
fn priority(data: &[u8]) -> Option<(u8, &[u8])> {
    let rest = data.strip_prefix(b"<")?;
    let digits = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) {
        return None;
    }
    let (number, rest) = rest.split_at_checked(digits)?;
    let rest = rest.strip_prefix(b">")?;
    let value = number
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let value = u8::try_from(value).ok().filter(|&v| v <= 191)?;
    Some((value, rest))
}

/// The next header field of RFC 5424 (1 to `max` printable ASCII bytes)
/// and what follows the space after it.
fn field(data: &[u8], max: usize) -> Option<(&[u8], &[u8])> {
    let len = data
        .iter()
        .take(max + 1)
        .take_while(|b| b.is_ascii_graphic())
        .count();
    if len == 0 || len > max {
        return None;
    }
    let (value, rest) = data.split_at_checked(len)?;
    Some((value, rest.strip_prefix(b" ")?))
}

/// `-` (nothing) or the field itself.
fn nil(value: &[u8]) -> &[u8] {
    if value == b"-" { &[] } else { value }
}

/// RFC 5424 after `<PRI>`: `1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD
/// [SP MSG]`. `None` if the header is not one, which the caller then reads
/// as RFC 3164.
fn rfc5424(data: &[u8]) -> Option<Parsed<'_>> {
    let rest = data.strip_prefix(b"1 ")?;
    let (_timestamp, rest) = field(rest, 64)?;
    let (_hostname, rest) = field(rest, 255)?;
    let (app_name, rest) = field(rest, MAX_TAG)?;
    let (procid, rest) = field(rest, 128)?;
    let (_msgid, rest) = field(rest, 32)?;
    let (structured_data, rest) = structured_data(rest)?;
    let message = match rest {
        [] => rest,
        [b' ', message @ ..] => message,
        _ => return None,
    };
    let message = message
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(message);
    let tag = nil(app_name);
    // The tag keeps the promise of `Parsed::tag`, whatever APP-NAME holds.
    let tag = if tag.iter().all(|&b| tag_byte(b)) {
        tag
    } else {
        &[]
    };
    Some(Parsed {
        facility: DEFAULT_FACILITY,
        severity: DEFAULT_SEVERITY,
        tag,
        pid: number(nil(procid)),
        structured_data: nil(structured_data),
        message,
    })
}

/// RFC 5424's STRUCTURED-DATA: `-`, or one or more `[SD-ID *(SP
/// PARAM-NAME="VALUE")]`, a value escaping `"`, `\` and `]` with `\`.
/// Returns it whole and what follows.
fn structured_data(data: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(rest) = data.strip_prefix(b"-") {
        return Some((b"-", rest));
    }
    let mut at = 0;
    while data.get(at) == Some(&b'[') {
        at = sd_element(data, at + 1)?;
    }
    if at == 0 {
        return None;
    }
    data.split_at_checked(at)
}

/// An SD-NAME (SD-ID or PARAM-NAME) at `at`: its end.
fn sd_name(data: &[u8], at: usize) -> Option<usize> {
    let len = data
        .get(at..)?
        .iter()
        .take(33)
        .take_while(|&&b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
        .count();
    (1..=32).contains(&len).then_some(at + len)
}

/// One SD-ELEMENT whose `[` is just before `at`: the index after its `]`.
fn sd_element(data: &[u8], at: usize) -> Option<usize> {
    let mut at = sd_name(data, at)?;
    loop {
        match data.get(at)? {
            b']' => return Some(at + 1),
            b' ' => {
                at = sd_name(data, at + 1)?;
                if data.get(at..at + 2)? != b"=\"" {
                    return None;
                }
                at += 2;
                // The value, up to its unescaped closing quote.
                loop {
                    match data.get(at)? {
                        b'"' => break,
                        b'\\' => at += 2,
                        _ => at += 1,
                    }
                }
                at += 1;
            }
            _ => return None,
        }
    }
}

/// RFC 3164 after `<PRI>` (or a datagram without one): an optional time,
/// an optional hostname, an optional `TAG[PID]:`; the rest is the message.
fn rfc3164(data: &[u8]) -> (&[u8], Option<u32>, &[u8]) {
    let rest = skip_time(data);
    if let Some(found) = tag(rest) {
        return found;
    }
    // `logger --rfc3164` puts a hostname before the tag. A first word is
    // taken for one only when a tag follows it, so a message without a
    // tag ("Server be/s1 is DOWN") is left whole.
    if let Some(space) = rest.iter().position(|&b| b == b' ')
        && space > 0
        && let Some((host, after)) = rest.split_at_checked(space)
        && host.iter().all(|&b| hostname_byte(b))
        && let Some(found) = after.get(1..).and_then(tag)
    {
        return found;
    }
    (&[], None, rest)
}

/// A byte of a tag: what program names are made of (`postfix/smtpd`,
/// `systemd-logind`, `org.gnome.Shell`), so that punctuation in a message
/// without a tag (`<x>: y`, `http://x`) is not taken for one.
fn tag_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'@' | b'+' | b'~' | b'#')
}

fn hostname_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// `TAG: MSG` or `TAG[PID]: MSG` at the start of `data` (the space after
/// the colon may be the end of the datagram instead).
fn tag(data: &[u8]) -> Option<(&[u8], Option<u32>, &[u8])> {
    let len = data
        .iter()
        .take(MAX_TAG + 1)
        .take_while(|&&b| tag_byte(b))
        .count();
    if len == 0 || len > MAX_TAG {
        return None;
    }
    let (tag, rest) = data.split_at_checked(len)?;
    let (pid, rest) = match rest.strip_prefix(b"[") {
        Some(inside) => {
            let digits = inside
                .iter()
                .take(11)
                .take_while(|b| b.is_ascii_digit())
                .count();
            let (pid, after) = inside.split_at_checked(digits)?;
            (Some(number(pid)?), after.strip_prefix(b"]")?)
        }
        None => (None, rest),
    };
    let message = match rest {
        [b':'] => &[],
        [b':', b' ', message @ ..] => message,
        _ => return None,
    };
    Some((tag, pid, message))
}

/// A pid: 1 to 10 digits that fit a u32.
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    u32::try_from(value).ok()
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `data` after the time a sender put first, if any: RFC 3164's `Mmm dd
/// hh:mm:ss` (glibc: `%h %e %T`, the day padded with a space), or an RFC
/// 3339 time (`2026-12-04T14:00:00.123+00:00`), with the space after it.
fn skip_time(data: &[u8]) -> &[u8] {
    let after = |len: usize| match data.get(len..) {
        Some([b' ', rest @ ..]) => Some(rest),
        Some([]) => Some(&[][..]),
        _ => None,
    };
    if let Some(head) = data.get(..15)
        && rfc3164_time(head)
        && let Some(rest) = after(15)
    {
        return rest;
    }
    if let Some(len) = rfc3339_time(data)
        && let Some(rest) = after(len)
    {
        return rest;
    }
    data
}

/// `Mmm dd hh:mm:ss`: a month name, a day of one or two digits (space
/// padded), a time.
fn rfc3164_time(head: &[u8]) -> bool {
    let &[
        m1,
        m2,
        m3,
        b' ',
        d1,
        d2,
        b' ',
        h1,
        h2,
        b':',
        n1,
        n2,
        b':',
        s1,
        s2,
    ] = head
    else {
        return false;
    };
    MONTHS.contains(&&[m1, m2, m3])
        && (d1 == b' ' || d1.is_ascii_digit())
        && [d2, h1, h2, n1, n2, s1, s2].iter().all(u8::is_ascii_digit)
}

/// An RFC 3339 time at the start of `data` (`YYYY-MM-DDT` then more of
/// its characters: digits, `:`, `.`, `+`, `-`, `Z`; at most 40 bytes in
/// all): its length.
fn rfc3339_time(data: &[u8]) -> Option<usize> {
    let head = data.get(..11)?;
    let shape = head.iter().enumerate().all(|(i, &b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        _ => b.is_ascii_digit(),
    });
    let len = data
        .iter()
        .take(41)
        .take_while(|&&b| {
            b.is_ascii_digit() || matches!(b, b'-' | b':' | b'.' | b'+' | b'T' | b'Z')
        })
        .count();
    (shape && len <= 40).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(
        tag: &'static str,
        pid: Option<u32>,
        message: &'static str,
    ) -> (String, Option<u32>, String) {
        (tag.to_string(), pid, message.to_string())
    }

    fn read(datagram: &[u8]) -> (String, Option<u32>, String) {
        let parsed = parse(datagram);
        (
            String::from_utf8_lossy(parsed.tag).into_owned(),
            parsed.pid,
            String::from_utf8_lossy(parsed.message).into_owned(),
        )
    }

    fn priority_of(datagram: &[u8]) -> (u8, u8) {
        let parsed = parse(datagram);
        (parsed.facility, parsed.severity)
    }

    #[test]
    fn glibc_and_haproxy_rfc3164() {
        // glibc syslog(3): `<PRI>%h %e %T TAG[PID]: MSG`.
        let glibc = b"<134>Dec  4 19:00:00 haproxy[12]: Server be/s1 is DOWN";
        assert_eq!(read(glibc), p("haproxy", Some(12), "Server be/s1 is DOWN"));
        assert_eq!(priority_of(glibc), (16, 6), "local0.info");
        // Without a pid (openlog without LOG_PID).
        assert_eq!(
            read(b"<78>Dec 14 03:05:01 CRON: (root) CMD (run-parts)"),
            p("CRON", None, "(root) CMD (run-parts)")
        );
        assert_eq!(priority_of(b"<78>Dec 14 03:05:01 CRON: x"), (9, 6));
        // Tags with slashes and dots, as postfix writes them.
        assert_eq!(
            read(b"<22>Jan  1 00:00:00 postfix/smtpd[4711]: connect from x"),
            p("postfix/smtpd", Some(4711), "connect from x")
        );
        // An empty message, a message that starts with a space.
        assert_eq!(read(b"<13>Dec  4 19:00:00 app:"), p("app", None, ""));
        assert_eq!(
            read(b"<13>Dec  4 19:00:00 app:  two"),
            p("app", None, " two")
        );
    }

    #[test]
    fn rfc3164_with_a_hostname_or_another_time() {
        // `logger --rfc3164`: a hostname after the time.
        assert_eq!(
            read(b"<13>Dec  4 19:00:00 web-1.local root[99]: hello"),
            p("root", Some(99), "hello")
        );
        // An RFC 3339 time, as rsyslog-style senders write it.
        assert_eq!(
            read(b"<13>2026-12-04T19:00:00.123456+00:00 host app: hi"),
            p("app", None, "hi")
        );
        // No time at all.
        assert_eq!(read(b"<13>app[7]: hi"), p("app", Some(7), "hi"));
        // A first word is a hostname only when a tag follows it.
        assert_eq!(
            read(b"<13>Dec  4 19:00:00 Server be/s1 is DOWN"),
            p("", None, "Server be/s1 is DOWN")
        );
    }

    #[test]
    fn without_a_priority() {
        assert_eq!(read(b"haproxy[12]: up"), p("haproxy", Some(12), "up"));
        assert_eq!(priority_of(b"haproxy[12]: up"), (1, 5), "user.notice");
        assert_eq!(
            read(b"Dec  4 19:00:00 app: hi"),
            p("app", None, "hi"),
            "a time without <PRI>"
        );
        assert_eq!(read(b"just words"), p("", None, "just words"));
    }

    #[test]
    fn what_is_not_a_header_stays_in_the_message() {
        // Not a tag: a URL's colon, a pid that is not a number, a tag too long.
        assert_eq!(
            read(b"<14>http://x is down\0"),
            p("", None, "http://x is down")
        );
        assert_eq!(
            read(b"<14>app[worker-1]: hi"),
            p("", None, "app[worker-1]: hi")
        );
        assert_eq!(
            read(b"<14>app[99999999999]: hi"),
            p("", None, "app[99999999999]: hi")
        );
        let long = format!("<14>{}: hi", "t".repeat(MAX_TAG + 1));
        assert_eq!(read(long.as_bytes()).2, long[4..]);
        let longest = format!("<14>{}: hi", "t".repeat(MAX_TAG));
        assert_eq!(read(longest.as_bytes()).0, "t".repeat(MAX_TAG));
        // Bad priorities are message text, read as user.notice.
        for bad in [
            &b"<192>x: y"[..],
            b"<>x: y",
            b"<1234>x: y",
            b"<12x: y",
            b"<-1>x: y",
        ] {
            assert_eq!(
                priority_of(bad),
                (1, 5),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(read(bad).2, String::from_utf8_lossy(bad), "kept whole");
        }
        assert_eq!(priority_of(b"<191>x"), (23, 7), "local7.debug");
        assert_eq!(priority_of(b"<0>x"), (0, 0), "kern.emerg");
        assert_eq!(priority_of(b"<007>x"), (0, 7));
    }

    #[test]
    fn empty_garbage_and_trailing_breaks() {
        assert_eq!(read(b""), p("", None, ""));
        assert_eq!(read(b"\0\n\r\n"), p("", None, ""));
        assert_eq!(read(b"<13>"), p("", None, ""));
        assert_eq!(read(b"<13>app: hi\n"), p("app", None, "hi"));
        assert_eq!(read(b"<13>app: hi\r\n\0"), p("app", None, "hi"));
        let garbage = b"\xff\xfe<\x00>[]:\x1b[2J\n:";
        let parsed = parse(garbage);
        assert_eq!(parsed.message, &garbage[..]);
        assert_eq!((parsed.tag, parsed.pid), (&b""[..], None));
        // Control characters are the caller's to escape: kept as sent.
        assert_eq!(read(b"<13>app: a\nb\x1b"), p("app", None, "a\nb\x1b"));
    }

    #[test]
    fn rfc5424_with_and_without_structured_data() {
        let nil = b"<165>1 2026-12-04T19:00:00.003Z host app 1234 ID47 - hello world";
        assert_eq!(read(nil), p("app", Some(1234), "hello world"));
        assert_eq!(priority_of(nil), (20, 5), "local4.notice");
        assert_eq!(parse(nil).structured_data, b"");
        // logger --rfc5424: timeQuality structured data, no procid.
        let logger = br#"<13>1 2026-12-04T19:00:00.123456+00:00 box root - - [timeQuality tzKnown="1" isSynced="1" syncAccuracy="96000"] hi there"#;
        assert_eq!(read(logger), p("root", None, "hi there"));
        assert_eq!(
            parse(logger).structured_data,
            br#"[timeQuality tzKnown="1" isSynced="1" syncAccuracy="96000"]"#
        );
        // Several elements, escapes inside values (`\"`, `\]`, `\\`).
        let escaped = br#"<13>1 - - app - - [a@1 k="v \"q\" \] \\"][b@2] msg"#;
        let parsed = parse(escaped);
        assert_eq!(parsed.structured_data, br#"[a@1 k="v \"q\" \] \\"][b@2]"#);
        assert_eq!(parsed.message, b"msg");
        // Everything nil, no message.
        assert_eq!(read(b"<13>1 - - - - - -"), p("", None, ""));
        // A non-numeric procid is no pid.
        assert_eq!(read(b"<13>1 - - app worker-1 - - m"), p("app", None, "m"));
    }

    #[test]
    fn rfc5424_bom_and_broken_headers() {
        let bom = b"<13>1 - - app 7 - - \xEF\xBB\xBFh\xC3\xA9";
        assert_eq!(read(bom), p("app", Some(7), "hé"));
        // A header that breaks off is RFC 3164 text: kept whole.
        for broken in [
            &b"<13>1 - - app 7 - [unclosed k=\"v\" msg"[..],
            b"<13>1 - - app 7 - [id k=v] msg",
            b"<13>1 - - app 7 - [id k=\"v\"]msg",
            b"<13>1 - - app 7",
            b"<13>1  - app 7 - - m",
            b"<13>1 - - app 7 - x m",
            b"<13>1 - - app 7 - [] m",
        ] {
            let parsed = parse(broken);
            assert_eq!(
                parsed.message,
                &broken[4..],
                "{:?}",
                String::from_utf8_lossy(broken)
            );
            assert_eq!((parsed.facility, parsed.severity), (1, 5));
        }
        // A version other than 1 is not RFC 5424.
        assert_eq!(read(b"<13>2 - - app 7 - - m").2, "2 - - app 7 - - m");
    }

    #[test]
    fn oversized_fields_are_not_headers() {
        let host = "h".repeat(256);
        let text = format!("<13>1 - {host} app 7 - - m");
        assert_eq!(read(text.as_bytes()).2, text[4..]);
        let app = "a".repeat(MAX_TAG + 1);
        let text = format!("<13>1 - - {app} 7 - - m");
        assert_eq!(read(text.as_bytes()).2, text[4..]);
        // A long SD value, a long message: one pass each.
        let value = "v".repeat(100_000);
        let text = format!("<13>1 - - app 7 - [id k=\"{value}\"] m");
        assert_eq!(read(text.as_bytes()), p("app", Some(7), "m"));
        let message = "m".repeat(100_000);
        let text = format!("<13>Dec  4 19:00:00 app: {message}");
        assert_eq!(read(text.as_bytes()).2, message);
    }
}
