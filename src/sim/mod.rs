//! What a budget keeps: traces of what go asked the cache for, a replay of
//! them under eviction policies and budgets, and the upper bound no policy
//! can beat.
//!
//! The traces it reads are in the schema of [`crate::trace::schema`]
//! (JSON Lines, versioned; documented there and in the README), the leaf
//! the index's recorded events are exported through.
//!
//! - [`workload`]: a trace turned into requests, sizes and rebuild costs
//!   (measured where the trace has them, estimated where not).
//! - [`policies`]: the policies behind one trait: `trim`'s LRU before and
//!   after the grouping fix (actions ordered one by one), Go's age rule, GDSF, a
//!   GreedyDual weighted by rebuild cost, and Belady's MIN (offline).
//! - `batch`: the real trim's order in its batch form (`lru`,
//!   `gdsf`, `gds`, `gd-cost`: the names `gocache trim --policy` takes), with `policy`'s own
//!   functions.
//! - [`bound`]: the PFOO-L upper bound (Berger et al., SIGMETRICS 2018).
//! - [`schedule`]: the lower bracket, a feasible offline schedule, so
//!   that the optimum lies between it and the bound.
//! - [`replay`]: one policy through one workload under one budget.
//! - [`synth_trace`]: synthetic Go-like traces, for tests and benchmarks
//!   (synthetic caches on disk are [`crate::synth_cache`]'s).
//! - [`plot`]: rebuild seconds saved against budget, as SVG.
//!
//! [`simulate`] runs all of that for `gocache simulate`: the unbounded
//! cache first (it fixes the footprint that percentage budgets are of, and
//! what "lost" is measured against), then every policy at every budget on
//! worker threads, reporting progress through a [`Reporter`].
//!
//! # What the simulator models, and what it leaves out
//!
//! The cache holds action entries (one block each) naming outputs (their
//! allocated bytes); an output no cached action names is gone (Go cannot
//! reach it, and `trim` removes it as garbage). The batch policies (`lru`,
//! `gdsf`, `gds`, `gd-cost`: the real trim's orders) also keep what the
//! real trim protects: nothing used within the default protection window
//! (grace 1 h plus Go's 1 h mtime lag), which covers what a live go
//! command was handed, so the cache may stay over budget while a
//! command's working set exceeds it; they evict in batches down to the
//! headroom, where the real prog checks the limits: as a go command that
//! stored anything ends and every 16 MiB of puts (`PROG_EVICT_EVERY`),
//! when the trace marks its commands' ends (prog's traces do; an unmarked
//! trace is checked after every request). The budget is what the entries
//! may take: `--fixed-bytes` (the index, the cache directory's own files;
//! [`FixedBytes`], growing through the trace where given as FIRST..LAST)
//! comes off it, and a batch leaves the entries the headroom of the whole
//! budget less those bytes at the time, as the real trim counts it. A lookup go makes only after a hit (`Request::AFTER_HIT`)
//! is not made where the replay missed that action. The other policies
//! are textbook ones, checked after every request, with no protection:
//! they compare what a policy chooses, not when the executor may act.
//! Not modelled: age limits (Go's own trim is the `go-age` policy, on its
//! own), the hook's, `ci end`'s and cron's trims (a trace from prog has
//! prog's trigger points only), and Go's hour of mtime lag on recency (a
//! trace has exact uses where prog recorded them). DESIGN.md's validation
//! table says how close this comes to the real system.
//!
//! Rebuild costs are what the recorder measured: for `gocache prog`, the
//! CPU of the tool go ran for the action between its miss and its put,
//! among the misses a put followed ([`crate::trace::RebuildLog`]), which
//! sums to 0.94-0.96x the build's CPU seconds at any `-p` and beside other
//! load (the rest is go's own work).
//!
//! Pure: no clock (times come from the trace), no I/O but the reader and
//! writer over the caller's streams.

mod batch;
pub mod bound;
pub mod cache;
pub mod evict;
mod heap;
pub mod plot;
pub mod policies;
pub mod replay;
pub mod schedule;
pub mod synth_trace;
pub mod workload;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use policies::PolicyName;
pub use replay::Outcome;
pub use workload::Workload;

use crate::limits::SizeSpec;
use crate::report::Reporter;

/// One policy at one budget.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    /// The policy (or `lower`, `bound`).
    pub policy: PolicyName,
    /// For `lower`: the schedule that saved more, `greedy` or `belady`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<&'static str>,
    /// True for Belady and the bound, which know the future.
    pub offline: bool,
    /// False for `go-age`, which keeps what it keeps whatever the budget.
    pub has_budget: bool,
    /// Hits, bytes, seconds, peak.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Hits over the lookups made (less [`Outcome::not_asked`]).
    pub object_hit_ratio: f64,
    /// Bytes hit over bytes looked up.
    pub byte_hit_ratio: f64,
    /// Rebuild seconds the unbounded cache saves and this one does not
    /// (negative for `go-age` never; for the bound, 0 or more).
    pub lost_s: f64,
}

/// The rows of one budget.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BudgetRows {
    /// Allocated bytes, as given.
    pub budget: u64,
    /// What of it the entries may take: `budget` less the cache
    /// directory's other bytes (see `gocache simulate --fixed-bytes`).
    pub for_entries: u64,
    /// As a share of the unbounded footprint.
    pub share: f64,
    /// As given (`20%`, `2 GiB`).
    pub given: String,
    /// One row per policy, in [`PolicyName::ALL`] order.
    pub rows: Vec<Row>,
}

/// What `gocache simulate` reports.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    /// The trace's figures.
    pub trace: workload::Summary,
    /// Allocated bytes of the outputs all lookups asked for.
    pub requested_bytes: u64,
    /// Rebuild seconds of all lookups (what a cache that never hit costs).
    pub requested_s: f64,
    /// The unbounded cache (`peak_bytes`: the footprint).
    pub unbounded: Outcome,
    /// Per budget, in the order given.
    pub budgets: Vec<BudgetRows>,
}

impl Report {
    /// The row of `policy` at budget number `b`.
    pub fn row(&self, b: usize, policy: PolicyName) -> Option<&Row> {
        self.budgets
            .get(b)?
            .rows
            .iter()
            .find(|r| r.policy == policy)
    }
}

/// One unit of work for the threads.
#[derive(Clone, Copy)]
enum Job {
    Replay(PolicyName, Option<usize>),
    Lower(usize),
    Bound,
}

/// A job's number, its outcomes, and for the lower bracket the schedule.
type JobResult = (usize, Vec<Outcome>, Option<&'static str>);

/// Replays `w` under every budget and policy. `threads` 0 means one per
/// core. Budgets in percent are of the unbounded footprint.
pub fn simulate(
    w: &Workload,
    budgets: &[SizeSpec],
    policies: &[PolicyName],
    threads: usize,
    reporter: &dyn Reporter,
) -> Report {
    simulate_in(
        w,
        budgets,
        FixedBytes::default(),
        policies,
        threads,
        reporter,
    )
}

/// The cache directory's bytes besides its entries (Go's subdirectories
/// and README, gocache's index) through a replay: `first` at its first
/// request, growing evenly with the requests to `last` at its last, as
/// gocache's index grows with the rows it records (on the validation's
/// workloads, while tracing, by 57-74 bytes a trace event, close to a
/// straight line; see DESIGN.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FixedBytes {
    /// At the first request.
    pub first: u64,
    /// At the last request: `first` or more.
    pub last: u64,
}

impl FixedBytes {
    /// The same bytes throughout.
    pub const fn constant(bytes: u64) -> FixedBytes {
        FixedBytes {
            first: bytes,
            last: bytes,
        }
    }

    /// How far they have grown beyond `first` at request `index` of
    /// `requests`.
    pub fn growth_at(&self, index: usize, requests: usize) -> u64 {
        let grown = self.last.saturating_sub(self.first);
        if grown == 0 || requests < 2 {
            return 0;
        }
        let steps = (requests - 1) as u128;
        (u128::from(grown) * index.min(requests - 1) as u128 / steps) as u64
    }

    /// How far they grow in all.
    pub fn growth(&self) -> u64 {
        self.last.saturating_sub(self.first)
    }
}

/// [`simulate`] for budgets that count the whole cache directory, as the
/// real trim does: a budget given as a size holds the entries to it less
/// `fixed` bytes (the directory's own: Go's subdirectories and README,
/// the index; they may grow through the replay); a percentage is of the
/// entries' footprint and stays whole.
pub fn simulate_in(
    w: &Workload,
    budgets: &[SizeSpec],
    fixed: FixedBytes,
    policies: &[PolicyName],
    threads: usize,
    reporter: &dyn Reporter,
) -> Report {
    let mut policies: Vec<PolicyName> = policies.to_vec();
    policies.sort();
    policies.dedup();
    let jobs = jobs(&policies, budgets.len());
    // Progress counts requests replayed: the unbounded cache's, then each
    // job's (the lower bracket replays two schedules, the bound none).
    let replays = jobs
        .iter()
        .map(|j| match j {
            Job::Replay(..) => 1,
            Job::Lower(_) => 2,
            Job::Bound => 0,
        })
        .sum::<u64>();
    reporter.start("replay", w.requests.len() as u64 * (1 + replays));
    let progress = |k: u64| reporter.advance(k);
    let unbounded = {
        let mut p = PolicyName::LruActions
            .build(w, u64::MAX)
            .expect("a replayable policy");
        replay::replay(w, p.as_mut(), u64::MAX, &progress)
    };
    let footprint = unbounded.peak_bytes;
    let given: Vec<u64> = budgets.iter().map(|b| b.resolve(footprint)).collect();
    let bytes: Vec<u64> = budgets
        .iter()
        .zip(&given)
        .map(|(spec, &b)| match spec {
            SizeSpec::Bytes(_) => b.saturating_sub(fixed.first),
            SizeSpec::Percent(_) => b,
        })
        .collect();
    // The batch policies scale the whole budget to the headroom, as the
    // real trim does: what the fixed bytes take of it, per budget.
    let fixed_of: Vec<FixedBytes> = budgets
        .iter()
        .map(|spec| match spec {
            SizeSpec::Bytes(_) => fixed,
            SizeSpec::Percent(_) => FixedBytes::default(),
        })
        .collect();
    let results = run_jobs(w, &jobs, (&bytes, &fixed_of), threads, &progress);
    reporter.finish();
    let (mut requested_bytes, mut requested_s) = (0u64, 0.0);
    for r in w.requests.iter().filter(|r| r.is_access()) {
        requested_bytes += w.size(r.output);
        requested_s += w.cost[r.action as usize];
    }
    let rows = RowMaker {
        accesses: w.summary.accesses.max(1) as f64,
        requested_bytes,
        unbounded_saved_s: unbounded.saved_s,
    };
    Report {
        trace: w.summary.clone(),
        requested_bytes,
        requested_s,
        unbounded,
        budgets: budget_rows(budgets, &given, &bytes, footprint, &jobs, results, &rows),
    }
}

/// The jobs for `policies` at `budgets` budgets: one replay per policy
/// and budget (one in all for `go-age`, which has none), one lower bracket
/// per budget, one bound for all.
fn jobs(policies: &[PolicyName], budgets: usize) -> Vec<Job> {
    let mut jobs = Vec::new();
    for &p in policies {
        match p {
            PolicyName::Bound => jobs.push(Job::Bound),
            PolicyName::Lower => jobs.extend((0..budgets).map(Job::Lower)),
            PolicyName::GoAge => jobs.push(Job::Replay(p, None)),
            _ => jobs.extend((0..budgets).map(|b| Job::Replay(p, Some(b)))),
        }
    }
    jobs
}

/// Runs `jobs` on `threads` worker threads (0: one per core), each taking
/// the next job not yet taken; `bytes` are the budgets. Results come in
/// the order they finish, numbered.
fn run_jobs(
    w: &Workload,
    jobs: &[Job],
    bytes: (&[u64], &[FixedBytes]),
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<JobResult> {
    let results: Mutex<Vec<JobResult>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    }
    .min(jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&job) = jobs.get(k) else { break };
                    let (out, from) = run_job(w, job, bytes, progress);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((k, out, from));
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// One job's outcomes (one per budget for the bound, else one), and for
/// the lower bracket the schedule that saved more. Where the fixed bytes
/// grow, the bound takes the entries' budget at the start (the most they
/// may hold: still a bound) and the lower bracket the one at the end (the
/// least: still feasible throughout).
fn run_job(
    w: &Workload,
    job: Job,
    (bytes, fixed): (&[u64], &[FixedBytes]),
    progress: &dyn Fn(u64),
) -> (Vec<Outcome>, Option<&'static str>) {
    match job {
        Job::Bound => (bound::pfoo_l(w, bytes), None),
        Job::Replay(p, b) => {
            let budget = b.map_or(u64::MAX, |b| bytes[b]);
            let fixed = b.map_or(FixedBytes::default(), |b| fixed[b]);
            let mut pol = p
                .build_for(w, budget, fixed, None)
                .expect("a replayable policy");
            let out = replay::replay_growing(w, pol.as_mut(), budget, fixed, progress);
            (vec![out], None)
        }
        Job::Lower(b) => {
            let least = bytes[b].saturating_sub(fixed[b].growth());
            let (greedy, forced) = schedule::lower(w, least, progress);
            debug_assert_eq!(forced, 0, "an infeasible schedule");
            let mut pol = PolicyName::Belady.build(w, least).expect("belady");
            let belady = replay::replay(w, pol.as_mut(), least, progress);
            if belady.saved_s > greedy.saved_s {
                (vec![belady], Some("belady"))
            } else {
                (vec![greedy], Some("greedy"))
            }
        }
    }
}

/// Makes a [`Row`] of an outcome, with the ratios and the loss against
/// the unbounded cache.
struct RowMaker {
    /// Lookups (at least 1).
    accesses: f64,
    requested_bytes: u64,
    unbounded_saved_s: f64,
}

impl RowMaker {
    fn row(&self, p: PolicyName, o: Outcome) -> Row {
        Row {
            policy: p,
            schedule: None,
            offline: p.offline(),
            has_budget: p.has_budget(),
            // Of the lookups this replay made (go skips some after a miss).
            object_hit_ratio: o.hits as f64 / (self.accesses - o.not_asked as f64).max(1.0),
            byte_hit_ratio: o.byte_hits as f64 / self.requested_bytes.max(1) as f64,
            // Lookups go did not make are not lost: the miss it rebuilt
            // instead is.
            lost_s: (self.unbounded_saved_s - o.saved_s - o.not_asked_s).max(0.0),
            outcome: o,
        }
    }
}

/// The rows of each budget (`bytes`, of `footprint`), from the jobs'
/// results, in [`PolicyName::ALL`] order.
fn budget_rows(
    budgets: &[SizeSpec],
    given: &[u64],
    bytes: &[u64],
    footprint: u64,
    jobs: &[Job],
    mut results: Vec<JobResult>,
    rows: &RowMaker,
) -> Vec<BudgetRows> {
    let mut out: Vec<BudgetRows> = budgets
        .iter()
        .zip(given.iter().zip(bytes))
        .map(|(spec, (&budget, &b))| BudgetRows {
            budget,
            for_entries: b,
            share: b as f64 / footprint.max(1) as f64,
            given: match spec {
                SizeSpec::Percent(p) => format!("{p}%"),
                SizeSpec::Bytes(_) => spec.to_string(),
            },
            rows: Vec::new(),
        })
        .collect();
    results.sort_by_key(|(k, _, _)| *k);
    for (k, outs, from) in results {
        match jobs[k] {
            Job::Bound => {
                for (b, mut o) in outs.into_iter().enumerate() {
                    // Never more than the unbounded cache holds.
                    o.peak_bytes = o.peak_bytes.min(footprint);
                    out[b].rows.push(rows.row(PolicyName::Bound, o));
                }
            }
            Job::Replay(p, Some(b)) => out[b].rows.push(rows.row(p, outs[0])),
            Job::Lower(b) => out[b].rows.push(Row {
                schedule: from,
                ..rows.row(PolicyName::Lower, outs[0])
            }),
            Job::Replay(p, None) => {
                for b in &mut out {
                    b.rows.push(rows.row(p, outs[0]));
                }
            }
        }
    }
    for b in &mut out {
        b.rows
            .sort_by_key(|r| PolicyName::ALL.iter().position(|&p| p == r.policy));
    }
    out
}

#[cfg(test)]
mod tests;
