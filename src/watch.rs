//! The watch thread: inotify(7) on the `watch` paths of every service,
//! turned into `Input::Changed { service, path }`.
//!
//! Each path is watched through its **parent directory**, filtered to the
//! file's name: editors, templating tools and `mv tmp cfg` replace a file by
//! rename, which a watch on the file itself (on its old inode) would miss.
//! One directory watch serves every path in it, of every service. Two more
//! cases are covered the same way: a path that is a symlink whose target
//! goes through a sibling (Kubernetes ConfigMap volumes: `cfg ->
//! ..data/cfg`, updated by renaming `..data`) also reacts to that sibling,
//! and a path that is itself a directory also reacts to changes inside it.
//!
//! `set` changes the watches synchronously (when it returns, a change is
//! seen), under a short lock it shares with the reader thread; the thread
//! blocks in `read(2)` on the inotify fd and never sends while holding the
//! lock. No debouncing here: the core debounces. This module never touches
//! service state.
//!
//! A directory that does not exist (yet) is logged and skipped; the next
//! `set` tries again.
//!
//! The inotify instance, like the thread, exists only once a service
//! watches a path: closing one waits for an RCU grace period of the kernel
//! (10 to 15 ms, seen in half of the shutdowns of a corral that watched
//! nothing), which every exit would otherwise pay.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use crossbeam_channel::Sender;
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};

use crate::event::Input;
use crate::log::{debug, error, warn};

/// The watch thread's handle. Dropping it removes every watch and ends the
/// thread.
pub struct Watcher {
    /// Made with the first watched path.
    inotify: std::sync::OnceLock<Arc<Inotify>>,
    table: Arc<Mutex<Table>>,
    /// What the thread takes when it starts; `None` once it runs.
    unstarted: Mutex<Option<Sender<Input>>>,
}

/// Who watches what, shared by `set` and the reader thread.
#[derive(Default)]
struct Table {
    /// Each service's paths, as last `set`.
    services: HashMap<String, Vec<PathBuf>>,
    /// The directory watches in place, by descriptor.
    dirs: HashMap<WatchDescriptor, Dir>,
    /// The handle was dropped: the thread ends at its next wake-up.
    closed: bool,
}

/// What one watched directory reports to whom.
#[derive(Default)]
struct Dir {
    path: PathBuf,
    /// Entry name in the directory -> the (service, path) it stands for:
    /// the watched file itself, or a sibling its symlink goes through.
    names: HashMap<OsString, Vec<(String, PathBuf)>>,
    /// Watched paths that are this directory: any change inside counts.
    contents: Vec<(String, PathBuf)>,
}

/// Directory events that can change a watched file: written and closed,
/// created, removed, renamed in or out, metadata (permissions, `touch`);
/// and the directory's own removal or rename.
fn dir_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

impl Watcher {
    /// The watch thread's handle; its changes go to `inputs`. The thread
    /// itself starts with the first service that watches a path.
    pub fn start(inputs: Sender<Input>) -> io::Result<Watcher> {
        let table = Arc::new(Mutex::new(Table::default()));
        Ok(Watcher {
            inotify: std::sync::OnceLock::new(),
            table,
            unstarted: Mutex::new(Some(inputs)),
        })
    }

    /// The inotify instance, made now if it is not yet (a failure is
    /// logged, and the paths are then not watched).
    fn inotify(&self) -> Option<&Arc<Inotify>> {
        if self.inotify.get().is_none() {
            match Inotify::init(InitFlags::IN_CLOEXEC) {
                Ok(inotify) => {
                    let _ = self.inotify.set(Arc::new(inotify));
                }
                Err(err) => {
                    error!(%err, "cannot start watching files (inotify): watched paths are not watched");
                    return None;
                }
            }
        }
        self.inotify.get()
    }

    /// Start the thread unless it runs (or could not start: that is logged
    /// once, and changes are then not seen).
    fn run_thread(&self) {
        let taken = self
            .unstarted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(inputs) = taken else {
            return;
        };
        let Some(inotify) = self.inotify.get() else {
            return;
        };
        let (reader, shared) = (Arc::clone(inotify), Arc::clone(&self.table));
        if let Err(err) = thread::Builder::new()
            .name("watch".into())
            .spawn(move || read_events(&reader, &shared, &inputs))
        {
            error!(%err, "cannot start the file watch thread: watched paths are not watched");
        }
    }

    /// Make `paths` the watch set of `service` (empty: none), replacing the
    /// earlier one. A path whose directory is missing is logged and skipped.
    pub fn set(&self, service: &str, paths: &[PathBuf]) {
        if !paths.is_empty() {
            if self.inotify().is_none() {
                return;
            }
            self.run_thread();
        }
        if self.inotify.get().is_none() {
            // Nothing was ever watched: nothing to take away.
            return;
        }
        let mut table = lock(&self.table);
        if paths.is_empty() {
            table.services.remove(service);
        } else {
            table.services.insert(service.to_string(), paths.to_vec());
        }
        self.rebuild(&mut table, service);
    }

    /// Recompute every directory watch from the services' paths: add the
    /// missing ones, remove those nobody needs. inotify gives the same
    /// descriptor for a directory already watched, so this also merges two
    /// spellings of one directory.
    fn rebuild(&self, table: &mut Table, changed: &str) {
        let mut dirs: HashMap<WatchDescriptor, Dir> = HashMap::new();
        let mut services: Vec<(&String, &Vec<PathBuf>)> = table.services.iter().collect();
        crate::sort::sort(&mut services);
        for (service, paths) in services {
            // Warn only about the service being set, not on every set.
            let loud = service == changed;
            for path in paths {
                let Some((dir, name)) = split(path) else {
                    if loud {
                        warn!(service, path = %path.display(), "cannot watch a path without a file name");
                    }
                    continue;
                };
                let Some(wd) = self.watch(&dir, service, path, loud) else {
                    continue;
                };
                let entry = dirs.entry(wd).or_insert_with(|| Dir {
                    path: dir.clone(),
                    ..Dir::default()
                });
                let who = (service.clone(), path.clone());
                for name in [Some(name.clone()), link_sibling(path)]
                    .into_iter()
                    .flatten()
                {
                    entry.names.entry(name).or_default().push(who.clone());
                }
                // A watched directory: also what happens inside it.
                if path.is_dir()
                    && let Some(inner) = self.watch(path, service, path, loud)
                {
                    let inner = dirs.entry(inner).or_insert_with(|| Dir {
                        path: path.clone(),
                        ..Dir::default()
                    });
                    inner.contents.push(who);
                }
            }
        }
        if let Some(inotify) = self.inotify.get() {
            for wd in table.dirs.keys() {
                if !dirs.contains_key(wd) {
                    // Its IN_IGNORED event finds no entry and is dropped.
                    let _ = inotify.rm_watch(*wd);
                }
            }
        }
        table.dirs = dirs;
    }

    fn watch(&self, dir: &Path, service: &str, path: &Path, loud: bool) -> Option<WatchDescriptor> {
        let inotify = self.inotify.get()?;
        match inotify.add_watch(dir, dir_mask()) {
            Ok(wd) => Some(wd),
            Err(err) => {
                if loud {
                    warn!(
                        service,
                        path = %path.display(),
                        dir = %dir.display(),
                        %err,
                        "cannot watch this path's directory; skipped until the next reload"
                    );
                }
                None
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        table.closed = true;
        let Some(inotify) = self.inotify.get() else {
            return;
        };
        for wd in table.dirs.keys() {
            let _ = inotify.rm_watch(*wd);
        }
        table.dirs.clear();
        // Wake the reader even when nothing is watched any more: adding and
        // removing a watch queues an IN_IGNORED event.
        if let Ok(wd) = inotify.add_watch("/", AddWatchFlags::IN_DELETE_SELF) {
            let _ = inotify.rm_watch(wd);
        }
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // A panic elsewhere while holding the lock leaves the table usable.
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// `/etc/haproxy/haproxy.cfg` -> (`/etc/haproxy`, `haproxy.cfg`); a bare
/// `cfg` is in `.`. None for paths without a file name (`/`, `a/..`).
fn split(path: &Path) -> Option<(PathBuf, OsString)> {
    let name = path.file_name()?.to_os_string();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((dir, name))
}

/// For a symlink whose relative target starts with a sibling entry
/// (`cfg -> ..data/cfg`), that sibling's name: replacing it (an atomic
/// rename of `..data`) changes what `cfg` reads without an event on `cfg`.
fn link_sibling(path: &Path) -> Option<OsString> {
    let target = std::fs::read_link(path).ok()?;
    let mut components = target.components();
    match (components.next()?, components.next()) {
        // `cfg -> ..data/cfg`: through a sibling directory.
        (Component::Normal(first), Some(_)) => Some(first.to_os_string()),
        // `cfg -> cfg.v2`: a sibling file, replaced by rename too.
        (Component::Normal(first), None) => Some(first.to_os_string()),
        _ => None,
    }
}

fn read_events(inotify: &Inotify, table: &Mutex<Table>, inputs: &Sender<Input>) {
    loop {
        let events = match inotify.read_events() {
            Ok(events) => events,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(err) => {
                warn!(%err, "inotify read failed; file watches stop");
                return;
            }
        };
        let changes = {
            let mut table = lock(table);
            if table.closed {
                return;
            }
            changes(&mut table, &events)
        };
        // Sent without the lock: `set` (on the loop thread) must never wait
        // for a send to the loop.
        for (service, path) in changes {
            if inputs.send(Input::Changed { service, path }).is_err() {
                // The loop is gone: corral is exiting.
                return;
            }
        }
    }
}

/// The (service, path) pairs a batch of events changes, each once, in order.
fn changes(table: &mut Table, events: &[InotifyEvent]) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    let mut add = |who: &(String, PathBuf)| {
        if !out.contains(who) {
            out.push(who.clone());
        }
    };
    for event in events {
        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            // Events were lost: count every watched path as changed.
            warn!("inotify queue overflowed; treating every watched path as changed");
            let mut all: Vec<(&String, &Vec<PathBuf>)> = table.services.iter().collect();
            crate::sort::sort(&mut all);
            for (service, paths) in all {
                for path in paths {
                    add(&(service.clone(), path.clone()));
                }
            }
            continue;
        }
        if event.mask.contains(AddWatchFlags::IN_IGNORED) {
            // The kernel dropped the watch: the directory was removed or
            // unmounted (our own rm_watch removed the entry first).
            if let Some(dir) = table.dirs.remove(&event.wd) {
                warn!(dir = %dir.path.display(), "watched directory is gone; its watches end until the next reload");
                dir.names.values().flatten().for_each(&mut add);
                dir.contents.iter().for_each(&mut add);
            }
            continue;
        }
        let Some(dir) = table.dirs.get(&event.wd) else {
            continue;
        };
        match &event.name {
            Some(name) => {
                debug!(dir = %dir.path.display(), name = ?name, mask = ?event.mask, "inotify event");
                if let Some(who) = dir.names.get(name.as_os_str()) {
                    who.iter().for_each(&mut add);
                }
                if !is_lock_or_swap(name) {
                    dir.contents.iter().for_each(&mut add);
                }
            }
            // The directory itself (attributes, moved, deleted).
            None => dir.contents.iter().for_each(&mut add),
        }
    }
    out
}

/// Names inside a watched directory that never count as a change of it:
/// editors' swap and backup files.
fn is_lock_or_swap(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with('~')
        || name.starts_with(".#")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::Receiver;
    use std::fs;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);
    const QUIET: Duration = Duration::from_millis(300);

    /// A fresh directory under the temp dir, removed at the end.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "corral-watch-{}-{tag}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&path).expect("temp dir");
            TempDir(path)
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, text).expect("write");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn changed(rx: &Receiver<Input>) -> (String, PathBuf) {
        match rx.recv_timeout(WAIT) {
            Ok(Input::Changed { service, path }) => (service, path),
            other => panic!("expected a change, got {other:?}"),
        }
    }

    /// Every change until none comes for `QUIET`.
    fn drain(rx: &Receiver<Input>) -> Vec<(String, PathBuf)> {
        let mut all = Vec::new();
        while let Ok(input) = rx.recv_timeout(QUIET) {
            match input {
                Input::Changed { service, path } => all.push((service, path)),
                other => panic!("unexpected {other:?}"),
            }
        }
        all
    }

    fn started() -> (Watcher, Receiver<Input>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Watcher::start(tx).expect("start"), rx)
    }

    #[test]
    fn writing_in_place_and_replacing_by_rename_are_changes() {
        let dir = TempDir::new("rename");
        let cfg = dir.file("haproxy.cfg", "v1");
        let (watcher, rx) = started();
        watcher.set("haproxy", std::slice::from_ref(&cfg));

        fs::write(&cfg, "v2").expect("write");
        assert_eq!(changed(&rx), ("haproxy".into(), cfg.clone()));
        assert!(drain(&rx).iter().all(|c| c.1 == cfg));

        let tmp = dir.file("haproxy.cfg.tmp", "v3");
        fs::rename(&tmp, &cfg).expect("rename");
        assert_eq!(changed(&rx), ("haproxy".into(), cfg.clone()));
        assert!(drain(&rx).iter().all(|c| c.1 == cfg));

        fs::remove_file(&cfg).expect("remove");
        assert_eq!(changed(&rx), ("haproxy".into(), cfg.clone()));
        // Created again (a file that did not exist is watched too).
        fs::write(&cfg, "v4").expect("write");
        assert_eq!(changed(&rx), ("haproxy".into(), cfg.clone()));
        assert!(drain(&rx).iter().all(|c| c.1 == cfg));
    }

    #[test]
    fn a_sibling_file_is_not_a_change() {
        let dir = TempDir::new("sibling");
        let cfg = dir.file("app.conf", "v1");
        let (watcher, rx) = started();
        watcher.set("app", std::slice::from_ref(&cfg));
        dir.file("other.conf", "x");
        fs::rename(dir.file("other.tmp", "y"), dir.0.join("other.conf")).expect("rename");
        // The positive control: events arrive in order, so had the sibling
        // counted, its change would come first.
        fs::write(&cfg, "v2").expect("write");
        assert_eq!(changed(&rx), ("app".into(), cfg.clone()));
        assert!(drain(&rx).iter().all(|c| c.1 == cfg));
    }

    #[test]
    fn every_service_watching_a_file_hears_of_it_until_unset() {
        let dir = TempDir::new("shared");
        let cfg = dir.file("shared.conf", "v1");
        let other = dir.file("other.conf", "v1");
        let (watcher, rx) = started();
        watcher.set("a", std::slice::from_ref(&cfg));
        watcher.set("b", &[cfg.clone(), other.clone()]);

        fs::write(&cfg, "v2").expect("write");
        let mut got = vec![changed(&rx), changed(&rx)];
        got.extend(drain(&rx));
        got.sort();
        got.dedup();
        assert_eq!(got, [("a".into(), cfg.clone()), ("b".into(), cfg.clone())]);

        // a stops watching: only b hears.
        watcher.set("a", &[]);
        fs::write(&cfg, "v3").expect("write");
        assert_eq!(changed(&rx), ("b".into(), cfg.clone()));
        assert!(drain(&rx).iter().all(|c| c.0 == "b"));

        // b drops shared.conf, keeps other.conf (same directory watch).
        watcher.set("b", std::slice::from_ref(&other));
        fs::write(&cfg, "v4").expect("write");
        fs::write(&other, "v2").expect("write");
        assert_eq!(changed(&rx), ("b".into(), other.clone()));
        assert!(drain(&rx).iter().all(|c| c.1 == other));

        // Nobody left: the directory watch is gone, nothing comes.
        watcher.set("b", &[]);
        fs::write(&cfg, "v5").expect("write");
        fs::write(&other, "v3").expect("write");
        assert!(drain(&rx).is_empty());
        assert!(lock(&watcher.table).dirs.is_empty());
    }

    #[test]
    fn a_missing_directory_is_skipped_and_the_rest_watched() {
        let dir = TempDir::new("missing");
        let cfg = dir.file("ok.conf", "v1");
        let (watcher, rx) = started();
        let missing = dir.0.join("not-yet").join("later.conf");
        watcher.set("app", &[missing.clone(), PathBuf::from("/"), cfg.clone()]);
        fs::write(&cfg, "v2").expect("write");
        assert_eq!(changed(&rx), ("app".into(), cfg.clone()));
        drain(&rx);

        // Once the directory exists, the next set picks it up.
        fs::create_dir(dir.0.join("not-yet")).expect("mkdir");
        watcher.set("app", &[missing.clone(), cfg.clone()]);
        fs::write(&missing, "now").expect("write");
        assert_eq!(changed(&rx), ("app".into(), missing.clone()));
    }

    #[test]
    fn a_configmap_style_symlink_swap_is_a_change() {
        // Kubernetes: cfg -> ..data/cfg, ..data -> ..v1; an update writes
        // ..v2, points ..data_tmp at it and renames ..data_tmp to ..data.
        let dir = TempDir::new("configmap");
        fs::create_dir(dir.0.join("..v1")).expect("mkdir");
        fs::write(dir.0.join("..v1/cfg"), "v1").expect("write");
        std::os::unix::fs::symlink("..v1", dir.0.join("..data")).expect("link");
        let cfg = dir.0.join("cfg");
        std::os::unix::fs::symlink("..data/cfg", &cfg).expect("link");
        let (watcher, rx) = started();
        watcher.set("app", std::slice::from_ref(&cfg));

        fs::create_dir(dir.0.join("..v2")).expect("mkdir");
        fs::write(dir.0.join("..v2/cfg"), "v2").expect("write");
        std::os::unix::fs::symlink("..v2", dir.0.join("..data_tmp")).expect("link");
        fs::rename(dir.0.join("..data_tmp"), dir.0.join("..data")).expect("rename");
        assert_eq!(changed(&rx), ("app".into(), cfg.clone()));
        assert_eq!(fs::read_to_string(&cfg).expect("read"), "v2");
    }

    #[test]
    fn a_watched_directory_reports_changes_inside_it() {
        let dir = TempDir::new("confd");
        let confd = dir.0.join("conf.d");
        fs::create_dir(&confd).expect("mkdir");
        let (watcher, rx) = started();
        watcher.set("app", std::slice::from_ref(&confd));
        fs::write(confd.join(".site.conf.swp"), "editor noise").expect("write");
        fs::write(confd.join("site.conf"), "x").expect("write");
        assert_eq!(changed(&rx), ("app".into(), confd.clone()));
        assert!(drain(&rx).iter().all(|c| c.1 == confd));
    }

    #[test]
    fn no_inotify_instance_until_a_path_is_watched() {
        let (tx, _rx) = crossbeam_channel::unbounded::<Input>();
        let watcher = Watcher::start(tx).expect("start");
        watcher.set("app", &[]);
        assert!(
            watcher.inotify.get().is_none(),
            "nothing watched: no fd to close at exit"
        );
        let dir = TempDir::new("lazy");
        watcher.set("app", &[dir.0.join("cfg")]);
        assert!(watcher.inotify.get().is_some());
    }

    #[test]
    fn dropping_the_watcher_ends_its_thread() {
        let (tx, rx) = crossbeam_channel::unbounded::<Input>();
        let watcher = Watcher::start(tx).expect("start");
        drop(watcher);
        // The thread held the only sender: its end disconnects the channel.
        assert!(matches!(
            rx.recv_timeout(WAIT),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ));
    }
}
