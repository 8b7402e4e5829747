//! Giving memory back once corral is quiet.
//!
//! Most of corral's resident memory is its own code, not data: the kernel
//! maps an executable's cached pages 64 KiB at a time around each page
//! touched ("fault-around"), so starting up (option and TOML parsing,
//! validation, spawning) leaves nearly the whole ~1 MB of code mapped, and
//! so does answering one `ctl status`. None of it is needed while corral
//! waits: an idle corral touches no code at all (it makes no wakeups).
//!
//! So when the supervisor loop has been quiet for a while, [`release`] drops
//! those mappings with `MADV_DONTNEED` and returns freed heap with
//! `malloc_trim`. The pages stay in the page cache; whatever code runs next
//! is mapped again by a minor fault (a few tens of microseconds for the
//! first event after a quiet spell). Only segments that are never written
//! are dropped: for a read-only private file mapping, dropping and
//! refaulting gives back the same bytes, because the kernel refuses writes
//! to a running executable (ETXTBSY) and a replaced file keeps its old
//! inode. Data, relocated data (RELRO), heap and stacks are left alone
//! (except for what `malloc_trim` frees).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::OFlag;

/// The page-aligned address ranges of corral's own executable that are
/// mapped without write permission (headers, read-only data, code).
fn read_only_segments() -> &'static [(usize, usize)] {
    static SEGMENTS: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
    SEGMENTS.get_or_init(find_read_only_segments)
}

/// Found once, through the dynamic linker's list of loaded objects, whose
/// first entry is the executable itself.
fn find_read_only_segments() -> Vec<(usize, usize)> {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => return Vec::new(),
    };
    let mut found = Found {
        page,
        ranges: Vec::new(),
    };
    // SAFETY: the callback only reads the program headers the loader hands
    // it, for the duration of the call, and writes to `found`, which
    // outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(first_object), (&raw mut found).cast::<c_void>());
    }
    found.ranges
}

struct Found {
    page: usize,
    ranges: Vec<(usize, usize)>,
}

/// `dl_iterate_phdr` callback: collects the executable's `PT_LOAD` segments
/// without `PF_W`, shrunk to whole pages (a page shared with a writable
/// segment is never included), then stops the iteration.
unsafe extern "C" fn first_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `Found` passed to dl_iterate_phdr; `info` and its
    // `dlpi_phdr` array of `dlpi_phnum` headers are valid during the call.
    let (found, info) = unsafe { (&mut *data.cast::<Found>(), &*info) };
    if info.dlpi_phdr.is_null() {
        return 1;
    }
    // SAFETY: see above.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    for header in headers {
        if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
            continue;
        }
        let start = (info.dlpi_addr as usize).wrapping_add(header.p_vaddr as usize);
        let end = start.wrapping_add(header.p_memsz as usize);
        let start = start.div_ceil(found.page) * found.page;
        let end = end / found.page * found.page;
        if end > start {
            found.ranges.push((start, end));
        }
    }
    1
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
    let segments = read_only_segments().to_vec();
    let quiet_ms = i32::try_from(quiet.as_millis()).unwrap_or(i32::MAX);
    std::thread::Builder::new()
        .name("memory".into())
        .stack_size(64 * 1024)
        .spawn(move || run(&wake_r, &segments, quiet_ms))?;
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

fn run(wake: &OwnedFd, segments: &[(usize, usize)], quiet_ms: i32) {
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
        release_segments(segments);
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

/// Returns freed heap to the kernel and unmaps corral's code and read-only
/// data pages; the next use maps them again from the page cache.
pub fn release() {
    release_segments(read_only_segments());
}

fn release_segments(segments: &[(usize, usize)]) {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    for &(start, end) in segments {
        // SAFETY: the range lies inside segments of this executable that are
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
        assert!(!segments.is_empty());
        let code = release as *const () as usize;
        assert!(
            segments.iter().any(|&(s, e)| (s..e).contains(&code)),
            "{code:#x} not in {segments:x?}"
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
