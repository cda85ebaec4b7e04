//! The hook's head start: reading the cache while another thread opens
//! the index.

use std::path::Path;
use std::sync::mpsc;

use super::listing::{Listed, TopLevelRead, list_subdir, mtime_ns, scan_top_level};
use super::{Known, RACY_SECS};
use crate::cachedir::open_dir;
use crate::error::Result;
use crate::index::{Access, Index};

/// What a hook reads of the cache while its index opens: the cache's top
/// level, listings of the subdirectories that changed since the index was
/// last written (newest first, at most [`HEAD_START_LISTINGS`]), and the
/// names the index holds for them.
///
/// Listing a 4,000-entry subdirectory takes longer than opening the index
/// and loading its names, so the calling thread (already running) does the
/// listing, the critical path, while a helper thread opens the index.
///
/// Nothing is decided from it: the scan still compares every
/// subdirectory's mtime with the index's, and lists anything else it needs.
pub struct HeadStart {
    /// The top level: what is there, and each subdirectory's mtime.
    pub(super) top: TopLevelRead,
    /// The subdirectories listed ahead, and their listings.
    pub(super) listings: Vec<(u8, Listed)>,
    /// The names the index held for them (incremental scans of an index
    /// that is not empty).
    pub(super) known: Vec<(u8, Known)>,
}

/// The most subdirectories a [`HeadStart`] lists.
pub const HEAD_START_LISTINGS: usize = 8;

impl HeadStart {
    /// Opens the index as `access` says on a helper thread while this
    /// thread reads `cache_dir`; returns the index (or why it could not be
    /// opened, for [`Access::run_from`] to recover from) and, unless the
    /// cache directory cannot be opened, the head start for
    /// [`scan_with_head_start`](super::scan_with_head_start).
    pub fn open_while_reading(
        cache_dir: &Path,
        access: &Access,
    ) -> (Result<Index>, Option<HeadStart>) {
        // The index's mtime says what is new; read it before the helper
        // opens (and perhaps migrates) it.
        let since = last_write_ns(&access.path);
        let (promised_tx, promised_rx) = mpsc::channel::<Vec<u8>>();
        let access = access.clone();
        let helper = crate::threads::spawn_beside(move || {
            let index = access.open()?;
            index.prepare_check()?;
            let promised = promised_rx.recv().unwrap_or_default();
            let mut known = Vec::new();
            if !promised.is_empty() {
                index.prepare_sync()?;
                if !index.is_empty()? {
                    for s in promised {
                        let names = index.subdir_names(s)?;
                        known.push((s, Known::Names(names.into_iter().collect())));
                    }
                }
            }
            Ok((index, known))
        });
        let head = open_dir(cache_dir).ok().map(|fd| {
            let top = scan_top_level(&fd, cache_dir);
            let mut changed: Vec<(i64, u8)> = Vec::new();
            if let (Ok((_, mtimes)), Some(since)) = (&top, since) {
                let since = since.saturating_sub(RACY_SECS * 1_000_000_000);
                changed = (0..=255u8)
                    .filter_map(|s| mtimes[s as usize].filter(|&m| m >= since).map(|m| (m, s)))
                    .collect();
                changed.sort_unstable_by(|a, b| b.cmp(a));
                changed.truncate(HEAD_START_LISTINGS);
            }
            let _ = promised_tx.send(changed.iter().map(|&(_, s)| s).collect());
            let listings = changed
                .into_iter()
                .map(|(_, s)| (s, list_subdir(&fd, s)))
                .collect();
            (top, listings)
        });
        drop(promised_tx);
        let opened: Result<(Index, Vec<(u8, Known)>)> = helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (opened, head) {
            (Err(e), _) => (Err(e), None),
            (Ok((index, _)), None) => (Ok(index), None),
            (Ok((index, known)), Some((top, listings))) => (
                Ok(index),
                Some(HeadStart {
                    top,
                    listings,
                    known,
                }),
            ),
        }
    }
}

/// When the index at `path` was last written (its WAL or itself), in ns.
fn last_write_ns(path: &Path) -> Option<i64> {
    [path.to_owned(), Index::wal_path(path)]
        .iter()
        .filter_map(|p| rustix::fs::stat(p).ok())
        .map(|st| mtime_ns(&st))
        .max()
}
