//! The SQLite index: a picture of the cache on disk, with what the disk
//! cannot tell (hits, first seen, exact uses).
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
//! by `rusqlite_migration` in one transaction and recorded in
//! `PRAGMA user_version`. A database with a newer version than this binary
//! knows is left alone ([`Error::IndexTooNew`]); callers fall back to a
//! walk of the disk.
//!
//! # Locking and durability
//!
//! WAL mode, so readers (`stats`) never wait on a writer, and a busy
//! timeout for writers. `synchronous = NORMAL`: a power cut may lose the last
//! transactions, which is fine for a cache of the truth on disk; the next
//! scan repairs it. Each subdirectory's sync is one transaction, recorded
//! together with the subdirectory's mtime, so a crash leaves every
//! subdirectory either synced or marked for rescan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

use crate::error::{Error, Result};
use crate::layout::{EntryName, GOCACHE_DIR, Id};
use crate::model::{Entry, Kind, Other, OtherClass, UnixTime};

/// The migrations, in order. Never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_prog_sessions.sql"),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a writer waits for another writer before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The index file's default place: `<cache>/gocache/index.sqlite`.
pub fn default_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(GOCACHE_DIR).join("index.sqlite")
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
    pub totals: Option<crate::policy::Totals>,
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
}

/// An open index.
pub struct Index {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    /// Leave a small WAL behind on close (see [`Index::keep_wal_on_close`]).
    keep_wal: bool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// With [`Index::keep_wal_on_close`], a write-ahead log up to this size is
/// left for the next process; a bigger one is checkpointed first. The first
/// connection of a process reads the whole WAL to rebuild its in-memory
/// index (about 1 ms per MiB here), so a big one left behind would cost
/// every hook after it that much.
const WAL_KEEP_BYTES: u64 = 1 << 20;

// The statements a hook runs (see [`Index::prepare_check`] and
// [`Index::prepare_sync`]).
const SQL_SUBDIR_STATES: &str = "SELECT subdir, mtime_ns, scanned_at FROM subdirs";
const SQL_TOP_OTHERS: &str =
    "SELECT path, class, what, apparent, allocated FROM others WHERE subdir IS NULL ORDER BY path";
const SQL_IS_EMPTY: &str = "SELECT NOT EXISTS (SELECT 1 FROM entries)";
const SQL_SUBDIR_NAMES: &str = "SELECT name FROM entries WHERE subdir = ?1";
const SQL_ANY_PENDING: &str = "SELECT EXISTS (SELECT 1 FROM pending_uses)";
const SQL_UPSERT: &str = "INSERT INTO entries
     (subdir, name, kind, apparent, allocated, mtime, last_use, hits, first_seen, output, program, problem)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 + ?13, ?9, ?10, ?11, ?12)
     ON CONFLICT (subdir, name) DO UPDATE SET
     kind = excluded.kind, apparent = excluded.apparent,
     allocated = excluded.allocated, mtime = excluded.mtime,
     last_use = max(entries.last_use, excluded.last_use),
     hits = entries.hits + ?13,
     first_seen = min(entries.first_seen, excluded.first_seen),
     output = excluded.output, program = excluded.program,
     problem = excluded.problem";
const SQL_DELETE_ENTRY: &str =
    "DELETE FROM entries WHERE subdir = ?1 AND name = ?2 RETURNING kind, apparent, allocated";
const SQL_OLD_ROW: &str =
    "SELECT kind, apparent, allocated FROM entries WHERE subdir = ?1 AND name = ?2";
const SQL_ADJUST_SUBDIR: &str = "INSERT INTO subdirs (subdir, mtime_ns, scanned_at,
     build_entries, build_apparent, build_allocated, exe_entries, exe_apparent, exe_allocated,
     dir_allocated)
     VALUES (?1, ?2, ?3, max(?4, 0), max(?5, 0), max(?6, 0), max(?7, 0), max(?8, 0), max(?9, 0), ?10)
     ON CONFLICT (subdir) DO UPDATE SET
     mtime_ns = excluded.mtime_ns, scanned_at = excluded.scanned_at,
     build_entries = max(build_entries + ?4, 0),
     build_apparent = max(build_apparent + ?5, 0),
     build_allocated = max(build_allocated + ?6, 0),
     exe_entries = max(exe_entries + ?7, 0),
     exe_apparent = max(exe_apparent + ?8, 0),
     exe_allocated = max(exe_allocated + ?9, 0),
     dir_allocated = excluded.dir_allocated";
const SQL_CLEAR_OTHERS: &str = "DELETE FROM others WHERE subdir = ?1";
const SQL_OTHER: &str = "INSERT OR REPLACE INTO others (path, subdir, class, what, apparent, allocated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const SQL_SET_SUBDIR: &str = "INSERT OR REPLACE INTO subdirs (subdir, mtime_ns, scanned_at,
     build_entries, build_apparent, build_allocated, exe_entries, exe_apparent, exe_allocated,
     dir_allocated)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const SQL_TAKE_PENDING: &str =
    "DELETE FROM pending_uses WHERE subdir = ?1 AND name = ?2 RETURNING last_use, hits";
// And what the hook's limit check reads.
const SQL_FAST_TOTALS: &str = "SELECT coalesce(sum(build_entries), 0), coalesce(sum(build_apparent), 0), coalesce(sum(build_allocated), 0),
     coalesce(sum(exe_entries), 0), coalesce(sum(exe_apparent), 0), coalesce(sum(exe_allocated), 0)
     FROM subdirs";
const SQL_DIR_BYTES: &str = "SELECT coalesce(sum(dir_allocated), 0) FROM subdirs";
const SQL_OTHERS: &str = "SELECT path, class, what, apparent, allocated FROM others ORDER BY path";
const SQL_META: &str = "SELECT value FROM meta WHERE key = ?1";
/// What every hook runs: which subdirectories changed, and the limits.
const CHECK_STATEMENTS: &[&str] = &[
    SQL_SUBDIR_STATES,
    SQL_TOP_OTHERS,
    SQL_FAST_TOTALS,
    SQL_DIR_BYTES,
    SQL_OTHERS,
    SQL_META,
];
/// What a hook runs when a subdirectory changed.
const SYNC_STATEMENTS: &[&str] = &[
    SQL_IS_EMPTY,
    SQL_SUBDIR_NAMES,
    SQL_ANY_PENDING,
    SQL_UPSERT,
    SQL_DELETE_ENTRY,
    SQL_OLD_ROW,
    SQL_ADJUST_SUBDIR,
    SQL_CLEAR_OTHERS,
    SQL_OTHER,
    SQL_SET_SUBDIR,
    SQL_TAKE_PENDING,
];

impl Drop for Index {
    fn drop(&mut self) {
        if self.read_only {
            return;
        }
        let len = std::fs::metadata(Index::wal_path(&self.path)).map_or(0, |m| m.len());
        if len > WAL_KEEP_BYTES || (len > 0 && !self.keep_wal) {
            // Best effort: a reader holding the WAL only delays this.
            let _ = self.checkpoint();
        }
    }
}

impl Index {
    /// Opens (creating it and its directory if needed) and migrates the
    /// index at `path`.
    pub fn open(path: &Path) -> Result<Index> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        let conn = Connection::open(path).map_err(|e| sql(path, e))?;
        // SQLite opens a file it may not write read-only without saying so;
        // writing would fail later, half way through. Say it now, so the
        // caller can fall back.
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(sql(
                path,
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                    Some("the index file is not writable".into()),
                ),
            ));
        }
        let mut index = Index {
            conn,
            path: path.to_owned(),
            read_only: false,
            keep_wal: false,
        };
        index.configure()?;
        index.migrate()?;
        Ok(index)
    }

    /// Opens an existing index read-only. It must already have this
    /// binary's schema version.
    pub fn open_read_only(path: &Path) -> Result<Index> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql(path, e))?;
        let index = Index {
            conn,
            path: path.to_owned(),
            read_only: true,
            keep_wal: false,
        };
        index
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sql(path, e))?;
        let version = index.user_version()?;
        if version > SCHEMA_VERSION {
            return Err(Error::IndexTooNew {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            return Err(Error::Invalid(format!(
                "index {} has schema version {version}, older than {SCHEMA_VERSION}, and cannot be upgraded read-only",
                path.display()
            )));
        }
        Ok(index)
    }

    /// A private in-memory index, for when the real one cannot be used
    /// (read-only, corrupt, too new). When `seed` names a readable index
    /// of this schema version, its rows (hits, first seen) are copied in.
    pub fn open_in_memory(seed: Option<&Path>) -> Result<Index> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| sql(&path, e))?;
        let mut index = Index {
            conn,
            path,
            read_only: false,
            keep_wal: false,
        };
        index.migrate()?;
        if let Some(seed) = seed
            && Index::open_read_only(seed).is_ok()
        {
            let uri = format!("file:{}?mode=ro", seed.display());
            let copy = || -> rusqlite::Result<()> {
                index.conn.execute("ATTACH DATABASE ?1 AS seed", [&uri])?;
                for table in ["entries", "others", "subdirs", "pending_uses", "meta"] {
                    // Table names are from the fixed list above.
                    index.conn.execute(
                        &format!("INSERT INTO main.{table} SELECT * FROM seed.{table}"),
                        [],
                    )?;
                }
                index.conn.execute("DETACH DATABASE seed", [])?;
                Ok(())
            };
            // A seed that fails half way is dropped: start from empty.
            if copy().is_err() {
                index = Index::open_in_memory(None)?;
            }
        }
        Ok(index)
    }

    fn configure(&mut self) -> Result<()> {
        let p = self.path.clone();
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sql(&p, e))?;
        // journal_mode returns a row; WAL persists in the file.
        let _: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| sql(&p, e))?;
        self.conn
            // A 64 MiB page cache: a 1M-entry index is about 200 MiB, and a
            // full scan touches every page.
            .execute_batch(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA mmap_size = 1073741824;",
            )
            .map_err(|e| sql(&p, e))?;
        // No checkpoint when the last connection closes: every short-lived
        // process (a hook after each go command) would otherwise copy the
        // WAL back, fsync twice and delete it, and the next one recreate it
        // (four fsyncs per hook). Automatic checkpoints every 128 WAL pages
        // keep the WAL short instead: the first connection of a process
        // reads the whole WAL to rebuild its index (1 ms per MiB here).
        self.conn
            .execute_batch("PRAGMA wal_autocheckpoint = 128; PRAGMA journal_size_limit = 4194304;")
            .map_err(|e| sql(&p, e))?;
        // Room for the sync statements and a trim's.
        self.conn.set_prepared_statement_cache_capacity(32);
        self.conn
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(|e| sql(&p, e))?;
        Ok(())
    }

    fn user_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sql(&self.path, e))
    }

    fn migrate(&mut self) -> Result<()> {
        let version = self.user_version()?;
        if version > SCHEMA_VERSION {
            return Err(Error::IndexTooNew {
                path: self.path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
        migrations
            .to_latest(&mut self.conn)
            .map_err(|cause| Error::Migration {
                path: self.path.clone(),
                cause,
            })
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The underlying connection, for modules that add tables of their own
    /// through migrations.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Prepares the statements every hook runs: comparing the
    /// subdirectories' mtimes and checking the limits. SQLite parses each
    /// once per connection, about 40 us apiece: a thread with time to spare
    /// (the hook's, while another reads the cache) can do it ahead.
    pub fn prepare_check(&self) -> Result<()> {
        self.prepare_all(CHECK_STATEMENTS)
    }

    /// Prepares the statements an incremental sync of changed
    /// subdirectories runs (see [`Index::prepare_check`]).
    pub fn prepare_sync(&self) -> Result<()> {
        self.prepare_all(SYNC_STATEMENTS)
    }

    fn prepare_all(&self, statements: &[&str]) -> Result<()> {
        for q in statements {
            self.conn
                .prepare_cached(q)
                .map_err(|e| sql(&self.path, e))?;
        }
        Ok(())
    }

    /// What was recorded for each of the 256 subdirectories.
    pub fn subdir_states(&self) -> Result<Vec<Option<SubdirState>>> {
        let mut out = vec![None; 256];
        let mut stmt = self
            .conn
            .prepare_cached(SQL_SUBDIR_STATES)
            .map_err(|e| sql(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| sql(&self.path, e))?;
        for row in rows {
            let (subdir, mtime, scanned_at) = row.map_err(|e| sql(&self.path, e))?;
            if let Ok(i) = usize::try_from(subdir)
                && i < 256
            {
                out[i] = Some(SubdirState {
                    mtime_ns: mtime,
                    scanned_at,
                });
            }
        }
        Ok(out)
    }

    /// All entries of one subdirectory.
    pub fn subdir_entries(&self, subdir: u8) -> Result<Vec<Entry>> {
        self.query_entries(
            "SELECT name, kind, apparent, allocated, mtime, last_use, hits, first_seen, output, program, problem
             FROM entries WHERE subdir = ?1",
            params![subdir],
        )
    }

    /// The names of one subdirectory's entries (an incremental scan needs
    /// no more). Rows whose name does not parse are left out.
    pub fn subdir_names(&self, subdir: u8) -> Result<Vec<EntryName>> {
        let mut stmt = self
            .conn
            .prepare_cached(SQL_SUBDIR_NAMES)
            .map_err(|e| sql(&self.path, e))?;
        let mut rows = stmt
            .query(params![subdir])
            .map_err(|e| sql(&self.path, e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| sql(&self.path, e))? {
            if let Ok(bytes) = row.get_ref(0).and_then(|v| Ok(v.as_bytes()?))
                && let Some(name) = EntryName::parse(bytes)
            {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Every entry in the index.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        self.query_entries(
            "SELECT name, kind, apparent, allocated, mtime, last_use, hits, first_seen, output, program, problem
             FROM entries",
            [],
        )
    }

    /// True when the index holds no entry (without counting them all).
    pub fn is_empty(&self) -> Result<bool> {
        self.conn
            .prepare_cached(SQL_IS_EMPTY)
            .and_then(|mut q| q.query_row([], |r| r.get(0)))
            .map_err(|e| sql(&self.path, e))
    }

    /// The number of entries in the index (reads every row: prefer
    /// [`Index::fast_totals`] where an estimate from the scans will do).
    pub fn entry_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| sql(&self.path, e))
    }

    /// Entries, apparent bytes and allocated bytes of the whole index.
    pub fn totals(&self) -> Result<(u64, u64, u64)> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(apparent), 0), coalesce(sum(allocated), 0) FROM entries",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)? as u64,
                    ))
                },
            )
            .map_err(|e| sql(&self.path, e))
    }

    /// Totals per tier, from the per-subdirectory totals the scans keep:
    /// 256 rows, however large the cache.
    pub fn fast_totals(&self) -> Result<crate::policy::Totals> {
        let mut t = crate::policy::Totals::default();
        self.conn
            .prepare_cached(SQL_FAST_TOTALS)
            .map_err(|e| sql(&self.path, e))?
            .query_row([], |r| {
                let g = |i| r.get::<_, i64>(i).map(|v| v as u64);
                t.build = crate::stats::Bytes {
                    entries: g(0)?,
                    apparent_bytes: g(1)?,
                    allocated_bytes: g(2)?,
                };
                t.exe = crate::stats::Bytes {
                    entries: g(3)?,
                    apparent_bytes: g(4)?,
                    allocated_bytes: g(5)?,
                };
                Ok(())
            })
            .map_err(|e| sql(&self.path, e))?;
        t.total = crate::stats::Bytes {
            entries: t.build.entries + t.exe.entries,
            apparent_bytes: t.build.apparent_bytes.saturating_add(t.exe.apparent_bytes),
            allocated_bytes: t
                .build
                .allocated_bytes
                .saturating_add(t.exe.allocated_bytes),
        };
        Ok(t)
    }

    /// Allocated bytes of the 256 subdirectories themselves, as last scanned.
    pub fn subdir_dir_bytes(&self) -> Result<u64> {
        self.conn
            .prepare_cached(SQL_DIR_BYTES)
            .and_then(|mut q| q.query_row([], |r| r.get::<_, i64>(0)))
            .map(|v| v as u64)
            .map_err(|e| sql(&self.path, e))
    }

    /// The write-ahead log SQLite keeps beside the index at `path`.
    pub fn wal_path(path: &Path) -> PathBuf {
        let mut wal = path.to_owned().into_os_string();
        wal.push("-wal");
        wal.into()
    }

    /// Leaves a small write-ahead log in place when this index is closed,
    /// instead of moving it into the database file (two fsyncs) and
    /// truncating it: for short processes that run often, such as the hook
    /// after every go command. Other processes checkpoint on close, so the
    /// database file alone holds the index after a scan or trim.
    pub fn keep_wal_on_close(&mut self) {
        self.keep_wal = true;
    }

    /// Moves the write-ahead log into the database file and empties it, so
    /// the index does not keep a large WAL after a big change.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| sql(&self.path, e))
    }

    /// The executables whose program is called `program`.
    pub fn exes_named(&self, program: &str) -> Result<Vec<EntryName>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM entries WHERE kind = 2 AND program = ?1")
            .map_err(|e| sql(&self.path, e))?;
        let rows = stmt
            .query_map([program], |r| r.get::<_, String>(0))
            .map_err(|e| sql(&self.path, e))?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(n) = EntryName::parse(r.map_err(|e| sql(&self.path, e))?.as_bytes()) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// One entry by name.
    pub fn entry(&self, name: &EntryName) -> Result<Option<Entry>> {
        Ok(self
            .query_entries(
                "SELECT name, kind, apparent, allocated, mtime, last_use, hits, first_seen, output, program, problem
                 FROM entries WHERE subdir = ?1 AND name = ?2",
                params![name.subdir(), name.file_name()],
            )?
            .pop())
    }

    fn query_entries(&self, query: &str, params: impl rusqlite::Params) -> Result<Vec<Entry>> {
        let mut stmt = self
            .conn
            .prepare_cached(query)
            .map_err(|e| sql(&self.path, e))?;
        let rows = stmt
            .query_map(params, |r| {
                let name: String = r.get(0)?;
                let output: Option<Vec<u8>> = r.get(8)?;
                Ok(RawEntry {
                    name,
                    kind: r.get(1)?,
                    apparent: r.get(2)?,
                    allocated: r.get(3)?,
                    mtime: r.get(4)?,
                    last_use: r.get(5)?,
                    hits: r.get(6)?,
                    first_seen: r.get(7)?,
                    output,
                    program: r.get(9)?,
                    problem: r.get(10)?,
                })
            })
            .map_err(|e| sql(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let raw = row.map_err(|e| sql(&self.path, e))?;
            // A row that does not decode (edited by hand, say) is skipped:
            // the next full scan replaces it.
            if let Some(e) = raw.into_entry() {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Everything odd recorded under the cache directory.
    pub fn others(&self) -> Result<Vec<Other>> {
        self.query_others(SQL_OTHERS)
    }

    /// What is recorded about the top level of the cache directory.
    pub fn top_level_others(&self) -> Result<Vec<Other>> {
        self.query_others(SQL_TOP_OTHERS)
    }

    fn query_others(&self, query: &str) -> Result<Vec<Other>> {
        let mut stmt = self
            .conn
            .prepare_cached(query)
            .map_err(|e| sql(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Other {
                    path: r.get(0)?,
                    class: OtherClass::parse(&r.get::<_, String>(1)?),
                    what: r.get(2)?,
                    apparent: r.get::<_, i64>(3)? as u64,
                    allocated: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(|e| sql(&self.path, e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| sql(&self.path, e))
    }

    /// Applies one subdirectory's changes in one transaction, folding in
    /// pending uses of the entries it adds.
    pub fn apply_subdir(&mut self, changes: &SubdirChanges, now: UnixTime) -> Result<()> {
        self.apply_subdirs(std::slice::from_ref(changes), now)
    }

    /// Applies several subdirectories' changes in one transaction.
    pub fn apply_subdirs(&mut self, all: &[SubdirChanges], now: UnixTime) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql(&path, e))?;
        {
            let mut upsert = tx
                .prepare_cached(
                    // A row another process wrote since this scan read the
                    // index keeps its hits, last use and first sighting;
                    // pending uses (?13) are added on top.
                    SQL_UPSERT,
                )
                .map_err(|e| sql(&path, e))?;
            let mut delete = tx
                .prepare_cached(SQL_DELETE_ENTRY)
                .map_err(|e| sql(&path, e))?;
            let mut old_row = tx.prepare_cached(SQL_OLD_ROW).map_err(|e| sql(&path, e))?;
            let mut adjust = tx
                .prepare_cached(SQL_ADJUST_SUBDIR)
                .map_err(|e| sql(&path, e))?;
            let mut clear_others = tx
                .prepare_cached(SQL_CLEAR_OTHERS)
                .map_err(|e| sql(&path, e))?;
            let mut other = tx.prepare_cached(SQL_OTHER).map_err(|e| sql(&path, e))?;
            let mut state = tx
                .prepare_cached(SQL_SET_SUBDIR)
                .map_err(|e| sql(&path, e))?;
            let mut pending = tx
                .prepare_cached(SQL_TAKE_PENDING)
                .map_err(|e| sql(&path, e))?;
            let any_pending: bool = tx
                .prepare_cached(SQL_ANY_PENDING)
                .and_then(|mut q| q.query_row([], |r| r.get(0)))
                .map_err(|e| sql(&path, e))?;
            for changes in all {
                // [build entries, apparent, allocated, exe entries, apparent,
                // allocated] added, for `totals: None`.
                let mut delta = [0i64; 6];
                let by_delta = changes.totals.is_none();
                // Insert in key order: appends to the B-tree instead of
                // touching random pages.
                let mut order: Vec<&Entry> = changes.upserts.iter().collect();
                order.sort_unstable_by_key(|e| e.name);
                for e in order {
                    if by_delta {
                        let old = old_row
                            .query_row(params![changes.subdir, e.name.file_name()], kind_sizes)
                            .optional()
                            .map_err(|e| sql(&path, e))?;
                        if let Some((kind, apparent, allocated)) = old {
                            add_to(&mut delta, kind, -1, -apparent, -allocated);
                        }
                        add_to(
                            &mut delta,
                            e.kind.to_db(),
                            1,
                            e.apparent as i64,
                            e.allocated as i64,
                        );
                    }
                    let (mut last_use, mut pending_hits) = (e.last_use, 0u64);
                    if any_pending {
                        let p: Option<(i64, i64)> = pending
                            .query_row(params![changes.subdir, e.name.file_name()], |r| {
                                Ok((r.get(0)?, r.get(1)?))
                            })
                            .optional()
                            .map_err(|e| sql(&path, e))?;
                        if let Some((at, h)) = p {
                            last_use = last_use.max(at);
                            pending_hits = h as u64;
                        }
                    }
                    upsert
                        .execute(params![
                            changes.subdir,
                            e.name.file_name(),
                            e.kind.to_db(),
                            e.apparent as i64,
                            e.allocated as i64,
                            e.mtime,
                            last_use,
                            e.hits as i64,
                            e.first_seen,
                            e.output.map(|o| o.0.to_vec()),
                            e.program,
                            e.problem,
                            pending_hits as i64,
                        ])
                        .map_err(|e| sql(&path, e))?;
                }
                for name in &changes.deletes {
                    let old = delete
                        .query_row(params![changes.subdir, name.file_name()], kind_sizes)
                        .optional()
                        .map_err(|e| sql(&path, e))?;
                    if let Some((kind, apparent, allocated)) = old {
                        add_to(&mut delta, kind, -1, -apparent, -allocated);
                    }
                }
                clear_others
                    .execute(params![changes.subdir])
                    .map_err(|e| sql(&path, e))?;
                for o in &changes.others {
                    other
                        .execute(params![
                            o.path,
                            changes.subdir,
                            o.class.as_str(),
                            o.what,
                            o.apparent as i64,
                            o.allocated as i64
                        ])
                        .map_err(|e| sql(&path, e))?;
                }
                let Some(t) = &changes.totals else {
                    let d = delta;
                    adjust
                        .execute(params![
                            changes.subdir,
                            changes.mtime_ns,
                            now,
                            d[0],
                            d[1],
                            d[2],
                            d[3],
                            d[4],
                            d[5],
                            changes.dir_allocated as i64,
                        ])
                        .map_err(|e| sql(&path, e))?;
                    continue;
                };
                state
                    .execute(params![
                        changes.subdir,
                        changes.mtime_ns,
                        now,
                        t.build.entries as i64,
                        t.build.apparent_bytes as i64,
                        t.build.allocated_bytes as i64,
                        t.exe.entries as i64,
                        t.exe.apparent_bytes as i64,
                        t.exe.allocated_bytes as i64,
                        changes.dir_allocated as i64,
                    ])
                    .map_err(|e| sql(&path, e))?;
            }
        }
        tx.commit().map_err(|e| sql(&path, e))
    }

    /// Replaces what is recorded about the top level of the cache (odd
    /// files and directories there).
    pub fn set_top_level_others(&mut self, others: &[Other]) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql(&path, e))?;
        tx.execute("DELETE FROM others WHERE subdir IS NULL", [])
            .map_err(|e| sql(&path, e))?;
        for o in others {
            tx.execute(
                "INSERT OR REPLACE INTO others (path, subdir, class, what, apparent, allocated) VALUES (?1, NULL, ?2, ?3, ?4, ?5)",
                params![o.path, o.class.as_str(), o.what, o.apparent as i64, o.allocated as i64],
            )
            .map_err(|e| sql(&path, e))?;
        }
        tx.commit().map_err(|e| sql(&path, e))
    }

    /// Marks a subdirectory for rescan at the next sync (it could not be
    /// read, or was changed while being read).
    pub fn mark_subdir_dirty(&mut self, subdir: u8, now: UnixTime) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO subdirs (subdir, mtime_ns, scanned_at) VALUES (?1, NULL, ?2)
                 ON CONFLICT (subdir) DO UPDATE SET mtime_ns = NULL",
                params![subdir, now],
            )
            .map(drop)
            .map_err(|e| sql(&self.path, e))
    }

    /// Drops entries that were removed from disk (by trim), in one
    /// transaction. Returns how many rows went.
    pub fn remove_entries(&mut self, names: &[EntryName]) -> Result<usize> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql(&path, e))?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM entries WHERE subdir = ?1 AND name = ?2 RETURNING kind, apparent, allocated",
                )
                .map_err(|e| sql(&path, e))?;
            // Subtract what went from the subdirectory totals, per tier:
            // [build entries, apparent, allocated, exe entries, apparent,
            // allocated]. (Recounting every touched subdirectory reread
            // ~4,000 rows each, per batch: 400M row reads for a 1M trim.)
            let mut delta: HashMap<u8, [i64; 6]> = HashMap::new();
            for name in names {
                let row = stmt
                    .query_row(params![name.subdir(), name.file_name()], kind_sizes)
                    .optional()
                    .map_err(|e| sql(&path, e))?;
                if let Some((kind, apparent, allocated)) = row {
                    n += 1;
                    add_to(
                        delta.entry(name.subdir()).or_default(),
                        kind,
                        1,
                        apparent,
                        allocated,
                    );
                }
            }
            let mut update = tx
                .prepare_cached(
                    "UPDATE subdirs SET
                       build_entries = max(build_entries - ?2, 0),
                       build_apparent = max(build_apparent - ?3, 0),
                       build_allocated = max(build_allocated - ?4, 0),
                       exe_entries = max(exe_entries - ?5, 0),
                       exe_apparent = max(exe_apparent - ?6, 0),
                       exe_allocated = max(exe_allocated - ?7, 0)
                     WHERE subdir = ?1",
                )
                .map_err(|e| sql(&path, e))?;
            for (s, d) in delta {
                update
                    .execute(params![s, d[0], d[1], d[2], d[3], d[4], d[5]])
                    .map_err(|e| sql(&path, e))?;
            }
        }
        tx.commit().map_err(|e| sql(&path, e))?;
        Ok(n)
    }

    /// Records uses in one transaction: last use becomes the newest known,
    /// hits add up. Uses of entries the index has not seen yet are kept
    /// until a scan finds them.
    pub fn record_uses(&mut self, uses: &[Use]) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql(&path, e))?;
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE entries SET last_use = max(last_use, ?3), hits = hits + ?4
                     WHERE subdir = ?1 AND name = ?2",
                )
                .map_err(|e| sql(&path, e))?;
            let mut pend = tx
                .prepare_cached(
                    "INSERT INTO pending_uses (subdir, name, last_use, hits) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (subdir, name) DO UPDATE
                     SET last_use = max(last_use, excluded.last_use), hits = hits + excluded.hits",
                )
                .map_err(|e| sql(&path, e))?;
            for u in uses {
                let p = params![u.name.subdir(), u.name.file_name(), u.at, u.hit as i64];
                if update.execute(p).map_err(|e| sql(&path, e))? == 0 {
                    pend.execute(p).map_err(|e| sql(&path, e))?;
                }
            }
        }
        tx.commit().map_err(|e| sql(&path, e))
    }

    /// Records mtimes seen on disk (by the trim executor's re-check) for
    /// entries Go used since the last sync.
    pub fn record_mtimes(&mut self, seen: &[(EntryName, UnixTime)]) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql(&path, e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE entries SET mtime = ?3, last_use = max(last_use, ?3) WHERE subdir = ?1 AND name = ?2",
                )
                .map_err(|e| sql(&path, e))?;
            for (name, mtime) in seen {
                stmt.execute(params![name.subdir(), name.file_name(), mtime])
                    .map_err(|e| sql(&path, e))?;
            }
        }
        tx.commit().map_err(|e| sql(&path, e))
    }

    /// Reads a value from the meta table.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached(SQL_META)
            .and_then(|mut q| q.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| sql(&self.path, e))
    }

    /// Writes a value to the meta table.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                [key, value],
            )
            .map(drop)
            .map_err(|e| sql(&self.path, e))
    }
}

struct RawEntry {
    name: String,
    kind: i64,
    apparent: i64,
    allocated: i64,
    mtime: i64,
    last_use: i64,
    hits: i64,
    first_seen: i64,
    output: Option<Vec<u8>>,
    program: Option<String>,
    problem: Option<String>,
}

impl RawEntry {
    fn into_entry(self) -> Option<Entry> {
        let output = match self.output {
            Some(b) => Some(Id(<[u8; 32]>::try_from(b.as_slice()).ok()?)),
            None => None,
        };
        Some(Entry {
            name: EntryName::parse(self.name.as_bytes())?,
            kind: Kind::from_db(self.kind)?,
            apparent: u64::try_from(self.apparent).ok()?,
            allocated: u64::try_from(self.allocated).ok()?,
            mtime: self.mtime,
            last_use: self.last_use,
            hits: u64::try_from(self.hits).ok()?,
            first_seen: self.first_seen,
            output,
            program: self.program,
            problem: self.problem,
        })
    }
}

/// A row's `kind, apparent, allocated`.
fn kind_sizes(r: &rusqlite::Row) -> rusqlite::Result<(i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

/// Adds a row's counts to a per-tier delta: [build entries, apparent,
/// allocated, exe entries, apparent, allocated].
fn add_to(delta: &mut [i64; 6], kind: i64, entries: i64, apparent: i64, allocated: i64) {
    let at = if kind == Kind::Exe.to_db() { 3 } else { 0 };
    delta[at] += entries;
    delta[at + 1] += apparent;
    delta[at + 2] += allocated;
}

fn sql(path: &Path, cause: rusqlite::Error) -> Error {
    Error::Sqlite {
        path: path.to_owned(),
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Suffix;

    fn entry(byte: u8, kind: Kind) -> Entry {
        let suffix = if kind == Kind::Action {
            Suffix::Action
        } else {
            Suffix::Data
        };
        Entry {
            name: EntryName {
                id: Id([byte; 32]),
                suffix,
            },
            kind,
            apparent: 175,
            allocated: 4096,
            mtime: 1000,
            last_use: 1000,
            hits: 0,
            first_seen: 2000,
            output: (kind == Kind::Action).then_some(Id([9; 32])),
            program: (kind == Kind::Exe).then(|| "hello".to_string()),
            problem: None,
        }
    }

    #[test]
    fn incremental_totals_count_each_row_once_when_scans_race() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        // Two processes (hooks after two go commands) saw the same new
        // entries in the same subdirectories, and then the same one vanish.
        let mut one = Index::open(&path).unwrap();
        let mut two = Index::open(&path).unwrap();
        let (action, output, exe) = (
            entry(7, Kind::Action),
            entry(7, Kind::Output),
            entry(8, Kind::Exe),
        );
        let change = |subdir, upserts: Vec<Entry>, deletes: Vec<EntryName>| SubdirChanges {
            subdir,
            upserts,
            deletes,
            totals: None,
            ..Default::default()
        };
        for ix in [&mut one, &mut two] {
            ix.apply_subdirs(
                &[
                    change(7, vec![action.clone(), output.clone()], vec![]),
                    change(8, vec![exe.clone()], vec![]),
                ],
                3000,
            )
            .unwrap();
        }
        let t = one.fast_totals().unwrap();
        assert_eq!((t.build.entries, t.build.allocated_bytes), (2, 8192));
        assert_eq!((t.exe.entries, t.exe.allocated_bytes), (1, 4096));
        for ix in [&mut two, &mut one] {
            ix.apply_subdir(&change(7, vec![], vec![action.name]), 3001)
                .unwrap();
        }
        let t = two.fast_totals().unwrap();
        assert_eq!((t.build.entries, t.build.apparent_bytes), (1, 175));
        assert_eq!(t.total.entries, one.entry_count().unwrap());
    }

    #[test]
    fn migrating_twice_is_a_no_op_and_keeps_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/index.sqlite");
        let mut ix = Index::open(&p).unwrap();
        let e = entry(1, Kind::Action);
        ix.apply_subdir(
            &SubdirChanges {
                subdir: 1,
                upserts: vec![e.clone()],
                mtime_ns: Some(123),
                ..Default::default()
            },
            5000,
        )
        .unwrap();
        drop(ix);
        let ix = Index::open(&p).unwrap();
        assert_eq!(ix.user_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(ix.entries().unwrap(), vec![e]);
        assert_eq!(
            ix.subdir_states().unwrap()[1],
            Some(SubdirState {
                mtime_ns: Some(123),
                scanned_at: 5000
            })
        );
    }

    #[test]
    fn a_newer_schema_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.sqlite");
        drop(Index::open(&p).unwrap());
        let conn = Connection::open(&p).unwrap();
        conn.execute_batch("PRAGMA user_version = 99; CREATE TABLE future (x);")
            .unwrap();
        drop(conn);
        let err = Index::open(&p).unwrap_err();
        assert!(matches!(err, Error::IndexTooNew { found: 99, .. }), "{err}");
        assert!(matches!(
            Index::open_read_only(&p).unwrap_err(),
            Error::IndexTooNew { found: 99, .. }
        ));
        // Untouched: the future table is still there, the version too.
        let conn = Connection::open(&p).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 99);
        conn.query_row("SELECT count(*) FROM future", [], |r| r.get::<_, i64>(0))
            .unwrap();
    }

    #[test]
    fn uses_before_the_scan_are_kept_until_it_finds_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let e = entry(7, Kind::Exe);
        ix.record_uses(&[
            Use {
                name: e.name,
                at: 3000,
                hit: true,
            },
            Use {
                name: e.name,
                at: 2500,
                hit: true,
            },
        ])
        .unwrap();
        ix.apply_subdir(
            &SubdirChanges {
                subdir: 7,
                upserts: vec![e.clone()],
                ..Default::default()
            },
            4000,
        )
        .unwrap();
        let got = ix.entry(&e.name).unwrap().unwrap();
        assert_eq!((got.hits, got.last_use), (2, 3000));
        ix.record_uses(&[Use {
            name: e.name,
            at: 3500,
            hit: true,
        }])
        .unwrap();
        let got = ix.entry(&e.name).unwrap().unwrap();
        assert_eq!((got.hits, got.last_use), (3, 3500));
    }

    #[test]
    fn in_memory_copy_of_a_read_only_index() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.sqlite");
        let mut ix = Index::open(&p).unwrap();
        let e = entry(3, Kind::Output);
        ix.apply_subdir(
            &SubdirChanges {
                subdir: 3,
                upserts: vec![e.clone()],
                ..Default::default()
            },
            1,
        )
        .unwrap();
        drop(ix);
        let mem = Index::open_in_memory(Some(&p)).unwrap();
        assert_eq!(mem.entries().unwrap(), vec![e]);
        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(&garbage, b"this is not a database at all, just bytes").unwrap();
        assert!(Index::open(&garbage).unwrap_err().is_index_problem());
        assert_eq!(
            Index::open_in_memory(Some(&garbage))
                .unwrap()
                .entry_count()
                .unwrap(),
            0
        );
    }
}
