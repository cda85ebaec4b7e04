//! The simulator on a synthetic fortnight (about 350,000 lookups): reading
//! a trace into a workload, one replay per policy at 20% of the footprint,
//! and the PFOO-L bound. `gocache simulate` runs a replay per policy and
//! budget on worker threads, so these times add up to its CPU time.

use criterion::{Criterion, criterion_group, criterion_main};
use gocache::sim::synth_trace::{GenSpec, generate};
use gocache::sim::{PolicyName, Workload, bound, replay};

fn bench(c: &mut Criterion) {
    let trace = generate(&GenSpec::fortnight(1));
    let mut g = c.benchmark_group("sim");
    g.sample_size(10);
    g.bench_function("workload from 700k events", |b| {
        b.iter(|| Workload::from_traces(std::slice::from_ref(&trace)))
    });
    let w = Workload::from_traces(&[trace]);
    let unbounded = {
        let mut p = PolicyName::LruGroups.build(&w, u64::MAX).unwrap();
        replay::replay(&w, p.as_mut(), u64::MAX, &|_| {})
    };
    let budget = unbounded.peak_bytes / 5;
    for p in [
        PolicyName::LruGroups,
        PolicyName::LruActions,
        PolicyName::GdCostClassic,
        PolicyName::Gdsf,
        PolicyName::Belady,
    ] {
        g.bench_function(format!("replay {p} at 20%"), |b| {
            b.iter(|| {
                let mut pol = p.build(&w, budget).unwrap();
                replay::replay(&w, pol.as_mut(), budget, &|_| {})
            })
        });
    }
    g.bench_function("PFOO-L bound at 20%", |b| {
        b.iter(|| bound::pfoo_l(&w, &[budget]))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
