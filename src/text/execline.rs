//! The one execline command line corral runs without execline (SPEC
//! section 9): s6-rc's `up` and `down` files, and `s6-notifyoncheck -c`,
//! are execline scripts, and almost all of them are one plain command line
//! (`/etc/s6-overlay/s6-rc.d/init-adduser/run`). This reads such a line
//! into an argv, with execlineb's lexical rules: words split on whitespace,
//! double-quoted strings (whitespace kept, C-style escapes), a backslash
//! outside quotes taking the next character as it is, and `#` comments.
//!
//! A script that uses blocks (`{ ... }`) is not one plain command line:
//! execlineb turns blocks into quoted argv words that only execline's own
//! programs read, so such a script is `Ok(None)`, for the caller to run
//! through `execlineb -P`.
//!
//! What it must never do: guess. An unterminated quote or escape is an
//! error with its line and column; nothing is substituted (`$VAR` stays as
//! written, as under `execlineb -P`).

use std::fmt;

/// Bad quoting in an execline script: 1-based line and column (in
/// characters) of the construct that is not closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeclineError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ExeclineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// The argv of `text` when it is one plain command line; `Ok(None)` when it
/// uses execline blocks and needs `execlineb`; an empty script gives an
/// empty argv.
pub fn command_line(text: &str) -> Result<Option<Vec<String>>, ExeclineError> {
    let mut words = Vec::new();
    let mut chars = Positioned::new(text);
    loop {
        // Between words: whitespace and comments.
        let Some((c, _, _)) = chars.peek() else {
            return Ok(Some(words));
        };
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            while let Some((c, _, _)) = chars.next() {
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some((c, at_line, at_col)) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '"' => {
                    quoted = true;
                    read_quoted(&mut chars, &mut word, at_line, at_col)?;
                }
                '\\' => match chars.next() {
                    // A backslash-newline joins lines.
                    Some(('\n', _, _)) => {}
                    Some((c, _, _)) => word.push(c),
                    None => {
                        return Err(ExeclineError {
                            line: at_line,
                            col: at_col,
                            message: "a backslash at the end of the script escapes nothing"
                                .to_string(),
                        });
                    }
                },
                c => word.push(c),
            }
        }
        if !quoted && (word.starts_with('{') || word.starts_with('}')) {
            return Ok(None);
        }
        words.push(word);
    }
}

/// The rest of a double-quoted string, after its opening quote.
fn read_quoted(
    chars: &mut Positioned<'_>,
    word: &mut String,
    line: usize,
    col: usize,
) -> Result<(), ExeclineError> {
    let unterminated = || ExeclineError {
        line,
        col,
        message: "a double quote opened here is never closed".to_string(),
    };
    loop {
        match chars.next().ok_or_else(unterminated)? {
            ('"', _, _) => return Ok(()),
            ('\\', _, _) => match chars.next().ok_or_else(unterminated)?.0 {
                '\n' => {}
                'a' => word.push('\x07'),
                'b' => word.push('\x08'),
                't' => word.push('\t'),
                'n' => word.push('\n'),
                'v' => word.push('\x0b'),
                'f' => word.push('\x0c'),
                'r' => word.push('\r'),
                c => word.push(c),
            },
            (c, _, _) => word.push(c),
        }
    }
}

/// Characters with their 1-based line and column.
struct Positioned<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    col: usize,
}

impl<'a> Positioned<'a> {
    fn new(text: &'a str) -> Positioned<'a> {
        Positioned {
            chars: text.chars().peekable(),
            line: 1,
            col: 1,
        }
    }

    fn peek(&mut self) -> Option<(char, usize, usize)> {
        let (line, col) = (self.line, self.col);
        self.chars.peek().map(|&c| (c, line, col))
    }

    fn next(&mut self) -> Option<(char, usize, usize)> {
        let (line, col) = (self.line, self.col);
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some((c, line, col))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(text: &str) -> Vec<String> {
        command_line(text).unwrap().unwrap()
    }

    #[test]
    fn one_absolute_path_as_s6_overlay_trees_write_it() {
        assert_eq!(
            argv("/etc/s6-overlay/s6-rc.d/init-adduser/run\n"),
            ["/etc/s6-overlay/s6-rc.d/init-adduser/run"]
        );
    }

    #[test]
    fn words_quotes_escapes_and_comments() {
        assert_eq!(
            argv("# set up\nfoo  -x \"a b\" c\\ d \"x\\\"y\\n\" e\"f g\"h # trailing\n"),
            ["foo", "-x", "a b", "c d", "x\"y\n", "ef gh"]
        );
        assert_eq!(argv("a \"\" b"), ["a", "", "b"]);
        assert_eq!(argv("a \\\nb"), ["a", "b"]);
        assert_eq!(argv("echo $HOME"), ["echo", "$HOME"], "nothing substituted");
        assert_eq!(argv("nc -z localhost 80"), ["nc", "-z", "localhost", "80"]);
        assert_eq!(argv("a#b"), ["a#b"], "# inside a word is a character");
        assert!(argv("  \n# only a comment\n").is_empty());
    }

    #[test]
    fn blocks_need_execlineb_but_quoted_braces_do_not() {
        assert_eq!(command_line("if { true } echo ok").unwrap(), None);
        assert_eq!(command_line("foreground {\n  a\n}\nb").unwrap(), None);
        assert_eq!(argv("echo \"{\" \"}\""), ["echo", "{", "}"]);
    }

    #[test]
    fn unterminated_quotes_and_escapes_are_errors_with_their_position() {
        let err = command_line("foo\n  bar \"baz\n").unwrap_err();
        assert_eq!((err.line, err.col), (2, 7));
        assert!(err.message.contains("never closed"), "{err}");
        let err = command_line("foo \\").unwrap_err();
        assert_eq!((err.line, err.col), (1, 5));
        let err = command_line("foo ab\"c").unwrap_err();
        assert_eq!((err.line, err.col), (1, 7), "the quote, not the word");
    }
}
