//! s6-overlay's variables (SPEC sections 4 and 9) that corral's own
//! startup honours when its own settings are absent: the grace times that
//! make the shutdown budget and s6-style directories' `stop-timeout`, what a
//! failing init step does, the main command's `S6_CMD_*`, the stage-2 hook,
//! the verbosity, the runtime profile; and the ones accepted with no effect,
//! each with the reason (`corral check` lists them).
//!
//! What it must never do: let an invalid variable pass unnoticed (each is
//! named, all at once), or override a setting corral was given.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{InitFailure, LoadOptions};

/// The shutdown budget when neither `--shutdown-timeout` /
/// `CORRAL_SHUTDOWN_TIMEOUT` nor an s6-overlay grace time is given: under
/// Docker's 10 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(9);

/// s6-overlay's default for `S6_SERVICES_GRACETIME` and `S6_KILL_GRACETIME`
/// (3000 ms each), used for the one that is not set when the other is.
pub const S6_GRACETIME_DEFAULT: Duration = Duration::from_millis(3000);

/// The s6-overlay variables corral honours, parsed and validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S6Env {
    /// `S6_SERVICES_GRACETIME` (ms): how long services get to stop.
    pub services_gracetime: Option<Duration>,
    /// `S6_KILL_GRACETIME` (ms): how long the last processes get between
    /// SIGTERM and SIGKILL.
    pub kill_gracetime: Option<Duration>,
    /// `S6_BEHAVIOUR_IF_STAGE2_FAILS`: `0` and `1` (continue; corral logs a
    /// warning either way) are `Continue`, `2` and more (stop) are `Stop`.
    pub behaviour_if_stage2_fails: Option<InitFailure>,
    /// `S6_KEEP_ENV` nonzero: `with-contenv` changes nothing (services
    /// already get the container environment, SPEC section 3).
    pub keep_env: bool,
    /// `S6_CMD_ARG0`: words put before the main COMMAND (split on
    /// whitespace, as s6-overlay's stage 2 splits it).
    pub cmd_arg0: Vec<String>,
    /// `S6_CMD_RECEIVE_SIGNALS` nonzero: SIGTERM, SIGINT and SIGQUIT go to
    /// the main COMMAND, whose exit ends the container.
    pub cmd_receive_signals: bool,
    /// `S6_CMD_WAIT_FOR_SERVICES_MAXTIME` (ms; 0 or unset: no limit): how
    /// long the main COMMAND waits for the services to come up.
    pub cmd_wait_maxtime: Option<Duration>,
    /// `S6_KILL_FINISH_MAXTIME` (ms): how long each finish script may run.
    pub kill_finish_maxtime: Option<Duration>,
    /// `S6_STAGE2_HOOK`: a program (words split on whitespace) run before
    /// the definitions are read; it may change the s6-rc tree.
    pub stage2_hook: Vec<String>,
    /// `S6_VERBOSITY` (0 to 5): corral's log level when `--log-level` and
    /// `CORRAL_LOG_LEVEL` are not given.
    pub verbosity: Option<u8>,
    /// `S6_RUNTIME_PROFILE`: the tree and bundles come from
    /// `/etc/cont-profile.d/PROFILE/s6-overlay`.
    pub runtime_profile: Option<String>,
    /// `S6_RUNTIME_BUNDLEDIR`: where the `user` and `user2` bundles are.
    pub runtime_bundledir: Option<PathBuf>,
}

/// s6-overlay variables corral acts on.
pub const HONOURED: &[&str] = &[
    "S6_BEHAVIOUR_IF_STAGE2_FAILS",
    "S6_CMD_ARG0",
    "S6_CMD_RECEIVE_SIGNALS",
    "S6_CMD_WAIT_FOR_SERVICES_MAXTIME",
    "S6_KEEP_ENV",
    "S6_KILL_FINISH_MAXTIME",
    "S6_KILL_GRACETIME",
    "S6_RUNTIME_BUNDLEDIR",
    "S6_RUNTIME_PROFILE",
    "S6_SERVICES_GRACETIME",
    "S6_STAGE2_HOOK",
    "S6_VERBOSITY",
];

/// s6-overlay variables corral accepts and does nothing with, and why.
pub const NO_EFFECT: &[(&str, &str)] = &[
    (
        "S6_CMD_WAIT_FOR_SERVICES",
        "corral always starts the main COMMAND once every service is up and, where it declares readiness, ready",
    ),
    (
        "S6_SERVICES_READYTIME",
        "corral knows when a service has started; there is no race to sleep over",
    ),
    (
        "S6_READ_ONLY_ROOT",
        "corral writes nothing outside /run (its socket, /run/s6/container_environment, /run/s6/basedir/bin)",
    ),
    (
        "S6_LOGGING",
        "corral prefixes each service line with its name on its own stdout and stderr; no s6-log catch-all logger",
    ),
    (
        "S6_LOGGING_SCRIPT",
        "no s6-log catch-all logger (see S6_LOGGING)",
    ),
    (
        "S6_CATCHALL_USER",
        "no s6-log catch-all logger (see S6_LOGGING)",
    ),
    (
        "S6_CMD_USE_TERMINAL",
        "the main COMMAND always keeps corral's stdout, stderr and terminal",
    ),
    (
        "S6_FIX_ATTRS_HIDDEN",
        "fix-attrs.d is not supported (v3 deprecates it; do it in the Dockerfile or an init script)",
    ),
    (
        "S6_SYNC_DISKS",
        "corral does not sync file systems at shutdown",
    ),
    (
        "S6_YES_I_WANT_A_WORLD_WRITABLE_RUN_BECAUSE_KUBERNETES",
        "corral never needs /run to be writable by anyone but itself",
    ),
    ("S6_WAIT_FOR_CLOSING_FD", "not supported"),
];

impl S6Env {
    /// From this process's environment; every invalid variable, one message each.
    pub fn from_env() -> Result<S6Env, Vec<String>> {
        S6Env::parse(|name| std::env::var_os(name))
    }

    /// From the variables `get` returns. An unset or empty variable is absent
    /// (as corral's own `CORRAL_*` variables are).
    pub fn parse(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<S6Env, Vec<String>> {
        let value = |name: &str| {
            get(name)
                .map(|v| v.to_string_lossy().trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();
        let mut millis = |name: &str| {
            let text = value(name)?;
            match text.parse::<u64>() {
                Ok(ms) => Some(Duration::from_millis(ms)),
                Err(_) => {
                    errors.push(format!(
                        "{name}: expected a number of milliseconds such as 3000, found \"{text}\""
                    ));
                    None
                }
            }
        };
        let services_gracetime = millis("S6_SERVICES_GRACETIME");
        let kill_gracetime = millis("S6_KILL_GRACETIME");
        let behaviour_if_stage2_fails =
            value("S6_BEHAVIOUR_IF_STAGE2_FAILS").and_then(|text| match text.parse::<u64>() {
                Ok(0 | 1) => Some(InitFailure::Continue),
                Ok(_) => Some(InitFailure::Stop),
                Err(_) => {
                    errors.push(format!(
                        "S6_BEHAVIOUR_IF_STAGE2_FAILS: expected 0 (continue), 1 (continue with a warning) or 2 (stop the container), found \"{text}\""
                    ));
                    None
                }
            });
        let mut number = |name: &str, what: &str| {
            let text = value(name)?;
            match text.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(format!("{name}: expected {what}, found \"{text}\""));
                    None
                }
            }
        };
        let flag = "0 (off) or 1 (on)";
        let keep_env = number("S6_KEEP_ENV", flag).is_some_and(|n| n > 0);
        let cmd_receive_signals = number("S6_CMD_RECEIVE_SIGNALS", flag).is_some_and(|n| n > 0);
        let ms = "a number of milliseconds such as 5000";
        let cmd_wait_maxtime = number("S6_CMD_WAIT_FOR_SERVICES_MAXTIME", ms)
            .filter(|&n| n > 0)
            .map(Duration::from_millis);
        let kill_finish_maxtime = number("S6_KILL_FINISH_MAXTIME", ms).map(Duration::from_millis);
        let verbosity = number("S6_VERBOSITY", "a number from 0 (errors only) to 5")
            .map(|n| u8::try_from(n.min(5)).unwrap_or(5));
        // Checked, for the message, though they do nothing.
        let _ = number("S6_CMD_WAIT_FOR_SERVICES", flag);
        let _ = number("S6_SERVICES_READYTIME", ms);
        let words = |name: &str| -> Vec<String> {
            value(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let runtime_profile = value("S6_RUNTIME_PROFILE");
        if let Some(profile) = &runtime_profile
            && (profile.contains('/') || profile == "." || profile == "..")
        {
            errors.push(format!(
                "S6_RUNTIME_PROFILE: expected a profile name (a directory of /etc/cont-profile.d), found \"{profile}\""
            ));
        }
        if errors.is_empty() {
            Ok(S6Env {
                services_gracetime,
                kill_gracetime,
                behaviour_if_stage2_fails,
                keep_env,
                cmd_arg0: words("S6_CMD_ARG0"),
                cmd_receive_signals,
                cmd_wait_maxtime,
                kill_finish_maxtime,
                stage2_hook: words("S6_STAGE2_HOOK"),
                verbosity,
                runtime_profile,
                runtime_bundledir: value("S6_RUNTIME_BUNDLEDIR").map(PathBuf::from),
            })
        } else {
            Err(errors)
        }
    }

    /// The shutdown budget: `given` (`--shutdown-timeout` or
    /// `CORRAL_SHUTDOWN_TIMEOUT`) when there is one; else, when either s6
    /// grace time is set, services' grace time plus the kill grace time (each
    /// 3000 ms when not set), as s6-overlay's shutdown spends them one after
    /// the other; else 9 s.
    pub fn shutdown_timeout(&self, given: Option<Duration>) -> Duration {
        if let Some(given) = given {
            return given;
        }
        if self.services_gracetime.is_none() && self.kill_gracetime.is_none() {
            return DEFAULT_SHUTDOWN_TIMEOUT;
        }
        self.services_gracetime.unwrap_or(S6_GRACETIME_DEFAULT)
            + self.kill_gracetime.unwrap_or(S6_GRACETIME_DEFAULT)
    }

    /// What a failing init script does: `S6_BEHAVIOUR_IF_STAGE2_FAILS`, or
    /// corral's own rule without it (SPEC section 2: startup stops, corral
    /// exits with the script's code). Unlike s6-overlay, which runs every
    /// script before it decides, corral stops at the first failure with `2`.
    pub fn init_failure(&self) -> InitFailure {
        self.behaviour_if_stage2_fails.unwrap_or_default()
    }

    /// Where s6-overlay keeps its tree and bundles: `/etc/s6-overlay`, or
    /// the runtime profile's.
    pub fn overlay_dir(&self) -> PathBuf {
        match &self.runtime_profile {
            Some(profile) => PathBuf::from("/etc/cont-profile.d")
                .join(profile)
                .join("s6-overlay"),
            None => PathBuf::from("/etc/s6-overlay"),
        }
    }

    /// The default s6-rc source tree (`s6-rc.d` of `overlay_dir`).
    pub fn default_tree(&self) -> PathBuf {
        self.overlay_dir().join("s6-rc.d")
    }

    /// The bundles dir: `S6_RUNTIME_BUNDLEDIR`, else `user-bundles.d` of
    /// `overlay_dir`.
    pub fn bundle_dir(&self) -> PathBuf {
        self.runtime_bundledir
            .clone()
            .unwrap_or_else(|| self.overlay_dir().join("user-bundles.d"))
    }

    /// corral's log level for `S6_VERBOSITY`: 0 errors, 1 warnings, 2
    /// (s6-overlay's default) info, 3 and more debug.
    pub fn log_level(&self) -> Option<crate::log::LogLevel> {
        use crate::log::LogLevel;
        self.verbosity.map(|v| match v {
            0 => LogLevel::Error,
            1 => LogLevel::Warn,
            2 => LogLevel::Info,
            _ => LogLevel::Debug,
        })
    }

    /// The `S6_*` variables set in the environment that change nothing in
    /// corral, each with the reason; unknown ones too.
    pub fn without_effect(names: impl Iterator<Item = String>) -> Vec<(String, &'static str)> {
        let mut out: Vec<(String, &'static str)> = names
            .filter(|n| n.starts_with("S6_"))
            .filter_map(|name| {
                if let Some((_, why)) = NO_EFFECT.iter().find(|(known, _)| *known == name) {
                    return Some((name, *why));
                }
                (!HONOURED.contains(&name.as_str()))
                    .then_some((name, "not an s6-overlay variable corral knows"))
            })
            .collect();
        crate::sort::sort(&mut out);
        out
    }

    /// How definitions are loaded: `S6_SERVICES_GRACETIME` is the default
    /// `stop-timeout` of s6-style service directories, as s6-overlay gives
    /// its services that long to stop.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            s6_stop_timeout: self.services_gracetime,
            ..LoadOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn s6(vars: &[(&str, &str)]) -> Result<S6Env, Vec<String>> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        S6Env::parse(|name| map.get(name).cloned())
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_shutdown_budget_is_corrals_then_s6s_grace_times_then_9s() {
        let none = s6(&[]).unwrap();
        assert_eq!(none.shutdown_timeout(None), Duration::from_secs(9));
        assert_eq!(none.shutdown_timeout(Some(MS(500))), MS(500));

        let both = s6(&[
            ("S6_SERVICES_GRACETIME", "200"),
            ("S6_KILL_GRACETIME", "300"),
        ])
        .unwrap();
        assert_eq!(both.shutdown_timeout(None), MS(500));
        // corral's own setting wins.
        assert_eq!(both.shutdown_timeout(Some(MS(2000))), MS(2000));

        // One alone: the other takes s6-overlay's default, 3000 ms.
        let kill = s6(&[("S6_KILL_GRACETIME", "200")]).unwrap();
        assert_eq!(kill.shutdown_timeout(None), MS(3200));
        let services = s6(&[("S6_SERVICES_GRACETIME", "0")]).unwrap();
        assert_eq!(services.shutdown_timeout(None), MS(3000));
        assert_eq!(services.services_gracetime, Some(Duration::ZERO));

        // Empty is unset.
        let empty = s6(&[
            ("S6_KILL_GRACETIME", ""),
            ("S6_BEHAVIOUR_IF_STAGE2_FAILS", " "),
        ])
        .unwrap();
        assert_eq!(empty, S6Env::default());
    }

    #[test]
    fn the_v3_variables() {
        let v = s6(&[
            ("S6_KEEP_ENV", "1"),
            ("S6_CMD_ARG0", " /usr/bin/tini  -- "),
            ("S6_CMD_RECEIVE_SIGNALS", "1"),
            ("S6_CMD_WAIT_FOR_SERVICES_MAXTIME", "0"),
            ("S6_KILL_FINISH_MAXTIME", "2500"),
            ("S6_STAGE2_HOOK", "/usr/local/bin/hook --add"),
            ("S6_VERBOSITY", "9"),
            ("S6_RUNTIME_PROFILE", "dev"),
        ])
        .unwrap();
        assert!(v.keep_env && v.cmd_receive_signals);
        assert_eq!(v.cmd_arg0, ["/usr/bin/tini", "--"]);
        assert_eq!(v.cmd_wait_maxtime, None, "0 is no limit");
        assert_eq!(v.kill_finish_maxtime, Some(MS(2500)));
        assert_eq!(v.stage2_hook, ["/usr/local/bin/hook", "--add"]);
        assert_eq!(v.verbosity, Some(5));
        assert_eq!(v.log_level(), Some(crate::log::LogLevel::Debug));
        assert_eq!(
            v.default_tree(),
            PathBuf::from("/etc/cont-profile.d/dev/s6-overlay/s6-rc.d")
        );
        assert_eq!(
            v.bundle_dir(),
            PathBuf::from("/etc/cont-profile.d/dev/s6-overlay/user-bundles.d")
        );
        let plain = s6(&[("S6_CMD_WAIT_FOR_SERVICES_MAXTIME", "5000")]).unwrap();
        assert_eq!(plain.cmd_wait_maxtime, Some(MS(5000)));
        assert_eq!(
            plain.default_tree(),
            PathBuf::from("/etc/s6-overlay/s6-rc.d")
        );
        assert!(!plain.keep_env);
        assert!(s6(&[("S6_RUNTIME_PROFILE", "../x")]).is_err());
        assert!(s6(&[("S6_VERBOSITY", "loud")]).is_err());
    }

    #[test]
    fn variables_without_effect_are_named_with_the_reason() {
        let names = ["PATH", "S6_LOGGING", "S6_KEEP_ENV", "S6_TYPO"].map(String::from);
        let listed = S6Env::without_effect(names.into_iter());
        let listed: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(listed, ["S6_LOGGING", "S6_TYPO"]);
    }

    #[test]
    fn stage2_behaviour_follows_s6_overlay() {
        let of = |v: &str| {
            s6(&[("S6_BEHAVIOUR_IF_STAGE2_FAILS", v)])
                .unwrap()
                .init_failure()
        };
        assert_eq!(of("0"), InitFailure::Continue);
        assert_eq!(of("1"), InitFailure::Continue);
        assert_eq!(of("2"), InitFailure::Stop);
        // s6-overlay stops for anything from 2 up.
        assert_eq!(of("3"), InitFailure::Stop);
        assert_eq!(s6(&[]).unwrap().init_failure(), InitFailure::Stop);
    }

    #[test]
    fn invalid_s6_variables_are_all_named() {
        let errors = s6(&[
            ("S6_KILL_GRACETIME", "3s"),
            ("S6_SERVICES_GRACETIME", "-1"),
            ("S6_BEHAVIOUR_IF_STAGE2_FAILS", "exit"),
        ])
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "S6_SERVICES_GRACETIME: expected a number of milliseconds such as 3000, found \"-1\"",
                "S6_KILL_GRACETIME: expected a number of milliseconds such as 3000, found \"3s\"",
                "S6_BEHAVIOUR_IF_STAGE2_FAILS: expected 0 (continue), 1 (continue with a warning) or 2 (stop the container), found \"exit\"",
            ]
        );
    }
}
