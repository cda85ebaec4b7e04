//! The SQLite index: a picture of the cache on disk, with what the disk
//! cannot tell (hits, first seen, exact uses).
//!
//! The schema is known here and nowhere else: other modules read and write
//! through [`Index`]'s typed methods, never SQL of their own.
//!
//! - `open`: opening, migrating (one creator at a time), in-memory copies,
//!   and the WAL;
//! - `recover`: the one recovery path every command takes when the file
//!   is damaged, held by another process, read-only or on a full disk;
//! - `statements`: the statements a hook runs, prepared ahead;
//! - `read`: entries, odd items, per-subdirectory states and totals;
//! - `write`: a sync's changes, removals by trim, uses and mtimes;
//! - `meta`: typed values stored in the `meta` table (the stored limits);
//! - `modules`: which Go module added or last used each entry;
//! - `runs`: CI runs (`gocache ci`), each entry's last run, the seal;
//! - `trace`: the bounded trace of events (`gocache trace export`);
//! - `sessions`: `gocache prog`'s session summaries.
//!
//! The entries are [`Index`]'s own methods. The features beside them are
//! handles, so that `Index` does not grow a method per feature:
//! [`Index::runs`], [`Index::trace`] and [`Index::sessions`] to read,
//! their `_mut` twins to write (`index.runs_mut().end(id, now, &report)`).
//! A handle borrows the index and holds nothing of its own; what changes
//! how the connection itself writes (the module credited, trace
//! recording, a sync's run marking) stays on `Index`.
//!
//! # Where it lives
//!
//! By default in `<cache>/gocache/index.sqlite`, so it travels with the
//! cache (CI cache actions, `cp -a`); Go's `clean -cache` and trim only
//! touch `00`..`ff`, so they never remove it.
//!
//! # Compatibility
//!
//! The schema is the numbered SQL files in `migrations/`, applied in order
//! in one transaction and recorded in `PRAGMA user_version`, under the
//! write lock and after reading the version again, so that processes
//! creating the index together never apply a migration twice. A database
//! with a newer version than this binary knows is left alone
//! ([`Error::IndexTooNew`]); callers fall back to a walk of the disk.
//!
//! # Locking and durability
//!
//! WAL mode, so readers (`stats`) never wait on a writer, and a bounded
//! wait for writers ([`LOCK_WAIT`] where a command can work from a walk
//! instead, [`BUSY_TIMEOUT`] where it cannot). `synchronous = NORMAL`: a power cut may lose the last
//! transactions, which is fine for a cache of the truth on disk; the next
//! scan repairs it. Each subdirectory's sync is one transaction, recorded
//! together with the subdirectory's mtime, so a crash leaves every
//! subdirectory either synced or marked for rescan.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::layout::EntryName;
use crate::model::{Entry, Other, Totals, UnixTime};

mod meta;
mod modules;
mod open;
mod read;
mod recover;
mod runs;
mod sessions;
mod statements;
mod trace;
mod write;

pub use meta::LastTrim;
pub use modules::{ModuleMap, ModuleTotals};
pub use open::WAL_KEEP_BYTES;
pub use recover::{Access, Fallback, Recovered, aside_path};
pub use runs::{CiRun, CiSeal, RunMarks, Runs, SyncMark};
pub use sessions::Sessions;
pub use trace::Trace;

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = open::MIGRATIONS.len() as i64;

/// How long a command that has nothing to do without the file (`scan`,
/// `limits`, `gocache prog`) waits for another process holding the index.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a command that can work from a walk of the cache (`stats`,
/// `trim`, the hook) waits for another process holding the index, at open
/// and at each write, before it does (see [`Access`]). Longer than any
/// write transaction gocache itself holds on a large cache, but short
/// enough that the hook never keeps a go command waiting long.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The index file's default place: `<cache>/gocache/index.sqlite` (see
/// [`crate::cachedir::index_path`]).
pub fn default_path(cache_dir: &Path) -> PathBuf {
    crate::cachedir::default_index_path(cache_dir)
}

/// What the index recorded for a subdirectory at its last scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubdirState {
    /// The mtime seen, in nanoseconds; `None` means "rescan next time".
    pub mtime_ns: Option<i64>,
    /// When it was scanned.
    pub scanned_at: UnixTime,
}

/// The changes a scan found in one subdirectory.
#[derive(Clone, Debug, Default)]
pub struct SubdirChanges {
    /// The subdirectory.
    pub subdir: u8,
    /// New or changed entries (replaced whole; hits and first_seen are
    /// taken from the caller, who merged them with the old row).
    pub upserts: Vec<Entry>,
    /// Of the upserts, those whose index row the caller read (a full
    /// scan's changed entries), sorted: not new, so the write looks up no
    /// old row for them when it needs only to know what is new (to trace
    /// it). Empty: it looks up every upsert's (a changed entry's lookup
    /// cost ci end's sync a second on the 500k entries a job used).
    pub updated: Vec<EntryName>,
    /// Of the upserts, those credited to the connection's module (see
    /// [`Index::credit_module`]), sorted; the others keep the module they
    /// had, or none.
    pub credited: Vec<EntryName>,
    /// Names of entries that are gone.
    pub deletes: Vec<EntryName>,
    /// Everything odd in the subdirectory (replaces what was recorded).
    pub others: Vec<Other>,
    /// The mtime to record (`None`: rescan next time).
    pub mtime_ns: Option<i64>,
    /// The subdirectory's totals after the changes; `None`: change the
    /// recorded totals by what the upserts and deletes actually change in
    /// the table (an incremental scan, which knows names only). Worked out
    /// inside the write transaction, so scans racing on the same new or
    /// vanished names count each once.
    pub totals: Option<Totals>,
    /// Allocated bytes of the subdirectory itself (its directory blocks).
    pub dir_allocated: u64,
}

/// A use of an entry seen by the wrapper or GOCACHEPROG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Use {
    /// The entry used.
    pub name: EntryName,
    /// When.
    pub at: UnixTime,
    /// Whether it counts as a hit (a lookup that found it), not just a
    /// touch (a put).
    pub hit: bool,
    /// Whether the use moved the entry's mtime to `at` on disk (Go's
    /// `markUsed`, which `gocache prog` does as go would): the index then
    /// keeps `at` as the entry's mtime too, so that a trim's executor,
    /// which keeps an entry whose mtime is newer than its plan saw, does
    /// not take this mark for a use since the plan.
    pub marked: bool,
}

/// An open index.
pub struct Index {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    /// Leave a small WAL behind on close (see [`Index::keep_wal_on_close`]).
    keep_wal: bool,
    /// Given up on: no checkpoint on close (see `Index::abandon`).
    abandoned: bool,
    /// The file's device and inode when it was opened, so that recovery
    /// moves aside this file and not one another process put there since.
    file_id: Option<(u64, u64)>,
    /// The module entries this connection adds or records uses of are
    /// credited to (see [`Index::credit_module`]).
    credit: Option<modules::Credit>,
    /// Whether this connection records trace events (see
    /// [`Index::set_trace`]).
    tracing: Option<trace::TraceState>,
    /// The CI run a sync marks the uses of as it writes rows (see
    /// [`Index::mark_in_sync`]).
    marking: Option<runs::SyncMark>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Index {
    /// The index file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// SQLite's errors, with the index file they happened to.
trait SqlResult<T> {
    /// The error as the library's, naming the index at `path`.
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> SqlResult<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| sql(path, source))
    }
}

fn sql(path: &Path, cause: rusqlite::Error) -> Error {
    Error::Sqlite {
        path: path.to_owned(),
        cause: without_sql(cause),
    }
}

/// The error without the statement's text, which rusqlite puts in the
/// message of an error SQLite found while parsing (a whole migration
/// file, say): messages say what happened, never dump SQL.
fn without_sql(cause: rusqlite::Error) -> rusqlite::Error {
    match cause {
        rusqlite::Error::SqlInputError { error, msg, .. } => {
            rusqlite::Error::SqliteFailure(error, Some(msg))
        }
        other => other,
    }
}

/// The index tests' entry: used at 1000, first seen at 2000; an action
/// names output 9.
#[cfg(test)]
fn test_entry(byte: u8, kind: crate::model::Kind) -> Entry {
    let e = crate::model::fixtures::entry(byte, kind)
        .used_at(1000)
        .seen_at(2000);
    if kind == crate::model::Kind::Action {
        e.naming(Some(9))
    } else {
        e
    }
}

/// The index tests' sync: adds each entry as a sync that found it would,
/// one subdirectory's transaction each, at `now`, the totals moved by
/// what the rows change.
#[cfg(test)]
fn test_add<'e>(ix: &mut Index, entries: impl IntoIterator<Item = &'e Entry>, now: UnixTime) {
    for e in entries {
        let changes = SubdirChanges {
            subdir: e.name.subdir(),
            upserts: vec![e.clone()],
            totals: None,
            ..Default::default()
        };
        ix.apply_subdir(&changes, now).unwrap();
    }
}
