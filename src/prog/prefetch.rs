//! Prefetching a session manifest's entries into level one
//! ([`crate::remote::manifest`]): the plan, the threads that work it, and
//! how a get that go sends meanwhile meets them.
//!
//! A warm machine needs no manifest: every entry go asks for is in level
//! one, or is one go never stores (the link of `go build -o`), which the
//! store was asked for once and is answered without asking since
//! ([`super::books::Absent`]). So the manifest is read only at the first
//! sign that level one lacks something ([`Prefetch::local_miss`]): a local
//! miss the store may answer. Until then the prefetch's thread waits, and
//! a warm build makes no request of the store for it (nor, at close,
//! writes a manifest it never read; see `RemoteState::drain`). At the
//! sign the thread reads the manifest of the session's build key (a GET;
//! go is answered meanwhile, its misses fetched as ever) and plans if one
//! of the misses so far is of an entry the manifest names (a cold
//! machine, or one that lost entries to a trim, `go clean` or a partly
//! restored CI cache); if none is (an edit: the misses are new actions),
//! it waits for one that is. The plan queues the manifest's entries that
//! level one lacks, in order, up to [`PrefetchOptions`]' bounds; then the
//! thread and [`PrefetchOptions::workers`]` - 1` more fetch them, each as
//! a get's fetch does (the action entry, then its output, verified, into
//! a temp file put into place only when it checks out). A get go sends
//! meanwhile finds a prefetched entry in level one (a local hit). For one
//! not fetched yet, go's get [`Prefetch::claim`]s it: queued, it is taken
//! off the plan and fetched for go at once; in flight, the get waits for
//! that fetch (bounded by the store's timeouts, as its own fetch would be)
//! and then reads level one, so no entry is downloaded twice.
//!
//! A store that fails pauses the tier as a fetch's failure does: the plan
//! is dropped, and go's gets go on as without a manifest. At close the
//! prefetch is cancelled: nothing more is started, and downloads in flight
//! stop at their next write (their temp files removed).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::protocol::lock;
use crate::layout::Id;
use crate::remote::manifest::Manifest;

/// How much a session prefetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefetchOptions {
    /// Bytes of outputs (as their lengths), at most.
    pub max_bytes: u64,
    /// Entries, at most.
    pub max_entries: usize,
    /// Fetches at once.
    pub workers: usize,
}

impl Default for PrefetchOptions {
    fn default() -> PrefetchOptions {
        PrefetchOptions {
            max_bytes: 1 << 30,
            max_entries: 20_000,
            workers: 16,
        }
    }
}

/// Where an action of the plan is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Queued,
    /// A prefetch thread is fetching it.
    InFlight,
    /// Go's get took it off the plan.
    Taken,
    /// In level one, put there by the prefetch; not asked for by go yet.
    Fetched,
    /// Fetched and then asked for by go.
    Used,
    /// Not fetched (gone from the store, already local, a failure).
    Skipped,
}

#[derive(Default)]
struct Plan {
    queue: VecDeque<Id>,
    slots: HashMap<Id, Slot>,
    /// The misses while the manifest was being read (the first
    /// [`EARLY_MAX`]): whether one is named decides the plan.
    early: Vec<Id>,
}

/// Misses kept while the manifest is read: a cold machine's first few are
/// named already.
const EARLY_MAX: usize = 256;

/// What a get should do about an action (see [`Prefetch::claim`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// Fetch it as ever.
    Fetch,
    /// The prefetch just brought it: read level one.
    Arrived,
}

/// When the manifest is read and the plan made ([`Prefetch::local_miss`]):
/// no sign yet, nothing read.
const IDLE: u8 = 0;
/// A local miss came: the manifest is being read.
const READING: u8 = 1;
/// Read; the plan waits for a local miss of an entry it names.
const WATCHING: u8 = 2;
/// Plan now (a local miss said level one lacks something), or planned, or
/// nothing to plan from.
const PLANNING: u8 = 3;

/// A session's prefetch.
#[derive(Default)]
pub(super) struct Prefetch {
    plan: Mutex<Plan>,
    changed: Condvar,
    /// [`IDLE`], [`READING`], [`WATCHING`] or [`PLANNING`].
    trigger: AtomicU8,
    /// The actions the manifest names, once read.
    named: std::sync::OnceLock<std::collections::HashSet<Id>>,
    /// Set at close, or when the store fails: nothing more starts.
    pub(super) stop: AtomicBool,
    /// Set at close: downloads in flight stop.
    pub(super) cancel: AtomicBool,
    /// Threads still working.
    running: AtomicUsize,
    /// The manifest's entries queued (those level one lacked).
    pub(super) planned: AtomicU64,
    /// Entries fetched into level one, and their bytes.
    pub(super) fetched: AtomicU64,
    pub(super) fetched_bytes: AtomicU64,
    /// Of those, the ones go asked for.
    pub(super) used: AtomicU64,
    /// Not fetched: gone from the store, or refused, or failed.
    pub(super) missed: AtomicU64,
    /// Errors and refusals among those.
    pub(super) failed: AtomicU64,
}

impl Prefetch {
    /// Queues the manifest's entries that level one lacks (`local` says
    /// which it has), in order, within `opts`' bounds; none that a get has
    /// taken already. On a warm machine nothing is queued and no thread
    /// starts. `local` is asked before the plan is locked, so a get never
    /// waits on it.
    pub(super) fn plan(
        &self,
        m: &Manifest,
        opts: &PrefetchOptions,
        local: impl Fn(Id) -> bool,
    ) -> usize {
        let mut wanted = Vec::new();
        let mut bytes = 0u64;
        for e in &m.entries {
            if wanted.len() >= opts.max_entries {
                break;
            }
            if bytes.saturating_add(e.size) > opts.max_bytes || local(e.action) {
                continue;
            }
            wanted.push(e.action);
            bytes += e.size;
        }
        let mut p = lock(&self.plan);
        for action in wanted {
            if let std::collections::hash_map::Entry::Vacant(v) = p.slots.entry(action) {
                v.insert(Slot::Queued);
                p.queue.push_back(action);
            }
        }
        let n = p.queue.len();
        self.planned.store(n as u64, Ordering::Relaxed);
        n
    }

    /// Go's get of `action` missed level one, and the store may have it
    /// (called for every such miss, before it is fetched): the sign the
    /// manifest's read waits for, when it is the first, and the plan, when
    /// it is of an entry the manifest names. One atomic load once the plan
    /// is made, two and a set lookup while it waits for a named miss.
    pub(super) fn local_miss(&self, action: Id) {
        match self.trigger.load(Ordering::Acquire) {
            PLANNING => return,
            WATCHING if !self.named.get().is_some_and(|n| n.contains(&action)) => return,
            _ => {}
        }
        let mut p = lock(&self.plan);
        match self.trigger.load(Ordering::Acquire) {
            IDLE => {
                self.trigger.store(READING, Ordering::Release);
                p.early.push(action);
                self.changed.notify_all();
            }
            READING if p.early.len() < EARLY_MAX => p.early.push(action),
            // Named (checked above; the set never changes once made).
            WATCHING => {
                self.trigger.store(PLANNING, Ordering::Release);
                self.changed.notify_all();
            }
            _ => {}
        }
    }

    /// Waits for the first sign that level one lacks something: true when
    /// it came (read the manifest now), false when the prefetch stopped
    /// first (close, on a warm machine).
    pub(super) fn wait_for_miss(&self) -> bool {
        self.wait_until(lock(&self.plan), |t| t != IDLE)
    }

    /// The manifest `m` was read: returns once it is time to plan (true),
    /// or when the prefetch stops first (false; at close, or the store
    /// failed). Returns at once when a miss while it was read is of an
    /// entry it names.
    pub(super) fn wait_for_sign(&self, m: &Manifest) -> bool {
        let named = self
            .named
            .get_or_init(|| m.entries.iter().map(|e| e.action).collect());
        let mut p = lock(&self.plan);
        if matches!(self.trigger.load(Ordering::Acquire), IDLE | READING) {
            let early = std::mem::take(&mut p.early);
            let next = if early.iter().any(|a| named.contains(a)) {
                PLANNING
            } else {
                WATCHING
            };
            self.trigger.store(next, Ordering::Release);
        }
        self.wait_until(p, |t| t == PLANNING)
    }

    /// Waits, holding `p` between wake-ups, until the trigger is one
    /// `reached` accepts (true) or the prefetch stops (false).
    fn wait_until(
        &self,
        mut p: std::sync::MutexGuard<'_, Plan>,
        reached: impl Fn(u8) -> bool,
    ) -> bool {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            if reached(self.trigger.load(Ordering::Acquire)) {
                return true;
            }
            p = self
                .changed
                .wait(p)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// There is no manifest to plan from (none, or unreadable): later
    /// misses need not look.
    pub(super) fn no_plan(&self) {
        self.trigger.store(PLANNING, Ordering::Release);
    }

    /// A thread starts working the plan.
    pub(super) fn enter(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    /// A thread is done.
    pub(super) fn leave(&self) {
        let _guard = lock(&self.plan);
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// The next action to prefetch, now in flight; `None` when the plan
    /// is done or stopped.
    pub(super) fn next(&self) -> Option<Id> {
        let mut p = lock(&self.plan);
        while !self.stop.load(Ordering::Relaxed) {
            let action = p.queue.pop_front()?;
            if let Some(slot) = p.slots.get_mut(&action)
                && *slot == Slot::Queued
            {
                *slot = Slot::InFlight;
                return Some(action);
            }
        }
        None
    }

    /// A prefetch of `action` ended: in level one (`fetched`) or not.
    pub(super) fn done(&self, action: Id, fetched: bool) {
        let mut p = lock(&self.plan);
        p.slots.insert(
            action,
            if fetched {
                Slot::Fetched
            } else {
                Slot::Skipped
            },
        );
        self.changed.notify_all();
    }

    /// Stops the plan: nothing more starts (the store failed, or close).
    pub(super) fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut p = lock(&self.plan);
        for a in std::mem::take(&mut p.queue) {
            p.slots.insert(a, Slot::Skipped);
        }
        self.changed.notify_all();
    }

    /// Go's get of `action` missed level one: take it off the plan
    /// ([`Claim::Fetch`]: fetch it now), or wait for the prefetch that
    /// has it in flight ([`Claim::Arrived`]: level one may hold it now).
    pub(super) fn claim(&self, action: Id) -> Claim {
        let mut p = lock(&self.plan);
        loop {
            match p.slots.get(&action).copied() {
                Some(Slot::Taken | Slot::Skipped) => return Claim::Fetch,
                // Queued, or not planned (yet: a get before the manifest
                // came must not be fetched twice).
                None | Some(Slot::Queued) => {
                    p.slots.insert(action, Slot::Taken);
                    return Claim::Fetch;
                }
                Some(Slot::Fetched | Slot::Used) => return Claim::Arrived,
                Some(Slot::InFlight) => {
                    // Each prefetch ends within the store's timeouts; the
                    // loop rechecks after any change.
                    p = self
                        .changed
                        .wait_timeout(p, Duration::from_secs(1))
                        .unwrap()
                        .0;
                }
            }
        }
    }

    /// Go asked for `action` and level one had it: counts a prefetched
    /// entry as used, once. Cheap when nothing was prefetched.
    pub(super) fn note_hit(&self, action: Id) {
        if self.fetched.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut p = lock(&self.plan);
        if let Some(slot) = p.slots.get_mut(&action)
            && *slot == Slot::Fetched
        {
            *slot = Slot::Used;
            self.used.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// At close: stops the plan, cancels downloads in flight, and waits
    /// for the threads until `deadline` (a thread blocked on the network
    /// past it is left to end with the process).
    pub(super) fn cancel(&self, deadline: Instant) {
        self.cancel.store(true, Ordering::Relaxed);
        self.halt();
        let mut p = lock(&self.plan);
        while self.running.load(Ordering::SeqCst) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            p = self.changed.wait_timeout(p, left).unwrap().0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::manifest::{BuildKey, Manifest};

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    /// A manifest of actions 1, 2 and 3, 10 bytes each.
    fn three() -> Manifest {
        Manifest::merge(
            BuildKey::new("k"),
            &[
                (id(1), id(11), 10),
                (id(2), id(12), 10),
                (id(3), id(13), 10),
            ],
            None,
        )
    }

    #[test]
    fn a_get_takes_a_queued_entry_and_waits_for_one_in_flight() {
        let m = three();
        let p = std::sync::Arc::new(Prefetch::default());
        let opts = PrefetchOptions {
            max_bytes: 25,
            ..PrefetchOptions::default()
        };
        assert_eq!(
            p.plan(&m, &opts, |_| false),
            2,
            "the byte bound leaves the third"
        );
        assert_eq!(p.next(), Some(id(1)));
        assert_eq!(p.claim(id(2)), Claim::Fetch, "queued: the get takes it");
        assert_eq!(p.next(), None, "taken entries are not prefetched");
        assert_eq!(p.claim(id(3)), Claim::Fetch, "not planned");
        assert_eq!(
            p.plan(&m, &PrefetchOptions::default(), |_| false),
            0,
            "all taken"
        );
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || p2.claim(id(1)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "in flight: the get waits");
        p.fetched.fetch_add(1, Ordering::Relaxed);
        p.done(id(1), true);
        assert_eq!(waiter.join().unwrap(), Claim::Arrived);
        p.note_hit(id(1));
        p.note_hit(id(1));
        assert_eq!(p.used.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn what_level_one_has_is_not_planned_nor_counted_against_the_bound() {
        let m = three();
        let p = Prefetch::default();
        let opts = PrefetchOptions {
            max_bytes: 20,
            ..PrefetchOptions::default()
        };
        assert_eq!(p.plan(&m, &opts, |a| a == id(2)), 2);
        assert_eq!(p.planned.load(Ordering::Relaxed), 2);
        assert_eq!(
            (p.next(), p.next(), p.next()),
            (Some(id(1)), Some(id(3)), None)
        );
        let warm = Prefetch::default();
        assert_eq!(warm.plan(&m, &opts, |_| true), 0, "a warm machine: nothing");
    }

    #[test]
    fn halting_drops_the_plan() {
        let m = Manifest::merge(BuildKey::new("k"), &[(id(1), id(11), 10)], None);
        let p = Prefetch::default();
        p.plan(&m, &PrefetchOptions::default(), |_| false);
        p.halt();
        assert_eq!(p.next(), None);
        assert_eq!(p.claim(id(1)), Claim::Fetch);
        p.cancel(Instant::now() + Duration::from_millis(10));
    }

    #[test]
    fn a_warm_machine_reads_no_manifest() {
        let p = std::sync::Arc::new(Prefetch::default());
        let q = p.clone();
        let waiter = std::thread::spawn(move || q.wait_for_miss());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "no miss: nothing to read");
        p.cancel(Instant::now());
        assert!(!waiter.join().unwrap(), "closed: nothing read");
    }

    #[test]
    fn the_plan_waits_for_a_miss_of_an_entry_the_manifest_names() {
        let m = three();
        // A cold machine: go missed an entry the manifest names while it
        // was being read.
        let cold = Prefetch::default();
        cold.local_miss(id(1));
        assert!(cold.wait_for_miss(), "the first miss: read the manifest");
        cold.local_miss(id(9));
        assert!(cold.wait_for_sign(&m), "a named miss while reading: plan");

        // An edit: the misses are new actions, which the manifest does not
        // name; the read comes, the plan does not, and close ends the wait.
        let edit = std::sync::Arc::new(Prefetch::default());
        edit.local_miss(id(9));
        assert!(edit.wait_for_miss());
        let q = edit.clone();
        let waiter = std::thread::spawn(move || q.wait_for_sign(&three()));
        while edit.trigger.load(Ordering::Acquire) != WATCHING {
            std::thread::yield_now();
        }
        edit.local_miss(id(8));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "entries it does not name: no sign");
        edit.cancel(Instant::now());
        assert!(!waiter.join().unwrap(), "closed: no plan");

        // Level one lost an entry the manifest names, missed after the
        // read: the plan comes at go's miss of it.
        let lost = std::sync::Arc::new(Prefetch::default());
        lost.local_miss(id(9));
        let q = lost.clone();
        let waiter = std::thread::spawn(move || q.wait_for_sign(&three()));
        while lost.trigger.load(Ordering::Acquire) != WATCHING {
            std::thread::yield_now();
        }
        lost.local_miss(id(2));
        assert!(waiter.join().unwrap(), "a named entry missed: plan");
        assert_eq!(lost.claim(id(2)), Claim::Fetch, "go's get fetches its own");
        assert_eq!(lost.plan(&m, &PrefetchOptions::default(), |_| false), 2);
    }

    #[test]
    fn without_a_manifest_a_miss_looks_for_nothing() {
        let p = Prefetch::default();
        p.no_plan();
        p.local_miss(id(1));
        assert!(p.named.get().is_none());
        assert_eq!(p.trigger.load(Ordering::Relaxed), PLANNING);
    }
}
