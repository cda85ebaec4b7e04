//! CI runs (`gocache ci begin` / `gocache ci end`): the `ci_runs` table,
//! each entry's `last_run`, and the seal `ci end` leaves for the next
//! `ci begin`. What the columns mean is in `migrations/0004_ci_runs.sql`;
//! why, in [`crate::ci`].

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Index, SqlResult};
use crate::error::Result;
use crate::layout::{EntryName, Id};
use crate::model::{Bytes, Entry, Kind, UnixTime};
use crate::trace::schema::TraceId;
use crate::trace::{TraceEvent, TraceOp};

/// The key the seal lives under in `meta` (as JSON).
const SEAL_KEY: &str = "ci_seal";

/// A CI run as the index records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CiRun {
    /// Its ordinal in this cache's lineage: 1, 2, 3, …
    pub id: i64,
    /// `ci begin --label`.
    pub label: Option<String>,
    /// When `ci begin` ran.
    pub started: UnixTime,
    /// No entry's mtime was newer than this after `ci begin`: one that is
    /// newer at `ci end` was used or made by the run.
    pub used_after: UnixTime,
    /// When `ci end` ran; `None` while the run is on (or if it never
    /// ended).
    pub ended: Option<UnixTime>,
    /// What the cache held at `ci begin`.
    pub restored: Bytes,
}

impl CiRun {
    /// What a sync marks as this run's uses (see [`Index::mark_in_sync`]).
    pub fn sync_mark(&self) -> SyncMark {
        SyncMark {
            run: self.id,
            used_after: self.used_after,
            since: self.started,
        }
    }
}

/// What `ci end` leaves for the next `ci begin`: the index matches the
/// disk (every entry's mtime as recorded, every subdirectory's mtime as
/// recorded), so the next run can start from the index without a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CiSeal {
    /// The run that ended.
    pub run: i64,
    /// When it ended.
    pub at: UnixTime,
    /// No entry's mtime is newer than this.
    pub newest_mtime: UnixTime,
    /// No first sighting or recorded use is newer than this.
    pub newest_record: UnixTime,
}

/// A CI run whose uses a sync marks as it writes rows (see
/// [`Index::mark_in_sync`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncMark {
    /// The run (`ci_runs.id`).
    pub run: i64,
    /// [`CiRun::used_after`]: an mtime newer than this is the run's use.
    pub used_after: UnixTime,
    /// [`CiRun::started`]: a recorded use at or after this is the run's.
    pub since: UnixTime,
}

/// What `ci end`'s marking found (see [`Runs::mark`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunMarks {
    /// What the run used and had not made.
    pub used: Bytes,
    /// What the run made: first seen at or after it started.
    pub created: Bytes,
    /// The marked entries whose mtime is newer than the `recent_after`
    /// asked for, with that mtime: those `ci end` moves back.
    pub recent: Vec<(EntryName, UnixTime)>,
}

const RUN_COLUMNS: &str = "id, label, started, used_after, ended, restored_entries, restored_apparent, restored_allocated";

fn run_row(r: &rusqlite::Row) -> rusqlite::Result<CiRun> {
    let u = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(CiRun {
        id: r.get(0)?,
        label: r.get(1)?,
        started: r.get(2)?,
        used_after: r.get(3)?,
        ended: r.get(4)?,
        restored: Bytes {
            entries: u(5)?,
            apparent_bytes: u(6)?,
            allocated_bytes: u(7)?,
        },
    })
}

impl Index {
    /// While `mark` is set, every row a sync writes that run `mark.run`
    /// used gets its `last_run` in the same statement, so that
    /// [`Runs::mark`] afterwards rewrites only rows the sync did not
    /// write. `ci end`'s full sync rewrites a row per entry the run used
    /// (its new mtime), and marking them again in a second transaction
    /// wrote every page of them twice (137 MB of WAL on 1M entries).
    pub fn mark_in_sync(&mut self, mark: Option<SyncMark>) {
        self.marking = mark;
    }
}

/// CI runs, the seal and each entry's last run: [`Index::runs`] to
/// read, [`Index::runs_mut`] to write. A handle borrows the index; it holds no state of its own.
pub struct Runs<I>(I);

impl Index {
    /// CI runs, the seal and each entry's last run, to read.
    pub fn runs(&self) -> Runs<&Index> {
        Runs(self)
    }

    /// CI runs, the seal and each entry's last run, to read and write.
    pub fn runs_mut(&mut self) -> Runs<&mut Index> {
        Runs(self)
    }
}

impl<I: std::ops::Deref<Target = Index>> Runs<I> {
    /// The newest run recorded, ended or not.
    pub fn last(&self) -> Result<Option<CiRun>> {
        self.0
            .conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM ci_runs ORDER BY id DESC LIMIT 1"),
                [],
                run_row,
            )
            .optional()
            .at(&self.0.path)
    }

    /// The newest `limit` runs, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<CiRun>> {
        let mut stmt = self
            .0
            .conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM ci_runs ORDER BY id DESC LIMIT ?1"
            ))
            .at(&self.0.path)?;
        let rows = stmt.query_map([limit as i64], run_row).at(&self.0.path)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.0.path)
    }

    /// The oldest run an entry may have been last used by and still be
    /// kept under "keep what the last `keep_runs` runs used": the
    /// `keep_runs`-th newest of the ended runs and `current`. Runs that
    /// never ended count for nothing: they marked no use. With fewer runs
    /// than that, [`i64::MIN`]: nothing is stale yet.
    pub fn keep_from(&self, current: Option<i64>, keep_runs: u32) -> Result<i64> {
        let offset = i64::from(keep_runs.max(1)) - 1;
        let found: Option<i64> = self
            .0
            .conn
            .query_row(
                "SELECT id FROM ci_runs WHERE ended IS NOT NULL OR id = ?1
                 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                params![current, offset],
                |r| r.get(0),
            )
            .optional()
            .at(&self.0.path)?;
        Ok(found.unwrap_or(i64::MIN))
    }

    /// The seal the last `ci end` left, if it is still there.
    pub fn seal(&self) -> Result<Option<CiSeal>> {
        match self.0.meta(SEAL_KEY)? {
            // One that cannot be read is as good as none: the next run
            // walks the cache instead of trusting the index.
            Some(json) => Ok(serde_json::from_str(&json).ok()),
            None => Ok(None),
        }
    }

    /// Entries whose recorded mtime is newer than `mtime`, in the
    /// subdirectories `only` (all when `None`): name, kind and mtime.
    pub fn entries_newer_than(
        &self,
        mtime: UnixTime,
        only: Option<&[u8]>,
    ) -> Result<Vec<(EntryName, Kind, UnixTime)>> {
        let mut out = Vec::new();
        let mut read = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<()> {
            let mut stmt = self.0.conn.prepare_cached(sql).at(&self.0.path)?;
            let mut rows = stmt.query(p).at(&self.0.path)?;
            while let Some(r) = rows.next().at(&self.0.path)? {
                let name: String = r.get(0).at(&self.0.path)?;
                let kind: i64 = r.get(1).at(&self.0.path)?;
                let t: i64 = r.get(2).at(&self.0.path)?;
                if let (Some(n), Some(k)) = (EntryName::parse(name.as_bytes()), Kind::from_db(kind))
                {
                    out.push((n, k, t));
                }
            }
            Ok(())
        };
        match only {
            None => read(
                "SELECT name, kind, mtime FROM entries WHERE mtime > ?1",
                &[&mtime],
            )?,
            Some(subdirs) => {
                for s in subdirs {
                    read(
                        "SELECT name, kind, mtime FROM entries WHERE subdir = ?2 AND mtime > ?1",
                        &[&mtime, s],
                    )?;
                }
            }
        }
        Ok(out)
    }

    /// Every entry, each with the last run that used it (0 when none did):
    /// what a plan by runs reads.
    pub fn entries_and_runs(&self) -> Result<(Vec<Entry>, Vec<i64>)> {
        let rows = self.0.query_entries_with(
            "SELECT name, kind, apparent, allocated, mtime, last_use, hits, first_seen, output, program, problem, last_run
             FROM entries",
            [],
            |r| Ok(r.get::<_, Option<i64>>(11)?.unwrap_or(0)),
        )?;
        Ok(rows.into_iter().unzip())
    }

    /// The `n` largest cached executables, each with the last run that
    /// used it.
    pub fn largest_exes(&self, n: usize) -> Result<Vec<(Entry, Option<i64>)>> {
        self.0.query_entries_with(
            "SELECT name, kind, apparent, allocated, mtime, last_use, hits, first_seen, output, program, problem, last_run
             FROM entries WHERE kind = 2 ORDER BY allocated DESC, name LIMIT ?1",
            [n as i64],
            |r| r.get::<_, Option<i64>>(11),
        )
    }
}

impl<I: std::ops::DerefMut<Target = Index>> Runs<I> {
    /// Records a new run, started at `started`, and returns its ordinal.
    pub fn begin(
        &mut self,
        label: Option<&str>,
        started: UnixTime,
        used_after: UnixTime,
        restored: &Bytes,
    ) -> Result<i64> {
        self.0.conn
            .execute(
                "INSERT INTO ci_runs (label, started, used_after, restored_entries, restored_apparent, restored_allocated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    label,
                    started,
                    used_after,
                    restored.entries as i64,
                    restored.apparent_bytes as i64,
                    restored.allocated_bytes as i64
                ],
            )
            .at(&self.0.path)?;
        Ok(self.0.conn.last_insert_rowid())
    }

    /// Records that run `id` ended at `ended`, with its report (JSON).
    pub fn end(&mut self, id: i64, ended: UnixTime, report: &str) -> Result<()> {
        self.0
            .conn
            .execute(
                "UPDATE ci_runs SET ended = ?2, report = ?3 WHERE id = ?1",
                params![id, ended, report],
            )
            .map(drop)
            .at(&self.0.path)
    }

    /// Leaves `seal` for the next `ci begin`.
    pub fn store_seal(&mut self, seal: &CiSeal) -> Result<()> {
        let json = serde_json::to_string(seal).expect("a seal serialises to JSON");
        self.0.set_meta(SEAL_KEY, &json)
    }

    /// Breaks the seal: from now on the index may fall behind the disk.
    pub fn clear_seal(&mut self) -> Result<()> {
        self.0
            .conn
            .execute("DELETE FROM meta WHERE key = ?1", [SEAL_KEY])
            .map(drop)
            .at(&self.0.path)
    }

    /// Makes every first sighting and recorded use earlier than `t` (those
    /// at `t` or later become `t - 1`), so that a run starting at `t` can
    /// tell what it made and used from what was there before it. (A run
    /// that ended in the same second, or on a machine whose clock is
    /// ahead, may have left later ones.) Reads every row. Returns how many
    /// changed.
    pub fn record_before(&mut self, t: UnixTime) -> Result<u64> {
        self.0
            .conn
            .execute(
                "UPDATE entries SET first_seen = min(first_seen, ?1 - 1),
                   last_use = max(min(last_use, ?1 - 1), mtime)
                 WHERE first_seen >= ?1 OR last_use >= ?1",
                [t],
            )
            .map(|n| n as u64)
            .at(&self.0.path)
    }

    /// Records that `names` were given the mtime `mtime` on disk (moved
    /// back): their recorded last use moves back too, to before `before`
    /// but never before `mtime`, since whatever use the old mtime stood for
    /// was not one of the run starting at `before`.
    pub fn record_backdated(
        &mut self,
        names: &[EntryName],
        mtime: UnixTime,
        before: UnixTime,
    ) -> Result<()> {
        let Index { conn, path, .. } = &mut *self.0;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE entries SET mtime = ?3, last_use = max(min(last_use, ?4 - 1), ?3)
                     WHERE subdir = ?1 AND name = ?2",
                )
                .at(path)?;
            for name in names {
                stmt.execute(params![name.subdir(), name.file_name(), mtime, before])
                    .at(path)?;
            }
        }
        tx.commit().at(path)
    }

    /// Marks every entry run `run` used or made: those whose mtime is newer
    /// than `used_after` (Go's `markUsed`, or made since), and those with a
    /// use recorded at or after `since`, the run's start (by `gocache go` or
    /// `gocache prog`). Returns their bytes, used and made, and the names
    /// of those with an mtime newer than `recent_after`.
    ///
    /// One read of what to mark, then one set-based update: on 1M entries
    /// a job used half of, an `UPDATE ... RETURNING` of every row, each
    /// name parsed, took 2.5-3 s of `ci end`; most of them need no name.
    pub fn mark(
        &mut self,
        run: i64,
        used_after: UnixTime,
        since: UnixTime,
        recent_after: UnixTime,
    ) -> Result<RunMarks> {
        let Index {
            conn,
            path,
            tracing,
            ..
        } = &mut *self.0;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        let mut marks = RunMarks::default();
        let mut traced = Vec::new();
        // A name is read only where it is needed: a recent entry, or a
        // traced use (what the run used, Go's mark, and did not make).
        let name_wanted = if tracing.is_some() {
            "mtime > ?3 OR (mtime > ?1 AND first_seen < ?2)"
        } else {
            "mtime > ?3"
        };
        {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT CASE WHEN {name_wanted} THEN name END,
                            kind, mtime, first_seen, apparent, allocated, output
                     FROM entries WHERE mtime > ?1 OR last_use >= ?2"
                ))
                .at(path)?;
            let mut rows = stmt
                .query(params![used_after, since, recent_after])
                .at(path)?;
            while let Some(r) = rows.next().at(path)? {
                let u = |v: i64| u64::try_from(v).unwrap_or(0);
                let (mtime, first_seen): (UnixTime, UnixTime) =
                    (r.get(2).at(path)?, r.get(3).at(path)?);
                let (apparent, allocated) = (u(r.get(4).at(path)?), u(r.get(5).at(path)?));
                if first_seen >= since {
                    marks.created.add(apparent, allocated);
                } else {
                    marks.used.add(apparent, allocated);
                }
                let name = match r.get_ref(0).at(path)? {
                    rusqlite::types::ValueRef::Text(t) => EntryName::parse(t),
                    _ => None,
                };
                let Some(name) = name else { continue };
                if mtime > recent_after {
                    marks.recent.push((name, mtime));
                }
                // Traced: what the run used (Go's mark) and did not make
                // (its sync traced those as new); the wrapper traced its
                // own uses.
                if tracing.is_some()
                    && mtime > used_after
                    && first_seen < since
                    && let Some(kind) = Kind::from_db(r.get(1).at(path)?)
                {
                    let output: Option<Vec<u8>> = r.get(6).at(path)?;
                    traced.push(TraceEvent {
                        t_ms: mtime.saturating_mul(1000),
                        op: TraceOp::Use,
                        kind,
                        entry: TraceId::of(&name.id),
                        output: output
                            .and_then(|o| <[u8; 32]>::try_from(o.as_slice()).ok())
                            .map(|o| TraceId::of(&Id(o))),
                        size: (kind != Kind::Action).then_some(allocated),
                        cost: None,
                        of: None,
                    });
                }
            }
        }
        // Rows a marking sync wrote are marked already: left untouched,
        // their pages are not written again.
        tx.execute(
            "UPDATE entries SET last_run = ?1
             WHERE (mtime > ?2 OR last_use >= ?3) AND last_run IS NOT ?1",
            params![run, used_after, since],
        )
        .at(path)?;
        // Go's marks in mtime order, as they happened.
        traced.sort_by_key(|e| e.t_ms);
        Index::trace_in(tracing, &tx, None, &traced, path)?;
        tx.commit().at(path)?;
        Ok(marks)
    }

    /// Records that every entry run `run` marked whose mtime is newer than
    /// `mtime` was given `mtime` on disk (moved back): one set-based
    /// statement instead of a lookup per entry, for a caller that moved
    /// all of them (one that could not move some records those by name,
    /// with [`Index::record_mtimes`]). Returns how many rows changed.
    pub fn record_moved_back(&mut self, run: i64, mtime: UnixTime) -> Result<u64> {
        self.0
            .conn
            .execute(
                "UPDATE entries SET mtime = ?2, last_use = max(last_use, ?2)
                 WHERE last_run = ?1 AND mtime > ?2",
                params![run, mtime],
            )
            .map(|n| n as u64)
            .at(&self.0.path)
    }

    /// Records that subdirectory `subdir`, recorded with the mtime
    /// `was_ns`, now has the mtime `now_ns` and nothing else changed (`ci
    /// end` set it). Does nothing, and returns false, when the recorded
    /// mtime is no longer `was_ns`.
    pub fn reseal_subdir(&mut self, subdir: u8, was_ns: i64, now_ns: i64) -> Result<bool> {
        self.0
            .conn
            .execute(
                "UPDATE subdirs SET mtime_ns = ?3 WHERE subdir = ?1 AND mtime_ns = ?2",
                params![subdir, was_ns, now_ns],
            )
            .map(|n| n == 1)
            .at(&self.0.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::test_entry as entry;
    use crate::index::{Use, test_add as add};

    #[test]
    fn runs_are_numbered_in_order_and_only_ended_ones_age_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        assert_eq!(ix.runs().last().unwrap(), None);
        assert_eq!(ix.runs().keep_from(None, 1).unwrap(), i64::MIN);
        let b = Bytes::default();
        let one = ix.runs_mut().begin(Some("ci"), 100, 50, &b).unwrap();
        ix.runs_mut().end(one, 110, "{}").unwrap();
        let two = ix.runs_mut().begin(None, 200, 150, &b).unwrap(); // abandoned
        let three = ix.runs_mut().begin(None, 300, 250, &b).unwrap();
        assert_eq!((one, two, three), (1, 2, 3));
        let last = ix.runs().last().unwrap().unwrap();
        assert_eq!((last.id, last.started, last.ended), (3, 300, None));
        // Run 3 is on: the two runs that count are 3 and 1.
        assert_eq!(ix.runs().keep_from(Some(3), 1).unwrap(), 3);
        assert_eq!(ix.runs().keep_from(Some(3), 2).unwrap(), 1);
        assert_eq!(ix.runs().keep_from(Some(3), 3).unwrap(), i64::MIN);
        assert_eq!(ix.runs().keep_from(None, 1).unwrap(), 1);
        assert_eq!(ix.runs().recent(10).unwrap().len(), 3);
    }

    #[test]
    fn marking_finds_touched_made_and_recorded_uses_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let mut old = entry(1, Kind::Output);
        old.mtime = 900;
        old.last_use = 900;
        let mut touched = entry(2, Kind::Output);
        touched.mtime = 1500;
        touched.last_use = 1500;
        touched.first_seen = 500; // restored: used, not made
        let exact = entry(3, Kind::Exe); // used at 1000 by mtime...
        add(
            &mut ix,
            &[old.clone(), touched.clone(), exact.clone()],
            2000,
        );
        // ...and at 1300 through `gocache go`.
        ix.record_uses(&[Use {
            name: exact.name,
            at: 1300,
            hit: true,
            marked: false,
        }])
        .unwrap();
        let marks = ix.runs_mut().mark(7, 1000, 1200, 1400).unwrap();
        let bytes = |e: &Entry| {
            let mut b = Bytes::default();
            b.add(e.apparent, e.allocated);
            b
        };
        // Made by the run: first seen after it started (at 2000).
        assert_eq!(
            (marks.used, marks.created),
            (bytes(&touched), bytes(&exact))
        );
        // Only the entry newer than 1400 is named, to be moved back.
        assert_eq!(marks.recent, vec![(touched.name, 1500)]);
        let (entries, runs) = ix.runs().entries_and_runs().unwrap();
        let run_of = |n: EntryName| runs[entries.iter().position(|e| e.name == n).unwrap()];
        assert_eq!((run_of(old.name), run_of(touched.name)), (0, 7));
        // A sync's update keeps the mark.
        let mut again = touched.clone();
        again.mtime = 1600;
        add(&mut ix, &[again], 2000);
        let (entries, runs) = ix.runs().entries_and_runs().unwrap();
        assert_eq!(
            runs[entries.iter().position(|e| e.name == touched.name).unwrap()],
            7
        );
    }

    /// `ci end` marks in its sync what the sync rewrites anyway: the
    /// marks come out as marking afterwards gives them, and the marking
    /// afterwards writes only the rows the sync did not.
    #[test]
    fn a_marking_sync_leaves_mark_run_only_the_rows_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let open = |n: &str| Index::open(&dir.path().join(n)).unwrap();
        let (mut plain, mut folded) = (open("plain.sqlite"), open("folded.sqlite"));
        let at = |n: u8, mtime: UnixTime| {
            let mut e = entry(n, Kind::Output);
            (e.mtime, e.last_use, e.first_seen) = (mtime, mtime, 500);
            e
        };
        // Restored: 1 and 2 old, 3 used during the job and synced by a
        // hook then, 4 used by `gocache go` (a recorded use, no new mtime).
        let restored = [at(1, 900), at(2, 900), at(3, 1500), at(4, 900)];
        let run = CiRun {
            id: 7,
            label: None,
            started: 1200,
            used_after: 1000,
            ended: None,
            restored: Bytes::default(),
        };
        for ix in [&mut plain, &mut folded] {
            add(ix, &restored, 2000);
            ix.record_uses(&[Use {
                name: restored[3].name,
                at: 1300,
                hit: true,
                marked: false,
            }])
            .unwrap();
        }
        // ci end's sync rewrites 1 (unused: a new size) and 2 (Go's mark),
        // and finds 5, made by the job.
        let mut grown = at(1, 900);
        grown.allocated += 4096;
        let mut made = at(5, 1600);
        made.first_seen = 2000;
        let synced = [grown, at(2, 1700), made];
        add(&mut plain, &synced, 2000);
        folded.mark_in_sync(Some(run.sync_mark()));
        add(&mut folded, &synced, 2000);
        folded.mark_in_sync(None);

        let before = folded.conn.total_changes();
        let marks = folded.runs_mut().mark(7, 1000, 1200, 1400).unwrap();
        // Left to mark: 3 (synced before ci end) and 4 (a recorded use).
        assert_eq!(folded.conn.total_changes() - before, 2);
        assert_eq!(marks, plain.runs_mut().mark(7, 1000, 1200, 1400).unwrap());
        let runs = |ix: &Index| {
            let (entries, runs) = ix.runs().entries_and_runs().unwrap();
            let mut v: Vec<(EntryName, i64)> = entries.iter().map(|e| e.name).zip(runs).collect();
            v.sort();
            v
        };
        assert_eq!(runs(&folded), runs(&plain));
        let marked: Vec<i64> = runs(&plain).into_iter().map(|(_, r)| r).collect();
        assert_eq!(marked, vec![0, 7, 7, 7, 7]);
        // A sync with no marking leaves the marks as they are.
        add(&mut folded, &[at(2, 1800)], 2000);
        assert_eq!(runs(&folded), runs(&plain));
    }

    /// What `ci end` traces: a use per entry the run used and did not
    /// make, at its mtime, in mtime order, with its compact IDs and (but
    /// for an action) its size, credited to the CI source.
    #[test]
    fn marking_traces_the_runs_uses_in_mtime_order() {
        use crate::trace::schema::TraceId;
        use crate::trace::{TraceEvent, TraceSource, Tracing};
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let at = |n: u8, kind: Kind, mtime: UnixTime, first_seen: UnixTime| {
            let mut e = entry(n, kind);
            (e.mtime, e.last_use, e.first_seen) = (mtime, mtime, first_seen);
            e
        };
        let action = at(0x31, Kind::Action, 1700, 500);
        let output = at(0x32, Kind::Output, 1500, 500);
        let exe = at(0x33, Kind::Exe, 1600, 500);
        let unused = at(0x34, Kind::Output, 900, 500);
        let made = at(0x35, Kind::Output, 1800, 2000);
        add(
            &mut ix,
            &[
                action.clone(),
                output.clone(),
                exe.clone(),
                unused.clone(),
                made.clone(),
            ],
            2000,
        );
        ix.set_trace(Some(Tracing {
            source: TraceSource::Ci,
            keep: 3,
        }));
        ix.runs_mut().mark(7, 1000, 1200, 1400).unwrap();
        let events = ix.trace().events(0).unwrap();
        let used = |e: &Entry| TraceEvent {
            t_ms: e.mtime * 1000,
            op: TraceOp::Use,
            kind: e.kind,
            entry: TraceId::of(&e.name.id),
            output: e.output.as_ref().map(TraceId::of),
            size: (e.kind != Kind::Action).then_some(e.allocated),
            cost: None,
            of: None,
        };
        assert!(action.output.is_some());
        assert_eq!(
            events.iter().map(|e| e.event).collect::<Vec<_>>(),
            vec![used(&output), used(&exe), used(&action)]
        );
        assert!(events.iter().all(|e| e.source == TraceSource::Ci));
        // The bound holds: a second marking keeps the newest three.
        ix.runs_mut().mark(8, 1000, 1200, 1400).unwrap();
        assert_eq!(ix.trace().count().unwrap(), 3);
    }

    #[test]
    fn backdating_moves_mtime_and_last_use_back_but_never_below_the_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let mut e = entry(4, Kind::Action);
        (e.mtime, e.last_use, e.first_seen) = (5000, 5200, 5300);
        add(&mut ix, &[e.clone()], 2000);
        assert_eq!(ix.runs().entries_newer_than(4000, None).unwrap().len(), 1);
        assert_eq!(
            ix.runs()
                .entries_newer_than(4000, Some(&[3]))
                .unwrap()
                .len(),
            0
        );
        assert_eq!(
            ix.runs()
                .entries_newer_than(5000, Some(&[4]))
                .unwrap()
                .len(),
            0
        );
        ix.runs_mut()
            .record_backdated(&[e.name], 1000, 5100)
            .unwrap();
        let got = ix.entry(&e.name).unwrap().unwrap();
        assert_eq!((got.mtime, got.last_use), (1000, 5099));
        assert_eq!(ix.runs_mut().record_before(5250).unwrap(), 1);
        let got = ix.entry(&e.name).unwrap().unwrap();
        assert_eq!((got.first_seen, got.last_use), (5249, 5099));
        assert_eq!(ix.runs_mut().record_before(5250).unwrap(), 0);
    }

    #[test]
    fn an_index_from_before_the_ci_mode_migrates_with_no_runs_and_no_marks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.sqlite");
        let conn = rusqlite::Connection::open(&p).unwrap();
        // The schema as the gocache before the CI mode left it.
        let before = &super::super::open::MIGRATIONS[..3];
        for (sql, version) in before.iter().zip(1..) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        conn.execute(
            "INSERT INTO entries (subdir, name, kind, apparent, allocated, mtime, last_use, first_seen)
             VALUES (1, ?1, 1, 3, 4096, 10, 10, 10)",
            [crate::layout::EntryName::data(crate::layout::Id([1; 32])).file_name()],
        )
        .unwrap();
        drop(conn);
        let ix = Index::open(&p).unwrap();
        let (entries, runs) = ix.runs().entries_and_runs().unwrap();
        assert_eq!((entries.len(), runs), (1, vec![0]));
        assert_eq!(ix.runs().last().unwrap(), None);
        assert_eq!(ix.runs().seal().unwrap(), None);
    }

    #[test]
    fn the_seal_round_trips_and_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        assert_eq!(ix.runs().seal().unwrap(), None);
        let seal = CiSeal {
            run: 2,
            at: 10,
            newest_mtime: 5,
            newest_record: 10,
        };
        ix.runs_mut().store_seal(&seal).unwrap();
        assert_eq!(ix.runs().seal().unwrap(), Some(seal));
        ix.runs_mut().clear_seal().unwrap();
        assert_eq!(ix.runs().seal().unwrap(), None);
    }
}
