//! The one way a service's processes are started: a vfork-style `clone`
//! whose child copies only a handful of fds, so that a start costs the same
//! with 5 services or 5000; and whose children exec side by side, so that
//! starting 100 costs what a plain fork loop does.
//!
//! A `fork` (what std's `Command` does once a `pre_exec` is given) copies
//! corral's page tables, and its child inherits corral's whole fd table:
//! two pipe ends per service, each closed again one by one at exec
//! (close-on-exec). With 5000 services that was over a millisecond of
//! kernel time per start, so starting N services cost O(N^2).
//!
//! Here the child shares corral's memory and fd table for the few system
//! calls before its exec (`CLONE_VM | CLONE_FILES`, as glibc's
//! `posix_spawn`), and its first call, `close_range(K, ~0,
//! CLOSE_RANGE_UNSHARE)`, gives it a table of its own holding only fds
//! below K (close_range(2)): fds 0, 1 and 2 and four reserved `Slots`, into
//! which the parent has put what the child needs (its stdin, stdout,
//! stderr and notification fd). Before kernel 5.9 that call fails and the
//! child unshares the whole table instead (what a fork would have copied).
//!
//! `start` does not wait for the exec (as `posix_spawn`'s `CLONE_VFORK`
//! would): on this machine that wait was most of a start, and a C loop
//! that forks without waiting started 100 services 1.2x faster. Each child
//! gets its own stack and its own prepared block (`Child`), and one futex
//! word (`Shared::state`) tells where it is: `STARTED` from the clone,
//! `UNSHARED` once it has a table of its own (the slots may be filled for
//! the next child), 0 once its exec or its exit released corral's memory
//! (`CLONE_CHILD_CLEARTID`: the kernel clears the word and wakes the
//! futex). `Started::finish` waits for 0, then reads why it failed, if it
//! did; only then are its stack and block freed. A child not past its exec
//! 10 s after its clone (stopped: SIGSTOP cannot be blocked; or stuck) is
//! killed, and its spawn fails: nothing a service sends to a child of its
//! own user holds the loop for longer. `release` waits for the
//! last child to unshare and puts `/dev/null` back into the slots, so that
//! no pipe end stays open here.
//!
//! The calling thread goes on while its children run in its memory, and
//! so do corral's other threads: the child makes raw system calls only
//! (`sys`), which never write `errno` (it would be the spawning thread's,
//! which shares its thread pointer), no allocation, no lock, and no libc
//! wrapper that acts on the whole process (glibc's setuid, setgid and
//! setgroups signal every thread of the caller's process: in a child
//! sharing corral's memory, those would be corral's threads). It writes
//! only its own `Shared`. Every signal is blocked around the clone, so no
//! handler of corral's runs in the child; it sets every disposition to its
//! default before it unblocks. On an architecture `sys` has no assembly
//! for, the clone waits for the exec (`CLONE_VFORK`), as before.
//!
//! Only the supervisor thread spawns (the slots are behind a mutex all the
//! same), and it reaps nothing while a child is in flight
//! (`supervisor::execute::Flights`): a child that fails before its exec is
//! reaped by `Started::finish`, by its pid (`reaper::reap_failed_start`).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The last child started, until it has a table of its own: the slots
    /// are its until then.
    reading: Option<Arc<Shared>>,
    /// Stacks of children that are done, for the next ones.
    spare: Vec<Stack>,
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
            reading: None,
            spare: Vec::new(),
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

    /// Wait until the last child started no longer reads the slots.
    fn settle(&mut self) {
        if let Some(shared) = self.reading.take() {
            shared.outwait(STARTED);
        }
    }

    /// Every slot back to `/dev/null`, so that no pipe end stays open here.
    fn clear(&self) {
        for i in 0..self.at.len() {
            let _ = self.fill(i, self.null.as_raw_fd());
        }
    }
}

/// A child's stack: 64 KiB above a guard page.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping belongs to no thread; one child at a time runs on it.
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

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made; no child runs on it any more
        // (`Started` gives it back only once its child is done).
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// `Shared::state`: from the clone until the child has its own fd table.
const STARTED: i32 = 1;
/// The child has its own fd table; it has not exec'd yet. (Then 0: it
/// exec'd or exited, written by the kernel.)
const UNSHARED: i32 = 2;

/// How long a child may take from its clone to its exec: far above any
/// exec, and the longest a child that is stopped (SIGSTOP cannot be
/// blocked, and a service of the user the child switches to may send it
/// between that switch and the exec) or stuck can hold the loop. Then it
/// is killed, and the spawn fails.
const EXEC_WITHIN: Duration = Duration::from_secs(10);

/// What the child tells the parent while both run: only atomics, written
/// by the child (and the kernel), read by the parent.
struct Shared {
    /// The futex word: `STARTED`, `UNSHARED`, then 0.
    state: AtomicI32,
    /// Why the child failed, once the word is 0: the step (`Step as u64 + 1`)
    /// above errno; 0: it exec'd.
    failed: AtomicU64,
    /// The child, once cloned (the parent writes it).
    pid: AtomicI32,
    /// When the child must be past its exec.
    deadline: Instant,
    /// The parent killed it at `deadline`.
    killed: AtomicBool,
}

impl Shared {
    fn new(within: Duration) -> Shared {
        Shared {
            state: AtomicI32::new(STARTED),
            failed: AtomicU64::new(0),
            pid: AtomicI32::new(0),
            deadline: Instant::now() + within,
            killed: AtomicBool::new(false),
        }
    }

    /// Block while `state` is `value`, until `deadline` if one is given
    /// (futex(2): the kernel compares and sleeps in one step, so no wake
    /// is lost); whether it changed.
    fn wait_while(&self, value: i32, deadline: Option<Instant>) -> bool {
        while self.state.load(Ordering::Acquire) == value {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                return false;
            }
            let timeout = left.map(|left| libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            });
            let timeout_ptr = timeout
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: FUTEX_WAIT on a live, aligned i32 with a live relative
            // timeout or none; it returns at once when the word is no longer
            // `value`. Not the private form: the kernel's wake at the
            // child's exec or exit is the shared one.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.state.as_ptr(),
                    libc::FUTEX_WAIT,
                    value,
                    timeout_ptr,
                );
            }
        }
        true
    }

    /// Wait until the child is past `value`; one that is not by its
    /// deadline is killed (SIGKILL ends a stopped child too), then waited
    /// for until it has exited (not reaped): its exit releases the memory
    /// it runs in.
    fn outwait(&self, value: i32) {
        // Once killed and exited, the word may never change: no second
        // kill (the pid may be reaped and reused by then).
        if self.killed.load(Ordering::Acquire) || self.wait_while(value, Some(self.deadline)) {
            return;
        }
        self.killed.store(true, Ordering::Release);
        let pid = self.pid.load(Ordering::Acquire);
        if pid > 0 {
            // SAFETY: kill(2) of our own child, not yet reaped (only
            // `Started::finish` reaps it, after this).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            // Its exit, not its futex word: a child killed while stopped
            // before its exec was seen to leave the word set.
            crate::reaper::wait_exited(Pid::from_raw(pid));
        }
    }
}

/// What the child reads, all prepared in the parent.
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
    /// `SIGRTMAX()`, asked in the parent (a libc call).
    sigrtmax: libc::c_int,
    shared: Arc<Shared>,
    /// What the pointers above point into.
    _strings: (Vec<CString>, Vec<CString>),
}

const SH: &std::ffi::CStr = c"/bin/sh";

/// A child `start` cloned: running, perhaps not yet exec'd.
pub struct Started {
    pid: Pid,
    /// `Box::into_raw` of its `Child`: the child alone uses it until its
    /// exec or exit.
    child: *mut Child,
    shared: Arc<Shared>,
    stack: Option<Stack>,
}

impl Started {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Wait until the child has exec'd (its pid) or failed (why; it is
    /// reaped here).
    pub fn finish(mut self) -> Result<Pid, Failed> {
        self.done();
        if self.shared.killed.load(Ordering::Acquire) {
            crate::reaper::reap_failed_start(self.pid);
            return Err(Failed {
                step: Step::Exec,
                error: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "not past its exec {:?} after its start (stopped or stuck): killed",
                        EXEC_WITHIN
                    ),
                ),
            });
        }
        match decode(self.shared.failed.load(Ordering::Acquire)) {
            None => Ok(self.pid),
            Some((step, errno)) => {
                crate::reaper::reap_failed_start(self.pid);
                Err(Failed {
                    step,
                    error: io::Error::from_raw_os_error(errno),
                })
            }
        }
    }

    /// Wait for the word to be 0, then free what the child used.
    fn done(&mut self) {
        self.shared.outwait(STARTED);
        self.shared.outwait(UNSHARED);
        if !self.child.is_null() {
            // SAFETY: from `Box::into_raw` in `start`; the child is done
            // with it (it exec'd or exited: the word is 0), and it is freed once.
            drop(unsafe { Box::from_raw(self.child) });
            self.child = std::ptr::null_mut();
        }
        if let Some(stack) = self.stack.take() {
            let mut guard = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_mut() {
                Some(slots) => slots.spare.push(stack),
                None => drop(stack),
            }
        }
    }
}

impl Drop for Started {
    /// Never free memory a child still runs in.
    fn drop(&mut self) {
        self.done();
    }
}

fn encode(step: Step, errno: i32) -> u64 {
    ((step as u64 + 1) << 32) | u64::from(errno.unsigned_abs())
}

fn decode(failed: u64) -> Option<(Step, i32)> {
    let step = match failed >> 32 {
        0 => return None,
        1 => Step::Fds,
        2 => Step::Chdir,
        3 => Step::Limit,
        4 => Step::Credentials,
        5 => Step::Session,
        _ => Step::Exec,
    };
    Some((step, (failed & 0xffff_ffff) as i32))
}

/// Start `exec` and return once the child no longer needs anything but
/// its own block: it may not have exec'd yet (`Started::finish`). The slots
/// hold its fds until the next `start` or `release`.
pub fn start(exec: &Exec) -> Result<Started, Failed> {
    start_within(exec, EXEC_WITHIN)
}

/// `start`, the child killed if it is not past its exec `within` this.
fn start_within(exec: &Exec, within: Duration) -> Result<Started, Failed> {
    let mut guard = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        *guard = Some(Slots::open().map_err(Failed::before)?);
    }
    let Some(slots) = guard.as_mut() else {
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
    let shared = Arc::new(Shared::new(within));
    let mut child = Box::new(Child {
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
        sigrtmax: libc::SIGRTMAX(),
        shared: shared.clone(),
        _strings: (argv, env),
    });
    let stack = match slots.spare.pop() {
        Some(stack) => stack,
        None => Stack::new().map_err(Failed::before)?,
    };
    // The previous child may still be copying the slots.
    slots.settle();
    // What goes where: fds 0-2 unless inherited, then the extra fd.
    let null = slots.null.as_raw_fd();
    let wanted = exec
        .stdio
        .iter()
        .enumerate()
        .filter_map(|(target, stdio)| match *stdio {
            Stdio::Inherit => None,
            Stdio::Null => Some((null, target as RawFd)),
            Stdio::Fd(fd) => Some((fd, target as RawFd)),
        })
        .chain(exec.extra);
    for (i, (fd, target)) in wanted.enumerate() {
        if let Err(err) = slots.fill(i, fd) {
            slots.clear();
            slots.spare.push(stack);
            return Err(Failed::before(err));
        }
        let slot = slots.at.get(i).map_or(-1, AsRawFd::as_raw_fd);
        child.moves.push((slot, target));
        child.fresh_from = child.fresh_from.max(target + 1);
    }
    let child = Box::into_raw(child);
    match clone(child, &stack, &shared) {
        Ok(pid) => {
            shared.pid.store(pid.as_raw(), Ordering::Release);
            slots.reading = Some(shared.clone());
            Ok(Started {
                pid,
                child,
                shared,
                stack: Some(stack),
            })
        }
        Err(err) => {
            // SAFETY: from `Box::into_raw` above; no child was made.
            drop(unsafe { Box::from_raw(child) });
            slots.clear();
            slots.spare.push(stack);
            Err(Failed::before(err))
        }
    }
}

/// After a round of `start`s, best once each has finished: once the last
/// child has its own fd table, `/dev/null` back into every slot; one spare
/// stack kept, the others unmapped.
pub fn release() {
    let mut guard = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(slots) = guard.as_mut() {
        slots.settle();
        slots.clear();
        slots.spare.truncate(1);
    }
}

/// Start `exec`; its pid, once the child has exec'd.
pub fn spawn(exec: &Exec) -> Result<Pid, Failed> {
    let result = start(exec).and_then(Started::finish);
    release();
    result
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

/// Clone the child onto `stack`, every signal blocked on this thread
/// meanwhile (the child inherits the mask), then the old mask back.
fn clone(child: *mut Child, stack: &Stack, shared: &Shared) -> io::Result<Pid> {
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
    let wait = if OVERLAP { 0 } else { libc::CLONE_VFORK };
    let flags =
        libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_CHILD_CLEARTID | wait | libc::SIGCHLD;
    // SAFETY: the child runs `child_main` on a stack of its own with a
    // pointer to its `Child`, which is freed only once `shared.state` is
    // 0; the kernel writes 0 to that word when the child's exec or exit
    // releases this memory (CLONE_CHILD_CLEARTID). `child_main` makes raw
    // system calls only. glibc's clone reads the three optional arguments
    // (parent tid, tls, child tid) because of the flags given.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            child.cast(),
            std::ptr::null_mut::<libc::pid_t>(),
            std::ptr::null_mut::<libc::c_void>(),
            shared.state.as_ptr(),
        )
    };
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

/// Whether `start` returns before the exec: where `sys` needs no libc.
const OVERLAP: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// A system call for the child: its result, or -errno. Never `errno`
/// itself: that is the spawning thread's (the child has its thread
/// pointer), which runs on meanwhile.
#[cfg(target_arch = "x86_64")]
unsafe fn sys(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller's: `nr` with arguments the kernel reads as such.
    // The syscall instruction clobbers rcx and r11 and touches no stack.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn sys(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller's: `nr` with arguments the kernel reads as such.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

/// Elsewhere through libc: the clone waits for the exec (`OVERLAP` is
/// false), so the spawning thread is suspended while errno is written.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn sys(nr: libc::c_long, a: [usize; 6]) -> isize {
    // SAFETY: the caller's.
    let ret = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if ret == -1 {
        -(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL) as isize)
    } else {
        ret as isize
    }
}

/// `sys` with its result split: Ok(value) or Err(errno).
///
/// # Safety
/// As `sys`: the arguments must be what the kernel expects for `nr`.
unsafe fn call(nr: libc::c_long, a: [usize; 6]) -> Result<usize, i32> {
    // SAFETY: the caller's.
    let ret = unsafe { sys(nr, a) };
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

/// The child, between clone and exec. Raw system calls only (see the
/// module comment); on a failure it records the step and errno and exits.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is this child's `Child`, alive and not touched by the
    // parent until this process has exec'd or exited.
    let child = unsafe { &mut *arg.cast::<Child>() };
    let (step, errno) = match child_steps(child) {
        Ok(never) => match never {},
        Err(failed) => failed,
    };
    child
        .shared
        .failed
        .store(encode(step, errno), Ordering::Release);
    // SAFETY: exit_group ends this process only (it shares no thread
    // group with corral), without running atexit handlers or flushing
    // stdio (they are corral's); the kernel then clears `state`.
    unsafe {
        sys(libc::SYS_exit_group, [127, 0, 0, 0, 0, 0]);
    }
    127
}

enum Never {}

fn child_steps(child: &mut Child) -> Result<Never, (Step, i32)> {
    let at = |step: Step| move |errno: i32| (step, errno);
    // SAFETY: system calls only (the whole function), with values prepared
    // by the parent and pointers into `child`, which lives until this
    // process execs.
    unsafe {
        // A table of our own: fds below `keep_below` only; or, before Linux
        // 5.9, a copy of the whole table (close-on-exec closes the rest).
        if call(
            libc::SYS_close_range,
            [
                child.keep_below as usize,
                !0u32 as usize,
                libc::CLOSE_RANGE_UNSHARE as usize,
                0,
                0,
                0,
            ],
        )
        .is_err()
        {
            call(
                libc::SYS_unshare,
                [libc::CLONE_FILES as usize, 0, 0, 0, 0, 0],
            )
            .map_err(at(Step::Fds))?;
        }
        // The slots are the parent's again.
        child.shared.state.store(UNSHARED, Ordering::Release);
        let _ = call(
            libc::SYS_futex,
            [
                child.shared.state.as_ptr() as usize,
                libc::FUTEX_WAKE as usize,
                1,
                0,
                0,
                0,
            ],
        );
        // Each slot to a fresh number above every target first (a target
        // may be a slot's number), then onto its target, which dup3 leaves
        // inheritable; the slots and the fresh copies close at exec.
        let mut fresh = [-1 as RawFd; 4];
        for (&(slot, _), to) in child.moves.iter().zip(fresh.iter_mut()) {
            *to = call(
                libc::SYS_fcntl,
                [
                    slot as usize,
                    libc::F_DUPFD_CLOEXEC as usize,
                    child.fresh_from as usize,
                    0,
                    0,
                    0,
                ],
            )
            .map_err(at(Step::Fds))? as RawFd;
        }
        for (&(_, target), &from) in child.moves.iter().zip(fresh.iter()) {
            call(libc::SYS_dup3, [from as usize, target as usize, 0, 0, 0, 0])
                .map_err(at(Step::Fds))?;
        }
        if let Some(cwd) = &child.cwd {
            call(libc::SYS_chdir, [cwd.as_ptr() as usize, 0, 0, 0, 0, 0])
                .map_err(at(Step::Chdir))?;
        }
        // Limits before the switch of user, which drops the capability that
        // raising one needs; groups, gid, then uid: after setuid we could not.
        for (resource, value) in &child.limits {
            call(
                libc::SYS_prlimit64,
                [
                    0,
                    *resource as usize,
                    value as *const libc::rlimit as usize,
                    0,
                    0,
                    0,
                ],
            )
            .map_err(at(Step::Limit))?;
        }
        if !child.groups.is_empty() {
            call(
                libc::SYS_setgroups,
                [
                    child.groups.len(),
                    child.groups.as_ptr() as usize,
                    0,
                    0,
                    0,
                    0,
                ],
            )
            .map_err(at(Step::Credentials))?;
        }
        if let Some(gid) = child.gid {
            call(libc::SYS_setgid, [gid as usize, 0, 0, 0, 0, 0]).map_err(at(Step::Credentials))?;
        }
        if let Some(uid) = child.uid {
            call(libc::SYS_setuid, [uid as usize, 0, 0, 0, 0, 0]).map_err(at(Step::Credentials))?;
        }
        call(libc::SYS_setsid, [0; 6]).map_err(at(Step::Session))?;
        // Every disposition to its default, then the mask empty.
        reset_signals_up_to(child.sigrtmax);
        let environ = child.envp.as_ptr() as usize;
        let mut denied = false;
        let mut last = libc::ENOENT;
        for file in &child.candidates {
            let Err(err) = call(
                libc::SYS_execve,
                [
                    file.as_ptr() as usize,
                    child.argv_ptrs.as_ptr() as usize,
                    environ,
                    0,
                    0,
                    0,
                ],
            ) else {
                continue;
            };
            match err {
                libc::ENOEXEC => {
                    if let Some(script) = child.sh_argv.get_mut(1) {
                        *script = file.as_ptr();
                    }
                    let err = call(
                        libc::SYS_execve,
                        [
                            SH.as_ptr() as usize,
                            child.sh_argv.as_ptr() as usize,
                            environ,
                            0,
                            0,
                            0,
                        ],
                    )
                    .err()
                    .unwrap_or(libc::ENOEXEC);
                    return Err((Step::Exec, err));
                }
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => return Err((Step::Exec, err)),
            }
            last = err;
        }
        Err((Step::Exec, if denied { libc::EACCES } else { last }))
    }
}

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

/// In a child between fork and exec: every signal to its default
/// disposition and an empty mask, as tini gives its child. Handlers revert
/// at exec by themselves, but an ignored signal stays ignored (execve(2)):
/// corral ignores SIGPIPE, and glibc leaves its two internal real-time
/// signals (32 and 33: thread cancellation and setxid) ignored in a child it
/// starts. glibc's `sigaction` refuses those two (EINVAL), so this uses the
/// system calls.
///
/// Only for a child that will exec at once: in corral itself, glibc needs
/// its handlers for 32 and 33.
pub fn reset_signals() {
    reset_signals_up_to(libc::SIGRTMAX());
}

/// `reset_signals` with raw system calls only (for `child_main`). An
/// all-zero `struct kernel_sigaction` is SIG_DFL, no flags, an empty
/// mask, on every architecture; the set size is the kernel's (8 bytes, 64
/// signals). Failures (SIGKILL and SIGSTOP cannot be changed) are ignored:
/// nothing better can be done between fork and exec.
fn reset_signals_up_to(sigrtmax: libc::c_int) {
    const KERNEL_SIGSET: usize = 8;
    let default = [0u64; 4];
    let empty = 0u64;
    for sig in 1..=sigrtmax {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with pointers to live, large enough buffers.
        let _ = unsafe {
            call(
                libc::SYS_rt_sigaction,
                [
                    sig as usize,
                    default.as_ptr() as usize,
                    0,
                    KERNEL_SIGSET,
                    0,
                    0,
                ],
            )
        };
    }
    // SAFETY: rt_sigprocmask with a pointer to a live 8-byte set.
    let _ = unsafe {
        call(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_SETMASK as usize,
                &empty as *const u64 as usize,
                0,
                KERNEL_SIGSET,
                0,
                0,
            ],
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
    }

    fn read_to_eof(fd: OwnedFd) -> String {
        let mut out = String::new();
        std::fs::File::from(fd).read_to_string(&mut out).unwrap();
        out
    }

    fn sh(program: &str, script: &str, stdout: RawFd) -> Exec {
        Exec {
            program: program.into(),
            argv: vec![program.into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: None,
            stdio: [Stdio::Null, Stdio::Fd(stdout), Stdio::Inherit],
            extra: None,
            limits: Vec::new(),
            nofile: None,
            groups: Vec::new(),
            gid: None,
            uid: None,
        }
    }

    #[test]
    fn children_in_flight_together_each_get_their_own_fds_and_result() {
        // 24 children started before any is waited for: every one gets
        // its own stdout (the slots are refilled for the next as soon as
        // the last has its own table), and the ones whose program is not
        // there fail with ENOENT, each in its own place.
        let mut flights = Vec::new();
        for i in 0..24 {
            let (read, write) = pipe();
            let program = if i % 5 == 3 {
                "/nonexistent/sh"
            } else {
                "/bin/sh"
            };
            let exec = sh(
                program,
                &format!("echo child {i}; exec 1>&-; sleep 0.2"),
                write.as_raw_fd(),
            );
            let started = start(&exec);
            drop(write);
            flights.push((i, started, read));
        }
        release();
        for (i, started, read) in flights {
            let result = started.and_then(Started::finish);
            if i % 5 == 3 {
                let failed = result.expect_err("no such program");
                assert_eq!(failed.step, Step::Exec, "child {i}");
                assert_eq!(failed.error.raw_os_error(), Some(libc::ENOENT), "child {i}");
                assert_eq!(read_to_eof(read), "", "child {i}: nothing ran");
            } else {
                let pid = result.unwrap_or_else(|e| panic!("child {i}: {e:?}"));
                assert_eq!(read_to_eof(read), format!("child {i}\n"));
                crate::reaper::reap_failed_start(pid);
            }
        }
    }

    #[test]
    fn a_child_dropped_in_flight_is_waited_for_not_freed_under_it() {
        // Dropping a `Started` waits for the exec, so the child's block
        // outlives its use; the child then runs as if finished.
        let (read, write) = pipe();
        let started = start(&sh("/bin/sh", "echo still here", write.as_raw_fd())).unwrap();
        let pid = started.pid();
        drop(write);
        drop(started);
        release();
        assert_eq!(read_to_eof(read), "still here\n");
        crate::reaper::reap_failed_start(pid);
    }

    #[test]
    fn a_failure_after_the_fds_names_its_step_and_errno() {
        let (read, write) = pipe();
        let mut exec = sh("/bin/sh", "echo no", write.as_raw_fd());
        exec.cwd = Some("/nonexistent-dir".into());
        let result = spawn(&exec);
        drop(write);
        let failed = result.expect_err("no such directory");
        assert_eq!(failed.step, Step::Chdir);
        assert_eq!(failed.error.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(read_to_eof(read), "");
    }

    #[test]
    fn a_child_stopped_before_its_exec_is_killed_at_its_deadline_and_fails() {
        // The child of a service that runs as 65534, stopped by another
        // process of 65534 (the attacker of SPEC 12: SIGSTOP is never
        // blocked) after its switch of user and before its exec: 20,000
        // directories to search first keep it there for some 20-40 ms
        // (each a failed execve; the last fails too, E2BIG: PATH is
        // longer than one argument may be). The stopper is already
        // running when the child starts and only has to read its pid;
        // a child that got through its search before the stop (a loaded
        // machine) is tried again. The wait ends at the deadline: the
        // child is killed and reaped, the spawn fails and says why.
        use std::io::{BufRead, BufReader, Write};
        use std::process::{Command, Stdio};
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root (to start the child as 65534)"
        );
        let within = Duration::from_secs(1);
        for attempt in 1.. {
            #[expect(
                clippy::zombie_processes,
                reason = "reaped by its pid below: no `.wait()` outside the reaper (invariants.rs)"
            )]
            let mut stopper = Command::new("setpriv")
                .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                .args(["sh", "-c", "echo ready; read pid && kill -STOP \"$pid\""])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stopper_pid = Pid::from_raw(stopper.id() as i32);
            let mut ready = String::new();
            BufReader::new(stopper.stdout.take().unwrap())
                .read_line(&mut ready)
                .unwrap();
            assert_eq!(ready, "ready\n");
            let (read, write) = pipe();
            let mut exec = sh("sh", "echo ran", write.as_raw_fd());
            let mut path: Vec<String> = (0..20_000).map(|i| format!("/nonexistent/{i}")).collect();
            path.push("/bin".into());
            exec.env = vec![("PATH".into(), path.join(":").into())];
            exec.groups = vec![65534];
            exec.gid = Some(65534);
            exec.uid = Some(65534);
            let started = start_within(&exec, within).unwrap();
            let pid = started.pid().as_raw();
            drop(write);
            let mut to_stopper = stopper.stdin.take().unwrap();
            writeln!(to_stopper, "{pid}").unwrap();
            drop(to_stopper);
            crate::reaper::reap_failed_start(stopper_pid);
            // The stop takes effect at the child's next return from the
            // kernel; a zombie got through first.
            let state = || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
                stat.rsplit(") ").next().unwrap_or_default().to_string()
            };
            let give_up = Instant::now() + Duration::from_secs(2);
            while !state().starts_with(['T', 'Z']) {
                assert!(
                    Instant::now() < give_up,
                    "neither stopped nor ended: {}",
                    state()
                );
                std::thread::yield_now();
            }
            if state().starts_with('Z') {
                assert!(
                    attempt < 5,
                    "the child ended before its stop {attempt} times"
                );
                let failed = started.finish().expect_err("PATH is too long to exec with");
                assert_eq!(failed.step, Step::Exec, "{failed:?}");
                release();
                continue;
            }
            let begun = Instant::now();
            let failed = started.finish().expect_err("stopped before its exec");
            release();
            assert!(begun.elapsed() < within * 5, "{:?}", begun.elapsed());
            assert_eq!(failed.error.kind(), io::ErrorKind::TimedOut, "{failed:?}");
            assert!(
                failed
                    .error
                    .to_string()
                    .contains("(stopped or stuck): killed"),
                "{}",
                failed.error
            );
            assert_eq!(read_to_eof(read), "", "it never ran");
            return;
        }
    }

    #[test]
    fn a_failure_code_round_trips() {
        for step in [
            Step::Fds,
            Step::Chdir,
            Step::Limit,
            Step::Credentials,
            Step::Session,
            Step::Exec,
        ] {
            assert_eq!(
                decode(encode(step, libc::EACCES)),
                Some((step, libc::EACCES))
            );
        }
        assert_eq!(decode(0), None);
    }
}
