//! `lru`, `gdsf`, `gds` and `gd-cost`: the real trim's
//! orders, replayed in their batch form.
//!
//! The other policies evict one entry at a time, the moment the cache is
//! over budget, keeping per-entry priorities up to date on every request.
//! `gocache trim`, the hook and `gocache prog` instead plan once over every
//! entry in the index when a limit is exceeded, and evict down to
//! [`HEADROOM`] of it, counted as the real trim counts it: the budget is
//! the whole cache directory's, its fixed bytes included
//! ([`Batch::new`]), so the entries are left `HEADROOM` of the
//! budget less the fixed bytes, not `HEADROOM` of their own share. These
//! policies do exactly that, with the same
//! pure functions [`crate::policy`] plans with: groups (an output with
//! every action naming it, less each action used an hour or more before
//! the group's newest, which is a group of its own as the real plan splits
//! it), ordered by the group's newest use in the index's whole seconds,
//! ties by name (`lru`), or by
//! [`gdsf_priority`] with the GreedyDual [`Clock`] kept as the index keeps
//! it (`gdsf`: cost 1; `gd-cost`: rebuild seconds measured where the trace
//! has them, else [`estimate_cost`] from kind and size, as the real trim
//! does, not the simulator's fitted estimate). `hits` are the hits since
//! the entry was stored, as the index counts them for `gocache prog`; for
//! `gds` every hit count is 0, as the index has them when only the
//! hook (`gocache hook` after plain go commands), `gocache ci end` or a
//! cron `gocache trim` see the cache: none of them counts a use of a build
//! entry (`ci end` marks runs, not hits). The hook run by `gocache go`
//! counts the programs it starts (`go run`, `go tool`) and nothing else;
//! `gds` leaves those at 0 too. So
//! what `gocache simulate` reports for them is what shipping the policy
//! gives, but for what the simulator leaves out everywhere: age limits.
//!
//! Like the real plan, a batch never takes a group used within the
//! protection window ([`crate::limits::Limits::protection_window`]: the
//! default grace period plus Go's one-hour mtime lag, two hours), which
//! covers what a live go command was handed; when only protected groups
//! are left the cache stays over its budget until the oldest of them
//! leaves the window, as the real cache does.

use super::FixedBytes;
use super::cache::{Cache, Removed, Victim};
use super::evict::{At, Policy};
use super::workload::{NONE, Workload};
use crate::limits::Eviction;
use crate::limits::{DEFAULT_GRACE, GO_MTIME_LAG};
use crate::policy::{Clock, HEADROOM, estimate_cost, gdsf_priority};

/// A group as a plan ranks it: its priority (0 for `lru`), last use
/// (seconds), name, and the group (an output's, or an action split off).
type Ranked = (f64, i64, u64, Victim);

/// The batch policy.
pub struct Batch<'w> {
    w: &'w Workload,
    kind: Eviction,
    /// Whether hits are counted (`gocache prog`) or every count stays 0
    /// (the hook, `ci end`).
    count_hits: bool,
    /// What a batch leaves the whole cache directory once over budget
    /// ([`HEADROOM`] of the budget), and the directory's other bytes: the
    /// entries are left the first less the second at the time.
    whole_target: u64,
    fixed: FixedBytes,
    /// The latest request's index.
    index: u32,
    /// Per action: hits since it was stored, and its last request's time.
    hits: Vec<u64>,
    last_t: Vec<i64>,
    /// The latest request's time.
    now: i64,
    clock: Clock,
    /// The batch being evicted, next victim last.
    queue: Vec<Victim>,
    /// Groups used within this many milliseconds of now are never taken.
    protect_ms: i64,
    /// No plan before this time: the last one left only protected groups
    /// beyond its batch, and none leaves the window before then.
    retry_at: i64,
}

impl<'w> Batch<'w> {
    /// A batch trim of `w` under `budget` bytes for the entries in
    /// `kind`'s order, in a cache directory whose other bytes (Go's
    /// subdirectories, gocache's index) take `fixed` besides: a batch
    /// leaves the entries [`HEADROOM`] of the whole less `fixed`, as
    /// `enforce` scales the whole budget and counts the fixed bytes
    /// against it; where the fixed bytes grow, those of the time.
    pub fn new(w: &'w Workload, budget: u64, fixed: FixedBytes, kind: Eviction) -> Batch<'w> {
        let whole = budget.saturating_add(fixed.first);
        Batch {
            w,
            kind,
            count_hits: true,
            whole_target: (whole as f64 * HEADROOM) as u64,
            fixed,
            index: 0,
            hits: vec![0; w.actions()],
            last_t: vec![i64::MIN; w.actions()],
            now: i64::MIN,
            clock: Clock::default(),
            queue: Vec::new(),
            protect_ms: (DEFAULT_GRACE + GO_MTIME_LAG) * 1000,
            retry_at: i64::MIN,
        }
    }

    /// The same with a protection window of `ms` milliseconds (0: none).
    pub fn protecting(self, ms: i64) -> Batch<'w> {
        Batch {
            protect_ms: ms.max(0),
            ..self
        }
    }

    /// The same with every hit count at 0, as the index has them where
    /// nothing counts uses (see the module doc).
    pub fn without_hits(self) -> Batch<'w> {
        Batch {
            count_hits: false,
            ..self
        }
    }

    /// Plans one batch: every cached group by priority, the lowest first
    /// ([`Batch::order`]), until what stays fits the target; an action
    /// split off leaves with its output's group if that goes first.
    fn plan(&mut self, cache: &Cache) {
        let w = self.w;
        let fixed = self.fixed.first + self.fixed.growth_at(self.index as usize, w.requests.len());
        let target = self.whole_target.saturating_sub(fixed);
        let (order, retry_at) = self.order(cache);
        let output_bytes = |o: u32| output_group_bytes(w, cache, o);
        let mut held = cache.bytes();
        let mut top = None::<f64>;
        // Per output: its group taken, and the blocks of the actions split
        // off from it taken before it.
        let mut taken = vec![false; w.outputs()];
        let mut split_taken = vec![0u64; w.outputs()];
        for &(p, _, _, g) in &order {
            if held <= target {
                break;
            }
            let bytes = match g {
                Victim::Output(o) => {
                    taken[o as usize] = true;
                    output_bytes(o) - split_taken[o as usize]
                }
                Victim::Action(a) => {
                    let o = cache.names(a) as usize;
                    if taken[o] {
                        continue;
                    }
                    // Never its output's last action (the newest stays in
                    // the output's group): its block alone.
                    split_taken[o] += w.block;
                    w.block
                }
            };
            held = held.saturating_sub(bytes);
            self.queue.push(g);
            top = Some(top.map_or(p, |t| t.max(p)));
        }
        self.retry_at = if held > target { retry_at } else { i64::MIN };
        self.queue.reverse();
        if let (true, Some(l)) = (self.kind.greedy_dual(), top) {
            self.clock.advance(secs(self.now).saturating_mul(1000), l);
        }
    }

    /// Every cached group outside the protection window, in the order the
    /// real plan takes them, each with its priority (0 for `lru`), last
    /// use and name; and when the first protected group leaves the window
    /// (milliseconds; `i64::MAX`: none protected). As the real plan sees them: a
    /// group is an output with the actions naming it, less those used
    /// [`GO_MTIME_LAG`] or more before its newest action, each of which is
    /// a group of its own (its block, its own last use and hits, its
    /// output's cost), as `policy::plan_with` splits them; times are the
    /// index's whole seconds, and groups used in the same second are taken
    /// in the order of their names (the output's, or the split action's),
    /// as the real plan breaks ties. A go command's uses fall within a
    /// second or two, so that order, not the order go asked in, decides
    /// which of one command's entries leave first.
    fn order(&self, cache: &Cache) -> (Vec<Ranked>, i64) {
        let w = self.w;
        // Per output: the newest use (seconds), the most hits and the most
        // measured seconds of the actions naming it.
        let mut last = vec![i64::MIN; w.outputs()];
        let mut hits = vec![0u64; w.outputs()];
        let mut measured: Vec<Option<f64>> = vec![None; w.outputs()];
        let mut outputs = Vec::new();
        for a in 0..w.actions() as u32 {
            let o = cache.names(a);
            if o == NONE {
                continue;
            }
            let oi = o as usize;
            if last[oi] == i64::MIN {
                outputs.push(o);
            }
            last[oi] = last[oi].max(secs(self.last_t[a as usize]));
            hits[oi] = hits[oi].max(self.hits[a as usize]);
            if let (c, true) = w.decision_cost(a) {
                measured[oi] = Some(measured[oi].map_or(c, |m| m.max(c)));
            }
        }
        // The groups: each output's, then each action split off from it.
        let mut groups: Vec<Victim> = outputs.iter().map(|&o| Victim::Output(o)).collect();
        groups.extend((0..w.actions() as u32).filter_map(|a| {
            let o = cache.names(a);
            (o != NONE
                && secs(self.last_t[a as usize]).saturating_add(GO_MTIME_LAG) <= last[o as usize])
                .then_some(Victim::Action(a))
        }));
        let output_bytes = |o: u32| output_group_bytes(w, cache, o);
        let cost_of = |o: u32| {
            let oi = o as usize;
            measured[oi].unwrap_or_else(|| estimate_cost(w.out_exe[oi], output_bytes(o)))
        };
        let gd = self.kind.greedy_dual();
        let by_cost = self.kind == Eviction::GdCost;
        let (hits_a, last_a) = (&self.hits, &self.last_t);
        // A group's last use (seconds), hits, cost, bytes and name.
        let describe = |g: Victim| match g {
            Victim::Output(o) => {
                let oi = o as usize;
                let cost = if by_cost { cost_of(o) } else { 1.0 };
                (
                    last[oi],
                    hits[oi],
                    cost,
                    output_bytes(o),
                    w.output_ids[oi].0,
                )
            }
            Victim::Action(a) => {
                let ai = a as usize;
                let cost = match (by_cost, w.decision_cost(a)) {
                    (false, _) => 1.0,
                    (true, (c, true)) => c,
                    (true, _) => cost_of(cache.names(a)),
                };
                let name = w.action_ids[ai].map_or(u64::from(a), |t| t.0);
                (secs(last_a[ai]), hits_a[ai], cost, w.block, name)
            }
        };
        // What the real plan protects: groups used within the window of
        // now, in whole seconds.
        let window = self.protect_ms / 1000;
        let now = secs(self.now);
        let mut retry_at = i64::MAX;
        let mut order: Vec<Ranked> = groups
            .into_iter()
            .filter_map(|g| {
                let (last, hits, cost, bytes, name) = describe(g);
                if self.protect_ms > 0 && now.saturating_sub(last) <= window {
                    retry_at = retry_at.min(last.saturating_add(window + 1).saturating_mul(1000));
                    return None;
                }
                let p = if gd {
                    gdsf_priority(self.clock.at(last.saturating_mul(1000)), hits, cost, bytes)
                } else {
                    0.0
                };
                Some((p, last, name, g))
            })
            .collect();
        order.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        (order, retry_at)
    }
}

/// The whole seconds of `t` milliseconds, as the index keeps times.
fn secs(t: i64) -> i64 {
    t.div_euclid(1000)
}

/// The bytes of output `o`'s group: the output and a block for each
/// cached action naming it.
fn output_group_bytes(w: &Workload, cache: &Cache, o: u32) -> u64 {
    w.size(o) + w.block * u64::from(cache.refs(o))
}

impl Policy for Batch<'_> {
    fn hit(&mut self, a: u32, _o: u32, at: &At) {
        self.hits[a as usize] += u64::from(self.count_hits);
        self.last_t[a as usize] = at.t;
        self.now = at.t;
        self.index = at.index;
    }
    fn insert(&mut self, a: u32, _o: u32, at: &At) {
        self.hits[a as usize] = 0;
        self.last_t[a as usize] = at.t;
        self.now = at.t;
        self.index = at.index;
    }
    fn stored_again(&mut self, a: u32, _o: u32, at: &At) {
        // A put is a use the index records without a hit.
        self.last_t[a as usize] = at.t;
        self.now = at.t;
        self.index = at.index;
    }
    fn removed(&mut self, _r: &Removed) {}
    fn victim(&mut self, cache: &Cache) -> Option<Victim> {
        if self.queue.is_empty() && self.now >= self.retry_at {
            self.plan(cache);
        }
        self.queue.pop()
    }
    fn rest_of_batch(&mut self) -> Option<Victim> {
        self.queue.pop()
    }
    fn lazy(&self) -> bool {
        !self.w.ends.is_empty()
    }
}
