//! Replaying a workload through a policy under a budget.

use super::FixedBytes;
use super::cache::{Cache, Removed, Victim};
use super::evict::{At, Policy};
use super::workload::{NONE, Request, Workload};
use crate::limits::PROG_EVICT_EVERY;

/// How often (in requests) a replay reports progress.
pub const PROGRESS_EVERY: u64 = 1 << 16;

/// Go's age limit, 5 days, in milliseconds: an action entry unused this
/// long at the end of a replay counts as stale.
const STALE_MS: i64 = 5 * 24 * 3600 * 1000;

/// What one replay achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// Lookups that hit.
    pub hits: u64,
    /// Allocated bytes of the outputs those hits returned.
    pub byte_hits: u64,
    /// Rebuild seconds those hits saved.
    pub saved_s: f64,
    /// The most bytes held after any request (within the budget, but for
    /// policies without one).
    pub peak_bytes: u64,
    /// Evictions the policy chose (an output with its actions counts once).
    pub evictions: u64,
    /// Action entries held at the end that had been unused for 5 days.
    pub stale_actions: u64,
    /// Lookups not made: go asks them only after a hit of another action
    /// (its compiler output kept beside it), and this replay missed that
    /// action. Neither hits nor misses.
    pub not_asked: u64,
    /// The rebuild seconds those lookups would have saved had go made
    /// them and hit (the trace's hits among them): not lost, since go
    /// rebuilt the action they follow instead, and that miss is counted.
    pub not_asked_s: f64,
}

/// Replays `w` through `policy`, keeping at most `budget` bytes after
/// each request (`u64::MAX`: unbounded). `progress` is called with a
/// number of requests done, now and then.
pub fn replay(
    w: &Workload,
    policy: &mut dyn Policy,
    budget: u64,
    progress: &dyn Fn(u64),
) -> Outcome {
    replay_growing(w, policy, budget, FixedBytes::default(), progress)
}

/// [`replay`] in a cache directory whose other bytes grow as `fixed`
/// says: `budget` is what the entries may take at the first request, and
/// what they may take shrinks by as much as the fixed bytes grow.
pub fn replay_growing(
    w: &Workload,
    policy: &mut dyn Policy,
    budget: u64,
    fixed: FixedBytes,
    progress: &dyn Fn(u64),
) -> Outcome {
    let n = w.requests.len();
    let mut cache = Cache::new(w);
    let mut removed = Removed::default();
    let mut out = Outcome::default();
    let mut last_use = vec![i64::MIN; w.actions()];
    let mut since = 0;
    // Where the real trim runs, for a lazy policy (see `Policy::lazy`):
    // the bytes the session stored since its last check, whether it stored
    // anything, and the sessions' ends still ahead.
    let lazy = policy.lazy();
    let (mut stored, mut session_stored) = (0u64, false);
    let mut ends = w.ends.iter().copied().peekable();
    // Per action: its last lookup missed (go then rebuilt it, and did not
    // ask for what it shows only after a hit).
    let mut missed = vec![false; w.actions()];
    let later = Later::new(w);
    for (i, r) in w.requests.iter().enumerate() {
        while let Some(v) = policy.expired(r.t) {
            if !evict(&mut cache, policy, &mut removed, v) {
                debug_assert!(false, "policy expired an entry not cached: {v:?}");
                break;
            }
        }
        let (a, o) = (r.action, r.output);
        let held = o != NONE && cache.names(a) == o;
        let asked = r.flags & Request::AFTER_HIT == 0
            || w.asked_after
                .get(&(i as u32))
                .is_none_or(|&p| !missed[p as usize]);
        if !asked {
            out.not_asked += 1;
            if r.real_hit() {
                out.not_asked_s += w.cost[a as usize];
            }
        } else if r.is_access() {
            missed[a as usize] = !(held || r.warm());
        }
        if asked && r.is_access() && (held || r.warm()) {
            out.hits += 1;
            out.byte_hits += w.size(o);
            out.saved_s += w.cost[a as usize];
        }
        let at = At {
            index: i as u32,
            t: r.t,
            next: w.next[i],
            cost: w.decision_cost(a).0,
            size: w.block + w.size(o),
        };
        // A lookup go skips because it rebuilt the action the entry is
        // kept beside: that rebuild wrote the entry afresh (its compiler
        // output, its list of source files), as a put.
        let rewritten = !asked && o != NONE;
        let mut inserted = None;
        if asked && held {
            policy.hit(a, o, &at);
        } else if (asked || rewritten) && o != NONE && (held || r.stores()) {
            inserted = store(w, &mut cache, policy, &mut removed, a, o, &at);
        }
        if asked || rewritten {
            last_use[a as usize] = r.t;
        }
        // A miss where the trace hit: go's rebuild writes what it keeps
        // beside the action (where the trace missed too, its puts follow).
        if asked && r.is_access() && r.real_hit() && !held && !r.warm() {
            for &(k, ok) in w.written_with.get(&a).into_iter().flatten() {
                let at = At {
                    next: later.next(k, i),
                    cost: w.decision_cost(k).0,
                    size: w.block + w.size(ok),
                    ..at
                };
                let bytes = store(w, &mut cache, policy, &mut removed, k, ok, &at);
                inserted = Some(inserted.unwrap_or(0) + bytes.unwrap_or(0));
                last_use[k as usize] = r.t;
            }
        }
        if let Some(bytes) = inserted {
            stored += bytes;
            session_stored = true;
        }
        let mut check = !lazy || stored >= PROG_EVICT_EVERY;
        if check {
            stored = 0;
        }
        while ends.peek().is_some_and(|&e| e as usize <= i + 1) {
            ends.next();
            check |= std::mem::take(&mut session_stored);
            // The next go command's prog counts its puts from 0.
            stored = 0;
        }
        let budget = budget.saturating_sub(fixed.growth_at(i, n));
        out.evictions += evict_over(&mut cache, policy, &mut removed, check.then_some(budget));
        out.peak_bytes = out.peak_bytes.max(cache.bytes());
        since += 1;
        if since == PROGRESS_EVERY {
            progress(since);
            since = 0;
        }
    }
    progress(since);
    let end = w.requests.last().map_or(0, |r| r.t);
    out.stale_actions = (0..w.actions() as u32)
        .filter(|&a| cache.names(a) != NONE && last_use[a as usize] < end - STALE_MS)
        .count() as u64;
    out
}

/// Stores `o` under `a` as a put does: a use of what is cached already
/// ([`Policy::stored_again`]), else an insert (where `a` names another
/// output, that leaves first). The bytes inserted; `None` when it was
/// cached.
fn store(
    w: &Workload,
    cache: &mut Cache,
    policy: &mut dyn Policy,
    removed: &mut Removed,
    a: u32,
    o: u32,
    at: &At,
) -> Option<u64> {
    if cache.names(a) == o {
        policy.stored_again(a, o, at);
        return None;
    }
    if cache.names(a) != NONE {
        evict(cache, policy, removed, Victim::Action(a));
    }
    cache.insert(a, o);
    policy.insert(a, o, at);
    Some(w.size(o))
}

/// Where the entries go writes beside a rebuilt action
/// ([`Workload::written_with`]) are requested next, for the offline
/// policies: they are stored at a request of another action.
struct Later {
    /// Per action kept beside another: its requests' indices, ascending.
    at: std::collections::HashMap<u32, Vec<u32>>,
}

impl Later {
    fn new(w: &Workload) -> Later {
        let mut at: std::collections::HashMap<u32, Vec<u32>> = w
            .written_with
            .values()
            .flatten()
            .map(|&(k, _)| (k, Vec::new()))
            .collect();
        if !at.is_empty() {
            for (i, r) in w.requests.iter().enumerate() {
                if let Some(v) = at.get_mut(&r.action) {
                    v.push(i as u32);
                }
            }
        }
        Later { at }
    }

    /// The first request of `k` after request `i` ([`NONE`]: none).
    fn next(&self, k: u32, i: usize) -> u32 {
        let Some(v) = self.at.get(&k) else {
            return NONE;
        };
        let p = v.partition_point(|&j| j as usize <= i);
        v.get(p).copied().unwrap_or(NONE)
    }
}

/// Evicts `v` and tells the policy what left; false when nothing did.
fn evict(cache: &mut Cache, policy: &mut dyn Policy, removed: &mut Removed, v: Victim) -> bool {
    cache.evict(v, removed);
    policy.removed(removed);
    !removed.actions.is_empty()
}

/// Evicts the policy's victims while the cache is over `budget` (`None`:
/// no check at this request), then the rest of the batch it is evicting;
/// returns how many it chose.
fn evict_over(
    cache: &mut Cache,
    policy: &mut dyn Policy,
    removed: &mut Removed,
    budget: Option<u64>,
) -> u64 {
    let mut n = 0;
    while budget.is_some_and(|b| cache.bytes() > b) {
        let Some(v) = policy.victim(cache) else {
            break;
        };
        if !evict(cache, policy, removed, v) {
            // A victim that is not cached: a policy out of step with the
            // cache. Stop rather than loop; tests catch it.
            debug_assert!(false, "policy named an entry not cached: {v:?}");
            break;
        }
        n += 1;
    }
    while let Some(v) = policy.rest_of_batch() {
        if !evict(cache, policy, removed, v) {
            debug_assert!(false, "policy named an entry not cached: {v:?}");
            break;
        }
        n += 1;
    }
    n
}
