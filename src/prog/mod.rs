//! A GOCACHEPROG server over Go's own on-disk layout.
//!
//! With `GOCACHEPROG="gocache prog"`, the go command starts us and sends
//! `get`, `put` and `close` requests (one JSON object a line; a `put` with a
//! body is followed by a line holding the body as a base64 JSON string).
//! The protocol is `cmd/go/internal/cacheprog`; the client is
//! `cmd/go/internal/cache/prog.go`.
//!
//! # Rooms
//!
//! - `protocol`: what crosses the pipe: request lines read, parsed and
//!   checked; the responses, written back in batches; a put's body,
//!   streamed from its base64 line; the server's timeline (`--trace`).
//! - `pool`: the threads beside the reader (gets while requests wait,
//!   puts' renames, fetches).
//! - `books`: what a session counts and queues (uses, trace events), and
//!   the bookkeeping thread that owns the index.
//! - `remote`: the remote tier as a session uses it (fetches, uploads,
//!   its summary).
//! - `prefetch`: the session manifest's entries fetched ahead of go.
//! - `serve`: the reader's loop, a get and a put from request to answer,
//!   and the session's start and close.
//!
//! Entries are read and written by level one's store,
//! [`crate::cachedir::store::LocalStore`], exactly as Go's disk cache
//! stores them: so the index, `stats` and `trim` work unchanged, and plain
//! `go` (without GOCACHEPROG) uses the same entries, and the other way
//! round.
//!
//! # Concurrency
//!
//! The go command waits for the first answer (the commands we know) before
//! it goes on, so it is sent before anything else; the index is opened on
//! the bookkeeping thread meanwhile, and nothing a request needs waits for
//! it.
//!
//! One thread reads requests. A get (a small read and two stats, about
//! 10 us) is answered by the reader itself: go mostly waits on one get at a
//! time, and handing it to another thread would cost a wake-up, more than
//! the get. When several requests are already waiting in the reader's
//! buffer (go at high `-p` on many CPUs), gets go to a pool of
//! [`ServerConfig::workers`] threads and are answered in parallel. A put's
//! body is decoded from base64 as it streams in, hashed (SHA-256, which must
//! equal the OutputID, or the put is refused) and written to disk, never
//! held whole in memory; its final renames run on the pool.
//!
//! Responses are written in whatever order requests finish (go matches them
//! by ID). Whoever finds the writer idle writes everything queued in one
//! `write`; while more requests wait, the reader queues a few answers and
//! writes them together.
//!
//! # Hits and limits
//!
//! Every get (hit or miss) and put is counted, and uses are recorded in the
//! index in batches by the bookkeeping thread, never one transaction per
//! request; a session summary is stored at close. When puts add more than
//! [`EVICT_EVERY`] bytes, the stored limits are enforced there too (the
//! hook's path, [`crate::enforce::after_use`]); everything handed out to
//! this go command was just used and is inside the grace period, so it
//! stays. No get or put waits for that. `close` does: the go command ends
//! as soon as `close` is answered and our standard output closes, so the
//! server first finishes what is in flight, and after puts records the
//! uses and checks the limits once more; it records the session's row. It
//! then lets go of standard output, and only then records the uses still
//! waiting (after a build with no puts), closes the index (which may
//! checkpoint the WAL) and exits.
//!
//! # The remote tier
//!
//! With [`ServerConfig::remote`] (`gocache prog --remote URL`), an object
//! store is level two behind the local cache ([`crate::remote`]). Without
//! it, a get or a put pays one `Option` check: no lock, no allocation.
//!
//! - A local hit is answered as ever, and its use goes into the session's
//!   use log (an in-memory push), so an entry every machine holds locally
//!   is still in use fleet-wide.
//! - A local miss goes to up to 8 fetcher threads, started as misses
//!   wait and none is idle (the reader goes on): the
//!   store's action entry, then its output streamed into a temp file in
//!   level one and checked (length and SHA-256); put into place with the
//!   action entry as a put is, with the store's time (Go's test cache
//!   reads it); answered as a hit. The session counts it as a local miss
//!   and a remote hit; the index records it as a put (a use, not a hit),
//!   and the trace as a miss and a put whose cost is the download: level
//!   one did not hold it, and losing it again costs a download, not a
//!   rebuild.
//! - A refused object (not what its name says) is a miss, with one warning
//!   per session naming it. A store that is down is a miss, with one
//!   warning; the tier then pauses ([`crate::remote::tier::PAUSE`]), so a
//!   get waits for the store at most once per pause, bounded by its
//!   timeouts. Refused credentials: one warning, and the store is not asked
//!   again this session.
//! - With a session manifest (`--remote-prefetch`, on by default), the
//!   manifest is read at go's first local miss the store may answer, and
//!   the entries the last session of the same build used are fetched into
//!   level one 16 at a time from go's first miss of one of them
//!   (`prefetch`), so go's gets mostly find them there; a get for one in
//!   flight waits for it. A warm machine never reads the manifest. The
//!   session's own manifest is written after go has its answer, when it
//!   read one.
//! - A stored put is queued for upload without waiting (a full queue
//!   drops it, and counts); entries fetched from the store are not.
//! - `close` waits for the queue up to [`Remote::drain`], prints one
//!   summary line to standard error when the tier did anything, and puts
//!   the tier's counts in the session's row; after go has its answer, the
//!   last use log is written (within the same bound again).
//! - Read-only: no uploader and no recorder; nothing is ever written.

use std::path::PathBuf;

use crate::cachedir::CacheDir;
use crate::model::UnixTime;

mod books;
mod pool;
mod prefetch;
mod protocol;
mod remote;
mod serve;

pub use books::{Bookkeeping, Counters, EVICT_EVERY};
pub use prefetch::PrefetchOptions;
pub use protocol::{
    BadRequest, BodyError, Command, Request, RequestError, Response, parse_request, stream_body,
};
pub use protocol::{DEFER_AT_MOST, MAX_REQUEST_LINE, requests_waiting};
pub use remote::Remote;
pub use serve::serve;

/// What the server needs from the outside.
pub struct ServerConfig {
    /// The cache directory (absolute), open.
    pub cache_dir: CacheDir,
    /// Opens the index and finds the limits to enforce. It runs on the
    /// bookkeeping thread after the go command has its first answer, so
    /// opening SQLite never delays a build, and no get or put waits for it
    /// (their uses wait in memory until it is open).
    pub open_index: Box<dyn FnOnce() -> Bookkeeping + Send>,
    /// The clock, read once per use.
    pub clock: fn() -> UnixTime,
    /// Seconds `clock` runs ahead of the system's (0 but in a replay that
    /// puts hours between go commands, `GOCACHE_TEST_NOW_OFFSET`): trace
    /// events' milliseconds move with it, so that a recorded trace and
    /// the index's uses tell the same time.
    pub clock_offset: i64,
    /// Threads that answer gets while more requests are waiting, and
    /// finish puts; with 0 the thread reading requests does it all.
    /// [`default_workers`] when not given (worked out after the first
    /// answer: it reads cgroup files).
    pub workers: Option<usize>,
    /// How long the reader polls for the next request before it sleeps
    /// (zero: it sleeps at once). go sends its next request 60-80 us
    /// (median, on 2 vCPUs) after a response; a reader that slept meanwhile
    /// must be woken by the kernel, which costs tens of microseconds on a
    /// VM when it slept on another CPU. Polling takes a CPU from go, so it
    /// can only pay off where CPUs are idle; it is off by default until
    /// measured on such a machine.
    pub spin: std::time::Duration,
    /// A file to write the server's timeline to when it ends: one line per
    /// event (a request read, answered, a batch of responses written, each
    /// step of starting and closing), in microseconds since the start.
    pub trace: Option<PathBuf>,
    /// Record every get (hit or miss) and put as trace events
    /// ([`crate::trace`]), with the rebuild cost a miss and the put
    /// of the same action bracket ([`crate::trace::RebuildLog`]). They go to [`crate::index::Trace::record`]
    /// once go has its answer, so the index `open_index` returns must have
    /// been told [`crate::index::Index::set_trace`] for them to be kept.
    pub record_events: bool,
    /// The remote tier (level two), when `--remote` is given.
    pub remote: Option<Remote>,
    /// No warnings on standard error (`--quiet`).
    pub quiet: bool,
}

/// The default number of [`ServerConfig::workers`] for the CPUs this
/// process may use: none with one or two, else one fewer than the CPUs, at
/// most 8. On two vCPUs go keeps both busy, and a get handed to a worker
/// waited 30-50 us for it to wake (median, measured on a 2-vCPU VM) where
/// the reader answers one in about 10 us.
pub fn default_workers() -> usize {
    match std::thread::available_parallelism().map_or(1, |n| n.get()) {
        ..=2 => 0,
        cpus => (cpus - 1).min(8),
    }
}

/// Descriptor slots [`reserve_descriptors`] makes room for: the 256
/// subdirectories, the index, the gets and puts in flight, and the remote
/// tier's upload queue (256 open files) fit.
pub const RESERVED_DESCRIPTORS: u64 = 1024;

/// Grows this process's descriptor table to [`RESERVED_DESCRIPTORS`] slots
/// (or the soft `RLIMIT_NOFILE`, if lower) while it has one thread: call it
/// before any thread starts.
///
/// Linux grows the table as descriptors are opened (64, 128, 256, ...
/// slots), and in a process with several threads each growth waits for an
/// RCU grace period (`expand_fdtable` calls `synchronize_rcu`). The server
/// opens a cache subdirectory's descriptor the first time a get needs it,
/// so without this, the gets that crossed 64, 128 and 256 descriptors each
/// waited 8-35 ms in `openat`: about 60 ms of a 200 ms warm `go build std`
/// on 16 vCPUs, 10-25 ms on 2. One `fcntl(F_DUPFD)` to the last slot and a
/// `close` now cost microseconds. Does nothing where that fails (a lower
/// limit is still reserved; the table then grows as before).
pub fn reserve_descriptors() {
    use rustix::process::{Resource, getrlimit};
    let limit = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let slots = RESERVED_DESCRIPTORS.min(limit);
    if slots < 2 {
        return;
    }
    let Ok(last) = std::os::fd::RawFd::try_from(slots - 1) else {
        return;
    };
    // A copy of standard input in the last slot, closed as it drops: the
    // table keeps its size.
    let _ = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), last);
}
