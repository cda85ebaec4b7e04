//! What every eviction policy the replay drives implements, and what it is
//! told about each request: the contract between [`super::replay`] and the
//! policies ([`super::policies`], `sim::batch`, [`super::schedule`]),
//! kept apart so that none of them imports another for it.

use super::cache::{Cache, Removed, Victim};

/// What a policy knows about the request being replayed.
#[derive(Clone, Copy, Debug)]
pub struct At {
    /// The request's index in the workload (its logical time).
    pub index: u32,
    /// Unix milliseconds.
    pub t: i64,
    /// The index of the next request of the same action (offline policies
    /// only; [`super::workload::NONE`] when none).
    pub next: u32,
    /// The action's rebuild seconds, as the policies decide with them
    /// (`Workload::decision_cost`).
    pub cost: f64,
    /// The action's block plus its output's allocated bytes.
    pub size: u64,
}

/// An eviction policy.
pub trait Policy: Send {
    /// Action `a` (naming `o`) was requested and is cached.
    fn hit(&mut self, a: u32, o: u32, at: &At);
    /// Action `a` naming `o` was stored.
    fn insert(&mut self, a: u32, o: u32, at: &At);
    /// Action `a`, cached and naming `o`, was stored again (go rebuilt
    /// what it is kept beside and wrote it afresh): a use that is no
    /// lookup. By default the policy takes it as a hit.
    fn stored_again(&mut self, a: u32, o: u32, at: &At) {
        self.hit(a, o, at);
    }
    /// Entries left the cache (chosen by the policy or not).
    fn removed(&mut self, r: &Removed);
    /// The next victim while the cache is over budget.
    fn victim(&mut self, cache: &Cache) -> Option<Victim>;
    /// A victim that must go by age before the request at `now` (Unix
    /// milliseconds), whatever the budget.
    fn expired(&mut self, _now: i64) -> Option<Victim> {
        None
    }
    /// After the cache is back under budget: the rest of the batch being
    /// evicted (batch policies evict below the budget, to a headroom).
    fn rest_of_batch(&mut self) -> Option<Victim> {
        None
    }
    /// True for a policy that evicts only where the real trim runs: as a
    /// `gocache prog` session closes after storing anything, and every
    /// [`crate::limits::PROG_EVICT_EVERY`] bytes stored, where the
    /// workload marks its sessions; false: after every request.
    fn lazy(&self) -> bool {
        false
    }
}
