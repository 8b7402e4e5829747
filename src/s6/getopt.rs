//! skalibs' option scanning, which every s6 command here shares: options
//! first, letters may be bundled (`-ur`),
//! a letter that takes a value takes the rest of its word or the next word
//! (`-t500`, `-t 500`), `--` ends the options, and so does the first word
//! that is not an option (`-` alone is a word).
//!
//! What it must never do: print or exit; a caller turns its error into
//! the command's usage message and exit 100.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// One option: its letter and, for a letter that takes one, its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Opt {
    pub(super) letter: char,
    pub(super) value: Option<String>,
}

/// The options of `args` (without the program name) and the index of the
/// first word after them. `flags` lists the letters without a value,
/// `valued` those that take one.
pub(super) fn getopt(
    args: &[OsString],
    flags: &str,
    valued: &str,
) -> Result<(Vec<Opt>, usize), String> {
    let mut opts = Vec::new();
    let next = scan(args, valued, |letter, value| {
        if value.is_none() && !flags.contains(letter) {
            return Err(format!("unknown option -{letter}"));
        }
        opts.push(Opt {
            letter,
            value: value.map(str::to_string),
        });
        Ok(())
    })?;
    Ok((opts, next))
}

/// The scan under `getopt`, for a command that judges each letter itself
/// (s6-svc: its errors name what to do instead): `each` is given every
/// option in order, with its value for a letter in `valued`; its first
/// error ends the scan. Returns the index of the first word after the
/// options.
pub(super) fn scan(
    args: &[OsString],
    valued: &str,
    mut each: impl FnMut(char, Option<&str>) -> Result<(), String>,
) -> Result<usize, String> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            i += 1;
            break;
        }
        if bytes.len() < 2 || bytes.first() != Some(&b'-') {
            break;
        }
        let Some(word) = arg.to_str() else {
            return Err(format!("unknown option {}", arg.to_string_lossy()));
        };
        for (at, letter) in word.char_indices().skip(1) {
            if valued.contains(letter) {
                let rest = word.get(at + letter.len_utf8()..).unwrap_or_default();
                let value = if rest.is_empty() {
                    i += 1;
                    match args.get(i).and_then(|a| a.to_str()) {
                        Some(value) => value,
                        None => return Err(format!("option -{letter} needs a value")),
                    }
                } else {
                    rest
                };
                each(letter, Some(value))?;
                break;
            }
            each(letter, None)?;
        }
        i += 1;
    }
    Ok(i)
}

/// A millisecond count, as s6 options take them (`-t 500`).
pub(super) fn millis(letter: char, value: Option<&str>) -> Result<u64, String> {
    let value = value.unwrap_or_default();
    value
        .parse()
        .map_err(|_| format!("-{letter} {value}: expected a number of milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s6::args;

    fn opt(letter: char, value: Option<&str>) -> Opt {
        Opt {
            letter,
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn options_bundle_take_values_and_stop_at_the_first_word() {
        let (opts, next) =
            getopt(&args(&["-ua", "-t500", "-o", "x,y", "d", "-u"]), "uao", "t").unwrap();
        assert_eq!(
            opts,
            vec![
                opt('u', None),
                opt('a', None),
                opt('t', Some("500")),
                opt('o', None),
            ]
        );
        // `-o` is a flag here: `x,y` is the first word.
        assert_eq!(next, 3);
        let (opts, next) = getopt(&args(&["-ut", "5", "--", "-d"]), "u", "t").unwrap();
        assert_eq!(opts, vec![opt('u', None), opt('t', Some("5"))]);
        assert_eq!(next, 3);
        let (opts, next) = getopt(&args(&["-", "x"]), "u", "").unwrap();
        assert_eq!((opts, next), (vec![], 0));
    }

    #[test]
    fn unknown_letters_and_missing_values_are_errors() {
        assert_eq!(
            getopt(&args(&["-uz", "d"]), "u", "t"),
            Err("unknown option -z".into())
        );
        assert_eq!(
            getopt(&args(&["-t"]), "u", "t"),
            Err("option -t needs a value".into())
        );
        assert_eq!(millis('t', Some("250")), Ok(250));
        assert_eq!(
            millis('t', Some("1s")),
            Err("-t 1s: expected a number of milliseconds".into())
        );
    }
}
