//! The remote eviction policy: a pure function from the bucket's objects,
//! a budget, a grace period and `now` to a plan. No I/O: `remote_trim`
//! gathers the objects and acts on the plan, tests call [`plan`] with
//! made-up objects.
//!
//! # Groups
//!
//! As in the local policy, an output leaves together with every action
//! entry naming it, action entries first (an output stored in both forms,
//! as-is and compressed, by versions before and after compression,
//! leaves as one): a crash between the two deletes
//! leaves an output nothing names (garbage, taken by the next trim), never
//! an action entry whose output is gone (a wasted round trip for every
//! build that asks).
//!
//! # Order
//!
//! 1. **garbage**: action entries naming an output the bucket does not
//!    hold, action entries that are not Go's format, and outputs no action
//!    entry names (only when every action entry's output is known).
//! 2. **budget**: while the prefix holds more than the budget, the group
//!    with the oldest last use goes; ties by key.
//!
//! # Last use and protection
//!
//! An object's last use is the later of its upload (the store's
//! LastModified) and the newest use any session logged. Nothing used or
//! uploaded within the grace period is chosen: a build that just found an
//! action entry may be about to fetch its output, and a writer may be
//! between uploading an output and its action entry. A group is as recent
//! as its most recent member. When protected objects keep the budget from
//! being met, [`RemotePlan::unmet`] says by how much.

use std::collections::HashMap;

use crate::layout::{Id, IdHash};
use crate::model::UnixTime;

/// An object the policy may evict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKey {
    /// `a/<id>`: an action entry.
    Action(Id),
    /// `o/<id>`: an output.
    Output(Id),
    /// `z/<id>.<length>`: an output, compressed, and its length.
    Compressed(Id, u64),
}

impl ObjectKey {
    /// The object's key in the store.
    pub fn key(&self) -> String {
        match *self {
            ObjectKey::Action(id) => super::keys::action_key(id),
            ObjectKey::Output(id) => super::keys::output_key(id),
            ObjectKey::Compressed(id, len) => super::keys::compressed_key(id, len),
        }
    }

    /// The output this object holds, in either form; `None` for an action
    /// entry.
    pub fn output(&self) -> Option<Id> {
        match *self {
            ObjectKey::Action(_) => None,
            ObjectKey::Output(id) | ObjectKey::Compressed(id, _) => Some(id),
        }
    }
}

/// Serialized as its key (`a/<hex>`, `o/<hex>` or `z/<hex>.<length>`).
impl serde::Serialize for ObjectKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.key())
    }
}

/// What an action entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    /// This output.
    Output(Id),
    /// Nothing: the object is not a valid action entry for its key.
    Unreadable,
    /// Not known (it could not be read this time).
    Unknown,
}

/// One object of the bucket, as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteObject {
    /// Which object.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: u64,
    /// When it was uploaded (the store's LastModified).
    pub uploaded: UnixTime,
    /// The newest use any session logged, if any.
    pub last_use: Option<UnixTime>,
    /// For an action entry, what it names; ignored for outputs.
    pub names: Names,
}

impl RemoteObject {
    /// The later of its upload and its last logged use.
    pub fn effective_last_use(&self) -> UnixTime {
        self.last_use
            .map_or(self.uploaded, |u| u.max(self.uploaded))
    }
}

/// The limits of a remote trim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemoteLimits {
    /// The most bytes the prefix may hold (objects, use logs, snapshots
    /// and anything else under it); `None` only collects garbage.
    pub budget: Option<u64>,
    /// Seconds: nothing used or uploaded this recently is chosen.
    pub grace: i64,
}

/// Why an object was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteRule {
    /// Unreachable or broken.
    Garbage,
    /// The prefix over its budget.
    Budget,
}

/// One object to delete, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemoteVictim {
    /// The object.
    pub key: ObjectKey,
    /// Its size.
    pub size: u64,
    /// Its group's last use.
    pub last_use: UnixTime,
    /// The rule that chose it.
    pub rule: RemoteRule,
}

/// A count of objects and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Objects.
    pub objects: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// A budget the plan cannot meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemoteUnmet {
    /// Bytes still over the budget after the plan.
    pub over_by: u64,
    /// Bytes inside the grace period, which the plan may not touch.
    pub protected_bytes: u64,
    /// Bytes that are not cache objects (use logs, snapshots, manifests,
    /// other keys).
    pub fixed_bytes: u64,
}

/// What to delete, in order, and what the prefix holds before and after.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RemotePlan {
    /// Cache objects (action entries and outputs) now.
    pub before: Totals,
    /// Cache objects after the plan.
    pub after: Totals,
    /// Bytes under the prefix that are not cache objects.
    pub fixed_bytes: u64,
    /// Objects inside the grace period.
    pub protected: Totals,
    /// The objects to delete, in order: garbage, then budget groups from
    /// the least recently used, each group's action entries before its
    /// output.
    pub victims: Vec<RemoteVictim>,
    /// Set when the budget cannot be met.
    pub unmet: Option<RemoteUnmet>,
}

impl RemotePlan {
    /// Bytes the plan frees.
    pub fn freed(&self) -> u64 {
        self.before.bytes - self.after.bytes
    }
}

/// One eviction unit: its last use, its key (for a stable order) and the
/// indices of its objects.
type Group = (UnixTime, ObjectKey, Vec<usize>);

/// Splits `objects` into groups evicted together (an output with the
/// action entries naming it; an action entry whose output is unknown
/// alone) and garbage (the indices of objects nothing live can reach).
fn group(objects: &[RemoteObject]) -> (Vec<Group>, Vec<usize>) {
    // Each output's objects: one, or two when it is stored in both forms.
    let mut outputs: HashMap<Id, Vec<usize>, IdHash> = HashMap::default();
    for (i, o) in objects.iter().enumerate() {
        if let Some(id) = o.key.output() {
            outputs.entry(id).or_default().push(i);
        }
    }
    let any_unknown = objects
        .iter()
        .any(|o| matches!(o.key, ObjectKey::Action(_)) && o.names == Names::Unknown);

    // Groups: an output with the action entries naming it; an action entry
    // whose output is unknown alone. Garbage aside.
    let mut members: HashMap<Id, Vec<usize>, IdHash> = HashMap::default();
    let mut garbage: Vec<usize> = Vec::new();
    let mut singles: Vec<usize> = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        if let ObjectKey::Action(_) = o.key {
            match o.names {
                Names::Output(out) if outputs.contains_key(&out) => {
                    members.entry(out).or_default().push(i)
                }
                Names::Output(_) | Names::Unreadable => garbage.push(i),
                Names::Unknown => singles.push(i),
            }
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    for (&out, forms) in &outputs {
        let mut forms = forms.clone();
        forms.sort_unstable_by_key(|&f| objects[f].key);
        match members.remove(&out) {
            Some(mut acts) => {
                acts.sort_unstable_by_key(|&a| objects[a].key);
                acts.extend(forms);
                let last = acts
                    .iter()
                    .map(|&m| objects[m].effective_last_use())
                    .max()
                    .expect("a group has its output");
                groups.push((last, ObjectKey::Output(out), acts));
            }
            None if any_unknown => singles.extend(forms),
            None => garbage.extend(forms),
        }
    }
    for i in singles {
        let o = &objects[i];
        groups.push((o.effective_last_use(), o.key, vec![i]));
    }
    (groups, garbage)
}

/// Plans a remote trim. `fixed_bytes` are the bytes under the prefix that
/// are not cache objects (they count towards the budget but are not
/// evicted here).
pub fn plan(
    objects: &[RemoteObject],
    fixed_bytes: u64,
    limits: &RemoteLimits,
    now: UnixTime,
) -> RemotePlan {
    let cutoff = now.saturating_sub(limits.grace.max(0));
    let protected = |o: &RemoteObject| o.effective_last_use() > cutoff;

    let mut before = Totals::default();
    let mut protected_totals = Totals::default();
    for o in objects {
        before.add(o.size);
        if protected(o) {
            protected_totals.add(o.size);
        }
    }

    let (mut groups, mut garbage) = group(objects);

    let mut victims = Vec::new();
    let mut after = before;
    let take = |victims: &mut Vec<RemoteVictim>, after: &mut Totals, i: usize, last, rule| {
        let o: &RemoteObject = &objects[i];
        victims.push(RemoteVictim {
            key: o.key,
            size: o.size,
            last_use: last,
            rule,
        });
        after.objects -= 1;
        after.bytes -= o.size;
    };

    garbage.sort_unstable_by_key(|&i| (objects[i].effective_last_use(), objects[i].key));
    for i in garbage {
        if !protected(&objects[i]) {
            let last = objects[i].effective_last_use();
            take(&mut victims, &mut after, i, last, RemoteRule::Garbage);
        }
    }

    let mut unmet = None;
    if let Some(budget) = limits.budget {
        groups.sort_unstable_by_key(|(last, key, _)| (*last, *key));
        for (last, _, group) in &groups {
            if fixed_bytes.saturating_add(after.bytes) <= budget {
                break;
            }
            // Sorted by last use: once one group is protected, all that
            // follow are too.
            if *last > cutoff {
                break;
            }
            for &i in group {
                take(&mut victims, &mut after, i, *last, RemoteRule::Budget);
            }
        }
        let total = fixed_bytes.saturating_add(after.bytes);
        if total > budget {
            unmet = Some(RemoteUnmet {
                over_by: total - budget,
                protected_bytes: protected_totals.bytes,
                fixed_bytes,
            });
        }
    }

    RemotePlan {
        before,
        after,
        fixed_bytes,
        protected: protected_totals,
        victims,
        unmet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = 1_000_000;
    const HOUR: i64 = 3600;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    fn output(n: u8, size: u64, last_use: UnixTime) -> RemoteObject {
        RemoteObject {
            key: ObjectKey::Output(id(n)),
            size,
            uploaded: 0,
            last_use: Some(last_use),
            names: Names::Unknown,
        }
    }

    fn action(n: u8, names: Names, last_use: UnixTime) -> RemoteObject {
        RemoteObject {
            key: ObjectKey::Action(id(n)),
            size: 175,
            uploaded: 0,
            last_use: Some(last_use),
            names,
        }
    }

    fn limits(budget: Option<u64>) -> RemoteLimits {
        RemoteLimits {
            budget,
            grace: HOUR,
        }
    }

    fn keys(p: &RemotePlan) -> Vec<(ObjectKey, RemoteRule)> {
        p.victims.iter().map(|v| (v.key, v.rule)).collect()
    }

    /// Three groups: output 10 (named by 1 and 2), 11 (by 3), 12 (by 4),
    /// used 5, 3 and 4 days ago.
    fn bucket() -> Vec<RemoteObject> {
        let day = 24 * HOUR;
        vec![
            output(10, 1000, NOW - 5 * day),
            action(1, Names::Output(id(10)), NOW - 6 * day),
            action(2, Names::Output(id(10)), NOW - 5 * day),
            output(11, 2000, NOW - 3 * day),
            action(3, Names::Output(id(11)), NOW - 3 * day),
            output(12, 4000, NOW - 4 * day),
            action(4, Names::Output(id(12)), NOW - 4 * day),
        ]
    }

    #[test]
    fn evicts_least_recently_used_groups_actions_first() {
        let objs = bucket();
        let total: u64 = objs.iter().map(|o| o.size).sum();
        assert_eq!(total, 7700);
        // 500 fixed bytes; a budget of 5000 needs 3200 freed: group 10
        // (1350) then group 12 (4175).
        let p = plan(&objs, 500, &limits(Some(5000)), NOW);
        use ObjectKey::*;
        use RemoteRule::Budget;
        assert_eq!(
            keys(&p),
            vec![
                (Action(id(1)), Budget),
                (Action(id(2)), Budget),
                (Output(id(10)), Budget),
                (Action(id(4)), Budget),
                (Output(id(12)), Budget),
            ]
        );
        assert_eq!(p.after.bytes, 2175);
        assert_eq!(p.after.objects, 2);
        assert_eq!(p.freed(), 5525);
        assert_eq!(p.unmet, None);
        // A group is as recent as its newest member.
        assert_eq!(p.victims[0].last_use, NOW - 5 * 24 * HOUR);

        // Within budget: nothing goes. Input order does not matter.
        let mut rev = objs.clone();
        rev.reverse();
        assert!(plan(&rev, 500, &limits(Some(8200)), NOW).victims.is_empty());
        assert_eq!(plan(&rev, 500, &limits(Some(5000)), NOW), p);
        assert!(plan(&objs, 0, &limits(None), NOW).victims.is_empty());
    }

    #[test]
    fn an_output_in_both_forms_leaves_as_one_counted_as_stored() {
        let day = 24 * HOUR;
        let compressed = |n: u8, len: u64, size: u64, last_use| RemoteObject {
            key: ObjectKey::Compressed(id(n), len),
            size,
            ..output(n, size, last_use)
        };
        let objs = vec![
            // Output 10 as it is (an older writer) and compressed (a newer
            // one): one group with the action naming it.
            output(10, 1000, NOW - 5 * day),
            compressed(10, 1000, 300, NOW - 2 * day),
            action(1, Names::Output(id(10)), NOW - 5 * day),
            // Output 11 only compressed; its stored bytes are what count.
            compressed(11, 8000, 2000, NOW - 4 * day),
            action(2, Names::Output(id(11)), NOW - 4 * day),
            // Output 12 compressed, named by nothing: garbage.
            compressed(12, 500, 100, NOW - 9 * day),
        ];
        let p = plan(&objs, 0, &limits(Some(1500)), NOW);
        use ObjectKey::*;
        assert_eq!(
            keys(&p),
            vec![
                (Compressed(id(12), 500), RemoteRule::Garbage),
                (Action(id(2)), RemoteRule::Budget),
                (Compressed(id(11), 8000), RemoteRule::Budget),
            ]
        );
        assert_eq!(p.before.bytes, 1000 + 300 + 175 + 2000 + 175 + 100);
        assert_eq!(p.after.bytes, 1000 + 300 + 175);
        // Budget meets group 10: both forms go with its action, and the
        // group is as recent as its newest form.
        let p = plan(&objs, 0, &limits(Some(0)), NOW);
        assert_eq!(
            keys(&p)[3..],
            [
                (Action(id(1)), RemoteRule::Budget),
                (Output(id(10)), RemoteRule::Budget),
                (Compressed(id(10), 1000), RemoteRule::Budget),
            ]
        );
        assert_eq!(p.victims[3].last_use, NOW - 2 * day);
        assert_eq!(p.after.bytes, 0);
        assert_eq!(Compressed(id(10), 1000).key(), format!("z/{}.1000", id(10)));
    }

    #[test]
    fn ties_are_broken_by_key() {
        let objs = vec![
            output(20, 100, NOW - 10 * HOUR),
            action(2, Names::Output(id(20)), NOW - 10 * HOUR),
            output(10, 100, NOW - 10 * HOUR),
            action(1, Names::Output(id(10)), NOW - 10 * HOUR),
        ];
        let p = plan(&objs, 0, &limits(Some(300)), NOW);
        assert_eq!(
            keys(&p),
            vec![
                (ObjectKey::Action(id(1)), RemoteRule::Budget),
                (ObjectKey::Output(id(10)), RemoteRule::Budget),
            ]
        );
    }

    #[test]
    fn never_takes_anything_inside_the_grace_period_and_says_so() {
        let mut objs = bucket();
        // Group 12's action was just used; group 10's output just uploaded.
        objs[6].last_use = Some(NOW - 60);
        objs[0].uploaded = NOW - 60;
        objs[0].last_use = None;
        let p = plan(&objs, 0, &limits(Some(1000)), NOW);
        use ObjectKey::*;
        assert_eq!(
            keys(&p),
            vec![
                (Action(id(3)), RemoteRule::Budget),
                (Output(id(11)), RemoteRule::Budget)
            ]
        );
        let unmet = p.unmet.expect("the budget cannot be met");
        assert_eq!(unmet.over_by, 5525 - 1000);
        assert_eq!(p.protected.bytes, 1000 + 175);
        assert_eq!(unmet.protected_bytes, 1175);
        // The boundary: used exactly `grace` ago is outside it.
        let edge = vec![output(1, 10, NOW - HOUR)];
        assert_eq!(plan(&edge, 0, &limits(Some(0)), NOW).victims.len(), 1);
        let inside = vec![output(1, 10, NOW - HOUR + 1)];
        assert!(plan(&inside, 0, &limits(Some(0)), NOW).victims.is_empty());
    }

    #[test]
    fn collects_garbage_first_even_without_a_budget() {
        let old = NOW - 48 * HOUR;
        let objs = vec![
            output(10, 100, old),
            action(1, Names::Output(id(10)), old),
            // Names an output the bucket does not hold.
            action(2, Names::Output(id(99)), old),
            // Not Go's format.
            action(3, Names::Unreadable, old),
            // Named by nothing.
            output(11, 300, old),
            // Named by nothing, but just uploaded (its action may follow).
            RemoteObject {
                uploaded: NOW - 5,
                ..output(12, 300, old)
            },
        ];
        let p = plan(&objs, 0, &limits(None), NOW);
        use ObjectKey::*;
        use RemoteRule::Garbage;
        let mut got = keys(&p);
        got.sort();
        assert_eq!(
            got,
            vec![
                (Action(id(2)), Garbage),
                (Action(id(3)), Garbage),
                (Output(id(11)), Garbage)
            ]
        );

        // When one action entry's output is unknown, no output counts as
        // unnamed: it may be that one's.
        let mut with_unknown = objs.clone();
        with_unknown.push(action(4, Names::Unknown, old));
        let p = plan(&with_unknown, 0, &limits(None), NOW);
        let mut got = keys(&p);
        got.sort();
        assert_eq!(
            got,
            vec![(Action(id(2)), Garbage), (Action(id(3)), Garbage)]
        );
        // ...but it is still evicted by the budget, alone, by its own use.
        let p = plan(&with_unknown, 0, &limits(Some(0)), NOW);
        assert!(
            p.victims
                .iter()
                .any(|v| v.key == Action(id(4)) && v.rule == RemoteRule::Budget)
        );
        assert!(
            p.victims
                .iter()
                .any(|v| v.key == Output(id(11)) && v.rule == RemoteRule::Budget)
        );
    }

    #[test]
    fn fixed_bytes_count_towards_the_budget() {
        let objs = bucket();
        let p = plan(&objs, 10_000, &limits(Some(10_000)), NOW);
        assert_eq!(p.after.objects, 0, "everything goes to make room");
        assert_eq!(p.unmet, None);
        let p = plan(&objs, 10_001, &limits(Some(10_000)), NOW);
        let unmet = p.unmet.expect("the fixed bytes alone are over");
        assert_eq!((unmet.over_by, unmet.fixed_bytes), (1, 10_001));
    }
}
