//! Executes an eviction plan safely. The policy decides; this acts.
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
//!   finds it missing and treats it as a miss (see `remove_one`). An action
//!   entry needs no such step: Go reads it whole when it opens it and never
//!   hands out its path.
//! - An executable directory is emptied with `unlinkat` relative to its own
//!   descriptor (a symlink inside is removed as a link) and then removed; one
//!   holding a subdirectory is left alone and reported.
//! - A file already gone is not an error, but it is counted, and its index
//!   row is dropped all the same.
//!
//! # Locking
//!
//! One trim at a time: the caller holds the [`TrimLock`] (see
//! [`crate::cachedir`]). Readers (`stats`) never take it.
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
use std::path::Path;

use rustix::fs::{AtFlags, FileType};

use crate::cachedir::{
    CacheDir, ExeDirError, TrimLock, remove_exe_dir, subdirs_with_trash, sweep_trash, trash_name,
};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::layout::EntryName;
use crate::model::{Kind, UnixTime};
use crate::report::Reporter;

/// How many plan-and-execute rounds a run makes when Go keeps using what
/// was planned.
pub const MAX_ROUNDS: usize = 3;

/// Index rows are dropped in batches of this many removals.
pub const INDEX_BATCH: usize = 50_000;

/// One entry to remove, with what the plan saw of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The entry.
    pub name: EntryName,
    /// What the plan believed it to be.
    pub kind: Kind,
    /// The mtime the plan saw; a newer mtime now means "used since".
    pub mtime: UnixTime,
    /// Allocated bytes the plan counted.
    pub allocated: u64,
    /// Apparent bytes the plan counted.
    pub apparent: u64,
}

/// Why an entry was not removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// Its mtime is newer than the plan saw: Go used it since.
    UsedSince,
    /// It is no longer what the plan thought (a file became a directory,
    /// a symlink appeared, …).
    Changed,
    /// An executable directory that holds a subdirectory.
    Odd,
    /// The removal failed (permissions, I/O).
    Failed,
}

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

/// Removes `items` from the cache, re-checking each one, and drops their
/// rows from `index` in batches. The caller holds the [`TrimLock`].
///
/// Removals run on a few worker threads (unlinking is syscall-bound, and
/// the kernel serialises only within one directory), taking items in plan
/// order in small chunks, while this thread updates the index. So the
/// order is the plan's up to a window of a few chunks: an output can go
/// just before an action naming it, which Go reads as a miss, like any
/// output removed behind its back.
pub fn execute(
    cache_dir: &Path,
    items: &[Removal],
    mut index: Option<&mut Index>,
    reporter: &dyn Reporter,
) -> Result<Executed> {
    let dir = CacheDir::open(cache_dir)?;
    let mut out = Executed::default();
    reporter.start("trim", items.len() as u64);
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
    for item in items {
        wanted[item.name.subdir() as usize] = true;
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

    let workers = worker_count(items.len());
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
                    if start >= items.len() {
                        break;
                    }
                    let end = (start + CHUNK).min(items.len());
                    let done: Vec<(usize, Outcome)> = (start..end)
                        .map(|i| {
                            let item = &items[i];
                            let outcome = match &subdirs[item.name.subdir() as usize] {
                                None => Ok(Gone::Already),
                                Some(fd) => remove_one(fd, item, &trash),
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
                out.record(&items[i], outcome, reporter, &mut pending);
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
fn worker_count(items: usize) -> usize {
    if items < 2 * CHUNK {
        return 1;
    }
    std::thread::available_parallelism().map_or(4, |n| n.get().saturating_mul(4).clamp(4, 16))
}

impl Executed {
    fn record(
        &mut self,
        item: &Removal,
        outcome: Outcome,
        reporter: &dyn Reporter,
        pending: &mut Vec<EntryName>,
    ) {
        match outcome {
            Ok(Gone::Removed) => {
                self.removed += 1;
                self.removed_allocated = self.removed_allocated.saturating_add(item.allocated);
                self.removed_apparent = self.removed_apparent.saturating_add(item.apparent);
                self.gone.push(item.name);
                pending.push(item.name);
            }
            Ok(Gone::Already) => {
                self.already_gone += 1;
                self.gone.push(item.name);
                pending.push(item.name);
            }
            Err((skip, msg)) => {
                match skip {
                    Skip::UsedSince => self.skipped_used_since += 1,
                    Skip::Changed => self.skipped_changed += 1,
                    Skip::Odd => self.skipped_odd += 1,
                    Skip::Failed => self.failed += 1,
                }
                if skip == Skip::UsedSince {
                    let seen = msg
                        .as_deref()
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(item.mtime);
                    self.used_since.push((item.name, seen));
                } else if let Some(msg) = msg {
                    reporter.warn(&format!("{}: {msg}", item.name));
                    if self.errors.len() < 20 {
                        self.errors.push(format!("{}: {msg}", item.name));
                    }
                }
            }
        }
    }
}

enum Gone {
    Removed,
    Already,
}

type Outcome = std::result::Result<Gone, (Skip, Option<String>)>;

fn remove_one(dir: &OwnedFd, item: &Removal, trash: &str) -> Outcome {
    let name = item.name.file_name();
    let st = match rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(Gone::Already),
        Err(e) => return Err((Skip::Failed, Some(format!("cannot stat: {e}")))),
    };
    check(&st, item)?;
    if item.kind == Kind::Action {
        // Go reads an action entry whole when it opens it and never hands
        // out its path, so removing one it just read is harmless, and one
        // it has not opened yet is a miss: no need to move it aside.
        return match rustix::fs::unlinkat(dir, name.as_str(), AtFlags::empty()) {
            Ok(()) => Ok(Gone::Removed),
            Err(rustix::io::Errno::NOENT) => Ok(Gone::Already),
            Err(e) => Err((Skip::Failed, Some(format!("cannot remove: {e}")))),
        };
    }
    // An output or executable: move it aside first, then look again. Go marks an entry used (a fresh
    // mtime) before it hands out its path, so: if Go got there first we see
    // its mark now and put the entry back; if it comes after the rename, it
    // finds nothing, which Go treats as a miss and rebuilds. Stat-then-unlink
    // would leave a window in which Go hands out a path we then delete.
    match rustix::fs::renameat(dir, name.as_str(), dir, trash) {
        Ok(()) => {}
        Err(rustix::io::Errno::NOENT) => return Ok(Gone::Already),
        Err(e) => return Err((Skip::Failed, Some(format!("cannot move aside: {e}")))),
    }
    let recheck = rustix::fs::statat(dir, trash, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| {
            (
                Skip::Failed,
                Some(format!("cannot stat after moving aside: {e}")),
            )
        })
        .and_then(|st| check(&st, item));
    if let Err(skip) = recheck {
        put_back(dir, trash, &name);
        return Err(skip);
    }
    let result = match item.kind {
        Kind::Exe => remove_exe_dir(dir, trash).map_err(exe_dir_skip),
        _ => rustix::fs::unlinkat(dir, trash, AtFlags::empty())
            .map_err(|e| (Skip::Failed, Some(format!("cannot remove: {e}")))),
    };
    match result {
        Ok(()) => Ok(Gone::Removed),
        Err(e) => {
            put_back(dir, trash, &name);
            Err(e)
        }
    }
}

fn exe_dir_skip(e: ExeDirError) -> (Skip, Option<String>) {
    let skip = match e {
        ExeDirError::HoldsSubdir => Skip::Odd,
        ExeDirError::Failed(_) => Skip::Failed,
    };
    (skip, Some(e.to_string()))
}

/// The entry is still what the plan saw: same kind, not used since.
fn check(st: &rustix::fs::Stat, item: &Removal) -> std::result::Result<(), (Skip, Option<String>)> {
    let expected = match item.kind {
        Kind::Action | Kind::Output => FileType::RegularFile,
        Kind::Exe => FileType::Directory,
    };
    if FileType::from_raw_mode(st.st_mode as _) != expected {
        return Err((Skip::Changed, None));
    }
    #[allow(clippy::useless_conversion)]
    let mtime = i64::from(st.st_mtime);
    if mtime > item.mtime {
        // The new mtime travels in the message slot; the caller records it
        // so the next plan sees the use.
        return Err((Skip::UsedSince, Some(mtime.to_string())));
    }
    Ok(())
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

/// How much to sync before planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sync {
    /// Reread every entry's mtime (picks up Go's `markUsed` touches, which
    /// do not change a subdirectory's mtime). What `trim` does.
    Full,
    /// Reread only subdirectories whose mtime changed. The executor's
    /// re-check covers entries Go touched since.
    Incremental,
    /// None: the caller synced just before (the hook, which starts reading
    /// the cache before it opens the index).
    None,
}

/// When a run should plan at all.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trigger {
    /// Always plan (and so apply garbage and age rules too): `trim`.
    Always,
    /// Only when the exe quota or the budget is exceeded, judged from the
    /// index's running totals without reading every row; then trim to
    /// `headroom` (say 0.9) of those limits, so that the next few inserts do
    /// not trigger again (as ccache does). The hook's mode.
    OverLimits {
        /// The share of the quota and budget to trim down to.
        headroom: f64,
    },
}

/// What a trim run should do.
#[derive(Clone, Debug)]
pub struct TrimOptions {
    /// How much to sync first.
    pub sync: Sync,
    /// Plan only: take no lock, remove nothing, write nothing but the sync.
    pub dry_run: bool,
    /// When to plan.
    pub trigger: Trigger,
}

/// What a trim run did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrimReport {
    /// True for a dry run.
    pub dry_run: bool,
    /// The sync before planning.
    pub scan: crate::scan::ScanSummary,
    /// The plan.
    pub plan: crate::policy::Plan,
    /// What executing it did (absent for a dry run).
    pub executed: Option<Executed>,
    /// Every limit met after the run (for a dry run: would be).
    pub limits_met: bool,
    /// Seconds spent syncing, planning and executing (wall clock; for
    /// reports and benchmarks, not for decisions).
    pub timings: Timings,
}

/// Where a run's time went.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Timings {
    /// Syncing the index with the disk.
    pub sync_seconds: f64,
    /// Loading entries and planning.
    pub plan_seconds: f64,
    /// Removing entries and updating the index.
    pub execute_seconds: f64,
}

/// The outcome of [`run`].
#[derive(Debug)]
pub enum TrimOutcome {
    /// The run happened.
    Done(Box<TrimReport>),
    /// Another trim holds the lock; nothing was done.
    Locked,
    /// [`Trigger::OverLimits`] and no limit is exceeded: synced only.
    UnderLimits(crate::scan::ScanSummary),
}

/// Allocated bytes in the cache directory that are not entries: the
/// directory and its 256 subdirectories, Go's files, gocache's index, odd
/// files. They count towards the budget (what `du` sees) but cannot be
/// evicted.
pub fn fixed_bytes(cache_dir: &Path, index: &Index) -> Result<u64> {
    let others: u64 = index.others()?.iter().map(|o| o.allocated).sum();
    let top = std::fs::symlink_metadata(cache_dir)
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .unwrap_or(0);
    Ok(others
        .saturating_add(top)
        .saturating_add(index.subdir_dir_bytes()?))
}

/// The cached executable called `program` whose directory Go touched most
/// recently (what `go tool NAME` just ran, as near as can be told).
pub fn latest_exe_named(
    cache_dir: &Path,
    index: &Index,
    program: &str,
) -> Result<Option<EntryName>> {
    let mut best: Option<(std::time::SystemTime, EntryName)> = None;
    for e in index.exes_named(program)? {
        if let Ok(m) = std::fs::symlink_metadata(e.path_in(cache_dir)).and_then(|m| m.modified())
            && best.is_none_or(|(t, _)| m > t)
        {
            best = Some((m, e));
        }
    }
    Ok(best.map(|(_, n)| n))
}

/// True when the index's totals exceed the budget or the exe quota, or
/// free space is below the floor.
fn over_limits(
    cache_dir: &Path,
    index: &Index,
    limits: &crate::limits::Limits,
    fixed: u64,
) -> Result<bool> {
    let totals = index.fast_totals()?;
    let over_budget = limits
        .budget
        .is_some_and(|b| totals.total.allocated_bytes.saturating_add(fixed) > b);
    let over_quota = limits
        .exe_quota
        .is_some_and(|q| totals.exe.allocated_bytes > q);
    let low_space = match limits.min_free {
        Some(floor) => fs4::available_space(cache_dir).is_ok_and(|free| free < floor),
        None => false,
    };
    Ok(over_budget || over_quota || low_space)
}

/// Syncs the index, plans against `limits`, and (unless a dry run)
/// executes the plan under the trim lock.
pub fn run(
    cache_dir: &Path,
    index: &mut Index,
    limits: &crate::limits::Limits,
    opts: &TrimOptions,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<TrimOutcome> {
    // An index synced by the caller (the hook) that is within the limits
    // needs no lock: a hook after each go command usually ends here.
    if let (Sync::None, Trigger::OverLimits { .. }) = (opts.sync, opts.trigger)
        && !over_limits(cache_dir, index, limits, fixed_bytes(cache_dir, index)?)?
    {
        return Ok(TrimOutcome::UnderLimits(Default::default()));
    }
    let _lock = if opts.dry_run {
        None
    } else {
        match TrimLock::try_acquire(cache_dir)? {
            Some(l) => Some(l),
            None => return Ok(TrimOutcome::Locked),
        }
    };
    let scan_opts = crate::scan::ScanOptions {
        full: opts.sync == Sync::Full,
        ..Default::default()
    };
    let clock = std::time::Instant::now();
    let mut timings = Timings::default();
    let scan = match opts.sync {
        Sync::None => crate::scan::ScanSummary::default(),
        _ => crate::scan::scan(cache_dir, index, &scan_opts, now, reporter)?,
    };
    timings.sync_seconds = clock.elapsed().as_secs_f64();
    if !opts.dry_run && opts.sync == Sync::Full {
        crate::cachedir::sweep_prog_temps(&CacheDir::open(cache_dir)?, &index.others()?, now);
    }
    let fixed = fixed_bytes(cache_dir, index)?;
    let mut limits = limits.clone();
    if let Trigger::OverLimits { headroom } = opts.trigger {
        if !over_limits(cache_dir, index, &limits, fixed)? {
            return Ok(TrimOutcome::UnderLimits(scan));
        }
        let scale = |v: u64| (v as f64 * headroom.clamp(0.0, 1.0)) as u64;
        limits.budget = limits.budget.map(scale);
        limits.exe_quota = limits.exe_quota.map(scale);
    }
    let limits = &limits;
    let env = crate::policy::Environment {
        fixed_bytes: fixed,
        free_bytes: match limits.min_free {
            Some(_) => Some(
                fs4::available_space(cache_dir)
                    .map_err(|e| Error::io("measuring free space on", cache_dir, e))?,
            ),
            None => None,
        },
    };
    let started = std::time::Instant::now();
    let entries = index.entries()?;
    let plan = crate::policy::plan(&entries, limits, &env, now);
    drop(entries);
    timings.plan_seconds = started.elapsed().as_secs_f64();
    if opts.dry_run {
        let limits_met = plan.meets_all_limits();
        return Ok(TrimOutcome::Done(Box::new(TrimReport {
            dry_run: true,
            scan,
            plan,
            executed: None,
            limits_met,
            timings,
        })));
    }
    let started = std::time::Instant::now();
    let mut plan = plan;
    let mut executed = Executed::default();
    // Entries Go used since the sync are skipped by the executor, which
    // reports their new mtimes: record them and plan again, so that older
    // entries go instead (at most a few rounds).
    for round in 0..MAX_ROUNDS {
        let removals: Vec<Removal> = plan
            .victims
            .iter()
            .map(|v| Removal {
                name: v.name,
                kind: v.kind,
                mtime: v.mtime,
                allocated: v.allocated,
                apparent: v.apparent,
            })
            .collect();
        let done = execute(cache_dir, &removals, Some(index), reporter)?;
        let refreshed = done.used_since.clone();
        executed.absorb(done);
        if refreshed.is_empty() || round + 1 == MAX_ROUNDS {
            break;
        }
        index.record_mtimes(&refreshed)?;
        let entries = index.entries()?;
        plan = crate::policy::plan(&entries, limits, &env, now);
        if plan.is_empty() {
            break;
        }
    }
    if executed.removed > 0 {
        index.checkpoint()?;
    }
    timings.execute_seconds = started.elapsed().as_secs_f64();
    let limits_met = plan.meets_all_limits()
        && executed.skipped_changed + executed.skipped_odd + executed.failed == 0
        && (executed.used_since.is_empty() || plan.is_empty());
    Ok(TrimOutcome::Done(Box::new(TrimReport {
        dry_run: false,
        scan,
        plan,
        executed: Some(executed),
        limits_met,
        timings,
    })))
}
