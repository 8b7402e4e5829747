//! TEMPORARY stand-in until the real loader lands (being written in parallel).
pub mod spec;
use nix::sys::signal::Signal;
pub use spec::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}
pub fn load(dirs: &[PathBuf]) -> Result<Spec, Vec<ConfigError>> {
    let mut services = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                services.push(parse_service(&p, &text)?);
            }
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Spec { services })
}
pub fn parse_service(path: &Path, text: &str) -> Result<ServiceSpec, Vec<ConfigError>> {
    let err = |m: String| {
        vec![ConfigError {
            path: path.into(),
            line: 1,
            col: 1,
            message: m,
        }]
    };
    let t: toml::Table = toml::from_str(text).map_err(|e| err(e.to_string()))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("x");
    let command = match t.get("command") {
        Some(toml::Value::String(s)) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        Some(toml::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => return Err(err("command".into())),
    };
    let mut s = ServiceSpec::new(name, command);
    s.source = path.into();
    if let Some(v) = t.get("oneshot").and_then(|v| v.as_bool()) {
        s.oneshot = v;
        if v {
            s.restart = Restart::Never
        }
    }
    if let Some(v) = t.get("essential").and_then(|v| v.as_bool()) {
        s.essential = v;
    }
    if let Some(v) = t.get("restart").and_then(|v| v.as_str()) {
        s.restart = match v {
            "never" => Restart::Never,
            "on-failure" => Restart::OnFailure,
            _ => Restart::Always,
        };
    }
    if let Some(v) = t.get("stop-timeout").and_then(|v| v.as_str()) {
        s.stop_timeout = parse_duration(v).map_err(err)?;
    }
    if let Some(v) = t.get("restart-delay").and_then(|v| v.as_str()) {
        s.restart_delay = parse_duration(v).map_err(err)?;
    }
    if let Some(v) = t.get("after").and_then(|v| v.as_array()) {
        s.after = v
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
    }
    Ok(s)
}
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Some(n) = s.strip_suffix("ms") {
        return n
            .parse()
            .map(Duration::from_millis)
            .map_err(|e| e.to_string());
    }
    if let Some(n) = s.strip_suffix('s') {
        return n
            .parse()
            .map(Duration::from_secs_f64)
            .map_err(|e| e.to_string());
    }
    Err(format!("bad duration {s}"))
}
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse().map_err(|_| format!("bad signal {s}"))
}
pub fn signal_name(sig: Signal) -> &'static str {
    sig.as_str()
}
