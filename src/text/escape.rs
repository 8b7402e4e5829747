//! Control characters shown escaped, so that nothing a service or a server
//! sent can forge a line or steer the terminal of whoever reads it: in
//! `ctl`'s output, in s6-svc's messages, in corral's own log lines.
//!
//! What it must never do: pass a control character that its `Form` does
//! not keep, or change any other character.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Where the text goes, which decides what is kept and how the rest is
/// written. Every control character (C0 with its line breaks and tabs, DEL,
/// C1: `char::is_control`) is escaped unless the form keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One line of a terminal (a table cell, a one-line field): a line
    /// break in it would forge a line. `\n`, `\t`, `\r` by name, the
    /// others as `\x1b`.
    Line,
    /// Free text, such as an error that lists one problem per line: as
    /// `Line`, but line breaks are kept.
    Text,
    /// JSON for a terminal: serde_json escapes C0 in strings, but passes
    /// DEL and C1 through; they become `\u007f`, `\u009b`, the same JSON
    /// value. (They can only be inside strings: JSON's own syntax is
    /// printable ASCII, and the pretty printer's line breaks are kept.)
    Json,
    /// A field of one of corral's log lines: tabs kept, every other control
    /// character as `\x0a`.
    Log,
}

impl Form {
    fn keeps(self, c: char) -> bool {
        !c.is_control()
            || match self {
                Form::Line => false,
                Form::Text | Form::Json => c == '\n',
                Form::Log => c == '\t',
            }
    }

    fn write_escaped(self, c: char, out: &mut (impl fmt::Write + ?Sized)) -> fmt::Result {
        match (self, c) {
            (Form::Json, _) => write!(out, "\\u{:04x}", u32::from(c)),
            (Form::Line | Form::Text, '\n') => out.write_str("\\n"),
            (Form::Line | Form::Text, '\t') => out.write_str("\\t"),
            (Form::Line | Form::Text, '\r') => out.write_str("\\r"),
            // Every control character is below U+00A0: two hex digits.
            _ => write!(out, "\\x{:02x}", u32::from(c)),
        }
    }
}

/// `text` with its control characters escaped for `form`; borrowed when
/// there is none.
pub fn escape(text: &str, form: Form) -> Cow<'_, str> {
    if text.chars().all(|c| form.keeps(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let _ = Escaped::new(&mut out, form).write_str(text);
    Cow::Owned(out)
}

/// A `fmt::Write` that escapes control characters on their way in, for
/// text formatted straight into a buffer (`write!(Escaped::new(..), "{x:?}")`).
pub struct Escaped<'a, W: fmt::Write + ?Sized> {
    out: &'a mut W,
    form: Form,
}

impl<'a, W: fmt::Write + ?Sized> Escaped<'a, W> {
    pub fn new(out: &'a mut W, form: Form) -> Escaped<'a, W> {
        Escaped { out, form }
    }
}

impl<W: fmt::Write + ?Sized> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            if self.form.keeps(c) {
                self.out.write_char(c)?;
            } else {
                self.form.write_escaped(c, self.out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_a_server_are_shown_escaped() {
        let text = "a\x1b]0;owned\x07b\tc\r\nd\x7fe\u{9b}31m\u{a0}é";
        assert_eq!(
            escape(text, Form::Line),
            "a\\x1b]0;owned\\x07b\\tc\\r\\nd\\x7fe\\x9b31m\u{a0}é"
        );
        assert_eq!(
            escape(text, Form::Text),
            "a\\x1b]0;owned\\x07b\\tc\\r\nd\\x7fe\\x9b31m\u{a0}é"
        );
        assert!(matches!(
            escape("web: stopped", Form::Line),
            Cow::Borrowed(_)
        ));
        // JSON: serde_json escapes C0; DEL and C1 become JSON escapes too,
        // and the text still reads as the same value.
        let json = serde_json::to_string_pretty(&serde_json::json!({ "s": text })).expect("json");
        let shown = escape(&json, Form::Json);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown}"
        );
        assert!(shown.contains(r"\u001b]0;owned\u0007") && shown.contains(r"\u007fe\u009b31m"));
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back["s"], text);
    }

    #[test]
    fn log_fields_keep_tabs_and_show_the_rest_in_hex() {
        assert_eq!(
            escape("bad\x1b[2J\nWARN\tforged\r\u{9b}", Form::Log),
            "bad\\x1b[2J\\x0aWARN\tforged\\x0d\\x9b"
        );
        let mut out = String::new();
        let _ = write!(Escaped::new(&mut out, Form::Log), "{:?}", "a\nb");
        // Debug already escaped the newline; nothing is left to escape.
        assert_eq!(out, "\"a\\nb\"");
    }
}
