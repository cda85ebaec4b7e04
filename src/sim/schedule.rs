//! The lower bracket on the offline optimum: a feasible offline schedule.
//!
//! PFOO-L ([`super::bound`]) bounds what any policy can save from above,
//! but it may be loose: it lets hits share space-time fractionally and
//! charges an output only from its previous request. To tell a policy's
//! gap to the optimum from the bound's looseness, this module brackets
//! the optimum from below with schedules that a cache could actually run,
//! in the spirit of Berger et al.'s PFOO-U (SIGMETRICS 2018), but greedy
//! rather than a min-cost flow.
//!
//! # The greedy schedule
//!
//! Time is the state after each request, `0..N`. A hit on action `a` at
//! request `i` needs `a` cached, naming the request's output `o`, over
//! the states `pa..i` (after `a`'s previous request `pa`, which must have
//! left `a` naming `o` in the cache, through the state before `i`): an
//! *interval*. While `a` is cached its block is held, and `o`'s bytes are
//! held whenever at least one cached action names `o`, so an output's
//! occupancy is the union of its admitted intervals.
//!
//! The intervals are taken in decreasing order of rebuild seconds per
//! byte-step (PFOO-L's order: `block × (i − pa) + size(o) × (i − po)`,
//! `po` the previous request naming `o`), and one is admitted only where
//! the bytes it adds (its block over the whole interval, and `o`'s bytes
//! over the states no admitted interval of `o` already covers) keep every
//! state at or under the budget: a segment tree with range-add and
//! range-max answers that in O(log N) per piece.
//!
//! # Replaying it
//!
//! The admitted intervals are played by the ordinary replay
//! ([`super::replay::replay`]) through the [`Scheduled`] policy: an entry
//! whose interval from its current request was admitted is protected; any
//! other entry goes first when the cache is over budget (the farthest
//! next request first, as Belady). Because the admitted occupancy never
//! passes the budget, the replay never has to evict a protected entry
//! (it counts it if it does: [`Scheduled::forced`]), so every admitted hit
//! happens, and entries it keeps in spare room may hit too. The replay
//! enforces the budget after every request as for every policy, so the
//! schedule is feasible by construction and its outcome is a lower bound
//! on what the offline optimum saves.
//!
//! The lower bracket `gocache simulate` reports is the better (by rebuild
//! seconds saved) of this schedule and Belady's, both feasible.

use super::cache::{Cache, Removed, Victim};
use super::evict::{At, Policy};
use super::heap::Heap;
use super::replay::{Outcome, replay};
use super::workload::{NONE, Workload};

/// Range-add, range-max over `0..n` (a lazy segment tree).
pub struct SegTree {
    n: usize,
    max: Vec<u64>,
    add: Vec<u64>,
}

impl SegTree {
    /// All zeros over `0..n`.
    pub fn new(n: usize) -> SegTree {
        let n = n.max(1);
        SegTree {
            n,
            max: vec![0; 4 * n],
            add: vec![0; 4 * n],
        }
    }

    /// Adds `v` over `lo..=hi`.
    pub fn add(&mut self, lo: usize, hi: usize, v: u64) {
        self.add_at(1, 0, self.n - 1, lo, hi, v);
    }

    /// The largest value over `lo..=hi`.
    pub fn max(&self, lo: usize, hi: usize) -> u64 {
        self.max_at(1, 0, self.n - 1, lo, hi)
    }

    fn add_at(&mut self, k: usize, l: usize, r: usize, lo: usize, hi: usize, v: u64) {
        if hi < l || r < lo {
            return;
        }
        if lo <= l && r <= hi {
            self.max[k] += v;
            self.add[k] += v;
            return;
        }
        let m = (l + r) / 2;
        self.add_at(2 * k, l, m, lo, hi, v);
        self.add_at(2 * k + 1, m + 1, r, lo, hi, v);
        self.max[k] = self.add[k] + self.max[2 * k].max(self.max[2 * k + 1]);
    }

    fn max_at(&self, k: usize, l: usize, r: usize, lo: usize, hi: usize) -> u64 {
        if hi < l || r < lo {
            return 0;
        }
        if lo <= l && r <= hi {
            return self.max[k];
        }
        let m = (l + r) / 2;
        self.add[k]
            + self
                .max_at(2 * k, l, m, lo, hi)
                .max(self.max_at(2 * k + 1, m + 1, r, lo, hi))
    }
}

/// One possible hit: keep `action` (naming `output`) over the states
/// `from..to` (the request at `to` hits).
struct Interval {
    from: u32,
    to: u32,
    output: u32,
    value: f64,
    density: f64,
}

/// The intervals a hit needs, for rebuild seconds.
fn intervals(w: &Workload) -> Vec<Interval> {
    let mut prev_a = vec![NONE; w.actions()];
    let mut prev_o = vec![NONE; w.outputs()];
    let mut out = Vec::new();
    for (i, r) in w.requests.iter().enumerate() {
        let (a, o) = (r.action as usize, r.output);
        let pa = prev_a[a];
        if r.is_access() && !r.warm() && o != NONE && pa != NONE {
            let p = &w.requests[pa as usize];
            // `a` must be in the cache after `pa`, naming `o`.
            if p.output == o && p.stores() && w.cost[a] > 0.0 {
                let po = prev_o[o as usize].max(pa);
                let size = w.size(o);
                let st =
                    w.block as f64 * (i as u32 - pa) as f64 + size as f64 * (i as u32 - po) as f64;
                out.push(Interval {
                    from: pa,
                    to: i as u32,
                    output: o,
                    value: w.cost[a],
                    density: w.cost[a] / st.max(f64::MIN_POSITIVE),
                });
            }
        }
        prev_a[a] = i as u32;
        if o != NONE {
            prev_o[o as usize] = i as u32;
        }
    }
    out.sort_by(|x, y| {
        y.density
            .total_cmp(&x.density)
            .then(x.from.cmp(&y.from))
            .then(x.to.cmp(&y.to))
    });
    out
}

/// The greedy schedule under `budget` bytes: per request, whether the
/// entry it leaves in the cache is to be kept until its action's next
/// request; and the rebuild seconds the admitted hits save (warm hits
/// not counted).
pub fn greedy(w: &Workload, budget: u64) -> (Vec<bool>, f64) {
    greedy_of(w, &intervals(w), budget)
}

fn greedy_of(w: &Workload, items: &[Interval], budget: u64) -> (Vec<bool>, f64) {
    let n = w.requests.len();
    let mut keep = vec![false; n];
    let mut value = 0.0;
    let mut load = SegTree::new(n);
    // Per output: the disjoint, sorted state ranges (inclusive) its
    // admitted intervals cover.
    let mut covered: Vec<Vec<(u32, u32)>> = vec![Vec::new(); w.outputs()];
    let mut pieces = Vec::new();
    for it in items {
        let size = w.size(it.output);
        let (lo, hi) = (it.from, it.to - 1);
        if w.block + size > budget {
            continue;
        }
        let cov = &covered[it.output as usize];
        // The states of lo..=hi no admitted interval of the output covers.
        pieces.clear();
        let mut at = lo;
        let start = cov.partition_point(|&(_, e)| e < lo);
        for &(s, e) in &cov[start..] {
            if s > hi {
                break;
            }
            if s > at {
                pieces.push((at, s - 1));
            }
            at = at.max(e + 1);
        }
        if at <= hi {
            pieces.push((at, hi));
        }
        let fits = load.max(lo as usize, hi as usize) + w.block <= budget
            && pieces
                .iter()
                .all(|&(s, e)| load.max(s as usize, e as usize) + w.block + size <= budget);
        if !fits {
            continue;
        }
        load.add(lo as usize, hi as usize, w.block);
        for &(s, e) in &pieces {
            load.add(s as usize, e as usize, size);
        }
        let cov = &mut covered[it.output as usize];
        cov.push((lo, hi));
        cov.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(cov.len());
        for &(s, e) in cov.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *cov = merged;
        keep[lo as usize] = true;
        value += it.value;
    }
    (keep, value)
}

/// Plays a schedule: protects the entries it keeps, evicts the others
/// first (the farthest next request first).
pub struct Scheduled {
    keep: Vec<bool>,
    /// Actions keyed by (protected, farthest next request first).
    heap: Heap<(bool, u32, u32)>,
    /// Protected entries the replay had to evict (0 for a feasible
    /// schedule).
    pub forced: u64,
}

impl Scheduled {
    /// Plays `keep` (per request, from [`greedy`]) for `w`.
    pub fn new(w: &Workload, keep: Vec<bool>) -> Scheduled {
        Scheduled {
            keep,
            heap: Heap::new(w.actions()),
            forced: 0,
        }
    }
}

impl Policy for Scheduled {
    fn hit(&mut self, a: u32, _o: u32, at: &At) {
        let keep = self.keep[at.index as usize];
        self.heap.set(a, (keep, u32::MAX - at.next, a));
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
        let ((keep, _, _), a) = self.heap.peek()?;
        self.forced += u64::from(keep);
        Some(Victim::Action(a))
    }
}

/// The lower bracket at one budget: the greedy schedule replayed, and how
/// many protected entries the replay evicted (0 unless the schedule was
/// not feasible, which would be a bug).
pub fn lower(w: &Workload, budget: u64, progress: &dyn Fn(u64)) -> (Outcome, u64) {
    let (keep, _) = greedy(w, budget);
    let mut p = Scheduled::new(w, keep);
    let out = replay(w, &mut p, budget, progress);
    (out, p.forced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segment_tree_adds_and_finds_maxima_over_ranges() {
        let mut t = SegTree::new(10);
        t.add(0, 9, 1);
        t.add(2, 4, 5);
        t.add(4, 7, 3);
        assert_eq!(t.max(0, 9), 9);
        assert_eq!(t.max(0, 3), 6);
        assert_eq!(t.max(5, 9), 4);
        assert_eq!(t.max(8, 9), 1);
        assert_eq!(t.max(4, 4), 9);
        // Against a plain array.
        let mut naive = [0u64; 10];
        for (lo, hi, v) in [(0, 9, 1), (2, 4, 5), (4, 7, 3)] {
            for x in &mut naive[lo..=hi] {
                *x += v;
            }
        }
        for lo in 0..10 {
            for hi in lo..10 {
                assert_eq!(t.max(lo, hi), *naive[lo..=hi].iter().max().unwrap());
            }
        }
    }
}
