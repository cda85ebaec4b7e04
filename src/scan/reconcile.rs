//! One subdirectory's listing against what the index knew of it: the
//! changes to write.

use std::collections::HashSet;
use std::ffi::CStr;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::listing::{Listing, NoListing, alloc_of, mtime_ns, secs, size_of, type_name};
use super::{Known, MISSING, RACY_SECS};
use crate::cachedir::open_dir_at;
use crate::error::NotAnEntry;
use crate::index::SubdirChanges;
use crate::layout::{ACTION_ENTRY_SIZE, ActionEntry, EntryName, IdHash, Suffix, subdir_name};
use crate::model::{Entry, Kind, Other, OtherClass, Totals, UnixTime};

#[derive(Default)]
pub(super) struct SubdirStats {
    pub(super) added: u64,
    pub(super) updated: u64,
    pub(super) unchanged: u64,
    pub(super) action_files_read: u64,
}

/// The times a reconcile stamps and judges by.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stamps {
    /// When the scan runs.
    pub(super) now: UnixTime,
    /// The first sighting recorded for entries new to the index.
    pub(super) first_seen: UnixTime,
    /// Record a subdirectory's mtime even within [`RACY_SECS`] of `now`
    /// (the caller seals it right after; see [`super::ScanOptions`]).
    pub(super) trust_recent: bool,
    /// Entries written or touched after this (Unix ns) are credited to
    /// the index connection's module (see
    /// [`crate::index::Index::credit_module`]); `None`: none are.
    pub(super) credit_after_ns: Option<i64>,
}

// One per subdirectory, moved once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum SubdirResult {
    Changes(SubdirChanges, SubdirStats),
    /// The subdirectory exists but could not be read: the index keeps what
    /// it had, and the subdirectory is rescanned next time.
    Unreadable(String),
}

/// Compares a subdirectory's listing with what the index knew of it.
pub(super) fn reconcile(
    listed: std::result::Result<Listing, NoListing>,
    subdir: u8,
    known: &Known,
    full: bool,
    stamps: &Stamps,
) -> SubdirResult {
    let mut changes = SubdirChanges {
        subdir,
        ..Default::default()
    };
    let incremental = matches!(known, Known::Names(_));
    let listing = match listed {
        Ok(l) => l,
        Err(NoListing::Unreadable(msg)) => return SubdirResult::Unreadable(msg),
        Err(no) => {
            // Every entry the index knew here is gone.
            let mut deletes: Vec<EntryName> = known.names().copied().collect();
            deletes.sort_unstable();
            changes.deletes = deletes;
            changes.mtime_ns = matches!(no, NoListing::Missing).then_some(MISSING);
            changes.totals = (!incremental).then(Default::default);
            return SubdirResult::Changes(changes, SubdirStats::default());
        }
    };
    let dir_fd = &listing.dir_fd;
    changes.dir_allocated = listing.dir_allocated;
    let mut stats = SubdirStats::default();
    // Entries of the listing the index knew (unchanged or re-read).
    let mut seen: HashSet<EntryName, IdHash> =
        HashSet::with_capacity_and_hasher(if incremental { 0 } else { known.len() }, IdHash);
    let mut known_seen = 0usize;
    for &ename in &listing.entries {
        // Incremental: a name the index knows is taken as it was; only new
        // and vanished names are looked at. (A known entry's mtime changes
        // when Go marks it used, which a full scan picks up; the executor
        // re-checks every entry before removing it anyway.)
        if !full && known.contains(&ename) {
            known_seen += 1;
            stats.unchanged += 1;
            if !incremental {
                seen.insert(ename);
            }
            continue;
        }
        let (mut e, mtime_ns) = match read_entry(dir_fd, ename, known.row(&ename), &mut stats) {
            Read::Gone => continue,
            Read::Odd(o) => {
                changes.others.push(o);
                continue;
            }
            Read::Entry(e, ns) => (e, ns),
        };
        if known.contains(&ename) {
            known_seen += 1;
            seen.insert(ename);
        }
        match known.row(&ename) {
            Some(old) if same_on_disk(old, &e) => {
                stats.unchanged += 1;
                continue;
            }
            Some(old) => {
                stats.updated += 1;
                changes.updated.push(ename);
                e.first_seen = old.first_seen;
                e.hits = old.hits;
                e.last_use = old.last_use.max(e.mtime);
            }
            None => {
                stats.added += 1;
                e.first_seen = stamps.first_seen;
            }
        }
        if stamps.credit_after_ns.is_some_and(|t| mtime_ns > t) {
            changes.credited.push(ename);
        }
        changes.upserts.push(e);
    }
    changes.updated.sort_unstable();
    changes.credited.sort_unstable();
    let name = subdir_name(subdir);
    for fname in &listing.others {
        changes.others.extend(stray(dir_fd, &name, fname));
    }
    deletes_and_totals(known, &listing, &seen, known_seen, &mut changes);
    changes.mtime_ns = settled_mtime(&listing, stamps);
    SubdirResult::Changes(changes, stats)
}

/// What the index knew here and the listing lacks (to delete), and the
/// subdirectory's totals after the changes: worked out from the rows when
/// the index's rows were read (a full scan), left to the write transaction
/// otherwise.
fn deletes_and_totals(
    known: &Known,
    listing: &Listing,
    seen: &HashSet<EntryName, IdHash>,
    known_seen: usize,
    changes: &mut SubdirChanges,
) {
    match known {
        Known::Names(names) => {
            // Vanished: known names not in the listing. Usually none (Go
            // only adds), which the count tells without a second pass.
            if known_seen < names.len() {
                let listed: HashSet<&EntryName, IdHash> = listing.entries.iter().collect();
                changes.deletes = names
                    .iter()
                    .filter(|n| !listed.contains(n))
                    .copied()
                    .collect();
                changes.deletes.sort_unstable();
            }
            // Totals change by what is added and dropped, worked out from
            // the rows in the write transaction.
            changes.totals = None;
        }
        Known::Rows(rows) => {
            let mut deletes: Vec<EntryName> =
                rows.keys().filter(|n| !seen.contains(n)).copied().collect();
            deletes.sort_unstable();
            changes.deletes = deletes;
            // The subdirectory's totals: what is new or changed, plus what
            // is unchanged from before.
            let mut totals = Totals::default();
            let upserted: HashSet<EntryName, IdHash> =
                changes.upserts.iter().map(|e| e.name).collect();
            for e in &changes.upserts {
                totals.add(e);
            }
            for (n, e) in rows {
                if seen.contains(n) && !upserted.contains(n) {
                    totals.add(e);
                }
            }
            changes.totals = Some(totals);
        }
    }
}

/// What a name of the entry pattern turned out to be.
enum Read {
    /// Removed between getdents and stat (a trim, Go's own trim).
    Gone,
    /// Not what its name says (a symlink, a fifo, a malformed executable
    /// directory…): an odd item, never followed.
    Odd(Other),
    /// An entry, as it is on disk, and its mtime in nanoseconds.
    Entry(Entry, i64),
}

/// Reads the entry `ename` in the subdirectory `dir_fd`: its stat, and an
/// action file's content unless `known` says it cannot have changed.
fn read_entry(
    dir_fd: &OwnedFd,
    ename: EntryName,
    known: Option<&Entry>,
    stats: &mut SubdirStats,
) -> Read {
    let cname = ename.c_file_name();
    let fname = cname.as_c_str();
    let st = match rustix::fs::statat(dir_fd, fname, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Read::Gone,
        Err(e) => return Read::Odd(odd(ename.rel_path(), format!("cannot stat: {e}"), 0, 0)),
    };
    let entry = match (ename.suffix, FileType::from_raw_mode(st.st_mode as _)) {
        (Suffix::Action, FileType::RegularFile) => {
            read_action(dir_fd, fname, ename, &st, known, stats)
        }
        (Suffix::Data, FileType::RegularFile) => Ok(base_entry(ename, Kind::Output, &st)),
        (Suffix::Data, FileType::Directory) => read_exe(dir_fd, fname, ename, &st),
        (_, t) => Err(NotAnEntry::WrongType(type_name(t))),
    };
    match entry {
        Ok(e) => Read::Entry(e, mtime_ns(&st)),
        Err(what) => Read::Odd(odd(
            ename.rel_path(),
            what.to_string(),
            size_of(&st),
            alloc_of(&st),
        )),
    }
}

/// What a name that is not an entry of subdirectory `subdir_name` is:
/// an odd item (`None` when it is gone already).
fn stray(dir_fd: &OwnedFd, subdir_name: &str, fname: &CStr) -> Option<Other> {
    let bytes = fname.to_bytes();
    let rel = format!("{subdir_name}/{}", String::from_utf8_lossy(bytes));
    let st = match rustix::fs::statat(dir_fd, fname, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return None,
        Err(e) => return Some(odd(rel, format!("cannot stat: {e}"), 0, 0)),
    };
    let ftype = FileType::from_raw_mode(st.st_mode as _);
    let what = match (ftype, EntryName::parse(bytes)) {
        (_, Some(_)) => format!("{} in the wrong subdirectory", type_name(ftype)),
        (FileType::RegularFile, None) => "stray file".to_string(),
        (t, None) => format!("stray {}", type_name(t)),
    };
    Some(odd(rel, what, size_of(&st), alloc_of(&st)))
}

/// The mtime to record for the subdirectory just read: the one seen before
/// reading, trusted only if nothing changed while we read (the descriptor's
/// mtime after is the same) and it is not so recent that a change in the
/// same tick could still be hidden (`None`: rescan next time), unless the
/// caller trusts recent ones.
fn settled_mtime(listing: &Listing, stamps: &Stamps) -> Option<i64> {
    let after = rustix::fs::fstat(&listing.dir_fd)
        .map(|st| mtime_ns(&st))
        .ok();
    let racy = !stamps.trust_recent
        && listing.mtime_before >= (stamps.now - RACY_SECS).saturating_mul(1_000_000_000);
    (after == Some(listing.mtime_before) && !racy).then_some(listing.mtime_before)
}

fn same_on_disk(old: &Entry, new: &Entry) -> bool {
    old.kind == new.kind
        && old.apparent == new.apparent
        && old.allocated == new.allocated
        && old.mtime == new.mtime
        && old.output == new.output
        && old.program == new.program
        && old.problem == new.problem
}

fn base_entry(name: EntryName, kind: Kind, st: &rustix::fs::Stat) -> Entry {
    Entry {
        name,
        kind,
        apparent: size_of(st),
        allocated: alloc_of(st),
        mtime: secs(st),
        last_use: secs(st),
        hits: 0,
        first_seen: 0,
        output: None,
        program: None,
        problem: None,
    }
}

fn read_action(
    dir_fd: &OwnedFd,
    fname: &CStr,
    name: EntryName,
    st: &rustix::fs::Stat,
    known: Option<&Entry>,
    stats: &mut SubdirStats,
) -> Result<Entry, NotAnEntry> {
    let mut e = base_entry(name, Kind::Action, st);
    // An action file is rewritten in place, which changes its mtime: same
    // size and mtime means same content, so it need not be read again.
    if let Some(old) = known
        && old.kind == Kind::Action
        && old.mtime == e.mtime
        && old.apparent == e.apparent
    {
        e.output = old.output;
        e.problem = old.problem.clone();
        return Ok(e);
    }
    stats.action_files_read += 1;
    if e.apparent != ACTION_ENTRY_SIZE as u64 {
        // Go's reader rejects any other size without looking further.
        let msg = format!("action entry is {} bytes, expected 175", e.apparent);
        e_problem(&mut e, msg);
        return Ok(e);
    }
    let mut buf = [0u8; ACTION_ENTRY_SIZE];
    let n = match read_small(dir_fd, fname, &mut buf) {
        Ok(n) => n,
        Err(rustix::io::Errno::LOOP) => return Err(NotAnEntry::Symlink),
        Err(err) => {
            e_problem(&mut e, format!("cannot read: {err}"));
            return Ok(e);
        }
    };
    match ActionEntry::parse(&buf[..n], Some(name.id)) {
        Ok(a) => e.output = Some(a.output),
        Err(err) => e_problem(&mut e, err.to_string()),
    }
    Ok(e)
}

fn e_problem(e: &mut Entry, msg: String) {
    e.output = None;
    e.problem = Some(msg);
}

fn read_small(dir_fd: &OwnedFd, fname: &CStr, buf: &mut [u8]) -> rustix::io::Result<usize> {
    let fd = rustix::fs::openat(
        dir_fd,
        fname,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(&fd, &mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_exe(
    dir_fd: &OwnedFd,
    fname: &CStr,
    name: EntryName,
    st: &rustix::fs::Stat,
) -> Result<Entry, NotAnEntry> {
    let fd = open_dir_at(dir_fd, fname).map_err(NotAnEntry::ExeDirUnopenable)?;
    let dir = rustix::fs::Dir::read_from(&fd).map_err(NotAnEntry::ExeDirUnreadable)?;
    let mut inner = Vec::new();
    for item in dir {
        let item = item.map_err(NotAnEntry::ExeDirUnreadable)?;
        let b = item.file_name().to_bytes();
        if b != b"." && b != b".." {
            inner.push(item.file_name().to_owned());
        }
    }
    if inner.len() != 1 {
        return Err(NotAnEntry::ExeDirCount(inner.len()));
    }
    let ist = rustix::fs::statat(&fd, inner[0].as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(NotAnEntry::ExeUnexaminable)?;
    let t = FileType::from_raw_mode(ist.st_mode as _);
    if t != FileType::RegularFile {
        return Err(NotAnEntry::ExeNotAFile(type_name(t)));
    }
    let mut e = base_entry(name, Kind::Exe, st);
    e.apparent = size_of(&ist);
    e.allocated = alloc_of(st).saturating_add(alloc_of(&ist));
    e.program = Some(String::from_utf8_lossy(inner[0].to_bytes()).into_owned());
    Ok(e)
}

fn odd(path: String, what: String, apparent: u64, allocated: u64) -> Other {
    Other {
        path,
        class: OtherClass::Odd,
        what,
        apparent,
        allocated,
    }
}
