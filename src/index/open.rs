//! Opening the index: creating and migrating it (one creator at a time),
//! read-only and in-memory copies, and the WAL. What to do when the file
//! cannot be used is `recover`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{BUSY_TIMEOUT, Index, SCHEMA_VERSION, SqlResult, sql, without_sql};
use crate::error::{Error, Result};

/// The migrations, in order. Never edit one that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_prog_sessions.sql"),
    include_str!("../../migrations/0003_modules.sql"),
    include_str!("../../migrations/0004_ci_runs.sql"),
    include_str!("../../migrations/0005_trace.sql"),
    include_str!("../../migrations/0006_prog_remote.sql"),
];

/// With [`Index::keep_wal_on_close`], a write-ahead log up to this size is
/// left for the next process; a bigger one is checkpointed first. The first
/// connection of a process reads the whole WAL to rebuild its in-memory
/// index (about 1 ms per MiB here), so a big one left behind would cost
/// every hook after it that much.
pub const WAL_KEEP_BYTES: u64 = 1 << 20;

/// The name [`Index::path`] gives a private in-memory index.
const IN_MEMORY: &str = ":memory:";

impl Drop for Index {
    fn drop(&mut self) {
        if self.read_only || self.is_in_memory() || self.abandoned {
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
    /// index at `path`, waiting up to [`BUSY_TIMEOUT`] for another
    /// process's write lock.
    pub fn open(path: &Path) -> Result<Index> {
        Index::open_waiting(path, BUSY_TIMEOUT)
    }

    /// [`Index::open`], waiting at most `wait` whenever another process
    /// holds the write lock (at open, and for every write after).
    ///
    /// Processes opening a new file together can find each other holding
    /// it where SQLite's busy wait does not apply (two connections each
    /// switching a fresh file to WAL hold a shared lock and want an
    /// exclusive one: SQLite fails one at once rather than deadlock): the
    /// open is then tried again, until `wait` has passed.
    pub fn open_waiting(path: &Path, wait: Duration) -> Result<Index> {
        let deadline = std::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            match Index::open_once(path, wait) {
                Err(e) if e.is_index_busy() && std::time::Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                opened => return opened,
            }
        }
    }

    fn open_once(path: &Path, wait: Duration) -> Result<Index> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        let conn = Connection::open(path).at(path)?;
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
        let file_id = file_id(path);
        let mut index = Index {
            conn,
            path: path.to_owned(),
            read_only: false,
            keep_wal: false,
            abandoned: false,
            file_id,
            credit: None,
            tracing: None,
            marking: None,
        };
        index.configure(wait)?;
        index.migrate()?;
        Ok(index)
    }

    /// Opens an existing index read-only. It must already have this
    /// binary's schema version.
    pub fn open_read_only(path: &Path) -> Result<Index> {
        Index::open_read_only_waiting(path, BUSY_TIMEOUT)
    }

    fn open_read_only_waiting(path: &Path, wait: Duration) -> Result<Index> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .at(path)?;
        let index = Index {
            conn,
            path: path.to_owned(),
            read_only: true,
            keep_wal: false,
            abandoned: false,
            file_id: None,
            credit: None,
            tracing: None,
            marking: None,
        };
        index.conn.busy_timeout(wait).at(path)?;
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
    /// (read-only, corrupt, too new, locked, on a full disk). When `seed`
    /// names a readable index of this schema version, its rows (hits, first
    /// seen, the stored limits) are copied in, waiting at most `wait` for a
    /// process holding it; else it starts empty, and the next sync walks
    /// the whole cache.
    pub fn open_in_memory(seed: Option<&Path>, wait: Duration) -> Result<Index> {
        let path = PathBuf::from(IN_MEMORY);
        let conn = Connection::open_in_memory().at(&path)?;
        let mut index = Index {
            conn,
            path,
            read_only: false,
            keep_wal: false,
            abandoned: false,
            file_id: None,
            credit: None,
            tracing: None,
            marking: None,
        };
        index.conn.busy_timeout(wait).at(&index.path)?;
        index.migrate()?;
        if let Some(seed) = seed
            && Index::open_read_only_waiting(seed, wait).is_ok()
        {
            // A seed that fails half way is dropped: start from empty.
            if copy_seed(&mut index.conn, seed).is_err() {
                index = Index::open_in_memory(None, wait)?;
            }
        }
        Ok(index)
    }

    /// True for a private in-memory index ([`Index::open_in_memory`]).
    pub fn is_in_memory(&self) -> bool {
        self.path == Path::new(IN_MEMORY)
    }

    fn configure(&mut self, wait: Duration) -> Result<()> {
        let p = self.path.clone();
        self.conn.busy_timeout(wait).at(&p)?;
        // journal_mode returns a row; WAL persists in the file.
        let _: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .at(&p)?;
        self.conn
            // A 64 MiB page cache: a 1M-entry index is about 200 MiB, and a
            // full scan touches every page.
            .execute_batch(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA mmap_size = 1073741824;",
            )
            .at(&p)?;
        // No checkpoint when the last connection closes: every short-lived
        // process (a hook after each go command) would otherwise copy the
        // WAL back, fsync twice and delete it, and the next one recreate it
        // (four fsyncs per hook). Automatic checkpoints every 128 WAL pages
        // keep the WAL short instead: the first connection of a process
        // reads the whole WAL to rebuild its index (1 ms per MiB here).
        self.conn
            .execute_batch("PRAGMA wal_autocheckpoint = 128; PRAGMA journal_size_limit = 4194304;")
            .at(&p)?;
        // Room for the sync statements and a trim's.
        self.conn.set_prepared_statement_cache_capacity(32);
        self.conn
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .at(&p)?;
        Ok(())
    }

    fn user_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .at(&self.path)
    }

    /// Brings the schema to [`SCHEMA_VERSION`], one creator at a time:
    /// processes that open a new index together (two hooks after the first
    /// go commands) each take the write lock (`BEGIN IMMEDIATE`, waiting
    /// as for any write) and read the version again under it, so the first
    /// one applies the migrations and the others find them applied. All
    /// pending migrations and the new version commit together, or none.
    fn migrate(&mut self) -> Result<()> {
        let too_new = |found: i64, path: &Path| Error::IndexTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        };
        let version = self.user_version()?;
        if version > SCHEMA_VERSION {
            return Err(too_new(version, &self.path));
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let Index { conn, path, .. } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .at(path)?;
        if version > SCHEMA_VERSION {
            return Err(too_new(version, path));
        }
        let pending = MIGRATIONS.iter().zip(1..).skip(version.max(0) as usize);
        for (migration, to) in pending {
            tx.execute_batch(migration)
                .and_then(|()| tx.pragma_update(None, "user_version", to))
                .map_err(|cause| Error::Migration {
                    path: path.clone(),
                    version: to,
                    cause: without_sql(cause),
                })?;
        }
        tx.commit().at(path)
    }

    /// The write-ahead log SQLite keeps beside the index at `path`.
    pub fn wal_path(path: &Path) -> PathBuf {
        suffixed(path, "-wal")
    }

    /// The shared-memory file SQLite keeps beside the index at `path`.
    pub fn shm_path(path: &Path) -> PathBuf {
        suffixed(path, "-shm")
    }

    /// Leaves a small write-ahead log in place when this index is closed,
    /// instead of moving it into the database file (two fsyncs) and
    /// truncating it: for short processes that run often, such as the hook
    /// after every go command. Other processes checkpoint on close, so the
    /// database file alone holds the index after a scan or trim.
    pub fn keep_wal_on_close(&mut self) {
        self.keep_wal = true;
    }

    /// Closes without the checkpoint on close: for an index given up on
    /// (corrupt, or held by another process), where a checkpoint would
    /// only wait or fail.
    pub(super) fn abandon(mut self) {
        self.abandoned = true;
    }

    /// Moves the write-ahead log into the database file and empties it, so
    /// the index does not keep a large WAL after a big change.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .at(&self.path)
    }

    /// Stops SQLite from checkpointing in whichever commit makes the
    /// write-ahead log long (two fsyncs), for the commits someone waits
    /// for; closing the index still checkpoints.
    pub fn defer_checkpoints(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA wal_autocheckpoint = 0")
            .at(&self.path)
    }
}

/// Copies every row of the index at `seed` into the empty index on
/// `conn`, in one transaction.
fn copy_seed(conn: &mut Connection, seed: &Path) -> rusqlite::Result<()> {
    conn.execute("ATTACH DATABASE ?1 AS seed", [read_only_uri(seed)])?;
    let tx = conn.transaction()?;
    for table in [
        "entries",
        "others",
        "subdirs",
        "pending_uses",
        "meta",
        "modules",
    ] {
        // Table names are from the fixed list above.
        tx.execute(
            &format!("INSERT INTO main.{table} SELECT * FROM seed.{table}"),
            [],
        )?;
    }
    tx.commit()?;
    conn.execute("DETACH DATABASE seed", [])?;
    Ok(())
}

/// `path` with `suffix` added to its file name (not replacing an
/// extension: `foo.db` gives `foo.db-wal`).
pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.to_owned().into_os_string();
    p.push(suffix);
    p.into()
}

/// The device and inode of the file at `path`, to tell later whether the
/// file there is still the one opened.
pub(super) fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A `file:` URI opening `path` read-only, with every byte that could mean
/// something in a URI (`?`, `#`, `%`, spaces, ...) percent-encoded.
fn read_only_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro");
    uri
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::test_add as add;
    use crate::index::test_entry as entry;
    use crate::index::{SubdirChanges, SubdirState};
    use crate::model::Kind;

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
    fn openers_racing_on_a_new_index_create_it_once() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join(format!("race-{round}.sqlite"));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let p = p.clone();
                    std::thread::spawn(move || Index::open(&p).map(|ix| ix.user_version()))
                })
                .collect();
            for o in openers {
                let version = o.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(version.unwrap(), SCHEMA_VERSION);
            }
        }
    }

    #[test]
    fn a_failed_migration_names_its_version_not_its_sql() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.sqlite");
        // A table of the first migration's name, at version 0.
        Connection::open(&p)
            .unwrap()
            .execute_batch("CREATE TABLE entries (x)")
            .unwrap();
        let err = Index::open(&p).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Migration { version: 1, .. }), "{msg}");
        assert!(msg.contains("already exists"), "{msg}");
        assert!(!msg.contains("CREATE"), "no SQL in messages: {msg}");
        // Nothing was half applied.
        let conn = Connection::open(&p).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1);
    }

    #[test]
    fn in_memory_copy_of_a_read_only_index() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.sqlite");
        let mut ix = Index::open(&p).unwrap();
        let e = entry(3, Kind::Output);
        add(&mut ix, [&e], 1);
        drop(ix);
        let mem = Index::open_in_memory(Some(&p), BUSY_TIMEOUT).unwrap();
        assert_eq!(mem.entries().unwrap(), vec![e]);
        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(&garbage, b"this is not a database at all, just bytes").unwrap();
        assert!(Index::open(&garbage).unwrap_err().is_index_problem());
        assert_eq!(
            Index::open_in_memory(Some(&garbage), BUSY_TIMEOUT)
                .unwrap()
                .entry_count()
                .unwrap(),
            0
        );
    }
}
