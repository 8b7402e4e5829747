//! s6-overlay's variables (SPEC section 4) that corral's own startup
//! honours when its own settings are absent: the grace times that make the
//! shutdown budget and s6-style directories' `stop-timeout`, and what a
//! failing init script does.
//!
//! What it must never do: let an invalid variable pass unnoticed (each is
//! named, all at once), or override a setting corral was given.

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct S6Env {
    /// `S6_SERVICES_GRACETIME` (ms): how long services get to stop.
    pub services_gracetime: Option<Duration>,
    /// `S6_KILL_GRACETIME` (ms): how long the last processes get between
    /// SIGTERM and SIGKILL.
    pub kill_gracetime: Option<Duration>,
    /// `S6_BEHAVIOUR_IF_STAGE2_FAILS`: `0` and `1` (continue; corral logs a
    /// warning either way) are `Continue`, `2` and more (stop) are `Stop`.
    pub behaviour_if_stage2_fails: Option<InitFailure>,
}

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
        if errors.is_empty() {
            Ok(S6Env {
                services_gracetime,
                kill_gracetime,
                behaviour_if_stage2_fails,
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
