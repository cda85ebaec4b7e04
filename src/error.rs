//! The library's error type. Every variant says what happened and carries
//! the path involved; the binary adds what to do and maps to exit codes.

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
    /// An I/O error on a path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("reading", "removing", …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The index database failed.
    #[error("index {path}: {source}")]
    Sqlite {
        /// The index file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The index could not be migrated to this version's schema.
    #[error("index {path}: schema migration failed: {source}")]
    Migration {
        /// The index file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite_migration::Error,
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
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True when SQLite says the index file is not a database or is
    /// corrupt: it can be moved aside and rebuilt.
    pub fn is_corrupt_index(&self) -> bool {
        let source = match self {
            Error::Sqlite { source, .. } => source,
            Error::Migration {
                source: rusqlite_migration::Error::RusqliteError { err, .. },
                ..
            } => err,
            _ => return false,
        };
        matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        )
    }

    /// True when the error means the index itself is unusable (corrupt,
    /// locked past its timeout, read-only, full disk, too new), so the
    /// caller may fall back to a direct walk of the cache.
    pub fn is_index_problem(&self) -> bool {
        matches!(
            self,
            Error::Sqlite { .. } | Error::Migration { .. } | Error::IndexTooNew { .. }
        )
    }
}
