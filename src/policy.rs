//! The eviction policy: a pure function from entries, limits and `now` to a
//! plan. No I/O, no clock: the executor ([`crate::execute`]) acts on the
//! plan, and tests call [`plan`] with made-up entries.
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
//!   which `gocache simulate` replays as `gds`);
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
//! under the same names, `lru`, `gdsf` and `gd-cost`.
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
//! What that protects, exactly: Go moves an mtime only when it is over an
//! hour old, so a lookup at time `u` leaves the mtime `m` with
//! `u - m < 1h`. A use `grace` or less before `now` then has
//! `now - m < grace + 1h`, to the nanosecond; in whole seconds (the index
//! keeps mtimes and `now` truncated) that is `now - m <= grace + 1h`, so the
//! window includes its last second. The grace period is therefore how long
//! a plain go command's lookup is protected, no more: a go command running
//! longer than it beside a trim may lose a path it looked up at its start.
//! The limits a run resolves never make it shorter than an hour
//! ([`crate::limits::MIN_GRACE`]).
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

mod unmet;
use unmet::budget_reason;

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

/// The body of every plan, in the order the rules apply: group the
/// entries, rule out what no limit needs (garbage, runs, age), order the
/// rest, apply the size rules in that order, and emit the victims.
fn plan_inner(
    entries: &[Entry],
    runs: Option<(&[i64], Runs)>,
    limits: &Limits,
    env: &Environment,
    costs: CostInputs,
    now: UnixTime,
) -> Plan {
    let input = Inputs {
        entries,
        runs,
        costs,
    };
    let Grouping {
        groups,
        mut group_of,
        before,
    } = group(&input);
    let protection = Protection {
        current: runs.and_then(|(_, r)| r.current),
        window: limits.protection_window(),
        now,
    };
    let mut choice = Choice::new(groups, protection);
    choice.rule_out(limits, runs.map(|(_, r)| r), now);
    let order = Order::of(&choice.groups, limits, costs.clock, runs.is_some());
    choice.size_rules(&order.lru, limits, env);
    let clock = order.raised_clock(&choice.groups);
    leave_with_groups(&mut group_of, &choice.groups);
    let emitted = emit(entries, &choice, &group_of, &order.lru, before);
    Plan {
        now,
        limits: limits.clone(),
        victims: emitted.victims,
        before,
        after: emitted.after,
        by_rule: emitted.by_rule,
        protected: emitted.protected,
        unmet: choice.unmet,
        clock,
    }
}

/// What a plan reads beside the limits and the environment.
struct Inputs<'a> {
    entries: &'a [Entry],
    /// In a plan by runs: each entry's last run, and which runs are kept.
    runs: Option<(&'a [i64], Runs)>,
    costs: CostInputs<'a>,
}

impl Inputs<'_> {
    /// The last run that used entry `i` (0 without runs).
    fn run_of(&self, i: usize) -> i64 {
        self.runs.map_or(0, |(r, _)| r[i])
    }

    /// The rebuild seconds measured for action `id`, if any.
    fn measured(&self, id: &Id) -> Option<f64> {
        self.costs
            .measured
            .and_then(|m| m.get(&id.prefix64()).copied())
    }
}

/// No group: a group that is not an action split off from its output's.
const NO_GROUP: u32 = u32::MAX;

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

impl Group {
    /// A group of `e` alone, last used by run `run`: not garbage, not
    /// chosen, no cost measured, split off from nothing.
    fn of(e: &Entry, run: i64) -> Group {
        Group {
            key: e.name,
            tier: e.tier(),
            last_use: e.last_use,
            run,
            allocated: e.allocated,
            exe_bytes: if e.kind == Kind::Exe { e.allocated } else { 0 },
            garbage: false,
            chosen: None,
            hits: e.hits,
            measured: None,
            parent: NO_GROUP,
        }
    }
}

// Phase 1: grouping (see "Groups" in the module doc).

/// The entries in groups.
struct Grouping {
    groups: Vec<Group>,
    /// Each entry's group.
    group_of: Vec<u32>,
    /// The entries' totals.
    before: Totals,
}

/// Groups the entries: each output or executable starts a group, actions
/// join the group of the output they name, the rest are groups of one;
/// then actions used well before their group's newest split off.
fn group(input: &Inputs) -> Grouping {
    let (mut grouping, output_groups) = start_groups(input.entries, |i| input.run_of(i));
    let newest = join_actions(input, &mut grouping, &output_groups);
    split_older_actions(input, &mut grouping, &newest);
    grouping
}

/// A group for each output and executable, keyed by its ID; the other
/// entries' groups are left to [`join_actions`].
fn start_groups(
    entries: &[Entry],
    run_of: impl Fn(usize) -> i64,
) -> (Grouping, HashMap<Id, u32, IdHash>) {
    let mut output_groups: HashMap<Id, u32, IdHash> =
        HashMap::with_capacity_and_hasher(entries.len() / 3 + 1, IdHash);
    let mut grouping = Grouping {
        groups: Vec::with_capacity(entries.len() / 2 + 1),
        group_of: vec![0u32; entries.len()],
        before: Totals::default(),
    };
    for (i, e) in entries.iter().enumerate() {
        grouping.before.add(e);
        if matches!(e.kind, Kind::Output | Kind::Exe) {
            let g = grouping.groups.len() as u32;
            output_groups.insert(e.name.id, g);
            grouping.group_of[i] = g;
            grouping.groups.push(Group::of(e, run_of(i)));
        }
    }
    (grouping, output_groups)
}

/// Per output group: the newest use of an action naming it, and the newest
/// run.
struct NewestAction {
    last_use: Vec<UnixTime>,
    run: Vec<i64>,
}

/// Puts each action in its output's group, or in a garbage group of its
/// own when its output is gone (or it cannot be parsed); marks outputs no
/// action names as garbage.
fn join_actions(
    input: &Inputs,
    grouping: &mut Grouping,
    output_groups: &HashMap<Id, u32, IdHash>,
) -> NewestAction {
    let outputs = grouping.groups.len();
    let mut named = vec![false; outputs];
    let mut newest = NewestAction {
        last_use: vec![UnixTime::MIN; outputs],
        run: vec![i64::MIN; outputs],
    };
    let groups = &mut grouping.groups;
    for (i, e) in input.entries.iter().enumerate() {
        if e.kind != Kind::Action {
            continue;
        }
        let run = input.run_of(i);
        match e.output.and_then(|o| output_groups.get(&o)) {
            Some(&g) => {
                grouping.group_of[i] = g;
                let grp = &mut groups[g as usize];
                grp.last_use = grp.last_use.max(e.last_use);
                grp.run = grp.run.max(run);
                grp.allocated = grp.allocated.saturating_add(e.allocated);
                grp.hits = grp.hits.max(e.hits);
                if let Some(c) = input.measured(&e.name.id) {
                    grp.measured = Some(grp.measured.map_or(c, |m| m.max(c)));
                }
                named[g as usize] = true;
                let g = g as usize;
                newest.last_use[g] = newest.last_use[g].max(e.last_use);
                newest.run[g] = newest.run[g].max(run);
            }
            None => {
                // Dangling (output gone) or corrupt: useless to Go.
                grouping.group_of[i] = groups.len() as u32;
                groups.push(Group {
                    garbage: true,
                    ..Group::of(e, run)
                });
            }
        }
    }
    for (g, named) in named.iter().enumerate() {
        if !named {
            groups[g].garbage = true; // an output no action names
        }
    }
    newest
}

/// Actions used over an hour before the group's newest action become
/// groups of their own, inside it. (Go refreshes an mtime only when it is
/// over an hour old: uses closer than that are as recent as each other,
/// and splitting them off would only make more groups to sort.) In a plan
/// by runs, so do actions an earlier run used than the group's newest
/// action: runs are told apart exactly.
fn split_older_actions(input: &Inputs, grouping: &mut Grouping, newest: &NewestAction) {
    let groups = &mut grouping.groups;
    for (i, e) in input.entries.iter().enumerate() {
        let g = grouping.group_of[i] as usize;
        let run = input.run_of(i);
        let older = |g: usize| {
            e.last_use.saturating_add(GO_MTIME_LAG) <= newest.last_use[g] || run < newest.run[g]
        };
        if e.kind == Kind::Action && !groups[g].garbage && g < newest.last_use.len() && older(g) {
            grouping.group_of[i] = groups.len() as u32;
            groups.push(Group {
                measured: input.measured(&e.name.id),
                parent: g as u32,
                ..Group::of(e, run)
            });
        }
    }
}

/// Which groups no rule may choose (see "Protection" in the module doc).
struct Protection {
    /// In a plan by runs, the run now ending: only its groups are
    /// protected.
    current: Option<i64>,
    /// [`Limits::protection_window`].
    window: i64,
    now: UnixTime,
}

impl Protection {
    fn covers(&self, g: &Group) -> bool {
        self.current.is_none_or(|cur| g.run >= cur)
            && self.now.saturating_sub(g.last_use) <= self.window
    }
}

/// The groups as the rules choose among them.
struct Choice {
    groups: Vec<Group>,
    protection: Protection,
    /// Per group: a rule wanted it, but it is protected.
    want_but_protected: Vec<bool>,
    /// The limits the size rules could not meet.
    unmet: Vec<Unmet>,
}

impl Choice {
    fn new(groups: Vec<Group>, protection: Protection) -> Choice {
        Choice {
            want_but_protected: vec![false; groups.len()],
            groups,
            protection,
            unmet: Vec::new(),
        }
    }

    /// Phase 2, ruling out: 1. garbage, 2. runs, 3. age, whatever the
    /// order. A group comes before the actions split off it.
    fn rule_out(&mut self, limits: &Limits, runs: Option<Runs>, now: UnixTime) {
        for i in 0..self.groups.len() {
            let g = &self.groups[i];
            if g.parent != NO_GROUP && self.groups[g.parent as usize].chosen.is_some() {
                continue;
            }
            let Some(rule) = ruled_out_by(g, limits, runs, now) else {
                continue;
            };
            if self.protection.covers(g) {
                self.want_but_protected[i] = true;
            } else {
                take(&mut self.groups, i, rule);
            }
        }
    }

    /// Phase 4, the size rules, each taking groups in `lru` order: 4. the
    /// exe quota, 5. the budget, 6. the free-space floor.
    fn size_rules(&mut self, lru: &[u32], limits: &Limits, env: &Environment) {
        if let Some(quota) = limits.exe_quota {
            self.exe_quota(lru, quota);
        }
        if let Some(budget) = limits.budget {
            self.budget(lru, budget, env.fixed_bytes);
        }
        if let (Some(floor), Some(free)) = (limits.min_free, env.free_bytes) {
            self.free_space(lru, floor, free);
        }
    }

    fn exe_quota(&mut self, lru: &[u32], quota: u64) {
        let exe: u64 = self
            .groups
            .iter()
            .filter(|g| g.chosen.is_none())
            .map(|g| g.exe_bytes)
            .sum();
        let short = self.choose(
            lru,
            Rule::ExeQuota,
            |g| g.exe_bytes > 0,
            |g| g.exe_bytes,
            exe.saturating_sub(quota),
        );
        if short > 0 {
            self.unmet.push(Unmet {
                limit: Rule::ExeQuota,
                over_by: short,
                reason: "the remaining executables were used within the grace period".into(),
            });
        }
    }

    /// The budget, counting the `fixed` bytes beside the entries.
    fn budget(&mut self, lru: &[u32], budget: u64, fixed: u64) {
        let total = remaining(&self.groups).saturating_add(fixed);
        let short = self.choose(
            lru,
            Rule::Budget,
            |_| true,
            |g| g.allocated,
            total.saturating_sub(budget),
        );
        if short > 0 {
            self.unmet.push(Unmet {
                limit: Rule::Budget,
                over_by: short,
                reason: budget_reason(remaining(&self.groups), fixed, budget),
            });
        }
    }

    /// The free-space `floor`, with `free` bytes free now.
    fn free_space(&mut self, lru: &[u32], floor: u64, free: u64) {
        let freed: u64 = self
            .groups
            .iter()
            .filter(|g| g.chosen.is_some())
            .map(|g| g.allocated)
            .sum();
        let have = free.saturating_add(freed);
        let short = self.choose(
            lru,
            Rule::FreeSpace,
            |_| true,
            |g| g.allocated,
            floor.saturating_sub(have),
        );
        if short > 0 {
            self.unmet.push(Unmet {
                limit: Rule::FreeSpace,
                over_by: short,
                reason: "not enough left to evict outside the grace period; something else fills the disk".into(),
            });
        }
    }

    /// Walks groups in `lru` order, choosing each unchosen `eligible` one
    /// for `rule` until `short` bytes (as `bytes` counts them) are freed. A
    /// protected group passed over is marked in `want_but_protected`.
    /// Returns the bytes still short (0: met).
    fn choose(
        &mut self,
        lru: &[u32],
        rule: Rule,
        eligible: impl Fn(&Group) -> bool,
        bytes: impl Fn(&Group) -> u64,
        mut short: u64,
    ) -> u64 {
        for &i in lru {
            if short == 0 {
                break;
            }
            let g = &self.groups[i as usize];
            if g.chosen.is_some() || !eligible(g) {
                continue;
            }
            if g.parent != NO_GROUP && self.groups[g.parent as usize].chosen.is_some() {
                continue; // leaving with its group already
            }
            if self.protection.covers(g) {
                self.want_but_protected[i as usize] = true;
                continue;
            }
            short = short.saturating_sub(bytes(g));
            take(&mut self.groups, i as usize, rule);
        }
        short
    }
}

/// The rule among 1 to 3 that takes `g` whatever the order, if any.
fn ruled_out_by(g: &Group, limits: &Limits, runs: Option<Runs>, now: UnixTime) -> Option<Rule> {
    let max_age = match g.tier {
        Tier::Build => limits.build_max_age,
        Tier::Exe => limits.exe_max_age,
    };
    if g.garbage {
        Some(Rule::Garbage)
    } else if runs.is_some_and(|r| g.run < r.keep_from) {
        Some(Rule::KeepRuns)
    } else if max_age.is_some_and(|m| now.saturating_sub(g.last_use) > m) {
        Some(Rule::Age)
    } else {
        None
    }
}

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

/// The allocated bytes of the groups not chosen (an action split off
/// counts in its output's group).
fn remaining(groups: &[Group]) -> u64 {
    groups
        .iter()
        .filter(|g| g.chosen.is_none() && g.parent == NO_GROUP)
        .map(|g| g.allocated)
        .sum::<u64>()
}

/// Phase 3, ordering: the order the size rules take groups in.
struct Order {
    /// Every group, least recently used first (by run first, in a plan by
    /// runs; by priority first, under `gdsf` and `gd-cost`), ties by name.
    lru: Vec<u32>,
    /// Under `gdsf` and `gd-cost`: each group's priority (see "Eviction
    /// policies"); empty otherwise.
    prio: Vec<f64>,
}

impl Order {
    fn of(groups: &[Group], limits: &Limits, clock: Option<&Clock>, by_runs: bool) -> Order {
        if limits.policy.greedy_dual() {
            let prio = priorities(groups, limits.policy, clock);
            let lru = by_priority(groups, &prio);
            Order { lru, prio }
        } else if by_runs {
            Order {
                lru: by_run(groups),
                prio: Vec::new(),
            }
        } else {
            Order {
                lru: by_last_use(groups),
                prio: Vec::new(),
            }
        }
    }

    /// The clock this plan raises gdsf's to: the highest priority the size
    /// rules chose (none without priorities).
    fn raised_clock(&self, groups: &[Group]) -> Option<f64> {
        groups
            .iter()
            .zip(&self.prio)
            .filter(|(g, _)| {
                matches!(
                    g.chosen,
                    Some(Rule::ExeQuota | Rule::Budget | Rule::FreeSpace)
                )
            })
            .map(|(_, &p)| p)
            .reduce(f64::max)
    }
}

/// Each group's GreedyDual priority under `policy` (`gdsf` or `gd-cost`).
fn priorities(groups: &[Group], policy: Eviction, clock: Option<&Clock>) -> Vec<f64> {
    let clock = clock.cloned().unwrap_or_default();
    let by_cost = policy == Eviction::GdCost;
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
}

/// By run, then priority, then last use, then name.
fn by_priority(groups: &[Group], prio: &[f64]) -> Vec<u32> {
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
}

// The sorts by run and by last use move (run, last use, group) tuples and
// read names only on ties: comparing 33-byte names on every step cost more
// than the rest of the plan.

/// By run, then last use, then name.
fn by_run(groups: &[Group]) -> Vec<u32> {
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
}

/// By last use, then name.
fn by_last_use(groups: &[Group]) -> Vec<u32> {
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
}

// Phase 5: emitting.

/// Split-off actions not chosen on their own leave with their group.
fn leave_with_groups(group_of: &mut [u32], groups: &[Group]) {
    for g in group_of.iter_mut() {
        let p = groups[*g as usize].parent;
        if p != NO_GROUP
            && groups[*g as usize].chosen.is_none()
            && groups[p as usize].chosen.is_some()
        {
            *g = p;
        }
    }
}

/// The victims and what they leave.
struct Emitted {
    victims: Vec<Victim>,
    after: Totals,
    by_rule: Vec<(Rule, Bytes)>,
    protected: Bytes,
}

/// Emits the victims: by rule, then in `lru` order; within a group,
/// actions (by name) before the output.
fn emit(
    entries: &[Entry],
    choice: &Choice,
    group_of: &[u32],
    lru: &[u32],
    before: Totals,
) -> Emitted {
    let groups = &choice.groups;
    let mut members = Members::of(group_of, groups.len());
    let mut chosen: [Vec<u32>; Rule::ALL.len()] = Default::default();
    for &g in lru {
        if let Some(rule) = groups[g as usize].chosen {
            chosen[rule as usize].push(g);
        }
    }
    let mut emitted = Emitted {
        victims: Vec::new(),
        after: before,
        by_rule: Vec::new(),
        protected: Bytes::default(),
    };
    for rule in Rule::ALL {
        let mut bytes = Bytes::default();
        for &g in &chosen[rule as usize] {
            for &i in members.in_order(g, entries) {
                let e = &entries[i as usize];
                emitted.after.remove(e);
                bytes.add_entry(e);
                emitted.victims.push(Victim {
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
            emitted.by_rule.push((rule, bytes));
        }
    }
    for (i, e) in entries.iter().enumerate() {
        let g = group_of[i] as usize;
        if choice.want_but_protected[g] && groups[g].chosen.is_none() {
            emitted.protected.add_entry(e);
        }
    }
    emitted
}

/// Each group's members, listed with a counting sort: no comparison sort
/// over all entries.
struct Members {
    /// Group `g`'s members are `members[start[g]..start[g + 1]]`.
    start: Vec<u32>,
    members: Vec<u32>,
}

impl Members {
    fn of(group_of: &[u32], groups: usize) -> Members {
        let mut start = vec![0u32; groups + 1];
        for &g in group_of {
            start[g as usize + 1] += 1;
        }
        for g in 0..groups {
            start[g + 1] += start[g];
        }
        let mut fill = start.clone();
        let mut members = vec![0u32; group_of.len()];
        for (i, &g) in group_of.iter().enumerate() {
            members[fill[g as usize] as usize] = i as u32;
            fill[g as usize] += 1;
        }
        Members { start, members }
    }

    /// Group `g`'s members in the order they leave: actions (by name)
    /// before the output.
    fn in_order(&mut self, g: u32, entries: &[Entry]) -> &[u32] {
        let m =
            &mut self.members[self.start[g as usize] as usize..self.start[g as usize + 1] as usize];
        m.sort_unstable_by(|&a, &b| {
            let (ea, eb) = (&entries[a as usize], &entries[b as usize]);
            (ea.kind != Kind::Action)
                .cmp(&(eb.kind != Kind::Action))
                .then_with(|| ea.name.cmp(&eb.name))
        });
        m
    }
}

#[cfg(test)]
mod tests;
