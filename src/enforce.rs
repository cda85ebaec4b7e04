//! Enforcing the limits: the one path that syncs, plans and executes.
//!
//! Everything that evicts goes through here, in one of two ways:
//!
//! - [`trim`]: what `gocache trim` (and `gocache-trim`, from cron) does. A
//!   full sync (only a full one sees Go's `markUsed` touches, which do not
//!   change a subdirectory's mtime), then always a plan, so garbage and age
//!   limits apply too; a dry run stops at the plan.
//! - [`trim_by_runs`]: what `gocache ci end` does: a [`trim`] whose plan
//!   is by CI runs ([`crate::policy::plan_by_runs`]), with the caller's
//!   step between the sync and the plan (the CI mode marks what the run
//!   used there), and a lock it waits a little for.
//! - [`after_use`]: what runs after go used the cache: the hook after each
//!   go command, `gocache prog` every few puts and at `close`. The caller has just synced the index incrementally (the
//!   hook with a head start). It records the uses the caller saw and then,
//!   only when the index's running totals say the budget or the exe quota
//!   is exceeded (or free space is low), takes the lock and evicts down to
//!   [`HEADROOM`] of them, so that the next few inserts do not trigger again
//!   (as ccache does). Under the limits it reads 256 rows and returns, with
//!   no lock taken: a hook after each go command usually ends there.
//!
//! Both plan with the pure [`crate::policy::plan`], and execute with
//! [`crate::trim::execute`] under the [`TrimLock`], in rounds: entries Go
//! used since the sync are skipped by the executor, which reports their new
//! mtimes; they are recorded and the plan made again, so that older entries
//! go instead (at most [`MAX_ROUNDS`]). When another trim holds the lock,
//! [`trim`] says so and [`after_use`] steps aside: the trim running will
//! see what it synced.
//!
//! The limits enforced are the ones stored in the index (`gocache limits`),
//! with a run's own flags over them: [`effective_limits`].

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cachedir::{CacheDir, TrimLock, sweep_prog_temps};
use crate::error::{Error, Result};
use crate::index::{Index, Use};
use crate::limits::{LimitSpecs, Limits};
use crate::model::UnixTime;
use crate::policy::{Environment, HEADROOM, Plan, Runs, over_limits, plan_by_runs};
use crate::report::Reporter;
use crate::scan::{ScanOptions, ScanSummary, scan};
use crate::trim::{Executed, execute};

/// How many plan-and-execute rounds a run makes when Go keeps using what
/// was planned.
pub const MAX_ROUNDS: usize = 3;

/// The limits a run enforces: those stored in `index`, with `flags` (the
/// run's own) over them, resolved against the filesystem holding the cache.
pub fn effective_limits(cache_dir: &Path, index: &Index, flags: &LimitSpecs) -> Result<Limits> {
    let specs = index.stored_limits()?.merge(flags);
    let fs_total = fs4::total_space(cache_dir).unwrap_or(0);
    Ok(specs.resolve(fs_total))
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

/// What a trim did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrimReport {
    /// True for a dry run.
    pub dry_run: bool,
    /// The sync before planning.
    pub scan: ScanSummary,
    /// The plan (after the last round, for a real run).
    pub plan: Plan,
    /// What executing it did (absent for a dry run).
    pub executed: Option<Executed>,
    /// Every limit met after the run (for a dry run: would be).
    pub limits_met: bool,
    /// Seconds spent syncing, planning and executing (wall clock; for
    /// reports and benchmarks, not for decisions).
    pub timings: Timings,
}

/// Where a trim's time went.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Timings {
    /// Syncing the index with the disk.
    pub sync_seconds: f64,
    /// Loading entries and planning.
    pub plan_seconds: f64,
    /// Removing entries and updating the index.
    pub execute_seconds: f64,
}

/// The outcome of [`trim`].
#[derive(Debug)]
pub enum TrimOutcome {
    /// The trim happened (or, for a dry run, was planned).
    Done(Box<TrimReport>),
    /// Another trim holds the lock; nothing was done.
    Locked,
}

/// Syncs the index fully, plans against `limits`, and (unless `dry_run`)
/// executes the plan under the trim lock: `gocache trim`.
///
/// A dry run takes no lock, removes nothing and writes nothing but the
/// sync. A real run also sweeps `gocache prog`'s temporary files left by a
/// killed server.
pub fn trim(
    cache_dir: &Path,
    index: &mut Index,
    limits: &Limits,
    dry_run: bool,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<TrimOutcome> {
    let lock = if dry_run {
        None
    } else {
        match TrimLock::try_acquire(cache_dir)? {
            Some(l) => Some(l),
            None => return Ok(TrimOutcome::Locked),
        }
    };
    synced_trim(
        cache_dir,
        index,
        limits,
        lock,
        Order::LastUse,
        None,
        now,
        reporter,
    )
}

/// What runs between [`trim_by_runs`]'s sync and its plan: the cache
/// (open, for setting times) and the freshly synced index.
pub type AfterSync<'a> = &'a mut dyn FnMut(&CacheDir, &mut Index) -> Result<()>;

/// [`trim`] for `gocache ci end`: waits up to `wait` for the trim lock
/// ([`TrimOutcome::Locked`] only after that), syncs fully, runs
/// `after_sync`, and plans by CI runs: each entry's last run as the index
/// records it (after `after_sync`), the groups no run from
/// `runs.keep_from` on used going first, only the ending run's protected
/// (see [`crate::policy::plan_by_runs`]); executed with the same safety as
/// [`trim`], in rounds. Never a dry run.
#[allow(clippy::too_many_arguments)]
pub fn trim_by_runs(
    cache_dir: &Path,
    index: &mut Index,
    limits: &Limits,
    runs: Runs,
    wait: Duration,
    after_sync: AfterSync,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<TrimOutcome> {
    let Some(lock) = TrimLock::acquire_within(cache_dir, wait)? else {
        return Ok(TrimOutcome::Locked);
    };
    let order = Order::Runs(runs);
    synced_trim(
        cache_dir,
        index,
        limits,
        Some(lock),
        order,
        Some(after_sync),
        now,
        reporter,
    )
}

/// How a plan orders what it removes.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// Least recently used first.
    LastUse,
    /// By CI run, then last use (see [`Runs`]).
    Runs(Runs),
}

/// The body of [`trim`] and [`trim_by_runs`]: sync fully, plan, and (with
/// a lock, which a dry run goes without) execute.
#[allow(clippy::too_many_arguments)]
fn synced_trim(
    cache_dir: &Path,
    index: &mut Index,
    limits: &Limits,
    lock: Option<TrimLock>,
    order: Order,
    after_sync: Option<AfterSync>,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<TrimOutcome> {
    let dry_run = lock.is_none();
    let mut timings = Timings::default();
    let clock = Instant::now();
    let full = ScanOptions {
        full: true,
        ..Default::default()
    };
    let synced = scan(cache_dir, index, &full, now, reporter)?;
    timings.sync_seconds = clock.elapsed().as_secs_f64();
    let dir = if dry_run {
        None
    } else {
        let dir = CacheDir::open(cache_dir)?;
        sweep_prog_temps(&dir, &index.others()?, now);
        if let Some(step) = after_sync {
            step(&dir, index)?;
        }
        Some(dir)
    };
    let env = environment(cache_dir, index, limits)?;
    let clock = Instant::now();
    let plan = make_plan(index, limits, &env, now, order)?;
    timings.plan_seconds = clock.elapsed().as_secs_f64();
    let Some(dir) = dir else {
        return Ok(TrimOutcome::Done(Box::new(TrimReport {
            dry_run: true,
            scan: synced,
            limits_met: plan.meets_all_limits(),
            plan,
            executed: None,
            timings,
        })));
    };
    let clock = Instant::now();
    let (plan, executed) =
        execute_in_rounds(&dir, index, plan, limits, &env, now, order, reporter)?;
    drop(lock);
    timings.execute_seconds = clock.elapsed().as_secs_f64();
    Ok(TrimOutcome::Done(Box::new(TrimReport {
        dry_run: false,
        scan: synced,
        limits_met: limits_met(&plan, &executed),
        plan,
        executed: Some(executed),
        timings,
    })))
}

/// The outcome of [`after_use`].
#[derive(Debug)]
pub enum AfterUse {
    /// No limit is exceeded: the uses were recorded, nothing more (no lock
    /// taken).
    UnderLimits,
    /// A limit was exceeded: entries were evicted down to [`HEADROOM`] of
    /// the budget and the exe quota.
    Trimmed(Executed),
    /// A limit was exceeded, but another trim holds the lock: eviction is
    /// left to it.
    TrimRunning,
}

/// Enforces `limits` after go used the cache (see the module doc): records
/// `uses`, and when the index's running totals are over the budget or the
/// exe quota, or free space is under the floor, evicts down to
/// [`HEADROOM`] of them under the trim lock. The caller has synced the
/// index (incrementally is enough: what Go touched since is inside the
/// grace period, and the executor re-checks every entry anyway); uses
/// come first so that the plan sees them and protects what just ran.
pub fn after_use(
    cache_dir: &Path,
    index: &mut Index,
    uses: &[Use],
    limits: &Limits,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<AfterUse> {
    if !uses.is_empty() {
        index.record_uses(uses)?;
    }
    if !over_limits_now(cache_dir, index, limits)? {
        return Ok(AfterUse::UnderLimits);
    }
    let Some(_lock) = TrimLock::try_acquire(cache_dir)? else {
        return Ok(AfterUse::TrimRunning);
    };
    // Another trim may have finished between the check and the lock.
    if !over_limits_now(cache_dir, index, limits)? {
        return Ok(AfterUse::UnderLimits);
    }
    let dir = CacheDir::open(cache_dir)?;
    let env = environment(cache_dir, index, limits)?;
    let target = limits.scaled(HEADROOM);
    let plan = make_plan(index, &target, &env, now, Order::LastUse)?;
    let (_, executed) = execute_in_rounds(
        &dir,
        index,
        plan,
        &target,
        &env,
        now,
        Order::LastUse,
        reporter,
    )?;
    Ok(AfterUse::Trimmed(executed))
}

/// [`over_limits`] from the index's running totals and the fixed bytes and
/// free space now; free space that cannot be measured is not low.
fn over_limits_now(cache_dir: &Path, index: &Index, limits: &Limits) -> Result<bool> {
    let env = Environment {
        fixed_bytes: fixed_bytes(cache_dir, index)?,
        free_bytes: match limits.min_free {
            Some(_) => fs4::available_space(cache_dir).ok(),
            None => None,
        },
    };
    Ok(over_limits(&index.fast_totals()?, &env, limits))
}

/// The facts beside the entries that a plan needs.
fn environment(cache_dir: &Path, index: &Index, limits: &Limits) -> Result<Environment> {
    Ok(Environment {
        fixed_bytes: fixed_bytes(cache_dir, index)?,
        free_bytes: match limits.min_free {
            Some(_) => Some(
                fs4::available_space(cache_dir)
                    .map_err(|e| Error::io("measuring free space on", cache_dir, e))?,
            ),
            None => None,
        },
    })
}

/// Plans from every entry in the index (and, by runs, each one's last
/// run).
fn make_plan(
    index: &Index,
    limits: &Limits,
    env: &Environment,
    now: UnixTime,
    order: Order,
) -> Result<Plan> {
    Ok(match order {
        Order::LastUse => crate::policy::plan(&index.entries()?, limits, env, now),
        Order::Runs(runs) => {
            let (entries, last_run) = index.entries_and_runs()?;
            plan_by_runs(&entries, &last_run, runs, limits, env, now)
        }
    })
}

/// Executes `plan` under the lock the caller holds, in rounds: entries Go
/// used since the sync are skipped by the executor, which reports their new
/// mtimes; record them and plan again, so that older entries go instead.
/// Returns the last plan and what all rounds did.
#[allow(clippy::too_many_arguments)]
fn execute_in_rounds(
    dir: &CacheDir,
    index: &mut Index,
    mut plan: Plan,
    limits: &Limits,
    env: &Environment,
    now: UnixTime,
    order: Order,
    reporter: &dyn Reporter,
) -> Result<(Plan, Executed)> {
    let mut executed = Executed::default();
    for round in 0..MAX_ROUNDS {
        let done = execute(dir, &plan.victims, Some(index), reporter)?;
        let refreshed = done.used_since.clone();
        executed.absorb(done);
        if refreshed.is_empty() || round + 1 == MAX_ROUNDS {
            break;
        }
        index.record_mtimes(&refreshed)?;
        plan = make_plan(index, limits, env, now, order)?;
        if plan.is_empty() {
            break;
        }
    }
    if executed.removed > 0 {
        index.checkpoint()?;
    }
    Ok((plan, executed))
}

/// Every limit met after executing `plan`: the plan met them, nothing was
/// kept for another reason, and what Go used since the last round's plan
/// left nothing to do.
fn limits_met(plan: &Plan, executed: &Executed) -> bool {
    plan.meets_all_limits()
        && executed.skipped_changed + executed.skipped_odd + executed.failed == 0
        && (executed.used_since.is_empty() || plan.is_empty())
}
