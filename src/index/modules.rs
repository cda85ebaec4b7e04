//! Which Go module added or last used each entry (`entries.module`, a
//! row of `modules`), so that `stats` can say which projects hold the
//! bytes and `trim -v` whose entries go.
//!
//! A connection is told once which module its go command ran in
//! ([`Index::credit_module`]: the wrapper's hook, `gocache prog`); from
//! then on the uses it records are credited to that module, and so are the
//! entries its scans find that the command demonstrably wrote or touched,
//! in the same statements (one more bound parameter). The module's row is
//! written once, in the first transaction that credits anything. A hook
//! that adds and uses nothing writes nothing more. A later use by another
//! module moves an entry to it: an entry counts for the last module seen
//! using it.
//!
//! # Only what the command did
//!
//! A scan finds whatever is new to the index, and that is not only what
//! the command made: the first hook on a cache the index has never seen
//! finds every entry, and a hook after plain go commands finds what they
//! added. Those entries are credited to no module. A scan credits an entry
//! only when its mtime is later than the moment the go command started
//! (`found_after_ns`, read from the clock file times come from): Go writes
//! an entry's mtime when it makes it, and moves it when it uses an entry
//! over an hour old, so a later mtime is the command's doing (or that of a
//! go command running beside it, which no mtime can tell apart). A
//! connection with no such moment (`gocache prog`, whose gets and puts
//! are its uses) credits nothing its scans find. On a network filesystem
//! the server stamps mtimes by its own clock, so the comparison is off by
//! the two clocks' difference: a server behind this machine credits less,
//! one ahead may credit what a plain go command wrote moments before.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::statements::SQL_CREDIT_MODULE;
use super::{Index, SqlResult};
use crate::error::Result;
use crate::gomod::Module;
use crate::layout::{EntryName, IdHash};
use crate::model::{Bytes, UnixTime};

/// The module a connection credits, and its row once written.
#[derive(Clone, Debug)]
pub(super) struct Credit {
    module: Module,
    id: Option<i64>,
    /// When the go command started (Unix ns): the entries a scan finds
    /// with a later mtime are credited; `None`: none are.
    found_after_ns: Option<i64>,
}

/// One module's share of the cache.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModuleTotals {
    /// The directory holding its go.mod.
    pub root: String,
    /// Its module path (`example.com/hello`), if go.mod said.
    pub path: Option<String>,
    /// The entries credited to it now.
    #[serde(flatten)]
    pub bytes: Bytes,
    /// The last go command credited to it (Unix seconds).
    pub last_seen: UnixTime,
}

/// The module each entry is credited to (see [`Index::entry_modules`]).
#[derive(Clone, Debug, Default)]
pub struct ModuleMap {
    modules: Vec<Module>,
    by_entry: HashMap<EntryName, u32, IdHash>,
}

impl ModuleMap {
    /// The module `name` is credited to, if any.
    pub fn get(&self, name: &EntryName) -> Option<&Module> {
        self.by_entry
            .get(name)
            .and_then(|&i| self.modules.get(i as usize))
    }

    /// How many entries are credited to a module.
    pub fn len(&self) -> usize {
        self.by_entry.len()
    }

    /// True when no entry is.
    pub fn is_empty(&self) -> bool {
        self.by_entry.is_empty()
    }
}

impl Index {
    /// Credits the uses this connection records to `module` from now on
    /// (`None`: to none), and the entries its scans find with an mtime
    /// later than `found_after_ns` (Unix ns: when the go command started,
    /// from [`crate::wrapper::file_clock_ns`]; `None`: none of them; see
    /// the module doc). Writes nothing until something is credited.
    pub fn credit_module(&mut self, module: Option<Module>, found_after_ns: Option<i64>) {
        self.credit = module.map(|module| Credit {
            module,
            id: None,
            found_after_ns,
        });
    }

    /// The mtime (Unix ns) after which an entry a scan finds is credited
    /// to this connection's module (see [`Index::credit_module`]).
    pub fn credit_found_after(&self) -> Option<i64> {
        self.credit.as_ref().and_then(|c| c.found_after_ns)
    }

    /// The credited module's row id, written in `tx` the first time (and
    /// again after a transaction that wrote it was rolled back: the id is
    /// kept only once [`Index::credited`] is told the commit succeeded).
    pub(super) fn credit_in(
        credit: &Option<Credit>,
        tx: &Transaction,
        now: UnixTime,
        path: &std::path::Path,
    ) -> Result<Option<i64>> {
        let Some(c) = credit else { return Ok(None) };
        if let Some(id) = c.id {
            return Ok(Some(id));
        }
        tx.prepare_cached(SQL_CREDIT_MODULE)
            .and_then(|mut q| {
                q.query_row(
                    params![
                        c.module.root.to_string_lossy(),
                        c.module.path.as_deref(),
                        now
                    ],
                    |r| r.get(0),
                )
            })
            .map(Some)
            .at(path)
    }

    /// Remembers the credited module's row id once a transaction that
    /// wrote it has committed.
    pub(super) fn credited(&mut self, id: Option<i64>) {
        if let (Some(c), Some(id)) = (&mut self.credit, id) {
            c.id = Some(id);
        }
    }

    /// Bytes and entries per module, most allocated bytes first; the
    /// entries credited to none are not in the list (the rest of the
    /// totals).
    pub fn module_totals(&self) -> Result<Vec<ModuleTotals>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.root, m.path, m.last_seen, t.n, t.apparent, t.allocated
                 FROM (SELECT module, count(*) AS n, sum(apparent) AS apparent,
                              sum(allocated) AS allocated
                       FROM entries WHERE module IS NOT NULL GROUP BY module) AS t
                 JOIN modules AS m ON m.id = t.module
                 ORDER BY t.allocated DESC, m.root",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([], |r| {
                let u = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok(ModuleTotals {
                    root: r.get(0)?,
                    path: r.get(1)?,
                    last_seen: r.get(2)?,
                    bytes: Bytes {
                        entries: u(3)?,
                        apparent_bytes: u(4)?,
                        allocated_bytes: u(5)?,
                    },
                })
            })
            .at(&self.path)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.path)
    }

    /// The module of every entry credited to one (for `trim -v`, read
    /// before the entries go).
    pub fn entry_modules(&self) -> Result<ModuleMap> {
        let mut map = ModuleMap::default();
        let mut ids: HashMap<i64, u32> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT id, root, path FROM modules")
            .at(&self.path)?;
        let mut rows = stmt.query([]).at(&self.path)?;
        while let Some(r) = rows.next().at(&self.path)? {
            let (id, root, path): (i64, String, Option<String>) = (
                r.get(0).at(&self.path)?,
                r.get(1).at(&self.path)?,
                r.get(2).at(&self.path)?,
            );
            ids.insert(id, map.modules.len() as u32);
            map.modules.push(Module {
                root: root.into(),
                path,
            });
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name, module FROM entries WHERE module IS NOT NULL")
            .at(&self.path)?;
        let mut rows = stmt.query([]).at(&self.path)?;
        while let Some(r) = rows.next().at(&self.path)? {
            let module: i64 = r.get(1).at(&self.path)?;
            if let Ok(bytes) = r.get_ref(0).and_then(|v| Ok(v.as_bytes()?))
                && let Some(name) = EntryName::parse(bytes)
                && let Some(&i) = ids.get(&module)
            {
                map.by_entry.insert(name, i);
            }
        }
        Ok(map)
    }

    /// The module an entry is credited to, if any.
    pub fn module_of(&self, name: &EntryName) -> Result<Option<Module>> {
        self.conn
            .prepare_cached(
                "SELECT m.root, m.path FROM entries AS e JOIN modules AS m ON m.id = e.module
                 WHERE e.subdir = ?1 AND e.name = ?2",
            )
            .and_then(|mut q| {
                q.query_row(params![name.subdir(), name.file_name()], |r| {
                    Ok(Module {
                        root: r.get::<_, String>(0)?.into(),
                        path: r.get(1)?,
                    })
                })
                .optional()
            })
            .at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::test_entry as entry;
    use crate::index::{SubdirChanges, Use};
    use crate::model::Kind;

    fn module(name: &str) -> Module {
        Module {
            root: format!("/src/{name}").into(),
            path: Some(format!("example.com/{name}")),
        }
    }

    /// Adds `es` as a scan that found them written by the connection's go
    /// command.
    fn add<'a>(
        ix: &mut Index,
        es: impl IntoIterator<Item = &'a crate::model::Entry>,
        now: UnixTime,
    ) {
        for e in es {
            found(ix, e, now, true);
        }
    }

    /// Adds `e` as a scan that found it, credited or not.
    fn found(ix: &mut Index, e: &crate::model::Entry, now: UnixTime, credit: bool) {
        ix.apply_subdir(
            &SubdirChanges {
                subdir: e.name.subdir(),
                upserts: vec![e.clone()],
                credited: if credit { vec![e.name] } else { vec![] },
                totals: None,
                ..Default::default()
            },
            now,
        )
        .unwrap();
    }

    fn used(e: &crate::model::Entry, at: UnixTime) -> Use {
        Use {
            name: e.name,
            at,
            hit: true,
            marked: false,
        }
    }

    #[test]
    fn entries_are_credited_to_the_module_that_added_or_last_used_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.sqlite");
        let mut hello = Index::open(&path).unwrap();
        let mut tools = Index::open(&path).unwrap();
        let mut plain = Index::open(&path).unwrap();
        hello.credit_module(Some(module("hello")), Some(0));
        tools.credit_module(Some(module("tools")), Some(0));
        let (a, o, x) = (
            entry(1, Kind::Action),
            entry(2, Kind::Output),
            entry(3, Kind::Exe),
        );
        add(&mut hello, [&a], 100);
        add(&mut hello, [&o], 100);
        add(&mut plain, [&x], 100);
        // Nothing credited to a connection with no module, nor its row
        // written before anything was credited.
        let t = hello.module_totals().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].path.as_deref(), t[0].bytes.entries),
            (Some("example.com/hello"), 2)
        );
        // A full scan (no module) keeps what was credited.
        add(&mut plain, [&o], 200);
        assert_eq!(plain.module_of(&o.name).unwrap(), Some(module("hello")));
        // A use by another module moves the entry to it.
        tools.record_uses(&[used(&o, 300), used(&x, 300)]).unwrap();
        let by = |ix: &Index| -> Vec<(String, u64)> {
            ix.module_totals()
                .unwrap()
                .iter()
                .map(|m| (m.path.clone().unwrap(), m.bytes.entries))
                .collect()
        };
        assert_eq!(
            by(&plain),
            [
                ("example.com/tools".into(), 2),
                ("example.com/hello".into(), 1)
            ]
        );
        // A use recorded before the entry is indexed (prog's put) keeps
        // its module through the scan that finds it, whoever scans.
        let late = entry(4, Kind::Output);
        tools.record_uses(&[used(&late, 400)]).unwrap();
        add(&mut hello, [&late], 500);
        assert_eq!(hello.module_of(&late.name).unwrap(), Some(module("tools")));
        let map = plain.entry_modules().unwrap();
        assert_eq!(map.len(), 4);
        assert_eq!(map.get(&a.name), Some(&module("hello")));
        assert_eq!(map.get(&late.name), Some(&module("tools")));
        // One row per module, seen last by the last command crediting it.
        let t = plain.module_totals().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].last_seen, 300);
        // What a scan finds that the command did not write (there before
        // the index, or a plain go command's) is credited to none, and
        // writes no module row.
        let mut other = Index::open(&path).unwrap();
        other.credit_module(Some(module("other")), Some(0));
        let before = entry(5, Kind::Output);
        found(&mut other, &before, 600, false);
        assert_eq!(other.module_of(&before.name).unwrap(), None);
        assert_eq!(other.module_totals().unwrap().len(), 2);
        // Nor does it take an entry from the module that has it.
        found(&mut other, &a, 600, false);
        assert_eq!(other.module_of(&a.name).unwrap(), Some(module("hello")));
    }

    /// An index of schema 2 (before modules) is migrated in place: its
    /// rows stay, credited to no module, and crediting works from then on.
    #[test]
    fn an_index_from_before_modules_migrates_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        // Schema 2 as a gocache of that time left it.
        for (sql, version) in super::super::open::MIGRATIONS[..2].iter().zip(1..) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        conn.execute(
            "INSERT INTO entries (subdir, name, kind, apparent, allocated, mtime, last_use, hits, first_seen)
             VALUES (1, ?1, 1, 10, 4096, 100, 100, 3, 100)",
            [entry(1, Kind::Output).name.file_name()],
        )
        .unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
        drop(conn);
        let mut ix = Index::open(&path).unwrap();
        let old = entry(1, Kind::Output);
        assert_eq!(ix.entry(&old.name).unwrap().unwrap().hits, 3);
        assert_eq!(ix.module_of(&old.name).unwrap(), None);
        assert!(ix.module_totals().unwrap().is_empty());
        ix.credit_module(Some(module("after")), Some(0));
        ix.record_uses(&[used(&old, 200)]).unwrap();
        assert_eq!(ix.module_of(&old.name).unwrap(), Some(module("after")));
    }

    #[test]
    fn a_connection_crediting_nothing_writes_no_module() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        ix.credit_module(Some(module("idle")), Some(0));
        ix.record_uses(&[]).unwrap();
        let n: i64 = ix
            .conn
            .query_row("SELECT count(*) FROM modules", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
