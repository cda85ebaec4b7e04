//! The books: what a session counts, the uses and trace events the
//! requests queue, and the bookkeeping thread that owns the index:
//! records them in batches, enforces the limits when puts ask, and at
//! close records the session's row.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};

use super::protocol::{Timeline, lock};
use crate::index::{Index, Use};
use crate::layout::EntryName;
use crate::model::UnixTime;
use crate::trace::{RebuildClock, TraceEvent};

/// Bytes put between two background checks of the limits.
pub const EVICT_EVERY: u64 = 16 << 20;

/// Uses waiting to be recorded that wake the bookkeeper before its next
/// tick: a few milliseconds of SQLite work each time, done while go works,
/// rather than all of it at `close`, which go waits for.
const FLUSH_USES_AT: usize = 512;

/// Trace events held in memory during a session before they are written
/// anyway (about 80 bytes each); below this they wait for the close.
const HOLD_EVENTS: usize = 100_000;

/// Counters for one go command's session.
#[derive(Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Gets answered.
    pub gets: AtomicU64,
    /// Gets that hit.
    pub hits: AtomicU64,
    /// Gets that missed.
    pub misses: AtomicU64,
    /// Puts stored.
    pub puts: AtomicU64,
    /// Body bytes stored.
    pub put_bytes: AtomicU64,
    /// Requests answered with an error.
    pub errors: AtomicU64,
}

/// The index and the limits to enforce, once opened.
#[derive(Default)]
pub struct Bookkeeping {
    /// The index, if it could be opened (the server works without one).
    pub index: Option<Index>,
    /// Limits to enforce in the background and at close, if any are set.
    pub limits: Option<crate::limits::Limits>,
}

/// The session's books: what requests count and queue, for the
/// bookkeeping thread ([`keep_books`]) to record.
pub(super) struct Books {
    pub(super) counters: Counters,
    uses: Mutex<Vec<Use>>,
    /// The bookkeeping thread, woken early when [`FLUSH_USES_AT`] uses
    /// are waiting or puts ask for the limits to be enforced.
    bookkeeper: OnceLock<std::thread::Thread>,
    /// Puts stored enough to check the limits (see [`EVICT_EVERY`]).
    evict_wanted: AtomicBool,
    /// A put was stored: check the limits at close.
    puts_seen: AtomicBool,
    /// The requests are over: record the rest and stop.
    closing: AtomicBool,
    /// Trace events waiting for the bookkeeper, and the misses waiting for
    /// their puts (`None`: not recording).
    events: Option<Mutex<Events>>,
    /// What the remote tier did, for the session's row: set at close.
    remote: OnceLock<crate::model::ProgRemote>,
    /// The cache directory, for the limits' sync and enforcement.
    cache: PathBuf,
    clock: fn() -> UnixTime,
}

/// See [`Books::events`].
struct Events {
    batch: Vec<TraceEvent>,
    rebuilds: RebuildClock,
}

/// Unix milliseconds, for trace events: a rebuild's cost is shared out
/// from the times of misses and puts, finer than the server's clock's seconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The CPU-milliseconds go (prog's parent) and its finished children
/// (compile, asm, link: go waits for each before its put) have used, for
/// [`RebuildClock::reading_cpu`], read at each miss and put:
/// `/proc/PID/stat`'s utime, stime, cutime
/// and cstime. `None` where there is no such file (not Linux) or it cannot
/// be read; the costs are then shares of wall time.
fn go_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string(format!(
        "/proc/{}/stat",
        std::os::unix::process::parent_id()
    ))
    .ok()?;
    // Fields after the command name (which may hold spaces), from the
    // third: state is 3, utime 14 .. cstime 17.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: f64 = rest
        .split(' ')
        .skip(11)
        .take(4)
        .map(|f| f.parse::<f64>().ok())
        .sum::<Option<f64>>()?;
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks * 1000.0 / hz as f64)
}

impl Books {
    /// Books for the cache at `cache`, recording trace events when
    /// `record_events`.
    pub(super) fn new(cache: PathBuf, clock: fn() -> UnixTime, record_events: bool) -> Books {
        Books {
            counters: Counters::default(),
            uses: Mutex::new(Vec::new()),
            bookkeeper: OnceLock::new(),
            evict_wanted: AtomicBool::new(false),
            puts_seen: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            events: record_events.then(|| {
                Mutex::new(Events {
                    batch: Vec::new(),
                    rebuilds: RebuildClock::default().reading_cpu(go_cpu_ms),
                })
            }),
            remote: OnceLock::new(),
            cache,
            clock,
        }
    }

    /// Queues the uses of an entry (its action and output) for the
    /// bookkeeper, waking it when [`FLUSH_USES_AT`] wait.
    pub(super) fn used(&self, names: [EntryName; 2], at: UnixTime, hit: bool) {
        let Ok(mut u) = self.uses.lock() else { return };
        let before = u.len();
        u.extend(names.map(|name| Use { name, at, hit }));
        if before < FLUSH_USES_AT && u.len() >= FLUSH_USES_AT {
            self.wake();
        }
    }

    /// Queues a trace event, when recording them; `f` makes it with the
    /// rebuild clock at hand.
    pub(super) fn event(&self, f: impl FnOnce(&mut RebuildClock, i64) -> TraceEvent) {
        if let Some(events) = &self.events {
            let mut e = lock(events);
            let Events { batch, rebuilds } = &mut *e;
            batch.push(f(rebuilds, now_ms()));
        }
    }

    /// A put of `size` bytes was stored: `since` (bytes put since the last
    /// check) grows, and once it reaches [`EVICT_EVERY`] the bookkeeper is
    /// asked to enforce the limits and `since` starts again.
    pub(super) fn put_stored(&self, since: &mut u64, size: u64) {
        *since += size;
        self.puts_seen.store(true, Ordering::Relaxed);
        if *since >= EVICT_EVERY {
            *since = 0;
            self.evict_wanted.store(true, Ordering::SeqCst);
            self.wake();
        }
    }

    /// The requests are over: the bookkeeper records the rest, with the
    /// remote tier's counts when there is one.
    pub(super) fn close(&self, remote: Option<crate::model::ProgRemote>) {
        if let Some(r) = remote {
            let _ = self.remote.set(r);
        }
        self.closing.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        if let Some(t) = self.bookkeeper.get() {
            t.unpark();
        }
    }
}

/// Starts the bookkeeping thread ([`keep_books`]); its index comes back
/// when it ends, and `ready` gets a message once the session's row is
/// recorded.
pub(super) fn start(
    books: &std::sync::Arc<Books>,
    timeline: &std::sync::Arc<Timeline>,
    open: Box<dyn FnOnce() -> Bookkeeping + Send>,
    started: UnixTime,
) -> (std::thread::JoinHandle<Option<Index>>, mpsc::Receiver<()>) {
    let (ready_tx, ready) = mpsc::channel();
    let (books_, timeline) = (books.clone(), timeline.clone());
    let thread =
        std::thread::spawn(move || keep_books(&books_, &timeline, open, started, ready_tx));
    let _ = books.bookkeeper.set(thread.thread().clone());
    (thread, ready)
}

/// The bookkeeping thread: opens the index, records uses in batches
/// (every 250 ms, or sooner when [`FLUSH_USES_AT`] wait), enforces the
/// limits when puts ask for it, and at close records the last uses and
/// the session and checks the limits once more. Returns the index, for the
/// caller to close once the go command has its answer.
fn keep_books(
    books: &Books,
    timeline: &Timeline,
    open: Box<dyn FnOnce() -> Bookkeeping + Send>,
    started: UnixTime,
    ready: mpsc::Sender<()>,
) -> Option<Index> {
    let Bookkeeping { mut index, limits } = open();
    timeline.note("index-open", 0, index.is_some() as u64);
    while !books.closing.load(Ordering::SeqCst) {
        flush_uses(books, index.as_mut(), false);
        if books.evict_wanted.swap(false, Ordering::SeqCst)
            && let (Some(ix), Some(limits)) = (index.as_mut(), &limits)
        {
            evict(books, ix, limits);
            timeline.note("evicted", 0, 0);
        }
        std::thread::park_timeout(std::time::Duration::from_millis(250));
    }
    // Close. SQLite checkpoints (two fsyncs) in whichever commit makes the
    // WAL long: not in the commits go waits for now. Closing the index,
    // after go has its answer, checkpoints.
    if let Some(ix) = &index {
        let _ = ix.defer_checkpoints();
    }
    // After puts, the limits are checked before go may exit, so that the
    // cache is within them when it does; the uses come first so that the
    // plan protects what this build used.
    if books.puts_seen.load(Ordering::Relaxed)
        && let (Some(ix), Some(limits)) = (index.as_mut(), &limits)
    {
        flush_uses(books, Some(ix), false);
        timeline.note("uses-recorded", 0, 0);
        evict(books, ix, limits);
        timeline.note("limits-checked", 0, 0);
    }
    // The session's row is there when go exits (its counts are exact
    // already); the uses still waiting are recorded right after go has its
    // answer: up to a few hundred rows, milliseconds of SQLite that go
    // would otherwise wait for.
    if let Some(ix) = &mut index {
        record_session(books, ix, started);
    }
    let _ = ready.send(());
    flush_uses(books, index.as_mut(), true);
    timeline.note("uses-recorded-after", 0, 0);
    index
}

/// Records the uses waiting, and the trace events when `events_too` (or
/// when more than [`HOLD_EVENTS`] wait): events are written after go has
/// its answer, so that their rows cost a build nothing.
fn flush_uses(books: &Books, mut index: Option<&mut Index>, events_too: bool) {
    let events = books
        .events
        .as_ref()
        .map(|e| {
            let mut e = lock(e);
            if events_too || e.batch.len() > HOLD_EVENTS {
                std::mem::take(&mut e.batch)
            } else {
                Vec::new()
            }
        })
        .unwrap_or_default();
    let batch = match books.uses.lock() {
        Ok(mut u) if !u.is_empty() => std::mem::take(&mut *u),
        _ => Vec::new(),
    };
    if let Some(ix) = index.as_deref_mut()
        && !batch.is_empty()
        && let Err(e) = ix.record_uses(&batch)
    {
        eprintln!("gocache prog: warning: recording uses in the index: {e}");
    }
    if let Some(ix) = index
        && !events.is_empty()
        && let Err(e) = ix.record_trace(&events)
    {
        eprintln!("gocache prog: warning: recording trace events in the index: {e}");
    }
}

fn record_session(books: &Books, ix: &mut Index, started: UnixTime) {
    let c = &books.counters;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let recorded = ix.record_session(&crate::model::ProgSession {
        started,
        ended: (books.clock)(),
        gets: l(&c.gets),
        hits: l(&c.hits),
        misses: l(&c.misses),
        puts: l(&c.puts),
        put_bytes: l(&c.put_bytes),
        errors: l(&c.errors),
        remote: books.remote.get().cloned(),
    });
    if let Err(e) = recorded {
        eprintln!("gocache prog: warning: recording the session in the index: {e}");
    }
}

/// Syncs the index with the disk and enforces `limits`, as the hook does
/// ([`crate::enforce::after_use`]): everything handed out to this go
/// command was just used and is inside the grace period, so it stays.
fn evict(books: &Books, ix: &mut Index, limits: &crate::limits::Limits) {
    let (cache, now, quiet) = (&books.cache, (books.clock)(), &crate::report::Silent);
    let enforced = crate::scan::scan(cache, ix, &Default::default(), now, quiet)
        .and_then(|_| crate::enforce::after_use(cache, ix, &[], limits, now, quiet));
    if let Err(e) = enforced {
        eprintln!("gocache prog: warning: enforcing the limits: {e}");
    }
}
