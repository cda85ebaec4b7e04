//! Traces: what go did with the cache, as events kept in the index
//! (`trace` table, migration 5) and as JSON Lines ([`schema`]) that
//! `gocache trace export` writes and `gocache simulate` reads.
//!
//! A leaf: it stands on [`crate::layout`], [`crate::model`] and
//! [`crate::error`] only, so that the index (which stores the events) and
//! the simulator (which replays the schema) both stand on it and neither
//! on the other.
//!
//! This module is pure: the events ([`TraceEvent`]), the setting that
//! turns recording on and bounds it ([`Tracing`], `GOCACHE_TRACE`), the
//! rebuild cost a get miss and the put that follows bracket
//! ([`RebuildClock`], for `gocache prog`), the export of stored events
//! ([`export`]), and the file schema with its reader and writer
//! ([`schema`]). The index writes and reads the events
//! (`Index::set_trace`, `index.trace_mut().record`, `index.trace().events`).
//!
//! # Who records what
//!
//! | source | events |
//! | --- | --- |
//! | `hook` (the hook after `gocache go`) | `new` for each entry its sync finds that the index did not know; `use` for each use the wrapper records (a `go run` of a cached program, `go tool NAME`) |
//! | `ci` (`gocache ci end`) | `new` for entries its sync finds; `use` for entries the run used that it did not make (Go's mtime marks) |
//! | `prog` (`gocache prog`, through [`crate::index::Trace::record`]) | `use` (a get that hit), `miss`, `put` with its rebuild cost |
//!
//! The hook cannot see go's hits on build actions (go marks an entry used
//! only when its mtime is over an hour old, and the hook runs right after
//! the command), so a hook trace has every miss (each new action entry)
//! but only the hits of programs; `ci end` sees build hits through the
//! mtimes `ci end` moved back the run before; `gocache prog` sees all.
//! A use of an entry the same command's sync added (a `go run` that just
//! built its program) is part of that miss, not a hit, and is not recorded.
//! The first sync of an index that was empty records no `new` events: it
//! indexes what was already there, not what go just made.
//!
//! # For `gocache prog`
//!
//! prog records on its own connection, which it tells
//! `index.set_trace(Tracing::from_env(TraceSource::Prog)?)`; its syncs and
//! [`crate::index::Index::record_uses`] then add no events (they would
//! count its gets twice). It keeps a [`RebuildLog`] (a [`RebuildClock`]
//! run when the events are written, over the misses a put followed) and
//! hands events to [`crate::index::Trace::record`] in the batches it
//! records uses in:
//!
//! ```
//! use gocache::layout::Id;
//! use gocache::trace::{RebuildLog, TraceEvent};
//! let (action, output, stdout) = (Id([1; 32]), Id([2; 32]), Id([3; 32]));
//! let mut log = RebuildLog::with_cpus(2);
//! let mut batch = Vec::new();
//! // go: get(stdout subkey) -> miss (go never puts it back), at 1000 ms
//! log.miss(&stdout, 1000);
//! batch.push(TraceEvent::miss(1000, &stdout));
//! // go: get(action) -> miss, at t = 1000 ms
//! log.miss(&action, 1000);
//! batch.push(TraceEvent::miss(1000, &action));
//! // go: put(action, output), 8 KiB allocated, at t = 1750 ms
//! log.put(&action, 1750, batch.len());
//! batch.push(TraceEvent::put(1750, &action, &output, 8192, None));
//! // go: get(action) -> hit
//! batch.push(TraceEvent::hit(2000, &action, &output, 8192));
//! // when the batch is written: the put's cost, the stale miss no share
//! log.settle(&mut batch);
//! assert_eq!(batch[2].cost, Some(0.75));
//! // then: index.trace_mut().record(&batch)
//! ```
//!
//! # The bound
//!
//! The table keeps the newest [`Tracing::keep`] events (default
//! [`DEFAULT_KEEP`], 1,000,000, about 40 MB): each write transaction that
//! adds events deletes the oldest beyond the bound, by a range of the
//! table's integer key, in the same transaction.

use std::collections::HashMap;
use std::io::Write;

use crate::layout::Id;
use crate::model::Kind;
pub mod schema;

use schema::{EntryKind, Event, Header, Op, TraceId};

/// Events kept when `GOCACHE_TRACE` does not say otherwise.
pub const DEFAULT_KEEP: u64 = 1_000_000;

/// The environment variable that turns recording off or bounds it.
pub const ENV: &str = "GOCACHE_TRACE";

/// What happened to an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceOp {
    /// The entry was first seen (go made it: for an action, a miss and a
    /// put).
    New,
    /// The entry was used (a hit).
    Use,
    /// go looked an action up and the cache did not have it.
    Miss,
    /// go stored an action (and its output).
    Put,
    /// A go command's `gocache prog` session closed (no entry).
    End,
}

impl TraceOp {
    /// The integer stored in the index.
    pub fn to_db(self) -> i64 {
        match self {
            TraceOp::New => 0,
            TraceOp::Use => 1,
            TraceOp::Miss => 2,
            TraceOp::Put => 3,
            TraceOp::End => 4,
        }
    }

    /// The op for an integer stored in the index.
    pub fn from_db(v: i64) -> Option<TraceOp> {
        match v {
            0 => Some(TraceOp::New),
            1 => Some(TraceOp::Use),
            2 => Some(TraceOp::Miss),
            3 => Some(TraceOp::Put),
            4 => Some(TraceOp::End),
            _ => None,
        }
    }
}

/// Who recorded an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceSource {
    /// The hook (after `gocache go`, or run on its own).
    Hook,
    /// `gocache ci end`.
    Ci,
    /// `gocache prog`.
    Prog,
}

impl TraceSource {
    /// The integer stored in the index.
    pub fn to_db(self) -> i64 {
        match self {
            TraceSource::Hook => 0,
            TraceSource::Ci => 1,
            TraceSource::Prog => 2,
        }
    }

    /// The source for an integer stored in the index.
    pub fn from_db(v: i64) -> Option<TraceSource> {
        match v {
            0 => Some(TraceSource::Hook),
            1 => Some(TraceSource::Ci),
            2 => Some(TraceSource::Prog),
            _ => None,
        }
    }

    /// The name a trace's header gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceSource::Hook => "hook",
            TraceSource::Ci => "ci",
            TraceSource::Prog => "prog",
        }
    }
}

/// One event, as a recorder hands it to the index. The source and the
/// module come from the connection ([`crate::index::Index::set_trace`],
/// [`crate::index::Index::credit_module`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceEvent {
    /// When, in Unix milliseconds.
    pub t_ms: i64,
    /// What happened.
    pub op: TraceOp,
    /// The entry's kind (`Miss` and `Put` are about actions).
    pub kind: Kind,
    /// The entry: for an action, the action ID.
    pub entry: TraceId,
    /// For an action: the output it names, when known.
    pub output: Option<TraceId>,
    /// Allocated bytes: of the entry itself for an output or executable;
    /// of the output for an action (a put, a hit), when known.
    pub size: Option<u64>,
    /// Rebuild seconds, when measured (a put: see [`RebuildClock`]).
    pub cost: Option<f64>,
    /// A get (`Miss`, or `Use` of an action): the action whose cached
    /// result go was showing when it asked; a `Put`: the action whose
    /// rebuild wrote it beside it (see [`schema::Event::of`]).
    pub of: Option<TraceId>,
}

impl TraceEvent {
    /// The session of one go command closed: where `gocache prog` checks
    /// the limits, which the simulator replays as the real trim runs.
    pub fn end(t_ms: i64) -> TraceEvent {
        TraceEvent {
            t_ms,
            op: TraceOp::End,
            kind: Kind::Action,
            entry: TraceId(0),
            output: None,
            size: None,
            cost: None,
            of: None,
        }
    }

    /// A get of `action` that missed.
    pub fn miss(t_ms: i64, action: &Id) -> TraceEvent {
        TraceEvent {
            t_ms,
            op: TraceOp::Miss,
            kind: Kind::Action,
            entry: TraceId::of(action),
            output: None,
            size: None,
            cost: None,
            of: None,
        }
    }

    /// The same get, made while go showed `parent`'s cached result, or
    /// the same put, written by `parent`'s rebuild (see
    /// [`schema::Event::of`]).
    pub fn of(self, parent: Option<TraceId>) -> TraceEvent {
        TraceEvent { of: parent, ..self }
    }

    /// A get of `action` that hit, answering `output` of `size` allocated
    /// bytes.
    pub fn hit(t_ms: i64, action: &Id, output: &Id, size: u64) -> TraceEvent {
        TraceEvent {
            op: TraceOp::Use,
            output: Some(TraceId::of(output)),
            size: Some(size),
            ..TraceEvent::miss(t_ms, action)
        }
    }

    /// A put of `output` (`size` allocated bytes) under `action`, with the
    /// rebuild seconds when known.
    pub fn put(t_ms: i64, action: &Id, output: &Id, size: u64, cost: Option<f64>) -> TraceEvent {
        TraceEvent {
            op: TraceOp::Put,
            output: Some(TraceId::of(output)),
            size: Some(size),
            cost,
            ..TraceEvent::miss(t_ms, action)
        }
    }
}

/// Whether a connection records events, as whom, and how many the table
/// keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracing {
    /// Who records.
    pub source: TraceSource,
    /// The most events the table keeps (at least 1).
    pub keep: u64,
}

impl Tracing {
    /// Recording as `source`, with the bound `GOCACHE_TRACE` gives:
    /// `None` when it says `off` (or `0`). A value that is neither a
    /// number nor `on`/`off` is an error saying only what is wrong with
    /// it: each caller reports it as one warning ending with what it does
    /// instead (records with the default bound, or records none).
    pub fn from_env(source: TraceSource) -> Result<Option<Tracing>, String> {
        let v = std::env::var(ENV).ok();
        Tracing::parse(source, v.as_deref())
    }

    /// [`Tracing::from_env`] for a value given.
    pub fn parse(source: TraceSource, value: Option<&str>) -> Result<Option<Tracing>, String> {
        let on = |keep| Ok(Some(Tracing { source, keep }));
        let Some(v) = value.map(str::trim) else {
            return on(DEFAULT_KEEP);
        };
        match v.to_ascii_lowercase().as_str() {
            "" | "on" | "1" | "true" | "yes" => on(DEFAULT_KEEP),
            "off" | "0" | "false" | "no" => Ok(None),
            n => match n.replace(['_', ','], "").parse::<u64>() {
                Ok(keep) => on(keep),
                Err(_) => Err(format!(
                    "{ENV}={v:?} is not off, on or a number of events to keep"
                )),
            },
        }
    }
}

/// Turns a get miss followed by a put of the same action into the rebuild
/// cost: the action's share of the CPU time spent between them.
///
/// go runs several actions at once (`-p`, by default as many as there are
/// CPUs), and may run more than there are CPUs; an action's wall span from
/// its miss to its put then counts the time it waited as work (at `-p 8`
/// on 2 CPUs the spans summed to 3.2 times the build's CPU seconds). So
/// each instant's time is divided among the misses outstanding then, at
/// most [`RebuildClock::cpus`] of them working at once: with `n`
/// outstanding, each earns `dt * min(n, cpus) / n`.
///
/// A machine busy with other work gives go less than its CPUs. When the
/// recorder can read the CPU time go and its finished children have used
/// ([`RebuildClock::reading_cpu`]; prog reads its parent's at each miss
/// and put), an action's share is scaled by the CPU go got over the
/// action's span against what its CPUs could have given
/// (`cpu used / (CPUs busy * wall)`, at most 1).
/// The costs of a build then sum to about its CPU seconds, at any `-p`
/// and beside any load; without a reading, to what its CPUs could give.
///
/// Kept in O(1) an event: running sums of the share one outstanding miss
/// has earned, of the CPU capacity in use, and the CPU read; a miss
/// remembers them at its start, and its put takes the differences.
///
/// Pure and bounded: it remembers at most [`RebuildClock::CAPACITY`]
/// misses; past that the oldest are forgotten (their puts get no cost).
#[derive(Debug)]
pub struct RebuildClock {
    /// Each outstanding miss: the running sums when it started.
    misses: HashMap<TraceId, Sums>,
    order: std::collections::VecDeque<TraceId>,
    sums: Sums,
    /// The latest time seen (times that go back add nothing).
    last: Option<i64>,
    cpus: usize,
    /// Reads the CPU-milliseconds go has used, at each miss and put.
    read_cpu: Option<fn() -> Option<f64>>,
}

/// See [`RebuildClock`].
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    /// Milliseconds one miss outstanding since the start would have earned.
    share_ms: f64,
    /// CPU-milliseconds the outstanding misses could have used.
    capacity_ms: f64,
    /// CPU-milliseconds go had used, as last read (`None`: never read).
    cpu_ms: Option<f64>,
}

impl Default for RebuildClock {
    /// A clock that caps the work at this machine's CPUs
    /// (`std::thread::available_parallelism`).
    fn default() -> RebuildClock {
        RebuildClock::with_cpus(std::thread::available_parallelism().map_or(1, usize::from))
    }
}

impl RebuildClock {
    /// Misses remembered at most.
    pub const CAPACITY: usize = 1 << 16;

    /// A clock for a machine of `cpus` CPUs (at least 1).
    pub fn with_cpus(cpus: usize) -> RebuildClock {
        RebuildClock {
            misses: HashMap::new(),
            order: std::collections::VecDeque::new(),
            sums: Sums::default(),
            last: None,
            cpus: cpus.max(1),
            read_cpu: None,
        }
    }

    /// The same, calling `read` for the CPU-milliseconds go has used at
    /// each miss and put ([`RebuildClock::observe_cpu`]); hits read
    /// nothing.
    pub fn reading_cpu(self, read: fn() -> Option<f64>) -> RebuildClock {
        RebuildClock {
            read_cpu: Some(read),
            ..self
        }
    }

    /// Reads the CPU time, where a reader was given.
    fn read(&mut self, t_ms: i64) {
        if let Some(cpu) = self.read_cpu.and_then(|read| read()) {
            self.observe_cpu(t_ms, cpu);
        }
    }

    /// The CPUs the work is capped at.
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// Notes that go and its finished children had used `cpu_ms`
    /// CPU-milliseconds in all by `t_ms` (a reading that goes back is
    /// ignored).
    pub fn observe_cpu(&mut self, t_ms: i64, cpu_ms: f64) {
        self.advance(t_ms);
        if self.sums.cpu_ms.is_none_or(|c| cpu_ms >= c) {
            self.sums.cpu_ms = Some(cpu_ms);
        }
    }

    /// Moves the clock to `t_ms`, sharing the time since the last event
    /// among the misses outstanding through it.
    fn advance(&mut self, t_ms: i64) {
        let last = self.last.unwrap_or(t_ms);
        if t_ms <= last {
            self.last = Some(last);
            return;
        }
        let n = self.misses.len();
        if n > 0 {
            let busy = n.min(self.cpus) as f64;
            let dt = (t_ms - last) as f64;
            self.sums.share_ms += dt * busy / n as f64;
            self.sums.capacity_ms += dt * busy;
        }
        self.last = Some(t_ms);
    }

    /// Notes a get of `action` that missed at `t_ms`.
    pub fn miss(&mut self, action: &Id, t_ms: i64) {
        self.miss_of(TraceId::of(action), t_ms);
    }

    fn miss_of(&mut self, a: TraceId, t_ms: i64) {
        self.read(t_ms);
        self.advance(t_ms);
        if self.misses.insert(a, self.sums).is_none() {
            self.order.push_back(a);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.misses.remove(&old);
            }
        }
    }

    /// The rebuild seconds of a put of `action` at `t_ms`: its share of
    /// the work since its miss, if one was noted (and then forgotten).
    pub fn put(&mut self, action: &Id, t_ms: i64) -> Option<f64> {
        self.put_of(TraceId::of(action), t_ms)
    }

    fn put_of(&mut self, a: TraceId, t_ms: i64) -> Option<f64> {
        self.read(t_ms);
        self.advance(t_ms);
        let start = self.misses.remove(&a)?;
        if let Some(i) = self.order.iter().rposition(|x| *x == a) {
            self.order.remove(i);
        }
        let now = self.sums;
        let share = (now.share_ms - start.share_ms).max(0.0);
        let capacity = now.capacity_ms - start.capacity_ms;
        let ms = match (start.cpu_ms, now.cpu_ms) {
            (Some(c0), Some(c1)) if capacity > 0.0 => {
                share * (c1 - c0).clamp(0.0, capacity) / capacity
            }
            _ => share,
        };
        Some(ms / 1000.0)
    }
}

/// A session's misses and puts, costed by a [`RebuildClock`] when the
/// session's events are written ([`RebuildLog::settle`]) rather than as
/// each put arrives, so that only the misses a put followed count as
/// work. go looks up some entries it never puts back: after a hit it asks
/// for the compiler's output kept beside the action
/// (`cache.Subkey(action, "stdout")`) and goes on without it when it is
/// gone. Such a miss, counted as working until the session ended, took a
/// share of every rebuild after it: a replay whose trim had evicted a
/// few of them measured its rebuilds 30-50% low.
///
/// Where go's children's CPU can be read ([`RebuildLog::reading_cpu`]),
/// the cost is the work an eviction causes rather than a share of time:
/// the CPU of the tools go ran for the action (compile, asm, cgo, link, a
/// test binary), which lands in go's children's time when go reaps the
/// tool, just before it puts the tool's output, and goes to the put that
/// follows. go's own CPU is no rebuild's: most of it (loading packages,
/// hashing inputs, serving hits) is the command's whatever misses, and
/// charged to the misses open while it ran it priced a rebuild by how
/// busy its command was. Shares of time priced an action by what ran
/// beside it: in a cold build, where two compiles overlap and one
/// finishes outside the other's span, at half its CPU; rebuilt alone in
/// a chain of dependencies, at its whole wall span. The same rebuilds
/// then measured 1.2-1.4x their recorded seconds (with go's own CPU
/// shared among the open misses, still 1.0-1.35x; by the tools alone,
/// 0.88-1.09x), and the simulator, which prices a rebuild by the
/// recording, ran that much low. A tool's CPU is capped by its action's
/// span times the CPUs, so that a long test binary finishing inside a
/// short compile's span is not charged to it whole.
///
/// Bounded: at most [`RebuildLog::CAPACITY`] marks wait for a settle
/// (prog settles whenever it writes events, at the latest every 100,000);
/// past that, new puts get no cost. A miss still waiting for its put at a
/// settle is dropped: that put, if it comes, gets no cost.
#[derive(Debug)]
pub struct RebuildLog {
    cpus: usize,
    read_cpu: Option<fn() -> Option<CpuReading>>,
    marks: Vec<Mark>,
}

/// CPU-milliseconds a process has used: its own threads', and its
/// finished (reaped) children's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuReading {
    /// Its own (user + system).
    pub own_ms: f64,
    /// Its reaped children's (user + system).
    pub children_ms: f64,
}

impl CpuReading {
    /// Both together.
    pub fn total_ms(self) -> f64 {
        self.own_ms + self.children_ms
    }
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    t_ms: i64,
    cpu: Option<CpuReading>,
    /// A miss of the action, or its put with the index of the put's event
    /// in the batch that [`RebuildLog::settle`] is given.
    put: Option<usize>,
    action: TraceId,
}

impl Default for RebuildLog {
    /// A log whose clock caps the work at this machine's CPUs.
    fn default() -> RebuildLog {
        RebuildLog {
            cpus: RebuildClock::default().cpus(),
            read_cpu: None,
            marks: Vec::new(),
        }
    }
}

impl RebuildLog {
    /// Marks waiting for a settle, at most.
    pub const CAPACITY: usize = 1 << 20;

    /// A log for a machine of `cpus` CPUs (at least 1).
    pub fn with_cpus(cpus: usize) -> RebuildLog {
        RebuildLog {
            cpus: cpus.max(1),
            read_cpu: None,
            marks: Vec::new(),
        }
    }

    /// The same, reading go's CPU-milliseconds, its own and its finished
    /// children's, at each miss and put: a settle whose marks all have a
    /// reading costs each put by its tools' CPU (see the type).
    pub fn reading_cpu(self, read: fn() -> Option<CpuReading>) -> RebuildLog {
        RebuildLog {
            read_cpu: Some(read),
            ..self
        }
    }

    fn mark(&mut self, t_ms: i64, action: &Id, put: Option<usize>) {
        if self.marks.len() < Self::CAPACITY {
            let cpu = self.read_cpu.and_then(|read| read());
            self.marks.push(Mark {
                t_ms,
                cpu,
                put,
                action: TraceId::of(action),
            });
        }
    }

    /// Notes a get of `action` that missed at `t_ms`.
    pub fn miss(&mut self, action: &Id, t_ms: i64) {
        self.mark(t_ms, action, None);
    }

    /// Notes a put of `action` at `t_ms`, whose event is `event` in the
    /// batch the next [`RebuildLog::settle`] is given.
    pub fn put(&mut self, action: &Id, t_ms: i64, event: usize) {
        self.mark(t_ms, action, Some(event));
    }

    /// Sets the cost of each put noted since the last settle on its event
    /// in `events`: its tools' CPU, where every mark has a CPU reading
    /// (see the type), else its share of the time among the misses
    /// a put followed (see [`RebuildClock`] for the share). Then forgets
    /// them.
    pub fn settle(&mut self, events: &mut [TraceEvent]) {
        // Walking back: a miss is work when a put of its action follows.
        let mut put_later = std::collections::HashSet::new();
        let mut working = vec![false; self.marks.len()];
        for (i, m) in self.marks.iter().enumerate().rev() {
            match m.put {
                Some(_) => {
                    put_later.insert(m.action);
                }
                None => working[i] = put_later.contains(&m.action),
            }
        }
        if !self.marks.is_empty() && self.marks.iter().all(|m| m.cpu.is_some()) {
            self.settle_by_work(events, &working);
            self.marks.clear();
            return;
        }
        let mut clock = RebuildClock::with_cpus(self.cpus);
        for (m, &work) in self.marks.iter().zip(&working) {
            if let Some(cpu) = m.cpu {
                clock.observe_cpu(m.t_ms, cpu.total_ms());
            }
            match m.put {
                None if work => clock.miss_of(m.action, m.t_ms),
                None => clock.advance(m.t_ms),
                Some(ev) => {
                    let cost = clock.put_of(m.action, m.t_ms);
                    if let (Some(cost), Some(e)) = (cost, events.get_mut(ev)) {
                        e.cost = Some(cost);
                    }
                }
            }
        }
        self.marks.clear();
    }

    /// Costs each put by its tools' CPU, every mark holding a reading:
    /// go's children's CPU reaped since the last put that took some goes
    /// to the next put of a working miss (go reaps a tool just before it
    /// puts the tool's output), capped by that miss's span times the
    /// CPUs. Children's CPU reaped while no working miss is open (a
    /// binary go links and does not cache) is no rebuild's, nor is go's
    /// own.
    fn settle_by_work(&self, events: &mut [TraceEvent], working: &[bool]) {
        // Per open working miss: its start.
        let mut open: HashMap<TraceId, i64> = HashMap::new();
        let mut reaped = 0.0;
        let mut prev: Option<f64> = None;
        for (m, &work) in self.marks.iter().zip(working) {
            let Some(cpu) = m.cpu.map(|c| c.children_ms) else {
                continue;
            };
            if let Some(p) = prev
                && !open.is_empty()
            {
                reaped += (cpu - p).max(0.0);
            }
            // A reading that goes back is ignored.
            prev = Some(prev.map_or(cpu, |p| p.max(cpu)));
            match m.put {
                None if work => {
                    open.entry(m.action).or_insert(m.t_ms);
                }
                None => {}
                Some(ev) => {
                    let Some(start) = open.remove(&m.action) else {
                        continue;
                    };
                    let cap = (m.t_ms - start).max(1) as f64 * self.cpus as f64;
                    let tools = reaped.min(cap);
                    reaped = 0.0;
                    if let Some(e) = events.get_mut(ev) {
                        e.cost = Some(tools / 1000.0);
                    }
                }
            }
        }
    }
}

/// An event as the index keeps it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoredEvent {
    /// The event.
    pub event: TraceEvent,
    /// Who recorded it.
    pub source: TraceSource,
    /// The module credited (`modules.id`), if any.
    pub module: Option<i64>,
}

/// Writes stored events (in recording order) as the simulator's JSON
/// Lines: a header, then one line an event; a new header (segment)
/// wherever the source changes. Actions whose output is an executable in
/// the trace are marked `exe`. Returns how many events were written.
pub fn export(
    out: &mut impl Write,
    events: &[StoredEvent],
    host: Option<&str>,
    created: Option<i64>,
) -> std::io::Result<u64> {
    let exes: std::collections::HashSet<TraceId> = events
        .iter()
        .filter(|e| e.event.kind == Kind::Exe)
        .map(|e| e.event.entry)
        .collect();
    let header = |source: TraceSource| Header {
        host: host.map(str::to_owned),
        created,
        note: Some("exported by gocache trace export".into()),
        ..Header::new(source.as_str())
    };
    let mut last = None;
    let mut n = 0;
    if events.is_empty() {
        schema::write(out, &header(TraceSource::Hook), [])?;
    }
    for s in events {
        if last != Some(s.source) {
            serde_json::to_writer(&mut *out, &header(s.source))?;
            out.write_all(b"\n")?;
            last = Some(s.source);
        }
        serde_json::to_writer(&mut *out, &to_schema(s, &exes))?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

/// One stored event in the simulator's schema.
fn to_schema(s: &StoredEvent, exes: &std::collections::HashSet<TraceId>) -> Event {
    let e = &s.event;
    let kind = EntryKind::from(e.kind);
    let (a, o) = match e.kind {
        Kind::Action => (Some(e.entry), e.output),
        Kind::Output | Kind::Exe => (None, Some(e.entry)),
    };
    let exe = e.kind == Kind::Action && e.output.is_some_and(|o| exes.contains(&o));
    let mut ev = match (e.op, e.kind) {
        (TraceOp::End, _) => return Event::end(e.t_ms),
        (TraceOp::Miss, _) => Event::get_miss(e.t_ms, e.entry),
        (TraceOp::Put, _) => match e.output {
            Some(o) => Event::put(e.t_ms, e.entry, o, e.size.unwrap_or(0), e.cost),
            // Never written so: a put names its output.
            None => Event::get_miss(e.t_ms, e.entry),
        },
        // gocache prog's hits are gets, as go asked them.
        (TraceOp::Use, Kind::Action) if s.source == TraceSource::Prog && o.is_some() => {
            Event::get_hit(e.t_ms, e.entry, o.unwrap_or(e.entry), e.size.unwrap_or(0))
        }
        (TraceOp::New, _) => Event::seen(e.t_ms, Op::New, kind, a, o.unwrap_or(e.entry)),
        (TraceOp::Use, _) => Event::seen(e.t_ms, Op::Use, kind, a, o.unwrap_or(e.entry)),
    };
    if e.kind == Kind::Action && matches!(e.op, TraceOp::New | TraceOp::Use) {
        // `seen` sets `o` to something for every kind; an action whose
        // output is unknown has none.
        ev.o = o;
    }
    ev.exe = exe;
    if ev.size.is_none() {
        ev.size = e.size;
    }
    if ev.cost.is_none() {
        ev.cost = e.cost;
    }
    if matches!(ev.ev, Op::Get | Op::Put) {
        ev.of = e.of;
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::schema::read;
    use super::*;

    fn id(b: u8) -> Id {
        Id([b; 32])
    }

    #[test]
    fn the_setting_turns_recording_off_or_bounds_it() {
        let s = TraceSource::Hook;
        let on = |keep| Ok(Some(Tracing { source: s, keep }));
        assert_eq!(Tracing::parse(s, None), on(DEFAULT_KEEP));
        assert_eq!(Tracing::parse(s, Some("on")), on(DEFAULT_KEEP));
        assert_eq!(Tracing::parse(s, Some("OFF")), Ok(None));
        assert_eq!(Tracing::parse(s, Some("0")), Ok(None));
        assert_eq!(Tracing::parse(s, Some("200_000")), on(200_000));
        // What is wrong, and nothing of what the caller does instead (the
        // CLI adds "recording with the default bound", `gocache prog`
        // "recording no trace": tests/edges.rs checks the whole line).
        let e = Tracing::parse(s, Some("lots")).unwrap_err();
        assert!(
            e.contains("GOCACHE_TRACE=\"lots\" is not off, on or a number"),
            "{e}"
        );
        assert!(!e.contains("recording"), "{e}");
    }

    #[test]
    fn a_miss_and_the_put_that_follows_bracket_the_rebuild() {
        let mut c = RebuildClock::with_cpus(2);
        c.miss(&id(1), 1_000);
        c.miss(&id(2), 1_100);
        assert_eq!(c.put(&id(1), 1_750), Some(0.75), "two misses, two CPUs");
        assert_eq!(c.put(&id(1), 1_900), None, "one put per miss");
        assert_eq!(c.put(&id(3), 2_000), None, "a put with no miss");
        // A clock that went back adds no time, and never a negative cost:
        // action 2 is charged its time up to the latest event.
        assert_eq!(c.put(&id(2), 1_000), Some(0.9));
        // Bounded: the oldest misses are forgotten.
        for i in 0..RebuildClock::CAPACITY as u64 + 10 {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&i.to_be_bytes());
            c.miss(&Id(b), i as i64);
        }
        assert!(c.misses.len() <= RebuildClock::CAPACITY);
        assert_eq!(c.put(&Id([0; 32]), 5), None);
    }

    #[test]
    fn actions_beyond_the_cpus_share_the_time_they_overlap() {
        // Four actions at once on two CPUs, each for 1 s of wall time:
        // 2 CPU-seconds of work, half a second each.
        let mut c = RebuildClock::with_cpus(2);
        for a in 1..=4 {
            c.miss(&id(a), 0);
        }
        let costs: Vec<f64> = (1..=4).filter_map(|a| c.put(&id(a), 1_000)).collect();
        assert_eq!(costs, [0.5; 4]);
        // Staggered: 1 alone for 1 s, then 1 and 2..4 for 1 s (two CPUs,
        // four actions: 0.5 s each), then 2..4 for 1.5 s (two CPUs, three
        // actions: 1 s each). 6 s in all: the CPU-seconds the four kept
        // busy (1 s on one CPU, then 2.5 s on two).
        let mut c = RebuildClock::with_cpus(2);
        c.miss(&id(1), 0);
        for a in 2..=4 {
            c.miss(&id(a), 1_000);
        }
        let one = c.put(&id(1), 2_000).unwrap();
        let rest: Vec<f64> = (2..=4).filter_map(|a| c.put(&id(a), 3_500)).collect();
        assert!((one - 1.5).abs() < 1e-9, "{one}");
        assert!(rest.iter().all(|r| (r - 1.5).abs() < 1e-9), "{rest:?}");
        // One CPU: two overlapping actions share it.
        let mut c = RebuildClock::with_cpus(1);
        c.miss(&id(1), 0);
        c.miss(&id(2), 0);
        assert_eq!(c.put(&id(1), 2_000), Some(1.0));
        assert_eq!(c.put(&id(2), 3_000), Some(2.0));
    }

    #[test]
    fn a_miss_no_put_follows_takes_no_share_of_the_rebuilds() {
        // go asks for a stdout subkey (never put back) and for action 1,
        // which it rebuilds in a second of one CPU. Online, the stale miss
        // counts as working and takes half; settled, action 1 gets it all.
        let stale = id(9);
        let mut clock = RebuildClock::with_cpus(2);
        clock.observe_cpu(0, 0.0);
        clock.miss(&stale, 0);
        clock.miss(&id(1), 0);
        clock.observe_cpu(1_000, 1_000.0);
        assert_eq!(clock.put(&id(1), 1_000), Some(0.5), "diluted");
        let mut log = RebuildLog::with_cpus(2);
        let mut events = vec![TraceEvent::miss(0, &stale), TraceEvent::miss(0, &id(1))];
        log.miss(&stale, 0);
        log.miss(&id(1), 0);
        log.marks[1].cpu = Some(CpuReading::default());
        events.push(TraceEvent::put(1_000, &id(1), &id(11), 4096, None));
        log.put(&id(1), 1_000, 2);
        log.marks[2].cpu = Some(CpuReading {
            own_ms: 0.0,
            children_ms: 1_000.0,
        });
        log.settle(&mut events);
        assert_eq!(events[2].cost, Some(1.0));
        assert!(log.marks.is_empty());
        // Two rebuilds at once, one stale miss beside them: each has half
        // of the two CPUs' two seconds of work, as without it.
        let mut log = RebuildLog::with_cpus(2);
        let mut events = vec![
            TraceEvent::put(2_000, &id(1), &id(11), 4096, None),
            TraceEvent::put(2_000, &id(2), &id(12), 4096, None),
        ];
        log.miss(&stale, 0);
        log.miss(&id(1), 0);
        log.miss(&id(2), 0);
        log.put(&id(1), 2_000, 0);
        log.put(&id(2), 2_000, 1);
        log.settle(&mut events);
        assert_eq!((events[0].cost, events[1].cost), (Some(2.0), Some(2.0)));
        // A put with no miss before it (a download, or go putting what it
        // never asked for) gets no cost.
        let mut events = vec![TraceEvent::put(5, &id(3), &id(13), 4096, None)];
        log.put(&id(3), 5, 0);
        log.settle(&mut events);
        assert_eq!(events[0].cost, None);
    }

    /// A mark as prog notes it: time, go's own and children's CPU-ms,
    /// action, the put's event (`None`: a miss).
    type Noted = (i64, (f64, f64), u8, Option<usize>);

    /// A log of `marks` as prog would have noted them.
    fn noted(cpus: usize, marks: &[Noted]) -> RebuildLog {
        let mut log = RebuildLog::with_cpus(cpus);
        for &(t_ms, (own_ms, children_ms), a, put) in marks {
            log.marks.push(Mark {
                t_ms,
                cpu: Some(CpuReading {
                    own_ms,
                    children_ms,
                }),
                put,
                action: TraceId::of(&id(a)),
            });
        }
        log
    }

    fn settled(mut log: RebuildLog, puts: usize) -> Vec<Option<f64>> {
        let mut events: Vec<TraceEvent> = (0..puts)
            .map(|i| TraceEvent::put(0, &id(i as u8), &id(100), 4096, None))
            .collect();
        log.settle(&mut events);
        events
            .iter()
            .map(|e| e.cost.map(|c| (c * 1e6).round() / 1e6))
            .collect()
    }

    #[test]
    fn with_go_and_its_tools_read_apart_a_rebuild_costs_its_tools_work() {
        // A cold build: two compiles at once on two CPUs. 1's tool (90 ms)
        // is reaped before its put at 100 ms, 2's (80 ms) before its put
        // at 150 ms; go's own 14 ms meanwhile is the command's. By shares
        // of time, 1 would cost half its span (2's tool finishing outside
        // it); by work, each costs its tool.
        let log = noted(
            2,
            &[
                (0, (0.0, 0.0), 1, None),
                (0, (0.0, 0.0), 2, None),
                (100, (10.0, 90.0), 1, Some(0)),
                (150, (14.0, 170.0), 2, Some(1)),
            ],
        );
        assert_eq!(settled(log, 2), [Some(0.09), Some(0.08)]);
        // The same compile rebuilt alone, and one whose tool (a test
        // binary that ran 5 s) finished inside a 10 ms span: capped at
        // the span on both CPUs.
        let log = noted(
            2,
            &[
                (0, (0.0, 0.0), 0, None),
                (100, (5.0, 90.0), 0, Some(0)),
                (200, (5.0, 90.0), 1, None),
                (210, (5.0, 5090.0), 1, Some(1)),
            ],
        );
        assert_eq!(settled(log, 2), [Some(0.09), Some(0.02)]);
        // A lookup go never puts back (9) is no rebuild: it takes nothing,
        // and what go's children used while no rebuild was open (a 500 ms
        // link it does not cache) is no rebuild's either.
        let log = noted(
            2,
            &[
                (0, (0.0, 0.0), 9, None),
                (100, (50.0, 500.0), 0, None),
                (200, (60.0, 600.0), 0, Some(0)),
            ],
        );
        assert_eq!(settled(log, 1), [Some(0.1)]);
        // A put with no miss before it gets no cost; a reading that goes
        // back is ignored (the 5 ms before 0 opened are no one's; 0 takes
        // the 15 ms from 5 to 20).
        let log = noted(
            1,
            &[
                (0, (0.0, 0.0), 1, Some(0)),
                (10, (5.0, 5.0), 0, None),
                (20, (4.0, 3.0), 0, None),
                (30, (8.0, 20.0), 0, Some(1)),
            ],
        );
        assert_eq!(settled(log, 2), [None, Some(0.015)]);
    }

    #[test]
    fn a_busy_machine_scales_the_shares_by_the_cpu_go_got() {
        // Two actions at once on two CPUs for 2 s: 4 CPU-seconds could
        // have been theirs, go got 1 (a competing load took the rest).
        let mut c = RebuildClock::with_cpus(2);
        c.observe_cpu(0, 10_000.0);
        c.miss(&id(1), 0);
        c.miss(&id(2), 0);
        c.observe_cpu(2_000, 10_600.0);
        assert_eq!(c.put(&id(1), 2_000), Some(0.3));
        c.observe_cpu(2_000, 11_000.0);
        // Action 2 saw the whole second go got.
        assert_eq!(c.put(&id(2), 2_000), Some(0.5));
        // A reading that goes back is ignored; a span with more CPU than
        // capacity (go's own threads) is capped at the capacity.
        let mut c = RebuildClock::with_cpus(1);
        c.observe_cpu(0, 5_000.0);
        c.miss(&id(1), 0);
        c.observe_cpu(500, 4_000.0);
        c.observe_cpu(1_000, 9_000.0);
        assert_eq!(c.put(&id(1), 1_000), Some(1.0));
        // A reader is called at the miss and the put: 250 ms of CPU over
        // a second of one CPU's capacity.
        static CPU: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut c = RebuildClock::with_cpus(1)
            .reading_cpu(|| Some(CPU.load(std::sync::atomic::Ordering::Relaxed) as f64));
        c.miss(&id(1), 0);
        CPU.store(250, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(c.put(&id(1), 1_000), Some(0.25));
    }

    #[test]
    fn stored_events_export_to_the_simulators_schema() {
        let stored = |op, kind, entry: u8, output: Option<u8>, size, source| StoredEvent {
            event: TraceEvent {
                t_ms: 1000 * i64::from(entry),
                op,
                kind,
                entry: TraceId::of(&id(entry)),
                output: output.map(|o| TraceId::of(&id(o))),
                size,
                cost: None,
                of: None,
            },
            source,
            module: None,
        };
        let (h, p) = (TraceSource::Hook, TraceSource::Prog);
        let events = vec![
            stored(TraceOp::New, Kind::Action, 1, Some(2), None, h),
            stored(TraceOp::New, Kind::Exe, 2, None, Some(8192), h),
            stored(TraceOp::Use, Kind::Exe, 2, None, None, h),
            stored(TraceOp::Miss, Kind::Action, 3, None, None, p),
            StoredEvent {
                event: TraceEvent::put(4000, &id(3), &id(4), 4096, Some(0.5)),
                source: p,
                module: Some(1),
            },
            StoredEvent {
                event: TraceEvent::hit(5000, &id(3), &id(4), 4096),
                source: p,
                module: None,
            },
        ];
        let mut buf = Vec::new();
        assert_eq!(export(&mut buf, &events, Some("box"), Some(7)).unwrap(), 6);
        let t = read(&buf[..], "export").unwrap();
        let sources: Vec<&str> = t.headers.iter().map(|h| h.source.as_str()).collect();
        assert_eq!(sources, ["hook", "prog"]);
        assert_eq!(t.events.len(), 6);
        assert!(t.events[0].exe, "the action names the executable");
        assert_eq!(t.events[0].o, Some(TraceId::of(&id(2))));
        assert_eq!(
            (t.events[1].kind, t.events[1].size),
            (EntryKind::Exe, Some(8192))
        );
        assert_eq!(t.events[3].ev, Op::Get);
        assert_eq!(t.events[3].hit, Some(false));
        assert_eq!((t.events[4].ev, t.events[4].cost), (Op::Put, Some(0.5)));
        assert_eq!((t.events[5].ev, t.events[5].hit), (Op::Get, Some(true)));
        // An empty trace is still a trace.
        let mut buf = Vec::new();
        assert_eq!(export(&mut buf, &[], None, None).unwrap(), 0);
        assert!(read(&buf[..], "empty").unwrap().events.is_empty());
    }
}
