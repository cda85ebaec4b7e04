//! `remote_trim`: merge the use logs, plan with [`super::policy`], write a
//! snapshot, delete the victims, then delete the logs merged.
//!
//! # Safety beside writers and other trims
//!
//! - **No use is lost.** A trim deletes only the logs and snapshots it read
//!   and merged, and only after its own snapshot, which holds all of them,
//!   is written (S3 reads after a successful write see it). Logs written
//!   meanwhile are not in its list and stay for the next trim. Two trims
//!   at once each write a snapshot and each delete only what they merged;
//!   since merging is a maximum (see [`super::uses`]), the snapshots left
//!   behind together hold everything, and counting one log twice is
//!   harmless.
//! - **Nothing recent is deleted.** An object uploaded or used (as logged)
//!   within the grace period is never a victim. Just before deleting, the
//!   trim reads the logs written since it started and plans again, so a
//!   use logged during the trim still saves its object.
//! - **What remains is a miss, never a wrong byte.** A session logs uses in
//!   batches, so a use can reach the store after the trim's last look; the
//!   grace period (default one hour, far above the batch interval) covers
//!   that. If an object still goes while a build wants it, that build sees
//!   a remote miss and builds the entry itself; outputs are verified
//!   against their names on every fetch, so no deletion can make a build
//!   use wrong bytes.
//! - **Order.** Action entries are deleted before the outputs they name,
//!   in separate requests; a trim stopped in between leaves outputs that
//!   nothing names, which the next trim collects as garbage.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::keys::{self, RemoteKey, UsesKind, UsesName};
use super::policy::{self, Names, ObjectKey, RemoteLimits, RemoteObject, RemotePlan};
use super::store::{ObjectStore, PutBody, StoreError, get_bytes, list_all};
use super::uses::Uses;
use crate::layout::{ACTION_ENTRY_SIZE, ActionEntry, Id};
use crate::model::UnixTime;
use crate::report::Reporter;

/// The largest use log or snapshot read (a snapshot of a million objects is
/// about 150 MB). Anything bigger is left alone and reported.
pub const MAX_USES_OBJECT: u64 = 1 << 30;

/// How long a session's counters stay in snapshots (for `stats`' hit share).
pub const SESSION_RETENTION: i64 = 30 * 24 * 3600;

/// How many requests a trim runs at once (reading logs and action entries).
pub const PARALLEL_REQUESTS: usize = 16;

/// What a remote trim is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteTrimOptions {
    /// Budget and grace.
    pub limits: RemoteLimits,
    /// Plan only: write and delete nothing.
    pub dry_run: bool,
}

/// A use log or snapshot that was not merged, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unread {
    /// Its key.
    pub key: String,
    /// Why.
    pub why: String,
}

/// What a remote trim did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RemoteTrimReport {
    /// True for a dry run.
    pub dry_run: bool,
    /// The plan acted on (after the last look at the logs).
    pub plan: RemotePlan,
    /// Use logs merged.
    pub logs_merged: u64,
    /// Snapshots merged.
    pub snapshots_merged: u64,
    /// Logs and snapshots left alone (damaged, too big, or from a newer
    /// gocache).
    pub unread: Vec<Unread>,
    /// Action entries read to learn which output they name (those no log
    /// named).
    pub actions_read: u64,
    /// Objects the first plan chose that a use logged during the trim
    /// saved.
    pub spared: u64,
    /// The snapshot written, if any.
    pub snapshot: Option<String>,
    /// Objects deleted.
    pub deleted: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Objects the store refused to delete, with its reason.
    pub delete_failures: Vec<(String, String)>,
    /// Logs and snapshots deleted after merging.
    pub uses_deleted: u64,
}

/// Runs `f` over `items` on up to [`PARALLEL_REQUESTS`] threads, keeping
/// the order of the results.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let workers = PARALLEL_REQUESTS.min(items.len());
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a request worker panicked"))
            .collect()
    });
    out.sort_unstable_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// The use logs and snapshots read so far, merged.
#[derive(Default)]
pub(crate) struct UsesRead {
    pub uses: Uses,
    /// Read and merged: these may be deleted once a snapshot holds them.
    pub merged: Vec<UsesName>,
    /// Listed, left alone.
    pub unread: Vec<Unread>,
    /// Every name seen in a listing (read or not, or gone).
    seen: std::collections::HashSet<UsesName>,
}

impl UsesRead {
    /// Lists `uses/` and reads every log and snapshot not seen before.
    /// When one vanished between the listing and the read (another trim
    /// merged it), its content is in a snapshot that trim wrote before
    /// deleting it: list again to find that snapshot. Returns how many were
    /// new.
    pub fn refresh(&mut self, store: &dyn ObjectStore) -> Result<usize, StoreError> {
        let mut new_total = 0;
        for _round in 0..4 {
            let listing = list_all(store, keys::USES)?;
            let fresh: Vec<(UsesName, u64)> = listing
                .iter()
                .filter_map(|m| match RemoteKey::parse(&m.key) {
                    RemoteKey::Uses(n) if !self.seen.contains(&n) => Some((n, m.size)),
                    _ => None,
                })
                .collect();
            if fresh.is_empty() {
                break;
            }
            new_total += fresh.len();
            let results = parallel_map(&fresh, |(name, size)| {
                if *size > MAX_USES_OBJECT {
                    return Err(format!("{size} bytes, over the {MAX_USES_OBJECT} read"));
                }
                match get_bytes(store, &name.key(), MAX_USES_OBJECT) {
                    Ok(Some(b)) => Uses::decode(&b).map(Some).map_err(|e| e.to_string()),
                    Ok(None) => Ok(None),
                    Err(e) => Err(format!("store: {e}")),
                }
            });
            let mut vanished = false;
            for ((name, _), r) in fresh.into_iter().zip(results) {
                self.seen.insert(name);
                match r {
                    Ok(Some(u)) => {
                        self.uses.merge(&u);
                        self.merged.push(name);
                    }
                    Ok(None) => vanished = true,
                    Err(why) => self.unread.push(Unread {
                        key: name.key(),
                        why,
                    }),
                }
            }
            if !vanished {
                break;
            }
        }
        Ok(new_total)
    }
}

/// What the prefix holds, classified.
#[derive(Default)]
pub(crate) struct Inventory {
    /// Action entries: key, size, upload time.
    pub actions: Vec<(Id, u64, UnixTime)>,
    /// Outputs stored as they are: key, size, upload time.
    pub outputs: Vec<(Id, u64, UnixTime)>,
    /// Outputs stored compressed: key, length (decompressed), stored
    /// size, upload time.
    pub compressed: Vec<(Id, u64, u64, UnixTime)>,
    /// Use logs: count and bytes.
    pub logs: (u64, u64),
    /// Snapshots: count and bytes.
    pub snapshots: (u64, u64),
    /// Session manifests (`m/`): count and bytes. Never deleted: one per
    /// build key, each replaced by the next session with that key.
    pub manifests: (u64, u64),
    /// Anything else: count and bytes.
    pub other: (u64, u64),
    /// Oldest and newest upload of a cache object.
    pub uploads: Option<(UnixTime, UnixTime)>,
}

impl Inventory {
    /// Bytes under the prefix that are not cache objects.
    pub fn fixed_bytes(&self) -> u64 {
        self.logs.1 + self.snapshots.1 + self.manifests.1 + self.other.1
    }

    /// Lists everything under the prefix.
    pub fn list(store: &dyn ObjectStore) -> Result<Inventory, StoreError> {
        let mut inv = Inventory::default();
        store.list("", &mut |m| {
            let mut cache_object = true;
            match RemoteKey::parse(&m.key) {
                RemoteKey::Action(id) => inv.actions.push((id, m.size, m.last_modified)),
                RemoteKey::Output(id) => inv.outputs.push((id, m.size, m.last_modified)),
                RemoteKey::Compressed(id, len) => {
                    inv.compressed.push((id, len, m.size, m.last_modified))
                }
                RemoteKey::Uses(n) => {
                    cache_object = false;
                    let t = match n.kind {
                        UsesKind::Log => &mut inv.logs,
                        UsesKind::Snapshot => &mut inv.snapshots,
                    };
                    t.0 += 1;
                    t.1 += m.size;
                }
                RemoteKey::Manifest(_) => {
                    cache_object = false;
                    inv.manifests.0 += 1;
                    inv.manifests.1 += m.size;
                }
                RemoteKey::Other => {
                    cache_object = false;
                    inv.other.0 += 1;
                    inv.other.1 += m.size;
                }
            }
            if cache_object {
                let t = m.last_modified;
                inv.uploads = Some(match inv.uploads {
                    None => (t, t),
                    Some((lo, hi)) => (lo.min(t), hi.max(t)),
                });
            }
        })?;
        Ok(inv)
    }

    /// The objects as the policy sees them, with last uses from `uses`.
    pub fn objects(&self, uses: &Uses) -> Vec<RemoteObject> {
        let mut out =
            Vec::with_capacity(self.actions.len() + self.outputs.len() + self.compressed.len());
        for &(id, size, uploaded) in &self.actions {
            let known = uses.actions.get(&id);
            out.push(RemoteObject {
                key: ObjectKey::Action(id),
                size,
                uploaded,
                last_use: known.map(|u| u.last_use),
                names: known.map_or(Names::Unknown, |u| Names::Output(u.output)),
            });
        }
        for &(id, size, uploaded) in &self.outputs {
            out.push(RemoteObject {
                key: ObjectKey::Output(id),
                size,
                uploaded,
                last_use: uses.outputs.get(&id).copied(),
                names: Names::Unknown,
            });
        }
        for &(id, len, size, uploaded) in &self.compressed {
            out.push(RemoteObject {
                key: ObjectKey::Compressed(id, len),
                size,
                uploaded,
                last_use: uses.outputs.get(&id).copied(),
                names: Names::Unknown,
            });
        }
        out
    }
}

/// Reads the action entries no log named, to learn their outputs; records
/// each as used at its upload (which it was). Unreadable ones are marked
/// so the policy collects them. Returns how many were read.
fn learn_actions(
    store: &dyn ObjectStore,
    inv: &Inventory,
    uses: &mut Uses,
    unreadable: &mut std::collections::HashSet<Id>,
    reporter: &dyn Reporter,
) -> u64 {
    let unknown: Vec<(Id, UnixTime)> = inv
        .actions
        .iter()
        .filter(|(id, _, _)| !uses.actions.contains_key(id))
        .map(|&(id, _, t)| (id, t))
        .collect();
    if unknown.is_empty() {
        return 0;
    }
    reporter.start("read action entries", unknown.len() as u64);
    let results = parallel_map(&unknown, |&(id, _)| {
        let r = get_bytes(store, &keys::action_key(id), ACTION_ENTRY_SIZE as u64 * 4);
        reporter.advance(1);
        r
    });
    reporter.finish();
    let mut errors = 0;
    for ((id, uploaded), r) in unknown.iter().zip(results) {
        match r {
            Ok(Some(b)) => match ActionEntry::parse(&b, Some(*id)) {
                Ok(e) => uses.record(*id, e.output, *uploaded),
                Err(_) => {
                    unreadable.insert(*id);
                }
            },
            // Gone since the listing: the plan will not find it deleted
            // twice, the store ignores it.
            Ok(None) => {}
            Err(StoreError::TooLarge { .. }) => {
                unreadable.insert(*id);
            }
            Err(_) => errors += 1,
        }
    }
    if errors > 0 {
        reporter.warn(&format!(
            "{errors} action entries could not be read; they are kept as their own groups this time"
        ));
    }
    unknown.len() as u64
}

fn plan_with(
    inv: &Inventory,
    read: &UsesRead,
    unreadable: &std::collections::HashSet<Id>,
    limits: &RemoteLimits,
    now: UnixTime,
) -> RemotePlan {
    let mut objects = inv.objects(&read.uses);
    for o in &mut objects {
        if let ObjectKey::Action(id) = o.key
            && unreadable.contains(&id)
        {
            o.names = Names::Unreadable;
        }
    }
    let fixed = inv.fixed_bytes();
    policy::plan(&objects, fixed, limits, now)
}

/// The snapshot a trim writes: everything merged (`uses`), less what
/// `plan` deletes, less what is gone from the store and too old to be an
/// upload in flight, less old sessions.
fn snapshot(
    uses: &Uses,
    inv: &Inventory,
    plan: &RemotePlan,
    limits: &RemoteLimits,
    now: UnixTime,
) -> Uses {
    let mut snap = uses.clone();
    let victims: std::collections::HashSet<ObjectKey> =
        plan.victims.iter().map(|v| v.key).collect();
    let present_actions: std::collections::HashSet<Id> = inv.actions.iter().map(|a| a.0).collect();
    let present_outputs: std::collections::HashSet<Id> = (inv.outputs.iter().map(|o| o.0))
        .chain(inv.compressed.iter().map(|o| o.0))
        .collect();
    let recent = now.saturating_sub(limits.grace.max(0));
    snap.actions.retain(|id, u| {
        !victims.contains(&ObjectKey::Action(*id))
            && (present_actions.contains(id) || u.last_use > recent)
    });
    let victim_outputs: std::collections::HashSet<Id> =
        victims.iter().filter_map(ObjectKey::output).collect();
    snap.outputs.retain(|id, t| {
        !victim_outputs.contains(id) && (present_outputs.contains(id) || *t > recent)
    });
    snap.sessions
        .retain(|_, c| c.last >= now.saturating_sub(SESSION_RETENTION));
    snap
}

/// Deletes `plan`'s victims, action entries first, then outputs, in
/// separate requests, counting what went and what failed into `report`.
fn delete_victims(
    store: &dyn ObjectStore,
    plan: &RemotePlan,
    reporter: &dyn Reporter,
    report: &mut RemoteTrimReport,
) -> Result<(), StoreError> {
    // Action entries first, then outputs, in separate requests.
    let sizes: std::collections::HashMap<ObjectKey, u64> =
        plan.victims.iter().map(|v| (v.key, v.size)).collect();
    for want_action in [true, false] {
        let batch: Vec<String> = plan
            .victims
            .iter()
            .filter(|v| matches!(v.key, ObjectKey::Action(_)) == want_action)
            .map(|v| v.key.key())
            .collect();
        if batch.is_empty() {
            continue;
        }
        reporter.start(
            if want_action {
                "delete action entries"
            } else {
                "delete outputs"
            },
            batch.len() as u64,
        );
        let r = store.delete_many(&batch)?;
        reporter.advance(batch.len() as u64);
        reporter.finish();
        let failed: std::collections::HashSet<&str> =
            r.failed.iter().map(|(k, _)| k.as_str()).collect();
        for k in &batch {
            if !failed.contains(k.as_str()) {
                report.deleted += 1;
                let key = match RemoteKey::parse(k) {
                    RemoteKey::Action(id) => ObjectKey::Action(id),
                    RemoteKey::Output(id) => ObjectKey::Output(id),
                    RemoteKey::Compressed(id, len) => ObjectKey::Compressed(id, len),
                    _ => continue,
                };
                report.deleted_bytes += sizes.get(&key).copied().unwrap_or(0);
            }
        }
        report.delete_failures.extend(r.failed);
    }
    Ok(())
}

/// Trims the store to `options.limits` by fleet-wide last use. See the
/// module doc for why this is safe beside writers and other trims.
///
/// Needs credentials that may list, read, write (the snapshot) and delete.
/// An error before the snapshot is written leaves the store unchanged; an
/// error after it leaves only garbage the next trim collects.
pub fn remote_trim(
    store: &dyn ObjectStore,
    options: &RemoteTrimOptions,
    now: UnixTime,
    reporter: &dyn Reporter,
) -> Result<RemoteTrimReport, StoreError> {
    let limits = options.limits;
    let mut read = UsesRead::default();
    read.refresh(store)?;
    let inv = Inventory::list(store)?;
    let mut unreadable = std::collections::HashSet::new();
    let actions_read = learn_actions(store, &inv, &mut read.uses, &mut unreadable, reporter);
    let first = plan_with(&inv, &read, &unreadable, &limits, now);

    let mut report = RemoteTrimReport {
        dry_run: options.dry_run,
        actions_read,
        ..RemoteTrimReport::default()
    };
    let plan = if options.dry_run {
        first
    } else {
        // One more look at the logs: uses logged while this trim ran save
        // their objects.
        if read.refresh(store)? > 0 {
            let again = plan_with(&inv, &read, &unreadable, &limits, now);
            let still: std::collections::HashSet<ObjectKey> =
                again.victims.iter().map(|v| v.key).collect();
            report.spared = first
                .victims
                .iter()
                .filter(|v| !still.contains(&v.key))
                .count() as u64;
            again
        } else {
            first
        }
    };
    for u in &read.unread {
        reporter.warn(&format!("{}: left alone: {}", u.key, u.why));
    }
    report.unread = read.unread.clone();
    report.logs_merged = read
        .merged
        .iter()
        .filter(|n| n.kind == UsesKind::Log)
        .count() as u64;
    report.snapshots_merged = read.merged.len() as u64 - report.logs_merged;

    if options.dry_run {
        report.plan = plan;
        return Ok(report);
    }

    let snap = snapshot(&read.uses, &inv, &plan, &limits, now);
    let name = UsesName::new(UsesKind::Snapshot, now);
    let needs_snapshot = !read.merged.is_empty() || actions_read > 0;
    if needs_snapshot {
        store.put(&name.key(), PutBody::Bytes(&snap.encode()))?;
        report.snapshot = Some(name.key());
    }

    delete_victims(store, &plan, reporter, &mut report)?;

    // Only now, with the snapshot written, the logs and snapshots it holds.
    if needs_snapshot && !read.merged.is_empty() {
        let merged: Vec<String> = read.merged.iter().map(UsesName::key).collect();
        let r = store.delete_many(&merged)?;
        report.uses_deleted = r.deleted;
    }
    report.plan = plan;
    Ok(report)
}
