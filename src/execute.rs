//! Executes an eviction plan safely. The policy decides; this acts.
//!
//! This module only acts on the victims it is given: deciding what goes is
//! [`crate::policy`]'s, and syncing, planning and taking the lock around it
//! is [`crate::enforce`]'s.
//!
//! # Safety
//!
//! - Only names of the strict pattern `[0-9a-f]{2}/[0-9a-f]{64}-[ad]`
//!   ([`EntryName`]) are ever removed, through a descriptor of the cache
//!   directory opened once, with each subdirectory opened
//!   `O_NOFOLLOW | O_DIRECTORY`: a path is never built from an unchecked
//!   name, and nothing outside the cache directory can be reached.
//! - Each entry is re-checked just before it is removed, with
//!   `fstatat(AT_SYMLINK_NOFOLLOW)`: still there, same kind (a regular file
//!   for `-a` and output `-d`, a directory for an executable), and not used
//!   since the plan was made (mtime not newer than the plan saw). Anything
//!   else is skipped and counted.
//! - An output or executable is then renamed aside (to a name Go ignores)
//!   and checked once more before it is removed, so Go can never be handed a
//!   path that we delete afterwards: Go marks an entry used before handing
//!   out its path, so either we see the mark and put the entry back, or Go
//!   finds it missing and treats it as a miss. An action entry needs no
//!   such step: Go reads it whole when it opens it and never hands out its
//!   path.
//! - An executable directory is emptied with `unlinkat` relative to its own
//!   descriptor (a symlink inside is removed as a link) and then removed; one
//!   holding a subdirectory is left alone and reported.
//! - A file already gone is not an error, but it is counted, and its index
//!   row is dropped all the same.
//!
//! # Locking
//!
//! One trim at a time: the caller holds the
//! [`TrimLock`](crate::cachedir::TrimLock). Readers (`stats`) never take it.
//!
//! # Crashes
//!
//! Removing an action entry or output leaves a cache Go can use: Go treats
//! a missing output as a miss and rebuilds. An output goes with the actions
//! that name it, actions first, so a crash between the two leaves an
//! orphan output (garbage), never an action naming a missing output that
//! was meant to stay. The index is updated in batches after the removals;
//! rows left behind by a kill are dropped by the next scan.

use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType};

use crate::cachedir::{
    CacheDir, ExeDirError, remove_exe_dir, subdirs_with_trash, sweep_trash, trash_name,
};
use crate::error::Result;
use crate::index::Index;
use crate::layout::EntryName;
use crate::model::{Kind, UnixTime};
use crate::policy::Victim;
use crate::report::Reporter;

/// Index rows are dropped in batches of this many removals, one write
/// transaction each. Small enough that the write lock is never held for
/// long (the hook and stats wait at most `index::LOCK_WAIT` for it: 50,000
/// held it 3.7 s on a loaded 2-core machine, 8,192 well under 1 s), and
/// that the WAL stays within one `-shm` block between checkpoints (a bigger
/// transaction grew `-shm` by 32 KiB, which the budget had not counted).
pub const INDEX_BATCH: usize = 8_192;

/// What executing a plan did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Executed {
    /// Entries removed by us.
    pub removed: u64,
    /// Allocated bytes they held.
    pub removed_allocated: u64,
    /// Apparent bytes they held.
    pub removed_apparent: u64,
    /// Entries already gone when we got to them (someone else removed them).
    pub already_gone: u64,
    /// Entries skipped, by reason.
    pub skipped_used_since: u64,
    /// Entries skipped because they changed kind.
    pub skipped_changed: u64,
    /// Executable directories skipped because they hold a subdirectory.
    pub skipped_odd: u64,
    /// Removals that failed.
    pub failed: u64,
    /// Leftovers of a killed trim removed on the way.
    pub trash_swept: u64,
    /// The first few failure messages.
    pub errors: Vec<String>,
    /// The names removed or found gone, in order (for the index and tests).
    #[serde(skip)]
    pub gone: Vec<EntryName>,
    /// Entries skipped because Go used them since the plan, with the mtime
    /// found, for the index and the next plan.
    #[serde(skip)]
    pub used_since: Vec<(EntryName, UnixTime)>,
}

impl Executed {
    /// Adds another round's counts to these.
    pub fn absorb(&mut self, o: Executed) {
        self.removed += o.removed;
        self.removed_allocated = self.removed_allocated.saturating_add(o.removed_allocated);
        self.removed_apparent = self.removed_apparent.saturating_add(o.removed_apparent);
        self.already_gone += o.already_gone;
        self.skipped_used_since += o.skipped_used_since;
        self.skipped_changed += o.skipped_changed;
        self.skipped_odd += o.skipped_odd;
        self.failed += o.failed;
        self.trash_swept += o.trash_swept;
        self.errors.extend(o.errors);
        self.errors.truncate(20);
        self.gone.extend(o.gone);
        self.used_since = o.used_since;
    }
}

/// What became of one victim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Removed by us.
    Removed,
    /// Already gone when we got to it (someone else removed it).
    AlreadyGone,
    /// Its mtime is newer than the plan saw: Go used it since. Kept.
    UsedSince {
        /// The mtime found, for the index and the next plan.
        mtime: UnixTime,
    },
    /// It is no longer what the plan thought (a file became a directory, a
    /// symlink appeared, …). Kept.
    Changed,
    /// Not Go's layout (an executable directory holding a subdirectory):
    /// left alone, with why.
    Odd(String),
    /// The removal failed (permissions, I/O): what and why.
    Failed(String),
}

impl From<ExeDirError> for Outcome {
    fn from(e: ExeDirError) -> Outcome {
        match e {
            ExeDirError::HoldsSubdir => Outcome::Odd(e.to_string()),
            ExeDirError::Failed(msg) => Outcome::Failed(msg),
        }
    }
}

/// Removes `victims` from the cache in `dir`, re-checking each one, and
/// drops their rows from `index` in batches. The caller holds the trim
/// lock.
///
/// Removals run on a few worker threads (unlinking is syscall-bound, and
/// the kernel serialises only within one directory), taking victims in plan
/// order in small chunks, while this thread updates the index. So the
/// order is the plan's up to a window of a few chunks: an output can go
/// just before an action naming it, which Go reads as a miss, like any
/// output removed behind its back.
pub fn execute(
    dir: &CacheDir,
    victims: &[Victim],
    mut index: Option<&mut Index>,
    reporter: &dyn Reporter,
) -> Result<Executed> {
    let mut out = Executed::default();
    reporter.start("trim", victims.len() as u64);
    // Trash left by a killed trim shows up in the scan as an odd file: sweep
    // only the subdirectories where the index saw some (without an index,
    // every subdirectory touched).
    let trash_in = match index.as_deref() {
        Some(ix) => Some(subdirs_with_trash(&ix.others()?)),
        None => None,
    };
    // Open every subdirectory the plan touches once, up front. One that is
    // gone (go clean -cache) or not a real directory stays None: whatever
    // the plan named there is not there.
    let mut wanted = [false; 256];
    for v in victims {
        wanted[v.name.subdir() as usize] = true;
    }
    let mut subdirs: Vec<Option<&OwnedFd>> = Vec::with_capacity(256);
    for (s, &want) in wanted.iter().enumerate() {
        let s = s as u8;
        let fd = want.then(|| dir.subdir(s)).flatten();
        if let Some(fd) = fd
            && trash_in.as_ref().is_none_or(|t| t.contains(&s))
        {
            out.trash_swept += sweep_trash(fd);
        }
        subdirs.push(fd);
    }

    let workers = worker_count(victims.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<(usize, Outcome)>>();
    let pid = std::process::id();
    let mut pending: Vec<EntryName> = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        for w in 0..workers {
            let tx = tx.clone();
            let (next, subdirs) = (&next, &subdirs);
            scope.spawn(move || {
                let trash = trash_name(pid, w);
                loop {
                    let start = next.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
                    if start >= victims.len() {
                        break;
                    }
                    let end = (start + CHUNK).min(victims.len());
                    let done: Vec<(usize, Outcome)> = (start..end)
                        .map(|i| {
                            let v = &victims[i];
                            let outcome = match subdirs[v.name.subdir() as usize] {
                                None => Outcome::AlreadyGone,
                                Some(fd) => remove_one(fd, v, &trash),
                            };
                            (i, outcome)
                        })
                        .collect();
                    if tx.send(done).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for done in rx {
            reporter.advance(done.len() as u64);
            for (i, outcome) in done {
                out.record(&victims[i], outcome, reporter, &mut pending);
            }
            if pending.len() >= INDEX_BATCH
                && let Some(ix) = index.as_deref_mut()
            {
                ix.remove_entries(&pending)?;
                pending.clear();
            }
        }
        Ok(())
    })?;
    if let Some(ix) = index {
        ix.remove_entries(&pending)?;
    }
    reporter.finish();
    Ok(out)
}

/// Removals a worker takes at a time.
const CHUNK: usize = 32;

/// Threads removing entries: one for small plans (a hook's few evictions
/// are not worth a thread), else four per core, between 4 and 16. Unlinking
/// spends most of its time waiting on the filesystem's journal and block
/// allocator rather than on a CPU: on a 2-core ext4 machine, 2 threads
/// removed 15.6k entries/s, 4 threads 20k/s, 8 threads 27k/s.
fn worker_count(victims: usize) -> usize {
    if victims < 2 * CHUNK {
        return 1;
    }
    std::thread::available_parallelism().map_or(4, |n| n.get().saturating_mul(4).clamp(4, 16))
}

impl Executed {
    fn record(
        &mut self,
        v: &Victim,
        outcome: Outcome,
        reporter: &dyn Reporter,
        pending: &mut Vec<EntryName>,
    ) {
        let why = match outcome {
            Outcome::Removed => {
                self.removed += 1;
                self.removed_allocated = self.removed_allocated.saturating_add(v.allocated);
                self.removed_apparent = self.removed_apparent.saturating_add(v.apparent);
                self.gone.push(v.name);
                pending.push(v.name);
                return;
            }
            Outcome::AlreadyGone => {
                self.already_gone += 1;
                self.gone.push(v.name);
                pending.push(v.name);
                return;
            }
            Outcome::UsedSince { mtime } => {
                self.skipped_used_since += 1;
                self.used_since.push((v.name, mtime));
                return;
            }
            Outcome::Changed => {
                self.skipped_changed += 1;
                return;
            }
            Outcome::Odd(why) => {
                self.skipped_odd += 1;
                why
            }
            Outcome::Failed(why) => {
                self.failed += 1;
                why
            }
        };
        reporter.detail(&format!("{}: {why}", v.name));
        if self.errors.len() < 20 {
            self.errors.push(format!("{}: {why}", v.name));
        }
    }
}

/// Removes one victim from its subdirectory `dir`, moving it aside to
/// `trash` first unless it is an action entry (see the module doc).
fn remove_one(dir: &OwnedFd, v: &Victim, trash: &str) -> Outcome {
    let name = v.name.file_name();
    let st = match rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Outcome::AlreadyGone,
        Err(e) => return Outcome::Failed(format!("cannot stat: {e}")),
    };
    if let Some(keep) = changed_since_plan(&st, v) {
        return keep;
    }
    if v.kind == Kind::Action {
        // Go reads an action entry whole when it opens it and never hands
        // out its path, so removing one it just read is harmless, and one
        // it has not opened yet is a miss: no need to move it aside.
        return match rustix::fs::unlinkat(dir, name.as_str(), AtFlags::empty()) {
            Ok(()) => Outcome::Removed,
            Err(rustix::io::Errno::NOENT) => Outcome::AlreadyGone,
            Err(e) => Outcome::Failed(format!("cannot remove: {e}")),
        };
    }
    // An output or executable: move it aside first, then look again. Go
    // marks an entry used (a fresh mtime) before it hands out its path, so:
    // if Go got there first we see its mark now and put the entry back; if
    // it comes after the rename, it finds nothing, which Go treats as a
    // miss and rebuilds. Stat-then-unlink would leave a window in which Go
    // hands out a path we then delete.
    match rustix::fs::renameat(dir, name.as_str(), dir, trash) {
        Ok(()) => {}
        Err(rustix::io::Errno::NOENT) => return Outcome::AlreadyGone,
        Err(e) => return Outcome::Failed(format!("cannot move aside: {e}")),
    }
    let recheck = match rustix::fs::statat(dir, trash, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => changed_since_plan(&st, v),
        Err(e) => Some(Outcome::Failed(format!(
            "cannot stat after moving aside: {e}"
        ))),
    };
    if let Some(keep) = recheck {
        put_back(dir, trash, &name);
        return keep;
    }
    let removed = match v.kind {
        Kind::Exe => remove_exe_dir(dir, trash).map_err(Outcome::from),
        _ => rustix::fs::unlinkat(dir, trash, AtFlags::empty())
            .map_err(|e| Outcome::Failed(format!("cannot remove: {e}"))),
    };
    match removed {
        Ok(()) => Outcome::Removed,
        Err(keep) => {
            put_back(dir, trash, &name);
            keep
        }
    }
}

/// Why the entry `st` describes must stay: it is no longer the kind the
/// plan saw, or Go used it since (its mtime is newer). `None`: it may go.
fn changed_since_plan(st: &rustix::fs::Stat, v: &Victim) -> Option<Outcome> {
    let expected = match v.kind {
        Kind::Action | Kind::Output => FileType::RegularFile,
        Kind::Exe => FileType::Directory,
    };
    if FileType::from_raw_mode(st.st_mode as _) != expected {
        return Some(Outcome::Changed);
    }
    #[allow(clippy::useless_conversion)]
    let mtime = i64::from(st.st_mtime);
    (mtime > v.mtime).then_some(Outcome::UsedSince { mtime })
}

/// Moves an entry back from its trash name. If Go wrote a new copy under
/// the entry's name meanwhile, Go's copy wins and ours is dropped.
fn put_back(dir: &OwnedFd, trash: &str, name: &str) {
    match rustix::fs::renameat_with(dir, trash, dir, name, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {
            let _ = rustix::fs::unlinkat(dir, trash, AtFlags::empty())
                .or_else(|_| remove_exe_dir(dir, trash).map_err(|_| rustix::io::Errno::IO));
        }
        Err(_) => {
            // No RENAME_NOREPLACE on this filesystem: a plain rename. Go's
            // entries are content-addressed, so either copy is right.
            let _ = rustix::fs::renameat(dir, trash, dir, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cachedir::fixtures::{TinyCache, set_mtime};
    use crate::index::SubdirChanges;
    use crate::model::fixtures;
    use crate::policy::Rule;
    use crate::report::Silent;

    const T: UnixTime = 1_700_000_000;

    fn victim(name: EntryName, kind: Kind, mtime: UnixTime) -> Victim {
        Victim {
            name,
            kind,
            tier: kind.tier(),
            rule: Rule::Budget,
            allocated: 4096,
            apparent: 3,
            mtime,
            last_use: mtime,
        }
    }

    fn there(c: &TinyCache, name: &EntryName) -> bool {
        std::fs::symlink_metadata(name.path_in(c.path())).is_ok()
    }

    fn names_in(c: &TinyCache, s: u8) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(c.join(crate::layout::subdir_name(s)))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn entries_unchanged_since_the_plan_go_and_their_bytes_count() {
        let c = TinyCache::new();
        let (a, o, x) = (c.action(7, 8, T), c.output(8, 10, T), c.exe(9, "hello", T));
        let dir = CacheDir::open(c.path()).unwrap();
        let vs = [
            victim(a, Kind::Action, T),
            victim(o, Kind::Output, T),
            victim(x, Kind::Exe, T),
        ];
        let done = execute(&dir, &vs, None, &Silent).unwrap();
        assert_eq!((done.removed, done.removed_allocated), (3, 3 * 4096));
        assert_eq!(done.gone, vec![a, o, x]);
        for (n, s) in [(a, 7), (o, 8), (x, 9)] {
            assert!(!there(&c, &n));
            assert_eq!(names_in(&c, s), Vec::<String>::new(), "no trash left");
        }
    }

    #[test]
    fn an_entry_used_since_the_plan_stays_and_its_new_mtime_is_reported() {
        let c = TinyCache::new();
        let (a, o, x) = (c.action(7, 8, T), c.output(8, 10, T), c.exe(9, "hello", T));
        set_mtime(&a.path_in(c.path()), T + 10);
        set_mtime(&o.path_in(c.path()), T + 100);
        set_mtime(&x.path_in(c.path()), T + 50);
        let dir = CacheDir::open(c.path()).unwrap();
        let fd = dir.subdir(8).unwrap();
        let trash = trash_name(1, 0);
        assert_eq!(
            remove_one(fd, &victim(o, Kind::Output, T), &trash),
            Outcome::UsedSince { mtime: T + 100 }
        );
        let vs = [
            victim(a, Kind::Action, T),
            victim(o, Kind::Output, T),
            victim(x, Kind::Exe, T),
        ];
        let done = execute(&dir, &vs, None, &Silent).unwrap();
        assert_eq!((done.removed, done.skipped_used_since), (0, 3));
        assert_eq!(
            done.used_since,
            vec![(a, T + 10), (o, T + 100), (x, T + 50)]
        );
        assert!(done.errors.is_empty(), "a use is no error");
        for n in [a, o, x] {
            assert!(there(&c, &n));
        }
        assert_eq!(names_in(&c, 9), vec![x.file_name()], "nothing left aside");
    }

    #[test]
    fn an_entry_moved_aside_is_put_back_unless_go_wrote_it_again() {
        let c = TinyCache::new();
        let o = c.output(8, 10, T);
        let dir = CacheDir::open(c.path()).unwrap();
        let fd = dir.subdir(8).unwrap();
        let (name, trash) = (o.file_name(), trash_name(1, 0));
        rustix::fs::renameat(fd, name.as_str(), fd, trash.as_str()).unwrap();
        put_back(fd, &trash, &name);
        assert_eq!(names_in(&c, 8), vec![name.clone()]);
        assert_eq!(std::fs::read(o.path_in(c.path())).unwrap(), b"xxxxxxxxxx");
        // Go wrote the entry again while ours was aside: Go's copy wins.
        rustix::fs::renameat(fd, name.as_str(), fd, trash.as_str()).unwrap();
        std::fs::write(o.path_in(c.path()), b"go's copy").unwrap();
        put_back(fd, &trash, &name);
        assert_eq!(names_in(&c, 8), vec![name]);
        assert_eq!(std::fs::read(o.path_in(c.path())).unwrap(), b"go's copy");
    }

    #[test]
    fn an_entry_already_gone_counts_and_its_row_goes() {
        let c = TinyCache::new();
        let gone = fixtures::entry(8, Kind::Output).used_at(T);
        let elsewhere = fixtures::entry(0x20, Kind::Output).used_at(T);
        std::fs::remove_dir(c.join("20")).unwrap(); // go clean -cache
        let mut ix = crate::index::Index::open(&c.join("gocache/index.sqlite")).unwrap();
        for e in [&gone, &elsewhere] {
            ix.apply_subdir(
                &SubdirChanges {
                    subdir: e.name.subdir(),
                    upserts: vec![e.clone()],
                    totals: None,
                    ..Default::default()
                },
                T,
            )
            .unwrap();
        }
        let dir = CacheDir::open(c.path()).unwrap();
        let vs = [
            victim(gone.name, Kind::Output, T),
            victim(elsewhere.name, Kind::Output, T),
        ];
        let done = execute(&dir, &vs, Some(&mut ix), &Silent).unwrap();
        assert_eq!((done.removed, done.already_gone), (0, 2));
        assert_eq!(done.gone, vec![gone.name, elsewhere.name]);
        assert_eq!(ix.entry_count().unwrap(), 0);
        assert_eq!(ix.fast_totals().unwrap().total.entries, 0);
    }

    #[test]
    fn an_executable_directory_holding_a_subdirectory_is_left_alone() {
        let c = TinyCache::new();
        let x = c.exe(9, "hello", T);
        std::fs::create_dir(x.path_in(c.path()).join("sub")).unwrap();
        set_mtime(&x.path_in(c.path()), T);
        let dir = CacheDir::open(c.path()).unwrap();
        let done = execute(&dir, &[victim(x, Kind::Exe, T)], None, &Silent).unwrap();
        assert_eq!((done.removed, done.skipped_odd), (0, 1));
        assert!(done.errors[0].contains("holds a subdirectory"), "{done:?}");
        assert_eq!(names_in(&c, 9), vec![x.file_name()], "put back");
        assert!(x.path_in(c.path()).join("hello").exists());
    }

    #[test]
    fn an_entry_that_is_no_longer_the_kind_planned_is_kept() {
        let c = TinyCache::new();
        let (o, x) = (c.output(8, 10, T), c.exe(9, "hello", T));
        let dir = CacheDir::open(c.path()).unwrap();
        let vs = [victim(o, Kind::Exe, T), victim(x, Kind::Output, T)];
        let done = execute(&dir, &vs, None, &Silent).unwrap();
        assert_eq!((done.removed, done.skipped_changed), (0, 2));
        assert!(there(&c, &o) && there(&c, &x));
    }

    #[test]
    fn trash_from_a_killed_trim_is_swept_where_the_scan_saw_some() {
        let c = TinyCache::new();
        let (a, o) = (c.action(7, 8, T), c.output(7, 10, T));
        std::fs::write(c.join("07/.gocache-trash-999-0"), b"output").unwrap();
        std::fs::create_dir(c.join("07/.gocache-trash-999-1")).unwrap();
        std::fs::write(c.join("07/.gocache-trash-999-1/prog"), b"exe").unwrap();
        std::fs::write(c.join("07/keep-me"), b"not ours").unwrap();
        let dir = CacheDir::open(c.path()).unwrap();
        // The index saw no trash there: nothing is swept.
        let mut ix = crate::index::Index::open(&c.join("gocache/index.sqlite")).unwrap();
        let done = execute(&dir, &[victim(a, Kind::Action, T)], Some(&mut ix), &Silent).unwrap();
        assert_eq!((done.removed, done.trash_swept), (1, 0));
        // Once a scan recorded it, it goes with the next removal there.
        let trash = crate::model::Other {
            path: "07/.gocache-trash-999-0".into(),
            class: crate::model::OtherClass::Odd,
            what: "stray file".into(),
            apparent: 6,
            allocated: 4096,
        };
        ix.apply_subdir(
            &SubdirChanges {
                subdir: 7,
                others: vec![trash],
                totals: None,
                ..Default::default()
            },
            T,
        )
        .unwrap();
        let done = execute(&dir, &[victim(o, Kind::Output, T)], Some(&mut ix), &Silent).unwrap();
        assert_eq!((done.removed, done.trash_swept), (1, 2));
        assert_eq!(names_in(&c, 7), vec!["keep-me".to_string()]);
    }

    #[test]
    fn without_an_index_every_subdirectory_touched_is_swept() {
        let c = TinyCache::new();
        let a = c.action(7, 8, T);
        std::fs::write(c.join("07/.gocache-trash-999-0"), b"output").unwrap();
        std::fs::write(c.join("08/.gocache-trash-999-0"), b"untouched").unwrap();
        let dir = CacheDir::open(c.path()).unwrap();
        let done = execute(&dir, &[victim(a, Kind::Action, T)], None, &Silent).unwrap();
        assert_eq!((done.removed, done.trash_swept), (1, 1));
        assert_eq!(names_in(&c, 8), vec![".gocache-trash-999-0".to_string()]);
    }
}
