//! Giving memory back once corral is quiet.
//!
//! Most of corral's resident memory is code, not data: the kernel maps a
//! file's cached pages 64 KiB at a time around each page touched
//! ("fault-around"), so starting up (option and TOML parsing, validation,
//! spawning) leaves nearly all of corral's ~1 MB of code mapped, and much
//! of libc's; so does answering one `ctl status`. None of it is needed while
//! corral waits: an idle corral runs no code at all (it makes no wakeups).
//! In a container, few processes share the image's libc, so each one's
//! share of libc's mapped pages is large.
//!
//! So when the supervisor loop has been quiet for a while, [`release`] drops
//! those mappings (corral's and its libraries') with `MADV_DONTNEED` and
//! returns freed heap with `malloc_trim`. The pages stay in the page cache;
//! whatever code runs next is mapped again by a minor fault (a few tens of
//! microseconds for the first event after a quiet spell). Only segments that
//! are never written are dropped: for a read-only private file mapping,
//! dropping and refaulting gives back the same bytes: the kernel refuses
//! writes to a running executable (ETXTBSY), a file replaced by rename (as
//! package managers do) keeps its old inode, and a library written in place
//! would change the mapped pages under every process anyway, dropped or not. Data, relocated data (RELRO), heap and
//! stacks are left alone (except for what `malloc_trim` frees), and so is
//! any object with text relocations, whose code was written at load time.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::OFlag;

/// The page-aligned address ranges mapped without write permission
/// (headers, read-only data, code) of corral's executable and of the shared
/// libraries loaded now (libc, libgcc_s, the dynamic linker, NSS modules),
/// from the dynamic linker's list of loaded objects. Read anew for each
/// release: a library unloaded since would otherwise leave a range that
/// some other mapping may reuse.
fn read_only_segments() -> Segments {
    let mut found = Found {
        // SAFETY: sysconf has no preconditions.
        page: match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 0,
        },
        first: true,
        segments: Segments {
            ranges: [(0, 0); MAX_SEGMENTS],
            len: 0,
        },
    };
    if found.page > 0 {
        // SAFETY: the callback only reads the program headers (and dynamic
        // sections) the loader hands it, for the duration of the call, and
        // writes to `found`, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(each_object), (&raw mut found).cast::<c_void>());
        }
    }
    found.segments
}

/// Ranges kept at most: corral and its three libraries have about a dozen.
/// (A fixed array: nothing is freed after the release, which would map
/// malloc's code straight back.)
const MAX_SEGMENTS: usize = 64;

struct Segments {
    ranges: [(usize, usize); MAX_SEGMENTS],
    len: usize,
}

impl Segments {
    fn iter(&self) -> impl Iterator<Item = &(usize, usize)> {
        self.ranges.iter().take(self.len)
    }

    fn push(&mut self, range: (usize, usize)) {
        if let Some(slot) = self.ranges.get_mut(self.len) {
            *slot = range;
            self.len += 1;
        }
    }
}

struct Found {
    page: usize,
    /// The next object is the first: the executable itself.
    first: bool,
    segments: Segments,
}

/// One entry of an ELF dynamic section (`Elf64_Dyn`, elf(5)).
#[repr(C)]
struct ElfDyn {
    d_tag: i64,
    d_un: u64,
}

// ELF dynamic section tags (elf(5)) the libc crate does not name.
const DT_NULL: i64 = 0;
const DT_TEXTREL: i64 = 22;
const DT_FLAGS: i64 = 30;
const DF_TEXTREL: u64 = 0x4;

/// `dl_iterate_phdr` callback: collects an object's `PT_LOAD` segments
/// without `PF_W`, shrunk to whole pages (a page shared with a writable
/// segment is never included). Only the executable and objects loaded from
/// a file path: never the vDSO, which is not a file mapping. An object with
/// text relocations (its code was written at load time) is skipped whole.
unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `Found` passed to dl_iterate_phdr; `info` and its
    // `dlpi_phdr` array of `dlpi_phnum` headers are valid during the call.
    let (found, info) = unsafe { (&mut *data.cast::<Found>(), &*info) };
    let first = std::mem::replace(&mut found.first, false);
    // SAFETY: `dlpi_name` is null or a C string, valid during the call.
    let from_file = !info.dlpi_name.is_null() && unsafe { *info.dlpi_name } == b'/' as libc::c_char;
    if info.dlpi_phdr.is_null() || !(first || from_file) {
        return 0;
    }
    // SAFETY: see above.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let base = info.dlpi_addr as usize;
    for header in headers {
        if header.p_type == libc::PT_DYNAMIC {
            let dynamic = base.wrapping_add(header.p_vaddr as usize) as *const ElfDyn;
            // SAFETY: the loader maps the dynamic section of every object it
            // lists, an array ended by DT_NULL.
            if unsafe { has_text_relocations(dynamic) } {
                return 0;
            }
        }
    }
    for header in headers {
        if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
            continue;
        }
        let start = base.wrapping_add(header.p_vaddr as usize);
        let end = start.wrapping_add(header.p_memsz as usize);
        let start = start.div_ceil(found.page) * found.page;
        let end = end / found.page * found.page;
        if end > start {
            found.segments.push((start, end));
        }
    }
    0
}

/// Whether the dynamic section at `dynamic` asks for text relocations.
///
/// # Safety
/// `dynamic` points to a mapped dynamic section, ended by `DT_NULL`.
unsafe fn has_text_relocations(mut dynamic: *const ElfDyn) -> bool {
    loop {
        // SAFETY: within the section, by the caller's promise.
        let entry = unsafe { &*dynamic };
        match entry.d_tag {
            DT_NULL => return false,
            DT_TEXTREL => return true,
            DT_FLAGS if entry.d_un & DF_TEXTREL != 0 => return true,
            _ => {}
        }
        // SAFETY: not past DT_NULL, which ends the section.
        dynamic = unsafe { dynamic.add(1) };
    }
}

/// Bumped by the supervisor loop for each event it handles.
static ACTIVITY: AtomicU64 = AtomicU64::new(0);
/// The memory thread waits for activity (set by it, cleared by `activity`).
static WAITING: AtomicBool = AtomicBool::new(false);
/// The memory thread's wake pipe (write end).
static WAKE: OnceLock<OwnedFd> = OnceLock::new();

/// Starts the thread that calls `release` once the supervisor loop has had
/// no event for `quiet`, then waits for the next event: one release per
/// quiet spell, and no wakeup at all while corral stays idle.
///
/// The release is done there, not in the loop, because whatever code runs
/// after it is mapped again (64 KiB around each page): the loop would map
/// back its receive path at once, while this thread only runs a few lines
/// of its own before it blocks in poll(2), and every other thread is
/// already blocked in the kernel.
pub fn start(quiet: Duration) -> io::Result<()> {
    let (wake_r, wake_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let quiet_ms = i32::try_from(quiet.as_millis()).unwrap_or(i32::MAX);
    std::thread::Builder::new()
        .name("memory".into())
        .stack_size(64 * 1024)
        .spawn(move || run(&wake_r, quiet_ms))?;
    let _ = WAKE.set(wake_w);
    Ok(())
}

/// Called by the supervisor loop after each event: restarts the quiet
/// period, waking the memory thread if it was waiting for activity.
pub fn activity() {
    ACTIVITY.fetch_add(1, Ordering::Relaxed);
    if WAITING.swap(false, Ordering::AcqRel)
        && let Some(fd) = WAKE.get()
    {
        // A full pipe already holds a wake-up: EAGAIN is fine.
        let _ = nix::unistd::write(fd, &[1]);
    }
}

fn run(wake: &OwnedFd, quiet_ms: i32) {
    let mut pollfd = libc::pollfd {
        fd: wake.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let mut drain = [0u8; 64];
    loop {
        // Until a whole `quiet` passes without an event.
        loop {
            let seen = ACTIVITY.load(Ordering::Relaxed);
            // SAFETY: one valid pollfd; only a sleep here (nobody writes
            // to the pipe while WAITING is false).
            unsafe { libc::poll(&raw mut pollfd, 1, quiet_ms) };
            if ACTIVITY.load(Ordering::Relaxed) == seen {
                break;
            }
        }
        release();
        // Until the next event.
        WAITING.store(true, Ordering::Release);
        loop {
            // SAFETY: one valid pollfd, a buffer of its stated length.
            unsafe {
                libc::poll(&raw mut pollfd, 1, -1);
                libc::read(pollfd.fd, drain.as_mut_ptr().cast(), drain.len());
            }
            if !WAITING.load(Ordering::Acquire) {
                break;
            }
        }
    }
}

/// Returns freed heap to the kernel and unmaps the code and read-only data
/// pages of corral and its libraries; the next use maps them again from the
/// page cache.
pub fn release() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    let segments = read_only_segments();
    for &(start, end) in segments.iter() {
        // SAFETY: the range lies inside segments of loaded objects that are
        // mapped read-only and never written (no PF_W), so dropping the pages
        // loses nothing: they are read back from the same file on the next
        // access. The code running now is among them and faults straight
        // back in when madvise returns.
        unsafe {
            libc::madvise(start as *mut c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// How much of corral's read-only segments is mapped now, in bytes (for the
/// tests; reads `/proc/self/smaps`).
pub fn resident_read_only() -> std::io::Result<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let segments = read_only_segments();
    let mut total = 0;
    let mut counting = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ')
            && let Some((a, b)) = range.split_once('-')
            && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            counting = segments.iter().any(|&(s, e)| a < e && s < b);
        } else if counting && let Some(kb) = line.strip_prefix("Rss:") {
            total += kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                * 1024;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_code_and_read_only_data_but_nothing_writable() {
        let segments = read_only_segments();
        let segments: Vec<_> = segments.iter().copied().collect();
        assert!(!segments.is_empty());
        let code = release as *const () as usize;
        assert!(
            segments.iter().any(|&(s, e)| (s..e).contains(&code)),
            "{code:#x} not in {segments:x?}"
        );
        let libc_code = libc::getpid as *const () as usize;
        assert!(
            segments.iter().any(|&(s, e)| (s..e).contains(&libc_code)),
            "libc's getpid at {libc_code:#x} not in {segments:x?}"
        );
        static mut WRITABLE: u8 = 0;
        let data = (&raw const WRITABLE) as usize;
        assert!(!segments.iter().any(|&(s, e)| (s..e).contains(&data)));
    }

    #[test]
    fn release_drops_mapped_code_and_the_process_goes_on() {
        let before = resident_read_only().unwrap();
        assert!(before > 0);
        release();
        let after = resident_read_only().unwrap();
        assert!(after < before, "{after} >= {before}");
        // Code and constants still work afterwards.
        let text = format!("{:?}", vec![1, 2, 3]);
        assert_eq!(text, "[1, 2, 3]");
    }
}
