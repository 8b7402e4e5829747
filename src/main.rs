//! argv -> mode; errors -> exit code. Everything else lives in the library.
//!
//! The mode comes from the name corral is invoked by (`corralctl`, or one
//! of s6-overlay's commands, `s6::command`: `with-contenv`, `s6-svc`,
//! `s6-svwait`, `halt`...: links to corral), else from the first argument
//! (`check`, `ctl`, `s6-links`, `completions`, or an s6 command's name), else corral
//! supervises.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use corral::cli::{CheckCli, Cli};
use corral::control::server::Server;
use corral::log::{error, info, warn};
use corral::s6::S6Env;
use corral::supervisor::{Setup, Supervisor};
use corral::{
    check, cli, completions, config, control, http, log, notify, output, s6, signals, supervisor,
    watch,
};

/// Invalid definitions or usage.
const EXIT_USAGE: u8 = 2;
/// A system error before anything started (signals, threads, control socket).
const EXIT_SYSTEM: u8 = 111;

/// After the loop ends, how long control connections get to write their
/// last answers (`shutdown`'s reply, "corral is exiting").
const CONTROL_LINGER: Duration = Duration::from_millis(500);

/// std's runtime does what corral relies on before this runs: fds 0, 1
/// and 2 are open (on /dev/null if they were closed, so no socket or pipe
/// corral opens becomes "stdout"), and SIGPIPE is ignored (a write to a
/// closed pipe or socket is EPIPE, not death; children get it back at its
/// default, `spawn::reset_signals`).
fn main() -> ExitCode {
    ExitCode::from(run())
}

fn run() -> u8 {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str());
    if invoked_as == Some("corralctl") {
        return control::client::main(&args, "corralctl");
    }
    // s6-overlay's names, for scripts written for it (SPEC sections 4, 9).
    if let Some(command) = invoked_as.and_then(s6::command) {
        return command(args.get(1..).unwrap_or_default());
    }
    // From the mode's name on, and after it.
    let from_mode = args.get(1..).unwrap_or_default();
    let after_mode = args.get(2..).unwrap_or_default();
    let mode = args.get(1).and_then(|a| a.to_str());
    match mode {
        Some("check") => check_mode(from_mode),
        Some("ctl") => control::client::main(from_mode, "corral ctl"),
        Some("s6-links") => s6::install_links(after_mode),
        Some("completions") => completions::main(after_mode),
        _ => match mode.and_then(s6::command) {
            Some(command) => command(after_mode),
            None => supervise(&args),
        },
    }
}

fn check_mode(args: &[OsString]) -> u8 {
    let cli = match CheckCli::parse(args) {
        Ok(cli) => cli,
        Err(stop) => return stop.report(),
    };
    log::init(&cli.log);
    let dirs = cli.dirs.services();
    // The same defaults as the supervisor would use (S6_SERVICES_GRACETIME).
    let s6 = match s6_env() {
        Ok(s6) => s6,
        Err(code) => return code,
    };
    let mut load_options = s6.load_options();
    load_options.s6_rc_dir = cli.dirs.s6_rc_dir(&s6.default_tree());
    load_options.s6_bundle_dir = Some(s6.bundle_dir());
    match config::load_with(&dirs, &load_options) {
        Ok(spec) => {
            print!("{}", check::plan(&spec, &[]));
            let unused = S6Env::without_effect(
                std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()),
            );
            for (name, why) in unused {
                println!("{name}: no effect under corral: {why}");
            }
            0
        }
        Err(errors) => {
            report(&errors);
            EXIT_USAGE
        }
    }
}

/// s6-overlay's variables (`S6_*`): an invalid one is a usage error, like
/// an invalid option, each printed.
fn s6_env() -> Result<S6Env, u8> {
    S6Env::from_env().map_err(|errors| {
        for err in errors {
            eprintln!("corral: {err}");
        }
        EXIT_USAGE
    })
}

fn report(errors: &[config::ConfigError]) {
    for err in errors {
        eprintln!("{err}");
    }
    let n = errors.len();
    eprintln!(
        "corral: {n} error{} in service definitions, nothing started",
        if n == 1 { "" } else { "s" }
    );
}

fn supervise(args: &[OsString]) -> u8 {
    // One malloc arena for all of corral's threads, not one per thread that
    // allocates: they allocate little and seldom, so the lock is never
    // contended, and each extra arena kept tens of KiB resident. Not
    // inherited: services get glibc's default.
    // SAFETY: mallopt with integer arguments, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let cli = match Cli::parse(args) {
        Ok(cli) => cli,
        Err(stop) => return stop.report(),
    };
    // Before any thread: what the parent blocked or ignored is not passed on,
    // nor the fds it left open (a test runner's, a shell's): services start
    // with stdin, stdout and stderr only.
    let reset = signals::reset_inherited();
    cloexec_inherited_fds();
    // The lowest free fds, for what each service's child keeps (`spawn`).
    let reserved = corral::spawn::reserve();
    // 0. s6-overlay's variables, when corral's own settings are absent.
    let s6 = match s6_env() {
        Ok(s6) => s6,
        Err(code) => return code,
    };
    let mut log_args = cli.log;
    if let Some(level) = s6.log_level().filter(|_| !log_args.level_given) {
        log_args.log_level = level;
    }
    // Kept to the end: at exit, corral's last lines get a moment to reach stderr.
    let _log = log::init(&log_args);
    if let Err(err) = reserved {
        warn!(%err, "cannot open /dev/null: services will not start");
    }
    if !reset.is_empty() {
        info!(signals = ?reset, "signals ignored by corral's parent reset to their default");
    }
    for (name, why) in
        S6Env::without_effect(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))
    {
        info!(variable = %name, "no effect under corral: {why}");
    }
    let shutdown_timeout = s6.shutdown_timeout(cli.shutdown_timeout);
    if cli.shutdown_timeout.is_none()
        && (s6.services_gracetime.is_some() || s6.kill_gracetime.is_some())
    {
        info!(
            budget_ms = shutdown_timeout.as_millis() as u64,
            "shutdown budget from S6_SERVICES_GRACETIME + S6_KILL_GRACETIME"
        );
    }

    // s6-overlay's stage-2 hook may change the tree: it runs before it is read.
    if !s6.stage2_hook.is_empty()
        && let Err(code) = stage2_hook(&s6)
    {
        return code;
    }

    // 1. Every definition, every script: all errors at once, before anything runs.
    let service_dirs = cli.dirs.services();
    let mut load_options = s6.load_options();
    load_options.s6_rc_dir = cli.dirs.s6_rc_dir(&s6.default_tree());
    load_options.s6_bundle_dir = Some(s6.bundle_dir());
    let spec = match config::load_with(&service_dirs, &load_options) {
        Ok(spec) => spec,
        Err(errors) => {
            report(&errors);
            return EXIT_USAGE;
        }
    };
    // Open files and processes for this many services (`capacity`).
    let capacity = corral::capacity::check(&spec.services);
    if let Some((from, to)) = capacity.raised {
        info!(
            from,
            to, "open-file limit raised for corral itself; services keep the one it had"
        );
    }
    for warning in &capacity.warnings {
        warn!("{warning}");
    }
    let scripts = cli::collect_scripts(&cli.dirs.init())
        .and_then(|init| cli::collect_scripts(&cli.dirs.finish()).map(|finish| (init, finish)));
    let (init, finish) = match scripts {
        Ok(scripts) => scripts,
        Err(err) => {
            eprintln!("corral: {err}");
            return EXIT_USAGE;
        }
    };
    if spec.services.is_empty() && cli.command.is_empty() {
        warn!(dirs = ?service_dirs, "no services and no command: nothing to supervise");
    }

    // What s6-overlay's stage 2 leaves in /run/s6 for scripts, when they
    // are s6-overlay's: corral's supervisor commands first on every PATH,
    // then the container environment (with that PATH) for with-contenv.
    if spec
        .services
        .iter()
        .any(|s| s.origin != config::Origin::Toml)
    {
        s6_stage();
    }

    // 2. Signal handlers before the first spawn, so no exit and no stop request is lost.
    let (tx, rx) = crossbeam_channel::unbounded();
    if let Err(err) = signals::start(tx.clone()) {
        error!(%err, "cannot set up signal handling");
        return EXIT_SYSTEM;
    }

    // 3. PID 1 reaps everything; anywhere else, become the reaper of our subtree.
    let pid1 = std::process::id() == 1;
    if !pid1 {
        become_subreaper();
    }

    // 4. The control socket, before the first spawn: its umask window must
    //    not overlap anything else creating files, and a second corral on
    //    the same socket must fail before it starts anything.
    let logs = output::Logs::new();
    let server = match control::server_path(
        cli.socket.as_deref().filter(|p| !p.as_os_str().is_empty()),
    ) {
        Some(path) => match Server::start(&path, tx.clone(), logs.clone()) {
            Ok(server) => Some(server),
            Err(err) => {
                // Like a definitions error: plain text, whatever the log settings.
                eprintln!("corral: {err}");
                return EXIT_SYSTEM;
            }
        },
        None => {
            warn!(
                looked_at = ?control::default_candidates(),
                "no writable directory for the control socket: running without one (corral ctl will not work); set --socket or CORRAL_SOCKET"
            );
            None
        }
    };

    // 5. The adapter threads: log files, output, readiness (sd_notify,
    //    notification fds), file watches, and the optional HTTP endpoint.
    //    Each service's log file is made now (its directory too), so one
    //    that cannot be is an error before anything starts.
    for svc in &spec.services {
        if let Some(log_file) = &svc.log_file
            && let Err(err) = output::file::LogFiles::prepare(log_file)
        {
            eprintln!("{}: log-file: {err}", svc.source.display());
            return EXIT_USAGE;
        }
    }
    let log_files = match output::file::LogFiles::start() {
        Ok(files) => files,
        Err(err) => {
            error!(%err, "cannot start the log-file thread");
            return EXIT_SYSTEM;
        }
    };
    logs.attach_files(log_files.clone());
    let output = match output::Output::start(logs.clone(), cli.output) {
        Ok(output) => output,
        Err(err) => {
            error!(%err, "cannot start the output thread");
            return EXIT_SYSTEM;
        }
    };
    // Syslog messages become lines of the pseudo-service `syslog`: a
    // service of that name would be mixed with them.
    let syslog = match &cli.syslog {
        Some(_) if spec.get(output::format::SYSLOG).is_some() => {
            eprintln!(
                "corral: --syslog: a service is named \"{}\", the name syslog messages are written under; rename it or drop --syslog",
                output::format::SYSLOG
            );
            return EXIT_USAGE;
        }
        Some(path) => {
            let lines = output.syslog_lines();
            let started = corral::syslog::start(path, move |record| {
                let line = output::SyslogLine {
                    time: record.ts,
                    pid: record.pid,
                    priority: output::Priority {
                        facility: record.facility_name(),
                        severity: record.severity_name(),
                    },
                    text: record.text_line(),
                };
                // Full: the record goes back, and the syslog thread waits.
                lines.send(line).map_err(|_| record)
            });
            match started {
                Ok(syslog) => Some(syslog),
                Err(err) => {
                    eprintln!("corral: --syslog {}: {err}", path.display());
                    return EXIT_SYSTEM;
                }
            }
        }
        None => None,
    };
    let notify = match notify::Notify::start(tx.clone()) {
        Ok(notify) => notify,
        Err(err) => {
            error!(%err, "cannot start the readiness thread");
            return EXIT_SYSTEM;
        }
    };
    let watcher = match watch::Watcher::start(tx.clone()) {
        Ok(watcher) => watcher,
        Err(err) => {
            error!(%err, "cannot start the file watcher");
            return EXIT_SYSTEM;
        }
    };
    if let Some(addr) = cli.http.as_deref().filter(|a| !a.is_empty())
        && let Err(err) = http::start(addr, tx.clone(), logs.clone())
    {
        eprintln!("corral: --http {addr}: {err}");
        return EXIT_SYSTEM;
    }

    // 6. The loop. From here on, corral must not die.
    info!(
        services = spec.services.len(),
        pid1,
        dirs = %service_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"),
        "corral starting"
    );
    // S6_CMD_ARG0 goes before the main COMMAND, as in s6-overlay.
    let main =
        (!cli.command.is_empty()).then(|| [s6.cmd_arg0.clone(), cli.command.clone()].concat());
    let pipelines = supervisor::Pipelines::new(&spec);
    let mut sup = Supervisor::new(spec, main, init, finish, shutdown_timeout);
    sup.init_failure = s6.init_failure();
    sup.cmd_wait_maxtime = s6.cmd_wait_maxtime;
    sup.finish_script_timeout = s6.kill_finish_maxtime;
    sup.main_receives_signals = s6.cmd_receive_signals;
    sup.syslog = syslog.is_some();
    let code = supervisor::run(
        sup,
        Setup {
            socket: server.as_ref().map(|s| s.path().to_path_buf()),
            inputs: rx,
            inputs_tx: tx.clone(),
            output,
            notify,
            watcher,
            service_dirs: service_dirs.clone(),
            load_options,
            pid1,
            pipelines,
            log_files,
        },
    );
    // `tx` lived until here: the loop's input channel never disconnects.
    drop(tx);
    if let Some(syslog) = syslog {
        syslog.close();
    }
    if let Some(server) = server {
        server.close(Instant::now() + CONTROL_LINGER);
    }
    info!(code, "corral exiting");
    // Exit statuses are 0..=255; a wider code wraps as the kernel would.
    (code & 0xff) as u8
}

/// Runs `S6_STAGE2_HOOK` to its end. A failure stops the container when
/// `S6_BEHAVIOUR_IF_STAGE2_FAILS` says so (with the hook's code), else it
/// is a warning, as in s6-overlay.
fn stage2_hook(s6: &S6Env) -> Result<(), u8> {
    let stop = s6.init_failure() == config::InitFailure::Stop;
    let code = match corral::reaper::run_before_loop(&s6.stage2_hook) {
        Ok(exit) if exit.success() => {
            info!(hook = %s6.stage2_hook.join(" "), "S6_STAGE2_HOOK done");
            return Ok(());
        }
        Ok(exit) => {
            warn!(hook = %s6.stage2_hook.join(" "), %exit, "S6_STAGE2_HOOK failed");
            exit.code()
        }
        Err(err) => {
            warn!(hook = %s6.stage2_hook.join(" "), %err, "S6_STAGE2_HOOK could not run");
            EXIT_SYSTEM.into()
        }
    };
    if stop {
        error!(
            "stopping: S6_STAGE2_HOOK failed and S6_BEHAVIOUR_IF_STAGE2_FAILS stops the container"
        );
        return Err(u8::try_from(code & 0xff).unwrap_or(EXIT_SYSTEM));
    }
    Ok(())
}

/// `/run/s6` as s6-overlay's stage 2 leaves it (`s6::stage`): links to
/// corral for the commands that talk to a supervisor, first on `PATH`
/// (set here, before any thread, so every process corral starts inherits
/// it), and the container environment, with that `PATH`. A problem is a
/// warning: scripts that need these fail on their own.
fn s6_stage() {
    let dir = s6::stage::runtime_dir();
    match std::env::current_exe().and_then(|exe| s6::stage::install_commands(&dir, &exe)) {
        Ok(bin) => {
            let path = s6::stage::path_with(&bin, std::env::var_os("PATH").as_deref());
            // SAFETY: no other thread exists yet (the signal, output and
            // control threads start after this), so nothing reads the
            // environment while it changes.
            unsafe { std::env::set_var("PATH", path) };
        }
        Err(err) => {
            warn!(dir = %dir.display(), %err, "cannot link corral's s6 commands; scripts find the image's own s6-svc, s6-svwait...")
        }
    }
    match s6::stage::write_container_environment(&dir, std::env::vars_os()) {
        Ok(envdir) => {
            info!(dir = %envdir.display(), "container environment written for with-contenv")
        }
        Err(err) => {
            warn!(dir = %dir.display(), %err, "cannot write the container environment; with-contenv gives services corral's environment only")
        }
    }
}

/// Mark every fd above stderr close-on-exec: corral opened none yet, so
/// these came from its parent, and no service should inherit them.
fn cloexec_inherited_fds() {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return;
    }
    // Before Linux 5.11: one by one.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on an fd number; a closed one (the read_dir's own) fails harmlessly.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// prctl(2) PR_SET_CHILD_SUBREAPER: orphans of our subtree are re-parented
/// to corral instead of to the real PID 1, so corral reaps them.
fn become_subreaper() {
    // SAFETY: a plain prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        warn!(err = %std::io::Error::last_os_error(), "cannot become a child subreaper; orphans will not be reaped");
    }
}
