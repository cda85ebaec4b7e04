//! The library's error type. Every variant says what happened and carries
//! the path involved; the binary adds what to do and maps to exit codes.
//!
//! A variant that wraps another error (`cause`) prints it in its own
//! message and does not also return it from `source()`: anyhow's `{:#}`
//! prints every error of the chain, so doing both printed it twice
//! ("reading X: Not a directory (os error 20): Not a directory (os error
//! 20)"). Printing it keeps every message whole wherever it is shown,
//! `{e}` in a warning included. (thiserror makes a field named `source`
//! the source, hence `cause`.)

use std::path::PathBuf;

/// A `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cache directory could not be located.
    #[error(transparent)]
    Locate(#[from] crate::layout::LocateError),
    /// The cache directory does not exist.
    #[error(
        "the Go build cache {0} does not exist (run a go command first, or check GOCACHE / --cache-dir)"
    )]
    CacheMissing(PathBuf),
    /// The cache path exists but is not a directory.
    #[error("the Go build cache path {0} is not a directory")]
    CacheNotADirectory(PathBuf),
    /// The directory does not look like a Go build cache (see
    /// [`crate::cachedir::check_go_cache`]): nothing is written to it.
    #[error(
        "{dir} does not look like a Go build cache: {found}; gocache writes nothing into a \
         directory Go has not set up as its cache (its README and the subdirectories 00..ff). \
         Check GOCACHE / --cache-dir, or run a go build with this GOCACHE first"
    )]
    NotAGoCache {
        /// The directory.
        dir: PathBuf,
        /// What is in it, for people.
        found: String,
    },
    /// The directory of an index file given explicitly (`--index`,
    /// `$GOCACHE_INDEX`) is missing or unusable: it is not created.
    #[error(
        "the index file {path} cannot be used: {dir}: {cause}; gocache creates no directory for an \
         index given with --index or GOCACHE_INDEX: create it first, or pick another path"
    )]
    IndexDir {
        /// The index file asked for.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// Why the directory cannot be used (in the message, not `source()`).
        cause: std::io::Error,
    },
    /// An I/O error on a path.
    #[error("{op} {path}: {cause}")]
    Io {
        /// What was being done ("reading", "removing", …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error (in the message, not `source()`).
        cause: std::io::Error,
    },
    /// The index database failed.
    #[error("index {path}: {cause}")]
    Sqlite {
        /// The index file.
        path: PathBuf,
        /// The underlying error (in the message, not `source()`).
        cause: rusqlite::Error,
    },
    /// The index could not be migrated to this version's schema. The
    /// message names the migration, never its SQL.
    #[error("index {path}: upgrading its schema to version {version} failed: {cause}")]
    Migration {
        /// The index file.
        path: PathBuf,
        /// The schema version the failed migration leads to.
        version: i64,
        /// The underlying error (in the message, not `source()`).
        cause: rusqlite::Error,
    },
    /// The index was written by a newer gocache; it is left alone.
    #[error(
        "index {path} has schema version {found}, newer than this gocache understands ({supported}); upgrade gocache or use another --index"
    )]
    IndexTooNew {
        /// The index file.
        path: PathBuf,
        /// The schema version found.
        found: i64,
        /// The newest this binary knows.
        supported: i64,
    },
    /// What is at the index's place is not gocache's index (a symlink, not
    /// a regular file, another program's SQLite database): it is left
    /// alone, never written through nor migrated into.
    #[error(
        "{path} is not gocache's index: {why}; gocache leaves it alone and writes no index there \
         (move it away to let gocache keep its index there, or name another with --index)"
    )]
    NotOurIndex {
        /// The index file asked for.
        path: PathBuf,
        /// What is there instead, for people.
        why: String,
    },
    /// The limits stored in the index cannot be read back.
    #[error("the stored limits in {path} are unreadable ({error}); run `gocache limits --reset`")]
    StoredLimits {
        /// The index file.
        path: PathBuf,
        /// What is wrong with them.
        error: serde_json::Error,
    },
    /// Another process holds the lock.
    #[error("{0} is locked by another gocache process")]
    Locked(PathBuf),
    /// A user-supplied value is invalid (size, duration, …).
    #[error("{0}")]
    Invalid(String),
    /// A put found a directory (a cached executable) where its output
    /// belongs: it is left alone, and the output is not cached.
    #[error("{0} is a directory (a cached executable); not replaced")]
    EntryIsDirectory(PathBuf),
    /// `gocache prog` could not read the go command's requests.
    #[error(
        "reading requests: {cause}; the go command's pipe broke (its own error, if any, says why)"
    )]
    RequestStream {
        /// The underlying error (in the message, not `source()`).
        cause: std::io::Error,
    },
    /// A request line longer than any GOCACHEPROG request: what writes to
    /// `gocache prog` is not the go command.
    #[error(
        "a request line is longer than {max_kib} KiB, which no GOCACHEPROG request is (it starts \
         {start:?}); stopping: run gocache prog only as the go command's GOCACHEPROG"
    )]
    RequestTooLong {
        /// The longest line accepted, in KiB.
        max_kib: usize,
        /// The line's first bytes, for people.
        start: String,
    },
    /// A request line the stream cannot go on from (see [`RequestError`]).
    #[error("{error}: {line}; stopping: run gocache prog only as the go command's GOCACHEPROG")]
    BadRequest {
        /// What is wrong with it.
        error: RequestError,
        /// The line, for people.
        line: String,
    },
    /// A request's body could not be read: the stream broke mid-request.
    #[error(
        "request {id}: reading its body: {cause}; the go command's pipe broke (its own error, if any, says why)"
    )]
    RequestBody {
        /// The request's ID.
        id: i64,
        /// The underlying error (in the message, not `source()`).
        cause: std::io::Error,
    },
}

/// Why a GOCACHEPROG request line cannot be used at all (the stream cannot
/// go on: nothing can be answered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not a request object.
    #[error("malformed request (not a JSON request object): {0}")]
    Malformed(String),
    /// No ID: nothing can be answered.
    #[error("request has no ID")]
    NoId,
}

/// Why an item with a cache entry's name is not an entry (a scan lists it
/// as an odd item, and never follows or removes it as an entry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnEntry {
    /// Something else where an entry belongs (a symlink, a fifo, …).
    #[error("{0} where a cache entry belongs; not followed")]
    WrongType(&'static str),
    /// An action entry that is a symlink (found on opening it).
    #[error("symlink; not followed")]
    Symlink,
    /// An executable's directory that cannot be opened.
    #[error("executable directory cannot be opened: {0}")]
    ExeDirUnopenable(rustix::io::Errno),
    /// An executable's directory that cannot be listed.
    #[error("executable directory cannot be read: {0}")]
    ExeDirUnreadable(rustix::io::Errno),
    /// An executable's directory that does not hold exactly one item.
    #[error("executable directory holding {0} entries, expected 1")]
    ExeDirCount(usize),
    /// The executable inside its directory cannot be examined.
    #[error("executable cannot be examined: {0}")]
    ExeUnexaminable(rustix::io::Errno),
    /// The item in an executable's directory is not a file.
    #[error("executable directory holding a {0}")]
    ExeNotAFile(&'static str),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            cause,
        }
    }

    /// SQLite's error code, for an error SQLite raised.
    fn sqlite_code(&self) -> Option<rusqlite::ErrorCode> {
        match self {
            Error::Sqlite { cause, .. } | Error::Migration { cause, .. } => {
                cause.sqlite_error_code()
            }
            _ => None,
        }
    }

    /// True when SQLite says the index file is not a database or is
    /// corrupt, whichever statement found it (at open, mid-scan,
    /// mid-trim): it can be moved aside and rebuilt.
    pub fn is_corrupt_index(&self) -> bool {
        matches!(
            self.sqlite_code(),
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        )
    }

    /// True when another process held the index past the wait
    /// (`SQLITE_BUSY`, `SQLITE_LOCKED`).
    pub fn is_index_busy(&self) -> bool {
        matches!(
            self.sqlite_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }

    /// True when the disk is full (`SQLITE_FULL`, or `ENOSPC` from an I/O
    /// call): gocache can free space by evicting, which writing the index
    /// then may need first.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { cause, .. } | Error::IndexDir { cause, .. } => {
                cause.raw_os_error() == Some(libc::ENOSPC)
            }
            _ => self.sqlite_code() == Some(rusqlite::ErrorCode::DiskFull),
        }
    }

    /// True when the error means the index itself is unusable (corrupt,
    /// locked past its wait, read-only, full disk, I/O errors, too new,
    /// not gocache's),
    /// so the caller may fall back to a direct walk of the cache.
    pub fn is_index_problem(&self) -> bool {
        matches!(
            self,
            Error::Sqlite { .. }
                | Error::Migration { .. }
                | Error::IndexTooNew { .. }
                | Error::NotOurIndex { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_printed_once_whatever_wraps_it() {
        let e = Error::io(
            "reading",
            "/c",
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        let plain = e.to_string();
        assert_eq!(plain.matches("os error 13").count(), 1, "{plain}");
        let chained = format!("{:#}", anyhow::Error::new(e).context("cache directory"));
        assert_eq!(chained.matches("os error 13").count(), 1, "{chained}");
        assert!(
            chained.starts_with("cache directory: reading /c: "),
            "{chained}"
        );
    }
}
