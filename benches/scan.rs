//! A full scan into a fresh index and a no-change rescan of a 100k-entry
//! synthetic cache, with `du -s` of the same directory measured in the
//! same run as the baseline (targets: full scan <= 1.0x, rescan < 0.05x).
//! The 1M-entry figures come from `scripts/bench.sh`.

use std::path::PathBuf;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use gocache::index::Index;
use gocache::report::Silent;
use gocache::scan::{ScanOptions, scan};
use gocache::synth_cache::{SynthSpec, generate};

fn cache() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-synth-100k-v1");
    if !dir.join("trim.txt").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let now = chrono::Utc::now().timestamp();
        generate(&dir, &SynthSpec::realistic(100_000, 1, now)).expect("generating the bench cache");
    }
    dir
}

fn bench(c: &mut Criterion) {
    let dir = cache();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("scan 100k");
    g.sample_size(10);
    g.bench_function("du -s (baseline)", |b| {
        b.iter(|| {
            let out = Command::new("du").arg("-s").arg(&dir).output().unwrap();
            assert!(out.status.success());
        })
    });
    let mut n = 0;
    g.bench_function("full scan, fresh index", |b| {
        b.iter(|| {
            n += 1;
            let mut ix = Index::open(&tmp.path().join(format!("fresh-{n}.sqlite"))).unwrap();
            scan(
                &dir,
                &mut ix,
                &ScanOptions::default(),
                chrono::Utc::now().timestamp(),
                &Silent,
            )
            .unwrap()
        })
    });
    let mut ix = Index::open(&tmp.path().join("kept.sqlite")).unwrap();
    scan(
        &dir,
        &mut ix,
        &ScanOptions::default(),
        chrono::Utc::now().timestamp(),
        &Silent,
    )
    .unwrap();
    g.bench_function("no-change rescan", |b| {
        b.iter(|| {
            scan(
                &dir,
                &mut ix,
                &ScanOptions::default(),
                chrono::Utc::now().timestamp(),
                &Silent,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
