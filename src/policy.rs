//! The eviction policy: a pure function from entries, limits and `now` to a
//! plan. No I/O, no clock: the trim executor acts on the plan, and tests
//! call [`plan`] with made-up entries.
//!
//! # Groups
//!
//! An output (or an executable directory) goes together with every action
//! entry that names it, because an action whose output is gone is useless
//! and an output no action names is unreachable. A group's last use is the
//! newest of its members', and a group is protected when any member is.
//! Within a group, action entries are removed before the output, so a crash
//! in between leaves an unreachable output (garbage, cleaned next time),
//! never a half-evicted action.
//!
//! An action entry last used an hour or more before another action naming
//! the same output can also leave on its own, by its own last use: Go
//! treats a missing action entry as a miss, and the output stays for the
//! actions still naming it. Without this, one recent use of a shared output
//! (the empty output thousands of actions name, say) would keep every old
//! action naming it. The actions used last stay in the group, so an output
//! never outlives every action naming it. Uses less than an hour apart count
//! as one: Go's mtimes only move when they are an hour old. In a plan by
//! runs, an action an earlier run used than the newest action naming its
//! output leaves on its own too, whatever the hour: runs are told apart
//! exactly.
//!
//! # Order
//!
//! 1. **garbage**: action entries whose output is gone, action entries that
//!    cannot be parsed, and outputs no action names. Go cannot use any of
//!    them. They are only taken once past the protection window, because Go
//!    writes an output before the action that names it, and writes action
//!    files in place: a build in progress looks like garbage for a moment.
//! 2. **keep_runs** (only in a plan by runs, [`plan_by_runs`]): entries no
//!    CI run among the last few used (see "Runs" below).
//! 3. **age**: entries unused for longer than their tier's age limit (5 days
//!    for build entries, as Go does; 2 days for executables). Age limits
//!    apply before size limits, as in cargo's cache gc: an entry that old is
//!    unlikely to be used again whatever the budget, and taking it first
//!    spares recently used entries that a size limit would otherwise pick.
//! 4. **exe_quota**: while the executables' bytes exceed the exe quota, the
//!    least recently used executable goes.
//! 5. **budget**: while everything (plus the fixed bytes the cache directory
//!    holds beside its entries: directories, Go's files, the index) exceeds
//!    the budget, the least recently used group of any tier goes.
//! 6. **free_space**: while the filesystem's free bytes plus what the plan
//!    frees stay under the floor, the least recently used group goes.
//!
//! Ties are broken by entry name, so equal inputs give equal plans whatever
//! their order.
//!
//! # Eviction policies
//!
//! "Least recently used" above is the default policy, `lru`
//! ([`Eviction::Lru`]). With `gdsf` ([`Eviction::Gdsf`]) or `gd-cost`
//! ([`Eviction::GdCost`]) the size rules (4 to 6) take groups in
//! increasing order of a GreedyDual priority, in batch form:
//!
//! ```text
//! priority = L(last use) + (hits + 1) × cost / MiB
//! ```
//!
//! - `hits`: the uses recorded of the group's members (the most of any
//!   member; GOCACHEPROG counts every hit, the wrapper only the programs
//!   it starts, and the hook after plain go, `ci end` and a cron trim
//!   none: there every build group has 0, and `gdsf` is GreedyDual-Size,
//!   which `gocache simulate` replays as `trim-gds`);
//! - `cost`: 1 under `gdsf` (GreedyDual-Size-Frequency, Cherkasova 1998:
//!   small, often used entries first); under `gd-cost` the rebuild seconds,
//!   measured where the caller has them (the trace's puts, the most of the
//!   group's actions), else [`estimate_cost`] from kind and size;
//! - MiB: the group's allocated bytes;
//! - `L`: the GreedyDual clock. Each such trim that evicts by size
//!   raises it to the highest priority it evicted, and the caller keeps its
//!   history ([`Clock`], in the index's meta table). A group's `L` is the
//!   clock as it stood when the group was last used ([`Clock::at`]), so
//!   what went unused while others were evicted ages, exactly as a
//!   GreedyDual cache that updates priorities on each use.
//!
//! Ties (and in a plan by runs, the run first) fall back to the LRU order.
//! Everything else (garbage, runs, ages, protection, the grouping) is the
//! same under all three. `gocache simulate` replays exactly this batch form
//! as `trim-lru`, `trim-gdsf` and `trim-gd-cost`.
//!
//! # Runs
//!
//! In CI, time since last use is a poor guide: a weekly job would find
//! everything a week old, a busy one nothing older than an hour. What
//! counts is which runs used an entry. [`plan_by_runs`] takes, beside each
//! entry, the last run that used it (an ordinal; 0 for none), and
//! [`Runs`]: the oldest run still kept, and the run now ending. A group
//! whose newest run is older than the oldest kept goes by the
//! **keep_runs** rule, and "least recently used" means by run first, then
//! by last use within a run.
//!
//! Protection, in a plan by runs with a run now ending, covers only that
//! run's groups: `gocache ci begin` left every mtime over an hour old, so
//! an entry this run did not use has an exact mtime (a use now moves it,
//! and the executor's re-check sees that), and neither Go's hour of lag nor
//! a go command still holding its path applies. Without that, everything
//! the runs of the last two hours used (many, on a busy repository) would
//! be kept whatever the rules said.
//!
//! # Protection
//!
//! Nothing whose last use is within [`Limits::protection_window`] of `now`
//! (the grace period plus Go's one-hour mtime lag) is ever chosen: Go keeps
//! using a path it looked up until the go command exits, and its mtimes lag
//! real use by up to an hour. When protection keeps a limit from being met,
//! the plan says so in [`Plan::unmet`], with the bytes still over.
//!
//! # Accounting
//!
//! Sizes are allocated bytes (see [`crate::model`]). Per-tier figures count
//! entries by kind, as `stats` does: an executable's action entries are
//! build-tier bytes that happen to leave with it. The exe quota counts
//! executable directories only.

use std::collections::HashMap;

use crate::layout::{EntryName, Id, IdHash};
use crate::limits::{Eviction, GO_MTIME_LAG, Limits};
use crate::model::{Bytes, Entry, Kind, Tier, Totals, UnixTime};

/// The share of the budget and the exe quota an automatic trim (the hook,
/// `gocache prog`) evicts down to once one is exceeded, so that it does not
/// run on every insert (ccache's hysteresis).
pub const HEADROOM: f64 = 0.9;

/// True when `totals` (plus the fixed bytes beside the entries) exceed the
/// budget or the exe quota, or the free space measured is under the floor:
/// whether an automatic trim has anything to do, decided from the index's
/// running totals without reading every entry. Age limits and garbage are
/// left to the next full trim.
pub fn over_limits(totals: &Totals, env: &Environment, limits: &Limits) -> bool {
    !shortfalls(totals, env, limits).is_empty()
}

/// Each size limit that `totals` (plus the fixed bytes beside the entries)
/// and the free space measured do not meet, with the bytes still over (for
/// free space: still missing), in the order the rules apply: exe quota,
/// budget, free space. What a trim checks once it has run, against what is
/// on disk then.
pub fn shortfalls(totals: &Totals, env: &Environment, limits: &Limits) -> Vec<(Rule, u64)> {
    let mut out = Vec::new();
    if let Some(q) = limits.exe_quota
        && totals.exe.allocated_bytes > q
    {
        out.push((Rule::ExeQuota, totals.exe.allocated_bytes - q));
    }
    let used = totals.total.allocated_bytes.saturating_add(env.fixed_bytes);
    if let Some(b) = limits.budget
        && used > b
    {
        out.push((Rule::Budget, used - b));
    }
    if let (Some(floor), Some(free)) = (limits.min_free, env.free_bytes)
        && free < floor
    {
        out.push((Rule::FreeSpace, floor - free));
    }
    out
}

/// Seconds to rebuild an entry of `bytes` allocated bytes when nothing was
/// measured: `0.02 s + 0.25 s/MiB` for a compiled package (an output),
/// `0.3 s + 0.1 s/MiB` for a linked program (`exe`). The simulator's
/// defaults (`sim::workload::CostModel::DEFAULT`) are these.
pub fn estimate_cost(exe: bool, bytes: u64) -> f64 {
    let mib = bytes as f64 / MIB;
    if exe {
        0.3 + 0.1 * mib
    } else {
        0.02 + 0.25 * mib
    }
}

const MIB: f64 = (1u64 << 20) as f64;

/// The GreedyDual priority of a group: `l + (hits + 1) × cost / MiB`
/// (`cost` 1 under `gdsf`).
pub fn gdsf_priority(l: f64, hits: u64, cost_s: f64, bytes: u64) -> f64 {
    l + (hits.saturating_add(1)) as f64 * cost_s / (bytes.max(1) as f64 / MIB)
}

/// The GreedyDual clock's history (`gdsf`, `gd-cost`): after each trim that
/// evicted by size, when (Unix seconds; the simulator uses milliseconds)
/// and the clock `L` it reached, oldest first, at most
/// [`Clock::KEPT`] of them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Clock(pub Vec<(i64, f64)>);

impl Clock {
    /// How many trims the history keeps: entries unused since the oldest
    /// count from 0, the lowest priorities of all.
    pub const KEPT: usize = 64;

    /// The clock as it stood at `t`: that of the newest trim at or before
    /// `t`, 0 before any.
    pub fn at(&self, t: i64) -> f64 {
        let k = self.0.partition_point(|&(when, _)| when <= t);
        if k == 0 { 0.0 } else { self.0[k - 1].1 }
    }

    /// The clock now.
    pub fn now(&self) -> f64 {
        self.0.last().map_or(0.0, |&(_, l)| l)
    }

    /// Records a trim at `t` that raised the clock to `l` (never lowers
    /// it; times never go back).
    pub fn advance(&mut self, t: i64, l: f64) {
        let l = l.max(self.now());
        let t = self.0.last().map_or(t, |&(last, _)| t.max(last));
        match self.0.last_mut() {
            Some(last) if last.0 == t => last.1 = l,
            _ => self.0.push((t, l)),
        }
        if self.0.len() > Clock::KEPT {
            let drop = self.0.len() - Clock::KEPT;
            self.0.drain(..drop);
        }
    }
}

/// What a GreedyDual plan knows beside the entries: the clock's history, and
/// rebuild seconds measured per action entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct CostInputs<'a> {
    /// The GreedyDual clock's history.
    pub clock: Option<&'a Clock>,
    /// Measured rebuild seconds by action, keyed by the first 64 bits of
    /// its ID ([`Id::prefix64`], as traces name entries).
    pub measured: Option<&'a HashMap<u64, f64>>,
}

/// The rule that chose a victim (or a limit that is not met).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Unreachable or broken entries.
    Garbage,
    /// Used by none of the CI runs kept ([`plan_by_runs`]).
    KeepRuns,
    /// Unused for longer than its tier's age limit.
    Age,
    /// The exe tier over its quota.
    ExeQuota,
    /// The cache over its budget.
    Budget,
    /// The filesystem under its free-space floor.
    FreeSpace,
}

impl Rule {
    /// All rules, in the order they apply.
    pub const ALL: [Rule; 6] = [
        Rule::Garbage,
        Rule::KeepRuns,
        Rule::Age,
        Rule::ExeQuota,
        Rule::Budget,
        Rule::FreeSpace,
    ];

    /// The rule's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Garbage => "garbage",
            Rule::KeepRuns => "keep_runs",
            Rule::Age => "age",
            Rule::ExeQuota => "exe_quota",
            Rule::Budget => "budget",
            Rule::FreeSpace => "free_space",
        }
    }
}

/// Facts about the world beside the entries, measured by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Environment {
    /// Allocated bytes in the cache directory that are not entries (the 256
    /// subdirectories themselves, Go's files, the index, odd files): they
    /// count towards the budget but cannot be evicted.
    pub fixed_bytes: u64,
    /// Free bytes on the filesystem now, for the free-space floor.
    pub free_bytes: Option<u64>,
}

/// One entry to remove, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Victim {
    /// The entry (`ab/<hex>-a`).
    pub name: EntryName,
    /// Its kind.
    pub kind: Kind,
    /// Its tier.
    pub tier: Tier,
    /// The rule that chose it (its group's).
    pub rule: Rule,
    /// Allocated bytes.
    pub allocated: u64,
    /// Apparent bytes.
    pub apparent: u64,
    /// The mtime the plan saw: the executor skips the entry if it is newer.
    pub mtime: UnixTime,
    /// The last use the plan saw (of the entry itself).
    pub last_use: UnixTime,
}

/// A limit the plan cannot meet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unmet {
    /// `exe_quota`, `budget` or `free_space`.
    pub limit: Rule,
    /// Bytes still over (for free space: still missing).
    pub over_by: u64,
    /// Why, for people.
    pub reason: String,
}

/// What to evict, in order, and what the cache looks like after.
///
/// In JSON (`trim --json`'s `plan`) also `by_rule_bytes`, [`Plan::by_rule`]
/// as an object keyed by rule with every rule present; `by_rule`, the same
/// as a list of `[rule, bytes]` pairs, is kept for one release (0.2) and
/// then removed.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// When the plan was made.
    pub now: UnixTime,
    /// The limits it enforces.
    pub limits: Limits,
    /// The entries to remove, in order.
    pub victims: Vec<Victim>,
    /// Entries per tier before.
    pub before: Totals,
    /// Entries per tier after (if every victim goes).
    pub after: Totals,
    /// Bytes per rule.
    pub by_rule: Vec<(Rule, Bytes)>,
    /// Entries kept only because they are inside the protection window
    /// although a limit wanted them.
    pub protected: Bytes,
    /// Limits that stay unmet.
    pub unmet: Vec<Unmet>,
    /// Under `gdsf` or `gd-cost`, when the size rules chose something:
    /// the GreedyDual clock `L` this plan raises it to (the highest
    /// priority it evicts), for the caller to record once the plan ran
    /// ([`Clock::advance`]).
    pub clock: Option<f64>,
}

impl serde::Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        /// The plan as JSON: its fields, and `by_rule_bytes` beside the
        /// list it replaces.
        #[derive(serde::Serialize)]
        struct PlanJson<'a> {
            now: UnixTime,
            limits: &'a Limits,
            victims: &'a [Victim],
            before: &'a Totals,
            after: &'a Totals,
            by_rule: &'a [(Rule, Bytes)],
            by_rule_bytes: std::collections::BTreeMap<&'static str, Bytes>,
            protected: &'a Bytes,
            unmet: &'a [Unmet],
            #[serde(skip_serializing_if = "Option::is_none")]
            clock: Option<f64>,
        }
        PlanJson {
            now: self.now,
            limits: &self.limits,
            victims: &self.victims,
            before: &self.before,
            after: &self.after,
            by_rule: &self.by_rule,
            by_rule_bytes: Rule::ALL
                .iter()
                .map(|&r| (r.as_str(), self.bytes_for(r)))
                .collect(),
            protected: &self.protected,
            unmet: &self.unmet,
            clock: self.clock,
        }
        .serialize(s)
    }
}

impl Plan {
    /// True when there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.victims.is_empty()
    }

    /// True when every limit is met once the victims are gone.
    pub fn meets_all_limits(&self) -> bool {
        self.unmet.is_empty()
    }

    /// Bytes the plan frees for `rule`.
    pub fn bytes_for(&self, rule: Rule) -> Bytes {
        self.by_rule
            .iter()
            .find(|(r, _)| *r == rule)
            .map(|(_, b)| *b)
            .unwrap_or_default()
    }
}

/// Why a budget stays unmet once every entry outside the grace period is
/// chosen: what is left, each part with its bytes, the larger first. The
/// entries left (`kept`) were all used within the grace period; the fixed
/// bytes beside them cannot be evicted, and may exceed the budget alone.
fn budget_reason(kept: u64, fixed: u64, budget: u64) -> String {
    let entries = (kept > 0).then(|| {
        (
            kept,
            format!(
                "{} of entries used within the grace period",
                crate::report::human(kept)
            ),
        )
    });
    let beside = (fixed > 0).then(|| {
        let alone = if fixed > budget {
            ", more than the budget on their own"
        } else {
            ""
        };
        (
            fixed,
            format!(
                "{} of fixed bytes beside the entries (directories, Go's files, the index){alone}",
                crate::report::human(fixed)
            ),
        )
    });
    let mut parts: Vec<(u64, String)> = entries.into_iter().chain(beside).collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.0));
    let parts: Vec<String> = parts.into_iter().map(|(_, p)| p).collect();
    format!("what is left is {}", parts.join(" and "))
}

/// Rules 3 to 5: walks groups least recently used first, choosing each
/// unchosen `eligible` one for `rule` until `short` bytes (as `bytes`
/// counts them) are freed. A protected group passed over is marked in
/// `want_but_protected`. Returns the bytes still short (0: met).
#[allow(clippy::too_many_arguments)]
fn choose_lru(
    groups: &mut [Group],
    lru: &[u32],
    want_but_protected: &mut [bool],
    protected: &impl Fn(&Group) -> bool,
    rule: Rule,
    eligible: impl Fn(&Group) -> bool,
    bytes: impl Fn(&Group) -> u64,
    mut short: u64,
) -> u64 {
    for &i in lru {
        if short == 0 {
            break;
        }
        let g = &groups[i as usize];
        if g.chosen.is_some() || !eligible(g) {
            continue;
        }
        if g.parent != NO_GROUP && groups[g.parent as usize].chosen.is_some() {
            continue; // leaving with its group already
        }
        if protected(g) {
            want_but_protected[i as usize] = true;
            continue;
        }
        short = short.saturating_sub(bytes(g));
        take(groups, i as usize, rule);
    }
    short
}

/// No group: a group that is not an action split off from its output's.
const NO_GROUP: u32 = u32::MAX;

/// Chooses group `i` for `rule`; an action split off from its output's
/// group takes its bytes out of that group's.
fn take(groups: &mut [Group], i: usize, rule: Rule) {
    groups[i].chosen = Some(rule);
    let p = groups[i].parent;
    if p != NO_GROUP {
        let bytes = groups[i].allocated;
        let parent = &mut groups[p as usize];
        parent.allocated = parent.allocated.saturating_sub(bytes);
    }
}

/// A group of entries that leave together.
struct Group {
    /// The name ties are broken by: the output's, or the action's for a
    /// group without an output.
    key: EntryName,
    tier: Tier,
    last_use: UnixTime,
    /// The newest run that used a member (0 without runs).
    run: i64,
    allocated: u64,
    /// Allocated bytes of executable directories in the group.
    exe_bytes: u64,
    garbage: bool,
    chosen: Option<Rule>,
    /// The most uses recorded of a member (for `gdsf`, `gd-cost`).
    hits: u64,
    /// The most rebuild seconds measured of a member action, if any.
    measured: Option<f64>,
    /// For an action split off from its output's group: that group
    /// (whose `allocated` still counts it while it is not chosen).
    parent: u32,
}

/// Makes the plan. Pure: same inputs, same plan.
pub fn plan(entries: &[Entry], limits: &Limits, env: &Environment, now: UnixTime) -> Plan {
    plan_inner(entries, None, limits, env, CostInputs::default(), now)
}

/// [`plan`] (with `runs`: [`plan_by_runs`]) with what `gdsf` and
/// `gd-cost` need beside the entries. Pure.
pub fn plan_with(
    entries: &[Entry],
    runs: Option<(&[i64], Runs)>,
    limits: &Limits,
    env: &Environment,
    costs: CostInputs,
    now: UnixTime,
) -> Plan {
    if let Some((r, _)) = runs {
        assert_eq!(entries.len(), r.len(), "one run per entry");
    }
    plan_inner(entries, runs, limits, env, costs, now)
}

/// Which runs a plan by runs keeps, and which one is ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runs {
    /// Groups no run from this one on used go by the keep_runs rule
    /// ([`i64::MIN`]: none).
    pub keep_from: i64,
    /// The run now ending: only its groups are protected (see "Runs" in
    /// the module doc). `None`: protection by last use, as in [`plan`].
    pub current: Option<i64>,
}

/// Makes a plan by CI runs (see "Runs" in the module doc): `last_run[i]`
/// is the last run that used `entries[i]` (0: none did); groups none of
/// whose members a run from `runs.keep_from` on used go by the keep_runs
/// rule, and the limits take the least recently used by run first. Pure.
pub fn plan_by_runs(
    entries: &[Entry],
    last_run: &[i64],
    runs: Runs,
    limits: &Limits,
    env: &Environment,
    now: UnixTime,
) -> Plan {
    assert_eq!(entries.len(), last_run.len(), "one run per entry");
    plan_inner(
        entries,
        Some((last_run, runs)),
        limits,
        env,
        CostInputs::default(),
        now,
    )
}

fn plan_inner(
    entries: &[Entry],
    runs: Option<(&[i64], Runs)>,
    limits: &Limits,
    env: &Environment,
    costs: CostInputs,
    now: UnixTime,
) -> Plan {
    let run_of = |i: usize| runs.map_or(0, |(r, _)| r[i]);
    let measured = |id: &Id| costs.measured.and_then(|m| m.get(&id.prefix64()).copied());
    // Group entries: each output or executable starts a group, actions join
    // the group of the output they name; the rest are groups of one.
    let mut data: HashMap<Id, u32, IdHash> =
        HashMap::with_capacity_and_hasher(entries.len() / 3 + 1, IdHash);
    let mut groups: Vec<Group> = Vec::with_capacity(entries.len() / 2 + 1);
    let mut group_of = vec![0u32; entries.len()];
    let mut before = Totals::default();
    let mut names_seen = vec![false; 0];
    for (i, e) in entries.iter().enumerate() {
        before.add(e);
        if matches!(e.kind, Kind::Output | Kind::Exe) {
            let g = groups.len() as u32;
            data.insert(e.name.id, g);
            group_of[i] = g;
            groups.push(Group {
                key: e.name,
                tier: e.tier(),
                last_use: e.last_use,
                run: run_of(i),
                allocated: e.allocated,
                exe_bytes: if e.kind == Kind::Exe { e.allocated } else { 0 },
                garbage: false,
                chosen: None,
                hits: e.hits,
                measured: None,
                parent: NO_GROUP,
            });
        }
    }
    names_seen.resize(groups.len(), false);
    let mut newest_action = vec![UnixTime::MIN; groups.len()];
    let mut newest_action_run = vec![i64::MIN; groups.len()];
    for (i, e) in entries.iter().enumerate() {
        if e.kind != Kind::Action {
            continue;
        }
        match e.output.and_then(|o| data.get(&o)) {
            Some(&g) => {
                group_of[i] = g;
                let grp = &mut groups[g as usize];
                grp.last_use = grp.last_use.max(e.last_use);
                grp.run = grp.run.max(run_of(i));
                grp.allocated = grp.allocated.saturating_add(e.allocated);
                grp.hits = grp.hits.max(e.hits);
                if let Some(c) = measured(&e.name.id) {
                    grp.measured = Some(grp.measured.map_or(c, |m| m.max(c)));
                }
                names_seen[g as usize] = true;
                let newest = &mut newest_action[g as usize];
                *newest = (*newest).max(e.last_use);
                let newest_run = &mut newest_action_run[g as usize];
                *newest_run = (*newest_run).max(run_of(i));
            }
            None => {
                // Dangling (output gone) or corrupt: useless to Go.
                group_of[i] = groups.len() as u32;
                groups.push(Group {
                    key: e.name,
                    tier: Tier::Build,
                    last_use: e.last_use,
                    run: run_of(i),
                    allocated: e.allocated,
                    exe_bytes: 0,
                    garbage: true,
                    chosen: None,
                    hits: e.hits,
                    measured: None,
                    parent: NO_GROUP,
                });
            }
        }
    }
    for (g, named) in names_seen.iter().enumerate() {
        if !named {
            groups[g].garbage = true; // an output no action names
        }
    }
    // Actions used over an hour before the group's newest action become
    // groups of their own, inside it. (Go refreshes an mtime only when it
    // is over an hour old: uses closer than that are as recent as each
    // other, and splitting them off would only make more groups to sort.)
    // In a plan by runs, so do actions an earlier run used than the
    // group's newest action: runs are told apart exactly.
    for (i, e) in entries.iter().enumerate() {
        let g = group_of[i];
        let older = |g: usize| {
            e.last_use.saturating_add(GO_MTIME_LAG) <= newest_action[g]
                || run_of(i) < newest_action_run[g]
        };
        if e.kind == Kind::Action
            && !groups[g as usize].garbage
            && (g as usize) < newest_action.len()
            && older(g as usize)
        {
            group_of[i] = groups.len() as u32;
            groups.push(Group {
                key: e.name,
                tier: Tier::Build,
                last_use: e.last_use,
                run: run_of(i),
                allocated: e.allocated,
                exe_bytes: 0,
                garbage: false,
                chosen: None,
                hits: e.hits,
                measured: measured(&e.name.id),
                parent: g,
            });
        }
    }

    let window = limits.protection_window();
    let current = runs.and_then(|(_, r)| r.current);
    let protected = |g: &Group| {
        current.is_none_or(|cur| g.run >= cur) && now.saturating_sub(g.last_use) < window
    };
    let mut want_but_protected = vec![false; groups.len()];
    let mut unmet = Vec::new();

    // 1. Garbage, 2. runs, 3. age. A group comes before the actions split
    // off it.
    for i in 0..groups.len() {
        let g = &groups[i];
        if g.parent != NO_GROUP && groups[g.parent as usize].chosen.is_some() {
            continue;
        }
        let max_age = match g.tier {
            Tier::Build => limits.build_max_age,
            Tier::Exe => limits.exe_max_age,
        };
        let rule = if g.garbage {
            Some(Rule::Garbage)
        } else if runs.is_some_and(|(_, r)| g.run < r.keep_from) {
            Some(Rule::KeepRuns)
        } else if max_age.is_some_and(|m| now.saturating_sub(g.last_use) > m) {
            Some(Rule::Age)
        } else {
            None
        };
        if let Some(rule) = rule {
            if protected(g) {
                want_but_protected[i] = true;
            } else {
                take(&mut groups, i, rule);
            }
        }
    }

    // Least recently used first (by run first, in a plan by runs), ties by
    // name. The sort moves (last use, group) pairs and reads names only on
    // ties: comparing 33-byte names on every step cost more than the rest
    // of the plan.
    // Under gdsf: each group's priority (see "Eviction policies").
    let gdsf = limits.policy.greedy_dual();
    let by_cost = limits.policy == Eviction::GdCost;
    let prio: Vec<f64> = if gdsf {
        let clock = costs.clock.cloned().unwrap_or_default();
        groups
            .iter()
            .map(|g| {
                // An output's (or executable's) group: its rebuild cost; an
                // action split off: its output's, for its own bytes.
                let out = if g.parent == NO_GROUP {
                    g
                } else {
                    &groups[g.parent as usize]
                };
                let cost = if by_cost {
                    g.measured
                        .or(out.measured)
                        .unwrap_or_else(|| estimate_cost(out.tier == Tier::Exe, out.allocated))
                } else {
                    1.0
                };
                gdsf_priority(clock.at(g.last_use), g.hits, cost, g.allocated)
            })
            .collect()
    } else {
        Vec::new()
    };
    let lru: Vec<u32> = if gdsf {
        let mut order: Vec<u32> = (0..groups.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (ga, gb) = (&groups[a as usize], &groups[b as usize]);
            ga.run
                .cmp(&gb.run)
                .then(prio[a as usize].total_cmp(&prio[b as usize]))
                .then(ga.last_use.cmp(&gb.last_use))
                .then_with(|| ga.key.cmp(&gb.key))
        });
        order
    } else if runs.is_some() {
        let mut by_use: Vec<(i64, UnixTime, u32)> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.run, g.last_use, i as u32))
            .collect();
        by_use.sort_unstable_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| groups[a.2 as usize].key.cmp(&groups[b.2 as usize].key))
        });
        by_use.into_iter().map(|(_, _, g)| g).collect()
    } else {
        let mut by_use: Vec<(UnixTime, u32)> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.last_use, i as u32))
            .collect();
        by_use.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| groups[a.1 as usize].key.cmp(&groups[b.1 as usize].key))
        });
        by_use.into_iter().map(|(_, g)| g).collect()
    };

    // 4. The exe quota.
    if let Some(quota) = limits.exe_quota {
        let exe: u64 = groups
            .iter()
            .filter(|g| g.chosen.is_none())
            .map(|g| g.exe_bytes)
            .sum();
        let short = choose_lru(
            &mut groups,
            &lru,
            &mut want_but_protected,
            &protected,
            Rule::ExeQuota,
            |g| g.exe_bytes > 0,
            |g| g.exe_bytes,
            exe.saturating_sub(quota),
        );
        if short > 0 {
            unmet.push(Unmet {
                limit: Rule::ExeQuota,
                over_by: short,
                reason: "the remaining executables were used within the grace period".into(),
            });
        }
    }

    // 5. The budget, counting the bytes beside the entries.
    let remaining = |groups: &[Group]| -> u64 {
        groups
            .iter()
            .filter(|g| g.chosen.is_none() && g.parent == NO_GROUP)
            .map(|g| g.allocated)
            .sum::<u64>()
    };
    if let Some(budget) = limits.budget {
        let total = remaining(&groups).saturating_add(env.fixed_bytes);
        let short = choose_lru(
            &mut groups,
            &lru,
            &mut want_but_protected,
            &protected,
            Rule::Budget,
            |_| true,
            |g| g.allocated,
            total.saturating_sub(budget),
        );
        if short > 0 {
            unmet.push(Unmet {
                limit: Rule::Budget,
                over_by: short,
                reason: budget_reason(remaining(&groups), env.fixed_bytes, budget),
            });
        }
    }

    // 6. The free-space floor.
    if let (Some(floor), Some(free)) = (limits.min_free, env.free_bytes) {
        let freed: u64 = groups
            .iter()
            .filter(|g| g.chosen.is_some())
            .map(|g| g.allocated)
            .sum();
        let have = free.saturating_add(freed);
        let short = choose_lru(
            &mut groups,
            &lru,
            &mut want_but_protected,
            &protected,
            Rule::FreeSpace,
            |_| true,
            |g| g.allocated,
            floor.saturating_sub(have),
        );
        if short > 0 {
            unmet.push(Unmet {
                limit: Rule::FreeSpace,
                over_by: short,
                reason: "not enough left to evict outside the grace period; something else fills the disk".into(),
            });
        }
    }

    // The clock this plan raises gdsf's to: the highest priority the size
    // rules chose.
    let clock = gdsf
        .then(|| {
            groups
                .iter()
                .zip(&prio)
                .filter(|(g, _)| {
                    matches!(
                        g.chosen,
                        Some(Rule::ExeQuota | Rule::Budget | Rule::FreeSpace)
                    )
                })
                .map(|(_, &p)| p)
                .reduce(f64::max)
        })
        .flatten();

    // Split-off actions not chosen on their own leave with their group.
    for g in group_of.iter_mut() {
        let p = groups[*g as usize].parent;
        if p != NO_GROUP
            && groups[*g as usize].chosen.is_none()
            && groups[p as usize].chosen.is_some()
        {
            *g = p;
        }
    }

    // Emit victims: by rule, then least recently used, then name; within a
    // group, actions (by name) before the output. Members are listed per
    // group with a counting sort: no comparison sort over all entries.
    let mut start = vec![0u32; groups.len() + 1];
    for &g in &group_of {
        start[g as usize + 1] += 1;
    }
    for g in 0..groups.len() {
        start[g + 1] += start[g];
    }
    let mut fill = start.clone();
    let mut members = vec![0u32; entries.len()];
    for (i, &g) in group_of.iter().enumerate() {
        members[fill[g as usize] as usize] = i as u32;
        fill[g as usize] += 1;
    }
    let mut after = before;
    let mut by_rule: Vec<(Rule, Bytes)> = Vec::new();
    let mut victims: Vec<Victim> = Vec::new();
    let mut chosen: [Vec<u32>; Rule::ALL.len()] = Default::default();
    for &g in &lru {
        if let Some(rule) = groups[g as usize].chosen {
            chosen[rule as usize].push(g);
        }
    }
    for rule in Rule::ALL {
        let mut bytes = Bytes::default();
        for &g in &chosen[rule as usize] {
            let m = &mut members[start[g as usize] as usize..start[g as usize + 1] as usize];
            m.sort_unstable_by(|&a, &b| {
                let (ea, eb) = (&entries[a as usize], &entries[b as usize]);
                (ea.kind != Kind::Action)
                    .cmp(&(eb.kind != Kind::Action))
                    .then_with(|| ea.name.cmp(&eb.name))
            });
            for &i in m.iter() {
                let e = &entries[i as usize];
                after.remove(e);
                bytes.add_entry(e);
                victims.push(Victim {
                    name: e.name,
                    kind: e.kind,
                    tier: e.tier(),
                    rule,
                    allocated: e.allocated,
                    apparent: e.apparent,
                    mtime: e.mtime,
                    last_use: e.last_use,
                });
            }
        }
        if bytes.entries > 0 {
            by_rule.push((rule, bytes));
        }
    }
    let mut protected_bytes = Bytes::default();
    for (i, e) in entries.iter().enumerate() {
        let g = group_of[i] as usize;
        if want_but_protected[g] && groups[g].chosen.is_none() {
            protected_bytes.add_entry(e);
        }
    }
    Plan {
        now,
        limits: limits.clone(),
        victims,
        before,
        after,
        by_rule,
        protected: protected_bytes,
        unmet,
        clock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{DAY, HOUR};
    use crate::model::fixtures;

    const NOW: UnixTime = 1_000 * DAY;

    /// A made-up entry: `id` names it, `ago` is seconds since last use.
    fn entry(id: u8, kind: Kind, alloc: u64, ago: i64, output: Option<u8>) -> Entry {
        fixtures::entry(id, kind)
            .sized(alloc, alloc)
            .used_at(NOW - ago)
            .naming(output)
    }

    /// An output `id` and the action `id + 100` naming it.
    fn pair(id: u8, alloc: u64, ago: i64) -> [Entry; 2] {
        [
            entry(id, Kind::Output, alloc, ago, None),
            entry(id + 100, Kind::Action, 4096, ago, Some(id)),
        ]
    }

    fn exe(id: u8, alloc: u64, ago: i64) -> [Entry; 2] {
        [
            entry(id, Kind::Exe, alloc, ago, None),
            entry(id + 100, Kind::Action, 4096, ago, Some(id)),
        ]
    }

    fn no_limits() -> Limits {
        Limits {
            budget: None,
            exe_quota: None,
            build_max_age: None,
            exe_max_age: None,
            grace: HOUR,
            min_free: None,
            policy: Default::default(),
        }
    }

    fn ids(p: &Plan) -> Vec<(u8, Rule)> {
        p.victims.iter().map(|v| (v.name.id.0[0], v.rule)).collect()
    }

    fn run(entries: &[Entry], limits: &Limits) -> Plan {
        plan(entries, limits, &Environment::default(), NOW)
    }

    #[test]
    fn over_limits_reads_the_totals_the_fixed_bytes_and_the_free_space() {
        let es: Vec<Entry> = [pair(1, 1000, 10), exe(2, 5000, 10)].concat();
        let mut t = Totals::default();
        es.iter().for_each(|e| t.add(e));
        let env = |fixed_bytes, free_bytes| Environment {
            fixed_bytes,
            free_bytes,
        };
        let total = t.total.allocated_bytes;
        let l = |budget, exe_quota, min_free| Limits {
            budget,
            exe_quota,
            min_free,
            ..no_limits()
        };
        assert!(!over_limits(&t, &env(0, None), &l(None, None, None)));
        assert!(!over_limits(&t, &env(0, None), &l(Some(total), None, None)));
        assert!(over_limits(&t, &env(1, None), &l(Some(total), None, None)));
        assert!(over_limits(&t, &env(0, None), &l(None, Some(4999), None)));
        assert!(!over_limits(&t, &env(0, None), &l(None, Some(5000), None)));
        assert!(over_limits(
            &t,
            &env(0, Some(99)),
            &l(None, None, Some(100))
        ));
        assert!(!over_limits(&t, &env(0, None), &l(None, None, Some(100))));
        // What a trim reports after its run: each limit, by how much.
        assert_eq!(
            shortfalls(
                &t,
                &env(7, Some(90)),
                &l(Some(total), Some(4000), Some(100))
            ),
            vec![
                (Rule::ExeQuota, 1000),
                (Rule::Budget, 7),
                (Rule::FreeSpace, 10)
            ]
        );
    }

    #[test]
    fn nothing_to_do_without_limits_on_a_fresh_cache() {
        let es: Vec<Entry> = [pair(1, 1000, 10), pair(2, 1000, 3 * HOUR)].concat();
        let p = run(&es, &Limits::default());
        assert!(p.is_empty() && p.meets_all_limits());
        assert_eq!(p.before, p.after);
        assert_eq!(p.before.total.entries, 4);
    }

    #[test]
    fn garbage_goes_once_past_the_protection_window() {
        let es = vec![
            entry(1, Kind::Output, 1000, 3 * HOUR, None), // orphan, old
            entry(2, Kind::Output, 1000, 30 * 60, None),  // orphan, recent: a build in progress
            entry(103, Kind::Action, 4096, 3 * HOUR, Some(3)), // dangling
            {
                let mut e = entry(104, Kind::Action, 4096, 3 * HOUR, None); // corrupt
                e.problem = Some("bad".into());
                e
            },
        ];
        let p = run(&es, &no_limits());
        assert_eq!(
            ids(&p),
            vec![
                (1, Rule::Garbage),
                (103, Rule::Garbage),
                (104, Rule::Garbage)
            ]
        );
        assert_eq!(p.protected.entries, 1);
    }

    #[test]
    fn the_protection_window_is_grace_plus_gos_hour() {
        let mut l = no_limits();
        l.budget = Some(0);
        let inside: Vec<Entry> = pair(1, 1000, 2 * HOUR - 1).into();
        let outside: Vec<Entry> = pair(1, 1000, 2 * HOUR).into();
        assert!(run(&inside, &l).is_empty());
        assert_eq!(run(&outside, &l).victims.len(), 2);
        l.grace = 0;
        assert_eq!(run(&inside, &l).victims.len(), 2);
        let very_recent: Vec<Entry> = pair(1, 1000, HOUR - 1).into();
        let p = run(&very_recent, &l);
        assert!(p.is_empty(), "Go's mtime lag is always protected");
        assert_eq!(p.unmet[0].limit, Rule::Budget);
        assert_eq!(p.unmet[0].over_by, 1000 + 4096);
    }

    #[test]
    fn age_limits_per_tier() {
        let es: Vec<Entry> = [
            pair(1, 1000, 6 * DAY), // build, older than 5d
            pair(2, 1000, 4 * DAY), // build, younger
            exe(3, 5000, 3 * DAY),  // exe, older than 2d
            exe(4, 5000, DAY),      // exe, younger
        ]
        .concat();
        let p = run(&es, &Limits::default());
        assert_eq!(
            ids(&p),
            vec![
                (101, Rule::Age),
                (1, Rule::Age),
                (103, Rule::Age),
                (3, Rule::Age)
            ]
        );
        assert_eq!(p.after.exe.entries, 1);
        // pair 2, and the action entry of exe 4 (build-tier bytes, by kind).
        assert_eq!(p.after.build.entries, 3);
    }

    #[test]
    fn a_shared_output_goes_with_the_actions_used_last_and_older_ones_go_alone() {
        let es = vec![
            entry(1, Kind::Output, 10_000, 10 * HOUR, None),
            entry(101, Kind::Action, 4096, 10 * HOUR, Some(1)),
            entry(102, Kind::Action, 4096, 3 * HOUR, Some(1)),
            entry(2, Kind::Output, 10_000, 5 * HOUR, None),
            entry(103, Kind::Action, 4096, 5 * HOUR, Some(2)),
        ];
        let mut l = no_limits();
        l.budget = Some(5_000);
        let p = run(&es, &l);
        // Group 1's last use is 3h ago, through action 102; action 101,
        // unused for 10h, goes on its own first. Then group 2 (5h), then
        // what is left of group 1 (3h), its action before its output.
        assert_eq!(
            ids(&p),
            vec![
                (101, Rule::Budget),
                (103, Rule::Budget),
                (2, Rule::Budget),
                (102, Rule::Budget),
                (1, Rule::Budget)
            ]
        );
        assert_eq!(p.after.total.entries, 0);
        for budget in [15_000, 20_000] {
            l.budget = Some(budget);
            let p = run(&es, &l);
            assert_eq!(
                ids(&p),
                vec![(101, Rule::Budget), (103, Rule::Budget), (2, Rule::Budget)]
            );
            assert_eq!(p.after.total.allocated_bytes, 10_000 + 4096);
        }
        // Room for all but one block: only the old action goes.
        l.budget = Some(32_288 - 4096);
        assert_eq!(ids(&run(&es, &l)), vec![(101, Rule::Budget)]);
    }

    #[test]
    fn old_actions_naming_an_output_in_use_go_by_age_and_the_output_stays() {
        // Issue 16, item 4: one recent use of the (shared) empty output kept
        // every old action naming it. Action 100 used it 30 minutes ago
        // (protected); actions 101..=120 six days ago.
        let mut es = vec![
            entry(1, Kind::Output, 0, 30 * 60, None),
            entry(100, Kind::Action, 4096, 30 * 60, Some(1)),
        ];
        es.extend((101..=120).map(|a| entry(a, Kind::Action, 4096, 6 * DAY, Some(1))));
        let p = run(&es, &Limits::default());
        let want: Vec<(u8, Rule)> = (101..=120).map(|a| (a, Rule::Age)).collect();
        assert_eq!(ids(&p), want);
        assert_eq!(p.after.total.entries, 2);
        assert_eq!(p.bytes_for(Rule::Age).allocated_bytes, 20 * 4096);
        // Under a budget too, alone and least recently used first; the
        // protected pair stays whatever it costs.
        let mut l = no_limits();
        l.budget = Some(0);
        let p = run(&es, &l);
        assert_eq!(p.victims.len(), 20);
        assert!(p.victims.iter().all(|v| v.kind == Kind::Action));
        assert_eq!(p.unmet[0].over_by, 4096);
        assert_eq!(p.protected.entries, 2);
    }

    #[test]
    fn actions_used_within_an_hour_of_the_newest_leave_with_the_group() {
        let es = vec![
            entry(1, Kind::Output, 10_000, 2 * HOUR, None),
            entry(101, Kind::Action, 4096, 2 * HOUR, Some(1)),
            entry(102, Kind::Action, 4096, 3 * HOUR - 1, Some(1)),
            entry(103, Kind::Action, 4096, 3 * HOUR, Some(1)),
        ];
        let mut l = no_limits();
        l.budget = Some(20_000);
        // 103 is an hour older than 101 and goes alone; 102 is not.
        assert_eq!(ids(&run(&es, &l)), vec![(103, Rule::Budget)]);
        l.budget = Some(10_000);
        assert_eq!(
            ids(&run(&es, &l)),
            vec![
                (103, Rule::Budget),
                (101, Rule::Budget),
                (102, Rule::Budget),
                (1, Rule::Budget)
            ]
        );
    }

    #[test]
    fn an_old_action_of_an_executable_leaves_alone_or_with_it() {
        // Executable 3, used 3h ago through action 103; action 104 names
        // it too and was last used 6 days ago.
        let mut es: Vec<Entry> = exe(3, 100_000, 3 * HOUR).into();
        es.push(entry(104, Kind::Action, 4096, 6 * DAY, Some(3)));
        let p = run(&es, &Limits::default());
        assert_eq!(ids(&p), vec![(104, Rule::Age)]);
        assert_eq!(p.after.exe.entries, 1);
        // Without a build age, the exe quota takes the executable with
        // every action naming it, actions first.
        let l = Limits {
            build_max_age: None,
            exe_quota: Some(0),
            ..Limits::default()
        };
        let p = run(&es, &l);
        assert_eq!(
            ids(&p),
            vec![
                (103, Rule::ExeQuota),
                (104, Rule::ExeQuota),
                (3, Rule::ExeQuota)
            ]
        );
        assert_eq!(
            p.bytes_for(Rule::ExeQuota).allocated_bytes,
            100_000 + 2 * 4096
        );
    }

    #[test]
    fn no_plan_leaves_an_output_that_no_remaining_action_names() {
        // Random caches of shared outputs, random last uses and limits: an
        // output the plan keeps keeps an action naming it, actions leave
        // before their output, and the bytes add up.
        let mut rng = fastrand::Rng::with_seed(16);
        for _ in 0..300 {
            let outputs = rng.u8(1..6);
            let mut es: Vec<Entry> = (1..=outputs)
                .map(|o| entry(o, Kind::Output, rng.u64(0..50_000), 0, None))
                .collect();
            for a in 0..rng.u8(1..30) {
                let o = rng.u8(1..=outputs);
                es.push(entry(100 + a, Kind::Action, 4096, 0, Some(o)));
            }
            for e in es.iter_mut() {
                e.last_use = NOW - rng.i64(0..8 * DAY);
                e.mtime = e.last_use;
            }
            // Go touches an output whenever it hands it out through an action.
            for o in 1..=outputs {
                let newest = es
                    .iter()
                    .filter(|e| e.output == Some(Id([o; 32])))
                    .map(|e| e.last_use)
                    .max();
                if let Some(t) = newest {
                    es[o as usize - 1].last_use = es[o as usize - 1].last_use.max(t);
                }
            }
            let total: u64 = es.iter().map(|e| e.allocated).sum();
            let l = Limits {
                budget: Some(rng.u64(0..=total)),
                build_max_age: rng.bool().then_some(5 * DAY),
                grace: 0,
                ..Limits::default()
            };
            let p = run(&es, &l);
            let gone = |n: &EntryName| p.victims.iter().position(|v| v.name == *n);
            for out in es.iter().filter(|e| e.kind == Kind::Output) {
                let actions: Vec<&Entry> = es
                    .iter()
                    .filter(|e| e.output == Some(out.name.id))
                    .collect();
                match gone(&out.name) {
                    None if !actions.is_empty() => assert!(
                        actions.iter().any(|a| gone(&a.name).is_none()),
                        "{:?} outlives its actions: {p:#?}",
                        out.name
                    ),
                    Some(at) => assert!(
                        actions
                            .iter()
                            .all(|a| gone(&a.name).is_some_and(|g| g < at)),
                        "{:?} leaves before an action naming it",
                        out.name
                    ),
                    None => {}
                }
            }
            let freed: u64 = p.victims.iter().map(|v| v.allocated).sum();
            assert_eq!(
                p.before.total.allocated_bytes - freed,
                p.after.total.allocated_bytes
            );
            if p.meets_all_limits() {
                assert!(p.after.total.allocated_bytes <= l.budget.unwrap());
            }
        }
    }

    #[test]
    fn exe_quota_takes_lru_executables_and_budget_then_takes_anything() {
        let es: Vec<Entry> = [
            exe(1, 100_000, 10 * HOUR),
            exe(2, 100_000, 5 * HOUR),
            exe(3, 100_000, 30 * 60), // protected
            pair(4, 50_000, 20 * HOUR),
        ]
        .concat();
        let mut l = no_limits();
        l.exe_quota = Some(150_000);
        let p = run(&es, &l);
        assert_eq!(
            ids(&p),
            vec![
                (101, Rule::ExeQuota),
                (1, Rule::ExeQuota),
                (102, Rule::ExeQuota),
                (2, Rule::ExeQuota)
            ]
        );
        assert!(p.meets_all_limits());
        assert_eq!(p.after.exe.allocated_bytes, 100_000);
        // Add a budget: after the quota, the oldest build group goes.
        l.budget = Some(120_000);
        let p = run(&es, &l);
        assert_eq!(ids(&p)[4..], [(104, Rule::Budget), (4, Rule::Budget)]);
        assert!(p.meets_all_limits(), "{:?}", p.unmet);
        // A quota the protected executable alone exceeds is reported.
        l.exe_quota = Some(50_000);
        l.budget = None;
        let p = run(&es, &l);
        assert_eq!(p.unmet.len(), 1);
        assert_eq!(p.unmet[0].limit, Rule::ExeQuota);
        assert_eq!(p.unmet[0].over_by, 50_000);
    }

    #[test]
    fn the_order_is_garbage_age_quota_budget_and_each_bytes_add_up() {
        let es: Vec<Entry> = [
            vec![entry(9, Kind::Output, 7000, 3 * HOUR, None)], // garbage
            pair(1, 1000, 6 * DAY).to_vec(),                    // age
            exe(2, 50_000, 10 * HOUR).to_vec(),                 // quota
            pair(3, 30_000, 20 * HOUR).to_vec(),                // budget
            pair(4, 30_000, 4 * HOUR).to_vec(),                 // kept
        ]
        .concat();
        let l = Limits {
            budget: Some(40_000),
            exe_quota: Some(10_000),
            ..Limits::default()
        };
        let p = run(&es, &l);
        let rules: Vec<Rule> = p.victims.iter().map(|v| v.rule).collect();
        let mut sorted = rules.clone();
        sorted.sort();
        assert_eq!(rules, sorted, "victims come in rule order");
        assert_eq!(p.bytes_for(Rule::Garbage).allocated_bytes, 7000);
        assert_eq!(p.bytes_for(Rule::Age).allocated_bytes, 1000 + 4096);
        assert_eq!(p.bytes_for(Rule::ExeQuota).allocated_bytes, 50_000 + 4096);
        assert_eq!(p.bytes_for(Rule::Budget).allocated_bytes, 30_000 + 4096);
        assert_eq!(p.after.total.allocated_bytes, 30_000 + 4096);
        let freed: u64 = p.victims.iter().map(|v| v.allocated).sum();
        assert_eq!(
            p.before.total.allocated_bytes - freed,
            p.after.total.allocated_bytes
        );
    }

    #[test]
    fn ties_are_broken_by_name_and_input_order_does_not_matter() {
        let es: Vec<Entry> = (1..=20).flat_map(|i| pair(i, 1000, 5 * HOUR)).collect();
        let mut l = no_limits();
        l.budget = Some(10 * (1000 + 4096));
        let p = run(&es, &l);
        let first: Vec<u8> = p
            .victims
            .iter()
            .step_by(2)
            .map(|v| v.name.id.0[0])
            .collect();
        assert_eq!(first, (101..=110).collect::<Vec<u8>>());
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..10 {
            let mut shuffled = es.clone();
            rng.shuffle(&mut shuffled);
            assert_eq!(run(&shuffled, &l), p);
        }
    }

    #[test]
    fn fixed_bytes_count_towards_the_budget() {
        let es: Vec<Entry> = [pair(1, 1000, 5 * HOUR), pair(2, 1000, 4 * HOUR)].concat();
        let mut l = no_limits();
        l.budget = Some(2 * 5096 + 500);
        let env = Environment {
            fixed_bytes: 1000,
            free_bytes: None,
        };
        let p = plan(&es, &l, &env, NOW);
        assert_eq!(ids(&p), vec![(101, Rule::Budget), (1, Rule::Budget)]);
        let env = Environment {
            fixed_bytes: 1 << 40,
            free_bytes: None,
        };
        let p = plan(&es, &l, &env, NOW);
        assert!(p.unmet[0].reason.contains("fixed bytes"));
    }

    /// Issue 24: a budget of 0 with most of the cache used within the grace
    /// period says so, with the bytes of each part left, the larger first;
    /// the fixed bytes are named as over the budget on their own only when
    /// they are.
    #[test]
    fn an_unmet_budget_names_what_is_left_with_its_bytes() {
        let es: Vec<Entry> = [pair(1, 1 << 20, 60), pair(2, 1 << 20, 5 * HOUR)].concat();
        let mut l = no_limits();
        l.budget = Some(0);
        let env = Environment {
            fixed_bytes: 8192,
            free_bytes: None,
        };
        let p = plan(&es, &l, &env, NOW);
        assert_eq!(ids(&p), vec![(102, Rule::Budget), (2, Rule::Budget)]);
        let kept = (1 << 20) + 4096;
        assert_eq!(p.unmet.len(), 1);
        assert_eq!(p.unmet[0].over_by, kept + 8192);
        assert_eq!(
            p.unmet[0].reason,
            "what is left is 1 MiB of entries used within the grace period and 8 KiB of \
             fixed bytes beside the entries (directories, Go's files, the index), more than \
             the budget on their own"
                .replace("1 MiB", &crate::report::human(kept))
        );
        // A budget the fixed bytes fit: not "on their own"; and where they
        // are the larger part, they come first.
        l.budget = Some(4096);
        let env = Environment {
            fixed_bytes: 3 << 20,
            free_bytes: None,
        };
        let p = plan(&es, &l, &env, NOW);
        assert_eq!(
            p.unmet[0].reason,
            format!(
                "what is left is 3 MiB of fixed bytes beside the entries (directories, Go's \
                 files, the index), more than the budget on their own and {} of entries used \
                 within the grace period",
                crate::report::human(kept)
            )
        );
        l.budget = Some(16 << 20);
        let env = Environment {
            fixed_bytes: 16 << 20,
            free_bytes: None,
        };
        let p = plan(&es, &l, &env, NOW);
        assert!(!p.unmet[0].reason.contains("on their own"), "{:?}", p.unmet);
    }

    #[test]
    fn free_space_floor_evicts_until_enough_is_free() {
        let es: Vec<Entry> = [
            pair(1, 10_000, 9 * HOUR),
            pair(2, 10_000, 8 * HOUR),
            pair(3, 10_000, 10),
        ]
        .concat();
        let mut l = no_limits();
        l.min_free = Some(100_000);
        let env = Environment {
            fixed_bytes: 0,
            free_bytes: Some(95_000),
        };
        let p = plan(&es, &l, &env, NOW);
        assert_eq!(ids(&p), vec![(101, Rule::FreeSpace), (1, Rule::FreeSpace)]);
        let env = Environment {
            fixed_bytes: 0,
            free_bytes: Some(50_000),
        };
        let p = plan(&es, &l, &env, NOW);
        assert_eq!(p.victims.len(), 4);
        assert_eq!(p.unmet[0].limit, Rule::FreeSpace);
        assert_eq!(p.unmet[0].over_by, 100_000 - 50_000 - 2 * 14_096);
    }

    /// Runs per entry of `es`: `runs[k]` for pair `k` (output and action).
    fn pair_runs(runs: &[i64]) -> Vec<i64> {
        runs.iter().flat_map(|&r| [r, r]).collect()
    }

    /// Keep from `keep_from`, no run ending.
    fn keep_from(keep_from: i64) -> Runs {
        Runs {
            keep_from,
            current: None,
        }
    }

    fn by_runs(es: &[Entry], runs: &[i64], r: Runs, limits: &Limits) -> Plan {
        plan_by_runs(es, runs, r, limits, &Environment::default(), NOW)
    }

    #[test]
    fn without_runs_a_plan_by_runs_is_the_plain_plan() {
        let es: Vec<Entry> = [
            pair(1, 1000, 9 * DAY),
            pair(2, 5000, 3 * HOUR),
            exe(3, 9000, 4 * DAY),
            pair(4, 1000, 10),
        ]
        .concat();
        let l = Limits {
            budget: Some(8000),
            ..Default::default()
        };
        let zeros = vec![0; es.len()];
        assert_eq!(by_runs(&es, &zeros, keep_from(i64::MIN), &l), run(&es, &l));
    }

    #[test]
    fn entries_no_kept_run_used_go_unless_protected() {
        let es: Vec<Entry> = [
            pair(1, 1000, 9 * HOUR), // run 1
            pair(2, 1000, 8 * HOUR), // run 2
            pair(3, 1000, 7 * HOUR), // run 3
            pair(4, 1000, 10),       // no run, but used just now
            pair(5, 1000, 30 * DAY), // run 3: old by time, kept by runs
        ]
        .concat();
        let runs = pair_runs(&[1, 2, 3, 0, 3]);
        let p = by_runs(&es, &runs, keep_from(2), &no_limits());
        assert_eq!(ids(&p), vec![(101, Rule::KeepRuns), (1, Rule::KeepRuns)]);
        assert_eq!(p.bytes_for(Rule::KeepRuns).entries, 2);
        assert_eq!(p.protected.entries, 2, "pair 4 would go, but was just used");
        // Age limits still apply where given (ci end passes none).
        let p = by_runs(&es, &runs, keep_from(2), &Limits::default());
        let age: Vec<u8> = p
            .victims
            .iter()
            .filter(|v| v.rule == Rule::Age)
            .map(|v| v.name.id.0[0])
            .collect();
        assert_eq!(age, vec![105, 5]);
    }

    #[test]
    fn with_a_run_ending_only_its_entries_are_protected() {
        let es: Vec<Entry> = [
            pair(1, 1000, 30 * 60), // run 2, half an hour ago
            pair(2, 1000, 20 * 60), // run 3, the one ending
            pair(3, 1000, 10 * 60), // no run: a use before the CI mode
        ]
        .concat();
        let runs = pair_runs(&[2, 3, 0]);
        let mut l = no_limits();
        l.budget = Some(0);
        let ending = Runs {
            keep_from: 3,
            current: Some(3),
        };
        let p = by_runs(&es, &runs, ending, &l);
        assert_eq!(
            ids(&p),
            vec![
                (103, Rule::KeepRuns),
                (3, Rule::KeepRuns),
                (101, Rule::KeepRuns),
                (1, Rule::KeepRuns)
            ]
        );
        assert_eq!(p.protected.entries, 2, "run 3's own pair stays");
        assert_eq!(p.unmet[0].limit, Rule::Budget);
        // Without a run ending, everything used within the window stays.
        let p = by_runs(&es, &runs, keep_from(3), &l);
        assert!(p.is_empty() && p.protected.entries == 6);
    }

    #[test]
    fn the_budget_takes_the_oldest_run_first_then_the_least_recently_used() {
        let es: Vec<Entry> = [
            pair(1, 1000, 3 * HOUR), // run 4, used last in it
            pair(2, 1000, 5 * HOUR), // run 4, used earlier
            pair(3, 1000, 2 * HOUR), // run 3, though used more lately by time
        ]
        .concat();
        let runs = pair_runs(&[4, 4, 3]);
        let mut l = no_limits();
        l.budget = Some(2 * 5096 - 1);
        let p = by_runs(&es, &runs, keep_from(i64::MIN), &l);
        assert_eq!(
            ids(&p),
            vec![
                (103, Rule::Budget),
                (3, Rule::Budget),
                (102, Rule::Budget),
                (2, Rule::Budget)
            ]
        );
        // By time alone, pair 2 would have gone first.
        assert_eq!(
            ids(&run(&es, &l))[..2],
            [(102, Rule::Budget), (2, Rule::Budget)]
        );
    }

    #[test]
    fn a_group_counts_the_newest_run_of_any_member() {
        // An output run 1 made, named by an action run 5 used within the
        // hour of its output's last use: they stay together, by run 5.
        let es = vec![
            entry(1, Kind::Output, 1000, 3 * HOUR, None),
            entry(101, Kind::Action, 4096, 3 * HOUR + 60, Some(1)),
        ];
        let p = by_runs(&es, &[1, 5], keep_from(3), &no_limits());
        assert!(p.is_empty(), "{:?}", ids(&p));
        let p = by_runs(&es, &[1, 2], keep_from(3), &no_limits());
        assert_eq!(ids(&p), vec![(101, Rule::KeepRuns), (1, Rule::KeepRuns)]);
    }

    #[test]
    fn an_action_of_an_older_run_leaves_its_shared_output_whatever_the_hour() {
        // One output (the same vet facts, say) named by an action run 1
        // used and one run 3 used, ten minutes apart.
        let es = vec![
            entry(1, Kind::Output, 1000, 10 * 60, None),
            entry(101, Kind::Action, 4096, 20 * 60, Some(1)),
            entry(102, Kind::Action, 4096, 10 * 60, Some(1)),
        ];
        let ending = Runs {
            keep_from: 2,
            current: Some(3),
        };
        let p = by_runs(&es, &[3, 1, 3], ending, &no_limits());
        assert_eq!(ids(&p), vec![(101, Rule::KeepRuns)]);
        // By time alone they are one use.
        assert!(run(&es, &no_limits()).is_empty());
    }

    #[test]
    fn gdsf_keeps_the_small_often_used_group_and_gd_cost_the_expensive_one() {
        // A: 8 KiB, used 10 times, 3 days ago, cheap to rebuild. B: 4 MiB,
        // never hit, 2 hours ago, a minute and a half to rebuild. Room for
        // one of them.
        let mut es: Vec<Entry> = [pair(1, 8192, 3 * DAY), pair(2, 4 << 20, 2 * HOUR)].concat();
        es[1].hits = 10;
        let total: u64 = es.iter().map(|e| e.allocated).sum();
        let limits = |policy| Limits {
            budget: Some(total - 8192),
            policy,
            ..no_limits()
        };
        // LRU: the oldest, A.
        let lru = run(&es, &limits(Eviction::Lru));
        assert_eq!(ids(&lru), [(101, Rule::Budget), (1, Rule::Budget)]);
        assert_eq!(lru.clock, None);
        // gdsf: B, whose (hits + 1) / MiB is far lower; the clock rises to
        // B's priority, 1 / 4.004 MiB.
        let gdsf = run(&es, &limits(Eviction::Gdsf));
        assert_eq!(ids(&gdsf), [(102, Rule::Budget), (2, Rule::Budget)]);
        let b_mib = ((4 << 20) + 4096) as f64 / (1 << 20) as f64;
        assert!((gdsf.clock.unwrap() - 1.0 / b_mib).abs() < 1e-12);
        // gd-cost with B's rebuild measured at 90 s and A's at 1 ms: A.
        let measured: HashMap<u64, f64> = [(102u64, 90.0), (101, 0.001)]
            .into_iter()
            .map(|(n, c)| {
                let id = es
                    .iter()
                    .find(|e| e.name.id.0[0] == n as u8)
                    .unwrap()
                    .name
                    .id;
                (id.prefix64(), c)
            })
            .collect();
        let costs = CostInputs {
            clock: None,
            measured: Some(&measured),
        };
        let env = Environment::default();
        let cost = plan_with(&es, None, &limits(Eviction::GdCost), &env, costs, NOW);
        assert_eq!(ids(&cost), [(101, Rule::Budget), (1, Rule::Budget)]);
        // Unmeasured, B is estimated at 0.02 + 0.25 × 4 s: A's estimate
        // (0.02 s for 8 KiB) times its 11 uses still weighs more per MiB.
        let est = plan_with(
            &es,
            None,
            &limits(Eviction::GdCost),
            &env,
            CostInputs::default(),
            NOW,
        );
        assert_eq!(ids(&est), [(102, Rule::Budget), (2, Rule::Budget)]);
    }

    #[test]
    fn the_clock_ages_what_went_unused_while_others_were_evicted() {
        let mut c = Clock::default();
        assert_eq!((c.at(0), c.now()), (0.0, 0.0));
        c.advance(100, 5.0);
        c.advance(200, 3.0); // never lowers
        assert_eq!(
            (c.at(99), c.at(100), c.at(150), c.at(250)),
            (0.0, 5.0, 5.0, 5.0)
        );
        c.advance(300, 9.0);
        assert_eq!((c.at(299), c.at(300)), (5.0, 9.0));
        for t in 0..100 {
            c.advance(1000 + t, 10.0 + t as f64);
        }
        assert_eq!(c.0.len(), Clock::KEPT);
        assert_eq!(c.now(), 109.0);
        // In a plan: two groups of 12 KiB (85.3 a use per MiB); group 2 was
        // used 10 times, 3 days ago, before a trim raised the clock to 1000;
        // group 1 once, 2 days ago, after it. Without the clock group 1
        // would go (85 against 11 × 85); with it group 2 has aged out.
        let mut es: Vec<Entry> = [pair(1, 8192, 2 * DAY), pair(2, 8192, 3 * DAY)].concat();
        es[3].hits = 10;
        let clock = Clock(vec![
            (NOW - 3 * DAY - HOUR, 0.0),
            (NOW - 2 * DAY - HOUR, 1000.0),
        ]);
        let limits = Limits {
            budget: Some(8192 + 4096),
            policy: Eviction::Gdsf,
            ..no_limits()
        };
        let costs = CostInputs {
            clock: Some(&clock),
            measured: None,
        };
        let p = plan_with(&es, None, &limits, &Environment::default(), costs, NOW);
        assert_eq!(ids(&p), [(102, Rule::Budget), (2, Rule::Budget)]);
        let per_use = (1u64 << 20) as f64 / 12288.0;
        assert!((p.clock.unwrap() - 11.0 * per_use).abs() < 1e-9);
        let unclocked = plan_with(
            &es,
            None,
            &limits,
            &Environment::default(),
            CostInputs::default(),
            NOW,
        );
        assert_eq!(ids(&unclocked), [(101, Rule::Budget), (1, Rule::Budget)]);
    }

    #[test]
    fn in_a_plan_by_runs_gdsf_orders_within_a_run_and_runs_still_come_first() {
        // Runs 1 and 2 each made a small group and a big one; room for
        // about one big group. By runs, run 1's go first; within run 1,
        // lru takes the older (small) one, gdsf the big one first.
        let es: Vec<Entry> = [
            pair(1, 4096, 9 * HOUR),    // run 1, small, older
            pair(2, 1 << 20, 8 * HOUR), // run 1, big
            pair(3, 4096, 7 * HOUR),    // run 2, small
            pair(4, 1 << 20, 6 * HOUR), // run 2, big
        ]
        .concat();
        let runs = pair_runs(&[1, 1, 2, 2]);
        let total: u64 = es.iter().map(|e| e.allocated).sum();
        let limits = |policy| Limits {
            budget: Some(total - (1 << 20)),
            policy,
            ..no_limits()
        };
        let r = Runs {
            keep_from: i64::MIN,
            current: None,
        };
        let lru = by_runs(&es, &runs, r, &limits(Eviction::Lru));
        assert_eq!(
            ids(&lru),
            [101, 1, 102, 2].map(|i| (i, Rule::Budget)).to_vec()
        );
        let gdsf = plan_with(
            &es,
            Some((&runs, r)),
            &limits(Eviction::Gdsf),
            &Environment::default(),
            CostInputs::default(),
            NOW,
        );
        assert_eq!(ids(&gdsf), [102, 2].map(|i| (i, Rule::Budget)).to_vec());
    }
}
