//! Synthetic Go-like traces, for tests and benchmarks before real traces
//! are recorded (and beside them after). (Synthetic caches on disk are
//! [`crate::synth_cache`]'s.)
//!
//! The model, deterministic from a seed:
//!
//! - **Packages** in a dependency DAG: the standard library, third-party
//!   modules (each package imports standard and earlier third-party
//!   packages), a few tools (`go run` main packages in third-party
//!   modules), and the developer's own modules, whose packages import each
//!   other, the standard library and their modules' dependencies.
//! - **Action entries**, as Go makes them: per package a compile (its
//!   archive, sized from the measured output sizes [`crate::synth_cache::output_size`]),
//!   a vet (its facts: most often empty, and every empty output is the same
//!   entry, so thousands of actions name it), and for tested packages a test
//!   compile, a test-inputs list and the test result (a small log, costly:
//!   a link and a run). A tool's link makes an executable entry (`exe`).
//!   A compile's action ID covers the package's sources and its imports'
//!   export data, so an edit that keeps a package's API recompiles only the
//!   package; one that changes it recompiles its importers too (and each
//!   of their APIs changes with some probability); test results and links
//!   depend on everything below them.
//! - **Days**: weekdays of a session each (weekends rarely), commands at
//!   random during it: `go build ./...`, `go vet ./...`, `go test ./...`,
//!   `go test` of one package, `go run` of a tool; edits to a few packages
//!   (some hot) between commands; branch switches (a branch changes a tenth
//!   of the module's packages, and switching back brings their old entries
//!   back); a third-party module bumped now and then; the developer moving
//!   between modules; rarely a toolchain upgrade, which changes everything.
//!
//! The generator keeps an unbounded cache: a `get` hits when an earlier
//! `put` stored the action. Every miss is followed by a `put` with the
//! rebuild's seconds. Costs (seconds): a compile 0.01 + size / 3 MiB/s,
//! a vet 0.02 + 0.3 × the compile, a test compile 1.3 × the compile, a
//! test result 0.3 (the link) + the test's run time (log-normal, median
//! 0.4 s, a long tail), a tool's link 0.4 + size / 25 MiB/s; each times a
//! little noise. While a command runs, the clock advances by each miss's
//! cost over [`GenSpec::parallelism`].

use std::collections::HashMap;

use crate::model::UnixTime;
use crate::trace::schema::{Event, Header, Trace, TraceId};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenSpec {
    /// Seed for everything.
    pub seed: u64,
    /// Unix seconds of the first day's midnight, a Monday.
    pub start: UnixTime,
    /// Days to simulate.
    pub days: u32,
    /// The developer's own modules.
    pub modules: usize,
    /// Packages in each of them.
    pub packages: usize,
    /// Standard library packages.
    pub std_packages: usize,
    /// Third-party modules.
    pub dep_modules: usize,
    /// Packages in each third-party module.
    pub dep_packages: usize,
    /// Tools run with `go run`.
    pub tools: usize,
    /// Go commands in a working day, on average.
    pub commands_per_day: f64,
    /// Misses rebuilt at once (the clock advances by cost / parallelism).
    pub parallelism: f64,
}

impl GenSpec {
    /// A small workload for unit tests: a few thousand requests.
    pub fn small(seed: u64) -> GenSpec {
        GenSpec {
            seed,
            start: 1_767_571_200, // Monday 2026-01-05
            days: 4,
            modules: 2,
            packages: 12,
            std_packages: 30,
            dep_modules: 2,
            dep_packages: 5,
            tools: 1,
            commands_per_day: 25.0,
            parallelism: 4.0,
        }
    }

    /// A developer's fortnight: three modules, about 350,000 lookups.
    pub fn fortnight(seed: u64) -> GenSpec {
        GenSpec {
            days: 14,
            modules: 3,
            packages: 80,
            std_packages: 250,
            dep_modules: 10,
            dep_packages: 12,
            tools: 3,
            commands_per_day: 120.0,
            ..GenSpec::small(seed)
        }
    }
}

/// The source a synthetic trace's header names.
pub const SOURCE: &str = "synth";

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// SplitMix64's finaliser: a good 64-bit mix.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn mix2(a: u64, b: u64) -> u64 {
    mix(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ mix(b))
}

fn blocks(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

struct Pkg {
    key: u64,
    deps: Vec<u32>,
    rdeps: Vec<u32>,
    ver: u64,
    api: u64,
    /// Archive bytes.
    size: u64,
    /// Compile seconds at ver 0 (noise is added per version).
    compile_s: f64,
    /// Test run seconds, for tested packages.
    test_s: Option<f64>,
    vet_empty: bool,
    /// For a tool: its executable's bytes.
    exe_size: Option<u64>,
}

struct Module {
    pkgs: std::ops::Range<u32>,
    /// Per branch: (ver, api) of each package, saved while another is out.
    branches: Vec<Vec<(u64, u64)>>,
    branch: usize,
    /// Third-party modules it depends on.
    deps: Vec<u32>,
}

struct World {
    rng: fastrand::Rng,
    pkgs: Vec<Pkg>,
    std: std::ops::Range<u32>,
    dep_mods: Vec<std::ops::Range<u32>>,
    tools: Vec<u32>,
    mods: Vec<Module>,
    toolchain: u64,
    fresh: u64,
    /// The unbounded cache: action -> (output, bytes).
    cache: HashMap<u64, (u64, u64)>,
    events: Vec<Event>,
    t: i64,
    /// When the last put so far is in.
    done: i64,
    parallelism: f64,
    /// Scratch for closures: a stamp per package, and deep hashes.
    stamp: Vec<u32>,
    epoch: u32,
    deep: Vec<u64>,
}

/// Which actions a command asks for.
#[derive(Clone, Copy, PartialEq)]
enum Cmd {
    Build,
    Vet,
    Test,
    TestOne(u32),
    Run(u32),
}

impl World {
    fn new(spec: &GenSpec) -> World {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let mut w = World {
            rng: fastrand::Rng::with_seed(mix(spec.seed)),
            pkgs: Vec::new(),
            std: 0..0,
            dep_mods: Vec::new(),
            tools: Vec::new(),
            mods: Vec::new(),
            toolchain: 1,
            fresh: 1,
            cache: HashMap::new(),
            events: Vec::new(),
            t: spec.start * 1000,
            done: 0,
            parallelism: spec.parallelism.max(1.0),
            stamp: Vec::new(),
            epoch: 0,
            deep: Vec::new(),
        };
        // Imports of a new package: `n` (a number in `count`) drawn from
        // `range`, nearer the bottom (runtime, errors, io…) more often.
        type Count = std::ops::RangeInclusive<usize>;
        let pick = |rng: &mut fastrand::Rng, range: std::ops::Range<u32>, count: Count| {
            let n = rng.usize(count);
            if range.is_empty() {
                return vec![];
            }
            let len = range.end - range.start;
            let mut v: Vec<u32> = (0..n)
                .map(|_| range.start + ((rng.f64().powi(2) * f64::from(len)) as u32).min(len - 1))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let add = |w: &mut World, rng: &mut fastrand::Rng, deps: Vec<u32>| -> u32 {
            let i = w.pkgs.len() as u32;
            let size = blocks(crate::synth_cache::output_size(rng).max(2048));
            w.pkgs.push(Pkg {
                key: mix2(spec.seed, u64::from(i) + 1),
                deps,
                rdeps: Vec::new(),
                ver: 0,
                api: 0,
                size,
                compile_s: 0.01 + size as f64 / (3 << 20) as f64,
                test_s: None,
                vet_empty: rng.f64() < 0.7,
                exe_size: None,
            });
            i
        };
        for j in 0..spec.std_packages as u32 {
            let deps = pick(&mut rng, 0..j, 0..=j.min(4) as usize);
            add(&mut w, &mut rng, deps);
        }
        w.std = 0..spec.std_packages as u32;
        for _ in 0..spec.dep_modules {
            let start = w.pkgs.len() as u32;
            for k in 0..spec.dep_packages as u32 {
                let mut deps = pick(&mut rng, w.std.clone(), 1..=4);
                deps.extend(pick(&mut rng, start..start + k, 0..=2));
                deps.extend(pick(&mut rng, spec.std_packages as u32..start, 0..=1));
                deps.sort_unstable();
                deps.dedup();
                add(&mut w, &mut rng, deps);
            }
            w.dep_mods.push(start..w.pkgs.len() as u32);
        }
        for _ in 0..spec.tools {
            let mut deps = pick(&mut rng, w.std.clone(), 2..=6);
            if let Some(m) = (!w.dep_mods.is_empty()).then(|| rng.usize(0..w.dep_mods.len())) {
                deps.extend(pick(&mut rng, w.dep_mods[m].clone(), 1..=3));
            }
            deps.sort_unstable();
            deps.dedup();
            let i = add(&mut w, &mut rng, deps);
            let base =
                crate::synth_cache::EXE_SIZES[rng.usize(0..crate::synth_cache::EXE_SIZES.len())];
            w.pkgs[i as usize].exe_size = Some(blocks(base + rng.u64(0..base)));
            w.tools.push(i);
        }
        for _ in 0..spec.modules {
            let start = w.pkgs.len() as u32;
            let deps: Vec<u32> = (0..w.dep_mods.len().min(rng.usize(1..=4)))
                .map(|_| rng.u32(0..w.dep_mods.len() as u32))
                .collect();
            for k in 0..spec.packages as u32 {
                let mut d = pick(&mut rng, w.std.clone(), 1..=5);
                d.extend(pick(&mut rng, start..start + k, 0..=3));
                for &m in &deps {
                    if rng.bool() {
                        d.extend(pick(&mut rng, w.dep_mods[m as usize].clone(), 1..=1));
                    }
                }
                d.sort_unstable();
                d.dedup();
                let i = add(&mut w, &mut rng, d);
                if rng.f64() < 0.7 {
                    let run = (0.4f64.ln() + 1.2 * normal(&mut rng)).exp().min(120.0);
                    w.pkgs[i as usize].test_s = Some(run);
                }
            }
            w.mods.push(Module {
                pkgs: start..w.pkgs.len() as u32,
                branches: vec![Vec::new(); 3],
                branch: 0,
                deps,
            });
        }
        for i in 0..w.pkgs.len() {
            for d in w.pkgs[i].deps.clone() {
                w.pkgs[d as usize].rdeps.push(i as u32);
            }
        }
        w.stamp = vec![0; w.pkgs.len()];
        w.deep = vec![0; w.pkgs.len()];
        w
    }

    fn fresh(&mut self) -> u64 {
        self.fresh += 1;
        self.fresh
    }

    /// The packages below `roots`, in dependency order (ascending).
    fn closure(&mut self, roots: impl Iterator<Item = u32>) -> Vec<u32> {
        self.epoch += 1;
        let mut stack: Vec<u32> = roots.collect();
        let mut out = Vec::new();
        while let Some(p) = stack.pop() {
            if self.stamp[p as usize] == self.epoch {
                continue;
            }
            self.stamp[p as usize] = self.epoch;
            out.push(p);
            stack.extend(self.pkgs[p as usize].deps.iter().copied());
        }
        out.sort_unstable();
        out
    }

    fn compile_id(&self, p: u32) -> u64 {
        let pk = &self.pkgs[p as usize];
        let sig = pk.deps.iter().fold(0u64, |s, &d| {
            let d = &self.pkgs[d as usize];
            s.wrapping_add(mix2(d.key, d.api))
        });
        mix2(mix2(mix2(pk.key, pk.ver), self.toolchain), sig)
    }

    /// Go looks `action` up; on a miss it rebuilds for `cost` seconds and
    /// stores `output` of `size` bytes.
    fn lookup(&mut self, action: u64, output: u64, size: u64, cost: f64) {
        let a = TraceId(action);
        match self.cache.get(&action) {
            Some(&(o, s)) => {
                self.events.push(Event::get_hit(self.t, a, TraceId(o), s));
                self.t += 1;
            }
            None => {
                let ms = (cost * 1000.0).round().max(1.0) as i64;
                let cost = ms as f64 / 1000.0;
                self.events.push(Event::get_miss(self.t, a));
                let put = Event::put(self.t + ms, a, TraceId(output), size, Some(cost));
                self.events.push(put);
                self.done = self.done.max(self.t + ms);
                self.cache.insert(action, (output, size));
                self.t += ((ms as f64) / self.parallelism).ceil() as i64;
            }
        }
    }

    fn noise(&self, id: u64) -> f64 {
        0.8 + 0.45 * (mix(id) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn run(&mut self, m: usize, cmd: Cmd) {
        let roots: Vec<u32> = match cmd {
            Cmd::TestOne(p) => vec![p],
            Cmd::Run(t) => vec![t],
            _ => self.mods[m].pkgs.clone().collect(),
        };
        let all = self.closure(roots.iter().copied());
        let mut compiled = Vec::with_capacity(all.len());
        for &p in &all {
            let id = self.compile_id(p);
            let pk = &self.pkgs[p as usize];
            let size = blocks(pk.size + pk.size * (pk.ver % 7) / 50);
            let cost = pk.compile_s * self.noise(id);
            self.lookup(id, mix2(id, 1), size, cost);
            compiled.push(id);
        }
        if cmd == Cmd::Vet {
            for (k, &p) in all.iter().enumerate() {
                let id = mix2(compiled[k], 2);
                let pk = &self.pkgs[p as usize];
                let (out, size) = if pk.vet_empty {
                    (mix(0xe3b0_c442_98fc_1c14), 0)
                } else {
                    (mix2(id, 1), 4096 * (1 + mix(id) % 4))
                };
                let cost = (0.02 + 0.3 * pk.compile_s) * self.noise(id);
                self.lookup(id, out, size, cost);
            }
        }
        if matches!(cmd, Cmd::Test | Cmd::TestOne(_) | Cmd::Run(_)) {
            // Deep hashes: a package and everything below it.
            for (k, &p) in all.iter().enumerate() {
                let below = self.pkgs[p as usize]
                    .deps
                    .iter()
                    .fold(0u64, |s, &d| s.wrapping_add(self.deep[d as usize]));
                self.deep[p as usize] = mix2(compiled[k], below);
            }
        }
        match cmd {
            Cmd::Test | Cmd::TestOne(_) => {
                for &p in &roots {
                    let pk = &self.pkgs[p as usize];
                    let Some(run) = pk.test_s else { continue };
                    let (size, compile_s) = (pk.size, pk.compile_s);
                    let k = all.binary_search(&p).unwrap_or(0);
                    let tc = mix2(compiled[k], 3);
                    let cost = 1.3 * compile_s * self.noise(tc);
                    self.lookup(tc, mix2(tc, 1), blocks(size * 13 / 10), cost);
                    let deep = self.deep[p as usize];
                    let inputs = mix2(deep, 4);
                    self.lookup(inputs, mix2(inputs, 1), 4096, 0.002);
                    let result = mix2(deep, 5);
                    let log = 4096 * (1 + mix(result) % 2);
                    let cost = (0.3 + run) * self.noise(result);
                    self.lookup(result, mix2(result, 1), log, cost);
                }
            }
            Cmd::Run(t) => {
                let size = self.pkgs[t as usize].exe_size.unwrap_or(1 << 22);
                let link = mix2(self.deep[t as usize], 6);
                let cost = (0.4 + size as f64 / (25 << 20) as f64) * self.noise(link);
                let before = self.events.len();
                self.lookup(link, mix2(link, 1), size, cost);
                for e in &mut self.events[before..] {
                    e.exe = e.o.is_some();
                }
            }
            _ => {}
        }
    }

    /// Edits package `p`: new sources; maybe a new API, which may ripple
    /// up through its importers' export data.
    fn edit(&mut self, p: u32, api_change: f64) {
        let v = self.fresh();
        self.pkgs[p as usize].ver = v;
        if self.rng.f64() >= api_change {
            return;
        }
        let mut stack = vec![p];
        while let Some(q) = stack.pop() {
            let a = self.fresh();
            self.pkgs[q as usize].api = a;
            for r in self.pkgs[q as usize].rdeps.clone() {
                if self.rng.f64() < 0.15 {
                    stack.push(r);
                }
            }
        }
    }

    fn switch_branch(&mut self, m: usize) {
        let n = self.mods[m].branches.len();
        let to = (self.mods[m].branch + 1 + self.rng.usize(0..n - 1)) % n;
        let range = self.mods[m].pkgs.clone();
        let now: Vec<(u64, u64)> = range
            .clone()
            .map(|p| (self.pkgs[p as usize].ver, self.pkgs[p as usize].api))
            .collect();
        let from = self.mods[m].branch;
        self.mods[m].branches[from] = now.clone();
        self.mods[m].branch = to;
        if self.mods[m].branches[to].is_empty() {
            // A new branch: this one plus changes to a tenth of it.
            for p in range.clone() {
                if self.rng.f64() < 0.1 {
                    self.edit(p, 0.3);
                }
            }
        } else {
            let saved = self.mods[m].branches[to].clone();
            for (p, (v, a)) in range.zip(saved) {
                self.pkgs[p as usize].ver = v;
                self.pkgs[p as usize].api = a;
            }
        }
    }

    fn bump_dependency(&mut self, m: usize) {
        let Some(&d) = (!self.mods[m].deps.is_empty())
            .then(|| self.rng.usize(0..self.mods[m].deps.len()))
            .map(|i| &self.mods[m].deps[i])
        else {
            return;
        };
        for p in self.dep_mods[d as usize].clone() {
            let (v, a) = (self.fresh(), self.fresh());
            self.pkgs[p as usize].ver = v;
            self.pkgs[p as usize].api = a;
        }
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Generates the trace of `spec`: same spec, same trace.
pub fn generate(spec: &GenSpec) -> Trace {
    let mut w = World::new(spec);
    let mut m = 0usize;
    let start = spec.start * 1000;
    for day in 0..i64::from(spec.days) {
        let midnight = start + day * DAY;
        // Days count from a Monday (as the default start does).
        let weekday = day % 7 < 5;
        if !weekday && w.rng.f64() > 0.15 {
            continue;
        }
        let len = if weekday { 9 * HOUR } else { HOUR };
        let begin = midnight + 9 * HOUR + w.rng.i64(0..HOUR);
        w.t = w.t.max(begin);
        if w.rng.f64() < 1.0 / 40.0 && day > 0 {
            w.toolchain += 1;
        }
        if w.rng.f64() < 0.4 && w.mods.len() > 1 {
            m = w.rng.usize(0..w.mods.len());
        }
        if w.rng.f64() < 0.15 {
            w.bump_dependency(m);
        }
        let per = if weekday { 1.0 } else { 0.2 };
        let mean_gap = len as f64 / (spec.commands_per_day * per).max(1.0);
        loop {
            let gap = (-(1.0f64 - w.rng.f64()).ln() * mean_gap) as i64;
            w.t += gap.max(1000);
            if w.t > begin + len {
                break;
            }
            if w.mods.is_empty() {
                break;
            }
            if w.rng.f64() < 0.05 && w.mods.len() > 1 {
                m = w.rng.usize(0..w.mods.len());
            }
            if w.rng.f64() < 0.03 {
                w.switch_branch(m);
            }
            let pkgs = w.mods[m].pkgs.clone();
            let n = pkgs.end - pkgs.start;
            let hot = |rng: &mut fastrand::Rng| {
                pkgs.start + ((rng.f64().powi(3) * f64::from(n)) as u32).min(n - 1)
            };
            if w.rng.f64() < 0.6 {
                for _ in 0..w.rng.usize(1..=3) {
                    let p = hot(&mut w.rng);
                    w.edit(p, 0.3);
                }
            }
            let r = w.rng.f64();
            let cmd = if r < 0.35 {
                Cmd::Build
            } else if r < 0.5 {
                Cmd::Test
            } else if r < 0.75 {
                Cmd::TestOne(hot(&mut w.rng))
            } else if r < 0.85 || w.tools.is_empty() {
                Cmd::Vet
            } else {
                Cmd::Run(w.tools[w.rng.usize(0..w.tools.len())])
            };
            w.run(m, cmd);
            // The command ends when its last put is in.
            w.t = w.t.max(w.done);
        }
    }
    let mut events = w.events;
    events.sort_by_key(|e| e.t);
    let mut header = Header::new(SOURCE);
    header.created = Some(spec.start);
    header.note = Some(format!(
        "gocache synthetic workload: seed {}, {} days, {} modules of {} packages",
        spec.seed, spec.days, spec.modules, spec.packages
    ));
    Trace {
        headers: vec![header],
        events,
        skipped: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::schema::Op;

    #[test]
    fn same_spec_same_trace_and_it_looks_like_go() {
        let spec = GenSpec::small(5);
        let t = generate(&spec);
        assert_eq!(t, generate(&spec));
        assert_ne!(t.events, generate(&GenSpec::small(6)).events);
        let count = |f: &dyn Fn(&Event) -> bool| t.events.iter().filter(|e| f(e)).count();
        let gets = count(&|e| e.ev == Op::Get);
        let hits = count(&|e| e.hit == Some(true));
        let puts = count(&|e| e.ev == Op::Put);
        assert!(gets > 2_000, "{gets} gets");
        assert_eq!(gets - hits, puts, "every miss is followed by a put");
        assert!(hits * 2 > gets, "mostly hits: {hits} of {gets}");
        assert!(count(&|e| e.exe) > 0, "go run makes executables");
        assert!(t.events.windows(2).all(|p| p[0].t <= p[1].t));
        assert!(t.events.iter().all(|e| e.ev != Op::Put || e.cost.is_some()));
        // The empty output is named by many actions.
        let mut names: HashMap<TraceId, std::collections::HashSet<TraceId>> = HashMap::new();
        for e in &t.events {
            if let (Op::Put, Some(a), Some(o)) = (e.ev, e.a, e.o) {
                names.entry(o).or_default().insert(a);
            }
        }
        let most = names.values().map(|s| s.len()).max().unwrap();
        assert!(most > 20, "the most shared output has {most} actions");
    }
}
