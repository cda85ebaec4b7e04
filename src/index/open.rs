//! Opening the index: creating and migrating it (one creator at a time),
//! read-only and in-memory copies, and the WAL. What to do when the file
//! cannot be used is `recover`'s.
//!
//! # Only gocache's own file, never through a symlink
//!
//! The index lives in the cache directory, which other programs and other
//! users write to, so what is at its place is checked before SQLite gets a
//! path ([`checked_path`]): its directory (`gocache/`) must be a real
//! directory, the file and its `-wal` and `-shm` regular files (or
//! missing), and SQLite opens the path with every symlink above that
//! directory resolved (the user's, as the cache directory's own path is)
//! and `SQLITE_OPEN_NOFOLLOW`, so a symlink swapped in meanwhile is refused
//! as well. Then the database must be gocache's ([`recognise`]): its
//! `application_id` is [`APPLICATION_ID`], or it has none and holds only
//! gocache's tables (an index made before the mark, which is then set),
//! or nothing at all (a new index). Anything else (another program's
//! database, a link) is left alone and untouched: [`Error::NotOurIndex`],
//! on which every command works from a walk of the cache with one warning.
//! The same holds for an index named with `--index`.
//!
//! What gocache creates there follows the directory's owner and mode as
//! Go's files do: the file is created before SQLite opens it, mode `0666`
//! less the umask (SQLite would make it `0644` whatever the umask), owned
//! like its directory when gocache runs as root; SQLite gives the `-wal`
//! and `-shm` files the database file's mode and owner.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{BUSY_TIMEOUT, Index, SCHEMA_VERSION, SqlResult, sql, without_sql};
use crate::cachedir::{open_dir, open_dir_at, open_or_create_dir_at, own_like_parent};
use crate::error::{Error, Result};

/// gocache's mark in the index file's header (`PRAGMA application_id`,
/// four bytes at offset 68): `gcix`. Set when gocache creates an index;
/// a database without it is never migrated into (see the module doc).
pub const APPLICATION_ID: i32 = 0x6763_6978;

/// The tables gocache's migrations create, and no others: an index made
/// before [`APPLICATION_ID`] was set is recognised by them.
const OUR_TABLES: &[&str] = &[
    "entries",
    "others",
    "subdirs",
    "pending_uses",
    "meta",
    "prog_sessions",
    "modules",
    "ci_runs",
    "trace",
];

/// The migrations, in order. Never edit one that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_prog_sessions.sql"),
    include_str!("../../migrations/0003_modules.sql"),
    include_str!("../../migrations/0004_ci_runs.sql"),
    include_str!("../../migrations/0005_trace.sql"),
    include_str!("../../migrations/0006_prog_remote.sql"),
    include_str!("../../migrations/0007_trace_asked_after.sql"),
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
    /// Opens (creating it, and its directory if that alone is missing)
    /// and migrates the index at `path`, waiting up to [`BUSY_TIMEOUT`]
    /// for another process's write lock. Only gocache's own file, never
    /// through a symlink at it or its directory ([`Error::NotOurIndex`]
    /// otherwise; see the module doc). [`Index::path`] is then `path`
    /// with the symlinks above that directory resolved.
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
        let real = checked_path(path, true)?;
        let conn = Connection::open_with_flags(
            &real,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(|e| refused_link(path, e))?;
        let path = real.as_path();
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
        // Before anything writes (switching to WAL writes the header).
        index.conn.busy_timeout(wait).at(path)?;
        recognise(&index.conn, path)?;
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
        let real = checked_path(path, false)?;
        let conn = Connection::open_with_flags(
            &real,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(|e| refused_link(path, e))?;
        let path = real.as_path();
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
        recognise(&index.conn, path)?;
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
    /// seen, the stored limits, CI runs; not the trace nor `gocache prog`'s
    /// sessions) are copied in, waiting at most `wait` for a
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
            && let Ok(file) = Index::open_read_only_waiting(seed, wait)
        {
            // A seed that fails half way is dropped: start from empty.
            if copy_seed(&mut index.conn, file.path()).is_err() {
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
        if version == SCHEMA_VERSION && application_id(&self.conn).at(&self.path)? == APPLICATION_ID
        {
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
        // A new index, or one made before the mark: mark it gocache's.
        if application_id(&tx).at(path)? != APPLICATION_ID {
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .at(path)?;
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

/// The database's `application_id` (0 when none was set).
fn application_id(conn: &Connection) -> rusqlite::Result<i32> {
    conn.query_row("PRAGMA application_id", [], |r| r.get(0))
}

/// Checks, reading only, that the database open on `conn` (at `path`) is
/// gocache's index or a new one (see the module doc):
/// [`Error::NotOurIndex`] when it is another program's.
fn recognise(conn: &Connection, path: &Path) -> Result<()> {
    let id = application_id(conn).at(path)?;
    if id == APPLICATION_ID {
        return Ok(());
    }
    let not_ours = |why: String| Error::NotOurIndex {
        path: path.to_owned(),
        why,
    };
    if id != 0 {
        return Err(not_ours(format!(
            "a SQLite database of another program (its application_id is {id:#010x}, not gocache's {APPLICATION_ID:#010x})"
        )));
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .at(path)?;
    if tables.is_empty() {
        return Ok(()); // new
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .at(path)?;
    let foreign: Vec<&str> = tables
        .iter()
        .map(String::as_str)
        .filter(|t| !OUR_TABLES.contains(t))
        .collect();
    // An index from before the mark: gocache's tables only, migrated.
    if foreign.is_empty() && version >= 1 && tables.iter().any(|t| t == "entries") {
        return Ok(());
    }
    let shown = if foreign.is_empty() {
        &tables.iter().map(String::as_str).collect::<Vec<_>>()[..]
    } else {
        &foreign[..]
    };
    let more = match shown.len() {
        n if n > 3 => format!(" and {} more", n - 3),
        _ => String::new(),
    };
    Err(not_ours(format!(
        "a SQLite database with tables gocache did not make ({}{more}) and no application_id",
        shown[..shown.len().min(3)].join(", ")
    )))
}

/// What is at `name` in `dir`, for a message: "a symlink to /x", "a
/// directory", "a regular file", "a socket or device".
fn what_is(dir: &rustix::fd::OwnedFd, name: &std::ffi::OsStr) -> String {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(e) => format!("unreadable ({e})"),
        Ok(st) => match FileType::from_raw_mode(st.st_mode as _) {
            FileType::Symlink => match rustix::fs::readlinkat(dir, name, Vec::new()) {
                Ok(to) => format!("a symlink to {}", to.to_string_lossy()),
                Err(_) => "a symlink".into(),
            },
            FileType::Directory => "a directory".into(),
            FileType::RegularFile => "a regular file".into(),
            _ => "not a regular file (a socket, pipe or device)".into(),
        },
    }
}

/// Where SQLite opens the index at `path` (see the module doc): the path
/// with every symlink above the index's directory resolved, once that
/// directory is seen to be a real directory (created when missing and
/// `create`, owned like its parent) and the file, its `-wal` and its
/// `-shm` regular files or missing (the file created when `create`, mode
/// `0666` less the umask, owned like its directory). A symlink or anything
/// else at one of these names: [`Error::NotOurIndex`].
fn checked_path(path: &Path, create: bool) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let not_ours = |why: String| Error::NotOurIndex {
        path: path.to_owned(),
        why,
    };
    let Some(name) = path.file_name() else {
        return Err(Error::Invalid(format!(
            "the index path {} does not name a file",
            path.display()
        )));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // The index's own directory is checked; the ones above it are the
    // user's ("/", "." and ".." are taken as they are).
    let (above, dir_name) = match (dir.parent(), dir.file_name()) {
        (Some(a), Some(n)) if a.as_os_str().is_empty() => (Path::new("."), Some(n)),
        (Some(a), Some(n)) => (a, Some(n)),
        _ => (dir, None),
    };
    let above_real = std::fs::canonicalize(above).map_err(|e| Error::io("opening", above, e))?;
    let above_fd = open_dir(&above_real).map_err(|e| Error::io("opening", above, e))?;
    let (dir_fd, real_dir) = match dir_name {
        None => (above_fd, above_real),
        Some(n) => {
            let opened = if create {
                open_or_create_dir_at(&above_fd, n)
            } else {
                open_dir_at(&above_fd, n).map_err(std::io::Error::from)
            };
            match opened {
                Ok(fd) => (fd, above_real.join(n)),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                    return Err(not_ours(format!(
                        "its directory {} is {}",
                        dir.display(),
                        what_is(&above_fd, n)
                    )));
                }
                Err(e) => {
                    return Err(Error::io(
                        if create { "creating" } else { "opening" },
                        dir,
                        e,
                    ));
                }
            }
        }
    };
    for suffix in ["", "-wal", "-shm"] {
        let mut file = name.to_owned();
        file.push(suffix);
        match rustix::fs::statat(&dir_fd, &file, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile => {}
            Ok(_) => {
                let what = what_is(&dir_fd, &file);
                return Err(not_ours(if suffix.is_empty() {
                    format!("it is {what}")
                } else {
                    format!("its {suffix} file is {what}")
                }));
            }
            Err(rustix::io::Errno::NOENT) if suffix.is_empty() && create => {
                // Best effort: where it cannot be made, SQLite says why.
                if let Ok(fd) = rustix::fs::openat(
                    &dir_fd,
                    &file,
                    OFlags::RDWR
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o666),
                ) {
                    own_like_parent(&dir_fd, &fd);
                }
            }
            Err(_) => {}
        }
    }
    debug_assert!(!name.as_bytes().contains(&b'/'));
    Ok(real_dir.join(name))
}

/// SQLite's refusal of a path holding a symlink (`SQLITE_OPEN_NOFOLLOW`:
/// one swapped in after [`checked_path`] looked) as
/// [`Error::NotOurIndex`]; other errors as they are.
fn refused_link(path: &Path, e: rusqlite::Error) -> Error {
    // SQLITE_CANTOPEN_SYMLINK: (SQLITE_CANTOPEN | (6 << 8)).
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.extended_code == rusqlite::ffi::SQLITE_CANTOPEN | (6 << 8)
    {
        return Error::NotOurIndex {
            path: path.to_owned(),
            why: "its path holds a symlink".into(),
        };
    }
    sql(path, e)
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
        // Small, and what `ci end` needs to know its run when the file
        // cannot be written (a full disk, another user's index).
        "ci_runs",
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
        // A table of the first migration's name, at version 0, in a file
        // marked as gocache's (unmarked, it would not be migrated into).
        Connection::open(&p)
            .unwrap()
            .execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; CREATE TABLE entries (x)"
            ))
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

    /// The bytes, length and mtime of `p`, and which names sit beside it:
    /// what a write through a link would change.
    fn fingerprint(p: &Path) -> (Vec<u8>, std::time::SystemTime, Vec<String>) {
        let mut beside: Vec<String> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        beside.sort();
        let m = std::fs::metadata(p).unwrap();
        (std::fs::read(p).unwrap(), m.modified().unwrap(), beside)
    }

    /// Another program's SQLite database, in WAL mode as gocache's is.
    fn foreign_db(p: &Path, application_id: i32) {
        let conn = Connection::open(p).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = {application_id}; PRAGMA journal_mode = WAL; \
             CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ann');"
        ))
        .unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(conn);
        for s in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(suffixed(p, s));
        }
    }

    #[test]
    fn an_index_reached_through_a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let theirs = elsewhere.path().join("app.db");
        foreign_db(&theirs, 0);
        let before = fingerprint(&theirs);
        // The file a link.
        let own = dir.path().join("gocache");
        std::fs::create_dir(&own).unwrap();
        std::os::unix::fs::symlink(&theirs, own.join("index.sqlite")).unwrap();
        for err in [
            Index::open(&own.join("index.sqlite")).unwrap_err(),
            Index::open_read_only(&own.join("index.sqlite")).unwrap_err(),
        ] {
            assert!(matches!(err, Error::NotOurIndex { .. }), "{err}");
            assert!(err.is_index_problem());
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("it is a symlink to {}", theirs.display())),
                "{msg}"
            );
        }
        let mem = Index::open_in_memory(Some(&own.join("index.sqlite")), BUSY_TIMEOUT).unwrap();
        assert_eq!(mem.entry_count().unwrap(), 0, "not seeded from their file");
        drop(mem);
        assert_eq!(fingerprint(&theirs), before);
        // Its directory a link: nothing is created where it points.
        let linked = tempfile::tempdir().unwrap();
        std::fs::remove_file(own.join("index.sqlite")).unwrap();
        std::fs::remove_dir(&own).unwrap();
        std::os::unix::fs::symlink(linked.path(), &own).unwrap();
        let err = Index::open(&own.join("index.sqlite")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("its directory") && msg.contains("is a symlink to"),
            "{msg}"
        );
        assert_eq!(std::fs::read_dir(linked.path()).unwrap().count(), 0);
        // A link at the WAL's name.
        std::fs::remove_file(&own).unwrap();
        std::fs::create_dir(&own).unwrap();
        std::os::unix::fs::symlink(&theirs, own.join("index.sqlite-wal")).unwrap();
        let err = Index::open(&own.join("index.sqlite")).unwrap_err();
        assert!(
            err.to_string().contains("its -wal file is a symlink"),
            "{err}"
        );
        assert_eq!(fingerprint(&theirs), before);
    }

    #[test]
    fn another_programs_database_is_never_migrated_into() {
        let dir = tempfile::tempdir().unwrap();
        for id in [0, 0x1234_5678] {
            let p = dir.path().join(format!("theirs-{id}.sqlite"));
            foreign_db(&p, id);
            let before = std::fs::read(&p).unwrap();
            let err = Index::open(&p).unwrap_err();
            assert!(matches!(err, Error::NotOurIndex { .. }), "{err}");
            let msg = err.to_string();
            if id == 0 {
                assert!(msg.contains("tables gocache did not make (users)"), "{msg}");
            } else {
                assert!(msg.contains("application_id is 0x12345678"), "{msg}");
            }
            assert!(Index::open_read_only(&p).is_err());
            assert_eq!(std::fs::read(&p).unwrap(), before, "not one byte written");
            let tables: i64 = Connection::open(&p)
                .unwrap()
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .unwrap();
            assert_eq!(tables, 1);
        }
    }

    #[test]
    fn a_new_index_is_marked_and_an_old_unmarked_one_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.sqlite");
        let ix = Index::open(&p).unwrap();
        assert_eq!(application_id(&ix.conn).unwrap(), APPLICATION_ID);
        // The tables the migrations make are exactly those recognised.
        let mut tables: Vec<String> = ix
            .conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        tables.sort();
        let mut ours: Vec<&str> = OUR_TABLES.to_vec();
        ours.sort();
        assert_eq!(tables, ours);
        drop(ix);
        // An index made before the mark.
        Connection::open(&p)
            .unwrap()
            .pragma_update(None, "application_id", 0)
            .unwrap();
        let ro = Index::open_read_only(&p).unwrap();
        assert_eq!(
            application_id(&ro.conn).unwrap(),
            0,
            "read-only: left as it is"
        );
        drop(ro);
        let ix = Index::open(&p).unwrap();
        assert_eq!(application_id(&ix.conn).unwrap(), APPLICATION_ID);
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
