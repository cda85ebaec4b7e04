//! The remote tier as a session uses it (level two behind the local
//! cache; see the module doc of [`super`], "The remote tier"): fetches of
//! local misses into level one, uploads of puts, what it did, and its
//! warnings, once each.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::books::Books;
use super::prefetch::{Claim, Prefetch, PrefetchOptions};
use super::protocol::Response;
use super::protocol::{Timeline, lock};
use crate::cachedir::store::LocalStore;
use crate::layout::{ActionEntry, EntryName, Id};
use crate::model::UnixTime;
use crate::remote::manifest::{self, BuildKey, Manifest};
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
    /// The session manifest's build key, and how much to prefetch from
    /// it ([`crate::remote::manifest`]); `None`: no manifest read or
    /// written.
    pub manifest: Option<(BuildKey, PrefetchOptions)>,
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
    /// Lookups not asked: the store lately did not have them, and go did
    /// not store them ([`super::books::Absent`]).
    known_absent: AtomicU64,
    /// The credentials were refused: the store is left alone from then on.
    off: AtomicBool,
    /// A store error was reported (once per session).
    warned: AtomicBool,
    /// A refused object was reported (once per session).
    warned_refused: AtomicBool,
    /// What the session used, in order of first use, for its manifest
    /// (not kept in read-only mode).
    used: Mutex<UsedLog>,
    /// The manifest read at start, merged into the one written at close.
    previous: Mutex<Option<Manifest>>,
    /// The manifest's entries fetched ahead of go.
    pub(super) prefetch: Prefetch,
    /// The manifest was read (or found missing or unreadable): only then
    /// is one written at close, merged with it.
    manifest_read: AtomicBool,
    /// The manifest was written at close.
    manifest_written: AtomicBool,
}

/// The entries a session used, each once, in order.
#[derive(Default)]
struct UsedLog {
    order: Vec<(Id, Id, u64)>,
    /// Keyed by the IDs' own bits: they are hashes already.
    seen: HashSet<Id, crate::layout::IdHash>,
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
            known_absent: AtomicU64::new(0),
            off: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            warned_refused: AtomicBool::new(false),
            used: Mutex::new(UsedLog::default()),
            previous: Mutex::new(None),
            prefetch: Prefetch::default(),
            manifest_read: AtomicBool::new(false),
            manifest_written: AtomicBool::new(false),
        }
    }

    /// Notes that the session used `entry`, for its manifest.
    fn note_used(&self, entry: &ActionEntry) {
        if self.cfg.manifest.is_none() || self.cfg.recorder.is_none() {
            return;
        }
        let mut u = lock(&self.used);
        if u.seen.insert(entry.action) {
            u.order.push((entry.action, entry.output, entry.size));
        }
    }

    /// The store's name, as the summary line gives it.
    pub(super) fn name(&self) -> &str {
        &self.cfg.name
    }

    /// True when this session reads a manifest and prefetches from it.
    pub(super) fn prefetches(&self) -> bool {
        self.cfg.manifest.is_some() && !self.off.load(Ordering::Relaxed)
    }

    /// On the prefetch's thread from the start: at the first sign that
    /// level one lacks something ([`super::prefetch::Prefetch::
    /// local_miss`]), reads the build key's manifest and, once a miss is
    /// of an entry it names, queues its entries that level one lacks; on a
    /// warm machine the sign never comes, nothing is read, and this
    /// returns at close. Returns how many threads should work the plan
    /// (none when there is nothing to fetch). A store that fails costs one
    /// warning, as a fetch's failure does.
    pub(super) fn plan_prefetch(&self, store: &LocalStore, clock: fn() -> UnixTime) -> usize {
        let Some((key, opts)) = &self.cfg.manifest else {
            return 0;
        };
        if !self.prefetch.wait_for_miss() {
            return 0;
        }
        let now = clock();
        if self.cfg.tier.check_paused(now).is_err() {
            self.prefetch.no_plan();
            return 0;
        }
        let read = manifest::read(&**self.cfg.tier.store(), key);
        if !matches!(read, Ok(Some(_))) {
            self.prefetch.no_plan();
        }
        // What is stored is known now (nothing, or damage to replace): the
        // session's own may be written at close.
        let known = !matches!(read, Err(manifest::ManifestError::Store(_)));
        self.manifest_read.store(known, Ordering::Relaxed);
        match read {
            Ok(Some(m)) => {
                *lock(&self.previous) = Some(m.clone());
                if !self.prefetch.wait_for_sign(&m) {
                    return 0;
                }
                let n = self.prefetch.plan(&m, opts, |a| store.has_action(a));
                n.min(opts.workers.max(1))
            }
            Ok(None) => 0,
            Err(manifest::ManifestError::Store(e)) => {
                self.cfg.tier.pause_after(&e, now);
                self.prefetch.failed.fetch_add(1, Ordering::Relaxed);
                self.warn_store_error(&e);
                0
            }
            Err(e @ manifest::ManifestError::Unreadable { .. }) => {
                self.prefetch.failed.fetch_add(1, Ordering::Relaxed);
                self.warn_once(&self.warned_refused, || {
                    format!("{e}; later refusals this session are only counted")
                });
                0
            }
        }
    }

    /// One prefetch thread: fetches the plan's entries into level one
    /// until it is done, stopped or cancelled.
    pub(super) fn run_prefetch(&self, store: &LocalStore, books: &Books, clock: fn() -> UnixTime) {
        let p = &self.prefetch;
        p.enter();
        while let Some(action) = p.next() {
            let now = clock();
            let fetched = self.prefetch_one(store, books, now, action);
            p.done(action, fetched);
        }
        p.leave();
    }

    /// Fetches `action` into level one ahead of go: true when it is there
    /// now because of this.
    fn prefetch_one(&self, store: &LocalStore, books: &Books, now: UnixTime, action: Id) -> bool {
        let p = &self.prefetch;
        if self.off.load(Ordering::Relaxed) {
            p.halt();
            return false;
        }
        // Level one has it (go built it, or a get fetched it, since the
        // plan; on a warm machine, all of them). Only looked at: a get
        // marks an entry used, and go may never ask for this one.
        if store.has_action(action) {
            return false;
        }
        let landed = land(
            store,
            action,
            now,
            |file| manifest::Cancellable {
                inner: file,
                cancel: &p.cancel,
            },
            |sink| self.cfg.tier.prefetch(action, sink, now),
        );
        let entry = match landed {
            Landed::Put(entry) => entry,
            Landed::NoRoom => {
                p.failed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Landed::NotFetched(fetched) => {
                p.missed.fetch_add(1, Ordering::Relaxed);
                match fetched {
                    None => {}
                    // The store is paused (down): the plan goes, and go's
                    // gets go on as without one.
                    Some(FetchError::Paused(_)) => p.halt(),
                    Some(_) if p.cancel.load(Ordering::Relaxed) => {}
                    Some(e) => {
                        p.failed.fetch_add(1, Ordering::Relaxed);
                        if matches!(&e, FetchError::Store(s) if s.is_unavailable()) {
                            p.halt();
                        }
                        self.warn_fetch_error(e);
                    }
                }
                return false;
            }
            Landed::NotPut(e) => {
                p.failed.fetch_add(1, Ordering::Relaxed);
                self.warn_not_put(&e);
                return false;
            }
        };
        p.fetched.fetch_add(1, Ordering::Relaxed);
        p.fetched_bytes.fetch_add(entry.size, Ordering::Relaxed);
        // Written now (an output level one had already may have been
        // marked: a trim then keeps it once, as used since its plan).
        books.used(
            [EntryName::action(action), EntryName::data(entry.output)],
            now,
            false,
            [false, false],
        );
        true
    }

    /// A fetched entry that level one could not take: built locally.
    fn warn_not_put(&self, e: &crate::error::Error) {
        self.warn_once(&self.warned, || {
            format!("{e} (fetched from {}); building it locally", self.cfg.name)
        });
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
            self.note_used(entry);
        }
        self.prefetch.note_hit(entry.action);
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
        self.note_used(&entry);
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
    /// The session's manifest is written beside it, within the same
    /// bound (on a thread of its own, so the bound holds whatever the
    /// store does).
    ///
    /// `reported` is what this machine reported lately (see
    /// [`crate::remote::tier::REPORT_AGAIN_AFTER`]); returns the set of
    /// uses the last log reported, when it held the whole session's.
    pub(super) fn drain(
        &self,
        timeline: &Timeline,
        now: UnixTime,
        reported: std::collections::HashMap<Id, UnixTime>,
    ) -> Option<(Id, UnixTime)> {
        let deadline = std::time::Instant::now() + self.cfg.drain;
        let manifest = self.start_manifest_write(now);
        if let Some(rec) = &self.cfg.recorder {
            rec.reported_lately(reported);
        }
        if let Some(up) = lock(&self.uploader).take() {
            let counts = up.drain(deadline);
            timeline.note("remote-drained", 0, counts.logs_written);
        }
        if let Some(rx) = manifest {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ok = matches!(rx.recv_timeout(left), Ok(Ok(())));
            self.manifest_written.store(ok, Ordering::Relaxed);
            timeline.note("manifest-written", 0, u64::from(ok));
        }
        self.cfg.recorder.as_ref().and_then(|r| r.reported())
    }

    /// Starts writing the session's manifest, when it has one to write
    /// (not read-only, the store not paused or refusing, the manifest read
    /// this session, something used, and not what was read over again, in
    /// any order). A session that never read it missed nothing the store
    /// could have had: a warm build, whose entries the manifest's writer
    /// (the session that built or fetched them) named already.
    fn start_manifest_write(
        &self,
        now: UnixTime,
    ) -> Option<std::sync::mpsc::Receiver<Result<(), crate::remote::StoreError>>> {
        let (key, _) = self.cfg.manifest.as_ref()?;
        self.cfg.recorder.as_ref()?;
        if !self.manifest_read.load(Ordering::Relaxed) {
            return None;
        }
        if self.off.load(Ordering::Relaxed) || self.cfg.tier.check_paused(now).is_err() {
            return None;
        }
        let used = std::mem::take(&mut lock(&self.used).order);
        if used.is_empty() {
            return None;
        }
        let previous = lock(&self.previous).take();
        let m = Manifest::merge(key.clone(), &used, previous.as_ref());
        if previous.as_ref().is_some_and(|p| p.same_entries(&m)) {
            return None;
        }
        let store = self.cfg.tier.store().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("gocache-manifest".into())
            .spawn(move || {
                let _ = tx.send(manifest::write(&*store, &m));
            })
            .ok()?;
        Some(rx)
    }
}

/// After a local miss: the prefetch may have the entry in flight (the get
/// waits for it) or just brought it (level one has it now). `Some` when
/// the get is answered from level one.
pub(super) fn from_prefetch(
    remote: &RemoteState,
    store: &LocalStore,
    books: &Books,
    now: UnixTime,
    id: i64,
    action: Id,
) -> Option<Response> {
    if remote.prefetch.claim(action) != Claim::Arrived {
        return None;
    }
    let hit = store.get(action, now)?;
    let (entry, marked) = (hit.entry, hit.marked);
    remote.prefetch.note_hit(action);
    remote.hits.fetch_add(1, Ordering::Relaxed);
    remote.hit_bytes.fetch_add(entry.size, Ordering::Relaxed);
    if let Some(rec) = &remote.cfg.recorder {
        rec.record_use(entry.action, entry.output, now);
    }
    remote.note_used(&entry);
    let oname = EntryName::data(entry.output);
    books.used([EntryName::action(action), oname], now, false, marked);
    Some(Response::hit(id, &entry, store.disk_path(&oname)))
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
    // The store did not have it lately, and go did not store it.
    if books.absent.has(&action) {
        remote.known_absent.fetch_add(1, Ordering::Relaxed);
        return Response::miss(id);
    }
    remote.prefetch.local_miss(action);
    let landed = land(
        store,
        action,
        now,
        |file| file,
        |sink| remote.cfg.tier.fetch(action, sink, now),
    );
    let entry = match landed {
        Landed::Put(entry) => entry,
        Landed::NoRoom => {
            remote.errors.fetch_add(1, Ordering::Relaxed);
            return Response::miss(id);
        }
        Landed::NotFetched(e) => {
            if e.is_none() {
                books.absent.missed(action);
            }
            count_miss(remote, e);
            return Response::miss(id);
        }
        Landed::NotPut(e) => {
            remote.errors.fetch_add(1, Ordering::Relaxed);
            remote.warn_not_put(&e);
            return Response::miss(id);
        }
    };
    let oname = EntryName::data(entry.output);
    remote.hits.fetch_add(1, Ordering::Relaxed);
    remote.hit_bytes.fetch_add(entry.size, Ordering::Relaxed);
    remote.note_used(&entry);
    // Level one missed and now holds the entry: to the index and the trace
    // this is a put (a miss, then a put whose cost is the download, not a
    // rebuild), so that a local policy learns what evicting it costs.
    books.used(
        [EntryName::action(action), oname],
        now,
        false,
        [false, false],
    );
    let allocated = entry.size.div_ceil(4096) * 4096;
    books.event(|log, t, at| {
        log.put(&action, t, at);
        crate::trace::TraceEvent::put(t, &action, &entry.output, allocated, None)
    });
    Response::hit(id, &entry, store.disk_path(&oname))
}

/// How fetching an entry into level one ended (see [`land`]).
enum Landed {
    /// Fetched, checked and put in place.
    Put(ActionEntry),
    /// No temporary file could be made in level one.
    NoRoom,
    /// A miss in the store (`None`) or a failed fetch; nothing is left.
    NotFetched(Option<FetchError>),
    /// Fetched, but level one would not take it; nothing is left.
    NotPut(crate::error::Error),
}

/// Streams `action`'s output from the store (`get`: the tier's fetch or
/// prefetch, which check its length and SHA-256) into a temporary file in
/// level one, through `wrap` around the file, and puts it in place with
/// its action entry. Whatever fails, no temporary file is left.
fn land<W: std::io::Write>(
    store: &LocalStore,
    action: Id,
    now: UnixTime,
    wrap: impl FnOnce(std::fs::File) -> W,
    get: impl FnOnce(&mut dyn std::io::Write) -> Result<Option<ActionEntry>, FetchError>,
) -> Landed {
    let Ok((tmp, file)) = store.create_tmp(action.subdir()) else {
        return Landed::NoRoom;
    };
    let mut sink = std::io::BufWriter::with_capacity(64 << 10, wrap(file));
    let fetched = get(&mut sink).and_then(|e| flushed(&mut sink, action).map(|()| e));
    drop(sink);
    let entry = match fetched {
        Ok(Some(entry)) => entry,
        other => {
            store.discard(&tmp);
            return Landed::NotFetched(other.err());
        }
    };
    match store.put(tmp, &entry, now) {
        Ok(()) => Landed::Put(entry),
        Err(e) => Landed::NotPut(e),
    }
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
    match &err {
        FetchError::Paused(_) => {
            remote.skipped.fetch_add(1, Ordering::Relaxed);
        }
        FetchError::Corrupt { .. } | FetchError::BadAction { .. } => {
            remote.refused.fetch_add(1, Ordering::Relaxed);
        }
        FetchError::Store(_) => {
            remote.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    remote.warn_fetch_error(err);
}

impl RemoteState {
    /// Warns once about a refusal or a store error (a get's or a
    /// prefetch's: one warning each per session, whoever met it).
    fn warn_fetch_error(&self, err: FetchError) {
        match err {
            FetchError::Paused(_) => {}
            e @ (FetchError::Corrupt { .. } | FetchError::BadAction { .. }) => {
                self.warn_once(&self.warned_refused, || {
                    format!("{e}; later refusals this session are only counted")
                });
            }
            FetchError::Store(e) => self.warn_store_error(&e),
        }
    }

    fn warn_store_error(&self, e: &crate::remote::StoreError) {
        let then = if e.is_denied() {
            self.off.store(true, Ordering::Relaxed);
            "building from the local cache only for the rest of this session"
        } else if e.is_unavailable() {
            "building from the local cache; the store is asked again in 30 s"
        } else {
            "building that entry locally"
        };
        self.warn_once(&self.warned, || format!("{e}; {then}"));
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
    known_absent: u64,
    uploads: UploadCounts,
    /// Planned from the manifest, fetched (and bytes), used by go, not
    /// fetched, of which errors.
    prefetch: [u64; 6],
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
            known_absent: l(&r.known_absent),
            uploads: uploads.clone(),
            prefetch: {
                let p = &r.prefetch;
                [
                    l(&p.planned),
                    l(&p.fetched),
                    l(&p.fetched_bytes),
                    l(&p.used),
                    l(&p.missed),
                    l(&p.failed),
                ]
            },
        }
    }

    fn anything(&self) -> bool {
        let u = &self.uploads;
        self.hits + self.misses + self.refused + self.errors + self.skipped > 0
            || u.queued + u.dropped + u.failed > 0
            || self.prefetch[0] + self.prefetch[5] > 0
    }

    /// Still queued or uploading when the deadline came.
    fn unfinished(&self) -> u64 {
        let u = &self.uploads;
        u.queued.saturating_sub(u.uploaded + u.failed)
    }

    fn line(&self, name: &str, drain: std::time::Duration) -> String {
        let u = &self.uploads;
        let size = |b| humansize::format_size(b, humansize::BINARY);
        // Uploads: the entries' bytes, and what went over the wire (as
        // stored: compressed where it paid) when that differs.
        let uploaded = if u.stored_bytes != u.upload_bytes {
            format!("{}, {} sent", size(u.upload_bytes), size(u.stored_bytes))
        } else {
            size(u.upload_bytes)
        };
        let [planned, fetched, fetched_bytes, used, missed, failed] = self.prefetch;
        let mut s = format!(
            "remote {name}: {} hits ({}), {} misses, {} uploaded ({uploaded}), {} dropped, {} refused, {} errors",
            self.hits,
            size(self.hit_bytes),
            self.misses,
            u.uploaded,
            u.dropped,
            self.refused,
            self.errors + u.failed + failed,
        );
        if planned > 0 {
            s += &format!(
                "; prefetched {fetched} of {planned} in the manifest ({}), {used} used by go, {missed} not fetched",
                size(fetched_bytes)
            );
        }
        if self.skipped > 0 {
            s += &format!(", {} not asked (store paused or refused)", self.skipped);
        }
        if self.known_absent > 0 {
            s += &format!(
                ", {} not asked (the store lacked them lately, go stores none)",
                self.known_absent
            );
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
