//! The policy on made-up entries: every rule, tie and boundary.

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
    // Used exactly grace + 1h ago is still inside (its last second:
    // see the module doc); a second more is out.
    let inside: Vec<Entry> = pair(1, 1000, 2 * HOUR).into();
    let outside: Vec<Entry> = pair(1, 1000, 2 * HOUR + 1).into();
    assert!(run(&pair(1, 1000, 2 * HOUR - 1), &l).is_empty());
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

/// Go's `markUsed` as the go command runs it: the mtime moves only
/// when it is an hour old or more (nanoseconds, as Go compares them).
fn go_looks_up(mtime_ns: i128, at_ns: i128) -> i128 {
    if at_ns - mtime_ns >= i128::from(HOUR) * 1_000_000_000 {
        at_ns
    } else {
        mtime_ns
    }
}

#[test]
fn a_lookup_go_did_not_record_is_protected_for_the_whole_grace_period() {
    // The clock is injected: a go command looks an entry up at `u`,
    // when its mtime is just under an hour old (Go leaves it), and a
    // trim runs `grace` later; every sub-second phase of both.
    const S: i128 = 1_000_000_000;
    for grace in [0, 1, 600, HOUR, 3 * HOUR] {
        let mut l = no_limits();
        l.budget = Some(0);
        l.grace = grace;
        for under in [1, S / 2, S - 1, S, 3 * S + 1] {
            for phase in [0, 1, S / 3, S - 1] {
                let u = i128::from(NOW - grace) * S + phase;
                let mtime = go_looks_up(u - i128::from(HOUR) * S + under, u);
                assert!(mtime < u, "Go left it");
                for trim_at in [u + i128::from(grace) * S, u + i128::from(grace) * S - 1] {
                    // What the index and the trim see: whole seconds.
                    let now = (trim_at / S) as i64;
                    let last_use = (mtime.div_euclid(S)) as i64;
                    let es: Vec<Entry> = pair(1, 1000, NOW - last_use).into();
                    let p = plan(&es, &l, &Environment::default(), now);
                    assert!(
                        p.victims.is_empty(),
                        "grace {grace}: looked up {}ns before the trim, mtime {}ns before",
                        trim_at - u,
                        trim_at - mtime
                    );
                }
            }
        }
        // Past the window by a second: it goes.
        let es: Vec<Entry> = pair(1, 1000, grace + HOUR + 1).into();
        assert_eq!(run(&es, &l).victims.len(), 2, "grace {grace}");
    }
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
    // One recent use of the (shared) empty output kept
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
    // All just past the protection window (grace + 1h, inclusive).
    let es = vec![
        entry(1, Kind::Output, 10_000, 2 * HOUR + 1, None),
        entry(101, Kind::Action, 4096, 2 * HOUR + 1, Some(1)),
        entry(102, Kind::Action, 4096, 3 * HOUR, Some(1)),
        entry(103, Kind::Action, 4096, 3 * HOUR + 1, Some(1)),
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
        pair(1, 1000, 3 * HOUR),     // run 4, used last in it
        pair(2, 1000, 5 * HOUR),     // run 4, used earlier
        pair(3, 1000, 2 * HOUR + 1), // run 3, though used more lately by time
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
    let mut es: Vec<Entry> = [pair(1, 8192, 3 * DAY), pair(2, 4 << 20, 2 * HOUR + 1)].concat();
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

/// A budget of 0 with most of the cache used within the grace
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
