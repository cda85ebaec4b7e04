//! The books: what a session counts, the uses and trace events the
//! requests queue, and the bookkeeping thread that owns the index:
//! records them in batches, enforces the limits when puts ask, and at
//! close records the session's row.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use super::protocol::{Timeline, lock};
use crate::error::Error;
use crate::index::{Fallback, Index, LOCK_WAIT, Use};
use crate::layout::{EntryName, Id};
use crate::model::UnixTime;
use crate::trace::{CpuReading, RebuildLog, TraceEvent};

/// Bytes put between two background checks of the limits.
pub const EVICT_EVERY: u64 = crate::limits::PROG_EVICT_EVERY;

/// Uses waiting to be recorded that wake the bookkeeper before its next
/// tick: a few milliseconds of SQLite work each time, done while go works,
/// rather than all of it at `close`, which go waits for.
const FLUSH_USES_AT: usize = 512;

/// A put finding less free space than its body and this much more asks
/// the bookkeeper to enforce the limits at once, and waits for it (see
/// [`Books::make_room`]).
pub const LOW_SPACE_SLACK: u64 = 1 << 20;

/// How long a put waits for [`Books::make_room`] at most.
const ROOM_WAIT: Duration = Duration::from_secs(20);

/// A put asks for room at most this often: a disk full of what the limits
/// may not remove stays full, and each ask costs a sync.
const ROOM_AGAIN: Duration = Duration::from_secs(1);

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
    /// A warning about the index was printed already (one a session).
    pub warned: bool,
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
    /// The actions the remote store did not have and go never stores.
    pub(super) absent: Absent,
    /// The sets of uses this machine reported to the remote store lately
    /// (`remote::tier::REPORT_AGAIN_AFTER`): read by the bookkeeper as it
    /// opens the index, for the session's last use log.
    reported: Mutex<Option<std::collections::HashMap<Id, UnixTime>>>,
    /// Puts waiting for room on a full disk, and the bookkeeper's rounds
    /// of enforcement for them (see [`Books::make_room`]).
    room: Mutex<Room>,
    room_done: Condvar,
    /// When a put last asked for room.
    room_asked: Mutex<Option<Instant>>,
    /// An output was not cached (said once a session).
    warned_not_cached: AtomicBool,
    /// No warnings (`--quiet`).
    quiet: bool,
    /// The cache directory, for the limits' sync and enforcement.
    cache: PathBuf,
    clock: fn() -> UnixTime,
}

/// Actions the remote store did not have and go did not store either:
/// what go looks up and never puts (the link of `go build -o`, the
/// compiler output kept beside an action when there was none). Asked of
/// the store, each costs a round trip on every warm build (two for a
/// `go build -o` of a module: at 20-50 ms a request, more than the whole
/// tier costs otherwise). So a session records its store misses that no
/// put followed (the entry is not in level one at close), the index keeps
/// them per store for [`ABSENT_FOR`], and later sessions answer them as
/// misses without asking. An entry another machine stores after all is
/// fetched again once its time is up; meanwhile go builds it, as without
/// a store.
#[derive(Default)]
pub(super) struct Absent {
    /// The store (its name as the summary line gives it): set when a
    /// remote tier serves the session.
    pub(super) place: OnceLock<String>,
    /// Read from the index by the bookkeeper as it opens it: action, and
    /// until when (`None` until then).
    known: Mutex<Option<std::collections::HashMap<Id, UnixTime>>>,
    loaded: Condvar,
    /// A miss waited [`ABSENT_WAIT`] in vain (the index slow to open):
    /// later ones do not wait.
    waited: AtomicBool,
    /// This session's store misses; at close, only those level one does
    /// not have (go did not put them): to be stored.
    missed: Mutex<Vec<Id>>,
}

/// How long an action the store did not have and go did not store is not
/// asked for again.
pub const ABSENT_FOR: UnixTime = 24 * 3600;

/// The most actions [`Absent`] keeps a store (the latest to expire).
const ABSENT_MAX: usize = 4096;

/// The longest a local miss waits for [`Absent`]'s set before asking the
/// store anyway.
const ABSENT_WAIT: Duration = Duration::from_millis(50);

impl Absent {
    /// True when the store is known not to have `action` (and go not to
    /// store it): no need to ask.
    ///
    /// Waits up to [`ABSENT_WAIT`] for the bookkeeper to have read the set
    /// (it opens the index as the session starts, a millisecond or two; a
    /// miss asked of the store costs a round trip anyway), once a session.
    pub(super) fn has(&self, action: &Id) -> bool {
        let deadline = Instant::now() + ABSENT_WAIT;
        let mut known = lock(&self.known);
        while known.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.waited.load(Ordering::Relaxed) {
                self.waited.store(true, Ordering::Relaxed);
                return false;
            }
            known = self
                .loaded
                .wait_timeout(known, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        known.as_ref().is_some_and(|k| k.contains_key(action))
    }

    /// The bookkeeper read the set (empty without an index).
    fn load(&self, known: std::collections::HashMap<Id, UnixTime>) {
        *lock(&self.known) = Some(known);
        self.loaded.notify_all();
    }

    /// The store did not have `action`.
    pub(super) fn missed(&self, action: Id) {
        lock(&self.missed).push(action);
    }

    /// At close: keeps the misses `local` says level one does not have
    /// (go did not put them), for the bookkeeper to store.
    pub(super) fn settle(&self, local: impl Fn(Id) -> bool) {
        lock(&self.missed).retain(|&a| !local(a));
    }
}

/// What the index holds for the store `place` that has not expired by
/// `now`, and whether anything had.
fn unexpired_absent(
    ix: &Index,
    place: &str,
    now: UnixTime,
) -> (std::collections::HashMap<Id, UnixTime>, bool) {
    let mut known = ix.remote_absent(place).unwrap_or_default();
    let stored = known.len();
    known.retain(|_, until| *until > now);
    let expired = known.len() < stored;
    (known, expired)
}

/// See [`Books::room`].
#[derive(Default)]
struct Room {
    /// A put waits for a round.
    wanted: bool,
    /// Rounds started and done.
    started: u64,
    done: u64,
}

/// See [`Books::events`].
struct Events {
    batch: Vec<TraceEvent>,
    /// Added to the system's milliseconds (see `ServerConfig::clock_offset`).
    offset_ms: i64,
    rebuilds: RebuildLog,
    /// The entries go keeps beside an action it looked up: each looked-up
    /// action's [`BESIDE_SUBKEYS`], to the action and whether it hit
    /// (keyed by the IDs' own bits: they are hashes already). After a hit
    /// go may look them up; after a miss its rebuild writes them.
    beside:
        std::collections::HashMap<Id, (crate::trace::schema::TraceId, bool), crate::layout::IdHash>,
}

impl Events {
    /// The action `id` is kept beside, if it was looked up in this session
    /// and hit (`after_hit`) or missed (not `after_hit`) there last.
    fn beside_of(&self, id: &Id, after_hit: bool) -> Option<crate::trace::schema::TraceId> {
        self.beside
            .get(id)
            .and_then(|&(parent, hit)| (hit == after_hit).then_some(parent))
    }
}

/// Room for the subkeys of a warm `go build std`'s lookups (four each)
/// before the map grows.
const BESIDE_CAPACITY: usize = 8192;

/// What go keeps beside an action (Go's `cache.Subkey(action, desc)`),
/// looks up only after that action hit, and writes afresh when it
/// rebuilds it: the compiler's and the linker's output (`updateBuildID`
/// stores them; a rebuild prints its own), the list of a package's
/// compiled source files (`cacheSrcFiles`, at every compile;
/// `loadCachedVet` and `loadCachedCompiledGoFiles`: vet and `go list
/// -compiled` read it after the package's compile hit) and a cgo
/// package's exported header (`cacheCgoHdr`, `loadCachedCgoHdr`).
/// Generated files the source list names and coverage metadata go by
/// names prog does not know, and go on unmarked.
const BESIDE_SUBKEYS: [&str; 4] = ["stdout", "link-stdout", "srcfiles", "_cgo_install.h"];

/// Go's `cache.Subkey(parent, desc)`: the ID of an entry kept beside
/// `parent` (SHA-256 of `"subkey:"`, the parent's ID and `desc`).
pub(super) fn subkey(parent: &Id, desc: &str) -> Id {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"subkey:");
    h.update(parent.0);
    h.update(desc.as_bytes());
    Id(h.finalize().into())
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
/// [`RebuildLog::reading_cpu`], read at each miss and put:
/// `/proc/PID/stat`'s utime and stime (go's own), cutime and cstime
/// (its children's). `None` where there is no such file (not Linux) or it
/// cannot be read; the costs are then shares of wall time.
fn go_cpu_ms() -> Option<CpuReading> {
    let stat = std::fs::read_to_string(format!(
        "/proc/{}/stat",
        std::os::unix::process::parent_id()
    ))
    .ok()?;
    // Fields after the command name (which may hold spaces), from the
    // third: state is 3, utime 14 .. cstime 17.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut ticks = rest.split(' ').skip(11).map(|f| f.parse::<f64>().ok());
    let mut next = || ticks.next().flatten();
    let (utime, stime, cutime, cstime) = (next()?, next()?, next()?, next()?);
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ms = |t: f64| t * 1000.0 / hz as f64;
    (hz > 0).then(|| CpuReading {
        own_ms: ms(utime + stime),
        children_ms: ms(cutime + cstime),
    })
}

impl Books {
    /// Books for the cache at `cache`, recording trace events when
    /// `record_events`.
    pub(super) fn new(
        cache: PathBuf,
        clock: fn() -> UnixTime,
        clock_offset: i64,
        record_events: bool,
        quiet: bool,
    ) -> Books {
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
                    offset_ms: clock_offset.saturating_mul(1000),
                    rebuilds: RebuildLog::default().reading_cpu(go_cpu_ms),
                    beside: std::collections::HashMap::with_capacity_and_hasher(
                        BESIDE_CAPACITY,
                        crate::layout::IdHash,
                    ),
                })
            }),
            remote: OnceLock::new(),
            absent: Absent::default(),
            reported: Mutex::default(),
            room: Mutex::default(),
            room_done: Condvar::new(),
            room_asked: Mutex::new(None),
            warned_not_cached: AtomicBool::new(false),
            quiet,
            cache,
            clock,
        }
    }

    /// A put's output was not cached (`e` says why); the first time in a
    /// session, a warning says so.
    pub(super) fn not_cached(&self, e: &Error) {
        if !self.quiet && !self.warned_not_cached.swap(true, Ordering::Relaxed) {
            eprintln!(
                "gocache prog: warning: {e}; outputs that cannot be put in place are \
                 handed to go from a temporary file in the cache, removed when it \
                 exits, and not cached"
            );
        }
    }

    /// A put found the disk nearly full: the bookkeeper enforces the
    /// limits now (a sync and an eviction, from a walk when the index
    /// cannot be written), and this waits for it, up to [`ROOM_WAIT`].
    /// Asked at most once every [`ROOM_AGAIN`]; returns at once otherwise.
    pub(super) fn make_room(&self) {
        {
            let mut asked = lock(&self.room_asked);
            if asked.is_some_and(|t| t.elapsed() < ROOM_AGAIN) {
                return;
            }
            *asked = Some(Instant::now());
        }
        let mut room = lock(&self.room);
        room.wanted = true;
        let target = room.started + 1;
        self.wake();
        let deadline = Instant::now() + ROOM_WAIT;
        while room.done < target && !self.closing.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            room = match self
                .room_done
                .wait_timeout(room, left.min(Duration::from_millis(250)))
            {
                Ok((r, _)) => r,
                Err(_) => return,
            };
        }
    }

    /// Queues the uses of an entry (its action and output) for the
    /// bookkeeper, waking it when [`FLUSH_USES_AT`] wait. `marked`: which
    /// of the two this use's mark moved to `at` on disk (see
    /// [`Use::marked`]).
    pub(super) fn used(&self, names: [EntryName; 2], at: UnixTime, hit: bool, marked: [bool; 2]) {
        let Ok(mut u) = self.uses.lock() else { return };
        let before = u.len();
        u.extend(names.into_iter().zip(marked).map(|(name, marked)| Use {
            name,
            at,
            hit,
            marked,
        }));
        if before < FLUSH_USES_AT && u.len() >= FLUSH_USES_AT {
            self.wake();
        }
    }

    /// Queues a get's trace event, when recording them (`f` makes it, as
    /// for [`Books::event`]), marked with the action whose hit go was
    /// showing when it asked for `action` (its compiler or linker output
    /// kept beside it, which go asks for only after that hit), if any; the
    /// lookup (`hit` or not) is remembered for what may follow it: the
    /// lookups after a hit, the puts of a rebuild ([`Books::put_event`]).
    /// One lock for both.
    pub(super) fn get_event(
        &self,
        action: &Id,
        hit: bool,
        f: impl FnOnce(&mut RebuildLog, i64) -> TraceEvent,
    ) {
        let Some(events) = &self.events else { return };
        let e = &mut *lock(events);
        let of = e.beside_of(action, true);
        let parent = crate::trace::schema::TraceId::of(action);
        for desc in BESIDE_SUBKEYS {
            e.beside.insert(subkey(action, desc), (parent, hit));
        }
        let t = now_ms() + e.offset_ms;
        e.batch.push(f(&mut e.rebuilds, t).of(of));
    }

    /// Queues a put's trace event, when recording them (`f` makes it, as
    /// for [`Books::event`]), marked with the action whose rebuild wrote
    /// `action` beside it (its compiler output, its list of compiled source
    /// files: go writes them with every rebuild, and a simulator that
    /// misses that action where the trace hit must store them again), if
    /// that action missed in this session.
    pub(super) fn put_event(
        &self,
        action: &Id,
        f: impl FnOnce(&mut RebuildLog, i64, usize) -> TraceEvent,
    ) {
        let Some(events) = &self.events else { return };
        let e = &mut *lock(events);
        let of = e.beside_of(action, false);
        let (t, at) = (now_ms() + e.offset_ms, e.batch.len());
        e.batch.push(f(&mut e.rebuilds, t, at).of(of));
    }

    /// Queues a trace event, when recording them; `f` makes it with the
    /// rebuild log at hand, the time, and the event's place in the batch
    /// (for [`RebuildLog::put`]).
    pub(super) fn event(&self, f: impl FnOnce(&mut RebuildLog, i64, usize) -> TraceEvent) {
        if let Some(events) = &self.events {
            let mut e = lock(events);
            let Events {
                batch,
                rebuilds,
                offset_ms,
                ..
            } = &mut *e;
            let at = batch.len();
            batch.push(f(rebuilds, now_ms() + *offset_ms, at));
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

    /// The sets of uses this machine reported to the remote store lately,
    /// as the index held them at start (empty without one).
    pub(super) fn take_reported(&self) -> std::collections::HashMap<Id, UnixTime> {
        lock(&self.reported).take().unwrap_or_default()
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
    let Bookkeeping {
        index,
        limits,
        warned,
    } = open();
    let mut keeper = Keeper {
        index,
        warned,
        quiet: books.quiet,
    };
    timeline.note("index-open", 0, keeper.index.is_some() as u64);
    if let Some(place) = books.absent.place.get() {
        let now = (books.clock)();
        let known = keeper
            .index
            .as_ref()
            .map(|ix| unexpired_absent(ix, place, now).0);
        books.absent.load(known.unwrap_or_default());
        let reported = keeper.index.as_ref().map(|ix| ix.remote_reported(place));
        *lock(&books.reported) = Some(reported.and_then(|r| r.ok()).unwrap_or_default());
    }
    while !books.closing.load(Ordering::SeqCst) {
        flush_uses(books, &mut keeper, false);
        let for_room = {
            let mut room = lock(&books.room);
            let wanted = std::mem::take(&mut room.wanted);
            room.started += u64::from(wanted);
            wanted
        };
        if (books.evict_wanted.swap(false, Ordering::SeqCst) || for_room)
            && let Some(limits) = &limits
        {
            evict(books, &mut keeper, limits);
            timeline.note("evicted", 0, 0);
        }
        if for_room {
            lock(&books.room).done += 1;
            books.room_done.notify_all();
        }
        std::thread::park_timeout(Duration::from_millis(250));
    }
    // Close. SQLite checkpoints (two fsyncs) in whichever commit makes the
    // WAL long: not in the commits go waits for now. Closing the index,
    // after go has its answer, checkpoints.
    if let Some(ix) = &keeper.index {
        let _ = ix.defer_checkpoints();
    }
    // The session's end in the trace: where the limits are checked, for
    // the simulator to replay the real trim's trigger points.
    books.event(|_, t, _| TraceEvent::end(t));
    // After puts, the limits are checked before go may exit, so that the
    // cache is within them when it does; the uses come first so that the
    // plan protects what this build used.
    if books.puts_seen.load(Ordering::Relaxed)
        && keeper.index.is_some()
        && let Some(limits) = &limits
    {
        flush_uses(books, &mut keeper, false);
        timeline.note("uses-recorded", 0, 0);
        evict(books, &mut keeper, limits);
        timeline.note("limits-checked", 0, 0);
    }
    // The session's row is there when go exits (its counts are exact
    // already); the uses still waiting are recorded right after go has its
    // answer: up to a few hundred rows, milliseconds of SQLite that go
    // would otherwise wait for.
    record_session(books, &mut keeper, started);
    let _ = ready.send(());
    flush_uses(books, &mut keeper, true);
    timeline.note("uses-recorded-after", 0, 0);
    store_absent(books, &mut keeper);
    keeper.index
}

/// After the session's last use log: remembers that it reported this set
/// of uses (see `remote::tier::REPORT_AGAIN_AFTER`), so that the next
/// session using the same need not.
pub(super) fn store_reported(
    books: &Books,
    index: Option<&mut Index>,
    (fingerprint, at): (Id, UnixTime),
) {
    let (Some(ix), Some(place)) = (index, books.absent.place.get()) else {
        return;
    };
    let forget = at - crate::remote::tier::REPORT_AGAIN_AFTER;
    // A hint: without it the next session writes its log, as before.
    let _ = ix.add_remote_reported(place, fingerprint, at, forget);
}

/// Stores what the store did not have and go did not store ([`Absent`]),
/// after go has its answer; writes nothing when nothing changed.
fn store_absent(books: &Books, keeper: &mut Keeper) {
    let Some(place) = books.absent.place.get() else {
        return;
    };
    let new = std::mem::take(&mut *lock(&books.absent.missed));
    let now = (books.clock)();
    let Some(ix) = &keeper.index else { return };
    // Read again: another session may have stored since this one read.
    let (mut keep, expired) = unexpired_absent(ix, place, now);
    if new.is_empty() && !expired {
        return;
    }
    for a in new {
        keep.insert(a, now + ABSENT_FOR);
    }
    if keep.len() > ABSENT_MAX {
        let mut by_until: Vec<(UnixTime, Id)> = keep.iter().map(|(&a, &u)| (u, a)).collect();
        by_until.sort_unstable_by(|x, y| y.cmp(x));
        keep = by_until
            .into_iter()
            .take(ABSENT_MAX)
            .map(|(u, a)| (a, u))
            .collect();
    }
    with_index(keeper, "recording what the remote store lacks", |ix| {
        ix.store_remote_absent(place, &keep)
    });
}

/// The bookkeeper's index, and what to do when writing it fails.
struct Keeper {
    index: Option<Index>,
    /// A warning about the index was printed (one a session).
    warned: bool,
    quiet: bool,
}

impl Keeper {
    /// Writing the index failed with `e` while `doing`. When the file is to
    /// blame (full disk, read-only, held too long, damaged), the session
    /// goes on with an in-memory copy, seeded from the file where it can be
    /// read, as trim and the hook do: eviction never depends on writing the
    /// index. One warning a session, whatever failed.
    fn fault(&mut self, e: Error, doing: &str) {
        let copy = match &self.index {
            Some(ix) if !ix.is_in_memory() && e.is_index_problem() => {
                let seed = (!e.is_corrupt_index()).then(|| ix.path().to_owned());
                Index::open_in_memory(seed.as_deref(), LOCK_WAIT).ok()
            }
            _ => None,
        };
        let why = match copy {
            Some(copy) => {
                self.index = Some(copy);
                Fallback::InMemory {
                    error: e,
                    waited: LOCK_WAIT,
                }
                .to_string()
            }
            None => e.to_string(),
        };
        if !self.quiet && !std::mem::replace(&mut self.warned, true) {
            eprintln!("gocache prog: warning: {doing}: {why}");
        }
    }

    /// Whether a failure of the index in use may be tried again on an
    /// in-memory copy ([`Keeper::fault`]).
    fn on_file(&self) -> bool {
        self.index.as_ref().is_some_and(|ix| !ix.is_in_memory())
    }
}

/// Records the uses waiting, and the trace events when `events_too` (or
/// when more than [`HOLD_EVENTS`] wait): events are written after go has
/// its answer, so that their rows cost a build nothing.
fn flush_uses(books: &Books, keeper: &mut Keeper, events_too: bool) {
    let events = books
        .events
        .as_ref()
        .map(|e| {
            let mut e = lock(e);
            if events_too || e.batch.len() > HOLD_EVENTS {
                let Events {
                    batch, rebuilds, ..
                } = &mut *e;
                rebuilds.settle(batch);
                std::mem::take(batch)
            } else {
                Vec::new()
            }
        })
        .unwrap_or_default();
    let batch = match books.uses.lock() {
        Ok(mut u) if !u.is_empty() => std::mem::take(&mut *u),
        _ => Vec::new(),
    };
    if !batch.is_empty() {
        with_index(keeper, "recording uses in the index", |ix| {
            ix.record_uses(&batch)
        });
    }
    if !events.is_empty() {
        with_index(keeper, "recording trace events in the index", |ix| {
            ix.trace_mut().record(&events)
        });
    }
}

/// Runs `work` on the keeper's index, once more on an in-memory copy when
/// the file fails it ([`Keeper::fault`]).
fn with_index<T>(
    keeper: &mut Keeper,
    doing: &str,
    mut work: impl FnMut(&mut Index) -> crate::error::Result<T>,
) -> Option<T> {
    let on_file = keeper.on_file();
    let e = match work(keeper.index.as_mut()?) {
        Ok(v) => return Some(v),
        Err(e) => e,
    };
    let retry = on_file && e.is_index_problem();
    keeper.fault(e, doing);
    if !retry || !keeper.index.as_ref().is_some_and(Index::is_in_memory) {
        return None;
    }
    match work(keeper.index.as_mut()?) {
        Ok(v) => Some(v),
        Err(e) => {
            keeper.fault(e, doing);
            None
        }
    }
}

fn record_session(books: &Books, keeper: &mut Keeper, started: UnixTime) {
    let c = &books.counters;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let session = crate::model::ProgSession {
        started,
        ended: (books.clock)(),
        gets: l(&c.gets),
        hits: l(&c.hits),
        misses: l(&c.misses),
        puts: l(&c.puts),
        put_bytes: l(&c.put_bytes),
        errors: l(&c.errors),
        remote: books.remote.get().cloned(),
    };
    with_index(keeper, "recording the session in the index", |ix| {
        ix.sessions_mut().record(&session)
    });
}

/// Syncs the index with the disk and enforces `limits`, as the hook does
/// ([`crate::enforce::after_use`]): everything handed out to this go
/// command was just used and is inside the grace period, so it stays.
/// When the index cannot be written (a full disk), on an in-memory copy.
fn evict(books: &Books, keeper: &mut Keeper, limits: &crate::limits::Limits) {
    let (cache, now, quiet) = (&books.cache, (books.clock)(), &crate::report::Silent);
    with_index(keeper, "enforcing the limits", |ix| {
        crate::scan::scan(cache, ix, &Default::default(), now, quiet)
            .and_then(|_| crate::enforce::after_use(cache, ix, &[], limits, now, quiet))
    });
}
