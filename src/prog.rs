//! A GOCACHEPROG server over Go's own on-disk layout.
//!
//! With `GOCACHEPROG="gocache prog"`, the go command starts us and sends
//! `get`, `put` and `close` requests (one JSON object a line; a `put` with a
//! body is followed by a line holding the body as a base64 JSON string).
//! The protocol is `cmd/go/internal/cacheprog`; the client is
//! `cmd/go/internal/cache/prog.go`.
//!
//! # Storage
//!
//! Entries are stored exactly as Go's disk cache stores them: the output at
//! `<cache>/<xx>/<output id>-d`, the action entry at `<xx>/<action id>-a` in
//! Go's 175-byte format. So the index, `stats` and `trim` work unchanged, and
//! plain `go` (without GOCACHEPROG) uses the same entries, and the other way
//! round. Every file is written to a temporary name in its subdirectory
//! (`.gocache-tmp-…`, which Go ignores) and renamed into place: nobody ever
//! sees half a file. Leftover temporary files from a killed server are
//! removed by `trim` once they are an hour old.
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
//! hook's path, [`crate::enforce::after_use`]); everything handed out to this go command
//! was just used and is inside the grace period, so it stays. No get or put
//! waits for that. `close` does: the go command ends as soon as `close` is
//! answered and our standard output closes, so the server first finishes
//! what is in flight, and after puts records the uses and checks the limits
//! once more; it records the session's row. It then lets go of standard
//! output, and only then records the uses still waiting (after a build
//! with no puts), closes the index (which may checkpoint the WAL) and
//! exits.
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
//! - A local miss goes to [`FETCHERS`] threads (the reader goes on): the
//!   store's action entry, then its output streamed into a temp file in
//!   level one (made through the directory descriptor, like a put's) and
//!   checked (length and SHA-256); renamed into place; the action entry
//!   written as a put writes it, with the store's time (Go's test cache
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
//! - A stored put is queued for upload without waiting (a full queue
//!   drops it, and counts); entries fetched from the store are not.
//! - `close` waits for the queue up to [`Remote::drain`], prints one
//!   summary line to standard error when the tier did anything, and puts
//!   the tier's counts in the session's row; after go has its answer, the
//!   last use log is written (within the same bound again).
//! - Read-only: no uploader and no recorder; nothing is ever written.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use base64::Engine;
use sha2::Digest;

use crate::cachedir::CacheDir;
use crate::index::{Index, Use};
use crate::layout::{ActionEntry, EntryName, Id, subdir_name};
use crate::model::UnixTime;

/// Bytes put between two background checks of the limits.
pub const EVICT_EVERY: u64 = 16 << 20;

/// A request from the go command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    /// Unique per request; echoed in the response.
    #[serde(rename = "ID")]
    pub id: Option<i64>,
    /// `get`, `put` or `close`.
    pub command: Option<String>,
    /// Base64 of the 32-byte action ID.
    #[serde(rename = "ActionID")]
    pub action_id: Option<String>,
    /// Base64 of the 32-byte output ID.
    #[serde(rename = "OutputID")]
    pub output_id: Option<String>,
    /// The body's size; a body line follows when it is above zero.
    pub body_size: Option<i64>,
}

/// A response to the go command.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    /// The request's ID (0 for the first message).
    #[serde(rename = "ID")]
    pub id: i64,
    /// An error, if the request failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub err: String,
    /// The commands we support (first message only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub known_commands: Vec<&'static str>,
    /// A get found nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub miss: bool,
    /// Base64 of the output ID (get hits).
    #[serde(rename = "OutputID", skip_serializing_if = "Option::is_none")]
    pub output_id: Option<String>,
    /// The body's size (get hits).
    #[serde(skip_serializing_if = "is_zero")]
    pub size: i64,
    /// When the entry was put, RFC 3339 (get hits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Absolute path of the body on disk (get hits and puts).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub disk_path: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Response {
    /// Appends the response as one JSON line, exactly as `serde_json`
    /// writes it (a test checks), without its per-field machinery: this
    /// runs for every request.
    fn write_json(&self, out: &mut Vec<u8>) {
        let string = |out: &mut Vec<u8>, key: &[u8], v: &str| {
            out.extend_from_slice(key);
            let _ = serde_json::to_writer(&mut *out, v);
        };
        let _ = write!(out, "{{\"ID\":{}", self.id);
        if !self.err.is_empty() {
            string(out, b",\"Err\":", &self.err);
        }
        if !self.known_commands.is_empty() {
            out.extend_from_slice(b",\"KnownCommands\":");
            let _ = serde_json::to_writer(&mut *out, &self.known_commands);
        }
        if self.miss {
            out.extend_from_slice(b",\"Miss\":true");
        }
        if let Some(o) = &self.output_id {
            string(out, b",\"OutputID\":", o);
        }
        if self.size != 0 {
            let _ = write!(out, ",\"Size\":{}", self.size);
        }
        if let Some(t) = &self.time {
            string(out, b",\"Time\":", t);
        }
        if !self.disk_path.is_empty() {
            string(out, b",\"DiskPath\":", &self.disk_path);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Why a request line cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not a request object.
    #[error("malformed request (not a JSON request object): {0}")]
    Malformed(String),
    /// No ID: nothing can be answered.
    #[error("request has no ID")]
    NoId,
}

/// A request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Look up an action.
    Get {
        /// The action ID.
        action: Id,
    },
    /// Store an output for an action; `size` body bytes follow.
    Put {
        /// The action ID.
        action: Id,
        /// The output ID (the body's SHA-256).
        output: Id,
        /// The body's size.
        size: u64,
    },
    /// Finish.
    Close,
    /// A request we answer with an error (its reason); `body` bytes of body
    /// follow and must be skipped.
    Bad {
        /// Why.
        reason: String,
        /// Body bytes that follow.
        body: u64,
    },
}

fn id_from_b64(s: Option<&str>, what: &str) -> Result<Id, String> {
    let s = s.ok_or_else(|| format!("missing {what}"))?;
    let b = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("{what} is not base64: {e}"))?;
    <[u8; 32]>::try_from(b.as_slice())
        .map(Id)
        .map_err(|_| format!("{what} is {} bytes, expected 32", b.len()))
}

/// Parses one request line. `Ok((id, command))`; an unusable line is an
/// `Err` (the stream cannot continue).
pub fn parse_request(line: &[u8]) -> Result<(i64, Command), RequestError> {
    let req: Request =
        serde_json::from_slice(line).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let id = req.id.ok_or(RequestError::NoId)?;
    let body = req.body_size.unwrap_or(0).max(0) as u64;
    let cmd = match req.command.as_deref() {
        Some("get") => match id_from_b64(req.action_id.as_deref(), "ActionID") {
            Ok(action) => Command::Get { action },
            Err(reason) => Command::Bad { reason, body },
        },
        Some("put") => match (
            id_from_b64(req.action_id.as_deref(), "ActionID"),
            id_from_b64(req.output_id.as_deref(), "OutputID"),
            req.body_size,
        ) {
            (_, _, Some(n)) if n < 0 => Command::Bad {
                reason: format!("negative BodySize {n}"),
                body: 0,
            },
            (Ok(action), Ok(output), n) => Command::Put {
                action,
                output,
                size: n.unwrap_or(0) as u64,
            },
            (Err(reason), _, _) | (_, Err(reason), _) => Command::Bad { reason, body },
        },
        Some("close") => Command::Close,
        Some(other) => Command::Bad {
            reason: format!("unknown command {other:?}"),
            body,
        },
        None => Command::Bad {
            reason: "missing Command".into(),
            body,
        },
    };
    Ok((id, cmd))
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The stream ended or broke: nothing more can be read.
    #[error("reading the body: {0}")]
    Io(#[from] std::io::Error),
    /// The body line is not a base64 JSON string (the line was consumed).
    #[error("{0}")]
    Bad(String),
}

/// Streams a body line (`"<base64>"`) from `r` into `out`, decoding as it
/// goes; returns the decoded length. Holds at most one buffer in memory.
pub fn stream_body(r: &mut impl BufRead, out: &mut impl Write) -> Result<u64, BodyError> {
    let eng = &base64::engine::general_purpose::STANDARD;
    // Skip blank lines (Go writes an extra newline after each request).
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(BodyError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let skip = buf
            .iter()
            .take_while(|&&c| c == b'\n' || c == b'\r' || c == b' ')
            .count();
        if skip == 0 {
            break;
        }
        r.consume(skip);
    }
    let mut first = [0u8; 1];
    r.read_exact(&mut first)?;
    if first[0] != b'"' {
        let mut rest = Vec::new();
        r.read_until(b'\n', &mut rest)?;
        return Err(BodyError::Bad("body is not a JSON string".into()));
    }
    let mut carry: Vec<u8> = Vec::with_capacity(4);
    let mut decoded = vec![0u8; 48 << 10];
    let mut total = 0u64;
    let mut bad: Option<String> = None;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(BodyError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let end = buf.iter().position(|&c| c == b'"');
        let chunk = &buf[..end.unwrap_or(buf.len())];
        if bad.is_none() {
            // Decode whole quads; keep the rest for the next chunk.
            let mut input = std::mem::take(&mut carry);
            input.extend_from_slice(chunk);
            let whole = if end.is_some() {
                input.len()
            } else {
                input.len() / 4 * 4
            };
            // 64 KiB pieces are whole quads, so only the last may be padded.
            for piece in input[..whole].chunks(64 << 10) {
                match eng.decode_slice(piece, &mut decoded) {
                    Ok(n) => {
                        out.write_all(&decoded[..n])?;
                        total += n as u64;
                    }
                    Err(e) => {
                        bad = Some(format!("body is not valid base64: {e}"));
                        break;
                    }
                }
            }
            carry = input[whole..].to_vec();
        }
        let used = chunk.len() + end.map_or(0, |_| 1);
        r.consume(used);
        if end.is_some() {
            break;
        }
    }
    // The rest of the line (normally just "\n").
    let mut rest = Vec::new();
    r.read_until(b'\n', &mut rest)?;
    match bad {
        Some(b) => Err(BodyError::Bad(b)),
        None => Ok(total),
    }
}

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
    /// ([`crate::trace`]), with the rebuild time between a miss and the put
    /// of the same action. They go to [`Index::record_trace`] once go has
    /// its answer, so the index `open_index` returns must have been told
    /// [`Index::set_trace`] for them to be kept.
    pub record_events: bool,
    /// The remote tier (level two), when `--remote` is given.
    pub remote: Option<Remote>,
}

/// The remote tier as the server uses it: level two behind the local
/// cache (see the module's documentation, "The remote tier").
pub struct Remote {
    /// The store, for messages (`s3://bucket/prefix at http://…`).
    pub name: String,
    /// Verified fetches.
    pub tier: crate::remote::tier::RemoteTier,
    /// Background uploads; `None` in read-only mode.
    pub uploader: Option<crate::remote::tier::Uploader>,
    /// The session's use log; `None` in read-only mode (the tier is then
    /// given none either, and nothing is ever written to the store).
    pub recorder: Option<Arc<crate::remote::tier::UseRecorder>>,
    /// How long `close` waits for uploads before it answers (and, after
    /// that, for the last use log).
    pub drain: std::time::Duration,
    /// Print no warnings and no summary line.
    pub quiet: bool,
}

/// Threads that fetch from the store while the reader goes on: a fetch is
/// a network round trip (or two), which must not hold up the local hits
/// behind it.
const FETCHERS: usize = 8;

/// The remote tier while serving: the configuration, what it did, and
/// whether it warned yet.
struct RemoteState {
    cfg: Remote,
    /// Taken at close to drain it.
    uploader: Mutex<Option<crate::remote::tier::Uploader>>,
    /// Local misses the store answered (verified, written into level one).
    hits: AtomicU64,
    /// Their bytes.
    hit_bytes: AtomicU64,
    /// Local misses the store did not have.
    misses: AtomicU64,
    /// Objects refused (not what their names say).
    refused: AtomicU64,
    /// Store errors (down, refused credentials, local write errors).
    errors: AtomicU64,
    /// Lookups not asked while the tier was paused or off.
    skipped: AtomicU64,
    /// The credentials were refused: the store is left alone from then on.
    off: AtomicBool,
    /// A store error was reported (once per session).
    warned: AtomicBool,
    /// A refused object was reported (once per session).
    warned_refused: AtomicBool,
}

impl RemoteState {
    fn warn_once(&self, flag: &AtomicBool, msg: impl FnOnce() -> String) {
        if !self.cfg.quiet && !flag.swap(true, Ordering::Relaxed) {
            eprintln!("gocache prog: warning: {}", msg());
        }
    }
}

/// The index and the limits to enforce, once opened.
#[derive(Default)]
pub struct Bookkeeping {
    /// The index, if it could be opened (the server works without one).
    pub index: Option<Index>,
    /// Limits to enforce in the background and at close, if any are set.
    pub limits: Option<crate::limits::Limits>,
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

/// The longest request line accepted. A real one is about 200 bytes; a
/// longer line is not a GOCACHEPROG request, and holding it whole would
/// only grow the process.
pub const MAX_REQUEST_LINE: usize = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The server's timeline (see [`ServerConfig::trace`]).
struct Trace {
    start: std::time::Instant,
    events: Mutex<Vec<(u64, &'static str, i64, u64)>>,
}

impl Trace {
    fn note(&self, what: &'static str, id: i64, n: u64) {
        let us = self.start.elapsed().as_micros() as u64;
        lock(&self.events).push((us, what, id, n));
    }

    fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(File::create(path)?);
        writeln!(out, "# us event id n")?;
        for (us, what, id, n) in lock(&self.events).iter() {
            writeln!(out, "{us} {what} {id} {n}")?;
        }
        out.flush()
    }
}

/// Sends responses, one JSON object a line. Whoever finds the writer idle
/// writes everything queued by then in one `write`, and goes on writing
/// what others queue meanwhile; they return at once. So no response waits
/// for a hand-off to a writing thread, and responses that finish together
/// leave in one system call.
struct Writer {
    queue: Mutex<Outbox>,
    out: Mutex<Option<Box<dyn Write + Send>>>,
}

#[derive(Default)]
struct Outbox {
    bytes: Vec<u8>,
    /// A thread is writing; it will also write what is queued.
    writing: bool,
    /// The output failed (the go command went away): responses are dropped.
    broken: bool,
    /// The last batch's buffer, kept for the next.
    spare: Vec<u8>,
}

impl Writer {
    fn new(out: Box<dyn Write + Send>) -> Writer {
        Writer {
            queue: Mutex::new(Outbox::default()),
            out: Mutex::new(Some(out)),
        }
    }

    /// Queues a response and writes everything queued.
    fn send(&self, r: &Response, trace: Option<&Trace>) {
        self.queue(r);
        self.flush(trace);
    }

    /// Queues a response without writing it: the caller will send or
    /// flush soon.
    fn queue(&self, r: &Response) {
        let mut q = lock(&self.queue);
        if !q.broken {
            r.write_json(&mut q.bytes);
        }
    }

    /// Writes everything queued, unless another thread is writing (it
    /// writes this too, before it returns).
    fn flush(&self, trace: Option<&Trace>) {
        let mut q = lock(&self.queue);
        if q.writing || q.bytes.is_empty() {
            return;
        }
        q.writing = true;
        loop {
            let spare = std::mem::take(&mut q.spare);
            let mut batch = std::mem::replace(&mut q.bytes, spare);
            drop(q);
            let ok = match lock(&self.out).as_mut() {
                Some(out) => out.write_all(&batch).and_then(|()| out.flush()).is_ok(),
                None => false,
            };
            if let Some(t) = trace {
                t.note("write", 0, batch.len() as u64);
            }
            batch.clear();
            q = lock(&self.queue);
            q.spare = batch;
            if !ok {
                q.broken = true;
                q.bytes.clear();
            }
            if q.bytes.is_empty() {
                q.writing = false;
                return;
            }
        }
    }

    /// Lets go of the output, once `close` is answered: the go command
    /// waits for the pipe to close, not for this process to end.
    fn release(&self) {
        let out = lock(&self.out).take();
        drop(out);
    }
}

/// Work the reader hands to the pool.
enum Job {
    Get {
        id: i64,
        action: Id,
    },
    /// A local miss, for the store.
    Fetch {
        id: i64,
        action: Id,
    },
    FinishPut {
        id: i64,
        action: Id,
        output: Id,
        size: u64,
        tmp: TmpFile,
    },
}

impl Job {
    fn run(self, shared: &Shared) -> Option<Response> {
        match self {
            Job::Get { id, action } => {
                let r = get(shared, id, action, None);
                shared.note("get-pool", id, 0);
                r
            }
            Job::Fetch { id, action } => {
                let r = fetch(shared, id, action);
                shared.note("fetched", id, 0);
                Some(r)
            }
            Job::FinishPut {
                id,
                action,
                output,
                size,
                tmp,
            } => {
                let r = finish_put(shared, id, action, output, size, &tmp);
                shared.note("put-done", id, 0);
                Some(r)
            }
        }
    }
}

/// Threads beside the reader: they answer gets while more requests wait
/// to be read, and finish puts (the renames into place).
struct Pool {
    queue: Mutex<Jobs>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct Jobs {
    jobs: std::collections::VecDeque<Job>,
    /// Threads waiting for work: a job wakes one only when there is one.
    idle: usize,
    closing: bool,
}

impl Pool {
    fn start(
        n: usize,
        shared: &Arc<Shared>,
        writer: &Arc<Writer>,
    ) -> (Arc<Pool>, Vec<std::thread::JoinHandle<()>>) {
        let pool = Arc::new(Pool {
            queue: Mutex::new(Jobs::default()),
            wake: std::sync::Condvar::new(),
        });
        let threads = (0..n)
            .map(|_| {
                let (pool, shared, writer) = (pool.clone(), shared.clone(), writer.clone());
                std::thread::spawn(move || {
                    while let Some(job) = pool.next() {
                        if let Some(r) = job.run(&shared) {
                            writer.send(&r, shared.trace.as_ref());
                        }
                    }
                })
            })
            .collect();
        (pool, threads)
    }

    fn submit(&self, job: Job) {
        let mut q = lock(&self.queue);
        q.jobs.push_back(job);
        if q.idle > 0 {
            self.wake.notify_one();
        }
    }

    fn next(&self) -> Option<Job> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.closing {
                return None;
            }
            q.idle += 1;
            q = self
                .wake
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            q.idle -= 1;
        }
    }

    /// Lets the threads finish what is queued, then stop.
    fn close(&self) {
        lock(&self.queue).closing = true;
        self.wake.notify_all();
    }
}

/// Requests waiting in the reader's buffer, whole lines only (go writes a
/// blank line after each), counted up to `at_most`.
pub fn requests_waiting(buf: &[u8], at_most: usize) -> usize {
    buf.split_inclusive(|&c| c == b'\n')
        .filter(|l| l.ends_with(b"\n") && l.iter().any(|c| !c.is_ascii_whitespace()))
        .take(at_most)
        .count()
}

/// Requests waiting behind a get, already read, for the reader to hand the
/// get to the pool. Below this the reader answers it: a hand-off costs a
/// wake-up (about 30-40 us across the vCPUs of a VM, where a get takes
/// about 10 us), which only pays off while the reader has more to do.
const HAND_OFF_AT: usize = 3;

/// Responses the reader keeps to send with the next while more requests
/// are waiting in its buffer: one write and one wake-up of the go command
/// for several, at the cost of a few microseconds for the first.
pub const DEFER_AT_MOST: usize = 4;

/// Reads one request line into `line` (empty at the end of input), at
/// most [`MAX_REQUEST_LINE`] bytes.
fn read_request_line(
    r: &mut BufReader<impl Read + AsFd>,
    line: &mut Vec<u8>,
    spin: std::time::Duration,
) -> Result<(), String> {
    loop {
        if r.buffer().is_empty() && !spin.is_zero() {
            spin_until_readable(r.get_ref().as_fd(), spin);
        }
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading requests: {e}")),
        };
        if buf.is_empty() {
            return Ok(());
        }
        let (take, done) = match buf.iter().position(|&c| c == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX_REQUEST_LINE {
            let start = [line.as_slice(), buf].concat();
            return Err(format!(
                "a request line is longer than {} KiB, which no GOCACHEPROG request is (it starts {:?}); stopping",
                MAX_REQUEST_LINE >> 10,
                String::from_utf8_lossy(&start[..start.len().min(60)])
            ));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// Polls `fd` until it is readable or `spin` has passed, without
/// sleeping: on a VM, waking a thread that sleeps on another CPU costs tens
/// of microseconds, several times a get.
fn spin_until_readable(fd: BorrowedFd<'_>, spin: std::time::Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let start = std::time::Instant::now();
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&now)) {
            Ok(0) if start.elapsed() < spin => std::hint::spin_loop(),
            _ => return,
        }
    }
}

/// Serves GOCACHEPROG requests from `input`, writing responses to `output`,
/// until `close` or the end of input. Returns an error message for a
/// stream that broke (the caller prints it and exits non-zero).
///
/// `output` is dropped as soon as `close` is answered (the go command
/// waits for it to close); the index is closed after that.
pub fn serve(
    cfg: ServerConfig,
    input: impl Read + AsFd,
    output: impl Write + Send + 'static,
) -> Result<(), String> {
    let trace = cfg.trace.as_ref().map(|_| Trace {
        start: std::time::Instant::now(),
        events: Mutex::new(Vec::with_capacity(8192)),
    });
    // The go command waits for this first answer before it goes on: send
    // it before anything else.
    let writer = Arc::new(Writer::new(Box::new(output)));
    writer.send(
        &Response {
            id: 0,
            known_commands: vec!["get", "put", "close"],
            ..Default::default()
        },
        trace.as_ref(),
    );
    let started = (cfg.clock)();
    let shared = Arc::new(Shared {
        cache_prefix: cfg.cache_dir.path().join("").display().to_string(),
        dir: cfg.cache_dir,
        counters: Counters::default(),
        uses: Mutex::new(Vec::new()),
        bookkeeper: std::sync::OnceLock::new(),
        clock: cfg.clock,
        tmp_seq: AtomicU64::new(0),
        evict_wanted: AtomicBool::new(false),
        puts_seen: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        trace,
        events: cfg.record_events.then(Default::default),
        remote_summary: std::sync::OnceLock::new(),
        remote: cfg.remote.map(|mut r| RemoteState {
            uploader: Mutex::new(r.uploader.take()),
            cfg: r,
            hits: AtomicU64::new(0),
            hit_bytes: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            off: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            warned_refused: AtomicBool::new(false),
        }),
    });
    shared.note("known", 0, 0);
    let (ready_tx, ready) = mpsc::channel();
    let bookkeeper = {
        let (shared, open) = (shared.clone(), cfg.open_index);
        std::thread::spawn(move || keep_books(&shared, open, started, ready_tx))
    };
    let _ = shared.bookkeeper.set(bookkeeper.thread().clone());
    let (pool, threads) = match cfg.workers.unwrap_or_else(default_workers) {
        0 => (None, Vec::new()),
        n => {
            let (pool, threads) = Pool::start(n, &shared, &writer);
            (Some(pool), threads)
        }
    };

    let (fetchers, fetch_threads) = match &shared.remote {
        Some(_) => {
            let (pool, threads) = Pool::start(FETCHERS, &shared, &writer);
            (Some(pool), threads)
        }
        None => (None, Vec::new()),
    };

    let mut reader = BufReader::with_capacity(256 << 10, input);
    let (outcome, close_id) = read_requests(
        &shared,
        &writer,
        pool.as_deref(),
        fetchers.as_deref(),
        &mut reader,
        cfg.spin,
    );
    writer.flush(shared.trace.as_ref());
    shared.note("end-of-requests", close_id.unwrap_or(-1), 0);

    // The go command ends once it has the close response and our output
    // closes. Before that: finish the requests in flight, and let the
    // bookkeeper check the limits (after puts) and record the session.
    let closing = std::time::Instant::now();
    for p in [&pool, &fetchers].into_iter().flatten() {
        p.close();
    }
    for t in threads.into_iter().chain(fetch_threads) {
        let _ = t.join();
    }
    shared.note("pool-done", 0, 0);
    // This build's uploads are in the store before go exits, or the
    // deadline passed: a CI job that ends with the build cannot cut them
    // off, and they cost it no more than the deadline.
    let remote_summary = shared.remote.as_ref().map(|r| {
        let up = lock(&r.uploader);
        if let Some(up) = up.as_ref() {
            up.wait_idle(closing + r.cfg.drain);
        }
        let uploads = up.as_ref().map(|u| u.counts()).unwrap_or_default();
        drop(up);
        shared.note("uploads-done", 0, uploads.uploaded);
        let summary = RemoteSummary::of(r, &uploads);
        if !r.cfg.quiet && summary.anything() {
            eprintln!("gocache prog: {}", summary.line(&r.cfg.name, r.cfg.drain));
        }
        summary
    });
    if let Some(s) = remote_summary {
        let _ = shared.remote_summary.set(s);
    }
    shared.closing.store(true, Ordering::SeqCst);
    bookkeeper.thread().unpark();
    // Err only if the bookkeeper died: nothing more to wait for.
    let _ = ready.recv();
    shared.note("books-ready", 0, 0);
    if let Some(id) = close_id {
        writer.send(
            &Response {
                id,
                ..Default::default()
            },
            shared.trace.as_ref(),
        );
    }
    writer.release();
    shared.note("released", 0, 0);
    // The last use log, after go has its answer: go need not wait for it.
    if let Some(r) = &shared.remote
        && let Some(up) = lock(&r.uploader).take()
    {
        let counts = up.drain(std::time::Instant::now() + r.cfg.drain);
        shared.note("remote-drained", 0, counts.logs_written);
    }
    let index = bookkeeper.join().ok().flatten();
    shared.note("books-done", 0, 0);
    // Closing the index may checkpoint its WAL: after the go command has
    // gone on.
    drop(index);
    shared.note("index-closed", 0, 0);
    if let (Some(t), Some(path)) = (&shared.trace, &cfg.trace)
        && let Err(e) = t.save(path)
    {
        eprintln!(
            "gocache prog: warning: writing the trace {}: {e}",
            path.display()
        );
    }
    outcome
}

/// The protocol loop: reads requests until `close` (its ID is returned)
/// or the end of input, answering them or handing them to the pool.
fn read_requests(
    shared: &Shared,
    writer: &Writer,
    pool: Option<&Pool>,
    fetchers: Option<&Pool>,
    reader: &mut BufReader<impl Read + AsFd>,
    spin: std::time::Duration,
) -> (Result<(), String>, Option<i64>) {
    let trace = shared.trace.as_ref();
    let mut line = Vec::new();
    let mut since_evict = 0u64;
    // Responses queued but not yet written (see DEFER_AT_MOST); always
    // written before the reader may wait for input or a body.
    let mut deferred = 0;
    loop {
        line.clear();
        if deferred > 0 && requests_waiting(reader.buffer(), 1) == 0 {
            writer.flush(trace);
            deferred = 0;
        }
        if let Err(e) = read_request_line(reader, &mut line, spin) {
            return (Err(e), None);
        }
        if line.is_empty() {
            // End of input without close: the go command went away.
            return (Ok(()), None);
        }
        if line.iter().all(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let (id, cmd) = match parse_request(&line) {
            Ok(x) => x,
            Err(e) => {
                let line = String::from_utf8_lossy(&line);
                return (Err(format!("{e}: {}", line.trim_end())), None);
            }
        };
        let waiting = requests_waiting(reader.buffer(), HAND_OFF_AT.max(1));
        shared.note("read", id, waiting as u64);
        match cmd {
            Command::Close => return (Ok(()), Some(id)),
            Command::Get { action } => match pool {
                // Several more requests are already here: let the pool
                // answer this one while the reader goes on.
                Some(pool) if waiting >= HAND_OFF_AT => {
                    pool.submit(Job::Get { id, action });
                }
                // A get is one small read and a stat: answered right here,
                // which keeps its round trip short; sent with the next
                // answer when one is due right after.
                _ => {
                    // None: a local miss handed to the fetchers.
                    let Some(r) = get(shared, id, action, fetchers) else {
                        continue;
                    };
                    shared.note("get", id, 0);
                    if waiting > 0 && deferred < DEFER_AT_MOST {
                        writer.queue(&r);
                        deferred += 1;
                    } else {
                        writer.send(&r, trace);
                        deferred = 0;
                    }
                }
            },
            Command::Bad { reason, body } => {
                writer.flush(trace);
                deferred = 0;
                if body > 0 {
                    match stream_body(reader, &mut std::io::sink()) {
                        Ok(_) | Err(BodyError::Bad(_)) => {}
                        Err(BodyError::Io(e)) => {
                            return (Err(format!("request {id}: reading its body: {e}")), None);
                        }
                    }
                }
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                writer.send(
                    &Response {
                        id,
                        err: reason,
                        ..Default::default()
                    },
                    trace,
                );
            }
            Command::Put {
                action,
                output,
                size,
            } => {
                writer.flush(trace);
                deferred = 0;
                match receive_body(shared, reader, output, size) {
                    Ok(tmp) => {
                        shared.note("put-read", id, size);
                        since_evict += size;
                        shared.puts_seen.store(true, Ordering::Relaxed);
                        let job = Job::FinishPut {
                            id,
                            action,
                            output,
                            size,
                            tmp,
                        };
                        match pool {
                            Some(pool) => pool.submit(job),
                            None => {
                                if let Some(r) = job.run(shared) {
                                    writer.send(&r, trace);
                                }
                            }
                        }
                    }
                    Err(BodyError::Bad(reason)) => {
                        shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                        writer.send(
                            &Response {
                                id,
                                err: reason,
                                ..Default::default()
                            },
                            trace,
                        );
                    }
                    Err(BodyError::Io(e)) => {
                        return (Err(format!("request {id}: reading its body: {e}")), None);
                    }
                }
                if since_evict >= EVICT_EVERY {
                    since_evict = 0;
                    shared.evict_wanted.store(true, Ordering::SeqCst);
                    if let Some(t) = shared.bookkeeper.get() {
                        t.unpark();
                    }
                }
            }
        }
    }
}

/// The bookkeeping thread: opens the index, records uses in batches
/// (every 250 ms, or sooner when [`FLUSH_USES_AT`] wait), enforces the
/// limits when puts ask for it, and at close records the last uses and
/// the session and checks the limits once more. Returns the index, for the
/// caller to close once the go command has its answer.
fn keep_books(
    shared: &Shared,
    open: Box<dyn FnOnce() -> Bookkeeping + Send>,
    started: UnixTime,
    ready: mpsc::Sender<()>,
) -> Option<Index> {
    let Bookkeeping { mut index, limits } = open();
    shared.note("index-open", 0, index.is_some() as u64);
    while !shared.closing.load(Ordering::SeqCst) {
        flush_uses(shared, index.as_mut(), false);
        if shared.evict_wanted.swap(false, Ordering::SeqCst)
            && let (Some(ix), Some(limits)) = (index.as_mut(), &limits)
        {
            evict(shared, ix, limits);
            shared.note("evicted", 0, 0);
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
    if shared.puts_seen.load(Ordering::Relaxed)
        && let (Some(ix), Some(limits)) = (index.as_mut(), &limits)
    {
        flush_uses(shared, Some(ix), false);
        shared.note("uses-recorded", 0, 0);
        evict(shared, ix, limits);
        shared.note("limits-checked", 0, 0);
    }
    // The session's row is there when go exits (its counts are exact
    // already); the uses still waiting are recorded right after go has its
    // answer: up to a few hundred rows, milliseconds of SQLite that go
    // would otherwise wait for.
    if let Some(ix) = &mut index {
        record_session(shared, ix, started);
    }
    let _ = ready.send(());
    flush_uses(shared, index.as_mut(), true);
    shared.note("uses-recorded-after", 0, 0);
    index
}

/// A temporary file in a cache subdirectory, named relative to its
/// descriptor: created, renamed and removed with `*at` calls, never by a
/// path that a symlink swapped in later could redirect.
struct TmpFile {
    subdir: u8,
    name: std::ffi::CString,
}

impl TmpFile {
    /// Creates a new temporary file (`O_EXCL`, never following a link) in
    /// subdirectory `s`, created first if missing.
    fn create(shared: &Shared, s: u8) -> std::io::Result<(TmpFile, File)> {
        use rustix::fs::{Mode, OFlags};
        let dir = shared.dir.ensure_subdir(s)?;
        let n = shared.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let name = crate::cachedir::tmp_name(std::process::id(), n);
        let fd = rustix::fs::openat(
            dir,
            name.as_c_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        Ok((TmpFile { subdir: s, name }, File::from(fd)))
    }

    /// Renames it to `target` in the same subdirectory.
    fn rename_to(&self, shared: &Shared, target: &std::ffi::CStr) -> std::io::Result<()> {
        let dir = self.dir(shared)?;
        Ok(rustix::fs::renameat(
            dir,
            self.name.as_c_str(),
            dir,
            target,
        )?)
    }

    /// Renames it to `target` in subdirectory `s` (the same filesystem).
    fn rename_into(&self, shared: &Shared, s: u8, target: &std::ffi::CStr) -> std::io::Result<()> {
        let from = self.dir(shared)?;
        let to = shared.dir.ensure_subdir(s)?;
        Ok(rustix::fs::renameat(
            from,
            self.name.as_c_str(),
            to,
            target,
        )?)
    }

    /// Removes it (best effort: `trim` sweeps what is left).
    fn remove(&self, shared: &Shared) {
        if let Ok(dir) = self.dir(shared) {
            let _ = rustix::fs::unlinkat(dir, self.name.as_c_str(), rustix::fs::AtFlags::empty());
        }
    }

    fn dir<'a>(&self, shared: &'a Shared) -> std::io::Result<&'a std::os::fd::OwnedFd> {
        shared
            .dir
            .subdir(self.subdir)
            .ok_or_else(|| std::io::Error::other("the cache subdirectory is gone"))
    }
}

struct Shared {
    /// The cache, with each subdirectory opened `O_NOFOLLOW` on first use:
    /// a get is then an `openat` and an `fstatat` relative to it, with no
    /// path walk and no way out of the cache. (A subdirectory removed while
    /// we serve, by `go clean -cache`, then reads as misses until the next
    /// session.)
    dir: CacheDir,
    /// The cache directory with a trailing `/`, for [`Shared::disk_path`].
    cache_prefix: String,
    counters: Counters,
    uses: Mutex<Vec<Use>>,
    /// The bookkeeping thread, woken early when [`FLUSH_USES_AT`] uses
    /// are waiting or puts ask for the limits to be enforced.
    bookkeeper: std::sync::OnceLock<std::thread::Thread>,
    clock: fn() -> UnixTime,
    tmp_seq: AtomicU64,
    /// Puts stored enough to check the limits (see [`EVICT_EVERY`]).
    evict_wanted: AtomicBool,
    /// A put was stored: check the limits at close.
    puts_seen: AtomicBool,
    /// The requests are over: record the rest and stop.
    closing: AtomicBool,
    trace: Option<Trace>,
    /// Trace events waiting for the bookkeeper, and the misses waiting for
    /// their puts (`None`: not recording).
    events: Option<Mutex<Events>>,
    /// The remote tier, with `--remote`.
    remote: Option<RemoteState>,
    /// What the remote tier did, for the session's row: set at close.
    remote_summary: std::sync::OnceLock<RemoteSummary>,
}

/// See [`Shared::events`].
#[derive(Default)]
struct Events {
    batch: Vec<crate::trace::TraceEvent>,
    rebuilds: crate::trace::RebuildClock,
}

/// Unix milliseconds, for trace events: a rebuild's cost is the time
/// between a miss and its put, finer than [`ServerConfig::clock`]'s seconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Shared {
    /// Where an entry is, as go is told: the cache directory as given,
    /// then `xx/<name>`.
    fn disk_path(&self, name: &EntryName) -> String {
        let mut s = String::with_capacity(self.cache_prefix.len() + 3 + crate::layout::NAME_LEN);
        s.push_str(&self.cache_prefix);
        s.push_str(&subdir_name(name.subdir()));
        s.push('/');
        s.extend(name.file_name_bytes().iter().map(|&b| b as char));
        s
    }

    fn note(&self, what: &'static str, id: i64, n: u64) {
        if let Some(t) = &self.trace {
            t.note(what, id, n);
        }
    }
}

/// Uses waiting to be recorded that wake the bookkeeper before its next
/// tick: a few milliseconds of SQLite work each time, done while go works,
/// rather than all of it at `close`, which go waits for.
const FLUSH_USES_AT: usize = 512;

/// Streams a put's body into a temporary file next to where it belongs,
/// checking its size and SHA-256. A body that cannot be stored (its
/// subdirectory is not a directory, the disk is full) is still read to its
/// end, and the put is answered with an error naming the write: go then
/// builds without caching that output, and the session goes on.
fn receive_body(
    shared: &Shared,
    r: &mut impl BufRead,
    output: Id,
    size: u64,
) -> Result<TmpFile, BodyError> {
    // Go creates the 256 subdirectories before it starts us; one missing
    // (or not a real directory) is dealt with here.
    let (tmp, file) = match TmpFile::create(shared, output.subdir()) {
        Ok(x) => x,
        Err(e) => {
            if size > 0 {
                match stream_body(r, &mut std::io::sink()) {
                    Ok(_) | Err(BodyError::Bad(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let dir = shared.dir.path().join(subdir_name(output.subdir()));
            return Err(BodyError::Bad(format!(
                "storing output {output} in {}: {e}; not cached",
                dir.display()
            )));
        }
    };
    /// Hashes what it is given and writes it on; after a failed write it
    /// keeps hashing and drops the rest, so that the body is still read to
    /// its end, and says what failed.
    struct HashingWriter<W: Write> {
        inner: W,
        hash: sha2::Sha256,
        failed: Option<std::io::Error>,
    }
    impl<W: Write> Write for HashingWriter<W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.hash.update(b);
            if self.failed.is_none()
                && let Err(e) = self.inner.write_all(b)
            {
                self.failed = Some(e);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            if self.failed.is_none()
                && let Err(e) = self.inner.flush()
            {
                self.failed = Some(e);
            }
            Ok(())
        }
    }
    let mut w = HashingWriter {
        inner: std::io::BufWriter::with_capacity(256 << 10, file),
        hash: sha2::Sha256::new(),
        failed: None,
    };
    let result = if size == 0 {
        Ok(0)
    } else {
        stream_body(r, &mut w)
    };
    let fail = |e: BodyError| {
        tmp.remove(shared);
        Err(e)
    };
    let got = match result {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let _ = w.flush();
    if let Some(e) = w.failed.take() {
        let path = shared
            .dir
            .path()
            .join(subdir_name(output.subdir()))
            .join(tmp.name.to_string_lossy().as_ref());
        return fail(BodyError::Bad(format!(
            "writing {}: {e}; output {output} not cached",
            path.display()
        )));
    }
    if got != size {
        return fail(BodyError::Bad(format!(
            "body is {got} bytes, but BodySize says {size}"
        )));
    }
    let sum: [u8; 32] = w.hash.finalize().into();
    if sum != output.0 {
        return fail(BodyError::Bad(format!(
            "body's SHA-256 is {}, not its OutputID {output}; refused",
            Id(sum)
        )));
    }
    Ok(tmp)
}

fn rfc3339(nanos: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

/// Go's `markUsed`: an mtime over an hour old is set to now. `st` is what
/// the caller already knows of `name` in `dir` (never followed if a link).
fn mark_used(
    dir: &std::os::fd::OwnedFd,
    name: &std::ffi::CStr,
    st: &rustix::fs::Stat,
    now: UnixTime,
) {
    #[allow(clippy::useless_conversion)]
    let mtime = i64::from(st.st_mtime);
    if now.saturating_sub(mtime) < 3600 {
        return;
    }
    let t = rustix::fs::Timespec {
        tv_sec: now.max(0),
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    let _ = rustix::fs::utimensat(dir, name, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
}

impl Shared {
    /// Queues a trace event, when recording them; `f` makes it with the
    /// rebuild clock at hand.
    fn event(
        &self,
        f: impl FnOnce(&mut crate::trace::RebuildClock, i64) -> crate::trace::TraceEvent,
    ) {
        if let Some(events) = &self.events {
            let mut e = lock(events);
            let Events { batch, rebuilds } = &mut *e;
            batch.push(f(rebuilds, now_ms()));
        }
    }

    /// Queues uses for the bookkeeper, waking it when [`FLUSH_USES_AT`] wait.
    fn note_uses(&self, names: [EntryName; 2], at: UnixTime, hit: bool) {
        let Ok(mut u) = self.uses.lock() else { return };
        let before = u.len();
        u.extend(names.map(|name| Use { name, at, hit }));
        if before < FLUSH_USES_AT
            && u.len() >= FLUSH_USES_AT
            && let Some(t) = self.bookkeeper.get()
        {
            t.unpark();
        }
    }
}

/// Answers a get: from level one, else (with a remote tier) from the
/// store. `None` when the fetch was handed to `fetchers`, which answer it.
fn get(shared: &Shared, id: i64, action: Id, fetchers: Option<&Pool>) -> Option<Response> {
    let c = &shared.counters;
    c.gets.fetch_add(1, Ordering::Relaxed);
    let now = (shared.clock)();
    if let Some(r) = get_local(shared, id, action, now) {
        return Some(r);
    }
    c.misses.fetch_add(1, Ordering::Relaxed);
    shared.event(|clock, t| {
        clock.miss(&action, t);
        crate::trace::TraceEvent::miss(t, &action)
    });
    match (&shared.remote, fetchers) {
        (None, _) => Some(miss_response(id)),
        (Some(_), Some(fetchers)) => {
            fetchers.submit(Job::Fetch { id, action });
            None
        }
        (Some(_), None) => Some(fetch(shared, id, action)),
    }
}

fn miss_response(id: i64) -> Response {
    Response {
        id,
        miss: true,
        ..Default::default()
    }
}

/// A get from level one: `None` is a miss (counted by the caller).
fn get_local(shared: &Shared, id: i64, action: Id, now: UnixTime) -> Option<Response> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let c = &shared.counters;
    let miss = || None;
    let aname = EntryName::action(action);
    let Some(adir) = shared.dir.subdir(aname.subdir()) else {
        return miss();
    };
    let acname = aname.c_file_name();
    let Ok(fd) = rustix::fs::openat(
        adir,
        acname.as_c_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return miss();
    };
    let Ok(ast) = rustix::fs::fstat(&fd) else {
        return miss();
    };
    // A well-formed action file is exactly ACTION_ENTRY_SIZE bytes: one
    // read of one byte more gets all of it and proves there is no more.
    let mut buf = [0u8; crate::layout::ACTION_ENTRY_SIZE + 1];
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(&fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return miss(),
        }
        if n as u64 == ast.st_size as u64 {
            break;
        }
    }
    let Ok(entry) = ActionEntry::parse(&buf[..n], Some(action)) else {
        return miss();
    };
    let oname = EntryName::data(entry.output);
    let Some(odir) = shared.dir.subdir(oname.subdir()) else {
        return miss();
    };
    let ocname = oname.c_file_name();
    let ocname = ocname.as_c_str();
    let ost = match rustix::fs::statat(odir, ocname, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st)
            if FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile
                && st.st_size as u64 == entry.size =>
        {
            st
        }
        _ => return miss(),
    };
    mark_used(adir, acname.as_c_str(), &ast, now);
    mark_used(odir, ocname, &ost, now);
    c.hits.fetch_add(1, Ordering::Relaxed);
    shared.note_uses([aname, oname], now, true);
    // The fleet's last use of this entry, even though level one had it: an
    // object every machine holds locally is still in use.
    if let Some(r) = &shared.remote
        && let Some(rec) = &r.cfg.recorder
    {
        rec.record_use(action, entry.output, now);
    }
    let allocated = ost.st_blocks as u64 * 512;
    shared.event(|_, t| crate::trace::TraceEvent::hit(t, &action, &entry.output, allocated));
    Some(hit_response(shared, id, &entry, &oname))
}

fn hit_response(shared: &Shared, id: i64, entry: &ActionEntry, oname: &EntryName) -> Response {
    Response {
        id,
        output_id: Some(base64::engine::general_purpose::STANDARD.encode(entry.output.0)),
        size: entry.size as i64,
        time: rfc3339(entry.time_nanos),
        disk_path: shared.disk_path(oname),
        ..Default::default()
    }
}

/// A local miss, asked of the store: the output streams into a temp file
/// in level one through the tier's check (length and SHA-256 against the
/// action entry), is renamed into place, and the action entry is written
/// as a put writes it (with the store's time, which Go's test cache reads);
/// then the get is answered as a hit. Anything else is a miss: a build
/// never waits longer than the store's timeouts, and never fails for it.
fn fetch(shared: &Shared, id: i64, action: Id) -> Response {
    let Some(remote) = &shared.remote else {
        return miss_response(id);
    };
    if remote.off.load(Ordering::Relaxed) {
        remote.skipped.fetch_add(1, Ordering::Relaxed);
        return miss_response(id);
    }
    let now = (shared.clock)();
    let Ok((tmp, file)) = TmpFile::create(shared, action.subdir()) else {
        remote.errors.fetch_add(1, Ordering::Relaxed);
        return miss_response(id);
    };
    let mut sink = std::io::BufWriter::with_capacity(64 << 10, file);
    let fetched = remote
        .cfg
        .tier
        .fetch(action, &mut sink, now)
        .and_then(|e| match sink.flush() {
            Ok(()) => Ok(e),
            Err(e) => Err(crate::remote::tier::FetchError::Store(
                crate::remote::StoreError::Local {
                    op: crate::remote::store::Op::Get,
                    key: crate::remote::keys::action_key(action),
                    cause: e,
                },
            )),
        });
    drop(sink);
    use crate::remote::tier::FetchError;
    let entry = match fetched {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            tmp.remove(shared);
            remote.misses.fetch_add(1, Ordering::Relaxed);
            return miss_response(id);
        }
        Err(FetchError::Paused(_)) => {
            tmp.remove(shared);
            remote.skipped.fetch_add(1, Ordering::Relaxed);
            return miss_response(id);
        }
        Err(e @ (FetchError::Corrupt { .. } | FetchError::BadAction { .. })) => {
            tmp.remove(shared);
            remote.refused.fetch_add(1, Ordering::Relaxed);
            remote.warn_once(&remote.warned_refused, || {
                format!("{e}; later refusals this session are only counted")
            });
            return miss_response(id);
        }
        Err(FetchError::Store(e)) => {
            tmp.remove(shared);
            remote.errors.fetch_add(1, Ordering::Relaxed);
            let then = if e.is_denied() {
                remote.off.store(true, Ordering::Relaxed);
                "building from the local cache only for the rest of this session"
            } else if e.is_unavailable() {
                "building from the local cache; the store is asked again in 30 s"
            } else {
                "building that entry locally"
            };
            remote.warn_once(&remote.warned, || format!("{e}; {then}"));
            return miss_response(id);
        }
    };
    let oname = EntryName::data(entry.output);
    if let Err(e) = store_fetched(shared, &entry, &tmp, now) {
        tmp.remove(shared);
        remote.errors.fetch_add(1, Ordering::Relaxed);
        remote.warn_once(&remote.warned, || {
            format!(
                "storing {} from {}: {e}; building it locally",
                oname.path_in(shared.dir.path()).display(),
                remote.cfg.name
            )
        });
        return miss_response(id);
    }
    remote.hits.fetch_add(1, Ordering::Relaxed);
    remote.hit_bytes.fetch_add(entry.size, Ordering::Relaxed);
    // Level one missed and now holds the entry: to the index and the trace
    // this is a put (a miss, then a put whose cost is the download, not a
    // rebuild), so that a local policy learns what evicting it costs.
    shared.note_uses([EntryName::action(action), oname], now, false);
    let allocated = entry.size.div_ceil(4096) * 4096;
    shared.event(|clock, t| {
        let cost = clock.put(&action, t);
        crate::trace::TraceEvent::put(t, &action, &entry.output, allocated, cost)
    });
    hit_response(shared, id, &entry, &oname)
}

/// Puts a verified fetch in place: the output (kept if level one has it
/// already), then the action entry.
fn store_fetched(
    shared: &Shared,
    entry: &ActionEntry,
    tmp: &TmpFile,
    now: UnixTime,
) -> std::io::Result<()> {
    use rustix::fs::FileType;
    let oname = EntryName::data(entry.output);
    let ocname = oname.c_file_name();
    let odir = shared.dir.ensure_subdir(oname.subdir())?;
    match rustix::fs::statat(
        odir,
        ocname.as_c_str(),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    ) {
        Ok(st)
            if FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile
                && st.st_size as u64 == entry.size =>
        {
            tmp.remove(shared);
            mark_used(odir, ocname.as_c_str(), &st, now);
        }
        Ok(st) if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory => {
            return Err(std::io::Error::other(
                "a directory (a cached executable) has its name",
            ));
        }
        _ => tmp.rename_into(shared, oname.subdir(), ocname.as_c_str())?,
    }
    write_action_entry(shared, entry)
}

/// Writes `entry` as Go's action file, through a temp name.
fn write_action_entry(shared: &Shared, entry: &ActionEntry) -> std::io::Result<()> {
    let aname = EntryName::action(entry.action);
    let (atmp, mut f) = TmpFile::create(shared, aname.subdir())?;
    let r = f
        .write_all(entry.format().as_bytes())
        .and_then(|()| atmp.rename_to(shared, aname.c_file_name().as_c_str()));
    if r.is_err() {
        atmp.remove(shared);
    }
    r
}

/// Queues a put's entry for upload (with `--remote`, not read-only): never
/// waits; a full queue drops it, and counts.
fn upload(shared: &Shared, entry: ActionEntry) {
    use rustix::fs::{Mode, OFlags};
    let Some(remote) = &shared.remote else { return };
    if remote.off.load(Ordering::Relaxed) {
        return;
    }
    let up = lock(&remote.uploader);
    let Some(up) = up.as_ref() else { return };
    let oname = EntryName::data(entry.output);
    // Opened through the subdirectory's descriptor; an open file survives
    // a trim removing it before the upload runs.
    let Some(file) = shared.dir.subdir(oname.subdir()).and_then(|dir| {
        rustix::fs::openat(
            dir,
            oname.c_file_name().as_c_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    }) else {
        return;
    };
    up.try_enqueue(crate::remote::tier::UploadJob {
        entry,
        body: crate::remote::tier::UploadBody::File(File::from(file)),
    });
}

fn finish_put(
    shared: &Shared,
    id: i64,
    action: Id,
    output: Id,
    size: u64,
    tmp: &TmpFile,
) -> Response {
    let fail = |msg: String| {
        shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        tmp.remove(shared);
        Response {
            id,
            err: msg,
            ..Default::default()
        }
    };
    let now = (shared.clock)();
    let oname = EntryName::data(output);
    let opath = oname.path_in(shared.dir.path());
    // An existing output with this name and size has this content (its
    // name is its hash; Go verified it when it wrote it): keep it.
    let ocname = oname.c_file_name();
    let existing = shared.dir.subdir(oname.subdir()).map(|dir| {
        let st = rustix::fs::statat(
            dir,
            ocname.as_c_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
        (dir, st)
    });
    let file_type = |st: &rustix::fs::Stat| rustix::fs::FileType::from_raw_mode(st.st_mode as _);
    match existing {
        Some((dir, Ok(st)))
            if file_type(&st) == rustix::fs::FileType::RegularFile && st.st_size as u64 == size =>
        {
            tmp.remove(shared);
            mark_used(dir, ocname.as_c_str(), &st, now);
        }
        Some((_, Ok(st))) if file_type(&st) == rustix::fs::FileType::Directory => {
            return fail(format!(
                "{} is a directory (a cached executable); not replaced",
                opath.display()
            ));
        }
        _ => {
            if let Err(e) = tmp.rename_to(shared, ocname.as_c_str()) {
                return fail(format!("storing {}: {e}", opath.display()));
            }
        }
    }
    let aname = EntryName::action(action);
    let entry = ActionEntry {
        action,
        output,
        size,
        time_nanos: now.saturating_mul(1_000_000_000),
    };
    if let Err(e) = write_action_entry(shared, &entry) {
        let apath = aname.path_in(shared.dir.path());
        return fail(format!("storing {}: {e}", apath.display()));
    }
    if shared.remote.is_some() {
        upload(shared, entry);
    }
    let c = &shared.counters;
    c.puts.fetch_add(1, Ordering::Relaxed);
    c.put_bytes.fetch_add(size, Ordering::Relaxed);
    shared.note_uses([aname, oname], now, false);
    // What the output takes on disk, as a filesystem of 4 KiB blocks
    // allocates it (the file was just written; its blocks may still be
    // delayed allocation).
    let allocated = size.div_ceil(4096) * 4096;
    shared.event(|clock, t| {
        let cost = clock.put(&action, t);
        crate::trace::TraceEvent::put(t, &action, &output, allocated, cost)
    });
    Response {
        id,
        disk_path: shared.disk_path(&oname),
        ..Default::default()
    }
}

/// Trace events held in memory during a session before they are written
/// anyway (about 80 bytes each); below this they wait for the close.
const HOLD_EVENTS: usize = 100_000;

/// Records the uses waiting, and the trace events when `events_too` (or
/// when more than [`HOLD_EVENTS`] wait): events are written after go has
/// its answer, so that their rows cost a build nothing.
fn flush_uses(shared: &Shared, mut index: Option<&mut Index>, events_too: bool) {
    let events = shared
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
    let batch = match shared.uses.lock() {
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

fn record_session(shared: &Shared, ix: &mut Index, started: UnixTime) {
    let c = &shared.counters;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let recorded = ix.record_session(&crate::model::ProgSession {
        started,
        ended: (shared.clock)(),
        gets: l(&c.gets),
        hits: l(&c.hits),
        misses: l(&c.misses),
        puts: l(&c.puts),
        put_bytes: l(&c.put_bytes),
        errors: l(&c.errors),
        remote: shared.remote_summary.get().map(|r| r.session()),
    });
    if let Err(e) = recorded {
        eprintln!("gocache prog: warning: recording the session in the index: {e}");
    }
}

/// What the remote tier did in a session: the summary line, and the
/// session's row.
#[derive(Debug, Clone, Default)]
struct RemoteSummary {
    hits: u64,
    hit_bytes: u64,
    misses: u64,
    refused: u64,
    errors: u64,
    skipped: u64,
    uploads: crate::remote::tier::UploadCounts,
}

impl RemoteSummary {
    fn of(r: &RemoteState, uploads: &crate::remote::tier::UploadCounts) -> RemoteSummary {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RemoteSummary {
            hits: l(&r.hits),
            hit_bytes: l(&r.hit_bytes),
            misses: l(&r.misses),
            refused: l(&r.refused),
            errors: l(&r.errors),
            skipped: l(&r.skipped),
            uploads: uploads.clone(),
        }
    }

    fn anything(&self) -> bool {
        let u = &self.uploads;
        self.hits + self.misses + self.refused + self.errors + self.skipped > 0
            || u.queued + u.dropped + u.failed > 0
    }

    /// Still queued or uploading when the deadline came.
    fn unfinished(&self) -> u64 {
        let u = &self.uploads;
        u.queued.saturating_sub(u.uploaded + u.failed)
    }

    fn line(&self, name: &str, drain: std::time::Duration) -> String {
        let u = &self.uploads;
        let mut s = format!(
            "remote {name}: {} hits ({}), {} misses, {} uploaded ({}), {} dropped, {} refused, {} errors",
            self.hits,
            humansize::format_size(self.hit_bytes, humansize::BINARY),
            self.misses,
            u.uploaded,
            humansize::format_size(u.upload_bytes, humansize::BINARY),
            u.dropped,
            self.refused,
            self.errors + u.failed,
        );
        if self.skipped > 0 {
            s += &format!(", {} not asked (store paused or refused)", self.skipped);
        }
        if self.unfinished() > 0 {
            s += &format!(
                ", {} not uploaded by the {} s deadline (--remote-drain)",
                self.unfinished(),
                drain.as_secs_f64()
            );
        }
        s
    }

    fn session(&self) -> crate::model::ProgRemote {
        let u = &self.uploads;
        crate::model::ProgRemote {
            hits: self.hits,
            misses: self.misses,
            refused: self.refused,
            errors: self.errors + u.failed,
            uploaded: u.uploaded,
            dropped: u.dropped,
        }
    }
}

fn evict(shared: &Shared, ix: &mut Index, limits: &crate::limits::Limits) {
    let (cache, now, quiet) = (shared.dir.path(), (shared.clock)(), &crate::report::Silent);
    let enforced = crate::scan::scan(cache, ix, &Default::default(), now, quiet)
        .and_then(|_| crate::enforce::after_use(cache, ix, &[], limits, now, quiet));
    if let Err(e) = enforced {
        eprintln!("gocache prog: warning: enforcing the limits: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        let a = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let line = format!(r#"{{"ID":5,"Command":"get","ActionID":"{a}"}}"#);
        assert_eq!(
            parse_request(line.as_bytes()).unwrap(),
            (
                5,
                Command::Get {
                    action: Id([1; 32])
                }
            )
        );
        let line =
            format!(r#"{{"ID":6,"Command":"put","ActionID":"{a}","OutputID":"{a}","BodySize":3}}"#);
        assert_eq!(
            parse_request(line.as_bytes()).unwrap().1,
            Command::Put {
                action: Id([1; 32]),
                output: Id([1; 32]),
                size: 3
            }
        );
        assert!(matches!(
            parse_request(b"{not json"),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"[1,2]"),
            Err(RequestError::Malformed(_))
        ));
        assert_eq!(
            parse_request(br#"{"Command":"get"}"#),
            Err(RequestError::NoId)
        );
        assert!(matches!(
            parse_request(br#"{"ID":1,"Command":"fly"}"#).unwrap().1,
            Command::Bad { .. }
        ));
        assert!(matches!(
            parse_request(br#"{"ID":1,"Command":"get","ActionID":"AAAA"}"#)
                .unwrap()
                .1,
            Command::Bad { .. }
        ));
        assert!(matches!(
            parse_request(br#"{"ID":1,"Command":"get","ActionID":"!!"}"#)
                .unwrap()
                .1,
            Command::Bad { .. }
        ));
    }

    #[test]
    fn responses_are_written_as_serde_writes_them() {
        let cases = [
            Response {
                id: 0,
                known_commands: vec!["get", "put", "close"],
                ..Default::default()
            },
            Response {
                id: 7,
                miss: true,
                ..Default::default()
            },
            Response {
                id: 8,
                output_id: Some("AQID".into()),
                size: 175,
                time: rfc3339(1_700_000_000_123_456_789),
                disk_path: "/c/\"q\"\\/ü/\u{1}/ab/cd-d".into(),
                ..Default::default()
            },
            Response {
                id: -3,
                err: "storing \"x\"\n: no space".into(),
                ..Default::default()
            },
        ];
        for r in cases {
            let mut ours = Vec::new();
            r.write_json(&mut ours);
            let mut theirs = serde_json::to_vec(&r).unwrap();
            theirs.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }

    #[test]
    fn bodies_stream_in_pieces_and_bad_ones_are_refused() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        let input = format!("\n\"{b64}\"\nNEXT");
        // A tiny buffer forces many partial chunks.
        let mut r = BufReader::with_capacity(7, input.as_bytes());
        let mut out = Vec::new();
        assert_eq!(stream_body(&mut r, &mut out).unwrap(), data.len() as u64);
        assert_eq!(out, data);
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
        let mut r = BufReader::new("\"QUJD*EVG\"\nNEXT".as_bytes());
        assert!(matches!(
            stream_body(&mut r, &mut Vec::new()),
            Err(BodyError::Bad(_))
        ));
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(
            rest, "NEXT",
            "a bad body is consumed to the end of its line"
        );
        let mut r = BufReader::new("\"QUJD".as_bytes());
        assert!(matches!(
            stream_body(&mut r, &mut Vec::new()),
            Err(BodyError::Io(_))
        ));
    }

    #[test]
    fn random_bytes_never_panic_the_parser() {
        let mut rng = fastrand::Rng::with_seed(5);
        let seeds: [&[u8]; 3] = [
            br#"{"ID":1,"Command":"put","ActionID":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","BodySize":3}"#,
            br#"{"ID":2,"Command":"get","ActionID":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}"#,
            b"\"QUJD\"\n",
        ];
        for _ in 0..2000 {
            let mut b = seeds[rng.usize(0..seeds.len())].to_vec();
            for _ in 0..rng.usize(0..6) {
                let i = rng.usize(0..b.len());
                match rng.u8(0..3) {
                    0 => b[i] = rng.u8(..),
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, rng.u8(..)),
                }
                if b.is_empty() {
                    break;
                }
            }
            let _ = parse_request(&b);
            let _ = stream_body(&mut BufReader::new(b.as_slice()), &mut std::io::sink());
        }
    }
}
