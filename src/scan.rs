//! Reconciles the index with the cache on disk.
//!
//! # Incremental sync
//!
//! Creating or removing an entry changes its subdirectory's mtime, so a scan
//! compares the 256 subdirectory mtimes (nanoseconds) with the ones recorded
//! and rereads only the subdirectories that changed. A hook after a small
//! build reads a few subdirectories, not 256.
//!
//! Within a subdirectory that changed, an incremental scan looks only at
//! names the index does not know (and drops names that vanished): a
//! post-insert hook on a 1M-entry cache reads a directory listing, not 4,000
//! inodes.
//!
//! Two things this cannot see, and how they are handled:
//! - Go refreshing an entry's own mtime on use (`markUsed`) does not change
//!   the subdirectory's mtime, nor does Go rewriting an action entry in
//!   place, so an incremental scan may hold an older last use or output than
//!   the disk. `--full` rereads every entry; `trim` does, and the trim
//!   executor re-checks each entry just before removing anything.
//! - A change in the same clock tick as the scan's own read of the mtime
//!   (the "racy git" problem). A subdirectory whose mtime is within
//!   [`RACY_SECS`] of `now`, or that changed while it was being read, is
//!   recorded as "rescan next time".
//!
//! # Safety
//!
//! Every directory is opened with `O_NOFOLLOW | O_DIRECTORY` and every name
//! is looked at with `fstatat(AT_SYMLINK_NOFOLLOW)` relative to its
//! directory's descriptor: a symlink is reported as what it is and never
//! followed, whatever it points to. Action files are opened with
//! `O_NOFOLLOW` and read at most 176 bytes. Nothing is written to the cache.
//!
//! # Performance
//!
//! Like `du`, the walk is `getdents` plus one `fstatat` per name relative to
//! the directory's descriptor; it adds one small `openat`/`read` per action
//! file that is new or changed. Subdirectories are walked on all cores while
//! the calling thread writes to SQLite.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::cachedir::{check_cache_dir, open_dir, open_dir_at};
use crate::error::{Error, Result};
use crate::index::{Index, SubdirChanges, SubdirState};
use crate::layout::{
    ACTION_ENTRY_SIZE, ActionEntry, EntryName, IdHash, Suffix, TopLevel, subdir_name,
};
use crate::model::{Entry, Kind, Other, OtherClass, UnixTime};
use crate::report::Reporter;

/// A subdirectory whose mtime is this close to `now` (or newer) is not
/// trusted to be final: it is rescanned next time.
pub const RACY_SECS: i64 = 2;

/// The mtime recorded for a subdirectory that does not exist (after
/// `go clean -cache`): it reappears with a real mtime and is rescanned.
const MISSING: i64 = 0;

/// How a scan should run.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Reread every subdirectory, not only those whose mtime changed.
    pub full: bool,
    /// Worker threads for the walk (0: one per core).
    pub threads: usize,
}

/// What a scan did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScanSummary {
    /// Subdirectories reread (in order).
    pub rescanned: Vec<u8>,
    /// Subdirectories skipped because their mtime had not changed.
    pub unchanged_subdirs: usize,
    /// Entries new to the index.
    pub added: u64,
    /// Entries whose size, mtime or content changed.
    pub updated: u64,
    /// Entries gone from disk, dropped from the index.
    pub removed: u64,
    /// Entries looked at and found unchanged.
    pub unchanged: u64,
    /// Action files opened and parsed.
    pub action_files_read: u64,
    /// Odd items found in the rescanned subdirectories and the top level.
    pub odd: u64,
    /// Problems that did not stop the scan (unreadable subdirectory, …).
    pub warnings: Vec<String>,
}

fn needs_rescan(state: Option<SubdirState>, current: Option<i64>) -> bool {
    match (state.and_then(|s| s.mtime_ns), current) {
        (Some(recorded), Some(now)) => recorded != now,
        _ => true,
    }
}

/// The mtime in whole seconds. (`st_mtime`'s type varies by target; it is
/// an `i64` on the 64-bit Linux targets we build for.)
#[allow(clippy::useless_conversion)]
fn secs(st: &rustix::fs::Stat) -> i64 {
    i64::from(st.st_mtime)
}

fn mtime_ns(st: &rustix::fs::Stat) -> i64 {
    secs(st)
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_mtime_nsec as i64)
}

/// Reconciles `index` with the cache in `cache_dir`: adds new entries,
/// updates changed ones, drops vanished ones. Incremental unless
/// `opts.full`. `now` is when the scan runs (Unix seconds).
pub fn scan(
    cache_dir: &Path,
    index: &mut Index,
    opts: &ScanOptions,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<ScanSummary> {
    scan_with_head_start(cache_dir, index, opts, now, reporter, None)
}

/// [`scan`], using what a [`HeadStart`] read while the caller opened the
/// index.
pub fn scan_with_head_start(
    cache_dir: &Path,
    index: &mut Index,
    opts: &ScanOptions,
    now: UnixTime,
    reporter: &dyn Reporter,
    head: Option<HeadStart>,
) -> Result<ScanSummary> {
    check_cache_dir(cache_dir)?;
    let cache_fd = open_dir(cache_dir).map_err(|e| Error::io("opening", cache_dir, e))?;
    let mut summary = ScanSummary::default();

    // With a head start, the top level is read, some subdirectories are
    // listed, and the index's names for them may be loaded.
    let (top, listings, mut preloaded) = match head {
        Some(h) => (h.top, h.listings, h.known),
        None => (scan_top_level(&cache_fd, cache_dir), Vec::new(), Vec::new()),
    };
    let (top, mtimes) = top?;
    summary.odd += top.iter().filter(|o| o.class == OtherClass::Odd).count() as u64;
    if index.top_level_others()? != top {
        index.set_top_level_others(&top)?;
    }

    let states = index.subdir_states()?;
    let todo: Vec<u8> = (0..=255u8)
        .filter(|&s| opts.full || needs_rescan(states[s as usize], mtimes[s as usize]))
        .collect();
    summary.unchanged_subdirs = 256 - todo.len();
    if todo.is_empty() {
        return Ok(summary);
    }

    // What the index knows about the subdirectories to reread, so unchanged
    // entries keep their hits and action files are not reread.
    let fresh = index.is_empty()?;
    // A fresh index is filled in one transaction (every page written once);
    // otherwise a few subdirectories per transaction keeps the write lock
    // short for hooks running alongside.
    let batch_size = if fresh { 256 } else { 16 };

    // Subdirectories the head start listed are reconciled on this thread;
    // workers list and reconcile the rest.
    let promised: Vec<bool> = todo
        .iter()
        .map(|s| listings.iter().any(|(l, _)| l == s))
        .collect();
    let work: Vec<usize> = (0..todo.len()).filter(|&i| !promised[i]).collect();
    let threads = match (opts.threads, work.len()) {
        (_, n @ (0 | 1)) => n,
        (0, n) => std::thread::available_parallelism().map_or(1, |c| c.get().min(n)),
        (t, n) => t.min(n),
    };
    reporter.start("scan", todo.len() as u64);
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<(usize, SubdirResult)>(threads * 4 + 1);
    // Workers list their subdirectory while this thread loads what the
    // index knows of it; each then waits for its `Known` and reconciles.
    let (known_tx, known_rx): (Vec<_>, Vec<_>) = todo
        .iter()
        .map(|_| {
            let (t, r) = mpsc::sync_channel::<Known>(1);
            (t, std::sync::Mutex::new(r))
        })
        .unzip();
    let outcome: Result<()> = std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, work, todo, known_rx, cache_fd) =
                (&next, &work, &todo, &known_rx, &cache_fd);
            scope.spawn(move || {
                while let Some(&i) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let listed = list_subdir(cache_fd, todo[i]);
                    let known = match known_rx[i].lock().map(|r| r.recv()) {
                        Ok(Ok(k)) => k,
                        _ => break, // loading failed: the scan is over
                    };
                    let result = reconcile(listed, todo[i], &known, opts.full, now);
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // A full scan compares every entry with its row (keeping hits) and
        // recomputes the subdirectory's totals; an incremental one needs
        // only the names, and its totals change by what it adds and drops.
        let mut kept: Vec<Option<Known>> = (0..todo.len()).map(|_| None).collect();
        for (i, &s) in todo.iter().enumerate() {
            let pre = preloaded.iter().position(|(p, _)| *p == s);
            let known = if fresh {
                Ok(Known::Rows(HashMap::default()))
            } else if let (false, Some(p)) = (opts.full, pre) {
                Ok(preloaded.swap_remove(p).1)
            } else if opts.full {
                index
                    .subdir_entries(s)
                    .map(|rows| Known::Rows(rows.into_iter().map(|e| (e.name, e)).collect()))
            } else {
                index
                    .subdir_names(s)
                    .map(|names| Known::Names(names.into_iter().collect()))
            };
            match known {
                Ok(k) if promised[i] => kept[i] = Some(k),
                Ok(k) => {
                    let _ = known_tx[i].send(k);
                }
                Err(e) => {
                    drop(known_tx); // workers waiting on these stop
                    for _ in rx {}
                    return Err(e);
                }
            }
        }
        // Apply in batches: one transaction per few subdirectories keeps
        // commits cheap without holding the write lock for long.
        let mut apply = Applier {
            index,
            summary: &mut summary,
            batch: Vec::new(),
            batch_size,
            now,
            reporter,
            result: Ok(()),
        };
        for (s, listed) in listings {
            if let Some(i) = todo.iter().position(|&t| t == s)
                && let Some(known) = kept[i].take()
            {
                apply.absorb(s, reconcile(listed, s, &known, opts.full, now));
            }
        }
        for (i, r) in rx {
            apply.absorb(todo[i], r);
        }
        apply.finish()
    });
    reporter.finish();
    outcome?;
    summary.rescanned.sort_unstable();
    Ok(summary)
}

type NameMap<V> = HashMap<EntryName, V, IdHash>;

/// Takes reconciled subdirectories and writes them to the index in batches.
struct Applier<'a> {
    index: &'a mut Index,
    summary: &'a mut ScanSummary,
    batch: Vec<SubdirChanges>,
    batch_size: usize,
    now: UnixTime,
    reporter: &'a dyn Reporter,
    /// The first error; the rest is drained without writing.
    result: Result<()>,
}

impl Applier<'_> {
    fn absorb(&mut self, subdir: u8, r: SubdirResult) {
        self.reporter.advance(1);
        if self.result.is_err() {
            return;
        }
        let summary = &mut *self.summary;
        match r {
            SubdirResult::Changes(changes, stats) => {
                summary.rescanned.push(subdir);
                summary.added += stats.added;
                summary.updated += stats.updated;
                summary.unchanged += stats.unchanged;
                summary.action_files_read += stats.action_files_read;
                summary.removed += changes.deletes.len() as u64;
                summary.odd += changes.others.len() as u64;
                self.batch.push(changes);
                if self.batch.len() >= self.batch_size {
                    self.result = self.index.apply_subdirs(&self.batch, self.now);
                    self.batch.clear();
                }
            }
            SubdirResult::Unreadable(msg) => {
                summary.rescanned.push(subdir);
                summary.warnings.push(msg.clone());
                self.reporter.warn(&msg);
                self.result = self.index.mark_subdir_dirty(subdir, self.now);
            }
        }
    }

    fn finish(mut self) -> Result<()> {
        if self.result.is_ok() && !self.batch.is_empty() {
            self.result = self.index.apply_subdirs(&self.batch, self.now);
        }
        self.result
    }
}

/// What the index knew of a subdirectory before the scan.
enum Known {
    /// Every row, by name (a full scan, or a fresh index: empty).
    Rows(NameMap<Entry>),
    /// The names only (an incremental scan).
    Names(std::collections::HashSet<EntryName, IdHash>),
}

impl Known {
    fn contains(&self, name: &EntryName) -> bool {
        match self {
            Known::Rows(m) => m.contains_key(name),
            Known::Names(s) => s.contains(name),
        }
    }

    fn len(&self) -> usize {
        match self {
            Known::Rows(m) => m.len(),
            Known::Names(s) => s.len(),
        }
    }

    fn names(&self) -> Box<dyn Iterator<Item = &EntryName> + '_> {
        match self {
            Known::Rows(m) => Box::new(m.keys()),
            Known::Names(s) => Box::new(s.iter()),
        }
    }

    fn row(&self, name: &EntryName) -> Option<&Entry> {
        match self {
            Known::Rows(m) => m.get(name),
            Known::Names(_) => None,
        }
    }
}

/// What a hook reads of the cache while its index opens: the cache's top
/// level, listings of the subdirectories that changed since the index was
/// last written (newest first, at most [`HEAD_START_LISTINGS`]), and the
/// names the index holds for them.
///
/// Listing a 4,000-entry subdirectory takes longer than opening the index
/// and loading its names, so the calling thread (already running) does the
/// listing, the critical path, while a helper thread opens the index.
///
/// Nothing is decided from it: the scan still compares every
/// subdirectory's mtime with the index's, and lists anything else it needs.
pub struct HeadStart {
    /// The top level: what is there, and each subdirectory's mtime.
    top: TopLevelRead,
    /// The subdirectories listed ahead, and their listings.
    listings: Vec<(u8, Listed)>,
    /// The names the index held for them (incremental scans of an index
    /// that is not empty).
    known: Vec<(u8, Known)>,
}

type Listed = std::result::Result<Listing, NoListing>;
type TopLevelRead = Result<(Vec<Other>, Vec<Option<i64>>)>;

/// The most subdirectories a [`HeadStart`] lists.
pub const HEAD_START_LISTINGS: usize = 8;

impl HeadStart {
    /// Opens the index at `index_path` on a helper thread while this
    /// thread reads `cache_dir`; returns the index and, unless the cache
    /// directory cannot be opened, the head start for
    /// [`scan_with_head_start`].
    pub fn open_while_reading(
        cache_dir: &Path,
        index_path: &Path,
    ) -> (Result<Index>, Option<HeadStart>) {
        // The index's mtime says what is new; read it before the helper
        // opens (and perhaps migrates) it.
        let since = last_write_ns(index_path);
        let (promised_tx, promised_rx) = mpsc::channel::<Vec<u8>>();
        let path = index_path.to_owned();
        let helper = crate::threads::spawn_beside(move || {
            let index = Index::open(&path)?;
            index.prepare_check()?;
            let promised = promised_rx.recv().unwrap_or_default();
            let mut known = Vec::new();
            if !promised.is_empty() {
                index.prepare_sync()?;
                if !index.is_empty()? {
                    for s in promised {
                        let names = index.subdir_names(s)?;
                        known.push((s, Known::Names(names.into_iter().collect())));
                    }
                }
            }
            Ok((index, known))
        });
        let head = open_dir(cache_dir).ok().map(|fd| {
            let top = scan_top_level(&fd, cache_dir);
            let mut changed: Vec<(i64, u8)> = Vec::new();
            if let (Ok((_, mtimes)), Some(since)) = (&top, since) {
                let since = since.saturating_sub(RACY_SECS * 1_000_000_000);
                changed = (0..=255u8)
                    .filter_map(|s| mtimes[s as usize].filter(|&m| m >= since).map(|m| (m, s)))
                    .collect();
                changed.sort_unstable_by(|a, b| b.cmp(a));
                changed.truncate(HEAD_START_LISTINGS);
            }
            let _ = promised_tx.send(changed.iter().map(|&(_, s)| s).collect());
            let listings = changed
                .into_iter()
                .map(|(_, s)| (s, list_subdir(&fd, s)))
                .collect();
            (top, listings)
        });
        drop(promised_tx);
        let opened: Result<(Index, Vec<(u8, Known)>)> = helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (opened, head) {
            (Err(e), _) => (Err(e), None),
            (Ok((index, _)), None) => (Ok(index), None),
            (Ok((index, known)), Some((top, listings))) => (
                Ok(index),
                Some(HeadStart {
                    top,
                    listings,
                    known,
                }),
            ),
        }
    }
}

/// When the index at `path` was last written (its WAL or itself), in ns.
fn last_write_ns(path: &Path) -> Option<i64> {
    [path.to_owned(), Index::wal_path(path)]
        .iter()
        .filter_map(|p| rustix::fs::stat(p).ok())
        .map(|st| mtime_ns(&st))
        .max()
}

/// A subdirectory's listing, read before the index's rows are at hand.
struct Listing {
    dir_fd: OwnedFd,
    /// The subdirectory's mtime (ns) before it was read.
    mtime_before: i64,
    dir_allocated: u64,
    /// Names of the strict entry pattern.
    entries: Vec<EntryName>,
    /// Every other name but `.` and `..`.
    others: Vec<std::ffi::CString>,
}

/// Why a subdirectory has no listing.
enum NoListing {
    /// It does not exist (`go clean -cache`).
    Missing,
    /// Its name is a file or symlink, reported at the top level; its
    /// "entries" are not ours to look into.
    NotADirectory,
    /// It exists but could not be read.
    Unreadable(String),
}

fn list_subdir(cache_fd: &OwnedFd, subdir: u8) -> std::result::Result<Listing, NoListing> {
    let name = subdir_name(subdir);
    let before = match rustix::fs::statat(cache_fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return Err(NoListing::Missing),
        Err(e) => return Err(NoListing::Unreadable(format!("{name}: {e}"))),
        Ok(st) => st,
    };
    if FileType::from_raw_mode(before.st_mode as _) != FileType::Directory {
        return Err(NoListing::NotADirectory);
    }
    let dir_fd = open_dir_at(cache_fd, name.as_str())
        .map_err(|e| NoListing::Unreadable(format!("{name}: cannot open: {e}")))?;
    // One getdents per 64 KiB (about 900 names), read straight from the
    // descriptor: a 4,000-entry subdirectory in 5 calls.
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 << 10];
    let mut dir = rustix::fs::RawDir::new(&dir_fd, &mut buf);
    // About what the directory holds (ext4: 72-byte records for 66-byte
    // names), within reason whatever the file system reports.
    let guess = usize::try_from(before.st_size / 80)
        .unwrap_or(0)
        .min(1 << 16);
    let mut entries = Vec::with_capacity(guess);
    let mut others = Vec::new();
    while let Some(item) = dir.next() {
        let item =
            item.map_err(|e| NoListing::Unreadable(format!("{name}: reading entries: {e}")))?;
        let fname = item.file_name();
        let bytes = fname.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        match EntryName::parse(bytes).filter(|n| n.subdir() == subdir) {
            Some(n) => entries.push(n),
            None => others.push(fname.to_owned()),
        }
    }
    Ok(Listing {
        dir_fd,
        mtime_before: mtime_ns(&before),
        dir_allocated: alloc_of(&before),
        entries,
        others,
    })
}

#[derive(Default)]
struct SubdirStats {
    added: u64,
    updated: u64,
    unchanged: u64,
    action_files_read: u64,
}

enum SubdirResult {
    Changes(SubdirChanges, SubdirStats),
    /// The subdirectory exists but could not be read: the index keeps what
    /// it had, and the subdirectory is rescanned next time.
    Unreadable(String),
}

/// Compares a subdirectory's listing with what the index knew of it.
fn reconcile(
    listed: std::result::Result<Listing, NoListing>,
    subdir: u8,
    known: &Known,
    full: bool,
    now: UnixTime,
) -> SubdirResult {
    let name = subdir_name(subdir);
    let mut changes = SubdirChanges {
        subdir,
        ..Default::default()
    };
    let incremental = matches!(known, Known::Names(_));
    let listing = match listed {
        Ok(l) => l,
        Err(NoListing::Unreadable(msg)) => return SubdirResult::Unreadable(msg),
        Err(no) => {
            // Every entry the index knew here is gone.
            let mut deletes: Vec<EntryName> = known.names().copied().collect();
            deletes.sort_unstable();
            changes.deletes = deletes;
            changes.mtime_ns = matches!(no, NoListing::Missing).then_some(MISSING);
            changes.totals = (!incremental).then(Default::default);
            return SubdirResult::Changes(changes, SubdirStats::default());
        }
    };
    let dir_fd = &listing.dir_fd;
    changes.dir_allocated = listing.dir_allocated;
    let mut stats = SubdirStats::default();
    // Entries of the listing the index knew (unchanged or re-read).
    let mut seen: std::collections::HashSet<EntryName, IdHash> =
        std::collections::HashSet::with_capacity_and_hasher(
            if incremental { 0 } else { known.len() },
            IdHash,
        );
    let mut known_seen = 0usize;
    for &ename in &listing.entries {
        // Incremental: a name the index knows is taken as it was; only new
        // and vanished names are looked at. (A known entry's mtime changes
        // when Go marks it used, which a full scan picks up; the executor
        // re-checks every entry before removing it anyway.)
        if !full && known.contains(&ename) {
            known_seen += 1;
            stats.unchanged += 1;
            if !incremental {
                seen.insert(ename);
            }
            continue;
        }
        let cname = ename.c_file_name();
        let fname = cname.as_c_str();
        let st = match rustix::fs::statat(dir_fd, fname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed between getdents and stat (a trim, Go's own trim).
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                let rel = ename.rel_path();
                changes
                    .others
                    .push(odd(rel, format!("cannot stat: {e}"), 0, 0));
                continue;
            }
        };
        let ftype = FileType::from_raw_mode(st.st_mode as _);
        let entry = match (ename.suffix, ftype) {
            (Suffix::Action, FileType::RegularFile) => {
                read_action(dir_fd, fname, ename, &st, known.row(&ename), &mut stats)
            }
            (Suffix::Data, FileType::RegularFile) => Ok(base_entry(ename, Kind::Output, &st)),
            (Suffix::Data, FileType::Directory) => read_exe(dir_fd, fname, ename, &st),
            (_, t) => Err(format!(
                "{} where a cache entry belongs; not followed",
                type_name(t)
            )),
        };
        match entry {
            Ok(mut e) => {
                if known.contains(&ename) {
                    known_seen += 1;
                    seen.insert(ename);
                }
                match known.row(&ename) {
                    Some(old) if same_on_disk(old, &e) => {
                        stats.unchanged += 1;
                        continue;
                    }
                    Some(old) => {
                        stats.updated += 1;
                        e.first_seen = old.first_seen;
                        e.hits = old.hits;
                        e.last_use = old.last_use.max(e.mtime);
                    }
                    None => {
                        stats.added += 1;
                        e.first_seen = now;
                    }
                }
                changes.upserts.push(e);
            }
            Err(what) => {
                let rel = ename.rel_path();
                changes
                    .others
                    .push(odd(rel, what, size_of(&st), alloc_of(&st)))
            }
        }
    }
    for fname in &listing.others {
        let bytes = fname.to_bytes();
        let rel = format!("{name}/{}", String::from_utf8_lossy(bytes));
        let st = match rustix::fs::statat(dir_fd, fname.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                changes
                    .others
                    .push(odd(rel, format!("cannot stat: {e}"), 0, 0));
                continue;
            }
        };
        let ftype = FileType::from_raw_mode(st.st_mode as _);
        let what = match (ftype, EntryName::parse(bytes)) {
            (_, Some(_)) => format!("{} in the wrong subdirectory", type_name(ftype)),
            (FileType::RegularFile, None) => "stray file".to_string(),
            (t, None) => format!("stray {}", type_name(t)),
        };
        changes
            .others
            .push(odd(rel, what, size_of(&st), alloc_of(&st)));
    }
    match known {
        Known::Names(names) => {
            // Vanished: known names not in the listing. Usually none (Go
            // only adds), which the count tells without a second pass.
            if known_seen < names.len() {
                let listed: std::collections::HashSet<&EntryName, IdHash> =
                    listing.entries.iter().collect();
                changes.deletes = names
                    .iter()
                    .filter(|n| !listed.contains(n))
                    .copied()
                    .collect();
                changes.deletes.sort_unstable();
            }
            // Totals change by what is added and dropped, worked out from
            // the rows in the write transaction.
            changes.totals = None;
        }
        Known::Rows(rows) => {
            let mut deletes: Vec<EntryName> =
                rows.keys().filter(|n| !seen.contains(n)).copied().collect();
            deletes.sort_unstable();
            changes.deletes = deletes;
            // The subdirectory's totals: what is new or changed, plus what
            // is unchanged from before.
            let mut totals = crate::model::Totals::default();
            let upserted: std::collections::HashSet<EntryName, IdHash> =
                changes.upserts.iter().map(|e| e.name).collect();
            for e in &changes.upserts {
                totals.add(e);
            }
            for (n, e) in rows {
                if seen.contains(n) && !upserted.contains(n) {
                    totals.add(e);
                }
            }
            changes.totals = Some(totals);
        }
    }

    // Trust the mtime only if nothing changed while we read and it is not
    // so recent that a change in the same tick could still be hidden.
    let after = rustix::fs::fstat(dir_fd).map(|st| mtime_ns(&st)).ok();
    let racy = listing.mtime_before >= (now - RACY_SECS).saturating_mul(1_000_000_000);
    changes.mtime_ns =
        (after == Some(listing.mtime_before) && !racy).then_some(listing.mtime_before);
    SubdirResult::Changes(changes, stats)
}

fn same_on_disk(old: &Entry, new: &Entry) -> bool {
    old.kind == new.kind
        && old.apparent == new.apparent
        && old.allocated == new.allocated
        && old.mtime == new.mtime
        && old.output == new.output
        && old.program == new.program
        && old.problem == new.problem
}

fn base_entry(name: EntryName, kind: Kind, st: &rustix::fs::Stat) -> Entry {
    Entry {
        name,
        kind,
        apparent: size_of(st),
        allocated: alloc_of(st),
        mtime: secs(st),
        last_use: secs(st),
        hits: 0,
        first_seen: 0,
        output: None,
        program: None,
        problem: None,
    }
}

fn read_action(
    dir_fd: &OwnedFd,
    fname: &CStr,
    name: EntryName,
    st: &rustix::fs::Stat,
    known: Option<&Entry>,
    stats: &mut SubdirStats,
) -> std::result::Result<Entry, String> {
    let mut e = base_entry(name, Kind::Action, st);
    // An action file is rewritten in place, which changes its mtime: same
    // size and mtime means same content, so it need not be read again.
    if let Some(old) = known
        && old.kind == Kind::Action
        && old.mtime == e.mtime
        && old.apparent == e.apparent
    {
        e.output = old.output;
        e.problem = old.problem.clone();
        return Ok(e);
    }
    stats.action_files_read += 1;
    if e.apparent != ACTION_ENTRY_SIZE as u64 {
        // Go's reader rejects any other size without looking further.
        let msg = format!("action entry is {} bytes, expected 175", e.apparent);
        e_problem(&mut e, msg);
        return Ok(e);
    }
    let mut buf = [0u8; ACTION_ENTRY_SIZE];
    let n = match read_small(dir_fd, fname, &mut buf) {
        Ok(n) => n,
        Err(rustix::io::Errno::LOOP) => return Err("symlink; not followed".into()),
        Err(err) => {
            e_problem(&mut e, format!("cannot read: {err}"));
            return Ok(e);
        }
    };
    match ActionEntry::parse(&buf[..n], Some(name.id)) {
        Ok(a) => e.output = Some(a.output),
        Err(err) => e_problem(&mut e, err.to_string()),
    }
    Ok(e)
}

fn e_problem(e: &mut Entry, msg: String) {
    e.output = None;
    e.problem = Some(msg);
}

fn read_small(dir_fd: &OwnedFd, fname: &CStr, buf: &mut [u8]) -> rustix::io::Result<usize> {
    let fd = rustix::fs::openat(
        dir_fd,
        fname,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(&fd, &mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_exe(
    dir_fd: &OwnedFd,
    fname: &CStr,
    name: EntryName,
    st: &rustix::fs::Stat,
) -> std::result::Result<Entry, String> {
    let fd = open_dir_at(dir_fd, fname)
        .map_err(|e| format!("executable directory cannot be opened: {e}"))?;
    let dir = rustix::fs::Dir::read_from(&fd)
        .map_err(|e| format!("executable directory cannot be read: {e}"))?;
    let mut inner = Vec::new();
    for item in dir {
        let item = item.map_err(|e| format!("executable directory cannot be read: {e}"))?;
        let b = item.file_name().to_bytes();
        if b != b"." && b != b".." {
            inner.push(item.file_name().to_owned());
        }
    }
    if inner.len() != 1 {
        return Err(format!(
            "executable directory holding {} entries, expected 1",
            inner.len()
        ));
    }
    let ist = rustix::fs::statat(&fd, inner[0].as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| format!("executable cannot be examined: {e}"))?;
    let t = FileType::from_raw_mode(ist.st_mode as _);
    if t != FileType::RegularFile {
        return Err(format!("executable directory holding a {}", type_name(t)));
    }
    let mut e = base_entry(name, Kind::Exe, st);
    e.apparent = size_of(&ist);
    e.allocated = alloc_of(st).saturating_add(alloc_of(&ist));
    e.program = Some(String::from_utf8_lossy(inner[0].to_bytes()).into_owned());
    Ok(e)
}

/// Lists the top of the cache directory: Go's own files, gocache's
/// directory, and anything odd (sizes walked without following links).
/// Also returns each subdirectory's mtime in nanoseconds ([`MISSING`] when
/// it does not exist, `None` when it is not a plain directory), from the
/// same `fstatat`, so the top is statted once.
fn scan_top_level(cache_fd: &OwnedFd, cache_dir: &Path) -> Result<(Vec<Other>, Vec<Option<i64>>)> {
    // 256 subdirectories and a few files: one getdents.
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 16 << 10];
    let mut dir = rustix::fs::RawDir::new(cache_fd, &mut buf);
    let mut out = Vec::new();
    let mut mtimes = vec![Some(MISSING); 256];
    while let Some(item) = dir.next() {
        let item = item.map_err(|e| Error::io("reading", cache_dir, e.into()))?;
        let fname = item.file_name();
        let b = fname.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        let Ok(st) = rustix::fs::statat(cache_fd, fname, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let t = FileType::from_raw_mode(st.st_mode as _);
        let path = String::from_utf8_lossy(b).into_owned();
        let (class, what) = match (TopLevel::classify(b), t) {
            (TopLevel::Subdir(s), FileType::Directory) => {
                mtimes[s as usize] = Some(mtime_ns(&st));
                continue;
            }
            (TopLevel::Subdir(s), t) => {
                mtimes[s as usize] = None;
                (
                    OtherClass::Odd,
                    format!(
                        "{} where a cache subdirectory belongs; not followed",
                        type_name(t)
                    ),
                )
            }
            (TopLevel::Readme, FileType::RegularFile) => (OtherClass::Go, "Go's README".into()),
            (TopLevel::TrimTxt, FileType::RegularFile) => {
                (OtherClass::Go, "Go's last trim time".into())
            }
            (TopLevel::TestExpire, FileType::RegularFile) => {
                (OtherClass::Go, "Go's test cache expiry".into())
            }
            (TopLevel::Fuzz, FileType::Directory) => (
                OtherClass::Go,
                "Go's fuzz cache (never trimmed by Go)".into(),
            ),
            (TopLevel::Gocache, FileType::Directory) => {
                (OtherClass::Gocache, "gocache's index and lock".into())
            }
            (_, t) => (OtherClass::Odd, format!("stray {}", type_name(t))),
        };
        let (apparent, allocated) = if t == FileType::Directory {
            tree_size(cache_fd, fname)
        } else {
            (size_of(&st), alloc_of(&st))
        };
        out.push(Other {
            path,
            class,
            what,
            apparent,
            allocated,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((out, mtimes))
}

/// Apparent and allocated bytes of a directory tree, not following links,
/// counting what it can read.
fn tree_size(parent: &OwnedFd, name: &CStr) -> (u64, u64) {
    let mut total = (0u64, 0u64);
    let Ok(st) = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return total;
    };
    total.0 = total.0.saturating_add(size_of(&st));
    total.1 = total.1.saturating_add(alloc_of(&st));
    if FileType::from_raw_mode(st.st_mode as _) != FileType::Directory {
        return total;
    }
    let Ok(fd) = open_dir_at(parent, name) else {
        return total;
    };
    let Ok(dir) = rustix::fs::Dir::read_from(&fd) else {
        return total;
    };
    for item in dir.flatten() {
        let b = item.file_name().to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        let (a, l) = tree_size(&fd, item.file_name());
        total.0 = total.0.saturating_add(a);
        total.1 = total.1.saturating_add(l);
    }
    total
}

fn odd(path: String, what: String, apparent: u64, allocated: u64) -> Other {
    Other {
        path,
        class: OtherClass::Odd,
        what,
        apparent,
        allocated,
    }
}

fn size_of(st: &rustix::fs::Stat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

fn alloc_of(st: &rustix::fs::Stat) -> u64 {
    u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512)
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "unknown file type",
    }
}
