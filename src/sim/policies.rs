//! Eviction policies, behind one trait, for the replay to drive.
//!
//! A policy is told what happens (a hit, an insert, what left the cache)
//! and, while the cache is over its budget, names the next victim. It
//! keeps its own priorities in an addressable heap, so each step costs
//! O(log n): millions of requests replay in seconds. Policies never read
//! a clock: every call carries the request's time and index.
//!
//! The first four are what `gocache trim --policy NAME` does, under the
//! same names: a user comparing `simulate` with `trim` reads the same
//! name for the same behaviour. The `-classic`, `-groups` and `-actions`
//! ones are the textbook forms, for comparison.
//!
//! | name | what it evicts first |
//! | --- | --- |
//! | `lru` | `gocache trim --policy lru` in its batch form (`sim::batch`): once over budget, groups (an output with every action naming it, less those used an hour before its newest: each a group of its own, as trim splits them) by their newest use, down to 90% of the budget |
//! | `gdsf` | `gocache trim --policy gdsf` in its batch form: groups by `L + (hits + 1) / MiB` |
//! | `gd-cost` | `gocache trim --policy gd-cost` in its batch form: groups by `L + (hits + 1) × seconds / MiB`, measured or estimated as the real trim has them |
//! | `gds` | `gocache trim --policy gdsf` where no hits are counted (the hook after plain go commands, `ci end`, a cron trim): `gdsf` with every hit count at 0, GreedyDual-Size: groups by `L + 1 / MiB` |
//! | `lru-groups` | the textbook LRU over groups, evicting one group at a time the moment the cache is over budget |
//! | `lru-actions` | the textbook LRU over action entries, one at a time; an output leaves with the last action naming it |
//! | `gdsf-classic` | GreedyDual-Size-Frequency (Cherkasova 1998), one entry at a time: the least `L + hits × 1 / size`, for object hits |
//! | `gd-cost-classic` | the same with rebuild seconds as the cost: the least `L + hits × seconds / size` |
//! | `go-age` | Go's own trim: at most once a day, everything unused for 5 days and an hour; no size limit |
//! | `belady` | offline: the action whose next request is farthest (Belady's MIN, evicting until the bytes fit); a practical reference, not a bound, with sizes |
//! | `lower` | offline: the lower bracket on the optimum, the better of `belady` and a greedy feasible schedule ([`super::schedule`]) |
//!
//! `lru-actions` orders actions by their exact last use; `policy::plan`
//! counts uses under an hour apart as one (Go's mtime resolution), which a
//! trace of exact uses does not need.
//!
//! In the classic GreedyDual policies `L` is the priority of the last victim (it
//! ages what stays), `hits` counts requests since the entry came in, and
//! `size` is the action's block plus its output's bytes.

use super::FixedBytes;
use super::batch::Batch;
use super::cache::{Cache, Removed, Victim};
use super::evict::{At, Policy};
use super::heap::{Heap, Prio};
use super::workload::Workload;
use crate::limits::Eviction;

/// The policies (and the bound) `gocache simulate` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    /// `gocache trim --policy lru`: LRU over groups, in batch form.
    Lru,
    /// `gocache trim --policy gdsf`, in batch form.
    Gdsf,
    /// `gocache trim --policy gd-cost`, in batch form.
    GdCost,
    /// `gocache trim --policy gdsf` where no hits are counted: every hit
    /// count at 0 (GreedyDual-Size), in batch form.
    Gds,
    /// The textbook LRU over groups, one victim at a time.
    LruGroups,
    /// The textbook LRU over action entries, one victim at a time.
    LruActions,
    /// The textbook GreedyDual-Size-Frequency, one victim at a time.
    GdsfClassic,
    /// The textbook GreedyDual weighted by rebuild seconds.
    GdCostClassic,
    /// Go's own 5-day rule.
    GoAge,
    /// Belady's MIN, evicting until the bytes fit (offline).
    Belady,
    /// The lower bracket on the offline optimum: the better of a greedy
    /// feasible schedule and Belady's (offline).
    Lower,
    /// The PFOO-L upper bound (offline; not a replay).
    Bound,
}

impl PolicyName {
    /// All of them, in report order.
    pub const ALL: [PolicyName; 12] = [
        PolicyName::Lru,
        PolicyName::Gdsf,
        PolicyName::GdCost,
        PolicyName::Gds,
        PolicyName::LruGroups,
        PolicyName::LruActions,
        PolicyName::GdsfClassic,
        PolicyName::GdCostClassic,
        PolicyName::GoAge,
        PolicyName::Belady,
        PolicyName::Lower,
        PolicyName::Bound,
    ];

    /// The name on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::LruGroups => "lru-groups",
            PolicyName::LruActions => "lru-actions",
            PolicyName::GoAge => "go-age",
            PolicyName::GdsfClassic => "gdsf-classic",
            PolicyName::GdCostClassic => "gd-cost-classic",
            PolicyName::Lru => "lru",
            PolicyName::Gdsf => "gdsf",
            PolicyName::Gds => "gds",
            PolicyName::GdCost => "gd-cost",
            PolicyName::Belady => "belady",
            PolicyName::Lower => "lower",
            PolicyName::Bound => "bound",
        }
    }

    /// The policy named `s`.
    pub fn parse(s: &str) -> Option<PolicyName> {
        PolicyName::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// True for policies that know the future (Belady, the brackets).
    pub fn offline(self) -> bool {
        matches!(
            self,
            PolicyName::Belady | PolicyName::Lower | PolicyName::Bound
        )
    }

    /// False for Go's age rule, which has no size limit.
    pub fn has_budget(self) -> bool {
        self != PolicyName::GoAge
    }

    /// A fresh replayable policy for `w` under `budget` bytes (`None` for
    /// the brackets, which [`super::simulate`] computes on their own). The
    /// batch policies protect what the real trim protects by default (see
    /// `sim::batch`).
    pub fn build(self, w: &Workload, budget: u64) -> Option<Box<dyn Policy + '_>> {
        self.build_protecting(w, budget, None)
    }

    /// The same, with the batch policies' protection window in
    /// milliseconds given (`Some(0)`: none) or the default (`None`).
    pub fn build_protecting(
        self,
        w: &Workload,
        budget: u64,
        protect_ms: Option<i64>,
    ) -> Option<Box<dyn Policy + '_>> {
        self.build_for(w, budget, FixedBytes::default(), protect_ms)
    }

    /// The same in a cache directory whose other bytes take `fixed` of
    /// the budget besides the entries' `budget` (at the first request; the
    /// batch policies leave the entries [`crate::policy::HEADROOM`] of the
    /// whole less the fixed bytes at the time, as the real trim does; see
    /// `sim::batch`).
    pub fn build_for(
        self,
        w: &Workload,
        budget: u64,
        fixed: FixedBytes,
        protect_ms: Option<i64>,
    ) -> Option<Box<dyn Policy + '_>> {
        let (na, no) = (w.actions(), w.outputs());
        let batch = |kind| {
            let b = Batch::new(w, budget, fixed, kind);
            match protect_ms {
                Some(ms) => b.protecting(ms),
                None => b,
            }
        };
        Some(match self {
            PolicyName::LruGroups => Box::new(LruGroups(Heap::new(no))),
            PolicyName::LruActions => Box::new(LruActions(Heap::new(na))),
            PolicyName::GoAge => Box::new(GoAge::new(na)),
            PolicyName::GdsfClassic => Box::new(GreedyDual::new(na, false)),
            PolicyName::GdCostClassic => Box::new(GreedyDual::new(na, true)),
            PolicyName::Lru => Box::new(batch(Eviction::Lru)),
            PolicyName::Gdsf => Box::new(batch(Eviction::Gdsf)),
            PolicyName::Gds => Box::new(batch(Eviction::Gdsf).without_hits()),
            PolicyName::GdCost => Box::new(batch(Eviction::GdCost)),
            PolicyName::Belady => Box::new(Belady(Heap::new(na))),
            PolicyName::Lower | PolicyName::Bound => return None,
        })
    }
}

impl std::fmt::Display for PolicyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `lru-groups`: groups keyed by the last request naming their output.
struct LruGroups(Heap<u32>);

impl Policy for LruGroups {
    fn hit(&mut self, _a: u32, o: u32, at: &At) {
        self.0.set(o, at.index);
    }
    fn insert(&mut self, a: u32, o: u32, at: &At) {
        self.hit(a, o, at);
    }
    fn removed(&mut self, r: &Removed) {
        for &o in &r.outputs {
            self.0.remove(o);
        }
    }
    fn victim(&mut self, _: &Cache) -> Option<Victim> {
        self.0.peek().map(|(_, o)| Victim::Output(o))
    }
}

/// `lru-actions`: actions keyed by their own last request.
struct LruActions(Heap<u32>);

impl Policy for LruActions {
    fn hit(&mut self, a: u32, _o: u32, at: &At) {
        self.0.set(a, at.index);
    }
    fn insert(&mut self, a: u32, o: u32, at: &At) {
        self.hit(a, o, at);
    }
    fn removed(&mut self, r: &Removed) {
        for &a in &r.actions {
            self.0.remove(a);
        }
    }
    fn victim(&mut self, _: &Cache) -> Option<Victim> {
        self.0.peek().map(|(_, a)| Victim::Action(a))
    }
}

/// Go's trim interval and cutoff (`cmd/go/internal/cache`: trimInterval,
/// trimLimit, plus the hour mtimes may lag), in milliseconds.
const GO_TRIM_EVERY_MS: i64 = 24 * 3600 * 1000;
const GO_TRIM_LIMIT_MS: i64 = (5 * 24 + 1) * 3600 * 1000;

/// `go-age`: actions keyed by their last use; Go's trim once a day.
struct GoAge {
    heap: Heap<(i64, u32)>,
    last_trim: Option<i64>,
    cutoff: Option<i64>,
}

impl GoAge {
    fn new(n: usize) -> GoAge {
        GoAge {
            heap: Heap::new(n),
            last_trim: None,
            cutoff: None,
        }
    }
}

impl Policy for GoAge {
    fn hit(&mut self, a: u32, _o: u32, at: &At) {
        self.heap.set(a, (at.t, at.index));
    }
    fn insert(&mut self, a: u32, o: u32, at: &At) {
        self.hit(a, o, at);
    }
    fn removed(&mut self, r: &Removed) {
        for &a in &r.actions {
            self.heap.remove(a);
        }
    }
    fn victim(&mut self, _: &Cache) -> Option<Victim> {
        None
    }
    fn expired(&mut self, now: i64) -> Option<Victim> {
        let last = *self.last_trim.get_or_insert(now);
        if self.cutoff.is_none() {
            if now - last < GO_TRIM_EVERY_MS {
                return None;
            }
            self.last_trim = Some(now);
            self.cutoff = Some(now - GO_TRIM_LIMIT_MS);
        }
        match (self.heap.peek(), self.cutoff) {
            (Some(((t, _), a)), Some(c)) if t < c => Some(Victim::Action(a)),
            _ => {
                self.cutoff = None;
                None
            }
        }
    }
}

/// `gdsf-classic` and `gd-cost-classic`.
struct GreedyDual {
    heap: Heap<(Prio, u32)>,
    hits: Vec<u32>,
    inflation: f64,
    by_cost: bool,
}

impl GreedyDual {
    fn new(n: usize, by_cost: bool) -> GreedyDual {
        GreedyDual {
            heap: Heap::new(n),
            hits: vec![0; n],
            inflation: 0.0,
            by_cost,
        }
    }

    fn set(&mut self, a: u32, at: &At) {
        let cost = if self.by_cost { at.cost } else { 1.0 };
        let h = self.inflation + f64::from(self.hits[a as usize]) * cost / at.size.max(1) as f64;
        self.heap.set(a, (Prio(h), at.index));
    }
}

impl Policy for GreedyDual {
    fn hit(&mut self, a: u32, _o: u32, at: &At) {
        self.hits[a as usize] = self.hits[a as usize].saturating_add(1);
        self.set(a, at);
    }
    fn insert(&mut self, a: u32, _o: u32, at: &At) {
        self.hits[a as usize] = 1;
        self.set(a, at);
    }
    fn removed(&mut self, r: &Removed) {
        for &a in &r.actions {
            self.heap.remove(a);
        }
    }
    fn victim(&mut self, _: &Cache) -> Option<Victim> {
        let ((Prio(h), _), a) = self.heap.peek()?;
        self.inflation = self.inflation.max(h);
        Some(Victim::Action(a))
    }
}

/// `belady`: actions keyed so that the farthest next request comes first
/// (never requested again: first of all), ties by action.
struct Belady(Heap<(u32, u32)>);

impl Policy for Belady {
    fn hit(&mut self, a: u32, _o: u32, at: &At) {
        self.0.set(a, (u32::MAX - at.next, a));
    }
    fn insert(&mut self, a: u32, o: u32, at: &At) {
        self.hit(a, o, at);
    }
    fn removed(&mut self, r: &Removed) {
        for &a in &r.actions {
            self.0.remove(a);
        }
    }
    fn victim(&mut self, _: &Cache) -> Option<Victim> {
        self.0.peek().map(|(_, a)| Victim::Action(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for p in PolicyName::ALL {
            assert_eq!(PolicyName::parse(p.as_str()), Some(p));
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                serde_json::Value::String(p.as_str().into())
            );
        }
        assert_eq!(PolicyName::parse("fifo"), None);
    }
}
