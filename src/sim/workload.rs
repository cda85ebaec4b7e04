//! A trace turned into what a replay needs: dense entry numbers, one
//! request per lookup, sizes per output and a rebuild cost per action.
//!
//! # From events to requests
//!
//! The simulated cache holds action entries, each naming an output, and
//! outputs. A request is go asking for an action:
//!
//! - `get` (hit or miss), `new` of an action (the hook saw go store it: a
//!   miss and a put) and `use` of an action or an executable are requests.
//!   A miss's output is the one the `put` of the same action that follows
//!   stores; the put itself is then part of the miss. A miss with no put
//!   after it (a build that failed) names the action's last known output,
//!   so a cache that still held it would have hit, but it stores nothing.
//! - A `put` with no miss before it stores without a request (an insert).
//! - `new` and `use` of an output or executable only tell sizes: go's hit
//!   on an action touches its output too, so the action's request counts.
//!
//! Requests are ordered by time (stably: equal times keep file order), so
//! traces from several files merge.
//!
//! A request hits in a replay when the cache holds the action naming the
//! request's output. The trace's first request of an action that hit in
//! the trace found an entry made before the trace began: it is *warm*, a
//! hit for every policy, and in the cache afterwards.
//!
//! # Rebuild cost
//!
//! Measured where the trace has it: the mean of the `cost` of the action's
//! puts (for a put without one, the time since the action's miss).
//! Elsewhere it is estimated from kind and size by [`CostModel`]: a line
//! `a + b × size` per kind (output or executable) fitted by least squares
//! to this trace's measured puts of that kind when it has at least
//! [`CostModel::MIN_SAMPLES`] of them, else made-up defaults: 0.02 s +
//! 0.25 s/MiB for an output (a package compiled), 0.3 s + 0.1 s/MiB for an
//! executable (a program linked).

use std::collections::HashMap;

use super::synth_trace::SOURCE as SYNTH_SOURCE;
use crate::trace::schema::{EntryKind, Event, Op, Trace, TraceId};

/// "None" for dense numbers.
pub const NONE: u32 = u32::MAX;

/// One lookup (or store) of an action, in time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Unix milliseconds.
    pub t: i64,
    /// Dense action number.
    pub action: u32,
    /// Dense output number ([`NONE`]: never known).
    pub output: u32,
    /// [`Request::ACCESS`] and the other flags.
    pub flags: u8,
}

impl Request {
    /// A lookup (counted); without it, a put with no miss (an insert).
    pub const ACCESS: u8 = 1;
    /// The lookup hit in the trace.
    pub const REAL_HIT: u8 = 2;
    /// The trace's first sight of the action, and a hit: warm.
    pub const WARM: u8 = 4;
    /// go stores the output when the lookup misses (a hit in the trace, or
    /// a miss followed by a put).
    pub const STORES: u8 = 8;
    /// go makes this lookup only after a hit of another action (its
    /// parent in [`Workload::asked_after`]).
    pub const AFTER_HIT: u8 = 16;

    /// True for a lookup.
    pub fn is_access(&self) -> bool {
        self.flags & Self::ACCESS != 0
    }
    /// True when the lookup hit in the trace.
    pub fn real_hit(&self) -> bool {
        self.flags & Self::REAL_HIT != 0
    }
    /// True for a warm hit.
    pub fn warm(&self) -> bool {
        self.flags & Self::WARM != 0
    }
    /// True when a miss stores the output.
    pub fn stores(&self) -> bool {
        self.flags & Self::STORES != 0
    }
}

/// Estimates rebuild seconds from kind and size: `a + b × size` per kind.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CostModel {
    /// For outputs: (seconds, seconds per MiB), and whether fitted.
    pub output: Line,
    /// For executables.
    pub exe: Line,
}

/// `seconds + per_mib × size in MiB`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Line {
    /// Fixed seconds.
    pub seconds: f64,
    /// Seconds per MiB.
    pub per_mib: f64,
    /// Measured samples it was fitted to (0: the default).
    pub samples: u64,
}

impl Line {
    fn at(&self, size: u64) -> f64 {
        self.seconds + self.per_mib * size as f64 / (1 << 20) as f64
    }

    /// Least squares through `(size, seconds)`, neither part negative.
    fn fit(points: &[(u64, f64)], default: Line) -> Line {
        if points.len() < CostModel::MIN_SAMPLES {
            return default;
        }
        let n = points.len() as f64;
        let mib = |s: u64| s as f64 / (1 << 20) as f64;
        let mx = points.iter().map(|p| mib(p.0)).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (mib(p.0) - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (mib(p.0) - mx) * (p.1 - my)).sum();
        let mut b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let mut a = my - b * mx;
        if b < 0.0 {
            (a, b) = (my, 0.0);
        } else if a < 0.0 {
            let sxx0: f64 = points.iter().map(|p| mib(p.0).powi(2)).sum();
            let sxy0: f64 = points.iter().map(|p| mib(p.0) * p.1).sum();
            (a, b) = (0.0, if sxx0 > 0.0 { sxy0 / sxx0 } else { 0.0 });
        }
        Line {
            seconds: a,
            per_mib: b,
            samples: points.len() as u64,
        }
    }
}

impl CostModel {
    /// Fewest measured puts of a kind to fit its line to.
    pub const MIN_SAMPLES: usize = 8;

    /// The defaults, for a trace without measurements.
    pub const DEFAULT: CostModel = CostModel {
        output: Line {
            seconds: 0.02,
            per_mib: 0.25,
            samples: 0,
        },
        exe: Line {
            seconds: 0.3,
            per_mib: 0.1,
            samples: 0,
        },
    };

    /// Seconds to rebuild an output (or executable) of `size` bytes.
    pub fn estimate(&self, exe: bool, size: u64) -> f64 {
        if exe {
            self.exe.at(size)
        } else {
            self.output.at(size)
        }
    }
}

/// Figures about the workload, for reports.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Who recorded the traces (their headers' `source`).
    pub sources: Vec<String>,
    /// Events read.
    pub events: u64,
    /// Events of a kind this gocache does not know, skipped.
    pub skipped: u64,
    /// Lookups.
    pub accesses: u64,
    /// Puts with no miss before them.
    pub inserts: u64,
    /// Lookups that hit in the trace.
    pub trace_hits: u64,
    /// Of them, warm: entries made before the trace began.
    pub warm_hits: u64,
    /// Misses no put followed (nothing stored).
    pub misses_without_put: u64,
    /// Distinct actions and outputs.
    pub actions: u64,
    /// Distinct outputs (and executables).
    pub outputs: u64,
    /// First to last event, in seconds.
    pub duration_s: f64,
    /// Actions whose rebuild cost was measured.
    pub measured_actions: u64,
    /// Actions whose rebuild cost is estimated.
    pub estimated_actions: u64,
    /// The estimate used for the others.
    pub cost_model: Option<CostModel>,
    /// Actions whose cost the cost-weighted policies took from a second
    /// recording ([`Workload::decide_with`]); `None`: they decide with
    /// this workload's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_with_other: Option<u64>,
}

/// A trace ready to replay.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Allocated bytes of an action entry.
    pub block: u64,
    /// The requests, in time order.
    pub requests: Vec<Request>,
    /// Per request: the index of the next request of the same action
    /// ([`NONE`]: none).
    pub next: Vec<u32>,
    /// Per output: allocated bytes.
    pub out_size: Vec<u64>,
    /// Per output: an executable.
    pub out_exe: Vec<bool>,
    /// Per action: rebuild seconds.
    pub cost: Vec<f64>,
    /// Per action: whether `cost` was measured.
    pub measured: Vec<bool>,
    /// Per action: the measured rebuild seconds the cost-weighted
    /// policies decide with in place of `cost`, where
    /// [`Workload::decide_with`] took them from a second recording (see
    /// [`Workload::decision_cost`]); the seconds saved and lost are always
    /// counted with `cost`.
    pub decide_cost: Option<Vec<Option<f64>>>,
    /// Per action: its ID in the trace (`None`: a stand-in for a program
    /// run by ID).
    pub action_ids: Vec<Option<TraceId>>,
    /// Per output: its ID in the trace (the real plan breaks ties between
    /// groups of the same last use by their output's name).
    pub output_ids: Vec<TraceId>,
    /// Lookups go makes only after a hit of another action (trace `of`:
    /// the compiler's output kept beside it; flagged
    /// [`Request::AFTER_HIT`]): request index to that action. A replay that missed the action skips the lookup, as go
    /// does.
    pub asked_after: HashMap<u32, u32>,
    /// Per action: the entries go writes beside it whenever it rebuilds it
    /// (trace `of` on a put: its compiler output, its list of compiled
    /// source files), each an action and the output it names. A replay
    /// that misses the action where the trace hit stores them again, as
    /// go's rebuild does; where the trace missed too, its puts are in the
    /// trace already.
    pub written_with: HashMap<u32, Vec<(u32, u32)>>,
    /// Where go commands' `gocache prog` sessions ended (trace `end`
    /// events): the number of requests before each, ascending. Empty for
    /// traces without them (the hook's, older ones, synthetic ones).
    pub ends: Vec<u32>,
    /// Figures for reports.
    pub summary: Summary,
}

/// Dense numbers for IDs, in order of first sight.
#[derive(Default)]
struct Interner {
    map: HashMap<TraceId, u32>,
    n: u32,
}

impl Interner {
    /// The number of `id`, and whether it is new.
    fn get(&mut self, id: TraceId) -> (u32, bool) {
        match self.map.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => (*e.get(), false),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.n);
                self.n += 1;
                (self.n - 1, true)
            }
        }
    }

    /// A number no ID has.
    fn fresh(&mut self) -> u32 {
        self.n += 1;
        self.n - 1
    }
}

impl Workload {
    /// Builds the workload of one or several traces (merged by time).
    ///
    /// A synthetic trace (source `synth`: `simulate --save-trace`) has
    /// made-up times (from 2026-01-05); merged with recorded ones, it is
    /// moved to start with the earliest of them, an overlay on the same
    /// period rather than months before it.
    pub fn from_traces(traces: &[Trace]) -> Workload {
        let block = traces
            .first()
            .map_or(crate::trace::schema::DEFAULT_BLOCK, Trace::block);
        let synthetic = |t: &Trace| t.headers.iter().all(|h| h.source == SYNTH_SOURCE);
        let anchor = traces
            .iter()
            .filter(|t| !synthetic(t))
            .filter_map(|t| t.events.iter().map(|e| e.t).min())
            .min();
        let moved: Vec<Event> = traces
            .iter()
            .filter(|t| synthetic(t) && anchor.is_some())
            .flat_map(|t| {
                let first = t.events.iter().map(|e| e.t).min().unwrap_or(0);
                let by = anchor.unwrap_or(first) - first;
                t.events.iter().map(move |e| {
                    let mut e = e.clone();
                    e.t += by;
                    e
                })
            })
            .collect();
        let mut events: Vec<&Event> = traces
            .iter()
            .filter(|t| !(synthetic(t) && anchor.is_some()))
            .flat_map(|t| t.events.iter())
            .chain(&moved)
            .collect();
        events.sort_by_key(|e| e.t);
        let mut w = Workload::from_events(block, events.into_iter());
        w.summary.sources = traces
            .iter()
            .flat_map(|t| t.headers.iter().map(|h| h.source.clone()))
            .collect();
        w.summary.sources.dedup();
        w.summary.skipped = traces.iter().map(|t| t.skipped).sum();
        w
    }

    /// Builds the workload of events already in time order.
    pub fn from_events<'a>(block: u64, events: impl Iterator<Item = &'a Event>) -> Workload {
        let mut b = Builder::new(block);
        for e in events {
            b.w.summary.events += 1;
            b.first_t.get_or_insert(e.t);
            b.last_t = b.last_t.max(e.t);
            match (e.ev, e.kind) {
                (Op::Get, _) | (Op::New | Op::Use, EntryKind::Action) => b.lookup(e),
                (Op::Put, _) => b.put(e),
                (Op::New | Op::Use, kind) => b.output_event(e, kind),
                (Op::End, _) => {
                    let n = b.w.requests.len() as u32;
                    if b.w.ends.last() != Some(&n) {
                        b.w.ends.push(n);
                    }
                }
            }
        }
        b.finish()
    }

    fn finish_costs(&mut self, sums: &[(f64, u32)], last_out: &[u32]) {
        let mut points = [Vec::new(), Vec::new()];
        for (a, &(sum, n)) in sums.iter().enumerate() {
            let o = last_out[a];
            if n > 0 && o != NONE {
                points[usize::from(self.out_exe[o as usize])]
                    .push((self.out_size[o as usize], sum / f64::from(n)));
            }
        }
        let model = CostModel {
            output: Line::fit(&points[0], CostModel::DEFAULT.output),
            exe: Line::fit(&points[1], CostModel::DEFAULT.exe),
        };
        self.measured = sums.iter().map(|&(_, n)| n > 0).collect();
        for (a, &(sum, n)) in sums.iter().enumerate() {
            self.cost[a] = if n > 0 {
                sum / f64::from(n)
            } else {
                match last_out[a] {
                    NONE => model.estimate(false, 0),
                    o => model.estimate(self.out_exe[o as usize], self.out_size[o as usize]),
                }
            };
        }
        let measured = self.measured.iter().filter(|&&m| m).count() as u64;
        self.summary.measured_actions = measured;
        self.summary.estimated_actions = self.cost.len() as u64 - measured;
        self.summary.cost_model = Some(model);
    }

    /// Makes the cost-weighted policies decide with the measured costs of
    /// `other`, a second recording of the same workload (the same go
    /// commands in the same source directory, so the same action IDs),
    /// while the seconds saved and lost stay this workload's own. Returns
    /// how many of this workload's actions took a cost from `other`.
    ///
    /// The real `gd-cost` decides with what it measured when an entry was
    /// built and pays what its rebuild costs, a second measurement of the
    /// same work; replayed with one recording's costs for both, the model
    /// keeps exactly the entries that measured dear and is charged those
    /// same figures, which flatters any policy that orders by measured
    /// seconds. Actions `other` did not measure keep their own costs.
    pub fn decide_with(&mut self, other: &Workload) -> usize {
        let theirs: HashMap<TraceId, usize> = other
            .action_ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some(((*id)?, i)))
            .filter(|&(_, i)| other.measured[i])
            .collect();
        let decide: Vec<Option<f64>> = self
            .action_ids
            .iter()
            .map(|id| Some(other.cost[*theirs.get(id.as_ref()?)?]))
            .collect();
        let matched = decide.iter().flatten().count();
        self.decide_cost = Some(decide);
        self.summary.decided_with_other = Some(matched as u64);
        matched
    }

    /// The rebuild seconds the cost-weighted policies decide with for
    /// action `a`, and whether they were measured: a second recording's
    /// where [`Workload::decide_with`] gave one, else `cost` and
    /// `measured`.
    pub fn decision_cost(&self, a: u32) -> (f64, bool) {
        let a = a as usize;
        match self.decide_cost.as_ref().and_then(|d| d[a]) {
            Some(c) => (c, true),
            None => (self.cost[a], self.measured[a]),
        }
    }

    /// Allocated bytes of an output ([`NONE`]: 0).
    pub fn size(&self, o: u32) -> u64 {
        self.out_size.get(o as usize).copied().unwrap_or(0)
    }

    /// The number of distinct actions.
    pub fn actions(&self) -> usize {
        self.cost.len()
    }

    /// The number of distinct outputs.
    pub fn outputs(&self) -> usize {
        self.out_size.len()
    }
}

/// A workload as [`Workload::from_events`] builds it, event by event.
struct Builder {
    w: Workload,
    actions: Interner,
    outputs: Interner,
    /// Executables used by ID (the wrapper's shim) map to the action
    /// naming them, or to an action of their own.
    exe_action: HashMap<u32, u32>,
    /// Per action: the output it last named ([`NONE`]: none yet).
    last_out: Vec<u32>,
    /// Per action: the measured costs' sum and count.
    cost_sum: Vec<(f64, u32)>,
    /// Per action missed and not yet put: its request and the miss's time.
    pending: HashMap<u32, (usize, i64)>,
    first_t: Option<i64>,
    last_t: i64,
}

impl Builder {
    fn new(block: u64) -> Builder {
        Builder {
            w: Workload {
                block,
                requests: Vec::new(),
                next: Vec::new(),
                out_size: Vec::new(),
                out_exe: Vec::new(),
                cost: Vec::new(),
                measured: Vec::new(),
                decide_cost: None,
                action_ids: Vec::new(),
                output_ids: Vec::new(),
                asked_after: HashMap::new(),
                written_with: HashMap::new(),
                ends: Vec::new(),
                summary: Summary::default(),
            },
            actions: Interner::default(),
            outputs: Interner::default(),
            exe_action: HashMap::new(),
            last_out: Vec::new(),
            cost_sum: Vec::new(),
            pending: HashMap::new(),
            first_t: None,
            last_t: 0,
        }
    }

    /// An action by ID, or a stand-in without one; and whether it is new.
    fn action(&mut self, id: Option<TraceId>) -> (u32, bool) {
        let (a, new) = match id {
            Some(id) => self.actions.get(id),
            None => (self.actions.fresh(), true),
        };
        if new {
            self.last_out.push(NONE);
            self.cost_sum.push((0.0, 0));
            self.w.cost.push(0.0);
            self.w.action_ids.push(id);
        }
        (a, new)
    }

    /// An output by ID, with its size and whether it is an executable
    /// where the event tells.
    fn output(&mut self, id: TraceId, size: Option<u64>, exe: Option<bool>) -> u32 {
        let (o, new) = self.outputs.get(id);
        if new {
            self.w.out_size.push(0);
            self.w.out_exe.push(false);
            self.w.output_ids.push(id);
        }
        if let Some(s) = size {
            self.w.out_size[o as usize] = s;
        }
        if let Some(x) = exe {
            self.w.out_exe[o as usize] |= x;
        }
        o
    }

    /// A `get`, or a `new` or `use` of an action: a request.
    fn lookup(&mut self, e: &Event) {
        let Some(aid) = e.a else { return };
        let (a, first) = self.action(Some(aid));
        let hit = match e.ev {
            Op::Get => e.hit == Some(true),
            Op::Use => true,
            _ => false,
        };
        let o = match e.o {
            Some(id) => self.output(id, e.size, Some(e.exe)),
            None => self.last_out[a as usize],
        };
        let mut flags = Request::ACCESS;
        if hit {
            flags |= Request::REAL_HIT | Request::STORES;
            if first {
                flags |= Request::WARM;
            }
        } else if e.ev == Op::New {
            flags |= Request::STORES;
            if let Some(c) = e.cost {
                add_cost(&mut self.cost_sum, a, c);
            }
        } else {
            self.pending.insert(a, (self.w.requests.len(), e.t));
        }
        if o != NONE {
            self.last_out[a as usize] = o;
            if e.exe {
                self.exe_action.insert(o, a);
            }
        }
        if let Some(&parent) = e.of.and_then(|p| self.actions.map.get(&p)) {
            self.w
                .asked_after
                .insert(self.w.requests.len() as u32, parent);
            flags |= Request::AFTER_HIT;
        }
        self.w.requests.push(Request {
            t: e.t,
            action: a,
            output: o,
            flags,
        });
    }

    /// A `put`: part of the miss before it, or an insert.
    fn put(&mut self, e: &Event) {
        let (Some(aid), Some(oid)) = (e.a, e.o) else {
            return;
        };
        let (a, _) = self.action(Some(aid));
        let o = self.output(oid, e.size, Some(e.exe));
        self.last_out[a as usize] = o;
        if e.exe {
            self.exe_action.insert(o, a);
        }
        if let Some(&parent) = e.of.and_then(|p| self.actions.map.get(&p)) {
            let beside = self.w.written_with.entry(parent).or_default();
            match beside.iter_mut().find(|(b, _)| *b == a) {
                Some(known) => known.1 = o,
                None => beside.push((a, o)),
            }
        }
        match self.pending.remove(&a) {
            Some((i, t0)) => {
                let r = &mut self.w.requests[i];
                r.output = o;
                r.flags |= Request::STORES;
                let c = e.cost.unwrap_or((e.t - t0).max(0) as f64 / 1000.0);
                add_cost(&mut self.cost_sum, a, c);
            }
            None => {
                if let Some(c) = e.cost {
                    add_cost(&mut self.cost_sum, a, c);
                }
                self.w.requests.push(Request {
                    t: e.t,
                    action: a,
                    output: o,
                    flags: Request::STORES,
                });
            }
        }
    }

    /// A `new` or `use` of an output or executable: its size, and for an
    /// executable used, a request.
    fn output_event(&mut self, e: &Event, kind: EntryKind) {
        let Some(oid) = e.o else { return };
        let is_exe = kind == EntryKind::Exe;
        let o = self.output(oid, e.size, Some(is_exe));
        if e.ev != Op::Use || !is_exe {
            return;
        }
        // A program run through the shim: a hit on the action naming it,
        // or on a stand-in action.
        let (a, first) = match self.exe_action.get(&o) {
            Some(&a) => (a, false),
            None => {
                let (a, _) = self.action(None);
                self.exe_action.insert(o, a);
                (a, true)
            }
        };
        self.last_out[a as usize] = o;
        let mut flags = Request::ACCESS | Request::REAL_HIT | Request::STORES;
        if first {
            flags |= Request::WARM;
        }
        self.w.requests.push(Request {
            t: e.t,
            action: a,
            output: o,
            flags,
        });
    }

    /// The summary, the costs and the links between requests.
    fn finish(self) -> Workload {
        let mut w = self.w;
        w.summary.misses_without_put = self.pending.len() as u64;
        w.summary.duration_s = self
            .first_t
            .map_or(0.0, |f| (self.last_t - f) as f64 / 1000.0);
        w.summary.actions = w.cost.len() as u64;
        w.summary.outputs = w.out_size.len() as u64;
        for r in &w.requests {
            if r.is_access() {
                w.summary.accesses += 1;
                w.summary.trace_hits += u64::from(r.real_hit());
                w.summary.warm_hits += u64::from(r.warm());
            } else {
                w.summary.inserts += 1;
            }
        }
        w.finish_costs(&self.cost_sum, &self.last_out);
        w.next = vec![NONE; w.requests.len()];
        let mut seen = vec![NONE; w.cost.len()];
        for (i, r) in w.requests.iter().enumerate().rev() {
            w.next[i] = seen[r.action as usize];
            seen[r.action as usize] = i as u32;
        }
        w
    }
}

fn add_cost(sums: &mut [(f64, u32)], a: u32, c: f64) {
    let s = &mut sums[a as usize];
    s.0 += c;
    s.1 += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::schema::{EntryKind, Event, Op, TraceId};

    fn id(n: u64) -> TraceId {
        TraceId(n)
    }

    #[test]
    fn a_miss_and_its_put_are_one_request_and_the_put_measures_the_cost() {
        let ev = [
            Event::get_miss(1_000, id(1)),
            Event::put(3_500, id(1), id(10), 8192, None),
            Event::get_hit(4_000, id(1), id(10), 8192),
            Event::get_hit(5_000, id(2), id(11), 4096), // warm
            Event::put(6_000, id(3), id(12), 4096, Some(1.5)), // an insert
            Event::get_miss(7_000, id(4)),              // no put: nothing stored
        ];
        let w = Workload::from_events(4096, ev.iter());
        let f: Vec<u8> = w.requests.iter().map(|r| r.flags).collect();
        use Request as R;
        assert_eq!(
            f,
            [
                R::ACCESS | R::STORES,
                R::ACCESS | R::REAL_HIT | R::STORES,
                R::ACCESS | R::REAL_HIT | R::STORES | R::WARM,
                R::STORES,
                R::ACCESS,
            ]
        );
        assert_eq!(w.requests[0].output, 0);
        assert_eq!(w.requests[4].output, NONE);
        assert_eq!(w.cost[0], 2.5);
        assert_eq!(w.cost[2], 1.5);
        assert!(w.measured[0] && !w.measured[1] && w.measured[2]);
        assert_eq!(w.next[..3], [1, NONE, NONE]);
        let s = &w.summary;
        assert_eq!(
            (s.accesses, s.inserts, s.trace_hits, s.warm_hits),
            (4, 1, 2, 1)
        );
        assert_eq!(s.misses_without_put, 1);
        assert_eq!(s.duration_s, 6.0);
    }

    #[test]
    fn hook_events_read_as_misses_and_hits_and_exe_uses_find_their_action() {
        let ev = [
            Event::seen(0, Op::New, EntryKind::Exe, None, id(20)).with_size(5 << 20),
            Event::seen(0, Op::New, EntryKind::Action, Some(id(2)), id(20)).with_exe(true),
            Event::seen(9, Op::Use, EntryKind::Exe, None, id(20)),
            Event::seen(9, Op::Use, EntryKind::Output, None, id(20)),
            Event::seen(10, Op::Use, EntryKind::Exe, None, id(21)), // before the trace
            Event::seen(11, Op::Use, EntryKind::Exe, None, id(21)),
        ];
        let w = Workload::from_events(4096, ev.iter());
        let r: Vec<(u32, u32, bool, bool)> = w
            .requests
            .iter()
            .map(|r| (r.action, r.output, r.real_hit(), r.warm()))
            .collect();
        assert_eq!(
            r,
            [
                (0, 0, false, false),
                (0, 0, true, false),
                (1, 1, true, true),
                (1, 1, true, false)
            ]
        );
        assert!(w.out_exe[0] && w.out_exe[1]);
        assert_eq!(w.size(0), 5 << 20);
        // No measurements: the default executable line.
        assert_eq!(w.cost[0], CostModel::DEFAULT.estimate(true, 5 << 20));
    }

    #[test]
    fn the_cost_model_fits_measured_puts_of_each_kind() {
        // cost = 0.1 s + 2 s/MiB, exactly, for outputs; nothing for exes.
        let ev: Vec<Event> = (0..20u64)
            .flat_map(|i| {
                let size = (i + 1) << 18;
                let cost = 0.1 + 2.0 * size as f64 / (1 << 20) as f64;
                [
                    Event::get_miss(i as i64 * 10, id(i)),
                    Event::put(i as i64 * 10 + 1, id(i), id(100 + i), size, Some(cost)),
                ]
            })
            .chain([Event::get_hit(1000, id(50), id(150), 1 << 20)])
            .collect();
        let w = Workload::from_events(4096, ev.iter());
        let m = w.summary.cost_model.unwrap();
        assert!((m.output.seconds - 0.1).abs() < 1e-9, "{m:?}");
        assert!((m.output.per_mib - 2.0).abs() < 1e-9, "{m:?}");
        assert_eq!(m.output.samples, 20);
        assert_eq!(m.exe, CostModel::DEFAULT.exe);
        assert!((w.cost[20] - 2.1).abs() < 1e-9);
        assert_eq!(w.summary.estimated_actions, 1);
    }

    #[test]
    fn traces_merge_by_time() {
        let mk = |events: Vec<Event>| Trace {
            headers: vec![crate::trace::schema::Header::new("prog")],
            events,
            skipped: 0,
        };
        let a = mk(vec![
            Event::get_hit(10, id(1), id(9), 0),
            Event::get_hit(30, id(1), id(9), 0),
        ]);
        let b = mk(vec![Event::get_hit(20, id(2), id(9), 0)]);
        let w = Workload::from_traces(&[a, b]);
        let ts: Vec<i64> = w.requests.iter().map(|r| r.t).collect();
        assert_eq!(ts, [10, 20, 30]);
        assert_eq!(w.summary.sources, ["prog"]);
    }

    #[test]
    fn a_synthetic_trace_merged_with_a_recorded_one_overlays_its_period() {
        // A recorded trace of a day in December, and a synthetic one from
        // 2026-01-05 (`simulate --save-trace`) of two days: merged, they
        // span two days, not eleven months.
        const DAY: i64 = 86_400_000;
        let real_start = 1_796_000_000_000;
        let real = Trace {
            headers: vec![crate::trace::schema::Header::new("prog")],
            events: vec![
                Event::get_hit(real_start, id(1), id(9), 0),
                Event::get_hit(real_start + DAY, id(1), id(9), 0),
            ],
            skipped: 0,
        };
        let synth_start = 1_767_571_200_000;
        let synth = Trace {
            headers: vec![crate::trace::schema::Header::new(SYNTH_SOURCE)],
            events: vec![
                Event::get_hit(synth_start, id(2), id(8), 0),
                Event::get_hit(synth_start + 2 * DAY, id(2), id(8), 0),
            ],
            skipped: 0,
        };
        let w = Workload::from_traces(&[real, synth.clone()]);
        let ts: Vec<i64> = w.requests.iter().map(|r| r.t - real_start).collect();
        assert_eq!(ts, [0, 0, DAY, 2 * DAY]);
        // Alone, a synthetic trace keeps its times.
        let w = Workload::from_traces(&[synth]);
        assert_eq!(w.requests[0].t, synth_start);
    }
}
