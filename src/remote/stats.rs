//! `remote_stats`: what the store holds, and how well it serves the fleet.
//! Reads only: lists the prefix and merges the use logs and snapshots in
//! memory, writing nothing.

use super::policy::Totals;
use super::store::{ObjectStore, StoreError};
use super::trim::{Inventory, SESSION_RETENTION, Unread, UsesRead};
use super::uses::SessionCounts;
use crate::model::UnixTime;

/// Cache objects by last use (the later of upload and logged use).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AgeBucket {
    /// `<1h`, `<1d`, `<5d`, `<30d` or `>=30d`.
    pub bucket: &'static str,
    /// Objects and bytes.
    #[serde(flatten)]
    pub totals: Totals,
}

/// What [`remote_stats`] found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RemoteStats {
    /// Unix seconds the figures are for.
    pub now: UnixTime,
    /// Action entries and outputs together.
    pub total: Totals,
    /// Action entries (`a/`).
    pub actions: Totals,
    /// Outputs, in either form (`o/` and `z/`), as stored.
    pub outputs: Totals,
    /// Of those, the outputs stored compressed (`z/`), as stored.
    pub compressed: Totals,
    /// The cache objects' bytes as stored: `total.bytes`, what the bill
    /// and a budget count.
    pub stored_bytes: u64,
    /// The cache objects' bytes before compression: what they would take
    /// stored as they are.
    pub logical_bytes: u64,
    /// `logical_bytes / stored_bytes`; `None` when the bucket holds no
    /// cache object.
    pub compression_ratio: Option<f64>,
    /// Use logs not merged yet.
    pub logs: Totals,
    /// Snapshots.
    pub snapshots: Totals,
    /// Session manifests (`m/`), one per build key.
    pub manifests: Totals,
    /// Other keys under the prefix (never touched).
    pub other: Totals,
    /// Everything under the prefix, in bytes: what a budget counts.
    pub prefix_bytes: u64,
    /// By last use.
    pub age: Vec<AgeBucket>,
    /// Oldest and newest upload of a cache object.
    pub oldest_upload: Option<UnixTime>,
    /// Newest upload.
    pub newest_upload: Option<UnixTime>,
    /// Sessions that reported in the last 30 days (not those that asked
    /// the store nothing and used what their machine had just reported:
    /// `tier::REPORT_AGAIN_AFTER`).
    pub sessions: u64,
    /// Their counters, added up.
    pub counts: SessionCounts,
    /// `hits / lookups` over those sessions; `None` without lookups.
    pub hit_share: Option<f64>,
    /// Logs and snapshots that could not be read.
    pub unread: Vec<Unread>,
}

/// The age buckets' upper bounds, in seconds.
const AGES: [(&str, i64); 4] = [
    ("<1h", 3600),
    ("<1d", 86_400),
    ("<5d", 5 * 86_400),
    ("<30d", 30 * 86_400),
];

/// Reports what the store holds, as of `now`.
pub fn remote_stats(store: &dyn ObjectStore, now: UnixTime) -> Result<RemoteStats, StoreError> {
    let mut read = UsesRead::default();
    read.refresh(store)?;
    let inv = Inventory::list(store)?;
    let mut stats = RemoteStats {
        now,
        total: Totals::default(),
        actions: Totals::default(),
        outputs: Totals::default(),
        compressed: Totals::default(),
        stored_bytes: 0,
        logical_bytes: 0,
        compression_ratio: None,
        logs: Totals::default(),
        snapshots: Totals::default(),
        manifests: Totals {
            objects: inv.manifests.0,
            bytes: inv.manifests.1,
        },
        other: Totals {
            objects: inv.other.0,
            bytes: inv.other.1,
        },
        prefix_bytes: 0,
        age: AGES
            .iter()
            .map(|(b, _)| *b)
            .chain([">=30d"])
            .map(|bucket| AgeBucket {
                bucket,
                totals: Totals::default(),
            })
            .collect(),
        oldest_upload: inv.uploads.map(|u| u.0),
        newest_upload: inv.uploads.map(|u| u.1),
        sessions: 0,
        counts: SessionCounts::default(),
        hit_share: None,
        unread: read.unread.clone(),
    };
    let add = |t: &mut Totals, bytes: u64| {
        t.objects += 1;
        t.bytes = t.bytes.saturating_add(bytes);
    };
    for (_, size, _) in &inv.actions {
        add(&mut stats.actions, *size);
    }
    for (_, size, _) in &inv.outputs {
        add(&mut stats.outputs, *size);
    }
    let mut logical = stats.actions.bytes.saturating_add(stats.outputs.bytes);
    for (_, len, size, _) in &inv.compressed {
        add(&mut stats.outputs, *size);
        add(&mut stats.compressed, *size);
        logical = logical.saturating_add(*len);
    }
    for o in inv.objects(&read.uses) {
        add(&mut stats.total, o.size);
        let age = now.saturating_sub(o.effective_last_use());
        let i = AGES
            .iter()
            .position(|(_, limit)| age < *limit)
            .unwrap_or(AGES.len());
        add(&mut stats.age[i].totals, o.size);
    }
    stats.logs = Totals {
        objects: inv.logs.0,
        bytes: inv.logs.1,
    };
    stats.snapshots = Totals {
        objects: inv.snapshots.0,
        bytes: inv.snapshots.1,
    };
    stats.prefix_bytes = stats.total.bytes.saturating_add(inv.fixed_bytes());
    stats.stored_bytes = stats.total.bytes;
    stats.logical_bytes = logical;
    stats.compression_ratio =
        (stats.stored_bytes > 0).then(|| logical as f64 / stats.stored_bytes as f64);
    let (sessions, counts) = read
        .uses
        .totals_since(now.saturating_sub(SESSION_RETENTION));
    stats.sessions = sessions;
    stats.counts = counts;
    stats.hit_share = (counts.lookups > 0).then(|| counts.hits as f64 / counts.lookups as f64);
    Ok(stats)
}
