//! The simulator on traces with known answers.

use super::cache::{Cache, Removed, Victim};
use super::evict::At;
use super::synth_trace::{GenSpec, generate};
use super::*;
use crate::report::Silent;
use crate::trace::schema::{Event, TraceId};

const BLOCK: u64 = 4096;

/// Three hours in milliseconds: more than the batch policies' protection
/// window (grace plus Go's hour of mtime lag).
const APART: i64 = 3 * 3_600_000;

/// Replays `w` under byte budgets (not percentages).
fn sim(w: &Workload, budgets: &[u64], policies: &[PolicyName]) -> Report {
    let specs: Vec<SizeSpec> = budgets.iter().map(|&b| SizeSpec::Bytes(b)).collect();
    simulate(w, &specs, policies, 1, &Silent)
}

/// A trace of lookups by an unbounded cache: each action `k` names its
/// own output `k` of `size(k)` bytes (or `output(k)`, shared), costs
/// `cost(k)` seconds, and is looked up in the order given, [`APART`]
/// apart: the batch policies' protection window then covers only the
/// lookup at hand, as if each were a go command of its own.
fn lookups(
    order: &[u64],
    output: impl Fn(u64) -> u64,
    size: impl Fn(u64) -> u64,
    cost: impl Fn(u64) -> f64,
) -> Workload {
    let mut held = std::collections::HashSet::new();
    let mut ev = Vec::new();
    for (i, &k) in order.iter().enumerate() {
        let (t, a, o) = (i as i64 * APART, TraceId(k + 1), TraceId(output(k) + 1));
        if held.insert(k) {
            ev.push(Event::get_miss(t, a));
            ev.push(Event::put(t + 1, a, o, size(output(k)), Some(cost(k))));
        } else {
            ev.push(Event::get_hit(t, a, o, size(output(k))));
        }
    }
    Workload::from_events(BLOCK, ev.iter())
}

fn hits(r: &Report, b: usize, p: PolicyName) -> u64 {
    r.row(b, p).unwrap().outcome.hits
}

#[test]
fn lru_on_a_cycle_larger_than_the_budget_hits_nothing() {
    // 10 entries of 8 KiB (with their action blocks), a budget for 9.
    let order: Vec<u64> = (0..50).map(|i| i % 10).collect();
    let w = lookups(&order, |k| k, |_| 4096, |_| 1.0);
    assert_eq!(w.summary.trace_hits, 40);
    let r = sim(&w, &[9 * 8192], &PolicyName::ALL);
    assert_eq!(hits(&r, 0, PolicyName::LruGroups), 0);
    assert_eq!(hits(&r, 0, PolicyName::LruActions), 0);
    // Belady keeps 8 of the 10 across each lap: 8 hits a lap after the
    // first, and the first lap's eviction keeps one more.
    assert!(hits(&r, 0, PolicyName::Belady) >= 8 * 4, "{r:#?}");
    assert!(hits(&r, 0, PolicyName::Bound) >= hits(&r, 0, PolicyName::Belady));
    assert_eq!(r.unbounded.hits, 40);
    assert_eq!(r.unbounded.peak_bytes, 10 * 8192);
}

#[test]
fn a_cost_aware_policy_keeps_the_one_expensive_entry() {
    // A lap of 10 cheap entries and one that takes a minute to rebuild,
    // with room for 9: LRU keeps nothing it will need, gd-cost the
    // expensive one.
    let order: Vec<u64> = (0..20).flat_map(|_| 0..11).collect();
    let w = lookups(
        &order,
        |k| k,
        |_| 4096,
        |k| if k == 10 { 60.0 } else { 0.01 },
    );
    let r = sim(&w, &[9 * 8192], &PolicyName::ALL);
    let saved = |p| r.row(0, p).unwrap().outcome.saved_s;
    assert_eq!(hits(&r, 0, PolicyName::LruGroups), 0);
    assert!(saved(PolicyName::GdCostClassic) >= 19.0 * 60.0, "{r:#?}");
    assert!(saved(PolicyName::GdsfClassic) < saved(PolicyName::GdCostClassic));
    assert!(saved(PolicyName::Bound) >= saved(PolicyName::GdCostClassic));
    let lost = r.row(0, PolicyName::GdCostClassic).unwrap().lost_s;
    assert!((lost - (r.unbounded.saved_s - saved(PolicyName::GdCostClassic))).abs() < 1e-9);
}

#[test]
fn a_cost_policy_deciding_with_a_second_recording_is_charged_the_first() {
    // The same lap, but a second recording measured entry 3, not 10, as
    // the dear one: deciding with it, gd-cost keeps 3 and rebuilds 10 on
    // every lap, charged the minute this workload measured for 10; the
    // other policies, which weigh no seconds, replay as before.
    let order: Vec<u64> = (0..20).flat_map(|_| 0..11).collect();
    let dear = |d: u64| move |k: u64| if k == d { 60.0 } else { 0.01 };
    let own = || lookups(&order, |k| k, |_| 4096, dear(10));
    let mut w = own();
    let other = lookups(&order, |k| k, |_| 4096, dear(3));
    assert_eq!(w.decide_with(&other), 11);
    assert_eq!(w.summary.decided_with_other, Some(11));
    let policies = [
        PolicyName::GdCostClassic,
        PolicyName::GdCost,
        PolicyName::GdsfClassic,
    ];
    let (r, before) = (
        sim(&w, &[9 * 8192], &policies),
        sim(&own(), &[9 * 8192], &policies),
    );
    for p in [PolicyName::GdCostClassic, PolicyName::GdCost] {
        let (now, was) = (r.row(0, p).unwrap(), before.row(0, p).unwrap());
        assert!(was.lost_s < 60.0, "{p}: {was:?}");
        assert!(now.lost_s >= 19.0 * 60.0, "{p}: {now:?}");
        assert!(now.outcome.saved_s >= 19.0 * 0.01, "{p} kept 3: {now:?}");
    }
    let row = |r: &Report| r.row(0, PolicyName::GdsfClassic).unwrap().outcome;
    assert_eq!(row(&r), row(&before));
    assert_eq!(r.unbounded.saved_s, before.unbounded.saved_s);
    // A recording of other work shares no action: nothing is taken.
    let mut w = own();
    let unrelated = lookups(&[100, 101], |k| k, |_| 4096, |_| 5.0);
    assert_eq!(w.decide_with(&unrelated), 0);
    for a in 0..w.actions() as u32 {
        let i = a as usize;
        assert_eq!(w.decision_cost(a), (w.cost[i], w.measured[i]));
    }
}

#[test]
fn every_policy_replays_to_the_traces_own_hits_when_unbounded() {
    for seed in 1..=3 {
        let t = generate(&GenSpec::small(seed));
        let w = Workload::from_traces(std::slice::from_ref(&t));
        assert!(
            w.summary.duration_s < 5.0 * 86_400.0,
            "go-age must keep all"
        );
        let r = simulate(
            &w,
            &[SizeSpec::Percent(100.0), SizeSpec::Bytes(u64::MAX / 4)],
            &PolicyName::ALL,
            0,
            &Silent,
        );
        assert_eq!(r.unbounded.hits, w.summary.trace_hits);
        for b in &r.budgets {
            for row in &b.rows {
                assert_eq!(
                    row.outcome.hits, w.summary.trace_hits,
                    "seed {seed}, {} at {}",
                    row.policy, b.given
                );
                assert!(row.lost_s < 1e-6 * r.unbounded.saved_s, "{row:?}");
            }
        }
    }
}

/// A random trace: `n` actions with Zipf-like popularity; sizes and
/// sharing from `shape`.
fn random(seed: u64, n: u64, len: usize, shared: bool, sizes: bool) -> Workload {
    let mut rng = fastrand::Rng::with_seed(seed);
    let order: Vec<u64> = (0..len)
        .map(|_| ((rng.f64().powi(2) * n as f64) as u64).min(n - 1))
        .collect();
    let sz: Vec<u64> = (0..n)
        .map(|_| if sizes { 4096 * rng.u64(0..40) } else { 4096 })
        .collect();
    let costs: Vec<f64> = (0..n).map(|_| rng.f64() * 10.0).collect();
    lookups(
        &order,
        |k| if shared { k / 3 } else { k },
        |o| sz[o as usize],
        |k| costs[k as usize],
    )
}

#[test]
fn belady_is_never_beaten_with_equal_sizes_nor_the_bound_ever() {
    let online = [
        PolicyName::LruGroups,
        PolicyName::LruActions,
        PolicyName::GdsfClassic,
        PolicyName::GdCostClassic,
    ];
    for seed in 0..12 {
        let w = random(seed, 60, 1500, false, false);
        let fp = 60 * 8192;
        let r = sim(&w, &[fp / 10, fp / 4, fp / 2], &PolicyName::ALL);
        for b in 0..3 {
            let belady = r.row(b, PolicyName::Belady).unwrap().outcome;
            let bound = r.row(b, PolicyName::Bound).unwrap().outcome;
            for p in online {
                let o = r.row(b, p).unwrap().outcome;
                assert!(o.hits <= belady.hits, "seed {seed}: {p} beat belady");
                assert!(o.hits <= bound.hits && o.saved_s <= bound.saved_s + 1e-9);
            }
            assert!(belady.hits <= bound.hits);
        }
    }
    // Variable sizes, outputs shared by three actions: the bound holds on
    // every metric.
    for seed in 0..12 {
        let w = random(100 + seed, 90, 1500, true, true);
        let fp = simulate(&w, &[], &[], 1, &Silent).unbounded.peak_bytes;
        let r = sim(&w, &[fp / 10, fp / 4, fp / 2], &PolicyName::ALL);
        for b in 0..3 {
            let bound = r.row(b, PolicyName::Bound).unwrap().outcome;
            for row in r.budgets[b].rows.iter().filter(|r| r.has_budget) {
                let o = row.outcome;
                assert!(
                    o.hits <= bound.hits,
                    "seed {seed}: {} {o:?} {bound:?}",
                    row.policy
                );
                assert!(
                    o.byte_hits <= bound.byte_hits,
                    "seed {seed}: {}",
                    row.policy
                );
                assert!(
                    o.saved_s <= bound.saved_s + 1e-9,
                    "seed {seed}: {}",
                    row.policy
                );
                assert!(o.peak_bytes <= r.budgets[b].budget);
            }
        }
    }
}

#[test]
fn go_age_drops_what_went_unused_for_five_days_at_its_daily_trim() {
    // Entry 0 is used on day 0 only; entry 1 every day; entry 0 again on
    // day 7, by then trimmed; a budget does not matter.
    let day = 86_400_000i64;
    let mut ev = vec![
        Event::get_miss(0, TraceId(1)),
        Event::put(1, TraceId(1), TraceId(11), 4096, Some(1.0)),
        Event::get_miss(2, TraceId(2)),
        Event::put(3, TraceId(2), TraceId(12), 4096, Some(1.0)),
    ];
    for d in 1..=7 {
        ev.push(Event::get_hit(d * day, TraceId(2), TraceId(12), 4096));
    }
    ev.push(Event::get_hit(7 * day + 1, TraceId(1), TraceId(11), 4096));
    let w = Workload::from_events(BLOCK, ev.iter());
    let r = sim(&w, &[1 << 30, 1], &[PolicyName::GoAge]);
    for b in 0..2 {
        let row = r.row(b, PolicyName::GoAge).unwrap();
        assert!(!row.has_budget);
        assert_eq!(row.outcome.hits, 7, "entry 0's last lookup misses");
        assert_eq!(row.outcome.peak_bytes, 2 * 8192);
    }
}

#[test]
fn lru_groups_keeps_an_old_action_whose_output_is_in_use_and_lru_actions_does_not() {
    // Actions 0..8 name one empty output; 0 is used once, long ago, the
    // others all the time; entry 9 (40 KiB) comes and goes. With room for
    // everything but one action block, `lru-groups` evicts 9 (its group is older
    // than the shared output's) and `lru-actions` evicts action 0.
    let mut order: Vec<u64> = vec![0, 9];
    order.extend((0..30).flat_map(|i| [1 + i % 8, 9]));
    let w = lookups(
        &order,
        |k| if k < 9 { 0 } else { 9 },
        |o| if o == 0 { 0 } else { 40_960 },
        |_| 1.0,
    );
    let fp = 10 * BLOCK + 40_960;
    let r = sim(
        &w,
        &[fp - BLOCK],
        &[PolicyName::LruGroups, PolicyName::LruActions],
    );
    let (lru, split) = (
        r.row(0, PolicyName::LruGroups).unwrap().outcome,
        r.row(0, PolicyName::LruActions).unwrap().outcome,
    );
    assert!(split.hits > lru.hits, "{lru:?} {split:?}");
    assert_eq!(split.hits, w.summary.trace_hits);
}

/// Replays `w` without a budget through `policy`, then evicts down to
/// `budget` and says what left: (actions, outputs) as dense numbers.
/// What `name` evicts once the whole of `w` is in the cache, with no
/// protection window (as `policy::plan` plans hours later, grace 0).
fn victims_at_end(w: &Workload, name: PolicyName, budget: u64) -> (Vec<u32>, Vec<u32>) {
    victims_at_end_in(w, name, budget, 0)
}

/// [`victims_at_end`] in a cache directory whose other bytes take `fixed`
/// besides the entries' `budget`.
fn victims_at_end_in(
    w: &Workload,
    name: PolicyName,
    budget: u64,
    fixed: u64,
) -> (Vec<u32>, Vec<u32>) {
    let mut p = name
        .build_for(w, budget, super::FixedBytes::constant(fixed), Some(0))
        .unwrap();
    let mut c = Cache::new(w);
    for (i, r) in w.requests.iter().enumerate() {
        let at = At {
            index: i as u32,
            t: r.t,
            next: w.next[i],
            cost: w.cost[r.action as usize],
            size: w.block + w.size(r.output),
        };
        if c.names(r.action) == r.output {
            p.hit(r.action, r.output, &at);
        } else {
            assert_eq!(c.names(r.action), workload::NONE);
            c.insert(r.action, r.output);
            p.insert(r.action, r.output, &at);
        }
    }
    let (mut acts, mut outs) = (Vec::new(), Vec::new());
    let mut removed = Removed::default();
    while c.bytes() > budget {
        let v: Victim = p.victim(&c).unwrap();
        c.evict(v, &mut removed);
        p.removed(&removed);
        acts.extend(&removed.actions);
        outs.extend(&removed.outputs);
    }
    while let Some(v) = p.rest_of_batch() {
        c.evict(v, &mut removed);
        p.removed(&removed);
        acts.extend(&removed.actions);
        outs.extend(&removed.outputs);
    }
    acts.sort_unstable();
    outs.sort_unstable();
    (acts, outs)
}

/// A random cache for cross-checks against `policy::plan`: puts of
/// actions naming shared outputs, a second apart, some actions put again
/// later (a use). Returns the workload and, per put, the (action, output)
/// numbers of the trace.
fn random_cache(seed: u64) -> (Workload, Vec<(u64, u64)>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let outputs = rng.u64(3..12);
    let sizes: Vec<u64> = (0..outputs).map(|_| 4096 * rng.u64(0..8)).collect();
    let names: Vec<u64> = (0..rng.u64(4..30)).map(|_| rng.u64(0..outputs)).collect();
    let mut puts: Vec<(u64, u64)> = Vec::new();
    for _ in 0..names.len() * 2 {
        let a = rng.u64(0..names.len() as u64);
        puts.push((a, names[a as usize]));
    }
    let ev: Vec<Event> = puts
        .iter()
        .enumerate()
        .map(|(i, &(a, o))| {
            Event::put(
                i as i64 * 3_600_000, // an hour apart: plan's resolution
                TraceId(a + 1000),
                TraceId(o + 1),
                sizes[o as usize],
                None,
            )
        })
        .collect();
    (Workload::from_events(BLOCK, ev.iter()), puts)
}

/// `policy::plan`'s victims for the cache `w` holds at its end, under a
/// budget alone, as dense numbers.
fn plan_victims(w: &Workload, puts: &[(u64, u64)], budget: u64) -> (Vec<u32>, Vec<u32>) {
    use crate::layout::{EntryName, Id};
    use crate::model::{Entry, Kind};
    let id = |n: u64| {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        Id(b)
    };
    // Dense numbers of trace numbers, and each entry's last use (seconds).
    let (mut act, mut out) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    let mut act_use = std::collections::HashMap::new();
    let mut out_use = std::collections::HashMap::new();
    for (r, &(a, o)) in w.requests.iter().zip(puts) {
        act.insert(a, r.action);
        out.insert(o, r.output);
        act_use.insert(a, r.t / 1000);
        out_use.insert(o, r.t / 1000);
    }
    let entry = |name: EntryName, kind: Kind, size: u64, used: i64, output: Option<Id>| Entry {
        name,
        kind,
        apparent: size,
        allocated: size,
        mtime: used,
        last_use: used,
        hits: 0,
        first_seen: 0,
        output,
        program: None,
        problem: None,
    };
    let mut entries = Vec::new();
    for (&a, &used) in &act_use {
        let o = puts.iter().rev().find(|p| p.0 == a).unwrap().1;
        entries.push(entry(
            EntryName::action(id(a + 1000)),
            Kind::Action,
            BLOCK,
            used,
            Some(id(o + 1)),
        ));
    }
    for (&o, &used) in &out_use {
        let size = w.size(out[&o]);
        entries.push(entry(
            EntryName::data(id(o + 1)),
            Kind::Output,
            size,
            used,
            None,
        ));
    }
    let limits = crate::limits::Limits {
        budget: Some(budget),
        exe_quota: None,
        build_max_age: None,
        exe_max_age: None,
        grace: 0,
        min_free: None,
        policy: Default::default(),
    };
    let now = w.requests.last().unwrap().t / 1000 + 10 * 3600;
    let plan = crate::policy::plan(&entries, &limits, &Default::default(), now);
    let back = |v: &crate::policy::Victim| {
        let n = u64::from_be_bytes(v.name.id.0[..8].try_into().unwrap());
        match v.kind {
            Kind::Action => (Some(act[&(n - 1000)]), None),
            _ => (None, Some(out[&(n - 1)])),
        }
    };
    let mut acts: Vec<u32> = plan.victims.iter().filter_map(|v| back(v).0).collect();
    let mut outs: Vec<u32> = plan.victims.iter().filter_map(|v| back(v).1).collect();
    acts.sort_unstable();
    outs.sort_unstable();
    (acts, outs)
}

#[test]
fn the_simulators_lru_actions_evicts_what_policy_plan_evicts() {
    // Since the grouping fix (actions ordered one by one), `policy::plan` evicts old action
    // entries on their own: the simulator's `lru-actions`. Its `lru-groups`
    // keeps the grouping from before, and must differ somewhere.
    let mut differs = 0;
    for seed in 0..40 {
        let (w, puts) = random_cache(seed);
        let fp = simulate(&w, &[], &[], 1, &Silent).unbounded.peak_bytes;
        for budget in [0, fp / 3, fp / 2, fp - 1, fp] {
            let plan = plan_victims(&w, &puts, budget);
            assert_eq!(
                victims_at_end(&w, PolicyName::LruActions, budget),
                plan,
                "seed {seed}, budget {budget} of {fp}"
            );
            differs += usize::from(victims_at_end(&w, PolicyName::LruGroups, budget) != plan);
        }
    }
    assert!(differs > 10, "{differs}");
}

#[test]
fn progress_adds_up_to_the_work() {
    use std::sync::atomic::{AtomicU64, Ordering};
    struct Count(AtomicU64, AtomicU64);
    impl Reporter for Count {
        fn start(&self, _: &str, total: u64) {
            self.0.store(total, Ordering::Relaxed);
        }
        fn advance(&self, n: u64) {
            self.1.fetch_add(n, Ordering::Relaxed);
        }
    }
    let w = Workload::from_traces(&[generate(&GenSpec::small(1))]);
    let c = Count(AtomicU64::new(0), AtomicU64::new(0));
    simulate(
        &w,
        &[SizeSpec::Percent(20.0), SizeSpec::Percent(50.0)],
        &PolicyName::ALL,
        2,
        &c,
    );
    let n = w.requests.len() as u64;
    // The unbounded replay, nine policies (the four batch ones and belady
    // too) at two budgets, go-age once, and the lower bracket's two
    // schedules at two budgets.
    assert_eq!(c.0.load(Ordering::Relaxed), n * (1 + 9 * 2 + 1 + 2 * 2));
    assert_eq!(c.1.load(Ordering::Relaxed), c.0.load(Ordering::Relaxed));
}

#[test]
fn an_action_stored_again_names_its_new_output() {
    // Action 1 names output 10, then (a nondeterministic rebuild) 11; the
    // next lookup hits on 11, and output 10 leaves with the old naming.
    let ev = [
        Event::get_miss(0, TraceId(1)),
        Event::put(1, TraceId(1), TraceId(10), 40_960, Some(1.0)),
        Event::put(2, TraceId(1), TraceId(11), 8192, Some(1.0)),
        Event::get_hit(3, TraceId(1), TraceId(11), 8192),
        Event::get_hit(4, TraceId(1), TraceId(10), 40_960),
    ];
    let w = Workload::from_events(BLOCK, ev.iter());
    let r = sim(&w, &[1 << 20], &[PolicyName::LruGroups, PolicyName::Belady]);
    for p in [PolicyName::LruGroups, PolicyName::Belady] {
        // The last lookup names output 10 again: the cache now holds 11.
        assert_eq!(hits(&r, 0, p), 1, "{p}");
    }
    assert_eq!(r.unbounded.peak_bytes, BLOCK + 40_960);
}

#[test]
fn the_lower_bracket_finds_the_obvious_optimum_belady_misses() {
    // A minute-long entry A, then B and C in turn ten times, then A
    // again, with room for two of the three. The optimum keeps A and one
    // of B and C: 60 + 9 seconds. Belady evicts A, the farthest next
    // request, and saves only the 18 cheap hits.
    let mut order = vec![0];
    order.extend((0..10).flat_map(|_| [1, 2]));
    order.push(0);
    let w = lookups(&order, |k| k, |_| 4096, |k| if k == 0 { 60.0 } else { 1.0 });
    let r = sim(&w, &[2 * 8192], &PolicyName::ALL);
    let row = |p| r.row(0, p).unwrap();
    assert_eq!(row(PolicyName::Belady).outcome.saved_s, 18.0);
    let lower = row(PolicyName::Lower);
    assert_eq!(lower.outcome.saved_s, 69.0, "{lower:?}");
    assert_eq!(lower.schedule, Some("greedy"));
    assert!(lower.outcome.peak_bytes <= 2 * 8192);
    assert!(row(PolicyName::Bound).outcome.saved_s >= 69.0);
    // The schedule alone: A kept throughout, B between its requests.
    let (keep, value) = schedule::greedy(&w, 2 * 8192);
    assert_eq!(value, 69.0);
    assert!(keep[0], "A is kept from its first request");
    assert_eq!(keep.iter().filter(|&&k| k).count(), 1 + 9);
}

#[test]
fn the_lower_bracket_is_feasible_and_between_belady_and_the_bound() {
    for seed in 0..12 {
        let (shared, sizes) = (seed % 2 == 1, seed % 3 != 0);
        let w = random(200 + seed, 90, 1500, shared, sizes);
        let fp = simulate(&w, &[], &[], 1, &Silent).unbounded.peak_bytes;
        let budgets = [fp / 10, fp / 4, fp / 2];
        let r = sim(&w, &budgets, &PolicyName::ALL);
        for (b, &budget) in budgets.iter().enumerate() {
            let get = |p| r.row(b, p).unwrap().outcome;
            let (lower, belady, bound) = (
                get(PolicyName::Lower),
                get(PolicyName::Belady),
                get(PolicyName::Bound),
            );
            assert!(lower.saved_s >= belady.saved_s, "seed {seed}");
            assert!(lower.saved_s <= bound.saved_s + 1e-9, "seed {seed}");
            assert!(lower.peak_bytes <= budget);
            // The greedy schedule on its own: a replay of its decisions
            // never passes the budget nor has to drop what it keeps, and
            // every hit it planned happens.
            let (keep, value) = schedule::greedy(&w, budget);
            let mut p = schedule::Scheduled::new(&w, keep);
            let out = replay::replay(&w, &mut p, budget, &|_| {});
            assert_eq!(p.forced, 0, "seed {seed}: a protected entry was evicted");
            assert!(out.peak_bytes <= budget);
            assert!(
                out.saved_s + 1e-9 >= value,
                "seed {seed}: {out:?} < {value}"
            );
            assert!(value <= bound.saved_s + 1e-9);
        }
    }
}

#[test]
fn the_simulators_batch_policies_evict_what_policy_plan_evicts() {
    // `lru`, `gdsf` and `gd-cost` are what `gocache trim --policy` ships
    // under the same names: on the same cache (lookups with hits, outputs
    // shared, measured costs, three hours apart so that an action used an
    // hour or more before its output's newest is a group of its own), they
    // choose what `policy::plan_with` chooses
    // under the budget scaled to the headroom, as the hook trims; and in
    // a cache directory with fixed bytes, where the real trim scales the
    // whole budget and counts the fixed bytes against it.
    use crate::layout::{EntryName, Id};
    use crate::limits::Eviction;
    use crate::model::{Entry, Kind};
    let id = |n: u64| {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        Id(b)
    };
    let (mut differs, mut unhit_differs, mut split_off) = (0, 0, 0);
    for seed in 0..30 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n_out = rng.u64(3..10);
        let n_act = n_out + rng.u64(0..8);
        // Distinct sizes and costs: no ties for the orders to break apart.
        let size = |o: u64| 4096 * (o + 1) + 512 * o * o;
        let cost = |a: u64| 0.1 + a as f64 * 0.37;
        let order: Vec<u64> = (0..rng.usize(10..200))
            .map(|_| ((rng.f64().powi(2) * n_act as f64) as u64).min(n_act - 1))
            .collect();
        let w = lookups(&order, |a| a % n_out, size, cost);
        // The index's view: per action its hits and last use (seconds).
        let mut hits = std::collections::HashMap::<u64, u64>::new();
        let mut used = std::collections::HashMap::<u64, i64>::new();
        let mut dense_a = std::collections::HashMap::new();
        let mut dense_o = std::collections::HashMap::new();
        for (i, &a) in order.iter().enumerate() {
            if used.contains_key(&a) {
                *hits.entry(a).or_default() += 1;
            }
            used.insert(a, i as i64 * APART / 1000);
            dense_a.insert(a, w.requests[i].action);
            dense_o.insert(a % n_out, w.requests[i].output);
        }
        let entry = |name, kind, size, used, hits, output| Entry {
            name,
            kind,
            apparent: size,
            allocated: size,
            mtime: used,
            last_use: used,
            hits,
            first_seen: 0,
            output,
            program: None,
            problem: None,
        };
        let mut entries = Vec::new();
        let mut out_used = std::collections::HashMap::<u64, i64>::new();
        for (&a, &t) in &used {
            let o = a % n_out;
            entries.push(entry(
                EntryName::action(id(a + 1)),
                Kind::Action,
                BLOCK,
                t,
                hits.get(&a).copied().unwrap_or(0),
                Some(id(o + 1)),
            ));
            let u = out_used.entry(o).or_insert(t);
            *u = (*u).max(t);
        }
        for (&o, &t) in &out_used {
            entries.push(entry(
                EntryName::data(id(o + 1)),
                Kind::Output,
                size(o),
                t,
                0,
                None,
            ));
        }
        let measured: std::collections::HashMap<u64, f64> =
            used.keys().map(|&a| (a + 1, cost(a))).collect();
        // The same cache as the hook and `ci end` index it: no hits.
        let unhit: Vec<Entry> = entries
            .iter()
            .map(|e| Entry {
                hits: 0,
                ..e.clone()
            })
            .collect();
        let fp = simulate(&w, &[], &[], 1, &Silent).unbounded.peak_bytes;
        for (budget, fixed) in [
            (fp / 4, 0),
            (fp / 2, 0),
            (fp - 1, 0),
            (fp / 2, fp / 5),
            (fp - 1, fp / 3),
        ] {
            let mut by_kind = Vec::new();
            // The simulator's policy is found by the name trim takes:
            // the same name must mean the same behaviour.
            let by_trims_name = |k: Eviction| PolicyName::parse(k.as_str()).unwrap();
            for (kind, name, entries) in [
                (Eviction::Lru, by_trims_name(Eviction::Lru), &entries),
                (Eviction::Gdsf, by_trims_name(Eviction::Gdsf), &entries),
                (Eviction::GdCost, by_trims_name(Eviction::GdCost), &entries),
                (Eviction::Gdsf, PolicyName::Gds, &unhit),
            ] {
                let limits = crate::limits::Limits {
                    budget: Some(((budget + fixed) as f64 * crate::policy::HEADROOM) as u64),
                    build_max_age: None,
                    exe_max_age: None,
                    grace: 0,
                    policy: kind,
                    ..Default::default()
                };
                let costs = crate::policy::CostInputs {
                    clock: None,
                    measured: Some(&measured),
                };
                let now = order.len() as i64 * APART / 1000 + 10 * 3600;
                let env = crate::policy::Environment {
                    fixed_bytes: fixed,
                    free_bytes: None,
                };
                let plan = crate::policy::plan_with(entries, None, &limits, &env, costs, now);
                let (mut acts, mut outs) = (Vec::new(), Vec::new());
                for v in &plan.victims {
                    let n = u64::from_be_bytes(v.name.id.0[..8].try_into().unwrap()) - 1;
                    match v.kind {
                        Kind::Action => acts.push(dense_a[&n]),
                        _ => outs.push(dense_o[&n]),
                    }
                }
                acts.sort_unstable();
                outs.sort_unstable();
                // Actions taken without their output: split off.
                split_off += acts
                    .iter()
                    .filter(|&&a| {
                        let o = w.requests.iter().find(|r| r.action == a).unwrap().output;
                        outs.binary_search(&o).is_err()
                    })
                    .count();
                assert_eq!(
                    victims_at_end_in(&w, name, budget, fixed),
                    (acts.clone(), outs),
                    "seed {seed}, {name}, budget {budget} of {fp}, fixed {fixed}"
                );
                by_kind.push(acts);
            }
            differs += usize::from(by_kind[0] != by_kind[1]);
            unhit_differs += usize::from(by_kind[1] != by_kind[3]);
        }
    }
    assert!(differs > 5, "the orders differ somewhere: {differs}");
    assert!(
        split_off > 20,
        "actions split off their groups: {split_off}"
    );
    assert!(
        unhit_differs > 5,
        "hits change gdsf's order: {unhit_differs}"
    );
}

#[test]
fn gds_is_gdsf_as_the_hook_and_ci_end_run_it_with_no_hits_counted() {
    // A (a 40 KiB output) is used 11 times; then B, C and D (4 KiB each)
    // once each, with room for A and two of them; then A again. At D the
    // cache is over budget and one batch evicts down to 90% of it.
    // gdsf, with A's 10 hits: A's priority (10 + 1) / 44 KiB beats
    // the small ones' 1 / 8 KiB, so B and C go and A hits. gds, with
    // every count at 0 as the hook and `ci end` record them: 1 / 44 KiB is
    // the lowest, A goes (as under lru, A being the oldest) and
    // misses.
    let (a, b, c, d) = (0, 1, 2, 3);
    let mut order = vec![a; 11];
    order.extend([b, c, d, a]);
    let w = lookups(
        &order,
        |k| k,
        |k| if k == a { 10 * BLOCK } else { BLOCK },
        |_| 1.0,
    );
    let budget = 11 * BLOCK + 2 * 2 * BLOCK;
    let r = sim(
        &w,
        &[budget],
        &[PolicyName::Lru, PolicyName::Gdsf, PolicyName::Gds],
    );
    assert_eq!(hits(&r, 0, PolicyName::Gdsf), 11);
    assert_eq!(hits(&r, 0, PolicyName::Gds), 10);
    assert_eq!(hits(&r, 0, PolicyName::Lru), 10);
    // What each batch evicted (in dense ids: actions and outputs are
    // numbered as first seen, a, b, c, d).
    assert_eq!(
        victims_at_end(&w, PolicyName::Gdsf, budget),
        (vec![1, 2], vec![1, 2])
    );
    assert_eq!(
        victims_at_end(&w, PolicyName::Gds, budget),
        (vec![0], vec![0])
    );
}

#[test]
fn the_real_trims_cost_estimate_is_the_simulators_default() {
    use super::workload::CostModel;
    for exe in [false, true] {
        for size in [0, 4096, 1 << 20, 37 << 20] {
            let (sim, real) = (
                CostModel::DEFAULT.estimate(exe, size),
                crate::policy::estimate_cost(exe, size),
            );
            assert!((sim - real).abs() < 1e-12, "{exe} {size}: {sim} {real}");
        }
    }
}

#[test]
fn the_batch_policies_never_take_what_the_protection_window_covers() {
    // A, B and C (8 KiB each with their blocks) are put a second apart,
    // over a budget of two: the real trim, with its default grace period
    // and Go's hour of mtime lag, takes none of them (a live go command
    // may hold them), so the cache stays over budget. D comes 2 h later:
    // A and B are out of the window (more than its 7,200 s after their
    // last use, in the index's whole seconds) and go; C, 7,200 s after,
    // and D stay. Then A misses
    // and C, still in the window, hits: without the protection A and B
    // would have gone at C's put, and C and D at A's.
    const H: i64 = 3_600_000;
    let (a, b, c, d) = (TraceId(1), TraceId(2), TraceId(3), TraceId(4));
    let put = |t, x| [Event::get_miss(t, x), Event::put(t, x, x, BLOCK, Some(1.0))];
    let mut ev = Vec::new();
    ev.extend(put(0, a));
    ev.extend(put(1_000, b));
    ev.extend(put(2_000, c));
    ev.extend(put(2 * H + 2_500, d));
    ev.extend(put(2 * H + 2_800, a));
    ev.push(Event::get_hit(2 * H + 2_900, c, c, BLOCK));
    let w = Workload::from_events(BLOCK, ev.iter());
    let budget = 2 * 2 * BLOCK;
    for name in [PolicyName::Lru, PolicyName::Gdsf, PolicyName::GdCost] {
        let mut p = name.build(&w, budget).unwrap();
        let out = replay::replay(&w, &mut *p, budget, &|_| ());
        assert_eq!(
            out.peak_bytes,
            3 * 2 * BLOCK,
            "{name}: three entries after a request's trim, over a budget of two"
        );
        assert_eq!(out.hits, 1, "{name}: C");
        let mut p = name.build_protecting(&w, budget, Some(0)).unwrap();
        let out = replay::replay(&w, &mut *p, budget, &|_| ());
        assert!(out.peak_bytes <= budget, "{name}");
        assert_eq!(out.hits, 0, "{name}: without protection");
    }
}

#[test]
fn batch_policies_evict_where_prog_checks_the_limits_when_the_trace_marks_sessions() {
    // Session 1 stores A then B; session 2, three hours later, stores C
    // (over the budget) and then looks A up. prog checks the limits only
    // as a session that stored anything closes (and every 16 MiB of puts):
    // A is still there for session 2's lookup, and at its end B, the one
    // not used within the protection window, goes. Without the sessions
    // marked, the replay checks after every request, as before: A, the
    // oldest, goes as C comes, and its lookup misses.
    let size = 10 * BLOCK;
    let (a, b, c) = (TraceId(1), TraceId(2), TraceId(3));
    let (oa, ob, oc) = (TraceId(11), TraceId(12), TraceId(13));
    let mut ev = vec![
        Event::get_miss(0, a),
        Event::put(1, a, oa, size, Some(1.0)),
        Event::get_miss(2, b),
        Event::put(3, b, ob, size, Some(1.0)),
        Event::end(4),
        Event::get_miss(APART, c),
        Event::put(APART + 1, c, oc, size, Some(1.0)),
        Event::get_hit(APART + 2, a, oa, size),
        Event::end(APART + 3),
    ];
    // Room for two entries, not three.
    let budget = 2 * (size + BLOCK) + BLOCK;
    let marked = Workload::from_events(BLOCK, ev.iter());
    assert_eq!(marked.ends, vec![2, 4]);
    ev.retain(|e| e.ev != crate::trace::schema::Op::End);
    let unmarked = Workload::from_events(BLOCK, ev.iter());
    assert!(unmarked.ends.is_empty());
    for p in [PolicyName::Lru, PolicyName::Gdsf, PolicyName::GdCost] {
        let mut pol = p.build(&marked, budget).unwrap();
        let o = replay::replay(&marked, pol.as_mut(), budget, &|_| {});
        assert_eq!(o.hits, 1, "{p}: A is kept until session 2 ends");
        assert_eq!(o.evictions, 1, "{p}: B goes as session 2 ends");
        let mut pol = p.build(&unmarked, budget).unwrap();
        let o = replay::replay(&unmarked, pol.as_mut(), budget, &|_| {});
        assert_eq!(o.hits, 0, "{p}: A goes as C comes");
    }
    // The textbook policies evict as they always did.
    let mut pol = PolicyName::LruGroups.build(&marked, budget).unwrap();
    let o = replay::replay(&marked, pol.as_mut(), budget, &|_| {});
    assert_eq!(o.hits, 0);
}

#[test]
fn a_lookup_go_makes_only_after_a_hit_is_not_made_after_a_replayed_miss() {
    // Action 1 (a 4 KiB output) is built, then action 2 (8 KiB), then 1 is
    // looked up again: a hit in the trace, followed by the lookup of its
    // compiler output kept beside it (action 9, never stored: a miss in
    // the trace, `of` action 1), as go asks it only after that hit.
    let id = TraceId;
    let t = |k: i64| k * APART;
    let ev = [
        Event::get_miss(t(0), id(1)),
        Event::put(t(0) + 1, id(1), id(11), 4096, Some(1.0)),
        Event::get_miss(t(1), id(2)),
        Event::put(t(1) + 1, id(2), id(12), 2 * 4096, Some(1.0)),
        Event::get_hit(t(2), id(1), id(11), 4096),
        Event {
            of: Some(id(1)),
            ..Event::get_miss(t(2) + 1, id(9))
        },
    ];
    let w = Workload::from_events(BLOCK, ev.iter());
    assert_eq!(w.asked_after.len(), 1);
    let lookups = w.summary.accesses;
    assert_eq!(lookups, 4);
    // Room for everything: 1 hits, and go asks for 9 (a miss).
    let r = sim(&w, &[1 << 20], &[PolicyName::Lru]);
    let row = r.row(0, PolicyName::Lru).unwrap().outcome;
    assert_eq!((row.hits, row.not_asked), (1, 0));
    // Room for 2 alone: 1 was evicted and misses, so go rebuilds it and
    // never asks for 9: three lookups made, all misses.
    let r = sim(&w, &[3 * BLOCK + 1], &[PolicyName::Lru]);
    let row = r.row(0, PolicyName::Lru).unwrap().outcome;
    assert_eq!((row.hits, row.not_asked), (0, 1));
}

#[test]
fn an_entry_go_rewrites_when_it_rebuilds_is_kept_and_not_counted_lost() {
    // Action 1 (4 KiB, 1 s) with its compiler output kept beside it
    // (action 9, the empty output, put with it: go asks for it only after
    // a hit of 1); action 2 (8 KiB, 1 s) between; then 1 and 9 are looked
    // up twice more. With room for 1 or 2 but not both, 1 misses at its
    // first lookup again: go rebuilds it and writes 9 afresh without asking
    // for it, so 9 is cached when 1 hits next, and asked for and hit.
    let id = TraceId;
    let t = |k: i64| k * APART;
    let kept = |k: i64, hit| Event {
        of: Some(id(1)),
        ..if hit {
            Event::get_hit(t(k) + 1, id(9), id(19), 0)
        } else {
            Event::get_miss(t(k) + 1, id(9))
        }
    };
    let ev = [
        Event::get_miss(t(0), id(1)),
        Event::put(t(0) + 1, id(1), id(11), 4096, Some(1.0)),
        Event::put(t(0) + 2, id(9), id(19), 0, None),
        Event::get_miss(t(1), id(2)),
        Event::put(t(1) + 1, id(2), id(12), 2 * 4096, Some(1.0)),
        Event::get_hit(t(2), id(1), id(11), 4096),
        kept(2, true),
        Event::get_hit(t(3), id(1), id(11), 4096),
        kept(3, true),
    ];
    let w = Workload::from_events(BLOCK, ev.iter());
    // 1's block and output, 9's block and the empty output's none, 2's
    // block and output: 5 blocks in all; room for 4.
    let r = sim(&w, &[4 * BLOCK], &[PolicyName::Lru]);
    let row = r.row(0, PolicyName::Lru).unwrap();
    let o = row.outcome;
    // 1 misses once (rebuilt), then hits; 9 is not asked after the miss,
    // then hits, written afresh by the rebuild.
    assert_eq!((o.hits, o.not_asked), (2, 1), "{o:?}");
    // What the budget lost is 1's rebuild alone: the unbounded cache
    // saved it and 9's lookups, and 9's skipped lookup is no loss.
    assert!((row.lost_s - 1.0).abs() < 1e-9, "{row:?}");
}

#[test]
fn fixed_bytes_grow_evenly_from_the_first_request_to_the_last() {
    let f = super::FixedBytes {
        first: 1000,
        last: 1400,
    };
    // Five requests: four steps of 100.
    let at: Vec<u64> = (0..5).map(|i| f.growth_at(i, 5)).collect();
    assert_eq!(at, [0, 100, 200, 300, 400]);
    assert_eq!(f.growth_at(9, 5), 400, "never beyond the last");
    assert_eq!(f.growth(), 400);
    let same = super::FixedBytes::constant(1000);
    assert_eq!((same.growth_at(3, 5), same.growth()), (0, 0));
    assert_eq!(f.growth_at(0, 1), 0, "one request: the first bytes");
}

#[test]
fn what_a_rebuild_writes_beside_its_action_is_stored_again_where_the_replay_misses_it() {
    // Action 1's cold build writes its source list (action 9, output 19,
    // marked `of` 1 on its put) beside its compile (output 11); actions 2
    // and 3 follow, then 1 hits in the trace and 9 is looked up. With room
    // for two entries, 1 and 9 leave as 2 and 3 come, so the replay misses
    // 1 where the trace hit: go rebuilds it and writes 9 afresh, and 9's
    // lookup hits. Without the mark the replay cannot know, and 9 misses.
    let id = TraceId;
    let t = |k: i64| k * APART;
    let events = |marked: bool| {
        vec![
            Event::get_miss(t(0), id(1)),
            Event {
                of: marked.then_some(id(1)),
                ..Event::put(t(0) + 1, id(9), id(19), 4096, None)
            },
            Event::put(t(0) + 2, id(1), id(11), 4096, Some(1.0)),
            Event::get_miss(t(1), id(2)),
            Event::put(t(1) + 1, id(2), id(12), 4096, Some(1.0)),
            Event::get_miss(t(2), id(3)),
            Event::put(t(2) + 1, id(3), id(13), 4096, Some(1.0)),
            Event::get_hit(t(3), id(1), id(11), 4096),
            Event::get_hit(t(4), id(9), id(19), 4096),
        ]
    };
    let room = 4 * BLOCK;
    let replay = |marked: bool| {
        let w = Workload::from_events(BLOCK, events(marked).iter());
        let r = sim(&w, &[room], &[PolicyName::LruGroups]);
        (w, r.row(0, PolicyName::LruGroups).unwrap().outcome)
    };
    let (w, o) = replay(true);
    assert_eq!(w.written_with.len(), 1, "{:?}", w.written_with);
    assert_eq!(o.hits, 1, "9 hits, written by 1's rebuild: {o:?}");
    let (w, o) = replay(false);
    assert!(w.written_with.is_empty());
    assert_eq!(
        o.hits, 0,
        "9 left with 1 and was never written again: {o:?}"
    );
    // Where the trace missed 1 too, the rebuild's puts are in the trace and
    // nothing is stored twice: the cold build alone holds both entries.
    let w = Workload::from_events(BLOCK, events(true)[..3].iter());
    let r = sim(&w, &[room], &[PolicyName::LruGroups]);
    let o = r.row(0, PolicyName::LruGroups).unwrap().outcome;
    assert_eq!((o.peak_bytes, o.evictions), (room, 0), "{o:?}");
}
