//! The trace table (migration 5): events recorded by the hook, `ci end` and
//! `gocache prog`, bounded to the newest N (see [`crate::trace`] for what
//! each records and why).
//!
//! A connection records once it is told to ([`Index::set_trace`]): the
//! entries its syncs add ([`Index::apply_subdirs`]) and the uses it
//! records ([`Index::record_uses`], [`Runs::mark`]) add events in the
//! same write transaction, through one prepared statement, and the same
//! transaction deletes the oldest rows past the bound. `gocache prog`
//! hands its own events to [`index.trace_mut().record`].

use rusqlite::{Transaction, TransactionBehavior, params};

use super::statements::{SQL_IS_EMPTY, SQL_TRACE_INSERT, SQL_TRACE_ROTATE};
use super::{Index, SqlResult};
use crate::error::Result;
use crate::layout::{EntryName, IdHash};
use crate::model::{Entry, Kind, UnixTime};
use crate::trace::schema::TraceId;
use crate::trace::{StoredEvent, TraceEvent, TraceOp, TraceSource, Tracing};

/// A connection's recording.
#[derive(Clone, Debug)]
pub(super) struct TraceState {
    tracing: Tracing,
    /// Whether its syncs record `new` events: decided in its first write
    /// transaction (not when the index was empty: a first fill indexes
    /// what was there, not what go just made).
    record_new: Option<bool>,
    /// The entries its syncs traced as new: a use of one of them is the
    /// go command that made it (a `go run` that built its program), part
    /// of that miss and no hit.
    pub(super) added: std::collections::HashSet<EntryName, IdHash>,
}

impl TraceState {
    /// Whether syncs and recorded uses add events: not for `gocache
    /// prog`, which records every get and put itself
    /// ([`index.trace_mut().record`]), so its syncs and uses would count them
    /// twice.
    pub(super) fn traces_syncs(&self) -> bool {
        self.tracing.source != TraceSource::Prog
    }
}

fn db_id(id: TraceId) -> i64 {
    id.0 as i64
}

fn trace_id(v: i64) -> TraceId {
    TraceId(v as u64)
}

/// A `new` event for an entry a sync added, at its mtime (when go made
/// it), never later than `now`.
pub(super) fn new_event(e: &Entry, now: UnixTime) -> TraceEvent {
    TraceEvent {
        t_ms: e.mtime.min(now).saturating_mul(1000),
        op: TraceOp::New,
        kind: e.kind,
        entry: TraceId::of(&e.name.id),
        output: e.output.as_ref().map(TraceId::of),
        // An action's own bytes are one block; the trace's size is its
        // output's, which the output's own event gives.
        size: (e.kind != Kind::Action).then_some(e.allocated),
        cost: None,
        of: None,
    }
}

impl Index {
    /// Records trace events from now on, as `tracing.source`, keeping at
    /// most `tracing.keep` in the table (`None`: records nothing, the
    /// default).
    pub fn set_trace(&mut self, tracing: Option<Tracing>) {
        self.tracing = tracing.map(|tracing| TraceState {
            tracing,
            record_new: None,
            added: Default::default(),
        });
    }

    /// Whether this connection records `new` events in `tx` (see
    /// [`TraceState`]); false when it records nothing.
    pub(super) fn trace_new_in(
        state: &mut Option<TraceState>,
        tx: &Transaction,
        path: &std::path::Path,
    ) -> Result<bool> {
        let Some(s) = state else { return Ok(false) };
        if !s.traces_syncs() {
            return Ok(false);
        }
        if let Some(r) = s.record_new {
            return Ok(r);
        }
        let empty: bool = tx
            .prepare_cached(SQL_IS_EMPTY)
            .and_then(|mut q| q.query_row([], |r| r.get(0)))
            .at(path)?;
        s.record_new = Some(!empty);
        Ok(!empty)
    }

    /// Adds `events` in `tx` and deletes the oldest past the bound (nothing
    /// when the connection does not record).
    pub(super) fn trace_in(
        state: &Option<TraceState>,
        tx: &Transaction,
        module: Option<i64>,
        events: &[TraceEvent],
        path: &std::path::Path,
    ) -> Result<()> {
        let Some(s) = state else { return Ok(()) };
        if events.is_empty() {
            return Ok(());
        }
        let source = s.tracing.source.to_db();
        let mut insert = tx.prepare_cached(SQL_TRACE_INSERT).at(path)?;
        for e in events {
            insert
                .execute(params![
                    e.t_ms,
                    e.op.to_db(),
                    e.kind.to_db(),
                    db_id(e.entry),
                    e.output.map(db_id),
                    e.size.map(|s| s.min(i64::MAX as u64) as i64),
                    e.cost,
                    source,
                    module,
                    e.of.map(db_id),
                ])
                .at(path)?;
        }
        // Rows are added at the top of the key and deleted at the bottom,
        // so the newest `keep` are the keys above `last - keep`.
        let last = tx.last_insert_rowid();
        let keep = s.tracing.keep.clamp(1, i64::MAX as u64) as i64;
        tx.prepare_cached(SQL_TRACE_ROTATE)
            .and_then(|mut q| q.execute([last.saturating_sub(keep)]))
            .at(path)?;
        Ok(())
    }
}

/// The trace table: [`Index::trace`] to read, [`Index::trace_mut`] to
/// write. A handle borrows the index; it holds no state of its own.
pub struct Trace<I>(I);

impl Index {
    /// The trace table, to read.
    pub fn trace(&self) -> Trace<&Index> {
        Trace(self)
    }

    /// The trace table, to read and write.
    pub fn trace_mut(&mut self) -> Trace<&mut Index> {
        Trace(self)
    }
}

impl<I: std::ops::Deref<Target = Index>> Trace<I> {
    /// The rebuild seconds measured per action (the mean of its puts'
    /// costs, as the simulator takes them), keyed by the first 64 bits of
    /// its ID: what the `gdsf` policy weighs entries by where it can.
    pub fn measured_costs(&self) -> Result<std::collections::HashMap<u64, f64>> {
        let mut stmt = self
            .0
            .conn
            .prepare(
                "SELECT entry, avg(cost) FROM trace
                 WHERE ev = ?1 AND cost IS NOT NULL GROUP BY entry",
            )
            .at(&self.0.path)?;
        let rows = stmt
            .query_map([TraceOp::Put.to_db()], |r| {
                Ok((trace_id(r.get(0)?).0, r.get::<_, f64>(1)?))
            })
            .at(&self.0.path)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.0.path)
    }

    /// The events recorded at or after `since_ms` (Unix milliseconds), in
    /// the order they were recorded.
    pub fn events(&self, since_ms: i64) -> Result<Vec<StoredEvent>> {
        let mut stmt = self
            .0
            .conn
            .prepare(
                "SELECT t, ev, kind, entry, output, size, cost, source, module, asked_after
                 FROM trace WHERE t >= ?1 ORDER BY seq",
            )
            .at(&self.0.path)?;
        let mut rows = stmt.query([since_ms]).at(&self.0.path)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().at(&self.0.path)? {
            let row = (|| -> rusqlite::Result<_> {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<f64>>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                ))
            })()
            .at(&self.0.path)?;
            let (t, ev, kind, entry, output, size, cost, source, module, of) = row;
            // Rows a newer gocache wrote with codes this one does not know
            // are skipped, as the trace reader skips unknown events.
            let (Some(op), Some(kind), Some(source)) = (
                TraceOp::from_db(ev),
                Kind::from_db(kind),
                TraceSource::from_db(source),
            ) else {
                continue;
            };
            out.push(StoredEvent {
                event: TraceEvent {
                    t_ms: t,
                    op,
                    kind,
                    entry: trace_id(entry),
                    output: output.map(trace_id),
                    size: size.map(|s| s.max(0) as u64),
                    cost,
                    of: of.map(trace_id),
                },
                source,
                module,
            });
        }
        Ok(out)
    }

    /// How many events the table holds.
    pub fn count(&self) -> Result<u64> {
        self.0
            .conn
            .query_row("SELECT count(*) FROM trace", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .at(&self.0.path)
    }
}

impl<I: std::ops::DerefMut<Target = Index>> Trace<I> {
    /// Records events (`gocache prog`'s gets, misses and puts) in one
    /// transaction, credited to the connection's module, and rotates the
    /// oldest out. Does nothing unless [`Index::set_trace`] turned
    /// recording on.
    pub fn record(&mut self, events: &[TraceEvent]) -> Result<()> {
        if self.0.tracing.is_none() || events.is_empty() {
            return Ok(());
        }
        let Index {
            conn,
            path,
            credit,
            tracing,
            ..
        } = &mut *self.0;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        let latest = events.iter().map(|e| e.t_ms).max().unwrap_or_default() / 1000;
        let module = Index::credit_in(credit, &tx, latest, path)?;
        Index::trace_in(tracing, &tx, module, events, path)?;
        tx.commit().at(path)?;
        self.0.credited(module);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::test_entry as entry;
    use crate::index::{Use, test_add as add};
    use crate::layout::Id;

    fn tracing(keep: u64) -> Option<Tracing> {
        Some(Tracing {
            source: TraceSource::Prog,
            keep,
        })
    }

    fn miss(i: u64) -> TraceEvent {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&i.to_be_bytes());
        TraceEvent::miss(i as i64, &Id(b))
    }

    #[test]
    fn more_events_than_the_bound_leave_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        // Off by default: nothing recorded.
        ix.trace_mut().record(&[miss(0)]).unwrap();
        assert_eq!(ix.trace().count().unwrap(), 0);
        ix.set_trace(tracing(10));
        let all: Vec<TraceEvent> = (1..=25).map(miss).collect();
        // In batches, as hooks add them: 7 + 7 + 7 + 4.
        for batch in all.chunks(7) {
            ix.trace_mut().record(batch).unwrap();
            assert!(ix.trace().count().unwrap() <= 10);
        }
        let kept: Vec<i64> = ix
            .trace()
            .events(0)
            .unwrap()
            .iter()
            .map(|s| s.event.t_ms)
            .collect();
        assert_eq!(kept, (16..=25).collect::<Vec<i64>>());
        // One batch bigger than the bound keeps its own newest.
        let big: Vec<TraceEvent> = (100..130).map(miss).collect();
        ix.trace_mut().record(&big).unwrap();
        let kept = ix.trace().events(0).unwrap();
        assert_eq!(kept.len(), 10);
        assert_eq!(kept[0].event.t_ms, 120);
        // --since.
        assert_eq!(ix.trace().events(125).unwrap().len(), 5);
    }

    #[test]
    fn syncs_and_uses_record_new_entries_and_hits_but_not_a_first_fill() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        ix.set_trace(Some(Tracing {
            source: TraceSource::Hook,
            keep: 100,
        }));
        // The first fill of an empty index: not go's doing.
        add(&mut ix, [&entry(1, Kind::Output)], 3000);
        add(&mut ix, [&entry(2, Kind::Output)], 3000);
        assert_eq!(ix.trace().count().unwrap(), 0);
        // A later connection: what its sync adds is new.
        let mut ix = Index::open(ix.path()).unwrap();
        ix.set_trace(Some(Tracing {
            source: TraceSource::Hook,
            keep: 100,
        }));
        let (a, x) = (entry(3, Kind::Action), entry(4, Kind::Exe));
        add(&mut ix, [&a], 3000);
        add(&mut ix, [&x], 3000);
        // Seen again (a changed mtime): not new.
        add(&mut ix, [&a], 3001);
        let used = |e: &Entry, at| Use {
            name: e.name,
            at,
            hit: true,
            marked: false,
        };
        // A use of an entry this connection's sync added is the command
        // that made it: skipped. Uses of the others are hits.
        let fresh = entry(5, Kind::Output);
        add(&mut ix, [&fresh], 3600);
        ix.record_uses(&[used(&fresh, 3600)]).unwrap();
        let mut ix = Index::open(ix.path()).unwrap();
        ix.set_trace(Some(Tracing {
            source: TraceSource::Hook,
            keep: 100,
        }));
        ix.record_uses(&[used(&x, 3500), used(&a, 3500)]).unwrap();
        let got: Vec<(TraceOp, Kind, i64)> = ix
            .trace()
            .events(0)
            .unwrap()
            .iter()
            .map(|s| (s.event.op, s.event.kind, s.event.t_ms))
            .collect();
        assert_eq!(
            got,
            [
                (TraceOp::New, Kind::Action, 1_000_000),
                (TraceOp::New, Kind::Exe, 1_000_000),
                (TraceOp::New, Kind::Output, 1_000_000),
                (TraceOp::Use, Kind::Exe, 3_500_000),
                (TraceOp::Use, Kind::Action, 3_500_000),
            ]
        );
        let ev = ix.trace().events(0).unwrap();
        assert_eq!(ev[4].event.output, a.output.as_ref().map(TraceId::of));
        assert_eq!(ev[1].event.size, Some(x.allocated));
        assert_eq!(ev[0].source, TraceSource::Hook);
        // prog records its own gets and puts: its syncs and uses add none.
        let mut ix = Index::open(ix.path()).unwrap();
        ix.set_trace(tracing(100));
        let before = ix.trace().count().unwrap();
        add(&mut ix, [&entry(6, Kind::Output)], 4000);
        ix.record_uses(&[used(&x, 4000)]).unwrap();
        assert_eq!(ix.trace().count().unwrap(), before);
    }

    /// An index of schema 4 (before traces) migrates in place, keeps its
    /// rows, and records from then on.
    #[test]
    fn an_index_from_before_traces_migrates_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (sql, version) in super::super::open::MIGRATIONS[..4].iter().zip(1..) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        conn.execute(
            "INSERT INTO entries (subdir, name, kind, apparent, allocated, mtime, last_use, hits, first_seen)
             VALUES (1, ?1, 1, 10, 4096, 100, 100, 3, 100)",
            [entry(1, Kind::Output).name.file_name()],
        )
        .unwrap();
        drop(conn);
        let mut ix = Index::open(&path).unwrap();
        assert_eq!(
            ix.entry(&entry(1, Kind::Output).name)
                .unwrap()
                .unwrap()
                .hits,
            3
        );
        assert_eq!(ix.trace().count().unwrap(), 0);
        ix.set_trace(tracing(5));
        ix.trace_mut().record(&[miss(1)]).unwrap();
        assert_eq!(ix.trace().count().unwrap(), 1);
    }
}
