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
//!
//! # Parts
//!
//! - `listing`: what is on disk: the top level and each subdirectory's
//!   names, read through descriptors;
//! - `reconcile`: one subdirectory's listing against what the index knew,
//!   into the changes to write;
//! - `head_start`: the hook's head start (reading the cache while another
//!   thread opens the index);
//! - here: which subdirectories to reread, the workers, and writing their
//!   changes to the index in batches.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::cachedir::{check_cache_dir, open_dir};
use crate::error::{Error, Result};
use crate::index::{Index, SubdirChanges, SubdirState};
use crate::layout::{EntryName, IdHash};
use crate::model::{Entry, OtherClass, UnixTime};
use crate::report::Reporter;

mod head_start;
mod listing;
mod reconcile;

pub use head_start::{HEAD_START_LISTINGS, HeadStart};
use listing::{Listed, TopLevelRead, list_subdir, scan_top_level};
use reconcile::{Stamps, SubdirResult, reconcile};

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
    /// Reread every entry (its mtime, its size) of the subdirectories
    /// whose mtime changed, not only new and vanished names: for a caller
    /// that cannot trust the entries' mtimes where a subdirectory's
    /// changed (`gocache ci begin` after a restore that reset every mtime,
    /// such as `cp -r`). Unchanged subdirectories are still skipped.
    pub reread_changed: bool,
    /// Worker threads for the walk (0: one per core).
    pub threads: usize,
    /// The first sighting recorded for entries new to the index (default:
    /// the scan's `now`). `gocache ci begin` records what it finds as seen
    /// just before its run starts, so that the run can tell what it made.
    pub first_seen: Option<UnixTime>,
    /// Record a subdirectory's mtime even when it is within [`RACY_SECS`]
    /// of `now`, where a change in the same clock tick could hide behind
    /// it. Only for a caller that then sets the mtime itself, to one in the
    /// past, if it has not changed since (`gocache ci end` seals the cache
    /// that way, with nothing else running; see
    /// [`crate::cachedir::seal_subdir`]).
    pub trust_recent: bool,
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
    let head = head.unwrap_or_else(|| HeadStart {
        top: scan_top_level(&cache_fd, cache_dir),
        listings: Vec::new(),
        known: Vec::new(),
    });
    let todo = sync_top_level(index, head.top, opts.full, &mut summary)?;
    if todo.is_empty() {
        return Ok(summary);
    }
    let rescan = Rescan {
        cache_fd: &cache_fd,
        stamps: Stamps {
            now,
            first_seen: opts.first_seen.unwrap_or(now),
            trust_recent: opts.trust_recent,
            credit_after_ns: index.credit_found_after(),
        },
        // A fresh index is filled in one transaction (every page written
        // once); otherwise a few subdirectories per transaction keeps the
        // write lock short for hooks running alongside.
        fresh: index.is_empty()?,
        full: opts.full || opts.reread_changed,
        now,
        todo,
    };
    reporter.start("scan", rescan.todo.len() as u64);
    let outcome = rescan.run(
        index,
        opts.threads,
        head.listings,
        head.known,
        reporter,
        &mut summary,
    );
    reporter.finish();
    outcome?;
    summary.rescanned.sort_unstable();
    Ok(summary)
}

/// Records the top level's odd items (when they changed) and returns the
/// subdirectories to reread: every one for a full scan, else those whose
/// mtime differs from the one recorded.
fn sync_top_level(
    index: &mut Index,
    top: TopLevelRead,
    full: bool,
    summary: &mut ScanSummary,
) -> Result<Vec<u8>> {
    let (top, mtimes) = top?;
    summary.odd += top.iter().filter(|o| o.class == OtherClass::Odd).count() as u64;
    if index.top_level_others()? != top {
        index.set_top_level_others(&top)?;
    }
    let states = index.subdir_states()?;
    let todo: Vec<u8> = (0..=255u8)
        .filter(|&s| full || needs_rescan(states[s as usize], mtimes[s as usize]))
        .collect();
    summary.unchanged_subdirs = 256 - todo.len();
    Ok(todo)
}

/// The rereading of the subdirectories that need it.
struct Rescan<'a> {
    cache_fd: &'a OwnedFd,
    /// The subdirectories to reread, in order.
    todo: Vec<u8>,
    /// Reread every entry, not only new and vanished names.
    full: bool,
    /// The index holds no entry yet.
    fresh: bool,
    now: UnixTime,
    /// What reconciling stamps and judges by.
    stamps: Stamps,
}

impl Rescan<'_> {
    /// Rereads every subdirectory of `todo` and writes the changes to
    /// `index`. The subdirectories in `listed_ahead` are reconciled on this
    /// thread; workers list and reconcile the rest. Workers list their
    /// subdirectory while this thread loads what the index knows of it
    /// (`preloaded` when the head start did); each then waits for its
    /// [`Known`], reconciles, and hands the result back to this thread,
    /// which writes in batches.
    fn run(
        &self,
        index: &mut Index,
        threads: usize,
        listed_ahead: Vec<(u8, Listed)>,
        mut preloaded: Vec<(u8, Known)>,
        reporter: &dyn Reporter,
        summary: &mut ScanSummary,
    ) -> Result<()> {
        let todo = &self.todo;
        let promised: Vec<bool> = todo
            .iter()
            .map(|s| listed_ahead.iter().any(|(l, _)| l == s))
            .collect();
        let work: Vec<usize> = (0..todo.len()).filter(|&i| !promised[i]).collect();
        let threads = match (threads, work.len()) {
            (_, n @ (0 | 1)) => n,
            (0, n) => std::thread::available_parallelism().map_or(1, |c| c.get().min(n)),
            (t, n) => t.min(n),
        };
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::sync_channel::<(usize, SubdirResult)>(threads * 4 + 1);
        let (known_tx, known_rx): (Vec<_>, Vec<_>) = todo
            .iter()
            .map(|_| {
                let (t, r) = mpsc::sync_channel::<Known>(1);
                (t, std::sync::Mutex::new(r))
            })
            .unzip();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let tx = tx.clone();
                let (next, work, known_rx) = (&next, &work, &known_rx);
                scope.spawn(move || {
                    while let Some(&i) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let listed = list_subdir(self.cache_fd, todo[i]);
                        let known = match known_rx[i].lock().map(|r| r.recv()) {
                            Ok(Ok(k)) => k,
                            _ => break, // loading failed: the scan is over
                        };
                        let result = reconcile(listed, todo[i], &known, self.full, &self.stamps);
                        if tx.send((i, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut kept: Vec<Option<Known>> = (0..todo.len()).map(|_| None).collect();
            for (i, &s) in todo.iter().enumerate() {
                let pre = preloaded.iter().position(|(p, _)| *p == s);
                let pre = pre.map(|p| preloaded.swap_remove(p).1);
                match self.known(index, s, pre) {
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
            let mut apply = Applier {
                index,
                summary,
                batch: Vec::new(),
                batch_size: if self.fresh { 256 } else { 16 },
                now: self.now,
                reporter,
                result: Ok(()),
            };
            for (s, listed) in listed_ahead {
                if let Some(i) = todo.iter().position(|&t| t == s)
                    && let Some(known) = kept[i].take()
                {
                    apply.absorb(s, reconcile(listed, s, &known, self.full, &self.stamps));
                }
            }
            for (i, r) in rx {
                apply.absorb(todo[i], r);
            }
            apply.finish()
        })
    }

    /// What the index knows of subdirectory `s`, so that unchanged entries
    /// keep their hits and action files are not reread: a full scan
    /// compares every entry with its row (and recomputes the
    /// subdirectory's totals); an incremental one needs only the names
    /// (`preloaded` by a head start, if it did), and its totals change by
    /// what it adds and drops.
    fn known(&self, index: &Index, s: u8, preloaded: Option<Known>) -> Result<Known> {
        if self.fresh {
            Ok(Known::Rows(HashMap::default()))
        } else if let (false, Some(names)) = (self.full, preloaded) {
            Ok(names)
        } else if self.full {
            index
                .subdir_entries(s)
                .map(|rows| Known::Rows(rows.into_iter().map(|e| (e.name, e)).collect()))
        } else {
            index
                .subdir_names(s)
                .map(|names| Known::Names(names.into_iter().collect()))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cachedir::fixtures::{TinyCache, set_mtime};
    use crate::layout::{Id, subdir_name};
    use crate::model::{Kind, Totals};
    use crate::report::Silent;

    /// When the entries were last used.
    const T: UnixTime = 1_700_000_000;

    /// Well after every mtime on disk, so that nothing is racy.
    fn later() -> UnixTime {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 3600
    }

    fn stamps(now: UnixTime) -> Stamps {
        Stamps {
            now,
            first_seen: now,
            trust_recent: false,
            credit_after_ns: None,
        }
    }

    fn open_index(c: &TinyCache) -> Index {
        Index::open(&c.join("gocache/index.sqlite")).unwrap()
    }

    fn sync(c: &TinyCache, ix: &mut Index, full: bool, now: UnixTime) -> ScanSummary {
        let opts = ScanOptions {
            full,
            threads: 2,
            ..Default::default()
        };
        scan(c.path(), ix, &opts, now, &Silent).unwrap()
    }

    /// The running totals must be what the rows add up to.
    fn assert_totals_add_up(ix: &Index) -> Totals {
        let mut rows = Totals::default();
        ix.entries().unwrap().iter().for_each(|e| rows.add(e));
        assert_eq!(ix.fast_totals().unwrap(), rows);
        rows
    }

    #[test]
    fn full_and_incremental_scans_keep_the_same_totals() {
        let c = TinyCache::new();
        c.action(7, 8, T);
        c.output(8, 10, T);
        c.exe(9, "hello", T);
        let orphan = c.output(10, 5000, T);
        let mut ix = open_index(&c);
        let s = sync(&c, &mut ix, false, later());
        assert_eq!((s.added, s.removed, s.action_files_read), (4, 0, 1));
        let t = assert_totals_add_up(&ix);
        assert_eq!((t.build.entries, t.exe.entries), (3, 1));
        assert_eq!(t.build.apparent_bytes, 175 + 10 + 5000);
        assert_eq!(t.exe.apparent_bytes, 4, "an executable's own size");

        // Go adds a pair and its own trim removes the orphan.
        c.action(11, 12, T);
        c.output(12, 20, T);
        std::fs::remove_file(orphan.path_in(c.path())).unwrap();
        let s = sync(&c, &mut ix, false, later());
        assert_eq!((s.added, s.removed, s.updated), (2, 1, 0));
        assert_eq!(s.rescanned, vec![10, 11, 12]);
        let incremental = assert_totals_add_up(&ix);
        assert_eq!(incremental.total.entries, 5);

        // A full scan rereads everything and finds the same.
        let s = sync(&c, &mut ix, true, later());
        assert_eq!((s.added, s.removed, s.updated, s.unchanged), (0, 0, 0, 5));
        assert_eq!(s.rescanned.len(), 256);
        assert_eq!(assert_totals_add_up(&ix), incremental);
    }

    #[test]
    fn a_full_scan_sees_uses_an_incremental_one_takes_on_trust() {
        let c = TinyCache::new();
        let o = c.output(8, 10, T);
        let mut ix = open_index(&c);
        sync(&c, &mut ix, false, later());
        // Go's markUsed: a new mtime on the entry, not on its directory.
        set_mtime(&o.path_in(c.path()), T + 7200);
        let s = sync(&c, &mut ix, false, later());
        assert!(s.rescanned.is_empty());
        assert_eq!(ix.entry(&o).unwrap().unwrap().last_use, T);
        let s = sync(&c, &mut ix, true, later());
        assert_eq!(s.updated, 1);
        assert_eq!(ix.entry(&o).unwrap().unwrap().last_use, T + 7200);
    }

    #[test]
    fn a_subdirectory_changed_within_the_racy_window_is_read_again_next_time() {
        let c = TinyCache::new();
        c.action(7, 8, T);
        c.output(8, 10, T);
        let now = later();
        for s in 0..=255u8 {
            set_mtime(&c.join(subdir_name(s)), now - 100);
        }
        set_mtime(&c.join("07"), now - RACY_SECS + 1);
        let mut ix = open_index(&c);
        assert_eq!(sync(&c, &mut ix, false, now).rescanned.len(), 256);
        let states = ix.subdir_states().unwrap();
        assert_eq!(states[7].unwrap().mtime_ns, None, "rescan next time");
        assert!(states[8].unwrap().mtime_ns.is_some());

        let s = sync(&c, &mut ix, false, now);
        assert_eq!((s.rescanned, s.unchanged_subdirs), (vec![7], 255));
        // Once the window has passed, the mtime is trusted.
        let s = sync(&c, &mut ix, false, now + RACY_SECS);
        assert_eq!(s.rescanned, vec![7]);
        assert!(
            sync(&c, &mut ix, false, now + RACY_SECS)
                .rescanned
                .is_empty()
        );
        assert_eq!(ix.entry_count().unwrap(), 2);
    }

    #[test]
    fn a_caller_may_stamp_first_sightings_and_trust_recent_mtimes() {
        let c = TinyCache::new();
        let o = c.output(8, 10, T);
        let now = later();
        set_mtime(&c.join("08"), now);
        let mut ix = open_index(&c);
        let opts = ScanOptions {
            first_seen: Some(now - 1),
            trust_recent: true,
            ..Default::default()
        };
        scan(c.path(), &mut ix, &opts, now, &Silent).unwrap();
        assert_eq!(ix.entry(&o).unwrap().unwrap().first_seen, now - 1);
        let states = ix.subdir_states().unwrap();
        assert_eq!(states[8].unwrap().mtime_ns, Some(now * 1_000_000_000));
    }

    #[test]
    fn names_that_vanish_are_dropped_once() {
        let c = TinyCache::new();
        let a = c.action(7, 7, T);
        let o = c.output(7, 10, T);
        let mut ix = open_index(&c);
        sync(&c, &mut ix, false, later());
        std::fs::remove_file(o.path_in(c.path())).unwrap();
        let s = sync(&c, &mut ix, false, later());
        assert_eq!((s.removed, s.rescanned), (1, vec![7]));
        assert_eq!(assert_totals_add_up(&ix).total.entries, 1);
        assert!(ix.entry(&a).unwrap().is_some());

        // A name listed, then removed before it is looked at (a trim, Go's
        // own trim), is neither an entry nor odd.
        let n = c.output(0x30, 10, T);
        let cache_fd = open_dir(c.path()).unwrap();
        let listed = list_subdir(&cache_fd, 0x30);
        std::fs::remove_file(n.path_in(c.path())).unwrap();
        let known = Known::Names(Default::default());
        let SubdirResult::Changes(changes, stats) =
            reconcile(listed, 0x30, &known, false, &stamps(T))
        else {
            panic!("the subdirectory is readable");
        };
        assert!(changes.upserts.is_empty() && changes.others.is_empty());
        assert_eq!((stats.added, stats.unchanged), (0, 0));
    }

    #[test]
    fn odd_items_are_recorded_and_symlinks_never_followed() {
        let c = TinyCache::new();
        let outside = tempfile::tempdir().unwrap();
        // Something worth indexing outside the cache, under entry names.
        let hex = |b: u8| Id([b; 32]).to_hex();
        let action = crate::layout::ActionEntry {
            action: Id([7; 32]),
            output: Id([7; 32]),
            size: 3,
            time_nanos: 0,
        };
        std::fs::write(
            outside.path().join(format!("{}-a", hex(7))),
            action.format(),
        )
        .unwrap();
        std::fs::write(outside.path().join(format!("{}-d", hex(10))), b"out").unwrap();
        let link =
            |target: &Path, at: &str| std::os::unix::fs::symlink(target, c.join(at)).unwrap();
        link(
            &outside.path().join(format!("{}-a", hex(7))),
            &format!("07/{}-a", hex(7)),
        );
        std::fs::remove_dir(c.join("0a")).unwrap();
        link(outside.path(), "0a");
        std::fs::write(c.join("08/stray"), b"?").unwrap();
        std::fs::write(c.join(format!("08/{}-d", hex(9))), b"misplaced").unwrap();
        let two = c.join(format!("09/{}-d", hex(9)));
        std::fs::create_dir(&two).unwrap();
        std::fs::write(two.join("one"), b"1").unwrap();
        std::fs::write(two.join("two"), b"2").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            c.join(format!("0b/{}-d", hex(11))),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();

        let mut ix = open_index(&c);
        let s = sync(&c, &mut ix, true, later());
        assert_eq!(ix.entry_count().unwrap(), 0, "nothing here is an entry");
        assert_eq!(s.odd, 6);
        let odd: Vec<(String, String)> = ix
            .others()
            .unwrap()
            .into_iter()
            .filter(|o| o.class == OtherClass::Odd)
            .map(|o| (o.path, o.what))
            .collect();
        let want = [
            (
                format!("07/{}-a", hex(7)),
                "symlink where a cache entry belongs; not followed",
            ),
            (format!("08/{}-d", hex(9)), "file in the wrong subdirectory"),
            ("08/stray".to_string(), "stray file"),
            (
                format!("09/{}-d", hex(9)),
                "executable directory holding 2 entries, expected 1",
            ),
            (
                "0a".to_string(),
                "symlink where a cache subdirectory belongs; not followed",
            ),
            (
                format!("0b/{}-d", hex(11)),
                "fifo where a cache entry belongs; not followed",
            ),
        ];
        let want: Vec<(String, String)> =
            want.into_iter().map(|(p, w)| (p, w.to_string())).collect();
        assert_eq!(odd, want);
        assert!(ix.entries().unwrap().iter().all(|e| e.kind != Kind::Action));
    }

    /// A scan credits to the connection's module only the entries whose
    /// mtime is later than the moment its go command started, to the
    /// nanosecond: not what was there before, even in the same second.
    #[test]
    fn a_scan_credits_only_what_was_written_after_the_command_started() {
        use std::time::{Duration, SystemTime};
        let at_ns = |p: &std::path::Path, ns: i64| {
            let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64);
            std::fs::File::open(p)
                .unwrap()
                .set_times(std::fs::FileTimes::new().set_modified(t))
                .unwrap();
        };
        let sec = 1_000_000_000i64;
        let start = T * sec + sec / 2;
        let c = TinyCache::new();
        let old = c.output(1, 10, T - 100);
        let same_second_before = c.output(2, 10, T);
        at_ns(&same_second_before.path_in(c.path()), T * sec + sec / 4);
        let same_second_after = c.output(3, 10, T);
        at_ns(&same_second_after.path_in(c.path()), start + 1);
        let later_exe = c.exe(4, "tool", T + 10);
        let module = crate::gomod::Module {
            root: "/src/tiny".into(),
            path: Some("example.com/tiny".into()),
        };
        let mut ix = open_index(&c);
        ix.credit_module(Some(module.clone()), Some(start));
        let s = sync(&c, &mut ix, false, later());
        assert_eq!(s.added, 4);
        let credited = |ix: &Index, n| ix.module_of(n).unwrap().is_some();
        assert!(!credited(&ix, &old));
        assert!(!credited(&ix, &same_second_before));
        assert!(credited(&ix, &same_second_after));
        assert!(credited(&ix, &later_exe));
        let t = ix.module_totals().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].bytes.entries, 2);
        // A connection that credits what it finds from no moment (prog's)
        // credits nothing a scan finds.
        let new = c.output(5, 10, T + 20);
        let mut prog = open_index(&c);
        prog.credit_module(Some(module), None);
        let s = sync(&c, &mut prog, false, later());
        assert_eq!(s.added, 1);
        assert!(!credited(&prog, &new));
    }
}
