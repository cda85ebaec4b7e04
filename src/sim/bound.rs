//! The upper bound: PFOO-L from Berger, Beckmann and Harchol-Balter,
//! "Practical Bounds on Optimal Caching with Variable Object Sizes"
//! (SIGMETRICS 2018), adapted to Go's two-part entries.
//!
//! # The argument
//!
//! Time is the request index `0..N`; after every request a replayed cache
//! holds at most `C` bytes, so over the whole trace it spends at most
//! `C × N` byte-steps of space-time. A request at `i` for action `a`
//! naming output `o` can only hit if `a` stayed cached since the previous
//! request of `a` (at `pa`: an entry is only stored at its own requests)
//! and `o` stayed cached since the previous request naming `o` (at `po`).
//! So the hit costs at least `block × (i − pa) + size(o) × (i − po)`
//! byte-steps, and these charges never overlap: each of `a`'s intervals
//! belongs to one request of `a`, each of `o`'s to one request naming `o`.
//! An entry larger than `C` never hits.
//!
//! Dropping every constraint but the total space-time leaves a fractional
//! knapsack: take hits in decreasing order of value per byte-step until
//! `C × N` is spent, the last one in part. Its value is at least that of
//! any policy's hits, with value 1 per hit (object hits), `size(o)` (byte
//! hits) or the action's rebuild seconds (seconds saved): three knapsacks,
//! three bounds, each on its own metric. Warm hits (entries made before
//! the trace began) are free for every policy and for the bound.
//!
//! Unlike Belady's MIN, which with variable sizes is only a good offline
//! heuristic, no policy can beat this bound; it is not always reachable.

use super::replay::Outcome;
use super::workload::{NONE, Workload};

/// A possible hit: its space-time and its values.
struct Item {
    cost: f64,
    size: u64,
    action: u32,
    output: u32,
}

/// The bound at each budget (bytes).
pub fn pfoo_l(w: &Workload, budgets: &[u64]) -> Vec<Outcome> {
    let mut prev_a = vec![NONE; w.actions()];
    let mut prev_o = vec![NONE; w.outputs()];
    let mut items = Vec::new();
    let mut warm = Outcome::default();
    for (i, r) in w.requests.iter().enumerate() {
        let (a, o) = (r.action as usize, r.output);
        if r.is_access() && r.warm() {
            warm.hits += 1;
            warm.byte_hits += w.size(o);
            warm.saved_s += w.cost[a];
        } else if r.is_access() && o != NONE {
            let (pa, po) = (prev_a[a], prev_o[o as usize]);
            if pa != NONE && po != NONE {
                let size = w.size(o);
                items.push(Item {
                    cost: w.block as f64 * (i - pa as usize) as f64
                        + size as f64 * (i - po as usize) as f64,
                    size: w.block + size,
                    action: r.action,
                    output: o,
                });
            }
        }
        prev_a[a] = i as u32;
        if o != NONE {
            prev_o[o as usize] = i as u32;
        }
    }
    let steps = w.requests.len() as f64;
    let mut out = vec![warm; budgets.len()];
    let metrics: [&dyn Fn(&Item) -> f64; 3] = [&|_| 1.0, &|it| w.size(it.output) as f64, &|it| {
        w.cost[it.action as usize]
    }];
    for (m, value) in metrics.iter().enumerate() {
        let mut order: Vec<(f64, u32)> = items
            .iter()
            .enumerate()
            .filter(|(_, it)| value(it) > 0.0)
            .map(|(k, it)| (value(it) / it.cost.max(f64::MIN_POSITIVE), k as u32))
            .collect();
        order.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        for (b, &budget) in budgets.iter().enumerate() {
            let mut space = budget as f64 * steps;
            let mut got = 0.0;
            for &(_, k) in &order {
                let it = &items[k as usize];
                if it.size > budget {
                    continue;
                }
                if it.cost <= space {
                    space -= it.cost;
                    got += value(it);
                } else {
                    got += value(it) * space / it.cost;
                    break;
                }
            }
            let o = &mut out[b];
            match m {
                0 => o.hits += got.floor() as u64,
                1 => o.byte_hits += got.floor() as u64,
                _ => o.saved_s += got,
            }
        }
    }
    for (o, &b) in out.iter_mut().zip(budgets) {
        o.peak_bytes = b;
    }
    out
}
