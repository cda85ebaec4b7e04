//! The remote tier as a session uses it (level two behind the local
//! cache; see the module doc of [`super`], "The remote tier"): fetches of
//! local misses into level one, uploads of puts, what it did, and its
//! warnings, once each.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::books::Books;
use super::protocol::Response;
use super::protocol::{Timeline, lock};
use crate::cachedir::store::LocalStore;
use crate::layout::{ActionEntry, EntryName, Id};
use crate::model::UnixTime;
use crate::remote::tier::{
    FetchError, RemoteTier, UploadBody, UploadCounts, UploadJob, Uploader, UseRecorder,
};

/// The remote tier as the server uses it: level two behind the local
/// cache (see the module's documentation, "The remote tier").
pub struct Remote {
    /// The store, for messages (`s3://bucket/prefix at http://…`).
    pub name: String,
    /// Verified fetches.
    pub tier: RemoteTier,
    /// Background uploads; `None` in read-only mode.
    pub uploader: Option<Uploader>,
    /// The session's use log; `None` in read-only mode (the tier is then
    /// given none either, and nothing is ever written to the store).
    pub recorder: Option<std::sync::Arc<UseRecorder>>,
    /// How long `close` waits for uploads before it answers (and, after
    /// that, for the last use log).
    pub drain: std::time::Duration,
    /// Print no warnings and no summary line.
    pub quiet: bool,
}

/// Threads that fetch from the store while the reader goes on: a fetch is
/// a network round trip (or two), which must not hold up the local hits
/// behind it.
pub(super) const FETCHERS: usize = 8;

/// The remote tier while serving: the configuration, what it did, and
/// whether it warned yet.
pub(super) struct RemoteState {
    cfg: Remote,
    /// Taken at close to drain it.
    uploader: Mutex<Option<Uploader>>,
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
    pub(super) fn new(mut cfg: Remote) -> RemoteState {
        RemoteState {
            uploader: Mutex::new(cfg.uploader.take()),
            cfg,
            hits: AtomicU64::new(0),
            hit_bytes: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            off: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            warned_refused: AtomicBool::new(false),
        }
    }

    fn warn_once(&self, flag: &AtomicBool, msg: impl FnOnce() -> String) {
        if !self.cfg.quiet && !flag.swap(true, Ordering::Relaxed) {
            eprintln!("gocache prog: warning: {}", msg());
        }
    }

    /// A local hit: the fleet's last use of this entry, even though level
    /// one had it (an object every machine holds locally is still in use).
    pub(super) fn record_use(&self, entry: &ActionEntry, now: UnixTime) {
        if let Some(rec) = &self.cfg.recorder {
            rec.record_use(entry.action, entry.output, now);
        }
    }

    /// Queues a put's entry for upload (not read-only): never waits; a
    /// full queue drops it, and counts.
    pub(super) fn upload(&self, store: &LocalStore, entry: ActionEntry) {
        if self.off.load(Ordering::Relaxed) {
            return;
        }
        let up = lock(&self.uploader);
        let Some(up) = up.as_ref() else { return };
        // An open file survives a trim removing it before the upload runs.
        let Some(file) = store.open_output(entry.output) else {
            return;
        };
        up.try_enqueue(UploadJob {
            entry,
            body: UploadBody::File(file),
        });
    }

    /// At close: waits for this build's uploads until the deadline
    /// (`closing` plus [`Remote::drain`]), so that a CI job that ends with
    /// the build cannot cut them off; prints the summary line when the
    /// tier did anything; returns the session row's part.
    pub(super) fn summarize(
        &self,
        closing: std::time::Instant,
        timeline: &Timeline,
    ) -> crate::model::ProgRemote {
        let up = lock(&self.uploader);
        if let Some(up) = up.as_ref() {
            up.wait_idle(closing + self.cfg.drain);
        }
        let uploads = up.as_ref().map(|u| u.counts()).unwrap_or_default();
        drop(up);
        timeline.note("uploads-done", 0, uploads.uploaded);
        let summary = RemoteSummary::of(self, &uploads);
        if !self.cfg.quiet && summary.anything() {
            eprintln!(
                "gocache prog: {}",
                summary.line(&self.cfg.name, self.cfg.drain)
            );
        }
        summary.session()
    }

    /// After go has its answer: the last use log, within the same bound
    /// again.
    pub(super) fn drain(&self, timeline: &Timeline) {
        if let Some(up) = lock(&self.uploader).take() {
            let counts = up.drain(std::time::Instant::now() + self.cfg.drain);
            timeline.note("remote-drained", 0, counts.logs_written);
        }
    }
}

/// A local miss, asked of the store: the output streams into a temp file
/// in level one through the tier's check (length and SHA-256 against the
/// action entry), is put into place with the action entry as a put writes
/// it (with the store's time, which Go's test cache reads); then the get
/// is answered as a hit. Anything else is a miss: a build never waits
/// longer than the store's timeouts, and never fails for it.
pub(super) fn fetch(
    remote: &RemoteState,
    store: &LocalStore,
    books: &Books,
    now: UnixTime,
    id: i64,
    action: Id,
) -> Response {
    if remote.off.load(Ordering::Relaxed) {
        remote.skipped.fetch_add(1, Ordering::Relaxed);
        return Response::miss(id);
    }
    let Ok((tmp, file)) = store.create_tmp(action.subdir()) else {
        remote.errors.fetch_add(1, Ordering::Relaxed);
        return Response::miss(id);
    };
    let mut sink = std::io::BufWriter::with_capacity(64 << 10, file);
    let fetched = remote
        .cfg
        .tier
        .fetch(action, &mut sink, now)
        .and_then(|e| flushed(&mut sink, action).map(|()| e));
    drop(sink);
    let entry = match fetched {
        Ok(Some(entry)) => entry,
        other => {
            store.discard(&tmp);
            count_miss(remote, other.err());
            return Response::miss(id);
        }
    };
    let oname = EntryName::data(entry.output);
    if let Err(e) = store.put(tmp, &entry, now) {
        remote.errors.fetch_add(1, Ordering::Relaxed);
        remote.warn_once(&remote.warned, || {
            format!(
                "{e} (fetched from {}); building it locally",
                remote.cfg.name
            )
        });
        return Response::miss(id);
    }
    remote.hits.fetch_add(1, Ordering::Relaxed);
    remote.hit_bytes.fetch_add(entry.size, Ordering::Relaxed);
    // Level one missed and now holds the entry: to the index and the trace
    // this is a put (a miss, then a put whose cost is the download, not a
    // rebuild), so that a local policy learns what evicting it costs.
    books.used([EntryName::action(action), oname], now, false);
    let allocated = entry.size.div_ceil(4096) * 4096;
    books.event(|clock, t| {
        let cost = clock.put(&action, t);
        crate::trace::TraceEvent::put(t, &action, &entry.output, allocated, cost)
    });
    Response::hit(id, &entry, store.disk_path(&oname))
}

/// Flushes the fetched output into its temporary file; a failure is the
/// fetch's, as a local error.
fn flushed(sink: &mut impl std::io::Write, action: Id) -> Result<(), FetchError> {
    sink.flush().map_err(|cause| {
        FetchError::Store(crate::remote::StoreError::Local {
            op: crate::remote::store::Op::Get,
            key: crate::remote::keys::action_key(action),
            cause,
        })
    })
}

/// Counts a fetch that came back without an entry (`None`: the store does
/// not have it), and warns once about refusals and store errors.
fn count_miss(remote: &RemoteState, err: Option<FetchError>) {
    let Some(err) = err else {
        remote.misses.fetch_add(1, Ordering::Relaxed);
        return;
    };
    match err {
        FetchError::Paused(_) => {
            remote.skipped.fetch_add(1, Ordering::Relaxed);
        }
        e @ (FetchError::Corrupt { .. } | FetchError::BadAction { .. }) => {
            remote.refused.fetch_add(1, Ordering::Relaxed);
            remote.warn_once(&remote.warned_refused, || {
                format!("{e}; later refusals this session are only counted")
            });
        }
        FetchError::Store(e) => {
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
        }
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
    uploads: UploadCounts,
}

impl RemoteSummary {
    fn of(r: &RemoteState, uploads: &UploadCounts) -> RemoteSummary {
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
