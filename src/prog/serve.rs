//! Serving one go command: the reader's loop, a get and a put from the
//! request to the answer, and the session's start and close around them.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use sha2::Digest;

use super::ServerConfig;
use super::books::{self, Books};
use super::pool::Pool;
use super::protocol::{
    BadRequest, BodyError, Command, DEFER_AT_MOST, HAND_OFF_AT, Response, Timeline, Writer,
    parse_request, read_request_line, requests_waiting, stream_body,
};
use super::remote::{self, FETCHERS, RemoteState};
use crate::cachedir::store::{Hit, LocalStore, Put, TmpFile};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::layout::{ActionEntry, EntryName, Id};
use crate::model::UnixTime;
use crate::trace::TraceEvent;

/// What the request handlers share: each room's own part.
struct Shared {
    /// Level one: Go's layout on disk.
    store: LocalStore,
    /// What the session counts and queues for the bookkeeper.
    books: Arc<Books>,
    /// The remote tier, with `--remote`.
    remote: Option<RemoteState>,
    timeline: Arc<Timeline>,
    clock: fn() -> UnixTime,
    /// Outputs that could not be put in place, kept in their temporary
    /// files for the go command to read (see [`finish_put`]); removed at
    /// close.
    kept: std::sync::Mutex<Vec<TmpFile>>,
}

/// Serves GOCACHEPROG requests from `input`, writing responses to `output`,
/// until `close` or the end of input. Returns an error for a stream that
/// broke or cannot be read (the caller prints it and exits non-zero).
///
/// `output` is dropped as soon as `close` is answered (the go command
/// waits for it to close); the index is closed after that.
pub fn serve(
    cfg: ServerConfig,
    input: impl Read + AsFd,
    output: impl Write + Send + 'static,
) -> Result<()> {
    let timeline = Arc::new(Timeline::new(cfg.trace.is_some()));
    // The go command waits for this first answer before it goes on: send
    // it before anything else.
    let writer = Arc::new(Writer::new(Box::new(output), timeline.clone()));
    writer.send(&Response::known_commands());
    let (spin, trace) = (cfg.spin, cfg.trace.clone());
    let session = Session::start(cfg, &writer, timeline);
    let mut reader = Reader {
        shared: &session.shared,
        writer: &writer,
        pool: session.pool.as_deref(),
        fetchers: session.fetchers.as_deref(),
        spin,
        deferred: 0,
        since_evict: 0,
    };
    let read = reader.run(&mut BufReader::with_capacity(256 << 10, input));
    writer.flush();
    let close_id = read.as_ref().ok().copied().flatten();
    session
        .shared
        .timeline
        .note("end-of-requests", close_id.unwrap_or(-1), 0);
    session.close(close_id, &writer, trace.as_deref());
    read.map(|_| ())
}

/// A session's threads beside the reader, and what they share.
struct Session {
    shared: Arc<Shared>,
    /// Answers gets while more requests wait, and finishes puts.
    pool: Option<Arc<Pool<Job>>>,
    /// Fetches local misses from the remote tier.
    fetchers: Option<Arc<Pool<Job>>>,
    bookkeeper: std::thread::JoinHandle<Option<Index>>,
    /// A message once the session's row is recorded.
    books_ready: mpsc::Receiver<()>,
}

impl Session {
    /// Starts the bookkeeping thread (which opens the index, after go has
    /// its first answer) and the pools.
    fn start(cfg: ServerConfig, writer: &Arc<Writer>, timeline: Arc<Timeline>) -> Session {
        let started = (cfg.clock)();
        let cache = cfg.cache_dir.path().to_owned();
        let shared = Arc::new(Shared {
            store: LocalStore::new(cfg.cache_dir),
            books: Arc::new(Books::new(
                cache,
                cfg.clock,
                cfg.clock_offset,
                cfg.record_events,
                cfg.quiet,
            )),
            remote: cfg.remote.map(RemoteState::new),
            timeline,
            clock: cfg.clock,
            kept: Default::default(),
        });
        shared.timeline.note("known", 0, 0);
        if let Some(r) = &shared.remote {
            // Before the bookkeeper starts: it reads what this store lacks.
            let _ = shared.books.absent.place.set(r.name().to_owned());
        }
        let (bookkeeper, books_ready) =
            books::start(&shared.books, &shared.timeline, cfg.open_index, started);
        let start_pool = |n| {
            let shared = shared.clone();
            Pool::start(n, writer, move |job: Job| job.run(&shared))
        };
        let pool = match cfg.workers.unwrap_or_else(super::default_workers) {
            0 => None,
            n => Some(start_pool(n)),
        };
        // Started at the first fetch: a warm build fetches nothing.
        let fetchers = shared.remote.as_ref().map(|_| {
            let shared = shared.clone();
            Pool::start_lazy(FETCHERS, writer, move |job: Job| job.run(&shared))
        });
        start_prefetch(&shared);
        Session {
            shared,
            pool,
            fetchers,
            bookkeeper,
            books_ready,
        }
    }

    /// The go command ends once it has the close response (`close_id`,
    /// when it sent `close`) and our output closes. Before that: finish the
    /// requests in flight, wait for this build's uploads, and let the
    /// bookkeeper check the limits (after puts) and record the session.
    /// After it: the last use log, the uses still waiting, the index's
    /// close (which may checkpoint its WAL), and the timeline.
    fn close(self, close_id: Option<i64>, writer: &Writer, trace: Option<&std::path::Path>) {
        let s = &self.shared;
        let closing = std::time::Instant::now();
        // Go asks for nothing more: the prefetch stops starting fetches
        // and those in flight stop at their next write.
        if let Some(r) = &s.remote {
            r.prefetch.cancel(closing);
        }
        let pools = [&self.pool, &self.fetchers];
        for p in pools.into_iter().flatten() {
            p.close();
        }
        for p in pools.into_iter().flatten() {
            p.join();
        }
        s.timeline.note("pool-done", 0, 0);
        if s.remote.is_some() {
            // What the store lacked and go did not put: level one does not
            // have it now.
            s.books.absent.settle(|a| s.store.has_action(a));
        }
        let remote = s.remote.as_ref().map(|r| r.summarize(closing, &s.timeline));
        s.books.close(remote);
        // Err only if the bookkeeper died: nothing more to wait for.
        let _ = self.books_ready.recv();
        s.timeline.note("books-ready", 0, 0);
        // The go command is done reading what it put (it sends `close`
        // last): gone before it may exit.
        for tmp in std::mem::take(&mut *super::protocol::lock(&s.kept)) {
            s.store.discard(&tmp);
        }
        if let Some(id) = close_id {
            writer.send(&Response::done(id, String::new()));
        }
        writer.release();
        s.timeline.note("released", 0, 0);
        // The last use log and the manifest, after go has its answer: go
        // need not wait for them. Prefetches still in flight get as long
        // to remove their temp files (one blocked on the network past it
        // leaves its file to a full trim's sweep).
        let reported = s.remote.as_ref().and_then(|r| {
            let reported = r.drain(&s.timeline, (s.clock)(), s.books.take_reported());
            r.prefetch
                .cancel(std::time::Instant::now() + PREFETCH_CANCEL_WAIT);
            s.timeline.note("prefetch-stopped", 0, 0);
            reported
        });
        let mut index = self.bookkeeper.join().ok().flatten();
        s.timeline.note("books-done", 0, 0);
        if let Some(r) = reported {
            books::store_reported(&s.books, index.as_mut(), r);
        }
        // Closing the index may checkpoint its WAL: after the go command
        // has gone on.
        drop(index);
        s.timeline.note("index-closed", 0, 0);
        if let Some(path) = trace
            && let Err(e) = s.timeline.save(path)
        {
            eprintln!(
                "gocache prog: warning: writing the trace {}: {e}",
                path.display()
            );
        }
    }
}

/// How long close waits, after go has its answer, for prefetches in flight
/// to stop and remove their temp files.
const PREFETCH_CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts the session's prefetch (see [`super::prefetch`]) on threads of
/// its own: one reads the manifest and plans, then it and more fetch. Go
/// is answered meanwhile; nothing waits for them.
fn start_prefetch(shared: &Arc<Shared>) {
    let Some(r) = &shared.remote else { return };
    if !r.prefetches() {
        return;
    }
    let sh = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("gocache-prefetch".into())
        .spawn(move || {
            let Some(r) = &sh.remote else { return };
            let workers = r.plan_prefetch(&sh.store, sh.clock);
            sh.timeline.note("prefetch-planned", 0, workers as u64);
            for i in 1..workers {
                let sh = Arc::clone(&sh);
                let _ = std::thread::Builder::new()
                    .name(format!("gocache-prefetch-{i}"))
                    .spawn(move || {
                        if let Some(r) = &sh.remote {
                            r.run_prefetch(&sh.store, &sh.books, sh.clock);
                        }
                    });
            }
            if workers > 0 {
                r.run_prefetch(&sh.store, &sh.books, sh.clock);
            }
        });
    if spawned.is_err() {
        r.prefetch.halt();
    }
}

/// Work the reader hands to a pool.
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
    fn run(self, s: &Shared) -> Option<Response> {
        let (r, what, id) = match self {
            Job::Get { id, action } => (get(s, id, action, None), "get-pool", id),
            Job::Fetch { id, action } => (Some(fetch(s, id, action)), "fetched", id),
            Job::FinishPut {
                id,
                action,
                output,
                size,
                tmp,
            } => (
                Some(finish_put(s, id, action, output, size, tmp)),
                "put-done",
                id,
            ),
        };
        s.timeline.note(what, id, 0);
        r
    }
}

/// The protocol loop: reads requests until `close` or the end of input,
/// answering them or handing them to the pools.
struct Reader<'a> {
    shared: &'a Shared,
    writer: &'a Writer,
    pool: Option<&'a Pool<Job>>,
    fetchers: Option<&'a Pool<Job>>,
    spin: std::time::Duration,
    /// Responses queued but not yet written (see [`DEFER_AT_MOST`]);
    /// always written before the reader may wait for input or a body.
    deferred: usize,
    /// Bytes put since the limits were last checked.
    since_evict: u64,
}

impl Reader<'_> {
    /// Reads and serves requests: `Some(id)` of the `close` request, or
    /// `None` at the end of input without one (the go command went away).
    fn run(&mut self, input: &mut BufReader<impl Read + AsFd>) -> Result<Option<i64>> {
        let mut line = Vec::new();
        loop {
            line.clear();
            if self.deferred > 0 && requests_waiting(input.buffer(), 1) == 0 {
                self.flush();
            }
            read_request_line(input, &mut line, self.spin)?;
            if line.is_empty() {
                return Ok(None);
            }
            if line.iter().all(|c| c.is_ascii_whitespace()) {
                continue;
            }
            let (id, cmd) = parse_request(&line).map_err(|error| Error::BadRequest {
                error,
                line: String::from_utf8_lossy(&line).trim_end().to_owned(),
            })?;
            let waiting = requests_waiting(input.buffer(), HAND_OFF_AT.max(1));
            self.shared.timeline.note("read", id, waiting as u64);
            match cmd {
                Command::Close => return Ok(Some(id)),
                Command::Get { action } => self.on_get(id, action, waiting),
                Command::Bad { reason, body } => self.on_bad(input, id, reason, body)?,
                Command::Put {
                    action,
                    output,
                    size,
                } => self.on_put(input, id, action, output, size)?,
            }
        }
    }

    /// Writes the responses held back.
    fn flush(&mut self) {
        self.writer.flush();
        self.deferred = 0;
    }

    fn on_get(&mut self, id: i64, action: Id, waiting: usize) {
        match self.pool {
            // Several more requests are already here: let the pool answer
            // this one while the reader goes on.
            Some(pool) if waiting >= HAND_OFF_AT => pool.submit(Job::Get { id, action }),
            // A get is one small read and a stat: answered right here, which
            // keeps its round trip short; sent with the next answer when one
            // is due right after. None: a local miss handed to the fetchers.
            _ => {
                let Some(r) = get(self.shared, id, action, self.fetchers) else {
                    return;
                };
                self.shared.timeline.note("get", id, 0);
                if waiting > 0 && self.deferred < DEFER_AT_MOST {
                    self.writer.queue(&r);
                    self.deferred += 1;
                } else {
                    self.writer.send(&r);
                    self.deferred = 0;
                }
            }
        }
    }

    /// A request answered with an error; its body, if any, is skipped.
    fn on_bad(
        &mut self,
        input: &mut impl BufRead,
        id: i64,
        reason: BadRequest,
        body: u64,
    ) -> Result<()> {
        self.flush();
        if body > 0 {
            match stream_body(input, &mut std::io::sink()) {
                Ok(_) | Err(BodyError::Bad(_)) => {}
                Err(BodyError::Io(cause)) => return Err(Error::RequestBody { id, cause }),
            }
        }
        self.refuse(id, reason.to_string());
        Ok(())
    }

    /// A put: its body into a temporary file, checked; its renames into
    /// place on the pool.
    fn on_put(
        &mut self,
        input: &mut impl BufRead,
        id: i64,
        action: Id,
        output: Id,
        size: u64,
    ) -> Result<()> {
        self.flush();
        let s = self.shared;
        let tmp = match receive_body(&s.store, &s.books, input, output, size) {
            Ok(tmp) => tmp,
            Err(BodyError::Bad(reason)) => {
                self.refuse(id, reason);
                return Ok(());
            }
            Err(BodyError::Io(cause)) => return Err(Error::RequestBody { id, cause }),
        };
        self.shared.timeline.note("put-read", id, size);
        let job = Job::FinishPut {
            id,
            action,
            output,
            size,
            tmp,
        };
        match self.pool {
            Some(pool) => pool.submit(job),
            None => {
                if let Some(r) = job.run(self.shared) {
                    self.writer.send(&r);
                }
            }
        }
        self.shared.books.put_stored(&mut self.since_evict, size);
        Ok(())
    }

    fn refuse(&self, id: i64, err: String) {
        let c = &self.shared.books.counters;
        c.errors.fetch_add(1, Ordering::Relaxed);
        self.writer.send(&Response::error(id, err));
    }
}

/// Answers a get: from level one, else (with a remote tier) from the
/// store. `None` when the fetch was handed to `fetchers`, which answer it.
fn get(s: &Shared, id: i64, action: Id, fetchers: Option<&Pool<Job>>) -> Option<Response> {
    let c = &s.books.counters;
    c.gets.fetch_add(1, Ordering::Relaxed);
    let now = (s.clock)();
    if let Some(hit) = s.store.get(action, now) {
        return Some(local_hit(s, id, hit, now));
    }
    c.misses.fetch_add(1, Ordering::Relaxed);
    s.books.get_event(&action, false, |log, t| {
        log.miss(&action, t);
        TraceEvent::miss(t, &action)
    });
    match (&s.remote, fetchers) {
        (None, _) => Some(Response::miss(id)),
        (Some(_), Some(fetchers)) => {
            fetchers.submit(Job::Fetch { id, action });
            None
        }
        (Some(_), None) => Some(fetch(s, id, action)),
    }
}

/// A get level one answered: counted, its use queued (and the fleet's,
/// with a remote tier), and answered.
fn local_hit(s: &Shared, id: i64, hit: Hit, now: UnixTime) -> Response {
    let Hit {
        entry,
        allocated,
        marked,
    } = hit;
    let oname = EntryName::data(entry.output);
    s.books.counters.hits.fetch_add(1, Ordering::Relaxed);
    s.books
        .used([EntryName::action(entry.action), oname], now, true, marked);
    if let Some(r) = &s.remote {
        r.record_use(&entry, now);
    }
    s.books.get_event(&entry.action, true, |_, t| {
        TraceEvent::hit(t, &entry.action, &entry.output, allocated)
    });
    Response::hit(id, &entry, s.store.disk_path(&oname))
}

/// A local miss handed to the fetchers.
fn fetch(s: &Shared, id: i64, action: Id) -> Response {
    let Some(r) = &s.remote else {
        return Response::miss(id);
    };
    let now = (s.clock)();
    if let Some(hit) = remote::from_prefetch(r, &s.store, &s.books, now, id, action) {
        return hit;
    }
    remote::fetch(r, &s.store, &s.books, now, id, action)
}

/// Hashes what it is given and writes it on; after a failed write it keeps
/// hashing and drops the rest, so that the body is still read to its end,
/// and says what failed.
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

/// Streams a put's body into a temporary file next to where it belongs
/// (or, when its subdirectory cannot hold one, in the next that can),
/// checking its size and SHA-256. A body that cannot be written anywhere
/// (the disk is full, a file size limit) is still read to its end, and the
/// put is answered with an error naming the write: go then builds without
/// caching that output, and the session goes on.
///
/// On a disk with less free space than the body (and
/// [`books::LOW_SPACE_SLACK`]), the limits are enforced first and the put
/// waits for it ([`Books::make_room`]): on a full disk, eviction comes
/// before the write that would fail.
fn receive_body(
    store: &LocalStore,
    books: &Books,
    r: &mut impl BufRead,
    output: Id,
    size: u64,
) -> Result<TmpFile, BodyError> {
    if store
        .free_bytes()
        .is_some_and(|free| free < size.saturating_add(books::LOW_SPACE_SLACK))
    {
        books.make_room();
    }
    // Go creates the 256 subdirectories before it starts us; one missing
    // (or not a real directory) is dealt with here.
    let (tmp, file) = match store.create_tmp_near(output.subdir()) {
        Ok(x) => x,
        Err(e) => {
            if size > 0 {
                match stream_body(r, &mut std::io::sink()) {
                    Ok(_) | Err(BodyError::Bad(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            return Err(BodyError::Bad(format!(
                "storing output {output}: {e}; not cached"
            )));
        }
    };
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
        store.discard(&tmp);
        Err(e)
    };
    let got = match result {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let _ = w.flush();
    if let Some(e) = w.failed.take() {
        return fail(BodyError::Bad(format!(
            "writing {}: {e}; output {output} not cached",
            store.tmp_path(&tmp).display()
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

/// Puts a received body in place with its action entry (see
/// [`LocalStore::put_or_keep`]), queues it for upload, counts it and
/// queues its use.
///
/// A put never fails the go command while its body has a place in the
/// cache: go treats a failed put as fatal in places (its module index). An
/// output that cannot be put in place (its subdirectory is a symlink, say)
/// stays in its temporary file, inside the cache, whose path go is told;
/// it is removed at close, and not cached. An output put in place without
/// its action entry is answered with its path. Either costs one warning a
/// session.
fn finish_put(s: &Shared, id: i64, action: Id, output: Id, size: u64, tmp: TmpFile) -> Response {
    let now = (s.clock)();
    let entry = ActionEntry {
        action,
        output,
        size,
        time_nanos: now.saturating_mul(1_000_000_000),
    };
    let output_marked = match s.store.put_or_keep(tmp, &entry, now) {
        Put::Stored { output_marked } => output_marked,
        Put::OutputOnly(e) => {
            s.books.not_cached(&e);
            return Response::done(id, s.store.disk_path(&EntryName::data(output)));
        }
        Put::Kept(tmp, e) => {
            s.books.not_cached(&e);
            let path = s.store.tmp_path(&tmp).display().to_string();
            super::protocol::lock(&s.kept).push(tmp);
            return Response::done(id, path);
        }
    };
    if let Some(r) = &s.remote {
        r.upload(&s.store, entry);
    }
    let c = &s.books.counters;
    c.puts.fetch_add(1, Ordering::Relaxed);
    c.put_bytes.fetch_add(size, Ordering::Relaxed);
    let oname = EntryName::data(output);
    s.books.used(
        [EntryName::action(action), oname],
        now,
        false,
        [false, output_marked],
    );
    // What the output takes on disk, as a filesystem of 4 KiB blocks
    // allocates it (the file was just written; its blocks may still be
    // delayed allocation).
    let allocated = size.div_ceil(4096) * 4096;
    s.books.put_event(&action, |log, t, at| {
        log.put(&action, t, at);
        TraceEvent::put(t, &action, &output, allocated, None)
    });
    Response::done(id, s.store.disk_path(&oname))
}
