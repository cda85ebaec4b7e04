//! When the index file cannot be used: the one recovery path every command
//! takes ([`Access::run`]).
//!
//! The index is a cache of the truth on disk, so no fault of its own may
//! stop a command. A command hands its work on the index to
//! [`Access::run`]; when opening the index, or any statement of the work,
//! fails for a reason the index file is to blame for, the index is
//! recovered and the work runs again from the start:
//!
//! - **Damaged** (`SQLITE_CORRUPT`, `SQLITE_NOTADB`, whichever statement
//!   finds it: at open, mid-scan, mid-trim): the file is moved aside with
//!   its own write-ahead log, to `<index>.corrupt-<now>` and
//!   `<index>.corrupt-<now>-wal` (its `-shm`, which SQLite rebuilds, is
//!   removed), and a new index is created in its place, keeping the stored
//!   limits when the old file still yields them. The work runs again on
//!   it: its sync fills the new index from the cache. Only the newest
//!   moved-aside copy is kept, beside the index, so copies never pile up;
//!   inside the cache directory they count towards the budget like every
//!   byte of gocache's own directory. Damage found again: as below.
//! - **Held** by another process past [`Access::wait`] (`SQLITE_BUSY`),
//!   **read-only**, on a **full disk** (`SQLITE_FULL`), other I/O errors,
//!   or **too new** for this binary: the file is left as it is, and the work
//!   runs again on a private in-memory copy, seeded from the file where it
//!   can still be read (else empty: the sync walks the whole cache). So
//!   eviction never depends on writing the index first.
//!
//! A command whose only job is to write the index (`scan`, `limits`) says
//! [`Access::in_memory_ok`] = false and gets the error instead of a copy.
//!
//! The work must be safe to run again from the start. Every command's is:
//! a sync, a plan from what the sync found, removals that re-check each
//! entry on disk; what a first attempt removed is simply gone for the next.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::open::{file_id, suffixed};
use super::{Index, LOCK_WAIT};
use crate::error::{Error, Result};
use crate::model::UnixTime;

/// How a command wants its index, and what it accepts instead.
#[derive(Clone, Debug)]
pub struct Access {
    /// The index file.
    pub path: PathBuf,
    /// How long to wait, at open and at each write, for another process
    /// holding the index before giving up on the file.
    pub wait: Duration,
    /// Whether a private in-memory copy will do when the file cannot be
    /// used (every command but those whose job is to write the index).
    pub in_memory_ok: bool,
    /// Leave a small write-ahead log on close (the hook: see
    /// [`Index::keep_wal_on_close`]).
    pub keep_wal: bool,
}

/// The result of work done by [`Access::run`], with the index it was done
/// on and, when that is not the file asked for as it was, why.
#[derive(Debug)]
pub struct Recovered<T> {
    /// What the work returned.
    pub value: T,
    /// The index it ran on (the file, a rebuilt file, or in memory).
    pub index: Index,
    /// How the index was recovered, if it was: to say once, as a warning.
    pub fallback: Option<Fallback>,
}

/// Why an index other than the file asked for is in use.
#[derive(Debug)]
pub enum Fallback {
    /// The file was damaged: it was moved aside and the index rebuilt
    /// (empty, for the work's sync to fill).
    Rebuilt {
        /// What SQLite said of the old file.
        error: Error,
        /// Where the old file went, for a bug report (`None`: another
        /// gocache process moved it first).
        moved_to: Option<PathBuf>,
    },
    /// The file cannot be used (held by another process, read-only, on a
    /// full disk, too new, damaged and not movable): a private in-memory
    /// copy, seeded from the file where it can be read.
    InMemory {
        /// Why the file cannot be used.
        error: Error,
        /// How long another process's hold was waited for.
        waited: Duration,
    },
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Rebuilt {
                error,
                moved_to: Some(to),
            } => write!(
                f,
                "the index was damaged ({error}); moved it to {} and rebuilt it from the cache",
                to.display()
            ),
            Fallback::Rebuilt {
                error,
                moved_to: None,
            } => write!(
                f,
                "the index was damaged ({error}); another gocache process replaced it; rebuilt it from the cache"
            ),
            Fallback::InMemory { error, waited } if error.is_index_busy() => write!(
                f,
                "another process held the index for over {:.1}s ({error}); working from a direct walk of the cache instead",
                waited.as_secs_f64()
            ),
            Fallback::InMemory { error, .. } => write!(
                f,
                "the index cannot be used ({error}); working from a direct walk of the cache instead"
            ),
        }
    }
}

impl Access {
    /// The index at `path` for a command that can work from a walk:
    /// [`LOCK_WAIT`], in-memory copies accepted.
    pub fn new(path: &Path) -> Access {
        Access {
            path: path.to_owned(),
            wait: LOCK_WAIT,
            in_memory_ok: true,
            keep_wal: false,
        }
    }

    /// Opens the file as asked (no recovery).
    pub fn open(&self) -> Result<Index> {
        let mut index = Index::open_waiting(&self.path, self.wait)?;
        if self.keep_wal {
            index.keep_wal_on_close();
        }
        Ok(index)
    }

    /// Opens the index and runs `work` on it, recovering as the module doc
    /// says when the index is to blame, and running `work` again. `work`
    /// is told whether the index it gets was recovered (its rows may be
    /// few or none: sync before trusting them). Errors that are not the
    /// index's (the cache directory, bad input), and any error on an
    /// in-memory copy, are returned as they are.
    pub fn run<T>(
        &self,
        now: UnixTime,
        mut work: impl FnMut(&mut Index, bool) -> Result<T>,
    ) -> Result<Recovered<T>> {
        self.run_from(self.open(), now, |index, why| work(index, why.is_some()))
    }

    /// [`Access::run`], telling `work` why the index it gets is not the
    /// file as it was (`None`: it is): for work that does something else
    /// on a full disk (`gocache ci end` evicts first, then ends the run on
    /// the file).
    pub fn run_with<T>(
        &self,
        now: UnixTime,
        work: impl FnMut(&mut Index, Option<&Fallback>) -> Result<T>,
    ) -> Result<Recovered<T>> {
        self.run_from(self.open(), now, work)
    }

    /// [`Access::run_with`] with the first opening done by the caller (the
    /// hook opens the index while it reads the cache).
    pub fn run_from<T>(
        &self,
        opened: Result<Index>,
        now: UnixTime,
        mut work: impl FnMut(&mut Index, Option<&Fallback>) -> Result<T>,
    ) -> Result<Recovered<T>> {
        let mut fallback = None;
        let mut rebuilt = false;
        // An I/O error opening the index (its directory cannot be made,
        // say) is the index's; from the work, it is the cache's.
        let mut attempt = opened.map_err(|e| (e, None, true));
        loop {
            let mut index = match attempt {
                Ok(index) => index,
                Err((error, opened_file, at_open)) => {
                    let (index, why) =
                        self.recover(error, opened_file, at_open, now, &mut rebuilt)?;
                    fallback = Some(why);
                    index
                }
            };
            match work(&mut index, fallback.as_ref()) {
                Ok(value) => {
                    return Ok(Recovered {
                        value,
                        index,
                        fallback,
                    });
                }
                Err(error) if index.is_in_memory() || !error.is_index_problem() => {
                    return Err(error);
                }
                Err(error) => {
                    let opened_file = index.file_id;
                    index.abandon();
                    attempt = Err((error, opened_file, false));
                }
            }
        }
    }

    /// The next best index after `error`: a rebuilt file the first time
    /// the file is found damaged, else an in-memory copy (if accepted).
    /// `opened` is the file the error came from, when it was opened;
    /// `at_open`: the error came from opening it.
    fn recover(
        &self,
        error: Error,
        opened: Option<(u64, u64)>,
        at_open: bool,
        now: UnixTime,
        rebuilt: &mut bool,
    ) -> Result<(Index, Fallback)> {
        let io_at_open = at_open && matches!(error, Error::Io { .. });
        if !error.is_index_problem() && !io_at_open {
            return Err(error);
        }
        let damaged = error.is_corrupt_index();
        if damaged && !*rebuilt {
            *rebuilt = true;
            if let Ok(moved_to) = move_aside(&self.path, opened, now)
                && let Ok(mut index) = self.open()
            {
                if let Some(old) = &moved_to {
                    index.salvage_meta(old);
                }
                return Ok((index, Fallback::Rebuilt { error, moved_to }));
            }
        }
        if !self.in_memory_ok {
            return Err(error);
        }
        // A damaged file is not read again: its rows may be wrong; another
        // program's file is not read at all.
        let seed = (!damaged).then_some(self.path.as_path());
        let index = Index::open_in_memory(seed, self.wait)?;
        Ok((
            index,
            Fallback::InMemory {
                error,
                waited: self.wait,
            },
        ))
    }
}

/// The name a damaged index at `path` is moved to at `now`.
pub fn aside_path(path: &Path, now: UnixTime) -> PathBuf {
    suffixed(path, &format!(".corrupt-{now}"))
}

/// Moves the damaged index at `path` aside (see the module doc), its own
/// write-ahead log first: a log left behind would be replayed into the new
/// index. `opened` is the file found damaged: when another file is at
/// `path` now, another process has moved it already, and `Ok(None)` says
/// so. Older moved-aside copies of this index are removed.
fn move_aside(
    path: &Path,
    opened: Option<(u64, u64)>,
    now: UnixTime,
) -> std::io::Result<Option<PathBuf>> {
    let here = file_id(path);
    if here.is_none() || opened.is_some_and(|o| Some(o) != here) {
        return Ok(None);
    }
    let aside = aside_path(path, now);
    let wal = Index::wal_path(path);
    match std::fs::rename(&wal, Index::wal_path(&aside)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => remove_if_there(&wal)?,
    }
    std::fs::rename(path, &aside)?;
    remove_if_there(&Index::shm_path(path))?;
    remove_older_copies(path, &aside);
    Ok(Some(aside))
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes moved-aside copies of the index at `path` other than `keep`:
/// only names of the exact form `<index name>.corrupt-<digits>`, with or
/// without `-wal` or `-shm`, beside the index.
fn remove_older_copies(path: &Path, keep: &Path) {
    let (Some(dir), Some(name), Some(keep)) = (
        path.parent(),
        path.file_name().and_then(|n| n.to_str()),
        keep.file_name().and_then(|n| n.to_str()),
    ) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{name}.corrupt-");
    let Some(kept) = keep.strip_prefix(&prefix) else {
        return;
    };
    for item in listing.flatten() {
        let file = item.file_name();
        let Some(stamp) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let stamp = stamp
            .strip_suffix("-wal")
            .or_else(|| stamp.strip_suffix("-shm"))
            .unwrap_or(stamp);
        if !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit()) && stamp != kept {
            let _ = std::fs::remove_file(dir.join(&file));
        }
    }
}

impl Index {
    /// Copies what the user set (the stored limits) and the last trim's
    /// summary from the damaged index moved to `old` into this new one,
    /// where they can still be read and parse. Best effort: a rebuild
    /// without them is still a rebuild.
    fn salvage_meta(&mut self, old: &Path) {
        let read = || -> rusqlite::Result<Vec<(String, String)>> {
            let conn = Connection::open_with_flags(
                old,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            let mut stmt = conn.prepare("SELECT key, value FROM meta")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        };
        let rows = read().unwrap_or_default();
        // Reading a WAL-mode file makes SQLite create its `-shm`: ours.
        let _ = remove_if_there(&Index::shm_path(old));
        for (key, value) in rows {
            let _ = self.restore_meta(&key, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::test_entry as entry;
    use crate::index::{BUSY_TIMEOUT, test_add as add};
    use crate::limits::{LimitSpecs, SizeLimit};
    use crate::model::Kind;

    fn filled(path: &Path) {
        let mut ix = Index::open(path).unwrap();
        let entries: Vec<_> = (0..200u8).map(|s| entry(s, Kind::Output)).collect();
        add(&mut ix, &entries, 1);
        ix.store_limits(&LimitSpecs {
            budget: Some(SizeLimit::Bytes(1 << 30)),
            ..Default::default()
        })
        .unwrap();
    }

    /// Zeroes the pages of the `entries` table, as a failing disk would:
    /// opening (which reads the schema) still works, reading the entries
    /// does not. (Not "every page past the first": the schema itself
    /// spans more than one page as tables are added.)
    fn damage(path: &Path) {
        use std::os::unix::fs::FileExt;
        let pages: Vec<i64> = {
            // Read-only: closing it must not checkpoint the WAL.
            let ro = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
            let conn = rusqlite::Connection::open_with_flags(path, ro).unwrap();
            let mut q = conn
                .prepare("SELECT pageno FROM dbstat WHERE name = 'entries'")
                .unwrap();
            q.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert!(pages.len() > 3, "{pages:?}");
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        for page in pages {
            f.write_all_at(&[0u8; 4096], 4096 * (page as u64 - 1))
                .unwrap();
        }
    }

    #[test]
    fn damage_found_mid_work_is_moved_aside_with_its_own_names_and_the_work_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("foo.db");
        filled(&p);
        // The limits changed since, in the index's WAL only: they survive
        // only if the WAL moves aside with its database.
        let mut ix = Index::open(&p).unwrap();
        ix.keep_wal_on_close();
        ix.store_limits(&LimitSpecs {
            budget: Some(SizeLimit::Bytes(2 << 30)),
            ..Default::default()
        })
        .unwrap();
        drop(ix);
        assert!(
            std::fs::metadata(dir.path().join("foo.db-wal"))
                .unwrap()
                .len()
                > 0
        );
        damage(&p);
        // Files of another index whose names a with_extension would give.
        for other in ["foo.sqlite-wal", "foo.sqlite-shm", "foo.db.corrupt-1-wal"] {
            std::fs::write(dir.path().join(other), other).unwrap();
        }
        std::fs::write(dir.path().join("foo.db.corrupt-5"), "older copy").unwrap();
        let mut runs = 0;
        let done = Access::new(&p)
            .run(77, |ix, recovered| {
                runs += 1;
                assert_eq!(recovered, runs > 1);
                ix.entries().map(|e| e.len())
            })
            .unwrap();
        assert_eq!((runs, done.value), (2, 0), "the rebuilt index is empty");
        assert!(matches!(done.fallback, Some(Fallback::Rebuilt { .. })));
        assert!(!done.index.is_in_memory());
        assert_eq!(
            done.index.stored_limits().unwrap().budget,
            Some(SizeLimit::Bytes(2 << 30)),
            "the stored limits survive, from the WAL moved with the file"
        );
        drop(done);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "foo.db",
                "foo.db-shm",
                "foo.db-wal",
                "foo.db.corrupt-77",
                "foo.db.corrupt-77-wal",
                "foo.sqlite-shm",
                "foo.sqlite-wal"
            ]
        );
        for other in ["foo.sqlite-wal", "foo.sqlite-shm"] {
            assert_eq!(
                std::fs::read_to_string(dir.path().join(other)).unwrap(),
                other
            );
        }
    }

    #[test]
    fn an_index_that_cannot_even_be_created_gives_an_in_memory_copy() {
        // Its directory would be inside a file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let p = dir.path().join("file/index.sqlite");
        let done = Access::new(&p).run(1, |ix, _| ix.entry_count()).unwrap();
        assert!(done.index.is_in_memory());
        assert!(matches!(done.fallback, Some(Fallback::InMemory { .. })));
        // What the work itself finds wrong with the disk is the caller's.
        let err = Access::new(&dir.path().join("i.sqlite"))
            .run(1, |_, _| -> Result<()> {
                Err(Error::io("reading", "/c", std::io::Error::other("gone")))
            })
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn a_write_locked_index_is_worked_on_in_memory_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.sqlite");
        filled(&p);
        let holder = Connection::open(&p).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let access = Access {
            wait: Duration::from_millis(200),
            ..Access::new(&p)
        };
        let started = std::time::Instant::now();
        let done = access
            .run(1, |ix, _| {
                ix.mark_subdir_dirty(3, 1)?;
                ix.entries().map(|e| e.len())
            })
            .unwrap();
        assert!(started.elapsed() < BUSY_TIMEOUT, "{:?}", started.elapsed());
        assert_eq!(done.value, 200, "seeded from the file (WAL readers go on)");
        assert!(done.index.is_in_memory());
        let why = done.fallback.unwrap().to_string();
        assert!(why.contains("another process held the index"), "{why}");
        // Where the in-memory copy will not do, the error.
        let err = Access {
            in_memory_ok: false,
            ..access
        }
        .run(1, |ix, _| ix.mark_subdir_dirty(3, 1))
        .unwrap_err();
        assert!(err.is_index_busy(), "{err}");
    }
}
