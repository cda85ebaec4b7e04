//! Deterministic synthetic Go build caches on disk, for benchmarks and
//! tests. (Synthetic traces, of what go asks a cache for, are
//! [`crate::sim::synth_trace`]'s.)
//!
//! What is realistic (from `shared/data`: a cache Go 1.27.3 built from
//! `go build std`, `go vet std`, a few `go test` and two `go run`):
//! - the mix: about 76% action entries (175 bytes, Go's exact format), 24%
//!   outputs, and a few executable directories holding one program each;
//! - output sizes, drawn from the measured distribution ([`OUTPUT_SIZES`]:
//!   quantiles, interpolated): median about 10 KB, p90 about 1 MB;
//! - each action names an existing output (about three actions an output),
//!   with a small share of garbage: outputs no action names, actions whose
//!   output is gone;
//! - last-use mtimes spread over `max_age` with most uses recent.
//!
//! What is not: a 1M-entry cache of real sizes would need about 100 GB, so
//! outputs larger than `dense_limit` are sparse files (their apparent size
//! is realistic, their allocated size is not) unless `dense_limit` is
//! raised. Their content is not the SHA-256 their name claims.
//!
//! Same spec, same tree: names, contents, sizes and mtimes all derive from
//! the seed through BLAKE3.

use std::fs::{File, FileTimes};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::layout::{ActionEntry, EntryName, Id, subdir_name};
use crate::model::UnixTime;

/// Quantiles of the measured output sizes (`shared/data/output-sizes.txt`,
/// 2,596 outputs): `(quantile, bytes)`, interpolated linearly between.
pub const OUTPUT_SIZES: &[(f64, u64)] = &[
    (0.0, 0),
    (0.05, 16),
    (0.1, 29),
    (0.15, 50),
    (0.2, 84),
    (0.25, 182),
    (0.3, 516),
    (0.35, 941),
    (0.4, 1572),
    (0.45, 2685),
    (0.5, 9768),
    (0.55, 52922),
    (0.6, 92552),
    (0.65, 147_802),
    (0.7, 234_286),
    (0.75, 338_702),
    (0.8, 485_690),
    (0.85, 755_404),
    (0.9, 1_063_906),
    (0.95, 2_264_824),
    (0.97, 2_484_566),
    (0.98, 3_390_042),
    (0.99, 4_904_320),
    (0.995, 7_216_230),
    (1.0, 15_020_782),
];

/// The measured executable sizes (`shared/data/exe-sizes.txt`).
pub const EXE_SIZES: &[u64] = &[1_519_776, 4_522_247];

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthSpec {
    /// Seed for everything.
    pub seed: u64,
    /// Number of entries (action files, outputs and executables).
    pub entries: usize,
    /// Number of executable directories among them.
    pub exes: usize,
    /// "Now": mtimes lie before it.
    pub now: UnixTime,
    /// The oldest last use, in seconds before `now`.
    pub max_age: i64,
    /// Outputs up to this size are written byte for byte; larger ones are
    /// sparse. Executables are always sparse.
    pub dense_limit: u64,
    /// Share of outputs no action names.
    pub orphan_outputs: f64,
    /// Share of actions whose output does not exist.
    pub dangling_actions: f64,
    /// Writer threads (0: one per core).
    pub threads: usize,
}

impl SynthSpec {
    /// A cache shaped like the measured one, `entries` large.
    pub fn realistic(entries: usize, seed: u64, now: UnixTime) -> SynthSpec {
        SynthSpec {
            seed,
            entries,
            exes: (entries / 50_000).max(2),
            now,
            max_age: 10 * 86_400,
            dense_limit: 64 << 10,
            orphan_outputs: 0.005,
            dangling_actions: 0.005,
            threads: 0,
        }
    }
}

/// What was generated, for checks against an independent walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthReport {
    /// Action entry files.
    pub actions: u64,
    /// Output files.
    pub outputs: u64,
    /// Executable directories.
    pub exes: u64,
    /// Outputs no action names.
    pub orphan_outputs: u64,
    /// Actions whose output does not exist.
    pub dangling_actions: u64,
    /// Sum of apparent sizes of all entries (for an exe, its program).
    pub apparent_bytes: u64,
}

/// A deterministic stream of numbers for item `i` of kind `tag`.
fn rng(seed: u64, tag: &[u8], i: u64) -> fastrand::Rng {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(tag);
    h.update(&i.to_le_bytes());
    let b = h.finalize();
    fastrand::Rng::with_seed(u64::from_le_bytes(
        b.as_bytes()[..8].try_into().unwrap_or([0; 8]),
    ))
}

fn id(seed: u64, tag: &[u8], i: u64) -> Id {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(b"id");
    h.update(tag);
    h.update(&i.to_le_bytes());
    Id(*h.finalize().as_bytes())
}

/// Draws an output size from [`OUTPUT_SIZES`].
pub fn output_size(r: &mut fastrand::Rng) -> u64 {
    let q = r.f64();
    let i = OUTPUT_SIZES
        .partition_point(|&(p, _)| p <= q)
        .clamp(1, OUTPUT_SIZES.len() - 1);
    let ((q0, s0), (q1, s1)) = (OUTPUT_SIZES[i - 1], OUTPUT_SIZES[i]);
    let t = if q1 > q0 { (q - q0) / (q1 - q0) } else { 0.0 };
    (s0 as f64 + t * (s1 as f64 - s0 as f64)).round() as u64
}

/// Seconds since last use: exponential with a quarter of `max_age` as the
/// mean, capped at `max_age`.
fn age(r: &mut fastrand::Rng, max_age: i64) -> i64 {
    let mean = max_age as f64 / 4.0;
    let a = -(1.0 - r.f64()).ln() * mean;
    (a as i64).clamp(0, max_age)
}

enum Item {
    Output {
        id: Id,
        size: u64,
        mtime: UnixTime,
    },
    Exe {
        id: Id,
        size: u64,
        mtime: UnixTime,
        program: String,
    },
    Action {
        entry: ActionEntry,
        mtime: UnixTime,
    },
}

/// The items of the cache, in a fixed order.
fn items(spec: &SynthSpec) -> (Vec<Item>, SynthReport) {
    let seed = spec.seed;
    let exes = spec.exes.min(spec.entries / 2);
    // outputs + exes named by about 3.2 actions each: 76% actions.
    let data = ((spec.entries as f64) * 0.24).round() as usize;
    let data = data.clamp(exes, spec.entries.saturating_sub(exes).max(exes));
    let outputs = data - exes;
    let actions = spec.entries - data;
    let orphans = ((outputs as f64) * spec.orphan_outputs) as usize;
    let dangling = ((actions as f64) * spec.dangling_actions) as usize;
    let mut report = SynthReport::default();
    let mut items = Vec::with_capacity(spec.entries);
    let mut data_info: Vec<(Id, u64, UnixTime)> = Vec::with_capacity(data);
    for i in 0..outputs as u64 {
        let mut r = rng(seed, b"out", i);
        let size = output_size(&mut r);
        let mtime = spec.now - age(&mut r, spec.max_age);
        let oid = id(seed, b"out", i);
        items.push(Item::Output {
            id: oid,
            size,
            mtime,
        });
        data_info.push((oid, size, mtime));
        report.outputs += 1;
        report.apparent_bytes += size;
    }
    for i in 0..exes as u64 {
        let mut r = rng(seed, b"exe", i);
        let base = EXE_SIZES[(i as usize) % EXE_SIZES.len()];
        let size = base + r.u64(0..base / 4);
        let mtime = spec.now - age(&mut r, spec.max_age);
        let eid = id(seed, b"exe", i);
        items.push(Item::Exe {
            id: eid,
            size,
            mtime,
            program: format!("tool{i}"),
        });
        data_info.push((eid, size, mtime));
        report.exes += 1;
        report.apparent_bytes += size;
    }
    report.orphan_outputs = orphans as u64;
    // Outputs [0, named) are named by actions; the last `orphans` outputs
    // are not. Every exe is named.
    let named: Vec<usize> = (0..outputs.saturating_sub(orphans))
        .chain(outputs..data)
        .collect();
    for j in 0..actions as u64 {
        let mut r = rng(seed, b"act", j);
        let aid = id(seed, b"act", j);
        let (output, size, mtime) = if (j as usize) < dangling || named.is_empty() {
            report.dangling_actions += 1;
            let m = spec.now - age(&mut r, spec.max_age);
            (id(seed, b"gone", j), r.u64(0..100_000), m)
        } else {
            // The first actions cover every named output once, so none is
            // an accidental orphan; the rest pick at random.
            let k = if (j as usize - dangling) < named.len() {
                named[j as usize - dangling]
            } else {
                named[r.usize(0..named.len())]
            };
            let (oid, size, m) = data_info[k];
            (oid, size, (m - r.i64(0..3600)).max(0))
        };
        items.push(Item::Action {
            entry: ActionEntry {
                action: aid,
                output,
                size,
                time_nanos: mtime.saturating_mul(1_000_000_000),
            },
            mtime,
        });
        report.actions += 1;
        report.apparent_bytes += crate::layout::ACTION_ENTRY_SIZE as u64;
    }
    (items, report)
}

fn at(t: UnixTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64)
}

fn write_item(dir: &Path, spec: &SynthSpec, item: &Item, buf: &[u8]) -> std::io::Result<()> {
    let set = |f: &File, t: UnixTime| {
        f.set_times(FileTimes::new().set_modified(at(t)).set_accessed(at(t)))
    };
    match item {
        Item::Output { id, size, mtime } => {
            let path = EntryName::data(*id).path_in(dir);
            let mut f = File::create(&path)?;
            if *size <= spec.dense_limit {
                let mut left = *size as usize;
                while left > 0 {
                    let n = left.min(buf.len());
                    f.write_all(&buf[..n])?;
                    left -= n;
                }
            } else {
                f.set_len(*size)?;
            }
            set(&f, *mtime)
        }
        Item::Exe {
            id,
            size,
            mtime,
            program,
        } => {
            let d = EntryName::data(*id).path_in(dir);
            std::fs::create_dir(&d)?;
            let f = File::create(d.join(program))?;
            f.set_len(*size)?;
            std::fs::set_permissions(
                d.join(program),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )?;
            set(&f, *mtime)?;
            set(&File::open(&d)?, *mtime)
        }
        Item::Action { entry, mtime } => {
            let path = EntryName::action(entry.action).path_in(dir);
            let mut f = File::create(&path)?;
            f.write_all(entry.format().as_bytes())?;
            set(&f, *mtime)
        }
    }
}

/// Generates the cache described by `spec` into `dir` (created if needed;
/// should be empty).
pub fn generate(dir: &Path, spec: &SynthSpec) -> Result<SynthReport> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    for s in 0..=255u8 {
        let d = dir.join(subdir_name(s));
        std::fs::create_dir_all(&d).map_err(|e| Error::io("creating", &d, e))?;
    }
    std::fs::write(
        dir.join("README"),
        "This directory holds cached build artifacts from the Go build system.\n\
         Run \"go clean -cache\" if the directory is getting too large.\n\
         Run \"go clean -fuzzcache\" to delete the fuzz cache.\n\
         See golang.org to learn more about Go.\n",
    )
    .map_err(|e| Error::io("writing", dir.join("README"), e))?;
    std::fs::write(dir.join("trim.txt"), spec.now.to_string())
        .map_err(|e| Error::io("writing", dir.join("trim.txt"), e))?;
    let (items, report) = items(spec);
    let threads = match spec.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut buf = vec![0u8; 64 << 10];
    fastrand::Rng::with_seed(spec.seed).fill(&mut buf);
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let buf = &buf;
                s.spawn(move || -> std::io::Result<()> {
                    for item in part {
                        write_item(dir, spec, item, buf)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| Error::Invalid("a synth writer thread panicked".into()))?
                .map_err(|e| Error::io("writing synthetic entries in", dir, e))?;
        }
        Ok::<(), Error>(())
    })?;
    Ok(report)
}

/// The entries the index would hold for `spec`'s cache, without writing
/// anything: for benchmarks and tests of the policy at scale. Allocated
/// sizes assume 4 KiB blocks and dense files.
pub fn index_entries(spec: &SynthSpec) -> Vec<crate::model::Entry> {
    use crate::model::{Entry, Kind};
    let blocks = |n: u64| n.div_ceil(4096) * 4096;
    let (items, _) = items(spec);
    items
        .into_iter()
        .map(|item| match item {
            Item::Output { id, size, mtime } => Entry {
                name: EntryName::data(id),
                kind: Kind::Output,
                apparent: size,
                allocated: blocks(size),
                mtime,
                last_use: mtime,
                hits: 0,
                first_seen: spec.now,
                output: None,
                program: None,
                problem: None,
            },
            Item::Exe {
                id,
                size,
                mtime,
                program,
            } => Entry {
                name: EntryName::data(id),
                kind: Kind::Exe,
                apparent: size,
                allocated: blocks(size) + 4096,
                mtime,
                last_use: mtime,
                hits: 0,
                first_seen: spec.now,
                output: None,
                program: Some(program),
                problem: None,
            },
            Item::Action { entry, mtime } => Entry {
                name: EntryName::action(entry.action),
                kind: Kind::Action,
                apparent: crate::layout::ACTION_ENTRY_SIZE as u64,
                allocated: 4096,
                mtime,
                last_use: mtime,
                hits: 0,
                first_seen: spec.now,
                output: Some(entry.output),
                program: None,
                problem: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn walk(dir: &Path) -> BTreeMap<String, (u64, SystemTime, Vec<u8>)> {
        let mut m = BTreeMap::new();
        for s in 0..=255u8 {
            for e in std::fs::read_dir(dir.join(subdir_name(s))).unwrap() {
                let p = e.unwrap().path();
                let md = std::fs::metadata(&p).unwrap();
                let content = if md.is_file() && md.len() < 4096 {
                    std::fs::read(&p).unwrap()
                } else {
                    vec![]
                };
                m.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    (md.len(), md.modified().unwrap(), content),
                );
            }
        }
        m
    }

    #[test]
    fn same_spec_same_tree_and_every_action_parses() {
        let now = 1_800_000_000;
        let spec = SynthSpec {
            dense_limit: 4096,
            ..SynthSpec::realistic(3000, 42, now)
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ra = generate(a.path(), &spec).unwrap();
        let rb = generate(b.path(), &spec).unwrap();
        assert_eq!(ra, rb);
        assert_eq!(walk(a.path()), walk(b.path()));
        assert_eq!(ra.actions + ra.outputs + ra.exes, 3000);
        assert!(
            (0.70..0.80).contains(&(ra.actions as f64 / 3000.0)),
            "{ra:?}"
        );
        assert_eq!(ra.exes, 2);

        let mut outputs = std::collections::HashSet::new();
        let mut actions = Vec::new();
        for s in 0..=255u8 {
            for e in std::fs::read_dir(a.path().join(subdir_name(s))).unwrap() {
                let e = e.unwrap();
                let name = EntryName::parse_os(&e.file_name()).unwrap();
                assert_eq!(name.subdir(), s);
                match name.suffix {
                    crate::layout::Suffix::Data => {
                        outputs.insert(name.id);
                    }
                    crate::layout::Suffix::Action => {
                        let data = std::fs::read(e.path()).unwrap();
                        actions.push(ActionEntry::parse(&data, Some(name.id)).unwrap());
                    }
                }
            }
        }
        let dangling = actions
            .iter()
            .filter(|a| !outputs.contains(&a.output))
            .count() as u64;
        assert_eq!(dangling, ra.dangling_actions);
        let named: std::collections::HashSet<Id> = actions.iter().map(|a| a.output).collect();
        let orphans = outputs.iter().filter(|o| !named.contains(o)).count() as u64;
        assert_eq!(orphans, ra.orphan_outputs);
    }

    #[test]
    fn sizes_follow_the_measured_distribution() {
        let mut r = fastrand::Rng::with_seed(1);
        let mut v: Vec<u64> = (0..20_000).map(|_| output_size(&mut r)).collect();
        v.sort_unstable();
        let median = v[v.len() / 2];
        assert!((5_000..20_000).contains(&median), "median {median}");
        assert!(v[v.len() * 9 / 10] > 500_000);
    }
}
