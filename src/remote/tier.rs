//! What `gocache prog` calls: verified fetches, background uploads through
//! a bounded queue, and use logs in batches.
//!
//! - [`RemoteTier::fetch`] looks an action up in the store and streams its
//!   output into a sink the caller supplies (a temp file in level one),
//!   decompressing it if it is stored compressed, and checking the
//!   output's length and SHA-256 against the action entry before saying
//!   yes. The caller renames the temp file into place only
//!   on `Ok(Some(_))`, so a bad object never reaches a build.
//! - [`Uploader`] takes puts without ever blocking ([`Uploader::try_enqueue`]
//!   drops a job when the queue is full, and counts it), uploads them on
//!   its own threads (output first, compressed where it pays, then the
//!   action entry, which says which form the output took, so an action
//!   entry never names a missing output), and [`Uploader::drain`] finishes
//!   within a deadline, abandoning what is left.
//! - [`UseRecorder`] collects the session's uses and counters and writes
//!   them as a use log every [`LOG_BATCH`] uses or [`LOG_INTERVAL`] seconds,
//!   and at close unless this machine reported the same uses within
//!   [`REPORT_AGAIN_AFTER`] (a warm build run again writes nothing).
//!
//! When the store is unreachable or overloaded, the tier pauses for
//! [`PAUSE`] seconds: fetches answer [`FetchError::Paused`] at once (a
//! miss) and uploads are skipped, so a down store costs one timeout, not
//! one per entry. Wrong credentials pause the uploader for good. Read-only
//! sessions create no uploader and write no use logs.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest;

use super::codec::{self, DecodeFault, Decoding, Encoded};
use super::keys::{self, UsesKind, UsesName};
use super::store::{ObjectStore, Op, PutBody, StoreError, meta_value};
use super::uses::{SessionCounts, SessionId, Uses};
use crate::layout::{ACTION_ENTRY_SIZE, ActionEntry, Id};
use crate::model::UnixTime;

/// Uses per log, at most.
pub const LOG_BATCH: usize = 4096;
/// Seconds between logs while uses are pending. A trim's grace period must
/// be well above this (the default, one hour, is).
pub const LOG_INTERVAL: i64 = 60;
/// Seconds the tier stops asking a store that is down.
pub const PAUSE: i64 = 30;
/// A session whose uses are, all of them, a set this machine reported to
/// the store less than this long ago writes no use log at close (its
/// counters are all zero then: it asked the store nothing). A warm build
/// run again and again costs the store nothing, and the fleet's last use
/// of what it used lags by at most this (cargo's last-use tracking updates
/// a timestamp only after five minutes for the same reason), so a trim's
/// grace period must be well above it plus [`LOG_INTERVAL`]; the default,
/// one hour, is.
pub const REPORT_AGAIN_AFTER: i64 = 15 * 60;

/// A clock, injected: Unix seconds.
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// Collects a session's uses and counters; writes them as use logs.
pub struct UseRecorder {
    session: SessionId,
    state: Mutex<RecorderState>,
    /// The sets of uses this machine reported lately (see
    /// [`UseRecorder::reported_lately`]).
    lately: Mutex<std::collections::HashMap<Id, UnixTime>>,
}

struct RecorderState {
    pending: Uses,
    records: usize,
    counts: SessionCounts,
    counts_dirty: bool,
    last_flush: UnixTime,
    /// A log was written this session: the last one holds only a part.
    logged: bool,
    /// The last log held the whole session's uses: their fingerprint
    /// ([`Uses::fingerprint`]) and when it was written.
    reported: Option<(Id, UnixTime)>,
}

/// What [`UseRecorder::flush_last`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastLog {
    /// Written, under this key.
    Written(String),
    /// Nothing was pending.
    Nothing,
    /// The session used what this machine reported lately, and asked the
    /// store nothing: no log ([`REPORT_AGAIN_AFTER`]).
    ReportedLately,
}

impl UseRecorder {
    /// A recorder for a session starting at `now`.
    pub fn new(now: UnixTime) -> UseRecorder {
        UseRecorder {
            session: SessionId::new(now),
            state: Mutex::new(RecorderState {
                pending: Uses::default(),
                records: 0,
                counts: SessionCounts::default(),
                counts_dirty: false,
                last_flush: now,
                logged: false,
                reported: None,
            }),
            lately: Mutex::default(),
        }
    }

    /// The sets of uses this machine reported to the store lately, by
    /// fingerprint, with when (kept in the index between sessions): a
    /// session whose uses are one of them, reported less than
    /// [`REPORT_AGAIN_AFTER`] ago, writes no log at close.
    pub fn reported_lately(&self, sets: std::collections::HashMap<Id, UnixTime>) {
        *self.lately.lock().unwrap() = sets;
    }

    /// The session's last log held all its uses: their fingerprint and
    /// when it was written, for the next sessions' [`Self::reported_lately`].
    pub fn reported(&self) -> Option<(Id, UnixTime)> {
        self.state.lock().unwrap().reported
    }

    /// This session's ID.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Records a use of `action`, naming `output`, at `now`: a remote hit,
    /// an upload, or a local hit on an entry the store holds.
    pub fn record_use(&self, action: Id, output: Id, now: UnixTime) {
        let mut s = self.state.lock().unwrap();
        s.pending.record(action, output, now);
        s.records += 1;
    }

    /// Updates the session's counters.
    pub fn count(&self, now: UnixTime, f: impl FnOnce(&mut SessionCounts)) {
        let mut s = self.state.lock().unwrap();
        f(&mut s.counts);
        s.counts.last = s.counts.last.max(now);
        s.counts_dirty = true;
    }

    /// The session's counters so far.
    pub fn counts(&self) -> SessionCounts {
        self.state.lock().unwrap().counts
    }

    /// True when uses or counters wait to be written.
    pub fn has_pending(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.records > 0 || s.counts_dirty
    }

    /// True when a log should be written now.
    pub fn due(&self, now: UnixTime) -> bool {
        let s = self.state.lock().unwrap();
        s.records >= LOG_BATCH
            || ((s.records > 0 || s.counts_dirty) && now - s.last_flush >= LOG_INTERVAL)
    }

    /// Writes what is pending as one use log (`uses/log-…`), with the
    /// session's counters so far. Nothing pending: nothing written. On
    /// failure the uses stay pending for the next try.
    pub fn flush(
        &self,
        store: &dyn ObjectStore,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError> {
        self.write_log(store, now, false).map(|l| match l {
            LastLog::Written(key) => Some(key),
            LastLog::Nothing | LastLog::ReportedLately => None,
        })
    }

    /// The session's last log, at close: as [`UseRecorder::flush`], except
    /// that a session that wrote no log before, asked the store nothing
    /// (its counters unchanged), and used exactly a set this machine
    /// reported less than [`REPORT_AGAIN_AFTER`] ago writes none.
    pub fn flush_last(
        &self,
        store: &dyn ObjectStore,
        now: UnixTime,
    ) -> Result<LastLog, StoreError> {
        self.write_log(store, now, true)
    }

    fn write_log(
        &self,
        store: &dyn ObjectStore,
        now: UnixTime,
        last: bool,
    ) -> Result<LastLog, StoreError> {
        let (mut batch, records, whole) = {
            let mut s = self.state.lock().unwrap();
            if s.records == 0 && !s.counts_dirty {
                return Ok(LastLog::Nothing);
            }
            let whole = (last && !s.logged).then(|| s.pending.fingerprint());
            if let Some(fp) = whole
                && !s.counts_dirty
                && self
                    .lately
                    .lock()
                    .unwrap()
                    .get(&fp)
                    .is_some_and(|&at| at <= now && now - at < REPORT_AGAIN_AFTER)
            {
                s.pending = Uses::default();
                s.records = 0;
                return Ok(LastLog::ReportedLately);
            }
            let mut batch = std::mem::take(&mut s.pending);
            let mut counts = s.counts;
            counts.last = counts.last.max(now);
            batch.sessions.insert(self.session, counts);
            s.counts_dirty = false;
            s.last_flush = now;
            (batch, std::mem::take(&mut s.records), whole)
        };
        let name = UsesName::new(UsesKind::Log, now);
        match store.put(&name.key(), PutBody::Bytes(&batch.encode())) {
            Ok(()) => {
                let mut s = self.state.lock().unwrap();
                s.logged = true;
                s.reported = whole.map(|fp| (fp, now));
                Ok(LastLog::Written(name.key()))
            }
            Err(e) => {
                let mut s = self.state.lock().unwrap();
                batch.sessions.clear();
                s.pending.merge(&batch);
                s.records += records;
                s.counts_dirty = true;
                Err(e)
            }
        }
    }
}

/// Why a fetch served nothing.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The tier is paused after the store failed; treat as a miss, and do
    /// not warn again.
    #[error("the remote tier is paused until {0} after an error")]
    Paused(UnixTime),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The action object is not Go's action entry for its key.
    #[error("{store}: {key} is not a valid action entry ({why}); ignored")]
    BadAction {
        /// The store.
        store: String,
        /// The object's key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The output does not match its name or the size its action entry
    /// gives.
    #[error(
        "{store}: {key} is corrupt ({why}); refused: nothing from it was used (delete the object; the entry is built locally)"
    )]
    Corrupt {
        /// The store.
        store: String,
        /// The object's key.
        key: String,
        /// What is wrong.
        why: String,
    },
}

/// A sink that hashes what passes through it.
struct Hashing<'a> {
    inner: &'a mut dyn Write,
    hash: sha2::Sha256,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The store as level two: verified fetches.
pub struct RemoteTier {
    store: Arc<dyn ObjectStore>,
    recorder: Option<Arc<UseRecorder>>,
    paused_until: AtomicI64,
}

impl RemoteTier {
    /// A tier over `store`. With a recorder, verified hits are recorded as
    /// uses; without one (read-only mode), nothing is ever written.
    pub fn new(store: Arc<dyn ObjectStore>, recorder: Option<Arc<UseRecorder>>) -> RemoteTier {
        RemoteTier {
            store,
            recorder,
            paused_until: AtomicI64::new(i64::MIN),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Looks up `action`. On a hit, the output's bytes have been written
    /// to `sink` and checked: its length is the action entry's size and
    /// its SHA-256 is the output ID. `Ok(None)` is a miss. On any error the
    /// sink may hold unverified bytes: discard them.
    pub fn fetch(
        &self,
        action: Id,
        sink: &mut dyn Write,
        now: UnixTime,
    ) -> Result<Option<ActionEntry>, FetchError> {
        let r = self.fetch_unpaused(action, sink, now);
        if let Some(rec) = &self.recorder {
            rec.count(now, |c| {
                c.lookups += 1;
                match &r {
                    Ok(Some(e)) => {
                        c.hits += 1;
                        c.download_bytes += e.size;
                    }
                    Ok(None) => {}
                    Err(FetchError::Corrupt { .. } | FetchError::BadAction { .. }) => {
                        c.refused += 1
                    }
                    Err(_) => c.errors += 1,
                }
            });
            if let Ok(Some(e)) = &r {
                rec.record_use(e.action, e.output, now);
            }
        }
        r
    }

    /// [`RemoteTier::fetch`] ahead of go (a prefetch): the same checks,
    /// but neither a lookup nor a use (go's get of the entry, if it comes,
    /// is the use); its bytes count as downloaded.
    pub fn prefetch(
        &self,
        action: Id,
        sink: &mut dyn Write,
        now: UnixTime,
    ) -> Result<Option<ActionEntry>, FetchError> {
        let r = self.fetch_unpaused(action, sink, now);
        if let (Some(rec), Ok(Some(e))) = (&self.recorder, &r) {
            rec.count(now, |c| c.download_bytes += e.size);
        }
        r
    }

    /// The fetch of [`RemoteTier::fetch`] and [`RemoteTier::prefetch`]:
    /// `Err(Paused)` while the tier is paused, and a store error pauses it.
    fn fetch_unpaused(
        &self,
        action: Id,
        sink: &mut dyn Write,
        now: UnixTime,
    ) -> Result<Option<ActionEntry>, FetchError> {
        self.check_paused(now)?;
        let r = self.fetch_inner(action, sink);
        if let Err(FetchError::Store(e)) = &r {
            self.pause_after(e, now);
        }
        r
    }

    /// `Err(Paused)` while the tier is paused.
    pub fn check_paused(&self, now: UnixTime) -> Result<(), FetchError> {
        let until = self.paused_until.load(Ordering::Relaxed);
        if now < until {
            return Err(FetchError::Paused(until));
        }
        Ok(())
    }

    /// Pauses the tier for [`PAUSE`] seconds from `now` when `e` says the
    /// store is unreachable or overloaded.
    pub fn pause_after(&self, e: &StoreError, now: UnixTime) {
        if e.is_unavailable() {
            self.paused_until.store(now + PAUSE, Ordering::Relaxed);
        }
    }

    fn fetch_inner(
        &self,
        action: Id,
        sink: &mut dyn Write,
    ) -> Result<Option<ActionEntry>, FetchError> {
        let akey = keys::action_key(action);
        let mut data = Vec::new();
        let got = self
            .store
            .get_with_meta(&akey, ACTION_ENTRY_SIZE as u64, &mut data)
            .map_err(|e| match e {
                StoreError::TooLarge { size, .. } => FetchError::BadAction {
                    store: self.store.describe(),
                    key: akey.clone(),
                    why: format!("{size} bytes or more, not {ACTION_ENTRY_SIZE}"),
                },
                e => e.into(),
            })?;
        let Some((_, meta)) = got else {
            return Ok(None);
        };
        let entry = ActionEntry::parse(&data, Some(action)).map_err(|e| FetchError::BadAction {
            store: self.store.describe(),
            key: akey,
            why: e.to_string(),
        })?;
        // The form the action entry names first; the other if that one is
        // gone (a store that drops metadata, or a writer of the other form
        // racing this one), as a miss costs a round trip anyway.
        let compressed_first = meta_value(&meta, keys::OUTPUT_FORM) == Some(keys::ZSTD);
        for compressed in [compressed_first, !compressed_first] {
            let mut hashing = Hashing {
                inner: &mut *sink,
                hash: sha2::Sha256::new(),
            };
            let got = if compressed {
                self.get_compressed(&entry, &mut hashing)?
            } else {
                self.get_as_is(&entry, &mut hashing)?
            };
            let Some(got) = got else { continue };
            let okey = if compressed {
                keys::compressed_key(entry.output, entry.size)
            } else {
                keys::output_key(entry.output)
            };
            if got != entry.size {
                return Err(FetchError::Corrupt {
                    store: self.store.describe(),
                    key: okey,
                    why: format!("{got} bytes, but its action entry says {}", entry.size),
                });
            }
            let digest: [u8; 32] = hashing.hash.finalize().into();
            if Id(digest) != entry.output {
                return Err(FetchError::Corrupt {
                    store: self.store.describe(),
                    key: okey,
                    why: format!("its SHA-256 is {}, not its name", Id(digest)),
                });
            }
            return Ok(Some(entry));
        }
        // The action entry names an output that is gone: a miss.
        Ok(None)
    }

    /// Streams `o/<output>` into `sink`: its length, or `None` if absent.
    fn get_as_is(
        &self,
        entry: &ActionEntry,
        sink: &mut dyn Write,
    ) -> Result<Option<u64>, FetchError> {
        let okey = keys::output_key(entry.output);
        match self.store.get(&okey, entry.size, sink) {
            Err(StoreError::TooLarge { size, .. }) => Err(FetchError::Corrupt {
                store: self.store.describe(),
                key: okey,
                why: format!(
                    "{size} bytes or more, but its action entry says {}",
                    entry.size
                ),
            }),
            r => Ok(r?),
        }
    }

    /// Streams `z/<output>.<size>` into `sink`, decompressed: the length
    /// decompressed, or `None` if absent. Compressed, it is never larger
    /// than the output (the uploader stores it only when it is smaller);
    /// decompressed, never past the output's length.
    fn get_compressed(
        &self,
        entry: &ActionEntry,
        sink: &mut dyn Write,
    ) -> Result<Option<u64>, FetchError> {
        let zkey = keys::compressed_key(entry.output, entry.size);
        let corrupt = |why: String| FetchError::Corrupt {
            store: self.store.describe(),
            key: zkey.clone(),
            why,
        };
        let mut decoding = Decoding::new(sink, entry.size).map_err(|e| {
            FetchError::Store(StoreError::Local {
                op: Op::Get,
                key: zkey.clone(),
                cause: e,
            })
        })?;
        let got = self.store.get(&zkey, entry.size, &mut decoding);
        let fault = decoding.fault();
        let fault_error = |f: DecodeFault| match f {
            DecodeFault::TooLong => corrupt(format!(
                "it decompresses to more than the {} bytes its action entry says",
                entry.size
            )),
            DecodeFault::Invalid(why) => corrupt(format!("not a valid zstd stream: {why}")),
            DecodeFault::Sink(kind, why) => FetchError::Store(StoreError::Local {
                op: Op::Get,
                key: zkey.clone(),
                cause: std::io::Error::new(kind, why),
            }),
        };
        match got {
            Ok(Some(_)) => decoding.finish().map(Some).map_err(fault_error),
            Ok(None) => Ok(None),
            Err(StoreError::TooLarge { size, .. }) => Err(corrupt(format!(
                "{size} bytes or more compressed, but its action entry says {} in all",
                entry.size
            ))),
            Err(e @ StoreError::Local { .. }) => Err(match fault {
                Some(f) => fault_error(f),
                None => e.into(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// One entry to upload.
pub struct UploadJob {
    /// The action entry (its size is the output's).
    pub entry: ActionEntry,
    /// The output's bytes.
    pub body: UploadBody,
}

/// An output's bytes: in memory, or an open file (opened by the caller
/// through its directory descriptor; an open file survives a trim
/// unlinking it).
pub enum UploadBody {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// An open file.
    File(std::fs::File),
}

/// Limits of the upload queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploaderOptions {
    /// Upload threads.
    pub workers: usize,
    /// Jobs waiting, at most (each may hold an open file).
    pub max_jobs: usize,
    /// Bytes waiting in memory, at most.
    pub max_bytes: u64,
    /// The zstd level outputs are compressed with (where it pays; see
    /// [`codec`]), 1 to [`codec::MAX_LEVEL`]; `None` stores every output
    /// as it is, as versions before compression did and read.
    pub compression: Option<i32>,
}

impl Default for UploaderOptions {
    fn default() -> UploaderOptions {
        UploaderOptions {
            workers: 4,
            max_jobs: 512,
            max_bytes: 256 << 20,
            compression: Some(codec::DEFAULT_LEVEL),
        }
    }
}

/// What the uploader did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UploadCounts {
    /// Jobs taken into the queue.
    pub queued: u64,
    /// Entries uploaded (output and action entry).
    pub uploaded: u64,
    /// Their bytes (outputs at their length, before compression).
    pub upload_bytes: u64,
    /// Of those entries, the ones whose output was stored compressed.
    pub compressed: u64,
    /// The bytes they took in the store (outputs as stored).
    pub stored_bytes: u64,
    /// Jobs refused because the queue was full or closed.
    pub dropped: u64,
    /// Jobs that failed or were skipped while the store was paused.
    pub failed: u64,
    /// Jobs still queued or running when the deadline came.
    pub abandoned: u64,
    /// The first error, for the one warning.
    pub first_error: Option<String>,
    /// Use logs written.
    pub logs_written: u64,
    /// True when the final use log could not be written in time.
    pub log_lost: bool,
}

struct Queue {
    jobs: VecDeque<UploadJob>,
    bytes: u64,
    running: usize,
    closed: bool,
}

struct Shared {
    store: Arc<dyn ObjectStore>,
    recorder: Arc<UseRecorder>,
    clock: Clock,
    opts: UploaderOptions,
    queue: Mutex<Queue>,
    work: Condvar,
    idle: Condvar,
    counts: Mutex<UploadCounts>,
    /// Unix seconds until which uploads are skipped; `i64::MAX` for good
    /// (credentials refused).
    paused_until: AtomicI64,
}

/// Background uploads through a bounded queue.
pub struct Uploader {
    shared: Arc<Shared>,
    /// The flusher (worker 0) from the start; the others from the first
    /// upload, so that a session that uploads nothing (a warm build)
    /// starts one thread, not [`UploaderOptions::workers`].
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The workers besides the flusher were started.
    all_started: std::sync::atomic::AtomicBool,
}

impl Uploader {
    /// Starts the upload threads. Uploads are recorded as uses in
    /// `recorder`, which the threads also flush as logs fall due.
    pub fn start(
        store: Arc<dyn ObjectStore>,
        recorder: Arc<UseRecorder>,
        opts: UploaderOptions,
        clock: Clock,
    ) -> Uploader {
        let shared = Arc::new(Shared {
            store,
            recorder,
            clock,
            opts,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                bytes: 0,
                running: 0,
                closed: false,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            counts: Mutex::new(UploadCounts::default()),
            paused_until: AtomicI64::new(i64::MIN),
        });
        let workers = Mutex::new(vec![spawn_worker(&shared, 0)]);
        Uploader {
            shared,
            workers,
            all_started: Default::default(),
        }
    }

    /// Starts the workers besides the flusher, at the first upload.
    fn start_the_rest(&self) {
        if self.all_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let n = self.shared.opts.workers.max(1);
        let mut w = self.workers.lock().unwrap();
        w.extend((1..n).map(|i| spawn_worker(&self.shared, i)));
    }

    /// Queues a job without waiting. False (and counted as dropped) when
    /// the queue is full or closed.
    pub fn try_enqueue(&self, job: UploadJob) -> bool {
        let mem = match &job.body {
            UploadBody::Bytes(b) => b.len() as u64,
            UploadBody::File(_) => 0,
        };
        let mut q = self.shared.queue.lock().unwrap();
        let full = q.jobs.len() >= self.shared.opts.max_jobs
            || (mem > 0 && q.bytes + mem > self.shared.opts.max_bytes);
        if q.closed || full {
            drop(q);
            self.shared.counts.lock().unwrap().dropped += 1;
            return false;
        }
        q.jobs.push_back(job);
        q.bytes += mem;
        drop(q);
        self.start_the_rest();
        self.shared.counts.lock().unwrap().queued += 1;
        self.shared.work.notify_one();
        true
    }

    /// What the uploader did so far.
    pub fn counts(&self) -> UploadCounts {
        self.shared.counts.lock().unwrap().clone()
    }

    /// Waits until every job queued so far is done, or `deadline`; true
    /// when none is left. The queue stays open and nothing is abandoned:
    /// `gocache prog` calls this before it answers `close` (so a build's
    /// uploads are in the store when go exits) and [`Uploader::drain`]
    /// after (the last use log, which go need not wait for).
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let sh = &self.shared;
        let mut q = sh.queue.lock().unwrap();
        while !(q.jobs.is_empty() && q.running == 0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            q = sh.idle.wait_timeout(q, left).unwrap().0;
        }
        true
    }

    /// Closes the queue, lets the threads finish it until `deadline`, then
    /// writes the last use log if there is time. Whatever is not done by
    /// the deadline is abandoned (the threads are left to die with the
    /// process) and counted.
    pub fn drain(self, deadline: Instant) -> UploadCounts {
        let sh = &self.shared;
        let mut q = sh.queue.lock().unwrap();
        q.closed = true;
        sh.work.notify_all();
        while !(q.jobs.is_empty() && q.running == 0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = sh.idle.wait_timeout(q, left).unwrap().0;
        }
        let abandoned = (q.jobs.len() + q.running) as u64;
        q.jobs.clear();
        drop(q);
        sh.counts.lock().unwrap().abandoned += abandoned;
        // Idle threads see the closed queue and end; one still uploading
        // past the deadline is left to end with the process. Never joined
        // here: a join could wait out a store's timeout.
        drop(self.workers);
        // The last log, on a thread of its own so the deadline holds even
        // if the store hangs up to its request timeout; none while the
        // store is paused (down, or refusing these credentials).
        if (sh.clock)() < sh.paused_until.load(Ordering::Relaxed) {
            let mut c = sh.counts.lock().unwrap();
            c.log_lost = sh.recorder.has_pending();
            return c.clone();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::clone(&self.shared);
        let _ = std::thread::Builder::new()
            .name("gocache-upload-log".into())
            .spawn(move || {
                let now = (shared.clock)();
                let _ = tx.send(shared.recorder.flush_last(&*shared.store, now));
            });
        let left = deadline.saturating_duration_since(Instant::now());
        let flushed = rx.recv_timeout(left.max(Duration::from_millis(1)));
        let mut c = sh.counts.lock().unwrap();
        match flushed {
            Ok(Ok(LastLog::Written(_))) => c.logs_written += 1,
            // Nothing pending, or what this machine reported lately.
            Ok(Ok(LastLog::Nothing | LastLog::ReportedLately)) => {}
            Ok(Err(e)) => {
                c.log_lost = true;
                c.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => c.log_lost = true,
        }
        c.clone()
    }
}

fn spawn_worker(shared: &Arc<Shared>, i: usize) -> std::thread::JoinHandle<()> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(format!("gocache-upload-{i}"))
        .spawn(move || worker(&shared, i == 0))
        .expect("spawning an upload thread")
}

fn worker(sh: &Shared, flusher: bool) {
    loop {
        let job = {
            let mut q = sh.queue.lock().unwrap();
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    if let UploadBody::Bytes(b) = &job.body {
                        q.bytes -= b.len() as u64;
                    }
                    q.running += 1;
                    break Some(job);
                }
                if q.closed {
                    break None;
                }
                if flusher {
                    let wait = Duration::from_secs(LOG_INTERVAL as u64 / 4);
                    q = sh.work.wait_timeout(q, wait).unwrap().0;
                    if q.jobs.is_empty() && !q.closed {
                        drop(q);
                        flush_if_due(sh);
                        q = sh.queue.lock().unwrap();
                    }
                } else {
                    q = sh.work.wait(q).unwrap();
                }
            }
        };
        let Some(job) = job else {
            sh.idle.notify_all();
            return;
        };
        upload(sh, job);
        {
            let mut q = sh.queue.lock().unwrap();
            q.running -= 1;
            if q.jobs.is_empty() && q.running == 0 {
                sh.idle.notify_all();
            }
        }
        if flusher {
            flush_if_due(sh);
        }
    }
}

fn flush_if_due(sh: &Shared) {
    let now = (sh.clock)();
    if !sh.recorder.due(now) || now < sh.paused_until.load(Ordering::Relaxed) {
        return;
    }
    match sh.recorder.flush(&*sh.store, now) {
        Ok(Some(_)) => sh.counts.lock().unwrap().logs_written += 1,
        Ok(None) => {}
        Err(e) => note_error(sh, &e, now),
    }
}

fn note_error(sh: &Shared, e: &StoreError, now: UnixTime) {
    if e.is_denied() {
        sh.paused_until.store(i64::MAX, Ordering::Relaxed);
    } else if e.is_unavailable() {
        sh.paused_until.store(now + PAUSE, Ordering::Relaxed);
    }
    sh.counts
        .lock()
        .unwrap()
        .first_error
        .get_or_insert_with(|| e.to_string());
}

/// How an output went into the store.
struct Stored {
    compressed: bool,
    bytes: u64,
}

/// Puts the output of `entry`, compressed where that pays.
fn put_output(sh: &Shared, entry: &ActionEntry, body: &UploadBody) -> Result<Stored, StoreError> {
    let okey = keys::output_key(entry.output);
    let as_is = || {
        let put = match body {
            UploadBody::Bytes(b) => PutBody::Bytes(b),
            UploadBody::File(f) => PutBody::File {
                file: f,
                len: entry.size,
            },
        };
        sh.store.put(&okey, put).map(|()| Stored {
            compressed: false,
            bytes: entry.size,
        })
    };
    let Some(level) = sh.opts.compression else {
        return as_is();
    };
    let enc = codec::Encoder {
        level,
        size: entry.size,
    };
    let source = || -> Box<dyn std::io::Read + '_> {
        match body {
            UploadBody::Bytes(b) => Box::new(&b[..]),
            UploadBody::File(f) => Box::new(codec::FileReader::new(f, entry.size)),
        }
    };
    let encoded =
        codec::encode(source(), enc, codec::KEEP_IN_MEMORY).map_err(|cause| StoreError::Local {
            op: Op::Put,
            key: okey.clone(),
            cause,
        })?;
    let zkey = keys::compressed_key(entry.output, entry.size);
    let (put, bytes) = match encoded {
        Encoded::AsIs => return as_is(),
        Encoded::Bytes(z) => {
            let n = z.len() as u64;
            (sh.store.put(&zkey, PutBody::Bytes(&z)), n)
        }
        Encoded::Stream { len } => {
            let open = || -> std::io::Result<Box<dyn std::io::Read + '_>> {
                Ok(Box::new(enc.open(source())?))
            };
            (
                sh.store.put(&zkey, PutBody::Stream { len, open: &open }),
                len,
            )
        }
    };
    put.map(|()| Stored {
        compressed: true,
        bytes,
    })
}

fn upload(sh: &Shared, job: UploadJob) {
    let now = (sh.clock)();
    let fail = |e: Option<&StoreError>| {
        if let Some(e) = e {
            note_error(sh, e, now);
        }
        sh.counts.lock().unwrap().failed += 1;
        sh.recorder.count(now, |c| c.errors += 1);
    };
    if now < sh.paused_until.load(Ordering::Relaxed) {
        return fail(None);
    }
    let entry = job.entry;
    if let UploadBody::Bytes(b) = &job.body
        && b.len() as u64 != entry.size
    {
        let e = format!(
            "upload of {}: {} bytes, but the action entry says {}",
            entry.output,
            b.len(),
            entry.size
        );
        sh.counts.lock().unwrap().first_error.get_or_insert(e);
        return fail(None);
    }
    // The output first, then the action entry: an action entry never
    // names an output that is not there. The entry says which form the
    // output took.
    let r = put_output(sh, &entry, &job.body).and_then(|stored| {
        let meta: &[(&str, &str)] = if stored.compressed {
            &[(keys::OUTPUT_FORM, keys::ZSTD)]
        } else {
            &[]
        };
        sh.store
            .put_with_meta(
                &keys::action_key(entry.action),
                PutBody::Bytes(entry.format().as_bytes()),
                meta,
            )
            .map(|()| stored)
    });
    match r {
        Ok(stored) => {
            let bytes = entry.size + ACTION_ENTRY_SIZE as u64;
            {
                let mut c = sh.counts.lock().unwrap();
                c.uploaded += 1;
                c.upload_bytes += bytes;
                c.compressed += u64::from(stored.compressed);
                c.stored_bytes += stored.bytes + ACTION_ENTRY_SIZE as u64;
            }
            sh.recorder.record_use(entry.action, entry.output, now);
            sh.recorder.count(now, |c| {
                c.uploads += 1;
                c.upload_bytes += bytes;
            });
        }
        Err(e) => fail(Some(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::store::{DeleteReport, Metadata, ObjectMeta};
    use std::sync::atomic::AtomicBool;

    /// A store that keeps the keys put, or refuses every put: the
    /// recorder's decisions alone, which a real store cannot make fail on
    /// cue (the tests with Garage check the same behaviour end to end).
    #[derive(Default)]
    struct Puts {
        refuse: AtomicBool,
        keys: Mutex<Vec<String>>,
    }

    impl ObjectStore for Puts {
        fn get_with_meta(
            &self,
            _: &str,
            _: u64,
            _: &mut dyn Write,
        ) -> Result<Option<(u64, Metadata)>, StoreError> {
            Ok(None)
        }
        fn put_with_meta(
            &self,
            key: &str,
            _: PutBody<'_>,
            _: &[(&str, &str)],
        ) -> Result<(), StoreError> {
            if self.refuse.load(Ordering::Relaxed) {
                return Err(StoreError::NoSuchBucket {
                    store: self.describe(),
                });
            }
            self.keys.lock().unwrap().push(key.to_owned());
            Ok(())
        }
        fn head(&self, _: &str) -> Result<Option<ObjectMeta>, StoreError> {
            Ok(None)
        }
        fn list(&self, _: &str, _: &mut dyn FnMut(ObjectMeta)) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn delete_many(&self, _: &[String]) -> Result<DeleteReport, StoreError> {
            Ok(DeleteReport::default())
        }
        fn describe(&self) -> String {
            "puts".into()
        }
    }

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    /// A session of `uses` (action n naming output n + 100) at `t`.
    fn session(t: UnixTime, uses: &[u8]) -> UseRecorder {
        let rec = UseRecorder::new(t);
        for &n in uses {
            rec.record_use(id(n), id(n + 100), t);
        }
        rec
    }

    #[test]
    fn a_set_of_uses_reported_lately_is_not_reported_again_and_a_failed_put_reports_nothing() {
        let store = Puts::default();
        let first = session(1000, &[1, 2]);
        store.refuse.store(true, Ordering::Relaxed);
        assert!(first.flush_last(&store, 1010).is_err());
        assert_eq!(first.reported(), None, "not put: not reported");
        store.refuse.store(false, Ordering::Relaxed);
        assert!(matches!(
            first.flush_last(&store, 1020),
            Ok(LastLog::Written(_))
        ));
        let (fp, at) = first.reported().expect("the whole session in one log");
        assert_eq!(at, 1020);
        let lately = std::collections::HashMap::from([(fp, at)]);

        // The same uses minutes later, in another order: no log.
        let again = session(1300, &[2, 1]);
        again.reported_lately(lately.clone());
        assert_eq!(
            again.flush_last(&store, 1310).unwrap(),
            LastLog::ReportedLately
        );
        assert_eq!(store.keys.lock().unwrap().len(), 1);
        assert!(!again.has_pending());

        // Fifteen minutes on, one more use, a counter, or a log earlier
        // in the session: a log.
        let later = session(1020 + REPORT_AGAIN_AFTER, &[1, 2]);
        later.reported_lately(lately.clone());
        let more = session(1300, &[1, 2, 3]);
        more.reported_lately(lately.clone());
        let counted = session(1300, &[1, 2]);
        counted.reported_lately(lately.clone());
        counted.count(1300, |c| c.lookups += 1);
        let split = session(1300, &[1]);
        split.reported_lately(lately.clone());
        split.flush(&store, 1300).unwrap();
        split.record_use(id(2), id(102), 1301);
        for (what, rec, now) in [
            ("later", &later, 1020 + REPORT_AGAIN_AFTER),
            ("more", &more, 1310),
            ("counted", &counted, 1310),
            ("split", &split, 1310),
        ] {
            let log = rec.flush_last(&store, now).unwrap();
            assert!(matches!(log, LastLog::Written(_)), "{what}: {log:?}");
        }
        assert_eq!(split.reported(), None, "the last log held a part");
        assert_eq!(more.reported().map(|r| r.0 != fp), Some(true));
    }
}
