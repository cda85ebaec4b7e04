//! The eviction plan for a 1M-entry index (target: under 0.1x `du -s` of
//! such a cache, about 2.2 s warm on the reference machine, so < 220 ms).
//! `scripts/bench.sh` measures `du -s` side by side on a real 1M cache.

use criterion::{Criterion, criterion_group, criterion_main};
use gocache::limits::Limits;
use gocache::policy::{Environment, plan};
use gocache::synth_cache::{SynthSpec, index_entries};

fn bench(c: &mut Criterion) {
    let now = 1_800_000_000;
    let entries = index_entries(&SynthSpec::realistic(1_000_000, 1, now));
    let total: u64 = entries.iter().map(|e| e.allocated).sum();
    let limits = Limits {
        budget: Some(total / 2),
        exe_quota: Some(4 << 20),
        ..Limits::default()
    };
    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.bench_function("plan 1M entries, budget at half", |b| {
        b.iter(|| plan(&entries, &limits, &Environment::default(), now))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
