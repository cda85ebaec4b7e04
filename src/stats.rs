//! What the cache holds: a pure summary of the index's entries.
//!
//! The JSON form (`gocache stats --json`) is this module's [`Stats`]
//! serialised with serde; its shape is documented in the README and kept
//! stable: fields are only ever added.

use std::collections::HashSet;

use crate::layout::Id;
use crate::model::{Bytes, Entry, Kind, Other, OtherClass, Tier, UnixTime};

/// How many executables the "largest" and "most used" lists show.
pub const TOP_EXES: usize = 10;

/// One tier's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TierStats {
    /// `build` or `exe`.
    pub tier: Tier,
    /// Count and bytes.
    #[serde(flatten)]
    pub bytes: Bytes,
    /// Share of the cache's allocated bytes, 0.0 to 1.0.
    pub share: f64,
}

/// Entries by time since last use.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AgeBucket {
    /// `"<1h"`, `"<1d"`, `"<5d"` or `">=5d"`.
    pub bucket: &'static str,
    /// Count and bytes.
    #[serde(flatten)]
    pub bytes: Bytes,
}

/// One cached executable.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExeStats {
    /// The program's name (the file inside the entry's directory).
    pub program: String,
    /// The import path of the package it was built from
    /// (`example.com/hello`), where the executable says (Go's build
    /// information); filled in by the caller, which reads the cache.
    pub import_path: Option<String>,
    /// The entry, `ab/<hex>-d`.
    pub entry: String,
    /// The executable's size.
    pub apparent_bytes: u64,
    /// Directory plus executable, allocated.
    pub allocated_bytes: u64,
    /// Last use (Unix seconds).
    pub last_use: UnixTime,
    /// Uses seen by the wrapper or GOCACHEPROG.
    pub hits: u64,
}

/// Entries that nothing can reach or that are broken.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Garbage {
    /// Action entries whose output is gone.
    pub dangling_actions: Bytes,
    /// Action entries that could not be parsed (possibly being written).
    pub corrupt_actions: Bytes,
    /// Outputs and executables that no action entry names (possibly from
    /// a build in progress: Go writes the output before the action).
    pub orphan_outputs: Bytes,
}

/// Items that are not cache entries.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct OtherStats {
    /// Go's own files: README, trim.txt, testexpire.txt, fuzz/.
    pub go: Bytes,
    /// gocache's directory (index and lock).
    pub gocache: Bytes,
    /// Anything else: stray files, symlinks, odd entries; never touched.
    pub odd: Bytes,
    /// The odd items (up to 20), for a look.
    pub odd_items: Vec<Other>,
}

/// Count and bytes per kind.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KindStats {
    /// Action entries.
    pub action: Bytes,
    /// Output files.
    pub output: Bytes,
    /// Executable directories.
    pub exe: Bytes,
}

impl KindStats {
    /// The figures for one kind.
    pub fn get(&self, kind: Kind) -> &Bytes {
        match kind {
            Kind::Action => &self.action,
            Kind::Output => &self.output,
            Kind::Exe => &self.exe,
        }
    }
}

/// Everything `gocache stats` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stats {
    /// When the figures were computed (Unix seconds).
    pub now: UnixTime,
    /// All entries.
    pub total: Bytes,
    /// Per tier: build, exe.
    pub tiers: Vec<TierStats>,
    /// Per kind: action, output, exe.
    pub kinds: KindStats,
    /// By last use: <1h, <1d, <5d, >=5d.
    pub age: Vec<AgeBucket>,
    /// The largest executables.
    pub largest_exes: Vec<ExeStats>,
    /// The most used executables (by hits, then last use).
    pub most_used_exes: Vec<ExeStats>,
    /// True when some entry has hits: a go command ran through the
    /// wrapper or `gocache prog` (only they count hits).
    pub hits_recorded: bool,
    /// Unreachable or broken entries.
    pub garbage: Garbage,
    /// What else is in the directory.
    pub other: OtherStats,
}

/// Computes the figures for `entries` and `others` at `now`.
pub fn compute(entries: &[Entry], others: &[Other], now: UnixTime) -> Stats {
    let mut total = Bytes::default();
    let mut tiers = [Bytes::default(), Bytes::default()];
    let mut kinds = [Bytes::default(); 3];
    let mut ages = [Bytes::default(); 4];
    let mut data_ids: HashSet<Id> = HashSet::new();
    let mut named: HashSet<Id> = HashSet::new();
    let mut hits_recorded = false;
    for e in entries {
        hits_recorded |= e.hits > 0;
        total.add_entry(e);
        tiers[(e.tier() == Tier::Exe) as usize].add_entry(e);
        kinds[e.kind.to_db() as usize].add_entry(e);
        let age = now.saturating_sub(e.last_use);
        let bucket = match age {
            a if a < 3600 => 0,
            a if a < 86_400 => 1,
            a if a < 5 * 86_400 => 2,
            _ => 3,
        };
        ages[bucket].add_entry(e);
        match e.kind {
            Kind::Action => {
                if let Some(o) = e.output {
                    named.insert(o);
                }
            }
            Kind::Output | Kind::Exe => {
                data_ids.insert(e.name.id);
            }
        }
    }
    let mut garbage = Garbage::default();
    for e in entries {
        match (e.kind, e.output) {
            (Kind::Action, Some(o)) if !data_ids.contains(&o) => {
                garbage.dangling_actions.add_entry(e)
            }
            (Kind::Action, None) => garbage.corrupt_actions.add_entry(e),
            (Kind::Output | Kind::Exe, _) if !named.contains(&e.name.id) => {
                garbage.orphan_outputs.add_entry(e)
            }
            _ => {}
        }
    }
    let share = |b: &Bytes| {
        if total.allocated_bytes == 0 {
            0.0
        } else {
            b.allocated_bytes as f64 / total.allocated_bytes as f64
        }
    };
    let mut exes: Vec<&Entry> = entries.iter().filter(|e| e.kind == Kind::Exe).collect();
    let exe_stats = |e: &&Entry| ExeStats {
        program: e.program.clone().unwrap_or_default(),
        import_path: None,
        entry: e.name.rel_path(),
        apparent_bytes: e.apparent,
        allocated_bytes: e.allocated,
        last_use: e.last_use,
        hits: e.hits,
    };
    exes.sort_by(|a, b| b.allocated.cmp(&a.allocated).then(a.name.cmp(&b.name)));
    let largest_exes = exes.iter().take(TOP_EXES).map(exe_stats).collect();
    exes.sort_by(|a, b| {
        b.hits
            .cmp(&a.hits)
            .then(b.last_use.cmp(&a.last_use))
            .then(a.name.cmp(&b.name))
    });
    let most_used_exes = exes.iter().take(TOP_EXES).map(exe_stats).collect();

    let mut other = OtherStats::default();
    for o in others {
        match o.class {
            OtherClass::Go => other.go.add(o.apparent, o.allocated),
            OtherClass::Gocache => other.gocache.add(o.apparent, o.allocated),
            OtherClass::Odd => {
                other.odd.add(o.apparent, o.allocated);
                if other.odd_items.len() < 20 {
                    other.odd_items.push(o.clone());
                }
            }
        }
    }

    Stats {
        now,
        total,
        tiers: Tier::ALL
            .iter()
            .map(|&t| {
                let b = tiers[(t == Tier::Exe) as usize];
                TierStats {
                    tier: t,
                    bytes: b,
                    share: share(&b),
                }
            })
            .collect(),
        kinds: KindStats {
            action: kinds[0],
            output: kinds[1],
            exe: kinds[2],
        },
        age: ["<1h", "<1d", "<5d", ">=5d"]
            .iter()
            .zip(ages)
            .map(|(&bucket, bytes)| AgeBucket { bucket, bytes })
            .collect(),
        largest_exes,
        most_used_exes,
        hits_recorded,
        garbage,
        other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    fn e(id: u8, kind: Kind, alloc: u64, last_use: UnixTime, output: Option<u8>) -> Entry {
        fixtures::entry(id, kind)
            .sized(alloc / 2, alloc)
            .used_at(last_use)
            .naming(output)
    }

    #[test]
    fn tiers_ages_and_garbage_add_up() {
        let now = 100 * 86_400;
        let entries = vec![
            e(1, Kind::Action, 4096, now - 10, Some(2)), // names output 2
            e(2, Kind::Output, 8192, now - 10, None),
            e(3, Kind::Action, 4096, now - 7200, Some(9)), // dangling
            e(4, Kind::Output, 4096, now - 2 * 86_400, None), // orphan
            e(5, Kind::Action, 4096, now - 6 * 86_400, None), // corrupt
            e(6, Kind::Exe, 1 << 20, now - 6 * 86_400, None), // named by 7
            e(7, Kind::Action, 4096, now - 6 * 86_400, Some(6)),
        ];
        let s = compute(&entries, &[], now);
        assert_eq!(s.total.entries, 7);
        assert_eq!(s.total.allocated_bytes, 4 * 4096 + 8192 + 4096 + (1 << 20));
        assert_eq!(s.tiers[1].bytes.allocated_bytes, 1 << 20);
        assert!((s.tiers[0].share + s.tiers[1].share - 1.0).abs() < 1e-9);
        let counts: Vec<u64> = s.age.iter().map(|a| a.bytes.entries).collect();
        assert_eq!(counts, vec![2, 1, 1, 3]);
        assert_eq!(s.garbage.dangling_actions.entries, 1);
        assert_eq!(s.garbage.corrupt_actions.entries, 1);
        assert_eq!(s.garbage.orphan_outputs.entries, 1);
        assert_eq!(s.largest_exes[0].program, "prog6");
    }
}
