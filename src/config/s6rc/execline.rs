//! A stand-in for `crate::text::execline::command_line` until it lands on
//! main (same signature, same meaning): one plain execline command line →
//! argv. Replace `use super::execline::command_line` in `service.rs` with
//! the real one and delete this file.
//!
//! What it must never do: run anything, or guess at execline constructs it
//! does not know (`{ }` blocks answer `Ok(None)`: "needs execlineb").

/// A quoting mistake, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeclineError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// `Ok(Some(argv))`: one plain command line (an empty argv when `text`
/// holds only blanks and comments); `Ok(None)`: blocks, which need
/// `execlineb`; `Err`: an unterminated quote.
pub fn command_line(text: &str) -> Result<Option<Vec<String>>, ExeclineError> {
    let mut argv = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut col) = (1, 0);
    let mut needs_execlineb = false;
    loop {
        // Blanks between words.
        while let Some(&c) = chars.peek() {
            if !c.is_whitespace() {
                break;
            }
            chars.next();
            (line, col) = step(c, line, col);
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            for c in chars.by_ref() {
                (line, col) = step(c, line, col);
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            (line, col) = step(c, line, col);
            if c != '"' {
                word.push(c);
                continue;
            }
            quoted = true;
            let (open_line, open_col) = (line, col);
            loop {
                let Some(c) = chars.next() else {
                    return Err(ExeclineError {
                        line: open_line,
                        col: open_col,
                        message: "unterminated quoted string".to_string(),
                    });
                };
                (line, col) = step(c, line, col);
                match c {
                    '"' => break,
                    '\\' => {
                        let Some(e) = chars.next() else { continue };
                        (line, col) = step(e, line, col);
                        match e {
                            'n' => word.push('\n'),
                            't' => word.push('\t'),
                            '\n' => {}
                            other => word.push(other),
                        }
                    }
                    other => word.push(other),
                }
            }
        }
        if !quoted && (word == "{" || word == "}") {
            needs_execlineb = true;
        }
        argv.push(word);
    }
    if needs_execlineb {
        return Ok(None);
    }
    Ok(Some(argv))
}

fn step(c: char, line: usize, col: usize) -> (usize, usize) {
    if c == '\n' {
        (line + 1, 0)
    } else {
        (line, col + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_quotes_comments_and_blocks() {
        let argv = |t: &str| command_line(t).unwrap();
        assert_eq!(argv("/etc/x/run\n"), Some(vec!["/etc/x/run".to_string()]));
        assert_eq!(argv("# only a comment\n"), Some(Vec::new()));
        assert_eq!(
            argv("sh -c \"echo a  b\" # why\n"),
            Some(vec!["sh".into(), "-c".into(), "echo a  b".into()])
        );
        assert_eq!(argv("foreground { echo a } echo b"), None);
        let err = command_line("echo\n  \"open").unwrap_err();
        assert_eq!((err.line, err.col), (2, 3));
    }
}
