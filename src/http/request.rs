//! The request path without sockets: a head framed as it arrives
//! (`Incoming`, each byte looked at once, however it trickles in), parsed
//! by `httparse` once whole, routed to a page or refused; and the answer's
//! bytes (`response`). `exchange` runs the same steps in one go, for the
//! `http_request` fuzz target.
//!
//! What it must never do: read or write a socket, or keep more than
//! `MAX_HEAD` bytes of a head.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::log::debug;

use super::pages::{OutputCounts, Page, Reply, page_reply};
use super::{IO_TIMEOUT, MAX_HEAD, MAX_HEADERS};
use crate::protocol::Response;
use crate::text::http_date;

/// A request head as it arrives, read by read: `push` frames it, and parses
/// it once whole.
#[derive(Debug, Default)]
pub(super) struct Incoming {
    /// The head so far, blank lines before it left out; never more than
    /// `MAX_HEAD` bytes.
    head: Vec<u8>,
    /// Every byte received, blank lines and all.
    got: usize,
}

impl Incoming {
    /// Add what one read brought. `Some` once the head is whole (or too
    /// long): what the request gets; `None` while more is needed.
    pub(super) fn push(&mut self, data: &[u8]) -> Option<Received> {
        self.got = self.got.saturating_add(data.len());
        let data = if self.head.is_empty() {
            // Blank lines before the request line are skipped (RFC 9112 §2.2).
            let start = data.iter().position(|&b| b != b'\r' && b != b'\n')?;
            data.get(start..).unwrap_or_default()
        } else {
            data
        };
        let from = self.head.len();
        let room = MAX_HEAD.saturating_sub(from);
        let taken = data.get(..room).unwrap_or(data);
        self.head.extend_from_slice(taken);
        if let Some(end) = head_end(&self.head, from) {
            // Bytes past the head: a body, or a second request.
            let more = end < self.head.len() || taken.len() < data.len();
            let head = self.head.get(..end).unwrap_or_default();
            return Some(received(head, more));
        }
        (self.head.len() >= MAX_HEAD).then(|| Received {
            asked: Asked::Now(Reply::text(
                431,
                format!("request head longer than {MAX_HEAD} bytes\n"),
            )),
            head_only: false,
            unread: true,
        })
    }

    /// The answer when the head is not whole in time: 408 if anything came
    /// at all; a client that sent nothing is closed without a word.
    pub(super) fn timed_out(&self) -> Option<Reply> {
        (self.got > 0).then(|| {
            Reply::text(
                408,
                format!("request head not complete within {IO_TIMEOUT:?}\n"),
            )
        })
    }
}

/// Where the head in `buf` ends: just past its first empty line (a line end
/// followed by `\n` or `\r\n`; a bare LF counts as a line end, as RFC 9112
/// §2.2 allows). Only line ends at `from` or later are looked for: bytes
/// before it were looked at already. `buf` does not start with a blank line.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf.get(i) != Some(&b'\n') {
            return None;
        }
        let before = i.checked_sub(1).and_then(|j| buf.get(j));
        let two_before = i.checked_sub(2).and_then(|j| buf.get(j));
        match (two_before, before) {
            (_, Some(b'\n')) | (Some(b'\n'), Some(b'\r')) => Some(i + 1),
            _ => None,
        }
    })
}

/// What a whole head gets.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Received {
    pub(super) asked: Asked,
    /// A HEAD request: the answer has no body.
    pub(super) head_only: bool,
    /// The client sent (or says it sends) more than the head: drain it
    /// before closing (see `LINGER`).
    pub(super) unread: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Asked {
    /// A page, rendered from the loop's status.
    Page(Page),
    /// Refused, or not found: answered at once.
    Now(Reply),
}

/// What the whole head `head` (ending with its empty line) asks for;
/// `more`: bytes came after it.
fn received(head: &[u8], more: bool) -> Received {
    let request = match parse(head) {
        Ok(request) => request,
        Err(why) => {
            debug!(code = why.code, why = why.body, "http request refused");
            return Received {
                asked: Asked::Now(why),
                head_only: false,
                unread: true,
            };
        }
    };
    debug!(
        method = request.method,
        target = request.target,
        "http request"
    );
    let page = match path(request.target) {
        "/healthz" => Some(Page::Health),
        "/readyz" => Some(Page::Ready),
        "/metrics" => Some(Page::Metrics),
        _ => None,
    };
    let asked = match (page, matches!(request.method, "GET" | "HEAD")) {
        (None, _) => Asked::Now(Reply::text(
            404,
            "not found: try /healthz, /readyz or /metrics\n",
        )),
        (Some(_), false) => Asked::Now(Reply::text(405, "method not allowed: use GET\n")),
        (Some(page), true) => Asked::Page(page),
    };
    Received {
        asked,
        head_only: request.method == "HEAD",
        unread: request.body || more,
    }
}

/// The parts of a request this server looks at.
#[derive(Debug, PartialEq, Eq)]
struct HttpRequest<'a> {
    method: &'a str,
    target: &'a str,
    /// `Content-Length` (not 0) or `Transfer-Encoding` is present: a body
    /// follows, which is not read.
    body: bool,
}

/// The request line and header fields of the whole head `head`, parsed by
/// `httparse` (RFC 9112 §3, §5: no space before a field's colon, no
/// obs-fold), or the 400, 431 or 505 answer.
fn parse(head: &[u8]) -> Result<HttpRequest<'_>, Reply> {
    let bad_line = || Reply::text(400, "bad request: malformed request line\n");
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // Cannot be: `head` ends with an empty line.
        Ok(httparse::Status::Partial) => return Err(bad_line()),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reply::text(
                431,
                format!("more than {MAX_HEADERS} header fields\n"),
            ));
        }
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(Reply::text(400, "bad request: malformed header field\n"));
        }
        Err(httparse::Error::Version) if names_a_version(head) => {
            return Err(Reply::text(
                505,
                "HTTP version not supported: use HTTP/1.1\n",
            ));
        }
        Err(_) => return Err(bad_line()),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(bad_line());
    };
    // httparse lets UTF-8 through; a request target is ASCII (RFC 3986).
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad_line());
    }
    let body = request.headers.iter().any(|field| {
        field.name.eq_ignore_ascii_case("transfer-encoding")
            || (field.name.eq_ignore_ascii_case("content-length")
                && field.value.trim_ascii() != b"0")
    });
    Ok(HttpRequest {
        method,
        target,
        body,
    })
}

/// Whether the request line's third word is a version, `HTTP/` digit `.`
/// digit, one that httparse refused (not 1.0 or 1.1): 505 rather than 400.
fn names_a_version(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    matches!(
        line.split(|&b| b == b' ').nth(2),
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit()
    )
}

/// The request path without sockets, step by step as the server takes it:
/// `reads` are what a new connection's client sent, read by read; the
/// answer is rendered from `status` (the loop's answer to `status`, or why
/// there is none, e.g. "corral busy"). `Some`: the bytes the client gets
/// (nothing more is sent on the connection); `None`: the head is not whole,
/// the server waits for more. For the `http_request` fuzz target.
pub fn exchange<'a>(
    reads: impl IntoIterator<Item = &'a [u8]>,
    status: &Result<Response, String>,
    now: SystemTime,
) -> Option<Vec<u8>> {
    let mut incoming = Incoming::default();
    let received = reads.into_iter().find_map(|data| incoming.push(data))?;
    let reply = match received.asked {
        Asked::Page(page) => page_reply(page, status, &OutputCounts::default()),
        Asked::Now(reply) => reply,
    };
    Some(response(&reply, received.head_only, now))
}

/// The path of a request target: origin form (`/metrics?x`) or absolute
/// form (`http://host/metrics`), without the query.
fn path(target: &str) -> &str {
    let scheme = ["http://", "https://"].into_iter().find(|scheme| {
        target
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    });
    let path = match scheme {
        Some(scheme) => {
            let rest = target.get(scheme.len()..).unwrap_or_default();
            rest.find('/').and_then(|at| rest.get(at..)).unwrap_or("/")
        }
        None => target,
    };
    path.split(['?', '#']).next().unwrap_or_default()
}

/// The answer as bytes: status line, header fields, and the body unless
/// it answers a HEAD.
pub(super) fn response(reply: &Reply, head_only: bool, now: SystemTime) -> Vec<u8> {
    let mut out = String::with_capacity(200 + reply.body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n\
         Date: {}\r\n\
         Content-Type: {}\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n",
        reply.code,
        reason(reply.code),
        http_date(now),
        reply.content_type,
        reply.body.len(),
    );
    if reply.code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&reply.body);
    }
    out.into_bytes()
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_head_ends_at_its_first_empty_line() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n\n", 0), Some(17));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(head_end(b"", 0), None);
        // Only line ends at `from` or later, looking back at what is before.
        let head = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(head_end(head, 17), Some(18));
        assert_eq!(head_end(head, 18), None);
    }

    /// `push` of each read in turn: what the first whole head gets.
    fn pushed(reads: &[&[u8]]) -> Option<Received> {
        let mut incoming = Incoming::default();
        reads.iter().find_map(|data| incoming.push(data))
    }

    #[test]
    fn a_head_is_framed_the_same_however_it_arrives() {
        let page = |page, head_only, unread| {
            Some(Received {
                asked: Asked::Page(page),
                head_only,
                unread,
            })
        };
        for (request, expected) in [
            (
                &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                page(Page::Health, false, false),
            ),
            // Empty lines before the request line are skipped (RFC 9112 2.2).
            (
                b"\r\n\r\nHEAD /readyz HTTP/1.0\n\n",
                page(Page::Ready, true, false),
            ),
            // A body announced: drained.
            (
                b"GET /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
                page(Page::Metrics, false, true),
            ),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", None),
            (b"\r\n\r\n\n", None),
            (b"", None),
        ] {
            assert_eq!(pushed(&[request]), expected, "{request:?}");
            let bytes: Vec<&[u8]> = request.chunks(1).collect();
            assert_eq!(pushed(&bytes), expected, "{request:?} byte by byte");
            let halves: Vec<&[u8]> = request.chunks(request.len() / 2 + 1).collect();
            assert_eq!(pushed(&halves), expected, "{request:?} in two");
        }
        // Bytes read with the head (a body, a second request): drained.
        assert_eq!(
            pushed(&[b"GET /metrics HTTP/1.1\r\n\r\nGET /"]),
            page(Page::Metrics, false, true)
        );
        // 431 as soon as MAX_HEAD bytes came without an end, and not before.
        let mut incoming = Incoming::default();
        assert_eq!(incoming.push(b"GET / HTTP/1.1\r\nX: "), None);
        let pad = vec![b'a'; MAX_HEAD - 20];
        assert_eq!(incoming.push(&pad), None);
        let refused = incoming.push(b"a");
        assert!(
            matches!(&refused, Some(Received { asked: Asked::Now(r), unread: true, .. }) if r.code == 431),
            "{refused:?}"
        );
    }

    #[test]
    fn a_head_not_whole_in_time_is_408_unless_nothing_came() {
        let mut incoming = Incoming::default();
        assert_eq!(incoming.timed_out(), None);
        assert_eq!(incoming.push(b"\r\n"), None);
        assert_eq!(incoming.timed_out().map(|r| r.code), Some(408));
    }

    fn parsed(head: &str) -> Result<HttpRequest<'_>, (u16, String)> {
        parse(head.as_bytes()).map_err(|reply| (reply.code, reply.body))
    }

    #[test]
    fn request_lines_and_header_fields_are_parsed_or_refused() {
        assert_eq!(
            parsed("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"),
            Ok(HttpRequest {
                method: "GET",
                target: "/metrics?x=1",
                body: false
            })
        );
        assert_eq!(
            parsed("\r\nPOST /healthz HTTP/1.0\r\ncontent-length : 3\r\n\r\n")
                .map_err(|(code, _)| code),
            Err(400),
            "space before the colon"
        );
        for (head, body) in [
            ("POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\n", true),
            ("POST /healthz HTTP/1.1\r\ncontent-length:0\r\n\r\n", false),
            (
                "POST /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                true,
            ),
        ] {
            assert_eq!(parsed(head).map(|r| r.body), Ok(body), "{head:?}");
        }
        let bad_line = Err((400, "bad request: malformed request line\n".to_string()));
        for head in [
            "GARBAGE\r\n\r\n",
            "GET /healthz\r\n\r\n",
            "GET  /healthz HTTP/1.1\r\n\r\n",
            "GET /healthz HTTP/1.1 x\r\n\r\n",
            "GET /a\tb HTTP/1.1\r\n\r\n",
            "GET /healthz FTP/1.1\r\n\r\n",
            "GET /healthz HTTP/1\r\n\r\n",
            "G(T /healthz HTTP/1.1\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parsed(head), bad_line, "{head:?}");
        }
        assert_eq!(
            parse(b"GET /\xff HTTP/1.1\r\n\r\n").map_err(|r| r.code),
            Err(400)
        );
        // httparse knows 1.0 and 1.1 only: any other version is 505.
        for head in [
            "GET /healthz HTTP/2.0\r\n\r\n",
            "GET /healthz HTTP/1.2\r\n\r\n",
            "GET /healthz HTTP/0.9\r\n\r\n",
        ] {
            assert_eq!(parsed(head).map_err(|(code, _)| code), Err(505), "{head:?}");
        }
        let fields = "X: y\r\n".repeat(MAX_HEADERS);
        assert!(parsed(&format!("GET / HTTP/1.1\r\n{fields}\r\n")).is_ok());
        assert_eq!(
            parsed(&format!("GET / HTTP/1.1\r\n{fields}X: y\r\n\r\n")),
            Err((431, format!("more than {MAX_HEADERS} header fields\n")))
        );
        for head in [
            "GET /healthz HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /healthz HTTP/1.1\r\n: empty name\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        ] {
            assert_eq!(
                parsed(head),
                Err((400, "bad request: malformed header field\n".to_string())),
                "{head:?}"
            );
        }
        // Field values are not looked at: obs-text passes.
        assert!(parse(b"GET / HTTP/1.1\r\nX: \xe9t\xe9\r\n\r\n").is_ok());
    }

    #[test]
    fn the_path_is_the_target_without_query_or_origin() {
        assert_eq!(path("/metrics"), "/metrics");
        assert_eq!(path("/healthz?verbose=1#x"), "/healthz");
        assert_eq!(path("http://example:9100/readyz?x"), "/readyz");
        assert_eq!(path("HTTPS://example"), "/");
        assert_eq!(path("*"), "*");
    }

    #[test]
    fn answers_have_their_header_fields_and_head_has_no_body() {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let get = String::from_utf8(response(&Reply::text(200, "ok\n"), false, at));
        let expected = "HTTP/1.1 200 OK\r\n\
                        Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                        Content-Type: text/plain; charset=utf-8\r\n\
                        Content-Length: 3\r\n\
                        Connection: close\r\n\r\n";
        assert_eq!(get.as_deref(), Ok(format!("{expected}ok\n").as_str()));
        let head = String::from_utf8(response(&Reply::text(200, "ok\n"), true, at));
        assert_eq!(head.as_deref(), Ok(expected));
        let refused = String::from_utf8(response(&Reply::text(405, "no\n"), false, at));
        assert!(
            refused
                .as_deref()
                .is_ok_and(|r| r.contains("\r\nAllow: GET, HEAD\r\n")),
            "{refused:?}"
        );
    }
}
