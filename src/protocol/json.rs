//! A pull reader of one JSON text: the clients read an answer straight into
//! `Response`, field by field, with this instead of serde's derive, which
//! took 17 KB more of the binary and, for `ctl status` of 1000 services,
//! 17.4 M instructions where this takes 15.6 M (callgrind).
//!
//! It accepts what serde_json accepts for the same types, and reads the
//! same values from it: whitespace, escapes (surrogate pairs, no lone
//! surrogate in a string that is kept), integers without a fraction or
//! exponent in range of their type (`-0` is a float to serde_json), `null`
//! for an absent option, values of unknown keys skipped but checked, nothing
//! after the value. Not a struct written as an array, which serde's derive
//! also takes and no server writes. The unit tests and the fuzz target
//! `control_protocol` compare the two.
//! Skipping is a loop over a stack of brackets, so no depth recurses.
//!
//! What it must never do: panic on any input, or import corral.

use std::borrow::Cow;

pub type Result<T> = std::result::Result<T, String>;

pub struct Reader<'a> {
    source: &'a str,
    /// `source`'s bytes.
    text: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Reader<'a> {
        Reader {
            source: text,
            text: text.as_bytes(),
            at: 0,
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.text.get(self.at) {
            if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    /// `what`, with where and what is there: `expected a boolean at line 1
    /// column 7: "yes"}` (the caller escapes it for a terminal).
    pub fn error<T>(&self, what: &str) -> Result<T> {
        let before = self.text.get(..self.at).unwrap_or(self.text);
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        let rest = self.source.get(self.at..).unwrap_or_default();
        let end = rest.char_indices().nth(32).map_or(rest.len(), |(i, _)| i);
        match rest.get(..end).unwrap_or_default() {
            "" => Err(format!("{what} at line {line} column {column}")),
            there => Err(format!("{what} at line {line} column {column}: {there}")),
        }
    }

    /// Take `byte` (after whitespace), or fail with `what`.
    fn take(&mut self, byte: u8, what: &str) -> Result<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            self.error(what)
        }
    }

    /// The end of the text: only whitespace may follow the value.
    pub fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.error("trailing characters"),
        }
    }

    /// An object: `field` is called with each key, the reader at its value,
    /// and must read or `skip` that value.
    pub fn object(&mut self, mut field: impl FnMut(&mut Self, &str) -> Result<()>) -> Result<()> {
        self.list(*b"{}", |r| {
            if r.peek() != Some(b'"') {
                return r.error("expected a key");
            }
            let key = r.text_of_string()?;
            r.take(b':', "expected ':'")?;
            field(r, &key)
        })
    }

    /// An array: `item` is called at each element and must read it.
    pub fn array(&mut self, item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.list(*b"[]", item)
    }

    /// `open`, then `member` for each one, separated by commas (none
    /// after the last), then `close`.
    fn list(
        &mut self,
        [open, close]: [u8; 2],
        mut member: impl FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let (expected, after) = if open == b'{' {
            ("expected an object", "expected ',' or '}'")
        } else {
            ("expected an array", "expected ',' or ']'")
        };
        self.take(open, expected)?;
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(());
        }
        loop {
            member(self)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b) if b == close => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return self.error(after),
            }
        }
    }

    /// An array of strings.
    pub fn strings(&mut self) -> Result<Vec<String>> {
        let mut all = Vec::new();
        self.array(|r| r.string().map(|s| all.push(s)))?;
        Ok(all)
    }

    /// `None` for `null`, else what `read` reads.
    pub fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        if self.peek() == Some(b'n') {
            self.word(b"null")?;
            Ok(None)
        } else {
            read(self).map(Some)
        }
    }

    pub fn bool(&mut self) -> Result<bool> {
        match self.peek() {
            Some(b't') => self.word(b"true").map(|()| true),
            Some(b'f') => self.word(b"false").map(|()| false),
            _ => self.error("expected a boolean"),
        }
    }

    /// An integer in range of `T`: no fraction, no exponent (serde_json reads
    /// those, and `-0`, as floats, which no integer field takes).
    pub fn integer<T: TryFrom<i128>>(&mut self) -> Result<T> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let Some(magnitude) = self.digits()? else {
            return self.error("expected an integer");
        };
        if matches!(self.text.get(self.at), Some(b'.' | b'e' | b'E')) {
            self.at = start;
            return self.error("expected an integer, not a float");
        }
        let value = if negative {
            -i128::from(magnitude)
        } else {
            i128::from(magnitude)
        };
        // serde_json's integers: u64, and i64 below zero.
        let fits = if negative {
            magnitude != 0 && magnitude <= 1 << 63
        } else {
            true
        };
        match T::try_from(value) {
            Ok(value) if fits => Ok(value),
            _ => {
                self.at = start;
                self.error("integer out of range")
            }
        }
    }

    /// A number's integer part: `0` or `[1-9][0-9]*`, at most `u64::MAX`
    /// (serde_json makes a longer one a float). `None` before anything else.
    fn digits(&mut self) -> Result<Option<u64>> {
        let first = match self.text.get(self.at) {
            Some(&b @ b'0'..=b'9') => b,
            _ => return Ok(None),
        };
        self.at += 1;
        let mut n = u64::from(first - b'0');
        while let Some(&b @ b'0'..=b'9') = self.text.get(self.at) {
            if first == b'0' {
                return self.error("invalid number");
            }
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
            {
                Some(n) => n,
                None => return self.error("integer out of range"),
            };
            self.at += 1;
        }
        Ok(Some(n))
    }

    /// A string, its escapes decoded.
    pub fn string(&mut self) -> Result<String> {
        if self.peek() != Some(b'"') {
            return self.error("expected a string");
        }
        self.text_of_string().map(Cow::into_owned)
    }

    /// The string at the quote under the reader: borrowed unless escaped.
    /// Its runs between escapes are cut at ASCII bytes of a `str`, so they
    /// are UTF-8 without a check.
    fn text_of_string(&mut self) -> Result<Cow<'a, str>> {
        self.at += 1;
        let mut owned: Option<String> = None;
        loop {
            let run = self.at;
            let stop = self
                .text
                .get(run..)
                .unwrap_or_default()
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .map_or(self.text.len(), |n| run + n);
            self.at = stop;
            let plain = self.source.get(run..stop).unwrap_or_default();
            match self.text.get(stop) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(plain),
                        Some(mut text) => {
                            text.push_str(plain);
                            Cow::Owned(text)
                        }
                    });
                }
                Some(b'\\') => {
                    let text = owned.get_or_insert_with(String::new);
                    text.push_str(plain);
                    self.at += 1;
                    let c = self.escape()?;
                    text.push(c);
                }
                Some(_) => return self.error("control character in a string"),
                None => return self.error("end of text in a string"),
            }
        }
    }

    /// The char of an escape, the reader after its backslash.
    fn escape(&mut self) -> Result<char> {
        let c = match self.text.get(self.at) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.at += 1;
                let high = self.hex4()?;
                let code = match high {
                    0xDC00..=0xDFFF => return self.error("lone surrogate"),
                    0xD800..=0xDBFF => {
                        if self.text.get(self.at..self.at + 2) != Some(b"\\u") {
                            return self.error("lone surrogate");
                        }
                        self.at += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return self.error("lone surrogate");
                        }
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    }
                    _ => high,
                };
                return char::from_u32(code).map_or_else(|| self.error("invalid escape"), Ok);
            }
            _ => return self.error("invalid escape"),
        };
        self.at += 1;
        Ok(c)
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Result<u32> {
        let mut n = 0;
        for _ in 0..4 {
            let digit = self
                .text
                .get(self.at)
                .and_then(|&b| char::from(b).to_digit(16));
            match digit {
                Some(d) => n = n * 16 + d,
                None => return self.error("invalid \\u escape"),
            }
            self.at += 1;
        }
        Ok(n)
    }

    /// `word` exactly (`null`, `true`, `false`).
    fn word(&mut self, word: &[u8]) -> Result<()> {
        if self.text.get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            Ok(())
        } else {
            self.error("expected a value")
        }
    }

    /// Any one value, checked as serde_json checks what it ignores: escapes
    /// well formed (a lone surrogate passes), numbers well formed (any
    /// size), brackets matched, to any depth without recursion.
    pub fn skip(&mut self) -> Result<()> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value.
            match self.peek() {
                Some(b'n') => self.word(b"null")?,
                Some(b't') => self.word(b"true")?,
                Some(b'f') => self.word(b"false")?,
                Some(b'-' | b'0'..=b'9') => self.skip_number()?,
                Some(b'"') => self.skip_string()?,
                Some(b @ (b'[' | b'{')) => {
                    self.at += 1;
                    let close = if b == b'[' { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.at += 1;
                    } else {
                        open.push(close);
                        if close == b'}' {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                _ => return self.error("expected a value"),
            }
            // After a value: a comma (and a key in an object) or closers.
            loop {
                let Some(&close) = open.last() else {
                    return Ok(());
                };
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if close == b'}' {
                            self.skip_key()?;
                        }
                        break;
                    }
                    Some(b) if b == close => {
                        self.at += 1;
                        open.pop();
                    }
                    _ => return self.error("expected ',' or a closing bracket"),
                }
            }
        }
    }

    /// A key and its colon, inside an object being skipped.
    fn skip_key(&mut self) -> Result<()> {
        if self.peek() != Some(b'"') {
            return self.error("expected a key");
        }
        self.skip_string()?;
        self.take(b':', "expected ':'")
    }

    fn skip_string(&mut self) -> Result<()> {
        self.at += 1;
        loop {
            match self.text.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.text.get(self.at) {
                        Some(b'u') => {
                            self.at += 1;
                            self.hex4()?;
                        }
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        _ => return self.error("invalid escape"),
                    }
                }
                Some(&b) if b < 0x20 => return self.error("control character in a string"),
                Some(_) => self.at += 1,
                None => return self.error("end of text in a string"),
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, any size.
    fn skip_number(&mut self) -> Result<()> {
        if self.text.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.text.get(self.at) {
            Some(b'0') => {
                self.at += 1;
                if matches!(self.text.get(self.at), Some(b'0'..=b'9')) {
                    return self.error("invalid number");
                }
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return self.error("invalid number"),
        }
        if self.text.get(self.at) == Some(&b'.') {
            self.at += 1;
            if !matches!(self.text.get(self.at), Some(b'0'..=b'9')) {
                return self.error("invalid number");
            }
            self.skip_digits();
        }
        if matches!(self.text.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.text.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !matches!(self.text.get(self.at), Some(b'0'..=b'9')) {
                return self.error("invalid number");
            }
            self.skip_digits();
        }
        Ok(())
    }

    fn skip_digits(&mut self) {
        while matches!(self.text.get(self.at), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }
}
