//! Service output (SPEC section 7): `prefix` lines intact under load,
//! partial last lines, `null`, `inherit`.

use crate::common::*;

const LINES: usize = 10_000;
const WIDTH: usize = 200;

/// `NAME | ` + WIDTH times `letter`, the only full line NAME may print.
fn full_line(name: &str, letter: char) -> String {
    format!("{name} | {}", letter.to_string().repeat(WIDTH))
}

/// Every line of `text` is one of `expected` (line -> how many times); the
/// counts must match exactly. Reports the first stranger, by line number.
fn check_lines(
    stream: &str,
    text: &str,
    expected: &[(String, usize)],
    ignore: impl Fn(&str) -> bool,
) {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{stream} ends inside a line"
    );
    let mut counts = vec![0usize; expected.len()];
    for (n, line) in text.lines().enumerate() {
        match expected.iter().position(|(e, _)| e == line) {
            Some(i) => counts[i] += 1,
            None if ignore(line) => {}
            None => {
                let shown: String = line.chars().take(300).collect();
                panic!(
                    "{stream} line {} is not an intact service line ({} bytes): {shown:?}",
                    n + 1,
                    line.len()
                );
            }
        }
    }
    for ((line, want), got) in expected.iter().zip(counts) {
        let shown: String = line.chars().take(40).collect();
        assert_eq!(got, *want, "{stream}: count of lines {shown:?}...");
    }
}

/// Three services print 10,000 lines of 200 bytes each as fast as they can:
/// `alpha` through `yes | head` (big writes that cut lines anywhere),
/// `bravo` one `echo` per line, both on stdout; `charlie` the same as alpha
/// on stderr. Every output line must be whole: one prefix, 200 times the
/// service's own letter. Each ends with a line without a newline, which must
/// still come out when the service exits.
#[test]
fn chatty_services_lines_are_never_mixed() {
    let dir = TestDir::new("chatty");
    let yes = |name: &str, letter: char, redirect: &str| {
        format!(
            r#"
restart = "never"
command = '''
l=$(printf '%0{WIDTH}d' 0 | tr 0 {letter})
yes "$l" | head -n {LINES} {redirect}
printf '{name}-tail' {redirect}
'''
"#
        )
    };
    dir.service("alpha", &yes("alpha", 'a', ""));
    dir.service("charlie", &yes("charlie", 'c', ">&2"));
    dir.service(
        "bravo",
        &format!(
            r#"
restart = "never"
command = '''
l=$(printf '%0{WIDTH}d' 0 | tr 0 b)
i=0; while [ $i -lt {LINES} ]; do echo "$l"; i=$((i+1)); done
printf 'bravo-tail'
'''
"#
        ),
    );
    let mut c = dir.corral().start();
    c.wait_for("every service's last (partial) line", |c| {
        let out = c.stdout();
        let err = c.stderr();
        let seen = [
            out.contains("alpha | alpha-tail\n"),
            out.contains("bravo | bravo-tail\n"),
            err.contains("charlie | charlie-tail\n"),
        ];
        if seen.iter().all(|&s| s) {
            Ok(())
        } else {
            Err(format!(
                "alpha, bravo, charlie tails seen: {seen:?}; stdout {} bytes",
                out.len()
            ))
        }
    });
    assert_eq!(c.stop(), 0);

    check_lines(
        "stdout",
        &c.stdout(),
        &[
            (full_line("alpha", 'a'), LINES),
            (full_line("bravo", 'b'), LINES),
            ("alpha | alpha-tail".into(), 1),
            ("bravo | bravo-tail".into(), 1),
        ],
        |_| false,
    );
    // stderr also carries corral's own log lines; those never hold a 'c' run.
    check_lines(
        "stderr",
        &c.stderr(),
        &[
            (full_line("charlie", 'c'), LINES),
            ("charlie | charlie-tail".into(), 1),
        ],
        |l| !l.contains("charlie |") && !l.contains("cccccccccc"),
    );
}

/// A service that has printed half a line when corral is stopped: the text
/// still comes out, completed with a newline, before corral exits.
#[test]
fn partial_line_is_printed_when_corral_stops() {
    let dir = TestDir::new("partial");
    dir.service(
        "partial",
        r#"command = '''printf 'no newline yet'; echo $$ > "$T/partial.pid"; exec sleep 1000'''"#,
    );
    let mut c = dir.corral().start();
    c.wait_pids("partial.pid", 1);
    assert_eq!(c.stop(), 0);
    let stdout = c.stdout();
    assert!(
        stdout.lines().any(|l| l == "partial | no newline yet"),
        "the partial line is missing:\n{stdout}"
    );
}

/// `output = "null"` discards both streams; a default (`prefix`) sibling
/// shows that output is otherwise captured.
#[test]
fn null_output_writes_nothing() {
    let dir = TestDir::new("output-null");
    dir.service(
        "quiet",
        r#"
output = "null"
command = '''echo quiet-out; echo quiet-err >&2; echo $$ > "$T/quiet.pid"; exec sleep 1000'''
"#,
    );
    dir.service(
        "chatter",
        r#"command = '''echo chatter-out; echo chatter-err >&2; echo $$ > "$T/chatter.pid"; exec sleep 1000'''"#,
    );
    let mut c = dir.corral().start();
    c.wait_pids("quiet.pid", 1);
    c.wait_pids("chatter.pid", 1);
    assert_eq!(c.stop(), 0);
    let (stdout, stderr) = (c.stdout(), c.stderr());
    assert!(
        stdout.lines().any(|l| l == "chatter | chatter-out"),
        "stdout:\n{stdout}"
    );
    assert!(
        stderr.lines().any(|l| l == "chatter | chatter-err"),
        "stderr:\n{stderr}"
    );
    assert!(
        !stdout.contains("quiet-out"),
        "output = \"null\" was printed:\n{stdout}"
    );
    assert!(
        !stderr.contains("quiet-err"),
        "output = \"null\" was printed:\n{stderr}"
    );
}

/// `output = "inherit"`: the service writes straight to corral's stdout and
/// stderr, without a prefix.
#[test]
fn inherit_output_is_not_prefixed() {
    let dir = TestDir::new("output-inherit");
    dir.service(
        "loud",
        r#"
output = "inherit"
command = '''echo loud-out; echo loud-err >&2; echo $$ > "$T/loud.pid"; exec sleep 1000'''
"#,
    );
    let mut c = dir.corral().start();
    c.wait_pids("loud.pid", 1);
    assert_eq!(c.stop(), 0);
    let (stdout, stderr) = (c.stdout(), c.stderr());
    assert!(stdout.lines().any(|l| l == "loud-out"), "stdout:\n{stdout}");
    assert!(stderr.lines().any(|l| l == "loud-err"), "stderr:\n{stderr}");
    assert!(
        !stdout.contains("loud | ") && !stderr.contains("loud | "),
        "inherited output was prefixed:\n{stdout}\n{stderr}"
    );
}
