//! The validated service definitions: what the rest of corral reads.
//!
//! A `ServiceSpec` is only ever built by `config::load`, after every check has
//! passed, so code that holds one may trust it: names are valid, `after`
//! targets exist and form no cycle, durations and signals are parsed, users
//! and groups are resolved to ids.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::resource::Resource;
use nix::sys::signal::Signal;

pub use crate::calendar::Schedule;
use crate::exit::Exit;

/// Every service definition found, in a stable order (by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    pub services: Vec<ServiceSpec>,
    /// s6-rc bundles of a v3 tree (`user`, `user2`, the tree's own, each
    /// `pipeline-name`) → their atomic services, sorted: what
    /// `s6-rc -u change BUNDLE` starts.
    pub bundles: BTreeMap<String, Vec<String>>,
    /// What `corral check` reports besides the plan: files of a v3 tree
    /// that corral accepts but does not act on (`PATH: ignored: why`).
    pub notes: Vec<String>,
    /// Definitions with `replicas` (SPEC section 11), as written: the
    /// templates of their instances, which `services` holds
    /// (`ServiceSpec::instance`), and of the instances `ctl scale` adds.
    pub replicated: Vec<ServiceSpec>,
}

impl Spec {
    pub fn get(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// When a service that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

impl std::fmt::Display for Restart {
    /// As written in a service file.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        })
    }
}

/// Where a service's stdout and stderr go (SPEC section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// corral reads both streams and writes `NAME | line`.
    Prefix,
    /// The service writes straight to corral's stdout and stderr.
    Inherit,
    /// Discarded (`/dev/null`).
    Null,
}

/// `log-file` (SPEC section 10): the service's lines also go to `path`,
/// each with its timestamp, rotated at `max_size` bytes into `path.1` …
/// `path.{keep}` (the oldest dropped). Written by `output::file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Absolute, or relative to corral's working directory: a relative
    /// path in a service file is resolved against the file's directory.
    pub path: PathBuf,
    /// A file is rotated before a line would take it past this size; a
    /// line longer than this gets a file of its own.
    pub max_size: u64,
    /// Rotated files kept besides `path`: at least 1.
    pub keep: u32,
}

impl LogFile {
    /// `max-size` when not written: "10MB".
    pub const DEFAULT_MAX_SIZE: u64 = 10_000_000;
    /// `keep` when not written.
    pub const DEFAULT_KEEP: u32 = 5;
}

/// A check of a service: passes or not. Used for readiness and liveness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect to `host:port` succeeds.
    Tcp { addr: String },
    /// `GET url` answers 2xx (plain `http://` only).
    Http { url: String },
    /// The command exits 0 (run with the service's env, cwd and user).
    Exec { command: Vec<String> },
}

/// How a service says it is ready (SPEC section 3, `ready`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    Probe(Probe),
    /// s6's notification-fd: the service writes a newline to fd N.
    Fd(i32),
    /// systemd's sd_notify: `READY=1` on `$NOTIFY_SOCKET`.
    Notify,
    /// A line of its output (stdout or stderr) matches (SPEC section 11).
    LogLine(LinePattern),
}

/// `ready = { log-line = "regex" }`: compiled once, when the file is read.
/// regex-lite runs in time linear in the line (no backtracking), so no
/// line a service prints can make the match slow.
#[derive(Debug, Clone)]
pub struct LinePattern(regex_lite::Regex);

impl LinePattern {
    /// `pattern` compiled, or why it is no regular expression.
    pub fn new(pattern: &str) -> Result<LinePattern, regex_lite::Error> {
        regex_lite::Regex::new(pattern).map(LinePattern)
    }

    pub fn regex(&self) -> &regex_lite::Regex {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// Two patterns are one when written alike (a config reload compares
/// definitions).
impl PartialEq for LinePattern {
    fn eq(&self, other: &LinePattern) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for LinePattern {}

/// Liveness: after `retries` consecutive failed probes, the service is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
}

/// What "reload this service" does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Sent to the service's main pid (`MAINPID=` if it told one), not its group.
    Signal(Signal),
    /// Run with the service's env, cwd and user, plus `MAINPID`.
    Exec(Vec<String>),
}

/// `pre-stop` (SPEC section 11): what runs before the stop signal, on every
/// stop of a running service. Its time counts in `stop-timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreStop {
    /// A command in the service's context (env, cwd, user, plus `MAINPID`),
    /// killed at `timeout` (`None`: what is left of `stop-timeout`).
    Exec {
        command: Vec<String>,
        timeout: Option<Duration>,
    },
    /// Just wait this long (a load balancer noticing the drain).
    Delay(Duration),
}

/// One entry of `after`: a service, and what it must reach before the
/// dependant starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub name: String,
    pub condition: Condition,
}

impl From<&str> for After {
    /// `name`, with the condition of the array form: `ready`.
    fn from(name: &str) -> After {
        After {
            name: name.to_string(),
            condition: Condition::Ready,
        }
    }
}

/// `after` compared with names (in tests): each with the default condition.
impl PartialEq<&str> for After {
    fn eq(&self, name: &&str) -> bool {
        self.name == *name && self.condition == Condition::Ready
    }
}

/// What a dependency must reach (SPEC section 11, `after` table form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Spawned (a oneshot: also once its run is over).
    Started,
    /// Ready (without readiness, spawned); for a oneshot, `Succeeded`: the
    /// array form's meaning.
    #[default]
    Ready,
    /// Ready, and its first health probe since it was spawned passed.
    Healthy,
    /// A oneshot whose run is over, whatever its exit.
    Completed,
    /// A oneshot that exited with a success code.
    Succeeded,
}

impl Condition {
    /// Each condition as written in a service file.
    pub const NAMES: [(&'static str, Condition); 5] = [
        ("started", Condition::Started),
        ("ready", Condition::Ready),
        ("healthy", Condition::Healthy),
        ("completed", Condition::Completed),
        ("succeeded", Condition::Succeeded),
    ];

    /// As written in a service file.
    pub fn name(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Ready => "ready",
            Condition::Healthy => "healthy",
            Condition::Completed => "completed",
            Condition::Succeeded => "succeeded",
        }
    }
}

/// Defined below `config`, so that `files` can read as a service's user
/// without depending on `config`.
pub use crate::credentials::Credentials;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    /// The file (or s6 directory) the definition came from, for messages.
    pub source: PathBuf,
    /// argv; a string `command` becomes `["/bin/sh", "-c", string]`.
    pub command: Vec<String>,
    pub credentials: Credentials,
    pub working_dir: PathBuf,
    /// Added to the container environment, in key order.
    pub env: Vec<(String, String)>,
    /// `KEY=value` lines, read at each start.
    pub env_file: Option<PathBuf>,
    /// What it starts after, and what each must reach first (SPEC section
    /// 11); stopped before them.
    pub after: Vec<After>,
    pub oneshot: bool,
    pub enabled: bool,
    pub restart: Restart,
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    /// 0 = unlimited.
    pub max_restarts: u32,
    pub essential: bool,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub kill_group: bool,
    pub output: Output,
    /// Where the service's lines are also written. `output` still decides
    /// corral's stdout: with `"null"` corral reads the pipes for the file
    /// alone; `"inherit"` (corral never sees the lines) is refused with it.
    pub log_file: Option<LogFile>,
    pub ready: Option<Ready>,
    /// Not ready this long after the start: the start failed.
    pub ready_timeout: Duration,
    pub health: Option<Health>,
    /// None: a reload is a restart.
    pub reload: Option<Reload>,
    /// A change to any of these (debounced) runs the reload.
    pub watch: Vec<PathBuf>,
    /// s6-style services: the `finish` script, run after each exit with the
    /// exit code (256 when killed) and the signal number; exit 125 stops
    /// restarts.
    pub finish: Option<PathBuf>,
    /// How long the `finish` script may run before it is killed (s6-rc
    /// `timeout-finish`; s6's 5 s otherwise).
    pub finish_timeout: Duration,
    /// s6-rc oneshots (SPEC section 9): the `down` command, run at shutdown
    /// (and on a stop) once the oneshot has run, in reverse dependency order.
    pub down: Option<Vec<String>>,
    /// Oneshots: the deadline of one run (s6-rc `timeout-up`); past it the
    /// run is killed and counts as failed. `None`: no limit.
    pub run_timeout: Option<Duration>,
    /// s6-rc pipelines: this service's stdout feeds the stdin of the named
    /// service through one pipe corral holds across restarts of either end.
    pub pipe_to: Option<String>,
    /// A service of a v3 tree's boot (reached from `user`, `user2` or the
    /// legacy pseudo-services): when it fails to come up, the container
    /// follows `S6_BEHAVIOUR_IF_STAGE2_FAILS` (`Supervisor::init_failure`).
    pub boot_step: bool,
    /// Where the definition came from, for `corral check` and messages.
    pub origin: Origin,
    /// `success-exit-codes`: the exit codes that count as a success
    /// (`is_success`); never empty.
    pub success_exit_codes: Vec<u8>,
    /// Runs before the stop signal, inside `stop-timeout`.
    pub pre_stop: Option<PreStop>,
    /// `limits`: set (soft = hard) in every process of the service before
    /// exec; `RLIM_INFINITY` is `"unlimited"`.
    pub limits: Vec<(Resource, u64)>,
    /// `schedule` (SPEC section 11): a cron job, run at each tick, never
    /// twice at once. `None`: a longrun or a oneshot.
    pub schedule: Option<Arc<Schedule>>,
    /// `replicas` (SPEC section 11) as written: this definition is a
    /// template (`Spec::replicated`); `None` on a plain service and on
    /// each instance.
    pub replicas: Option<u32>,
    /// An instance of a replicated service: which service, which number.
    pub replica: Option<Replica>,
}

/// What an instance of a replicated service knows of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The replicated service's name: `web` of `web.2`.
    pub group: String,
    /// 1-based: `CORRAL_REPLICA`.
    pub index: u32,
}

/// The most instances of one service (`replicas`, `ctl scale`).
pub const MAX_REPLICAS: u32 = 1000;

/// The format a definition was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// A `NAME.toml` service file (SPEC section 3).
    #[default]
    Toml,
    /// An s6-style service directory `NAME/run` (SPEC section 4).
    S6Dir,
    /// A service of an s6-rc source tree (SPEC section 9).
    S6Rc,
}

impl ServiceSpec {
    /// A spec with every default of SPEC section 3, for tests and for building
    /// definitions in code.
    pub fn new(name: &str, command: Vec<String>) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            source: PathBuf::from(format!("{name}.toml")),
            command,
            credentials: Credentials {
                uid: None,
                gid: None,
                groups: Vec::new(),
            },
            working_dir: PathBuf::from("/"),
            env: Vec::new(),
            env_file: None,
            after: Vec::new(),
            oneshot: false,
            enabled: true,
            restart: Restart::Always,
            restart_delay: Duration::from_millis(100),
            restart_delay_max: Duration::from_secs(30),
            max_restarts: 0,
            essential: false,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(5),
            kill_group: true,
            output: Output::Prefix,
            log_file: None,
            ready: None,
            ready_timeout: Duration::from_secs(60),
            health: None,
            reload: None,
            watch: Vec::new(),
            finish: None,
            finish_timeout: Duration::from_secs(5),
            down: None,
            run_timeout: None,
            pipe_to: None,
            boot_step: false,
            origin: Origin::Toml,
            schedule: None,
            success_exit_codes: vec![0],
            pre_stop: None,
            limits: Vec::new(),
            replicas: None,
            replica: None,
        }
    }

    /// Instance `index` (1-based) of `count` of this template: named
    /// `NAME.index`, `{replica}` replaced by `index` in the command, `env`
    /// values, the log file's path, probe targets and exec hooks, and
    /// `CORRAL_REPLICA` / `CORRAL_REPLICAS` added to its environment.
    pub fn instance(&self, index: u32, count: u32) -> ServiceSpec {
        let n = index.to_string();
        let sub = |s: &String| s.replace("{replica}", &n);
        let argv = |v: &mut Vec<String>| *v = v.iter().map(sub).collect();
        let probe = |p: &mut Probe| match p {
            Probe::Tcp { addr } => *addr = sub(addr),
            Probe::Http { url } => *url = sub(url),
            Probe::Exec { command } => argv(command),
        };
        let mut spec = self.clone();
        spec.name = format!("{}.{n}", self.name);
        spec.replicas = None;
        spec.replica = Some(Replica {
            group: self.name.clone(),
            index,
        });
        argv(&mut spec.command);
        spec.env
            .retain(|(k, _)| k != "CORRAL_REPLICA" && k != "CORRAL_REPLICAS");
        for (_, value) in &mut spec.env {
            *value = sub(value);
        }
        spec.env.push(("CORRAL_REPLICA".into(), n.clone()));
        spec.env.push(("CORRAL_REPLICAS".into(), count.to_string()));
        if let Some(log) = &mut spec.log_file
            && let Some(path) = log.path.to_str()
        {
            log.path = PathBuf::from(path.replace("{replica}", &n));
        }
        if let Some(Ready::Probe(p)) = &mut spec.ready {
            probe(p);
        }
        if let Some(health) = &mut spec.health {
            probe(&mut health.probe);
        }
        if let Some(Reload::Exec(command)) = &mut spec.reload {
            argv(command);
        }
        if let Some(PreStop::Exec { command, .. }) = &mut spec.pre_stop {
            argv(command);
        }
        spec
    }

    /// Whether the two are one instance's definitions for two counts of
    /// replicas: nothing but `CORRAL_REPLICAS` differs.
    pub fn differs_only_in_count(&self, other: &ServiceSpec) -> bool {
        let without = |s: &ServiceSpec| {
            let mut s = s.clone();
            s.env.retain(|(k, _)| k != "CORRAL_REPLICAS");
            s
        };
        without(self) == without(other)
    }

    /// Whether `exit` counts as a success: one of `success-exit-codes`; a
    /// death by signal never. The one answer for the restart policy, an
    /// essential service's end, a oneshot's run and `ctl status`.
    pub fn is_success(&self, exit: Exit) -> bool {
        matches!(exit, Exit::Code(code)
            if u8::try_from(code).is_ok_and(|code| self.success_exit_codes.contains(&code)))
    }
}

impl ServiceSpec {
    /// corral reads the service's stdout and stderr: to show its lines,
    /// or, with `output = "null"`, for its log file or its `log-line`
    /// readiness alone (the lines are then kept for `ctl logs` too).
    pub fn reads_output(&self) -> bool {
        match self.output {
            Output::Prefix => true,
            Output::Inherit => false,
            Output::Null => {
                self.log_file.is_some() || matches!(self.ready, Some(Ready::LogLine(_)))
            }
        }
    }
}

/// What a failing init script does (s6-overlay's
/// `S6_BEHAVIOUR_IF_STAGE2_FAILS`, read by `s6::S6Env`; the core acts on
/// it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitFailure {
    /// Stop the container with the script's code (SPEC; the default).
    #[default]
    Stop,
    /// Go on with the next script and the services (logged as a warning).
    Continue,
}
