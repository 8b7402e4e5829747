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

/// An `after` entry.
fn after(name: &str, condition: Condition) -> After {
    After {
        name: name.to_string(),
        condition,
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

    /// These keys used to be refused as "not supported yet"; they are
    /// accepted now (their forms and errors are in `mod hooks`).
    #[test]
    fn keys_once_not_built_are_accepted() {
        let text = "command = \"x\"\nready = { tcp = \"localhost:80\" }\nready-timeout = \"5s\"\n\
                    health = { exec = [\"true\"] }\nreload = { signal = \"HUP\" }\nwatch = [\"/etc/x\"]\n";
        let spec = ok(text);
        assert_eq!(
            spec.ready,
            Some(Ready::Probe(Probe::Tcp {
                addr: "localhost:80".to_string()
            }))
        );
        assert_eq!(spec.ready_timeout, Duration::from_secs(5));
        assert_eq!(
            spec.health,
            Some(Health {
                probe: Probe::Exec {
                    command: vec!["true".to_string()]
                },
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
                retries: 3,
            })
        );
        assert_eq!(spec.reload, Some(Reload::Signal(Signal::SIGHUP)));
        assert_eq!(spec.watch, [PathBuf::from("/etc/x")]);
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
watch = [\"\"]
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
                "web.toml:9:10: `watch`: a path must not be empty",
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
        assert_eq!(spec.ready, None);
        assert_eq!(spec.ready_timeout, Duration::from_secs(60));
        assert_eq!(spec.health, None);
        assert_eq!(spec.reload, None);
        assert!(spec.watch.is_empty());
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
            "web.toml:2:9: `after`: expected an array of service names or a table of name = condition, found string"
        );
    }

    #[test]
    fn after_table_gives_each_dependency_its_condition_in_file_order() {
        let spec = ok(r#"command = "x"
after = { db = "healthy", migrate = "succeeded", cache = "started", seed = "completed", api = "ready" }"#);
        assert_eq!(
            spec.after,
            [
                after("db", Condition::Healthy),
                after("migrate", Condition::Succeeded),
                after("cache", Condition::Started),
                after("seed", Condition::Completed),
                after("api", Condition::Ready),
            ]
        );
        // The array form: `ready` for each; a `[after]` table works too.
        assert_eq!(
            ok("command = \"x\"\nafter = [\"db\"]").after,
            [after("db", Condition::Ready)]
        );
        assert_eq!(
            ok("command = \"x\"\n[after]\ndb = \"started\"").after,
            [after("db", Condition::Started)]
        );
        assert!(ok("command = \"x\"\nafter = {}").after.is_empty());
    }

    #[test]
    fn after_table_conditions_must_be_known_strings() {
        assert_eq!(
            errors(
                r#"command = "x"
after = { db = "helthy", migrate = "done", cache = 1, "a\tb" = "redy" }"#
            ),
            [
                "web.toml:2:16: `after.db`: unknown condition \"helthy\" (did you mean \"healthy\"?)",
                "web.toml:2:36: `after.migrate`: unknown condition \"done\" (expected \"started\", \"ready\", \"healthy\", \"completed\" or \"succeeded\")",
                "web.toml:2:52: `after.cache`: expected a condition such as \"ready\", found integer",
                "web.toml:2:64: `after.a\\tb`: unknown condition \"redy\" (did you mean \"ready\"?)",
            ]
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

/// `ready`, `ready-timeout`, `health`, `reload` and `watch`.
mod hooks {
    use super::*;

    /// `command = "x"` and then `line`: so errors are on line 2.
    fn with(line: &str) -> String {
        format!("command = \"x\"\n{line}\n")
    }

    fn tcp(addr: &str) -> Probe {
        Probe::Tcp {
            addr: addr.to_string(),
        }
    }

    fn http(url: &str) -> Probe {
        Probe::Http {
            url: url.to_string(),
        }
    }

    fn exec(argv: &[&str]) -> Probe {
        Probe::Exec {
            command: argv.iter().map(ToString::to_string).collect(),
        }
    }

    fn strings(argv: &[&str]) -> Vec<String> {
        argv.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ready_every_form() {
        let cases = [
            (
                r#"ready = { tcp = "localhost:8080" }"#,
                Ready::Probe(tcp("localhost:8080")),
            ),
            (
                r#"ready = { tcp = "127.0.0.1:1" }"#,
                Ready::Probe(tcp("127.0.0.1:1")),
            ),
            (
                r#"ready = { tcp = "[::1]:80" }"#,
                Ready::Probe(tcp("[::1]:80")),
            ),
            (
                r#"ready = { tcp = "db_1.internal:65535" }"#,
                Ready::Probe(tcp("db_1.internal:65535")),
            ),
            (
                r#"ready = { http = "http://localhost:8080/healthz" }"#,
                Ready::Probe(http("http://localhost:8080/healthz")),
            ),
            (
                r#"ready = { http = "http://web" }"#,
                Ready::Probe(http("http://web")),
            ),
            (
                r#"ready = { http = "http://[::1]:81/ready?full=1" }"#,
                Ready::Probe(http("http://[::1]:81/ready?full=1")),
            ),
            (
                r#"ready = { exec = ["pg_isready", "-q"] }"#,
                Ready::Probe(exec(&["pg_isready", "-q"])),
            ),
            (
                r#"ready = { exec = "test -S /run/app.sock" }"#,
                Ready::Probe(exec(&["/bin/sh", "-c", "test -S /run/app.sock"])),
            ),
            ("ready = { fd = 3 }", Ready::Fd(3)),
            ("ready = { fd = 1023 }", Ready::Fd(1023)),
            ("ready = { fd = 0x10 }", Ready::Fd(16)),
            ("ready = { notify = true }", Ready::Notify),
            (
                r#"ready = { log-line = 'listening on \d+' }"#,
                Ready::LogLine(LinePattern::new(r"listening on \d+").unwrap()),
            ),
            // The same TOML written as a table or a dotted key.
            ("[ready]\nfd = 5", Ready::Fd(5)),
            ("ready.notify = true", Ready::Notify),
        ];
        for (line, expected) in cases {
            assert_eq!(ok(&with(line)).ready, Some(expected), "{line}");
        }
    }

    #[test]
    fn ready_timeout() {
        assert_eq!(ok(&with("")).ready_timeout, Duration::from_secs(60));
        let spec = ok(&with(
            "ready = { notify = true }\nready-timeout = \"2m30s\"",
        ));
        assert_eq!(spec.ready_timeout, Duration::from_secs(150));
        assert_eq!(
            error(&with("ready-timeout = \"0s\"")),
            "web.toml:2:17: `ready-timeout`: must be longer than zero"
        );
        assert_eq!(
            error(&with("ready-timeout = 60")),
            "web.toml:2:17: `ready-timeout`: expected a duration string such as \"250ms\", found integer"
        );
        assert_eq!(
            error(&with("ready-timeout = \"60\"")),
            "web.toml:2:17: `ready-timeout`: invalid duration \"60\": \"60\" needs a unit (ms, s, m or h), such as \"250ms\", \"10s\", \"2m\", \"1h\" or \"1m30s\""
        );
    }

    #[test]
    fn ready_must_be_a_table_with_exactly_one_way() {
        assert_eq!(
            error(&with("ready = \"localhost:80\"")),
            "web.toml:2:9: `ready`: expected a table with one of `tcp`, `http`, `exec`, `fd`, `notify` or `log-line`, found string"
        );
        assert_eq!(
            error(&with("ready = {}")),
            "web.toml:2:9: `ready`: expected exactly one of `tcp`, `http`, `exec`, `fd`, `notify` or `log-line`, found none"
        );
        assert_eq!(
            error(&with("[ready]")),
            "web.toml:2:1: `ready`: expected exactly one of `tcp`, `http`, `exec`, `fd`, `notify` or `log-line`, found none"
        );
        // At the second one, in file order (not the order of the names).
        assert_eq!(
            error(&with("ready = { tcp = \"a:1\", fd = 3 }")),
            "web.toml:2:24: `ready`: expected exactly one of `tcp`, `http`, `exec`, `fd`, `notify` or `log-line`, found `tcp` and `fd`"
        );
        assert_eq!(
            error(&with(
                "ready = { notify = true, http = \"http://a/\", exec = \"x\" }"
            )),
            "web.toml:2:26: `ready`: expected exactly one of `tcp`, `http`, `exec`, `fd`, `notify` or `log-line`, found `notify`, `http` and `exec`"
        );
    }

    #[test]
    fn ready_unknown_keys() {
        assert_eq!(
            error(&with("ready = { tpc = \"localhost:80\" }")),
            "web.toml:2:11: unknown key `tpc` in `ready` (did you mean `tcp`?)"
        );
        assert_eq!(
            error(&with("ready = { notfy = true }")),
            "web.toml:2:11: unknown key `notfy` in `ready` (did you mean `notify`?)"
        );
        // No likely method: both problems are reported.
        assert_eq!(
            errors(&with("ready = { port = 80 }")),
            [
                "web.toml:2:9: `ready`: expected exactly one of `tcp`, `http`, `exec`, `fd`, `notify` or `log-line`, found none",
                "web.toml:2:11: unknown key `port` in `ready`",
            ]
        );
        assert_eq!(
            error(&with("ready = { tcp = \"a:1\", interval = \"1s\" }")),
            "web.toml:2:24: unknown key `interval` in `ready`"
        );
    }

    #[test]
    fn tcp_addresses() {
        let bad = |addr: &str| error(&with(&format!("ready = {{ tcp = \"{addr}\" }}")));
        let at = "web.toml:2:17: `ready.tcp`: invalid address";
        let cases = [
            (
                "localhost",
                "\"localhost\": expected \"host:port\", such as \"localhost:8080\" or \"[::1]:8080\"",
            ),
            (
                "[::1]",
                "\"[::1]\": expected \"host:port\", such as \"localhost:8080\" or \"[::1]:8080\"",
            ),
            ("localhost:", "\"localhost:\": the port is missing"),
            (
                "localhost:0",
                "\"localhost:0\": the port \"0\" is not a number from 1 to 65535",
            ),
            (
                "localhost:65536",
                "\"localhost:65536\": the port \"65536\" is not a number from 1 to 65535",
            ),
            (
                "localhost:http",
                "\"localhost:http\": the port \"http\" is not a number from 1 to 65535",
            ),
            (
                "localhost:+80",
                "\"localhost:+80\": the port \"+80\" is not a number from 1 to 65535",
            ),
            (":80", "\":80\": the host is missing"),
            (
                "::1:80",
                "\"::1:80\": an IPv6 address must be in brackets, such as \"[::1]:8080\"",
            ),
            ("[::g]:80", "\"[::g]:80\": \"[::g]\" is not an IPv6 address"),
            (
                "[::1:80",
                "\"[::1:80\": the IPv6 address has no closing `]`",
            ),
            ("[::1]80", "\"[::1]80\": expected `:` and a port after `]`"),
            (
                "my host:80",
                "\"my host:80\": invalid host \"my host\" (use a host name or an IP address)",
            ),
            (
                "http://web:80",
                "\"http://web:80\": expected \"host:port\", not a URL (use `http` for an HTTP probe)",
            ),
        ];
        for (addr, reason) in cases {
            assert_eq!(bad(addr), format!("{at} {reason}"), "{addr}");
        }
        assert_eq!(
            error(&with("ready = { tcp = 8080 }")),
            "web.toml:2:17: `ready.tcp`: expected a \"host:port\" string, found integer"
        );
    }

    #[test]
    fn http_urls() {
        let bad = |url: &str| error(&with(&format!("ready = {{ http = \"{url}\" }}")));
        let at = "web.toml:2:18: `ready.http`: invalid URL";
        let example = "such as \"http://localhost:8080/healthz\"";
        let cases = [
            (
                "https://web/healthz".to_string(),
                "\"https://web/healthz\": plain http only: https is not supported (use `exec` with an https client instead)".to_string(),
            ),
            (
                "HTTPS://web/".to_string(),
                "\"HTTPS://web/\": plain http only: https is not supported (use `exec` with an https client instead)".to_string(),
            ),
            (
                "localhost:8080/healthz".to_string(),
                format!("\"localhost:8080/healthz\": expected a URL starting with \"http://\", {example}"),
            ),
            (
                "ftp://web/".to_string(),
                format!("\"ftp://web/\": expected a URL starting with \"http://\", {example}"),
            ),
            ("http://".to_string(), format!("\"http://\": the URL must have a host, {example}")),
            ("http:///healthz".to_string(), format!("\"http:///healthz\": the URL must have a host, {example}")),
            ("http://:8080/".to_string(), format!("\"http://:8080/\": the URL must have a host, {example}")),
            (
                "http://web:0/".to_string(),
                "\"http://web:0/\": the port \"0\" is not a number from 1 to 65535".to_string(),
            ),
            ("http://web:/".to_string(), "\"http://web:/\": the port is missing".to_string()),
            (
                "http://user@web/".to_string(),
                "\"http://user@web/\": invalid host \"user@web\" (use a host name or an IP address)".to_string(),
            ),
            (
                "http://web/a b".to_string(),
                "\"http://web/a b\": it must not contain spaces or control characters".to_string(),
            ),
        ];
        for (url, reason) in cases {
            assert_eq!(bad(&url), format!("{at} {reason}"), "{url}");
        }
        assert_eq!(
            error(&with("ready = { http = [\"http://web/\"] }")),
            "web.toml:2:18: `ready.http`: expected a URL string, found array"
        );
    }

    #[test]
    fn exec_commands() {
        assert_eq!(
            error(&with("ready = { exec = [] }")),
            "web.toml:2:18: `ready.exec`: must not be empty"
        );
        assert_eq!(
            error(&with("ready = { exec = \" \" }")),
            "web.toml:2:18: `ready.exec`: must not be empty"
        );
        assert_eq!(
            error(&with("ready = { exec = [\"\", \"-q\"] }")),
            "web.toml:2:19: `ready.exec`: the program (first element) must not be empty"
        );
        assert_eq!(
            error(&with("ready = { exec = [\"check\", 1] }")),
            "web.toml:2:28: `ready.exec`: expected a string, found integer"
        );
        assert_eq!(
            error(&with("ready = { exec = true }")),
            "web.toml:2:18: `ready.exec`: expected an array of strings or a string, found boolean"
        );
    }

    #[test]
    fn fd_numbers() {
        let stdio = "(0, 1 and 2 are stdin, stdout and stderr)";
        for n in ["0", "1", "2"] {
            assert_eq!(
                error(&with(&format!("ready = {{ fd = {n} }}"))),
                format!(
                    "web.toml:2:16: `ready.fd`: expected an integer from 3 to 1023, found {n} {stdio}"
                )
            );
        }
        for n in ["1024", "-1", "99999999999"] {
            assert_eq!(
                error(&with(&format!("ready = {{ fd = {n} }}"))),
                format!("web.toml:2:16: `ready.fd`: expected an integer from 3 to 1023, found {n}")
            );
        }
        assert_eq!(
            error(&with("ready = { fd = \"3\" }")),
            "web.toml:2:16: `ready.fd`: expected an integer from 3 to 1023, found string"
        );
    }

    #[test]
    fn notify_must_be_true() {
        assert_eq!(
            error(&with("ready = { notify = false }")),
            "web.toml:2:20: `ready.notify`: only `true` is meaningful; for no readiness check, remove the `ready` key"
        );
        assert_eq!(
            error(&with("ready = { notify = \"yes\" }")),
            "web.toml:2:20: `ready.notify`: expected true, found string"
        );
    }

    #[test]
    fn log_line_is_a_regular_expression_compiled_when_read() {
        let spec = ok(&with(r#"ready = { log-line = "^ready( on (\\d+))?$" }"#));
        let Some(Ready::LogLine(pattern)) = &spec.ready else {
            panic!("{:?}", spec.ready);
        };
        assert_eq!(pattern.as_str(), r"^ready( on (\d+))?$");
        assert!(pattern.regex().is_match("ready on 80"));
        assert_eq!(
            error(&with(r#"ready = { log-line = "listening (on" }"#)),
            "web.toml:2:22: `ready.log-line`: invalid regular expression: found open group without closing ')'"
        );
        assert_eq!(
            error(&with(r#"ready = { log-line = "" }"#)),
            "web.toml:2:22: `ready.log-line`: must not be empty (it would match any line: use \"^\" for that)"
        );
        assert_eq!(
            error(&with("ready = { log-line = 1 }")),
            "web.toml:2:22: `ready.log-line`: expected a regular expression (string), found integer"
        );
        assert_eq!(
            error(&with("ready = { log-lin = \"x\" }")),
            "web.toml:2:11: unknown key `log-lin` in `ready` (did you mean `log-line`?)"
        );
        assert_eq!(
            error(&with("health = { log-line = \"x\" }")),
            "web.toml:2:12: `health`: `log-line` is a readiness protocol, not a liveness probe: use `tcp`, `http` or `exec`"
        );
    }

    #[test]
    fn log_line_needs_corral_to_read_the_output() {
        assert_eq!(
            error(&with("output = \"inherit\"\nready = { log-line = \"up\" }")),
            "web.toml:3:1: `ready.log-line` needs corral to read the service's output: not with `output = \"inherit\"`"
        );
        // `null`: read for the match, not shown.
        let spec = ok(&with("output = \"null\"\nready = { log-line = \"up\" }"));
        assert_eq!(spec.output, Output::Null);
    }

    #[test]
    fn health_defaults_and_settings() {
        let spec = ok(&with("health = { tcp = \"localhost:5432\" }"));
        assert_eq!(
            spec.health,
            Some(Health {
                probe: tcp("localhost:5432"),
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
                retries: 3,
            })
        );
        // `timeout` may be longer than `interval`.
        let text = with(
            "[health]\nhttp = \"http://localhost/healthz\"\ninterval = \"2s\"\ntimeout = \"3s\"\nretries = 1",
        );
        assert_eq!(
            ok(&text).health,
            Some(Health {
                probe: http("http://localhost/healthz"),
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(3),
                retries: 1,
            })
        );
        let spec = ok(&with(
            "health = { exec = \"pgrep -x app\", retries = 4294967295 }",
        ));
        assert_eq!(
            spec.health,
            Some(Health {
                probe: exec(&["/bin/sh", "-c", "pgrep -x app"]),
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
                retries: u32::MAX,
            })
        );
    }

    #[test]
    fn health_probe_errors() {
        assert_eq!(
            error(&with("health = { fd = 3 }")),
            "web.toml:2:12: `health`: `fd` is a readiness protocol, not a liveness probe: use `tcp`, `http` or `exec`"
        );
        assert_eq!(
            error(&with("health = { notify = true, interval = \"1s\" }")),
            "web.toml:2:12: `health`: `notify` is a readiness protocol, not a liveness probe: use `tcp`, `http` or `exec`"
        );
        assert_eq!(
            error(&with("health = { interval = \"1s\" }")),
            "web.toml:2:10: `health`: expected exactly one of `tcp`, `http` or `exec`, found none"
        );
        assert_eq!(
            error(&with("health = { exec = \"x\", tcp = \"a:1\" }")),
            "web.toml:2:24: `health`: expected exactly one of `tcp`, `http` or `exec`, found `exec` and `tcp`"
        );
        assert_eq!(
            error(&with("health = true")),
            "web.toml:2:10: `health`: expected a table with one of `tcp`, `http` or `exec`, found boolean"
        );
        assert_eq!(
            error(&with("health = { tcp = \"a:1\", intervall = \"1s\" }")),
            "web.toml:2:25: unknown key `intervall` in `health` (did you mean `interval`?)"
        );
        assert_eq!(
            error(&with("health = { tcp = \"a\" }")),
            "web.toml:2:18: `health.tcp`: invalid address \"a\": expected \"host:port\", such as \"localhost:8080\" or \"[::1]:8080\""
        );
        assert_eq!(
            error(&with("health = { http = \"https://a/\" }")),
            "web.toml:2:19: `health.http`: invalid URL \"https://a/\": plain http only: https is not supported (use `exec` with an https client instead)"
        );
        assert_eq!(
            error(&with("health = { exec = [] }")),
            "web.toml:2:19: `health.exec`: must not be empty"
        );
    }

    #[test]
    fn health_setting_errors() {
        let range = "an integer from 1 to 4294967295";
        let cases = [
            ("interval = \"0\"", "web.toml:2:36: `health.interval`: must be longer than zero".to_string()),
            ("timeout = \"0ms\"", "web.toml:2:35: `health.timeout`: must be longer than zero".to_string()),
            (
                "interval = 10",
                "web.toml:2:36: `health.interval`: expected a duration string such as \"250ms\", found integer".to_string(),
            ),
            ("retries = 0", format!("web.toml:2:35: `health.retries`: expected {range}, found 0")),
            ("retries = -3", format!("web.toml:2:35: `health.retries`: expected {range}, found -3")),
            (
                "retries = 4294967296",
                format!("web.toml:2:35: `health.retries`: expected {range}, found 4294967296"),
            ),
            ("retries = \"3\"", format!("web.toml:2:35: `health.retries`: expected {range}, found string")),
        ];
        for (setting, expected) in cases {
            let text = with(&format!("health = {{ tcp = \"a:1\", {setting} }}"));
            assert_eq!(error(&text), expected, "{setting}");
        }
        // The settings are checked even without a probe.
        assert_eq!(
            errors(&with("health = { fd = 3, retries = 0 }")),
            [
                "web.toml:2:12: `health`: `fd` is a readiness protocol, not a liveness probe: use `tcp`, `http` or `exec`",
                &format!("web.toml:2:30: `health.retries`: expected {range}, found 0"),
            ]
        );
    }

    #[test]
    fn reload_every_form() {
        let cases = [
            (
                "reload = { signal = \"HUP\" }",
                Reload::Signal(Signal::SIGHUP),
            ),
            (
                "reload = { signal = \"SIGUSR2\" }",
                Reload::Signal(Signal::SIGUSR2),
            ),
            (
                "reload = { signal = \"usr1\" }",
                Reload::Signal(Signal::SIGUSR1),
            ),
            (
                "reload = { exec = [\"nginx\", \"-s\", \"reload\"] }",
                Reload::Exec(strings(&["nginx", "-s", "reload"])),
            ),
            (
                "reload = { exec = \"kill -HUP $MAINPID\" }",
                Reload::Exec(strings(&["/bin/sh", "-c", "kill -HUP $MAINPID"])),
            ),
            (
                "[reload]\nsignal = \"QUIT\"",
                Reload::Signal(Signal::SIGQUIT),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(ok(&with(line)).reload, Some(expected), "{line}");
        }
    }

    #[test]
    fn reload_errors() {
        assert_eq!(
            error(&with("reload = { signal = \"RELOAD\" }")),
            "web.toml:2:21: `reload.signal`: unknown signal \"RELOAD\": use a name such as \"TERM\", \"INT\", \"QUIT\", \"HUP\", \"USR1\", \"USR2\" or \"KILL\""
        );
        assert_eq!(
            error(&with("reload = { signal = 1 }")),
            "web.toml:2:21: `reload.signal`: expected a signal name such as \"HUP\", found integer"
        );
        assert_eq!(
            error(&with("reload = \"HUP\"")),
            "web.toml:2:10: `reload`: expected a table with one of `signal` or `exec`, found string"
        );
        assert_eq!(
            error(&with("reload = {}")),
            "web.toml:2:10: `reload`: expected exactly one of `signal` or `exec`, found none"
        );
        assert_eq!(
            error(&with("reload = { signal = \"HUP\", exec = \"x\" }")),
            "web.toml:2:28: `reload`: expected exactly one of `signal` or `exec`, found `signal` and `exec`"
        );
        assert_eq!(
            error(&with("reload = { signl = \"HUP\" }")),
            "web.toml:2:12: unknown key `signl` in `reload` (did you mean `signal`?)"
        );
        assert_eq!(
            error(&with("reload = { exec = [\"\"] }")),
            "web.toml:2:20: `reload.exec`: the program (first element) must not be empty"
        );
    }

    #[test]
    fn watch_paths() {
        let text = "command = \"x\"\nwatch = [\"haproxy.cfg\", \"/etc/a\", \"./haproxy.cfg\", \"/etc//a/\", \"../b\"]";
        let spec = parse_service(Path::new("/srv/services.d/web.toml"), text).expect("valid");
        assert_eq!(
            spec.watch,
            [
                PathBuf::from("/srv/services.d/haproxy.cfg"),
                PathBuf::from("/etc/a"),
                PathBuf::from("/srv/services.d/../b"),
            ],
            "relative to the services dir, duplicates dropped, order kept"
        );
        // Without `reload` (a reload is then a restart), and empty.
        assert_eq!(spec.reload, None);
        assert!(ok(&with("watch = []")).watch.is_empty());
    }

    #[test]
    fn watch_errors() {
        assert_eq!(
            error(&with("watch = \"/etc/a\"")),
            "web.toml:2:9: `watch`: expected an array of paths, found string"
        );
        assert_eq!(
            errors(&with("watch = [\"/etc/a\", 1, \"\", \"a\\u0000\"]")),
            [
                "web.toml:2:20: `watch`: expected a path (string), found integer",
                "web.toml:2:23: `watch`: a path must not be empty",
                "web.toml:2:27: `watch`: must not contain a NUL character",
            ]
        );
    }

    #[test]
    fn every_error_in_these_keys_is_reported_together() {
        let text = r#"command = "haproxy"
ready = { notify = false, tpc = "x:1" }
ready-timeout = "0"
health = { http = "https://lb/", fd = 3, timeout = "soon", retries = 0 }
reload = { signal = "USR3", exec = [] }
watch = ["/etc/haproxy.cfg", 7]
"#;
        assert_eq!(
            errors(text),
            [
                "web.toml:2:20: `ready.notify`: only `true` is meaningful; for no readiness check, remove the `ready` key",
                "web.toml:2:27: unknown key `tpc` in `ready` (did you mean `tcp`?)",
                "web.toml:3:17: `ready-timeout`: must be longer than zero",
                "web.toml:4:19: `health.http`: invalid URL \"https://lb/\": plain http only: https is not supported (use `exec` with an https client instead)",
                "web.toml:4:34: `health`: `fd` is a readiness protocol, not a liveness probe: use `tcp`, `http` or `exec`",
                "web.toml:4:52: `health.timeout`: invalid duration \"soon\": expected a number, such as \"250ms\", \"10s\", \"2m\", \"1h\" or \"1m30s\"",
                "web.toml:4:70: `health.retries`: expected an integer from 1 to 4294967295, found 0",
                "web.toml:5:21: `reload.signal`: unknown signal \"USR3\": use a name such as \"TERM\", \"INT\", \"QUIT\", \"HUP\", \"USR1\", \"USR2\" or \"KILL\"",
                "web.toml:5:29: `reload`: expected exactly one of `signal` or `exec`, found `signal` and `exec`",
                "web.toml:5:36: `reload.exec`: must not be empty",
                "web.toml:6:30: `watch`: expected a path (string), found integer",
            ]
        );
    }

    #[test]
    fn the_haproxy_example_of_the_spec() {
        let dir = TempDir::new();
        dir.write(
            "haproxy.toml",
            r#"command = ["haproxy", "-Ws", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
essential = true
stop-signal = "USR1"
reload = { signal = "USR2" }
watch = ["/usr/local/etc/haproxy/haproxy.cfg", "maps/hosts.map"]
ready = { notify = true }
"#,
        );
        let spec = load_ok(&[&dir]);
        let haproxy = spec.get("haproxy").expect("haproxy");
        assert_eq!(haproxy.ready, Some(Ready::Notify));
        assert_eq!(haproxy.ready_timeout, Duration::from_secs(60));
        assert_eq!(haproxy.reload, Some(Reload::Signal(Signal::SIGUSR2)));
        assert_eq!(
            haproxy.watch,
            [
                PathBuf::from("/usr/local/etc/haproxy/haproxy.cfg"),
                dir.0.join("maps/hosts.map"),
            ]
        );
        assert_eq!(haproxy.health, None);
    }

    #[test]
    fn errors_in_these_keys_through_load() {
        let dir = TempDir::new();
        dir.write("web.toml", "command = \"x\"\nready = { fd = 2 }")
            .write("db.toml", "command = \"x\"\nhealth = { tcp = \"db\" }");
        assert_eq!(
            load_errors(&[&dir]),
            [
                "A/db.toml:2:18: `health.tcp`: invalid address \"db\": expected \"host:port\", such as \"localhost:8080\" or \"[::1]:8080\"",
                "A/web.toml:2:16: `ready.fd`: expected an integer from 3 to 1023, found 2 (0, 1 and 2 are stdin, stdout and stderr)",
            ]
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
                "invalid duration \"99999999999999999999999h\": too long (at most 100 years, 876000h)".to_string(),
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
    fn after_table_targets_are_checked_like_the_array_and_cycles_through_both_forms() {
        let dir = TempDir::new();
        dir.write(
            "web.toml",
            "command = \"web\"\nafter = { dbb = \"ready\", web = \"started\" }",
        )
        .write("db.toml", "command = \"db\"")
        .write("a.toml", "command = \"a\"\nafter = { b = \"started\" }")
        .write("b.toml", "command = \"b\"\nafter = [\"a\"]");
        assert_eq!(
            load_errors(&[&dir]),
            [
                "A/a.toml:2:1: dependency cycle: a -> b -> a",
                "A/web.toml:2:11: `after`: unknown service \"dbb\" (did you mean \"db\"?)",
                "A/web.toml:2:26: `after`: service \"web\" cannot come after itself",
            ]
        );
    }

    #[test]
    fn conditions_a_dependency_cannot_reach_are_errors_at_the_condition() {
        let dir = TempDir::new();
        dir.write(
            "web.toml",
            r#"command = "web"
after = { db = "completed", cache = "healthy", api = "succeeded", migrate = "healthy" }"#,
        )
        .write("db.toml", "command = \"db\"")
        .write("cache.toml", "command = \"cache\"")
        .write(
            "api.toml",
            "command = \"api\"\nhealth = { tcp = \"127.0.0.1:1\" }",
        )
        .write("migrate.toml", "command = \"m\"\noneshot = true");
        assert_eq!(
            load_errors(&[&dir]),
            [
                "A/web.toml:2:16: `after.db`: \"completed\" needs a oneshot: it is a long-running service (use \"started\", \"ready\" or \"healthy\")",
                "A/web.toml:2:37: `after.cache`: \"healthy\" needs a `health` check, and it has none (use \"ready\")",
                "A/web.toml:2:54: `after.api`: \"succeeded\" needs a oneshot: it is a long-running service (use \"started\", \"ready\" or \"healthy\")",
                "A/web.toml:2:77: `after.migrate`: \"healthy\" needs a `health` check, and it has none (use \"ready\")",
            ]
        );
        // What each can reach loads.
        let fine = TempDir::new();
        fine.write(
            "web.toml",
            r#"command = "web"
after = { api = "healthy", migrate = "completed", seed = "succeeded", db = "started" }"#,
        )
        .write("db.toml", "command = \"db\"")
        .write(
            "api.toml",
            "command = \"api\"\nhealth = { tcp = \"127.0.0.1:1\" }",
        )
        .write("migrate.toml", "command = \"m\"\noneshot = true")
        .write(
            "seed.toml",
            "command = \"s\"\noneshot = true\nafter = { migrate = \"started\" }",
        );
        let spec = load_ok(&[&fine]);
        assert_eq!(
            spec.get("web").expect("web").after,
            [
                after("api", Condition::Healthy),
                after("migrate", Condition::Completed),
                after("seed", Condition::Succeeded),
                after("db", Condition::Started),
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
                "A/nginx: a service directory needs an executable `run` script",
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
            errors[0] == "A/dangling.toml: no such file or directory",
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
ready = { http = "http://[::1]:8080/ready?x=1" }
ready-timeout = "1m"
health = { tcp = "db:5432", exec = "true", interval = "1s", timeout = "0", retries = 0x2 }
reload = { signal = "USR2", exec = ["x"] }
watch = ["a", "/b", "./a"]
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
            "command = \"x\"\nready = { tcp = \"[\" }",
            "command = \"x\"\nready = { tcp = \"[]:\" }",
            "command = \"x\"\nready = { tcp = \"é:é\" }",
            "command = \"x\"\nready = { http = \"http://[\" }",
            "command = \"x\"\nready = { http = \"httpé\" }",
            "command = \"x\"\nready = { http = \"é\" }",
            "command = \"x\"\nready = { fd = 99999999999999999999999999999 }",
            "command = \"x\"\nhealth = { retries = -99999999999999999999999999999 }",
            "command = \"x\"\nready.tcp.x = 1\nhealth.fd.y = 2\nreload.exec = [[]]",
        ];
        for text in hostile {
            let _ = parse_service(Path::new("web.toml"), text);
            let _ = parse_service(Path::new(""), text);
            let _ = parse_service(Path::new("/"), text);
        }
    }
}

#[test]
fn a_oneshot_has_no_readiness_or_liveness_checks() {
    assert_eq!(
        errors(
            "oneshot = true\ncommand = \"migrate\"\nready = { notify = true }\nhealth = { tcp = \"db:5432\" }\n"
        ),
        vec![
            "web.toml:3:1: `ready` does not apply to a oneshot: its dependants wait for its exit 0",
            "web.toml:4:1: `health` does not apply to a oneshot: its dependants wait for its exit 0",
        ]
    );
}
