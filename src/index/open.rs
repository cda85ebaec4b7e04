//! Opening the index: creating and migrating it, read-only and in-memory
//! copies, falling back when the file cannot be used, and the WAL.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

use super::{BUSY_TIMEOUT, Index, SCHEMA_VERSION, SqlResult, sql};
use crate::error::{Error, Result};
use crate::model::UnixTime;

/// The migrations, in order. Never edit one that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_prog_sessions.sql"),
];

/// With [`Index::keep_wal_on_close`], a write-ahead log up to this size is
/// left for the next process; a bigger one is checkpointed first. The first
/// connection of a process reads the whole WAL to rebuild its in-memory
/// index (about 1 ms per MiB here), so a big one left behind would cost
/// every hook after it that much.
const WAL_KEEP_BYTES: u64 = 1 << 20;

/// Why an index other than the file asked for is in use.
#[derive(Debug)]
pub enum Fallback {
    /// The file was corrupt: it was moved aside and the index rebuilt
    /// (empty, for the next sync to fill).
    Rebuilt {
        /// What SQLite said of the old file.
        error: Error,
        /// Where the old file went, for a bug report.
        moved_to: PathBuf,
    },
    /// The file cannot be used (read-only, too new, locked past the busy
    /// timeout, corrupt and not movable): a private in-memory copy, seeded
    /// from the file where it can be read.
    InMemory {
        /// Why the file cannot be used.
        error: Error,
    },
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Rebuilt { error, moved_to } => write!(
                f,
                "the index was corrupt ({error}); moved it to {} and rebuilt it from the cache",
                moved_to.display()
            ),
            Fallback::InMemory { error } => write!(
                f,
                "the index cannot be used ({error}); working from a direct walk of the cache instead"
            ),
        }
    }
}

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
        .at(path)?;
        let index = Index {
            conn,
            path: path.to_owned(),
            read_only: true,
            keep_wal: false,
        };
        index.conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
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
        let conn = Connection::open_in_memory().at(&path)?;
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
        self.conn.busy_timeout(BUSY_TIMEOUT).at(&p)?;
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

    /// Opens the index at `path` for writing, or, when that fails for a
    /// reason the file itself is to blame for, the next best thing (see
    /// [`Fallback`]): a corrupt index is only a cache, so it is moved aside
    /// (to `<path>.corrupt-<now>`) and rebuilt from the disk; an index that
    /// cannot be used at all is replaced by an in-memory copy. Other
    /// errors are returned.
    pub fn open_or_fallback(path: &Path, now: UnixTime) -> Result<(Index, Option<Fallback>)> {
        let in_memory = |error: Error| -> Result<(Index, Option<Fallback>)> {
            let ix = Index::open_in_memory(Some(path))?;
            Ok((ix, Some(Fallback::InMemory { error })))
        };
        match Index::open(path) {
            Ok(ix) => Ok((ix, None)),
            Err(error) if error.is_corrupt_index() => {
                let aside = path.with_extension(format!("sqlite.corrupt-{now}"));
                let moved = std::fs::rename(path, &aside).is_ok();
                for ext in ["sqlite-wal", "sqlite-shm"] {
                    let _ = std::fs::remove_file(path.with_extension(ext));
                }
                match Index::open(path) {
                    Ok(ix) if moved => Ok((
                        ix,
                        Some(Fallback::Rebuilt {
                            error,
                            moved_to: aside,
                        }),
                    )),
                    _ => in_memory(error),
                }
            }
            Err(error) if error.is_index_problem() || matches!(error, Error::Io { .. }) => {
                in_memory(error)
            }
            Err(error) => Err(error),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
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
