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
//! One thread reads requests; a put's body is decoded from base64 as it
//! streams in, hashed (SHA-256, which must equal the OutputID, or the put
//! is refused) and written to disk, never held whole in memory. The final
//! renames of puts run on a small pool; gets (a small read and a stat) are
//! answered by the reader itself, since go waits on each in turn. Whoever
//! finishes a request writes its response, in whatever order they finish
//! (Go matches them by ID).
//!
//! # Hits and limits
//!
//! Every get (hit or miss) and put is counted, and uses are recorded in the
//! index in batches by a background thread, never one transaction per
//! request; a session summary is stored at close. When puts add more than
//! [`EVICT_EVERY`] bytes, the stored limits are enforced in the background
//! (the hook's policy and executor); everything handed out to this go
//! command was just used and is inside the grace period, so it stays. No get
//! or put waits for that. `close` does: the go command kills its
//! GOCACHEPROG as soon as `close` is answered, so the server first finishes
//! what is in flight, records the session and checks the limits once more.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use base64::Engine;
use sha2::Digest;

use crate::index::{Index, Use};
use crate::layout::{ActionEntry, EntryName, Id, subdir_name};
use crate::model::UnixTime;

/// Bytes put between two background checks of the limits.
pub const EVICT_EVERY: u64 = 16 << 20;
/// The prefix of temporary files in the cache's subdirectories.
pub const TMP_PREFIX: &str = ".gocache-tmp-";

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

/// One stored session (a go command that used `gocache prog`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgSession {
    /// When it started (Unix seconds).
    pub started: UnixTime,
    /// When it closed.
    pub ended: UnixTime,
    /// Gets answered.
    pub gets: u64,
    /// Hits.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Puts stored.
    pub puts: u64,
    /// Bytes stored.
    pub put_bytes: u64,
    /// Requests answered with an error.
    pub errors: u64,
}

/// The most recent sessions, newest first.
pub fn sessions(index: &Index, limit: usize) -> crate::Result<Vec<ProgSession>> {
    let conn = index.connection();
    let err = |e| crate::Error::Sqlite {
        path: index.path().to_owned(),
        cause: e,
    };
    let mut stmt = conn
        .prepare(
            "SELECT started, ended, gets, hits, misses, puts, put_bytes, errors
             FROM prog_sessions ORDER BY id DESC LIMIT ?1",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([limit as i64], |r| {
            let u = |i| r.get::<_, i64>(i).map(|v| v as u64);
            Ok(ProgSession {
                started: r.get(0)?,
                ended: r.get(1)?,
                gets: u(2)?,
                hits: u(3)?,
                misses: u(4)?,
                puts: u(5)?,
                put_bytes: u(6)?,
                errors: u(7)?,
            })
        })
        .map_err(err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
}

/// What the server needs from the outside.
pub struct ServerConfig {
    /// The cache directory (absolute).
    pub cache_dir: PathBuf,
    /// The index, if it could be opened (the server works without one).
    pub index: Option<Index>,
    /// Limits to enforce in the background, if any are set.
    pub limits: Option<crate::limits::Limits>,
    /// The clock, read once per use.
    pub clock: fn() -> UnixTime,
    /// Worker threads for gets and puts.
    pub workers: usize,
}

/// Writes responses, one JSON object a line, flushed each time.
#[derive(Clone)]
struct Responder(Arc<Mutex<std::io::BufWriter<Box<dyn Write + Send>>>>);

impl Responder {
    fn send(&self, r: Response) -> Result<(), ()> {
        let mut out = self.0.lock().map_err(|_| ())?;
        serde_json::to_writer(&mut *out, &r).map_err(|_| ())?;
        out.write_all(b"\n").map_err(|_| ())?;
        out.flush().map_err(|_| ())
    }
}

enum Job {
    Finish {
        id: i64,
        action: Id,
        output: Id,
        size: u64,
        tmp: TmpFile,
    },
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
        let dir = shared.ensure_subdir(s)?;
        let n = shared.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let name = std::ffi::CString::new(format!("{TMP_PREFIX}{}-{n}", std::process::id()))
            .expect("no NUL in a number");
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

    /// Removes it (best effort: `trim` sweeps what is left).
    fn remove(&self, shared: &Shared) {
        if let Ok(dir) = self.dir(shared) {
            let _ = rustix::fs::unlinkat(dir, self.name.as_c_str(), rustix::fs::AtFlags::empty());
        }
    }

    fn dir<'a>(&self, shared: &'a Shared) -> std::io::Result<&'a std::os::fd::OwnedFd> {
        shared
            .subdir(self.subdir)
            .ok_or_else(|| std::io::Error::other("the cache subdirectory is gone"))
    }
}

struct Shared {
    cache: PathBuf,
    /// Each subdirectory, opened `O_NOFOLLOW` on first use: a get is then
    /// an `openat` and an `fstatat` relative to it, with no path walk and
    /// no way out of the cache. (A subdirectory removed while we serve,
    /// by `go clean -cache`, then reads as misses until the next session.)
    subdirs: Vec<std::sync::OnceLock<std::os::fd::OwnedFd>>,
    counters: Counters,
    uses: Mutex<Vec<Use>>,
    /// The thread that records uses, woken early when [`FLUSH_USES_AT`]
    /// are waiting.
    recorder: std::sync::OnceLock<std::thread::Thread>,
    clock: fn() -> UnixTime,
    tmp_seq: AtomicU64,
}

/// Uses waiting to be recorded that wake the recorder before its next
/// tick: a few milliseconds of SQLite work each time, done while go works,
/// rather than all of it at `close`, which go waits for.
const FLUSH_USES_AT: usize = 512;

/// Serves GOCACHEPROG requests from `input`, writing responses to `output`,
/// until `close` or the end of input. Returns an error message for a
/// stream that broke (the caller prints it and exits non-zero).
pub fn serve(
    cfg: ServerConfig,
    input: impl Read,
    output: impl Write + Send + 'static,
) -> Result<(), String> {
    let started = (cfg.clock)();
    let shared = Arc::new(Shared {
        cache: cfg.cache_dir.clone(),
        subdirs: (0..256).map(|_| std::sync::OnceLock::new()).collect(),
        counters: Counters::default(),
        uses: Mutex::new(Vec::new()),
        recorder: std::sync::OnceLock::new(),
        clock: cfg.clock,
        tmp_seq: AtomicU64::new(0),
    });
    // Go's cache.Open creates the 256 subdirectories before it starts us;
    // a put that finds one missing creates it (Shared::ensure_subdir).
    // Whoever finishes a request writes its response, under a lock: no
    // hand-off to a writer thread, since go waits on each get in turn.
    let res_tx = Responder(Arc::new(Mutex::new(std::io::BufWriter::new(Box::new(
        output,
    )))));
    let _ = res_tx.send(Response {
        id: 0,
        known_commands: vec!["get", "put", "close"],
        ..Default::default()
    });

    let index = Arc::new(Mutex::new(cfg.index));
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = {
        let (shared, index, stop) = (shared.clone(), index.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::park_timeout(std::time::Duration::from_millis(250));
                flush_uses(&shared, &index);
            }
        })
    };
    let _ = shared.recorder.set(recorder.thread().clone());
    let evicting = Arc::new(AtomicBool::new(false));
    let mut evictor: Option<std::thread::JoinHandle<()>> = None;
    let mut since_evict = 0u64;

    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let workers: Vec<_> = (0..cfg.workers.max(1))
        .map(|_| {
            let (rx, tx, shared) = (job_rx.clone(), res_tx.clone(), shared.clone());
            std::thread::spawn(move || {
                loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let resp = match job {
                        Job::Finish {
                            id,
                            action,
                            output,
                            size,
                            tmp,
                        } => finish_put(&shared, id, action, output, size, &tmp),
                    };
                    if tx.send(resp).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();

    let mut reader = BufReader::with_capacity(256 << 10, input);
    let mut line = Vec::new();
    let mut outcome = Ok(());
    let mut close_id = None;
    let mut put_since_close_check = 0u64;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break, // EOF without close: the go command went away.
            Ok(_) => {}
            Err(e) => {
                outcome = Err(format!("reading requests: {e}"));
                break;
            }
        }
        if line.iter().all(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let (id, cmd) = match parse_request(&line) {
            Ok(x) => x,
            Err(e) => {
                outcome = Err(format!(
                    "{e}: {}",
                    String::from_utf8_lossy(&line).trim_end()
                ));
                break;
            }
        };
        match cmd {
            Command::Close => {
                close_id = Some(id);
                break;
            }
            Command::Get { action } => {
                // A get is one small read and a stat: answered right here,
                // which keeps its round trip short.
                let _ = res_tx.send(get(&shared, id, action));
            }
            Command::Bad { reason, body } => {
                if body > 0 {
                    match stream_body(&mut reader, &mut std::io::sink()) {
                        Ok(_) | Err(BodyError::Bad(_)) => {}
                        Err(BodyError::Io(e)) => {
                            outcome = Err(format!("request {id}: reading its body: {e}"));
                            break;
                        }
                    }
                }
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                let _ = res_tx.send(Response {
                    id,
                    err: reason,
                    ..Default::default()
                });
            }
            Command::Put {
                action,
                output,
                size,
            } => {
                match receive_body(&shared, &mut reader, output, size) {
                    Ok(tmp) => {
                        since_evict += size;
                        put_since_close_check += size.max(1);
                        let _ = job_tx.send(Job::Finish {
                            id,
                            action,
                            output,
                            size,
                            tmp,
                        });
                    }
                    Err(BodyError::Bad(reason)) => {
                        shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                        let _ = res_tx.send(Response {
                            id,
                            err: reason,
                            ..Default::default()
                        });
                    }
                    Err(BodyError::Io(e)) => {
                        outcome = Err(format!("request {id}: reading its body: {e}"));
                        break;
                    }
                }
                if since_evict >= EVICT_EVERY
                    && let Some(limits) = &cfg.limits
                    && !evicting.swap(true, Ordering::SeqCst)
                {
                    since_evict = 0;
                    let (shared, index, limits, evicting) = (
                        shared.clone(),
                        index.clone(),
                        limits.clone(),
                        evicting.clone(),
                    );
                    evictor = Some(std::thread::spawn(move || {
                        flush_uses(&shared, &index);
                        evict(&shared, &index, &limits);
                        evicting.store(false, Ordering::SeqCst);
                    }));
                }
            }
        }
    }
    // Everything below happens before the close response: the go command
    // kills us once it has it. Finish the requests in flight, let a running
    // eviction end, record the uses and the session, and check the limits
    // once more so the cache ends within them when the go command exits.
    drop(job_tx);
    for w in workers {
        let _ = w.join();
    }
    if let Some(e) = evictor {
        let _ = e.join();
    }
    stop.store(true, Ordering::SeqCst);
    recorder.thread().unpark();
    let _ = recorder.join();
    flush_uses(&shared, &index);
    if put_since_close_check > 0
        && let Some(limits) = &cfg.limits
    {
        evict(&shared, &index, limits);
    }
    record_session(&shared, &index, started);
    if let Some(id) = close_id {
        let _ = res_tx.send(Response {
            id,
            ..Default::default()
        });
    }
    drop(res_tx);
    outcome
}

/// Streams a put's body into a temporary file next to where it belongs,
/// checking its size and SHA-256.
fn receive_body(
    shared: &Shared,
    r: &mut impl BufRead,
    output: Id,
    size: u64,
) -> Result<TmpFile, BodyError> {
    // Go creates the 256 subdirectories before it starts us; one missing
    // (or not a real directory) is dealt with here.
    let (tmp, file) = TmpFile::create(shared, output.subdir())?;
    struct HashingWriter<W: Write> {
        inner: W,
        hash: sha2::Sha256,
    }
    impl<W: Write> Write for HashingWriter<W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(b)?;
            self.hash.update(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let mut w = HashingWriter {
        inner: std::io::BufWriter::with_capacity(256 << 10, file),
        hash: sha2::Sha256::new(),
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
    if let Err(e) = w.flush() {
        return fail(e.into());
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
    /// Queues uses for the recorder, waking it when [`FLUSH_USES_AT`] wait.
    fn note_uses(&self, names: [EntryName; 2], at: UnixTime, hit: bool) {
        let Ok(mut u) = self.uses.lock() else { return };
        let before = u.len();
        u.extend(names.map(|name| Use { name, at, hit }));
        if before < FLUSH_USES_AT
            && u.len() >= FLUSH_USES_AT
            && let Some(t) = self.recorder.get()
        {
            t.unpark();
        }
    }

    /// The subdirectory's descriptor, opened on first use.
    fn subdir(&self, s: u8) -> Option<&std::os::fd::OwnedFd> {
        let slot = &self.subdirs[s as usize];
        if let Some(fd) = slot.get() {
            return Some(fd);
        }
        let fd = crate::scan::open_dir_at(rustix::fs::CWD, self.cache.join(subdir_name(s))).ok()?;
        Some(slot.get_or_init(|| fd))
    }

    /// The subdirectory, created if missing; an error if its name is
    /// taken by anything but a real directory (a symlink is not followed).
    fn ensure_subdir(&self, s: u8) -> std::io::Result<&std::os::fd::OwnedFd> {
        if let Some(fd) = self.subdir(s) {
            return Ok(fd);
        }
        let path = self.cache.join(subdir_name(s));
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.subdir(s).ok_or_else(|| {
            std::io::Error::other(format!(
                "{} is not a directory (a symlink is not followed)",
                path.display()
            ))
        })
    }
}

fn get(shared: &Shared, id: i64, action: Id) -> Response {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let c = &shared.counters;
    c.gets.fetch_add(1, Ordering::Relaxed);
    let now = (shared.clock)();
    let miss = || {
        c.misses.fetch_add(1, Ordering::Relaxed);
        Response {
            id,
            miss: true,
            ..Default::default()
        }
    };
    let aname = EntryName::action(action);
    let Some(adir) = shared.subdir(aname.subdir()) else {
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
    let Some(odir) = shared.subdir(oname.subdir()) else {
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
    Response {
        id,
        output_id: Some(base64::engine::general_purpose::STANDARD.encode(entry.output.0)),
        size: entry.size as i64,
        time: rfc3339(entry.time_nanos),
        disk_path: oname.path_in(&shared.cache).display().to_string(),
        ..Default::default()
    }
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
    let opath = oname.path_in(&shared.cache);
    // An existing output with this name and size has this content (its
    // name is its hash; Go verified it when it wrote it): keep it.
    let ocname = oname.c_file_name();
    let existing = shared.subdir(oname.subdir()).map(|dir| {
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
    let apath = aname.path_in(&shared.cache);
    let stored = TmpFile::create(shared, aname.subdir()).and_then(|(atmp, mut f)| {
        let r = f
            .write_all(entry.format().as_bytes())
            .and_then(|()| atmp.rename_to(shared, aname.c_file_name().as_c_str()));
        if r.is_err() {
            atmp.remove(shared);
        }
        r
    });
    if let Err(e) = stored {
        return fail(format!("storing {}: {e}", apath.display()));
    }
    let c = &shared.counters;
    c.puts.fetch_add(1, Ordering::Relaxed);
    c.put_bytes.fetch_add(size, Ordering::Relaxed);
    shared.note_uses([aname, oname], now, false);
    Response {
        id,
        disk_path: opath.display().to_string(),
        ..Default::default()
    }
}

fn flush_uses(shared: &Shared, index: &Mutex<Option<Index>>) {
    let batch = match shared.uses.lock() {
        Ok(mut u) if !u.is_empty() => std::mem::take(&mut *u),
        _ => return,
    };
    if let Ok(mut ix) = index.lock()
        && let Some(ix) = ix.as_mut()
        && let Err(e) = ix.record_uses(&batch)
    {
        eprintln!("gocache prog: warning: recording uses in the index: {e}");
    }
}

fn record_session(shared: &Shared, index: &Mutex<Option<Index>>, started: UnixTime) {
    let c = &shared.counters;
    let Ok(ix) = index.lock() else { return };
    let Some(ix) = ix.as_ref() else { return };
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
    let _ = ix.connection().execute(
        "INSERT INTO prog_sessions (started, ended, gets, hits, misses, puts, put_bytes, errors)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        rusqlite::params![
            started,
            (shared.clock)(),
            l(&c.gets),
            l(&c.hits),
            l(&c.misses),
            l(&c.puts),
            l(&c.put_bytes),
            l(&c.errors)
        ],
    );
}

fn evict(shared: &Shared, index: &Mutex<Option<Index>>, limits: &crate::limits::Limits) {
    let Ok(mut guard) = index.lock() else { return };
    let Some(ix) = guard.as_mut() else { return };
    let opts = crate::trim::TrimOptions {
        sync: crate::trim::Sync::Incremental,
        dry_run: false,
        trigger: crate::trim::Trigger::OverLimits { headroom: 0.9 },
    };
    if let Err(e) = crate::trim::run(
        &shared.cache,
        ix,
        limits,
        &opts,
        (shared.clock)(),
        &crate::report::Silent,
    ) {
        eprintln!("gocache prog: warning: enforcing the limits: {e}");
    }
}

/// For tests: the hit and miss counts by action of a finished session are
/// in the index; this maps a session's counters to a plain struct.
pub fn counters_snapshot(c: &Counters) -> HashMap<&'static str, u64> {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    HashMap::from([
        ("gets", l(&c.gets)),
        ("hits", l(&c.hits)),
        ("misses", l(&c.misses)),
        ("puts", l(&c.puts)),
        ("put_bytes", l(&c.put_bytes)),
        ("errors", l(&c.errors)),
    ])
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
