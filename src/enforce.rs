//! Enforcing the limits: the one path that syncs, plans and executes.
//!
//! Everything that evicts goes through here, in one of three ways:
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
//!   go command, `gocache prog` every few puts and at `close`. The caller
//!   has just synced the index incrementally (the hook with a head start).
//!   It records the uses the caller saw and then, only when the index's
//!   running totals say the budget or the exe quota is exceeded (or free
//!   space is low), takes the lock and evicts down to [`HEADROOM`] of
//!   them, so that the next few inserts do not trigger again (as ccache
//!   does). Under the limits it reads 256 rows and returns, with no lock
//!   taken: a hook after each go command usually ends there.
//!
//! All three plan with the pure [`crate::policy`] (by runs,
//! [`crate::policy::plan_by_runs`]), and execute with
//! [`crate::execute::execute`] under the [`TrimLock`], in rounds: entries Go
//! used since the sync are skipped by the executor, which reports their new
//! mtimes; they are recorded and the plan made again, so that older entries
//! go instead (at most [`MAX_ROUNDS`]). When another trim holds the lock,
//! [`trim`] says so and [`after_use`] steps aside: the trim running will
//! see what it synced.
//!
//! The limits enforced are layered (see `crate::limits`): a run's own
//! flags, then the environment (`GOCACHE_BUDGET`, …), then the config file,
//! then those stored in the index (`gocache limits`), then the defaults:
//! [`effective_limits`], so that the hook, `gocache prog`, `trim` and the
//! CI mode all get the same answer; [`resolve_limits`] also says where each
//! came from. All but the stored layer are read and checked first
//! ([`read_given`]), before the index is opened: a bad value in the
//! environment or the config file is refused with nothing created.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cachedir::{CacheDir, TrimLock, own_dir_allocated, sweep_prog_temps};
use crate::error::{Error, Result};
use crate::execute::{Executed, execute};
use crate::index::{Index, Use};
use crate::layout::{EntryName, IdHash};
use crate::limits::{CONFIG_ENV, Layers, LimitSpecs, Limits, Sourced, layer, parse_config};
use crate::model::{Bytes, OtherClass, Totals, UnixTime};
use crate::policy::{
    Environment, HEADROOM, Plan, Rule, Runs, Unmet, Victim, over_limits, plan_by_runs, shortfalls,
};
use crate::report::{Reporter, count};
use crate::scan::{ScanOptions, ScanSummary, scan};

/// How many plan-and-execute rounds a run makes when Go keeps using what
/// was planned.
pub const MAX_ROUNDS: usize = 3;

/// The limits a run enforces: `given` (the run's flags, the environment
/// and the config file, read by [`read_given`]) over the limits stored in
/// `index`, resolved against the filesystem holding the cache (see
/// [`resolve_limits`]).
pub fn effective_limits(cache_dir: &Path, index: &Index, given: &Layers) -> Result<Limits> {
    Ok(resolve_limits(cache_dir, index.stored_limits()?, given).limits)
}

/// The limits in force and where each came from.
#[derive(Clone, Debug)]
pub struct ResolvedLimits {
    /// In bytes and seconds, defaults filled in: what a run enforces.
    pub limits: Limits,
    /// As layered, with each one's source.
    pub sourced: Sourced,
    /// The config file that was read, if one was.
    pub config_file: Option<PathBuf>,
}

/// Reads the layers of limits set outside the index: `flags`, the
/// environment as `env` reads it and the config file it names
/// ([`crate::limits::config_path`]); a config file named by
/// `$GOCACHE_CONFIG` must exist, the default one may not. Every value is
/// checked here, so a command calls this before it opens or creates
/// anything: a bad setting is refused with nothing written.
pub fn read_given(
    flags: &LimitSpecs,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Layers> {
    let config = match crate::limits::config_path(env) {
        None => None,
        Some((path, named)) => match std::fs::read_to_string(&path) {
            Ok(text) => Some(parse_config(&text, &path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => None,
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "the config file {} cannot be read: {e}{}",
                    path.display(),
                    if named {
                        format!(" (named by {CONFIG_ENV}; set it to `off` to read none)")
                    } else {
                        String::new()
                    }
                )));
            }
        },
    };
    Ok(Layers {
        flags: flags.clone(),
        env: LimitSpecs::from_env(env)?,
        config,
        stored: LimitSpecs::default(),
    })
}

/// Layers `given` ([`read_given`]) over `stored`, and resolves them
/// against the filesystem holding `cache_dir`.
pub fn resolve_limits(cache_dir: &Path, stored: LimitSpecs, given: &Layers) -> ResolvedLimits {
    let config_file = given.config.as_ref().map(|c| c.path.clone());
    let sourced = layer(&Layers {
        stored,
        ..given.clone()
    });
    let fs_total = fs4::total_space(cache_dir).unwrap_or(0);
    ResolvedLimits {
        limits: sourced.specs.resolve(fs_total),
        sourced,
        config_file,
    }
}

/// Allocated bytes in the cache directory that are not entries: the
/// directory and its 256 subdirectories, Go's files, odd files, and
/// gocache's own directory. They count towards the budget (what `du` sees)
/// but cannot be evicted. gocache's own directory (the index, its WAL, a
/// moved-aside damaged copy) is measured now, not taken from the last
/// scan: it changes while gocache runs (a rebuilt index fills up during
/// the sync that follows).
pub fn fixed_bytes(cache_dir: &Path, index: &Index) -> Result<u64> {
    let others: u64 = index
        .others()?
        .iter()
        .filter(|o| o.class != OtherClass::Gocache)
        .map(|o| o.allocated)
        .sum::<u64>()
        .saturating_add(own_dir_allocated(cache_dir));
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
    /// The entries before the run (after the sync).
    pub before: Totals,
    /// The entries on disk after the run, removals that failed included
    /// (for a dry run: what the plan would leave).
    pub after: Totals,
    /// The fixed bytes beside the entries after the run (see
    /// [`fixed_bytes`]), measured once the run's index changes are in.
    pub fixed_bytes: u64,
    /// Every limit met after the run (for a dry run: would be).
    pub limits_met: bool,
    /// The limits not met after the run, with the bytes still over and
    /// why (for a dry run: the plan's).
    pub unmet: Vec<Unmet>,
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
    // Move the sync's writes into the index file now, so that the fixed
    // bytes measured for the plan are what the index occupies after the
    // run (removing rows does not grow it), not a file still to grow by
    // its WAL. Best effort: readers may hold the WAL a moment.
    let _ = index.checkpoint();
    timings.sync_seconds = clock.elapsed().as_secs_f64();
    let dir = if dry_run {
        None
    } else {
        let dir = CacheDir::open(cache_dir)?;
        sweep_prog_temps(&dir, &index.others()?, now);
        if let Some(step) = after_sync {
            step(&dir, index)?;
            // Its writes too: ci end's marking rewrites a row per entry
            // the run used, a WAL as large as those rows' pages (137 MB
            // on 1M entries) that the plan would count as index bytes and
            // remove as many entries' worth beyond the budget.
            let _ = index.checkpoint();
        }
        Some(dir)
    };
    let env = environment(cache_dir, index, limits)?;
    let clock = Instant::now();
    // No measurable progress while the entries load: a spinner.
    reporter.start("plan", 0);
    let plan = make_plan(index, limits, &env, now, order);
    reporter.finish();
    let plan = plan?;
    timings.plan_seconds = clock.elapsed().as_secs_f64();
    let before = plan.before;
    let Some(dir) = dir else {
        return Ok(TrimOutcome::Done(Box::new(TrimReport {
            dry_run: true,
            scan: synced,
            before,
            after: plan.after,
            fixed_bytes: env.fixed_bytes,
            limits_met: plan.meets_all_limits(),
            unmet: plan.unmet.clone(),
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
    // The removals' deletions into the index file, and the WAL emptied:
    // SQLite's own checkpoints leave the file as long as the largest
    // transaction made it (a row per removed entry) until the next write,
    // which would keep the cache over its budget on disk meanwhile.
    let _ = index.checkpoint();
    // What is on disk now: the index's totals once the removals are
    // recorded (a removal that failed left its row), and the fixed bytes
    // and free space measured again.
    let after = index.fast_totals()?;
    let env_after = Environment {
        fixed_bytes: fixed_bytes(cache_dir, index)?,
        free_bytes: limits
            .min_free
            .and_then(|_| fs4::available_space(cache_dir).ok()),
    };
    let unmet = unmet_after(&plan, &executed, &after, &env_after, limits);
    Ok(TrimOutcome::Done(Box::new(TrimReport {
        dry_run: false,
        scan: synced,
        before,
        after,
        fixed_bytes: env_after.fixed_bytes,
        limits_met: unmet.is_empty(),
        unmet,
        plan,
        executed: Some(executed),
        timings,
    })))
}

/// The limits `after` (what is on disk after a run) does not meet, each
/// with why: the plan's own reason (the grace period, the fixed bytes),
/// and what the run could not do (removals that failed, entries used or
/// changed while it ran).
fn unmet_after(
    plan: &Plan,
    executed: &Executed,
    after: &Totals,
    env: &Environment,
    limits: &Limits,
) -> Vec<Unmet> {
    shortfalls(after, env, limits)
        .into_iter()
        .map(|(limit, over_by)| {
            let mut why: Vec<String> = plan
                .unmet
                .iter()
                .filter(|u| u.limit == limit)
                .map(|u| u.reason.clone())
                .collect();
            if executed.failed > 0 {
                let first = executed.errors.first().map_or("", String::as_str);
                why.push(format!(
                    "{} removals failed (first: {first})",
                    count(executed.failed)
                ));
            }
            if executed.skipped_used_since > 0 {
                why.push(format!(
                    "{} entries were used by go while the trim ran",
                    count(executed.skipped_used_since)
                ));
            }
            let odd = executed.skipped_changed + executed.skipped_odd;
            if odd > 0 {
                why.push(format!(
                    "{} entries changed or are not in Go's layout and were left alone",
                    count(odd)
                ));
            }
            if why.is_empty() {
                why.push(match limit {
                    Rule::FreeSpace => "something else is filling the disk".into(),
                    _ => "the cache grew while the trim ran".into(),
                });
            }
            Unmet {
                limit,
                over_by,
                reason: why.join("; "),
            }
        })
        .collect()
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
    // The write-ahead log of what was recorded since the last checkpoint
    // (a whole prog session's, which defers them) counts in the fixed
    // bytes, and the first round would plan with it and remove as many
    // entries' worth beyond the headroom before the next round's
    // checkpoint shrank it again: move it into the file first, as `trim`
    // does after its sync. Best effort: readers may hold the WAL a moment.
    let _ = index.checkpoint();
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
    if limits.policy.greedy_dual() {
        // What the cost-aware order needs beside the entries: the clock's
        // history and the rebuild seconds the trace measured.
        let clock = index.gdsf_clock()?;
        let measured = if limits.policy == crate::limits::Eviction::GdCost {
            index.trace().measured_costs()?
        } else {
            Default::default()
        };
        let costs = crate::policy::CostInputs {
            clock: Some(&clock),
            measured: Some(&measured),
        };
        return Ok(match order {
            Order::LastUse => {
                crate::policy::plan_with(&index.entries()?, None, limits, env, costs, now)
            }
            Order::Runs(runs) => {
                let (entries, last_run) = index.runs().entries_and_runs()?;
                crate::policy::plan_with(&entries, Some((&last_run, runs)), limits, env, costs, now)
            }
        });
    }
    Ok(match order {
        Order::LastUse => crate::policy::plan(&index.entries()?, limits, env, now),
        Order::Runs(runs) => {
            let (entries, last_run) = index.runs().entries_and_runs()?;
            plan_by_runs(&entries, &last_run, runs, limits, env, now)
        }
    })
}

/// The higher of two clocks, either possibly absent.
fn max_clock(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// Executes `plan` under the lock the caller holds, in rounds: entries Go
/// used since the sync are skipped by the executor, which reports their new
/// mtimes; record them and plan again, so that older entries go instead.
/// The fixed bytes are measured again after each round (the index's own
/// files change as rows go: a page, a `-shm` block), and while they put
/// the cache over a limit the next round plans again with them, so that a
/// trim meets its budget by `du` after it exits. Returns the plan of all
/// rounds (every round's victims, once each, and their bytes by rule; what
/// stays protected and unmet as the last round found it) and what all
/// rounds did.
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
    // gdsf's clock: the highest priority any round evicted.
    let mut clock = plan.clock;
    // Every round's victims, once each (a removal that failed may be
    // chosen again): a last round that finds nothing more to remove must
    // not hide what the earlier ones removed, and why.
    let before = plan.before;
    let mut victims: Vec<Victim> = Vec::new();
    let mut seen: HashSet<EntryName, IdHash> = HashSet::default();
    for round in 0..MAX_ROUNDS {
        clock = max_clock(clock, plan.clock);
        victims.extend(plan.victims.iter().filter(|v| seen.insert(v.name)).cloned());
        let done = execute(dir, &plan.victims, Some(index), reporter)?;
        let refreshed = done.used_since.clone();
        let removed = done.removed;
        executed.absorb(done);
        if removed > 0 {
            // The file as the run leaves it, before measuring it. Best
            // effort, as on close: a reader may hold the WAL a moment.
            let _ = index.checkpoint();
        }
        if round + 1 == MAX_ROUNDS {
            break;
        }
        if !refreshed.is_empty() {
            index.record_mtimes(&refreshed)?;
        }
        let env = environment(dir.path(), index, limits).unwrap_or(*env);
        if refreshed.is_empty() && !over_limits(&index.fast_totals()?, &env, limits) {
            break;
        }
        plan = make_plan(index, limits, &env, now, order)?;
        if plan.is_empty() {
            break;
        }
    }
    clock = max_clock(clock, plan.clock);
    if let Some(l) = clock
        && executed.removed > 0
    {
        let mut history = index.gdsf_clock()?;
        history.advance(now, l);
        index.store_gdsf_clock(&history)?;
    }
    plan.by_rule = Rule::ALL
        .iter()
        .filter_map(|&rule| {
            let mut bytes = Bytes::default();
            for v in victims.iter().filter(|v| v.rule == rule) {
                bytes.add(v.apparent, v.allocated);
            }
            (bytes.entries > 0).then_some((rule, bytes))
        })
        .collect();
    (plan.before, plan.victims) = (before, victims);
    Ok((plan, executed))
}

#[cfg(test)]
mod tests;
