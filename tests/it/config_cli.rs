//! Invalid definitions and usage (SPEC sections 1 and 2): exit 2, every
//! error as `path:line:col: message`, nothing started; `corral check`.

use std::path::Path;

use crate::common::*;

/// The lines of `stderr` that report an error at `path:LINE:COL:`.
fn error_lines<'a>(stderr: &'a str, path: &Path) -> Vec<(usize, &'a str)> {
    let prefix = format!("{}:", path.display());
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let mut parts = rest.splitn(3, ':');
            let line: usize = parts.next()?.parse().ok()?;
            let _col: usize = parts.next()?.parse().ok()?;
            Some((line, l))
        })
        .collect()
}

/// A valid service that would leave `good.ran`, an init script that would
/// leave `init.ran`, and a main command that would leave `main.ran`: the
/// evidence that something started.
fn starters(dir: &TestDir) {
    dir.service(
        "good",
        r#"command = '''echo ran > "$T/good.ran"; exec sleep 1000'''"#,
    );
    dir.init_script("01-init", r#"echo ran > "$T/init.ran""#);
}

fn assert_nothing_ran(dir: &TestDir) {
    for file in ["good.ran", "init.ran", "main.ran"] {
        assert!(!dir.exists(file), "{file}: something started");
    }
}

#[test]
fn invalid_service_file_exits_2_names_the_file_and_starts_nothing() {
    let dir = TestDir::new("invalid");
    starters(&dir);
    let bad = dir.service("bad", "command = \"echo unterminated\n");
    let finished = dir
        .corral()
        .main(["sh", "-c", r#"echo ran > "$T/main.ran""#])
        .run();
    assert_eq!(finished.code(), 2);
    let stderr = finished.stderr();
    assert!(
        !error_lines(&stderr, &bad).is_empty(),
        "no `{}:LINE:COL:` error line:\n{stderr}",
        bad.display()
    );
    assert_nothing_ran(finished.dir());
}

/// Three mistakes in one file: all three reported, each at its own line,
/// the misspelt key with a suggestion; nothing starts.
#[test]
fn every_error_in_a_file_is_reported() {
    let dir = TestDir::new("three-errors");
    starters(&dir);
    let bad = dir.service(
        "bad",
        "command = \"true\"\nrestrat = \"never\"\nstop-timeout = \"soon\"\nstop-signal = \"NOPE\"\n",
    );
    let finished = dir.corral().run();
    assert_eq!(finished.code(), 2);
    let stderr = finished.stderr();
    let errors = error_lines(&stderr, &bad);
    for line in [2, 3, 4] {
        assert!(
            errors.iter().any(|&(l, _)| l == line),
            "no error reported at {}:{line}:\n{stderr}",
            bad.display()
        );
    }
    let restrat = errors.iter().find(|&&(l, _)| l == 2).map(|&(_, text)| text);
    assert!(
        restrat.is_some_and(|t| t.contains("restrat") && t.contains("`restart`")),
        "the misspelt key has no \"did you mean `restart`\": {restrat:?}"
    );
    assert_nothing_ran(finished.dir());
}

/// Errors in two files: both reported in one run.
#[test]
fn errors_in_several_files_are_all_reported() {
    let dir = TestDir::new("two-files");
    starters(&dir);
    let one = dir.service("one", "command = \"true\"\nstop-timeout = 5\n");
    let two = dir.service("two", "command = \"true\"\nafter = [\"nope\"]\n");
    let finished = dir.corral().run();
    assert_eq!(finished.code(), 2);
    let stderr = finished.stderr();
    assert_eq!(
        error_lines(&stderr, &one).first().map(|e| e.0),
        Some(2),
        "{stderr}"
    );
    assert_eq!(
        error_lines(&stderr, &two).first().map(|e| e.0),
        Some(2),
        "{stderr}"
    );
    assert_nothing_ran(finished.dir());
}

/// `corral check` with the same three mistakes: exit 2, all reported.
#[test]
fn check_reports_every_error_and_exits_2() {
    let dir = TestDir::new("check-errors");
    let bad = dir.service(
        "bad",
        "command = \"true\"\nrestrat = \"never\"\nstop-timeout = \"soon\"\nstop-signal = \"NOPE\"\n",
    );
    let finished = dir.corral().check();
    assert_eq!(finished.code(), 2);
    let stderr = finished.stderr();
    let lines: Vec<usize> = error_lines(&stderr, &bad).iter().map(|e| e.0).collect();
    assert_eq!(lines, [2, 3, 4], "{stderr}");
}

/// `corral check` on valid definitions: exit 0, the plan lists `db` before
/// `web` (web is `after` db), and nothing is started.
#[test]
fn check_prints_the_start_plan_and_starts_nothing() {
    let dir = TestDir::new("check-plan");
    dir.service(
        "web",
        r#"
after = ["db"]
command = '''echo ran > "$T/web.ran"; exec sleep 1000'''
"#,
    );
    dir.service(
        "db",
        r#"command = '''echo ran > "$T/db.ran"; exec sleep 1000'''"#,
    );
    let finished = dir.corral().check();
    assert_eq!(finished.code(), 0, "{}", finished.stderr());
    let stdout = finished.stdout();
    let first = |word: &str| {
        stdout
            .lines()
            .position(|l| l.contains(word))
            .unwrap_or_else(|| panic!("{word} missing from the plan:\n{stdout}"))
    };
    // web's line mentions db too ("after db"), so db's own line must come first.
    assert!(first("db") < first("web"), "plan order:\n{stdout}");
    assert!(!finished.dir().exists("db.ran") && !finished.dir().exists("web.ran"));
}

/// A bad option value is a usage error: exit 2, nothing started.
#[test]
fn bad_option_value_is_a_usage_error() {
    let dir = TestDir::new("bad-duration");
    starters(&dir);
    let finished = dir
        .corral()
        .args(["--shutdown-timeout", "soon"])
        .main(["sh", "-c", r#"echo ran > "$T/main.ran""#])
        .run();
    assert_eq!(finished.code(), 2, "{}", finished.stderr());
    assert_nothing_ran(finished.dir());
}

/// A misspelt option (`--servics` for `--services`) before the main command
/// is a usage error, as with tini: exit 2 naming it, and nothing started; it
/// must not be taken for the main command and exec'd.
#[test]
fn unknown_option_is_a_usage_error() {
    let dir = TestDir::new("unknown-option");
    starters(&dir);
    let services = dir.join("services").display().to_string();
    let finished = dir
        .corral()
        .args(["--servics", &services])
        .main(["sh", "-c", r#"echo ran > "$T/main.ran""#])
        .run();
    let stderr = finished.stderr();
    assert_eq!(finished.code(), 2, "{stderr}");
    assert!(stderr.contains("--servics"), "{stderr}");
    assert_nothing_ran(finished.dir());
}
