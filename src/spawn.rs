//! The one way a service's processes are started: a vfork-style `clone`
//! whose child copies only a handful of fds, so that a start costs the same
//! with 5 services or 5000.
//!
//! A `fork` (what std's `Command` does once a `pre_exec` is given) copies
//! corral's page tables, and its child inherits corral's whole fd table:
//! two pipe ends per service, each closed again one by one at exec
//! (close-on-exec). With 5000 services that was over a millisecond of
//! kernel time per start, so starting N services cost O(N^2).
//!
//! Here the child shares corral's memory and fd table for the few system
//! calls before its exec (`CLONE_VM | CLONE_VFORK | CLONE_FILES`, as
//! glibc's `posix_spawn`), and its first call, `close_range(K, ~0,
//! CLOSE_RANGE_UNSHARE)`, gives it a table of its own holding only fds
//! below K (close_range(2)): fds 0, 1 and 2 and four reserved `Slots`, into
//! which the parent has put what the child needs (its stdin, stdout,
//! stderr and notification fd). Before kernel 5.9 that call fails and the
//! child unshares the whole table instead (what a fork would have copied).
//!
//! The calling thread is suspended until the child has exec'd or exited
//! (`CLONE_VFORK`), so the child may write its error into the parent's
//! memory, and the slots, the child's stack and every prepared string stay
//! valid while it runs. corral's other threads go on, which is why the
//! child makes raw system calls only: no allocation, no lock, and no libc
//! wrapper that acts on the whole process (glibc's setuid, setgid and
//! setgroups signal every thread of the caller's process: in a child
//! sharing corral's memory, those would be corral's threads). Every signal
//! is blocked around the clone, so no handler of corral's runs in the
//! child; it sets every disposition to its default before it unblocks.
//!
//! Only the supervisor thread spawns (the slots are behind a mutex all the
//! same). A child that fails before its exec is reaped here, at once, by
//! `reaper::reap_failed_start`: nobody else knows its pid.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::Mutex;

use nix::sys::resource::Resource;
use nix::unistd::Pid;

/// What one of the child's fds 0, 1 and 2 is.
pub enum Stdio {
    /// corral's own.
    Inherit,
    /// `/dev/null`.
    Null,
    /// This fd (closed in corral once the spawn is done, by its owner).
    Fd(RawFd),
}

/// Everything the child needs, prepared before the clone.
pub struct Exec {
    /// The program, for errors.
    pub program: String,
    pub argv: Vec<String>,
    /// The whole environment, each name once.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<std::path::PathBuf>,
    pub stdio: [Stdio; 3],
    /// A pipe's write end that becomes fd N (s6's notification-fd).
    pub extra: Option<(RawFd, i32)>,
    pub limits: Vec<(Resource, libc::rlim_t)>,
    /// The open-file limit to give back, set before `limits` (corral raised
    /// its own: `capacity::child_nofile`).
    pub nofile: Option<libc::rlimit>,
    pub groups: Vec<libc::gid_t>,
    pub gid: Option<libc::gid_t>,
    pub uid: Option<libc::uid_t>,
}

/// The step of the child that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Fds,
    Chdir,
    Limit,
    Credentials,
    Session,
    Exec,
}

#[derive(Debug)]
pub struct Failed {
    pub step: Step,
    pub error: io::Error,
}

impl Failed {
    fn before(error: io::Error) -> Failed {
        Failed {
            step: Step::Fds,
            error,
        }
    }
}

/// Reserve the slots now, while the lowest fd numbers are free (corral
/// calls this before it opens anything else); later spawns would reserve
/// them on first use otherwise.
pub fn reserve() -> io::Result<()> {
    let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    if slots.is_none() {
        *slots = Some(Slots::open()?);
    }
    Ok(())
}

/// One past the highest slot, once reserved: the child keeps the fds below.
pub fn keep_below() -> Option<RawFd> {
    let slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    slots.as_ref().map(|s| s.keep_below)
}

static SLOTS: Mutex<Option<Slots>> = Mutex::new(None);

/// Four fds kept open on `/dev/null` at the lowest numbers corral had free,
/// close-on-exec, and one more `/dev/null` to put back into them.
struct Slots {
    at: [OwnedFd; 4],
    null: OwnedFd,
    /// One past the highest slot: the child keeps fds below it.
    keep_below: RawFd,
    stack: Stack,
}

impl Slots {
    fn open() -> io::Result<Slots> {
        let null = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
        };
        let at = [null()?, null()?, null()?, null()?];
        let keep_below = at.iter().map(AsRawFd::as_raw_fd).max().unwrap_or(2) + 1;
        Ok(Slots {
            at,
            null: null()?,
            keep_below,
            stack: Stack::new()?,
        })
    }

    /// Put `fd` into slot `i` (close-on-exec: the child clears it on the
    /// copy it keeps).
    fn fill(&self, i: usize, fd: RawFd) -> io::Result<()> {
        let slot = self.at.get(i).map_or(-1, AsRawFd::as_raw_fd);
        // SAFETY: dup3 between fds this process holds.
        if unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Every slot back to `/dev/null`, so that no pipe end stays open here.
    fn clear(&self) {
        for i in 0..self.at.len() {
            let _ = self.fill(i, self.null.as_raw_fd());
        }
    }
}

/// The child's stack: 64 KiB above a guard page, mapped once and used by
/// one child at a time (the caller waits while it runs).
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping belongs to no thread; it is only used under SLOTS' lock.
unsafe impl Send for Stack {}

const STACK: usize = 64 * 1024;
const GUARD: usize = 4096;

impl Stack {
    fn new() -> io::Result<Stack> {
        let len = STACK + GUARD;
        // SAFETY: a fresh anonymous private mapping; the guard page is made
        // inaccessible so that an overflow faults instead of writing below.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            libc::mprotect(base, GUARD, libc::PROT_NONE);
            Ok(Stack { base, len })
        }
    }

    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, where a stack starts.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

/// What the child reads, all prepared in the parent, and where it writes
/// why it failed.
struct Child {
    /// The paths to try, in order (PATH searched as execvp(3) does).
    candidates: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// `/bin/sh`, the candidate, the arguments: for a file without `#!`
    /// (ENOEXEC), which execvp(3) runs with the shell.
    sh_argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    keep_below: RawFd,
    /// Where the slots are copied first: above every target and slot.
    fresh_from: RawFd,
    /// (slot, target fd) pairs to install.
    moves: Vec<(RawFd, RawFd)>,
    limits: Vec<(libc::c_int, libc::rlimit)>,
    groups: Vec<libc::gid_t>,
    gid: Option<libc::gid_t>,
    uid: Option<libc::uid_t>,
    /// Written by the child: the step that failed, and errno.
    failed: Option<(Step, i32)>,
}

const SH: &std::ffi::CStr = c"/bin/sh";

/// Start `exec`; its pid, once the child has exec'd.
pub fn spawn(exec: &Exec) -> Result<Pid, Failed> {
    let mut guard = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        *guard = Some(Slots::open().map_err(Failed::before)?);
    }
    let Some(slots) = guard.as_ref() else {
        return Err(Failed::before(io::Error::other("no fd slots")));
    };
    let env: Vec<CString> = exec
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone().into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(kv)
        })
        .collect::<Result<_, _>>()?;
    let argv: Vec<CString> = exec
        .argv
        .iter()
        .map(|a| cstring(a.clone().into_bytes()))
        .collect::<Result<_, _>>()?;
    let path = exec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    let candidates = candidates(&exec.program, path)?;
    let mut child = Child {
        argv_ptrs: argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect(),
        sh_argv: std::iter::once(SH.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .chain(argv.iter().skip(1).map(|a| a.as_ptr()))
            .chain(std::iter::once(std::ptr::null()))
            .collect(),
        envp: env
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect(),
        candidates,
        cwd: exec
            .cwd
            .as_deref()
            .map(|p| cstring(p.as_os_str().as_bytes().to_vec()))
            .transpose()?,
        keep_below: slots.keep_below,
        fresh_from: slots.keep_below,
        moves: Vec::with_capacity(4),
        limits: exec
            .nofile
            .map(|limit| (libc::RLIMIT_NOFILE as libc::c_int, limit))
            .into_iter()
            .chain(exec.limits.iter().map(|&(resource, value)| {
                (
                    resource as libc::c_int,
                    libc::rlimit {
                        rlim_cur: value,
                        rlim_max: value,
                    },
                )
            }))
            .collect(),
        groups: exec.groups.clone(),
        gid: exec.gid,
        uid: exec.uid,
        failed: None,
    };
    // What goes where: fds 0-2 unless inherited, then the extra fd.
    let wanted = exec
        .stdio
        .iter()
        .enumerate()
        .filter_map(|(target, stdio)| match *stdio {
            Stdio::Inherit => None,
            Stdio::Null => Some((slots.null.as_raw_fd(), target as RawFd)),
            Stdio::Fd(fd) => Some((fd, target as RawFd)),
        })
        .chain(exec.extra);
    for (i, (fd, target)) in wanted.enumerate() {
        if let Err(err) = slots.fill(i, fd) {
            slots.clear();
            return Err(Failed::before(err));
        }
        let slot = slots.at.get(i).map_or(-1, AsRawFd::as_raw_fd);
        child.moves.push((slot, target));
        child.fresh_from = child.fresh_from.max(target + 1);
    }
    let result = clone_vfork(&mut child, &slots.stack);
    slots.clear();
    drop(guard);
    let pid = result.map_err(Failed::before)?;
    match child.failed {
        None => Ok(pid),
        Some((step, errno)) => {
            crate::reaper::reap_failed_start(pid);
            Err(Failed {
                step,
                error: io::Error::from_raw_os_error(errno),
            })
        }
    }
}

fn cstring(bytes: Vec<u8>) -> Result<CString, Failed> {
    CString::new(bytes).map_err(|_| {
        Failed::before(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        ))
    })
}

/// The files execvp(3) would try for `program`: itself when it names a
/// path, else it in each directory of `path` (or of `/bin:/usr/bin`), an
/// empty entry being the working directory.
fn candidates(program: &str, path: Option<&OsStr>) -> Result<Vec<CString>, Failed> {
    if program.is_empty() {
        return Err(Failed {
            step: Step::Exec,
            error: io::Error::from_raw_os_error(libc::ENOENT),
        });
    }
    if program.contains('/') {
        return Ok(vec![cstring(program.as_bytes().to_vec())?]);
    }
    let path = path.map_or(b"/bin:/usr/bin".as_slice(), OsStr::as_bytes);
    path.split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b".".as_slice() } else { dir };
            let mut file = Path::new(OsStr::from_bytes(dir))
                .join(program)
                .into_os_string()
                .into_vec();
            file.shrink_to_fit();
            cstring(file)
        })
        .collect()
}

/// Every signal blocked on this thread while the child runs (it inherits
/// the mask), then the old mask back.
fn clone_vfork(child: &mut Child, stack: &Stack) -> io::Result<Pid> {
    const KERNEL_SIGSET: usize = 8;
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask with pointers to live 8-byte sets (the kernel's
    // size); SIGKILL and SIGSTOP are left out by the kernel itself.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old as *mut u64,
            KERNEL_SIGSET,
        );
    }
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD;
    // SAFETY: the child runs `child_main` on its own stack with a pointer
    // to `child`, which outlives it: CLONE_VFORK returns only once the
    // child has exec'd or exited. `child_main` makes raw system calls only.
    let pid = unsafe { libc::clone(child_main, stack.top(), flags, (child as *mut Child).cast()) };
    let err = io::Error::last_os_error();
    // SAFETY: as above, restoring the saved mask.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            KERNEL_SIGSET,
        );
    }
    if pid < 0 {
        return Err(err);
    }
    Ok(Pid::from_raw(pid))
}

/// errno, read right after the call that failed.
fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// The child, between clone and exec. Raw system calls only (see the
/// module comment); on a failure it records the step and errno and exits.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Child`, alive and not touched by the
    // parent until this process has exec'd or exited.
    let child = unsafe { &mut *arg.cast::<Child>() };
    let step = match child_steps(child) {
        Ok(never) => match never {},
        Err(step) => step,
    };
    child.failed = Some((step, errno()));
    // SAFETY: _exit ends this process only, without running atexit
    // handlers or flushing stdio (they are corral's).
    unsafe { libc::_exit(127) }
}

enum Never {}

fn child_steps(child: &mut Child) -> Result<Never, Step> {
    // SAFETY: system calls only (the whole function), with values prepared
    // by the parent and pointers into `child`, which lives until this
    // process execs.
    unsafe {
        // A table of our own: fds below `keep_below` only; or, before Linux
        // 5.9, a copy of the whole table (close-on-exec closes the rest).
        if libc::syscall(
            libc::SYS_close_range,
            child.keep_below as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        ) != 0
            && libc::syscall(libc::SYS_unshare, libc::CLONE_FILES) != 0
        {
            return Err(Step::Fds);
        }
        // Each slot to a fresh number above every target first (a target
        // may be a slot's number), then onto its target, which dup2 leaves
        // inheritable; the slots and the fresh copies close at exec.
        let mut fresh = [-1 as RawFd; 4];
        for (&(slot, _), to) in child.moves.iter().zip(fresh.iter_mut()) {
            *to = libc::fcntl(slot, libc::F_DUPFD_CLOEXEC, child.fresh_from);
            if *to < 0 {
                return Err(Step::Fds);
            }
        }
        for (&(_, target), &from) in child.moves.iter().zip(fresh.iter()) {
            if libc::dup2(from, target) < 0 {
                return Err(Step::Fds);
            }
        }
        if let Some(cwd) = &child.cwd
            && libc::chdir(cwd.as_ptr()) != 0
        {
            return Err(Step::Chdir);
        }
        // Limits before the switch of user, which drops the capability that
        // raising one needs; groups, gid, then uid: after setuid we could not.
        for (resource, value) in &child.limits {
            if libc::syscall(
                libc::SYS_prlimit64,
                0,
                *resource,
                value as *const libc::rlimit,
                std::ptr::null_mut::<libc::rlimit>(),
            ) != 0
            {
                return Err(Step::Limit);
            }
        }
        if !child.groups.is_empty()
            && libc::syscall(
                libc::SYS_setgroups,
                child.groups.len(),
                child.groups.as_ptr(),
            ) != 0
        {
            return Err(Step::Credentials);
        }
        if let Some(gid) = child.gid
            && libc::syscall(libc::SYS_setgid, gid) != 0
        {
            return Err(Step::Credentials);
        }
        if let Some(uid) = child.uid
            && libc::syscall(libc::SYS_setuid, uid) != 0
        {
            return Err(Step::Credentials);
        }
        if libc::syscall(libc::SYS_setsid) < 0 {
            return Err(Step::Session);
        }
        // Every disposition to its default, then the mask empty.
        reset_signals();
        let environ = child.envp.as_ptr();
        let mut denied = false;
        let mut last = libc::ENOENT;
        for file in &child.candidates {
            libc::syscall(
                libc::SYS_execve,
                file.as_ptr(),
                child.argv_ptrs.as_ptr(),
                environ,
            );
            let err = errno();
            match err {
                libc::ENOEXEC => {
                    if let Some(at) = child.sh_argv.get_mut(1) {
                        *at = file.as_ptr();
                    }
                    libc::syscall(
                        libc::SYS_execve,
                        SH.as_ptr(),
                        child.sh_argv.as_ptr(),
                        environ,
                    );
                    return Err(Step::Exec);
                }
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => return Err(Step::Exec),
            }
            last = err;
        }
        set_errno(if denied { libc::EACCES } else { last });
        Err(Step::Exec)
    }
}

fn set_errno(value: i32) {
    // SAFETY: errno is this thread's (the parent's, while it is suspended).
    unsafe {
        *libc::__errno_location() = value;
    }
}

/// In a child between fork and exec: every signal to its default
/// disposition and an empty mask, as tini gives its child. Handlers revert
/// at exec by themselves, but an ignored signal stays ignored (execve(2)):
/// corral ignores SIGPIPE, and glibc leaves its two internal real-time
/// signals (32 and 33: thread cancellation and setxid) ignored in a child it
/// starts. glibc's `sigaction` refuses those two (EINVAL), so this uses the
/// system calls. All-zero `struct kernel_sigaction` is SIG_DFL, no flags, an
/// empty mask, on every architecture; the set size is the kernel's (8 bytes,
/// 64 signals).
///
/// Only for a child that will exec at once: in corral itself, glibc needs
/// its handlers for 32 and 33.
/// In a child between fork and exec: the open-file limit corral had before
/// it raised its own (`capacity`), if it did.
pub fn restore_nofile(limit: Option<libc::rlimit>) {
    if let Some(limit) = limit {
        // SAFETY: setrlimit (a system call) reads one valid `rlimit`.
        unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

pub fn reset_signals() {
    const KERNEL_SIGSET: usize = 8;
    let default = [0u64; 4];
    let empty = 0u64;
    // SAFETY: rt_sigaction and rt_sigprocmask with pointers to live, large
    // enough buffers; both are async-signal-safe. Failures (SIGKILL and
    // SIGSTOP cannot be changed) are ignored: nothing better can be done
    // between fork and exec.
    unsafe {
        for sig in 1..=libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                KERNEL_SIGSET,
            );
        }
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            KERNEL_SIGSET,
        );
    }
}
