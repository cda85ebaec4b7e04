//! The statements a hook runs, as constants, so that a thread with time to
//! spare can prepare them ahead on the connection's statement cache
//! ([`Index::prepare_check`], [`Index::prepare_sync`]); the methods that run
//! them (in `read` and `write`) prepare the same text and find it cached.

use super::{Index, SqlResult};
use crate::error::Result;

// Which subdirectories changed, and the top level's odd items.
pub(super) const SQL_SUBDIR_STATES: &str = "SELECT subdir, mtime_ns, scanned_at FROM subdirs";
pub(super) const SQL_TOP_OTHERS: &str =
    "SELECT path, class, what, apparent, allocated FROM others WHERE subdir IS NULL ORDER BY path";
// An incremental sync of the subdirectories that changed.
pub(super) const SQL_IS_EMPTY: &str = "SELECT NOT EXISTS (SELECT 1 FROM entries)";
pub(super) const SQL_SUBDIR_NAMES: &str = "SELECT name FROM entries WHERE subdir = ?1";
pub(super) const SQL_ANY_PENDING: &str = "SELECT EXISTS (SELECT 1 FROM pending_uses)";
/// A sync's row for an entry. ?15-?17 mark a CI run's uses as the row is
/// written (see [`Index::mark_in_sync`]): with ?17 a run, a row whose mtime
/// is newer than ?15, or whose last use is at or after ?16, gets
/// `last_run` ?17, so that `runs_mut().mark` finds it marked and rewrites
/// nothing; with ?17 NULL, `last_run` is left as it is.
pub(super) const SQL_UPSERT: &str = "INSERT INTO entries
     (subdir, name, kind, apparent, allocated, mtime, last_use, hits, first_seen, output, program, problem, module, last_run)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 + ?13, ?9, ?10, ?11, ?12, ?14,
             CASE WHEN ?6 > ?15 OR ?7 >= ?16 THEN ?17 END)
     ON CONFLICT (subdir, name) DO UPDATE SET
     kind = excluded.kind, apparent = excluded.apparent,
     allocated = excluded.allocated, mtime = excluded.mtime,
     last_use = max(entries.last_use, excluded.last_use),
     hits = entries.hits + ?13,
     first_seen = min(entries.first_seen, excluded.first_seen),
     output = excluded.output, program = excluded.program,
     problem = excluded.problem,
     module = coalesce(excluded.module, entries.module),
     last_run = CASE WHEN ?17 IS NOT NULL
                      AND (excluded.mtime > ?15 OR max(entries.last_use, excluded.last_use) >= ?16)
                     THEN ?17 ELSE entries.last_run END";
/// The statement of [`SQL_USE`], so that [`SQL_USE_RETURNING`] is the
/// same update.
macro_rules! use_update {
    () => {
        "UPDATE entries SET last_use = max(last_use, ?3), hits = hits + ?4,
         module = coalesce(?5, module),
         mtime = CASE WHEN ?6 THEN max(mtime, ?3) ELSE mtime END
         WHERE subdir = ?1 AND name = ?2"
    };
}
/// A use of an entry: its last use and hits, and the module credited.
pub(super) const SQL_USE: &str = use_update!();
/// [`SQL_USE`], returning what a traced use needs of the entry (only
/// when tracing: SQLite collects a RETURNING row in a temporary table).
pub(super) const SQL_USE_RETURNING: &str =
    concat!(use_update!(), " RETURNING kind, output, allocated");
pub(super) const SQL_DELETE_ENTRY: &str =
    "DELETE FROM entries WHERE subdir = ?1 AND name = ?2 RETURNING kind, apparent, allocated";
pub(super) const SQL_OLD_ROW: &str =
    "SELECT kind, apparent, allocated FROM entries WHERE subdir = ?1 AND name = ?2";
pub(super) const SQL_ADJUST_SUBDIR: &str = "INSERT INTO subdirs (subdir, mtime_ns, scanned_at,
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
pub(super) const SQL_CLEAR_OTHERS: &str = "DELETE FROM others WHERE subdir = ?1";
pub(super) const SQL_OTHER: &str = "INSERT OR REPLACE INTO others (path, subdir, class, what, apparent, allocated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
pub(super) const SQL_SET_SUBDIR: &str =
    "INSERT OR REPLACE INTO subdirs (subdir, mtime_ns, scanned_at,
     build_entries, build_apparent, build_allocated, exe_entries, exe_apparent, exe_allocated,
     dir_allocated)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
pub(super) const SQL_TAKE_PENDING: &str =
    "DELETE FROM pending_uses WHERE subdir = ?1 AND name = ?2 RETURNING last_use, hits, module";
// Crediting a module (once per connection that adds or uses entries).
pub(super) const SQL_CREDIT_MODULE: &str =
    "INSERT INTO modules (root, path, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
     ON CONFLICT (root) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen),
     path = coalesce(excluded.path, path)
     RETURNING id";
// The trace (see `trace`): an event, and the oldest past the bound.
pub(super) const SQL_TRACE_INSERT: &str =
    "INSERT INTO trace (t, ev, kind, entry, output, size, cost, source, module, asked_after)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
pub(super) const SQL_TRACE_ROTATE: &str = "DELETE FROM trace WHERE seq <= ?1";
// What the limit check reads.
pub(super) const SQL_FAST_TOTALS: &str = "SELECT coalesce(sum(build_entries), 0), coalesce(sum(build_apparent), 0), coalesce(sum(build_allocated), 0),
     coalesce(sum(exe_entries), 0), coalesce(sum(exe_apparent), 0), coalesce(sum(exe_allocated), 0)
     FROM subdirs";
pub(super) const SQL_DIR_BYTES: &str = "SELECT coalesce(sum(dir_allocated), 0) FROM subdirs";
pub(super) const SQL_OTHERS: &str =
    "SELECT path, class, what, apparent, allocated FROM others ORDER BY path";
pub(super) const SQL_META: &str = "SELECT value FROM meta WHERE key = ?1";

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
    SQL_CREDIT_MODULE,
    SQL_TRACE_INSERT,
    SQL_TRACE_ROTATE,
];

impl Index {
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
            self.conn.prepare_cached(q).at(&self.path)?;
        }
        Ok(())
    }
}
