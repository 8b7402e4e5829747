//! Service files in, exact messages out. Grouped by the part of SPEC section 3
//! they exercise.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, getgid};

use corral::config::*;

/// Parses `web.toml` and expects errors: their `Display` strings.
fn errors(text: &str) -> Vec<String> {
    match parse_service(Path::new("web.toml"), text) {
        Ok(spec) => panic!("expected errors, got {spec:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// Parses `web.toml` and expects exactly one error.
fn error(text: &str) -> String {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

fn ok(text: &str) -> ServiceSpec {
    match parse_service(Path::new("web.toml"), text) {
        Ok(spec) => spec,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

/// A scratch services dir, removed on drop (also when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "corral-config-test-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> &TempDir {
        fs::write(self.0.join(name), text).expect("write service file");
        self
    }

    fn path(&self) -> PathBuf {
        self.0.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `load` on dirs expected to fail: the errors with the dir paths replaced
/// by `A` (first dir) and `B` (second), so the expectations can be exact.
fn load_errors(dirs: &[&TempDir]) -> Vec<String> {
    let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path()).collect();
    match load(&paths) {
        Ok(spec) => panic!("expected errors, got {spec:?}"),
        Err(errors) => errors
            .iter()
            .map(|e| {
                let mut s = e.to_string();
                for (dir, short) in dirs.iter().zip(["A", "B"]) {
                    s = s.replace(&dir.0.display().to_string(), short);
                }
                s
            })
            .collect(),
    }
}

fn load_ok(dirs: &[&TempDir]) -> Spec {
    let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path()).collect();
    match load(&paths) {
        Ok(spec) => spec,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

fn names(spec: &Spec) -> Vec<&str> {
    spec.services.iter().map(|s| s.name.as_str()).collect()
}

mod display {
    use super::*;

    #[test]
    fn with_and_without_position() {
        let at = ConfigError {
            path: PathBuf::from("/etc/corral/services.d/web.toml"),
            line: 3,
            col: 7,
            message: "boom".to_string(),
        };
        assert_eq!(at.to_string(), "/etc/corral/services.d/web.toml:3:7: boom");
        let whole = ConfigError {
            line: 0,
            col: 0,
            ..at
        };
        assert_eq!(whole.to_string(), "/etc/corral/services.d/web.toml: boom");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // "é" is two bytes; the bad element is the 17th character.
        assert_eq!(
            error("command = [\"é\", 1]\n"),
            "web.toml:1:17: `command`: expected a string, found integer"
        );
    }
}

mod keys {
    use super::*;

    #[test]
    fn unknown_key_suggests_the_closest() {
        assert_eq!(
            errors("oneshot = true\nessential = false\ncomand = [\"x\"]\n"),
            [
                "web.toml: missing required key `command`",
                "web.toml:3:1: unknown key `comand` (did you mean `command`?)",
            ]
        );
        assert_eq!(
            error("command = \"x\"\nrestart_delay = \"1s\"\n"),
            "web.toml:2:1: unknown key `restart_delay` (did you mean `restart-delay`?)"
        );
        assert_eq!(
            error("command = \"x\"\nredy = { tcp = \"x:1\" }\n"),
            "web.toml:2:1: unknown key `redy` (did you mean `ready`?)"
        );
    }

    #[test]
    fn unknown_key_without_a_close_match() {
        assert_eq!(
            error("command = \"x\"\nfrobnicate = 1\n"),
            "web.toml:2:1: unknown key `frobnicate`"
        );
    }

    #[test]
    fn unknown_table_header_points_at_its_name() {
        assert_eq!(
            error("command = \"x\"\n\n[service]\nuser = \"root\"\n"),
            "web.toml:3:2: unknown key `service`"
        );
    }

    #[test]
    fn keys_not_built_yet_are_refused() {
        let text = "command = \"x\"\nready = { tcp = \"localhost:80\" }\nready-timeout = \"5s\"\n\
                    health = { exec = [\"true\"] }\nreload = { signal = \"HUP\" }\nwatch = [\"/etc/x\"]\n";
        assert_eq!(
            errors(text),
            [
                "web.toml:2:1: `ready` is not supported yet",
                "web.toml:3:1: `ready-timeout` is not supported yet",
                "web.toml:4:1: `health` is not supported yet",
                "web.toml:5:1: `reload` is not supported yet",
                "web.toml:6:1: `watch` is not supported yet",
            ]
        );
    }

    #[test]
    fn several_errors_are_reported_together_in_file_order() {
        let text = "\
comand = \"serve\"
restart = \"sometimes\"
restart-delay = 5
max-restarts = -1
stop-signal = \"TERMINATE\"
env = { PORT = 8080, \"1BAD\" = \"x\" }
after = [\"db\", 3]
kill-group = \"yes\"
watch = []
";
        assert_eq!(
            errors(text),
            [
                "web.toml: missing required key `command`",
                "web.toml:1:1: unknown key `comand` (did you mean `command`?)",
                "web.toml:2:11: `restart`: expected one of \"always\", \"on-failure\", \"never\", found \"sometimes\"",
                "web.toml:3:17: `restart-delay`: expected a duration string such as \"250ms\", found integer",
                "web.toml:4:16: `max-restarts`: expected an integer from 0 to 4294967295 (0 = unlimited), found -1",
                "web.toml:5:15: `stop-signal`: unknown signal \"TERMINATE\": use a name such as \"TERM\", \"INT\", \"QUIT\", \"HUP\", \"USR1\", \"USR2\" or \"KILL\"",
                "web.toml:6:16: `env.PORT`: expected a string, found integer (put the value in quotes)",
                "web.toml:6:22: `env`: invalid variable name `1BAD` (use letters, digits and `_`, not starting with a digit)",
                "web.toml:7:16: `after`: expected a service name (string), found integer",
                "web.toml:8:14: `kill-group`: expected true or false, found string",
                "web.toml:9:1: `watch` is not supported yet",
            ]
        );
    }

    #[test]
    fn toml_syntax_error_is_one_error_at_the_parser_position() {
        assert_eq!(
            error("command = \"x\"\nuser = \"root\n"),
            "web.toml:2:13: TOML syntax error: invalid basic string, expected `\"`"
        );
        assert_eq!(
            error("command = \"x\"\ncommand = \"y\"\n"),
            "web.toml:2:1: duplicate key `command`"
        );
    }
}

mod command {
    use super::*;

    #[test]
    fn array_is_argv() {
        assert_eq!(
            ok("command = [\"nginx\", \"-g\", \"daemon off;\"]").command,
            ["nginx", "-g", "daemon off;"]
        );
    }

    #[test]
    fn string_runs_through_sh() {
        assert_eq!(
            ok("command = \"exec serf agent\"").command,
            ["/bin/sh", "-c", "exec serf agent"]
        );
    }

    #[test]
    fn is_required() {
        assert_eq!(
            error("oneshot = true\n"),
            "web.toml: missing required key `command`"
        );
        assert_eq!(error(""), "web.toml: missing required key `command`");
    }

    #[test]
    fn must_not_be_empty() {
        assert_eq!(
            error("command = []"),
            "web.toml:1:11: `command`: must not be empty"
        );
        assert_eq!(
            error("command = \"  \""),
            "web.toml:1:11: `command`: must not be empty"
        );
        assert_eq!(
            error("command = [\"\", \"x\"]"),
            "web.toml:1:12: `command`: the program (first element) must not be empty"
        );
    }

    #[test]
    fn wrong_types() {
        assert_eq!(
            error("command = 42"),
            "web.toml:1:11: `command`: expected an array of strings or a string, found integer"
        );
        assert_eq!(
            errors("command = [\"a\", 1, true]"),
            [
                "web.toml:1:17: `command`: expected a string, found integer",
                "web.toml:1:20: `command`: expected a string, found boolean",
            ]
        );
        assert_eq!(
            error("command = \"a\\u0000b\""),
            "web.toml:1:11: `command`: must not contain a NUL character"
        );
    }
}

mod defaults_and_happy_paths {
    use super::*;

    #[test]
    fn minimal_file_has_every_default() {
        let spec = ok("command = [\"app\"]");
        let expected = ServiceSpec::new("web", vec!["app".to_string()]);
        // ServiceSpec has no PartialEq; Debug shows every field.
        assert_eq!(format!("{spec:?}"), format!("{expected:?}"));
        assert_eq!(spec.restart, Restart::Always);
        assert_eq!(spec.restart_delay, Duration::from_millis(100));
        assert_eq!(spec.restart_delay_max, Duration::from_secs(30));
        assert_eq!(spec.stop_signal, Signal::SIGTERM);
        assert_eq!(spec.stop_timeout, Duration::from_secs(5));
        assert!(spec.kill_group && spec.enabled && !spec.oneshot && !spec.essential);
        assert_eq!(spec.output, Output::Prefix);
        assert_eq!(spec.working_dir, PathBuf::from("/"));
        assert_eq!(
            spec.credentials,
            Credentials {
                uid: None,
                gid: None,
                groups: vec![]
            }
        );
    }

    #[test]
    fn every_key() {
        let text = r#"
command = ["app", "--port", "80"]
working-dir = "/srv/app"
env-file = "/etc/app.env"
after = ["db", "cache", "db"]
oneshot = false
enabled = false
restart = "on-failure"
restart-delay = "250ms"
restart-delay-max = "1m30s"
max-restarts = 5
essential = true
stop-signal = "quit"
stop-timeout = "1.5s"
kill-group = false
output = "inherit"

[env]
ZED = "last"
A_1 = "first"
"#;
        let spec = ok(text);
        assert_eq!(spec.name, "web");
        assert_eq!(spec.source, PathBuf::from("web.toml"));
        assert_eq!(spec.working_dir, PathBuf::from("/srv/app"));
        assert_eq!(spec.env_file, Some(PathBuf::from("/etc/app.env")));
        assert_eq!(
            spec.after,
            ["db", "cache"],
            "duplicates dropped, order kept"
        );
        assert!(!spec.oneshot);
        assert!(!spec.enabled);
        assert_eq!(spec.restart, Restart::OnFailure);
        assert_eq!(spec.restart_delay, Duration::from_millis(250));
        assert_eq!(spec.restart_delay_max, Duration::from_secs(90));
        assert_eq!(spec.max_restarts, 5);
        assert!(spec.essential);
        assert_eq!(spec.stop_signal, Signal::SIGQUIT);
        assert_eq!(spec.stop_timeout, Duration::from_millis(1500));
        assert!(!spec.kill_group);
        assert_eq!(spec.output, Output::Inherit);
        assert_eq!(
            spec.env,
            [
                ("A_1".to_string(), "first".to_string()),
                ("ZED".to_string(), "last".to_string())
            ]
        );
    }

    #[test]
    fn output_and_restart_values() {
        assert_eq!(
            ok("command = \"x\"\noutput = \"null\"").output,
            Output::Null
        );
        assert_eq!(
            ok("command = \"x\"\noutput = \"prefix\"").output,
            Output::Prefix
        );
        assert_eq!(
            ok("command = \"x\"\nrestart = \"never\"").restart,
            Restart::Never
        );
        assert_eq!(
            ok("command = \"x\"\nrestart = \"always\"").restart,
            Restart::Always
        );
        assert_eq!(
            error("command = \"x\"\noutput = \"syslog\""),
            "web.toml:2:10: `output`: expected one of \"prefix\", \"inherit\", \"null\", found \"syslog\""
        );
        assert_eq!(
            error("command = \"x\"\nrestart = true"),
            "web.toml:2:11: `restart`: expected one of \"always\", \"on-failure\", \"never\", found boolean"
        );
    }

    #[test]
    fn oneshot_defaults_to_never_restart() {
        let spec = ok("command = \"migrate\"\noneshot = true");
        assert!(spec.oneshot);
        assert_eq!(spec.restart, Restart::Never);
        let retried = ok("command = \"migrate\"\noneshot = true\nrestart = \"on-failure\"");
        assert_eq!(retried.restart, Restart::OnFailure);
    }

    #[test]
    fn relative_paths_are_relative_to_the_services_dir() {
        let text = "command = \"x\"\nworking-dir = \"app\"\nenv-file = \"../app.env\"";
        let spec = parse_service(Path::new("/srv/services.d/web.toml"), text).expect("valid");
        assert_eq!(spec.working_dir, PathBuf::from("/srv/services.d/app"));
        assert_eq!(
            spec.env_file,
            Some(PathBuf::from("/srv/services.d/../app.env"))
        );
        let text = "command = \"x\"\nworking-dir = \"/var/www\"";
        let spec = parse_service(Path::new("/srv/services.d/web.toml"), text).expect("valid");
        assert_eq!(spec.working_dir, PathBuf::from("/var/www"));
        assert_eq!(
            error("command = \"x\"\nworking-dir = \"\""),
            "web.toml:2:15: `working-dir`: must not be empty"
        );
        assert_eq!(
            error("command = \"x\"\nenv-file = [\"a\"]"),
            "web.toml:2:12: `env-file`: expected a path string, found array"
        );
    }

    #[test]
    fn booleans() {
        assert!(ok("command = \"x\"\nessential = true").essential);
        assert!(!ok("command = \"x\"\nenabled = false").enabled);
        assert_eq!(
            error("command = \"x\"\noneshot = 1"),
            "web.toml:2:11: `oneshot`: expected true or false, found integer"
        );
    }

    #[test]
    fn env_table() {
        let spec = ok("command = \"x\"\nenv = { B = \"2\", A = \"1\" }");
        assert_eq!(
            spec.env,
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string())
            ]
        );
        assert_eq!(
            error("command = \"x\"\nenv = [\"A=1\"]"),
            "web.toml:2:7: `env`: expected a table of strings, found array"
        );
        assert_eq!(
            error("command = \"x\"\n[env]\nA.B = \"x\""),
            "web.toml:3:1: `env.A`: expected a string, found table"
        );
        assert_eq!(
            error("command = \"x\"\nenv = { \"MY-VAR\" = \"x\" }"),
            "web.toml:2:9: `env`: invalid variable name `MY-VAR` (use letters, digits and `_`, not starting with a digit)"
        );
    }

    #[test]
    fn after_list() {
        assert_eq!(
            error("command = \"x\"\nafter = \"db\""),
            "web.toml:2:9: `after`: expected an array of service names, found string"
        );
    }

    #[test]
    fn max_restarts_range() {
        assert_eq!(ok("command = \"x\"\nmax-restarts = 0").max_restarts, 0);
        assert_eq!(
            ok("command = \"x\"\nmax-restarts = 4294967295").max_restarts,
            u32::MAX
        );
        assert_eq!(
            error("command = \"x\"\nmax-restarts = -1"),
            "web.toml:2:16: `max-restarts`: expected an integer from 0 to 4294967295 (0 = unlimited), found -1"
        );
        assert_eq!(
            error("command = \"x\"\nmax-restarts = 4294967296"),
            "web.toml:2:16: `max-restarts`: expected an integer from 0 to 4294967295 (0 = unlimited), found 4294967296"
        );
        assert_eq!(
            error("command = \"x\"\nmax-restarts = 2.5"),
            "web.toml:2:16: `max-restarts`: expected an integer from 0 to 4294967295 (0 = unlimited), found float"
        );
    }

    #[test]
    fn durations_in_the_file() {
        assert_eq!(
            error("command = \"x\"\nstop-timeout = \"10\""),
            "web.toml:2:16: `stop-timeout`: invalid duration \"10\": \"10\" needs a unit (ms, s, m or h), such as \"250ms\", \"10s\", \"2m\", \"1h\" or \"1m30s\""
        );
        assert_eq!(
            error("command = \"x\"\nrestart-delay = 5"),
            "web.toml:2:17: `restart-delay`: expected a duration string such as \"250ms\", found integer"
        );
        assert_eq!(
            ok("command = \"x\"\nstop-timeout = \"0\"").stop_timeout,
            Duration::ZERO
        );
    }

    #[test]
    fn restart_delay_max_must_not_be_below_restart_delay() {
        assert_eq!(
            error("command = \"x\"\nrestart-delay = \"5s\"\nrestart-delay-max = \"1s\""),
            "web.toml:3:21: `restart-delay-max` (\"1s\") must not be shorter than `restart-delay` (\"5s\")"
        );
        assert_eq!(
            error("command = \"x\"\nrestart-delay = \"1m\""),
            "web.toml:2:17: `restart-delay` (\"1m\") must not be longer than `restart-delay-max` (default \"30s\")"
        );
        assert_eq!(
            error("command = \"x\"\nrestart-delay-max = \"50ms\""),
            "web.toml:2:21: `restart-delay-max` (\"50ms\") must not be shorter than `restart-delay` (default \"100ms\")"
        );
        let equal = ok("command = \"x\"\nrestart-delay = \"2s\"\nrestart-delay-max = \"2s\"");
        assert_eq!(equal.restart_delay_max, Duration::from_secs(2));
    }

    #[test]
    fn stop_signal() {
        assert_eq!(
            ok("command = \"x\"\nstop-signal = \"USR1\"").stop_signal,
            Signal::SIGUSR1
        );
        assert_eq!(
            ok("command = \"x\"\nstop-signal = \"SIGINT\"").stop_signal,
            Signal::SIGINT
        );
        assert_eq!(
            error("command = \"x\"\nstop-signal = 15"),
            "web.toml:2:15: `stop-signal`: expected a signal name such as \"TERM\", found integer"
        );
    }
}

mod credentials {
    use super::*;

    #[test]
    fn root_by_name_and_by_id() {
        for text in [
            "command = \"x\"\nuser = \"root\"",
            "command = \"x\"\nuser = 0",
            "command = \"x\"\nuser = \"0\"",
        ] {
            let creds = ok(text).credentials;
            assert_eq!(creds.uid, Some(Uid::from_raw(0)), "{text}");
            assert_eq!(creds.gid, Some(Gid::from_raw(0)), "{text}");
            assert!(
                creds.groups.contains(&Gid::from_raw(0)),
                "{text}: {creds:?}"
            );
        }
    }

    #[test]
    fn group_overrides_the_primary_group() {
        let creds = ok("command = \"x\"\nuser = \"root\"\ngroup = 4242").credentials;
        assert_eq!(creds.uid, Some(Uid::from_raw(0)));
        assert_eq!(creds.gid, Some(Gid::from_raw(4242)));
        assert!(creds.groups.contains(&Gid::from_raw(4242)), "{creds:?}");
    }

    #[test]
    fn group_alone() {
        let creds = ok("command = \"x\"\ngroup = \"root\"").credentials;
        assert_eq!(
            creds,
            Credentials {
                uid: None,
                gid: Some(Gid::from_raw(0)),
                groups: vec![Gid::from_raw(0)]
            }
        );
    }

    #[test]
    fn numeric_user_without_passwd_entry() {
        let creds = ok("command = \"x\"\nuser = 3999999999").credentials;
        assert_eq!(
            creds,
            Credentials {
                uid: Some(Uid::from_raw(3999999999)),
                gid: Some(getgid()),
                groups: vec![getgid()]
            }
        );
    }

    #[test]
    fn unknown_names_are_errors_at_the_value() {
        assert_eq!(
            error("command = \"x\"\nuser = \"nosuchuser\""),
            "web.toml:2:8: `user`: unknown user \"nosuchuser\""
        );
        assert_eq!(
            errors("command = \"x\"\nuser = \"nosuchuser\"\ngroup = \"nosuchgroup\""),
            [
                "web.toml:2:8: `user`: unknown user \"nosuchuser\"",
                "web.toml:3:9: `group`: unknown group \"nosuchgroup\"",
            ]
        );
    }

    #[test]
    fn bad_ids() {
        assert_eq!(
            error("command = \"x\"\nuser = -1"),
            "web.toml:2:8: `user`: numeric id -1 is out of range (0 to 4294967294)"
        );
        assert_eq!(
            error("command = \"x\"\ngroup = \"\""),
            "web.toml:2:9: `group`: must not be empty"
        );
        assert_eq!(
            error("command = \"x\"\nuser = true"),
            "web.toml:2:8: `user`: expected a user name or numeric id, found boolean"
        );
    }
}

mod durations {
    use super::*;

    #[test]
    fn accepted() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("10s", Duration::from_secs(10)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            (".5s", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            (" 9s ", Duration::from_secs(9)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn refused_with_the_text_and_an_example() {
        let example = "such as \"250ms\", \"10s\", \"2m\", \"1h\" or \"1m30s\"";
        let cases = [
            (
                "10",
                format!("invalid duration \"10\": \"10\" needs a unit (ms, s, m or h), {example}"),
            ),
            (
                "5x",
                format!(
                    "invalid duration \"5x\": unknown unit \"x\" (use ms, s, m or h), {example}"
                ),
            ),
            (
                "10us",
                format!(
                    "invalid duration \"10us\": unknown unit \"us\" (use ms, s, m or h), {example}"
                ),
            ),
            (
                "",
                format!("invalid duration \"\": it is empty; write a number and a unit, {example}"),
            ),
            (
                "-1s",
                format!("invalid duration \"-1s\": expected a number, {example}"),
            ),
            (
                "s",
                format!("invalid duration \"s\": expected a number, {example}"),
            ),
            (
                "1.2.3s",
                format!("invalid duration \"1.2.3s\": \"1.2.3\" is not a number, {example}"),
            ),
            (
                "1m30",
                format!(
                    "invalid duration \"1m30\": \"30\" needs a unit (ms, s, m or h), {example}"
                ),
            ),
            (
                "99999999999999999999999h",
                "invalid duration \"99999999999999999999999h\": too long".to_string(),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Err(expected), "{text:?}");
        }
    }
}

mod signals {
    use super::*;

    #[test]
    fn names_in_any_case_with_or_without_sig() {
        for text in ["TERM", "SIGTERM", "term", "sigterm", "Term"] {
            assert_eq!(parse_signal(text), Ok(Signal::SIGTERM), "{text}");
        }
        assert_eq!(parse_signal("usr2"), Ok(Signal::SIGUSR2));
        assert_eq!(parse_signal("HUP"), Ok(Signal::SIGHUP));
    }

    #[test]
    fn unknown_names_list_valid_ones() {
        let expected = "unknown signal \"15\": use a name such as \"TERM\", \"INT\", \"QUIT\", \"HUP\", \"USR1\", \"USR2\" or \"KILL\"";
        assert_eq!(parse_signal("15"), Err(expected.to_string()));
        assert!(parse_signal("").is_err());
        assert!(parse_signal("SIG").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(signal_name(Signal::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(Signal::SIGUSR1), "SIGUSR1");
    }
}

mod load_dirs {
    use super::*;

    #[test]
    fn services_sorted_by_name_and_leftovers_ignored() {
        let dir = TempDir::new();
        dir.write("web.toml", "command = \"web\"\nafter = [\"db\"]")
            .write("db.toml", "command = \"db\"")
            .write("a-1.b_c.toml", "command = \"x\"")
            .write(".hidden.toml", "this is not toml")
            .write("web.toml~", "junk")
            .write("web.toml.swp", "junk")
            .write("web.toml.bak", "junk")
            .write("web.toml.dpkg-old", "junk")
            .write("README.md", "services live here");
        let spec = load_ok(&[&dir]);
        assert_eq!(names(&spec), ["a-1.b_c", "db", "web"]);
        let web = spec.get("web").expect("web");
        assert_eq!(web.source, dir.0.join("web.toml"));
        assert_eq!(web.after, ["db"]);
    }

    #[test]
    fn several_dirs_and_empty_ones() {
        let a = TempDir::new();
        let b = TempDir::new();
        a.write("web.toml", "command = \"web\"\nafter = [\"db\"]");
        b.write("db.toml", "command = \"db\"");
        assert_eq!(names(&load_ok(&[&a, &b])), ["db", "web"]);
        let empty = TempDir::new();
        assert!(load_ok(&[&empty]).services.is_empty());
        assert!(load(&[]).expect("no dirs is fine").services.is_empty());
    }

    #[test]
    fn unknown_and_self_after_targets() {
        let dir = TempDir::new();
        dir.write(
            "web.toml",
            "command = \"web\"\nafter = [\"dbb\", \"web\", \"zzz\"]",
        )
        .write("db.toml", "command = \"db\"");
        assert_eq!(
            load_errors(&[&dir]),
            [
                "A/web.toml:2:10: `after`: unknown service \"dbb\" (did you mean \"db\"?)",
                "A/web.toml:2:17: `after`: service \"web\" cannot come after itself",
                "A/web.toml:2:24: `after`: unknown service \"zzz\"",
            ]
        );
    }

    #[test]
    fn cycle_is_reported_once_at_the_first_service() {
        let dir = TempDir::new();
        dir.write("a.toml", "command = \"a\"\nafter = [\"b\"]")
            .write("b.toml", "command = \"b\"\n\nafter = [\"c\"]")
            .write("c.toml", "command = \"c\"\nafter = [\"a\"]")
            .write("d.toml", "command = \"d\"\nafter = [\"a\"]");
        assert_eq!(
            load_errors(&[&dir]),
            ["A/a.toml:2:1: dependency cycle: a -> b -> c -> a"]
        );
    }

    #[test]
    fn two_cycles_and_the_shortest_path_through_the_first_name() {
        let dir = TempDir::new();
        // x -> y -> x and x -> z -> w -> x share x: one component, one report.
        dir.write("x.toml", "command = \"x\"\nafter = [\"z\", \"y\"]")
            .write("y.toml", "command = \"y\"\nafter = [\"x\"]")
            .write("z.toml", "command = \"z\"\nafter = [\"w\"]")
            .write("w.toml", "command = \"w\"\nafter = [\"x\"]")
            .write("p.toml", "command = \"p\"\nafter = [\"q\"]")
            .write("q.toml", "command = \"q\"\nafter = [\"p\"]");
        assert_eq!(
            load_errors(&[&dir]),
            [
                "A/p.toml:2:1: dependency cycle: p -> q -> p",
                "A/w.toml:2:1: dependency cycle: w -> x -> z -> w",
            ]
        );
    }

    #[test]
    fn a_file_with_errors_still_counts_for_after_and_cycles() {
        let dir = TempDir::new();
        dir.write(
            "a.toml",
            "command = \"a\"\nafter = [\"b\"]\nrestart = \"sometimes\"",
        )
        .write("b.toml", "command = \"b\"\nafter = [\"a\"]")
        .write("c.toml", "comand = \"c\"")
        .write("d.toml", "command = \"d\"\nafter = [\"c\"]");
        assert_eq!(
            load_errors(&[&dir]),
            [
                "A/a.toml:2:1: dependency cycle: a -> b -> a",
                "A/a.toml:3:11: `restart`: expected one of \"always\", \"on-failure\", \"never\", found \"sometimes\"",
                "A/c.toml: missing required key `command`",
                "A/c.toml:1:1: unknown key `comand` (did you mean `command`?)",
            ]
        );
    }

    #[test]
    fn same_name_in_two_dirs() {
        let a = TempDir::new();
        let b = TempDir::new();
        a.write("web.toml", "command = \"a\"");
        b.write("web.toml", "command = \"b\"");
        assert_eq!(
            load_errors(&[&a, &b]),
            ["B/web.toml: service \"web\" is already defined in A/web.toml"]
        );
    }

    #[test]
    fn bad_entries() {
        let dir = TempDir::new();
        dir.write("Web.toml", "command = \"x\"")
            .write("_x.toml", "command = \"x\"");
        fs::write(
            dir.0.join("latin1.toml"),
            b"command = \"x\"\nuser = \"caf\xe9\"\n",
        )
        .expect("write");
        fs::create_dir(dir.0.join("nginx")).expect("mkdir");
        fs::create_dir(dir.0.join(".git")).expect("mkdir");
        assert_eq!(
            load_errors(&[&dir]),
            [
                "A/Web.toml: invalid service name \"Web\": use lower-case letters, digits, `_`, `.` and `-`, starting with a letter or digit",
                "A/_x.toml: invalid service name \"_x\": use lower-case letters, digits, `_`, `.` and `-`, starting with a letter or digit",
                "A/latin1.toml:2:12: not valid UTF-8",
                "A/nginx: s6-style service directories are not supported yet",
            ]
        );
    }

    #[test]
    fn missing_dir_is_an_error_and_others_are_still_read() {
        let good = TempDir::new();
        good.write("web.toml", "comand = \"x\"");
        let missing = good.0.join("no-such-dir");
        let errors: Vec<String> = load(&[missing.clone(), good.path()])
            .expect_err("must fail")
            .iter()
            .map(|e| e.to_string().replace(&good.0.display().to_string(), "A"))
            .collect();
        assert_eq!(
            errors,
            [
                "A/no-such-dir: cannot read services directory: No such file or directory (os error 2)",
                "A/web.toml: missing required key `command`",
                "A/web.toml:1:1: unknown key `comand` (did you mean `command`?)",
            ]
        );
    }

    #[test]
    fn special_files_are_never_opened() {
        let dir = TempDir::new();
        nix::unistd::mkfifo(&dir.0.join("pipe.toml"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        std::os::unix::fs::symlink(dir.0.join("nowhere"), dir.0.join("dangling.toml"))
            .expect("symlink");
        let errors = load_errors(&[&dir]);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with("A/dangling.toml: cannot read: No such file or directory"),
            "{errors:#?}"
        );
        assert_eq!(errors[1], "A/pipe.toml: not a regular file");
    }

    #[test]
    fn symlinked_file_is_a_service() {
        let dir = TempDir::new();
        dir.write("real.conf", "command = \"x\"");
        std::os::unix::fs::symlink(dir.0.join("real.conf"), dir.0.join("web.toml"))
            .expect("symlink");
        assert_eq!(names(&load_ok(&[&dir])), ["web"]);
    }

    #[test]
    fn errors_of_several_files_sorted_by_path_then_position() {
        let dir = TempDir::new();
        dir.write(
            "b.toml",
            "command = \"b\"\nstop-timeout = 1\noneshot = \"no\"",
        )
        .write("a.toml", "command = \"a\"\nkill-group = 0");
        assert_eq!(
            load_errors(&[&dir]),
            [
                "A/a.toml:2:14: `kill-group`: expected true or false, found integer",
                "A/b.toml:2:16: `stop-timeout`: expected a duration string such as \"250ms\", found integer",
                "A/b.toml:3:11: `oneshot`: expected true or false, found string",
            ]
        );
    }
}

mod robustness {
    use super::*;

    /// Every prefix of a file using every key, and some hostile input: an
    /// answer (spec or errors) each time, never a panic.
    #[test]
    fn never_panics() {
        let full = r#"command = ["app", "é"]
user = "root"
group = 0
working-dir = "app"
env = { A = "1", "B" = "2" }
env-file = "x.env"
after = ["db"]
oneshot = true
enabled = true
restart = "on-failure"
restart-delay = "1.5s"
restart-delay-max = "1m30s"
max-restarts = 0x10
essential = false
stop-signal = "sigusr1"
stop-timeout = "0"
kill-group = true
output = "null"
ready = { notify = true }
[env2]
x = 1
"#;
        let mut cut = 0;
        while cut <= full.len() {
            if let Some(prefix) = full.get(..cut) {
                let _ = parse_service(Path::new("web.toml"), prefix);
            }
            cut += 1;
        }
        let deep = format!("command = {}{}", "[".repeat(10_000), "]".repeat(10_000));
        let hostile = [
            "\u{feff}command = \"x\"",
            "command = \"x\"\r\nuser = 99999999999999999999999999999",
            "max-restarts = -9223372036854775809\ncommand = \"x\"",
            "command = [\"x\"]\nstop-timeout = \"18446744073709551616s\"",
            "command = \"x\"\nrestart-delay = \"0.00000000000000000000001ms\"",
            "\"\\u0000\" = 1",
            "[[command]]\nx = 1",
            deep.as_str(),
            "\0\0\0",
        ];
        for text in hostile {
            let _ = parse_service(Path::new("web.toml"), text);
            let _ = parse_service(Path::new(""), text);
            let _ = parse_service(Path::new("/"), text);
        }
    }
}
