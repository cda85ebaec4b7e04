//! The one path every eviction takes, on synthetic caches written to disk
//! ([`crate::synth_cache`]; no Go): each limit met as a walk of the
//! directory and `du` see it, what must stay staying, a dry run touching
//! nothing, and the index equal to the disk afterwards.
//!
//! Every check reads the directory with `std::fs` alone, never gocache's
//! own counts, and "now" is injected: ten days after the real clock, so
//! that the subdirectories (written just now) are never racy and ages are
//! what a test sets.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::cachedir::fixtures::set_mtime;
use crate::limits::{DAY, Eviction, HOUR};
use crate::model::Kind;
use crate::report::Silent;
use crate::synth_cache::{SynthSpec, generate};

/// Entries in each test's cache: enough for every kind and for garbage,
/// written in well under a second.
const ENTRIES: usize = 1_000;

/// One entry as a walk of the directory finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    kind: Kind,
    mtime: UnixTime,
    /// `st_blocks` × 512 (an executable: its directory and what it holds).
    allocated: u64,
    /// For an action entry: the output it names (`ab/<hex>-d`), read from
    /// the file's third field.
    output: Option<String>,
}

/// Every entry under `dir` by name (`ab/<hex>-a`), found with `std::fs`
/// alone: names of Go's pattern in the 256 subdirectories, anything else
/// (Go's files, gocache's directory, trash) left out.
fn walk(dir: &Path) -> BTreeMap<String, Found> {
    let mut found = BTreeMap::new();
    for sub in std::fs::read_dir(dir).unwrap() {
        let sub = sub.unwrap();
        let s = sub.file_name().into_string().unwrap();
        if s.len() != 2 || !sub.file_type().unwrap().is_dir() {
            continue;
        }
        for item in std::fs::read_dir(sub.path()).unwrap() {
            let item = item.unwrap();
            let name = item.file_name().into_string().unwrap();
            let (hex, suffix) = name.split_at(name.len().saturating_sub(2));
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let meta = std::fs::symlink_metadata(item.path()).unwrap();
            let (kind, output) = match (suffix, meta.is_dir()) {
                ("-a", false) => {
                    let text = std::fs::read_to_string(item.path()).unwrap();
                    let out = text.split(' ').nth(2).unwrap();
                    (Kind::Action, Some(format!("{}/{out}-d", &out[..2])))
                }
                ("-d", false) => (Kind::Output, None),
                ("-d", true) => (Kind::Exe, None),
                _ => continue,
            };
            found.insert(
                format!("{s}/{name}"),
                Found {
                    kind,
                    mtime: meta.mtime(),
                    allocated: du(&item.path()),
                    output,
                },
            );
        }
    }
    found
}

/// What `du -s` counts: the allocated bytes of every file and directory
/// under `path` (itself included), symlinks not followed.
fn du(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for item in std::fs::read_dir(path).unwrap() {
            total += du(&item.unwrap().path());
        }
    }
    total
}

/// The newest mtime of each output's or executable's group (itself and
/// the actions naming it), by the output's name.
fn group_newest(found: &BTreeMap<String, Found>) -> BTreeMap<String, UnixTime> {
    let mut newest: BTreeMap<String, UnixTime> = found
        .iter()
        .filter(|(_, f)| f.kind != Kind::Action)
        .map(|(n, f)| (n.clone(), f.mtime))
        .collect();
    for f in found.values() {
        if let Some(t) = f.output.as_ref().and_then(|o| newest.get_mut(o)) {
            *t = (*t).max(f.mtime);
        }
    }
    newest
}

/// The group an entry belongs to: an output's or executable's own name,
/// an action's output (which may be gone: garbage).
fn group_of(name: &str, f: &Found) -> String {
    f.output.clone().unwrap_or_else(|| name.to_string())
}

/// When each entry's group was last used: the newest of an output or
/// executable and the actions naming it; an action whose output is gone,
/// its own.
fn group_used(found: &BTreeMap<String, Found>) -> BTreeMap<String, UnixTime> {
    let newest = group_newest(found);
    found
        .iter()
        .map(|(n, f)| {
            let t = newest.get(&group_of(n, f)).copied().unwrap_or(f.mtime);
            (n.clone(), t)
        })
        .collect()
}

/// True for garbage: an action whose output is gone, an output no action
/// names.
fn garbage(found: &BTreeMap<String, Found>, name: &String) -> bool {
    match &found[name].output {
        Some(o) => !found.contains_key(o),
        None => !found.values().any(|a| a.output.as_ref() == Some(name)),
    }
}

/// Sets the mtime of `group` (an output or executable) and of every
/// action naming it.
fn set_group_mtime(dir: &Path, found: &BTreeMap<String, Found>, group: &String, at: UnixTime) {
    for (n, f) in found {
        if n == group || f.output.as_ref() == Some(group) {
            set_mtime(&dir.join(n), at);
        }
    }
}

/// "Now" for these tests (see the module doc).
fn clock() -> UnixTime {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    real + 10 * DAY
}

/// A synthetic cache of [`ENTRIES`] entries, six of them executables, last
/// used over the ten days before `now`, with a little garbage.
fn synth(seed: u64, now: UnixTime) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = SynthSpec::realistic(ENTRIES, seed, now);
    spec.exes = 6;
    spec.threads = 1;
    generate(dir.path(), &spec).unwrap();
    dir
}

fn index(dir: &Path) -> Index {
    Index::open(&dir.join("gocache/index.sqlite")).unwrap()
}

/// No limit at all, no grace beyond Go's hour: each test sets what it
/// checks.
fn no_limits() -> Limits {
    Limits {
        budget: None,
        exe_quota: None,
        build_max_age: None,
        exe_max_age: None,
        grace: 0,
        min_free: None,
        policy: Eviction::Lru,
    }
}

/// `enforce::trim`, which must not find the lock taken.
fn trimmed(
    dir: &Path,
    ix: &mut Index,
    limits: &Limits,
    dry_run: bool,
    now: UnixTime,
) -> TrimReport {
    match trim(dir, ix, limits, dry_run, now, &Silent).unwrap() {
        TrimOutcome::Done(r) => *r,
        TrimOutcome::Locked => panic!("no other trim runs"),
    }
}

/// The index holds exactly the entries on disk, each with its kind,
/// allocated bytes and mtime, and the report's `after` counts them.
fn assert_index_is_the_disk(dir: &Path, ix: &Index, after: &Totals) {
    let on_disk: BTreeMap<String, (Kind, u64, UnixTime)> = walk(dir)
        .into_iter()
        .map(|(n, f)| (n, (f.kind, f.allocated, f.mtime)))
        .collect();
    let indexed: BTreeMap<String, (Kind, u64, UnixTime)> = ix
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.to_string(), (e.kind, e.allocated, e.mtime)))
        .collect();
    assert_eq!(indexed, on_disk, "the index is the disk");
    let bytes: u64 = on_disk.values().map(|&(_, b, _)| b).sum();
    assert_eq!(
        (after.total.entries, after.total.allocated_bytes),
        (on_disk.len() as u64, bytes),
        "the report's after counts what is on disk"
    );
}

#[test]
fn a_trim_meets_the_budget_by_du_and_the_index_is_the_disk() {
    let now = clock();
    let c = synth(1, now);
    let before = walk(c.path());
    let budget = du(c.path()) / 2;
    let mut ix = index(c.path());
    let limits = Limits {
        budget: Some(budget),
        ..no_limits()
    };
    let r = trimmed(c.path(), &mut ix, &limits, false, now);
    assert!(r.limits_met, "{:?}", r.unmet);
    let executed = r.executed.as_ref().unwrap();
    assert!(executed.removed > 0);
    assert_eq!(executed.failed, 0, "{:?}", executed.errors);
    assert_index_is_the_disk(c.path(), &ix, &r.after);
    let after = walk(c.path());
    assert_eq!(
        (before.len() - after.len()) as u64,
        executed.removed,
        "each removal is an entry gone from the disk"
    );
    // Least recently used first: every group kept was used after every
    // group that went (garbage, which goes whatever its use, aside).
    let newest = group_newest(&before);
    let kept = group_newest(&after);
    let oldest_kept = newest
        .iter()
        .filter(|(n, _)| kept.contains_key(*n))
        .map(|(_, &t)| t)
        .min()
        .unwrap();
    for (n, &t) in &newest {
        let named = before.values().any(|f| f.output.as_ref() == Some(n));
        if named && !kept.contains_key(n) {
            assert!(
                t <= oldest_kept,
                "{n}, used at {t}, went before a group used at {oldest_kept}"
            );
        }
    }
    drop(ix); // as `du` sees the cache once gocache has exited
    let du_after = du(c.path());
    assert!(du_after <= budget, "du {du_after} over the budget {budget}");
}

#[test]
fn the_exe_quota_takes_the_least_recently_used_executables_and_nothing_else() {
    let now = clock();
    let c = synth(2, now);
    // The six executables last used one to six days ago, newest first.
    let found = walk(c.path());
    let exes: Vec<String> = found
        .iter()
        .filter(|(_, f)| f.kind == Kind::Exe)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(exes.len(), 6);
    for (i, n) in exes.iter().enumerate() {
        set_group_mtime(c.path(), &found, n, now - (i as i64 + 1) * DAY);
    }
    // A quota the two newest fit in, and not a third.
    let quota = found[&exes[0]].allocated + found[&exes[1]].allocated;
    assert!(found[&exes[2]].allocated > 0);
    let before = walk(c.path());
    let mut ix = index(c.path());
    let limits = Limits {
        exe_quota: Some(quota),
        ..no_limits()
    };
    let r = trimmed(c.path(), &mut ix, &limits, false, now);
    assert!(r.limits_met, "{:?}", r.unmet);
    assert_index_is_the_disk(c.path(), &ix, &r.after);
    let after = walk(c.path());
    let kept: Vec<&String> = exes.iter().filter(|n| after.contains_key(*n)).collect();
    assert_eq!(kept, [&exes[0], &exes[1]], "the two used last stay");
    let exe_bytes: u64 = after
        .values()
        .filter(|f| f.kind == Kind::Exe)
        .map(|f| f.allocated)
        .sum();
    assert!(exe_bytes <= quota, "{exe_bytes} over the quota {quota}");
    // Gone: the four executables, the actions naming them, and garbage
    // not used within Go's hour (which every trim takes); every other
    // entry stays.
    for (n, f) in &before {
        let leaves =
            exes[2..].contains(&group_of(n, f)) || (garbage(&before, n) && now - f.mtime >= HOUR);
        assert_eq!(!after.contains_key(n), leaves, "{n} ({:?})", f.kind);
    }
}

#[test]
fn the_age_limits_take_every_group_unused_longer_and_only_those() {
    let now = clock();
    let c = synth(3, now);
    let before = walk(c.path());
    let used = group_used(&before);
    let mut ix = index(c.path());
    let (build_max, exe_max) = (3 * DAY, 2 * DAY);
    let limits = Limits {
        build_max_age: Some(build_max),
        exe_max_age: Some(exe_max),
        ..no_limits()
    };
    let r = trimmed(c.path(), &mut ix, &limits, false, now);
    assert!(r.limits_met, "{:?}", r.unmet);
    assert!(r.plan.bytes_for(Rule::Age).entries > 0);
    assert_index_is_the_disk(c.path(), &ix, &r.after);
    let after = walk(c.path());
    let mut aged = 0;
    for (n, f) in &before {
        let age = now - used[n];
        if garbage(&before, n) {
            let gone = !after.contains_key(n);
            assert_eq!(gone, age >= HOUR, "{n}: garbage, used {age} s ago");
            continue;
        }
        let max = match before[&group_of(n, f)].kind {
            Kind::Exe => exe_max,
            _ => build_max,
        };
        if age > max {
            aged += 1;
            assert!(
                !after.contains_key(n),
                "{n}, its group unused for {age} s, stays"
            );
        } else {
            assert!(
                after.contains_key(n),
                "{n}, its group used {age} s ago, went"
            );
        }
    }
    assert!(
        aged > 0 && aged < before.len(),
        "{aged} of {} aged",
        before.len()
    );
}

#[test]
fn nothing_used_within_the_grace_period_goes_even_at_a_budget_of_zero() {
    let now = clock();
    let c = synth(4, now);
    let grace = 2 * HOUR;
    // Go's hour of mtime lag on top: what was used less than three hours
    // ago is protected. Some groups (an output or executable, and every
    // action naming it) are moved just inside that, some just outside.
    let found = walk(c.path());
    let groups: Vec<String> = found
        .iter()
        .filter(|(n, f)| {
            f.kind != Kind::Action && found.values().any(|a| a.output.as_ref() == Some(*n))
        })
        .map(|(n, _)| n.clone())
        .collect();
    let inside = [now - 60, now - 2 * HOUR, now - 3 * HOUR + 60];
    let outside = now - 3 * HOUR - 60;
    let (mut moved_in, mut moved_out) = (Vec::new(), Vec::new());
    let picked = groups
        .iter()
        .enumerate()
        .filter(|(i, g)| i % 7 == 0 || found[*g].kind == Kind::Exe);
    for (i, (_, g)) in picked.enumerate() {
        if i % 2 == 0 {
            set_group_mtime(c.path(), &found, g, inside[i / 2 % 3]);
            moved_in.push(g.clone());
        } else {
            set_group_mtime(c.path(), &found, g, outside);
            moved_out.push(g.clone());
        }
    }
    assert!(moved_in.iter().any(|g| found[g].kind == Kind::Exe));
    // What stays: every entry whose group (or itself, for garbage) was
    // used within the three hours, those moved in and any the cache had.
    let before = walk(c.path());
    let used = group_used(&before);
    let protected: Vec<&String> = before
        .keys()
        .filter(|n| now - used[*n] < grace + HOUR)
        .collect();
    let mut ix = index(c.path());
    let limits = Limits {
        budget: Some(0),
        grace,
        ..no_limits()
    };
    let r = trimmed(c.path(), &mut ix, &limits, false, now);
    assert_index_is_the_disk(c.path(), &ix, &r.after);
    let after = walk(c.path());
    let left: Vec<&String> = after.keys().collect();
    assert_eq!(
        left, protected,
        "exactly the entries used within the grace period stay"
    );
    assert!(moved_in.iter().all(|g| after.contains_key(g)));
    assert!(moved_out.iter().all(|g| !after.contains_key(g)));
    // The plan says what protection kept, as the walk counts it.
    let kept: u64 = protected.iter().map(|n| before[*n].allocated).sum();
    assert_eq!(
        (r.plan.protected.entries, r.plan.protected.allocated_bytes),
        (protected.len() as u64, kept)
    );
    assert!(!r.limits_met);
    let unmet: Vec<Rule> = r.unmet.iter().map(|u| u.limit).collect();
    assert_eq!(unmet, [Rule::Budget]);
}

#[test]
fn a_dry_run_removes_nothing_and_says_what_a_real_run_would() {
    let now = clock();
    let c = synth(5, now);
    let before = walk(c.path());
    let mut ix = index(c.path());
    let limits = Limits {
        budget: Some(du(c.path()) / 3),
        build_max_age: Some(5 * DAY),
        ..no_limits()
    };
    let first = trimmed(c.path(), &mut ix, &limits, true, now);
    let second = trimmed(c.path(), &mut ix, &limits, true, now);
    assert!(first.dry_run && first.executed.is_none());
    assert!(!first.plan.victims.is_empty());
    assert_eq!(first.plan, second.plan, "a second dry run plans the same");
    assert_eq!(walk(c.path()), before, "nothing removed, no mtime moved");
    // The real run removes what the dry run listed (and perhaps a little
    // more: it takes the trim lock, a file the budget counts).
    let real = trimmed(c.path(), &mut ix, &limits, false, now);
    let after = walk(c.path());
    for v in &first.plan.victims {
        let n = v.name.to_string();
        assert!(before.contains_key(&n) && !after.contains_key(&n), "{n}");
    }
    assert!(real.executed.unwrap().removed >= first.plan.victims.len() as u64);
}

/// `enforce::after_use` with `uses` under `budget` alone, which must
/// trim, remove something and fail nothing: what it did.
fn trimmed_after_use(
    dir: &Path,
    ix: &mut Index,
    uses: &[Use],
    budget: u64,
    now: UnixTime,
) -> Executed {
    let limits = Limits {
        budget: Some(budget),
        ..no_limits()
    };
    let AfterUse::Trimmed(done) = after_use(dir, ix, uses, &limits, now, &Silent).unwrap() else {
        panic!("over the budget: a trim")
    };
    assert!(done.removed > 0 && done.failed == 0, "{done:?}");
    done
}

#[test]
fn after_use_evicts_to_the_headroom_only_once_over_the_budget() {
    let now = clock();
    let c = synth(6, now);
    let mut ix = index(c.path());
    let opts = ScanOptions::default();
    scan(c.path(), &mut ix, &opts, now, &Silent).unwrap();
    let entries: u64 = walk(c.path()).values().map(|f| f.allocated).sum();
    let fixed = fixed_bytes(c.path(), &ix).unwrap();
    let roomy = Limits {
        budget: Some(entries + fixed + (1 << 20)),
        ..no_limits()
    };
    let r = after_use(c.path(), &mut ix, &[], &roomy, now, &Silent).unwrap();
    assert!(matches!(r, AfterUse::UnderLimits), "{r:?}");
    assert_eq!(
        walk(c.path()).values().map(|f| f.allocated).sum::<u64>(),
        entries
    );
    let budget = (entries + fixed) * 3 / 4;
    trimmed_after_use(c.path(), &mut ix, &[], budget, now);
    let totals = ix.fast_totals().unwrap();
    assert_index_is_the_disk(c.path(), &ix, &totals);
    let left: u64 = walk(c.path()).values().map(|f| f.allocated).sum();
    let fixed = fixed_bytes(c.path(), &ix).unwrap();
    let target = (budget as f64 * HEADROOM) as u64;
    assert!(left + fixed <= target, "{left} + {fixed} over {target}");
}

/// The bytes of the biggest group in `found` (an output or executable with
/// the actions naming it).
fn largest_group(found: &BTreeMap<String, Found>) -> u64 {
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    for (n, f) in found {
        *groups.entry(group_of(n, f)).or_default() += f.allocated;
    }
    groups.into_values().max().unwrap_or(0)
}

#[test]
fn after_use_takes_in_its_first_round_what_a_recorded_mark_moved() {
    // prog marks what go hits as go would (an mtime an hour old becomes
    // now) and records the use with the mark: the executor, which keeps a
    // victim whose mtime is newer than the index's (go used it since the
    // plan), must find the two equal and remove it in the first round.
    let now = clock();
    let c = synth(7, now);
    let mut ix = index(c.path());
    scan(c.path(), &mut ix, &ScanOptions::default(), now, &Silent).unwrap();
    let hit_at = now - 5 * HOUR;
    let uses: Vec<Use> = ix
        .entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind != Kind::Exe && e.mtime <= hit_at - HOUR)
        .map(|e| {
            set_mtime(&c.path().join(e.name.to_string()), hit_at);
            Use {
                name: e.name,
                at: hit_at,
                hit: true,
                marked: true,
            }
        })
        .collect();
    assert!(uses.len() > ENTRIES / 2, "{} marked", uses.len());
    let entries: u64 = walk(c.path()).values().map(|f| f.allocated).sum();
    let fixed = fixed_bytes(c.path(), &ix).unwrap();
    let done = trimmed_after_use(c.path(), &mut ix, &uses, (entries + fixed) / 2, now);
    assert_eq!(
        done.skipped_used_since, 0,
        "nothing was used since the plan"
    );
    let totals = ix.fast_totals().unwrap();
    assert_index_is_the_disk(c.path(), &ix, &totals);
}

#[test]
fn after_use_plans_without_the_write_ahead_log_it_is_about_to_checkpoint() {
    // prog defers checkpoints while go waits, so its session's writes sit
    // in the WAL when it enforces the limits at close. Planned with them
    // as fixed bytes, the first round took that much beyond the headroom;
    // the trim leaves the cache within one group of its headroom.
    let now = clock();
    let c = synth(8, now);
    let mut ix = index(c.path());
    ix.defer_checkpoints().unwrap();
    scan(c.path(), &mut ix, &ScanOptions::default(), now, &Silent).unwrap();
    ix.checkpoint().unwrap();
    let found = walk(c.path());
    let group = largest_group(&found);
    let entries: u64 = found.values().map(|f| f.allocated).sum();
    let fixed = fixed_bytes(c.path(), &ix).unwrap();
    // A session's uses, committed in batches as prog's bookkeeper does.
    let names: Vec<EntryName> = ix.entries().unwrap().iter().map(|e| e.name).collect();
    let wal = || {
        std::fs::metadata(Index::wal_path(&c.path().join("gocache/index.sqlite")))
            .map_or(0, |m| m.len())
    };
    let mut batch = 0;
    while wal() < 2 * group && batch < 2_000 {
        let uses: Vec<Use> = names
            .iter()
            .map(|&name| Use {
                name,
                at: now - 3 * HOUR + batch,
                hit: true,
                marked: false,
            })
            .collect();
        ix.record_uses(&uses).unwrap();
        batch += 1;
    }
    assert!(
        wal() >= 2 * group,
        "a WAL of {} against groups of {group}",
        wal()
    );
    let budget = entries + fixed - entries / 4;
    trimmed_after_use(c.path(), &mut ix, &[], budget, now);
    let left: u64 = walk(c.path()).values().map(|f| f.allocated).sum();
    let fixed = fixed_bytes(c.path(), &ix).unwrap();
    let target = (budget as f64 * HEADROOM) as u64;
    assert!(left + fixed <= target, "{left} + {fixed} over {target}");
    assert!(
        left + fixed + group > target,
        "{left} + {fixed} more than a group ({group}) under {target}"
    );
}
