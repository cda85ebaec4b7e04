//! The CI mode: a cache restored at the start of a CI job keeps exactly
//! what recent jobs used, within a budget (`gocache ci begin` right after
//! the restore, `gocache ci end` right before the save).
//!
//! # What goes wrong without it
//!
//! A cache restored by `actions/cache` or a `tar` keeps its `trim.txt`,
//! which the last job left less than a day old, so Go's own trim never
//! fires and the cache grows every run. A cache baked into an image has
//! the image's old mtimes, so Go's trim deletes all of it in the first
//! job. And "used in this job" cannot be read from mtimes: Go moves an
//! entry's mtime on use only when it is over an hour old (`markUsed`), so
//! an entry the previous job used twenty minutes before the save looks the
//! same whether this job used it or not.
//!
//! # Runs
//!
//! Each `ci begin` records a run in the index (which travels with the
//! cache), numbered in order; `ci end` records, for every entry the run
//! used or made, that run as its `last_run`. Then what to keep is a
//! question about runs, not about time: an entry none of the last
//! `--keep-runs` runs used goes (the `keep_runs` rule), and the budget
//! takes the least recently used by run first ([`crate::policy`]'s "Runs").
//! Time-based age limits do not apply: a weekly job would find everything
//! a week old, and a busy repository's hour holds many runs. Runs that
//! began and never ended (a killed job whose cache was saved anyway) mark
//! nothing and do not count.
//!
//! # Seeing every use exactly
//!
//! After `ci begin`, no entry's mtime is later than `used_after`, an hour
//! and a margin ([`BEGIN_MARGIN`]) before the run started. Then every use
//! during the run moves the entry's mtime (Go's `markUsed` sees it over an
//! hour old), and every entry made during the run has a later mtime too:
//! at `ci end`, mtime after `used_after` means "used or made by this run",
//! exactly. Uses `gocache go` and `gocache prog` saw are exact already
//! (the index's last use); they count too.
//!
//! `ci begin` does not touch every entry to get there: only those whose
//! mtime is later than `used_after` (the last hour, or the future) are
//! moved back to `used_after`. An mtime is what Go reads as "last used"
//! and nothing else: no cache key, no test-cache decision, no build
//! decision depends on it (a cached test result's age is the time written
//! inside its action entry; tests check that hits are unchanged). And the
//! index says which entries those are without a walk, when the previous
//! `ci end` left it *sealed*:
//!
//! - `ci end` moves the mtimes of what its run used or made back to
//!   [`END_BACKDATE`] before it ended (after recording the run), so that a
//!   job starting later finds nothing within its last hour; the margin
//!   beyond the hour allows for runners whose clocks differ.
//! - It then syncs the subdirectories its removals changed and *seals*
//!   each subdirectory: sets its mtime to a whole, even second in the past
//!   if it has not changed since it was read, and records that. A whole
//!   second survives GNU tar's default format, which keeps whole seconds
//!   (`--format=posix`, which `actions/cache` uses, keeps nanoseconds);
//!   an even one, zip's two-second times. So the restored cache's
//!   subdirectories match the index exactly, and the next `ci begin`
//!   rereads none of them.
//! - It leaves a [`CiSeal`] in the index: the newest mtime and record it
//!   left. `ci begin` trusts a sealed index: an incremental sync (256
//!   `stat`s when nothing changed), then moves back only what the sync
//!   found new, or what the seal says may be recent. A subdirectory whose
//!   mtime changed since the seal has every entry read again, mtimes
//!   included: a restore that does not keep mtimes (`cp -r`, which gives
//!   every entry and subdirectory the copy's time) changes the
//!   subdirectories' too, and what it reset is then moved back like any
//!   recent mtime, so the run's uses stay exact. What stays unseen: a
//!   restore that keeps every subdirectory's mtime to the nanosecond but
//!   changes entries' (no archive or copy tool does that); an entry then
//!   counts as used by the run.
//!
//! Without a seal (no index, an index from before the CI mode, a run that
//! never ended, a job that used the cache after `ci end`), `ci begin`
//! walks the cache once (a full sync) and moves back what it finds
//! recent: no slower than a first `gocache scan`.
//!
//! A run's `started` must also come after every first sighting and
//! recorded use left by the runs before it, so that "made by this run" is
//! "first seen at or after `started`": what `ci begin` finds is recorded
//! as seen a second before it, and later records are moved back when a
//! previous run ended in the same second (or on a runner whose clock is
//! ahead).
//!
//! # Go's own trim
//!
//! `ci begin` writes the time into `trim.txt`, so Go's trim (which fires
//! when `trim.txt` is over a day old) does not run during the job, whatever
//! the restored file said: it would delete an image-baked cache at the
//! first go command, and a month-old restore. `ci end` writes its own time
//! there: it has just trimmed the cache, which is what the file records,
//! and a consumer of the saved cache without gocache then gets Go's usual
//! behaviour (its own trim a day later, by Go's five-day rule).
//!
//! # Safety
//!
//! `ci end` removes through [`crate::enforce::trim_by_runs`]: the same
//! sync, plan and executor as `gocache trim` (the re-check just before
//! removal, the move aside), so a go command still running keeps every
//! path it was handed. The grace period protects what this run used
//! (unless the job ran longer than it), and only that: since `ci begin`,
//! an entry this run did not use has an exact mtime (a use would move it,
//! and the executor's re-check would see that), so what earlier runs used
//! minutes ago can go by the rules; otherwise, on a busy repository, the
//! runs of the last two hours would all be kept, whatever `--keep-runs`
//! said. Moving mtimes back and sealing assume no go command runs beside
//! `ci begin` and `ci end`: a use hidden that way costs only the exactness
//! of one mark, never an entry a build is using.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cachedir::{
    CacheDir, read_go_trim_time, seal_subdir, set_entry_mtime, write_go_trim_time,
};
use crate::enforce::{TrimOutcome, TrimReport, fixed_bytes, trim_by_runs};
use crate::error::Result;
use crate::execute::Executed;
use crate::index::{CiRun, CiSeal, Index, RunMarks};
use crate::layout::EntryName;
use crate::limits::{HOUR, Limits};
use crate::model::{Bytes, Totals, UnixTime};
use crate::policy::{Rule, Runs, Unmet};
use crate::report::Reporter;
use crate::scan::{ScanOptions, ScanSummary, scan};

/// How many runs an entry may go unused and stay: ten, for a
/// repository with many pull requests. Long enough for runs that use only
/// part of the cache (a docs-only change, path-filtered tests, a re-run),
/// for configurations that take turns on one cache (matrix legs sharing a
/// directory, up to ten), and for a pull request based up to ten runs
/// behind its base branch; short enough that what a dependency bump or a
/// refactor replaced leaves within ten runs, which on a busy branch is
/// hours, not Go's five days. With a budget, it only decides what goes
/// first.
pub const DEFAULT_KEEP_RUNS: u32 = 10;

/// How far before Go's hour `ci begin` moves recent mtimes back: room for
/// a clock that steps back during the job.
pub const BEGIN_MARGIN: i64 = 10 * 60;

/// How far back `ci end` moves what its run used or made: Go's hour, the
/// begin margin, and twenty minutes for runners whose clocks differ (the
/// next job, on another machine, must find these over its own hour old).
pub const END_BACKDATE: i64 = HOUR + BEGIN_MARGIN + 20 * 60;

/// How long `ci end` waits for the trim lock (a hook evicting holds it
/// for moments; a `gocache trim` from cron, longer).
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// How `ci begin` brought the index up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// The previous `ci end` sealed it: an incremental sync.
    Sealed,
    /// There was no index (or an empty one): a first scan.
    New,
    /// An index that cannot be trusted to match the disk (from before
    /// the CI mode, or a run that never ended): a full sync.
    Walked,
}

/// What `ci begin` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BeginReport {
    /// The run recorded.
    pub run: i64,
    /// Its label.
    pub label: Option<String>,
    /// When it started.
    pub started: UnixTime,
    /// No entry's mtime is later than this now.
    pub used_after: UnixTime,
    /// How the index was brought up to date.
    pub start: Start,
    /// The run whose `ci end` sealed the index, if it did.
    pub sealed_by: Option<i64>,
    /// A run that began and never ended (left as it was; it counts for
    /// nothing).
    pub abandoned: Option<i64>,
    /// What the cache holds.
    pub restored: Totals,
    /// The sync.
    pub scan: ScanSummary,
    /// Entries whose mtime was moved back to `used_after`.
    pub moved_back: u64,
    /// What Go's `trim.txt` said before (Unix seconds).
    pub go_trim_was: Option<UnixTime>,
    /// Problems that did not stop it.
    pub warnings: Vec<String>,
}

/// Starts a run (see the module doc): brings the index up to date,
/// moves recent mtimes back, keeps Go's trim off, records the run. The
/// cache directory must exist (the caller creates it when nothing was
/// restored).
pub fn begin(
    cache_dir: &Path,
    index: &mut Index,
    label: Option<&str>,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<BeginReport> {
    let dir = CacheDir::open(cache_dir)?;
    let go_trim_was = read_go_trim_time(&dir);
    let last = index.runs().last()?;
    let abandoned = last.as_ref().filter(|r| r.ended.is_none()).map(|r| r.id);
    let seal = index.runs().seal()?.filter(|s| {
        last.as_ref()
            .is_some_and(|r| r.id == s.run && r.ended.is_some())
    });
    let start = match (seal, index.is_empty()?) {
        (Some(_), _) => Start::Sealed,
        (None, true) => Start::New,
        (None, false) => Start::Walked,
    };
    let used_after = now - HOUR - BEGIN_MARGIN;
    let opts = ScanOptions {
        full: start == Start::Walked,
        // A subdirectory that changed since the seal: its entries' mtimes
        // may have changed with it (a restore that reset them all, `cp -r`),
        // so they are read again, not trusted from the index.
        reread_changed: start == Start::Sealed,
        first_seen: Some(now - 1),
        ..Default::default()
    };
    let synced = scan(cache_dir, index, &opts, now, reporter)?;
    let recent = match seal {
        Some(s) if s.newest_mtime <= used_after => index
            .runs()
            .entries_newer_than(used_after, Some(&synced.rescanned))?,
        _ => index.runs().entries_newer_than(used_after, None)?,
    };
    let mut warnings = Vec::new();
    let recent = recent.iter().map(|&(name, _, mtime)| (name, mtime));
    let (moved, _) = move_back(&dir, recent, used_after, &mut warnings);
    index.runs_mut().record_backdated(&moved, used_after, now)?;
    if seal.is_none_or(|s| s.newest_record >= now) && start != Start::New {
        index.runs_mut().record_before(now)?;
    }
    if let Err(e) = write_go_trim_time(&dir, now) {
        warnings.push(format!(
            "cannot write {}: {e}; Go may trim the cache during the job",
            cache_dir.join("trim.txt").display()
        ));
    }
    let restored = index.fast_totals()?;
    let run = index
        .runs_mut()
        .begin(label, now, used_after, &restored.total)?;
    index.runs_mut().clear_seal()?;
    for w in &warnings {
        reporter.warn(w);
    }
    Ok(BeginReport {
        run,
        label: label.map(str::to_owned),
        started: now,
        used_after,
        start,
        sealed_by: seal.map(|s| s.run),
        abandoned,
        restored,
        scan: synced,
        moved_back: moved.len() as u64,
        go_trim_was,
        warnings,
    })
}

/// Moves the mtimes of `entries` (name, mtime) back to `t`. Returns
/// those moved, and the newest mtime of those that could not be (one gone
/// meanwhile is skipped); failures are summed up in one warning.
fn move_back(
    dir: &CacheDir,
    entries: impl Iterator<Item = (EntryName, UnixTime)>,
    t: UnixTime,
    warnings: &mut Vec<String>,
) -> (Vec<EntryName>, UnixTime) {
    let mut moved = Vec::new();
    let (mut failed, mut first, mut newest) = (0u64, None, UnixTime::MIN);
    for (name, mtime) in entries {
        match set_entry_mtime(dir, &name, t) {
            Ok(()) => moved.push(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                failed += 1;
                newest = newest.max(mtime);
                first.get_or_insert_with(|| format!("{name}: {e}"));
            }
        }
    }
    if let Some(first) = first {
        warnings.push(format!(
            "could not move back the mtime of {} entries (first: {first}); \
             their uses cannot be told apart and they count as used by this run",
            crate::report::count(failed)
        ));
    }
    (moved, newest)
}

/// What `ci end` enforces.
#[derive(Clone, Debug)]
pub struct EndOptions {
    /// Keep what the last this-many runs used ([`DEFAULT_KEEP_RUNS`]).
    pub keep_runs: u32,
    /// Budget, exe quota, free-space floor, grace (age limits are
    /// ignored: runs replace them).
    pub limits: Limits,
    /// How long to wait for another trim to finish.
    pub lock_wait: Duration,
}

/// A cached executable in the report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Program {
    /// The program's name.
    pub program: String,
    /// Its entry.
    pub entry: String,
    /// Allocated bytes.
    pub allocated_bytes: u64,
    /// Apparent bytes (the executable's size).
    pub apparent_bytes: u64,
    /// Whether this run used (or built) it.
    pub used: bool,
    /// Runs of it `gocache go` or `gocache prog` counted.
    pub hits: u64,
}

/// The run `ci end` ended, in its report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunInfo {
    /// Its ordinal.
    pub id: i64,
    /// Its label.
    pub label: Option<String>,
    /// When `ci begin` ran.
    pub started: UnixTime,
    /// Seconds from `ci begin` to `ci end`.
    pub seconds: i64,
}

/// What `ci end` did and found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EndReport {
    /// The run ended (`None` when no `ci begin` was recorded: then no use
    /// can be told, and nothing counts as used or made).
    pub run: Option<RunInfo>,
    /// What the cache held at `ci begin`.
    pub restored: Bytes,
    /// Restored entries the run used.
    pub used: Bytes,
    /// Entries the run made.
    pub created: Bytes,
    /// Entries `ci end` removed.
    pub removed: Bytes,
    /// Entries removed, by the rule that chose them.
    pub removed_by_rule: Vec<(Rule, Bytes)>,
    /// Entries kept: what the save uploads.
    pub kept: Bytes,
    /// The cache directory's allocated bytes after (entries, Go's files,
    /// the index, directories: what `du` counts and the budget bounds),
    /// measured after `ci end`'s last write to the index.
    pub cache_bytes: u64,
    /// The share of restored (allocated) bytes the run used, 0 to 1.
    pub used_share: f64,
    /// The largest cached executables kept.
    pub largest_programs: Vec<Program>,
    /// `--keep-runs`.
    pub keep_runs: u32,
    /// The oldest run whose uses are kept (`None`: fewer runs than
    /// `keep_runs` so far, so nothing is stale yet).
    pub keep_from: Option<i64>,
    /// The limits enforced.
    pub limits: Limits,
    /// Every limit met.
    pub limits_met: bool,
    /// Limits not met, and why.
    pub unmet: Vec<Unmet>,
    /// Entries a limit wanted but the grace period kept.
    pub protected: Bytes,
    /// What removing did (skips and failures included); `None` when
    /// another trim held the lock and nothing was removed.
    pub executed: Option<Executed>,
    /// Entries whose mtime was moved back for the next run.
    pub moved_back: u64,
    /// Subdirectories sealed for the next run.
    pub sealed_subdirs: u32,
    /// Whether the next `ci begin` can trust the index without a walk.
    pub sealed: bool,
    /// Seconds spent: syncing, marking, moving mtimes back, planning,
    /// removing, sealing.
    pub timings: EndTimings,
    /// Problems that did not stop it.
    pub warnings: Vec<String>,
}

/// Where `ci end`'s time went.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct EndTimings {
    /// The full sync.
    pub sync_seconds: f64,
    /// Marking the run's uses in the index.
    pub mark_seconds: f64,
    /// Moving their mtimes back, on disk and in the index.
    pub move_back_seconds: f64,
    /// Planning.
    pub plan_seconds: f64,
    /// Removing.
    pub execute_seconds: f64,
    /// The sync after removing, and the seal.
    pub seal_seconds: f64,
}

/// Ends the open run (see the module doc): a full sync, marks what the
/// run used or made, moves those mtimes back, removes what no kept run
/// used and then what the limits need (by run), seals the cache and
/// records the run. With no open run (no `ci begin`), it still trims by
/// the runs recorded, but cannot mark anything or seal the index.
pub fn end(
    cache_dir: &Path,
    index: &mut Index,
    opts: &EndOptions,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<EndReport> {
    let run: Option<CiRun> = index.runs().last()?.filter(|r| r.ended.is_none());
    let keep_from = index
        .runs()
        .keep_from(run.as_ref().map(|r| r.id), opts.keep_runs)?;
    let mut limits = opts.limits.clone();
    (limits.build_max_age, limits.exe_max_age) = (None, None);
    let runs = Runs {
        keep_from,
        current: run.as_ref().map(|r| r.id),
    };
    let mut marking = Marking::new(run.as_ref(), now - END_BACKDATE);
    let clock = Instant::now();
    let trimmed = trim_and_mark(
        cache_dir,
        index,
        &limits,
        runs,
        opts.lock_wait,
        &mut marking,
        now,
        reporter,
    )?;
    let mut timings = EndTimings {
        mark_seconds: marking.mark_seconds,
        move_back_seconds: marking.move_back_seconds,
        ..EndTimings::default()
    };
    if let Some(r) = &trimmed {
        timings.sync_seconds = r.timings.sync_seconds;
        timings.plan_seconds = r.timings.plan_seconds;
        timings.execute_seconds = r.timings.execute_seconds;
    } else {
        marking.warnings.push(format!(
            "another trim held {} for {}s: nothing was removed",
            crate::cachedir::lock_path(cache_dir).display(),
            opts.lock_wait.as_secs()
        ));
        timings.sync_seconds = clock.elapsed().as_secs_f64();
    }
    let settled = settle(cache_dir, index, now, reporter, &mut marking.warnings)?;
    timings.seal_seconds = settled.seconds;
    let largest_programs = largest_programs(index, run.as_ref().map(|r| r.id))?;
    let (moved_to, unmoved_newest) = (marking.moved_to, marking.unmoved_newest);
    let mut report = EndReport::new(Ended {
        run: run.as_ref(),
        now,
        keep_runs: opts.keep_runs,
        keep_from,
        limits,
        marking,
        trimmed,
        settled: &settled,
        timings,
        largest_programs,
    });
    measure(cache_dir, index, &mut report)?;
    if let Some(r) = &run {
        // The newest mtime left: what the run did not use was at most its
        // `used_after`; what it used, moved back (or not, if that failed);
        // anything added while ending, unknown.
        let newest_mtime = if settled.added > 0 {
            UnixTime::MAX
        } else {
            r.used_after.max(moved_to).max(unmoved_newest)
        };
        let seal = CiSeal {
            run: r.id,
            at: now,
            newest_mtime,
            newest_record: now,
        };
        report.sealed = true;
        index.runs_mut().store_seal(&seal)?;
        // The report is stored with the run, and its row is part of the
        // size it reports: store it, measure again, and store it again
        // while the figures it holds are not the ones measured after it.
        for _ in 0..3 {
            let json = serde_json::to_string(&report).expect("a report serialises to JSON");
            index.runs_mut().end(r.id, now, &json)?;
            if !measure(cache_dir, index, &mut report)? {
                break;
            }
        }
    }
    for w in &report.warnings {
        reporter.warn(w);
    }
    Ok(report)
}

/// Measures the cache directory as `ci end` leaves it, after its last
/// write (its WAL moved into the index file first, as `stats` and `trim`
/// measure it: what `du` counts once the command has exited), into
/// `report.cache_bytes`, and whether the budget is met with it. Returns
/// whether either changed.
fn measure(cache_dir: &Path, index: &Index, report: &mut EndReport) -> Result<bool> {
    let _ = index.checkpoint();
    let cache_bytes = report
        .kept
        .allocated_bytes
        .saturating_add(fixed_bytes(cache_dir, index)?);
    let was = (report.cache_bytes, report.limits_met);
    report.cache_bytes = cache_bytes;
    if let Some(budget) = report.limits.budget
        && report.executed.is_some()
    {
        let over_by = cache_bytes.saturating_sub(budget);
        let at = report.unmet.iter().position(|u| u.limit == Rule::Budget);
        match (at, over_by) {
            (Some(i), 0) => {
                report.unmet.remove(i);
            }
            (Some(i), _) => report.unmet[i].over_by = over_by,
            (None, 0) => {}
            (None, _) => report.unmet.push(Unmet {
                limit: Rule::Budget,
                over_by,
                reason: "the index grew by what ci end recorded after the trim (the run's \
                         report, the seal)"
                    .into(),
            }),
        }
        report.limits_met = report.unmet.is_empty();
    }
    Ok((report.cache_bytes, report.limits_met) != was)
}

/// What `ci end` does between its sync and its plan (the [`AfterSync`]
/// of [`trim_by_runs`]): marks what the run used or made in the freshly
/// synced index and moves those mtimes back, keeping what it found for
/// the report.
///
/// [`AfterSync`]: crate::enforce::AfterSync
struct Marking<'r> {
    /// The run being ended; `None`: nothing to mark.
    run: Option<&'r CiRun>,
    /// Where the mtimes go: [`END_BACKDATE`] before the end.
    moved_to: UnixTime,
    /// What the marking found (its `recent` taken by the move back).
    marked: RunMarks,
    /// Entries whose mtime was moved back.
    moved: u64,
    /// The newest mtime among those that could not be moved back.
    unmoved_newest: UnixTime,
    /// Seconds marking took.
    mark_seconds: f64,
    /// Seconds moving back took.
    move_back_seconds: f64,
    /// Problems that did not stop `ci end`, in the order met.
    warnings: Vec<String>,
}

impl<'r> Marking<'r> {
    fn new(run: Option<&'r CiRun>, moved_to: UnixTime) -> Marking<'r> {
        Marking {
            run,
            moved_to,
            marked: RunMarks::default(),
            moved: 0,
            unmoved_newest: UnixTime::MIN,
            mark_seconds: 0.0,
            move_back_seconds: 0.0,
            warnings: Vec::new(),
        }
    }

    /// Marks the run's uses in `ix`, then moves their mtimes back in
    /// `dir`, on disk and in the index.
    fn step(&mut self, dir: &CacheDir, ix: &mut Index) -> Result<()> {
        let Some(run) = self.run else {
            return Ok(());
        };
        let moved_to = self.moved_to;
        let clock = Instant::now();
        self.marked = ix
            .runs_mut()
            .mark(run.id, run.used_after, run.started, moved_to)?;
        self.mark_seconds = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let wanted = self.marked.recent.len();
        let (names, newest) = move_back(
            dir,
            std::mem::take(&mut self.marked.recent).into_iter(),
            moved_to,
            &mut self.warnings,
        );
        self.unmoved_newest = newest;
        self.moved = names.len() as u64;
        if names.len() == wanted {
            // All of them: the rows the marking just chose, in one
            // statement (a lookup per entry costs seconds on 1M).
            ix.runs_mut().record_moved_back(run.id, moved_to)?;
        } else {
            let seen: Vec<(EntryName, UnixTime)> =
                names.into_iter().map(|n| (n, moved_to)).collect();
            ix.record_mtimes(&seen)?;
        }
        self.move_back_seconds = clock.elapsed().as_secs_f64();
        Ok(())
    }
}

/// [`trim_by_runs`] with `marking` between its sync and its plan; when
/// another trim holds the lock, a full sync and the marking all the same
/// (removing is left to that trim): `None`.
#[allow(clippy::too_many_arguments)]
fn trim_and_mark(
    cache_dir: &Path,
    index: &mut Index,
    limits: &Limits,
    runs: Runs,
    lock_wait: Duration,
    marking: &mut Marking,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<Option<Box<TrimReport>>> {
    // The full sync (trim's, or this one's when a trim holds the lock)
    // marks the run's uses in the rows it rewrites anyway (their new
    // mtimes); `runs_mut().mark` then writes only the rest.
    index.mark_in_sync(marking.run.map(CiRun::sync_mark));
    let mut step = |dir: &CacheDir, ix: &mut Index| marking.step(dir, ix);
    let outcome = trim_by_runs(
        cache_dir, index, limits, runs, lock_wait, &mut step, now, reporter,
    )
    .and_then(|outcome| match outcome {
        TrimOutcome::Done(r) => Ok(Some(r)),
        TrimOutcome::Locked => {
            let full = ScanOptions {
                full: true,
                ..Default::default()
            };
            scan(cache_dir, index, &full, now, reporter)?;
            step(&CacheDir::open(cache_dir)?, index)?;
            Ok(None)
        }
    });
    index.mark_in_sync(None);
    outcome
}

/// The cache as `ci end` leaves it, once it has removed what it would.
struct Settled {
    /// Entries the sync after removing found new (added while ending).
    added: u64,
    /// Subdirectories sealed for the next run.
    sealed_subdirs: u32,
    /// Seconds the sync after removing and the seal took.
    seconds: f64,
    /// The entries kept.
    kept: Bytes,
    /// The cache directory's allocated bytes (entries and fixed bytes).
    cache_bytes: u64,
}

/// Syncs what the removals changed, seals the subdirectories, writes
/// `trim.txt` (a failure is a warning) and measures what is kept.
fn settle(
    cache_dir: &Path,
    index: &mut Index,
    now: UnixTime,
    reporter: &dyn Reporter,
    warnings: &mut Vec<String>,
) -> Result<Settled> {
    let clock = Instant::now();
    let after = ScanOptions {
        trust_recent: true,
        ..Default::default()
    };
    let post = scan(cache_dir, index, &after, now, reporter)?;
    let sealed_subdirs = seal(cache_dir, index, now)?;
    let seconds = clock.elapsed().as_secs_f64();
    let dir = CacheDir::open(cache_dir)?;
    if let Err(e) = write_go_trim_time(&dir, now) {
        warnings.push(format!(
            "cannot write {}: {e}",
            cache_dir.join("trim.txt").display()
        ));
    }
    // The cache is about to be saved: the index without a WAL, so that
    // what is measured here is what the archive holds.
    let _ = index.checkpoint();
    let kept = index.fast_totals()?.total;
    let cache_bytes = kept
        .allocated_bytes
        .saturating_add(fixed_bytes(cache_dir, index)?);
    Ok(Settled {
        added: post.added,
        sealed_subdirs,
        seconds,
        kept,
        cache_bytes,
    })
}

/// The five largest cached executables, and whether the run `run_id`
/// used them.
fn largest_programs(index: &Index, run_id: Option<i64>) -> Result<Vec<Program>> {
    Ok(index
        .runs()
        .largest_exes(5)?
        .into_iter()
        .map(|(e, last)| Program {
            program: e.program.clone().unwrap_or_default(),
            entry: e.name.to_string(),
            allocated_bytes: e.allocated,
            apparent_bytes: e.apparent,
            used: run_id.is_some() && last == run_id,
            hits: e.hits,
        })
        .collect())
}

/// What `ci end` gathered, for [`EndReport::new`].
struct Ended<'r, 's> {
    run: Option<&'r CiRun>,
    now: UnixTime,
    keep_runs: u32,
    keep_from: i64,
    limits: Limits,
    marking: Marking<'r>,
    /// The trim; `None` when another one held the lock.
    trimmed: Option<Box<TrimReport>>,
    settled: &'s Settled,
    timings: EndTimings,
    largest_programs: Vec<Program>,
}

impl EndReport {
    /// The report of what `ended` gathered (not sealed yet).
    fn new(ended: Ended) -> EndReport {
        let Ended {
            run,
            now,
            keep_runs,
            keep_from,
            limits,
            marking,
            trimmed,
            settled,
            timings,
            largest_programs,
        } = ended;
        let RunMarks { used, created, .. } = marking.marked;
        let restored = run.map(|r| r.restored).unwrap_or_default();
        let (removed, removed_by_rule, limits_met, unmet, protected, executed) = match trimmed {
            Some(r) => {
                let e = r.executed.unwrap_or_default();
                let removed = Bytes {
                    entries: e.removed,
                    apparent_bytes: e.removed_apparent,
                    allocated_bytes: e.removed_allocated,
                };
                (
                    removed,
                    r.plan.by_rule.clone(),
                    r.limits_met,
                    r.plan.unmet.clone(),
                    r.plan.protected,
                    Some(e),
                )
            }
            None => (
                Bytes::default(),
                Vec::new(),
                false,
                Vec::new(),
                Bytes::default(),
                None,
            ),
        };
        EndReport {
            run: run.map(|r| RunInfo {
                id: r.id,
                label: r.label.clone(),
                started: r.started,
                seconds: now.saturating_sub(r.started),
            }),
            restored,
            used,
            created,
            removed,
            removed_by_rule,
            kept: settled.kept,
            cache_bytes: settled.cache_bytes,
            used_share: if restored.allocated_bytes > 0 {
                (used.allocated_bytes as f64 / restored.allocated_bytes as f64).min(1.0)
            } else {
                0.0
            },
            largest_programs,
            keep_runs,
            keep_from: (keep_from != i64::MIN).then_some(keep_from),
            limits,
            limits_met,
            unmet,
            protected,
            executed,
            moved_back: marking.moved,
            sealed_subdirs: settled.sealed_subdirs,
            sealed: false,
            timings,
            warnings: marking.warnings,
        }
    }
}

/// What [`evict_first`] removed.
#[derive(Clone, Debug, Default)]
pub struct Evicted {
    /// What removing did.
    pub executed: Executed,
    /// Entries removed, by the rule that chose them (as
    /// [`EndReport::removed_by_rule`]).
    pub by_rule: Vec<(Rule, Bytes)>,
}

/// On a full disk, before [`end`]: removes what `end` would (the same
/// marks of the open run, the same plan by runs and executor), working on
/// `index`, an in-memory copy of the file that cannot be written; and
/// nothing else: no mtime moved back, nothing sealed or recorded, so that
/// `end` can then run on the file, in the room this made, find the run's
/// uses on disk as they were, and record its end. Returns what removing
/// did and what each rule took (`None`: another trim held the lock).
pub fn evict_first(
    cache_dir: &Path,
    index: &mut Index,
    opts: &EndOptions,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<Option<Evicted>> {
    let run: Option<CiRun> = index.runs().last()?.filter(|r| r.ended.is_none());
    let keep_from = index
        .runs()
        .keep_from(run.as_ref().map(|r| r.id), opts.keep_runs)?;
    let mut limits = opts.limits.clone();
    (limits.build_max_age, limits.exe_max_age) = (None, None);
    let mut step = |_: &CacheDir, ix: &mut Index| -> Result<()> {
        if let Some(run) = &run {
            ix.runs_mut()
                .mark(run.id, run.used_after, run.started, now - END_BACKDATE)?;
        }
        Ok(())
    };
    let runs = Runs {
        keep_from,
        current: run.as_ref().map(|r| r.id),
    };
    index.mark_in_sync(run.as_ref().map(CiRun::sync_mark));
    let outcome = trim_by_runs(
        cache_dir,
        index,
        &limits,
        runs,
        opts.lock_wait,
        &mut step,
        now,
        reporter,
    );
    index.mark_in_sync(None);
    Ok(match outcome? {
        TrimOutcome::Done(r) => Some(Evicted {
            executed: r.executed.unwrap_or_default(),
            by_rule: r.plan.by_rule.clone(),
        }),
        TrimOutcome::Locked => None,
    })
}

/// Seals every subdirectory the index has an mtime for and that has not
/// changed since: sets its mtime to a whole, even second before `now` and
/// records it (see the module doc). Returns how many.
fn seal(cache_dir: &Path, index: &mut Index, now: UnixTime) -> Result<u32> {
    let dir = CacheDir::open(cache_dir)?;
    let t = (now - 2).div_euclid(2) * 2;
    let states = index.subdir_states()?;
    let mut n = 0;
    for s in 0..=255u8 {
        let Some(was) = states[s as usize].and_then(|st| st.mtime_ns) else {
            continue;
        };
        if was == 0 {
            continue; // missing (go clean -cache)
        }
        if let Ok(Some(ns)) = seal_subdir(&dir, s, was, t)
            && index.runs_mut().reseal_subdir(s, was, ns)?
        {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cachedir::fixtures::{TinyCache, set_mtime};
    use crate::cachedir::{TrimLock, subdir_mtime_ns};
    use crate::report::Silent;

    /// "Now" for these tests: well after every real mtime (the tiny
    /// caches' subdirectories are made just now), so nothing is racy.
    fn clock() -> UnixTime {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        real + 10 * 86_400
    }

    fn mtime(c: &TinyCache, n: &EntryName) -> UnixTime {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(n.path_in(c.path()))
            .unwrap()
            .mtime()
    }

    fn index(c: &TinyCache) -> Index {
        Index::open(&c.join("gocache/index.sqlite")).unwrap()
    }

    fn keep(keep_runs: u32) -> EndOptions {
        EndOptions {
            keep_runs,
            limits: Limits::default(),
            lock_wait: Duration::ZERO,
        }
    }

    #[test]
    fn begin_moves_back_only_what_is_recent_and_keeps_gos_trim_off() {
        let c = TinyCache::new();
        let t = clock();
        let (a1, o1) = (
            c.action(1, 2, t - 3 * 86_400),
            c.output(2, 10, t - 3 * 86_400),
        );
        let (a3, o4) = (c.action(3, 4, t - 20 * 60), c.output(4, 10, t + 3600));
        std::fs::write(c.join("trim.txt"), (t - 2 * 86_400).to_string()).unwrap();
        let mut ix = index(&c);
        let r = begin(c.path(), &mut ix, Some("ci"), t, &Silent).unwrap();
        assert_eq!((r.run, r.start, r.moved_back), (1, Start::New, 2));
        assert_eq!(r.used_after, t - HOUR - BEGIN_MARGIN);
        assert_eq!(r.go_trim_was, Some(t - 2 * 86_400));
        assert_eq!(r.restored.total.entries, 4);
        assert_eq!(
            (mtime(&c, &a1), mtime(&c, &o1)),
            (t - 3 * 86_400, t - 3 * 86_400)
        );
        assert_eq!(
            (mtime(&c, &a3), mtime(&c, &o4)),
            (r.used_after, r.used_after)
        );
        assert_eq!(
            std::fs::read_to_string(c.join("trim.txt")).unwrap(),
            t.to_string()
        );
        let e = ix.entry(&o4).unwrap().unwrap();
        assert_eq!((e.mtime, e.first_seen), (r.used_after, t - 1));
        assert!(e.last_use < t, "a future mtime is no use by this run");
    }

    #[test]
    fn end_tells_used_from_made_moves_them_back_and_seals_for_the_next_begin() {
        let c = TinyCache::new();
        let t = clock();
        let old = t - 3 * 86_400;
        let (a1, o1) = (c.action(1, 2, old), c.output(2, 10, old));
        c.action(3, 4, old);
        c.output(4, 5000, old);
        let mut ix = index(&c);
        begin(c.path(), &mut ix, None, t, &Silent).unwrap();
        // The job: go uses pair 1 (markUsed) and makes pair 5.
        set_mtime(&a1.path_in(c.path()), t + 600);
        set_mtime(&o1.path_in(c.path()), t + 600);
        let (a5, o5) = (c.action(5, 6, t + 700), c.output(6, 20, t + 700));
        let end_at = t + 1000;
        let r = end(c.path(), &mut ix, &keep(10), end_at, &Silent).unwrap();
        assert_eq!(r.run.as_ref().unwrap().id, 1);
        assert_eq!(
            (r.restored.entries, r.used.entries, r.created.entries),
            (4, 2, 2)
        );
        assert_eq!(r.used.apparent_bytes, 175 + 10);
        assert_eq!(r.created.apparent_bytes, 175 + 20);
        assert_eq!((r.removed.entries, r.kept.entries), (0, 6));
        assert_eq!(r.moved_back, 4);
        let moved_to = end_at - END_BACKDATE;
        for n in [a1, o1, a5, o5] {
            assert_eq!(mtime(&c, &n), moved_to, "{n}");
        }
        assert!(r.sealed && r.sealed_subdirs == 256, "{}", r.sealed_subdirs);
        let dir = CacheDir::open(c.path()).unwrap();
        let sealed_at = subdir_mtime_ns(&dir, 5).unwrap();
        assert_eq!(sealed_at % 2_000_000_000, 0, "a whole, even second");
        assert_eq!(
            std::fs::read_to_string(c.join("trim.txt")).unwrap(),
            end_at.to_string()
        );

        // The next job starts in the same second: nothing to reread,
        // nothing to move back, and nothing counts as its own.
        let b = begin(c.path(), &mut ix, None, end_at, &Silent).unwrap();
        assert_eq!((b.run, b.start, b.sealed_by), (2, Start::Sealed, Some(1)));
        assert_eq!((b.scan.rescanned.len(), b.moved_back), (0, 0));
        assert_eq!(b.restored.total.entries, 6);
        let r = end(c.path(), &mut ix, &keep(10), end_at + 100, &Silent).unwrap();
        assert_eq!((r.used.entries, r.created.entries), (0, 0));
        assert_eq!(r.used_share, 0.0);
    }

    #[test]
    fn a_restore_that_reset_every_mtime_is_read_again_and_the_next_end_is_exact() {
        let c = TinyCache::new();
        let t = clock();
        let old = t - 3 * 86_400;
        let pairs: Vec<(EntryName, EntryName)> = (0..4u8)
            .map(|k| {
                (
                    c.action(2 * k + 1, 2 * k + 2, old),
                    c.output(2 * k + 2, 10, old),
                )
            })
            .collect();
        let mut ix = index(&c);
        begin(c.path(), &mut ix, None, t, &Silent).unwrap();
        let r = end(c.path(), &mut ix, &keep(10), t + 600, &Silent).unwrap();
        assert!(r.sealed && r.removed.entries == 0);
        // Restored as `cp -r` does: every entry and subdirectory gets the
        // copy's time (the index travels with it).
        let copied = t + 86_400;
        for (a, o) in &pairs {
            set_mtime(&a.path_in(c.path()), copied);
            set_mtime(&o.path_in(c.path()), copied);
        }
        for s in 0..=255u8 {
            set_mtime(&c.join(crate::layout::subdir_name(s)), copied);
        }
        let b = begin(c.path(), &mut ix, None, copied + 60, &Silent).unwrap();
        assert_eq!(b.start, Start::Sealed);
        assert_eq!(b.moved_back, 8, "every reset mtime moved back");
        // The job uses one pair; keep-runs 1 keeps that pair and no other.
        let (a, o) = &pairs[2];
        set_mtime(&a.path_in(c.path()), copied + 120);
        set_mtime(&o.path_in(c.path()), copied + 120);
        let r = end(c.path(), &mut ix, &keep(1), copied + 180, &Silent).unwrap();
        assert_eq!(
            (r.used.entries, r.removed.entries, r.kept.entries),
            (2, 6, 2)
        );
        assert!(a.path_in(c.path()).exists() && o.path_in(c.path()).exists());
    }

    #[test]
    fn what_no_kept_run_used_goes_and_never_used_entries_wait_for_n_runs() {
        let c = TinyCache::new();
        let t = clock();
        // Five minutes apart: what earlier runs used is not protected.
        let run_at = |k: i64| t + k * 300;
        let old = t - 86_400;
        let (ax, ox) = (c.action(1, 2, old), c.output(2, 10, old)); // run 1 uses it
        let (ay, oy) = (c.action(3, 4, old), c.output(4, 10, old)); // runs 2 and 3
        let (az, oz) = (c.action(5, 6, old), c.output(6, 10, old)); // never
        let mut ix = index(&c);
        let job = |k: i64, used: &[EntryName], ix: &mut Index| -> EndReport {
            begin(c.path(), ix, None, run_at(k), &Silent).unwrap();
            for n in used {
                set_mtime(&n.path_in(c.path()), run_at(k) + 60);
            }
            end(c.path(), ix, &keep(2), run_at(k) + 120, &Silent).unwrap()
        };
        let r = job(1, &[ax, ox], &mut ix);
        assert_eq!(
            (r.removed.entries, r.keep_from),
            (0, None),
            "one run: nothing stale"
        );
        let r = job(2, &[ay, oy], &mut ix);
        // Pair z: no run used it, and two runs have ended: it goes.
        assert_eq!((r.removed.entries, r.keep_from), (2, Some(1)));
        assert_eq!(r.removed_by_rule, vec![(Rule::KeepRuns, r.removed)]);
        assert!(!az.path_in(c.path()).exists() && !oz.path_in(c.path()).exists());
        let r = job(3, &[ay, oy], &mut ix);
        assert_eq!((r.removed.entries, r.keep_from), (2, Some(2)));
        assert!(!ax.path_in(c.path()).exists() && !ox.path_in(c.path()).exists());
        assert!(ay.path_in(c.path()).exists() && oy.path_in(c.path()).exists());
        assert_eq!(r.kept.entries, 2);
    }

    #[test]
    fn without_a_begin_nothing_is_marked_or_sealed() {
        let c = TinyCache::new();
        let t = clock();
        c.action(1, 2, t - 600);
        c.output(2, 10, t - 600);
        let mut ix = index(&c);
        let r = end(c.path(), &mut ix, &keep(1), t, &Silent).unwrap();
        assert!(r.run.is_none() && !r.sealed);
        assert_eq!(
            (r.used.entries, r.created.entries, r.kept.entries),
            (0, 0, 2)
        );
        assert_eq!(ix.runs().seal().unwrap(), None);
        let b = begin(c.path(), &mut ix, None, t + 60, &Silent).unwrap();
        assert_eq!((b.start, b.moved_back), (Start::Walked, 2));
    }

    /// `n` action entries, each naming an output of 10 bytes, with IDs of
    /// their own (beyond TinyCache's 256), written at `at`.
    fn many_pairs(c: &TinyCache, n: u16, at: UnixTime) -> Vec<[EntryName; 2]> {
        use crate::layout::{ActionEntry, Id};
        let write = |name: &EntryName, content: &[u8]| {
            let path = name.path_in(c.path());
            std::fs::write(&path, content).unwrap();
            set_mtime(&path, at);
        };
        (0..n)
            .map(|i| {
                let id = |tag: u8| {
                    let mut id = [tag; 32];
                    id[..2].copy_from_slice(&i.to_le_bytes());
                    Id(id)
                };
                let (action, output) = (EntryName::action(id(0x55)), EntryName::data(id(0x77)));
                let entry = ActionEntry {
                    action: action.id,
                    output: output.id,
                    size: 10,
                    time_nanos: at * 1_000_000_000,
                };
                write(&action, entry.format().as_bytes());
                write(&output, b"0123456789");
                [action, output]
            })
            .collect()
    }

    #[test]
    fn end_removes_no_more_for_a_budget_than_trim_does() {
        // Marking what a run used rewrites a row per entry; left in the
        // WAL, those pages counted as index bytes and ci end removed as
        // much again (137 MB more than needed on a 1M-entry cache).
        let c = TinyCache::new();
        let t = clock();
        let pairs = many_pairs(&c, 1500, t - 3 * 86_400);
        let names: Vec<EntryName> = pairs.iter().flatten().copied().collect();
        let mut ix = index(&c);
        begin(c.path(), &mut ix, None, t, &Silent).unwrap();
        for n in &names[..1500] {
            set_mtime(&n.path_in(c.path()), t + 600);
        }
        let before =
            ix.fast_totals().unwrap().total.allocated_bytes + fixed_bytes(c.path(), &ix).unwrap();
        let per_entry = before / 3000;
        let limits = Limits {
            budget: Some(before - 600 * per_entry),
            ..Limits::default()
        };
        // The same cache and index, for trim.
        let twin = tempfile::tempdir().unwrap();
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(c.path().join("."))
            .arg(twin.path())
            .status()
            .unwrap();
        assert!(copied.success());
        let end_at = t + 1000;
        let opts = EndOptions {
            limits: limits.clone(),
            ..keep(10)
        };
        let ended = end(c.path(), &mut ix, &opts, end_at, &Silent).unwrap();
        assert!(ended.limits_met);
        let mut twin_ix = Index::open(&twin.path().join("gocache/index.sqlite")).unwrap();
        let TrimOutcome::Done(trimmed) =
            crate::enforce::trim(twin.path(), &mut twin_ix, &limits, false, end_at, &Silent)
                .unwrap()
        else {
            panic!("locked")
        };
        let trimmed = trimmed.executed.unwrap().removed_allocated;
        assert!(trimmed >= 500 * per_entry, "trim removed {trimmed}");
        assert!(
            ended.removed.allocated_bytes <= trimmed + 2 * per_entry,
            "ci end removed {} bytes, trim {trimmed}",
            ended.removed.allocated_bytes
        );
        // What the run used stays.
        assert!(names[..1500].iter().all(|n| n.path_in(c.path()).exists()));
    }

    /// `du -s --block-size=1` of `dir`: allocated bytes, as the README
    /// defines a cache's size.
    fn du(dir: &Path) -> u64 {
        let out = std::process::Command::new("du")
            .args(["-s", "--block-size=1"])
            .arg(dir)
            .output()
            .unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        out.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// `cache_bytes` is what `du` says once `ci end` is done, its run's
    /// report and seal written (a long label makes the report grow the
    /// index after the trim), and `limits_met` agrees with it: over a
    /// sweep of budgets around the cache's size, each on a copy of the
    /// same job.
    #[test]
    fn cache_bytes_is_du_after_the_last_write_and_met_agrees_with_it() {
        let c = TinyCache::new();
        let t = clock();
        many_pairs(&c, 40, t - 3 * 86_400);
        let mut ix = index(&c);
        let label = "a label as long as a commit message ".repeat(150);
        begin(c.path(), &mut ix, Some(&label), t, &Silent).unwrap();
        drop(ix);
        let job = |budget: Option<u64>| {
            let twin = tempfile::tempdir().unwrap();
            let copied = std::process::Command::new("cp")
                .arg("-a")
                .arg(c.path().join("."))
                .arg(twin.path())
                .status()
                .unwrap();
            assert!(copied.success());
            let mut ix = Index::open(&twin.path().join("gocache/index.sqlite")).unwrap();
            let opts = EndOptions {
                limits: Limits {
                    budget,
                    ..Limits::default()
                },
                ..keep(10)
            };
            let r = end(twin.path(), &mut ix, &opts, t + 1000, &Silent).unwrap();
            drop(ix);
            (r, du(twin.path()))
        };
        let (unbounded, size) = job(None);
        assert_eq!(unbounded.cache_bytes, size);
        let mut over_after_the_trim = 0;
        // Room to spare, and budgets the trim meets with pairs of 4 KiB
        // blocks (at three points of a pair) before the records are in.
        for budget in [size + 65_536, size - 4096, size - 6144, size - 8192] {
            let (r, du) = job(Some(budget));
            assert_eq!(r.cache_bytes, du, "budget {budget}");
            assert_eq!(r.limits_met, du <= budget, "budget {budget}: {:?}", r.unmet);
            let over: Vec<u64> = r.unmet.iter().map(|u| u.over_by).collect();
            assert_eq!(
                over,
                (du > budget)
                    .then(|| du - budget)
                    .into_iter()
                    .collect::<Vec<_>>()
            );
            if r.unmet.iter().any(|u| u.reason.contains("after the trim")) {
                over_after_the_trim += 1;
            }
        }
        assert!(
            over_after_the_trim > 0,
            "no budget the trim met and the records broke"
        );
    }

    #[test]
    fn a_held_lock_removes_nothing_but_the_run_is_recorded() {
        let c = TinyCache::new();
        let t = clock();
        let (a, o) = (c.action(1, 2, t - 86_400), c.output(2, 10, t - 86_400));
        let mut ix = index(&c);
        begin(c.path(), &mut ix, None, t, &Silent).unwrap();
        set_mtime(&a.path_in(c.path()), t + 60);
        set_mtime(&o.path_in(c.path()), t + 60);
        let _held = TrimLock::try_acquire(c.path()).unwrap().unwrap();
        let mut o0 = keep(1);
        o0.limits.budget = Some(0);
        let r = end(c.path(), &mut ix, &o0, t + 120, &Silent).unwrap();
        assert!(r.executed.is_none() && !r.limits_met);
        assert_eq!((r.used.entries, r.kept.entries), (2, 2));
        assert!(
            r.warnings[0].contains("nothing was removed"),
            "{:?}",
            r.warnings
        );
        assert_eq!(ix.runs().last().unwrap().unwrap().ended, Some(t + 120));
    }
}
