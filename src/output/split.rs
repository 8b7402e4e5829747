//! Lines: one pipe's bytes cut at each newline, and every `MAX_LINE`
//! bytes of a line that has none. The output thread and `Logs::tail` cut
//! with the same `Splitter`, so both see the same lines.
//!
//! What it must never do: copy a byte it does not have to (it runs for
//! every line corral passes on, millions a second), or keep more than
//! `MAX_LINE` bytes of a line.

use super::MAX_LINE;

/// Cuts one pipe's bytes into lines: at each newline (a `\r` before it is
/// dropped), and every `MAX_LINE` bytes of a line that has none yet; a
/// newline right after such a piece ends it (so a line of exactly
/// `MAX_LINE` bytes stays whole). The output thread and `Logs::tail` cut
/// the same bytes with it, so both see the same lines.
#[derive(Debug, Default)]
pub(super) struct Splitter {
    /// The start of a line, less than `MAX_LINE` bytes.
    partial: Vec<u8>,
    /// A `MAX_LINE` piece was just cut: a newline next belongs to it.
    cut: bool,
}

impl Splitter {
    /// Feed `data`; `line` gets every line it completes, in order. Returns
    /// where in `data` the first line that starts there begins
    /// (`data.len()` if none does): `tail` starts there when what came
    /// before `data` is no longer kept.
    #[inline]
    pub(super) fn split(&mut self, data: &[u8], mut line: impl FnMut(&[u8])) -> usize {
        let mut rest = data;
        if self.cut && !rest.is_empty() {
            self.cut = false;
            if rest.first() == Some(&b'\n') {
                rest = rest.get(1..).unwrap_or_default();
            }
        }
        if !self.partial.is_empty() {
            let room = MAX_LINE.saturating_sub(self.partial.len());
            let window = rest.get(..room).unwrap_or(rest);
            match find_newline(window) {
                Some(end) => {
                    self.partial
                        .extend_from_slice(rest.get(..end).unwrap_or_default());
                    line(strip_cr(&self.partial));
                    self.partial.clear();
                    rest = rest.get(end + 1..).unwrap_or_default();
                }
                None if rest.len() >= room => {
                    self.partial.extend_from_slice(window);
                    line(&self.partial);
                    self.partial.clear();
                    rest = rest.get(room..).unwrap_or_default();
                    self.after_cut(&mut rest);
                }
                None => {
                    self.partial.extend_from_slice(rest);
                    return data.len();
                }
            }
        }
        let fresh = data.len() - rest.len();
        loop {
            let window = rest.get(..MAX_LINE).unwrap_or(rest);
            match find_newline(window) {
                Some(end) => {
                    line(strip_cr(rest.get(..end).unwrap_or_default()));
                    rest = rest.get(end + 1..).unwrap_or_default();
                }
                None if rest.len() >= MAX_LINE => {
                    line(window);
                    rest = rest.get(MAX_LINE..).unwrap_or_default();
                    self.after_cut(&mut rest);
                }
                None => {
                    self.partial.extend_from_slice(rest);
                    return fresh;
                }
            }
        }
    }

    /// After a `MAX_LINE` piece: swallow a newline that ends it, or
    /// remember to look at the next byte.
    fn after_cut(&mut self, rest: &mut &[u8]) {
        match rest.split_first() {
            Some((b'\n', after)) => *rest = after,
            Some(_) => {}
            None => self.cut = true,
        }
    }

    pub(super) fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// The pipe ended: its unfinished line, if any, is a line.
    pub(super) fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(strip_cr(&self.partial));
            self.partial.clear();
        }
        self.cut = false;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    // Not `strip_suffix`: that is a `memcmp` call per line.
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

/// The first newline in `hay`. glibc's `memchr` is vectorised: at millions
/// of lines a second a byte-by-byte search would be the bottleneck.
fn find_newline(hay: &[u8]) -> Option<usize> {
    // SAFETY: memchr reads at most `hay.len()` bytes from its start, all
    // inside `hay`; the pointer it returns, if any, points into `hay`.
    let at = unsafe { libc::memchr(hay.as_ptr().cast(), i32::from(b'\n'), hay.len()) };
    (!at.is_null()).then(|| at as usize - hay.as_ptr() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line `Splitter` makes of `chunks`, fed one after the other,
    /// and the unfinished rest at the end.
    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut splitter = Splitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.split(chunk, |l| lines.push(l.to_vec()));
        }
        splitter.finish(|l| lines.push(l.to_vec()));
        lines
    }

    #[test]
    fn lines_end_at_newlines_whatever_the_reads() {
        let text: &[u8] = b"one\r\ntwo\n\nthree";
        let expected: Vec<Vec<u8>> = vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"".to_vec(),
            b"three".to_vec(),
        ];
        assert_eq!(split_all(&[text]), expected);
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(split_all(&[a, b]), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(split_all(&bytes), expected);
    }

    #[test]
    fn long_lines_are_cut_every_max_line_bytes() {
        // MAX_LINE + 10 bytes, then a newline: a piece and the rest.
        let mut text = vec![b'x'; MAX_LINE + 10];
        text.push(b'\n');
        text.extend_from_slice(b"next\n");
        let want = vec![vec![b'x'; MAX_LINE], vec![b'x'; 10], b"next".to_vec()];
        assert_eq!(split_all(&[&text]), want);
        for cut in [1, 100, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 10] {
            let (a, b) = text.split_at(cut);
            assert_eq!(split_all(&[a, b]), want, "cut at {cut}");
        }
        // Exactly MAX_LINE bytes and a newline: one line, not an empty one after.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        exact.extend_from_slice(b"z\n");
        let want = vec![vec![b'y'; MAX_LINE], b"z".to_vec()];
        for cut in [0, 1, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1] {
            let (a, b) = exact.split_at(cut);
            assert_eq!(split_all(&[a, b]), want, "cut at {cut}");
        }
        // No newline at all: pieces come out as soon as they are complete.
        let mut splitter = Splitter::default();
        let mut pieces = 0;
        splitter.split(&vec![b'x'; 3 * MAX_LINE + 5], |l| {
            assert_eq!(l.len(), MAX_LINE);
            pieces += 1;
        });
        assert_eq!(pieces, 3);
        assert!(splitter.has_partial());
    }

    #[test]
    fn fresh_is_where_the_first_new_line_starts() {
        let mut splitter = Splitter::default();
        assert_eq!(splitter.split(b"ab\ncd", |_| {}), 0);
        assert_eq!(splitter.split(b"ef\ngh", |_| {}), 3);
        assert_eq!(splitter.split(b"ijk", |_| {}), 3);
    }
}
