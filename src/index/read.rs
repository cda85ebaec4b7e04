//! Reading the index: entries, odd items, and what each subdirectory
//! holds.

use rusqlite::params;

use super::statements::*;
use super::{Index, SqlResult, SubdirState};
use crate::error::Result;
use crate::layout::{EntryName, Id};
use crate::model::{Bytes, Entry, Kind, Other, OtherClass, Totals};

impl Index {
    /// What was recorded for each of the 256 subdirectories.
    pub fn subdir_states(&self) -> Result<Vec<Option<SubdirState>>> {
        let mut out = vec![None; 256];
        let mut stmt = self.conn.prepare_cached(SQL_SUBDIR_STATES).at(&self.path)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .at(&self.path)?;
        for row in rows {
            let (subdir, mtime, scanned_at) = row.at(&self.path)?;
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
        let mut stmt = self.conn.prepare_cached(SQL_SUBDIR_NAMES).at(&self.path)?;
        let mut rows = stmt.query(params![subdir]).at(&self.path)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().at(&self.path)? {
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
            .at(&self.path)
    }

    /// The number of entries in the index (reads every row: prefer
    /// [`Index::fast_totals`] where an estimate from the scans will do).
    pub fn entry_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .at(&self.path)
    }

    /// Totals per tier, from the per-subdirectory totals the scans keep:
    /// 256 rows, however large the cache.
    pub fn fast_totals(&self) -> Result<Totals> {
        self.conn
            .prepare_cached(SQL_FAST_TOTALS)
            .at(&self.path)?
            .query_row([], |r| {
                let g = |i| r.get::<_, i64>(i).map(|v| v as u64);
                let bytes = |i| -> rusqlite::Result<Bytes> {
                    Ok(Bytes {
                        entries: g(i)?,
                        apparent_bytes: g(i + 1)?,
                        allocated_bytes: g(i + 2)?,
                    })
                };
                Ok(Totals::from_tiers(bytes(0)?, bytes(3)?))
            })
            .at(&self.path)
    }

    /// Allocated bytes of the 256 subdirectories themselves, as last scanned.
    pub fn subdir_dir_bytes(&self) -> Result<u64> {
        self.conn
            .prepare_cached(SQL_DIR_BYTES)
            .and_then(|mut q| q.query_row([], |r| r.get::<_, i64>(0)))
            .map(|v| v as u64)
            .at(&self.path)
    }

    /// The executables whose program is called `program`.
    pub fn exes_named(&self, program: &str) -> Result<Vec<EntryName>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM entries WHERE kind = 2 AND program = ?1")
            .at(&self.path)?;
        let rows = stmt
            .query_map([program], |r| r.get::<_, String>(0))
            .at(&self.path)?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(n) = EntryName::parse(r.at(&self.path)?.as_bytes()) {
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
        let rows = self.query_entries_with(query, params, |_| Ok(()))?;
        Ok(rows.into_iter().map(|(e, ())| e).collect())
    }

    /// Entries from `query`, whose first 11 columns are an entry's (as in
    /// [`Index::entries`]), each with what `extra` reads from the rest of
    /// its row.
    pub(super) fn query_entries_with<T>(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        extra: impl Fn(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<(Entry, T)>> {
        let mut stmt = self.conn.prepare_cached(query).at(&self.path)?;
        let rows = stmt
            .query_map(params, |r| {
                let name: String = r.get(0)?;
                let output: Option<Vec<u8>> = r.get(8)?;
                let raw = RawEntry {
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
                };
                Ok((raw, extra(r)?))
            })
            .at(&self.path)?;
        let mut out = Vec::new();
        for row in rows {
            let (raw, more) = row.at(&self.path)?;
            // A row that does not decode (edited by hand, say) is skipped:
            // the next full scan replaces it.
            if let Some(e) = raw.into_entry() {
                out.push((e, more));
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
        let mut stmt = self.conn.prepare_cached(query).at(&self.path)?;
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
            .at(&self.path)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.path)
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
