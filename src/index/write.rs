//! Writing the index: a sync's changes, removals by a trim, uses and the
//! mtimes a trim saw.
//!
//! Each subdirectory keeps running totals per tier, so "over a limit?"
//! reads 256 rows. Changes that know only names (an incremental sync, a
//! trim's removals) move those totals by [`TierDelta`]s read from the rows
//! inside the write transaction, so writers racing on the same names count
//! each once.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{CachedStatement, OptionalExtension, Transaction, TransactionBehavior, params};

use super::statements::*;
use super::{Index, SqlResult, SubdirChanges, SyncMark, Use};
use crate::error::Result;
use crate::layout::EntryName;
use crate::layout::Id;
use crate::model::{Entry, Kind, Other, UnixTime};
use crate::trace::schema::TraceId;
use crate::trace::{TraceEvent, TraceOp};

impl Index {
    /// Applies one subdirectory's changes in one transaction, folding in
    /// pending uses of the entries it adds.
    pub fn apply_subdir(&mut self, changes: &SubdirChanges, now: UnixTime) -> Result<()> {
        self.apply_subdirs(std::slice::from_ref(changes), now)
    }

    /// Applies several subdirectories' changes in one transaction.
    pub fn apply_subdirs(&mut self, all: &[SubdirChanges], now: UnixTime) -> Result<()> {
        let Index {
            conn,
            path,
            credit,
            tracing,
            marking,
            ..
        } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        // The module the entries the scan credits are credited to (see
        // `modules`), and whether new entries are traced (see `trace`).
        let module = match all.iter().any(|c| !c.credited.is_empty()) {
            true => Index::credit_in(credit, &tx, now, path)?,
            false => None,
        };
        let record_new = match all.iter().any(|c| !c.upserts.is_empty()) {
            true => Index::trace_new_in(tracing, &tx, path)?,
            false => false,
        };
        let (traced, added) = {
            let mut w = SubdirWriter::new(&tx, path, now, module, record_new, marking.as_ref())?;
            for changes in all {
                w.apply(changes)?;
            }
            (w.traced, w.added)
        };
        Index::trace_in(tracing, &tx, module, &traced, path)?;
        tx.commit().at(path)?;
        self.credited(module);
        if let Some(t) = &mut self.tracing {
            t.added.extend(added);
        }
        Ok(())
    }

    /// Replaces what is recorded about the top level of the cache (odd
    /// files and directories there).
    pub fn set_top_level_others(&mut self, others: &[Other]) -> Result<()> {
        let Index { conn, path, .. } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        tx.execute("DELETE FROM others WHERE subdir IS NULL", [])
            .at(path)?;
        for o in others {
            tx.execute(
                "INSERT OR REPLACE INTO others (path, subdir, class, what, apparent, allocated) VALUES (?1, NULL, ?2, ?3, ?4, ?5)",
                params![o.path, o.class.as_str(), o.what, o.apparent as i64, o.allocated as i64],
            )
            .at(path)?;
        }
        tx.commit().at(path)
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
            .at(&self.path)
    }

    /// Drops entries that were removed from disk (by trim), in one
    /// transaction. Returns how many rows went.
    pub fn remove_entries(&mut self, names: &[EntryName]) -> Result<usize> {
        let Index { conn, path, .. } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(SQL_DELETE_ENTRY).at(path)?;
            // Subtract what went from the subdirectory totals, per tier.
            // (Recounting every touched subdirectory reread ~4,000 rows
            // each, per batch: 400M row reads for a 1M trim.)
            let mut gone: HashMap<u8, TierDelta> = HashMap::new();
            for name in names {
                let row = stmt
                    .query_row(params![name.subdir(), name.file_name()], kind_sizes)
                    .optional()
                    .at(path)?;
                if let Some(row) = row {
                    n += 1;
                    gone.entry(name.subdir()).or_default().count(row, 1);
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
                .at(path)?;
            for (s, TierDelta { build: b, exe: x }) in gone {
                update
                    .execute(params![
                        s,
                        b.entries,
                        b.apparent,
                        b.allocated,
                        x.entries,
                        x.apparent,
                        x.allocated
                    ])
                    .at(path)?;
            }
        }
        tx.commit().at(path)?;
        Ok(n)
    }

    /// Records uses in one transaction: last use becomes the newest known,
    /// hits add up. Uses of entries the index has not seen yet are kept
    /// until a scan finds them.
    pub fn record_uses(&mut self, uses: &[Use]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let Index {
            conn,
            path,
            credit,
            tracing,
            ..
        } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        // The module the uses are credited to (see `modules`).
        let latest = uses.iter().map(|u| u.at).max().unwrap_or_default();
        let module = Index::credit_in(credit, &tx, latest, path)?;
        let mut traced = Vec::new();
        {
            // What a traced use needs of its entry comes back with the
            // update. Without a trace, a plain update: SQLite collects a
            // RETURNING row in a temporary table, opened and closed for
            // every use.
            let tracing_uses = tracing.as_ref().filter(|t| t.traces_syncs());
            let mut update = tx
                .prepare_cached(if tracing_uses.is_some() {
                    SQL_USE_RETURNING
                } else {
                    SQL_USE
                })
                .at(path)?;
            let mut pend = tx
                .prepare_cached(
                    "INSERT INTO pending_uses (subdir, name, last_use, hits, module)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (subdir, name) DO UPDATE
                     SET last_use = max(last_use, excluded.last_use), hits = hits + excluded.hits,
                     module = coalesce(excluded.module, module)",
                )
                .at(path)?;
            for u in uses {
                let p = params![
                    u.name.subdir(),
                    u.name.file_name(),
                    u.at,
                    u.hit as i64,
                    module,
                    u.marked
                ];
                // The pending row takes all but the mark: the scan that
                // finds the entry reads its mtime from disk.
                let pending = &p[..5];
                let Some(t) = tracing_uses else {
                    if update.execute(p).at(path)? == 0 {
                        pend.execute(pending).at(path)?;
                    }
                    continue;
                };
                let row: Option<(i64, Option<Vec<u8>>, i64)> = update
                    .query_row(p, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
                    .at(path)?;
                match row {
                    None => {
                        pend.execute(pending).at(path)?;
                    }
                    // A use of an entry this command's sync added is the
                    // go command that made it: part of its miss, no hit.
                    Some((kind, output, allocated)) if u.hit && !t.added.contains(&u.name) => {
                        let kind = Kind::from_db(kind).unwrap_or(Kind::Output);
                        traced.push(TraceEvent {
                            t_ms: u.at.saturating_mul(1000),
                            op: TraceOp::Use,
                            kind,
                            entry: TraceId::of(&u.name.id),
                            output: output
                                .and_then(|o| <[u8; 32]>::try_from(o.as_slice()).ok().map(Id))
                                .as_ref()
                                .map(TraceId::of),
                            size: (kind != Kind::Action).then_some(allocated.max(0) as u64),
                            cost: None,
                            of: None,
                        });
                    }
                    _ => {}
                }
            }
        }
        Index::trace_in(tracing, &tx, module, &traced, path)?;
        tx.commit().at(path)?;
        self.credited(module);
        Ok(())
    }

    /// Forgets every hit count (`gocache stats --zero`), those of uses
    /// waiting for a scan included. Returns how many entries had hits, and
    /// how many hits they had, in all.
    pub fn forget_hits(&mut self) -> Result<(u64, u64)> {
        let Index { conn, path, .. } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        let mut counted = (0u64, 0u64);
        for table in ["entries", "pending_uses"] {
            // Table names from the fixed list above.
            let (n, hits): (i64, i64) = tx
                .query_row(
                    &format!("SELECT count(*), coalesce(sum(hits), 0) FROM {table} WHERE hits > 0"),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .at(path)?;
            tx.execute(&format!("UPDATE {table} SET hits = 0 WHERE hits > 0"), [])
                .at(path)?;
            counted.0 += n.max(0) as u64;
            counted.1 += hits.max(0) as u64;
        }
        tx.commit().at(path)?;
        Ok(counted)
    }

    /// Records mtimes seen on disk (by the trim executor's re-check) for
    /// entries Go used since the last sync.
    pub fn record_mtimes(&mut self, seen: &[(EntryName, UnixTime)]) -> Result<()> {
        let Index { conn, path, .. } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE entries SET mtime = ?3, last_use = max(last_use, ?3) WHERE subdir = ?1 AND name = ?2",
                )
                .at(path)?;
            for (name, mtime) in seen {
                stmt.execute(params![name.subdir(), name.file_name(), mtime])
                    .at(path)?;
            }
        }
        tx.commit().at(path)
    }
}

/// [`Index::apply_subdirs`]' statements in its write transaction, what
/// it credits and marks, and the `new` events it gathers for the trace.
struct SubdirWriter<'a> {
    path: &'a Path,
    now: UnixTime,
    /// The module new rows are credited to.
    module: Option<i64>,
    /// Whether rows the index did not have are traced as `new`.
    record_new: bool,
    /// Whether any use waits for a scan to find its entry.
    any_pending: bool,
    /// `ci end`'s marks, for the rows this sync writes.
    mark: Option<&'a SyncMark>,
    upsert: CachedStatement<'a>,
    delete: CachedStatement<'a>,
    old_row: CachedStatement<'a>,
    adjust: CachedStatement<'a>,
    clear_others: CachedStatement<'a>,
    other: CachedStatement<'a>,
    state: CachedStatement<'a>,
    pending: CachedStatement<'a>,
    /// `new` events, and the names they are about.
    traced: Vec<TraceEvent>,
    added: Vec<EntryName>,
}

impl<'a> SubdirWriter<'a> {
    fn new(
        tx: &'a Transaction,
        path: &'a Path,
        now: UnixTime,
        module: Option<i64>,
        record_new: bool,
        mark: Option<&'a SyncMark>,
    ) -> Result<SubdirWriter<'a>> {
        let any_pending: bool = tx
            .prepare_cached(SQL_ANY_PENDING)
            .and_then(|mut q| q.query_row([], |r| r.get(0)))
            .at(path)?;
        let prepare = |sql| tx.prepare_cached(sql).at(path);
        Ok(SubdirWriter {
            path,
            now,
            module,
            record_new,
            any_pending,
            mark,
            // A row another process wrote since this scan read the index
            // keeps its hits, last use and first sighting; pending uses
            // (?13) are added on top.
            upsert: prepare(SQL_UPSERT)?,
            delete: prepare(SQL_DELETE_ENTRY)?,
            old_row: prepare(SQL_OLD_ROW)?,
            adjust: prepare(SQL_ADJUST_SUBDIR)?,
            clear_others: prepare(SQL_CLEAR_OTHERS)?,
            other: prepare(SQL_OTHER)?,
            state: prepare(SQL_SET_SUBDIR)?,
            pending: prepare(SQL_TAKE_PENDING)?,
            traced: Vec::new(),
            added: Vec::new(),
        })
    }

    /// One subdirectory's changes: its entries, its odd files, its totals.
    fn apply(&mut self, changes: &SubdirChanges) -> Result<()> {
        // What the changes add to the totals, for `totals: None`.
        let mut delta = TierDelta::default();
        // Insert in key order: appends to the B-tree instead of touching
        // random pages.
        let mut order: Vec<&Entry> = changes.upserts.iter().collect();
        order.sort_unstable_by_key(|e| e.name);
        for e in order {
            self.replaced(changes, e, &mut delta)?;
            let credit = changes.credited.binary_search(&e.name).is_ok();
            self.upsert(changes.subdir, e, credit)?;
        }
        for name in &changes.deletes {
            let old = self
                .delete
                .query_row(params![changes.subdir, name.file_name()], kind_sizes)
                .optional()
                .at(self.path)?;
            if let Some(old) = old {
                delta.count(old, -1);
            }
        }
        self.others(changes)?;
        self.totals(changes, delta)
    }

    /// Reads the row `e` replaces when the totals move by delta, or when
    /// `e` may be new to the index and new entries are traced.
    fn replaced(
        &mut self,
        changes: &SubdirChanges,
        e: &Entry,
        delta: &mut TierDelta,
    ) -> Result<()> {
        let by_delta = changes.totals.is_none();
        let maybe_new = self.record_new && changes.updated.binary_search(&e.name).is_err();
        if !(by_delta || maybe_new) {
            return Ok(());
        }
        let old = self
            .old_row
            .query_row(params![changes.subdir, e.name.file_name()], kind_sizes)
            .optional()
            .at(self.path)?;
        if self.record_new && old.is_none() {
            self.traced.push(super::trace::new_event(e, self.now));
            self.added.push(e.name);
        }
        if by_delta {
            if let Some(old) = old {
                delta.count(old, -1);
            }
            delta.count((e.kind.to_db(), e.apparent as i64, e.allocated as i64), 1);
        }
        Ok(())
    }

    /// Writes `e`'s row, with the uses that waited for it; `credit`: the
    /// scan found it made or touched by the connection's go command.
    fn upsert(&mut self, subdir: u8, e: &Entry, credit: bool) -> Result<()> {
        let (mut last_use, mut pending_hits) = (e.last_use, 0u64);
        let mut credited = self.module.filter(|_| credit);
        if self.any_pending {
            let p: Option<(i64, i64, Option<i64>)> = self
                .pending
                .query_row(params![subdir, e.name.file_name()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
                .at(self.path)?;
            if let Some((at, h, m)) = p {
                last_use = last_use.max(at);
                pending_hits = h as u64;
                // The module that used it knew best.
                credited = m.or(credited);
            }
        }
        let mark = self.mark;
        self.upsert
            .execute(params![
                subdir,
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
                credited,
                mark.map(|m| m.used_after),
                mark.map(|m| m.since),
                mark.map(|m| m.run),
            ])
            .at(self.path)?;
        Ok(())
    }

    /// Replaces the subdirectory's odd files.
    fn others(&mut self, changes: &SubdirChanges) -> Result<()> {
        self.clear_others
            .execute(params![changes.subdir])
            .at(self.path)?;
        for o in &changes.others {
            self.other
                .execute(params![
                    o.path,
                    changes.subdir,
                    o.class.as_str(),
                    o.what,
                    o.apparent as i64,
                    o.allocated as i64
                ])
                .at(self.path)?;
        }
        Ok(())
    }

    /// The subdirectory's state and totals: as the changes give them, or
    /// moved by `delta`.
    fn totals(&mut self, changes: &SubdirChanges, delta: TierDelta) -> Result<()> {
        let Some(t) = &changes.totals else {
            let (b, x) = (delta.build, delta.exe);
            self.adjust
                .execute(params![
                    changes.subdir,
                    changes.mtime_ns,
                    self.now,
                    b.entries,
                    b.apparent,
                    b.allocated,
                    x.entries,
                    x.apparent,
                    x.allocated,
                    changes.dir_allocated as i64,
                ])
                .at(self.path)?;
            return Ok(());
        };
        self.state
            .execute(params![
                changes.subdir,
                changes.mtime_ns,
                self.now,
                t.build.entries as i64,
                t.build.apparent_bytes as i64,
                t.build.allocated_bytes as i64,
                t.exe.entries as i64,
                t.exe.apparent_bytes as i64,
                t.exe.allocated_bytes as i64,
                changes.dir_allocated as i64,
            ])
            .at(self.path)?;
        Ok(())
    }
}

/// A row's kind and sizes: `kind, apparent, allocated`.
type KindSizes = (i64, i64, i64);

fn kind_sizes(r: &rusqlite::Row) -> rusqlite::Result<KindSizes> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

/// Entries and bytes added to (or, negative, taken from) one tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    entries: i64,
    apparent: i64,
    allocated: i64,
}

/// What a change adds to a subdirectory's totals, per tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TierDelta {
    build: Counts,
    exe: Counts,
}

impl TierDelta {
    /// Counts a row in (`sign` 1) or out (`sign` -1), in its kind's tier.
    fn count(&mut self, (kind, apparent, allocated): KindSizes, sign: i64) {
        let t = if kind == Kind::Exe.to_db() {
            &mut self.exe
        } else {
            &mut self.build
        };
        t.entries += sign;
        t.apparent += sign * apparent;
        t.allocated += sign * allocated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::test_add as add;
    use crate::index::test_entry as entry;

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
    fn forgetting_hits_says_how_many_and_keeps_last_uses() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let (a, b, c) = (
            entry(1, Kind::Exe),
            entry(2, Kind::Exe),
            entry(3, Kind::Exe),
        );
        add(&mut ix, [&a, &b], 10);
        let used = |e: &Entry, at| Use {
            name: e.name,
            at,
            hit: true,
            marked: false,
        };
        ix.record_uses(&[used(&a, 20), used(&a, 21), used(&c, 22)])
            .unwrap();
        assert_eq!(ix.forget_hits().unwrap(), (2, 3));
        let got = ix.entry(&a.name).unwrap().unwrap();
        assert_eq!((got.hits, got.last_use), (0, 1000), "last use kept");
        assert_eq!(ix.forget_hits().unwrap(), (0, 0));
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
                marked: false,
            },
            Use {
                name: e.name,
                at: 2500,
                hit: true,
                marked: false,
            },
        ])
        .unwrap();
        add(&mut ix, [&e], 4000);
        let got = ix.entry(&e.name).unwrap().unwrap();
        assert_eq!((got.hits, got.last_use), (2, 3000));
        ix.record_uses(&[Use {
            name: e.name,
            at: 3500,
            hit: true,
            marked: false,
        }])
        .unwrap();
        let got = ix.entry(&e.name).unwrap().unwrap();
        assert_eq!((got.hits, got.last_use), (3, 3500));
    }
}
