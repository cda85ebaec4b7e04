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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::{Error, Result};
use crate::index::{Index, SubdirChanges, SubdirState};
use crate::layout::{ACTION_ENTRY_SIZE, ActionEntry, EntryName, Suffix, TopLevel, subdir_name};
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

/// Checks that `dir` is an existing, readable directory (following a
/// symlink at the cache directory itself: the user chose that path).
pub fn check_cache_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::CacheMissing(dir.to_owned()))
        }
        Err(e) => Err(Error::io("reading", dir, e)),
        Ok(m) if !m.is_dir() => Err(Error::CacheNotADirectory(dir.to_owned())),
        Ok(_) => std::fs::read_dir(dir)
            .map(drop)
            .map_err(|e| Error::io("reading", dir, e)),
    }
}

/// Which subdirectories an incremental scan would reread, without reading
/// any of them: those whose mtime differs from the recorded one.
pub fn stale_subdirs(cache_dir: &Path, index: &Index) -> Result<Vec<u8>> {
    let states = index.subdir_states()?;
    let dirfd = open_dir(cache_dir).map_err(|e| Error::io("opening", cache_dir, e))?;
    Ok((0..=255u8)
        .filter(|&s| needs_rescan(states[s as usize], subdir_mtime(&dirfd, s)))
        .collect())
}

fn needs_rescan(state: Option<SubdirState>, current: Option<i64>) -> bool {
    match (state.and_then(|s| s.mtime_ns), current) {
        (Some(recorded), Some(now)) => recorded != now,
        _ => true,
    }
}

/// The subdirectory's mtime in nanoseconds, [`MISSING`] when it does not
/// exist, `None` when it cannot be read or is not a plain directory.
fn subdir_mtime(cache_fd: &OwnedFd, subdir: u8) -> Option<i64> {
    match rustix::fs::statat(cache_fd, subdir_name(subdir), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory => {
            Some(mtime_ns(&st))
        }
        Ok(_) => None,
        Err(rustix::io::Errno::NOENT) => Some(MISSING),
        Err(_) => None,
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

fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
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
    check_cache_dir(cache_dir)?;
    let cache_fd = open_dir(cache_dir).map_err(|e| Error::io("opening", cache_dir, e))?;
    let mut summary = ScanSummary::default();

    let (top, mtimes) = scan_top_level(&cache_fd, cache_dir)?;
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
    let known: Vec<HashMap<EntryName, Entry>> = if fresh {
        vec![HashMap::new(); todo.len()]
    } else {
        todo.iter()
            .map(|&s| {
                Ok(index
                    .subdir_entries(s)?
                    .into_iter()
                    .map(|e| (e.name, e))
                    .collect())
            })
            .collect::<Result<_>>()?
    };

    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(todo.len());
    reporter.start("scan", todo.len() as u64);
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<(usize, SubdirResult)>(threads * 4);
    let outcome: Result<()> = std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, todo, known, cache_fd) = (&next, &todo, &known, &cache_fd);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= todo.len() {
                        break;
                    }
                    let result = scan_subdir(cache_fd, todo[i], &known[i], opts.full, now);
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Apply in batches: one transaction per few subdirectories keeps
        // commits cheap without holding the write lock for long.
        let mut batch = Vec::new();
        let mut result = Ok(());
        for (i, r) in rx {
            reporter.advance(1);
            if result.is_err() {
                continue; // drain so the workers can finish
            }
            let subdir = todo[i];
            match r {
                SubdirResult::Changes(changes, stats) => {
                    summary.rescanned.push(subdir);
                    summary.added += stats.added;
                    summary.updated += stats.updated;
                    summary.unchanged += stats.unchanged;
                    summary.action_files_read += stats.action_files_read;
                    summary.removed += changes.deletes.len() as u64;
                    summary.odd += changes.others.len() as u64;
                    batch.push(changes);
                    if batch.len() >= batch_size {
                        result = index.apply_subdirs(&batch, now);
                        batch.clear();
                    }
                }
                SubdirResult::Unreadable(msg) => {
                    summary.rescanned.push(subdir);
                    summary.warnings.push(msg.clone());
                    reporter.warn(&msg);
                    result = index.mark_subdir_dirty(subdir, now);
                }
            }
        }
        if result.is_ok() && !batch.is_empty() {
            result = index.apply_subdirs(&batch, now);
        }
        result
    });
    reporter.finish();
    outcome?;
    summary.rescanned.sort_unstable();
    Ok(summary)
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

fn scan_subdir(
    cache_fd: &OwnedFd,
    subdir: u8,
    known: &HashMap<EntryName, Entry>,
    full: bool,
    now: UnixTime,
) -> SubdirResult {
    let name = subdir_name(subdir);
    let mut changes = SubdirChanges {
        subdir,
        ..Default::default()
    };
    let mut stats = SubdirStats::default();
    let gone = |mut changes: SubdirChanges, mtime| {
        let mut deletes: Vec<EntryName> = known.keys().copied().collect();
        deletes.sort_unstable();
        changes.deletes = deletes;
        changes.mtime_ns = mtime;
        SubdirResult::Changes(changes, SubdirStats::default())
    };

    let before = match rustix::fs::statat(cache_fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return gone(changes, Some(MISSING)),
        Err(e) => return SubdirResult::Unreadable(format!("{name}: {e}")),
        Ok(st) => st,
    };
    if FileType::from_raw_mode(before.st_mode as _) != FileType::Directory {
        // A subdirectory name that is a file or a symlink: reported at the
        // top level, its "entries" are not ours to look into.
        return gone(changes, None);
    }
    let dir_fd = match rustix::fs::openat(
        cache_fd,
        name.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => return SubdirResult::Unreadable(format!("{name}: cannot open: {e}")),
    };
    let mtime_before = mtime_ns(&before);
    changes.dir_allocated = alloc_of(&before);
    let dir = match rustix::fs::Dir::read_from(&dir_fd) {
        Ok(d) => d,
        Err(e) => return SubdirResult::Unreadable(format!("{name}: cannot read: {e}")),
    };
    let mut seen = std::collections::HashSet::with_capacity(known.len());
    for item in dir {
        let item = match item {
            Ok(i) => i,
            Err(e) => return SubdirResult::Unreadable(format!("{name}: reading entries: {e}")),
        };
        let fname = item.file_name();
        let bytes = fname.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        // Incremental: a name the index knows is taken as it was; only new
        // and vanished names are looked at. (A known entry's mtime changes
        // when Go marks it used, which a full scan picks up; the executor
        // re-checks every entry before removing it anyway.)
        if !full
            && let Some(n) = EntryName::parse(bytes)
            && known.contains_key(&n)
        {
            seen.insert(n);
            stats.unchanged += 1;
            continue;
        }
        let rel = format!("{name}/{}", String::from_utf8_lossy(bytes));
        let st = match rustix::fs::statat(&dir_fd, fname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed between getdents and stat (a trim, Go's own trim).
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                changes
                    .others
                    .push(odd(rel, format!("cannot stat: {e}"), 0, 0));
                continue;
            }
        };
        let ftype = FileType::from_raw_mode(st.st_mode as _);
        let parsed = EntryName::parse(bytes).filter(|n| n.subdir() == subdir);
        let Some(ename) = parsed else {
            let what = match (ftype, EntryName::parse(bytes)) {
                (_, Some(_)) => format!("{} in the wrong subdirectory", type_name(ftype)),
                (FileType::RegularFile, None) => "stray file".to_string(),
                (t, None) => format!("stray {}", type_name(t)),
            };
            changes
                .others
                .push(odd(rel, what, size_of(&st), alloc_of(&st)));
            continue;
        };
        let entry = match (ename.suffix, ftype) {
            (Suffix::Action, FileType::RegularFile) => {
                read_action(&dir_fd, fname, ename, &st, known.get(&ename), &mut stats)
            }
            (Suffix::Data, FileType::RegularFile) => Ok(base_entry(ename, Kind::Output, &st)),
            (Suffix::Data, FileType::Directory) => read_exe(&dir_fd, fname, ename, &st),
            (_, t) => Err(format!(
                "{} where a cache entry belongs; not followed",
                type_name(t)
            )),
        };
        match entry {
            Ok(mut e) => {
                seen.insert(ename);
                match known.get(&ename) {
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
            Err(what) => changes
                .others
                .push(odd(rel, what, size_of(&st), alloc_of(&st))),
        }
    }
    let mut deletes: Vec<EntryName> = known
        .keys()
        .filter(|n| !seen.contains(n))
        .copied()
        .collect();
    deletes.sort_unstable();
    changes.deletes = deletes;
    // The subdirectory's totals: what is new or changed, plus what is
    // unchanged from before.
    let mut totals = crate::policy::Totals::default();
    let upserted: std::collections::HashSet<EntryName> =
        changes.upserts.iter().map(|e| e.name).collect();
    for e in &changes.upserts {
        totals.add(e);
    }
    for (n, e) in known {
        if seen.contains(n) && !upserted.contains(n) {
            totals.add(e);
        }
    }
    changes.totals = totals;

    // Trust the mtime only if nothing changed while we read and it is not
    // so recent that a change in the same tick could still be hidden.
    let after = rustix::fs::fstat(&dir_fd).map(|st| mtime_ns(&st)).ok();
    let racy = mtime_before >= (now - RACY_SECS).saturating_mul(1_000_000_000);
    changes.mtime_ns = (after == Some(mtime_before) && !racy).then_some(mtime_before);
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
    let fd = rustix::fs::openat(
        dir_fd,
        fname,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
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
/// Also returns each subdirectory's mtime as [`subdir_mtime`] would (from
/// the same `fstatat`, so the top is statted once).
fn scan_top_level(cache_fd: &OwnedFd, cache_dir: &Path) -> Result<(Vec<Other>, Vec<Option<i64>>)> {
    let dir = rustix::fs::Dir::read_from(cache_fd)
        .map_err(|e| Error::io("reading", cache_dir, e.into()))?;
    let mut out = Vec::new();
    let mut mtimes = vec![Some(MISSING); 256];
    for item in dir {
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
    let Ok(fd) = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
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

/// The path of an entry under `cache_dir` (for messages).
pub fn entry_path(cache_dir: &Path, name: &EntryName) -> PathBuf {
    name.path_in(cache_dir)
}
